"""R's names of a formula's design columns.

R names a column by deparsing the term's expression: ``I(age/10)``,
``ns(x, df = 3)1``, ``factor(f, levels = c("b", "a"))a``, ``relevel(f, ref = "b")c``
(spaces around ``+ - *``, comparisons and ``=``, none around ``/ ^ :``, strings in
double quotes). formulaic renders the same expressions in Python's style
(``I(age / 10)``, ``ns(x, df=3)``, ``levels=c('b', 'a')``); :func:`r_deparse` writes an
expression as R deparses it, so that coefficient names are R's and the names an R user
gives (``confint(parm=...)``, ``fixef()[...]``) are found.
"""

from __future__ import annotations

import ast
import re

# R's deparse: the binary operators with the spaces it writes around them
_BINARY = {
    ast.Add: " + ",
    ast.Sub: " - ",
    ast.Mult: " * ",
    ast.Div: "/",
    ast.Pow: "^",
    ast.Mod: " %% ",
    ast.FloorDiv: " %/% ",
    ast.BitAnd: " & ",
    ast.BitOr: " | ",
}
_COMPARE = {
    ast.Gt: " > ",
    ast.Lt: " < ",
    ast.GtE: " >= ",
    ast.LtE: " <= ",
    ast.Eq: " == ",
    ast.NotEq: " != ",
}
# binding strength (R's ?Syntax, highest first: ^, unary minus, %any%, * /, + -,
# comparison, !, &, |)
_PRECEDENCE = {
    ast.Pow: 9,
    ast.Mod: 7,
    ast.FloorDiv: 7,
    ast.Mult: 6,
    ast.Div: 6,
    ast.Add: 5,
    ast.Sub: 5,
    ast.BitAnd: 2,
    ast.BitOr: 1,
}
_UNARY, _COMPARISON, _NOT, _ATOM = 8, 4, 3, 10
_QUOTED = "_sklearn_glmm_quoted_{}_"
_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.(?![0-9]))[\w.]*\Z")


def r_deparse(expr: str) -> str:
    """``expr`` (formulaic's text of a term's factor) as R deparses it; the text itself
    where it is not a Python expression."""
    quoted: list[str] = []

    def hold(match):
        quoted.append(match.group(1))
        return _QUOTED.format(len(quoted) - 1)

    text = re.sub(r"`([^`]*)`", hold, expr)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return expr
    try:
        out = _Deparser(text).render(tree.body)
    except _NotR:
        return expr
    for k, name in enumerate(quoted):
        out = out.replace(_QUOTED.format(k), name if _SYNTACTIC.match(name) else f"`{name}`")
    return out


class _NotR(Exception):
    """A construct R's deparse has no spelling for here."""


class _Deparser:
    def __init__(self, source: str):
        self.source = source

    def render(self, node) -> str:
        return self._render(node)[0]

    def _render(self, node) -> tuple[str, int]:
        """``(text, precedence)`` of ``node``."""
        if isinstance(node, ast.BinOp):
            op = type(node.op)
            if op not in _BINARY:
                raise _NotR
            prec = _PRECEDENCE[op]
            # ^ groups to the right in R, the others to the left
            left = self._operand(node.left, prec, strict=op is ast.Pow)
            right = self._operand(node.right, prec, strict=op is not ast.Pow)
            return f"{left}{_BINARY[op]}{right}", prec
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return "-" + self._operand(node.operand, _UNARY, strict=False), _UNARY
            if isinstance(node.op, ast.UAdd):
                return "+" + self._operand(node.operand, _UNARY, strict=False), _UNARY
            if isinstance(node.op, (ast.Not, ast.Invert)):
                return "!" + self._operand(node.operand, _NOT, strict=False), _NOT
            raise _NotR
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
                raise _NotR
            left = self._operand(node.left, _COMPARISON, strict=True)
            right = self._operand(node.comparators[0], _COMPARISON, strict=True)
            return f"{left}{_COMPARE[type(node.ops[0])]}{right}", _COMPARISON
        if isinstance(node, ast.Call):
            args = [self.render(a) for a in node.args]
            args += [f"{k.arg} = {self.render(k.value)}" for k in node.keywords if k.arg]
            if len(args) != len(node.args) + len(node.keywords):
                raise _NotR  # (**kwargs)
            return f"{self._function(node.func)}({', '.join(args)})", _ATOM
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                escaped = node.value.replace("\\", "\\\\").replace('"', '\\"')
                return f'"{escaped}"', _ATOM
            if isinstance(node.value, bool):
                return ("TRUE" if node.value else "FALSE"), _ATOM
            segment = ast.get_source_segment(self.source, node)
            return (segment if segment is not None else repr(node.value)), _ATOM
        if isinstance(node, ast.Name):
            return node.id, _ATOM
        # attribute access (np.log), subscripts, lists: as written
        return ast.unparse(node), _ATOM

    def _operand(self, node, prec: int, strict: bool) -> str:
        text, own = self._render(node)
        return f"({text})" if own < prec or (strict and own == prec) else text

    def _function(self, func) -> str:
        if isinstance(func, ast.Name):
            return func.id
        return ast.unparse(func)


def r_column_name(column: str) -> str:
    """R's name for a formulaic column: each factor of an interaction (``a:b``) deparsed
    as R deparses it, followed by its level or basis column (``[T.b]`` -> ``b``,
    ``[1]`` -> ``1``)."""
    return ":".join(_part_name(part) for part in _top_level_split(str(column), ":"))


def _part_name(part: str) -> str:
    expr, suffix = _split_suffix(part)
    level = re.sub(r"^\[(?:T\.)?(.*)\]$", r"\1", suffix, flags=re.S) if suffix else ""
    return r_deparse(expr) + level


def _split_suffix(part: str) -> tuple[str, str]:
    """``"factor(f)[T.b]"`` -> ``("factor(f)", "[T.b]")``: the level in brackets at the
    end, outside any call."""
    if not part.endswith("]"):
        return part, ""
    depth = 0
    for pos in range(len(part) - 1, -1, -1):
        ch = part[pos]
        if ch == "]":
            depth += 1
        elif ch == "[":
            depth -= 1
            if depth == 0:
                return part[:pos], part[pos:]
    return part, ""


def _top_level_split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets and quotes (a level's text in
    square brackets is read as it is)."""
    parts, current, depth, quote, square = [], "", 0, None, 0
    for ch in text:
        if square:
            square += {"[": 1, "]": -1}.get(ch, 0)
        elif ch == "[" and quote is None:
            square = 1
        elif quote is not None:
            quote = None if ch == quote else quote
        elif ch in "`'\"":
            quote = ch
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return parts
