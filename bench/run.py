"""The benchmark suite: measures on this machine and writes docs/benchmarks.md.

    make bench                # or: .venv/bin/python bench/run.py [--quick]
    .venv/bin/python bench/run.py --startup-only    # re-measure start-up alone (seconds)

Measures compile time against depth, `archc report` against the forward-pass route to the same
numbers, CLI start-up, and the generated module against a hand-written one (CPU forward and
forward+backward).  Targets are in docs/benchmarks.md; nothing here fails a build."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import archlang  # noqa: E402

PY = sys.executable
SPECS = ROOT / "specs"
CIFAR = ROOT / "bench" / "cifar_resnet.arch"


def best(fn, repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def wall(cmd: list[str], repeat: int) -> float:
    return best(lambda: subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True), repeat)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {platform.system()} {platform.release()}")


def compile_times(repeat: int) -> list[tuple[str, int, float, float]]:
    archlang.compile_file(SPECS / "lenet5.arch")  # the grammar is built once per process

    def one(path, name, overrides=None):
        def run():
            net = archlang.compile_file(path, overrides=overrides, network=name)[name]
            net.params, net.macs  # noqa: B018 - counting is part of what is timed
            return net
        net = run()
        return len(net.nodes), best(run, repeat)

    rows = []
    for name in ("resnet18", "resnet50", "resnet152"):
        nodes, t = one(SPECS / "resnets.arch", name)
        rows.append((name, nodes, t, t / nodes))
    for n, label in ((18, "cifar ResNet-110"), (200, "cifar ResNet-1202"), (1666, "cifar ResNet-9998")):
        nodes, t = one(CIFAR, "cifar_resnet", {"n": n})
        rows.append((label, nodes, t, t / nodes))
    return rows


FORWARD_ROUTE = """
import sys, time
t = time.perf_counter()
import torch
from torch.utils.flop_counter import FlopCounterMode
sys.path.insert(0, {folder!r})
from resnet152 import Resnet152
model = Resnet152().eval()
counter = FlopCounterMode(display=False)
with torch.no_grad(), counter:
    model(torch.randn(1, 3, 224, 224))
print(sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2)
"""


def report_vs_forward(repeat: int) -> tuple[float, float, float, float]:
    """(archc report wall, forward-route wall, report in-process, forward in-process), seconds."""
    net = archlang.compile_file(SPECS / "resnets.arch", network="resnet152")["resnet152"]
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "resnet152.py").write_text(net.source())
        report = wall([PY, "-m", "archlang", "report", "specs/resnets.arch", "-n", "resnet152", "--json"], repeat)
        script = Path(folder, "route.py")
        script.write_text(FORWARD_ROUTE.format(folder=folder))
        out = subprocess.run([PY, str(script)], capture_output=True, text=True, check=True).stdout.split()
        assert (int(out[0]), int(out[1])) == (net.params, net.macs), out  # the two routes agree
        forward = wall([PY, str(script)], repeat)

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def in_process_report():
        n = archlang.compile_file(SPECS / "resnets.arch", network="resnet152")["resnet152"]
        n.report().to_json()

    model = net.to_torch().eval()

    def in_process_forward():
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.randn(1, 3, 224, 224))

    return report, forward, best(in_process_report, repeat), best(in_process_forward, max(1, repeat // 2))


STARTUP_TARGETS = {"archc --version": 0.100, "archc --help": 0.100, "archc check specs/lenet5.arch": 0.250}


def startup(repeat: int) -> list[tuple[str, float]]:
    """Whole commands in a fresh interpreter (bytecode cached, as after any first run)."""
    archc = [PY, "-m", "archlang"]
    return [
        ("python -c pass", wall([PY, "-c", "pass"], repeat)),
        ("archc --version", wall([*archc, "--version"], repeat)),
        ("archc --help", wall([*archc, "--help"], repeat)),
        ("archc check specs/lenet5.arch", wall([*archc, "check", "specs/lenet5.arch"], repeat)),
        ("archc report specs/resnet34.arch", wall([*archc, "report", "specs/resnet34.arch"], repeat)),
        ("python -c 'import torch' (for scale)", wall([PY, "-c", "import torch"], repeat)),
    ]


def startup_section(starts: list[tuple[str, float]]) -> list[str]:
    lines = ["## Start-up", "",
             f"Measured {time.strftime('%Y-%m-%d')}, the best of several runs. A command imports what it "
             "needs inside its handler, and `archlang`'s public names load on "
             "first use: `--version` and `--help` load no compiler and no lark; `check` loads the "
             "compiler and lark's parser (its tables are generated into the package), never torch, "
             "networkx, pydantic or graphviz (`tests/test_cli.py` lists the modules each command loads). "
             "`python -X importtime -m archlang check FILE` shows where the rest goes: the op registry "
             "and the AST's dataclasses, and lark.", "",
             "| command | wall time | target |", "| --- | ---: | ---: |"]
    lines += [f"| `{cmd}` | {t * 1e3:.0f} ms | "
              f"{f'≤ {STARTUP_TARGETS[cmd] * 1e3:.0f} ms' if cmd in STARTUP_TARGETS else ''} |" for cmd, t in starts]
    lines += ["", "`check`, `report`, `render`, `build`, `list` and `fmt` never import torch (tested)."]
    return lines


def startup_targets(starts: list[tuple[str, float]]) -> list[str]:
    times = dict(starts)
    return [f"| `{cmd}` in at most {limit * 1e3:.0f} ms | {times[cmd] * 1e3:.0f} ms |"
            for cmd, limit in STARTUP_TARGETS.items()]


def rewrite_startup(path: Path, starts: list[tuple[str, float]]) -> None:
    """--startup-only: replace the start-up section and its target rows, keep every other figure."""
    text = path.read_text(encoding="utf-8").splitlines()
    begin = text.index("## Start-up")
    end = next(i for i in range(begin + 1, len(text)) if text[i].startswith("## "))
    text[begin:end] = [*startup_section(starts), ""]
    text = [line for line in text if not any(line.startswith(f"| `{cmd}` in at most") for cmd in STARTUP_TARGETS)]
    targets = text.index("## Targets")
    last = next(i for i in range(targets + 3, len(text) + 1) if i == len(text) or not text[i].startswith("|"))
    text[last:last] = startup_targets(starts)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


LARGE = (("efficientnet_b7", "efficientnet.arch"), ("regnet_y_128gf", "regnet.arch"))


def large_specs(repeat: int) -> list[tuple[str, int, int, float, float, int]]:
    """The largest torchvision specs: (network, IR nodes, params, `archc report --depth 2` and
    `archc render --depth 2` whole-command wall times, the report's lines)."""
    import subprocess
    import tempfile

    rows = []
    for name, file in LARGE:
        path = str(SPECS / "torchvision" / file)
        net = archlang.compile_file(path, network=name)[name]
        report = [PY, "-m", "archlang", "report", path, "--network", name, "--depth", "2"]
        lines = subprocess.run(report, capture_output=True, text=True, check=True).stdout.count("\n")
        with tempfile.TemporaryDirectory() as tmp:
            render = [PY, "-m", "archlang", "render", path, "--network", name, "-f", "svg", "-o", f"{tmp}/{name}.svg"]
            rows.append((name, len(net.ir.nodes), net.params, wall(report, repeat), wall(render, repeat), lines))
    return rows


def module_speed(repeat: int) -> list[tuple[str, float, float]]:
    """(case, hand-written seconds, generated seconds), interleaved so drift hits both alike."""
    import torch

    from tests import references

    torch.manual_seed(0)
    cases = []
    for name, file, make in (("resnet18", "resnets.arch", references.resnet18),
                             ("resnet50", "resnets.arch", references.resnet50)):
        ref = make()
        gen = archlang.compile_file(SPECS / file, network=name)[name].to_torch()
        archlang.load_weights(gen, ref)
        x = torch.randn(8, 3, 112, 112)
        for mode in ("forward (eval)", "forward+backward (train)"):
            def step(m, mode=mode, x=x):
                if mode.startswith("forward (eval)"):
                    m.eval()
                    with torch.no_grad():
                        m(x)
                else:
                    m.train()
                    m.zero_grad()
                    m(x).sum().backward()
            step(ref), step(gen)  # warm up
            t_ref, t_gen = [], []
            for _ in range(repeat):
                t_ref.append(best(lambda m=ref: step(m), 1))
                t_gen.append(best(lambda m=gen: step(m), 1))
            cases.append((f"{name} {mode}, batch 8, 112x112", statistics.median(t_ref), statistics.median(t_gen)))
    return cases


def large_section(large) -> list[str]:
    lines = ["## The largest torchvision specs", "",
             "Whole commands, start-up included, on the two largest networks of specs/torchvision/: "
             "`archc report FILE --network N --depth 2` (one row a stage, repeats rolled up as `×N`) and "
             "`archc render FILE --network N -f svg` (depth 2).", "",
             "| network | IR nodes | params | report | render | report lines |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {nodes:,} | {params:,} | {rep * 1e3:.0f} ms | {ren * 1e3:.0f} ms | {n} |"
              for name, nodes, params, rep, ren, n in large]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--startup-only", action="store_true",
                        help="measure start-up only and replace just its figures in the output file")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    if args.startup_only:
        rewrite_startup(Path(args.output), startup(max(repeat, 10)))
        print(Path(args.output).read_text(encoding="utf-8"))
        return

    print("compile times ...", flush=True)
    compile_rows = compile_times(repeat)
    print("report vs forward pass ...", flush=True)
    rep, fwd, rep_in, fwd_in = report_vs_forward(repeat)
    print("start-up ...", flush=True)
    starts = startup(repeat)
    print("the largest torchvision specs ...", flush=True)
    large = large_specs(repeat)
    print("generated vs hand-written modules ...", flush=True)
    speed = module_speed(3 if args.quick else 7)

    lines = ["# Benchmarks", "",
             f"Measured by `make bench` (`bench/run.py`) on {time.strftime('%Y-%m-%d')}: {machine()}. "
             "Each figure is the best of several runs (module timings: the median, the two modules "
             "interleaved). No GPU machine was available to this run.", "",
             "## Compile time against depth", "",
             "Parse + elaborate + shapes + names + parameter and MAC counts, in one process after the "
             "grammar is built (the first compile of a process adds its ~0.15 s).", "",
             "| network | IR nodes | compile | per node |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {nodes:,} | {t * 1e3:.1f} ms | {per * 1e6:.1f} µs |" for name, nodes, t, per in compile_rows]
    per = [p for *_, p in compile_rows[3:]]
    lines += ["", f"Per-node cost across the CIFAR ResNets (389 → 34,997 nodes): {per[0] * 1e6:.1f}, "
              f"{per[1] * 1e6:.1f}, {per[2] * 1e6:.1f} µs — flat, so compile time grows linearly with depth.", "",
              "What profiling (cProfile) showed and what was done: no pass is super-linear, but "
              "elaboration spent ~35 µs a node re-expanding def calls identical to earlier ones (a "
              "stage's `basic c x(n-1)`). A def call with the same def, argument values, input shape, "
              "settings and call chain as an earlier one now copies that call's nodes and blocks "
              "(`tests/test_elaborate.py` checks the copy equals a fresh expansion for every spec); "
              "the 9,998-layer network went from 1.9–2.3 s to about 1.4 s. Most of what remains is "
              "creating 35,000 validated pydantic nodes (~6 µs each), naming and counting.", "",
              "## The report against the forward-pass route (ResNet-152)", "",
              "The usual route to the same two numbers: import torch, build the module, run one forward "
              "pass at 3x224x224 under `torch.utils.flop_counter.FlopCounterMode` (both routes give "
              "60,192,808 params and 11,513,626,624 MACs; the script checks they agree).", "",
              "| | archlang | forward-pass route | ratio |", "| --- | ---: | ---: | ---: |",
              f"| whole command (start-up included) | {rep:.2f} s | {fwd:.2f} s | {fwd / rep:.1f}× |",
              f"| in one process (compile + report vs forward under the counter) | {rep_in * 1e3:.0f} ms | "
              f"{fwd_in * 1e3:.0f} ms | {fwd_in / rep_in:.1f}× |", "",
              *startup_section(starts), ""]
    lines += large_section(large)
    lines += ["",
              "## Generated module against a hand-written one (CPU)", "",
              "The hand-written references are `tests/references.py` (torchvision's layout); weights "
              "copied with `archlang.load_weights`.", "",
              "| case | hand-written | generated | ratio |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {case} | {a * 1e3:.0f} ms | {b * 1e3:.0f} ms | {b / a:.3f} |" for case, a, b in speed]
    lines += ["", "## Targets", "",
              "| target | measured |", "| --- | --- |",
              f"| ResNet-152 compiles in under 50 ms after start-up | {compile_rows[2][2] * 1e3:.1f} ms |",
              f"| report ≥ 10× faster than the forward-pass route | {fwd / rep:.1f}× whole command, "
              f"{fwd_in / rep_in:.1f}× in process |",
              f"| a 10,000-layer network in under 2 s | {compile_rows[5][2]:.2f} s (9,998 layers, 34,997 nodes) |",
              "| no super-linear pass | per-node cost flat from 389 to 34,997 nodes (above) |",
              f"| generated module within 1.00 ± 0.03 of hand-written | "
              f"{', '.join(f'{b / a:.3f}' for _, a, b in speed)} |", *startup_targets(starts), ""]
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
