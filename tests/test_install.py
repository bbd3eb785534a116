"""A regular and an editable install both expose netdsl, netdsl.compiler and netdsl.runtime — and never a
top-level `compiler` or `runtime` (both names belong to other projects on the package index).

Each install goes into a fresh virtual environment from a copy of the repository (so the checkout is never
written to), and the imports run from a directory outside both. Dependencies come from the running
interpreter (`--system-site-packages`, plus a .pth naming this interpreter's site-packages when it is itself a
virtual environment), so `--no-deps` suffices and nothing is downloaded when setuptools is at hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

venv = pytest.importorskip("venv", reason="the venv module is not available")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.pyc", "*.egg-info", "build", "dist",
    ".pytest_cache", ".hypothesis", ".ruff_cache", ".netdsl_cache", "runs",
)

PROBE = r"""
import importlib, importlib.util, json, sys
out = {}
for name in ("netdsl", "netdsl.compiler", "netdsl.runtime"):
    try:
        m = importlib.import_module(name)
        out[name] = {"ok": True, "file": getattr(m, "__file__", None), "path": list(getattr(m, "__path__", []))}
    except Exception as e:  # reported, not raised: the test names the failing module
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
for name in ("compiler", "runtime"):
    spec = importlib.util.find_spec(name)
    out["top:" + name] = None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))
print(json.dumps(out))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "CONDA", "__PYVENV"))}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _make_venv(where: Path, env: dict[str, str], outside: Path) -> Path:
    try:  # without pip first: the pip of the running interpreter's site-packages serves (ensurepip is slow)
        venv.EnvBuilder(with_pip=False, system_site_packages=True, clear=True).create(where)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot create a virtual environment: {type(e).__name__}: {e}")
    py = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not py.exists():
        pytest.skip(f"the new virtual environment has no interpreter at {py}")
    # When this interpreter is itself a venv, --system-site-packages reaches only the base interpreter:
    # name our own site-packages too (as plain paths, so .pth files there — such as an editable install of
    # the checkout — are not run).
    if sys.prefix != sys.base_prefix:
        r = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], outside, env)
        purelib = Path(r.stdout.strip())
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (purelib / "_netdsl_test_outer_site.pth").write_text("\n".join(sorted(ours)) + "\n")
    if (_run([str(py), "-m", "pip", "--version"], outside, env).returncode != 0
            and _run([str(py), "-m", "ensurepip", "--default-pip"], outside, env).returncode != 0):
        pytest.skip("pip is not available in a fresh virtual environment (no pip, no ensurepip)")
    return py


def _probe(py: Path, outside: Path, env: dict[str, str]) -> dict:
    r = _run([str(py), "-c", PROBE], outside, env, timeout=180)
    assert r.returncode == 0, f"probe failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def _has_build_backend(py: Path, outside: Path, env: dict[str, str]) -> bool:
    """Can the venv build without isolation? setuptools with PEP 660 editables (>= 64) and a bdist_wheel
    command (built in from 70.1, from the `wheel` package before). If not, pip builds in isolation, fetching
    the pyproject's build requirements from the package index."""
    code = (
        "import importlib.util, setuptools, sys\n"
        "v = tuple(int(p) for p in setuptools.__version__.split('.')[:2])\n"
        "ok = v >= (70, 1) or (v >= (64, 0) and importlib.util.find_spec('wheel') is not None)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    return _run([str(py), "-c", code], outside, env).returncode == 0


@pytest.mark.parametrize("editable", [False, True], ids=["regular", "editable"])
def test_install_exposes_only_netdsl(tmp_path: Path, editable: bool) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=IGNORE, symlinks=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _clean_env()
    py = _make_venv(tmp_path / "venv", env, outside)

    before = _probe(py, outside, env)  # a foreign `compiler`/`runtime` already present is not ours to judge

    cmd = [str(py), "-m", "pip", "install", "--no-deps", "--no-input", "-q"]
    if _has_build_backend(py, outside, env):
        cmd.append("--no-build-isolation")
    cmd += (["-e", str(src)] if editable else [str(src)])
    r = _run(cmd, outside, env, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"

    after = _probe(py, outside, env)
    for name in ("netdsl", "netdsl.compiler", "netdsl.runtime"):
        assert after[name]["ok"], f"import {name} failed after {'editable' if editable else 'regular'} install: {after[name]}"
        where = after[name]["file"] or (after[name]["path"] or [""])[0]
        assert not where.startswith(str(REPO) + os.sep), f"{name} came from the checkout: {where}"
        if editable:
            assert str(src) in where, f"editable {name} should load from the source copy, loaded {where}"
        else:
            assert str(tmp_path / "venv") in where, f"installed {name} should load from the venv, loaded {where}"
    for name in ("compiler", "runtime"):
        assert after["top:" + name] == before["top:" + name], (
            f"the install made a top-level '{name}' importable: {after['top:' + name]} "
            f"(it must only be reachable as netdsl.{name})")
