"""`archc fmt`: canonical, idempotent, comment-keeping, and never a change of meaning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import archlang
from archlang import ArchError
from archlang.cli import main
from archlang.formatting import _ir_summary
from archlang.frontend.format import format_source, same_ast
from tests.conftest import ROOT, SPECS
from tests.test_fuzz import PROGRAMS, mutated_spec

SOURCES = sorted(SPECS.rglob("*.arch")) + [ROOT / "bench" / "cifar_resnet.arch"]
GOLDEN = ROOT / "tests" / "golden" / "fmt"


def _comments(text: str) -> list[str]:
    return [m.group().rstrip() for m in re.finditer(r"#[^\n]*", text)]


def _check_round_trip(text: str, filename: str = "t.arch", base: Path | None = None) -> str:
    out = format_source(text)
    assert format_source(out) == out, "not idempotent"
    assert same_ast(text, out, filename)
    assert _comments(out) == _comments(text)
    before = _ir_summary(text, filename, base or ROOT)
    if before is not None:
        assert _ir_summary(out, filename, base or ROOT) == before
    return out


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_spec_is_already_canonical(path):
    text = path.read_text()
    assert _check_round_trip(text, str(path), path.parent) == text


def test_messy_file_golden(golden):
    messy = (GOLDEN / "messy.arch").read_text()
    golden(GOLDEN / "messy.formatted.arch", _check_round_trip(messy))


def _respace(text: str, draw) -> str:
    """The same program with other whitespace: spaces around tokens, another indent width,
    × for repeats, blank-line runs, CRLF line ends and trailing blanks."""
    indent = draw(st.sampled_from(["  ", "    ", "        ", "\t"[:0] + "   "]))
    out_lines = []
    for line in text.split("\n"):
        body = line.lstrip(" ")
        lead = len(line) - len(body)
        code, sep, comment = body.partition("#")
        code = re.sub(r" ?(>|\||,|=) ?", lambda m: draw(st.sampled_from(["", " ", "  "])) + m.group(1)
                      + draw(st.sampled_from(["", " ", "  "])), code) if '"' not in code else code
        code = re.sub(r"(?<= )x([0-9]+)\b", lambda m: draw(st.sampled_from(["x", "×", "× "])) + m.group(1), code)
        new = indent * (lead // 4) + " " * (lead % 4) + code + sep + comment
        out_lines.append(new + draw(st.sampled_from(["", " ", "\t"])))
        if not line.strip() and draw(st.booleans()):
            out_lines.append("")
    return draw(st.sampled_from(["\n", "\r\n"])).join(out_lines)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SOURCES), st.data())
def test_any_layout_of_a_spec_formats_back_to_it(path, data):
    text = path.read_text()
    messy = _respace(text, data.draw)
    try:
        archlang.frontend.parser.parse(messy, "m.arch")
    except ArchError:  # a respacing that broke the layout rules (e.g. `=` glued into a name)
        return
    assert format_source(messy) == text


def _round_trip_if_it_parses(source: str) -> None:
    try:
        archlang.frontend.parser.parse(source, "t.arch")
    except ArchError:
        return  # fmt formats only what parses
    _check_round_trip(source)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(PROGRAMS)
@example("\n#\r0")  # a lone \r inside a comment is not a line end (found by this test)
def test_grammar_generated_programs_round_trip(source):
    _round_trip_if_it_parses(source)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_spec())
def test_mutated_specs_that_parse_round_trip(source):
    _round_trip_if_it_parses(source)


# ---- the command ----

def test_fmt_check_diff_and_write(tmp_path, capsys):
    messy = tmp_path / "m.arch"
    clean = tmp_path / "c.arch"
    messy.write_text((GOLDEN / "messy.arch").read_text())
    clean.write_text((GOLDEN / "messy.formatted.arch").read_text())
    assert main(["fmt", "--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"would reformat {messy}" in err and "1 file would be reformatted, 1 unchanged" in err
    assert main(["fmt", "--diff", str(messy)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"--- {messy} (now)\n+++ {messy} (formatted)\n") and "+set padding = same" in out
    assert messy.read_text() == (GOLDEN / "messy.arch").read_text()  # --check and --diff write nothing
    assert main(["fmt", str(messy), str(clean)]) == 0
    assert f"reformatted {messy}" in capsys.readouterr().err
    assert messy.read_text() == clean.read_text()
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_refuses_what_does_not_parse(tmp_path, capsys):
    bad = tmp_path / "bad.arch"
    bad.write_text("network n:\n    input 4\n    dense 8 >\n")
    assert main(["fmt", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "^" in err and "0 unchanged, 1 with errors" in err
    assert bad.read_text() == "network n:\n    input 4\n    dense 8 >\n"


def test_fmt_leaves_a_stride_glued_to_a_value_alone(tmp_path, capsys):
    path = tmp_path / "g.arch"
    text = "network n:\n    input 64x8x8\n    conv1x1 in.c/2\n"
    path.write_text(text)
    assert main(["fmt", str(path)]) == 1  # neither `in.c //2` nor `in.c//2`: the author says which
    err = capsys.readouterr().err
    assert f"{path}:3:13: error:" in err and "did you mean in.c//2" in err
    assert path.read_text() == text


def test_fmt_refuses_to_change_the_program(tmp_path, capsys, monkeypatch):
    import archlang.formatting as formatting

    path = tmp_path / "n.arch"
    path.write_text("network n:\n    input 4\n    dense  8\n")
    monkeypatch.setattr(formatting, "format_source", lambda text: text.replace("8", "9"))
    assert main(["fmt", str(path)]) == 1
    assert "formatting would change this file's program; it was left unchanged" in capsys.readouterr().err
    assert path.read_text() == "network n:\n    input 4\n    dense  8\n"


def test_fmt_does_not_import_torch(tmp_path):
    (tmp_path / "n.arch").write_text("network n:\n  input 4\n  dense 8\n")
    code = (f"import sys, archlang.cli as c; rc = c.main(['fmt', {str(tmp_path)!r}]);"
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "n.arch").read_text() == "network n:\n    input 4\n    dense 8\n"


def test_a_repeat_counted_by_a_function_becomes_ascii():
    from archlang.frontend.format import format_source

    text = "network n(d=2):\n    input 4\n    relu × ceil(d*1.5) > tanh ×max(d, 1)\n"
    assert format_source(text) == "network n(d=2):\n    input 4\n    relu x(ceil(d*1.5)) > tanh x(max(d, 1))\n"
