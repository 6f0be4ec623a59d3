"""The PyTorch backend against PyTorch itself: parameter counts, MACs (FlopCounterMode / 2),
output shapes, numerical equality with a hand-written torchvision-layout ResNet-18, and the
generated text (golden file, ruff-clean, deterministic)."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from tests.conftest import ROOT, SPECS  # noqa: E402
from tests.test_specs import REFERENCE  # noqa: E402


@pytest.mark.parametrize("file,network", [(r[0], r[1]) for r in REFERENCE], ids=[r[1] for r in REFERENCE])
def test_generated_module_matches_ir(file, network):
    net = archlang.compile_file(SPECS / file)[network]
    module = net.to_torch().eval()
    assert sum(p.numel() for p in module.parameters()) == net.params
    assert sum(b.numel() for b in module.buffers()) == net.buffers
    x = torch.randn(1, *net.input_shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        y = module(x)
    assert tuple(y.shape) == (1, *net.output_shape)
    assert counter.get_total_flops() // 2 == net.macs


# ---- a hand-written ResNet-18 in torchvision's layout, independent of the generator ----

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomise_bn(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_resnet18_equals_hand_written_reference():
    torch.manual_seed(0)
    reference = ResNet18()
    _randomise_bn(reference)
    reference.eval()
    compiled = archlang.compile_file(SPECS / "resnets.arch")["resnet18"].to_torch().eval()
    ref_tensors = list(reference.state_dict().values())
    ours = compiled.state_dict()
    assert [tuple(t.shape) for t in ours.values()] == [tuple(t.shape) for t in ref_tensors]
    compiled.load_state_dict(dict(zip(ours.keys(), ref_tensors, strict=True)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), reference(x), atol=1e-5)


def test_pad_shortcut_runs_and_pads_with_zeros():
    src = "network n:\n    input 4x8x8\n    conv3x3 8 /2 same nobias | skip pad\n"
    module = archlang.compile(src, "t.arch")["n"].to_torch().eval()
    nn.init.zeros_(module.conv.weight)
    x = torch.randn(1, 4, 8, 8)
    y = module(x)
    assert torch.equal(y[:, :4], x[:, :, ::2, ::2]) and torch.all(y[:, 4:] == 0)


def test_reserved_labels_give_valid_code():
    src = ("network n:\n    input 4x8x8\n    class = conv3x3 same\n    forward = relu\n"
           "    training = conv3x3 same > bn\n    self = [skip, conv1x1 4]\n")
    net = archlang.compile(src, "t.arch")["n"]
    module = net.to_torch()
    assert tuple(module(torch.randn(2, 4, 8, 8)).shape) == (2, 8, 8, 8)
    assert {"class_.weight", "training_.conv.weight", "self_.branch1.conv.weight"} <= set(module.state_dict())


def test_arguments_are_checked():
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    net.to_torch(classes=10)
    with pytest.raises(ValueError, match="compiled for classes=10"):
        net.to_torch(classes=5)


def test_lenet5_source_golden(golden):
    source = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"].source()
    golden(ROOT / "tests" / "golden" / "lenet5.py", source)


def test_build_cli_writes_ruff_clean_deterministic_files(tmp_path):
    for out in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "archlang", "build", str(SPECS / "googlenet.arch"),
                               "-o", str(tmp_path / out)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "wrote" in proc.stdout and "6,624,904 params" in proc.stdout
    first = (tmp_path / "a" / "googlenet.py").read_text()
    assert first == (tmp_path / "b" / "googlenet.py").read_text()
    assert "import torch" in first and "archlang" not in first.split('"""', 2)[2]
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "E,F,W",
                           "--line-length", "200", str(tmp_path / "a")], capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


def test_failed_build_leaves_existing_outputs(tmp_path):
    (tmp_path / "n.arch").write_text("network n:\n    input 4\n    dense 8\n")
    out = tmp_path / "out"
    assert subprocess.run([sys.executable, "-m", "archlang", "build", str(tmp_path / "n.arch"), "-o", str(out)],
                          capture_output=True).returncode == 0
    before = (out / "n.py").read_text()
    (tmp_path / "n.arch").write_text("network n:\n    input 4\n    dense 8 > conv3x3\n")
    proc = subprocess.run([sys.executable, "-m", "archlang", "build", str(tmp_path / "n.arch"), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (out / "n.py").read_text() == before
    assert sorted(p.name for p in out.iterdir()) == ["n.py"]


def test_check_and_build_do_not_import_torch():
    code = ("import sys, archlang.cli as c; rc = c.main(['build', 'specs/lenet5.arch', '-o', '{out}']);"
            "c.main(['check', 'specs/lenet5.arch']); assert 'torch' not in sys.modules, 'torch imported'")
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-c", code.format(out=out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
