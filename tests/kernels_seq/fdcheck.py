"""Finite-difference helpers for the sequence-kernel tests: tests/kernels/gradcheck.py's, with this folder's step
and element-wise criterion |fd - g| <= RTOL * (|fd| + |g|) + ATOL (two-sided differences of step EPS).

``f`` is a zero-argument callable that reruns the forward kernel on the current contents of the arrays being
perturbed and returns a scalar (``sum(out * R)`` plus, for recurrences, ``sum(final * R2)``).
"""

from kernels import gradcheck as _gradcheck
from kernels.gradcheck import assert_f32_matches, rel_error  # noqa: F401 (re-exported)

EPS = 1e-5
RTOL = 1e-6
ATOL = 1e-9


def check_gradients(f, wrt, analytic, eps=EPS):
    """Every ``analytic[name]`` matches the finite-difference gradient of ``f`` wrt ``wrt[name]``, element-wise."""
    _gradcheck.check_gradients(f, wrt, analytic, eps, tol=RTOL, atol=ATOL)


def check_directional(f, wrt, analytic, rng, eps=EPS, tol=1e-6):
    """Random-direction check: (f(x + eps d) - f(x - eps d)) / 2 eps == sum_i <grad_i, d_i>."""
    _gradcheck.check_directional(f, wrt, analytic, rng, eps, tol, atol=ATOL)
