"""Layout rules of the lexer: indentation into _INDENT/_DEDENT, brackets, tabs, nesting limits.

A post-lexer in the manner of lark's Indenter, written here so that every layout mistake
(a tab, a dedent to no known level, an unclosed or stray bracket) becomes an ArchError.
"""

from __future__ import annotations

from collections.abc import Iterator

from lark import Token


class LayoutError(Exception):
    """A layout mistake found while lexing; the parser adds the filename and makes it an ArchError."""

    def __init__(self, message: str, line: int, column: int, end_column: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.line, self.column, self.end_column, self.hint = message, line, column, end_column, hint

OPENERS = {"LPAR": "(", "LSQB": "[", "XREP_OPEN": "(", "FUNC_OPEN": "("}
CLOSERS = {"RPAR": "(", "RSQB": "["}
MAX_BRACKET_DEPTH = 64


class Layout:
    """Post-lexer: drops newlines inside brackets and turns indentation into block tokens."""

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        indents = [0]
        brackets: list[Token] = []
        last = None
        for tok in stream:
            last = tok
            if tok.type == "_NL":
                if brackets:
                    continue
                yield tok
                indent_text = tok.value.rsplit("\n", 1)[-1]
                if "\t" in indent_text:
                    col = indent_text.index("\t") + 1
                    raise LayoutError("tab in indentation", tok.end_line, col,
                                      hint="indent with spaces (4 per level is recommended)")
                indent = len(indent_text)
                if indent > indents[-1]:
                    indents.append(indent)
                    yield Token.new_borrow_pos("_INDENT", indent_text, tok)
                else:
                    levels = list(indents)
                    while indent < indents[-1]:
                        indents.pop()
                        yield Token.new_borrow_pos("_DEDENT", indent_text, tok)
                    if indent != indents[-1]:
                        raise LayoutError(
                            "this line's indentation matches no enclosing block", tok.end_line, indent + 1,
                            hint="indent it like an enclosing line: by "
                                 + " or ".join(str(i) for i in levels) + " spaces")
                continue
            if tok.type in OPENERS:
                brackets.append(tok)
                if len(brackets) > MAX_BRACKET_DEPTH:
                    raise LayoutError(f"brackets nested more than {MAX_BRACKET_DEPTH} deep", tok.line, tok.column)
            elif tok.type in CLOSERS:
                want = CLOSERS[tok.type]
                if not brackets:
                    raise LayoutError(f"'{tok.value}' closes nothing", tok.line, tok.column)
                opener = brackets.pop()
                if OPENERS[opener.type] != want:
                    raise LayoutError(
                        f"'{tok.value}' does not match the '{opener.value[-1]}' "
                        f"opened at {opener.line}:{opener.column}",
                        tok.line, tok.column)
            yield tok
        if brackets:
            opener = brackets[-1]
            raise LayoutError(f"'{opener.value[-1]}' is never closed", opener.line, opener.column)
        while len(indents) > 1:
            indents.pop()
            if last is not None:
                yield Token.new_borrow_pos("_DEDENT", "", last)
