"""The schema of `archc report --json` (a list, one object per network; `archc build` writes one
network's object to <network>.json): pydantic models, the JSON Schema published as
docs/report.schema.json, and validators for outside readers.

Only this module imports pydantic for the report; the report itself is built without it."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, RootModel


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LayerRow(_Strict):
    """One row: a layer, a block rolled up at the report's depth, or the input."""

    name: str = Field(description="qualified name, e.g. layer2.0.conv1 (the generated module's attribute path)")
    op: str = Field(description="what the row holds: `conv3x3 128 /2`, `basic ×4`, `input`")
    kind: Literal["input", "layer", "block"]
    shape: list[NonNegativeInt] = Field(description="output shape of one sample: [C, H, W] or [F]")
    params: NonNegativeInt
    buffers: NonNegativeInt
    macs: NonNegativeInt = Field(
        description="multiply-accumulates of conv, dense and attention, bias excluded, batch 1")
    other_ops: NonNegativeInt = Field(description="elementwise work: bias adds, BN, activations, pools, sums")
    activation_bytes: NonNegativeInt = Field(description="float32 outputs at batch 1 (views take none)")
    ws: bool = Field(description="an inserted Ws projection, or a block holding one")
    pad: bool = Field(description="an inserted zero-pad shortcut, or a block holding one")
    layers: NonNegativeInt = Field(description="IR nodes the row sums (0 for the input)")
    skips: NonNegativeInt = Field(
        description="`skip` branches of the sums inside a block (0 for a layer; a plain twin's blocks have none)")
    parts: dict[str, NonNegativeInt] | None = Field(
        None, description="the row's MACs by named part, where an op states them (attention: q, k, v "
                          "projections, q·kᵀ, attention·v, output projection); absent otherwise")
    saved_bytes: NonNegativeInt | None = Field(
        None, description="with --batch/--dtype/--optimizer: the bytes autograd saves for backward that the row's "
                          "layers made (their outputs some op keeps, each tensor once; their own masks, indices, "
                          "statistics) at the training batch size and dtype; absent otherwise")


class OutputRow(_Strict):
    """One output of a network that returns several (an `output` line, auxiliary heads)."""

    name: str
    shape: list[NonNegativeInt]
    training_only: bool = Field(description="an auxiliary head: computed and returned in training mode only")
    params: NonNegativeInt = Field(description="an auxiliary head's own parameters (0 for the others)")
    macs: NonNegativeInt = Field(description="an auxiliary head's own MACs, which the network's macs leave out")


class TrainingStep(_Strict):
    """The memory of one training step (archlang/backends/memory.py), in bytes."""

    batch: NonNegativeInt = Field(description="the batch size (--batch)")
    dtype: Literal["fp32", "bf16", "fp16"] = Field(description="the dtype of the model, cast with .to(dtype)")
    optimizer: Literal["sgd", "momentum", "adam", "adamw"]
    parameter_bytes: NonNegativeInt = Field(description="the parameters in dtype")
    gradient_bytes: NonNegativeInt = Field(description="a gradient per parameter, in dtype")
    optimizer_state_bytes: NonNegativeInt = Field(
        description="sgd 0; momentum 1x, adam and adamw 2x the parameter bytes (step counts not counted)")
    activation_bytes: NonNegativeInt = Field(
        description="the tensors saved for backward in a training-mode forward, each storage once: the sum of "
                    "the rows' saved_bytes")
    total_bytes: NonNegativeInt = Field(description="the four summed")
    convention: str


class NetworkReport(_Strict):
    """The static cost report of one network."""

    network: str
    arguments: dict[str, int | float] = Field(description="the network parameters it was compiled with")
    input_shape: list[NonNegativeInt]
    output_shape: list[NonNegativeInt]
    params: NonNegativeInt = Field(description="trainable parameters: sum(p.numel() for p in module.parameters())")
    buffers: NonNegativeInt = Field(description="BN running statistics and counters")
    macs: NonNegativeInt = Field(description="torchvision's published 'GFLOPS' unit; FlopCounterMode / 2")
    flops: NonNegativeInt = Field(description="2 x macs")
    other_ops: NonNegativeInt
    activation_bytes: NonNegativeInt
    projections: list[str] = Field(description="blocks holding an inserted Ws projection")
    pad_shortcuts: list[str] = Field(description="blocks holding an inserted zero-pad shortcut")
    depth: NonNegativeInt | None = Field(description="the roll-up depth; null: every layer")
    parts: dict[str, NonNegativeInt] | None = Field(None, description="the total MACs by named part (attention)")
    convention: str
    layers: list[LayerRow]
    outputs: list[OutputRow] | None = Field(default=None, description="present where a network returns several")
    training: TrainingStep | None = Field(
        default=None, description="present with --batch, --dtype or --optimizer: the memory of one training step")


Reports = RootModel[list[NetworkReport]]


def json_schema() -> str:
    """The text of docs/report.schema.json: the list `archc report --json` prints; its items (and
    the <network>.json files of `archc build`) are `#/$defs/NetworkReport`."""
    schema = Reports.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archc report --json (a list, one report per network)"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def validate(data: list) -> list[NetworkReport]:
    """Checks the output of `archc report --json`: a list of network reports."""
    return Reports.model_validate(data).root


def validate_network(data: dict) -> NetworkReport:
    """Checks one network's report (`Report.to_dict()`, an item of the list, or build's <network>.json)."""
    return NetworkReport.model_validate(data)
