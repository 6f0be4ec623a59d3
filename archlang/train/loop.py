"""The training loop of `archc train`: one process, or one of P processes started by
`torch.distributed.run` (DDP over gloo on CPU, nccl on GPU).

What a run leaves in its folder, all written atomically (temporary file, then rename):
  checkpoint.pt  model, optimizer, scaler, epoch and step, RNG states, history (every epoch,
                 and on Ctrl-C mid-epoch); `--resume` continues from it exactly
  model.pt       the last weights, a state_dict for the generated module
  best.pt        the weights of the epoch with the best validation accuracy (the first such)
  <network>.py   the generated module itself
  metrics.json   the settings, one record per epoch, the status (running, interrupted,
                 complete) and which epoch model.pt and best.pt hold
  metrics.png    loss and accuracy against the epoch
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from archlang.backends.files import write_atomic
from archlang.compiler.ops import REGISTRY
from archlang.train.checkpoint import CHECKPOINT_FORMAT, LEGACY_SETTINGS, validate
from archlang.train.data import Data
from archlang.train.progress import Progress, plural
from archlang.train.schedule import (
    DEFAULT_MILESTONES,
    DEFAULTS,
    ScheduleError,
    learning_rate,
    make_optimizer,
    milestone_steps,
)

# what a resumed run must share with the run it continues (the rest may change: device, compile);
# its epochs it keeps too, unless --epochs is given
FIXED = ("data", "batch_size", "lr", "seed", "amp", "world_size", "optimizer", "weight_decay", "schedule",
         "milestones")


class TrainError(Exception):
    """A run that cannot start or continue: the message says why and what to do."""


@dataclass
class Settings:
    data: str = "digits"
    epochs: int = 20
    batch_size: int = 64
    lr: float | None = None  # None: the optimizer's default (schedule.DEFAULTS)
    seed: int = 0
    optimizer: str = "adamw"  # adamw | sgd
    weight_decay: float | None = None  # None: the optimizer's default
    schedule: str = "constant"  # constant | step | cosine
    milestones: str = DEFAULT_MILESTONES  # of --schedule step: shares of the run or epochs
    device: str = "auto"
    amp: str = "off"  # off | bf16 | fp16
    compile: bool = False
    world_size: int = 1
    explicit: set[str] = field(default_factory=set)  # the options the user typed (checked on --resume)

    def fixed(self) -> dict:
        return {k: getattr(self, k) for k in FIXED}

    def fill_defaults(self) -> None:
        for key in ("lr", "weight_decay"):
            if getattr(self, key) is None:
                setattr(self, key, DEFAULTS[self.optimizer][key])

    def describe_optimizer(self, milestones: list[int], steps: int) -> str:
        name = "SGD" if self.optimizer == "sgd" else "AdamW"
        text = f"{name} lr {self.lr:g}{' momentum 0.9' if self.optimizer == 'sgd' else ''} weight decay " \
               f"{self.weight_decay:g}"
        if self.schedule == "step":
            at = " and ".join(f"{m / steps:g}" for m in milestones)
            text += f", lr ÷10 at epoch{'s' if len(milestones) > 1 else ''} {at}"
        elif self.schedule == "cosine":
            text += ", cosine lr to 0"
        return text


class _StopFlag:
    """Ctrl-C (or SIGTERM) asks the loop to stop after the current step and save; a second
    Ctrl-C aborts at once, leaving the last complete checkpoint."""

    def __init__(self):
        self.set = False
        self._old: dict[int, object] = {}

    def _handler(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resolve_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _layout(state: dict) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in state.items()]


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _epoch_line(r: dict, epochs: int, show_lr: bool) -> str:
    lr = f"lr {r['lr']:.3g}  " if show_lr else ""
    return (f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  train loss {r['train_loss']:.4f} "
            f"acc {r['train_acc']:6.1%}  val loss {r['val_loss']:.4f} acc {r['val_acc']:6.1%}  "
            f"{lr}{r['images_per_s']:,.0f} img/s  {r['seconds']:.1f} s")


def _best(history: list[dict]) -> dict:
    """The record of the epoch with the best validation accuracy: the first of equals."""
    return max(history, key=lambda r: r["val_acc"])


def _weights_files(out: Path, history: list[dict], step: int) -> dict:
    """What metrics.json says model.pt and best.pt hold."""
    files = {}
    if history or step:
        last = {"epoch": len(history), "holds": "the last weights"}
        if step:
            last.update(epoch=len(history) + 1, step=step, holds="the last weights, saved mid-epoch")
        files["model.pt"] = last
    if history and (out / "best.pt").is_file():
        best = _best(history)
        files["best.pt"] = {"epoch": best["epoch"], "holds": "the weights of the best validation accuracy",
                            "val_acc": best["val_acc"]}
    return files


def _write(path: Path, data: str | bytes) -> None:
    """write_atomic for the run's outputs: a full disk or a vanished folder is a TrainError (the
    file's previous version, such as the last complete checkpoint, stays as it was)."""
    try:
        write_atomic(path, data)
    except OSError as err:
        raise TrainError(f"cannot write {path}: {err.strerror or err}; its previous version, if any, "
                         "is intact (free some space and continue with --resume)") from None


def save_torch(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _write(path, buf.getvalue())


class Trainer:
    def __init__(self, net, data: Data, settings: Settings, out: Path, resume: bool):
        self.net, self.data, self.s, self.out = net, data, settings, out
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(settings.device, self.local_rank)
        self.main = self.rank == 0
        self.resume = resume
        self.planned_epochs: int | None = None  # on --resume: the epochs the run was started with

    # ---- set-up ----

    def _init_distributed(self) -> None:
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    def _load_checkpoint(self) -> dict | None:
        path = self.out / "checkpoint.pt"
        if not self.resume:
            return None
        if not path.exists():
            raise TrainError(f"--resume: there is no checkpoint to resume in {self.out}/")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise TrainError(f"--resume: {path} cannot be read ({err.__class__.__name__}: {err})") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise TrainError(f"--resume: {path} is not an archc train checkpoint")
        wrong = validate(ck)
        if wrong is not None:
            raise TrainError(f"--resume: {path} is damaged, so the run cannot continue from it ({wrong})")
        if ck["network"] != self.net.name or ck["arguments"] != self.net.arguments:
            raise TrainError(f"--resume: {path} holds {ck['network']} {ck['arguments']}, not "
                             f"{self.net.name} {self.net.arguments}; pick the same network and --set values")
        stored = {**LEGACY_SETTINGS, **ck["settings"]}  # a checkpoint from before a setting existed
        for key in FIXED:
            mine = getattr(self.s, key)
            if mine != stored[key] and key == "world_size":
                raise TrainError(f"--resume: the run in {self.out}/ was started with --nproc {stored[key]} and "
                                 f"continues with as many processes: resume it with --nproc {stored[key]}")
            if mine != stored[key] and key in self.s.explicit:
                flag = "--" + key.replace("_", "-")
                raise TrainError(f"--resume: the run in {self.out}/ was started with {flag} {stored[key]}; "
                                 f"it continues with the same (drop {flag}, or start a new run with --out)")
            setattr(self.s, key, stored[key])
        self.planned_epochs = stored["epochs"]
        if stored["epochs"] is not None and "epochs" not in self.s.explicit:
            self.s.epochs = stored["epochs"]  # the run keeps its length, as it keeps its lr
        return ck

    # ---- the loop ----

    def run(self) -> dict:
        s = self.s
        self._init_distributed()
        ck = self._load_checkpoint()
        s.fill_defaults()
        torch.manual_seed(s.seed)
        random.seed(s.seed)
        model = self.net.to_torch().to(self.device)
        optimizer = make_optimizer(model.parameters(), s.optimizer, s.lr, s.weight_decay)
        scaler = torch.amp.GradScaler(self.device.type, enabled=s.amp == "fp16")
        history: list[dict] = []
        epoch, start_step, global_step, elapsed = 0, 0, 0, 0.0
        running = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, seen (this epoch, all ranks)
        if ck is not None:
            if _layout(ck["model"]) != _layout(model.state_dict()):
                raise TrainError(f"--resume: the weights in {self.out}/checkpoint.pt do not fit {self.net.name} "
                                 "as the file now stands (its layers changed since the checkpoint)")
            try:
                model.load_state_dict(ck["model"])
                optimizer.load_state_dict(ck["optimizer"])
                scaler.load_state_dict(ck["scaler"])
            except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
                raise TrainError(f"--resume: {self.out}/checkpoint.pt is damaged, so the run cannot continue "
                                 f"from it ({err.__class__.__name__}: {str(err).splitlines()[0][:200]})") from None
            history, epoch, start_step = ck["history"], ck["epoch"], ck["step"]
            global_step, elapsed = ck["global_step"], ck["elapsed"]
            if self.main:
                running = ck["running"].clone()
        if epoch >= s.epochs and start_step:
            raise TrainError(f"--resume --epochs {s.epochs}: the run in {self.out}/ has already trained "
                             f"{plural(epoch, 'epoch')} and {plural(start_step, 'step')} of the next; "
                             f"pass at least --epochs {epoch + 1}")
        if epoch >= s.epochs:
            asked = f" (--epochs {s.epochs} asks for no more)" if "epochs" in s.explicit else ""
            return self._finish(model, history, global_step, elapsed, status="complete", said=(
                f"the run in {self.out}/ is complete: it has trained its {plural(epoch, 'epoch')}{asked}; "
                f"to train on, resume it with a larger --epochs (such as --epochs {2 * epoch})"))
        train_model: torch.nn.Module = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if s.compile:
            train_model = torch.compile(train_model)

        dataset = TensorDataset(self.data.train_x, self.data.train_y)
        sampler = DistributedSampler(dataset, num_replicas=self.world, rank=self.rank, shuffle=True, seed=s.seed)
        # batch norm cannot train on a batch of one image: such a last batch is dropped every epoch
        per_process = len(sampler)
        drop_last = per_process % s.batch_size == 1 and per_process > 1 and any(
            REGISTRY[n.op].batch_statistics for n in self.net.nodes)
        loader = DataLoader(dataset, batch_size=s.batch_size, sampler=sampler, generator=torch.Generator(),
                            pin_memory=self.device.type == "cuda", drop_last=drop_last)
        steps = len(loader)
        if start_step >= steps:
            raise TrainError(f"--resume: {self.out}/checkpoint.pt is damaged, so the run cannot continue from it "
                             f"(step {start_step} of an epoch of {steps} steps)")
        total_steps = s.epochs * steps
        try:
            milestones = milestone_steps(s.milestones, s.epochs, steps) if s.schedule == "step" else []
        except ScheduleError as err:
            raise TrainError(str(err)) from None
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16 if s.amp == "bf16" else torch.float16,
                                  enabled=s.amp != "off")
        progress = Progress(s.epochs, steps, enabled=self.main)
        if self.main:
            progress.line(f"{self.net.name}: {self.data.describe()}; {plural(s.epochs, 'epoch')} of "
                          f"{plural(steps, 'step')}, batch {s.batch_size}"
                          f"{f' x {self.world} processes' if self.world > 1 else ''}, "
                          f"{s.describe_optimizer(milestones, steps)}, {self.device.type}"
                          f"{', ' + s.amp if s.amp != 'off' else ''}{', compiled' if s.compile else ''}")
            for note in self.data.notes:
                progress.line(f"note: {note}")
            if drop_last:
                progress.line(f"note: the last batch of each epoch would hold 1 image, and batch norm needs 2 "
                              f"to train: it is left out ({per_process - 1:,} of {per_process:,} images an epoch"
                              f"{' per process' if self.world > 1 else ''})")
            if ck is not None:
                at = f"epoch {epoch + 1}, step {start_step}" if start_step else f"the end of epoch {epoch}"
                progress.line(f"resuming {self.out}/checkpoint.pt from {at}")
                planned = self.planned_epochs
                if s.schedule != "constant" and planned is not None and planned != s.epochs:
                    progress.line(f"note: the run was planned for {plural(planned, 'epoch')} and now runs "
                                  f"{s.epochs}: its {s.schedule} schedule is stretched to the new length, so its "
                                  "learning rate changes from here on")

        with _StopFlag() as stop:
            while epoch < s.epochs:
                sampler.set_epoch(epoch)
                train_model.train()
                t0, seen_here = time.perf_counter(), 0
                local = torch.zeros(3, dtype=torch.float64, device=self.device)
                if ck is not None:  # continue exactly: dropout and the like draw what they would have
                    try:
                        self._restore_rng(ck["rng"])
                    except (ValueError, TypeError, RuntimeError) as err:
                        raise TrainError(f"--resume: {self.out}/checkpoint.pt is damaged, so the run cannot "
                                         f"continue from it (rng: {err})") from None
                for step, (x, y) in enumerate(loader):
                    if step < start_step:  # resuming mid-epoch: these batches were trained on already
                        continue
                    x = x.to(self.device, non_blocking=True)
                    y = y.to(self.device, non_blocking=True)
                    lr = learning_rate(s.schedule, s.lr, global_step, total_steps, milestones)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with autocast:
                        logits = train_model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    global_step += 1
                    local += torch.stack([loss.detach().double() * len(y),
                                          (logits.argmax(1) == y).sum().double(),
                                          torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)])
                    seen_here += len(y)
                    if self.main and (progress.tty or step + 1 == steps or (step + 1) % 10 == 0):
                        total = running + local.cpu()
                        rate = seen_here * self.world / max(1e-9, time.perf_counter() - t0)
                        progress.step(epoch, step + 1, total[0].item() / total[2].item(),
                                      total[1].item() / total[2].item(), rate)
                    if self._agree(stop.set) and step + 1 < steps:
                        elapsed += time.perf_counter() - t0
                        running += self._sum(local)
                        self._save(model, optimizer, scaler, history, epoch, step + 1, global_step, elapsed, running)
                        return self._interrupted(history, epoch, step + 1, global_step, elapsed, progress)
                seconds = time.perf_counter() - t0
                elapsed += seconds
                running += self._sum(local)
                start_step, ck = 0, None
                record = self._epoch_record(model, epoch, running, seconds, seen_here * self.world, autocast)
                record["lr"] = optimizer.param_groups[0]["lr"]  # of the epoch's last step
                running = torch.zeros(3, dtype=torch.float64)
                epoch += 1
                if self.main:
                    history.append(record)
                self._save(model, optimizer, scaler, history, epoch, 0, global_step, elapsed, running)
                if self.main:  # printed once its checkpoint is on disk
                    progress.line(_epoch_line(record, s.epochs, s.schedule != "constant"))
                if self._agree(stop.set) and epoch < s.epochs:
                    return self._interrupted(history, epoch, 0, global_step, elapsed, progress)
        return self._finish(model, history, global_step, elapsed, status="complete")

    # ---- pieces ----

    def _agree(self, flag: bool) -> bool:
        """Whether any process was asked to stop (all processes must stop at the same step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _sum(self, local: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(local)
        return local.cpu()

    def _epoch_record(self, model, epoch: int, running: torch.Tensor, seconds: float, images: int,
                      autocast) -> dict:
        loss_sum, correct, seen = running.tolist()
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "seconds": round(seconds, 3), "images_per_s": round(images / max(seconds, 1e-9), 1)}
        if self.main:
            record["val_loss"], record["val_acc"] = self.evaluate(model, autocast)
        if self.world > 1:
            dist.barrier()
        return record

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, autocast) -> tuple[float, float]:
        was = model.training
        model.eval()
        loss_sum, correct = 0.0, 0
        x_all, y_all = self.data.val_x, self.data.val_y
        for i in range(0, len(y_all), 2 * self.s.batch_size):
            x = x_all[i:i + 2 * self.s.batch_size].to(self.device)
            y = y_all[i:i + 2 * self.s.batch_size].to(self.device)
            with autocast:
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
        model.train(was)
        return loss_sum / len(y_all), correct / len(y_all)

    def _rng(self) -> dict:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore_rng(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def _save(self, model, optimizer, scaler, history, epoch, step, global_step, elapsed, running) -> None:
        if self.main:
            # the weights first: a run killed before its checkpoint is written redoes this step or
            # epoch, and writes the same weights again
            save_torch(self.out / "model.pt", model.state_dict())
            if step == 0 and history and _best(history) is history[-1]:
                save_torch(self.out / "best.pt", model.state_dict())
            save_torch(self.out / "checkpoint.pt", {
                "format": CHECKPOINT_FORMAT, "network": self.net.name, "arguments": dict(self.net.arguments),
                "settings": {**self.s.fixed(), "epochs": self.s.epochs}, "epoch": epoch, "step": step,
                "global_step": global_step, "elapsed": elapsed, "running": running.clone(), "history": history,
                "rng": self._rng(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict()})
            self._write_metrics(history, global_step, elapsed, status="running", step=step)
        if self.world > 1:
            dist.barrier()

    def _write_metrics(self, history: list[dict], global_step: int, elapsed: float, status: str,
                       digests: list[str] | None = None, step: int = 0) -> dict:
        """metrics.json; `step` is the step of the epoch after the last whole one that model.pt holds."""
        metrics = {"network": self.net.name, "arguments": dict(self.net.arguments), "file": self.net.filename,
                   "params": self.net.params, "data": self.data.describe(), "classes": self.data.classes,
                   "settings": {k: v for k, v in asdict(self.s).items() if k != "explicit"},
                   "device": self.device.type, "status": status, "steps": global_step,
                   "seconds": round(elapsed, 3), "epochs": history}
        if history:
            best = _best(history)
            metrics["best_val_acc"], metrics["best_epoch"] = best["val_acc"], best["epoch"]
            metrics["final_val_acc"] = history[-1]["val_acc"]
        metrics["weights"] = _weights_files(self.out, history, step)
        if digests is not None:
            metrics["replica_digests"] = digests
        _write(self.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return metrics

    def _interrupted(self, history: list[dict], epoch: int, step: int, global_step: int, elapsed: float,
                     progress: Progress) -> dict:
        if self.main:
            self._write_metrics(history, global_step, elapsed, status="interrupted", step=step)
            at = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
            progress.line(f"stopped at {at}; saved {self.out}/checkpoint.pt — continue with --resume")
        return {"status": "interrupted", "steps": global_step}

    def _finish(self, model, history, global_step, elapsed, status: str, said: str | None = None) -> dict:
        digests = None
        if self.world > 1:
            digests = [None] * self.world
            dist.all_gather_object(digests, _digest(model))
        result = {"status": status, "steps": global_step, "said": said}
        if self.main:
            _write(self.out / f"{self.net.name}.py", self.net.source())
            save_torch(self.out / "model.pt", model.state_dict())
            result["metrics"] = self._write_metrics(history, global_step, elapsed, status, digests)
            from archlang.train.plot import plot_metrics

            result["plot"] = plot_metrics(history, self.out / "metrics.png", self.net.name, write=_write)
        if self.world > 1:
            dist.barrier()
        return result
