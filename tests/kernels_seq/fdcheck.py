"""Finite-difference helpers for the sequence-kernel tests (float64 only).

``f`` is a zero-argument callable that reruns the forward kernel on the current contents of the arrays being
perturbed and returns a scalar (``sum(out * R)`` plus, for recurrences, ``sum(final * R2)``); the helpers
perturb those arrays in place and restore them afterwards.

Element-wise criterion: |fd - g| <= rtol * (|fd| + |g|) + atol with a two-sided difference of step eps.
"""

import numpy as np

EPS = 1e-5
RTOL = 1e-6
ATOL = 1e-9


def numeric_grad(f, x, eps=EPS):
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


def assert_close_grad(num, ana, name, rtol=RTOL, atol=ATOL):
    num = np.asarray(num, np.float64)
    ana = np.asarray(ana, np.float64)
    assert num.shape == ana.shape, f"{name}: shape {ana.shape} vs finite differences {num.shape}"
    assert np.all(np.isfinite(ana)), f"gradient of {name}: not finite (left unwritten?)"
    bad = ~(np.abs(num - ana) <= rtol * (np.abs(num) + np.abs(ana)) + atol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.abs(num - ana)), num.shape)
        raise AssertionError(f"gradient of {name}: {int(bad.sum())}/{bad.size} elements off; worst at {i}: "
                             f"fd {num[i]!r} vs analytic {ana[i]!r}")


def check_gradients(f, wrt, analytic, eps=EPS):
    """Every ``analytic[name]`` matches the finite-difference gradient of ``f`` wrt ``wrt[name]``."""
    for name, x in wrt.items():
        assert_close_grad(numeric_grad(f, x, eps), analytic[name], name)


def check_directional(f, wrt, analytic, rng, eps=EPS, tol=1e-6):
    """Random-direction check: (f(x + eps d) - f(x - eps d)) / 2 eps == sum_i <grad_i, d_i>."""
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
    assert abs(num - ana) <= tol * (abs(num) + abs(ana)) + ATOL, \
        f"directional derivative {num!r} vs {ana!r}"


def rel_error(a, b):
    """Norm-wise relative error; 0 when both are zero."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if den == 0.0 else float(np.linalg.norm(a - b) / den)


def assert_f32_matches(f64_out, f32_out, rtol=1e-5):
    """float32 forward agrees with float64 to ~rtol, relative to the output's scale."""
    err = rel_error(f64_out, f32_out)
    assert err < rtol, f"float32 vs float64: relative error {err:.3e}"
