"""Property tests: grammar-generated programs and mutated specs either compile or raise an
ArchError carrying a span; nothing else, ever (no crash, no RecursionError, no hang)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark import Lark

import archlang
from archlang import ArchError
from archlang.errors import render
from archlang.frontend.parser import grammar_text
from tests.conftest import SPECS

SPEC_TEXTS = {p.name: p.read_text() for p in sorted(SPECS.glob("*.arch")) if "use " not in p.read_text()}

_GRAMMAR = Lark(grammar_text(), parser="lalr")
_WS = st.sampled_from([" ", "  "])
PROGRAMS = from_lark(_GRAMMAR, explicit={
    "_INDENT": st.just("    "),
    "_DEDENT": st.just(""),
    "_NL": st.sampled_from(["\n", "\n    ", "\n\n", "  # c\n"]),
    "NAME": st.sampled_from(["relu", "conv3x3", "bn", "dense", "skip", "a", "c", "n", "same", "x", "block",
                             "in", "maxpool2x2", "inception", "gap", "stride", "pool"]),
    "NUMBER": st.sampled_from(["0", "1", "2", "3", "16", "0.5", "1e-5", "100000000000000000000"]),
    "SHAPE": st.sampled_from(["3x8x8", "1x1", "3x3", "16", "2x2x2x2", "0x4x4"]),
    "STRING": st.sampled_from(['"missing.arch"', '"x.py"', '""']),
})


def _check(source: str) -> None:
    try:
        archlang.compile(source, "fuzz.arch")
    except ArchError as err:
        assert err.filename == "fuzz.arch"
        assert err.line >= 1 and err.column >= 1
        assert render(err).startswith(f"fuzz.arch:{err.line}:{err.column}: error: ")




@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(PROGRAMS)
def test_grammar_generated_programs(source):
    _check(source)


@st.composite
def mutated_spec(draw):
    name = draw(st.sampled_from(sorted(SPEC_TEXTS)))
    text = SPEC_TEXTS[name]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate_line", "swap_lines", "truncate"]))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        if kind == "delete":
            j = draw(st.integers(i, min(len(text), i + 8)))
            text = text[:i] + text[j:]
        elif kind == "insert":
            piece = draw(st.sampled_from(["(", ")", "[", "]", ",", ">", "|", "x2", "×0", " ", "\t", "\n", "    ",
                                          "/", "=", "in.c", "skip", "0", "99999", "#", "\x00", "é", "x(", "//0"]))
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1:]
        elif kind == "truncate":
            text = text[:i]
        else:
            lines = text.split("\n")
            a = draw(st.integers(0, len(lines) - 1))
            b = draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate_line":
                lines.insert(b, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_spec())
def test_mutated_specs(source):
    _check(source)


def test_pathological_inputs():
    for source in [
        "",
        "\n" * 1000,
        "network n:\n    input 4\n" + "    relu\n" * 5000,
        "network n:\n    input 4\n    " + " > ".join(["relu"] * 20000) + "\n",
        "network n:\n    input 4\n    relu" + " x2" * 40 + "\n",
        "network n:\n    input 4\n    " + "[" * 60 + "relu" + "]" * 60 + "\n",
        "network n:\n    input 4\n    dense " + "+".join(["1"] * 5000) + "\n",
        "network n:\n    input 4\n    dense 99999999999999999999999\n",
        "network n:\n    input 1x1000000000x1000000000\n    conv3x3 1000000\n",
        "\ufeffnetwork n:\n    input 4\n    relu\n",
    ]:
        _check(source)
