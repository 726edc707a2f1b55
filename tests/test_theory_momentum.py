"""Heavy-ball momentum in theory: the closed forms against brute force and their invariants.

References are independent of theory's code path: scipy's Stein solver and a Kronecker
solve on the stacked 2d-dimensional system, dense eigenvalues of the stacked
second-moment map, and the one-dimensional closed form.
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import theory
from theory.momentum import heavy_ball_covariance

betas = st.floats(min_value=0.0, max_value=0.99)
elements = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def spd_pair(draw):
    """(H, Σ) well-conditioned by construction: H = MMᵀ + I/2, Σ = NNᵀ."""
    d = draw(st.integers(min_value=1, max_value=5))
    m = draw(arrays(float, (d, d), elements=elements))
    n = draw(arrays(float, (d, d), elements=elements))
    return m @ m.T + 0.5 * np.eye(d), n @ n.T


def random_pair(d, seed):
    """Random non-commuting SPD H and PSD Σ (rank d − 1: singular Σ is allowed)."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    n = rng.normal(size=(d, d - 1))
    return m @ m.T + 0.2 * np.eye(d), n @ n.T


def stacked(h_mat, lr, beta):
    d = h_mat.shape[0]
    eye = np.eye(d)
    return np.block([[(1 + beta) * eye - lr * h_mat, -beta * eye], [eye, 0 * eye]])


def brute_force(h_mat, s_mat, lr, c, beta):
    """Z = A Z Aᵀ + Q by scipy's solver, Q = η² c_S Σ in the top-left block."""
    d = h_mat.shape[0]
    q = np.zeros((2 * d, 2 * d))
    q[:d, :d] = lr * lr * c * s_mat
    return scipy.linalg.solve_discrete_lyapunov(stacked(h_mat, lr, beta), q)


# --- exact values against brute force ---------------------------------------------------

@pytest.mark.parametrize("beta", [0.3, 0.9, 0.99])
@pytest.mark.parametrize("edge", [0.01, 0.5, 0.999])          # η h_max / (2(1+β))
@pytest.mark.parametrize("d, seed", [(3, 0), (5, 1)])
def test_stacked_covariance_matches_scipy(beta, edge, d, seed):
    h_mat, s_mat = random_pair(d, seed)
    lr = edge * 2 * (1 + beta) / np.linalg.eigvalsh(h_mat)[-1]
    c = 1 / 4
    ref = brute_force(h_mat, s_mat, lr, c, beta)
    # Element-wise rtol 1e-10 of the largest entry: scipy's solve itself is accurate to
    # ~1e-12 here, the conditioning near the edge costs about two more digits.
    atol = 1e-10 * np.abs(ref).max()
    z = heavy_ball_covariance(h_mat, s_mat, lr, 4, momentum=beta)
    np.testing.assert_allclose(z, ref, rtol=1e-10, atol=atol)
    cov = theory.sgd_covariance(h_mat, s_mat, lr, 4, discrete=True, momentum=beta)
    np.testing.assert_allclose(cov, ref[:d, :d], rtol=1e-10, atol=atol)
    c00 = ref[:d, :d]
    kw = dict(discrete=True, momentum=beta)
    assert theory.expected_loss_discrete(h_mat, s_mat, lr, 4, momentum=beta) == \
        pytest.approx(0.5 * np.trace(h_mat @ c00), rel=1e-10)
    assert theory.expected_grad_sqnorm(h_mat, s_mat, lr, 4, **kw) == \
        pytest.approx(np.trace(h_mat @ h_mat @ c00), rel=1e-10)
    assert theory.expected_sq_distance(h_mat, s_mat, lr, 4, **kw) == \
        pytest.approx(np.trace(c00), rel=1e-10)


def test_stacked_covariance_matches_a_kronecker_solve():
    # A second, fully independent reference: vec Z = (I − A⊗A)⁻¹ vec Q.
    h_mat, s_mat = random_pair(3, 7)
    lr, beta = 0.3, 0.7
    a = stacked(h_mat, lr, beta)
    q = np.zeros((6, 6))
    q[:3, :3] = lr * lr / 5 * s_mat
    ref = np.linalg.solve(np.eye(36) - np.kron(a, a), q.ravel()).reshape(6, 6)
    np.testing.assert_allclose(heavy_ball_covariance(h_mat, s_mat, lr, 5, momentum=beta), ref,
                               rtol=1e-10, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_per_direction_closed_form(beta):
    # Diagonal H and Σ: Var θ_i = η c_S Σ_ii (1+β) / ((1−β) h_i (2(1+β) − η h_i)).
    h = np.array([0.1, 1.0, 3.0])
    s = np.array([2.0, 0.5, 1.5])
    lr, bs = 0.9 * 2 * (1 + beta) / 3.0, 8
    var = lr / bs * s * (1 + beta) / ((1 - beta) * h * (2 * (1 + beta) - lr * h))
    cov = theory.sgd_covariance(np.diag(h), np.diag(s), lr, bs, discrete=True, momentum=beta)
    np.testing.assert_allclose(np.diag(cov), var, rtol=1e-12)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=1e-15)
    loss = lr / bs * (1 + beta) / (2 * (1 - beta)) * np.sum(s / (2 * (1 + beta) - lr * h))
    assert theory.expected_loss_discrete(np.diag(h), np.diag(s), lr, bs, momentum=beta) == \
        pytest.approx(loss, rel=1e-12)


def test_t1_with_momentum_by_hand():
    # theory.md T1 (h = 2, s² = 3, η = 0.1, S = 5) at β = 0.5: E L = η s² (1+β) /
    # (2 S (1−β) (2(1+β) − ηh)) = 0.1·3·1.5 / (2·5·0.5·2.8) = 0.0321429.
    assert theory.expected_loss_discrete([[2.0]], [[3.0]], 0.1, 5, momentum=0.5) == \
        pytest.approx(0.45 / 14, rel=1e-14)


def test_theta_star_free_identity_on_the_brute_force_law():
    # E L − L* = ((1+β)/(4η)) E‖θₜ − θₜ₋₁‖², E‖v‖² = tr(2Z₀₀ − Z₀₁ − Z₁₀) (theory.md).
    h_mat, s_mat = random_pair(4, 3)
    for beta in (0.0, 0.5, 0.95):
        lr = 1.2 / np.linalg.eigvalsh(h_mat)[-1]
        z = brute_force(h_mat, s_mat, lr, 0.25, beta)
        d = 4
        v2 = np.trace(2 * z[:d, :d] - z[:d, d:] - z[d:, :d])
        assert (1 + beta) / (4 * lr) * v2 == pytest.approx(0.5 * np.trace(h_mat @ z[:d, :d]),
                                                           rel=1e-10)


def test_off_diagonal_entries_need_the_cross_term():
    # (M6)'s β η (h_i − h_j)² term acts on the off-diagonal of Σ̃ only: dropping it (the
    # naive pairwise extension of the diagonal law) misses the brute-force covariance.
    h, lr, beta, c = np.array([1.0, 3.0]), 0.2, 0.9, 1.0
    s_mat = np.array([[2.0, 1.0], [1.0, 1.0]])
    ref = brute_force(np.diag(h), s_mat, lr, c, beta)[:2, :2]
    gain = (1 + beta) / (1 - beta)
    full = lr * c * 1.0 * gain / (4 * (1 + beta) - 3 * lr + beta * lr * 4 / (1 - beta) ** 2)
    naive = lr * c * 1.0 * gain / (4 * (1 + beta) - 3 * lr)
    assert ref[0, 1] == pytest.approx(full, rel=1e-12)
    assert abs(ref[0, 1] - naive) > 0.05 * abs(ref[0, 1])
    assert theory.sgd_covariance(np.diag(h), s_mat, lr, 1, discrete=True,
                                 momentum=beta)[0, 1] == pytest.approx(full, rel=1e-12)


# --- continuous limits ------------------------------------------------------------------

@given(spd_pair(), betas, st.integers(min_value=1, max_value=64))
def test_small_lr_limit_is_the_effective_rate_law(pair, beta, bs):
    h_mat, s_mat = pair
    h_max = np.linalg.eigvalsh(h_mat)[-1]
    limit = np.trace(s_mat) / (4 * bs * (1 - beta))           # (η c_S/(4(1−β))) tr Σ per η
    assert theory.expected_loss_wang(np.trace(s_mat), 1.0, bs, momentum=beta) == \
        pytest.approx(limit, rel=1e-12)
    for frac in (1e-3, 1e-6):
        lr = frac / h_max
        disc = theory.expected_loss_discrete(h_mat, s_mat, lr, bs, momentum=beta) / lr
        # Per direction the factor is 2(1+β)/(2(1+β) − ηh) = 1 + ηh/(2(1+β) − ηh).
        assert abs(disc - limit) <= frac / (2 - frac) * limit + 1e-14


@given(spd_pair(), betas)
def test_continuous_covariance_is_the_ou_law_at_rate_lr_over_one_minus_beta(pair, beta):
    h_mat, s_mat = pair
    lr = 0.3
    cov = theory.sgd_covariance(h_mat, s_mat, lr, 6, momentum=beta)
    gamma = theory.stationary_covariance(h_mat, s_mat)
    np.testing.assert_allclose(cov, lr / (1 - beta) / 6 * gamma, rtol=1e-12, atol=1e-15)
    assert theory.expected_grad_sqnorm(h_mat, s_mat, lr, 6, momentum=beta) == pytest.approx(
        lr / (1 - beta) / 12 * np.trace(h_mat @ s_mat), rel=1e-9, abs=1e-14)
    assert theory.expected_sq_distance(h_mat, s_mat, lr, 6, momentum=beta) == pytest.approx(
        np.trace(cov), rel=1e-9, abs=1e-14)
    assert theory.expected_loss_jastrzebski(np.trace(h_mat), lr, 6, momentum=beta) == \
        pytest.approx(lr / (1 - beta) / 24 * np.trace(h_mat), rel=1e-12)


# --- hypothesis invariants --------------------------------------------------------------

@given(spd_pair(), st.floats(min_value=0.01, max_value=1.99), st.integers(1, 16))
def test_zero_momentum_is_bitwise_the_plain_sgd_value(pair, frac, bs):
    h_mat, s_mat = pair
    lr = frac / np.linalg.eigvalsh(h_mat)[-1]
    for discrete in (False, True):
        kw = dict(discrete=discrete)
        assert np.array_equal(theory.sgd_covariance(h_mat, s_mat, lr, bs, momentum=0.0, **kw),
                              theory.sgd_covariance(h_mat, s_mat, lr, bs, **kw))
        assert theory.expected_grad_sqnorm(h_mat, s_mat, lr, bs, momentum=0, **kw) == \
            theory.expected_grad_sqnorm(h_mat, s_mat, lr, bs, **kw)
        assert theory.expected_sq_distance(h_mat, s_mat, lr, bs, momentum=0.0, **kw) == \
            theory.expected_sq_distance(h_mat, s_mat, lr, bs, **kw)
    assert theory.expected_loss_discrete(h_mat, s_mat, lr, bs, momentum=0.0) == \
        theory.expected_loss_discrete(h_mat, s_mat, lr, bs)
    tr = np.trace(s_mat)
    assert theory.expected_loss_wang(tr, lr, bs, momentum=0.0) == \
        theory.expected_loss_wang(tr, lr, bs)
    assert theory.expected_loss_jastrzebski(np.trace(h_mat), lr, bs, momentum=0.0) == \
        theory.expected_loss_jastrzebski(np.trace(h_mat), lr, bs)
    # The stacked solution at β = 0 is the plain discrete law (a different code path).
    z = heavy_ball_covariance(h_mat, s_mat, lr, bs, momentum=0.0)
    d = h_mat.shape[0]
    np.testing.assert_allclose(z[:d, :d], theory.sgd_covariance(h_mat, s_mat, lr, bs,
                                                                discrete=True),
                               rtol=1e-10, atol=1e-14 * np.abs(z).max())


@given(spd_pair(), st.floats(min_value=0.01, max_value=1.0), betas, betas)
def test_excess_loss_increases_with_momentum_when_lr_h_max_is_at_most_one(pair, frac, b1, b2):
    # Per direction d/dβ log[(1+β)/((1−β)(2(1+β) − x))] = 2/((1+β)(1−β)) − 2/(2(1+β) − x),
    # which has the sign of (1+β)² − x, x = ηh: non-negative for every β iff x <= 1.
    h_mat, s_mat = pair
    lr = frac / np.linalg.eigvalsh(h_mat)[-1]
    lo, hi = sorted((b1, b2))
    e_lo = theory.expected_loss_discrete(h_mat, s_mat, lr, 3, momentum=lo)
    e_hi = theory.expected_loss_discrete(h_mat, s_mat, lr, 3, momentum=hi)
    assert e_lo <= e_hi * (1 + 1e-12)


def test_at_large_lr_a_little_momentum_lowers_the_excess_loss():
    # Not monotone beyond η h = 1: in 1-D, E L(β) is smallest where (1+β)² = ηh.
    lr, h = 1.75, 1.0
    loss = [theory.expected_loss_discrete([[h]], [[1.0]], lr, 1, momentum=b)
            for b in (0.0, np.sqrt(lr * h) - 1, 0.5)]
    assert loss[1] < loss[0] and loss[1] < loss[2]


@given(spd_pair(), st.floats(min_value=0.01, max_value=0.999), betas)
def test_stacked_covariance_is_symmetric_psd_and_a_fixed_point(pair, edge, beta):
    h_mat, s_mat = pair
    d = h_mat.shape[0]
    lr = edge * 2 * (1 + beta) / np.linalg.eigvalsh(h_mat)[-1]
    z = heavy_ball_covariance(h_mat, s_mat, lr, 2, momentum=beta)
    scale = max(np.abs(z).max(), 1e-300)
    assert np.array_equal(z, z.T)
    assert np.linalg.eigvalsh(z)[0] >= -1e-9 * scale
    cov = theory.sgd_covariance(h_mat, s_mat, lr, 2, discrete=True, momentum=beta)
    assert np.array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov)[0] >= -1e-9 * scale
    a = stacked(h_mat, lr, beta)
    q = np.zeros_like(z)
    q[:d, :d] = lr * lr / 2 * s_mat
    # Residual relative to the terms it balances: near the edge A Z Aᵀ ≈ Z is large.
    resid = np.abs(a @ z @ a.T + q - z).max()
    assert resid <= 1e-9 * max(np.abs(a @ z @ a.T).max(), np.abs(q).max(), 1e-300)


# --- bad inputs and stability -----------------------------------------------------------

H2, S2 = np.diag([1.0, 3.0]), np.array([[2.0, 1.0], [1.0, 1.0]])
CALLS = {
    "sgd_covariance": lambda b: theory.sgd_covariance(H2, S2, 0.1, 4, momentum=b),
    "sgd_covariance_discrete": lambda b: theory.sgd_covariance(H2, S2, 0.1, 4, discrete=True,
                                                               momentum=b),
    "expected_loss_discrete": lambda b: theory.expected_loss_discrete(H2, S2, 0.1, 4, momentum=b),
    "expected_loss_wang": lambda b: theory.expected_loss_wang(3.0, 0.1, 4, momentum=b),
    "expected_loss_jastrzebski": lambda b: theory.expected_loss_jastrzebski(4.0, 0.1, 4,
                                                                            momentum=b),
    "expected_grad_sqnorm": lambda b: theory.expected_grad_sqnorm(H2, S2, 0.1, 4, discrete=True,
                                                                  momentum=b),
    "expected_sq_distance": lambda b: theory.expected_sq_distance(H2, S2, 0.1, 4, momentum=b),
    "heavy_ball_covariance": lambda b: heavy_ball_covariance(H2, S2, 0.1, 4, momentum=b),
    "least_squares_stationary": lambda b: theory.least_squares_stationary(
        np.eye(3)[[0, 1, 2, 0, 1, 2]] + 0.1, np.arange(6.0), 0.1, 2, momentum=b),
}
BAD = [(-0.1, "got -0.1"), (1.0, "got 1.0"), (float("nan"), "got nan"), (True, "got True"),
       ("0.5", "got '0.5'"), (None, "got None")]


@pytest.mark.parametrize("value, shown", BAD, ids=[repr(b[0]) for b in BAD])
@pytest.mark.parametrize("name", list(CALLS))
def test_bad_momentum_raises_value_error_naming_it(name, value, shown):
    with pytest.raises(ValueError, match="momentum") as err:
        CALLS[name](value)
    assert shown in str(err.value)
    assert not isinstance(err.value, theory.StabilityError)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_stability_edge_is_two_times_one_plus_beta(beta):
    bound = 2 * (1 + beta) / 3.0                      # h_max = 3
    for lr in (bound, bound * 1.01):
        with pytest.raises(theory.StabilityError, match=r"lr\*h_max = [0-9.]+ >= 2") as err:
            theory.expected_loss_discrete(H2, S2, lr, 4, momentum=beta)
        if beta:
            assert "2(1+momentum)" in str(err.value) and f"{2 * (1 + beta):.4g}" in str(err.value)
        with pytest.raises(theory.StabilityError):
            heavy_ball_covariance(H2, S2, lr, 4, momentum=beta)
    just_below = bound * (1 - 1e-9)
    value = theory.expected_loss_discrete(H2, S2, just_below, 4, momentum=beta)
    assert np.isfinite(value) and value > 0
    cov = theory.sgd_covariance(H2, S2, just_below, 4, discrete=True, momentum=beta)
    assert np.all(np.isfinite(cov)) and np.linalg.eigvalsh(cov)[0] > 0
    # The continuous limit has no edge.
    assert theory.sgd_covariance(H2, S2, 10 * bound, 4, momentum=beta)[0, 0] > 0


# --- least squares with momentum (state-dependent noise) ---------------------------------

def _lsq(seed, n=30, d=3, heavy=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if heavy:
        x *= rng.standard_exponential(size=(n, 1))
    return x, x @ rng.normal(size=d) + 0.5 * rng.normal(size=n)


def _stacked_map(x, lr, c, beta):
    """Dense (2d)² × (2d)² matrix of T(Z) = AZAᵀ + η²c_S E₁K(Z₀₀)E₁ᵀ, and Q's vec."""
    n, d = x.shape
    h_mat = x.T @ x / n
    a = stacked(h_mat, lr, beta)
    t = np.kron(a, a)
    outer = np.einsum("ni,nj->nij", x, x)
    for col in range(4 * d * d):
        z = np.zeros(4 * d * d)
        z[col] = 1.0
        p = z.reshape(2 * d, 2 * d)[:d, :d]
        k = np.einsum("nij,jk,nkl->il", outer, p, outer) / n - h_mat @ p @ h_mat
        out = np.zeros((2 * d, 2 * d))
        out[:d, :d] = lr * lr * c * k
        t[:, col] += out.ravel()
    return t


@pytest.mark.parametrize("beta, lr, bs, replacement", [
    (0.5, 0.1, 4, True), (0.9, 0.02, 2, True), (0.99, 0.002, 1, True), (0.9, 0.05, 5, False)])
def test_least_squares_momentum_matches_the_stacked_kronecker_solve(beta, lr, bs, replacement):
    x, y = _lsq(int(beta * 100))
    r = theory.least_squares_stationary(x, y, lr, bs, momentum=beta, replacement=replacement)
    n, d = x.shape
    c = 1 / bs if replacement else (n - bs) / (bs * (n - 1))
    assert r.noise_factor == pytest.approx(c) and r.momentum == beta
    t = _stacked_map(x, lr, c, beta)
    q = np.zeros((2 * d, 2 * d))
    q[:d, :d] = lr * lr * c * r.grad_cov
    z = np.linalg.solve(np.eye(4 * d * d) - t, q.ravel()).reshape(2 * d, 2 * d)
    np.testing.assert_allclose(r.covariance, z[:d, :d], rtol=1e-9, atol=1e-12 * np.abs(z).max())
    assert r.expected_excess_loss == pytest.approx(0.5 * np.trace(r.hessian @ z[:d, :d]),
                                                   rel=1e-9)
    assert r.spectral_radius == pytest.approx(np.abs(np.linalg.eigvals(t)).max(), rel=1e-9)
    # State-dependent noise adds to the additive law.
    additive = theory.expected_loss_discrete(r.hessian, r.grad_cov, lr, bs, momentum=beta,
                                             n_data=n, replacement=replacement)
    assert r.expected_excess_loss > additive


def test_least_squares_momentum_instability_uses_the_stacked_radius():
    # Heavy-tailed rows and S = 1: η h_max is far below 2(1+β), yet no stationary law.
    x, y = _lsq(5, n=12, d=2, heavy=True)
    h_max = np.linalg.eigvalsh(x.T @ x / 12)[-1]
    lr = 0.3 / h_max
    with pytest.raises(theory.StabilityError, match="spectral radius") as err:
        theory.least_squares_stationary(x, y, lr, 1, momentum=0.9)
    rho = np.abs(np.linalg.eigvals(_stacked_map(x, lr, 1.0, 0.9))).max()
    assert rho > 1 and f"{rho:.4g}" in str(err.value)
    with pytest.raises(theory.StabilityError, match=r"2\(1\+momentum\)"):
        theory.least_squares_stationary(x, y, 2 * 1.9 / h_max, 1, momentum=0.9)


def test_least_squares_zero_momentum_is_the_plain_law_bitwise():
    x, y = _lsq(2)
    a = theory.least_squares_stationary(x, y, 0.1, 3, momentum=0.0)
    b = theory.least_squares_stationary(x, y, 0.1, 3)
    assert np.array_equal(a.covariance, b.covariance) and a.spectral_radius == b.spectral_radius
