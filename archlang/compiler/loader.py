"""Files → units: reads .arch files, follows `use`, and builds each file's namespace of defs
and its file-level settings.  Catches use cycles, missing files and duplicate names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from archlang.errors import ArchError, Span, did_you_mean, remember_source, whole_file
from archlang.frontend import ast
from archlang.frontend.parser import MAX_SOURCE_BYTES, parse
from archlang.frontend.reading import ReadError, TooLarge, read_bounded

SETTINGS = {
    "padding": ("same", "valid"),
    "shortcut": ("project", "pad", "always"),
    "bias": ("auto", "on", "off"),
    "shortcut_name": ("ws", "downsample"),
}
DEFAULT_SETTINGS = {"padding": "valid", "shortcut": "project", "bias": "auto", "shortcut_name": "ws"}
MAX_FILES = 256


@dataclass
class Unit:
    """One loaded file: its AST, the defs visible in it (own and used) and its settings."""

    file: ast.File
    defs: dict[str, tuple[ast.Def, Unit]] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)


def check_setting(setting: ast.Setting) -> None:
    if "." in setting.key:
        _check_op_default(setting)
        return
    if setting.key not in SETTINGS:
        raise ArchError(f"unknown setting '{setting.key}'", setting.span,
                        hint=did_you_mean(setting.key, SETTINGS) or f"settings are {', '.join(SETTINGS)}")
    allowed = SETTINGS[setting.key]
    if setting.value not in allowed:
        raise ArchError(f"'{setting.value}' is not a value of {setting.key}", setting.value_span,
                        hint=f"{setting.key} is one of {', '.join(allowed)}")


def _check_op_default(setting: ast.Setting) -> None:
    """`set bn.eps = 0.001`: a default for one argument of one op, in this file (or network)."""
    from archlang.compiler import ops

    op, key = setting.key.split(".")
    bare = ops.bare_kernel_op(op)
    found = ops.lookup(op) or ((bare, None) if bare else None)
    if found is None:
        hint = did_you_mean(op, ops.user_words())
        raise ArchError(f"'{op}' is not an op, so `set {setting.key}` sets nothing", setting.span,
                        hint=hint or "`set OP.ARG = VALUE` gives an argument of a built-in op a default")
    spec = found[0]
    if op != spec.name:  # an alias (`droppath`) or a size (`conv3x3`): defaults are the op's own
        raise ArchError(f"op defaults are set on the op itself: `set {spec.name}.{key}`, not `set {setting.key}`",
                        setting.span, hint=f"{op} is {spec.name}" + (" with a kernel size" if found[1] else ""))
    if key not in spec.args:
        known = ", ".join(spec.args) or "none"
        raise ArchError(f"{op} has no argument '{key}'", setting.span,
                        hint=did_you_mean(key, spec.args) or f"arguments of {op}: {known}")
    try:
        spec.args[key].check(setting.value)
    except ops.ArgError as err:
        raise ArchError(f"{op}: {key} {err}", setting.value_span) from None
    except (TypeError, ValueError):  # a word where the argument takes a number
        raise ArchError(f"{op}: {key} takes a number, not '{setting.value}'", setting.value_span,
                        hint="settings apply to the whole file (or network), where no parameter is in scope"
                        ) from None


# a file of MAX_SOURCE_BYTES characters takes at most 4 bytes a character in UTF-8
MAX_FILE_BYTES = 4 * MAX_SOURCE_BYTES


def read_source(path: Path, where: Span | None = None) -> str:
    """The text of an .arch file; a missing, unreadable or non-UTF-8 file is an ArchError, and so
    is anything but a regular file (a FIFO, a device) or a file over the size limit: both are
    checked before reading, and the read is bounded."""
    display = str(path)
    where = where or whole_file(display)
    try:
        data = read_bounded(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise ArchError(f"no such file: '{display}'", where) from None
    except TooLarge:
        raise ArchError(f"'{display}' is larger than {MAX_SOURCE_BYTES:,} characters", where) from None
    except ReadError as err:
        raise ArchError(f"cannot read '{display}': {err}", where) from None
    except OSError as err:
        raise ArchError(f"cannot read '{display}': {err.strerror or err}", where) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        remember_source(display, data.decode("utf-8", "replace"))
        raise ArchError("the file is not valid UTF-8", Span(display, line, col),
                        hint="save it as UTF-8 text") from None


class Loader:
    def __init__(self):
        self.units: dict[str, Unit] = {}
        self.loading: list[str] = []

    def load_text(self, text: str, filename: str, base: Path | None) -> Unit:
        return self._build(parse(text, filename), base)

    def load_path(self, path: Path, span: Span | None = None) -> Unit:
        key = os.path.realpath(path)  # never raises: a link loop fails when it is read
        if key in self.units:
            return self.units[key]
        display = str(path)
        where = span or whole_file(display)
        if path.suffix != ".arch":
            raise ArchError(f"can only use .arch files, not '{path.name}'", where)
        if key in self.loading:
            raise ArchError(f"'{display}' uses itself through a cycle of `use` lines", where)
        if len(self.units) >= MAX_FILES:
            raise ArchError(f"more than {MAX_FILES} files are used", where)
        text = read_source(path, where)
        self.loading.append(key)
        try:
            unit = self._build(parse(text, display), path.parent)
        finally:
            self.loading.pop()
        self.units[key] = unit
        return unit

    def _build(self, file: ast.File, base: Path | None) -> Unit:
        unit = Unit(file)
        for setting in file.settings:
            check_setting(setting)
            if setting.key in unit.settings and unit.settings[setting.key] != setting.value:
                raise ArchError(f"'{setting.key}' is set twice at file level", setting.span)
            unit.settings[setting.key] = setting.value
        own: dict[str, ast.Def] = {}
        for d in file.defs:
            self._claim(own, d.name, d.name_span, "def")
            own[d.name] = d
        seen_networks: dict[str, ast.Network] = {}
        for n in file.networks:
            self._claim(seen_networks, n.name, n.name_span, "network")
            seen_networks[n.name] = n
            if n.name in own:
                raise ArchError(f"'{n.name}' names both a def and a network", n.name_span)
        for d in file.defs:
            unit.defs[d.name] = (d, unit)
        for use in file.uses:
            path = Path(os.path.normpath((base or Path(".")) / use.path))
            used = self.load_path(path, use.span)
            for name, (d, home) in used.defs.items():
                if home is not used:
                    continue  # `use` is not transitive: only the used file's own defs
                if name in unit.defs and unit.defs[name][0] is not d:
                    raise ArchError(f"'{name}' is defined here and also in '{use.path}'",
                                    unit.defs[name][0].name_span if unit.defs[name][1] is unit else use.span)
                unit.defs[name] = (d, home)
        return unit

    @staticmethod
    def _claim(seen: dict, name: str, span: Span, what: str) -> None:
        if name in seen:
            first = seen[name]
            raise ArchError(f"duplicate {what} '{name}' (first defined at {first.name_span})", span)
