"""The degradation experiment of He et al. (2016), Fig. 6, on the bundled digits: plain networks
of growing depth against the ResNets of the same depth, trained alike, their training error
drawn against the epoch.  `make degradation` runs it; docs/degradation.md shows what it measured.

    python -m archlang.train.degradation [--n 3,9] [--epochs E] [--out runs/degradation]
                                         [--figure FILE.png] [--table FILE.md]

For each n, specs/cifar_resnet.arch is compiled with n (6n+2 layers) and trained twice, with its
skips (ResNet-(6n+2)) and under `--plain` (plain-(6n+2)), through `archc train` itself: same seed,
data, optimizer, schedule and epochs.  Each network's run lies in OUT/<name>/; a run already there
is resumed (a finished one is not trained again), so the command can be stopped and run again.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

from archlang.api import compile_file
from archlang.errors import ArchError
from archlang.train import DataError, Settings, TrainError, run
from archlang.train.schedule import OPTIMIZERS, SCHEDULES

# He et al.'s CIFAR-10 recipe (SGD, momentum 0.9, weight decay 1e-4, lr divided by 10 at 50% and
# 75% of the run), on 1,438 digits instead of 50,000 images: batch 64 rather than 128, for more
# steps, and so lr 0.05 rather than 0.1 (the same rate per image; at 0.1 ResNet-56's first epochs
# diverge, docs/degradation.md)
DEFAULTS = {"n": "3,9", "epochs": 12, "batch_size": 64, "optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4,
            "schedule": "step", "seed": 0}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]  # by depth, shallow first


def _name(n: int, plain: bool) -> str:
    return f"{'plain' if plain else 'resnet'}-{6 * n + 2}"


def train_all(spec: Path, ns: list[int], settings: dict, out: Path) -> list[dict]:
    """Trains every network (skipping what is already trained); one row per network."""
    rows = []
    for n in ns:
        for plain in (True, False):
            name = _name(n, plain)
            net = compile_file(spec, {"n": n}, plain=plain, network="cifar_resnet")["cifar_resnet"]
            folder = out / name
            resume = (folder / "checkpoint.pt").is_file()
            print(f"== {name}: {net.params:,} parameters, {'resuming ' if resume else ''}{folder}/", flush=True)
            start = time.perf_counter()
            code = run(net, Settings(**settings, explicit=set(settings)), folder, resume, 1)
            if code != 0:
                raise KeyboardInterrupt  # the run was stopped (Ctrl-C): so is the experiment
            metrics = json.loads((folder / "metrics.json").read_text())
            last = metrics["epochs"][-1]
            rows.append({"name": name, "n": n, "plain": plain, "layers": 6 * n + 2, "params": net.params,
                         "epochs": metrics["epochs"], "train_error": 1 - last["train_acc"],
                         "val_acc": last["val_acc"], "best_val_acc": metrics["best_val_acc"],
                         "train_seconds": metrics["seconds"], "wall_seconds": time.perf_counter() - start,
                         "resumed": resume})
    return rows


def table(rows: list[dict]) -> str:
    """The measured figures as a Markdown table."""
    lines = ["| network | layers | parameters | final training error | final validation accuracy | "
             "best validation accuracy | training time |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['layers']} | {r['params']:,} | {r['train_error']:.2%} | "
                     f"{r['val_acc']:.2%} | {r['best_val_acc']:.2%} | {r['train_seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], title: str) -> bytes:
    """Fig. 6 of He et al.: plain networks left, ResNets right; bold lines training error, thin
    dashed lines validation error, one colour per depth.  PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    depths = sorted({r["layers"] for r in rows})
    colour = {d: COLOURS[i % len(COLOURS)] for i, d in enumerate(depths)}
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, plain in zip(axes, (True, False), strict=True):
        for r in sorted((r for r in rows if r["plain"] == plain), key=lambda r: r["layers"]):
            epochs = [e["epoch"] for e in r["epochs"]]
            ax.plot(epochs, [100 * (1 - e["train_acc"]) for e in r["epochs"]], color=colour[r["layers"]],
                    linewidth=2.4, label=f"{r['name']} train")
            ax.plot(epochs, [100 * (1 - e["val_acc"]) for e in r["epochs"]], color=colour[r["layers"]],
                    linewidth=0.9, linestyle="--", label=f"{r['name']} validation")
        ax.set(title=("plain networks" if plain else "ResNets"), xlabel="epoch", ylabel="error (%)")
        # logarithmic above 1% (the first epochs' 80% and the last ones' 0.5% both readable),
        # linear below, so that an error of 0 is drawn
        ax.set_yscale("symlog", linthresh=1.0, linscale=0.6)
        ax.set_ylim(0, 100)
        ax.yaxis.set_major_locator(FixedLocator([0, 0.5, 1, 2, 5, 10, 20, 50, 100]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")  # the curves fall from the top left to the bottom right
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _ns(text: str) -> list[int]:
    try:
        ns = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of whole numbers (such as 3,9)") from None
    if not ns or min(ns) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': each n is at least 1")
    return ns


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m archlang.train.degradation", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=Path("specs/cifar_resnet.arch"), help="the CIFAR ResNet spec")
    p.add_argument("--n", type=_ns, default=_ns(DEFAULTS["n"]),
                   help=f"the n of each depth, 6n+2 layers (default: {DEFAULTS['n']}: 20 and 56 layers)")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help=f"(default: {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help=f"(default: {DEFAULTS['batch_size']})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS["optimizer"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help=f"(default: {DEFAULTS['lr']})")
    p.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULTS["schedule"],
                   help="(default: step, ÷10 at 50%% and 75%% of the run)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default: 1; on a shared machine more threads than free "
                        "cores make torch's thread pool wait on each other, up to ten times slower)")
    p.add_argument("--out", type=Path, default=Path("runs/degradation"), help="the runs' folder")
    p.add_argument("--figure", type=Path, help="the PNG to write (default: OUT/degradation.png)")
    p.add_argument("--table", type=Path, help="also write the table (Markdown) to this file")
    args = p.parse_args(argv)
    settings = {"data": "digits", "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer,
                "lr": args.lr, "weight_decay": args.weight_decay, "schedule": args.schedule, "seed": args.seed,
                "device": args.device}
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        rows = train_all(args.spec, args.n, settings, args.out)
    except ArchError as err:
        print(str(err), file=sys.stderr)
        return 1
    except (DataError, TrainError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"stopped; run the same command again to continue (the runs in {args.out}/ resume)", file=sys.stderr)
        return 130
    text = table(rows)
    (args.out / "table.md").write_text(text)
    if args.table:
        args.table.write_text(text)
    title = (f"digits at 32x32: {args.optimizer.upper() if args.optimizer == 'sgd' else 'AdamW'} lr {args.lr:g}, "
             f"{args.schedule} schedule, batch {args.batch_size}, {args.epochs} epochs, seed {args.seed}  "
             "(bold: training error, dashed: validation error)")
    path = args.figure or args.out / "degradation.png"
    path.write_bytes(figure(rows, title))
    print()
    print(text, end="")
    print(f"wrote {path} and {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
