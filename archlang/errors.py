"""User-facing diagnostics: the one error type (ArchError), its source span, and its rendering.

Every mistake in a user's `.arch` file becomes an ArchError carrying a Span; internal
invariants may assert, user input never does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A region of one source file; lines and columns are 1-based, the end is exclusive."""

    filename: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None
    whole: bool = False  # the whole file is at fault: shown as 1:1, no source line quoted

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


def whole_file(filename: str) -> Span:
    return Span(filename, 1, 1, whole=True)


@dataclass
class Note:
    """A secondary location shown under the main diagnostic (e.g. 'in def basic called at ...')."""

    message: str
    span: Span | None = None


class ArchError(Exception):
    """A mistake in an .arch program, with the place it was made.

    `str(err)` is the full rendered diagnostic: `FILE:LINE:COL: error: message`, the source
    line, a caret under the fault, then any notes and a hint.
    """

    def __init__(
        self,
        message: str,
        span: Span,
        hint: str | None = None,
        notes: list[Note] | None = None,
    ):
        self.message = message
        self.span = span
        self.hint = hint
        self.notes: list[Note] = list(notes or [])
        super().__init__(message)

    @property
    def filename(self) -> str:
        return self.span.filename

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def __str__(self) -> str:
        return render(self)


# Source texts by filename, so a diagnostic can quote the offending line.  Filled by the
# front end as it reads files; rendering never re-reads the disk.
_SOURCES: dict[str, str] = {}


def remember_source(filename: str, text: str) -> None:
    _SOURCES[filename] = text


def source_line(filename: str, line: int) -> str | None:
    """Line `line` of a remembered source, counted as the parser counts: only `\\n` ends a line
    (a form feed, U+0085 or U+2028 does not); the `\\r` of a `\\r\\n` is not part of the line."""
    text = _SOURCES.get(filename)
    if text is None:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts none
    if 1 <= line <= len(lines):
        return lines[line - 1].removesuffix("\r")
    return None


def _quote(span: Span) -> list[str]:
    text = source_line(span.filename, span.line)
    if text is None or span.whole:
        return []
    text = text.replace("\t", " ")
    width = 1
    if span.end_line == span.line and span.end_column and span.end_column > span.column:
        width = span.end_column - span.column
    width = max(1, min(width, len(text) - span.column + 1))
    gutter = f"{span.line:>4} | "
    pad = " " * (len(gutter) - 2) + "| "
    return [gutter + text, pad + " " * (span.column - 1) + "^" + "~" * (width - 1)]


@dataclass(frozen=True)
class ArchWarning:
    """Something in an .arch program that compiles but is likely not what its author meant
    (an input written HxWxC): `FILE:LINE:COL: warning: message`, the line, a caret and a hint.
    The CLI prints warnings to stderr; they never change the exit code."""

    message: str
    span: Span
    hint: str | None = None
    notes: tuple[Note, ...] = ()

    def __str__(self) -> str:
        return render(self, "warning")


def render(err: ArchError | ArchWarning, severity: str = "error") -> str:
    out = [f"{err.span}: {severity}: {err.message}"]
    out += _quote(err.span)
    for note in err.notes:
        where = f"{note.span}: " if note.span else ""
        out.append(f"  note: {where}{note.message}")
    if err.hint:
        out.append(f"  hint: {err.hint}")
    return "\n".join(out)


class OutputError(Exception):
    """An output archc cannot write (a full disk, a path under a file, no permission) or will not
    overwrite (a file it did not write): `archc: error: MESSAGE`, exit 1."""


def did_you_mean(name: str, candidates) -> str | None:
    """A 'did you mean X?' hint for a misspelt name, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else None
