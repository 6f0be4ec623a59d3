"""The training-memory report (archlang/backends/memory.py, `archc report --batch/--dtype/--optimizer`)
against PyTorch itself: the bytes of the tensors autograd saves for backward, recorded with
`torch.autograd.graph.saved_tensors_hooks` during a training-mode forward of the generated module
(each storage once: a view and its base, or a tensor two ops keep, share one), and the bytes of
the gradients and the optimizer's state after a real step.

Every op's examples are checked alone (with and without a gradient for the input), every network
of specs/ and of specs/torchvision/ as a whole.  Large networks run on the meta device: the same
forward, the same autograd graph and the same saved tensors (test_meta_device_saves_what_cpu_saves),
without computing anything; networks with nn.MultiheadAttention run on the CPU, because on the
meta device scaled_dot_product_attention takes its unfused path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import archlang
from archlang.backends.memory import TrainingSetup, training_memory
from archlang.compiler.ops import REGISTRY
from tests.conftest import ROOT, SPECS

torch = pytest.importorskip("torch")

TOLERANCE = 0.10  # the bound; every case below is exact today (README: Training step memory)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def saved_bytes(module, x) -> int:
    """The bytes autograd saves in `module(x)`: each storage once (views of one tensor, and one
    tensor saved by several ops, are one), parameters and buffers left out, and the 0-dim
    scalars PyTorch wraps numbers in (8 bytes each) too."""
    weights = {t.untyped_storage()._cdata for t in [*module.parameters(), *module.buffers()]}
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage._cdata not in weights and t.dim() > 0:
            storages[storage._cdata] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(storages.values())


def ours(net, batch: int, dtype: str = "fp32", input_grad: bool = False) -> int:
    # device="cpu": the tests run on the CPU, whose dropout keeps its mask in the dtype
    return training_memory(net.ir, TrainingSetup(batch, dtype), device="cpu", input_grad=input_grad).activation_bytes


def measured(net, batch: int = 2, device: str = "cpu", dtype: str = "fp32", input_grad: bool = False) -> int:
    torch.manual_seed(0)
    with torch.device(device):
        module = net.to_torch().train().to(DTYPES[dtype])
    x = torch.randn(batch, *net.input_shape, device=device, dtype=DTYPES[dtype], requires_grad=input_grad)
    return saved_bytes(module, x)


# ---- every op, alone ----

CASES = [(spec.name, i, ex) for spec in REGISTRY.values() for i, ex in enumerate(spec.examples)]
# on the CPU, attention with dropout runs scaled_dot_product_attention's math path, which keeps the
# S x S weights; the rule counts the fused kernels (flash, memory-efficient) that CUDA runs it with
CPU_MATH_PATH = {("mha", 1)}


@pytest.mark.parametrize(("op", "index", "example"), CASES, ids=[f"{op}-{i}" for op, i, _ in CASES])
@pytest.mark.parametrize("input_grad", [False, True], ids=["input", "input-with-grad"])
def test_each_op_saves_what_torch_saves(op, index, example, input_grad):
    if (op, index) in CPU_MATH_PATH:
        pytest.skip("attention dropout on the CPU takes the unfused path (README: Training step memory)")
    source = f"network example:\n    input {example.input}\n    {example.text}\n"
    net = archlang.compile(source, f"{op}.arch")["example"]
    assert ours(net, 2, input_grad=input_grad) == measured(net, 2, input_grad=input_grad)


# ---- every network ----

def _networks(paths):
    return [(path, name) for path in paths for name in archlang.compile_file(path).networks]


COURSE = _networks(sorted(SPECS.glob("*.arch")))
TORCHVISION = _networks(sorted((SPECS / "torchvision").glob("*.arch")))
# one network of each family runs in the quick suite, the rest with `-m slow`
QUICK = {"resnet18", "resnet50", "densenet121", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
         "efficientnet_v2_s", "vit_b_32", "swin_t", "swin_v2_t", "convnext_tiny", "shufflenet_v2_x1_0",
         "maxvit_t", "regnet_y_400mf", "mnasnet0_5", "squeezenet1_1", "googlenet_aux", "inception_v3_aux",
         "vgg11_bn", "alexnet", "mobilenet_v2"}
RELATIVE_ERRORS: dict[str, float] = {}


def _check_network(path, name):
    net = archlang.compile_file(path)[name]
    attention = any(n.op == "mha" for n in net.ir.nodes)
    got = measured(net, 2, "cpu" if attention else "meta")
    expected = ours(net, 2)
    error = (expected - got) / got
    RELATIVE_ERRORS[f"{path.parent.name}/{path.name}:{name}"] = error
    assert abs(error) <= TOLERANCE, f"{name}: ours {expected:,} bytes, torch {got:,} ({error:+.1%})"


@pytest.mark.parametrize(("path", "name"), COURSE, ids=[f"{p.stem}:{n}" for p, n in COURSE])
def test_every_course_network_saves_what_torch_saves(path, name):
    _check_network(path, name)


@pytest.mark.parametrize(("path", "name"), [
    pytest.param(p, n, marks=() if n in QUICK else pytest.mark.slow) for p, n in TORCHVISION],
    ids=[f"{p.stem}:{n}" for p, n in TORCHVISION])
def test_every_torchvision_network_saves_what_torch_saves(path, name):
    _check_network(path, name)


@pytest.mark.parametrize(("file", "name"), [
    ("resnets.arch", "resnet18"), ("torchvision/efficientnet.arch", "efficientnet_b0"),
    ("torchvision/shufflenet.arch", "shufflenet_v2_x0_5"),
    pytest.param("torchvision/swin.arch", "swin_v2_t", marks=pytest.mark.slow),
    pytest.param("torchvision/maxvit.arch", "maxvit_t", marks=pytest.mark.slow)])
def test_meta_device_saves_what_cpu_saves(file, name):
    """The networks above run on the meta device; the same forward on the CPU saves the same bytes."""
    net = archlang.compile_file(SPECS / file)[name]
    assert measured(net, 2, "meta") == measured(net, 2, "cpu")


def test_lenet5_by_hand():
    """At batch 2: the input (conv keeps it for its weights' gradient), each tanh's output (kept by
    tanh and by the pool or dense after it: once), each pool's output (kept by the next layer,
    through the flatten view); the last dense keeps f6's tanh output, already counted."""
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    elements = 1 * 32 * 32 + 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84
    assert ours(net, 2) == 2 * 4 * elements == 72_864
    rows = {r.name: r.saved for r in net.report(batch=2).rows}
    assert rows["input"] == 2 * 4 * 1024 and rows["c1.conv"] == 0 and rows["c1.tanh"] == 2 * 4 * 6 * 28 * 28
    assert rows["f5.flatten"] == 0 and rows["s4"] == 2 * 4 * 400 and rows["output"] == 0


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("name", ["lenet5", "resnet18"])
def test_half_precision_saves_half_the_bytes(dtype, name):
    """A model cast with .to(dtype) saves its activations in dtype; int64 indices and the
    statistics of BN and LayerNorm stay as they are."""
    file = "lenet5.arch" if name == "lenet5" else "resnets.arch"
    net = archlang.compile_file(SPECS / file)[name]
    got = measured(net, 2, "cpu" if name == "lenet5" else "meta", dtype)
    assert abs(ours(net, 2, dtype) - got) <= TOLERANCE * got
    if name == "lenet5":  # no indices, no statistics: exactly half
        assert ours(net, 2, dtype) == got == ours(net, 2) // 2


# ---- gradients and optimizer state after a real step ----

OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.01),
              "momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
              "adam": lambda p: torch.optim.Adam(p), "adamw": lambda p: torch.optim.AdamW(p)}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize(("file", "name", "dtype"), [("lenet5.arch", "lenet5", "fp32"),
                                                     ("dense_residual.arch", "dense_residual", "bf16")])
def test_gradients_and_optimizer_state_after_one_step(file, name, dtype, optimizer):
    net = archlang.compile_file(SPECS / file)[name]
    memory = training_memory(net.ir, TrainingSetup(2, dtype, optimizer))
    torch.manual_seed(0)
    module = net.to_torch().train().to(DTYPES[dtype])
    opt = OPTIMIZERS[optimizer](module.parameters())
    out = module(torch.randn(2, *net.input_shape, dtype=DTYPES[dtype]))
    out.float().square().mean().backward()
    opt.step()
    assert memory.parameter_bytes == sum(p.nbytes for p in module.parameters())
    assert memory.gradient_bytes == sum(p.grad.nbytes for p in module.parameters())
    state = sum(t.nbytes for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor))
    # Adam's one-element step count per parameter tensor is left out: a few bytes
    assert abs(memory.optimizer_state_bytes - state) <= TOLERANCE * max(state, 1)
    steps = sum(s["step"].nbytes for s in opt.state.values() if "step" in s)
    assert memory.optimizer_state_bytes == state - steps


# ---- the report ----

@pytest.mark.parametrize("depth", [None, 1, 2])
def test_rows_add_up_to_the_total(depth):
    net = archlang.compile_file(SPECS / "torchvision" / "shufflenet.arch")["shufflenet_v2_x0_5"]
    report = net.report(depth, batch=8, dtype="bf16", optimizer="adam")
    assert sum(r.saved for r in report.rows) == report.training.activation_bytes == ours(net, 8, "bf16")
    t = report.training
    assert t.optimizer_state_bytes == 2 * t.parameter_bytes == 2 * t.gradient_bytes == 2 * 2 * net.params
    assert t.total_bytes == t.parameter_bytes + t.gradient_bytes + t.optimizer_state_bytes + t.activation_bytes


def test_cli_prints_the_section_and_the_json_fields_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "from archlang.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    args = ["specs/resnets.arch", "-n", "resnet18", "--batch", "32", "--dtype", "bf16", "--optimizer", "adamw"]
    text = subprocess.run([sys.executable, "-c", code, "report", *args, "--depth", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert text.returncode == 0, text.stderr
    assert "training step memory (batch 32, bf16, adamw):" in text.stdout
    header = next(line for line in text.stdout.splitlines() if line.startswith("layer "))
    assert header.split()[-3:] == ["saved", "for", "backward"]
    proc = subprocess.run([sys.executable, "-c", code, "report", *args, "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    data = data[0] if isinstance(data, list) else data
    net = archlang.compile_file(SPECS / "resnets.arch")["resnet18"]
    assert data["training"]["parameter_bytes"] == 2 * net.params
    assert data["training"]["activation_bytes"] == sum(row["saved_bytes"] for row in data["layers"])
    plain = subprocess.run([sys.executable, "-m", "archlang", "report", "specs/lenet5.arch", "--json"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert "training" not in plain.stdout and "saved_bytes" not in plain.stdout


def test_training_json_validates_against_the_schema():
    from archlang.backends.report_schema import validate_network

    for file, name in [("lenet5.arch", "lenet5"), ("googlenet.arch", "googlenet")]:
        net = archlang.compile_file(SPECS / file)[name]
        for depth in (None, 2):
            validate_network(json.loads(net.report(depth, batch=4, dtype="fp16", optimizer="momentum").to_json()))


def test_bad_training_options_are_refused():
    for args, message in [(["--batch", "0"], "the batch size is at least 1"), (["--dtype", "fp8"], "invalid choice"),
                          (["--optimizer", "lion"], "invalid choice")]:
        proc = subprocess.run([sys.executable, "-m", "archlang", "report", "specs/lenet5.arch", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
