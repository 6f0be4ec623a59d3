"""The syntax tree of an .arch file: frozen dataclasses, each keeping its source span, under a
File whose lists the parser fills (the one mutable node)."""

from __future__ import annotations

from dataclasses import dataclass, field

from archlang.errors import Span

# ---- value expressions (arguments, repeat counts, defaults) ----


@dataclass(frozen=True)
class Num:
    value: int | float
    span: Span


@dataclass(frozen=True)
class Name:
    name: str
    span: Span


@dataclass(frozen=True)
class InAttr:
    """`in.c`, `in.h` or `in.w`: the shape entering the innermost def call (or the line)."""

    attr: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * //
    left: Value
    right: Value
    span: Span


@dataclass(frozen=True)
class Func:
    """`ceil(x)`, `floor(x)`, `min(a, b)`, `max(a, b)`, `make_divisible(v, d)`."""

    name: str
    args: tuple[Value, ...]
    span: Span


Value = Num | Name | InAttr | BinOp | Func

# ---- call arguments ----


@dataclass(frozen=True)
class Positional:
    """A positional value, or a bare word (param if one is in scope, else a flag)."""

    value: Value
    span: Span


@dataclass(frozen=True)
class Stride:
    value: Value
    span: Span


@dataclass(frozen=True)
class Keyword:
    key: str
    value: Value
    span: Span


Arg = Positional | Stride | Keyword

# ---- layer expressions ----


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class BracketItem:
    head: str  # "1x1", "3x3", "pool", ...
    args: tuple[Arg, ...]
    span: Span


@dataclass(frozen=True)
class BracketCall:
    """`inception[1x1 64, 3x3 128 reduce=96, pool 32] bn`."""

    name: str
    items: tuple[BracketItem, ...]
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Seq:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Sum:
    branches: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Product:
    """`a & b`: branches on the same input, multiplied elementwise with broadcasting (a gate)."""

    branches: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Concat:
    branches: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Repeat:
    body: Expr
    count: Value
    span: Span
    count_span: Span


@dataclass(frozen=True)
class Ref:
    """`@enc4`: the output of the earlier line labelled `enc4` in the same body (`@input`: the
    body's input), whatever the input here; `@enc4 crop` / `@enc4 pad` as a branch of a concat or
    a sum fits it and the other branches to one height and width."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


Expr = Call | BracketCall | Seq | Sum | Product | Concat | Repeat | Ref

# ---- statements ----


@dataclass(frozen=True)
class Line:
    label: str | None
    expr: Expr
    span: Span
    label_span: Span | None = None
    aux: bool = False  # `aux NAME = ...`: an auxiliary head, computed in training only; the chain goes on past it


@dataclass(frozen=True)
class Outputs:
    """`output @logits, @aux2, @aux1`: what the network returns, in order (the last line of a network)."""

    refs: tuple[Ref, ...]
    span: Span


@dataclass(frozen=True)
class Setting:
    key: str
    value: str | int | float
    span: Span
    value_span: Span


@dataclass(frozen=True)
class Use:
    path: str
    span: Span


@dataclass(frozen=True)
class Param:
    name: str
    default: Value | None
    span: Span


@dataclass(frozen=True)
class Def:
    name: str
    params: tuple[Param, ...]
    body: tuple[Line | Setting, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Network:
    name: str
    params: tuple[Param, ...]
    input_shape: tuple[int, ...]
    input_span: Span
    body: tuple[Line | Setting | Outputs, ...]
    span: Span
    name_span: Span


@dataclass
class File:
    filename: str
    uses: list[Use] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    defs: list[Def] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2}


def apply_op(op: str, left, right):
    """`left op right` for a BinOp's operator (the caller rules out a division by zero)."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left // right


def value_text(v: Value) -> str:
    """A value expression as source text: `in.c*2`, `(n-1)//2`, `1e-05`."""
    if isinstance(v, Num):
        return str(v.value) if isinstance(v.value, int) else f"{v.value:g}"
    if isinstance(v, Name):
        return v.name
    if isinstance(v, InAttr):
        return f"in.{v.attr}"
    if isinstance(v, Func):
        return f"{v.name}({', '.join(value_text(a) for a in v.args)})"
    left, right = value_text(v.left), value_text(v.right)
    if isinstance(v.left, BinOp) and _PRECEDENCE[v.left.op] < _PRECEDENCE[v.op]:
        left = f"({left})"
    if isinstance(v.right, BinOp) and _PRECEDENCE[v.right.op] <= _PRECEDENCE[v.op]:
        right = f"({right})"
    return f"{left}{v.op}{right}"
