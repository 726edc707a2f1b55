"""theory against independent references: scipy, brute-force Kronecker solves, closed forms."""

import itertools

import numpy as np
import pytest
import scipy.linalg as sl

import theory

H2 = np.diag([1.0, 3.0])
S2 = np.array([[2.0, 1.0], [1.0, 1.0]])


def random_spd(rng, d, floor=0.1):
    m = rng.normal(size=(d, d))
    return m @ m.T / d + floor * np.eye(d)


def kron_continuous(h, s):
    d = h.shape[0]
    eye = np.eye(d)
    return np.linalg.solve(np.kron(h, eye) + np.kron(eye, h), s.reshape(-1)).reshape(d, d)


def kron_discrete(h, s, lr, c):
    d = h.shape[0]
    eye = np.eye(d)
    op = np.kron(h, eye) + np.kron(eye, h) - lr * np.kron(h, h)
    return np.linalg.solve(op, lr * c * s.reshape(-1)).reshape(d, d)


@pytest.mark.parametrize("d", [1, 2, 5, 30])
def test_gamma_matches_scipy_and_kronecker(d):
    rng = np.random.default_rng(d)
    h, s = random_spd(rng, d), random_spd(rng, d, floor=0.0)
    gamma = theory.stationary_covariance(h, s)
    np.testing.assert_allclose(gamma, -sl.solve_continuous_lyapunov(-h, s), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gamma, kron_continuous(h, s), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("d", [1, 3, 12])
def test_discrete_covariance_matches_scipy_discrete_lyapunov(d):
    rng = np.random.default_rng(100 + d)
    h, s = random_spd(rng, d), random_spd(rng, d, floor=0.0)
    lr, bs = 1.5 / np.linalg.eigvalsh(h)[-1], 4
    c = theory.sgd_covariance(h, s, lr, bs, discrete=True)
    a = np.eye(d) - lr * h
    # C = A C Aᵀ + η² c_S Σ is scipy's discrete Lyapunov form.
    np.testing.assert_allclose(c, sl.solve_discrete_lyapunov(a, lr**2 / bs * s), rtol=1e-8,
                               atol=1e-13)
    np.testing.assert_allclose(c, kron_discrete(h, s, lr, 1 / bs), rtol=1e-8, atol=1e-13)
    assert theory.expected_loss_discrete(h, s, lr, bs) == pytest.approx(0.5 * np.sum(h * c),
                                                                          rel=1e-10)
    assert theory.expected_grad_sqnorm(h, s, lr, bs, discrete=True) == pytest.approx(
        np.trace(h @ h @ c), rel=1e-10)
    assert theory.expected_sq_distance(h, s, lr, bs, discrete=True) == pytest.approx(
        np.trace(c), rel=1e-10)


def test_T1_one_dimensional_closed_forms():
    h, s2, lr, bs = [[2.0]], [[3.0]], 0.1, 5
    assert theory.sgd_covariance(h, s2, lr, bs)[0, 0] == pytest.approx(0.015, rel=1e-12)
    assert theory.expected_loss_wang(3.0, lr, bs) == pytest.approx(0.015, rel=1e-12)
    assert theory.expected_grad_sqnorm(h, s2, lr, bs) == pytest.approx(0.06, rel=1e-12)
    assert theory.sgd_covariance(h, s2, lr, bs, discrete=True)[0, 0] == pytest.approx(
        0.1 * 3 / (5 * 2 * (2 - 0.2)), rel=1e-12)
    assert theory.expected_loss_discrete(h, s2, lr, bs) == pytest.approx(1 / 60, rel=1e-12)
    assert theory.expected_loss_jastrzebski(2.0, lr, bs) == pytest.approx(0.01, rel=1e-12)


def test_T2_non_commuting_closed_forms():
    gamma = theory.stationary_covariance(H2, S2)
    np.testing.assert_allclose(gamma, [[1, 0.25], [0.25, 1 / 6]], rtol=1e-12)
    assert np.trace(H2 @ gamma) == pytest.approx(1.5)
    assert np.trace(H2 @ H2 @ gamma) == pytest.approx(2.5)
    assert np.trace(gamma) == pytest.approx(7 / 6)
    assert theory.expected_loss_wang(np.trace(S2), 0.1, 10) == pytest.approx(0.0075)
    assert theory.expected_loss_jastrzebski(np.trace(H2), 0.1, 10) == pytest.approx(0.01)
    assert theory.expected_loss_discrete(H2, S2, 0.1, 10) == pytest.approx(0.0082043, abs=5e-8)
    assert theory.expected_grad_sqnorm(H2, S2, 0.1, 10, discrete=True) == pytest.approx(
        0.0281734, abs=5e-8)


def test_T3_sigma_equal_hessian_gives_half_identity():
    h = random_spd(np.random.default_rng(3), 6)
    np.testing.assert_allclose(theory.stationary_covariance(h, h), 0.5 * np.eye(6), atol=1e-12)
    assert theory.expected_loss_wang(np.trace(h), 0.3, 7) == pytest.approx(
        theory.expected_loss_jastrzebski(np.trace(h), 0.3, 7))


def test_T6_noise_factor_by_exact_enumeration():
    rng = np.random.default_rng(6)
    n, s = 6, 3
    g = rng.normal(size=(n, 2))
    g -= g.mean(axis=0)
    sigma = g.T @ g / n
    batches = np.array([g[list(b)].mean(axis=0) for b in itertools.combinations(range(n), s)])
    cov_without = batches.T @ batches / len(batches)
    np.testing.assert_allclose(cov_without, theory.noise_factor(s, n, replacement=False) * sigma,
                               rtol=1e-12)
    assert theory.noise_factor(s, n, replacement=False) == pytest.approx(0.2)
    draws = np.array([g[list(b)].mean(axis=0) for b in itertools.product(range(n), repeat=s)])
    np.testing.assert_allclose(draws.T @ draws / len(draws), sigma / 3, rtol=1e-12)
    assert theory.noise_factor(s, n) == pytest.approx(1 / 3)


def test_noise_factor_vectorises_and_full_batch_is_noiseless():
    np.testing.assert_allclose(theory.noise_factor([1, 2, 4]), [1, 0.5, 0.25])
    assert theory.noise_factor(10, 10, replacement=False) == 0.0


def test_expected_losses_vectorise_over_arrays():
    lr = np.array([0.08, 0.2, 0.5])
    out = theory.expected_loss_wang(np.array([1.0, 2.0, 3.0]), lr, np.array([100, 200, 500]))
    np.testing.assert_allclose(out, lr * [1.0, 2.0, 3.0] / (4 * np.array([100, 200, 500])))
    assert out.shape == (3,)


def test_least_squares_matches_brute_force_iteration():
    """Iterate the exact second-moment recursion (enumerating all batches) to convergence."""
    rng = np.random.default_rng(11)
    n, d, bs, lr = 7, 2, 2, 0.2
    x = rng.normal(size=(n, d))
    y = x @ [0.7, -0.3] + 0.5 * rng.normal(size=n)
    r = theory.least_squares_stationary(x, y, lr, bs, replacement=True)
    # E[δδᵀ] recursion with every ordered batch drawn with replacement, enumerated:
    # δ' = δ − η (mean_i∈b A_i δ + g_i), averaged exactly over all n^bs batches.
    theta_star = np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(r.minimizer, theta_star, rtol=1e-10)
    a = np.einsum("ni,nj->nij", x, x)
    g = x * (x @ theta_star - y)[:, None]
    batches = list(itertools.product(range(n), repeat=bs))
    ab = np.array([a[list(b)].mean(axis=0) for b in batches])
    gb = np.array([g[list(b)].mean(axis=0) for b in batches])
    m = np.zeros((d, d))                                  # second moment of δ
    for _ in range(3000):
        t = np.eye(d) - lr * ab                           # (B, d, d)
        m = (np.einsum("bij,jk,blk->il", t, m, t) + lr**2 * np.einsum("bi,bj->ij", gb, gb)) / len(batches)
    np.testing.assert_allclose(r.covariance, m, rtol=1e-8)
    assert r.expected_excess_loss == pytest.approx(0.5 * np.sum(r.hessian * m), rel=1e-8)


def test_least_squares_without_replacement_full_batch_has_no_noise():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(20, 3))
    y = rng.normal(size=20)
    r = theory.least_squares_stationary(x, y, 0.1, 20, replacement=False)
    assert r.noise_factor == 0.0
    np.testing.assert_allclose(r.covariance, 0.0, atol=1e-15)


def test_least_squares_handles_d40():
    rng = np.random.default_rng(40)
    x = rng.normal(size=(300, 40))
    y = x @ rng.normal(size=40) + rng.normal(size=300)
    r = theory.least_squares_stationary(x, y, 0.02, 8)
    assert r.covariance.shape == (40, 40)
    assert np.all(np.linalg.eigvalsh(r.covariance) > 0)
    # State-dependent noise adds a PSD term, so the exact loss exceeds the additive one.
    assert r.expected_excess_loss > theory.expected_loss_discrete(r.hessian, r.grad_cov, 0.02, 8)
