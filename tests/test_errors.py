"""The bad-input corpus: every tests/errors/*.arch fails with its golden diagnostic
(FILE:LINE:COL, source line, caret, hint), through the CLI with exit 1 and no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archlang
from archlang import ArchError

HERE = Path(__file__).parent / "errors"
CASES = sorted(p.stem for p in HERE.glob("*.arch"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES)
def test_diagnostic_matches_golden(case, golden, monkeypatch):
    monkeypatch.chdir(HERE)
    start = time.perf_counter()
    with pytest.raises(ArchError) as info:
        archlang.compile_file(f"{case}.arch")
    elapsed = time.perf_counter() - start
    err = info.value
    assert err.line >= 1 and err.column >= 1 and err.filename.endswith(".arch")
    golden(HERE / f"{case}.err", str(err) + "\n")
    assert elapsed < 1.0, f"{case} took {elapsed:.2f}s"


@pytest.mark.parametrize("case", ["unknown_op", "tab_indent", "use_cycle", "node_budget", "not_utf8", "empty_file"])
def test_cli_exit_code_and_no_traceback(case):
    proc = subprocess.run([sys.executable, "-m", "archlang", "check", f"{case}.arch"], cwd=HERE,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert re.match(r"[\w/.]+\.arch:\d+:\d+: error: ", proc.stderr)
    assert proc.stdout == ""

