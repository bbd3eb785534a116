"""Every op has CUDA kernels: lower a tiny network per op (the CPU completeness test's cases), in training
mode, and check that each kernel the schedule calls exists in ``kernels/cuda`` with the CPU kernel's
signature; plus the device dispatch and its error when there is no GPU. No kernel runs here (no simulator in
this process), so these tests are cheap."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import netdsl
from netdsl import ops
from netdsl.diagnostics import SpecError

pytest.importorskip("numba.cuda", reason="numba.cuda cannot be imported (pip install 'netdsl[cuda]')")

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("activation", "attention", "conv", "dense", "elementwise", "embed", "loss", "norm", "pool",
            "recurrent", "shape", "util")


def _completeness():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_completeness", REPO / "tests/compiler/test_completeness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


C = _completeness()


def _cuda(module: str):
    return importlib.import_module(f"netdsl.compiler.kernels.cuda.{module}")


@pytest.mark.parametrize("op", C.ALL_OPS)
def test_op_has_cuda_kernels(op):
    if op in ("embedding", "unembed"):
        text = C.TOKENS
    elif op in C.LOSSES:
        text = C._spec("[2, 3]", "x", C.LOSSES[op])
    else:
        text = C._spec(*C.CASES[op])
    called = C._kernels_called(text)
    assert any(f.endswith("_forward") for f in called) and any(f.endswith("_backward") for f in called)
    for fn in called:
        module, name = fn.split(".")
        assert callable(getattr(_cuda(module), name, None)), f"{op}: CUDA kernel {fn} does not exist"


def test_every_op_has_a_cuda_forward_and_backward_pair():
    missing = []
    for op in C.ALL_OPS:
        family = ops.get(op).family
        attrs = dir(_cuda(family))
        names = {op, {"conv": "conv2d", "maxpool": "maxpool2d", "avgpool": "avgpool2d"}.get(op, op)}
        paired = any(any(a.startswith(f"{n}_forward") for a in attrs) and any(a.startswith(f"{n}_backward")
                                                                             for a in attrs) for n in names)
        if not paired and op not in ("flatten", "reshape"):  # copies in the shape family
            missing.append(f"{family}.{op}")
    assert not missing, missing


def _params(fn):
    f = getattr(fn, "py_func", fn)
    return list(inspect.signature(f).parameters.values())


@pytest.mark.parametrize("family", FAMILIES + ("optim",))
def test_every_cpu_kernel_has_a_cuda_function_with_its_signature(family):
    cpu = importlib.import_module("netdsl.runtime.optim" if family == "optim"
                                  else f"netdsl.compiler.kernels.cpu.{family}")
    cu = _cuda(family)
    checked = 0
    for name in dir(cpu):
        fn = getattr(cpu, name)
        if name.startswith("_") or not callable(fn):
            continue
        if family == "optim" and not name.endswith("_kernel"):
            continue
        defined_in = getattr(getattr(fn, "py_func", fn), "__module__", "") or ""
        if family != "optim" and not defined_in.endswith(f"cpu.{family}"):  # not helpers imported from elsewhere
            continue
        other = getattr(cu, name, None)
        assert callable(other), f"{family}.{name} has no CUDA counterpart"
        want = [p.name for p in _params(fn)]
        got = _params(other)
        assert [p.name for p in got[:len(want)]] == want, f"{family}.{name}: {[p.name for p in got]} vs {want}"
        assert all(p.default is not p.empty for p in got[len(want):]), f"{family}.{name}: extra required arguments"
        checked += 1
    assert checked > 0


def test_the_cuda_package_is_installed_with_netdsl():
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "netdsl.compiler.kernels.cuda" in cfg["tool"]["setuptools"]["packages"]
    assert any(d.startswith("numba-cuda") for d in cfg["project"]["optional-dependencies"]["cuda"])


def _gpu_here() -> bool:
    from netdsl.compiler.kernels.cuda import status

    return status()[0]


NET = """network M {
    input x: [3]
    y = x -> dense(2)
    output y
}"""


def test_device_cuda_without_a_gpu_is_a_clear_error():
    if _gpu_here():
        pytest.skip("this machine can run CUDA kernels")
    net = netdsl.loads(NET)
    with pytest.raises(SpecError) as exc:
        netdsl.compile(net, device="cuda")
    text = str(exc.value)
    assert "device 'cuda' is not available" in text and "NUMBA_ENABLE_CUDASIM=1" in text and "numba-cuda" in text


def test_unknown_devices_are_refused_and_cpu_stays_a_plain_program():
    from netdsl.compiler.cuda_program import CudaProgram
    from netdsl.compiler.program import Program

    net = netdsl.loads(NET)
    with pytest.raises(SpecError, match="device 'tpu' is not available"):
        netdsl.compile(net, device="tpu")
    p = netdsl.compile(net, device="cpu")
    assert type(p) is Program and not isinstance(p, CudaProgram)


def test_device_code_rewrite_of_the_generated_step():
    from netdsl.compiler.cuda_program import device_code

    code = """from time import perf_counter as _clock
def backward(V, P, G, n, train, update, seed, step):
    V[3][...] = k_loss.cross_entropy_forward(V[0], V[1], 0.1, -1, V[2])  # a.net:3 loss (x) [y]
    k_loss.cross_entropy_backward(float(V[4].flat[0]), V[2], V[1], 0.1, -1, V[5])
    V[6][t][...] = k_loss.mse_forward(V[7][t], np.array([1, 2], dtype=np.int64))
# V[3][...] = untouched comment
"""
    out = device_code(code).splitlines()
    assert out[0] == "from netdsl.compiler.cuda_program import synced_clock as _clock"
    assert out[2] == ("    k_loss.cross_entropy_forward(V[0], V[1], 0.1, -1, V[2], out=V[3])  # a.net:3 loss (x) [y]")
    assert out[3] == "    k_loss.cross_entropy_backward(V[4], V[2], V[1], 0.1, -1, V[5])"
    assert out[4] == "    k_loss.mse_forward(V[7][t], np.array([1, 2], dtype=np.int64), out=V[6][t])"
    assert out[5] == "# V[3][...] = untouched comment"
