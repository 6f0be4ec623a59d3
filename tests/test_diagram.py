"""Diagrams: golden DOT for small networks, depth and run collapsing, Ws drawn apart, and real
renders through graphviz's `dot` (well-formed SVG carrying the expected labels, PNG bytes)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import archlang
from tests.conftest import ROOT, SPECS

GOLDEN = ROOT / "tests" / "golden" / "dot"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")


def net(file: str, name: str):
    return archlang.compile_file(SPECS / file)[name]


def nodes_of(dot: str) -> dict[str, str]:
    """node id → its attribute text, for the nodes (not edges) of a DOT file."""
    return dict(re.findall(r"^\s*(n\d+|output) \[(.*)\]$", dot, flags=re.M))


@pytest.mark.parametrize("file,name,depth", [
    ("dense_residual.arch", "dense_residual", None),
    ("dense_residual.arch", "dense_residual_pad", None),
    ("inception.arch", "inception3a", None),
    ("resnet34.arch", "resnet34", 1),
    ("resnet34.arch", "resnet34", 2),
    ("lenet5.arch", "lenet5", 2),
], ids=["dense_residual", "dense_residual_pad", "inception3a", "resnet34-d1", "resnet34-d2", "lenet5"])
def test_golden_dot(golden, file, name, depth):
    dot = net(file, name).dot(depth)
    golden(GOLDEN / f"{name}{'' if depth is None else f'.d{depth}'}.dot", dot)
    assert dot == net(file, name).dot(depth)  # deterministic


def test_every_layer_is_drawn_at_full_depth():
    n = net("resnet34.arch", "resnet34")
    dot = n.dot(None)
    drawn = nodes_of(dot)
    layers = [x for x in n.nodes if x.role != "implicit"]
    assert len(drawn) == len(layers) + 1  # + the output node
    assert sum(1 for attrs in drawn.values() if 'label="+"' in attrs) == sum(1 for x in n.nodes if x.op == "_add")
    ws = [attrs for attrs in drawn.values() if "<b>Ws</b>" in attrs]
    assert len(ws) == 6 and all("dashed" in attrs and "#d9822b" in attrs for attrs in ws)  # 3 convs + 3 BNs
    assert dot.count("subgraph cluster_") == 1 + 4 + 16 + 3 + 1  # stem, layers, blocks, Ws frames, head


def test_repeated_blocks_collapse_with_a_badge():
    n = net("resnets.arch", "resnet152")
    deep = n.dot(2)
    assert len(nodes_of(deep)) < 20
    assert "<b>layer3.1 – 35</b>" in deep and "<b>×35</b>" in deep
    shallow = n.dot(1)
    assert "bottleneck ×36" in shallow and "subgraph cluster_" not in shallow
    assert "+Ws" in shallow  # a collapsed block still says it holds a projection


def test_edges_carry_shapes_and_shortcuts_are_dashed():
    dot = net("resnet34_options.arch", "resnet34_a").dot(3)
    assert re.search(r'-> n\d+ \[label=" 128×28×28"', dot)
    pad = [attrs for attrs in nodes_of(dot).values() if "zero-pad shortcut" in attrs]
    assert len(pad) == 3 and all("dashed" in attrs for attrs in pad)
    assert re.search(r'\[label=" 64×56×56" color="#d9822b" style=dashed\]', dot)


def test_legend_only_when_something_was_inserted():
    assert "legend" in net("resnet34.arch", "resnet34").dot() and "legend" not in net("lenet5.arch", "lenet5").dot()


@needs_dot
def test_svg_and_png_through_dot():
    n = net("inception.arch", "inception3a")
    svg = n.render("svg").decode("utf-8")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"conv1x1 64", "conv5x5 32", "maxpool3x3", "concat", "output 256×28×28"} <= texts
    assert " 192×28×28" in texts
    assert n.render("png").startswith(b"\x89PNG\r\n\x1a\n")
    assert n._repr_svg_() == svg


@needs_dot
def test_render_cli(tmp_path):
    def archc(*args, **kw):
        return subprocess.run([sys.executable, "-m", "archlang", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, **kw)

    proc = archc("render", "specs/resnet34.arch", "-o", str(tmp_path / "r.svg"), "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    ET.parse(tmp_path / "r.svg")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.svg").stat().st_mode & 0o777 == 0o666 & ~umask
    proc = archc("render", "specs/inception.arch", "-f", "png", "-o", str(tmp_path) + "/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inception3a.png", "inception_naive.png", "r.svg"]
    assert archc("render", "specs/inception.arch", "-o", str(tmp_path / "one.svg")).returncode == 2
    dot = archc("render", "specs/lenet5.arch", "-f", "dot", "-o", "-")
    assert dot.stdout == net("lenet5.arch", "lenet5").dot()
    every = archc("render", "specs/lenet5.arch", "-f", "dot", "-o", "-", "--depth", "all")
    assert every.stdout == net("lenet5.arch", "lenet5").dot(None)
    # without -f, the output file's suffix chooses the format; a -f that contradicts it is refused
    assert archc("render", "specs/lenet5.arch", "-o", str(tmp_path / "l.png")).returncode == 0
    assert (tmp_path / "l.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert archc("render", "specs/lenet5.arch", "-o", str(tmp_path / "l.dot")).returncode == 0
    assert (tmp_path / "l.dot").read_text() == net("lenet5.arch", "lenet5").dot()
    wrong = archc("render", "specs/lenet5.arch", "-f", "svg", "-o", str(tmp_path / "x.png"))
    assert wrong.returncode == 2 and "does not fit the output file" in wrong.stderr
    assert not (tmp_path / "x.png").exists()


def test_without_dot_render_fails_cleanly_and_build_still_writes(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path / "empty")}  # no `dot` anywhere
    run = [sys.executable, "-m", "archlang"]
    proc = subprocess.run([*run, "render", "specs/lenet5.arch", "-o", str(tmp_path / "x.svg")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "apt-get install graphviz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.svg").exists()
    proc = subprocess.run([*run, "render", "specs/lenet5.arch", "-f", "dot", "-o", str(tmp_path / "x.dot")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and (tmp_path / "x.dot").read_text().startswith("digraph lenet5 {")
    proc = subprocess.run([*run, "build", "specs/lenet5.arch", "-o", str(tmp_path / "b")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "lenet5.svg not written" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["lenet5.json", "lenet5.py", "lenet5.report.md"]


@needs_dot
def test_huge_diagrams_are_collapsed_and_say_so():
    """3,000 flat layers took 3.4 s in dot and 20,000 took 228 s: what is drawn is now bounded."""
    from archlang.backends.diagram import MAX_BOXES

    flat = archlang.compile("network big:\n    input 4x4x4\n    (conv3x3 4 same > relu) x3000\n", "b.arch")["big"]
    dot = flat.dot(None)
    assert dot.count("label=") < 2 * MAX_BOXES and "5881 of 6001 boxes at depth 1 are drawn as one" in dot
    assert flat.render("svg", None).startswith(b"<?xml")
    staged = archlang.compile("def b(c) = conv3x3 c same > relu | skip\nnetwork big:\n    input 4x4x4\n"
                              "    s1 = b 4 x500\n    s2 = b 4 x500\n", "b.arch")["big"]
    assert "drawn at depth 1" in staged.dot(None) and "drawn at depth" not in staged.dot(2)


def test_dot_time_is_bounded(monkeypatch, tmp_path):
    from archlang.backends import diagram

    slow = tmp_path / "dot"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(diagram.RenderError, match="did not finish within 0.5 s"):
        diagram.render("digraph { a }", "svg", timeout=0.5)


def drawn(net, depth, direction="TB", style="full") -> tuple[float, dict[str, tuple[float, float]]]:
    """Where dot puts each IR node's box (by node path, in inches) and the drawing's width."""
    from archlang.backends.diagram import fitted_layout

    plain = subprocess.run(["dot", "-Tplain"], input=net.dot(depth, direction, style), capture_output=True,
                           text=True, check=True, timeout=120).stdout.splitlines()
    at = {p[1]: (float(p[2]), float(p[3])) for p in (line.split() for line in plain) if p[0] == "node"}
    boxes, of_node, _ = fitted_layout(net.ir, depth)
    ids = {box.key: f"n{i}" for i, box in enumerate(boxes)}
    return float(plain[0].split()[2]), {x.path: at[ids[of_node[x.id].key]] for x in net.ir.nodes if x.path}


@needs_dot
@pytest.mark.parametrize("direction", ["TB", "LR"])
@pytest.mark.parametrize("depth", [2, None], ids=["d2", "all"])
def test_branches_are_drawn_in_the_joins_order(depth, direction):
    """GoogLeNet's inception branches left to right (top to bottom with LR) as written: 1x1, 3x3,
    the second 3x3, pool; with frames inside frames at --depth all, where dot's own order put the
    1x1 branch rightmost.  SqueezeNet's fire: the 1x1 expand before the 3x3."""
    cases = [(net("googlenet.arch", "googlenet"), [f"inception{b}.branch{{}}" for b in
                                                    ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")], 4),
             (archlang.compile_file(SPECS / "torchvision" / "squeezenet.arch")["squeezenet1_0"],
              [f"features.fire{k}.branch{{}}" for k in range(1, 9)], 2)]
    for n, joins, count in cases:
        for style in ("full", "compact"):
            _, at = drawn(n, depth, direction, style)
            for join in joins:
                heads = [next(xy for path, xy in at.items() if path.startswith(join.format(k) + "."))
                         for k in range(1, count + 1)]
                across = [x if direction == "TB" else -y for x, y in heads]
                assert across == sorted(across), (join, style, heads)


@needs_dot
def test_the_main_column_stays_straight():
    """At --depth all ResNet-34 drifted sideways around its Ws frames: 7.35 in wide, its convs
    spread over 3.9 in.  The main column is now one graphviz group."""
    width, at = drawn(net("resnet34.arch", "resnet34"), None)
    xs = [x for path, (x, _) in at.items() if re.fullmatch(r"layer\d\.\d+\.(conv|bn)\d", path)]
    assert width < 5 and max(xs) - min(xs) < 1.5


def test_def_calls_show_their_arguments():
    squeeze = archlang.compile_file(SPECS / "torchvision" / "squeezenet.arch")["squeezenet1_0"].dot(2)
    assert "<b>fire1</b><br/>fire 16 64<br/>" in squeeze and "<b>fire8</b><br/>fire 64 256<br/>" in squeeze
    resnet = net("resnet34.arch", "resnet34")
    d2 = resnet.dot(2)
    assert "<br/>basic 128 /2<br/>" in d2 and "<br/>basic 128<br/>" in d2
    assert "/1" not in d2  # layer1's stride 1 is basic's default: not repeated
    assert "<br/>basic 64 ×3<br/>" in resnet.dot(1)  # three identical calls
    assert "<br/>basic ×4<br/>" in resnet.dot(1)  # layer2's first call differs (/2)


def test_collapsed_labels_name_main_layers_only():
    """One rule for every collapsed label: its convs, denses, pools (never bn or relu), so the
    branches of one join read alike."""
    dot = html.unescape(net("googlenet.arch", "googlenet").dot(2))
    for label in ("conv1x1 64", "conv1x1 96 > conv3x3 128", "conv1x1 16 > conv3x3 32", "maxpool3x3 > conv1x1 32"):
        assert f"<br/>{label}<br/>" in dot
    assert "> bn" not in dot and "> relu" not in dot
    assert "<br/>bn &gt; relu<br/>" in archlang.compile(
        "network n:\n    input 4x8x8\n    a = bn > relu\n", "n.arch")["n"].dot(1)  # no main layer: all of them


def test_compact_style_and_direction():
    n = net("resnet34.arch", "resnet34")
    compact = n.dot(1, "LR", "compact")
    assert "rankdir=LR" in compact and "nodesep=0.15" in compact and "rankdir=TB" in n.dot(1)
    # a shape only where a box changes it: the stem and the three down-sampling stages; the input
    # and output nodes say theirs, layer1 keeps 64x56x56
    assert re.findall(r'label=" ([\d×]+)"', compact) == ["64×56×56", "128×28×28", "256×14×14", "512×7×7"]
    tb = n.dot(1, "TB", "compact")  # top to bottom: external labels, which add no ranks
    assert re.findall(r'xlabel=" ([\d×]+)"', tb) == ["64×56×56", "128×28×28", "256×14×14", "512×7×7"]
    assert len(re.findall(r'label=" [\d×]+"', n.dot(1))) == 7  # full: every edge
    with pytest.raises(ValueError, match="direction"):
        n.dot(1, "BT")
    with pytest.raises(ValueError, match="style"):
        n.dot(1, "TB", "tiny")


def png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@needs_dot
def test_dpi_sets_the_png_resolution(tmp_path):
    n = net("lenet5.arch", "lenet5")
    w96, h96 = png_size(n.render("png", 1))
    w192, h192 = png_size(n.render("png", 1, dpi=192))
    assert abs(w192 - 2 * w96) <= 2 and abs(h192 - 2 * h96) <= 2
    proc = subprocess.run([sys.executable, "-m", "archlang", "render", "specs/lenet5.arch", "--dpi", "200",
                           "--direction", "LR", "--style", "compact", "-o", str(tmp_path / "l.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert png_size((tmp_path / "l.png").read_bytes()) == png_size(n.render("png", 2, "LR", "compact", dpi=200))
    wrong = subprocess.run([sys.executable, "-m", "archlang", "render", "specs/lenet5.arch", "--dpi", "200", "-o",
                            str(tmp_path / "l.svg")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "--dpi sets a PNG's resolution" in wrong.stderr
