"""Splitting an lme4 / glmmTMB formula's text into its pieces.

``"y ~ x + (1 + x | id) + offset(log(n))"`` becomes the response, the fixed part
that formulaic reads (``"x"``), the bar terms (``_BarTerm("1 + x", "id")``) and
the offsets. Pure text handling: brackets are matched, ``+``/``-`` split only at
the top level, and a minus inside a number's exponent is not a separator.

The text formulaic reads is also made to mean what it means in R: ``^`` inside a
call (``I(x^2)``) becomes Python's power ``**``, ``C(f, sum)`` names R's contrasts
function as ``C(f, contr.sum)`` does, R's nesting operator ``a %in% b`` becomes
``a:b`` (formulaic would read ``b/a``), and ``.``, which formulaic reads differently
from R, raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ._warn import user_stacklevel, warn

_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class _BarTerm:
    """One ``(lhs | group)`` or ``(lhs || group)`` term."""

    lhs: str
    group: str
    diagonal: bool
    structure: str | None = None  # glmmTMB's ar1(), cs(), ou() over a time variable
    double_bar: bool = False  # written (lhs || group), not diag(lhs | group)


@dataclass(frozen=True)
class _Pieces:
    """A formula split into what formulaic handles and what this module does."""

    lhs: str
    fixed: str
    bars: tuple[_BarTerm, ...]
    offsets: tuple[str, ...]


def _top_level(text: str, separators: str):
    """Yield ``(position, character)`` of separators outside brackets and quotes."""
    depth, quote = 0, None
    for pos, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ValueError(f"Unbalanced brackets in {text!r}.")
        elif depth == 0 and char in separators:
            yield pos, char
    if depth != 0 or quote:
        raise ValueError(f"Unbalanced brackets or quotes in {text!r}.")


def check_brackets(text: str, what: str) -> None:
    """Raise ``ValueError`` naming the argument ``what`` for a formula whose brackets or
    quotes do not balance."""
    try:
        for _ in _top_level(text, ""):
            pass
    except ValueError:
        raise ValueError(f"{what}={text!r}: its brackets or quotes do not balance.") from None


def _split_signed(text: str) -> list[tuple[str, str]]:
    """Split at top-level ``+``/``-``: ``"a*b - 1 + (1|g)"`` -> [("+","a*b"), ("-","1"), ...]."""
    pieces, sign, start = [], "+", 0
    for pos, char in _top_level(text, "+-"):
        # "-" after "**" or "e" of a number such as 1e-3 is not a separator.
        if char == "-" and re.search(r"(\*\*|(?<![\w.])\d+\.?\d*[eE])\s*$", text[:pos]):
            continue
        if text[start:pos].strip():
            pieces.append((sign, text[start:pos].strip()))
        sign, start = char, pos + 1
    if text[start:].strip():
        pieces.append((sign, text[start:].strip()))
    return pieces


def _enclosed(piece: str, prefix: str) -> str | None:
    """The text inside ``prefix(...)`` when ``piece`` is exactly that call, else None."""
    if not piece.startswith(prefix + "(") or not piece.endswith(")"):
        return None
    inner = piece[len(prefix) + 1 : -1]
    try:
        list(_top_level(inner, ""))
    except ValueError:
        return None  # e.g. "(a)+(b)": the closing bracket is not the opening one's
    return inner


def _bar_term(inner: str, piece: str) -> _BarTerm:
    """``"1 + time || id"`` -> _BarTerm("1 + time", "id", diagonal=True)."""
    bars = [pos for pos, _ in _top_level(inner, "|")]
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) != 1 and not double:
        raise ValueError(f"Cannot read the random-effect term {piece!r}.")
    lhs, group = inner[: bars[0]].strip(), inner[bars[-1] + 1 :].strip()
    if not lhs or not group:
        raise ValueError(f"Random-effect term {piece!r} needs both sides of '|'.")
    return _BarTerm(lhs, group, double, double_bar=double)


# glmmTMB's covariance structures: us() is lme4's (expr | g), diag() its (expr || g)
_STRUCTURES = {"us": False, "diag": True}
_TIME_STRUCTURES = ("ar1", "cs", "toep", "ou")
_UNSUPPORTED = "exp gau mat rr homdiag propto equalto homcs hetar1 homtoep".split()


def _covariance_term(piece: str) -> _BarTerm | None:
    """A random-effect term: ``(expr | g)``, ``(expr || g)``, or glmmTMB's ``us(expr | g)``
    and ``diag(expr | g)``; None for anything else."""
    inner = _enclosed(piece, "")
    if inner is not None and any(True for _ in _top_level(inner, "|")):
        return _bar_term(inner, piece)
    for name, diagonal in _STRUCTURES.items():
        inner = _enclosed(piece, name)
        if inner is not None and any(True for _ in _top_level(inner, "|")):
            term = _bar_term(inner, piece)
            if term.diagonal:
                raise ValueError(f"Cannot read {piece!r}: write {name}(expr | group).")
            return _BarTerm(term.lhs, term.group, diagonal)
    for name in _TIME_STRUCTURES:
        inner = _enclosed(piece, name)
        if inner is not None and any(True for _ in _top_level(inner, "|")):
            term = _bar_term(inner, piece)
            if term.diagonal:
                raise ValueError(f"Cannot read {piece!r}: write {name}(0 + factor(time) | group).")
            return _BarTerm(term.lhs, term.group, False, name)
    for name in _UNSUPPORTED:
        inner = _enclosed(piece, name)
        if inner is not None and "|" in inner:
            raise ValueError(
                f"The covariance structure {name}() in {piece!r} is not available: random "
                "effects are unstructured, (expr | group) or us(expr | group), "
                "uncorrelated, (expr || group) or diag(expr | group), or structured over a "
                "time variable: ar1(0 + factor(day) | group), cs(...), toep(...), "
                "ou(numFactor(time) + 0 | group)."
            )
    return None


def _split_formula(formula: str) -> _Pieces:
    """Response, fixed part, bar terms and offsets of an lme4 formula."""
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string, got {type(formula).__name__}.")
    tildes = [pos for pos, _ in _top_level(formula, "~")]
    if len(tildes) != 1 or not formula[: tildes[0]].strip():
        raise ValueError(f"formula must read 'response ~ terms', got {formula!r}.")
    lhs, rhs = formula[: tildes[0]].strip(), formula[tildes[0] + 1 :]
    fixed, bars, offsets = [], [], []
    for sign, piece in _split_signed(rhs):
        bar = _covariance_term(piece)
        if bar is not None:
            if sign == "-":
                raise ValueError(f"Cannot subtract the random-effect term {piece!r}.")
            bars.append(bar)
        elif (inner := _enclosed(piece, "offset")) is not None:
            if sign == "-":
                raise ValueError(f"Cannot subtract {piece!r}; negate inside offset() instead.")
            offsets.append(inner)
        elif "|" in piece:
            raise ValueError(
                f"Cannot read {piece!r}: write random effects as separate terms '+ (expr | group)'."
            )
        else:
            fixed.append(f"{sign} {piece}")
    fixed_text = " ".join(fixed).lstrip("+ ").strip() or "1"
    if fixed_text.startswith("-"):
        fixed_text = "1 " + fixed_text  # "~ -1 + x": formulaic wants something before "-"
    return _Pieces(lhs, fixed_text, tuple(bars), tuple(offsets))


def _response_parts(lhs: str) -> list[str]:
    """``"y"`` -> ["y"]; ``"cbind(s, f)"`` -> ["s", "f"]."""
    inner = _enclosed(lhs, "cbind")
    if inner is None:
        return [lhs]
    commas = [pos for pos, _ in _top_level(inner, ",")]
    if len(commas) != 1:
        raise ValueError(f"cbind() in the response takes two columns, got {lhs!r}.")
    return [inner[: commas[0]].strip(), inner[commas[0] + 1 :].strip()]


def factor_label(parts) -> str:
    """A grouping factor's name from its columns (``_group_parts``), as lme4 deparses it:
    ``b:a``; inside an interaction a name that is not a syntactic R name (``b c``) is
    written in backquotes, as R's deparse writes it."""
    if len(parts) == 1:
        return parts[0]
    return ":".join(p if re.fullmatch(r"[A-Za-z.][\w.]*", p) else f"`{p}`" for p in parts)


def _group_parts(group: str) -> list[list[str]]:
    """Grouping factors as lists of columns, outermost first, as lme4 expands them.

    ``"id"`` -> [["id"]]; ``"a:b"`` -> [["a", "b"]]; ``"a/b"`` -> [["a"], ["b", "a"]]
    (lme4 names the nested factor ``b:a``). A name in R's backquotes (a column named
    ``my id`` written with backquotes around it) is the column of that name.
    """
    quoted = re.findall(r"`([^`]*)`", group)
    count = iter(range(len(quoted)))
    plain = re.sub(r"`[^`]*`", lambda m: f"__quoted{next(count)}__", group)
    if "`" in plain or re.search(r"[^\w.:/\s]", plain):
        raise ValueError(
            f"Grouping factor {group!r} must be column names joined by ':' or '/' "
            "(compute other groupings as a column first)."
        )
    names = {f"__quoted{k}__": name for k, name in enumerate(quoted)}
    levels = [
        [names.get(c.strip(), c.strip()) for c in part.split(":")] for part in plain.split("/")
    ]
    if not all(all(level) for level in levels):
        raise ValueError(f"Cannot read the grouping factor {group!r}.")
    factors, inner = [], []
    for level in levels:
        inner = level + inner
        factors.append(list(inner))
    return factors


# -- R's operators in the text formulaic reads ------------------------------------------------


def _scan(text: str):
    """Yield ``(position, character, inside_call)`` outside quotes and backticks.

    ``inside_call`` is True within the brackets of a function call (``I(...)``,
    ``log(...)``) or of formulaic's ``{...}``: there the text is evaluated as Python,
    whereas bare brackets ``(a + b)`` group formula terms.
    """
    stack: list[bool] = []  # per open bracket: does it evaluate Python?
    quote = None
    for pos, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
            continue
        if char in "'\"`":
            quote = char
            continue
        if char in _OPEN:
            before = text[:pos].rstrip()
            call = char == "{" or bool(before) and (before[-1].isalnum() or before[-1] in "_.")
            stack.append(call or bool(stack and stack[-1]))
        elif char in _CLOSE and stack:
            stack.pop()
        yield pos, char, bool(stack and stack[-1])


def _python_powers(text: str) -> str:
    """R's ``^`` as Python's ``**`` where formulaic evaluates Python.

    Inside a call such as ``I(time^2)`` or ``log(x^2)`` R's ``^`` is a power, which
    Python writes ``**`` (Python's ``^`` is a bitwise XOR). Outside calls ``^`` is the
    formula operator: ``(a + b)^2`` crosses to second order, as in R and formulaic.
    """
    chars = list(text)
    for pos, char, inside_call in _scan(text):
        if char == "^" and inside_call:
            chars[pos] = "**"
    return "".join(chars)


_COMPARISON = re.compile(r"[<>]=?|==|!=")


def _r_logical_precedence(text: str) -> str:
    """R's ``&`` binds looser than its comparisons, Python's tighter: inside calls each
    operand of an ``&`` holding a comparison is put in brackets, ``I(x > 0 & k > 1)`` ->
    ``I((x > 0) & (k > 1))`` (as Python it was ``x > (0 & k) > 1``: an error, or with
    integers ``a == (1 & b)``, another number)."""
    if "&" not in text:
        return text
    opens: list[int] = []
    cuts: dict[int, list[int]] = {}  # bracket's open position -> its ',' and '&' positions
    amps: set[int] = set()  # brackets holding an '&' at their own level
    pairs = []
    for pos, char, inside_call in _scan(text):
        if char in _OPEN:
            opens.append(pos)
            cuts[pos] = []
        elif char in _CLOSE and opens:
            pairs.append((opens.pop(), pos))
        elif opens and inside_call and char in ",&":
            cuts[opens[-1]].append(pos)
            if char == "&":
                amps.add(opens[-1])
    inserts = []
    for start, end in pairs:
        if start not in amps:
            continue
        bounds = [start, *cuts[start], end]
        for a, b in zip(bounds, bounds[1:]):
            joined = text[a] == "&" or text[b] == "&"
            piece = text[a + 1 : b]
            if joined and _COMPARISON.search(piece) and not _bracketed(piece):
                lead = len(piece) - len(piece.lstrip())
                trail = len(piece.rstrip())
                inserts += [(a + 1 + lead, "("), (a + 1 + trail, ")")]
    for pos, mark in sorted(inserts, reverse=True):
        text = text[:pos] + mark + text[pos:]
    return text


def _bracketed(piece: str) -> bool:
    """Whether ``piece`` is one bracketed group, ``(x > 0)``."""
    piece = piece.strip()
    if not (piece.startswith("(") and piece.endswith(")")):
        return False
    depth = 0
    for k, ch in enumerate(piece):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and k < len(piece) - 1:
            return False
    return True


# an R name with a dot in it (``x.1``, ``site.id``, ``.x``): formulaic's Python would read
# ``x.1`` as an attribute of ``x`` (or a syntax error inside a call)
_DOTTED_NAME = re.compile(r"(?<![\w.`])([A-Za-z]\w*(?:\.\w*)+|\.[A-Za-z_][\w.]*)")


def _quote_dotted_names(text: str) -> str:
    """R's variable names with dots in backquotes, as formulaic reads them: ``x.1`` is one
    variable in R, for formulaic's Python an attribute of ``x`` (its rows dropped where
    ``x`` is missing, ``log(x.1)`` a syntax error). Left as they are: text in quotes or
    backquotes, names of calls (``is.na(x)``), keyword arguments (``Boundary.knots =``),
    R's contrast functions (``contr.sum``) and NumPy's names (``np.pi``)."""
    outside = np.zeros(len(text), dtype=bool)
    for pos, _, _ in _scan(text):
        outside[pos] = True
    pieces, last = [], 0
    for match in _DOTTED_NAME.finditer(text):
        start, end = match.span(1)
        name = match.group(1)
        rest = text[end:].lstrip()
        if (
            not outside[start:end].all()
            or name.split(".")[0] in ("contr", "np")
            or rest.startswith("(")
            or (rest.startswith("=") and not rest.startswith("=="))
        ):
            continue
        pieces += [text[last:start], f"`{name}`"]
        last = end
    return "".join(pieces) + text[last:] if pieces else text


# R's C(f, name) reads a bare name as the contrasts function contr.<name>
_CONTRAST_NAMES = ("sum", "helmert", "poly", "treatment", "SAS")


def _r_contrast_names(text: str) -> str:
    """R's ``C(f, sum)`` as ``C(f, contr.sum)`` (also helmert, poly, treatment, SAS).

    R's ``C()`` reads a bare name as its contrasts function; formulaic would evaluate
    ``sum`` as Python's builtin (an obscure error) and ``helmert`` as a variable.
    """
    pieces, last = [], 0
    for match in re.finditer(r"(?<![\w.])C\s*\(", text):
        depth, commas = 0, []
        for pos in range(match.end() - 1, len(text)):
            char = text[pos]
            if char in _OPEN:
                depth += 1
            elif char in _CLOSE:
                depth -= 1
                if depth == 0:
                    break
            elif char == "," and depth == 1:
                commas.append(pos)
        else:
            continue
        if not commas:
            continue
        end = commas[1] if len(commas) > 1 else pos
        start = commas[0] + 1
        if start < last or text[start:end].strip() not in _CONTRAST_NAMES:
            continue
        pieces += [text[last:start], f" contr.{text[start:end].strip()}"]
        last = end
    return "".join(pieces) + text[last:]


def _r_nesting(text: str) -> str:
    """R's nesting operator outside calls, ``a %in% b``, as ``a:b``: the terms R makes of
    it (``b + a %in% b`` is ``b + b:a``; ``(x + z) %in% f`` is ``x:f + z:f``), where
    formulaic would read ``b/a``. R's ``:`` binds tighter than ``%in%`` and ``%in%``
    tighter than ``*`` and ``/``, so that ``:`` in its place makes the same terms
    (``a:b %in% c`` and ``a %in% b:c`` are both ``a:b:c``). Inside a call (``I(f %in%
    c(...))``) the text is left as it is."""
    if "%in%" not in text:
        return text
    chars = list(text)
    top = "".join(" " if inside else char for _, char, inside in _scan(text))
    for match in reversed(list(re.finditer(r"\s*%in%\s*", top))):
        chars[match.start() : match.end()] = ":"
    return "".join(chars)


def _check_r_operators(text: str) -> None:
    """Raise for R formula operators that formulaic reads differently from R."""
    top = "".join(" " if inside else char for _, char, inside in _scan(text))
    coercion = re.search(r"(?<![\w.`])as\.(factor|numeric|integer|character|logical)\s*\(", text)
    if coercion:
        what = coercion.group(1)
        instead = (
            "factor(x) (a factor, as R's as.factor)"
            if what == "factor"
            else "a column of that type in data, or I(...) of a numeric expression"
        )
        raise ValueError(
            f"R's as.{what}() in {text.strip()!r} is not available in formulas here: write "
            f"{instead}."
        )
    if re.search(r"(?<![\w.])\.(?![\w.])", top):
        raise ValueError(
            f"R's '.' (every other column of data) in {text.strip()!r} is not supported: list "
            "the variables, e.g. 'y ~ x1 + x2 + (1 | id)'."
        )


def _warn_crossed_variable(text: str) -> None:
    """Warn about ``x^2`` outside ``I()``: R's crossing operator, which leaves ``x`` as it is."""
    top = "".join(" " if inside else char for _, char, inside in _scan(text))
    match = re.search(r"(?<![\w.)\]}`'\"])([A-Za-z_.][\w.]*)\s*(\^|\*\*)\s*(\d+)", top)
    if match:
        name, power = match.group(1), match.group(3)
        warn(
            f"'{match.group(0).strip()}' outside I() is R's crossing operator, which leaves a "
            f"single variable as it is (the term is '{name}'); write I({name}^{power}) for the "
            "power.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
