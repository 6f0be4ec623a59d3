"""Differential testing of the PyTorch emitter (issue 15, item 4): random valid programs
(tests/programs.py) through the public API, the IR's figures against the generated module
(tests/differential.py): the module builds and runs, its output shape, parameter count and
FlopCounterMode MACs equal the IR's, two builds are byte-identical, and `archc fmt`'s layout
compiles to the same networks.  A bounded run here; `make fuzz` runs thousands
(`python tests/fuzz.py --differential N`).

On failure the message gives, per failure class, the count, the exception with the line it was
raised from, one failing program and a minimal reproduction of it."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

torch = pytest.importorskip("torch")

import archlang  # noqa: E402
from tests.differential import NUMBERS, check, minimise  # noqa: E402
from tests.programs import ALL, SAFE, generate, random_overrides  # noqa: E402

PROGRAMS = 300
SEED0 = 0


@pytest.fixture
def one_thread():
    """The programs are tiny: one intra-op thread is faster, and leaves the other core alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def signature(finding) -> str:
    """The failure class of a finding: its kind and exception, names and numbers blanked."""
    where = finding.where.split(" at ", 1)
    text = re.sub(r"'[^']*('|$)", "'…'", where[0])
    text = re.sub(r"\d[\d,]*", "N", text)
    return f"{finding.kind}: {text}"


def run(seeds, features=ALL):
    """{class: [(seed, program, finding), ...]} over the programs of `seeds`."""
    classes = defaultdict(list)
    for seed in seeds:
        program = generate(seed, features).text
        seen = set()
        for finding in check(program):
            sig = signature(finding)
            if sig not in seen:
                seen.add(sig)
                classes[sig].append((seed, program, finding))
    return classes


def report(classes, total: int, *, repros: int = 3, programs: bool = True) -> str:
    failing = len({seed for cases in classes.values() for seed, _, _ in cases})
    lines = [f"{failing} of {total} generated programs fail, in {len(classes)} classes "
             "(wrong numbers first):"]
    order = sorted(classes, key=lambda s: (s.split(":")[0] not in NUMBERS, -len(classes[s])))
    for i, sig in enumerate(order):
        seed, program, finding = classes[sig][0]
        lines.append(f"\n== {sig}  ({len(classes[sig])} programs; first: seed {seed})\n   {finding}")
        if i < repros:
            if programs:
                lines.append("-- program:\n" + program)
            lines.append("-- minimal reproduction:\n" + minimise(program, finding.kind, budget=80))
    return "\n".join(lines)


def test_generator_is_deterministic_and_mostly_valid():
    drawn = [generate(seed) for seed in range(SEED0, SEED0 + 100)]
    assert [g.text for g in drawn] == [generate(seed).text for seed in range(SEED0, SEED0 + 100)]
    assert sum(g.attempts for g in drawn) <= 120  # at least ~83% of draws compile
    assert len({g.text for g in drawn}) == 100


def test_generator_covers_the_language():
    text = "\n".join(generate(seed).text for seed in range(SEED0, SEED0 + PROGRAMS))
    for pattern in [
        r"conv1x1", r"conv3x3", r"conv5x5", r"conv(1x3|3x1|1x7|7x1|2x2)", r"groups=", r"dilation=", r"padding=\d",
        r"conv\S* [^\n>|]*\bsame", r"conv\S* [^\n>|]*\bvalid", r"\bnobias\b", r"\bbias\b", r"/2", r"stride=",
        r"\bdense\b", r"\bfc\b", r"\blinear\b", r"out=", r"bn eps=", r"momentum=", r"\blrn\b", r"lrn size=",
        *[rf"\b{a}\b" for a in ("relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "softmax")],
        r"maxpool\dx\d", r"avgpool\dx\d", r"pool\S* /1", r"\bgap\b", r"\bflatten\b", r"dropout \d", r"dropout p=",
        r"set padding = same", r"set padding = valid", r"set bias = (on|off)", r"set shortcut = (pad|always)",
        r"^set ", r"^    set ", r"\| skip\b", r"skip pad", r"skip project", r"skip optional", r"\[[^\]\n]*skip",
        r"inception\[", r"inception\[[^\]]*\] bn", r"reduce=", r"inception\[[^\]]*pool",
        r" x\d", r" x\(", r"×\d", r"× ", r"x\(1\+1\)", r"^def \w+\(", r"^def \w+ =", r"^def [^\n]*:\n    ",
        r"=in\.c", r"in\.c", r"in\.[hw]", r"[a-z]\*\d", r"//", r"\w\+\d", r"\w-\d", r"\w+=\w", r"^network \w+\(",
        r"^    [a-z_]\w*\(?[^=\n]*$",  # unlabelled lines
        r"^    (class|import|lambda|None) = ", r"^    (forward|training|to|state_dict) = ",
        r"(_modules|_parameters|__dict__|__class__|__init__|__call__) = ", r"^    __[a-z]\w* = ",
        r"network \w+\([^)]*Block=", r"\bZeroPadShortcut\b", r"\b(torch|nn|self|x) = ",
        r"\btokens\b", r"\bclass_token\b", r"\bpos_embedding\b", r"\btoken( \d)?\b", r"\bmha \d", r"mha heads=",
        r"mha [^\n>|]*dropout=", r"tokens[^\n]*\| skip", r"tokens[^\n]*\[",
        r"= @\w+ > ", r"\[@\w+", r"\[skip, @\w+", r"@\w+ crop", r"@\w+ pad", r"\| @\w+", r"^    aux \w+ = ",
        r"^    aux \w+ = @\w+", r"^    output @\w+, @",
    ]:
        assert re.search(pattern, text, re.M), f"no generated program matches {pattern!r}"


def test_generated_modules_agree_with_the_ir(one_thread):
    classes = run(range(SEED0, SEED0 + PROGRAMS))
    if classes:
        pytest.fail(report(classes, PROGRAMS), pytrace=False)


def test_without_hostile_names_or_unlabelled_lines(one_thread):
    """The same property on plain programs: a failure here is not about names."""
    classes = run(range(10_000, 10_100), SAFE)
    if classes:
        pytest.fail(report(classes, 100), pytrace=False)


def test_constructor_parameters_agree_with_recompiling(one_thread):
    """Random `--set` overrides passed to the generated class's constructor give the module that
    compiling with them gives: the same state_dict shapes, and the same outputs with the same
    weights.  A program whose structure depends on a value in a way the staged emitter cannot
    write (docs/language.md, "The generated module") gets the specialised module, whose
    constructor refuses other values with a ValueError that says how to rebuild."""
    failures, tried, specialised = [], 0, 0
    for seed in range(SEED0, SEED0 + 250):
        program = generate(seed).text
        for net in archlang.compile(program, "gen.arch"):
            if not net.arguments:
                continue
            overrides = None
            for k in range(8):
                candidate = random_overrides(net, seed * 10 + k)
                try:
                    net.with_arguments(**candidate)
                except archlang.ArchError:
                    continue
                overrides = candidate
                break
            if not overrides:
                continue
            generated = type(net.to_torch())
            python = {net.ir.parameter_names[k]: v for k, v in overrides.items()}  # `class` → `class_`
            if "rebuild it with archc build --set" in net.source():
                specialised += 1
                if any(net.arguments[k] != v for k, v in overrides.items()):
                    with pytest.raises(ValueError, match="was compiled for"):
                        generated(**python)
                continue
            tried += 1
            try:
                expected = net.to_torch(**overrides).eval()
                got = generated(**python).eval()
                shapes = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
                assert {k: tuple(v.shape) for k, v in got.state_dict().items()} == shapes, "state_dict shapes"
                got.load_state_dict(expected.state_dict())
                x = torch.randn(2, *net.with_arguments(**overrides).input_shape)
                with torch.no_grad():
                    torch.testing.assert_close(got(x), expected(x))
            except Exception as err:  # noqa: BLE001
                failures.append(f"seed {seed}, network {net.name}, the generated class(**{overrides!r}): "
                                f"{type(err).__name__}: {str(err).splitlines()[0][:200]}\n"
                                f"{program}")
                if len(failures) >= 5:
                    break
        if len(failures) >= 5:
            break
    assert not failures, "\n\n".join(failures)
    # measured over 200 seeds before issue 16: 105 staged, 71 specialised (most of those repeat a
    # body other than one def call a parameter's number of times, which the generator writes
    # often); with the generator of issue 16 (products, new ops, value functions, whose rounding
    # functions of a parameter also fall back) over 200 seeds: 81 staged, 94 specialised
    assert tried >= 100 and specialised <= 0.6 * (tried + specialised), (tried, specialised)


def test_an_output_line_of_several_main_outputs_is_checked_as_a_tuple(one_thread):
    """In eval mode a network with several outputs that are not heads returns a tuple; the check
    compares each shape (it reported a shape mismatch for every such network)."""
    text = """\
network n:
    input 4x8x8
    a = conv3x3 8 same > relu
    b = gap > dense 3
    c = @a > gap > dense 5
    output @b, @input, @c
"""
    assert check(text) == []
