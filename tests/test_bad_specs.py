"""Golden bad specs: every `tests/specs/bad/*.net` carries its expected diagnostic in its first comment lines.

Header lines (at the top of the file, in this order of meaning):
    # error: [FILE:]LINE:COL: <substring of the message>     the first diagnostic (FILE relative to the spec's
                                                           folder, for an error reported in an imported file)
    # hint: <substring>                                    the hint of the diagnostic named just above
    # error: LINE:COL: <substring>                          a further diagnostic, in order (independent errors)
    # text: <substring>                                    the whole rendered text contains it ({file} is the
                                                           name the spec is reported under)
Each spec is loaded with `netdsl.load` (a `SpecError`, never another exception, fast) and checked through the CLI
(`netdsl check` → exit status 1, the same text on stderr, no traceback). Only top-level files are cases: helper
files (imports) live in subfolders.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import SpecError

BAD = Path(__file__).resolve().parent / "specs" / "bad"
CASES = sorted(BAD.glob("*.net"))
_HEADER = re.compile(r"#\s*(error|hint|text):\s?(.*)$")
_WHERE = re.compile(r"(?:(?P<file>[^:]+\.net):)?(?P<line>\d+):(?P<col>\d+):\s?(?P<msg>.*)$")


@dataclass
class Expected:
    file: str | None
    line: int
    col: int
    message: str
    hint: str | None = None


@dataclass
class Header:
    errors: list[Expected] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def read_header(path: Path) -> Header:
    h = Header()
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = _HEADER.match(raw.strip())
        if not m:
            break
        kind, rest = m.groups()
        if kind == "error":
            w = _WHERE.match(rest)
            assert w, f"{path.name}: malformed '# error:' line: {raw!r}"
            h.errors.append(Expected(w["file"], int(w["line"]), int(w["col"]), w["msg"].strip()))
        elif kind == "hint":
            assert h.errors, f"{path.name}: '# hint:' before any '# error:'"
            h.errors[-1].hint = rest.strip()
        else:
            h.texts.append(rest.strip())
    assert h.errors, f"{path.name}: the first line must be '# error: LINE:COL: message'"
    return h


@pytest.fixture(autouse=True, scope="module")
def _warm_parser():
    """Build the grammar (and the prelude) once before any case is timed: a cold cache is not the spec's cost."""
    netdsl.loads("network W {\n    input x: [1]\n    output y = x\n}\n")


def test_there_are_enough_distinct_cases():
    assert len(CASES) >= 32
    assert all(read_header(p).errors for p in CASES)
    # every case names a different problem
    firsts = [read_header(p).errors[0].message for p in CASES]
    assert len(set(firsts)) == len(firsts)


def _same_file(reported: str, spec: Path, expected: str | None, cwd: Path | None = None) -> bool:
    want = spec if expected is None else spec.parent / expected
    got = Path(reported) if cwd is None else cwd / reported
    return got.resolve() == want.resolve()


def check_rendered(text: str, spec: Path, header: Header, name: str, cwd: Path | None = None) -> None:
    """The rendered diagnostics: `file:line:col: error: message`, the source line as written, carets under it."""
    lines = text.splitlines()
    first = header.errors[0]
    where = spec.parent / first.file if first.file else spec
    head = lines[0]
    m = re.match(r"(.+):(\d+):(\d+): error: (.*)$", head)
    assert m, f"first line is not 'file:line:col: error: message': {head!r}"
    assert _same_file(m.group(1), spec, first.file, cwd)
    assert (int(m.group(2)), int(m.group(3))) == (first.line, first.col), head
    assert first.message in m.group(4)
    source_line = where.read_text(encoding="utf-8").split("\n")[first.line - 1]
    assert lines[1] == source_line.expandtabs(4)
    carets = lines[2]
    indent = len(source_line[: first.col - 1].expandtabs(4))
    assert carets[:indent] == " " * indent and carets[indent] == "^", (lines[1], carets)
    assert set(carets[indent:]) == {"^"}
    for t in header.texts:
        assert t.replace("{file}", name) in text, f"missing {t!r} in:\n{text}"
    for e in header.errors:
        if e.hint is not None:
            assert f"  hint: {e.hint}" in text or e.hint in text


@pytest.mark.parametrize("spec", CASES, ids=[p.stem for p in CASES])
def test_bad_spec(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = read_header(spec)
    t0 = time.process_time()  # CPU time: other work on the machine does not count
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as info:
            netdsl.load(str(spec))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    elapsed = time.process_time() - t0
    assert elapsed < 2.0, f"{spec.name} took {elapsed:.2f} s to refuse"
    assert peak < 64 * 2**20, f"{spec.name} allocated {peak / 2**20:.0f} MiB to refuse"  # size guards never allocate
    err = info.value
    diags = err.diagnostics
    assert len(diags) >= len(header.errors), str(err)
    for want, got in zip(header.errors, diags, strict=False):
        assert got.span is not None, got.render()
        assert _same_file(got.span.file, spec, want.file), (got.span.file, want.file)
        assert (got.span.line, got.span.col) == (want.line, want.col), got.render()
        assert want.message in got.message, got.render()
        if want.hint is not None:
            assert got.hint is not None and want.hint in got.hint, got.render()
    rendered = str(err)
    check_rendered(rendered, spec, header, str(spec))

    # the command line: the same diagnostics on stderr, exit status 1
    capsys.readouterr()
    assert main(["check", str(spec)]) == 1
    out, errtext = capsys.readouterr()
    assert out == ""
    assert errtext.rstrip("\n") == rendered
    assert "Traceback" not in errtext and "internal error" not in errtext


SUBPROCESS = ["syntax_unclosed_paren", "conv_not_tiling", "import_cycle", "size_unroll", "two_errors",
              "error_in_repeat"]


@pytest.mark.parametrize("stem", SUBPROCESS)
def test_bad_spec_cli_process(stem: str) -> None:
    """`python -m netdsl.cli check FILE` in a process of its own: exit status 1, diagnostics, no traceback."""
    spec = BAD / f"{stem}.net"
    header = read_header(spec)
    env = dict(os.environ)
    env.pop("NETDSL_DEBUG", None)
    rel = os.path.relpath(spec, BAD)
    proc = subprocess.run([sys.executable, "-m", "netdsl.cli", "check", rel], cwd=BAD, env=env, check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    check_rendered(proc.stderr, spec, header, rel, cwd=BAD)
    if len(header.errors) > 1:
        for e in header.errors[1:]:
            assert f"{rel}:{e.line}:{e.col}: error: " in proc.stderr
