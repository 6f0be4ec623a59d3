"""The canonical layout of .arch source (`archc fmt`).

Works on tokens, so every comment and the grouping of lines by blank lines survive:
- indentation: 4 spaces for a block's lines; lines continued inside brackets indent 4 more per
  open bracket (a line starting with the closer sits with its opener);
- spacing: one space around `>`, `|`, `&` and a label's, setting's or one-line def's `=`; none around
  `=` in `key=value`, inside brackets, around arithmetic (`in.c//2`) or after a stride's `/`;
  `, ` between items; the call name touches its `[` (`inception[`) and a def's `(`;
- repeats in ASCII: `×2` → `x2`, `×n` → `x(n)`, `×(n-1)` → `x(n-1)` (a count on the line after
  its `×` joins it);
- the `=` of consecutive one-line labelled lines aligned (`aux NAME` counts as the label; a
  blank line, an unlabelled line or a multi-line statement ends the run); `@name` written whole;
  trailing comments of consecutive lines aligned, two spaces after the longest of those lines;
- blank lines: runs become one, none inside brackets, none at the start or end; no trailing
  whitespace, `\\n` line ends (for `\\r\\n`), one final newline, no byte-order mark.

`format_source` only rearranges tokens; `same_ast` says whether two sources parse to the same
program, which `archc fmt` checks (with the compiled IR) before it writes anything.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from archlang.errors import Span
from archlang.frontend.parser import parse

INDENT = "    "
_TOKEN = re.compile(r"""
    (?P<STRING>"[^"\n]*")
  | (?P<XREP_OPEN>x\()
  | (?P<XREP>x[0-9]+(?![A-Za-z0-9_]))
  | (?P<IN_ATTR>in\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<SHAPE>[0-9]+(?:x[0-9]+)+(?![A-Za-z0-9_]))
  | (?P<NUMBER>[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
  | (?P<FUNC_OPEN>(?:ceil|floor|min|max|make_divisible)\()
  | (?P<OP_KEY>[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<REF>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<OP>//|[-+*/()\[\],=:>|&×])
""", re.VERBOSE)
_OPENERS = {"(", "[", "x("}
_CLOSERS = {")", "]"}


def _opens(t) -> bool:
    return t.text in _OPENERS or t.kind == "FUNC_OPEN"

_ARITH = {"+", "-", "*", "//"}


@dataclass
class _Tok:
    kind: str
    text: str


@dataclass
class _Physical:
    tokens: list[_Tok]
    comment: str | None
    depth: int  # open brackets at the start of the line


@dataclass
class _Logical:
    kind: str  # blank | comment | code
    indent: bool  # inside a block (indented in the source)
    lines: list[_Physical] = field(default_factory=list)


def _tokens(code: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(code):
        if code[pos] in " \t\f":
            pos += 1
            continue
        m = _TOKEN.match(code, pos)
        if m is None:  # cannot happen for text that parsed; keep it as it is
            out.append(_Tok("OTHER", code[pos]))
            pos += 1
            continue
        out.append(_Tok(m.lastgroup or "OTHER", m.group()))
        pos = m.end()
    return out


def _split_comment(line: str) -> tuple[str, str | None]:
    """Code and trailing comment of one physical line (a `#` inside a string is not a comment)."""
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif ch == "#" and not in_string:
            return line[:i], line[i:].rstrip()
    return line, None


def _logical_lines(text: str) -> list[_Logical]:
    out: list[_Logical] = []
    depth = 0
    for raw in text.split("\n"):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" \t"))
        if depth == 0:
            if not stripped:
                out.append(_Logical("blank", False))
                continue
            if stripped.startswith("#"):
                out.append(_Logical("comment", indent > 0, [_Physical([], stripped.rstrip(), 0)]))
                continue
            out.append(_Logical("code", indent > 0))
        elif not stripped:
            continue  # no blank lines inside brackets
        code, comment = _split_comment(raw)
        tokens = _tokens(code)
        out[-1].lines.append(_Physical(tokens, comment, depth))
        for t in tokens:
            if _opens(t):
                depth += 1
            elif t.text in _CLOSERS:
                depth = max(0, depth - 1)
    return out


def _ascii_repeats(tokens: list[_Tok]) -> list[_Tok]:
    """`×2` → `x2`, `×n` → `x(n)`, `×(e)` → `x(e)` (within one physical line)."""
    out: list[_Tok] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if t.text == "×" and nxt is not None:
            if nxt.kind == "NUMBER" and nxt.text.isdigit():
                out.append(_Tok("XREP", "x" + nxt.text))
                i += 2
                continue
            if nxt.kind in ("NAME", "IN_ATTR", "NUMBER"):
                out += [_Tok("XREP_OPEN", "x("), nxt, _Tok("OP", ")")]
                i += 2
                continue
            if nxt.text == "(":
                out.append(_Tok("XREP_OPEN", "x("))
                i += 2
                continue
            if nxt.kind == "FUNC_OPEN":  # `× ceil(d)` → `x(ceil(d))`
                depth, j = 0, i + 1
                while j < len(tokens):
                    depth += 1 if _opens(tokens[j]) else -1 if tokens[j].text in _CLOSERS else 0
                    if depth == 0:
                        break
                    j += 1
                if j < len(tokens):
                    out += [_Tok("XREP_OPEN", "x("), *tokens[i + 1:j + 1], _Tok("OP", ")")]
                    i = j + 1
                    continue
        out.append(t)
        i += 1
    return out


def _join_split_repeats(physicals: list[_Physical]) -> list[_Physical]:
    """A `×` ending a line inside brackets takes its count (or the `(` opening it) from the next
    line that has code, so that it can become `x2` / `x(`, which cannot be split."""
    out = [dataclasses.replace(p, tokens=list(p.tokens)) for p in physicals]
    for i, p in enumerate(out):
        if not p.tokens or p.tokens[-1].text != "×":
            continue
        nxt = next((q for q in out[i + 1:] if q.tokens), None)
        if nxt is None:
            continue
        moved = nxt.tokens.pop(0)
        p.tokens.append(moved)
        if moved.text in _OPENERS:
            nxt.depth += 1
        elif nxt.comment is None and all(t.text in _CLOSERS for t in nxt.tokens):
            p.tokens += nxt.tokens  # `(relu x2)` rather than a line holding only `)`
            nxt.tokens = []
    return [p for p in out if p.tokens or p.comment is not None]


def _spaced_equals(tokens: list[_Tok], in_block: bool) -> int | None:
    """Index of the `=` written with spaces: a label's, a setting's, or a one-line def's."""
    if len(tokens) > 1 and tokens[0].text == "set":
        return 2 if len(tokens) > 2 and tokens[2].text == "=" else None
    if tokens and tokens[0].text == "def":
        depth = 0
        for i, t in enumerate(tokens):
            if _opens(t):
                depth += 1
            elif t.text in _CLOSERS:
                depth -= 1
            elif t.text == "=" and depth == 0:
                return i
        return None
    if in_block and len(tokens) > 1 and tokens[0].kind == "NAME" and tokens[1].text == "=":
        return 1
    if in_block and len(tokens) > 2 and tokens[0].text == "aux" and tokens[1].kind == "NAME" and tokens[2].text == "=":
        return 2  # `aux NAME = ...`, an auxiliary head
    return None


def _gap(prev: _Tok, cur: _Tok, index: int, spaced_eq: int | None, head_name: bool) -> str:
    if cur.text in _CLOSERS or cur.text in (",", ":"):
        return ""
    if _opens(prev):
        return ""
    if cur.text == "=" or prev.text == "=":
        eq = index if cur.text == "=" else index - 1
        return " " if eq == spaced_eq else ""
    if cur.text in _ARITH or prev.text in _ARITH or prev.text == "/":
        return ""
    if cur.text == "(" and head_name:
        return ""  # def name(…), network name(…)
    if cur.text == "[" and prev.kind == "NAME":
        return ""  # inception[…]
    return " "


@dataclass
class _Out:
    kind: str  # blank | comment | code
    indent: str
    code: str
    comment: str | None = None
    label: str | None = None  # a one-line labelled line: its label, and `code` is what follows ` = `
    block: int = 0  # which block (or top level) the line belongs to


def _render(lines: list[_Logical]) -> list[_Out]:
    out: list[_Out] = []
    block = 0
    for logical in lines:
        if logical.kind == "blank":
            out.append(_Out("blank", "", ""))
            continue
        if logical.kind == "comment":
            out.append(_Out("comment", INDENT if logical.indent else "", logical.lines[0].comment or "",
                            block=block))
            continue
        if not logical.indent:
            block += 1  # a top-level statement starts a new block of lines
        base = INDENT if logical.indent else ""
        physicals = [dataclasses.replace(p, tokens=_ascii_repeats(p.tokens))
                     for p in _join_split_repeats(logical.lines)]
        flat = [t for p in physicals for t in p.tokens]
        spaced = _spaced_equals(flat, logical.indent)
        head = bool(flat) and flat[0].text in ("def", "network")
        index = 0
        rendered: list[_Out] = []
        for p in physicals:
            text = ""
            for t in p.tokens:
                if text:
                    text += _gap(flat[index - 1], t, index, spaced, head and index == 2)
                text += t.text
                index += 1
            if p is physicals[0]:
                indent = base
            else:
                starts_closed = bool(p.tokens) and p.tokens[0].text in _CLOSERS
                indent = base + INDENT * max(0, p.depth - starts_closed)
            rendered.append(_Out("code", indent, text, p.comment, block=block))
        if len(rendered) == 1 and logical.indent and (spaced == 1 or (spaced == 2 and flat[0].text == "aux")):
            first = rendered[0]
            first.label, first.code = first.code.split(" = ", 1)
        out += rendered
    return out


def _align(out: list[_Out]) -> None:
    # labels: runs of one-line labelled lines in one block, unbroken by blank or other code lines
    run: list[_Out] = []

    def flush() -> None:
        width = max((len(o.label or "") for o in run), default=0)
        for o in run:
            o.code = f"{(o.label or '').ljust(width)} = {o.code}"
            o.label = None
        run.clear()

    for o in out:
        if o.kind == "comment":
            continue
        if o.label is not None and (not run or run[-1].block == o.block):
            run.append(o)
        else:
            flush()
    flush()
    # trailing comments: runs of consecutive code lines that all carry one
    group: list[_Out] = []

    def place() -> None:
        if group:
            widest = max(len(o.indent) + len(o.code) for o in group)
            col = widest + 2
            for o in group:
                o.code = o.code.ljust(col - len(o.indent))
            group.clear()

    for o in out:
        if o.kind == "code" and o.comment is not None and o.code:
            group.append(o)
        else:
            place()
    place()


def format_source(text: str) -> str:
    """The canonical layout of `text` (which must parse; see the module docstring)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")  # a lone \r ends no line (it may sit in a comment)
    out = _render(_logical_lines(text))
    _align(out)
    lines: list[str] = []
    for o in out:
        if o.kind == "blank":
            if lines and lines[-1] != "":
                lines.append("")
            continue
        if o.kind == "comment":
            lines.append(o.indent + o.code)
        elif o.comment is not None:
            lines.append(o.indent + o.code + o.comment)
        else:
            lines.append((o.indent + o.code).rstrip())
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def without_positions(value):
    """A parsed program without its source positions, for comparing two layouts of it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,) + tuple(
            without_positions(getattr(value, f.name)) for f in dataclasses.fields(value)
            if not isinstance(getattr(value, f.name), Span))
    if isinstance(value, list | tuple):
        return tuple(without_positions(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, without_positions(v)) for k, v in value.items()))
    return value


def same_ast(a: str, b: str, filename: str = "<string>") -> bool:
    """Whether two sources parse to the same program (positions aside)."""
    return without_positions(parse(a, filename)) == without_positions(parse(b, filename))
