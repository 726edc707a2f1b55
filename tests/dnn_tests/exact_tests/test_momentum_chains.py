"""Heavy-ball chains (``momentum=β``) on exact networks, against theory.

v' = βv − ηĝ, θ' = θ + v'.  References, each independent of the chain code:
:func:`theory.expected_loss_discrete` with ``momentum`` (the additive-noise law, exact H
and Σ at θ*), and the stacked heavy-ball law with the state-dependent noise K to all
orders, solved from per-example Hessians built explicitly (``jax.hessian`` of each
example's loss; :func:`theory.momentum.least_squares_momentum_solve` with K as a
d² × d² matrix), itself checked against :func:`theory.expected_loss_linear` at β = 0.
The network is the P = 39 MLP of ``test_linear_chains`` (8 pixels of digits 0–2,
N = 120), so each test takes seconds.  z-tests use the across-chain SE, |z| < 4.
"""

import math

import numpy as np
import pytest

import theory
from dnn.exact.chains import run_sgd_chains
from dnn.exact.digits import Digits, load_digits
from dnn.exact.linear_chains import run_linear_chains
from dnn.exact.mlp import MLP, MLPConfig

BETA = 0.9


@pytest.fixture(scope="module")
def tiny(tiny_network):
    """θ*, H, Σ and the per-example Hessians of the shared P = 39 MLP (conftest)."""
    return tiny_network[:5]


def _linear_heavy_ball_law(hess, sigma, lr, batch_size, beta):
    """½ tr(H Z₀₀) of linearised heavy ball with K-noise to all orders, from explicit H_i.

    K(C) = (1/N) Σ_i H_i C H_i − HCH; in H's eigenbasis it is the d² × d² matrix
    (1/N) Σ_i H̃_i ⊗ H̃_i − H̃ ⊗ H̃ (row-major vec), which theory's reduced solve takes.
    """
    from theory.momentum import least_squares_momentum_solve

    n, d, _ = hess.shape
    h_mat = hess.mean(axis=0)
    eig, u = np.linalg.eigh(h_mat)
    ht = np.einsum("ap,nab,bq->npq", u, hess, u)
    m = ht.transpose(1, 2, 0).reshape(d * d, n)                  # rows (a, c)
    kmat = (m @ m.T / n).reshape(d, d, d, d).transpose(0, 2, 1, 3).reshape(d * d, d * d)
    kmat -= np.diag(np.outer(eig, eig).ravel())
    cov = least_squares_momentum_solve(kmat, eig, u, sigma, lr, 1.0 / batch_size, beta)
    return 0.5 * float(np.sum(h_mat * cov))


def test_the_reference_law_is_theorys_at_beta_zero(tiny):
    model, data, star, exact, hess = tiny
    lr = 0.5 / exact.h_max
    want = theory.expected_loss_linear(hess, exact.sigma, lr, 4)
    assert _linear_heavy_ball_law(hess, exact.sigma, lr, 4, 0.0) == pytest.approx(want, rel=1e-9)


@pytest.mark.slow
def test_heavy_ball_chains_match_the_discrete_law_with_momentum(tiny):
    """Real heavy ball at a small η (η/(1−β) = 0.1/h_max) against (η c_S(1+β)/(2(1−β)))·
    tr[(2(1+β)I − ηH)⁻¹Σ].  S = 64 keeps the state-dependent part (∝ η c_S; +0.7% here by
    the explicit law with K, against an SE of ~0.5%) below the resolution; at η·h_max =
    0.02, S = 32 it is +2.7% and this test resolves it."""
    model, data, star, exact, hess = tiny
    lr, s = 0.01 / exact.h_max, 64
    want = theory.expected_loss_discrete(exact.hessian, exact.sigma, lr, s, momentum=BETA)
    st = run_sgd_chains(model, data, star.theta, lr=lr, batch_size=s, n_chains=16,
                        burn_in=6000, n_steps=24_000, record_every=8, seed=21, momentum=BETA)
    obs = st.observed()
    assert st.n_diverged == 0 and obs.n == 16 and st.momentum == BETA
    assert obs.se < 0.03 * want                                   # the test has power
    assert abs(obs.value - want) < 4 * obs.se, (obs, want)
    # and it is not plain SGD's law at the same η (~10× smaller)
    plain = theory.expected_loss_discrete(exact.hessian, exact.sigma, lr, s)
    assert abs(obs.value - plain) > 10 * obs.se
    # θ*-free ((1+β)/(4η))E‖v‖² from the same chains; near θ* the loss is nearly quadratic
    tf = st.theta_free()
    assert abs(tf.value - obs.value) < 4 * math.hypot(tf.se, obs.se), (tf, obs)
    ratio = st.identity_ratio()
    assert abs(ratio.value - 1) < 4 * ratio.se, ratio
    assert st.velocity_sqnorm.shape == (16,) and st.summary()["momentum"] == BETA


@pytest.mark.slow
def test_linear_heavy_ball_chains_match_the_full_linear_law(tiny):
    """Linearised heavy ball at η·h_max = 0.05 (η/(1−β) = 0.5/h_max), S = 8, where ρ(T) of the
    stacked map is 0.993 (``theory.momentum.stacked_radius``): the state-dependent noise adds
    36% to the additive law, and the chains follow the stacked law with K to all orders."""
    model, data, star, exact, hess = tiny
    lr, s = 0.05 / exact.h_max, 8
    want = _linear_heavy_ball_law(hess, exact.sigma, lr, s, BETA)
    additive = theory.expected_loss_discrete(exact.hessian, exact.sigma, lr, s, momentum=BETA)
    st = run_linear_chains(model, data, star.theta, hessian=exact.hessian, lr=lr, batch_size=s,
                           n_chains=16, burn_in=4000, n_steps=24_000, record_every=4, seed=11,
                           momentum=BETA)
    obs = st.observed()
    assert st.n_diverged == 0 and obs.n == 16
    assert obs.se < 0.05 * want
    assert abs(obs.value - want) < 4 * obs.se, (obs, want)
    assert abs(obs.value - additive) > 4 * obs.se, (obs, additive)
    # for the quadratic model the θ*-free estimator is exact: per-chain pairs
    diff = st.theta_free_per_chain() - st.excess
    z = diff.mean() / (diff.std(ddof=1) / math.sqrt(diff.size))
    assert abs(z) < 4, z
    ratio = st.identity_ratio()
    assert abs(ratio.value - 1) < 4 * ratio.se, ratio


def test_momentum_zero_is_bit_identical_to_plain_sgd():
    d = load_digits()
    data = Digits(x=d.x[:60].copy(), y=d.y[:60].copy())
    m = MLP(MLPConfig(hidden=(4,), activation="tanh", l2=1e-3), 64, 10)
    kw = dict(lr=0.05, batch_size=4, n_chains=3, burn_in=30, n_steps=40, record_every=4, seed=7)
    a = run_sgd_chains(m, data, m.init(0), **kw)
    b = run_sgd_chains(m, data, m.init(0), momentum=0.0, **kw)
    for name in ("theta_end", "excess", "grad_sqnorm", "fd_lhs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # recorded with the code before momentum existed (same run); equal bit for bit on the
    # machine that recorded them, to round-off elsewhere (XLA's CPU code may differ)
    np.testing.assert_allclose(a.excess, [-1.2674355706494578, -1.2664394367775316,
                                          -1.2478483351451], rtol=1e-12)
    np.testing.assert_allclose(a.grad_sqnorm, [1.7255980039264198, 2.1329961918157716,
                                               1.7304909844699523], rtol=1e-12)
    np.testing.assert_allclose(a.fd_lhs, [0.05304571626999133, 0.06402774968258784,
                                          0.046599058963718056], rtol=1e-10)
    assert b.velocity_sqnorm is None and b.final_state.momentum == 0.0
    assert b.theta_free().value == 0.25 * b.lr * b.grad_sqnorm_mean().value


def test_heavy_ball_state_continues_and_refuses_another_beta():
    d = load_digits()
    data = Digits(x=d.x[:60].copy(), y=d.y[:60].copy())
    m = MLP(MLPConfig(hidden=(4,), activation="tanh", l2=1e-3), 64, 10)
    theta = m.init(0)
    kw = dict(lr=0.02, batch_size=4, n_chains=2, record_every=4, seed=5, momentum=0.5)
    whole = run_sgd_chains(m, data, theta, burn_in=12, n_steps=40, **kw)
    first = run_sgd_chains(m, data, theta, burn_in=12, n_steps=24, **kw)
    rest = run_sgd_chains(m, data, theta, burn_in=0, n_steps=16, state=first.final_state, **kw)
    np.testing.assert_array_equal(rest.theta_end, whole.theta_end)
    assert first.final_state.state.shape == (2, 2 * m.n_params)
    assert rest.theta_end.shape == (2, m.n_params)
    # velocity = θ_k − θ_{k−1}: the last step of the stacked state
    assert np.all(np.isfinite(rest.velocity_sqnorm)) and np.all(rest.velocity_sqnorm > 0)
    for beta in (0.0, 0.9):
        with pytest.raises(ValueError, match="momentum=.*got one with momentum=0.5"):
            run_sgd_chains(m, data, theta, burn_in=0, n_steps=8, state=first.final_state,
                           **(kw | {"momentum": beta}))


@pytest.mark.parametrize("beta", [-0.1, 1.0, 1.5, float("nan"), True, "0.9", None])
def test_bad_momentum_is_refused_with_its_name(beta):
    d = load_digits()
    data = Digits(x=d.x[:60].copy(), y=d.y[:60].copy())
    m = MLP(MLPConfig(hidden=(4,), activation="tanh", l2=1e-3), 64, 10)
    kw = dict(lr=0.1, batch_size=4, n_chains=2, burn_in=0, n_steps=2, momentum=beta)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        run_sgd_chains(m, data, m.init(0), **kw)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\)"):
        run_linear_chains(m, data, m.init(0), hessian=np.eye(m.n_params), **kw)
