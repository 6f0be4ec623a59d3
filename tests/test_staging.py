"""Staged emission (archlang/compiler/staging.py): the cases an independent review found, each a
program whose generated module must agree with the IR (names, parameter counts) and whose
constructor, given other values, must build what recompiling builds, or refuse them (the
specialised module of a program a constructor cannot follow)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import archlang  # noqa: E402

CASES = {
    "float value": ("network n(c=4):\n    input 8\n    dense c*1.5\n", {"c": 6}),
    "repeat ending in bias=auto": ("def f = conv3x3 same\nnetwork n(k=2):\n    input 4x8x8\n    body = f x(k)\n"
                                   "    bn\n", {"k": 3}),
    "repeat counted to 0": ("def f(c) = conv3x3 c same > relu\ndef stage(c, n) = f c > f c x(n-1)\n"
                            "network n(m=1):\n    input 4x8x8\n    layer = stage 4 m\n", {"m": 3}),
    "optional skip's input bias": ("network n(c=8):\n    input 8x8x8\n    conv3x3 8 same\n"
                                   "    bn > conv1x1 c | skip optional\n    relu\n", {"c": 16}),
    "parameter named _": ("def f(c) = conv3x3 c same\nnetwork n(_=4, k=2):\n    input 3x8x8\n    conv1x1 _\n"
                          "    layer = f _ x(k)\n", {"_": 6, "k": 3}),
    "parameter named i": ("def dl(g) = [skip, conv3x3 g same]\nnetwork n(g=4, i=2, n=2):\n    input 8x8x8\n"
                          "    block = dl g x(n)\n    conv1x1 i\n", {"g": 2, "i": 3, "n": 4}),
    "parameter named like a class": ("def g(c) = conv3x3 c same\nnetwork n(G=2):\n    input 3x8x8\n"
                                     "    a = g 4\n    conv1x1 G\n", {"G": 5}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_generated_module_agrees_and_its_constructor_honours_or_refuses(name):
    text, other = CASES[name]
    net = archlang.compile(text, "case.arch")["n"]
    model = net.to_torch().eval()
    assert sum(p.numel() for p in model.parameters()) == net.params
    layers = {n.path for n in net.ir.nodes if n.op in ("conv", "dense", "bn")}
    assert layers <= {k.rsplit(".", 1)[0] for k in model.state_dict()}
    python = {net.ir.parameter_names[k]: v for k, v in other.items()}
    expected = net.to_torch(**other).eval()
    if "rebuild it with archc build --set" in net.source():
        with pytest.raises(ValueError, match="was compiled for"):
            type(model)(**python)
        return
    got = type(model)(**python).eval()
    assert [(k, v.shape) for k, v in got.state_dict().items()] == \
        [(k, v.shape) for k, v in expected.state_dict().items()]
    got.load_state_dict(expected.state_dict())
    x = torch.randn(2, *net.with_arguments(**other).input_shape)
    with torch.no_grad():
        torch.testing.assert_close(got(x), expected(x))
