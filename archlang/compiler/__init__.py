"""The compiler: loads files (loader), expands them into IR graphs (elaborate, with values,
binding, replay and the lowering rules), and runs the passes (archlang.compiler.passes).
`load_file`/`load_source` then `compile_units` are its entry points; it never imports torch."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from archlang.compiler.elaborate import Elaborator
from archlang.compiler.ir import NetworkIR
from archlang.compiler.loader import Loader, Unit
from archlang.compiler.passes import run_passes
from archlang.compiler.resolve import check_names
from archlang.compiler.staging import Origin
from archlang.compiler.values import MAX_VALUE, Env, evaluate
from archlang.errors import ArchError, ArchWarning, Note, did_you_mean, whole_file
from archlang.frontend import ast

RECURSION_LIMIT = 20_000


class OverrideError(ArchError):
    """A bad `--set` (unknown parameter or value): a usage error rather than a compile error."""


_INTEGER = re.compile(r"[-+]?[0-9]+")
_DECIMAL = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")


def parse_override(text: str) -> int | float:
    """The number a `--set KEY=VALUE` value spells: ASCII digits only (not `٣`, not `1_0`)."""
    if _INTEGER.fullmatch(text):
        if len(text.lstrip("+-0")) > 13:
            raise ValueError(f"'{text[:20]}{'...' if len(text) > 20 else ''}' is over the limit of {MAX_VALUE:,}")
        return int(text)
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"'{text}' is not a number (write it with the digits 0-9, e.g. 10, 0.5 or 1e-3)")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"'{text}' is not a finite number")
    return value


def _check_value(value: Any) -> int | float:
    """A parameter's value from --set or the API: a finite int or float within the limit."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError(f"{value} is not a finite number")
    if abs(value) > MAX_VALUE:
        raise ValueError(f"{value:.3g} is over the limit of {MAX_VALUE:,}")
    return value


def _arguments(net: ast.Network, unit: Unit, overrides: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for p in net.params:
        if p.name in overrides:
            raw = overrides[p.name]
            try:
                values[p.name] = _check_value(parse_override(raw) if isinstance(raw, str) else raw)
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
            warning = input_layout_warning(net)
            try:
                ir = run_passes(Elaborator(net, unit, args, plain=plain).run())
            except ArchError as err:  # what went wrong may well be the input's layout
                if warning is not None:
                    err.notes.append(Note(f"{warning.message}; {warning.hint}", warning.span))
                raise
            if warning is not None:
                ir.warnings.append(warning)
            ir.origin = Origin(net, unit, frozenset(k for k in overrides if k in args), plain)
            result[net.name] = ir
        check_names(unit)  # names in code no network expanded: uncalled defs, ×0 repeats
    finally:
        sys.setrecursionlimit(old)
    return result


def input_layout_warning(net: ast.Network) -> ArchWarning | None:
    """`input 224x224x3` is an image written HxWxC: archlang reads C×H×W, so it would be 224
    channels of 224x3.  Warned when the last dimension is 1 or 3 and the first two are large."""
    if len(net.input_shape) != 3:
        return None
    c, h, w = net.input_shape
    if w not in (1, 3) or min(c, h) < 16:
        return None
    return ArchWarning(f"input {c}x{h}x{w} reads as {c} channels of {h}x{w}", net.input_span,
                       hint=f"input is CxHxW: did you mean {w}x{c}x{h}?")


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
