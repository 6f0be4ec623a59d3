"""Argument binding: the arguments of a call (`conv3x3 64 /2 same`, `basic c /stride`) matched
to what the op or def accepts.  One loop serves both; they differ only in what a bare word
means (an op's flag; a def takes none) and in the words of their errors."""

from __future__ import annotations

from typing import Any

from archlang.compiler.ops import ArgError, OpSpec, arg_keys
from archlang.compiler.symbolic import Sym, Unstageable
from archlang.compiler.values import Env, evaluate, is_flag_word, repeat_hint
from archlang.errors import ArchError, Span, did_you_mean
from archlang.frontend import ast


class _OpTarget:
    def __init__(self, spec: OpSpec, call: ast.Call):
        self.spec, self.name = spec, call.name
        self.keys = arg_keys(spec)
        self.positional = list(spec.positional)

    def flag(self, arg: ast.Positional, env: Env) -> tuple[str, Any]:
        word = arg.value.name
        if word not in self.spec.flags:
            hint = repeat_hint(word, arg.span) or did_you_mean(word, [*self.spec.flags, *env.values])
            flags = ", ".join(self.spec.flags) if self.spec.flags else "none"
            raise ArchError(f"'{word}' is neither a parameter in scope nor a flag of {self.name}",
                            arg.span, hint=hint or f"flags of {self.name}: {flags}")
        return self.spec.flags[word]

    def too_many(self, arg: ast.Arg) -> ArchError:
        n = len(self.spec.positional)
        return ArchError(f"{self.name} takes {n or 'no'} positional argument{'s' if n != 1 else ''}", arg.span)

    def no_stride(self, arg: ast.Arg) -> ArchError:
        return ArchError(f"{self.name} has no stride", arg.span)

    def unknown_key(self, key: str, arg: ast.Arg) -> ArchError:
        known = ", ".join(self.keys) or "none"
        return ArchError(f"{self.name} has no argument '{key}'", arg.span,
                         hint=did_you_mean(key, self.keys) or f"arguments of {self.name}: {known}")

    def twice(self, key: str, arg: ast.Arg, first: Span) -> ArchError:
        return ArchError(f"'{key}' is given twice to {self.name} (first at {first})", arg.span)

    def check(self, key: str, value: Any, arg: ast.Arg) -> Any:
        try:
            if isinstance(value, Sym):  # staged: check the value, keep the expression
                checked = self.keys[key].check(value.value)
                # a float where a whole number goes (a whole number where a float goes is fine)
                if type(checked) is not type(value.value) and not (
                        isinstance(checked, float) and isinstance(value.value, int)):
                    raise Unstageable(f"`{value}` converted from {type(value.value).__name__}")
                return value
            return self.keys[key].check(value)
        except ArgError as err:
            raise ArchError(f"{self.name}: {key} {err}", arg.span) from None


class _DefTarget:
    def __init__(self, d: ast.Def):
        self.name = d.name
        self.keys = [p.name for p in d.params]
        self.positional = list(self.keys)
        self.signature = f"{d.name}({', '.join(self.keys)})"

    def flag(self, arg: ast.Positional, env: Env) -> tuple[str, Any]:
        word = arg.value.name
        raise ArchError(f"unknown name '{word}'", arg.span,
                        hint=repeat_hint(word, arg.span) or did_you_mean(word, env.values)
                        or f"a def takes values, not flags: {self.signature}")

    def too_many(self, arg: ast.Arg) -> ArchError:
        return ArchError(f"too many arguments for {self.signature}", arg.span)

    def no_stride(self, arg: ast.Arg) -> ArchError:
        return ArchError(f"{self.signature} has no stride parameter, so `/` cannot be used", arg.span)

    def unknown_key(self, key: str, arg: ast.Arg) -> ArchError:
        return ArchError(f"{self.signature} has no parameter '{key}'", arg.span, hint=did_you_mean(key, self.keys))

    def twice(self, key: str, arg: ast.Arg, first: Span) -> ArchError:
        return ArchError(f"'{key}' is given twice to {self.name}", arg.span)

    def check(self, key: str, value: Any, arg: ast.Arg) -> Any:
        return value


def _bind(target, args: list[ast.Arg], env: Env) -> dict[str, Any]:
    given: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    positional = target.positional
    for arg in args:
        if isinstance(arg, ast.Positional) and is_flag_word(arg.value, env):
            key, value = target.flag(arg, env)
        else:
            if isinstance(arg, ast.Positional):
                if not positional:
                    raise target.too_many(arg)
                key = positional.pop(0)
            elif isinstance(arg, ast.Stride):
                if "stride" not in target.keys:
                    raise target.no_stride(arg)
                key = "stride"
            else:
                key = arg.key
                if key not in target.keys:
                    raise target.unknown_key(key, arg)
            if key in positional:
                positional.remove(key)
            value = evaluate(arg.value, env)
            if key not in given:
                value = target.check(key, value, arg)
        if key in given:
            raise target.twice(key, arg, spans[key])
        given[key] = value
        spans[key] = arg.span
    return given


def bind_op(spec: OpSpec, call: ast.Call, env: Env) -> dict[str, Any]:
    """The arguments `call` gives the op: flags set their target, values are checked."""
    return _bind(_OpTarget(spec, call), call.args, env)


def bind_def(d: ast.Def, call: ast.Call, env: Env) -> dict[str, Any]:
    """The values `call` gives the def's parameters (defaults are the caller's to fill)."""
    return _bind(_DefTarget(d), call.args, env)
