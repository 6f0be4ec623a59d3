"""archlang.load_weights's fallback: where pairing tensors by order fails, modules are paired by
their tensors' shapes (the first untaken module of the weights with the same shapes, in order),
as a hand-written module that registers a layer before the one that runs ahead of it needs
(torchvision's Swin V2 registers norm1 before the attention it follows).  Held against
hand-written PyTorch modules; the messages of pairing by order are kept where both fail."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import archlang  # noqa: E402

POST_NORM = "network post_norm:\n    input 8\n    dense 8 > layernorm | skip\n    dense 4 > layernorm\n"


class NormRegisteredFirst(nn.Module):
    """x + norm1(fc1(x)), then norm2(fc2(.)): each norm registered before the Linear it follows."""

    def __init__(self, out: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 8)
        self.norm2 = nn.LayerNorm(out)
        self.fc2 = nn.Linear(8, out)

    def forward(self, x):
        x = x + self.norm1(self.fc1(x))
        return self.norm2(self.fc2(x))


def _randomised(module: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return module.eval()


def test_modules_registered_in_another_order_pair_by_shape():
    reference = _randomised(NormRegisteredFirst())
    compiled = archlang.compile(POST_NORM, "t.arch")["post_norm"].to_torch().eval()
    assert list(compiled.state_dict())[0].endswith("fc1.weight")  # the order differs: fc1 comes first here
    pairs = archlang.load_weights(compiled, reference)
    assert {k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1]: v for k, v in pairs.items()} == {
        "fc1.weight": "fc1.weight", "fc1.bias": "fc1.bias", "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
        "fc2.weight": "fc2.weight", "fc2.bias": "fc2.bias", "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias"}
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x))


def test_when_modules_do_not_pair_either_the_error_of_pairing_by_order_is_raised():
    compiled = archlang.compile(POST_NORM, "t.arch")["post_norm"].to_torch()
    before = {k: v.clone() for k, v in compiled.state_dict().items()}
    with pytest.raises(archlang.WeightsMismatch) as err:  # a different head: no module takes fc2
        archlang.load_weights(compiled, NormRegisteredFirst(out=5))
    key = next(iter(compiled.state_dict()))
    assert str(err.value) == (f"tensor #0: the module has {key!r} [8, 8] but the weights have 'norm1.weight' [8]; "
                              "the two networks differ from here on")
    extra = NormRegisteredFirst()
    extra.fc3 = nn.Linear(4, 4)  # a module left over on the weights' side
    with pytest.raises(archlang.WeightsMismatch, match="tensor #0: "):
        archlang.load_weights(compiled, extra)
    after = compiled.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_shaped_modules_pair_in_their_order():
    """Two norms of one shape, each moved after its Linear: each takes the first untaken one."""
    reference = _randomised(NormRegisteredFirst(out=8))
    source = "network n:\n    input 8\n    dense 8 > layernorm | skip\n    dense 8 > layernorm\n"
    compiled = archlang.compile(source, "t.arch")["n"].to_torch().eval()
    pairs = archlang.load_weights(compiled, reference)
    assert [v for k, v in pairs.items() if "norm" in k] == ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x))
