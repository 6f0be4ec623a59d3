"""The long fuzz run (`make fuzz`): the strategies of tests/test_fuzz.py, many more cases, plus
raw byte mutations of every spec read through compile_file.  The property is the same: each
case compiles, or raises ArchError with a span in the file; anything else (another exception, a
RecursionError, a case over the time limit) is a finding.  Findings are collected, not fatal,
so one run reports all of them; the summary goes to docs/fuzzing.md.

The differential part (tests/test_differential.py, many more programs) generates random valid
programs (tests/programs.py) and checks each generated PyTorch module against the IR
(tests/differential.py); its failures are counted by class, each with a minimal reproduction.

    python tests/fuzz.py [--grammar N] [--mutations N] [--differential N] [--only-differential] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import archlang  # noqa: E402
from archlang import ArchError  # noqa: E402
from archlang.errors import render  # noqa: E402
from tests.test_fuzz import PROGRAMS, SPEC_TEXTS, mutated_spec  # noqa: E402

CASE_LIMIT_S = 5


class _Slow(Exception):
    pass


def _alarm(signum, frame):
    raise _Slow


class Findings:
    def __init__(self):
        self.cases = Counter()
        self.seconds = Counter()
        self.errors = Counter()  # cases that raised ArchError (the expected outcome for bad input)
        self.found: dict[str, tuple[str, str]] = {}  # signature → (strategy, example)
        self.slowest = (0.0, "")

    def check(self, strategy: str, run, example: str) -> None:
        self.cases[strategy] += 1
        t0 = time.perf_counter()
        signal.alarm(CASE_LIMIT_S)
        try:
            run()
        except ArchError as err:
            self.errors[strategy] += 1
            if not (err.line >= 1 and err.column >= 1 and render(err).startswith(f"{err.span}: error: ")):
                self._record(strategy, "ArchError without a usable span", example)
        except _Slow:
            self._record(strategy, f"over {CASE_LIMIT_S} s", example)
        except Exception as err:  # noqa: BLE001 - every other exception is a finding
            frame = traceback.extract_tb(err.__traceback__)[-1]
            self._record(strategy, f"{type(err).__name__} at {Path(frame.filename).name}:{frame.lineno}", example)
        finally:
            signal.alarm(0)
        took = time.perf_counter() - t0
        self.seconds[strategy] += took
        if took > self.slowest[0]:
            self.slowest = (took, strategy)

    def _record(self, strategy: str, signature: str, example: str) -> None:
        if signature not in self.found:
            self.found[signature] = (strategy, example)
            print(f"\n  finding: {signature}\n  {example[:300]!r}", flush=True)


def _compile_text(text: str):
    return lambda: archlang.compile(text, "fuzz.arch")


def _compile_bytes(data: bytes, folder: Path):
    def run():
        path = folder / "fuzz.arch"
        path.write_bytes(data)
        archlang.compile_file(path)
    return run


@st.composite
def mutated_bytes(draw):
    """A spec's UTF-8 bytes with bytes flipped, inserted, deleted or truncated."""
    data = bytearray(SPEC_TEXTS[draw(st.sampled_from(sorted(SPEC_TEXTS)))].encode())
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


def _run(strategy_name: str, strategy, n: int, check) -> None:
    t0 = time.perf_counter()

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def loop(example):
        check(example)
        done = findings.cases[strategy_name]
        if done % 1000 == 0:
            print(f"\r  {strategy_name}: {done:,}/{n:,} cases, {len(findings.found)} findings, "
                  f"{time.perf_counter() - t0:.0f} s", end="", flush=True)

    loop()
    print(f"\r  {strategy_name}: {findings.cases[strategy_name]:,} cases in {time.perf_counter() - t0:.0f} s"
          + " " * 20, flush=True)


findings = Findings()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grammar", type=int, default=5_000,
                        help="grammar-generated cases (default: 5,000; generating one takes ~50 ms)")
    parser.add_argument("--mutations", type=int, default=30_000,
                        help="cases for each of text and byte mutation (default: 30,000)")
    parser.add_argument("--differential", type=int, default=3_000,
                        help="generated programs checked against their PyTorch modules (default: 3,000; ~0.1 s each)")
    parser.add_argument("--seed", type=int, default=100_000, help="first seed of the differential programs")
    parser.add_argument("--only-differential", action="store_true",
                        help="run only the differential part (rewrites only its section of docs/fuzzing.md)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/fuzzing.md")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    if args.only_differential:
        section = _differential(args.differential, args.seed)
        if not args.no_write:
            _write_section(section)
        return 0
    print(f"fuzzing archlang {archlang.__version__}: {args.grammar:,} grammar cases, {args.mutations:,} "
          "text and byte mutations", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _run("grammar", PROGRAMS, args.grammar,
             lambda src: findings.check("grammar", _compile_text(src), src))
        _run("text mutation", mutated_spec(), args.mutations,
             lambda src: findings.check("text mutation", _compile_text(src), src))
        _run("byte mutation", mutated_bytes(), args.mutations,
             lambda data: findings.check("byte mutation", _compile_bytes(data, folder), repr(data)))
    total = time.perf_counter() - started
    section = _differential(args.differential, args.seed) if args.differential else ""
    print(f"{sum(findings.cases.values()):,} cases in {total:.0f} s; {len(findings.found)} findings")
    for signature, (strategy, example) in findings.found.items():
        print(f"  {signature} ({strategy}): {example[:200]!r}")
    if not args.no_write:
        _write(total)
        if section:
            _write_section(section)
    return 1 if findings.found else 0


def _write(total: float) -> None:
    rows = "\n".join(
        f"| {name} | {findings.cases[name]:,} | {findings.errors[name]:,} | "
        f"{findings.cases[name] - findings.errors[name]:,} | "
        f"{1000 * findings.seconds[name] / max(1, findings.cases[name]):.1f} ms |"
        for name in findings.cases)
    found = "\n".join(f"- {sig} ({strategy}): `{example[:120]!r}`" for sig, (strategy, example)
                      in findings.found.items()) or "None: every case compiled or raised ArchError with a span."
    text = f"""# Fuzzing

The last `make fuzz` run (`tests/fuzz.py`), on {datetime.date.today().isoformat()}: Python
{platform.python_version()}, {platform.machine()}, archlang {archlang.__version__}. Property: every case
compiles, or raises `ArchError` whose span lies in the file (line and column at least 1, rendered
as `FILE:LINE:COL: error: ...`); any other exception, or a case running over {CASE_LIMIT_S} s, is a
finding. The test suite runs the same strategies with a few hundred cases (`tests/test_fuzz.py`).

| strategy | cases | ArchError | compiled | mean per case |
| --- | ---: | ---: | ---: | ---: |
{rows}

{sum(findings.cases.values()):,} cases in {total:.0f} s; slowest case {findings.slowest[0] * 1000:.0f} ms
({findings.slowest[1]}).

- grammar: programs generated from `grammar.lark` by `hypothesis.extra.lark.from_lark`, with
  names, numbers, shapes and strings drawn from small pools of real op names and edge values
  (generating a program takes most of the ~75 ms a case costs; the column above is the compile);
- text mutation: every spec with characters and lines deleted, inserted, replaced, duplicated,
  swapped or truncated;
- byte mutation: every spec's bytes flipped, inserted, deleted or truncated, read through
  `compile_file` (so invalid UTF-8 and NUL bytes reach the reader).

## Findings

{found}
"""
    path = ROOT / "docs" / "fuzzing.md"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if "\n## History" in old:  # kept by hand: what earlier runs found and how it was fixed
        text += "\n" + old[old.index("\n## History") + 1:]
    path.write_text(text, encoding="utf-8")
    print("wrote docs/fuzzing.md")


DIFF_HEADING = "## Differential testing of the PyTorch emitter"


def _differential(n: int, seed0: int) -> str:
    """Check n generated programs against their modules; the doc section with the figures."""
    import torch

    from tests.differential import NUMBERS, check
    from tests.programs import ALL, generate
    from tests.test_differential import report, signature

    torch.set_num_threads(1)
    classes: dict[str, list] = {}
    networks = attempts = 0
    started = time.perf_counter()
    for i, seed in enumerate(range(seed0, seed0 + n)):
        generated = generate(seed, ALL)
        attempts += generated.attempts
        networks += generated.text.count("\nnetwork ") + generated.text.startswith("network ")
        signal.alarm(60)
        try:
            found = check(generated.text)
        except _Slow:
            found = []
            classes.setdefault("over 60 s", []).append((seed, generated.text, None))
        finally:
            signal.alarm(0)
        for sig in dict.fromkeys(signature(f) for f in found):
            finding = next(f for f in found if signature(f) == sig)
            classes.setdefault(sig, []).append((seed, generated.text, finding))
        if (i + 1) % 100 == 0:
            failing = len({s for cases in classes.values() for s, _, _ in cases})
            print(f"\r  differential: {i + 1:,}/{n:,} programs, {failing} failing, "
                  f"{time.perf_counter() - started:.0f} s", end="", flush=True)
    took = time.perf_counter() - started
    failing = len({s for cases in classes.values() for s, _, _ in cases})
    print(f"\r  differential: {n:,} programs ({networks:,} networks) in {took:.0f} s; {failing} failing, "
          f"{len(classes)} classes" + " " * 20, flush=True)
    detail = report({k: v for k, v in classes.items() if v[0][2] is not None}, n, repros=12) if classes else ""
    print(detail)
    numbers = sum(len(v) for k, v in classes.items() if k.split(":")[0] in NUMBERS)
    rows = "\n".join(f"| `{sig}` | {len(cases):,} | {cases[0][0]} |" for sig, cases in
                     sorted(classes.items(), key=lambda kv: -len(kv[1])))
    return f"""{DIFF_HEADING}

The last `python tests/fuzz.py --differential {n}` run, on {datetime.date.today().isoformat()}:
{n:,} random valid programs (`tests/programs.py`, seeds {seed0:,} to {seed0 + n - 1:,}, every
generator feature on: hostile names and unlabelled lines included; {attempts - n:,} rejected draws),
{networks:,} networks, each checked with and without `--plain` (`tests/differential.py`): the module
builds and runs, its output shape, parameter count and FlopCounterMode MACs equal the IR's, every
report layer with parameters is the module of that name, two builds are byte-identical, and the
`archc fmt` layout compiles to the same networks. {took:.0f} s ({1000 * took / max(1, n):.0f} ms per program).

**{failing:,} of {n:,} programs fail** ({failing / max(1, n):.1%}); programs with wrong numbers
(params, MACs or output shape): {numbers:,}.

| failure class | programs | first seed |
| --- | ---: | ---: |
{rows or "| none | 0 | |"}

`python tests/programs.py SEED` prints a program; the minimal reproductions of this run:

```text
{detail or "none"}
```
"""


def _write_section(section: str) -> None:
    path = ROOT / "docs" / "fuzzing.md"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Fuzzing\n"
    if DIFF_HEADING in old:
        start = old.index(DIFF_HEADING)
        rest = old[start + len(DIFF_HEADING):]
        end = rest.find("\n## ")
        old = old[:start] + (rest[end + 1:] if end >= 0 else "")
    if "\n## History" in old:
        i = old.index("\n## History") + 1
        text = old[:i] + section + "\n" + old[i:]
    else:
        text = old.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    print("wrote the differential section of docs/fuzzing.md")


if __name__ == "__main__":
    sys.exit(main())
