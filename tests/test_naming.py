"""The naming authority: one name per node and block, valid as a Python attribute, the same in
the report, the diagram and the generated module; unlabelled networks and hostile names build."""

from __future__ import annotations

import pytest

import archlang
from archlang.compiler.passes.naming import MODULE_ATTRIBUTES

torch = pytest.importorskip("torch")


def test_module_attribute_list_covers_torch():
    module = torch.nn.Module()
    # names starting with two underscores are renamed whatever they are (torch.jit adds some)
    assert {n for n in set(dir(module)) | set(vars(module)) if not n.startswith("__")} <= MODULE_ATTRIBUTES


def _check(net: archlang.Network) -> torch.nn.Module:
    """Builds the module; its state_dict keys are the report's layer names, and it runs."""
    module = net.to_torch().eval()
    layers = {r.name for r in net.report().rows if r.kind == "layer"}
    params = {k.rsplit(".", 1)[0] for k, _ in module.named_parameters()}
    assert params <= layers, params - layers
    assert sum(p.numel() for p in module.parameters()) == net.params
    y = module(torch.randn(2, *net.input_shape))
    assert tuple(y.shape) == (2, *net.output_shape)
    return module


UNLABELLED = """def basic(c, stride=1):
    conv3x3 c /stride same > bn > relu > conv3x3 c same > bn | skip
    relu

network bare:
    input 3x16x16
    conv3x3 8 same > bn > relu
    basic 8
    basic 16 /2
    basic 16
    inception[1x1 4, 3x3 4 reduce=2, pool 4]
    gap > dense 5
"""


def test_unlabelled_top_level_calls_build():
    net = archlang.compile(UNLABELLED, "bare.arch")["bare"]
    module = _check(net)
    assert [name for name, _ in module.named_children()][:6] == ["conv", "bn", "relu", "basic1", "basic2", "basic3"]
    assert "basic2.ws.conv.weight" in module.state_dict()
    assert any(k.startswith("inception.branch2.") for k in module.state_dict())


HOSTILE_LABELS = ["_modules", "_parameters", "__dict__", "_version", "_apply", "_get_name", "__class__", "__init__",
                  "__call__", "__w", "_w", "forward", "training", "class", "input", "x", "self"]


@pytest.mark.parametrize("label", HOSTILE_LABELS)
def test_hostile_label_builds_with_a_safe_name(label):
    src = f"network n:\n    input 4x6x6\n    {label} = conv3x3 4 same > relu\n    gap > dense 3\n"
    module = _check(archlang.compile(src, "n.arch")["n"])
    name = next(iter(dict(module.named_children())))
    assert not name.startswith("__") and name not in MODULE_ATTRIBUTES
    assert name.rstrip("_") in (label.rstrip("_"), "_" + label.strip("_"))


def test_mangled_label_and_its_twin():
    src = "network n:\n    input 4\n    __w = dense 4\n    _w = dense 4\n"
    module = _check(archlang.compile(src, "n.arch")["n"])
    assert list(dict(module.named_children())) == ["_w_", "_w"]  # the name written as is keeps it


@pytest.mark.parametrize("param", ["Block", "ZeroPadShortcut", "__class__", "super", "nn", "torch", "self", "N"])
def test_hostile_parameter_names(param):
    src = f"network n({param}=4):\n    input 4\n    dense {param} | skip pad\n"
    net = archlang.compile(src, "n.arch")["n"]
    _check(net)
    assert net.with_arguments(**{param: 6}).to_torch().state_dict()["fc.weight"].shape == (6, 4)


def test_label_on_a_dense_after_an_image_names_the_layer():
    src = "network n:\n    input 4x3x3\n    fc = dense 10\n"
    module = _check(archlang.compile(src, "n.arch")["n"])
    assert set(module.state_dict()) == {"fc.weight", "fc.bias"}


def test_report_input_row_and_a_layer_labelled_input():
    src = "network n:\n    input 4\n    input = dense 6\n    dense 2\n"
    report = archlang.compile(src, "n.arch")["n"].report()
    assert [(r.name, r.kind, r.params) for r in report.rows] == [
        ("input", "input", 0), ("input", "layer", 30), ("fc", "layer", 14)]
    assert sum(r.params for r in report.rows) == report.total.params
