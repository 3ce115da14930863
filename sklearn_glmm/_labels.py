"""Group labels: one key per label, so that labels that look alike match (1, 1.0, "1").

The levels of a grouping factor are fixed at fit; new labels at prediction time are
matched to them by :func:`match_levels`. A label is keyed by its text, with numbers
written the way Python writes an integer when they are whole (``1``, ``1.0`` and
``"1"`` share the key ``"1"``; ``"01"`` does not), dates and date-times the way R writes
them (a ``Timestamp`` at midnight, a ``datetime.date`` and ``"2024-01-02"`` share the key
``"2024-01-02"``). Where the labels or the levels have no time zone and the others
have one, a date-time matches by its local time, else as an instant in UTC (as pandas
gives a time-zone-aware column's ``.values``).
"""

from __future__ import annotations

import re
import warnings
from datetime import date, datetime
from numbers import Integral, Real

import numpy as np
import pandas as pd

from ._warn import user_stacklevel

# -- matching group labels at predict time --------------------------------------------------
# A label not found among the fitted levels as it is matches by its text, numbers written the
# shortest way: 1, 1.0, np.int64(1), "1" and "1.0" are one label; "01", "1e0" and " 1" are not
# numbers' texts and match only themselves.
_NUMBER_TEXT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


# a date-time's text as R writes it: its date at midnight, its local time without the time
# zone; a date-time read back from a file ("2024-01-02 00:00:00+01:00", "2024/01/02")
# matches it too
_DATE_TEXT = re.compile(
    r"[0-9]{4}([-/])[0-9]{2}\1[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?"
)


def _date_text(value) -> str:
    """A date or date-time label's text: ``2024-01-02``, or ``2024-01-02 10:30:00``
    (local time of a time-zone-aware one, as R's ``as.character`` writes it)."""
    if not isinstance(value, datetime):  # a date
        return value.isoformat()
    stamp = pd.Timestamp(value).tz_localize(None)
    if stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + (
        f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else ""
    )


def label_key(value) -> str:
    """The text a group label matches by when its type differs from the fitted levels'."""
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, date) and not pd.isna(value):
        return _date_text(value)
    if isinstance(value, str) and _DATE_TEXT.fullmatch(value):
        try:
            return _date_text(pd.Timestamp(value).tz_localize(None))
        except ValueError:  # (not a calendar date: "2024-13-45")
            return value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
        return label_key(float(value))
    return str(value)


def _keys(values) -> pd.Index:
    return pd.Index([label_key(v) for v in values], dtype=object)


def check_distinct_labels(name: str, levels: pd.Index) -> None:
    """Labels of one grouping column must not differ only in type (1 and "1" in one column)."""
    if levels.dtype != object or levels.inferred_type == "string":
        return
    keys = _keys(levels)
    clash = keys.duplicated(keep=False)
    if clash.any():
        first = keys[clash][0]
        same = [v for v, k in zip(levels, keys) if k == first]
        raise ValueError(
            f"groups column {name!r} has labels {same!r} that differ only in type; they would be "
            "fitted as different groups. Give the column one type, e.g. groups.astype(str)."
        )


def match_levels(levels: pd.Index, values, name: str) -> np.ndarray:
    """Level codes of group labels at predict time; -1 for unseen or missing labels.

    Labels match their level as they are (``1`` and ``1.0`` are equal numbers); a label of
    another type matches by its text (see ``label_key``), in both directions: a model fitted
    with 1.0 finds ``"1"``, one fitted with ``"1"`` finds 1.0. A label whose text fits two
    fitted levels (``"1"`` and ``"1.0"`` fitted as strings) raises. Date-times with a
    time zone on one side only: :func:`_wall_time_or_instant`.
    """
    instants = _aware_levels_by_instant(levels, values)
    if instants is not None:
        return _wall_time_or_instant(levels, values, instants, name)
    return _match_by_text(levels, values, name)


def _match_by_text(levels: pd.Index, values, name: str) -> np.ndarray:
    """:func:`match_levels` without the date-times' instants: as they are, else by text."""
    values = pd.Series(values, dtype=object)
    missing = np.asarray(pd.isna(values))
    codes = levels.get_indexer(values)
    retry = (codes < 0) & ~missing
    if retry.any():
        by_key: dict[str, int] = {}
        for code, key in enumerate(_keys(levels)):
            by_key[key] = -2 if key in by_key else code  # -2: two levels share the text
        asked = values[retry]
        alt = np.array([by_key.get(label_key(v), -1) for v in asked], dtype=np.intp)
        if (alt == -2).any():
            label = asked[alt == -2].iloc[0]
            same = [v for v in levels if label_key(v) == label_key(label)]
            raise ValueError(
                f"group label {label!r} of factor {name!r} matches the fitted levels {same!r}; "
                "pass the labels with the type they were fitted with."
            )
        codes[retry] = alt
        if (alt < 0).any():
            _warn_rewritten_labels(levels, asked[alt < 0], name)
    codes[missing] = -1
    return codes.astype(np.intp)


def _aware_levels_by_instant(levels: pd.Index, values):
    """Codes of date-time labels among fitted date-time levels, read as instants in UTC
    where one side has a time zone and the other has not (-1 where no level is that
    instant, and for NaT); None for other labels or levels.

    * NumPy ``datetime64`` labels among time-zone-aware levels: the labels are UTC;
    * time-zone-aware labels among levels without a zone: the levels are taken as UTC
      (a model fitted from such a column's ``.values``)."""
    if not len(levels) or not all(isinstance(v, pd.Timestamp) for v in levels):
        return None
    aware = [v.tz is not None for v in levels]
    if all(aware):
        if not (isinstance(values, np.ndarray) and values.dtype.kind == "M"):
            return None
        utc = pd.DatetimeIndex([v.tz_convert("UTC").tz_localize(None) for v in levels])
        return utc.get_indexer(pd.DatetimeIndex(values.ravel())).astype(np.intp)
    if any(aware):
        return None
    asked = pd.Series(values, dtype=object)
    zoned = np.array([isinstance(v, pd.Timestamp) and v.tz is not None for v in asked])
    if not zoned.any():
        return None
    codes = np.full(len(asked), -1, dtype=np.intp)
    stamps = [v.tz_convert("UTC").tz_localize(None) for v in asked[zoned]]
    codes[zoned] = pd.DatetimeIndex(list(levels)).get_indexer(pd.DatetimeIndex(stamps))
    return codes


def _wall_time_or_instant(levels, values, instants, name) -> np.ndarray:
    """Codes of date-time labels where either they or the levels have no time zone
    (:func:`_aware_levels_by_instant`). A date-time without a zone may be a local (wall)
    time, which matches a level by its text as R writes it, or an instant in UTC, as
    pandas gives a time-zone-aware column's ``.values`` (2024-01-01 00:00+01:00 becomes
    2023-12-31 23:00), which by text would be a new group (daily levels) or the level an
    hour or two away (hourly ones). Each label takes the level it is by local time, else
    the one it is as an instant; a label that is one level by local time and another as
    an instant raises."""
    asked = pd.Series(np.asarray(values).ravel(), dtype=object)
    by_text = _match_by_text(levels, asked, name)
    clash = (by_text >= 0) & (instants >= 0) & (by_text != instants)
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        raise ValueError(
            f"group label {pd.Timestamp(asked.iloc[k])} of factor {name!r} is the fitted "
            f"level {levels[by_text[k]]} by its local time and {levels[instants[k]]} as "
            "an instant in UTC (date-times without a time zone on one side: pandas gives "
            "a time-zone-aware column's .values as UTC instants). Give the labels and "
            "the fit the same kind of date-time: the pandas column itself, or "
            ".dt.tz_localize(...) / .dt.tz_convert(None)."
        )
    return np.where(by_text >= 0, by_text, instants)


def _loose_key(value) -> str:
    """A label's text without what a reformatting changes: surrounding spaces, case,
    leading zeros (``" 01"``, ``"1"`` and 1 share one; ``"S01"`` and ``"s01"`` too) and
    a date's separators (``"2024/1/8"``, ``"2024.01.08"``, ``"20240108"``)."""
    text = label_key(value).strip().casefold()
    if _LOOSE_DATE.fullmatch(text):
        try:
            return _date_text(pd.Timestamp(text))
        except ValueError:
            pass
    if _LOOSE_NUMBER.fullmatch(text):
        return label_key(float(text))
    return text


_LOOSE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_LOOSE_DATE = re.compile(r"[0-9]{4}(?:[./-][0-9]{1,2}[./-][0-9]{1,2}|[0-9]{4})")


def _warn_rewritten_labels(levels, asked, name) -> None:
    """Unmatched labels ``asked`` that are fitted levels written another way (``"01"``
    for the level 1, ``"s01"`` for ``"S01"``): a grouping column reformatted (lme4
    raises on new levels), whose rows would silently be predicted at the population
    level. New groups (cross-validation's, a label such as ``"new"``) are not warned of."""
    fitted = {}
    for v in levels:
        fitted.setdefault(_loose_key(v), v)
    like = [(v, fitted[_loose_key(v)]) for v in dict.fromkeys(asked) if _loose_key(v) in fitted]
    if not like:
        return
    shown = ", ".join(f"{a!r} (fitted {b!r})" for a, b in like[:5])
    warnings.warn(
        f"{len(like)} group label(s) of factor {name!r} are not fitted levels but look like "
        f"them written another way: {shown}{', ...' if len(like) > 5 else ''}. Their rows "
        "are predicted at the population level, as new groups; pass the labels as they "
        "were fitted.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
