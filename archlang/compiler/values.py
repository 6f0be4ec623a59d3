"""Value expressions: what `c*2`, `in.c//4` or `n-1` stand for in a scope (Env)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from archlang.compiler import symbolic
from archlang.compiler.ir import Layout, TensorType
from archlang.compiler.loader import DEFAULT_SETTINGS, Unit
from archlang.compiler.symbolic import Sym, Unstageable, concrete
from archlang.errors import ArchError, Span, did_you_mean, source_line
from archlang.frontend import ast

MAX_VALUE = 10**12


@dataclass(frozen=True)
class Env:
    unit: Unit  # whose defs are visible, and whose file-level settings apply
    values: dict[str, int | float]  # params in scope
    inp: TensorType | None  # what `in` means here
    net_settings: dict[str, str]  # `set` lines of the network in force
    calls: tuple[tuple[str, Span], ...] = ()
    body: Any = None  # the labels of the body being elaborated, for `@label` (archlang.compiler.elaborate.Body)

    def setting(self, key: str) -> str:
        return self.net_settings.get(key) or self.unit.settings.get(key) or DEFAULT_SETTINGS[key]

    def op_default(self, op: str, key: str):
        """The default `set OP.KEY = VALUE` gives an op's argument here; None if none does."""
        name = f"{op}.{key}"
        if name in self.net_settings:
            return self.net_settings[name]
        return self.unit.settings.get(name)


def evaluate(v: ast.Value, env: Env) -> int | float:
    """The number a value expression stands for in `env` (params, `in`)."""
    if isinstance(v, ast.Num):
        result = v.value
    elif isinstance(v, ast.Name):
        if v.name not in env.values:
            raise ArchError(f"unknown name '{v.name}'", v.span,
                            hint=did_you_mean(v.name, env.values) or _params_hint(env))
        result = env.values[v.name]
    elif isinstance(v, ast.InAttr):
        result = _in_attr(v, env)
    elif isinstance(v, ast.Func):
        result = _function(v, [evaluate(a, env) for a in v.args])
    else:
        left, right = evaluate(v.left, env), evaluate(v.right, env)
        if v.op == "//" and concrete(right) == 0:
            raise ArchError("division by zero", v.span)
        result = ast.apply_op(v.op, left, right)
    if isinstance(result, float) and result != result:  # NaN
        raise ArchError("this value is not a number", v.span)
    if abs(result) > MAX_VALUE:
        raise ArchError(f"this value is too large ({result:.3g})", v.span)
    return result


def make_divisible(v, divisor: int) -> int:
    """`v` rounded to the nearest multiple of `divisor` (at least `divisor`), and up one step where
    rounding down would lose more than 10%: the rule of torchvision's `_make_divisible`, which
    MobileNet and EfficientNet use to scale widths."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _function(f: ast.Func, args: list):
    if any(isinstance(a, Sym) for a in args):
        if f.name in ("min", "max"):  # Python's own min and max compute it in a constructor
            return symbolic.function(f.name, args)
        # a constructor would need the rounding too; the module is specialised instead
        raise Unstageable(f"{f.name}() of a parameter")
    if f.name == "ceil":
        return math.ceil(args[0])
    if f.name == "floor":
        return math.floor(args[0])
    if f.name == "min":
        return min(args)
    if f.name == "max":
        return max(args)
    value, divisor = args
    if isinstance(divisor, float) and not divisor.is_integer() or divisor < 1:
        raise ArchError(f"make_divisible needs a whole divisor of at least 1, not {divisor:g}", f.args[1].span)
    return make_divisible(value, int(divisor))


def count(v: ast.Value, env: Env, what: str) -> int:
    """A value that must be a whole number ≥ 0: a repeat count, a width."""
    n = evaluate(v, env)
    if isinstance(n, Sym):  # staged: the count stays an expression; its value is checked
        if isinstance(n.value, float):
            if not n.value.is_integer():
                raise ArchError(f"{what} must be a whole number, not {n.value:g}", v.span)
            raise Unstageable(f"the count `{n}` is a float")
        if n.value < 0:
            raise ArchError(f"{what} cannot be negative ({n.value})", v.span)
        return n  # type: ignore[return-value]
    if isinstance(n, float):
        if not n.is_integer():
            raise ArchError(f"{what} must be a whole number, not {n:g}", v.span)
        n = int(n)
    if n < 0:
        raise ArchError(f"{what} cannot be negative ({n})", v.span)
    return n


def is_flag_word(v: ast.Value, env: Env) -> bool:
    """A bare word that names no value in scope: a flag such as `same`, `nobias`, `bn`."""
    return isinstance(v, ast.Name) and v.name not in env.values


_REPEAT_COUNT = re.compile(r"[ \t]+([0-9]+|\([^()\n]*\))")


def repeat_hint(word: str, span: Span) -> str | None:
    """`did you mean x2 (repeat twice)?` for the word `x` of `conv3x3 16 x 2`: a space split a repeat."""
    if word != "x":
        return None
    count = _REPEAT_COUNT.match(source_line(span.filename, span.line) or "", (span.end_column or 1) - 1)
    if count is None:
        return "a repeat is x and its count with no space between: x2, x(n-1)"
    times = {"1": "once", "2": "twice"}.get(count.group(1), f"{count.group(1)} times")
    return f"did you mean x{count.group(1)} (repeat {times})?"


def _params_hint(env: Env) -> str:
    if env.values:
        return "names in scope here: " + ", ".join(sorted(env.values))
    return "no parameters are in scope here"


def _in_attr(v: ast.InAttr, env: Env) -> int:
    if v.attr not in ("c", "h", "w", "s"):
        raise ArchError(f"'in' has c, h, w and s, not '{v.attr}'", v.span)
    inp = env.inp
    if inp is None:
        raise ArchError("'in' is not defined here", v.span, hint="in.c means the width entering a call or line")
    has = {Layout.VECTOR: "c", Layout.TOKENS: "cs", Layout.IMAGE: "chw", Layout.GRID: "chw",
           Layout.WINDOWS: "cs"}[inp.layout]
    if v.attr not in has:
        raise ArchError(f"in.{v.attr} is undefined: the input here is {inp.layout.the} {inp}", v.span,
                        hint=f"it has {', '.join('in.' + a for a in has)}")
    return getattr(inp, v.attr)
