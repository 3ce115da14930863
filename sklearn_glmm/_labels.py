"""Group labels: one key per label, so that labels that look alike match (1, 1.0, "1").

The levels of a grouping factor are fixed at fit; new labels at prediction time are
matched to them by :func:`match_levels`. A label is keyed by its text, with numbers
written the way Python writes an integer when they are whole (``1``, ``1.0`` and
``"1"`` share the key ``"1"``; ``"01"`` does not), dates and date-times the way R writes
them (a ``Timestamp`` at midnight, a ``datetime.date`` and ``"2024-01-02"`` share the key
``"2024-01-02"``). Time-zone-aware levels take NumPy ``datetime64`` labels (finer than a
day) as instants in UTC, as pandas gives such a column's ``.values``, and labels with a
UTC offset of their own as instants; a label that would match another way (by local time,
or as an instant where one side has no time zone) is warned of, not matched.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from numbers import Integral, Real

import numpy as np
import pandas as pd

from ._warn import quiet, user_stacklevel, warn

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
    if _all_stamps(levels, aware=True):  # (one local time twice where clocks go back)
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
    fitted levels (``"1"`` and ``"1.0"`` fitted as strings) raises. Date-times with a time
    zone on one side only: :func:`_utc_codes` and :func:`_warn_instants`.
    """
    codes = _utc_codes(levels, values, name)
    if codes is not None:
        return codes
    asked = pd.Series(values, dtype=object)
    codes = _match_by_text(levels, asked, name)
    _warn_instants(levels, asked, codes, name)
    return codes


def _all_stamps(levels, aware=None) -> bool:
    """Whether every level is a ``Timestamp`` (with a time zone, or without one)."""
    if not len(levels) or not all(isinstance(v, pd.Timestamp) for v in levels):
        return False
    return aware is None or all((v.tz is not None) == aware for v in levels)


def _utc_instants(stamps) -> pd.DatetimeIndex:
    """Date-times as UTC instants without the zone (those without one taken as UTC)."""
    return pd.DatetimeIndex(
        [v.tz_convert("UTC").tz_localize(None) if v.tz is not None else v for v in stamps]
    )


def _utc_codes(levels: pd.Index, values, name: str):
    """Codes of NumPy ``datetime64`` labels (finer than a day) among time-zone-aware
    levels, or None for other labels or levels. NumPy's date-times have no time zone:
    pandas gives a time-zone-aware column's values (``.values``) as its instants in UTC
    (2024-01-01 00:00+01:00 becomes 2023-12-31 23:00), whose text would be a new group
    (daily levels) or the level an hour or two away (hourly ones), while a naive
    column's are local times. A label that is a level as an instant in UTC and no level
    by its local time takes it; one that is a level only by its local time is warned of
    and predicted as a new group; one that is one level as an instant and another by its
    local time (hourly levels) raises."""
    if not (isinstance(values, np.ndarray) and values.dtype.kind == "M"):
        return None
    if np.datetime_data(values.dtype)[0] in ("Y", "M", "W", "D"):  # calendar dates
        return None
    if not _all_stamps(levels, aware=True):
        return None
    stamps = pd.DatetimeIndex(values.ravel())
    codes = _utc_instants(levels).get_indexer(stamps).astype(np.intp)
    wall = pd.DatetimeIndex([v.tz_localize(None) for v in levels])  # the local times
    if wall.is_unique:  # (their text's match, in one vectorised pass)
        local = wall.get_indexer(stamps).astype(np.intp)
    else:  # one local time twice (clocks going back): the text's own rules
        with quiet():  # (only whether they match)
            local = _match_by_text(levels, pd.Series(list(stamps), dtype=object), name)
    clash = (codes >= 0) & (local >= 0) & (codes != local)
    if clash.any():
        k = int(np.flatnonzero(clash)[0])
        raise ValueError(
            f"group label {stamps[k]} of factor {name!r} (a NumPy date-time, without a time "
            f"zone) is the fitted level {levels[codes[k]]} as an instant in UTC (as pandas "
            f"gives a time-zone-aware column's .values) and {levels[local[k]]} by its local "
            "time. Pass the labels with their time zone: the pandas column itself, or "
            "pd.Series(values).dt.tz_localize(...)."
        )
    only_local = (codes < 0) & (local >= 0)
    if only_local.any():
        _warn_other_reading(
            name,
            stamps[only_local],
            levels[local[only_local]],
            "are no fitted level as instants in UTC (NumPy date-times have no time zone; "
            "pandas gives a time-zone-aware column's .values as UTC), but are the levels "
            "{shown} by their local time",
        )
    return codes


def _warn_instants(levels: pd.Index, asked: pd.Series, codes: np.ndarray, name: str) -> None:
    """Warn where date-time labels matched no level, one side has a time zone and the
    other has not, and the labels are levels as instants in UTC (the side without a zone
    taken as UTC: a model fitted from, or labels taken from, a time-zone-aware column's
    ``.values``): new groups otherwise, silently."""
    retry = codes < 0
    if not retry.any() or not _all_stamps(levels):
        return
    aware_levels = levels[0].tz is not None
    if aware_levels and not _all_stamps(levels, aware=True):
        return  # (levels of both kinds)
    labels = asked[retry]
    other = [isinstance(v, pd.Timestamp) and (v.tz is not None) != aware_levels for v in labels]
    other = np.asarray(other, dtype=bool)
    if not other.any():
        return
    cands = labels[other]
    found = _utc_instants(levels).get_indexer(_utc_instants(cands))
    if (found >= 0).any():
        _warn_other_reading(
            name,
            cands[found >= 0],
            levels[found[found >= 0]],
            "are no fitted level by their local time, but are the levels {shown} as instants "
            "in UTC (one of the two without a time zone: pandas gives a time-zone-aware "
            "column's .values as UTC)",
        )


def _warn_other_reading(name, labels, levels, what: str) -> None:
    shown = ", ".join(str(v) for v in list(dict.fromkeys(levels))[:3])
    warn(
        f"{len(labels)} date-time label(s) of factor {name!r} "
        + what.format(shown=shown)
        + ". Their rows are predicted as new groups. Give the labels the fit's kind of "
        "date-time: the pandas column itself (with its time zone), or "
        ".dt.tz_localize(...) / .dt.tz_convert(None).",
        UserWarning,
        stacklevel=user_stacklevel(),
    )


def _match_by_text(levels: pd.Index, values: pd.Series, name: str) -> np.ndarray:
    """:func:`match_levels` without the date-times' readings: as they are, else by text."""
    missing = np.asarray(pd.isna(values))
    codes = levels.get_indexer(values)
    retry = (codes < 0) & ~missing
    if retry.any() and _all_stamps(levels, aware=True):
        # a time-zone-aware label, or text with a UTC offset of its own ("...T05:00:00Z",
        # "...+02:00"), is an instant: compared as UTC instants (as objects, equal
        # instants in two zones can hash apart where clocks go back; by its text it
        # would be the local time of another offset's level)
        utc = None
        for i in np.flatnonzero(retry):
            stamp = _offset_stamp(values.iloc[i])
            if stamp is not None:
                utc = _utc_instants(levels) if utc is None else utc
                codes[i] = utc.get_indexer(_utc_instants([stamp]))[0]
                retry[i] = False
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


_OFFSET = re.compile(r".*[T ][0-9:.]+(?:Z|[+-][0-9]{2}:?[0-9]{2})")


def _offset_stamp(value):
    """A time-zone-aware ``Timestamp``, or a date-time text with a UTC offset (``Z``,
    ``+02:00``) as its instant; else None."""
    if isinstance(value, pd.Timestamp):
        return value if value.tz is not None else None
    if not (isinstance(value, str) and _DATE_TEXT.fullmatch(value) and _OFFSET.fullmatch(value)):
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        return None
    return stamp if stamp.tz is not None else None


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
    warn(
        f"{len(like)} group label(s) of factor {name!r} are not fitted levels but look like "
        f"them written another way: {shown}{', ...' if len(like) > 5 else ''}. Their rows "
        "are predicted at the population level, as new groups; pass the labels as they "
        "were fitted.",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
