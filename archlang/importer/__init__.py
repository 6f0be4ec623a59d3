"""`archc import`: the .arch text of an existing PyTorch model.

    from archlang import from_torch
    text = from_torch(torchvision.models.resnet50(), (3, 224, 224))

The model is traced with torch.fx (archlang.importer.trace), every layer mapped to an op through
the op registry's inverse forms, and the graph written back as structure
(archlang.importer.structure): blocks, defs with parameters, `xN` repeats, residual `| skip`
sums, concatenations and gates, labelled with the model's attribute names.  What cannot be
mapped is an ImportFailure naming the module, its class and the source line; the text is
compiled before it is returned and must give the model's parameter count and output shape.

torch is imported here only: nothing in the compiler, the front end or the backends imports
this package, so `check`, `report`, `render` and `fmt` never import torch."""

from __future__ import annotations

import importlib
import re
from typing import Any


def __getattr__(name: str):
    if name == "ImportFailure":
        from archlang.importer.trace import ImportFailure

        return ImportFailure
    raise AttributeError(name)


def _name_of(module) -> str:
    from archlang.importer.structure import snake

    return snake(type(module).__name__)


def from_torch(module, input_shape, name: str | None = None, source: str | None = None) -> str:
    """The .arch text of `module` (an nn.Module) for inputs of `input_shape` (C, H, W without
    the batch, or (F,)); `name` names the network (default: the class, in snake case).  Build
    the module on the meta device (`with torch.device("meta")`) to import it without allocating
    its weights.  Raises archlang.importer.trace.ImportFailure for what archlang cannot write."""
    from archlang.importer.structure import Skip, Structurer, Writer, write
    from archlang.importer.trace import ImportFailure, Reader, trace

    dims = tuple(int(d) for d in input_shape)
    gm, out = trace(module, dims)
    reader = Reader(gm)
    outputs = reader.run()
    if len(outputs) != 1:
        raise ImportFailure(f"{type(module).__name__} returns {len(outputs)} tensors in eval mode; an archlang "
                            "network returns one (and its auxiliary heads' in training)")
    [output] = reader.extend_concats(outputs)
    heads: list[int] = []
    unused = _unused(module, reader, [output])
    if unused:  # auxiliary heads, computed in training only?
        reader, output, heads = _with_heads(module, dims, reader.nodes[output].leaf, unused)
    name = name or _name_of(module)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ImportFailure(f"'{name}' cannot name a network: use letters, digits and _")
    writer = Writer(reader.nodes, output, module, name, tuple(h for h in heads if h != output))
    writer.returns = heads
    root = writer.network_expr()
    skips: list[Skip] = []
    _walk_skips(root, skips)
    origins = [s.origin for s in skips if s.reg is not None]
    if origins and all(o and o.rsplit(".", 1)[-1] == "downsample" for o in origins):
        writer.settings.shortcut_name = "downsample"
    structurer = Structurer(writer)
    resolved = structurer.run(root)
    origin = source or f"{type(module).__module__}.{type(module).__name__}"
    header = f"{name}: imported by `archc import` from {origin}"
    text = write(writer, resolved, structurer, dims, header)
    _check(text, name, module, out, dims)
    return text


def _with_heads(module, dims, main_leaf, unused):
    """The model traced in training mode, where it returns its output and its auxiliary heads'
    (torchvision's GoogLeNet and Inception-v3): the reader, the output and the heads' outputs
    in the order the model returns them.  Parameters neither reaches are an error."""
    from archlang.importer.trace import ImportFailure, Reader, trace

    gm, _ = trace(module, dims, training=True)
    reader = Reader(gm)
    outputs = reader.extend_concats(reader.run())
    mains = [k for k, o in enumerate(outputs) if reader.nodes[o].leaf == main_leaf]
    if len(outputs) < 2 or len(mains) != 1 or _unused(module, reader, outputs):
        owners = list(dict.fromkeys(n.rsplit(".", 1)[0].split(".")[0] for n in unused))
        raise ImportFailure(f"{type(module).__name__} holds {len(unused)} parameter tensors its forward does not "
                            f"use on this input, in eval mode or as an auxiliary head in training (in "
                            f"{', '.join(owners[:5])}); archlang writes what forward computes, so the network "
                            "would lose them: import a model without them")
    main = outputs[mains[0]]
    return reader, main, outputs


def _unused(module, reader, outputs) -> list[str]:
    """Parameters the forward does not reach (GoogLeNet's auxiliary classifiers in eval mode)."""
    live, todo = set(), list(outputs)
    while todo:
        i = todo.pop()
        if i not in live:
            live.add(i)
            todo.extend(reader.nodes[i].inputs)
    used = set()
    for i in live:
        leaf = reader.nodes[i].leaf
        if leaf is not None:
            used.add(leaf)
    def reached(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:k]) in used for k in range(1, len(parts) + 1))

    return [n for n, _ in module.named_parameters() if not reached(n)]


def _walk_skips(e, found: list) -> None:
    from archlang.importer.structure import Skip, children

    if isinstance(e, Skip):
        found.append(e)
    for child in children(e):
        _walk_skips(child, found)


def _check(text: str, name: str, module, out, dims) -> None:
    """The text must compile to the model's parameter count and output shape: never a silent
    approximation."""
    import archlang
    from archlang.errors import ArchError
    from archlang.importer.trace import ImportFailure

    try:
        net = archlang.compile(text, f"{name}.arch")[name]
    except ArchError as err:
        raise ImportFailure(f"the imported text does not compile (a bug in archc import):\n{err}\n{text}") from None
    params = sum(p.numel() for p in module.parameters())
    if net.params != params or tuple(net.output_shape) != tuple(out.shape[1:]):
        raise ImportFailure(f"the imported network differs from the model (a bug in archc import): {net.params:,} "
                            f"params and output {net.output_shape} here, {params:,} and {tuple(out.shape[1:])} there")


def load_target(target: str, kwargs: dict[str, Any] | None = None):
    """The model a `MODULE:CALLABLE` target names, built (on the meta device where the callable
    allows it) with `kwargs`.  Importing MODULE runs its code."""
    import torch

    from archlang.importer.trace import ImportFailure

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ImportFailure(f"'{target}' is not MODULE:CALLABLE (e.g. torchvision.models:resnet50)")
    if module_name.startswith("torchvision"):
        _prepare_torchvision()
    try:
        mod = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any error of the user's module
        raise ImportFailure(f"cannot import the Python module {module_name}: {err}") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ImportFailure(f"{module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ImportFailure(f"{target} is not callable")
    kwargs = dict(kwargs or {})
    try:
        with torch.device("meta"):
            model = obj(**kwargs)
    except NotImplementedError:  # it reads a tensor's values while it builds (RegNet): build it for real
        model = obj(**kwargs)
    except TypeError as err:
        raise ImportFailure(f"{target}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise ImportFailure(f"{target} returned a {type(model).__name__}, not an nn.Module")
    return model


def _prepare_torchvision() -> None:
    """torchvision's C extension may not load against this torch; its classification models need
    only the schemas of two detection ops, defined here when missing (as tests/torchvision_ref does)."""
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018
        return
    except (AttributeError, RuntimeError):
        pass
    global _TV_LIB
    _TV_LIB = torch.library.Library("torchvision", "DEF")
    _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


_TV_LIB = None
