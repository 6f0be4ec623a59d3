"""IR → the memory of one training step, computed statically (no torch): the parameters, their
gradients, the optimizer's state, and the activations autograd keeps for the backward pass, by
node (the report's per-layer and per-block column) and in all.

What each op keeps is its spec's `saved` rule (archlang/compiler/ops: Saved); whether its output
is a tensor of its own or its input's memory seen again is its `memory_view` rule.  A tensor kept
by several ops (a ReLU's output that the next conv keeps too, a view of it) counts once, as
`torch.autograd.graph.saved_tensors_hooks` sees it when tensors are told apart by their storage;
a view keeps its whole base tensor alive, so it counts as that base.  A kept value counts in the
row of the node that made it; a tensor of an op's own (a mask, indices, statistics, attention's
inner products) in the row of that op.

The convention (CONVENTION below): the model cast with `.to(dtype)` and a `torch.optim`
optimizer on it — parameters, gradients, optimizer state and activations all in that dtype, no
fp32 master copy (AMP's autocast keeps fp32 parameters, gradients and state: count those with
fp32, and its activations lie between fp32's and bf16's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archlang.compiler.ir import NetworkIR, Role
from archlang.compiler.ops import REGISTRY

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# state tensors the optimizer keeps per parameter: SGD none, SGD with momentum its momentum
# buffer, Adam and AdamW the two moment estimates (exp_avg, exp_avg_sq)
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}

CONVENTION = (
    "training step memory: the model cast with .to(dtype) and a torch.optim optimizer on it, so parameters, "
    "gradients, optimizer state and activations are all in dtype (no fp32 master weights); optimizer state: "
    "momentum 1x, Adam/AdamW 2x the parameters (their one-element step counts left out); saved for backward: "
    "the tensors autograd keeps in a training-mode forward at the batch size, each storage once (a view as its "
    "whole base, the input where an op keeps it, dropout masks 1 byte an element as on CUDA), in the row of the "
    "layer that made them; total: the four summed (the step's peak adds temporaries, workspaces and allocator "
    "slack; buffers not counted).")


@dataclass(frozen=True)
class TrainingSetup:
    """What a training step is counted for: the batch size, the dtype and the optimizer."""

    batch: int = 1
    dtype: str = "fp32"
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"the batch size is at least 1, not {self.batch}")
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, not {self.dtype!r}")
        if self.optimizer not in OPTIMIZER_STATE:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE)}, not {self.optimizer!r}")


@dataclass
class TrainingMemory:
    """Bytes of one training step (see the module's docstring)."""

    setup: TrainingSetup
    parameter_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: int
    activation_bytes: int
    by_node: dict[int, int] = field(default_factory=dict)  # node id → the saved bytes counted in its row

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.gradient_bytes + self.optimizer_state_bytes + self.activation_bytes

    def to_dict(self) -> dict[str, Any]:
        s = self.setup
        return {"batch": s.batch, "dtype": s.dtype, "optimizer": s.optimizer,
                "parameter_bytes": self.parameter_bytes, "gradient_bytes": self.gradient_bytes,
                "optimizer_state_bytes": self.optimizer_state_bytes, "activation_bytes": self.activation_bytes,
                "total_bytes": self.total_bytes, "convention": CONVENTION}

    def parts(self) -> list[tuple[str, int]]:
        return [("parameters", self.parameter_bytes), ("gradients", self.gradient_bytes),
                (f"optimizer state ({self.setup.optimizer})", self.optimizer_state_bytes),
                ("activations saved for backward", self.activation_bytes), ("total", self.total_bytes)]

    @property
    def title(self) -> str:
        s = self.setup
        return f"training step memory (batch {s.batch}, {s.dtype}, {s.optimizer})"

    def lines(self) -> list[str]:
        """The text report's section: each part in MiB, and its bytes."""
        parts = self.parts()
        width = max(len(name) for name, _ in parts)
        cells = [mib(n) for _, n in parts]
        right = max(len(c) for c in cells)
        return [f"{self.title}:"] + [f"  {name.ljust(width)}  {cell.rjust(right)}  ({n:,} bytes)"
                                     for (name, n), cell in zip(parts, cells, strict=True)]


def mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def training_memory(ir: NetworkIR, setup: TrainingSetup | None = None, device: str = "cuda",
                    input_grad: bool = False) -> TrainingMemory:
    """The memory of one training step of `ir` (every node, auxiliary heads included: they run in
    training).  `device`: `cuda` counts a dropout mask as one byte an element (CUDA's fused
    dropout keeps a bool mask), `cpu` in the dtype (PyTorch's CPU dropout keeps the scaled noise);
    `input_grad`: the input needs a gradient too (the tests check single ops with it)."""
    setup = setup or TrainingSetup()
    size = DTYPE_BYTES[setup.dtype]
    element = {"float": size, "float32": 4, "int64": 8, "mask": 1 if device == "cuda" else size}
    batch = setup.batch
    base: dict[int, int] = {}  # value → the node whose tensor holds it (itself, or the base of a view)
    contiguous: dict[int, bool] = {}
    needs_grad: dict[int, bool] = {}
    kept: dict[int, int] = {}  # base node → the bytes of its tensor, once some op keeps it
    own: dict[int, int] = {}
    params = 0
    for node in ir.nodes:
        spec, a, ins, out = REGISTRY[node.op], node.attrs, node.in_shapes, node.shape
        if node.role is Role.INPUT:
            base[node.id], contiguous[node.id], needs_grad[node.id] = node.id, True, input_grad
            continue
        count = spec.params(a, ins, out)
        params += count
        first = node.inputs[0]
        view = (spec.memory_view(a, contiguous[first]) if spec.memory_view is not None
                else contiguous[first] if spec.view else None)
        if view is None:
            base[node.id], contiguous[node.id] = node.id, True
        else:
            base[node.id], contiguous[node.id] = base[first], view
        needs_grad[node.id] = count > 0 or any(needs_grad[i] for i in node.inputs)
        if not needs_grad[node.id]:
            continue  # nothing before it learns, and it has no weights: autograd records nothing
        for saved in spec.saved(a, ins, out):
            if saved.source == "own":
                n = saved.elements * (batch if saved.per_sample else 1) * element[saved.dtype]
                own[node.id] = own.get(node.id, 0) + n
                continue
            if saved.for_input is not None and not needs_grad[node.inputs[saved.for_input]]:
                continue
            value = node.id if saved.source == "output" else node.inputs[saved.index]
            if saved.copy_if_strided and not contiguous[value]:
                own[node.id] = own.get(node.id, 0) + ir.nodes[value].shape.numel * batch * size
                continue
            holder = base[value]
            kept[holder] = ir.nodes[holder].shape.numel * batch * size
    by_node = dict(kept)
    for node_id, n in own.items():
        by_node[node_id] = by_node.get(node_id, 0) + n
    parameter_bytes = params * size
    return TrainingMemory(setup, parameter_bytes, parameter_bytes, OPTIMIZER_STATE[setup.optimizer] * parameter_bytes,
                          sum(by_node.values()), by_node)
