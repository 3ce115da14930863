"""Text sorted as R sorts a factor's levels: the collation of R's ``sort`` and ``factor``.

R on Linux, macOS and Windows sorts text with ICU's (or the C library's) collation for
the locale, even in ``C.UTF-8``: letters case-insensitively (``"apple" < "Banana"``,
``"no" < "Yes"``), lower case before upper case where the letters tie (``"a" < "A"``),
accents after the plain letter (``"e" < "é"``), spaces and punctuation before digits
before letters. Python's ``sorted`` compares code points (upper case first, ``"Yes" <
"no"``), which is R's order only under ``LC_COLLATE=C``. :func:`r_sort_key` is the
three-level key of ICU's root collation for the characters of everyday labels: Latin
letters with or without accents (``"ø"`` as ``"o"``, ``"æ"`` as ``"ae"``, ``"ß"`` as
``"ss"``; full-width forms and ligatures as their letters), digits, spaces and ASCII
punctuation; other characters (other scripts) sort after the Latin letters by code point.
"""

from __future__ import annotations

import unicodedata

# ICU root collation's order of spaces and ASCII punctuation (all before digits)
_PUNCTUATION = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_RANK = {c: k for k, c in enumerate(_PUNCTUATION)}
# letters without a decomposition: sorted as these letters (with a secondary weight), or
# as a letter of their own after the one named (ICU's root order)
_AS_LETTERS = {"ø": "o", "đ": "d", "ð": "d", "ł": "l", "ħ": "h", "æ": "ae", "œ": "oe", "ß": "ss"}
_AFTER = {"ŋ": "n", "þ": "z", "ı": "i", "ŧ": "t"}


def _levels(ch: str) -> list[tuple[tuple[float, float], int, int]]:
    """(primary, secondary, tertiary) weights of one character (several for one that
    sorts as several letters: ``"æ"`` as ``"ae"``)."""
    if ch in _RANK:
        return [((0, _RANK[ch]), 0, 0)]
    if ch.isdigit() and ch.isascii():
        return [((1, ord(ch)), 0, 0)]
    if unicodedata.category(ch)[0] in "PSZ":  # other punctuation, symbols and spaces
        return [((0, len(_PUNCTUATION) + ord(ch)), 0, 0)]
    compat = unicodedata.normalize("NFKD", ch)
    variant = 2 * int(compat != unicodedata.normalize("NFD", ch))  # full-width, ligature
    if len(compat) > 1 and not unicodedata.combining(compat[1]):  # "ǆ", "½", "ﬁ"
        return [(w[0], w[1], w[2] + variant) for c in compat for w in _levels(c)]
    plain = compat[0]
    accent = sum(ord(m) for m in compat[1:])  # 0 for a plain letter
    upper = int(plain.isupper())
    low = plain.lower()
    if low in _AS_LETTERS:
        return [((2, ord(c)), accent + 1, upper + variant) for c in _AS_LETTERS[low]]
    if low in _AFTER:
        return [((2, ord(_AFTER[low]) + 0.5), accent, upper + variant)]
    if plain.isalpha() and plain.isascii():
        return [((2, ord(low)), accent, upper + variant)]
    if plain != ch and (plain.isdigit() or plain in _RANK):
        return [(w[0], w[1] + accent, w[2] + variant) for w in _levels(plain)]
    return [((3, ord(ch)), 0, 0)]


def r_sort_key(text: str) -> tuple:
    """Sort key of ``text`` in R's collation (see the module): primary weights of the
    whole string first (letters without case or accents), then its accents, then its
    case."""
    weights = [w for ch in str(text) for w in _levels(ch)]
    return (
        tuple(w[0] for w in weights),
        tuple(w[1] for w in weights),
        tuple(w[2] for w in weights),
    )


def r_sorted(values) -> list:
    """``values`` (strings) in R's order."""
    return sorted(values, key=r_sort_key)


def text_levels(column) -> list | None:
    """The distinct values of a column of Python strings (object dtype) in R's order, as
    R's ``factor()`` makes them its levels; None for any other column."""
    import pandas as pd

    if not pd.api.types.is_object_dtype(column.dtype):
        return None
    values = pd.unique(column.dropna())
    if not len(values) or not all(isinstance(v, str) for v in values):
        return None
    return r_sorted(values)
