"""Euler–Maruyama against sdeint path by path; exact OU against Van Loan's matrix exponential."""

import numpy as np
import pytest
import scipy.linalg as sl

import sim
from sim.ou import ou_transition_cov

LR, C = 0.1, 0.125


def _problems():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 3))
    v = np.array([[1.0], [2.0], [-1.0]])
    return {
        "misaligned": sim.misaligned_problem(4, 0.7, seed=3),
        "least_squares": sim.LeastSquares(x, x @ [1.0, 0.0, -1.0] + rng.normal(size=20)),
        "rank_one_sigma": sim.GaussianQuadratic(np.diag([0.5, 1.0, 2.0]), v @ v.T),
    }


@pytest.mark.parametrize("name", ["misaligned", "least_squares", "rank_one_sigma"])
def test_em_path_equals_sdeint_itoeuler_given_the_same_increments(name):
    p = _problems()[name]
    g = sim.diffusion_matrix(p, LR, C)
    np.testing.assert_allclose(g @ g.T, LR * C * p.grad_cov, atol=1e-12)
    rng = np.random.default_rng(0)
    h = 0.05
    dw = rng.normal(0.0, np.sqrt(h), size=(3000, g.shape[1]))
    theta0 = p.minimizer + rng.normal(size=p.dim)
    ours = sim.euler_maruyama_path(p, theta0, dw, lr=LR, noise_factor=C, step=h)
    ref = sim.sdeint_path(p, theta0, dw, lr=LR, noise_factor=C, step=h, scheme="itoEuler")
    assert ours.shape == ref.shape == (3001, p.dim)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_em_path_uses_the_vectorised_stepper_coefficients():
    # The path helper and the driver's stepper share a = 1 − h·h_i and Q = h η c Σ̃.
    p = _problems()["misaligned"]
    em = sim.euler_maruyama(p, LR, C, 0.05)
    np.testing.assert_allclose(em.a, 1 - 0.05 * p.eigvals)
    g = sim.diffusion_matrix(p, LR, C)
    u = p.eigvecs
    np.testing.assert_allclose(em.cov, 0.05 * u.T @ g @ g.T @ u, atol=1e-14)


def test_itosri2_smoke_and_stationary_loss():
    # For additive noise SRI2 is δ ← (I − hH + h²H²/2)δ + GΔW, whose stationary
    # covariance is exact: C̃_ij = h η c Σ̃_ij / (1 − a_i a_j).  One path, batch-means SE.
    p = sim.GaussianQuadratic(np.diag([1.0, 3.0]), [[2.0, 1.0], [1.0, 1.0]])
    h, n = 0.2, 12000
    dw = np.random.default_rng(7).normal(0.0, np.sqrt(h), size=(n, 2))
    path = sim.sdeint_path(p, np.zeros(2), dw, lr=LR, noise_factor=C, step=h, scheme="itoSRI2")
    assert path.shape == (n + 1, 2) and np.all(np.isfinite(path))
    lam = p.eigvals
    a = 1 - h * lam + 0.5 * (h * lam) ** 2
    cov = h * LR * C * p.grad_cov_eig / (1 - np.outer(a, a))
    expected = 0.5 * np.sum(lam * np.diag(cov))
    loss = p.excess_loss(path[200:])                  # 200 steps ≫ 1/(h h_min) = 5
    batches = loss[: 11800].reshape(20, -1).mean(axis=1)
    se = batches.std(ddof=1) / np.sqrt(20)
    assert abs(loss.mean() - expected) < 4 * se
    em = sim.euler_maruyama_path(p, np.zeros(2), dw, lr=LR, noise_factor=C, step=h)
    assert np.abs(path - em).max() > 1e-3             # a different scheme, not a copy of EM


def test_ou_transition_covariance_matches_van_loan():
    p = sim.misaligned_problem(4, 1.0, seed=2)
    h = 0.7
    a = -p.hessian
    bbt = LR * C * p.grad_cov
    d = p.dim
    m = np.block([[-a, bbt], [np.zeros((d, d)), a.T]]) * h
    f = sl.expm(m)
    phi = f[d:, d:].T
    q_ref = phi @ f[:d, d:]
    u = p.eigvecs
    q = u @ ou_transition_cov(p.eigvals, p.grad_cov_eig, LR, C, h) @ u.T
    np.testing.assert_allclose(q, q_ref, rtol=1e-10, atol=1e-15)
    ou = sim.exact_ou(p, LR, C, h)
    np.testing.assert_allclose(u @ np.diag(ou.a) @ u.T, phi, atol=1e-12)


def test_ou_transition_is_a_semigroup():
    # Two steps of h equal one step of 2h: a(2h) = a(h)², Q(2h) = A Q(h) A + Q(h).
    p = sim.misaligned_problem(3, 1.0, seed=4)
    one, two = sim.exact_ou(p, LR, C, 0.3), sim.exact_ou(p, LR, C, 0.6)
    np.testing.assert_allclose(two.a, one.a**2)
    np.testing.assert_allclose(two.cov, one.a[:, None] * one.cov * one.a[None, :] + one.cov,
                               rtol=1e-12)
