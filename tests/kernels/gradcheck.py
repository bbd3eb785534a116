"""Finite-difference helpers shared by the kernel tests, tests/kernels and tests/kernels_seq (float64 only).

``f`` is always a zero-argument callable that reruns the forward kernel on the current contents of the
arrays being perturbed and returns a scalar (usually ``sum(out * R)`` for a fixed random ``R``); the helpers
perturb those arrays in place and restore them afterwards.

Two criteria: by default the norm-wise relative error of a whole gradient must be below ``tol`` (tests/kernels);
with ``atol`` every element must satisfy |fd - g| <= tol * (|fd| + |g|) + atol (tests/kernels_seq, through
fdcheck.py). Either way an analytic gradient of another shape or with a non-finite element fails.
"""

import numpy as np


def rel_error(a, b):
    """Norm-wise relative error; 0 when both are zero."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if den == 0.0 else float(np.linalg.norm(a - b) / den)


def numeric_grad(f, x, eps=1e-6):
    """Two-sided finite-difference gradient of ``f()`` with respect to every element of ``x``."""
    g = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so it can be perturbed in place"
    gf = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2.0 * eps)
    return g


def assert_close_grad(num, ana, name, tol=1e-6, atol=None):
    """The analytic gradient ``ana`` of ``name`` matches the finite differences ``num`` (criterion: module doc)."""
    num = np.asarray(num, np.float64)
    ana = np.asarray(ana, np.float64)
    assert num.shape == ana.shape, f"{name}: shape {ana.shape} vs finite differences {num.shape}"
    assert np.all(np.isfinite(ana)), f"gradient of {name}: not finite (left unwritten?)"
    if atol is None:
        err = rel_error(num, ana)
        assert err < tol, f"gradient of {name}: relative error {err:.3e}"
        return
    bad = ~(np.abs(num - ana) <= tol * (np.abs(num) + np.abs(ana)) + atol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.abs(num - ana)), num.shape)
        raise AssertionError(f"gradient of {name}: {int(bad.sum())}/{bad.size} elements off; worst at {i}: "
                             f"fd {num[i]!r} vs analytic {ana[i]!r}")


def check_gradients(f, wrt, analytic, eps=1e-6, tol=1e-6, atol=None):
    """Assert that each ``analytic[name]`` matches the finite-difference gradient wrt ``wrt[name]``."""
    for name, x in wrt.items():
        assert_close_grad(numeric_grad(f, x, eps), analytic[name], name, tol, atol)


def check_directional(f, wrt, analytic, rng, eps=1e-6, tol=1e-6, atol=None):
    """Random-direction check: (f(x+eps d) - f(x-eps d)) / 2 eps == sum_i <grad_i, d_i>."""
    dirs = {name: rng.standard_normal(x.shape) for name, x in wrt.items()}
    saved = {name: x.copy() for name, x in wrt.items()}
    for name, x in wrt.items():
        x += eps * dirs[name]
    fp = f()
    for name, x in wrt.items():
        x[...] = saved[name] - eps * dirs[name]
    fm = f()
    for name, x in wrt.items():
        x[...] = saved[name]
    num = (fp - fm) / (2.0 * eps)
    ana = sum(float(np.vdot(analytic[name], dirs[name])) for name in wrt)
    if atol is None:
        err = abs(num - ana) / max(abs(num), abs(ana), 1e-300)
        assert err < tol, f"directional derivative {num!r} vs {ana!r}: relative error {err:.3e}"
    else:
        assert abs(num - ana) <= tol * (abs(num) + abs(ana)) + atol, f"directional derivative {num!r} vs {ana!r}"


def assert_f32_matches(f64_out, f32_out, rtol=1e-5):
    """float32 forward agrees with float64 to ~rtol, relative to the output's scale."""
    err = rel_error(f64_out, f32_out)
    assert err < rtol, f"float32 vs float64: relative error {err:.3e}"
