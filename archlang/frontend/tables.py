"""The LALR tables of grammar.lark, generated once into the package as data
(archlang/frontend/grammar_tables.json), so that no run analyses the grammar and nothing is
cached on disk: archc unpickles nothing and runs no code it did not ship.

    python -m archlang.frontend.tables          # rewrite grammar_tables.json after a grammar change
    python -m archlang.frontend.tables --check  # exit 1 if it was not made from this grammar.lark

The tables are lark's own serialisation (`Lark.memo_serialize`, what lark's standalone generator
embeds) in JSON, with the two things JSON lacks spelt out: a dict with non-string keys is
{"\\u0000items": [[key, value], ...]}, a tuple {"\\u0000tuple": [...]}.  The parser
(archlang.frontend.parser._lark) uses them only when they were generated from the grammar.lark
beside them (the SHA-256 of its text) by the lark version installed; otherwise it analyses the
grammar itself, about 40 ms more a process.  lark numbers its tables in an order that varies
from run to run, so two generations of one grammar differ in their text, not in the parser they
make (tests/test_hardening.py checks that the shipped tables parse as the grammar does).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from archlang.frontend.parser import TABLE_OPTIONS, TABLES_PATH, digest, grammar_text, read_tables

_ITEMS, _TUPLE = "\x00items", "\x00tuple"


def _encode(value):
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {_ITEMS: [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in the grammar tables")


def decode_hook(obj: dict):
    """json.loads's object_hook undoing _encode."""
    if _ITEMS in obj:
        return dict((k, v) for k, v in obj[_ITEMS])
    if _TUPLE in obj:
        return tuple(obj[_TUPLE])
    return obj


def generate() -> str:
    """The text of grammar_tables.json for the grammar.lark and lark installed."""
    import lark
    from lark import Lark
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    from archlang.frontend.lexer import Layout

    text = grammar_text()
    parser = Lark(text, postlex=Layout(), **TABLE_OPTIONS)
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}  # given when loading
    tables = {"generated_by": "python -m archlang.frontend.tables", "grammar_sha256": digest(text),
              "lark_version": lark.__version__, "data": _encode(data), "memo": _encode(memo)}
    return json.dumps(tables, separators=(",", ":")) + "\n"


def up_to_date() -> bool:
    """Whether the shipped tables were generated from this grammar.lark by the lark installed."""
    return read_tables() is not None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--check" in argv:
        if not up_to_date():
            print(f"{TABLES_PATH} was not generated from this grammar.lark (or by another lark version): "
                  "run python -m archlang.frontend.tables", file=sys.stderr)
            return 1
        return 0
    Path(TABLES_PATH).write_text(generate(), encoding="utf-8")
    print(f"wrote {TABLES_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
