"""The process's memory as Linux reports it (``/proc/self/status``), for the benchmarks
that measure a fit's peak (``VmHWM``) against its resident size (``VmRSS``)."""

from __future__ import annotations


def status_kb(key: str) -> int:
    """A ``/proc/self/status`` entry in kB, e.g. ``status_kb("VmHWM")``."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)
