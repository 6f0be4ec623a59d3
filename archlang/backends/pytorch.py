"""IR → PyTorch source: one standalone file per network that imports only torch.

Submodules are registered in scope order (a residual's main path before its Ws), so parameter
order and state_dict keys match the usual hand-written module; `forward` is straight-line code
with the shape of every step in a comment.  Emission dispatches through MODULES, one entry
per op."""

from __future__ import annotations

import builtins
import keyword
import re

from archlang.compiler.ir import NetworkIR, Node, Scope, TensorType

# Names a generated attribute must not take: Python keywords, builtins, nn.Module's own
# attributes (listed here so that emitting code never needs to import torch).
MODULE_ATTRS = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "load_state_dict", "modules", "mtia",
    "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter", "register_state_dict_hook",
    "register_state_dict_pre_hook", "requires_grad_", "set_extra_state", "set_submodule", "share_memory",
    "state_dict", "to", "to_empty", "train", "training", "type", "xpu", "zero_grad",
}
RESERVED = set(keyword.kwlist) | set(dir(builtins)) | MODULE_ATTRS | {"self", "torch", "nn", "x"}


def safe_name(name: str) -> str:
    """A valid attribute name for a label: reserved words get a trailing underscore."""
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+", name), name
    while name in RESERVED:
        name += "_"
    return name


def unique_names(names: list[str]) -> list[str]:
    """Valid, distinct Python names for `names`, in order.  A name that is valid as written keeps
    it; a reserved one takes trailing underscores until it is free (`class`, `class_` → `class__`,
    `class_`), so user text never reaches the code unchecked and no two names collide."""
    taken = {n for n in names if n not in RESERVED}
    out = []
    for name in names:
        if name in RESERVED:
            name = safe_name(name)
            while name in taken:
                name += "_"
            taken.add(name)
        out.append(name)
    return out


GENERATED_CLASSES = {"Block", "ZeroPadShortcut"}  # helper classes every generated file may define


def class_name(network: str) -> str:
    """resnet34 → Resnet34, mobilenet_v2 → MobilenetV2 (never a helper class's name)."""
    name = "".join(part[:1].upper() + part[1:] for part in network.split("_") if part) or "Network"
    while not name.isidentifier() or keyword.iskeyword(name) or name in GENERATED_CLASSES or name in RESERVED:
        name += "_"
    return name


def _pair(v):
    if isinstance(v, tuple):
        return v[0] if v[0] == v[1] else v
    return v


def _kwargs(**kw) -> str:
    return "".join(f", {k}={v!r}" for k, v in kw.items() if v is not None)


def conv_module(n: Node) -> str:
    a = n.attrs
    extra = _kwargs(stride=_pair(a["stride"]) if a["stride"] != 1 else None,
                    padding=_pair(a["padding"]) if a["padding"] != (0, 0) else None,
                    dilation=a["dilation"] if a["dilation"] != 1 else None,
                    groups=a["groups"] if a["groups"] != 1 else None,
                    bias=False if not a["bias"] else None)
    return f"nn.Conv2d({a['in_c']}, {a['out']}, {_pair(a['kernel'])!r}{extra})"


def pool_module(cls: str):
    def emit(n: Node) -> str:
        a = n.attrs
        stride = _pair(a["stride"])
        extra = _kwargs(stride=stride if stride != _pair(a["kernel"]) else None,
                        padding=_pair(a["padding"]) if a["padding"] != (0, 0) else None)
        return f"nn.{cls}({_pair(a['kernel'])!r}{extra})"
    return emit


def bn_module(n: Node) -> str:
    a = n.attrs
    extra = _kwargs(eps=a["eps"] if a["eps"] != 1e-5 else None,
                    momentum=a["momentum"] if a["momentum"] != 0.1 else None)
    return f"nn.BatchNorm{a['dims']}d({a['features']}{extra})"


def pad_module(n: Node) -> str:
    a = n.attrs
    extra = a["target"][0] - n.in_shapes[0].c
    if n.in_shapes[0].is_vector:
        return f"ZeroPadShortcut(extra_channels={extra})"
    return f"ZeroPadShortcut(extra_channels={extra}, stride={a.get('stride', 1)})"


MODULES = {
    "conv": conv_module,
    "dense": lambda n: f"nn.Linear({n.attrs['in_f']}, {n.attrs['out']}{', bias=False' if not n.attrs['bias'] else ''})",
    "bn": bn_module,
    "relu": lambda n: "nn.ReLU()",
    "relu6": lambda n: "nn.ReLU6()",
    "tanh": lambda n: "nn.Tanh()",
    "sigmoid": lambda n: "nn.Sigmoid()",
    "gelu": lambda n: "nn.GELU()",
    "silu": lambda n: "nn.SiLU()",
    "softmax": lambda n: "nn.Softmax(dim=1)",
    "maxpool": pool_module("MaxPool2d"),
    "avgpool": pool_module("AvgPool2d"),
    "gap": lambda n: "nn.AdaptiveAvgPool2d(1)",
    "flatten": lambda n: "nn.Flatten()",
    "dropout": lambda n: f"nn.Dropout({n.attrs['p']!r})",
    "lrn": lambda n: (f"nn.LocalResponseNorm({n.attrs['size']}, alpha={n.attrs['alpha']!r}, "
                      f"beta={n.attrs['beta']!r}, k={n.attrs['k']!r})"),
    "_pad": pad_module,
}

ZERO_PAD_CLASS = '''

class ZeroPadShortcut(nn.Module):
    """He et al.'s shortcut option A: subsample by the stride, then zero-pad channels."""

    def __init__(self, extra_channels: int, stride: int = 0):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride  # 0: the input is a feature vector

    def forward(self, x):
        if self.stride == 0:
            return nn.functional.pad(x, (0, self.extra_channels))
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
'''


def _accessor(path: list[str]) -> str:
    """`self.layer1[0].conv1` from attribute names (already made safe) and ModuleList indices."""
    out = "self"
    for part in path:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


class _Emitter:
    def __init__(self, ir: NetworkIR):
        self.ir = ir
        self.init: list[str] = []
        self.paths: dict[int, list[str]] = {}

    def scope(self, scope: Scope, prefix: list[str]) -> None:
        attrs = unique_names([item.name for item in scope.items])
        for item, attr in zip(scope.items, attrs, strict=True):
            path = prefix + [attr]
            if isinstance(item, Scope):
                children = item.items
                if children and all(c.name.isdigit() for c in children):
                    self.init.append(f"{_accessor(path)} = nn.ModuleList(Block() for _ in range({len(children)}))")
                elif not item.name.isdigit():  # numbered blocks were made by their ModuleList
                    self.init.append(f"{_accessor(path)} = Block()")
                self.scope(item, path)
            elif item.op in MODULES:
                self.paths[item.id] = path
                self.init.append(f"{_accessor(path)} = {MODULES[item.op](item)}")

    def forward(self) -> list[str]:
        ir = self.ir
        order = ir.nodes
        names: dict[int, str] = {}
        lines = [f"# input: {_fmt(ir.input.shape)}"]
        fresh = 0
        for i, node in enumerate(order):
            consumers = ir.consumers(node.id)
            chained = len(consumers) == 1 and i + 1 < len(order) and consumers[0].id == order[i + 1].id
            if node.op == "_input":
                names[node.id] = "x"
                if not chained:  # used again later: keep it out of `x`, which the next steps reuse
                    names[node.id] = "h0"
                    lines.append("h0 = x")
                continue
            if chained or node.id == ir.output.id:
                var = "x"
            else:
                fresh += 1
                var = f"h{fresh}"
            args = [names[s] for s in node.inputs]
            if node.op == "_add":
                expr = " + ".join(args)
            elif node.op == "_concat":
                expr = f"torch.cat([{', '.join(args)}], dim=1)"
            else:
                expr = f"{_accessor(self.paths[node.id])}({args[0]})"
            lines.append(f"{var} = {expr}  # {_fmt(node.shape)}")
            names[node.id] = var
        if names.get(ir.output.id) != "x":
            lines.append(f"x = {names[ir.output.id]}")
        lines.append("return x")
        return lines


def _docstring_safe(text: str) -> str:
    """A file name as docstring text: quotes, backslashes, control and other unusual characters
    become `_`, so no file name can end the docstring or reach the code."""
    return re.sub(r"[^A-Za-z0-9 ._+\-()\[\],]", "_", text)


def _fmt(t: TensorType) -> str:
    return "x".join(str(d) for d in t.dims)


def emit_module(ir: NetworkIR, source_name: str, version: str) -> str:
    """The full text of DIR/<network>.py for one compiled network."""
    em = _Emitter(ir)
    em.scope(ir.root, [])
    forward = em.forward()
    cls = class_name(ir.name)
    params = unique_names(list(ir.arguments))
    args = ", ".join(f"{p}={v!r}" for p, v in zip(params, ir.arguments.values(), strict=True))
    sig = f"self, {args}" if args else "self"
    uses_pad = any(n.op == "_pad" for n in ir.nodes)
    out = [f'"""{ir.name}: generated by archc {version} from {_docstring_safe(source_name)}; do not edit.',
           "",
           f"Input {_fmt(ir.input.shape)} (batch first: N x {_fmt(ir.input.shape)}), output {_fmt(ir.output.shape)}.",
           "Needs only torch.", '"""', ""]
    if any(n.op == "_concat" for n in ir.nodes):
        out.append("import torch")
    out += ["from torch import nn", "", "",
           "class Block(nn.Module):",
           '    """A named group of layers; the network\'s forward calls the layers directly."""',
           ]
    if uses_pad:
        out += ZERO_PAD_CLASS.rstrip("\n").split("\n")
    out += ["", "", f"class {cls}(nn.Module):"]
    if ir.arguments:
        compiled = ", ".join(f"{k}={v!r}" for k, v in ir.arguments.items())
        out += [f'    """Compiled with {compiled}; rebuild with `archc build --set` for other values."""', ""]
    out += [f"    def __init__({sig}):", "        super().__init__()"]
    if ir.arguments:
        given = ", ".join(params)
        expect = tuple(ir.arguments.values())
        compiled_for = ", ".join(f"{k}={v!r}" for k, v in ir.arguments.items())
        out += [f"        if ({given},) != {expect!r}:",
                f"            raise ValueError(\"{cls} was compiled for {compiled_for}; \"",
                "                             \"rebuild it with archc build --set KEY=VALUE\")"]
    out += ["        " + line for line in em.init]
    out += ["", "    def forward(self, x):"] + ["        " + line for line in forward]
    return "\n".join(out) + "\n"
