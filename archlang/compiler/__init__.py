"""The compiler: loads files (loader), expands them into IR graphs (elaborate, with values,
binding, replay and the lowering rules), and runs the passes (archlang.compiler.passes).
`load_file`/`load_source` then `compile_units` are its entry points; it never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from archlang.compiler.elaborate import Elaborator
from archlang.compiler.ir import NetworkIR
from archlang.compiler.loader import Loader, Unit
from archlang.compiler.passes import run_passes
from archlang.compiler.values import Env, evaluate
from archlang.errors import ArchError, did_you_mean, whole_file
from archlang.frontend import ast

RECURSION_LIMIT = 20_000


class OverrideError(ArchError):
    """A bad `--set` (unknown parameter or value): a usage error rather than a compile error."""


def parse_override(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"'{text}' is not a finite number")
    return value


def _arguments(net: ast.Network, unit: Unit, overrides: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for p in net.params:
        if p.name in overrides:
            raw = overrides[p.name]
            try:
                values[p.name] = parse_override(raw) if isinstance(raw, str) else raw
            except ValueError as err:
                raise OverrideError(f"--set {p.name}: {err}", net.name_span) from None
        elif p.default is not None:
            values[p.name] = evaluate(p.default, Env(unit, dict(values), None, {}))
        else:
            raise OverrideError(f"network {net.name} needs a value for '{p.name}'", p.span,
                                hint=f"pass it with --set {p.name}=VALUE")
    return values


def compile_units(unit: Unit, main_file: str, overrides: dict[str, Any] | None = None,
                  plain: bool = False, only: str | None = None) -> dict[str, NetworkIR]:
    overrides = dict(overrides or {})
    nets = unit.file.networks
    if not nets:
        raise ArchError("no network in this file", whole_file(main_file),
                        hint="a file compiles its `network NAME:` blocks; this one has none (defs alone "
                             "are for `use`)")
    if only is not None:
        chosen = [n for n in nets if n.name == only]
        if not chosen:
            names = [n.name for n in nets]
            raise OverrideError(f"no network '{only}' in {main_file}", whole_file(main_file),
                                hint=did_you_mean(only, names) or f"networks: {', '.join(names) or 'none'}")
        nets = chosen
    known = {p.name for n in nets for p in n.params}
    for key in overrides:
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise OverrideError(f"--set {key}: no network here has a parameter '{key}'", whole_file(main_file),
                                hint=(did_you_mean(key, known) or "") + f" (parameters: {valid})")
    result = {}
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, RECURSION_LIMIT))
    try:
        for net in nets:
            args = _arguments(net, unit, {k: v for k, v in overrides.items() if k in {p.name for p in net.params}})
            result[net.name] = run_passes(Elaborator(net, unit, args, plain=plain).run())
    finally:
        sys.setrecursionlimit(old)
    return result


def load_source(text: str, filename: str = "<string>", base: Path | None = None) -> Unit:
    return _with_limit(lambda: Loader().load_text(text, filename, base))


def load_file(path: str | Path) -> Unit:
    return _with_limit(lambda: Loader().load_path(Path(path)))


def _with_limit(fn):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, RECURSION_LIMIT))
    try:
        return fn()
    finally:
        sys.setrecursionlimit(old)
