"""Bracket sugar: `NAME[item, item, ...] flags` expands by the rule registered for NAME.
Today one rule: `inception[1x1 64, 3x3 128 reduce=96, 5x5 32 reduce=16, pool 32]`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archlang.compiler import ops
from archlang.compiler.ir import Scope, ScopeKind
from archlang.compiler.values import count, is_flag_word
from archlang.errors import ArchError
from archlang.frontend import ast

if TYPE_CHECKING:
    from archlang.compiler.elaborate import Elaborator, Val
    from archlang.compiler.values import Env


@dataclass(frozen=True)
class Sugar:
    expand: Callable[..., Val]
    example: str  # the hint for a call written without brackets


def expand(el: Elaborator, b: ast.BracketCall, x: Val, env: Env, scope: Scope) -> Val:
    sugar = SUGAR.get(b.name)
    if sugar is None:
        raise ArchError(f"'{b.name}[...]': only {', '.join(SUGAR)} takes a bracketed branch list", b.name_span,
                        hint="for a concat of branches write [a, b] on its own")
    return sugar.expand(el, b, x, env, scope)


def _width(v: ast.Value, env: Env) -> int:
    n = count(v, env, "a width")
    if n < 1:
        raise ArchError("a width must be at least 1", v.span)
    return n


def _inception(el: Elaborator, b: ast.BracketCall, x: Val, env: Env, scope: Scope) -> Val:
    use_bn = False
    for arg in b.args:
        if (isinstance(arg, ast.Positional) and is_flag_word(arg.value, env) and arg.value.name == "bn"
                and not use_bn):
            use_bn = True
            continue
        raise ArchError("inception takes only the flag bn after its branches", arg.span)
    if not x.shape.is_image:
        raise ArchError(f"inception needs a CxHxW input, but gets {x.shape.layout.the} {x.shape}",
                        b.span)
    sub = el.open_scope(ScopeKind.CALL, b.span, scope, def_name="inception")
    vals = [_branch(el, item, x, env, el.open_scope(ScopeKind.BRANCH, item.span, sub), use_bn) for item in b.items]
    return el.concat_of(vals, list(b.items), b.span, sub)


def _branch(el: Elaborator, item: ast.BracketItem, x: Val, env: Env, scope: Scope, use_bn: bool) -> Val:
    width: int | None = None
    reduce: int | None = None
    for arg in item.args:
        if isinstance(arg, ast.Positional) and width is None and not is_flag_word(arg.value, env):
            width = _width(arg.value, env)
        elif isinstance(arg, ast.Keyword) and arg.key == "reduce" and reduce is None:
            reduce = _width(arg.value, env)
        else:
            raise ArchError("an inception branch takes a width and, for KxK, reduce=R", arg.span,
                            hint="for example: 3x3 128 reduce=96")
    span = item.span
    conv, bn, relu = ops.REGISTRY["conv"], ops.REGISTRY["bn"], ops.REGISTRY["relu"]

    def conv_act(v: Val, kernel, out: int | None, padding) -> Val:
        given = {"padding": padding}
        if out is not None:
            given["out"] = out
        v = el.apply(conv, kernel, given, v, span, scope, env)
        if use_bn:
            v = el.apply(bn, None, {}, v, span, scope, env)
        return el.apply(relu, None, {}, v, span, scope, env)

    if item.head == "pool":
        if reduce is not None:
            raise ArchError("a pool branch takes no reduce", span)
        v = el.apply(ops.REGISTRY["maxpool"], (3, 3), {"stride": 1, "padding": "same"}, x, span, scope, env)
        return v if width is None else conv_act(v, (1, 1), width, 0)
    dims = item.head.split("x")
    if len(dims) != 2 or not all(d.isdigit() for d in dims):
        raise ArchError(f"unknown inception branch '{item.head}'", span,
                        hint="branches are 1x1 C, KxK C [reduce=R], pool [C]")
    kernel = (int(dims[0]), int(dims[1]))
    if reduce is not None:
        if kernel == (1, 1):
            raise ArchError("a 1x1 branch takes no reduce", span)
        x = conv_act(x, (1, 1), reduce, 0)
    return conv_act(x, kernel, width, "same")


SUGAR: dict[str, Sugar] = {
    "inception": Sugar(_inception, "for example: inception[1x1 64, 3x3 128 reduce=96, 5x5 32 reduce=16, pool 32]"),
}
