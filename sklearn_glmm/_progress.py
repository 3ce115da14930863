"""A progress bar on stderr for long simulations (tqdm's when it is installed)."""

from __future__ import annotations

import sys


class Progress:
    """A progress bar on stderr (tqdm's when it is installed)."""

    def __init__(self, total: int, enabled: bool, desc: str = "simulations"):
        self.total, self.done, self.enabled, self.desc = total, 0, enabled, desc
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc)
            except ImportError:
                self.bar = None

    def update(self, k: int):
        self.done += k
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(k)
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        sys.stderr.write(
            f"\r{self.desc} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
        )
        sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
