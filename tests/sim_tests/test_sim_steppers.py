"""Stepper coefficients: theory's stationary covariance is a fixed point of each recursion.

For x ← a ⊙ x + N(0, Q) the stationary covariance solves C = diag(a) C diag(a) + Q.
Checking this identity for random (H, Σ) ties every method's (a, Q) to an
independent closed form without simulating.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import sim
import theory


@st.composite
def problems(draw):
    d = draw(st.integers(1, 5))
    vals = st.floats(-1.0, 1.0, allow_nan=False)
    m = np.array(draw(st.lists(vals, min_size=d * d, max_size=d * d))).reshape(d, d)
    k = np.array(draw(st.lists(vals, min_size=d * d, max_size=d * d))).reshape(d, d)
    h = m @ m.T + 0.2 * np.eye(d)                     # well conditioned by construction
    return sim.GaussianQuadratic(h, k @ k.T)


def _is_fixed_point(stepper, problem, cov):
    c = problem.eigvecs.T @ cov @ problem.eigvecs
    a = stepper.a
    resid = a[:, None] * c * a[None, :] + stepper.cov - c
    return np.abs(resid).max() <= 1e-10 * max(np.abs(c).max(), 1e-300)


@given(p=problems(), frac=st.floats(0.05, 1.9), s=st.integers(1, 16))
def test_sgd_fixed_point_is_the_discrete_formula(p, frac, s):
    lr = frac / p.eigvals[-1]
    cov = theory.sgd_covariance(p.hessian, p.grad_cov, lr, s, discrete=True)
    assert _is_fixed_point(sim.gaussian_sgd(p, lr, 1 / s), p, cov)


@given(p=problems(), frac=st.floats(0.05, 1.9), lr=st.floats(0.01, 1.0))
def test_em_fixed_point_is_the_scaled_discrete_formula(p, frac, lr):
    h = frac / p.eigvals[-1]
    cov = lr / h * theory.sgd_covariance(p.hessian, p.grad_cov, h, 1, discrete=True)
    assert _is_fixed_point(sim.euler_maruyama(p, lr, 1.0, h), p, cov)


@given(p=problems(), step=st.floats(0.01, 50.0), lr=st.floats(0.01, 1.0))
def test_ou_fixed_point_is_the_continuous_formula_at_any_step(p, step, lr):
    cov = theory.sgd_covariance(p.hessian, p.grad_cov, lr, 1)
    assert _is_fixed_point(sim.exact_ou(p, lr, 1.0, step), p, cov)
