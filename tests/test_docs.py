"""docs/language.md is tested: every ```arch block compiles, every `# → SHAPE` on a network line
is that line's output shape, every `# total: P params, M MACs` line is the network's totals, and
every block marked `<!-- error -->` fails with exactly the diagnostic in the ```text block after it."""

from __future__ import annotations

import re

import pytest

import archlang
from archlang import ArchError
from archlang.frontend.format import format_source
from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "language.md"
BLOCK = re.compile(r"(<!-- error -->\n)?```arch\n(.*?)```(?:\n+```text\n(.*?)```)?", re.S)


def _blocks() -> list[tuple[int, str, bool, str | None]]:
    text = GUIDE.read_text()
    out = []
    for m in BLOCK.finditer(text):
        line = text[: m.start()].count("\n") + 1
        out.append((line, m.group(2), bool(m.group(1)), m.group(3)))
    return out


BLOCKS = _blocks()


def test_the_guide_has_examples():
    # guards the extraction itself: a change of the fences would otherwise test nothing
    assert sum(1 for b in BLOCKS if not b[2]) >= 14
    assert sum(1 for b in BLOCKS if b[2]) >= 9


def _numbers(text: str) -> int:
    return int(text.replace(",", ""))


def _annotations(source: str):
    """(line index, network, kind, text) for every `# → SHAPE` and `# total: ...` comment."""
    current = None
    for i, line in enumerate(source.split("\n")):
        head = re.match(r"network (\w+)", line)
        if head:
            current = head.group(1)
        shape = re.search(r"# → ([0-9x]+)\s*$", line)
        total = re.search(r"# total: ([0-9,]+) params(?:, ([0-9,]+) MACs)?", line)
        if shape or total:
            assert current, f"an annotation outside a network: {line!r}"
            yield i, current, ("shape", shape.group(1)) if shape else ("total", total.groups())


@pytest.mark.parametrize("line, source, is_error, expected", [b for b in BLOCKS if not b[2]],
                         ids=[f"line{b[0]}" for b in BLOCKS if not b[2]])
def test_example_compiles_to_what_the_guide_says(line, source, is_error, expected):
    program = archlang.compile(source, "example.arch")
    assert format_source(source) == source, f"docs/language.md:{line}: not in the layout archc fmt writes"
    lines = source.split("\n")
    for i, name, (kind, value) in _annotations(source):
        where = f"docs/language.md:{line + 1 + i}"
        if kind == "total":
            net = program[name]
            assert net.params == _numbers(value[0]), f"{where}: {name} has {net.params:,} params"
            if value[1]:
                assert net.macs == _numbers(value[1]), f"{where}: {name} has {net.macs:,} MACs"
        else:  # the network cut after this line: its output is the line's output
            cut = "\n".join(lines[: i + 1]) + "\n"
            net = archlang.compile(cut, "example.arch", network=name)[name]
            shape = net.outputs[-1][1] if lines[i].strip().startswith("aux ") else net.output_shape  # a head's own
            got = "x".join(map(str, shape))
            assert got == value, f"{where}: {lines[i].strip()!r} gives {got}"


@pytest.mark.parametrize("line, source, is_error, expected", [b for b in BLOCKS if b[2]],
                         ids=[f"line{b[0]}" for b in BLOCKS if b[2]])
def test_error_example_gives_the_diagnostic_shown(line, source, is_error, expected):
    assert expected, f"docs/language.md:{line}: an error example needs the ```text diagnostic after it"
    with pytest.raises(ArchError) as info:
        archlang.compile(source, "example.arch")
    assert str(info.value) + "\n" == expected
