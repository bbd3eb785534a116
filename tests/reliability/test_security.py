"""Security: a spec cannot execute code, import Python or read files beyond its own imports (inside its directory
tree unless `--allow-path` allows another) and the data paths of its recipe or the command line (read by `train`,
never by `check`); npz data and checkpoints are never unpickled; a damaged checkpoint is refused whole."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime import checkpoint as ckpt

import netdsl
from netdsl.cli import main

REPO = Path(__file__).resolve().parents[2]

BLOCKS = """\
block Two(c)(x) {
    return x -> dense(c) -> relu
}
"""

MAIN = """\
import "../shared/blocks.net"

network Net {
    input x: [4]
    input y: int[]
    logits = x -> Two(8) -> dense(3)
    output logits
    loss cross_entropy(logits, y)
}
"""


# ------------------------------------------------------------------------------------------------ imports


def test_an_import_of_etc_passwd_is_refused_without_opening_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    for path in ("../../etc/passwd", "/etc/passwd", "../../../../../../../../etc/passwd"):
        spec = d / "evil.net"
        spec.write_text(f'import "{path}"\nnetwork N {{\n    input x: [4]\n    output y = x -> relu\n}}\n', "utf-8")
        with pytest.raises(netdsl.SpecError) as info:
            netdsl.load(spec)
        text = str(info.value)
        assert text.startswith(f"{spec}:1:1: error: import \"{path}\" leaves the spec's directory ({d})"), text
        assert "allow another directory with --allow-path DIR" in text
        assert "root:" not in text  # nothing of the file's content
        assert main(["check", str(spec)]) == 1
        assert "leaves the spec's directory" in capsys.readouterr().err


def test_a_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    """Imports are resolved (symbolic links followed) before the check: a link inside the tree to a file outside
    it is outside."""
    outside = tmp_path / "outside.net"
    outside.write_text(BLOCKS, encoding="utf-8")
    d = tmp_path / "proj"
    d.mkdir()
    (d / "blocks.net").symlink_to(outside)
    spec = d / "main.net"
    spec.write_text(MAIN.replace("../shared/blocks.net", "blocks.net"), encoding="utf-8")
    with pytest.raises(netdsl.SpecError, match="leaves the spec's directory"):
        netdsl.load(spec)
    assert netdsl.load(spec, allow_paths=[str(tmp_path)]).name == "Net"


def test_allow_path_allows_a_sibling_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "blocks.net").write_text(BLOCKS, encoding="utf-8")
    (tmp_path / "shared" / "secret.net").write_text(BLOCKS, encoding="utf-8")
    (tmp_path / "proj").mkdir()
    spec = tmp_path / "proj" / "main.net"
    spec.write_text(MAIN, encoding="utf-8")
    assert main(["check", str(spec)]) == 1
    assert 'import "../shared/blocks.net" leaves the spec\'s directory' in capsys.readouterr().err
    assert main(["check", str(spec), "--allow-path", str(tmp_path / "shared")]) == 0
    assert ": ok — " in capsys.readouterr().out
    assert netdsl.load(spec, allow_paths=[str(tmp_path / "shared")]).name == "Net"
    # an allowed directory is the only one: its sibling stays out
    spec.write_text(MAIN.replace("../shared/blocks.net", "../shared/../other/x.net"), encoding="utf-8")
    with pytest.raises(netdsl.SpecError, match="leaves the spec's directory"):
        netdsl.load(spec, allow_paths=[str(tmp_path / "shared")])

    # train takes --allow-path too
    spec.write_text(MAIN, encoding="utf-8")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "proj" / "d.npz", x=rng.standard_normal((64, 4)).astype(np.float32), y=rng.integers(0, 3, 64))
    argv = ["train", str(spec), "--data", str(tmp_path / "proj" / "d.npz"), "--steps", "2", "-q"]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 1
    assert "leaves the spec's directory" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "r2"), "--allow-path", str(tmp_path / "shared")]) == 0



def test_eval_and_sample_take_allow_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose spec imports from a sibling directory: eval and sample refuse the import as train does, and
    accept it with --allow-path."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "head.net").write_text("block Head(v)(x) {\n    return x -> dense(v)\n}\n", "utf-8")
    (tmp_path / "proj").mkdir()
    spec = tmp_path / "proj" / "char.net"
    spec.write_text(textwrap.dedent("""\
        import "../shared/head.net"

        network Char(vocab=auto, seq=8) {
            input tokens: int[seq]
            input targets: int[seq]
            logits = tokens -> embed: embedding(vocab, 8) -> Head(vocab)
            output logits
            loss cross_entropy(logits, targets)
        }
        """), encoding="utf-8")
    text = tmp_path / "proj" / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    allow = ["--allow-path", str(tmp_path / "shared")]
    run = str(tmp_path / "run")
    assert main(["train", str(spec), "--data", f'text("{text}", seq=8)', "--steps", "2", "-q", "--out", run,
                 *allow]) == 0
    capsys.readouterr()
    for argv, says in ((["eval", str(spec), "--checkpoint", run], "loss "),
                       (["sample", str(spec), "--checkpoint", run, "--length", "5", "--prompt", "the "], "the ")):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert f"{spec}:1:1: error: import \"../shared/head.net\" leaves the spec's directory" in err, err
        assert "Traceback" not in err
        assert main([*argv, *allow]) == 0, argv
        assert says in capsys.readouterr().out

# ------------------------------------------------------------------------------------------------ no code, no reads

AUDIT = r'''
import json, sys
from pathlib import Path
from netdsl.cli import main

WATCH = ("open", "exec", "compile", "import", "subprocess", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
         "os.fork", "socket", "ctypes", "pickle", "marshal.load", "os.remove", "os.unlink", "os.rename", "shutil",
         "urllib", "webbrowser", "os.chmod", "os.mkdir", "os.listdir", "os.scandir")
record = None
def hook(event, args):
    if record is not None and event.startswith(WATCH):
        record.append([event, [str(a) for a in args[:2]]])
sys.addaudithook(hook)

out = {}
for name, warm, argv in json.loads(sys.argv[1]):
    main(warm)  # warm: modules, the grammar, the prelude, kernels (what any first run reads)
    record = []
    code = main(argv)
    out[name] = {"code": code, "events": record}
    record = None
print(json.dumps(out))
'''

# every kind of string a spec can hold, looking like paths, Python or shell
STRINGS = """\
import "blocks.net"

block Tag(c, path="/etc/shadow", note="__import__('os').system('touch {marker}')")(x) {
    return x -> dense(c)
}

network Net(where="~/.ssh/id_rsa", cmd="$(touch {marker})") {
    input x: [4]
    input y: int[]
    logits = x -> Two(8) -> Tag(3, path="../../etc/passwd")
    output logits
    loss cross_entropy(logits, y)
}

train Net {
    data npz("data.npz")
    val "held_out.npz"
    optimizer sgd(lr=0.1)
    batch 16
}
"""


def test_check_reads_only_the_spec_and_its_imports(tmp_path: Path) -> None:
    """`netdsl check` (and summary, ir) on a spec full of path-like and code-like strings, with a recipe naming
    data files that exist: under an audit hook, the only files opened are the spec and its import, and nothing is
    executed, imported, spawned, deleted or connected to. `netdsl train` then reads the data."""
    marker = tmp_path / "PWNED"
    spec = tmp_path / "main.net"
    spec.write_text(STRINGS.replace("{marker}", str(marker)), encoding="utf-8")
    (tmp_path / "blocks.net").write_text(BLOCKS, encoding="utf-8")
    rng = np.random.default_rng(0)
    for f in ("data.npz", "held_out.npz"):
        np.savez(tmp_path / f, x=rng.standard_normal((64, 4)).astype(np.float32), y=rng.integers(0, 3, 64))
    check, summary = ["check", str(spec)], ["summary", str(spec), "--json"]
    sets = [*check, "--set", "cmd=__import__('os').system('touch x')", "--set", "where=/etc/passwd"]
    runs = [["check", check, check], ["summary", summary, summary], ["ir", ["ir", str(spec)], ["ir", str(spec)]],
            ["set", sets, sets],
            ["train", ["train", str(spec), "--steps", "1", "-q", "--out", str(tmp_path / "warm")],
             ["train", str(spec), "--steps", "1", "-q", "--out", str(tmp_path / "run")]]]
    proc = subprocess.run([sys.executable, "-c", AUDIT, json.dumps(runs)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    allowed = {str(spec), str(tmp_path / "blocks.net")}
    for name in ("check", "summary", "ir", "set"):
        r = result[name]
        assert r["code"] == 0, (name, proc.stderr)
        kinds = {e for e, _ in r["events"]}
        assert kinds <= {"open"}, (name, r["events"])
        opened = {str(Path(tmp_path, a[0]).resolve()) if not Path(a[0]).is_absolute() else a[0]
                  for _, a in r["events"]}
        assert opened <= allowed, (name, opened - allowed)
    # training reads the recipe's data (and writes its run), still without executing anything
    r = result["train"]
    assert r["code"] == 0, proc.stderr
    opened = {a[0] for e, a in r["events"] if e == "open"}
    assert {"data.npz", "held_out.npz"} <= {Path(o).name for o in opened}, opened
    assert not {e for e, _ in r["events"]} & {"exec", "subprocess.Popen", "os.system", "os.exec", "pickle.find_class"}
    assert not marker.exists()


@pytest.mark.parametrize("text", [
    '__import__("os").system("touch PWNED")',
    'eval("1")',
    'open("/etc/passwd")',
    'x.__class__',
    'x.shape.__class__',
    '"{0.__class__}".format(x)',
])
def test_python_in_a_spec_is_only_text(text: str, tmp_path: Path) -> None:
    spec = f"network N {{\n    input x: [4]\n    y = {text}\n    output y\n}}\n"
    with pytest.raises(netdsl.SpecError) as info:
        netdsl.loads(spec, "py.net")
    assert info.value.span is not None  # a positioned spec error, not an internal error
    assert not (Path.cwd() / "PWNED").exists() and not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------------------------------------ no unpickling


class _Trap:
    """Unpickling this creates a file: if it ever exists, something unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def _object_array(marker: Path) -> np.ndarray:
    a = np.empty(4, dtype=object)
    for i in range(4):
        a[i] = _Trap(marker)
    # the pickle really is a trap: loading it the unsafe way would create the marker
    assert b"touch" in pickle.dumps(a)
    return a


def test_npz_data_with_object_arrays_is_refused_never_unpickled(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "UNPICKLED"
    np.savez(tmp_path / "evil.npz", x=_object_array(marker), y=np.zeros(4, np.int64))
    spec = tmp_path / "net.net"
    spec.write_text("network N {\n    input x: [4]\n    input y: int[]\n    logits = x -> dense(3)\n"
                    "    output logits\n    loss cross_entropy(logits, y)\n}\n", encoding="utf-8")
    code = main(["train", str(spec), "--data", f'npz("{tmp_path / "evil.npz"}")', "--steps", "1", "-q",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "evil.npz" in err and "holds Python objects" in err and "never unpickled" in err
    assert not marker.exists()


def test_a_checkpoint_with_object_arrays_is_refused_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "UNPICKLED"
    arrays = {"param/w": np.ones(3, np.float32)}
    path = ckpt.save(tmp_path, 1, arrays, {"spec_hash": "x"})
    np.savez(tmp_path / "ckpt-00000001.npz", **{"param/w": _object_array(marker)})
    with pytest.raises(netdsl.SpecError) as info:
        ckpt.load(path)
    assert "damaged checkpoint, refused" in str(info.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ checksums

SPEC = """\
network MLP {
    input x: [4]
    input y: int[]
    logits = x -> h: dense(8) -> tanh -> out: dense(3)
    output logits
    loss cross_entropy(logits, y)
}
"""


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((64, 4)).astype(np.float32), y=rng.integers(0, 3, 64))
    spec = tmp_path / "mlp.net"
    spec.write_text(SPEC, encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", str(spec), "--data", str(tmp_path / "d.npz"), "--steps", "4", "--every", "2", "-q",
                 "--out", str(out)]) == 0
    return spec, tmp_path / "d.npz", out


def test_a_checkpoint_with_a_wrong_checksum_is_refused(run: tuple[Path, Path, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec, data, out = run
    capsys.readouterr()
    npz = out / "ckpt-00000004.npz"
    arrays = dict(np.load(npz, allow_pickle=False))
    arrays["param/h.weight"][0, 0] += 1e-3  # one changed weight in a well-formed file: only the checksum sees it
    np.savez(npz, **arrays)
    for argv in (["eval", str(spec), "--checkpoint", str(out), "--data", str(data)],
                 ["train", str(spec), "--data", str(data), "--steps", "6", "--out", str(out), "--resume", "-q"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"{out / 'ckpt-00000004.json'}: damaged checkpoint, refused: the checksum of ckpt-00000004.npz " \
               "does not match its manifest" in err, err
        assert "earlier checkpoints in" in err and "ckpt-00000002.json" in err  # where to go instead
        assert "Traceback" not in err
    # the earlier checkpoint is whole and still loads
    assert ckpt.load(out / "ckpt-00000002.json")[0]["step"] == 2

    # a flipped bit on disk: the zip's own CRC refuses it first, as damaged, with the same clear message
    raw = bytearray(npz.read_bytes())
    i = raw.find(arrays["param/h.weight"].tobytes())
    raw[i + 1] ^= 0x40
    npz.write_bytes(bytes(raw))
    with pytest.raises(netdsl.SpecError, match=r"damaged checkpoint, refused: ckpt-00000004.npz is truncated or corrupt"):
        ckpt.load(out)
    npz.write_bytes(bytes(raw[: len(raw) // 2]))  # truncated
    with pytest.raises(netdsl.SpecError, match=r"damaged checkpoint, refused: ckpt-00000004.npz is truncated or corrupt"):
        ckpt.load(out)


def test_a_tampered_manifest_is_refused(run: tuple[Path, Path, Path]) -> None:
    _, _, out = run
    path = out / "ckpt-00000004.json"
    man = json.loads(path.read_text(encoding="utf-8"))
    man["checksum"] = "0" * 64
    path.write_text(json.dumps(man), encoding="utf-8")
    with pytest.raises(netdsl.SpecError, match="the checksum of ckpt-00000004.npz does not match its manifest"):
        ckpt.load(out)
    path.write_text(path.read_text(encoding="utf-8")[:100], encoding="utf-8")  # truncated
    with pytest.raises(netdsl.SpecError, match="the manifest is not readable JSON"):
        ckpt.load(out)


def test_nothing_in_the_package_unpickles() -> None:
    """Every np.load in netdsl passes allow_pickle=False, and nothing imports pickle or calls eval/exec on text
    that could come from a spec (the compiler's generated code is built from the IR, not from spec text)."""
    offenders = []
    for d in ("netdsl", "runtime", "compiler"):
        for p in sorted((REPO / d).rglob("*.py")):
            src = p.read_text(encoding="utf-8")
            for n, line in enumerate(src.splitlines(), 1):
                code = line.split("#")[0]
                if "np.load(" in code and "allow_pickle=False" not in code:
                    offenders.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
                if "import pickle" in code or "pickle.load" in code or "shelve" in code:
                    offenders.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
                if re.search(r"(?<![\w.])(?<!def )(eval|exec)\s*\(", code):
                    if p.relative_to(REPO).as_posix() == "compiler/codegen.py" and "def load_module" in src:
                        continue  # the generated step code, built from the IR (see the next test)
                    offenders.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_generated_code_holds_no_spec_text() -> None:
    """Spec strings never reach generated Python: a network parameter holding Python source only shows up as
    data (in the IR), and the generated step code is the same as without it."""
    base = textwrap.dedent("""\
        network N(tag={tag}) {{
            input x: [4]
            output y = x -> dense(2)
        }}
        """)
    a = netdsl.loads(base.format(tag='"plain"'), "a.net")
    b = netdsl.loads(base.format(tag='"\\"; import os; os.system(\\"touch PWNED\\") #"'), "a.net")
    code_a = netdsl.compile(a).code(train=False)
    code_b = netdsl.compile(b).code(train=False)
    assert code_a == code_b and "os.system" not in code_b
