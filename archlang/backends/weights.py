"""Bring weights from an equivalent hand-written module (torchvision's, a checkpoint) into a
compiled one.

Names differ between the two (`layer2.0.ws.conv.weight` here, `layer2.0.downsample.0.weight` in
torchvision), but registration order and shapes do not, so tensors are paired by order and
every pair's shape is checked.

Where pairing by order fails, because a hand-written module registers a layer before one that
runs ahead of it (Swin V2 registers each block's `norm1` before the attention it normalises),
the tensors are paired by module instead: each module of ours (the tensors under one key
prefix: a Linear's weight and bias, a block's own parameters) takes the first module of the
weights, in their order, not taken yet and holding tensors of the same shapes in the same
order.  That fallback succeeds only when every module on each side is taken; otherwise the
error of the pairing by order is raised, as it would be without it.

`num_batches_tracked` counters are bookkeeping, not weights: they are left out of the pairing on
both sides.  Needs no torch import of its own: it works through `state_dict()` and
`load_state_dict()`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class WeightsMismatch(ValueError):
    """The weights do not fit the module: the message names the first tensor that differs."""


def _ignored(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _tensors(state: Mapping[str, Any], ignore: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked") and not _ignored(k, ignore)]


def _describe(key: str, tensor) -> str:
    return f"{key!r} {list(tensor.shape)}"


def load_weights(module, weights, *, ignore: Iterable[str] = ()) -> dict[str, str]:
    """Copy `weights` (a state_dict, or a module) into `module`, pairing tensors by order (or,
    where that fails, module by module: see above).

    `ignore` lists key prefixes of `weights` to leave out, such as torchvision GoogLeNet's
    auxiliary classifiers: `ignore=("aux1", "aux2")`.  Returns {module key: weights key}.
    Raises WeightsMismatch naming the first pair (by order) whose shapes differ, or the first
    tensor left over on either side; the module is untouched then."""
    state = weights.state_dict() if hasattr(weights, "state_dict") else weights
    if not isinstance(state, Mapping):
        raise TypeError(f"load_weights takes a state_dict or an nn.Module, not {type(weights).__name__}")
    ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    ours = _tensors(module.state_dict(), ())
    theirs = _tensors(state, ignore)
    try:
        _check_order(ours, theirs)
    except WeightsMismatch:
        by_module = _pair_modules(ours, theirs)
        if by_module is None:
            raise
        theirs = by_module
    pairs = {our_key: their_key for (our_key, _), (their_key, _) in zip(ours, theirs, strict=True)}
    renamed = {our_key: tensor for (our_key, _), (_, tensor) in zip(ours, theirs, strict=True)}
    module.load_state_dict(renamed, strict=False)
    return pairs


def _check_order(ours: list[tuple[str, Any]], theirs: list[tuple[str, Any]]) -> None:
    """Raises WeightsMismatch at the first pair (by order) whose shapes differ, or when one side is longer."""
    for i, ((our_key, our_t), (their_key, their_t)) in enumerate(zip(ours, theirs, strict=False)):
        if tuple(our_t.shape) != tuple(their_t.shape):
            prefix = their_key.split(".")[0]
            rest = [t for k, t in theirs[i:] if not _ignored(k, (prefix,))]
            fits = [tuple(t.shape) for _, t in ours[i:]] == [tuple(t.shape) for t in rest]
            raise WeightsMismatch(
                f"tensor #{i}: the module has {_describe(our_key, our_t)} but the weights have "
                f"{_describe(their_key, their_t)}; "
                + (f"without the weights' {prefix!r} the rest fits: pass ignore=({prefix!r},)" if fits
                   else "the two networks differ from here on"))
    if len(ours) != len(theirs):
        longer, side = (ours, "module's") if len(ours) > len(theirs) else (theirs, "weights'")
        key, tensor = longer[min(len(ours), len(theirs))]
        hint = (f"; if the weights carry extra parts, skip them with ignore=({key.split('.')[0]!r},)"
                if side == "weights'" else "")
        raise WeightsMismatch(
            f"the module has {len(ours)} tensors and the weights {len(theirs)}: every shape agrees up to "
            f"there, and the first one left over is the {side} {_describe(key, tensor)}{hint}")


def _modules(tensors: list[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """The tensors grouped by the module holding them (their key without its last part), in order."""
    groups: dict[str, list[tuple[str, Any]]] = {}
    for key, tensor in tensors:
        groups.setdefault(key.rpartition(".")[0], []).append((key, tensor))
    return list(groups.values())


def _signature(group: list[tuple[str, Any]]) -> tuple:
    return tuple(tuple(t.shape) for _, t in group)


def _pair_modules(ours: list[tuple[str, Any]], theirs: list[tuple[str, Any]]) -> list[tuple[str, Any]] | None:
    """`theirs` reordered to pair with `ours` module by module: each of our modules takes the first
    untaken module of the weights with the same shapes.  None unless every module on both sides pairs."""
    waiting: dict[tuple, list[list[tuple[str, Any]]]] = {}
    for group in _modules(theirs):
        waiting.setdefault(_signature(group), []).append(group)
    for queue in waiting.values():
        queue.reverse()  # popped from the end: the first in order first
    paired: list[tuple[str, Any]] = []
    for group in _modules(ours):
        queue = waiting.get(_signature(group))
        if not queue:
            return None
        paired += queue.pop()
    if any(waiting.values()):
        return None
    return paired
