"""`netdsl graph`: golden DOT (LeNet-5, an Inception block), folding, unrolling, the backward graph, kernels,
Graphviz formats, the self-contained HTML page (rendered in headless Chromium when one is installed), and the
notebook representations.

Regenerate the golden files with NETDSL_UPDATE_GOLDEN=1 (then review the diff).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import netdsl
from netdsl import graph
from netdsl.cli import main

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # spec paths (and so tooltips) are relative to the repository


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("NETDSL_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}: run with NETDSL_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; rerun with NETDSL_UPDATE_GOLDEN=1 if intended"


def _dot(spec: str, *flags: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["graph", spec, *flags]) == 0
    return capsys.readouterr().out


# ---------------------------------------------------------------------- golden DOT


def test_lenet5_dot_golden(capsys: pytest.CaptureFixture[str]) -> None:
    _golden("lenet5.dot", _dot("tests/inspect/lenet5.net", capsys=capsys))


def test_inception_dot_golden(capsys: pytest.CaptureFixture[str]) -> None:
    folded = _dot("tests/inspect/inception.net", capsys=capsys)
    expanded = _dot("tests/inspect/inception.net", "--expand", capsys=capsys)
    _golden("inception.dot", folded)
    _golden("inception_expanded.dot", expanded)
    # folded: the block is one node with its totals (the spec's figures for Inception 3a)
    assert '"inception_3a" [label="▸ inception_3a: Inception\\n[256, 28, 28]\\n163,696 params · 128.0M MACs"' in folded
    assert "subgraph" not in folded
    # expanded: a cluster holding the block's 13 layers, in source order, with stable names
    assert 'subgraph "cluster_inception_3a"' in expanded
    names = re.findall(r'^\s+"(inception_3a\.[a-z0-9_]+)" \[', expanded, flags=re.MULTILINE)
    assert names == ["inception_3a.conv1x1", "inception_3a.relu_1", "inception_3a.reduce3x3", "inception_3a.relu_2",
                     "inception_3a.conv3x3", "inception_3a.relu_3", "inception_3a.reduce5x5", "inception_3a.relu_4",
                     "inception_3a.conv5x5", "inception_3a.relu_5", "inception_3a.pool", "inception_3a.pool_proj",
                     "inception_3a.relu_6", "inception_3a.concat_1"]
    assert '"image" -> "inception_3a.reduce3x3" [label=" [192, 28, 28]"]' in expanded
    assert '"inception_3a.concat_1" -> "pool" [label=" [256, 28, 28]"]' in expanded


def test_dot_is_stable() -> None:
    net = netdsl.load("specs/googlenet.net")
    a = graph.to_dot(graph.build(net))
    b = graph.to_dot(graph.build(netdsl.load("specs/googlenet.net")))
    assert a == b
    # nine Inception blocks folded, in network order
    folded = re.findall(r'^\s+"(inception_\w+)" \[', a, flags=re.MULTILINE)
    assert folded == ["inception_3a", "inception_3b", "inception_4a", "inception_4b", "inception_4c", "inception_4d",
                      "inception_4e", "inception_5a", "inception_5b"]


def test_lenet_nodes_carry_spec_line_params_and_macs() -> None:
    view = graph.build(netdsl.load("tests/inspect/lenet5.net"))
    c1 = view.nodes["c1"]
    assert c1.title == "c1: conv"
    assert "156 params · 117.6K MACs" in c1.lines
    assert "tests/inspect/lenet5.net:6" in c1.tip and "c1: conv(6, kernel=5)" in c1.tip
    shapes = {(e.src, e.dst): e.label for e in view.edges}
    assert shapes[("s4", "flatten_1")] == "[16, 5, 5]"
    assert shapes[("label", "cross_entropy_1")] == "int[]"


# ---------------------------------------------------------------------- recurrences, gradients, kernels


def test_unroll_folded_and_unrolled() -> None:
    net = netdsl.load("tests/inspect/seq.net")
    folded = graph.visible(graph.build(net))
    assert "n:dec" in folded.nodes and folded.nodes["n:dec"].kind == "unroll"
    view = graph.build(net, unroll=3)
    steps = [c for c in view.clusters.values() if c.kind == "step" and c.id.startswith("dec")]
    assert [c.title for c in steps] == ["step t=4", "step t=3", "step t=2"]  # reverse: from the last step
    state = [(e.src, e.dst) for e in view.edges if e.kind == "state" and e.dst.startswith("dec")]
    assert ("dec.tanh_1@4", "dec.h@3") in state and ("dec.tanh_1@3", "dec.h@2") in state
    assert ("dec.tanh_1@2", "dec/more") in state  # 5 steps, 3 drawn
    assert view.nodes["dec.wx@4"].lines[-1] == "20 params · 16 MACs"
    dot = graph.to_dot(view)
    assert 'subgraph "cluster_dec@3"' in dot and "color=\"#1565c0\"" in dot


def test_grad_graph_reverses_edges_and_flags_missing_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    net = netdsl.load("tests/inspect/lenet5.net")
    view = graph.build(net, grad=True)
    grads = [n for n in view.nodes.values() if n.kind == "grad"]
    # every node on the loss path below a trainable parameter (not the inputs)
    assert {g.id for g in grads} == {f"{k}/grad" for k in ("c1", "tanh_1", "s2", "c3", "tanh_2", "s4", "flatten_1",
                                                           "f5", "tanh_3", "f6", "tanh_4", "out", "cross_entropy_1")}
    edges = {(e.src, e.dst): e for e in view.edges if e.kind == "grad"}
    assert edges[("tanh_1/grad", "c1/grad")].label == "[6, 28, 28]"
    assert ("cross_entropy_1", "cross_entropy_1/grad") in {(e.src, e.dst) for e in view.edges if e.kind == "seed"}
    assert "∂weight, ∂bias" in view.nodes["c1/grad"].lines
    from netdsl.compiler import rules

    monkeypatch.delitem(rules.BACKWARD, "avgpool")
    bad = graph.build(net, grad=True)
    assert bad.nodes["s2/grad"].bad and bad.nodes["s4/grad"].bad and not bad.nodes["c1/grad"].bad
    assert "no gradient rule for 'avgpool'" in bad.nodes["s2/grad"].lines


def test_fused_lists_kernels_per_node() -> None:
    net = netdsl.load("tests/inspect/lenet5.net")
    view = graph.build(net, fused=True)
    # c1 runs the direct kernels with the tanh after it fused in (which then has no kernel of its own)
    assert view.kernels["c1"] == ["▸ conv.conv2d_direct_forward [+tanh]", "◂ conv.conv2d_direct_backward [+tanh]"]
    assert view.kernels["cross_entropy_1"][0] == "▸ loss.cross_entropy_forward"
    with_grad = graph.build(net, grad=True, fused=True)
    assert with_grad.kernels["c1"] == ["▸ conv.conv2d_direct_forward [+tanh]"]
    assert with_grad.kernels["c1/grad"] == ["◂ conv.conv2d_direct_backward [+tanh]"]
    seq = graph.build(netdsl.load("tests/inspect/seq.net"), fused=True)
    assert any("lstm" in k.lower() or "recurrent" in k for k in seq.kernels["enc"])  # the fused sequence kernel


# ---------------------------------------------------------------------- formats


def test_svg_and_png_need_graphviz(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    assert main(["graph", "tests/inspect/lenet5.net", "-o", str(tmp_path / "g.svg")]) == 1
    err = capsys.readouterr().err
    assert "graphviz" in err and "apt-get install graphviz" in err
    assert not (tmp_path / "g.svg").exists()
    assert netdsl.load("tests/inspect/lenet5.net")._repr_svg_() is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_and_png_through_graphviz(tmp_path: Path) -> None:
    assert main(["graph", "tests/inspect/lenet5.net", "-o", str(tmp_path / "g.svg")]) == 0
    svg = (tmp_path / "g.svg").read_text()
    assert "<svg" in svg and "c1: conv" in svg
    assert main(["graph", "tests/inspect/lenet5.net", "-o", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in netdsl.load("tests/inspect/lenet5.net")._repr_svg_()


def test_bad_output_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "tests/inspect/lenet5.net", "-o", str(tmp_path / "g.jpg")]) == 1
    assert "unknown format '.jpg'" in capsys.readouterr().err
    assert main(["graph", "tests/inspect/lenet5.net", "--unroll", "-1"]) == 1


def test_html_page_is_self_contained(tmp_path: Path) -> None:
    out = tmp_path / "r50.html"
    assert main(["graph", "specs/resnet50.net", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert page.count("<script") == 2 and "<svg" in page  # the data, the script, and the drawing itself
    assert "layer1.0: Bottleneck" in page and "25,557,032 parameters" in page


def test_notebook_html() -> None:
    net = netdsl.load("tests/inspect/inception.net")
    page = net._repr_html_()
    assert page.startswith("<div") and "<svg" in page and "inception_3a: Inception" in page
    assert "http" not in page


def test_program_html() -> None:
    net = netdsl.load("tests/inspect/lenet5.net")
    prog = netdsl.compile(net, batch=2)
    page = prog._repr_html_()
    assert "<table" in page and "<td>c1</td>" in page
    assert "conv.conv2d_direct_forward" in page  # LeNet's convolutions run the direct kernels
    assert "tests/inspect/lenet5.net:6" in page  # the step code's provenance comments


CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (the test never installs it)")


def _chromium(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *flags,
                           url], capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "resnet50.html"
    assert main(["graph", "specs/resnet50.net", "-o", str(page)]) == 0
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1400,1000")
    log = r.stdout + r.stderr
    assert "Uncaught" not in log, log[-2000:]
    assert shot.exists(), log[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000, f"screenshot of {len(data)} bytes: a blank page?"
    try:
        from PIL import Image
    except ImportError:
        return
    img = Image.open(shot).convert("RGB")
    colors = img.getcolors(maxcolors=1_000_000) or []
    non_white = sum(c for c, rgb in colors if rgb != (255, 255, 255))
    assert len(colors) > 50 and non_white > 0.03 * img.width * img.height


def _numbers(svg: str) -> list[float]:
    attrs = re.findall(r'(?:x|y|width|height|d|viewBox|rx)="([^"]*)"', svg)
    return [float(x) for a in attrs for x in re.findall(r"-?\d+(?:\.\d+)?", a)]


@needs_chromium
@pytest.mark.parametrize("fragment", ["", "#open=all", "#open=layer2.0,layer4.2", "#click=layer3.1"])
def test_page_script_draws_what_python_draws(tmp_path: Path, fragment: str) -> None:
    """The page's script (a port of the Python layout) redraws on load: same boxes, paths and texts."""
    net = netdsl.load("specs/resnet50.net")
    view = graph.build(net)
    page = tmp_path / "resnet50.html"
    page.write_text(graph.to_html(view), encoding="utf-8")
    r = _chromium(tmp_path, page.as_uri() + fragment, "--dump-dom")
    assert "Uncaught" not in r.stderr, r.stderr[-2000:]
    dom = r.stdout
    js = dom[dom.index('<svg class="netdsl-graph"'):]
    js = js[: js.index("</svg>")]
    folded = view.folded()
    if fragment == "#open=all":
        folded = set()
    elif fragment:
        folded -= set(fragment.split("=")[1].split(","))  # opened by the link, or by a click on the block
    py = graph.to_svg(view, folded=folded)
    py = py[: py.index("</svg>")]
    a, b = _numbers(py), _numbers(js)
    assert len(a) == len(b) > 100
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1.0
    texts = re.compile(r">([^<]+)</text>")
    assert texts.findall(py) == texts.findall(js)
