"""The naming authority: the one place that names things.  Every node and block gets its
attribute name and qualified path here, once; report rows, diagram labels and the generated
module's attributes and state_dict keys all read these names.

Rules (docs/language.md, "Block names"):
- a label names its block, or its layer when the block holds a single layer;
- unlabelled items are named after what they are: the op's family (`conv`, `bn`, `relu`),
  the def (`basic`), `branch`, `ws`; numbered from 1 when a name occurs more than once in
  its block (`conv1`, `conv2`);
- a block other than the network whose items are all unlabelled def calls is a list, its
  items numbered from 0 (`layer1.0`, `layer1.1`, as torchvision's `layer1[0]`); the network
  itself is always a module;
- a name is changed only where Python or nn.Module would break on it: a keyword or an
  nn.Module attribute takes a trailing `_` (`forward` → `forward_`), a name starting with two
  underscores (which Python mangles, or reserves: `__w`, `__class__`) keeps one (`_w`,
  `_class__`), and a name already taken in the block takes further `_`s.
The network's class name and the Python names of its parameters come from here too."""

from __future__ import annotations

import builtins
import keyword
from collections import Counter
from dataclasses import replace

from archlang.compiler.ir import Container, NetworkIR, Node, Role, Scope, ScopeKind
from archlang.compiler.ops import REGISTRY

# Every attribute of an nn.Module instance (torch 2.13: dir(nn.Module()) and its __dict__),
# listed so that naming never imports torch; tests/test_naming.py checks it against torch.
MODULE_ATTRIBUTES = frozenset("""
T_destination __annotations__ __call__ __class__ __delattr__ __dict__ __dir__ __doc__ __eq__ __format__ __ge__
__getattr__ __getattribute__ __getstate__ __gt__ __hash__ __init__ __init_subclass__ __le__ __lt__ __module__
__ne__ __new__ __reduce__ __reduce_ex__ __repr__ __setattr__ __setstate__ __sizeof__ __str__ __subclasshook__
__weakref__ _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl _forward_hooks
_forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
_get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
_load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook _modules
_named_members _non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook
_register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict _slow_forward _state_dict_hooks
_state_dict_pre_hooks _version _wrapped_call_impl add_module apply bfloat16 buffers call_super_init children
compile cpu cuda double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
get_submodule half ipu load_state_dict modules mtia named_buffers named_children named_modules
named_parameters parameters register_backward_hook register_buffer register_forward_hook
register_forward_pre_hook register_full_backward_hook register_full_backward_pre_hook
register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module register_parameter
register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule
share_memory state_dict to to_empty train training type xpu zero_grad
""".split())

ATTRIBUTE_RESERVED = frozenset(keyword.kwlist) | MODULE_ATTRIBUTES
# the container class every generated file defines, beside the op helpers (ZeroPadShortcut)
CONTAINER_CLASSES = ("Block",)
# names a generated file uses as globals or locals, which a constructor parameter must not shadow
CODE_NAMES = frozenset({"self", "torch", "nn", "x", "super", "_", "i"})  # `_`, `i`: the loops of repeats


def helper_classes() -> set[str]:
    """Every class name a generated file may define besides the network's own."""
    names = set(CONTAINER_CLASSES)
    for spec in REGISTRY.values():
        if spec.emit is not None and spec.emit.helper:
            names.add(spec.emit.helper.split("class ", 1)[1].split("(", 1)[0])
    return names


def _unmangled(name: str) -> str:
    """Python mangles `self.__w` inside a class body, and `__x__` names are Python's: a name
    starting with two underscores keeps one."""
    if name.startswith("__"):
        return "_" + name.lstrip("_")
    return name


def attribute_name(name: str, taken: set[str]) -> str:
    """`name` made safe as an nn.Module attribute and distinct from `taken` (which it joins)."""
    if not name.isdigit():
        name = _unmangled(name)
        while name in ATTRIBUTE_RESERVED or name in taken:
            name += "_"
    taken.add(name)
    return name


def camel(name: str) -> str:
    """resnet34 → Resnet34, mobilenet_v2 → MobilenetV2."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def class_name(network: str) -> str:
    """The network's class: camel case, never a helper class's name, a builtin or a keyword."""
    name = camel(network) or "Network"
    reserved = helper_classes() | set(dir(builtins)) | CODE_NAMES
    while not name.isidentifier() or keyword.iskeyword(name) or name in reserved:
        name += "_"
    return name


def parameter_names(arguments, cls: str) -> dict[str, str]:
    """The Python name of each network parameter in the generated constructor."""
    reserved = set(keyword.kwlist) | set(dir(builtins)) | CODE_NAMES | helper_classes() | {cls}
    taken = {a for a in arguments if a not in reserved and _unmangled(a) == a}
    out = {}
    for arg in arguments:
        name = _unmangled(arg)  # `__class__` would break super(), `__w` would be mangled
        if name != arg or name in reserved:
            while name in reserved or name in taken:
                name += "_"
        taken.add(name)
        out[arg] = name
    return out


def _stem(item) -> str:
    if isinstance(item, Node):
        return REGISTRY[item.op].family
    return {ScopeKind.SHORTCUT: "ws", ScopeKind.BRANCH: "branch"}.get(item.kind) or item.def_name or "block"


def _given(item) -> str | None:
    """The name the user gave an item: a block's label, or a labelled layer's."""
    if isinstance(item, Scope):
        return item.label if item.kind is ScopeKind.LABEL else None
    return item.name or None


def _is_shortcut(item) -> bool:
    return isinstance(item, Scope) and item.kind is ScopeKind.SHORTCUT


def _is_call(item) -> bool:
    """A def call, or a repeat of one: the items of a list."""
    if not isinstance(item, Scope):
        return False
    if item.kind is ScopeKind.REPEAT:  # (empty: calls repeated 0 times)
        return not item.items or (len(item.items) == 1 and _is_call(item.items[0]))
    return item.kind is ScopeKind.CALL


def _assign(ir: NetworkIR, scope: Scope, prefix: str, root_may_list: bool = False) -> None:
    # (a block with a `skip` is a module even where a dropped `skip optional` left only calls)
    is_list = ((scope.kind is not ScopeKind.NETWORK or root_may_list) and bool(scope.items) and not scope.skips
               and all(_is_call(i) for i in scope.items)) or (_is_shortcut(scope) and scope.label is not None)
    scope.container = Container.LIST if is_list else Container.MODULE
    names: list[str] = []
    if is_list:
        names = [str(i) for i in range(len(scope.items))]
    else:
        given = [_given(item) for item in scope.items]
        # the user's names first, those valid as written before those that must change, so
        # that a changed or generated name steps aside rather than a name the user wrote
        taken = {g for g in given if g is not None and _unmangled(g) == g and g not in ATTRIBUTE_RESERVED}
        chosen = {i: g for i, g in enumerate(given) if g in taken}
        chosen |= {i: attribute_name(g, taken) for i, g in enumerate(given) if g is not None and i not in chosen}
        totals = Counter(_stem(item) for item, g in zip(scope.items, given, strict=True)
                         if g is None and not _is_shortcut(item))
        seen: Counter = Counter()
        for i, item in enumerate(scope.items):
            if i in chosen:
                names.append(chosen[i])
                continue
            if _is_shortcut(item):  # numbered among the block's skips, whichever needed one
                stem = item.label or "ws"
                names.append(attribute_name(f"{stem}{item.ordinal}" if scope.skips > 1 else stem, taken))
                continue
            s = _stem(item)
            seen[s] += 1
            numbered = totals[s] > 1 or s == "branch"
            names.append(attribute_name(f"{s}{seen[s]}" if numbered else s, taken))
    for i, (item, name) in enumerate(zip(scope.items, names, strict=True)):
        path = f"{prefix}{name}"
        if isinstance(item, Scope):
            item.name, item.path = name, path
            _assign(ir, item, path + ".")
        else:
            node = replace(item, name=name, path=path)
            scope.items[i] = node
            ir.nodes[node.id] = node


def name_blocks(ir: NetworkIR, root_may_list: bool = False) -> None:
    """Names everything; `root_may_list`: the root is a def's body (staged elaboration), a list
    by the rule for blocks."""
    ir.root.path = ""
    ir.root.name = ir.name
    _assign(ir, ir.root, "", root_may_list)
    ir.nodes[0] = replace(ir.input, name="input", path="input")
    ir.class_name = class_name(ir.name)
    ir.parameter_names = parameter_names(ir.arguments, ir.class_name)
    assert ir.input.role is Role.INPUT
