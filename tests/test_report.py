"""The static cost report and `archc diff`: exact totals for every spec, per-layer figures a
reader can check by hand, roll-ups that add up, golden files for each format, and no torch."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import archlang
from tests.conftest import ROOT, SPECS
from tests.test_specs import REFERENCE

GOLDEN = ROOT / "tests" / "golden" / "report"


def archc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("file,network,inp,out,params,macs,ws", REFERENCE, ids=[r[1] for r in REFERENCE])
def test_report_totals_match_reference(file, network, inp, out, params, macs, ws):
    net = archlang.compile_file(SPECS / file)[network]
    data = net.report().to_dict()
    assert (data["params"], data["macs"]) == (params, macs)
    assert (tuple(data["input_shape"]), tuple(data["output_shape"])) == (inp, out)
    layers = data["layers"]
    assert sum(row["params"] for row in layers) == params
    assert sum(row["macs"] for row in layers) == macs
    assert data["projections"] + data["pad_shortcuts"] == ws


@pytest.mark.parametrize("file,network", [(r[0], r[1]) for r in REFERENCE if r[1] in
                                          ("resnet34", "resnet50", "googlenet", "resnet34_c", "dense_residual")])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_rolled_up_rows_add_up_to_the_totals(file, network, depth):
    net = archlang.compile_file(SPECS / file)[network]
    full, rolled = net.report(), net.report(depth)
    for key in ("params", "buffers", "macs", "other_ops", "activation_bytes"):
        assert sum(getattr(r, key) for r in rolled.rows) == getattr(full.total, key)
    assert all(len(r.name.split(".")) <= depth for r in rolled.rows)
    assert rolled.rows[-1].shape == net.output_shape


def test_lenet5_figures_by_hand():
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    rows = {r.name: r for r in net.report().rows}
    # conv5x5 6 on 1x32x32: 6*1*25 weights + 6 biases; 150 MACs per output pixel, 28*28 pixels
    assert (rows["c1.conv"].params, rows["c1.conv"].macs, rows["c1.conv"].other_ops) == (156, 150 * 784, 6 * 784)
    assert rows["s2"].other_ops == 6 * 14 * 14 * 4  # each output reads a 2x2 window
    assert rows["f5.flatten"].activation_bytes == 0
    outputs = [6 * 28 * 28, 6 * 28 * 28, 6 * 14 * 14, 16 * 10 * 10, 16 * 10 * 10, 16 * 5 * 5, 120, 120, 84, 84, 10]
    assert net.activation_bytes == 4 * sum(outputs) == 58_408
    assert net.other_ops == sum(r.other_ops for r in net.report().rows)


@pytest.mark.parametrize(("file", "network"), [("lenet5.arch", "lenet5"), ("resnet34.arch", "resnet34"),
                                               ("dense_residual.arch", "dense_residual_pad")])
def test_activation_bytes_equal_what_torch_allocates(file, network):
    """The report's activations against an independent count: every floating-point tensor an
    aten op returns (views and in-place ops excluded) in the generated module's forward."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Outputs(TorchDispatchMode):
        elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            first = out[0] if isinstance(out, tuple | list) else out
            aliases = any(r.alias_info is not None for r in func._schema.returns)
            if isinstance(first, torch.Tensor) and first.is_floating_point() and not aliases \
                    and not func._schema.is_mutable:
                self.elements += first.numel()
            return out

    net = archlang.compile_file(SPECS / file)[network]
    module, x = net.to_torch().eval(), torch.randn(1, *net.input_shape)
    with torch.no_grad(), Outputs() as counted:
        module(x)
    assert 4 * counted.elements == net.activation_bytes


def test_other_ops_stay_out_of_the_headline():
    src = "network n:\n    input 4x8x8\n    conv3x3 8 same > bn > relu | skip\n"
    report = archlang.compile(src, "t.arch")["n"].report()
    rows = {r.name: r for r in report.rows}
    assert rows["conv"].macs == 8 * 4 * 9 * 64 and rows["conv"].other_ops == 0  # no bias before a BN
    assert rows["bn"].other_ops == rows["relu"].other_ops == rows["add"].other_ops == 8 * 64
    assert rows["ws.conv"].ws and rows["ws.conv"].macs == 8 * 4 * 64
    assert report.total.macs == 8 * 4 * 9 * 64 + 8 * 4 * 64
    assert report.to_dict()["macs"] == report.total.macs


def test_block_rows_describe_what_they_hold():
    report = archlang.compile_file(SPECS / "resnet34.arch")["resnet34"].report(1)
    ops = {r.name: (r.op, r.ws) for r in report.rows}
    # the main layers only, as the diagram's boxes; a run of one call with its arguments
    assert ops["stem"] == ("conv7x7 64 /2 > maxpool3x3 /2", False)
    assert ops["layer1"] == ("basic 64 ×3", False) and ops["layer2"] == ("basic ×4", True)
    assert ops["head"] == ("gap > dense 1000", False)
    report = archlang.compile_file(SPECS / "googlenet.arch")["googlenet"].report(1)
    assert {r.name: r.op for r in report.rows}["inception4a"] == "inception"


def test_golden_text(golden):
    report = archlang.compile_file(SPECS / "resnet34.arch")["resnet34"].report(1)
    golden(GOLDEN / "resnet34.depth1.txt", report.to_text())


def test_golden_markdown(golden):
    report = archlang.compile_file(SPECS / "inception.arch")["inception3a"].report()
    golden(GOLDEN / "inception3a.md", report.to_markdown())


def test_golden_csv(golden):
    text = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"].report().to_csv()
    golden(GOLDEN / "lenet5.csv", text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[-1]["layer"] == "total" and int(rows[-1]["macs"]) == 416_520


def test_golden_json(golden):
    text = archlang.compile_file(SPECS / "dense_residual.arch")["dense_residual"].report().to_json()
    golden(GOLDEN / "dense_residual.json", text)
    data = json.loads(text)
    assert {"network", "input_shape", "output_shape", "params", "buffers", "macs", "flops", "activation_bytes",
            "layers"} <= set(data)
    assert [row["name"] for row in data["layers"] if row["ws"]] == ["ws.fc"] and data["projections"] == ["ws"]


def test_golden_diff(golden):
    proc = archc("diff", "specs/resnet34_options.arch:resnet34_a", "specs/resnet34.arch")
    assert proc.returncode == 0, proc.stderr
    golden(GOLDEN / "diff_resnet34_a_b.txt", proc.stdout)


def test_diff_against_the_plain_twin():
    proc = archc("diff", "specs/resnet34.arch", "specs/resnet34.arch", "--plain-b", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["params"] == [21_797_672, 21_623_848]
    blocks = [f"layer{i}.{j}" for i, n in enumerate((3, 4, 6, 3), 1) for j in range(n)]
    changed = [r["name"] for r in data["rows"] if r["changed"]]
    assert changed == blocks  # every basic block lost its skip, not only the 3 with a Ws
    assert {r["structure"] for r in data["rows"] if r["changed"]} == {"skip removed"}
    row = next(r for r in data["rows"] if r["name"] == "layer2.0")
    assert row["a"]["params"] - row["b"]["params"] == 64 * 128 + 2 * 128  # the Ws conv and its BN
    assert (row["a"]["skips"], row["b"]["skips"]) == (1, 0)
    row = next(r for r in data["rows"] if r["name"] == "layer1.0")
    assert row["a"]["params"] == row["b"]["params"] and row["a"]["macs"] == row["b"]["macs"]


def test_diff_plain_b_shows_the_skips_removed_from_each_block():
    text = archc("diff", "specs/resnet34.arch", "specs/resnet34.arch", "--plain-b", "--depth", "1").stdout
    assert "4 of 7 rows differ (depth 1)" in text
    assert "layer1  basic 64 ×3  (3 skips removed)" in text
    assert "layer3  basic ×6 [Ws] → basic ×6  (6 skips removed)" in text


def test_diff_set_a_and_set_b_apply_to_one_side_each(tmp_path):
    path = tmp_path / "w.arch"
    path.write_text("network w(k=8, classes=10):\n    input 16x8x8\n    s = conv3x3 16*k\n"
                    "    head = gap > dense classes\n")
    proc = archc("diff", str(path), str(path), "--set-a", "k=8", "--set-b", "k=10", "--set", "classes=5",
                 "--json", "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    conv = [16 * 16 * 9 * k + 16 * k for k in (8, 10)]  # weights and biases: nothing absorbs them
    dense = [16 * k * 5 + 5 for k in (8, 10)]
    assert data["params"] == [conv[0] + dense[0], conv[1] + dense[1]]
    assert data["a"].endswith(", classes=5, k=8)") and data["b"].endswith(", classes=5, k=10)")
    same = archc("diff", str(path), str(path), "--set", "k=10", "--json")  # classes=10, the default
    assert json.loads(same.stdout)["params"] == [conv[1] + 16 * 10 * 10 + 10] * 2


def test_diff_aligns_different_depths_of_network():
    proc = archc("diff", "specs/resnets.arch:resnet18", "specs/resnet34.arch", "--depth", "2", "--json")
    data = json.loads(proc.stdout)
    only_b = [r["name"] for r in data["rows"] if r["a"] is None]
    assert only_b == ["layer1.2", "layer2.2", "layer2.3", "layer3.2", "layer3.3", "layer3.4", "layer3.5", "layer4.2"]


def test_diff_needs_a_network_when_a_file_has_several():
    proc = archc("diff", "specs/resnets.arch", "specs/resnet34.arch")
    assert proc.returncode == 2
    assert "several networks (resnet18, resnet50, resnet152)" in proc.stderr and "Traceback" not in proc.stderr


def test_report_cli_formats_and_depth():
    text = archc("report", "specs/resnet34.arch", "--depth", "1")
    assert text.returncode == 0 and "basic ×4  [Ws]" in text.stdout and "FLOPs = 2 × MACs" in text.stdout
    several = archc("report", "specs/inception.arch", "--json")
    assert [d["network"] for d in json.loads(several.stdout)] == ["inception3a", "inception_naive"]
    table = archc("report", "specs/inception.arch", "--csv").stdout.splitlines()
    assert table[0].startswith("network,") and sum(1 for line in table if line.startswith("network,")) == 1
    bad = archc("report", "specs/resnet34.arch", "--depth", "0")
    assert bad.returncode == 2 and "depth is at least 1" in bad.stderr
    both = archc("report", "specs/resnet34.arch", "--json", "--csv")
    assert both.returncode == 2


def test_report_works_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "from archlang.cli import main\n"
            "assert main(['report', 'specs/resnet34.arch', '--json']) == 0\n"
            "assert main(['diff', 'specs/resnet34.arch', 'specs/resnet34.arch', '--plain-b']) == 0\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '"macs": 3663761408' in proc.stdout


def test_build_writes_the_report(tmp_path):
    proc = archc("build", "specs/lenet5.arch", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "lenet5.json").read_text())["macs"] == 416_520
    md = (tmp_path / "lenet5.report.md").read_text()
    assert md.startswith("# lenet5") and "| `c1.conv` | conv5x5 6 | 6x28x28 | 156 | 117,600 |" in md


def test_json_report_validates_against_the_published_schema(golden):
    from archlang.backends.report_schema import json_schema, validate, validate_network

    golden(ROOT / "docs" / "report.schema.json", json_schema())
    for path in sorted(SPECS.glob("*.arch")):
        names = []
        for net in archlang.compile_file(path):
            names.append(net.name)
            for depth in (None, 1):
                validate_network(json.loads(net.report(depth).to_json()))
        printed = archc("report", str(path), "--json", "--depth", "1")
        assert [r.network for r in validate(json.loads(printed.stdout))] == names
    bad = json.loads(archlang.compile_file(SPECS / "lenet5.arch")["lenet5"].report().to_json())
    bad["layers"][1]["macs"] = -1
    with pytest.raises(ValueError, match="macs"):
        validate_network(bad)
    with pytest.raises(ValueError):
        validate(json.loads(archlang.compile_file(SPECS / "lenet5.arch")["lenet5"].report().to_json()))


def test_report_json_is_a_list_for_one_network_as_for_several():
    one = archc("report", "specs/lenet5.arch", "--json")
    assert one.returncode == 0
    (report,) = json.loads(one.stdout)
    assert report["network"] == "lenet5" and report["macs"] == 416_520
    checked = json.loads(archc("check", "specs/lenet5.arch", "--json").stdout)
    assert [r["name"] for r in checked] == [report["network"]]
