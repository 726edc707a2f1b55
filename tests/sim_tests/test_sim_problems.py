"""Problems: attributes against direct computation; the misalignment builder's invariants."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sim


def test_gaussian_quadratic_eigenbasis():
    h = np.array([[2.0, 0.5], [0.5, 1.0]])
    s = np.array([[1.0, 0.2], [0.2, 3.0]])
    p = sim.GaussianQuadratic(h, s)
    u, lam = p.eigvecs, p.eigvals
    np.testing.assert_allclose((u * lam) @ u.T, h, atol=1e-14)
    np.testing.assert_allclose(p.grad_cov_eig, u.T @ s @ u, atol=1e-14)
    assert np.all(np.diff(lam) >= 0) and p.dim == 2 and p.loss_star == 0.0
    theta = np.array([[1.0, -2.0], [0.5, 0.5]])
    expected = 0.5 * np.einsum("ci,ij,cj->c", theta, h, theta)
    np.testing.assert_allclose(p.excess_loss(theta), expected)
    np.testing.assert_allclose(p.grad(theta), theta @ h)


def test_problem_arrays_are_read_only():
    p = sim.GaussianQuadratic(np.eye(2), np.eye(2))
    with pytest.raises(ValueError):
        p.hessian[0, 0] = 5.0


def test_least_squares_matches_lstsq_and_definitions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    y = x @ [1.0, 2.0, -1.0] + rng.normal(size=30)
    p = sim.LeastSquares(x, y)
    theta, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(p.minimizer, theta, rtol=1e-10)
    np.testing.assert_allclose(p.hessian, x.T @ x / 30)
    g = x * (x @ theta - y)[:, None]                       # per-example gradients at θ*
    np.testing.assert_allclose(p.grad_cov, np.cov(g.T, bias=True), atol=1e-12)
    assert p.loss_star == pytest.approx(np.mean((x @ theta - y) ** 2) / 2)
    probe = theta + rng.normal(size=(4, 3))
    np.testing.assert_allclose(p.loss(probe) - p.loss_star, p.excess_loss(probe), rtol=1e-10)


def test_misaligned_endpoints_and_trace_ratio():
    p0 = sim.misaligned_problem(6, 0.0, seed=1)
    np.testing.assert_array_equal(p0.grad_cov, p0.hessian)      # Σ = H exactly at m = 0
    p1 = sim.misaligned_problem(6, 1.0, seed=1, trace_ratio=4.0)
    assert np.trace(p1.grad_cov) / np.trace(p1.hessian) == pytest.approx(4.0)
    comm = p1.hessian @ p1.grad_cov - p1.grad_cov @ p1.hessian
    assert np.abs(comm).max() > 0.01                           # unrelated eigenbasis
    np.testing.assert_allclose(p1.eigvals, np.geomspace(0.1, 1.0, 6))


def test_misaligned_is_reproducible_from_seed():
    a = sim.misaligned_problem(4, 0.5, seed=3)
    b = sim.misaligned_problem(4, 0.5, seed=3)
    c = sim.misaligned_problem(4, 0.5, seed=4)
    np.testing.assert_array_equal(a.grad_cov, b.grad_cov)
    assert not np.allclose(a.grad_cov, c.grad_cov)


@given(m=st.floats(0.0, 1.0), d=st.integers(1, 8), seed=st.integers(0, 2**16),
       ratio=st.floats(0.2, 10.0))
def test_misaligned_is_psd_with_linear_trace(m, d, seed, ratio):
    p = sim.misaligned_problem(d, m, seed=seed, trace_ratio=ratio)
    lam = np.linalg.eigvalsh(p.grad_cov)
    assert lam[0] >= -1e-12 * lam[-1]
    tr = np.trace(p.grad_cov) / np.trace(p.hessian)
    assert tr == pytest.approx(1 + m * (ratio - 1), rel=1e-10)
