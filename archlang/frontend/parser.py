"""Text → AST: the lark LALR parser, the transformer into archlang.frontend.ast, and the
translation of lark's parse failures into ArchErrors that read well."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from archlang.errors import ArchError, Span, remember_source, source_line, whole_file
from archlang.frontend import ast
from archlang.frontend.lexer import Layout, LayoutError

RESERVED = re.compile(r"x[0-9]+$")
# the functions of value expressions and how many values each takes
FUNCTIONS = {"ceil": 1, "floor": 1, "min": 2, "max": 2, "make_divisible": 2}
FUNCTION_HINTS = {
    "ceil": "ceil(x): the smallest whole number >= x", "floor": "floor(x): the largest whole number <= x",
    "min": "min(a, b)", "max": "max(a, b)",
    "make_divisible": "make_divisible(v, d): v rounded to a multiple of d, as torchvision's _make_divisible",
}
MAX_SOURCE_BYTES = 1_000_000
MAX_VALUE = 10**12  # the documented limit of any value (archlang.compiler.elaborate.MAX_VALUE)
MAX_DIGITS = 100  # a longer run of digits is far over MAX_VALUE (and Python's int() stops at 4,300)

# How each terminal is named in an error message.
TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "SHAPE": "a shape such as 3x224x224",
    "STRING": 'a quoted path such as "blocks.arch"',
    "IN_ATTR": "in.c, in.h or in.w",
    "XREP": "a repeat such as x2",
    "XREP_OPEN": "a repeat such as x(n-1)",
    "TIMES": "'×'",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "'*' or '//'",
    "_NL": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "$END": "the end of the file",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "COLON": "':'",
    "SLASH": "'/'",
    "MORETHAN": "'>'",
    "VBAR": "'|'",
    "AMPERSAND": "'&'",
    "REF": "a reference such as @enc4",
    "AUX": "'aux'",
    "OUTPUT": "'output'",
    "FUNC_OPEN": "a function such as ceil(",
    "OP_KEY": "an op argument such as bn.eps",
    "USE": "'use'",
    "SET": "'set'",
    "DEF": "'def'",
    "NETWORK": "'network'",
    "INPUT": "'input'",
}


def _words(terminals) -> str:
    names = sorted({TERMINAL_WORDS.get(t, repr(t)) for t in terminals})
    if len(names) > 6:
        names = names[:6] + ["..."]
    return ", ".join(names)


GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")
TABLES_PATH = Path(__file__).with_name("grammar_tables.json")


# the options the parser is built with (the generated tables, archlang.frontend.tables, hold them)
TABLE_OPTIONS = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": True}


def grammar_text() -> str:
    return GRAMMAR_PATH.read_text(encoding="utf-8")


def digest(grammar: str) -> str:
    """What the generated tables record of the grammar they were made from."""
    return hashlib.sha256(grammar.encode("utf-8")).hexdigest()


def read_tables() -> dict | None:
    """The generated tables (archlang.frontend.tables), if they were made from this grammar.lark
    by the lark installed; None otherwise.  JSON, read from the package: never a pickle."""
    import json

    import lark

    from archlang.frontend.tables import decode_hook

    try:
        tables = json.loads(TABLES_PATH.read_text(encoding="utf-8"), object_hook=decode_hook)
    except (OSError, ValueError):
        return None
    if not isinstance(tables, dict) or tables.get("grammar_sha256") != digest(grammar_text()) \
            or tables.get("lark_version") != lark.__version__:
        return None
    return tables


@cache
def _lark() -> Lark:
    """The parser: from the tables generated into the package when they match grammar.lark and the
    installed lark, else from the grammar itself.  No cache and no pickle: nothing outside the
    package is read to build it."""
    tables = read_tables()
    if tables is not None:
        try:
            return Lark._load_from_dict(tables["data"], tables["memo"], postlex=Layout())
        except Exception:  # noqa: BLE001 - tables lark cannot load: analyse the grammar instead
            pass
    return Lark(grammar_text(), postlex=Layout(), **TABLE_OPTIONS)


def _tok_span(filename: str, tok: Token) -> Span:
    return Span(filename, tok.line, tok.column, tok.end_line, tok.end_column)


class _Params(tuple):
    pass


class _ToAst(Transformer):
    """Builds ast nodes; every node keeps the span lark recorded for it."""

    def __init__(self, filename: str):
        super().__init__()
        self.filename = filename

    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return whole_file(self.filename)
        return Span(self.filename, meta.line, meta.column, meta.end_line, meta.end_column)

    def _name(self, tok: Token, what: str) -> str:
        if RESERVED.match(tok.value):
            raise ArchError(
                f"'{tok.value}' cannot be used as a {what}: names x<digits> are reserved for repeats",
                _tok_span(self.filename, tok),
                hint=f"choose another name, e.g. '{tok.value}_'",
            )
        return tok.value

    # ---- file structure ----

    def start(self, children):
        out = ast.File(self.filename)
        for child in children:
            if isinstance(child, ast.Use):
                out.uses.append(child)
            elif isinstance(child, ast.Setting):
                out.settings.append(child)
            elif isinstance(child, ast.Def):
                out.defs.append(child)
            elif isinstance(child, ast.Network):
                out.networks.append(child)
        return out

    @v_args(meta=True)
    def use(self, meta, children):
        return ast.Use(children[0].value[1:-1], self._span(meta))

    @v_args(meta=True)
    def setting(self, meta, children):
        key, value = children
        if value.type == "NUMBER":
            parsed = _number(value.value, _tok_span(self.filename, value))
        else:
            parsed = value.value
        return ast.Setting(key.value, parsed, self._span(meta), _tok_span(self.filename, value))

    @v_args(meta=True)
    def op_setting(self, meta, children):
        key, value = children
        span = self._span(meta)
        if isinstance(value, ast.Name):
            parsed = value.name  # a word such as `same`
        else:
            parsed = _constant(value)
            if not math.isfinite(parsed) or abs(parsed) > MAX_VALUE:
                raise ArchError(f"this value is too large ({parsed:.3g})", value.span)
        return ast.Setting(key.value, parsed, span, value.span)

    @v_args(meta=True)
    def params(self, meta, children):
        return _Params(c for c in children if c is not None)

    @v_args(meta=True)
    def param(self, meta, children):
        name = self._name(children[0], "parameter name")
        default = children[1] if len(children) > 1 else None
        return ast.Param(name, default, self._span(meta))

    def _head(self, children):
        name_tok = children[0]
        rest = list(children[1:])
        params = ()
        if rest and isinstance(rest[0], _Params):
            params = tuple(rest.pop(0))
        elif rest and rest[0] is None:
            rest.pop(0)
        return name_tok, params, rest

    @v_args(meta=True)
    def def_line(self, meta, children):
        name_tok, params, rest = self._head(children)
        (expr,) = rest
        span = self._span(meta)
        line = ast.Line(None, expr, span)
        return ast.Def(self._name(name_tok, "def name"), params, (line,), span,
                       _tok_span(self.filename, name_tok))

    @v_args(meta=True)
    def def_block(self, meta, children):
        name_tok, params, body = self._head(children)
        for line in body:
            if isinstance(line, ast.Outputs):
                raise ArchError("a def has one output, its last line's: `output` lines belong to a network",
                                line.span, hint="refer to an earlier line with @name to make it the def's output")
            if isinstance(line, ast.Line) and line.aux:
                raise ArchError("auxiliary heads belong to a network, not a def", line.span,
                                hint="write the head as an `aux NAME = ...` line of the network that uses the def")
        return ast.Def(self._name(name_tok, "def name"), params, tuple(body), self._span(meta),
                       _tok_span(self.filename, name_tok))

    @v_args(meta=True)
    def network(self, meta, children):
        name_tok, params, rest = self._head(children)
        (shape, shape_span), body = rest[0], [c for c in rest[1:] if c is not None]
        for line in body[:-1]:
            if isinstance(line, ast.Outputs):
                raise ArchError("the `output` line ends a network: no line can follow it", line.span,
                                hint="move it to the end of the network")
        return ast.Network(self._name(name_tok, "network name"), params, shape, shape_span,
                           tuple(body), self._span(meta), _tok_span(self.filename, name_tok))

    @v_args(meta=True)
    def input_line(self, meta, children):
        tok = children[0]
        span = _tok_span(self.filename, tok)
        if tok.type == "NUMBER" and not re.fullmatch(r"[0-9]+", tok.value):
            raise ArchError("an input shape is made of whole numbers", span,
                            hint="write C×H×W as 3x224x224, or a feature count as 128")
        dims = tuple(_whole(d, span) for d in tok.value.split("x"))
        if len(dims) not in (1, 2, 3):
            raise ArchError(
                f"an input shape is CxHxW, SxD (tokens) or a feature count, not {len(dims)} dimensions",
                span, hint="the batch dimension is implicit: write 3x224x224, 197x768 or 128")
        if any(d < 1 for d in dims):
            raise ArchError("every input dimension must be at least 1", span)
        if any(d > MAX_VALUE for d in dims):
            raise ArchError(f"an input dimension is over the limit of {MAX_VALUE:,}", span)
        return (dims, span)

    @v_args(meta=True)
    def labelled_line(self, meta, children):
        label_tok, expr = children
        return ast.Line(self._name(label_tok, "label"), expr, self._span(meta),
                        _tok_span(self.filename, label_tok))

    @v_args(meta=True)
    def aux_line(self, meta, children):
        _, label_tok, expr = children
        return ast.Line(self._name(label_tok, "label"), expr, self._span(meta),
                        _tok_span(self.filename, label_tok), aux=True)

    @v_args(meta=True)
    def output_line(self, meta, children):
        spans = [(tok.value[1:], _tok_span(self.filename, tok)) for tok in children[1:] if tok is not None]
        return ast.Outputs(tuple(ast.Ref(name, (), span, span) for name, span in spans), self._span(meta))

    @v_args(meta=True)
    def plain_line(self, meta, children):
        return ast.Line(None, children[0], self._span(meta))

    # ---- layer expressions ----

    @v_args(meta=True)
    def sum(self, meta, children):
        return ast.Sum(tuple(children), self._span(meta))

    @v_args(meta=True)
    def prod(self, meta, children):
        return ast.Product(tuple(children), self._span(meta))

    @v_args(meta=True)
    def seq(self, meta, children):
        return ast.Seq(tuple(children), self._span(meta))

    @v_args(meta=True)
    def rep(self, meta, children):
        body = children[0]
        start = body.span
        for count, count_span in children[1:]:
            span = Span(self.filename, start.line, start.column, count_span.end_line, count_span.end_column)
            body = ast.Repeat(body, count, span, count_span)
        return body

    @v_args(meta=True)
    def repeat_literal(self, meta, children):
        tok = children[0]
        span = _tok_span(self.filename, tok)
        return ast.Num(_whole(tok.value[1:], span), span), span

    @v_args(meta=True)
    def repeat_times(self, meta, children):
        return children[1], self._span(meta)

    @v_args(meta=True)
    def repeat_expr(self, meta, children):
        return children[1], self._span(meta)

    @v_args(meta=True)
    def concat(self, meta, children):
        return ast.Concat(tuple(children), self._span(meta))

    @v_args(meta=True)
    def call(self, meta, children):
        name = children[0]
        return ast.Call(name.value, _args(children[1:]), self._span(meta), _tok_span(self.filename, name))

    @v_args(meta=True)
    def ref(self, meta, children):
        tok = children[0]
        return ast.Ref(tok.value[1:], _args(children[1:]), self._span(meta), _tok_span(self.filename, tok))

    @v_args(meta=True)
    def bracket_call(self, meta, children):
        name = children[0]
        items = tuple(c for c in children[1:] if isinstance(c, ast.BracketItem))
        args = _args([c for c in children[1:] if not isinstance(c, ast.BracketItem)])
        return ast.BracketCall(name.value, items, args, self._span(meta), _tok_span(self.filename, name))

    @v_args(meta=True)
    def bracket_item(self, meta, children):
        return ast.BracketItem(children[0].value, _args(children[1:]), self._span(meta))

    # ---- arguments and values ----

    @v_args(meta=True)
    def positional(self, meta, children):
        return ast.Positional(children[0], self._span(meta))

    @v_args(meta=True)
    def stride(self, meta, children):
        return ast.Stride(children[0], self._span(meta))

    @v_args(meta=True)
    def keyword(self, meta, children):
        return ast.Keyword(children[0].value, children[1], self._span(meta))

    @v_args(meta=True)
    def arith(self, meta, children):
        return self._fold(children)

    @v_args(meta=True)
    def product(self, meta, children):
        return self._fold(children)

    def _fold(self, children):
        left = children[0]
        for i in range(1, len(children), 2):
            op, right = children[i], children[i + 1]
            span = Span(self.filename, left.span.line, left.span.column, right.span.end_line, right.span.end_column)
            left = ast.BinOp(op.value, left, right, span)
        return left

    def number(self, children):
        tok = children[0]
        span = _tok_span(self.filename, tok)
        return ast.Num(_number(tok.value, span), span)

    def name(self, children):
        tok = children[0]
        return ast.Name(tok.value, _tok_span(self.filename, tok))

    @v_args(meta=True)
    def func(self, meta, children):
        name = children[0].value[:-1]
        args = tuple(children[1:])
        span = self._span(meta)
        want = FUNCTIONS[name]
        if len(args) != want:
            raise ArchError(f"{name}() takes {want} value{'s' if want != 1 else ''}, not {len(args)}", span,
                            hint=FUNCTION_HINTS[name])
        return ast.Func(name, args, span)

    def in_attr(self, children):
        tok = children[0]
        return ast.InAttr(tok.value[3:], _tok_span(self.filename, tok))


def _args(args) -> tuple:
    """A call's arguments, refusing a stride glued to the value before it: `in.c/2` reads as
    `in.c` then stride 2, while its author may well have meant half the channels (`in.c//2`)."""
    for before, arg in itertools.pairwise(args):
        if isinstance(arg, ast.Stride) and isinstance(before, ast.Positional | ast.Keyword) \
                and (before.span.end_line, before.span.end_column) == (arg.span.line, arg.span.column):
            raise _glued_stride(before, arg)
    return tuple(args)


_HALVES = {"c": "the channels", "h": "the height", "w": "the width"}


def _glued_stride(before: ast.Positional | ast.Keyword, stride: ast.Stride) -> ArchError:
    line = source_line(stride.span.filename, stride.span.line) or ""
    written = line[before.span.column - 1:before.span.end_column - 1]  # `in.c`, `groups=c`, `(c*2)`
    prefix = ""
    if isinstance(before, ast.Keyword):
        cut = written.index("=") + 1
        cut += len(written[cut:]) - len(written[cut:].lstrip())
        prefix, written = written[:cut], written[cut:]
    right = line[stride.value.span.column - 1:stride.value.span.end_column - 1]
    value = before.value
    what = _HALVES.get(value.attr, written) if isinstance(value, ast.InAttr) else written
    divided = f"half {'of ' * (what == written)}{what}" if right == "2" else f"{what} divided by {right}"
    span = Span(stride.span.filename, before.span.line, before.span.column, stride.span.end_line,
                stride.span.end_column)
    glued = line[before.span.column - 1:stride.span.end_column - 1]
    return ArchError(f"'/' right after a value is ambiguous: `{glued}` reads as {written} and then stride {right}",
                     span, hint=f"did you mean {prefix}{written}//{right} ({divided}) or {prefix}{written} /{right} "
                                f"(stride {right})?")


def _constant(v) -> int | float:
    """The number a setting's value expression stands for (`1-0.9997`): numbers only."""
    if isinstance(v, ast.Num):
        return v.value
    if isinstance(v, ast.BinOp):
        a, b = _constant(v.left), _constant(v.right)
        if v.op == "//" and b == 0:
            raise ArchError("division by zero", v.span)
        return ast.apply_op(v.op, a, b)
    raise ArchError("a setting's value is a number, a word or arithmetic on numbers", v.span,
                    hint="settings apply to the whole file (or network), where no parameter is in scope")


def _whole(digits: str, span: Span) -> int:
    if len(digits.lstrip("0")) > MAX_DIGITS:
        raise ArchError(f"this number has {len(digits):,} digits; values are at most {MAX_VALUE:,}", span)
    return int(digits)


def _number(text: str, span: Span) -> int | float:
    if re.fullmatch(r"[0-9]+", text):
        return _whole(text, span)
    return float(text)  # no digit limit: a huge one is inf, which evaluation reports as too large


def _friendly(err: UnexpectedInput, filename: str) -> ArchError:
    if isinstance(err, UnexpectedCharacters):
        span = Span(filename, err.line, err.column)
        char = err.char
        if char == "-":
            return ArchError("unexpected '-': values in arguments cannot be negative", span)
        if char == "\\":
            return ArchError("unexpected '\\'", span,
                             hint="a line continues by itself inside ( ) and [ ]; there is no '\\' continuation")
        return ArchError(f"unexpected character {char!r}", span)
    if isinstance(err, UnexpectedEOF):
        return ArchError("the file ends in the middle of a statement", Span(filename, err.line, err.column))
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    expected = set(err.expected) | set(getattr(err, "accepts", None) or ())
    if len(expected) > 1:
        expected.discard("_NL")  # the layout post-lexer lets newlines through everywhere
    if tok.type == "$END":
        span = Span(filename, max(1, tok.line or 1), max(1, tok.column or 1))
        return ArchError(f"the file ends too soon: expected {_words(expected)}", span)
    span = _tok_span(filename, tok)
    if tok.type == "_INDENT":
        return ArchError("unexpected indentation", Span(filename, tok.end_line or tok.line, (tok.end_column or 1)),
                         hint="only the lines of a def or network body are indented")
    if expected - {"_NL"} == {"INPUT"}:
        return ArchError("a network's first line must be `input SHAPE`", span,
                         hint="for example: input 3x224x224")
    if tok.type == "ADD_OP" and tok.value == "-" and "ADD_OP" not in expected:
        return ArchError("unexpected '-': values here cannot be negative", span)
    if tok.type == "XREP" and "NAME" in expected:
        return ArchError(f"'{tok.value}' is reserved: names x<digits> mean a repeat", span)
    if tok.type == "SHAPE":
        return ArchError(f"unexpected shape '{tok.value}'", span,
                         hint="a repeat after a number needs a space: 64 x2; shapes go after `input`")
    if tok.type == "_NL" and expected <= {"LPAR", "NAME", "LSQB", "REF"} | {"NUMBER", "IN_ATTR"}:
        return ArchError("the line ends where a layer or value was expected", span)
    what = TERMINAL_WORDS.get(tok.type, repr(tok.value))
    if tok.type in ("NAME", "NUMBER"):
        what = f"{tok.type.lower()} '{tok.value}'"
    return ArchError(f"unexpected {what}; expected {_words(expected)}", span)


def parse(text: str, filename: str = "<string>") -> ast.File:
    """Parse one file's text into an ast.File; raise ArchError on any mistake.  A UTF-8 byte-order
    mark at the start is dropped (columns count from after it)."""
    text = text.removeprefix("\ufeff")
    remember_source(filename, text)
    if len(text) > MAX_SOURCE_BYTES:
        raise ArchError(f"file is larger than {MAX_SOURCE_BYTES:,} characters", whole_file(filename))
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    lark = _lark()
    try:
        tree = lark.parse(text)
        result = _ToAst(filename).transform(tree)
    except LayoutError as err:
        span = Span(filename, err.line, err.column, err.line, err.end_column)
        raise ArchError(err.message, span, hint=err.hint) from None
    except VisitError as err:
        if isinstance(err.orig_exc, ArchError):
            raise err.orig_exc from None
        raise
    except UnexpectedInput as err:
        raise _friendly(err, filename) from None
    return result
