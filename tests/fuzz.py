"""The long fuzz run (`make fuzz`): the strategies of tests/test_fuzz.py, many more cases, plus
raw byte mutations of every spec read through compile_file.  The property is the same: each
case compiles, or raises ArchError with a span in the file; anything else (another exception, a
RecursionError, a case over the time limit) is a finding.  Findings are collected, not fatal,
so one run reports all of them; the summary goes to docs/fuzzing.md.

    python tests/fuzz.py [--grammar N] [--mutations N] [--cli N] [--cli-only] [--no-write]

The CLI-path mode (`--cli N`) runs the archc command line itself (in this process) on hostile
inputs and outputs: FIFOs, links to /dev/zero, link loops, folders, huge sparse files, BOMs and
bad UTF-8 as inputs; files, paths under files, empty paths, stdout, folders holding foreign files
and networks named after them or after modules as outputs.  Its property: exit 0, 1 or 2, no
other exception, no traceback, an error in the `archc: error:` or FILE:LINE:COL form, no case over
the time limit, and no file archc did not write changed.

The differential part (tests/test_differential.py, many more programs) generates random valid
programs (tests/programs.py) and checks each generated PyTorch module against the IR
(tests/differential.py); its failures are counted by class, each with a minimal reproduction.

    python tests/fuzz.py [--grammar N] [--mutations N] [--differential N] [--only-differential] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import re
import shutil
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
        except AssertionError as err:  # a property of the CLI-path mode failed
            self._record(strategy, f"CLI property: {err}", example)
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


# ---- CLI paths ----

CLI_NAMES = ["n", "setup", "conftest", "package", "torch", "math", "lenet"]
INPUT_KINDS = ["spec", "fifo", "dev_zero", "link_loop", "folder", "missing", "empty", "sparse_huge", "bom",
               "not_utf8", "under_a_file", "use_fifo", "folder_with_fifo", "messy"]
OUTPUT_KINDS = ["new_folder", "empty_folder", "foreign_folder", "own_folder", "a_file", "under_a_file", "empty",
                "stdout", "folder_link", "fifo", "deep_new"]
FOREIGN = {"setup.py": "from setuptools import setup\n", "conftest.py": "# mine\n", "package.json": "{}\n",
           "n.py": "# not generated\n", "lenet.svg": "<svg/>\n"}


@st.composite
def cli_cases(draw):
    return {"command": draw(st.sampled_from(["check", "fmt", "build", "render", "list", "report"])),
            "input": draw(st.one_of(st.just("spec"), st.sampled_from(INPUT_KINDS))),  # half of them valid
            "output": draw(st.sampled_from(OUTPUT_KINDS)),
            "name": draw(st.sampled_from(CLI_NAMES)), "format": draw(st.sampled_from(["svg", "png", "dot"])),
            "fmt_flag": draw(st.sampled_from([[], ["--check"], ["--diff"]]))}


def _make_input(kind: str, box: Path, name: str) -> Path:
    spec = f"network {name}(classes=10):\n    input 1x8x8\n    conv3x3 4 same > relu\n    dense classes\n"
    path = box / "in.arch"
    if kind in ("spec", "messy", "bom"):
        text = spec.replace("    ", "  ") if kind == "messy" else spec
        path.write_bytes((b"\xef\xbb\xbf" if kind == "bom" else b"") + text.encode())
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "link_loop":
        path.symlink_to("loop.arch")
        (box / "loop.arch").symlink_to("in.arch")
    elif kind == "folder":
        path.mkdir()
        (path / "a.arch").write_text(spec)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "sparse_huge":
        with open(path, "wb") as f:
            f.truncate(50 * 10**6)
    elif kind == "not_utf8":
        path.write_bytes(spec.encode() + b"# \xff\xfe\n")
    elif kind == "under_a_file":
        (box / "plain").write_text("x")
        path = box / "plain" / "in.arch"
    elif kind == "use_fifo":
        os.mkfifo(box / "lib.arch")
        path.write_text('use "lib.arch"\n' + spec)
    elif kind == "folder_with_fifo":
        path.mkdir()
        (path / "a.arch").write_text(spec)
        os.mkfifo(path / "b.arch")
    return path


def _make_output(kind: str, box: Path) -> str | None:
    out = box / "out"
    if kind == "new_folder":
        return str(out)
    if kind == "deep_new":
        return str(out / "a" / "b")
    if kind in ("empty_folder", "foreign_folder", "own_folder"):
        out.mkdir()
        if kind == "foreign_folder":
            for name, text in FOREIGN.items():
                (out / name).write_text(text)
        return str(out)
    if kind == "a_file":
        out.write_text("precious\n")
        return str(out)
    if kind == "under_a_file":
        out.write_text("precious\n")
        return str(out / "x")
    if kind == "empty":
        return ""
    if kind == "stdout":
        return "-"
    if kind == "folder_link":
        (box / "real").mkdir()
        out.symlink_to(box / "real")
        return str(out)
    if kind == "fifo":
        os.mkfifo(out)
        return str(out)
    return None


def _snapshot(box: Path) -> dict[str, bytes]:
    """Every file archc did not write: the regular files present before the case."""
    found = {}
    for root, _dirs, names in os.walk(box):
        for n in names:
            p = Path(root) / n
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 10**6:
                found[str(p)] = p.read_bytes()
    return found


ERROR_LINE = re.compile(r"(archc: error: |archc: warning: |[^\n]*:\d+:\d+: error: |\d+ files? |usage: "
                        r"|would reformat |archc: interrupted)")


def _cli_case(case: dict, root: Path):
    def run():
        from archlang.cli import main

        box = Path(tempfile.mkdtemp(dir=root))
        try:
            path = _make_input(case["input"], box, case["name"])
            out = _make_output(case["output"], box)
            argv = [case["command"], str(path)]
            if case["command"] == "fmt":
                argv += case["fmt_flag"]
            if case["command"] == "build" and out is not None:
                argv += ["-o", out]
            if case["command"] == "render":
                argv += ["-f", case["format"]] + (["-o", out] if out is not None else [])
            before = _snapshot(box)
            stdout, stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
            cwd = os.getcwd()
            os.chdir(box)
            try:
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                    try:
                        code = main(argv)
                    except SystemExit as exit_:
                        code = exit_.code
            finally:
                os.chdir(cwd)
            err = stderr.getvalue()
            if code not in (0, 1, 2):
                raise AssertionError(f"exit code {code!r}")
            if "Traceback" in err:
                raise AssertionError("a traceback on stderr")
            if code != 0 and not ERROR_LINE.match(err):
                raise AssertionError(f"an error not in the archc form: {err.replace(str(box), '<box>')[:60]!r}")
            after = _snapshot(box)
            allowed = {str(path)} if case["command"] == "fmt" else set()  # fmt rewrites its input
            if case["command"] == "render" and out and case["output"] == "a_file":
                allowed.add(out)  # `render -o FILE` names the file to write
            changed = sorted(p for p in before if p not in allowed and after.get(p) != before[p])
            if changed:
                raise AssertionError(f"a file archc did not write changed: {Path(changed[0]).name}")
        finally:
            shutil.rmtree(box, ignore_errors=True)
    return run


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
    parser.add_argument("--cli", type=int, default=3_000,
                        help="CLI-path cases: hostile inputs and output paths through archc itself (default: 3,000)")
    parser.add_argument("--cli-only", action="store_true",
                        help="run only the CLI-path mode, and rewrite only its section of docs/fuzzing.md")
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
    print(f"fuzzing archlang {archlang.__version__}: {0 if args.cli_only else args.grammar:,} grammar cases, "
          f"{0 if args.cli_only else args.mutations:,} text and byte mutations, {args.cli:,} CLI-path cases",
          flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.cli_only:
            _run("grammar", PROGRAMS, args.grammar,
                 lambda src: findings.check("grammar", _compile_text(src), src))
            _run("text mutation", mutated_spec(), args.mutations,
                 lambda src: findings.check("text mutation", _compile_text(src), src))
            _run("byte mutation", mutated_bytes(), args.mutations,
                 lambda data: findings.check("byte mutation", _compile_bytes(data, folder), repr(data)))
        compiler_s = time.perf_counter() - started
        _run("CLI paths", cli_cases(), args.cli,
             lambda case: findings.check("CLI paths", _cli_case(case, folder), repr(case)))
    total = time.perf_counter() - started
    section = _differential(args.differential, args.seed) if args.differential and not args.cli_only else ""
    print(f"{sum(findings.cases.values()):,} cases in {total:.0f} s; {len(findings.found)} findings")
    for signature, (strategy, example) in findings.found.items():
        print(f"  {signature} ({strategy}): {example[:200]!r}")
    if not args.no_write:
        if args.cli_only:
            _write_cli_section(total)
        else:
            _write(compiler_s, total - compiler_s)
        if section:
            _write_section(section)
    return 1 if findings.found else 0


CLI_SECTION = "## CLI paths"


def _cli_section(seconds: float) -> str:
    name = "CLI paths"
    n = findings.cases[name]
    found = [f"- {sig}: `{example[:160]!r}`" for sig, (strategy, example) in findings.found.items()
             if strategy == name] or ["None: every case held the property."]
    return f"""{CLI_SECTION}

The CLI-path mode (`python tests/fuzz.py --cli N`), on {datetime.date.today().isoformat()}: {n:,} cases in
{seconds:.0f} s ({1000 * findings.seconds[name] / max(1, n):.1f} ms a case), each running `archc check`, `fmt`
(`--check`, `--diff` or writing), `build -o`, `render -f svg|png|dot [-o]`, `list` or `report` in this
process on one input kind ({", ".join(INPUT_KINDS)}) and one output kind
({", ".join(OUTPUT_KINDS)}), with networks named {", ".join(CLI_NAMES)}. Property: exit 0, 1 or 2; no
other exception and no traceback; a failure reported as `archc: error: ...` or `FILE:LINE:COL: error: ...`;
no case over {CASE_LIMIT_S} s (a FIFO or /dev/zero would hang); no file that archc did not write changed
(foreign `setup.py`, `package.json`, a file named by `build -o`; a file named by `render -o FILE` is
written as asked). {findings.errors[name]:,} cases
ended in an ArchError raised past the command line (none should: the CLI catches them).

Findings:

{chr(10).join(found)}
"""


def _write_cli_section(seconds: float) -> None:
    path = ROOT / "docs" / "fuzzing.md"
    old = path.read_text(encoding="utf-8")
    section = _cli_section(seconds)
    if CLI_SECTION in old:
        start = old.index(CLI_SECTION)
        end = old.find("\n## ", start + len(CLI_SECTION))
        text = old[:start] + section + (old[end + 1:] if end != -1 else "")
    else:
        at = old.index("## Findings")
        text = old[:at] + section + "\n" + old[at:]
    path.write_text(text, encoding="utf-8")
    print("wrote the CLI-path section of docs/fuzzing.md")


def _write(total: float, cli_seconds: float) -> None:
    rows = "\n".join(
        f"| {name} | {findings.cases[name]:,} | {findings.errors[name]:,} | "
        f"{findings.cases[name] - findings.errors[name]:,} | "
        f"{1000 * findings.seconds[name] / max(1, findings.cases[name]):.1f} ms |"
        for name in findings.cases if name != "CLI paths")
    found = "\n".join(f"- {sig} ({strategy}): `{example[:120]!r}`" for sig, (strategy, example)
                      in findings.found.items() if strategy != "CLI paths") \
        or "None: every case compiled or raised ArchError with a span."
    text = f"""# Fuzzing

The last `make fuzz` run (`tests/fuzz.py`), on {datetime.date.today().isoformat()}: Python
{platform.python_version()}, {platform.machine()}, archlang {archlang.__version__}. Property: every case
compiles, or raises `ArchError` whose span lies in the file (line and column at least 1, rendered
as `FILE:LINE:COL: error: ...`); any other exception, or a case running over {CASE_LIMIT_S} s, is a
finding. The test suite runs the same strategies with a few hundred cases (`tests/test_fuzz.py`).

| strategy | cases | ArchError | compiled | mean per case |
| --- | ---: | ---: | ---: | ---: |
{rows}

{sum(n for k, n in findings.cases.items() if k != "CLI paths"):,} cases in {total:.0f} s; slowest case
{findings.slowest[0] * 1000:.0f} ms ({findings.slowest[1]}).

- grammar: programs generated from `grammar.lark` by `hypothesis.extra.lark.from_lark`, with
  names, numbers, shapes and strings drawn from small pools of real op names and edge values
  (generating a program takes most of the ~75 ms a case costs; the column above is the compile);
- text mutation: every spec with characters and lines deleted, inserted, replaced, duplicated,
  swapped or truncated;
- byte mutation: every spec's bytes flipped, inserted, deleted or truncated, read through
  `compile_file` (so invalid UTF-8 and NUL bytes reach the reader).

{_cli_section(cli_seconds) if findings.cases["CLI paths"] else ""}
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
    reported = {k: v for k, v in classes.items() if v[0][2] is not None}
    detail = report(reported, n, repros=12, programs=False) if reported else ""
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
