"""The long fuzz run (`make fuzz`): the strategies of tests/test_fuzz.py, many more cases, plus
raw byte mutations of every spec read through compile_file.  The property is the same: each
case compiles, or raises ArchError with a span in the file; anything else (another exception, a
RecursionError, a case over the time limit) is a finding.  Findings are collected, not fatal,
so one run reports all of them; the summary goes to docs/fuzzing.md.

    python tests/fuzz.py [--grammar N] [--mutations N] [--no-write]
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
    parser.add_argument("--no-write", action="store_true", help="do not rewrite docs/fuzzing.md")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
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
    print(f"{sum(findings.cases.values()):,} cases in {total:.0f} s; {len(findings.found)} findings")
    for signature, (strategy, example) in findings.found.items():
        print(f"  {signature} ({strategy}): {example[:200]!r}")
    if not args.no_write:
        _write(total)
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


if __name__ == "__main__":
    sys.exit(main())
