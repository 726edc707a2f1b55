"""Property tests of the Lyapunov solution and the stationary formulas (hypothesis)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group

import theory

dims = st.integers(min_value=1, max_value=6)
elements = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def spd_pair(draw, psd_floor=0.0):
    """(H, Σ) well-conditioned by construction: H = MMᵀ + I/2, Σ = NNᵀ + floor·I."""
    d = draw(dims)
    m = draw(arrays(float, (d, d), elements=elements))
    n = draw(arrays(float, (d, d), elements=elements))
    return m @ m.T + 0.5 * np.eye(d), n @ n.T + psd_floor * np.eye(d)


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@given(spd_pair())
def test_gamma_symmetric_psd_and_solves_the_equation(pair):
    h, s = pair
    g = theory.stationary_covariance(h, s)
    assert np.array_equal(g, g.T)
    assert np.linalg.eigvalsh(g)[0] >= -1e-10 * max(1.0, np.abs(g).max())
    assert rel_err(h @ g + g @ h, s) < 1e-9 or np.abs(h @ g + g @ h - s).max() < 1e-10


@given(spd_pair())
def test_trace_identities(pair):
    h, s = pair
    g = theory.stationary_covariance(h, s)
    assert np.isclose(np.trace(h @ g), 0.5 * np.trace(s), rtol=1e-9, atol=1e-12)
    assert np.isclose(np.trace(h @ h @ g), 0.5 * np.trace(h @ s), rtol=1e-9, atol=1e-12)


@given(spd_pair(), st.floats(min_value=1e-3, max_value=1e3))
def test_gamma_is_linear_in_sigma(pair, c):
    h, s = pair
    np.testing.assert_allclose(theory.stationary_covariance(h, c * s),
                               c * theory.stationary_covariance(h, s), rtol=1e-9, atol=1e-12 * c)


@given(spd_pair(), st.integers(min_value=0, max_value=2**31 - 1))
def test_gamma_is_equivariant_under_orthogonal_change_of_basis(pair, seed):
    h, s = pair
    d = h.shape[0]
    q = ortho_group.rvs(d, random_state=seed) if d > 1 else np.array([[-1.0]])
    g = theory.stationary_covariance(h, s)
    g_rot = theory.stationary_covariance(q @ h @ q.T, q @ s @ q.T)
    np.testing.assert_allclose(g_rot, q @ g @ q.T, rtol=1e-8, atol=1e-10 * np.abs(g).max())


@given(spd_pair())
def test_sigma_equal_hessian_gives_half_identity(pair):
    h, _ = pair
    np.testing.assert_allclose(theory.stationary_covariance(h, h), 0.5 * np.eye(h.shape[0]),
                               atol=1e-10)


@given(spd_pair(), st.integers(min_value=1, max_value=64))
def test_discrete_tends_to_continuous_as_lr_vanishes(pair, bs):
    h, s = pair
    h_max = np.linalg.eigvalsh(h)[-1]
    cont = theory.expected_loss_wang(np.trace(s), 1.0, bs)      # linear in η
    for frac in (1e-3, 1e-5):
        lr = frac / h_max
        disc = theory.expected_loss_discrete(h, s, lr, bs) / lr
        # Relative correction per direction is ηh/2 + O((ηh)²) <= frac/2 + O(frac²).
        assert abs(disc - cont) <= (frac / 2 + frac**2) * cont + 1e-14


@given(spd_pair(), st.floats(min_value=0.01, max_value=1.9))
def test_discrete_loss_exceeds_continuous_and_grows_with_lr(pair, frac):
    h, s = pair
    lr = frac / np.linalg.eigvalsh(h)[-1]
    disc = theory.expected_loss_discrete(h, s, lr, 3)
    cont = theory.expected_loss_wang(np.trace(s), lr, 3)
    assert disc >= cont * (1 - 1e-12)
    assert theory.expected_loss_discrete(h, s, lr * 0.5, 3) <= disc * (1 + 1e-12)


@given(spd_pair(psd_floor=0.1))
def test_continuous_covariance_is_eta_cs_gamma(pair):
    h, s = pair
    np.testing.assert_allclose(theory.sgd_covariance(h, s, 0.3, 6, n_data=30, replacement=False),
                               0.3 * (24 / (6 * 29)) * theory.stationary_covariance(h, s),
                               rtol=1e-12)
