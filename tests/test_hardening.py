"""Regression tests for issue 19 (hardening round 2): hostile files, paths, names, checkpoints
and signals.  Each test names the item of the issue it holds down."""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import archlang
from archlang import ArchError
from tests.conftest import ROOT, SPECS

LENET = SPECS / "lenet5.arch"


def archc(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 60,
          stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, timeout=timeout, stdin=stdin)


def text_of(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


# ---- item 1: nothing archc reads may execute code (the grammar cache) ----


class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_1_a_pickle_at_the_old_grammar_cache_path_is_never_read(tmp_path):
    cache = tmp_path / "cache" / "archlang"
    cache.mkdir(parents=True)
    os.chmod(cache, 0o777)
    marker = tmp_path / "pwned"
    planted = _Planted()
    planted.marker = marker
    from archlang.frontend.parser import digest, grammar_text

    payload = pickle.dumps(planted)
    for name in (f"grammar-{digest(grammar_text())[:16]}.lark-cache", "grammar.lark-cache"):
        (cache / name).write_bytes(payload)
    os.mkfifo(cache / "grammar-fifo.lark-cache")
    before = sorted(p.name for p in cache.iterdir())
    proc = archc("check", str(LENET), env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)},
                 timeout=30)
    assert proc.returncode == 0, text_of(proc)
    assert not marker.exists()
    assert sorted(p.name for p in cache.iterdir()) == before  # nothing read, nothing written there
    assert not (tmp_path / ".cache").exists()


def test_1_shipped_grammar_tables_were_generated_from_this_grammar():
    from archlang.frontend import tables

    assert tables.up_to_date(), "run python -m archlang.frontend.tables"
    proc = subprocess.run([sys.executable, "-m", "archlang.frontend.tables", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _corpus() -> list[tuple[str, str]]:
    files = sorted(SPECS.glob("*.arch")) + sorted((ROOT / "tests" / "errors").glob("*.arch"))
    return [(p.name, p.read_bytes().decode("utf-8", "replace")) for p in files]


def test_1_the_shipped_tables_parse_exactly_as_the_grammar_does(monkeypatch):
    """The parser from grammar_tables.json and one analysed from grammar.lark give the same AST, or
    the same diagnostic, for every spec and every bad input of the error corpus."""
    from lark import Lark

    from archlang.frontend import parser
    from archlang.frontend.lexer import Layout

    assert parser.read_tables() is not None
    shipped = parser._lark()
    analysed = Lark(parser.grammar_text(), postlex=Layout(), **parser.TABLE_OPTIONS)
    assert shipped is not analysed

    def outcomes() -> list[tuple[str, str]]:
        out = []
        for name, text in _corpus():
            try:
                out.append(("ok", repr(parser.parse(text, name))))
            except ArchError as err:
                out.append(("error", str(err)))
        return out

    first = outcomes()
    monkeypatch.setattr(parser, "_lark", lambda: analysed)
    second = outcomes()
    assert first == second
    assert sum(kind == "error" for kind, _ in first) > 10 and sum(kind == "ok" for kind, _ in first) > 10
