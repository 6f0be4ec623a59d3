"""The PyTorch backend against PyTorch itself: parameter counts, MACs (FlopCounterMode / 2),
output shapes, numerical equality with a hand-written torchvision-layout ResNet-18, and the
generated text (golden file, ruff-clean, deterministic)."""

from __future__ import annotations

import ast as pyast
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from tests import references  # noqa: E402
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


# ---- numerical equality with hand-written torchvision-layout references (tests/references.py) ----

INCEPTION_BN = ("network inception_bn:\n    input 192x28x28\n"
                "    inception[1x1 64, 3x3 128 reduce=96, 5x5 32 reduce=16, pool 32] bn\n")

CASES = {
    "resnet18": (lambda: archlang.compile_file(SPECS / "resnets.arch")["resnet18"], references.resnet18, 64),
    "resnet34": (lambda: archlang.compile_file(SPECS / "resnet34.arch")["resnet34"], references.resnet34, 64),
    "resnet50": (lambda: archlang.compile_file(SPECS / "resnets.arch")["resnet50"], references.resnet50, 64),
    "googlenet": (lambda: archlang.compile_file(SPECS / "googlenet.arch")["googlenet"], references.GoogLeNet, 96),
    "inception3a": (lambda: archlang.compile_file(SPECS / "inception.arch")["inception3a"],
                    lambda: references.Inception(192, 64, 96, 128, 16, 32, 32, k5=5, bn=False), 28),
    "inception_bn": (lambda: archlang.compile(INCEPTION_BN, "t.arch")["inception_bn"],
                     lambda: references.Inception(192, 64, 96, 128, 16, 32, 32, k5=5), 28),
}


@pytest.mark.parametrize("case", list(CASES))
def test_equals_hand_written_reference(case):
    compile_net, make_reference, size = CASES[case]
    torch.manual_seed(0)
    reference = make_reference()
    references.randomise_bn(reference)
    reference.eval()
    net = compile_net()
    compiled = net.to_torch().eval()
    pairs = archlang.load_weights(compiled, reference)
    assert len(pairs) == sum(1 for k in compiled.state_dict() if not k.endswith("num_batches_tracked"))
    channels = net.input_shape[0]
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        expected = reference(x)
        got = compiled(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_equals_torchvision(name):
    from tests.torchvision_ref import models  # torchvision with its two C ops defined first

    if models is None:
        pytest.skip("torchvision is not installed")
    torch.manual_seed(0)
    reference = getattr(models, name)(weights=None)
    references.randomise_bn(reference)
    reference.eval()
    compiled = CASES[name][0]().to_torch().eval()
    archlang.load_weights(compiled, reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x), atol=1e-5, rtol=1e-5)


def test_state_dict_keys_follow_torchvision_order():
    keys = list(CASES["resnet34"][0]().to_torch().state_dict())
    ref = list(references.resnet34().state_dict())
    assert len(keys) == len(ref) == 218
    assert keys[:6] == ["stem.conv.weight", "stem.bn.weight", "stem.bn.bias", "stem.bn.running_mean",
                        "stem.bn.running_var", "stem.bn.num_batches_tracked"]
    i = ref.index("layer2.0.downsample.0.weight")
    assert keys[i] == "layer2.0.ws.conv.weight" and keys[-2:] == ["head.fc.weight", "head.fc.bias"]


def test_load_weights_names_the_first_mismatch():
    compiled = CASES["resnet34"][0]().to_torch()
    before = {k: v.clone() for k, v in compiled.state_dict().items()}
    with pytest.raises(archlang.WeightsMismatch) as err:
        archlang.load_weights(compiled, references.resnet50())
    assert str(err.value) == (
        "tensor #5: the module has 'layer1.0.conv1.weight' [64, 64, 3, 3] but the weights have "
        "'layer1.0.conv1.weight' [64, 64, 1, 1]; the two networks differ from here on")
    with pytest.raises(archlang.WeightsMismatch, match=r"tensor #25: the module has 'layer1.2.conv1.weight'"):
        archlang.load_weights(compiled, references.resnet18())
    headless = {k: v for k, v in references.resnet34().state_dict().items() if not k.startswith("fc.")}
    with pytest.raises(archlang.WeightsMismatch) as err:
        archlang.load_weights(compiled, headless)
    assert str(err.value) == ("the module has 182 tensors and the weights 180: every shape agrees up to there, "
                              "and the first one left over is the module's 'head.fc.weight' [1000, 512]")
    after = compiled.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_load_weights_ignores_extra_parts():
    reference = references.GoogLeNet()
    reference.aux1 = nn.Sequential(nn.Conv2d(512, 128, 1), nn.Linear(2048, 1024))  # like torchvision's aux heads
    state = reference.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "aux1."))} | {
        k: v for k, v in state.items() if k.startswith("aux1.")} | {k: state[k] for k in ("fc.weight", "fc.bias")}
    compiled = CASES["googlenet"][0]().to_torch()
    with pytest.raises(archlang.WeightsMismatch, match=r"ignore=\('aux1',\)"):
        archlang.load_weights(compiled, state)
    pairs = archlang.load_weights(compiled, state, ignore=["aux1"])
    assert pairs["head.fc.weight"] == "fc.weight"
    assert torch.equal(compiled.head.fc.weight, reference.fc.weight)


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
    # only names Python or nn.Module would break on change: keywords and module attributes
    assert {"class_.weight", "training_.conv.weight", "self.branch1.conv.weight"} <= set(module.state_dict())


HOSTILE = """def forward(c) = conv3x3 c same > relu
network block(import=4, class=2, class_=3):
    input 4x8x8
    class = conv3x3 import same
    class_ = conv3x3 4 same
    parameters = forward 4
    to = forward 4
    state_dict = bn
    len = [skip, conv1x1 class]
    torch = relu
    x = conv1x1 class_
    self = relu
    nn = gap > dense import
"""


def test_hostile_names_and_file_names_give_valid_distinct_code():
    """Keywords, builtins, nn.Module attributes, names that collide once made safe, a network
    named like a helper class, and a file name that tries to close the docstring."""
    net = archlang.compile(HOSTILE, 'evil"""\nimport os\n.arch')["block"]
    source = net.source()
    tree = pyast.parse(source)
    imports = [n for n in pyast.walk(tree) if isinstance(n, pyast.Import | pyast.ImportFrom)]
    assert [pyast.unparse(n) for n in imports] == ["import torch", "from torch import nn"]
    classes = [n.name for n in tree.body if isinstance(n, pyast.ClassDef)]
    assert classes[-1] == "Block_" and len(set(classes)) == len(classes)
    assert classes[:-1] == ["Forward", "Branch", "Len", "Nn"]  # blocks are classes named after their def or label
    assert source == archlang.compile(HOSTILE, 'evil"""\nimport os\n.arch')["block"].source()  # deterministic
    module = net.to_torch()
    assert type(module).__name__ == "Block_"
    assert sum(p.numel() for p in module.parameters()) == net.params == 647
    keys = set(module.state_dict())
    assert {"class__.weight", "class_.weight", "parameters_.conv.weight", "to_.conv.weight",
            "state_dict_.running_mean", "len.branch1.conv.weight", "x.weight", "nn.fc.weight"} <= keys
    assert tuple(module(torch.randn(2, 4, 8, 8)).shape) == (2, 4)
    assert type(net.to_torch(**{"import": 4})).__name__ == "Block_"
    pad = archlang.compile("network zero_pad_shortcut:\n    input 4\n    dense 8 | skip pad\n", "z.arch")
    assert type(pad["zero_pad_shortcut"].to_torch()).__name__ == "ZeroPadShortcut_"


def test_other_arguments_recompile():
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    module = net.to_torch(classes=5)
    assert tuple(module(torch.randn(3, 1, 32, 32)).shape) == (3, 5)
    assert net.with_arguments(classes=5).params == 61706 - 84 * 5 - 5
    with pytest.raises(TypeError, match="no parameter 'clases'"):
        net.to_torch(clases=5)
    with pytest.raises(archlang.ArchError, match="at least 1"):
        net.to_torch(classes=0)
    # the generated class takes the parameter itself, and builds what recompiling builds
    generated = type(net.to_torch())
    own = generated(classes=5)
    assert {k: v.shape for k, v in own.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}
    own.load_state_dict(module.state_dict())
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(own.eval()(x), module.eval()(x))


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
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:  # two builds of the same input are byte-identical, diagram and report included
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
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
    assert sorted(p.name for p in out.iterdir()) == ["n.json", "n.py", "n.report.md", "n.svg"]


def test_check_build_report_render_do_not_import_torch():
    code = ("import sys, archlang.cli as c; rc = c.main(['build', 'specs/lenet5.arch', '-o', '{out}']);"
            "c.main(['check', 'specs/lenet5.arch']); c.main(['report', 'specs/lenet5.arch']);"
            "c.main(['render', 'specs/lenet5.arch', '-o', '{out}/x.svg']);"
            "assert 'torch' not in sys.modules, 'torch imported'")
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-c", code.format(out=out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_blocks_are_modules_that_compose_like_torchvision():
    """Hooks on a stage and on its last block fire; a block runs alone; the network's children
    in a Sequential compute the network, and without the head they extract features."""
    net = archlang.compile_file(SPECS / "resnet34.arch")["resnet34"]
    model = net.to_torch().eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, tuple(output.shape))
        return hook

    model.layer4.register_forward_hook(record("layer4"))
    model.layer4[-1].register_forward_hook(record("layer4[-1]"))
    x = torch.randn(2, 3, 64, 64)  # the body is fully convolutional: a smaller input runs the same code
    with torch.no_grad():
        y = model(x)
        assert seen == {"layer4": (2, 512, 2, 2), "layer4[-1]": (2, 512, 2, 2)}
        assert isinstance(model.layer1, torch.nn.Sequential) and len(model.layer2) == 4
        assert tuple(model.layer2[0](torch.randn(1, 64, 16, 16)).shape) == (1, 128, 8, 8)
        torch.testing.assert_close(torch.nn.Sequential(*model.children())(x), y)
        features = torch.nn.Sequential(*list(model.children())[:-1])(x)
    assert tuple(features.shape) == (2, 512, 2, 2)
    assert type(model.layer1[0]).__name__ == "Basic" and type(model.layer1[0]) is type(model.layer1[2])
    assert "Basic(" in repr(model) and "(ws): Shortcut(" in repr(model)


# the generated files a reader is most likely to open, kept as golden text (pytest --update-golden)
MODULE_GOLDENS = {
    "resnet34": (SPECS / "resnet34.arch", "resnet34"),
    "resnet34_a": (SPECS / "resnet34_options.arch", "resnet34_a"),
    "googlenet": (SPECS / "googlenet.arch", "googlenet"),
    "dense_block": (ROOT / "tests" / "golden" / "modules" / "dense_block.arch", "dense_block"),
}


@pytest.mark.parametrize("name", list(MODULE_GOLDENS))
def test_generated_module_golden(golden, name):
    path, network = MODULE_GOLDENS[name]
    source = archlang.compile_file(path, network=network)[network].source()
    golden(ROOT / "tests" / "golden" / "modules" / f"{name}.py", source)


def test_densenet_style_block_is_one_class_built_by_a_loop_that_honours_its_parameters():
    """A repeat whose call widens its input step by step is a loop over the index, and the
    constructor's growth and depth give what recompiling with them gives."""
    path, network = MODULE_GOLDENS["dense_block"]
    net = archlang.compile_file(path, network=network)[network]
    assert "for i in range(n)" in net.source() and net.source().count("class DenseLayer") == 1
    generated = type(net.to_torch())
    for overrides in ({"growth": 12, "n": 3}, {"growth": 8, "n": 0}, {"n": 1}):
        expected = net.to_torch(**overrides).eval()
        got = generated(**overrides).eval()
        assert [(k, v.shape) for k, v in got.state_dict().items()] == \
            [(k, v.shape) for k, v in expected.state_dict().items()]
        got.load_state_dict(expected.state_dict())
        x = torch.randn(2, 64, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(got(x), expected(x))


def test_an_empty_repeat_before_other_calls_keeps_their_list_index():
    """`pair x(stride-1) > pair` with stride=1: the repeat leaves an empty item 0 (names do not
    depend on counts), so the module holds an identity there and the call stays `stage.1`, as the
    report names it (found by the differential fuzz run)."""
    source = ("def pair = fc 6\n\ndef stage(c, stride=1) = pair x(stride-1) > pair\n\n"
              "network net:\n    input 4\n    pair\n    stage /1 c=8\n")
    net = archlang.compile(source, "empty.arch")["net"]
    names = [row["name"] for row in net.report().to_dict()["layers"] if row["params"]]
    assert names == ["pair.fc", "stage.1.fc"]
    assert list(net.to_torch().state_dict()) == ["pair.fc.weight", "pair.fc.bias", "stage.1.fc.weight",
                                                 "stage.1.fc.bias"]


@pytest.mark.parametrize("source", [
    # a chunk whose parts or index is a parameter: forward cannot read it (specialised module)
    "network n(g=2):\n    input 8x4x4\n    chunk g\n",
    "def pick(i) = chunk 2 i\n\nnetwork n:\n    input 8x4x4\n    [pick 1, pick 0]\n",
    # a def parameter named like a builtin the constructor calls (max, min)
    "def blk(max) = conv1x1 max(max, 8)\n\nnetwork n:\n    input 3x8x8\n    blk 4\n    blk 16\n",
    # a layer scale initialised from an integer parameter: still a float parameter
    "network n(init=1):\n    input 4\n    layerscale init\n",
    "def ls(v) = layerscale v\n\nnetwork n:\n    input 4x2x2\n    ls 1\n",
], ids=["chunk-param", "chunk-def-param", "max-param", "layerscale-int", "layerscale-int-def"])
def test_review_cases_of_the_new_ops_build_and_run(source):
    """Programs an independent review of issue 16 found compiling to modules that failed when
    built or run; each now builds, runs, and has the parameters and output shape compiled."""
    net = archlang.compile(source, "review.arch")["n"]
    module = net.to_torch().eval()
    with torch.no_grad():
        y = module(torch.randn(2, *net.input_shape))
    assert tuple(y.shape) == (2, *net.output_shape)
    assert sum(p.numel() for p in module.parameters()) == net.params
    assert all(p.dtype == torch.float32 for p in module.parameters())
