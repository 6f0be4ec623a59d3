"""The schema of checkpoint.pt (pydantic): `--resume` validates every field a run reads before it
uses one, so a damaged or hand-made checkpoint is refused with the field at fault rather than a
KeyError, a ZeroDivisionError or negative epochs.  torch.load(weights_only=True) already keeps
the file from running code; this keeps its contents from steering the run."""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from archlang.train.schedule import DEFAULT_MILESTONES, DEFAULTS, parse_milestones

CHECKPOINT_FORMAT = "archlang-train/1"
# what a checkpoint written before these settings existed ran with
LEGACY_SETTINGS = {"optimizer": "adamw", "weight_decay": DEFAULTS["adamw"]["weight_decay"], "schedule": "constant",
                   "milestones": DEFAULT_MILESTONES, "epochs": None}

Count = Annotated[int, Field(ge=0, strict=True)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, strict=True)


def _tensor(value: Any, dtype: torch.dtype | None = None, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"must be a tensor, not {type(value).__name__}")
    if dtype is not None and value.dtype != dtype:
        raise ValueError(f"must be a {dtype} tensor, not {value.dtype}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"must have the shape {list(shape)}, not {list(value.shape)}")
    return value


class Settings(_Model):
    data: str
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0, allow_inf_nan=False, strict=False)
    seed: int
    amp: Literal["off", "bf16", "fp16"]
    world_size: int = Field(ge=1)
    # absent from a checkpoint written before they existed: LEGACY_SETTINGS
    optimizer: Literal["adamw", "sgd"] = LEGACY_SETTINGS["optimizer"]
    weight_decay: float = Field(default=LEGACY_SETTINGS["weight_decay"], ge=0, allow_inf_nan=False, strict=False)
    schedule: Literal["constant", "step", "cosine"] = LEGACY_SETTINGS["schedule"]
    milestones: str = LEGACY_SETTINGS["milestones"]
    epochs: int | None = Field(default=None, ge=1)

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, value):
        parse_milestones(value)  # its ValueError names what is wrong
        return value


class EpochRecord(_Model):
    model_config = ConfigDict(strict=False, extra="allow")
    epoch: int = Field(ge=1, strict=True)
    train_loss: Number
    train_acc: Number = Field(ge=0, le=1)
    val_loss: Number
    val_acc: Number = Field(ge=0, le=1)
    seconds: Number = Field(ge=0)
    images_per_s: Number = Field(ge=0)


class Rng(_Model):
    torch_state: Any = Field(alias="torch")
    python: Any
    cuda: Any = None

    @field_validator("torch_state")
    @classmethod
    def _torch(cls, value):
        return _tensor(value, torch.uint8)

    @field_validator("cuda")
    @classmethod
    def _cuda(cls, value):
        return None if value is None else _tensor(value, torch.uint8)

    @field_validator("python")
    @classmethod
    def _python(cls, value):
        try:
            random.Random().setstate(value)
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"is not a state of Python's random ({err})") from None
        return value


class Checkpoint(_Model):
    format: Literal["archlang-train/1"]
    network: str
    arguments: dict[str, int | float]
    settings: Settings
    epoch: Count
    step: Count
    global_step: Count
    elapsed: float = Field(ge=0, allow_inf_nan=False, strict=False)
    running: Any
    history: list[EpochRecord]
    rng: Rng
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]

    @field_validator("running")
    @classmethod
    def _running(cls, value):
        value = _tensor(value, torch.float64, (3,))
        if not all(math.isfinite(v) for v in value.tolist()) or value[2].item() < 0:
            raise ValueError("must hold a finite loss sum, a count of correct answers and one of images")
        return value

    @field_validator("model")
    @classmethod
    def _weights(cls, value):
        for key, tensor in value.items():
            _tensor(tensor)
            if not isinstance(key, str):
                raise ValueError("its keys must be names")
        return value

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, value):
        if not isinstance(value.get("state"), dict) or not isinstance(value.get("param_groups"), list):
            raise ValueError("must be an optimizer's state_dict (state and param_groups)")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.global_step < self.step:
            raise ValueError(f"global_step {self.global_step} is below step {self.step}")
        if self.history and [r.epoch for r in self.history] != list(range(1, len(self.history) + 1)):
            raise ValueError("the history's epochs are not 1, 2, 3, ...")
        if len(self.history) != self.epoch:
            raise ValueError(f"the history holds {len(self.history)} epochs, but epoch is {self.epoch}")
        return self


def validate(ck: dict) -> str | None:
    """None if `ck` is a well-formed checkpoint; else what is wrong with it, in one line."""
    try:
        Checkpoint.model_validate(ck)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the checkpoint"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return None
