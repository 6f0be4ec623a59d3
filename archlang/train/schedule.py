"""The optimizer and the learning-rate schedule of `archc train`.

The learning rate is a pure function of the step (the number of updates already made), the
run's length and its settings: it is set before every update, so a resumed run (which knows its
global step) follows the schedule exactly, with nothing of the schedule to save.

- `constant`: the base rate throughout.
- `step`: the base rate, divided by 10 at each milestone (He et al. 2016: at 50% and 75% of the
  run).  A milestone is a share of the run (`50%`) or an epoch (`10`, `7.5`); it takes effect at
  the first update after it.
- `cosine`: from the base rate down to 0 along half a cosine over the run (Loshchilov & Hutter).
"""

from __future__ import annotations

import math

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "step", "cosine")
DEFAULT_MILESTONES = "50%,75%"
STEP_FACTOR = 0.1
SGD_MOMENTUM = 0.9
# per optimizer: the learning rate and weight decay when none is given (SGD's are He et al.'s
# CIFAR-10 settings; AdamW's are torch's defaults, which `archc train` has always used)
DEFAULTS = {"adamw": {"lr": 1e-3, "weight_decay": 1e-2}, "sgd": {"lr": 0.1, "weight_decay": 1e-4}}


class ScheduleError(ValueError):
    """Milestones that do not fit the run."""


def parse_milestones(text: str) -> list[tuple[float, bool]]:
    """'50%,75%' or '10,15' → [(value, is_share)]; a share lies in (0, 100)%, an epoch above 0.
    Raises ValueError with the reason (the CLI shows it as a usage error)."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ValueError(f"'{text}' is not a list of milestones (such as 50%,75% or 10,15)")
    out = []
    for item in items:
        share = item.endswith("%")
        try:
            value = float(item[:-1] if share else item)
        except ValueError:
            raise ValueError(f"'{item}' is not a share of the run (50%) or an epoch (10)") from None
        if not math.isfinite(value) or value <= 0 or (share and value >= 100):
            raise ValueError(f"'{item}' must be {'between 0% and 100%' if share else 'above 0'}")
        out.append((value / 100 if share else value, share))
    return out


def milestone_steps(text: str, epochs: int, steps_per_epoch: int) -> list[int]:
    """The milestones of `text` as step counts, in a run of `epochs` epochs."""
    steps = []
    for value, share in parse_milestones(text):
        at_epoch = value * epochs if share else value
        if at_epoch >= epochs:
            raise ScheduleError(f"--milestones {text}: epoch {at_epoch:g} is not inside the run's {epochs} epochs")
        steps.append(round(at_epoch * steps_per_epoch))
    return sorted(steps)


def learning_rate(schedule: str, base: float, step: int, total: int, milestones: list[int]) -> float:
    """The rate of the update made after `step` updates, in a run of `total` updates."""
    if schedule == "step":
        return base * STEP_FACTOR ** sum(step >= m for m in milestones)
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(1, total)))
    return base


def make_optimizer(params, name: str, lr: float, weight_decay: float):
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
