"""SGD chains on the small MLP: sampling factor, the fluctuation–dissipation identity,
divergence accounting, determinism.

Each check has an exact answer: with a frozen θ (η → 0) the minibatch gradient
has E‖ĝ‖² = ‖∇L‖² + c_S tr Σ exactly; the identity Σ_k (θ_k − a)·ĝ_k −
(η/2)Σ_k ‖ĝ_k‖² = −(‖θ_T − a‖² − ‖θ_0 − a‖²)/(2η) holds path by path. The nets
are tiny (hidden 4, P = 310) on 60–150 digits, so the file takes well under a minute.
"""

import numpy as np
import pytest

from dnn.exact.chains import _floyd_sample, default_record_every, run_sgd_chains
from dnn.exact.digits import Digits, load_digits
from dnn.exact.mlp import MLP, MLPConfig, float64


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _subset(digits, n):
    return Digits(x=digits.x[:n].copy(), y=digits.y[:n].copy())


def _model(l2=1e-3):
    return MLP(MLPConfig(hidden=(4,), activation="tanh", l2=l2), 64, 10)


def _grad_moments(model, data, theta):
    """‖∇L(θ)‖² and tr Σ(θ) from per-example gradients (jax.grad in a loop: not the chains' code)."""
    import jax

    with float64():
        g1 = jax.jit(jax.grad(model.example_loss))
        grads = np.array([np.asarray(g1(theta, data.x[i], data.y[i])) for i in range(data.n)])
    full = grads.mean(axis=0) + 2 * model.l2 * theta
    tr_sigma = np.trace(np.cov(grads.T, bias=True))
    return full @ full, tr_sigma


@pytest.mark.slow
@pytest.mark.parametrize("replacement", [True, False])
def test_minibatch_gradient_noise_matches_c_s(digits, replacement):
    data = _subset(digits, 60)
    m = _model()
    theta = m.init(0)
    n, s = data.n, 20
    g2_ref, tr_sigma = _grad_moments(m, data, theta)
    c_with, c_without = 1 / s, (n - s) / (s * (n - 1))
    # η = 1e-9: θ moves by ~1e-9 over the run, so E‖ĝ‖² is that of the fixed θ
    st = run_sgd_chains(m, data, theta, lr=1e-9, batch_size=s, n_chains=8, burn_in=0, n_steps=1500,
                        replacement=replacement, seed=3)
    est = st.grad_sqnorm_mean()
    c = c_with if replacement else c_without
    other = c_without if replacement else c_with
    assert st.noise_factor == pytest.approx(c, rel=1e-15)
    assert abs(est.value - (g2_ref + c * tr_sigma)) < 4 * est.se           # |z| < 4
    assert abs(est.value - (g2_ref + other * tr_sigma)) > 10 * est.se       # and the test has power


def test_floyd_sample_draws_distinct_indices_uniformly():
    import jax

    n, s, draws = 30, 12, 3000
    keys = jax.random.split(jax.random.PRNGKey(0), draws)
    idx = np.asarray(jax.vmap(lambda k: _floyd_sample(k, n, s))(keys))
    assert all(len(set(row)) == s for row in idx)
    assert idx.min() >= 0 and idx.max() < n
    counts = np.bincount(idx.ravel(), minlength=n)
    # each index is in a batch with probability s/n: binomial counts
    p = s / n
    z = (counts - draws * p) / np.sqrt(draws * p * (1 - p))
    assert np.max(np.abs(z)) < 4.5   # 30 counts: max |z| of 4.5 has a false-alarm rate ~2e-4


@pytest.fixture(scope="module")
def stationary_run(digits):
    from dnn.exact.minimum import find_minimum

    data = _subset(digits, 150)
    m = _model(l2=0.05)                      # strong L2: h_min ≥ 0.1, relaxation ~ 1/(η h_min) ≈ 20 steps
    star = find_minimum(m, data)
    lr = 0.5 / star.h_max
    st = run_sgd_chains(m, data, star.theta, lr=lr, batch_size=4, n_chains=16, burn_in=400, n_steps=3000,
                        seed=1, record_every=10)
    return m, data, star, st


@pytest.mark.slow
def test_fluctuation_dissipation_identity_holds_path_by_path(stationary_run):
    m, data, star, st = stationary_run
    lhs = st.fd_lhs - 0.5 * st.lr * st.grad_sqnorm
    boundary = -(np.sum((st.theta_end - st.theta_mean) ** 2, 1)
                 - np.sum((st.theta_start - st.theta_mean) ** 2, 1)) / (2 * st.lr * st.n_steps)
    np.testing.assert_allclose(lhs, boundary, rtol=1e-7, atol=1e-12 * st.grad_sqnorm.max())


@pytest.mark.slow
def test_identity_ratio_and_stationarity(stationary_run):
    m, data, star, st = stationary_run
    ratio = st.identity_ratio()
    assert ratio.n == 16 and st.n_diverged == 0
    assert abs(ratio.value - 1.0) < 4 * ratio.se
    assert abs(st.drift_z()) < 4
    obs, tf = st.observed(), st.theta_free()
    assert obs.value > 0 and obs.n == 16 and tf.n == 16
    # the θ*-free estimate (η/4)E‖ĝ‖² is exact for a quadratic; near θ* it must be close
    assert abs(tf.value - obs.value) < 0.3 * obs.value
    summary = st.summary()
    assert summary["n_diverged"] == 0 and summary["observed"]["n"] == 16
    assert st.n_steps % (2 * st.record_every) == 0 and st.n_records == st.n_steps // st.record_every


def test_divergence_is_counted_not_dropped(digits):
    data = _subset(digits, 60)
    m = _model()
    st = run_sgd_chains(m, data, m.init(0), lr=1e4, batch_size=4, n_chains=5, burn_in=20, n_steps=20, seed=0)
    assert st.n_diverged == 5 and st.diverged_chains == [0, 1, 2, 3, 4]
    assert np.all(st.diverged_step >= 0) and np.all(st.diverged_step < 40)
    assert np.all(np.isfinite(st.theta_end))            # frozen at its last finite state
    assert st.observed().n == 0 and st.summary()["diverged_chains"] == [0, 1, 2, 3, 4]


def test_same_seed_same_result_other_seed_differs(digits):
    data = _subset(digits, 60)
    m = _model()
    kw = dict(lr=0.05, batch_size=4, n_chains=3, burn_in=30, n_steps=40, record_every=4)
    a = run_sgd_chains(m, data, m.init(0), seed=7, **kw)
    b = run_sgd_chains(m, data, m.init(0), seed=7, **kw)
    c = run_sgd_chains(m, data, m.init(0), seed=8, **kw)
    np.testing.assert_array_equal(a.theta_end, b.theta_end)
    np.testing.assert_array_equal(a.excess, b.excess)
    assert not np.array_equal(a.theta_end, c.theta_end)
    assert not np.array_equal(a.theta_end[0], a.theta_end[1])     # chains draw different batches


def test_arguments_are_validated(digits):
    data = _subset(digits, 60)
    m = _model()
    theta = m.init(0)
    for kwargs, match in [(dict(lr=0.0), "lr"), (dict(batch_size=0), "batch_size"),
                          (dict(n_chains=1), "n_chains"), (dict(batch_size=61, replacement=False), "batch_size")]:
        args = dict(lr=0.1, batch_size=4, n_chains=2, burn_in=0, n_steps=2)
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            run_sgd_chains(m, data, theta, **args)
    with pytest.raises(ValueError, match="theta"):
        run_sgd_chains(m, data, theta[:-1], lr=0.1, batch_size=4, n_chains=2, burn_in=0, n_steps=2)
    assert default_record_every(8, 1797) == 75 and default_record_every(64, 1797) == 9
