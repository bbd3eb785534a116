"""The front end's command line: `netdsl check`, `summary`, `ir`, `--set`, and failures without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl.cli import main

LENET = """\
network LeNet5(classes=10) {
    input image: [1, 32, 32]
    input label: int[]
    logits = image
        -> c1: conv(6, kernel=5) -> tanh -> s2: avgpool(2)
        -> c3: conv(16, kernel=5) -> tanh -> s4: avgpool(2)    : [16, 5, 5]
        -> flatten
        -> f5: dense(120) -> tanh
        -> f6: dense(84) -> tanh
        -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""

INCEPTION = """\
block Inception(c1, c3r, c3, c5r, c5, pool_proj)(x) {
    a = x -> conv(c1, kernel=1) -> relu
    b = x -> conv(c3r, kernel=1) -> relu -> conv(c3, kernel=3, pad=same) -> relu
    c = x -> conv(c5r, kernel=1) -> relu -> conv(c5, kernel=5, pad=same) -> relu
    d = x -> maxpool(3, stride=1, pad=same) -> conv(pool_proj, kernel=1) -> relu
    return concat(a, b, c, d)                 # on the channel axis
}

network Part {
    input x: [192, 28, 28]
    y = x -> i3a: Inception(64, 96, 128, 16, 32, 32) -> global_avgpool -> fc: dense(10)
    output y
}
"""

ENV = {k: v for k, v in os.environ.items() if k != "NETDSL_DEBUG"}


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    (tmp_path / "lenet.net").write_text(LENET, encoding="utf-8")
    (tmp_path / "inception.net").write_text(INCEPTION, encoding="utf-8")
    return tmp_path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netdsl.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120, check=False)


def test_check_prints_the_one_line_summary(specs: Path, capsys):
    code, out, err = run(["check", str(specs / "lenet.net")], capsys)
    assert code == 0 and err == ""
    assert out == f"{specs / 'lenet.net'}: ok — 13 layers, 61,706 params, 416,520 MACs\n"
    code, out, _ = run(["check", str(specs / "inception.net")], capsys)
    assert code == 0
    assert out.endswith(": ok — 16 layers, 166,266 params, 128,051,712 MACs\n")


def test_check_in_a_process_of_its_own(specs: Path):
    proc = cli(["check", "lenet.net"], specs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "lenet.net: ok — 13 layers, 61,706 params, 416,520 MACs\n"
    assert proc.stderr == ""


def test_summary_json_has_the_interface_keys(specs: Path, capsys):
    code, out, _ = run(["summary", str(specs / "lenet.net"), "--json", "--batch", "4"], capsys)
    assert code == 0
    d = json.loads(out)
    assert set(d) == {"network", "inputs", "layers", "loss_layers", "totals"}
    assert d["network"] == "LeNet5"
    # `layers` ends with the layer producing the first output; the loss's own layers are listed apart
    assert d["layers"][-1]["name"] == "out" and [x["op"] for x in d["loss_layers"]] == ["cross_entropy"]
    assert d["inputs"]["image"] == {"shape": [1, 32, 32], "dtype": "float32"}
    assert d["inputs"]["label"] == {"shape": [], "dtype": "int64"}
    assert [layer["name"] for layer in d["layers"]][:3] == ["c1", "tanh_1", "s2"]
    for layer in d["layers"]:
        assert set(layer) == {"name", "op", "block", "output_shape", "params", "macs", "activation_bytes"}
    c1 = d["layers"][0]
    assert (c1["op"], c1["output_shape"], c1["params"], c1["macs"]) == ("conv", [6, 28, 28], 156, 117_600)
    assert c1["activation_bytes"] == 4 * 6 * 28 * 28 * 4  # batch 4, float32
    assert set(d["totals"]) == {"params", "trainable_params", "macs", "activation_bytes", "train_memory_bytes"}
    assert (d["totals"]["params"], d["totals"]["trainable_params"], d["totals"]["macs"]) == (61_706, 61_706, 416_520)


def test_summary_table_and_depth_folding(specs: Path, capsys):
    code, out, _ = run(["summary", str(specs / "inception.net")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Part (") and lines[1].split() == ["name", "op", "output", "params", "MACs",
                                                                 "activations"]
    names = [ln.split()[0] for ln in lines[3:] if ln and not ln.startswith(("params:", "MACs", "activations",
                                                                             "training"))]
    assert names[:2] == ["i3a.conv_1", "i3a.relu_1"] and names[-2:] == ["global_avgpool_1", "fc"]
    assert "params: 166,266 (166,266 trainable)" in out
    assert "MACs per example: 128,051,712" in out
    code, out, _ = run(["summary", str(specs / "inception.net"), "--depth", "0"], capsys)
    assert code == 0
    rows = [ln.split() for ln in out.splitlines()[3:] if ln.startswith(("i3a", "global", "fc"))]
    assert rows == [["i3a", "Inception", "[256,", "28,", "28]", "163,696", "128,049,152", "3.5", "MB"],
                    ["global_avgpool_1", "global_avgpool", "[256]", "0", "0", "1.0", "KB"],
                    ["fc", "dense", "[10]", "2,570", "2,560", "40", "B"]]
    assert "i3a.conv_1" not in out
    code, out, _ = run(["summary", str(specs / "inception.net"), "--depth", "0", "--json"], capsys)
    layers = json.loads(out)["layers"]
    assert [(x["name"], x["op"], x["params"]) for x in layers] == [
        ("i3a", "Inception", 163_696), ("global_avgpool_1", "global_avgpool", 0), ("fc", "dense", 2_570)]


def test_ir_prints_one_line_per_node(specs: Path, capsys):
    code, out, _ = run(["ir", str(specs / "lenet.net")], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len([ln for ln in lines if ln.startswith("%")]) == 15
    assert lines[2].startswith("%2: f32[6,28,28] = conv[out=6,kernel=[5,5]] %0")
    assert lines[2].endswith("# " + str(specs / "lenet.net") + ":5 c1")


def test_set_overrides_a_network_parameter(specs: Path, capsys):
    code, out, _ = run(["check", str(specs / "lenet.net"), "--set", "classes=100"], capsys)
    assert code == 0
    assert out.endswith(": ok — 13 layers, 69,356 params, 424,080 MACs\n")
    code, out, _ = run(["summary", str(specs / "lenet.net"), "--set", "classes=3", "--json"], capsys)
    assert json.loads(out)["layers"][-1]["output_shape"] == [3]


@pytest.mark.parametrize("args,message", [
    (["--set", "clases=3"], "network LeNet5 has no parameter 'clases' (given with --set)"),
    (["--set", "classes=abc"], "--set classes=abc: 'abc' is not a value"),
    (["--set", "classes=0"], "setting 'units' expects a positive whole number, found 0"),
    (["--set", "classes"], "--set expects name=value, found 'classes'"),
    (["--network", "Other"], "no network named 'Other' (networks: LeNet5)"),
])
def test_bad_flags_exit_1_with_a_diagnostic(specs: Path, capsys, args, message):
    code, out, err = run(["check", str(specs / "lenet.net"), *args], capsys)
    assert code == 1 and out == ""
    assert message in err
    assert "Traceback" not in err


def test_unknown_set_name_points_at_the_network_with_a_hint(specs: Path, capsys):
    code, _, err = run(["check", str(specs / "lenet.net"), "--set", "clases=3"], capsys)
    assert code == 1
    assert err.startswith(f"{specs / 'lenet.net'}:1:1: error: network LeNet5 has no parameter 'clases'")
    assert "  hint: did you mean 'classes'?" in err


def test_summary_refuses_batch_zero(specs: Path, capsys):
    code, _, err = run(["summary", str(specs / "lenet.net"), "--batch", "0"], capsys)
    assert code == 1 and "--batch must be at least 1, found 0" in err


def test_missing_file_is_exit_1_without_traceback(specs: Path):
    for command in ("check", "summary", "ir"):
        proc = cli([command, "nope.net"], specs)
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert proc.stderr == "error: nope.net: no such file\n"
    proc = cli(["check", "."], specs)
    assert proc.returncode == 1 and "cannot read the spec" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_spec_in_a_process_is_exit_1_with_the_diagnostic(specs: Path):
    (specs / "bad.net").write_text(LENET.replace("kernel=5) -> tanh -> s2", "kernel=5) -> tanhh -> s2"))
    proc = cli(["check", "bad.net"], specs)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines()[:3] == [
        "bad.net:5:37: error: unknown layer 'tanhh'",
        "        -> c1: conv(6, kernel=5) -> tanhh -> s2: avgpool(2)",
        "                                    ^^^^^",
    ]
    assert "  hint: did you mean 'tanh'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_command_and_unknown_command_exit_1(capsys):
    assert run([], capsys)[0] == 1
    assert run(["bogus"], capsys)[0] == 1


def test_importing_netdsl_does_not_import_numba():
    proc = subprocess.run([sys.executable, "-c", "import netdsl, sys; assert 'numba' not in sys.modules"],
                          env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_check_and_summary_do_not_import_numba(specs: Path):
    code = ("import sys; from netdsl.cli import main\n"
            "assert main(['check', 'lenet.net']) == 0\n"
            "assert main(['summary', 'inception.net', '--json']) == 0\n"
            "assert main(['ir', 'lenet.net']) == 0\n"
            "bad = [m for m in sys.modules if m == 'numba' or m.startswith('numba.')]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=specs, env=ENV, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
