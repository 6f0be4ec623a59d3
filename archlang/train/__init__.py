"""`archc train`: the shortest honest path from a .arch file to a trained model.

Sits above the backends (it trains the generated module) and imports torch; nothing below it
imports this package.  `run()` checks the network against the data before any training starts,
then trains in this process, or starts P processes through `torch.distributed.run` (DDP)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from archlang.backends.files import make_folder
from archlang.errors import ArchError, OutputError
from archlang.train.data import Data, DataError, load
from archlang.train.loop import Settings, Trainer, TrainError, resolve_device
from archlang.train.progress import plural

__all__ = ["Data", "DataError", "Settings", "TrainError", "check_fit", "run"]

EXIT_INTERRUPTED = 130
JOB_VARIABLE = "ARCHLANG_TRAIN_JOB"


def check_fit(net, data: Data) -> None:
    """A network that cannot learn this data is an error at its output layer, before training."""
    out = net.ir.output
    if len(net.output_shape) != 1:
        raise ArchError(f"{net.name} ends in a {'x'.join(map(str, net.output_shape))} tensor; training for "
                        "classification needs one score per class (end with `dense CLASSES`)", out.span)
    width, classes = net.output_shape[0], len(data.classes)
    if width != classes:
        params = [k for k, v in net.arguments.items() if v == width]
        hint = (f"train it with --set {params[0]}={classes}" if params else
                f"make the last layer `dense {classes}`, or give the network a classes parameter")
        raise ArchError(f"the data has {classes} classes but {net.name} ends in {width} outputs", out.span,
                        hint=hint)


def _check_out(out: Path, resume: bool) -> None:
    """A new run gets a folder of its own: --out must not exist yet, or be empty; it never
    overwrites files that this run did not write.  --resume needs the run's checkpoint."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: this is a file, not a folder")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise TrainError(f"--resume: there is no checkpoint to resume in {out}/")
        return
    if not out.exists():
        return
    if (out / "checkpoint.pt").exists():
        raise TrainError(f"{out}/ already holds a training run: continue it with --resume, or pick another --out")
    try:
        entries = sorted(p.name for p in out.iterdir())
    except OSError as err:
        raise TrainError(f"--out {out}: cannot read this folder ({err.strerror or err})") from None
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise TrainError(f"--out {out}: this folder already holds files ({shown}); a new run writes into an "
                         "empty or new folder only: pick another --out")


def job_of(net, settings: Settings, out: Path, resume: bool, nproc: int) -> dict:
    """Everything a DDP worker needs to run the same training: the network's source and
    arguments, the settings and the run folder (archlang.train.worker reads it)."""
    fields = {k: v for k, v in dataclasses.asdict(settings).items() if k != "explicit"}
    return {"file": str(net.filename), "network": net.name, "arguments": net.arguments, "plain": net.plain,
            "settings": fields, "explicit": sorted(settings.explicit), "out": str(out), "resume": resume,
            "nproc": nproc}


def _launch(nproc: int, job: dict) -> int:
    """Runs the same training in `nproc` processes under torch.distributed.run (torchrun)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # the job reaches the workers through the environment, out of reach of torchrun's own options
    env[JOB_VARIABLE] = json.dumps(job)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "archlang.train.worker"]
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # the workers got the Ctrl-C too; they save and stop on their own
        return EXIT_INTERRUPTED


def run(net, settings: Settings, out: Path, resume: bool, nproc: int) -> int:
    """Trains `net` as `archc train` does; returns the exit code (0 done, 130 stopped by Ctrl-C)."""
    import torch

    worker = "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", "0"))
    if nproc < 1:
        raise TrainError("--nproc is at least 1")
    device = resolve_device(settings.device, 0)  # an unusable --device fails before the data is read
    if nproc > 1 and device.type == "cuda" and nproc > torch.cuda.device_count():
        raise TrainError(f"--nproc {nproc}: this machine has {torch.cuda.device_count()} CUDA devices "
                         "(use at most that many, or --device cpu)")
    if not worker:
        _check_out(out, resume)
    data = load(settings.data, net.input_shape, net.output_shape[0] if len(net.output_shape) == 1 else 0)
    check_fit(net, data)
    if not worker:
        try:
            make_folder(out)
        except OutputError as err:
            raise TrainError(f"--out: {err}") from None
    if nproc > 1 and not worker:
        return _launch(nproc, job_of(net, settings, out, resume, nproc))
    settings.world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        result = Trainer(net, data, settings, out, resume).run()
    except KeyboardInterrupt:  # a second Ctrl-C: the last checkpoint stands, and the run is not running
        if rank == 0:
            _mark_interrupted(out)
        raise
    if rank == 0:
        _summary(net, result, out)
    return EXIT_INTERRUPTED if result["status"] == "interrupted" else 0


def _mark_interrupted(out: Path) -> None:
    from archlang.backends.files import write_atomic

    path = out / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        if metrics.get("status") == "running":
            metrics["status"] = "interrupted"
            write_atomic(path, json.dumps(metrics, indent=2) + "\n")
    except (OSError, ValueError, AttributeError):
        pass  # no metrics yet, or none readable: nothing to mend


def _summary(net, result: dict, out: Path) -> None:
    if result.get("said"):
        print(result["said"])
        return
    if result["status"] != "complete":
        return
    m = result["metrics"]
    epochs = m["epochs"]
    rate = sum(r["images_per_s"] * r["seconds"] for r in epochs) / max(1e-9, sum(r["seconds"] for r in epochs))
    print(f"{net.name}: {plural(len(epochs), 'epoch')}, {plural(m['steps'], 'step')} in {m['seconds']:.1f} s "
          f"({rate:,.0f} img/s); "
          f"validation accuracy {m['final_val_acc']:.1%} at the end, best {m['best_val_acc']:.1%} "
          f"(epoch {m['best_epoch']})")
    if "replica_digests" in m:
        same = len(set(m["replica_digests"])) == 1
        print(f"  {len(m['replica_digests'])} processes, weights {'identical' if same else 'DIFFER'} across them")
    weights = m["weights"]
    names = [f"{net.name}.py", f"model.pt (the last weights, epoch {weights['model.pt']['epoch']})"]
    if "best.pt" in weights:
        names.append(f"best.pt (the best validation accuracy, epoch {weights['best.pt']['epoch']})")
    names += ["checkpoint.pt", "metrics.json"]
    if result.get("plot"):
        names.append("metrics.png")
    print(f"  wrote {out}/: {', '.join(names)}")
