"""Text sorted as R sorts a factor's levels: the collation of R's ``sort`` and ``factor``.

R on Linux, macOS and Windows sorts text with ICU's (or the C library's) collation for
the locale, even in ``C.UTF-8``: letters case-insensitively (``"apple" < "Banana"``,
``"no" < "Yes"``), lower case before upper case where the letters tie (``"a" < "A"``),
accents after the plain letter (``"e" < "é"``), spaces and punctuation before digits
before letters. Python's ``sorted`` compares code points (upper case first, ``"Yes" <
"no"``), which is R's order only under ``LC_COLLATE=C``. :func:`r_sort_key` is the
three-level key of ICU's root collation for the characters of everyday labels (letters,
digits, spaces and ASCII punctuation; other characters sort after letters by code point).
"""

from __future__ import annotations

import unicodedata

# ICU root collation's order of spaces and ASCII punctuation (all before digits)
_PUNCTUATION = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$"
_RANK = {c: k for k, c in enumerate(_PUNCTUATION)}


def _levels(ch: str) -> tuple[tuple[int, int], int, int]:
    """(primary, secondary, tertiary) weights of one character."""
    if ch in _RANK:
        return (0, _RANK[ch]), 0, 0
    if ch.isdigit() and ch.isascii():
        return (1, ord(ch)), 0, 0
    base = unicodedata.normalize("NFD", ch)
    plain = base[0]
    if plain.isalpha() and plain.isascii():
        accent = sum(ord(m) for m in base[1:])  # 0 for a plain letter
        return (2, ord(plain.lower())), accent, int(plain.isupper())
    return (3, ord(ch)), 0, 0


def r_sort_key(text: str) -> tuple:
    """Sort key of ``text`` in R's collation (see the module): primary weights of the
    whole string first (letters without case or accents), then its accents, then its
    case."""
    weights = [_levels(ch) for ch in str(text)]
    return (
        tuple(w[0] for w in weights),
        tuple(w[1] for w in weights),
        tuple(w[2] for w in weights),
    )


def r_sorted(values) -> list:
    """``values`` (strings) in R's order."""
    return sorted(values, key=r_sort_key)
