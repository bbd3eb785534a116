"""Importing one kernel family must not import the others (the generated step code imports only what it uses)."""

import subprocess
import sys

FAMILIES = ["conv", "pool", "norm", "dense", "activation", "elementwise", "shape", "loss"]


def test_families_import_alone():
    code = (
        "import sys, importlib; importlib.import_module('netdsl.compiler.kernels.cpu.{0}');"
        "fam = {1!r}; print(sorted(f for f in fam if 'netdsl.compiler.kernels.cpu.' + f in sys.modules))"
    )
    procs = {
        f: subprocess.Popen([sys.executable, "-c", code.format(f, FAMILIES)], stdout=subprocess.PIPE, text=True)
        for f in FAMILIES
    }
    for f, p in procs.items():
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        assert out.strip() == repr([f]), f"importing {f} also imported {out.strip()}"
