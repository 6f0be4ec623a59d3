"""`archc fmt`: the canonical layout (archlang.frontend.format), written only when it provably
changes nothing but the layout: the formatted text must parse to the same program and, when
the file compiles, compile to the same IR (NetworkIR.fingerprint: every node's op, attributes,
shapes, role, name and inputs, and every block)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archlang.errors import ArchError, whole_file
from archlang.frontend.format import format_source, without_positions
from archlang.frontend.parser import parse


class FormatError(ArchError):
    """The formatter would change the program: a bug in archc, and the file is left alone."""


@dataclass
class Formatted:
    path: Path
    original: str
    text: str

    @property
    def changed(self) -> bool:
        return self.text != self.original


def _ir_summary(source: str, filename: str, base: Path) -> list | None:
    from archlang.api import compile as compile_source

    try:
        program = compile_source(source, filename, base=base)
    except ArchError:
        return None  # a file that does not compile (or holds only defs): the parsed program decides
    return [net.ir.fingerprint() for net in program]


def format_file(path: Path) -> Formatted:
    """The canonical text of `path`; raises ArchError if it does not parse, FormatError if
    formatting would change what it means."""
    from archlang.compiler.loader import read_source

    original = read_source(path)
    filename = str(path)
    program = parse(original, filename)  # only a file that parses can be formatted
    text = format_source(original)
    if text != original:
        if without_positions(program) != without_positions(parse(text, filename)):
            raise FormatError("formatting would change this file's program; it was left unchanged "
                              "(a bug in archc fmt: please report it with this file)", whole_file(filename))
        before = _ir_summary(original, filename, path.parent)
        if before is not None and before != _ir_summary(text, filename, path.parent):
            raise FormatError("formatting would change this file's compiled network; it was left unchanged "
                              "(a bug in archc fmt: please report it with this file)", whole_file(filename))
    return Formatted(path, original, text)
