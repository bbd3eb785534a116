"""The float32 transcendental forms of compiler/kernels/cpu/fastmath.py: their stated accuracy, that they stay in
float32 (a float64 constant once widened every polynomial to double precision and halved the vector width),
and that the float32 GELU kernels, serial and in lanes, agree with the exact float64 ones."""

import math

import numpy as np
import pytest
from netdsl.compiler.kernels.cpu import activation as act
from netdsl.compiler.kernels.cpu import fastmath as fm
from numba import njit


@njit(cache=False)
def _apply(which, x, out):
    for i in range(x.shape[0]):
        v = x[i]
        if which == 0:
            out[i] = fm.tanh32(v)
        elif which == 1:
            out[i] = fm.exp32(v)
        elif which == 2:
            out[i] = fm.erf32(v)
        else:
            out[i] = fm.sigmoid(v, True)


@njit(cache=False)
def _scalar_types(v):
    return fm.tanh32(v), fm.exp32(v), fm.erf32(v), fm.sigmoid(v, True)


def test_float32_forms_return_float32() -> None:
    results = _scalar_types(np.float32(0.3))
    sig = _scalar_types.signatures[0]
    ret = _scalar_types.overloads[sig].signature.return_type
    assert all(str(t) == "float32" for t in ret), ret
    assert all(isinstance(r, float) for r in results)


@pytest.mark.parametrize(("which", "lo", "hi", "ref", "tol"), [
    (0, -12.0, 12.0, np.tanh, ("ulp", 6)),
    (1, -87.0, 88.0, np.exp, ("ulp", 1.5)),
    (2, -6.0, 6.0, np.vectorize(math.erf), ("abs", 6e-7)),
    (3, -40.0, 40.0, lambda x: 1.0 / (1.0 + np.exp(-x)), ("ulp", 3)),
])
def test_float32_forms_accuracy(which: int, lo: float, hi: float, ref, tol) -> None:
    x = np.linspace(lo, hi, 200_001, dtype=np.float32)
    out = np.empty_like(x)
    _apply(which, x, out)
    want = ref(x.astype(np.float64))
    err = np.abs(out.astype(np.float64) - want)
    kind, bound = tol
    if kind == "ulp":
        ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        worst = float(np.max(err / np.maximum(ulp, np.finfo(np.float32).tiny)))
        assert worst <= bound, f"{worst:.1f} ulp"
    else:
        assert float(err.max()) <= bound, float(err.max())


@pytest.mark.parametrize("n", [1000, 200_000])  # serial, and split into lanes
def test_gelu_float32_matches_float64(n: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(n) * 3
    g = rng.standard_normal(n)
    y64, gx64 = np.empty(n), np.empty(n)
    act.gelu_forward(x, y64)
    act.gelu_backward(g, x, gx64)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    y32, gx32 = np.empty(n, np.float32), np.empty(n, np.float32)
    act.gelu_forward(x32, y32)
    act.gelu_backward(g32, x32, gx32)
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx32, gx64, rtol=1e-5, atol=2e-6)
    # the input rounded to float32 is part of the difference: both dtypes see the same function
    assert np.abs(y32 - y64).max() < 5e-6
