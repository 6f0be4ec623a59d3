"""Reading a PyTorch model: torch.fx traces its forward (through containers and custom blocks,
stopping at the layers an archlang op writes), shapes come from running the trace on meta or
fake tensors (no weights are allocated or computed), and every layer and function is mapped to
an archlang op through the op registry's inverse forms (`Emit.torch_types` and `Emit.read`).

The result is a flat graph of mapped nodes, each knowing the stack of modules it was called in
(the structure archlang.importer.structure turns into blocks, defs and repeats)."""

from __future__ import annotations

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
    return f"{cls.__module__}.{cls.__qualname__}"


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
        return _mapped_type(m) or type(m).__module__.startswith("torch.nn")

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


def trace(module: nn.Module, input_dims: tuple[int, ...]) -> tuple[fx.GraphModule, Any]:
    """The fx graph of `module` (in eval mode) with every node's value computed on meta (or
    fake) tensors."""
    module.eval()
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
                out = _Shapes(gm).run(torch.empty(1, *input_dims, device="meta"))
        else:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
                out = _Shapes(gm).run(mode.from_tensor(torch.empty(1, *input_dims)))
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


_LAYOUTS = {3: Layout.IMAGE, 1: Layout.VECTOR, 2: Layout.TOKENS}
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

    def fail(self, node: fx.Node, why: str) -> ImportFailure:
        return ImportFailure(f"cannot import {_describe(node, self.gm)}: {why}")

    @staticmethod
    def _op_dims(spec, args, first) -> tuple | None:
        return (first.dims[0], 1, 1) if spec.name in ("gap", "gmp") else None

    def add(self, node: fx.Node, op: str, args: dict, inputs: list[int], leaf: str | None = None,
            dims: tuple | None = None) -> int:
        out = node.meta["arch_value"]
        dims = dims or tuple(out.shape[1:])
        first = self.nodes[inputs[0]] if inputs else None
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

    def extend_concats(self, output: int) -> int:
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
        return alias.get(output, output)

    def tensor(self, value) -> int | None:
        return value[1] if isinstance(value, tuple) and value and value[0] == "t" else None

    def run(self) -> int:
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
                output = self.tensor(self.value.get(node.args[0]))
                if output is None:
                    raise self.fail(node, "the model's output is not one tensor")
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
        tensors = [v for v in values if isinstance(v, tuple) and v and v[0] in ("t", "cxs", "mha")]
        params = [v for v in values if isinstance(v, tuple) and v and v[0] == "param"]
        if node.op == "call_function" and node.target is operator.getitem and tensors and tensors[0][0] == "mha":
            return ("t", tensors[0][1]) if node.args[1] == 0 else None  # the output, not the attention weights
        if not isinstance(out, torch.Tensor):
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
        if params:
            return self.with_param(node, key, tensors, params)
        return ("t", self.mapped(node, key, None, [t[1] for t in tensors]))

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

    def leaf(self, node, tensors, params, out):
        m = self.gm.get_submodule(node.target)
        key = type_key(type(m))
        ids = list(dict.fromkeys(t[1] for t in tensors))
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
        site = Site(key, module, node, first.layout, first.dims, tuple(value.shape[1:]), param)
        for spec in specs:
            try:
                args = spec.emit.read(site)
            except ops.NoForm as err:
                raise self.fail(node, f"{spec.name} cannot write {err}") from None
            if args is None:
                continue
            if spec.multi_input or len(inputs) == 1:
                if out_value is not None:
                    node.meta["arch_value"] = out_value
                i = self.add(node, spec.name, args, inputs, leaf=node.target if module is not None else leaf,
                             dims=self._op_dims(spec, args, first))
                if self.nodes[i].dims != site.out_dims:  # x.mean([2, 3]): a global pool, then a flatten
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
