"""Reading a PyTorch model: torch.fx traces its forward (through containers and custom blocks,
stopping at the layers an archlang op writes), shapes come from running the trace on meta or
fake tensors (no weights are allocated or computed), and every layer and function is mapped to
an archlang op through the op registry's inverse forms (`Emit.torch_types` and `Emit.read`).

The result is a flat graph of mapped nodes, each knowing the stack of modules it was called in
(the structure archlang.importer.structure turns into blocks, defs and repeats)."""

from __future__ import annotations

import functools
import operator
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from archlang.compiler import ops
from archlang.compiler.ir import Layout


class ImportFailure(Exception):
    """A model archlang cannot write: the message names the module, its class and the source line."""


@dataclass(frozen=True)
class Frame:
    """One traced-through module call: its qualified path, its class and which call of it."""

    path: str
    cls: type
    call: int


@dataclass
class FNode:
    """A mapped node: an archlang op (by registry name) and the arguments read from PyTorch."""

    id: int
    op: str  # "_input" for the network input
    args: dict[str, Any]
    inputs: list[int]
    stack: tuple[Frame, ...]
    dims: tuple[int, ...]  # its output, batch left out
    layout: Layout
    in_dims: tuple[int, ...] = ()
    leaf: str | None = None  # the leaf module's path, or the parameter's (a layer scale)
    where: str = ""
    users: list[int] = field(default_factory=list)


def type_key(cls: type) -> str:
    """How the registry names a module class: `nn.Conv2d` for torch.nn's, else module.Class."""
    if cls.__module__.startswith("torch.nn.modules") and getattr(nn, cls.__name__, None) is cls:
        return f"nn.{cls.__name__}"
    if cls.__qualname__ == "ZeroPadShortcut" and _is_zero_pad_helper(cls):  # archlang's generated helper
        return "archlang.ZeroPadShortcut"
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _zero_pad_helper() -> type:
    """The ZeroPadShortcut class archlang writes into generated modules, made once from its text."""
    from archlang.compiler.ops.layers import ZERO_PAD_CLASS

    space: dict[str, Any] = {"nn": nn}
    exec(compile(ZERO_PAD_CLASS, "<archlang helper>", "exec"), space)  # noqa: S102 - archlang's own source text
    return space["ZeroPadShortcut"]


def _is_zero_pad_helper(cls: type) -> bool:
    """Whether `cls` is the ZeroPadShortcut archlang writes into generated modules, its code and
    not only its name (a user's class of that name may pad otherwise)."""
    ours = _zero_pad_helper()

    def same(a, b) -> bool:
        a, b = getattr(a, "__code__", None), getattr(b, "__code__", None)
        return a is not None and b is not None and (a.co_code, a.co_consts, a.co_names) == (b.co_code, b.co_consts,
                                                                                             b.co_names)

    return same(cls.forward, ours.forward) and same(cls.__init__, ours.__init__)


def _function_key(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    name = getattr(target, "__name__", str(target))
    if getattr(nn.functional, name, None) is target:
        return f"F.{name}"
    if getattr(torch, name, None) is target:
        return f"torch.{name}"
    if getattr(operator, name, None) is target:
        return f"operator.{name}"
    return f"{getattr(target, '__module__', '?')}.{name}"


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# modules that are part of an op's form, read with their neighbours (Reader.maxvit)
_PATTERN_LEAVES = ("torchvision.models.maxvit.SwapAxes",)


def is_container(m: nn.Module) -> bool:
    return isinstance(m, CONTAINERS)


def _mapped_type(m: nn.Module) -> bool:
    return bool(ops.inverse(type_key(type(m))))


class _Tracer(fx.Tracer):
    """Traces through containers and custom modules, keeps mapped layers (and every other
    torch.nn layer, to be reported) as leaves, and records on each node the module calls it is in."""

    def __init__(self):
        super().__init__()
        self.record_stack_traces = True
        self.stack: list[Frame] = []
        self.calls: Counter[str] = Counter()

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if is_container(m):
            return False
        return _mapped_type(m) or type(m).__module__.startswith("torch.nn") or type_key(type(m)) in _PATTERN_LEAVES

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):
            return super().call_module(m, forward, args, kwargs)
        self.calls[path] += 1
        self.stack.append(Frame(path, type(m), self.calls[path]))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["arch_stack"] = tuple(self.stack)
        return node


def _user_frame(tb_lines: str) -> str:
    """The innermost `file:line` of a stack trace outside torch itself."""
    found = re.findall(r'File "([^"]+)", line (\d+)', tb_lines or "")
    for path, line in reversed(found):
        if "/torch/" not in path and "/archlang/importer/" not in path:
            return f"{_short(path)}:{line}"
    return ""


def _short(path: str) -> str:
    return path.split("site-packages/", 1)[-1]


def _where(node: fx.Node) -> str:
    return _user_frame(node.stack_trace or "")


class _Shapes(fx.Interpreter):
    def run_node(self, n):
        result = super().run_node(n)
        n.meta["arch_value"] = result
        return result


def trace(module: nn.Module, input_dims: tuple[int, ...], training: bool = False) -> tuple[fx.GraphModule, Any]:
    """The fx graph of `module` (in eval mode, or in training mode to see its auxiliary heads)
    with every node's value computed on meta (or fake) tensors."""
    module.train(training)
    try:
        return _trace(module, input_dims)
    finally:
        module.eval()


def _trace(module: nn.Module, input_dims: tuple[int, ...]) -> tuple[fx.GraphModule, Any]:
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as err:  # noqa: BLE001 - fx's errors for control flow and unsupported Python
        where = _user_frame("".join(traceback.format_tb(err.__traceback__)))
        reason = str(err).split("\n")[0]
        if "control flow" in reason or "iterate" in reason or "bool" in reason.lower():
            reason = f"control flow that depends on tensor values cannot be traced ({reason})"
        at = f" at {where}" if where else ""
        raise ImportFailure(f"cannot trace {type(module).__name__}{at}: {reason}") from None
    gm = fx.GraphModule(tracer.root, graph)
    tensors = list(module.parameters()) + list(module.buffers())
    on_meta = bool(tensors) and all(t.is_meta for t in tensors)
    try:
        if on_meta or not tensors:
            with torch.no_grad():
                out = _Shapes(gm).run(torch.empty(2, *input_dims, device="meta"))
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
                out = _Shapes(gm).run(mode.from_tensor(torch.empty(2, *input_dims)))
    except ImportFailure:
        raise
    except Exception as err:  # noqa: BLE001 - a shape the model rejects
        where = _user_frame("".join(traceback.format_tb(err.__traceback__)))
        first = str(err).strip().split("\n")[0]
        raise ImportFailure(f"{type(module).__name__} does not run on an input of shape "
                            f"{'x'.join(map(str, input_dims))}{f' ({where})' if where else ''}: {first}") from None
    return gm, out


@dataclass
class Site:
    """One use of a PyTorch layer or function, as the registry's `read` hooks see it."""

    key: str
    module: nn.Module | None
    node: fx.Node
    layout: Layout
    in_dims: tuple[int, ...]
    out_dims: tuple[int, ...]
    param: Any = None

    def arg(self, index: int, name: str, default=None):
        args = self.node.args
        if len(args) > index:
            return args[index]
        return self.node.kwargs.get(name, default)

    def value(self, x):
        """`x` with the sizes the trace computed in place of its nodes (`skip.shape[2] - h`)."""
        if isinstance(x, fx.Node):
            return x.meta.get("arch_value")
        if isinstance(x, slice):
            return slice(self.value(x.start), self.value(x.stop), self.value(x.step))
        if isinstance(x, tuple | list):
            return type(x)(self.value(v) for v in x)
        return x

    @property
    def numel(self) -> int:
        n = 1
        for d in self.in_dims:
            n *= d
        return n

    @property
    def dims(self) -> tuple:
        if self.module is not None and hasattr(self.module, "dims"):
            return tuple(self.module.dims)
        rest = self.node.args[1:] or self.node.kwargs.get("dims", ())
        if len(rest) == 1 and isinstance(rest[0], tuple | list):
            rest = rest[0]
        return tuple(rest)


_LAYOUTS = {3: Layout.IMAGE, 1: Layout.VECTOR, 2: Layout.TOKENS, 4: Layout.WINDOWS}
# what a traced value can be: a tensor ("t"), an image flattened to (N, C, H*W) ("cxs"), attention's
# (output, weights) ("mha"), equal parts of a split ("parts"), and an image viewed as channel groups
# (N, G, C/G, H, W) before and after their transpose ("grp", "grp_t")
# and MaxViT's windows: a WindowPartition whose kind (window or grid) the next SwapAxes decides
# ("win"), and windows swapped back before a WindowDepartition ("unswap")
_TENSORS = ("t", "cxs", "mha", "parts", "grp", "grp_t", "win", "unswap")
_MAXVIT = "torchvision.models.maxvit."
_ALIASES = {"Tensor.contiguous", "Tensor.clone", "torch.clone"}
_TOKEN_TRANSPOSES = ({"key": "Tensor.permute", "dims": (0, 2, 1)}, {"key": "Tensor.transpose", "dims": (1, 2)},
                     {"key": "torch.transpose", "dims": (1, 2)})


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """`layer2.0.attn (torch.nn.Bilinear)` or `the function torch.roll`, and where it is called."""
    stack = node.meta.get("arch_stack", ())
    inside = f" in {stack[-1].path} ({stack[-1].cls.__name__})" if stack else ""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        text = f"{node.target} ({type(m).__module__}.{type(m).__qualname__})"
    else:
        text = f"the {'method' if node.op == 'call_method' else 'function'} {_function_key(node)}{inside}"
    where = _where(node)
    return text + (f" at {where}" if where else "")


class Reader:
    """Walks the traced graph and maps each node to an FNode through the op registry."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.nodes: list[FNode] = []
        self.value: dict[fx.Node, Any] = {}
        self.partitions: dict[fx.Node, tuple] = {}  # MaxViT's WindowPartitions, once known to be windows

    def fail(self, node: fx.Node, why: str) -> ImportFailure:
        return ImportFailure(f"cannot import {_describe(node, self.gm)}: {why}")

    @staticmethod
    def _op_dims(spec, args, first) -> tuple | None:
        if spec.name in ("window_partition", "grid_partition"):
            c, h, w = first.dims
            p = args["size"]
            return (h // p, w // p, p * p, c)
        return (first.dims[0], 1, 1) if spec.name in ("gap", "gmp") else None

    @staticmethod
    def arch_dims(first: FNode | None, dims: tuple, op: str = "") -> tuple:
        """archlang's dims of a value: torchvision's MaxViT keeps windows as (Gh*Gw, S, D), archlang
        as (Gh, Gw, S, D)."""
        if first is not None and first.layout is Layout.WINDOWS and len(dims) == 3 and "departition" not in op \
                and dims[0] == first.dims[0] * first.dims[1]:
            return (*first.dims[:2], *dims[1:])
        return dims

    def add(self, node: fx.Node, op: str, args: dict, inputs: list[int], leaf: str | None = None,
            dims: tuple | None = None) -> int:
        out = node.meta["arch_value"]
        first = self.nodes[inputs[0]] if inputs else None
        dims = dims or self.arch_dims(first, tuple(out.shape[1:]), op)
        if op == "channels_last" or (first is not None and first.layout is Layout.GRID and len(dims) == 3
                                     and op != "channels_first"):
            layout = Layout.GRID
        elif len(dims) in _LAYOUTS:
            layout = _LAYOUTS[len(dims)]
        else:
            raise self.fail(node, f"its output has {len(dims) + 1} dimensions; archlang has images, token "
                                  "sequences and vectors")
        fn = FNode(len(self.nodes), op, args, inputs, node.meta.get("arch_stack", ()), dims, layout,
                   first.dims if first else (), leaf, _where(node))
        self.nodes.append(fn)
        for i in inputs:
            self.nodes[i].users.append(fn.id)
        return fn.id

    def extend_concats(self, outputs: list[int]) -> list[int]:
        """DenseNet's form: each layer concatenates all earlier outputs.  A concatenation of one
        tensor is that tensor; one whose inputs begin with all of an earlier concatenation's is
        that concatenation extended (`[skip, layer]` on it), and belongs to the module that made
        its last input."""
        seen: dict[tuple[int, ...], int] = {}
        alias: dict[int, int] = {}
        for n in self.nodes:
            n.inputs = [alias.get(i, i) for i in n.inputs]
            if n.op != "_concat":
                continue
            if len(n.inputs) == 1:
                alias[n.id] = n.inputs[0]
                seen.setdefault(tuple(n.inputs), n.inputs[0])
                continue
            key = tuple(n.inputs)
            prefix = seen.get(key[:-1])
            if prefix is not None:
                n.inputs = [prefix, key[-1]]
                n.stack = self.nodes[key[-1]].stack
            seen.setdefault(key, n.id)
        for n in self.nodes:
            n.users = []
        for n in self.nodes:
            for i in n.inputs:
                self.nodes[i].users.append(n.id)
        return [alias.get(o, o) for o in outputs]

    def tensor(self, value) -> int | None:
        return value[1] if isinstance(value, tuple) and value and value[0] == "t" else None

    def run(self) -> list[int]:
        output = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.nodes:
                    raise self.fail(node, "the model takes several inputs; archlang networks take one")
                out = node.meta["arch_value"]
                dims = tuple(out.shape[1:])
                self.nodes.append(FNode(0, "_input", {}, [], (), dims, _LAYOUTS[len(dims)]))
                self.value[node] = ("t", 0)
            elif node.op == "get_attr":
                self.value[node] = ("param", node.meta["arch_value"], node.target)
            elif node.op == "output":
                values = node.args[0] if isinstance(node.args[0], tuple | list) else (node.args[0],)
                output = [self.tensor(self.value.get(v)) if isinstance(v, fx.Node) else None for v in values]
                made = self.value.get(node.args[0]) if isinstance(node.args[0], fx.Node) else None
                if isinstance(made, tuple) and made[0] == "tuple":
                    output = list(made[1])
                if None in output:
                    raise self.fail(node, "the model's output is not one tensor, or several tensors in training")
            else:
                self.value[node] = self.visit(node)
        return output

    def _tensor_inputs(self, node: fx.Node) -> list:
        found = []
        for a in _flat((*node.args, *node.kwargs.values())):
            if isinstance(a, fx.Node):
                found.append(self.value.get(a))
        return found

    def visit(self, node: fx.Node):
        out = node.meta.get("arch_value")
        values = self._tensor_inputs(node)
        tensors = [v for v in values if isinstance(v, tuple) and v and v[0] in _TENSORS]
        params = [v for v in values if isinstance(v, tuple) and v and v[0] == "param"]
        if node.op == "call_function" and node.target is operator.getitem and tensors and tensors[0][0] == "mha":
            return ("t", tensors[0][1]) if node.args[1] == 0 else None  # the output, not the attention weights
        for k, v in enumerate(tensors):
            if v[0] == "win" and not self.keeps_windows(node):
                tensors[k] = self.partition(v)
        if node.op == "call_function" and node.target is operator.getitem and tensors and tensors[0][0] == "parts":
            _, source, parts, dim = tensors[0]
            return ("t", self.mapped(node, "x.chunk(n)[i]", None, [source], param=(parts, node.args[1], dim)))
        if node.op == "call_function" and isinstance(node.target, type) and issubclass(node.target, tuple) \
                and tensors and all(v[0] == "t" for v in tensors) and len(tensors) == len(out):
            return ("tuple", [v[1] for v in tensors])  # a named tuple of outputs (GoogLeNetOutputs)
        if not isinstance(out, torch.Tensor):
            split = self.split(node, tensors, out)
            if split is not None:
                return split
            if node.op == "call_module" and isinstance(out, tuple):
                return self.leaf(node, tensors, params, out)
            if any(v[0] == "t" for v in tensors) and not _bookkeeping(node):
                raise self.fail(node, "it returns something other than one tensor")
            return None  # sizes, asserts: bookkeeping fx records from the forward
        if not tensors:
            if params:  # arithmetic on parameters alone (an expanded class token)
                return ("param", params[0][1], params[0][2])
            return None
        if node.op == "call_module":
            return self.leaf(node, tensors, params, out)
        key = _function_key(node)
        if key in _ALIASES and len(tensors) == 1:
            return tensors[0]
        if tensors[0][0] in ("grp", "grp_t"):
            return self.shuffle(node, key, tensors[0], out)
        if tensors[0][0] == "cxs":  # (N, C, H*W) from an image: a transpose makes tokens
            site_dims = Site(key, None, node, Layout.TOKENS, (), ()).dims
            if any(key == t["key"] and site_dims == t["dims"] for t in _TOKEN_TRANSPOSES):
                return ("t", self.add(node, "tokens", {}, [tensors[0][1]]))
            raise self.fail(node, "a reshape of an image that is not `tokens`")
        first = self.nodes[tensors[0][1]]
        reshapes = ("Tensor.flatten", "torch.flatten", "Tensor.reshape", "Tensor.view")
        if key in reshapes and first.layout is Layout.IMAGE \
                and tuple(out.shape[1:]) == (first.dims[0], first.dims[1] * first.dims[2]):
            return ("cxs", tensors[0][1])
        if key in ("Tensor.reshape", "Tensor.view") and first.layout is Layout.IMAGE and out.dim() == 5 \
                and out.shape[1] * out.shape[2] == first.dims[0] and tuple(out.shape[3:]) == first.dims[1:]:
            return ("grp", tensors[0][1], out.shape[1])  # (N, G, C/G, H, W): a channel shuffle begins
        if params:
            return self.with_param(node, key, tensors, params)
        return ("t", self.mapped(node, key, None, [t[1] for t in tensors]))

    def split(self, node, tensors, out):
        """`x.chunk(n, dim)` or `torch.split(x, size, dim)` into equal parts: ("parts", x, n, dim),
        each part becoming a `chunk` where `[i]` takes it."""
        key = _function_key(node) if node.op != "call_module" else ""
        if key not in ("Tensor.chunk", "torch.chunk", "Tensor.split", "torch.split") or len(tensors) != 1 \
                or tensors[0][0] != "t" or not isinstance(out, tuple | list) or not out:
            return None
        sizes = {tuple(t.shape) for t in out}
        if len(sizes) != 1:
            raise self.fail(node, "a split into parts of different sizes (archlang's chunk takes equal parts)")
        dim = Site(key, None, node, Layout.IMAGE, (), ()).arg(2, "dim", 0)
        return ("parts", tensors[0][1], len(out), dim)

    def shuffle(self, node, key, value, out):
        """torchvision's channel shuffle: view (N, G, C/G, H, W), transpose(1, 2), view back."""
        kind, source, groups = value
        site = Site(key, None, node, Layout.IMAGE, (), ())
        if kind == "grp" and key in ("Tensor.transpose", "torch.transpose") and sorted(
                d % 5 for d in site.dims[-2:]) == [1, 2]:
            return ("grp_t", source, groups)
        if kind == "grp_t" and key in _ALIASES:
            return value
        if kind == "grp_t" and key in ("Tensor.reshape", "Tensor.view", "Tensor.flatten", "torch.flatten") \
                and tuple(out.shape[1:]) == self.nodes[source].dims:
            return ("t", self.mapped(node, "view(g, c/g) > transpose > view", None, [source], param=groups))
        raise self.fail(node, "a reshape of an image into groups that is not a channel shuffle")

    def with_param(self, node, key, tensors, params):
        """A parameter of the model's own used in forward: a layer scale, a position embedding, a
        class token, through the registry's pattern forms."""
        param, path = params[0][1], params[0][2]
        if key in ("operator.mul", "torch.mul", "Tensor.mul"):
            form = "parameter * x"
        elif key in ("operator.add", "torch.add", "Tensor.add", "operator.iadd"):
            form = "x + parameter"
        elif key in ("torch.cat", "torch.concat") and len(node.args[0]) == 2 \
                and self.value.get(node.args[0][0], (None,))[0] == "param":
            form = "cat([parameter, x])"
        else:
            raise self.fail(node, f"no archlang op has this PyTorch form (on the parameter {path})")
        return ("t", self.mapped(node, form, None, [t[1] for t in tensors], param=param, leaf=path))

    def keeps_windows(self, node) -> bool:
        """An nn.Identity or SwapAxes, which decide what a WindowPartition before them is."""
        if node.op != "call_module":
            return False
        m = self.gm.get_submodule(node.target)
        return isinstance(m, nn.Identity) or type_key(type(m)) == _MAXVIT + "SwapAxes"

    def partition(self, value):
        """A WindowPartition not followed by SwapAxes: windows of adjacent positions."""
        _, source, node = value
        if node not in self.partitions:
            m = self.gm.get_submodule(node.target)
            self.partitions[node] = ("t", self.mapped(node, _MAXVIT + "WindowPartition", m, [source]))
        return self.partitions[node]

    def maxvit(self, node, m, key, value):
        """torchvision's MaxViT partitions: WindowPartition(x, p) is window_partition p, unless
        SwapAxes(-2, -3) follows it (a grid of H/p); SwapAxes(-2, -3) and WindowDepartition are
        grid_departition, WindowDepartition alone window_departition."""
        kind, source = value[0], value[1]
        if key == _MAXVIT + "WindowPartition" and kind == "t":
            return ("win", source, node)
        if key == _MAXVIT + "SwapAxes":
            rank = node.args[0].meta["arch_value"].dim()  # (N, G, S, C): the swap of G and S
            if sorted((m.a % rank, m.b % rank)) != [rank - 3, rank - 2]:
                raise self.fail(node, f"SwapAxes({m.a}, {m.b}) is not the swap of MaxViT's grid partition")
            if kind == "win":
                c, h, w = self.nodes[source].dims
                p = value[2].args[1]
                if h != w:
                    raise self.fail(node, f"a grid partition of a {h}x{w} image: archlang's windows are square")
                return ("t", self.mapped(node, "WindowPartition > SwapAxes(-2, -3)", None, [source], param=h // p))
            if kind == "t" and self.nodes[source].layout is Layout.WINDOWS:
                return ("unswap", source)
            raise self.fail(node, "a SwapAxes outside MaxViT's grid partition")
        if key == _MAXVIT + "WindowDepartition":
            if kind == "unswap":
                return ("t", self.mapped(node, "SwapAxes(-2, -3) > WindowDepartition", None, [source]))
            return ("t", self.mapped(node, key, m, [source]))
        return None

    def leaf(self, node, tensors, params, out):
        m = self.gm.get_submodule(node.target)
        key = type_key(type(m))
        ids = list(dict.fromkeys(t[1] for t in tensors))
        if tensors and (key.startswith(_MAXVIT) or tensors[0][0] in ("win", "unswap")):
            if isinstance(m, nn.Identity):
                return tensors[0]
            found = self.maxvit(node, m, key, tensors[0])
            if found is not None:
                return found
        if isinstance(m, nn.Identity) and len(ids) == 1:
            return ("t", ids[0])  # nothing to write
        if isinstance(m, nn.MultiheadAttention):
            if len(ids) != 1 or len(tensors) != 3:
                raise self.fail(node, "attention whose query, key and value differ (archlang's mha is self-attention)")
            if node.kwargs.get("need_weights", True) or node.kwargs.get("attn_mask") is not None:
                raise self.fail(node, "attention called with need_weights or a mask")
            i = self.mapped(node, key, m, ids, out_value=out[0])
            return ("mha", i)
        if isinstance(out, tuple):
            raise self.fail(node, "it returns several tensors")
        if len(ids) != 1:
            raise self.fail(node, "a layer called on several tensors")
        return ("t", self.mapped(node, key, m, ids))

    def mapped(self, node, key, module, inputs, param=None, leaf=None, out_value=None) -> int:
        specs = ops.inverse(key)
        if not specs:
            why = ("no archlang op has this PyTorch form" if module is None or not is_container(module)
                   else "a container")
            raise self.fail(node, why)
        first = self.nodes[inputs[0]]
        value = node.meta["arch_value"] if out_value is None else out_value
        site = Site(key, module, node, first.layout, first.dims,
                    self.arch_dims(first, tuple(value.shape[1:]), "departition" if "Departition" in key else ""), param)
        for spec in specs:
            try:
                args = spec.emit.read(site)
            except ops.NoForm as err:
                raise self.fail(node, f"{spec.name.lstrip('_')} cannot write {err}") from None
            if args is None:
                continue
            if spec.multi_input or len(inputs) == 1:
                if out_value is not None:
                    node.meta["arch_value"] = out_value
                i = self.add(node, spec.name, args, inputs, leaf=node.target if module is not None else leaf,
                             dims=self._op_dims(spec, args, first))
                made = self.nodes[i].dims
                if made != site.out_dims and not (len(made) == 4 and (made[0] * made[1], *made[2:]) == site.out_dims):
                    # x.mean([2, 3]): a global pool, then a flatten
                    if spec.name not in ("gap", "gmp") or site.out_dims != (first.dims[0],):
                        raise self.fail(node, f"its output {site.out_dims} is not {spec.name}'s")
                    i = self.add(node, "flatten", {}, [i])
                return i
        names = ", ".join(s.name for s in specs)
        raise self.fail(node, f"no archlang op writes this use of it ({names} take{'s' * (len(specs) == 1)} "
                              "other uses of the same form)")


def _flat(items):
    for a in items:
        if isinstance(a, tuple | list):
            yield from _flat(a)
        else:
            yield a


def _bookkeeping(node: fx.Node) -> bool:
    """Nodes that read a tensor's size or check it, without changing anything."""
    key = _function_key(node) if node.op != "call_module" else ""
    return key in ("Tensor.size", "Tensor.dim", "torch._assert", "builtins.getattr", "operator.getitem",
                   "builtins.len") or (node.op == "call_function" and getattr(node.target, "__name__", "") in
                                       ("getattr", "_assert", "len", "eq", "ne"))
