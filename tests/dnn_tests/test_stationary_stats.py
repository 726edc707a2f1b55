"""Pure statistics of dnn.stationary: batch means, both observed estimates, checks, predictions.

No keras here: the statistics are numpy functions of the phase's record, checked
against closed forms (theory.md T1/T2), brute-force sums and simulated chains.
The whole file runs in about 2 s.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theory
from dnn.convnet.stationary import (
    DRIFT_Z_MAX,
    MIN_DRIFT_BLOCKS,
    MIN_N_EFF,
    batch_means,
    discrete_correction,
    drift_check,
    identity_ratio,
    measure_traces,
    polyak_excess_loss,
    predict_excess_loss,
    ratio_with_se,
    stationarity_check,
    summarize_stationary,
    theta_free_excess_loss,
)


def _ar1(phi, n, rng):
    """Stationary AR(1) with unit innovation variance."""
    x = np.empty(n)
    x[0] = rng.normal() / math.sqrt(1 - phi**2)
    e = rng.normal(size=n)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + e[k]
    return x


def _quadratic_sgd_phase(h, sigma, lr, batch, steps, n_blocks, seed, burn_in=300, momentum=0.0):
    r"""SGD on L = ½θᵀHθ with ĝ = Hθ + ξ, ξ ~ N(0, Σ/S), recorded as ``sgd_stationary`` does.

    Heavy ball v ← βv − ηĝ, θ ← θ + v (β = 0: plain SGD).  Returns the phase record
    (per step ‖ĝ_k‖², ‖v_{k+1}‖², (θ_k − a)·ĝ_k; per block (θ̄ − a)·G_b; θ̄ the mean
    of the post-step iterates) and the brute-force mean of (θ_k − θ̄)·ĝ_k.
    """
    rng = np.random.default_rng(seed)
    d = h.shape[0]
    noise = rng.multivariate_normal(np.zeros(d), sigma / batch, size=burn_in + steps)
    theta = np.zeros(d)
    v = np.zeros(d)
    thetas, grads, steps_sq, vels = [], [], [], []
    for k in range(burn_in + steps):
        g = h @ theta + noise[k]
        if k == burn_in:
            v_start = v
        if k >= burn_in:
            thetas.append(theta)
            grads.append(g)
        v = momentum * v - lr * g
        if k >= burn_in:
            steps_sq.append(v @ v)
        theta = theta + v
    th, gr = np.array(thetas), np.array(grads)
    post = np.vstack([th[1:], theta])              # θ_{k+1}: what the running mean averages
    bar = post.mean(axis=0)
    a = th[0]
    m = steps // n_blocks
    g_blocks = gr.reshape(n_blocks, m, d).sum(axis=1)
    loss = 0.5 * np.einsum("ki,ij,kj->k", th, h, th)
    phase = {"status": "completed", "lr": lr, "batch_size": batch, "n_blocks": n_blocks,
             "steps": steps, "record_every": 1, "replacement": True,
             "grad_sqnorm": np.sum(gr**2, axis=1).tolist(),
             "anchored_dot": np.sum((th - a) * gr, axis=1).tolist(),
             "block_offset_dot": (g_blocks @ (bar - a)).tolist(),
             "sqdist_start": float(np.sum((a - bar) ** 2)),
             "sqdist_end": float(np.sum((theta - bar) ** 2)),
             "momentum": momentum, "step_sqnorm": steps_sq,
             "veldot_start": float((a - bar) @ v_start),
             "veldot_end": float((theta - bar) @ v),
             "losses": loss.tolist(),
             "loss_at_mean": float(0.5 * bar @ h @ bar),
             "block_losses": [float(0.5 * b @ h @ b)
                              for b in post.reshape(n_blocks, m, d).mean(axis=1)]}
    brute = float(np.mean(np.sum((th - bar) * gr, axis=1)))
    return phase, brute


# theory.md T2: H and Σ do not commute; discrete E L − L* = 0.0082043 at η = 0.1, S = 10.
T2_H = np.diag([1.0, 3.0])
T2_SIGMA = np.array([[2.0, 1.0], [1.0, 1.0]])


@pytest.fixture(scope="module")
def t2_phase():
    # 40 000 steps, slowest relaxation 1/(η h_min) = 10 steps: 2000-step blocks
    return _quadratic_sgd_phase(T2_H, T2_SIGMA, 0.1, 10, 40_000, 20, seed=7)


def test_batch_means_iid_se_matches_sd_over_sqrt_n():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=40_000)
    r = batch_means(x, n_batches=40)
    # exact SE is 2/sqrt(n) = 0.01; the batch-means estimate has 39 dof (relative sd 11%),
    # so 50% is > 4 sd of slack
    assert abs(r.se / 0.01 - 1) < 0.5
    assert abs(r.mean - 3.0) < 4 * 0.01
    assert abs(r.tau - 1.0) < 0.5


def test_batch_means_ar1_recovers_integrated_autocorrelation_time():
    rng = np.random.default_rng(1)
    phi = 0.8
    x = _ar1(phi, 200_000, rng)
    r = batch_means(x, n_batches=40)
    tau = (1 + phi) / (1 - phi)                       # = 9 samples
    se_exact = math.sqrt(tau / (1 - phi**2) / x.size)  # sqrt(tau Var(x) / n)
    assert abs(r.tau / tau - 1) < 0.5
    assert abs(r.se / se_exact - 1) < 0.5
    assert abs(r.mean) < 4 * se_exact


def test_batch_means_z_scores_are_calibrated():
    # over 200 independent AR(1) series the batch-means z-scores must be ~N(0,1)
    # (t with 19 dof); the fraction beyond 2 is ~6%; allow 0..15% (binomial sd 1.7%)
    rng = np.random.default_rng(2)
    z = []
    for _ in range(200):
        r = batch_means(_ar1(0.5, 4000, rng), n_batches=20)
        z.append(r.mean / r.se)
    z = np.asarray(z)
    assert 0.0 < np.mean(np.abs(z) > 2) < 0.15
    assert abs(np.mean(z)) < 4 / math.sqrt(200) * 1.2


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=8, max_size=200),
       st.integers(2, 4))
def test_batch_means_mean_of_used_samples(xs, b):
    x = np.asarray(xs)
    r = batch_means(x, n_batches=b)
    used = x[x.size - r.n:]
    assert r.n == b * r.batch_len and r.n > x.size - b
    assert r.mean == pytest.approx(used.mean(), rel=1e-9, abs=1e-9)
    assert r.se >= 0


def test_theta_free_arithmetic():
    g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]             # blocks (1,2), (3,4), (5,6)
    r = theta_free_excess_loss(g, 0.2, n_blocks=3)
    assert r.value == pytest.approx(0.05 * 3.5)
    assert r.mean_grad_sqnorm == pytest.approx(3.5)
    # batch means 1.5, 3.5, 5.5: sd 2, SE 2/sqrt(3), times η/4
    assert r.se == pytest.approx(0.05 * 2 / math.sqrt(3))
    assert (r.n_steps, r.n_blocks) == (6, 3)


def test_theta_free_recovers_the_exact_discrete_law_without_theta_star(t2_phase):
    phase, _ = t2_phase
    exact = theory.expected_loss_discrete(T2_H, T2_SIGMA, 0.1, 10)
    assert exact == pytest.approx(0.0082043, abs=1e-7)                  # theory.md T2
    r = theta_free_excess_loss(phase["grad_sqnorm"], 0.1, n_blocks=20)
    assert abs(r.value - exact) < 4 * r.se, (r.value, r.se, exact)
    # and it resolves the discrete correction: the continuous 0.0075 is rejected
    assert abs(r.value - 0.0075) > 4 * r.se
    # per-step ‖ĝ‖² of this chain decorrelates within a few steps
    assert r.n_eff > 1000 and r.tau_steps < 20


def test_identity_ratio_is_one_and_equals_the_brute_force_sum(t2_phase):
    phase, brute = t2_phase
    r = identity_ratio(phase["grad_sqnorm"], phase["anchored_dot"], phase["block_offset_dot"],
                       phase["lr"])
    # the block decomposition reproduces mean_k (θ_k − θ̄)·ĝ_k computed directly
    assert r.numerator == pytest.approx(brute, rel=1e-9)
    assert r.denominator == pytest.approx(0.05 * np.mean(phase["grad_sqnorm"]), rel=1e-12)
    assert abs(r.value - 1) < 4 * r.se and r.se > 0
    # telescoping: r = 1 + (‖θ_0 − θ̄‖² − ‖θ_K − θ̄‖²)/(η² Σ‖ĝ_k‖²), exactly
    telescoped = 1 + (phase["sqdist_start"] - phase["sqdist_end"]) / (
        0.01 * np.sum(phase["grad_sqnorm"]))
    assert r.value == pytest.approx(telescoped, rel=1e-9)


def test_polyak_arithmetic():
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]       # blocks (1,2), (3,4), (5,6)
    r = polyak_excess_loss(losses, 0.5, [1.0, 1.5, 2.0])
    assert r.raw == pytest.approx(3.5 - 0.5)
    assert r.correction == pytest.approx((1.5 - 0.5) / 2)
    assert r.value == pytest.approx(3.5)
    # batch means 1.5, 3.5, 5.5: sd 2, SE 2/sqrt(3)
    assert r.se == pytest.approx(2 / math.sqrt(3))
    assert (r.n_records, r.n_blocks) == (6, 3)


def test_polyak_unbiased_for_a_quadratic_with_iid_iterates():
    # L(θ) = ½ θᵀHθ with θ ~ N(0, C) i.i.d.: E L − L(θ*) = ½ tr(HC); the raw estimate
    # is biased low by ½ tr(HC)/n, the corrected one is not.  Average over many repeats.
    rng = np.random.default_rng(3)
    h = np.array([1.0, 4.0])
    c = np.array([0.5, 0.1])
    truth = 0.5 * np.sum(h * c)
    n, b = 40, 4
    raw, corr = [], []
    for _ in range(4000):
        th = rng.normal(size=(n, 2)) * np.sqrt(c)
        loss = 0.5 * (th**2 @ h)
        blocks = th.reshape(b, n // b, 2).mean(axis=1)
        bar = blocks.mean(axis=0)
        r = polyak_excess_loss(loss, 0.5 * bar**2 @ h, 0.5 * (blocks**2 @ h))
        raw.append(r.raw)
        corr.append(r.value)
    se = np.std(corr) / math.sqrt(len(corr))
    assert abs(np.mean(corr) - truth) < 4 * se
    assert np.mean(raw) < truth * (1 - 1 / (2 * n))   # the bias the correction removes


@pytest.mark.parametrize("kwargs, match", [
    (dict(losses=[1.0, 2.0, 3.0], loss_at_mean=0.0, block_losses=[1.0, 2.0]), "multiple"),
    (dict(losses=[1.0, 2.0], loss_at_mean=0.0, block_losses=[1.0]), "at least 2 blocks"),
    (dict(losses=[1.0, np.nan, 1.0, 1.0], loss_at_mean=0.0, block_losses=[1.0, 2.0]), "finite"),
    (dict(losses=[1.0] * 4, loss_at_mean=np.inf, block_losses=[1.0, 2.0]), "loss_at_mean"),
])
def test_polyak_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        polyak_excess_loss(**kwargs)


@pytest.mark.parametrize("call, match", [
    (lambda: theta_free_excess_loss([1.0, -1.0, 1.0, 1.0], 0.1, 2), "grad_sqnorm must be >= 0"),
    (lambda: theta_free_excess_loss([1.0] * 4, 0.0, 2), "lr"),
    (lambda: theta_free_excess_loss([1.0] * 4, 0.1, 1), "n_batches"),
    (lambda: theta_free_excess_loss([1.0, np.inf, 1.0, 1.0], 0.1, 2), "finite"),
    (lambda: identity_ratio([1.0] * 4, [0.0] * 3, [0.0, 0.0], 0.1), "same multiple"),
    (lambda: identity_ratio([1.0] * 4, [0.0] * 4, [0.0], 0.1), "at least 2 blocks"),
])
def test_theta_free_and_identity_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("series, b, match", [
    (np.ones((3, 3)), 2, "1-dimensional"),
    (np.ones(10), 1, "n_batches"),
    (np.ones(3), 2, "at least"),
])
def test_batch_means_bad_inputs(series, b, match):
    with pytest.raises(ValueError, match=match):
        batch_means(series, n_batches=b)


def test_predictions_reproduce_theory_T1():
    # theory.md T1: tr Σ = 3, η = 0.1, S = 5: (12) 0.015; with tr H = 2: (6) 0.01
    p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5,
                            trace_grad_cov_se=0.3, trace_hessian_se=0.2, lambda_max=2.0)
    assert p["wang"]["value"] == pytest.approx(0.015)
    assert p["jastrzebski"]["value"] == pytest.approx(0.01)
    assert p["wang"]["se"] == pytest.approx(0.0015)
    assert p["jastrzebski"]["se"] == pytest.approx(0.001)
    assert p["discrete_correction"] == pytest.approx(0.1)
    assert p["noise_factor"] == pytest.approx(0.2)


def test_prediction_6_includes_the_l2_trace():
    p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, l2_trace=2.0, lr=0.1,
                            batch_size=5)
    assert p["jastrzebski"]["value"] == pytest.approx(0.02)
    assert p["hessian_trace_total"] == 4.0
    assert p["discrete_correction"] is None


def test_ratio_with_se_propagation_and_degenerate_cases():
    r, s = ratio_with_se(3.0, 0.3, 2.0, 0.4)
    assert r == 1.5
    assert s == pytest.approx(1.5 * math.hypot(0.1, 0.2))
    assert all(math.isnan(v) for v in ratio_with_se(1.0, 0.1, 0.0, 0.1))
    assert discrete_correction(0.5, 3.0) == 0.75
    with pytest.raises(ValueError, match="lr"):
        discrete_correction(0.0, 1.0)


AT_MEAN = {"trace_grad_cov": {"trace": 40.0, "sampling_se": 4.0},
           "trace_hessian": {"mean": 20.0, "se": 1.0},
           "l2_trace_contribution": {"value": 0.0}, "lambda_max": {"value": 5.0}}


def _hand_phase(rng, grad_sqnorm=None, losses=None, anchored_dot=None):
    """A completed phase record: 4000 steps, 20 blocks, a loss record every 10 steps."""
    g = 2.0 + rng.standard_exponential(4000) if grad_sqnorm is None else np.asarray(grad_sqnorm)
    loss = 1.0 + 0.1 * rng.standard_exponential(400) if losses is None else np.asarray(losses)
    # (θ − a)·ĝ consistent with an identity ratio of 1 unless given: x_b = (η/2) ȳ_b
    u = 0.05 * g if anchored_dot is None else np.asarray(anchored_dot)
    return {"status": "completed", "lr": 0.1, "batch_size": 10, "n_data": 1000,
            "replacement": True, "steps": 4000, "record_every": 10, "n_blocks": 20,
            "grad_sqnorm": g.tolist(), "anchored_dot": u.tolist(),
            "block_offset_dot": [0.0] * 20, "sqdist_start": 0.0, "sqdist_end": 0.0,
            "losses": loss.tolist(), "loss_at_mean": 1.0, "block_losses": [1.0 + 1e-4] * 20}


def test_summarize_stationary_on_a_hand_made_phase():
    rng = np.random.default_rng(4)
    phase = _hand_phase(rng)
    s = summarize_stationary(phase, AT_MEAN)
    g = np.asarray(phase["grad_sqnorm"])
    # primary: (η/4) mean ‖ĝ‖²; the ratios are prediction / this value
    assert s["observed"]["value"] == pytest.approx(0.025 * g.mean())
    assert s["predicted"]["wang"]["value"] == pytest.approx(0.1 * 0.1 * 40 / 4)
    assert s["predicted"]["jastrzebski"]["value"] == pytest.approx(0.1 * 0.1 * 20 / 4)
    assert s["ratios"]["wang"]["value"] == pytest.approx(0.1 / s["observed"]["value"])
    # second column: the Polyak method
    losses = np.asarray(phase["losses"])
    assert s["polyak"]["value"] == pytest.approx(losses.mean() - 1.0 + 1e-4 / 19)
    assert s["polyak"]["tau_steps"] == pytest.approx(10 * s["polyak"]["tau_records"])
    assert s["identity"]["value"] == pytest.approx(1.0)
    assert s["relaxation"]["steps_x_lr_x_lambda_max"] == pytest.approx(4000 * 0.1 * 5.0)
    assert s["diagnostics"]["stationary"] is True and s["diagnostics"]["failed"] == []
    assert s["diagnostics"]["n_eff"] == s["observed"]["n_eff"] > MIN_N_EFF
    assert summarize_stationary({"status": "diverged"})["observed"] is None


def test_drift_check_flags_a_relaxing_series_and_passes_a_stationary_one():
    rng = np.random.default_rng(5)
    flat = _ar1(0.5, 4000, rng)
    d = drift_check(flat, 20)
    assert abs(d["z"]) < 4
    relaxing = flat + 5.0 * np.exp(-np.arange(4000) / 1500)
    assert drift_check(relaxing, 20)["z"] < -4
    assert drift_check(flat, MIN_DRIFT_BLOCKS - 1) is None


def test_drift_check_false_alarms_are_rare_and_a_clean_trend_is_caught_with_8_blocks():
    # stationary AR(1): z is about standard normal; the fraction beyond 2 is ~5-8 %
    # (von Neumann variance of 20 block means), allow 1..15 % (binomial sd 1.4 % at n = 300)
    rng = np.random.default_rng(9)
    z = np.array([drift_check(_ar1(0.5, 2000, rng), 20)["z"] for _ in range(300)])
    assert 0.01 < np.mean(np.abs(z) > 2) < 0.15
    assert np.max(np.abs(z)) < 6
    # a noiseless linear trend over 8 blocks reads z = h^{3/2} = 8
    assert drift_check(np.linspace(1.0, 0.0, 80), 8)["z"] == pytest.approx(-8.0)


@pytest.mark.parametrize("which", ["loss", "grad_sqnorm"])
def test_summarize_flags_a_drifting_loss_or_gradient_norm(which):
    rng = np.random.default_rng(6)
    kw = {"losses": np.linspace(2.0, 1.0, 400)} if which == "loss" else \
        {"grad_sqnorm": np.linspace(3.0, 2.0, 4000) + 0.1 * rng.standard_exponential(4000)}
    s = summarize_stationary(_hand_phase(rng, **kw))
    d = s["diagnostics"]
    assert d["stationary"] is False
    assert abs(d[f"drift_{which}"]["z"]) >= DRIFT_Z_MAX
    assert [f for f in d["failed"] if f.startswith(f"{which} drift")]


def test_summarize_flags_too_few_effective_samples():
    # ‖ĝ‖² correlated over ~2000 steps: the 4000 steps hold only a few independent values
    rng = np.random.default_rng(7)
    slow = 3.0 + 0.3 * _ar1(0.999, 4000, rng) / math.sqrt(1 / (1 - 0.999**2))
    s = summarize_stationary(_hand_phase(rng, grad_sqnorm=slow))
    assert s["observed"]["n_eff"] < MIN_N_EFF
    assert s["diagnostics"]["stationary"] is False
    assert any(f.startswith("n_eff") for f in s["diagnostics"]["failed"])


def test_identity_ratio_is_reported_but_not_gated_on():
    # ratio 0.9 with a tiny SE, as on a network whose flat directions keep spreading:
    # still stationary when both drifts and n_eff pass
    rng = np.random.default_rng(8)
    g = 2.0 + rng.standard_exponential(4000)
    s = summarize_stationary(_hand_phase(rng, grad_sqnorm=g, anchored_dot=0.9 * 0.05 * g))
    assert s["identity"]["value"] == pytest.approx(0.9)
    assert abs(s["identity"]["value"] - 1) > 10 * s["identity"]["se"]
    assert s["diagnostics"]["stationary"] is True


def test_stationarity_check_needs_four_blocks():
    c = stationarity_check(None, None, 100.0)
    assert c["stationary"] is False and len(c["failed"]) == 2


def test_missing_trace_se_is_unknown_not_zero():
    m = {"trace_grad_cov": {"trace": 40.0}, "trace_hessian": {"mean": 20.0}}
    tr_s, tr_s_se, tr_h, tr_h_se, _, _ = measure_traces(m)
    assert (tr_s, tr_h) == (40.0, 20.0)
    assert np.isnan(tr_s_se) and np.isnan(tr_h_se)


# ------------------------------------------------------------------ momentum

@pytest.fixture(scope="module")
def t2_momentum_phase():
    # T2 at β = 0.9, η = 0.02 (effective rate 0.2): slowest mode decays as β^{k/2} once
    # underdamped (η h_min = 0.02 > (1 − √β)² = 0.0026), ~40 steps; 2000-step blocks
    return _quadratic_sgd_phase(T2_H, T2_SIGMA, 0.02, 10, 40_000, 20, seed=11, burn_in=1000,
                                momentum=0.9)


def test_momentum_theta_free_recovers_the_exact_heavy_ball_law(t2_momentum_phase):
    # theory.md "Momentum": E L − L* = ((1+β)/(4η)) E‖v‖² for a quadratic, against the
    # closed-form stacked-Lyapunov law with non-commuting H and Σ
    phase, _ = t2_momentum_phase
    exact = theory.expected_loss_discrete(T2_H, T2_SIGMA, 0.02, 10, momentum=0.9)
    r = theta_free_excess_loss(phase["grad_sqnorm"], 0.02, n_blocks=20, momentum=0.9,
                               step_sqnorm=phase["step_sqnorm"])
    assert r.series == "step_sqnorm" and r.momentum == 0.9
    assert abs(r.value - exact) < 4 * r.se, (r.value, r.se, exact)
    assert r.value == pytest.approx(1.9 / 0.08 * np.mean(phase["step_sqnorm"]))
    # the plain-SGD form (η/4)E‖ĝ‖² is wrong with momentum: it must be rejected here
    wrong = 0.25 * 0.02 * np.mean(phase["grad_sqnorm"])
    assert abs(wrong - exact) > 4 * r.se


def test_momentum_identity_ratio_is_one_and_obeys_the_telescoping_sum(t2_momentum_phase):
    phase, brute = t2_momentum_phase
    r = identity_ratio(phase["grad_sqnorm"], phase["anchored_dot"], phase["block_offset_dot"],
                       0.02, momentum=0.9, step_sqnorm=phase["step_sqnorm"])
    assert r.numerator == pytest.approx(brute, rel=1e-9)
    assert abs(r.value - 1) < 4 * r.se
    b, eta = 0.9, 0.02
    boundary = ((1 - b) * (phase["sqdist_start"] - phase["sqdist_end"]) / 2
                + b * (phase["veldot_start"] - phase["veldot_end"])) / eta
    total = np.sum(phase["step_sqnorm"])
    assert r.value == pytest.approx(1 + boundary / ((1 + b) / (2 * eta) * total), rel=1e-9)


def test_plain_sgd_estimator_is_unchanged_by_the_step_series(t2_phase):
    # β = 0: v = −ηĝ; giving ‖v‖² changes nothing in the estimate (it is still (η/4)E‖ĝ‖²)
    phase, _ = t2_phase
    g = np.asarray(phase["grad_sqnorm"])
    old = theta_free_excess_loss(g, 0.1, n_blocks=20)
    new = theta_free_excess_loss(g, 0.1, n_blocks=20, momentum=0.0, step_sqnorm=0.01 * g)
    for f in ("value", "se", "n_eff", "tau_steps", "mean_grad_sqnorm", "n_steps"):
        assert getattr(new, f) == getattr(old, f), f
    assert new.mean_step_sqnorm == pytest.approx(0.01 * old.mean_grad_sqnorm)
    assert summarize_stationary(phase)["observed"]["value"] == old.value


def test_discrete_correction_with_momentum_is_theorys_per_direction_factor():
    # exact / continuous limit in one direction is 2(1+β)/(2(1+β) − ηh) = 1/(1 − x),
    # x = ηh/(2(1+β)) the reported correction (from theory's own momentum law)
    for beta in (0.0, 0.5, 0.9):
        lr, h = 0.3, 2.0
        exact = theory.expected_loss_discrete(np.diag([h]), np.diag([1.0]), lr, 4,
                                              momentum=beta)
        cont = theory.expected_loss_wang(1.0, lr, 4, momentum=beta)
        x = discrete_correction(lr, h, momentum=beta)
        assert x == pytest.approx(lr * h / (2 * (1 + beta)))
        assert exact / cont == pytest.approx(1 / (1 - x), rel=1e-10)


def test_predictions_with_momentum_and_the_stability_flag():
    p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5,
                            trace_grad_cov_se=0.3, lambda_max=2.0, momentum=0.9)
    # (12) at the effective rate η/(1 − β) = 1: (1 · 0.2 / 4) · 3
    assert p["wang"]["value"] == pytest.approx(0.15)
    assert p["wang"]["se"] == pytest.approx(0.015)
    assert p["momentum"] == 0.9 and p["stability"]["stable"] is True
    assert p["discrete_correction"] == pytest.approx(0.2 / 3.8)
    # η λ_max = 4 >= 2(1+β) = 3.8: flagged, and no correction formula is given
    p = predict_excess_loss(trace_grad_cov=3.0, trace_hessian=2.0, lr=0.1, batch_size=5,
                            lambda_max=40.0, momentum=0.9)
    assert p["stability"] == {"lr_x_lambda_max": pytest.approx(4.0), "edge": pytest.approx(3.8),
                              "stable": False}
    assert p["discrete_correction"] is None
    with pytest.raises(theory.StabilityError, match="2\\(1\\+momentum\\)"):
        discrete_correction(0.1, 40.0, momentum=0.9)


def test_momentum_checks_gate_on_the_step_series():
    rng = np.random.default_rng(12)
    phase = _hand_phase(rng)
    phase["momentum"] = 0.5
    # ‖v‖² drifting while ‖ĝ‖² and the loss do not: the phase is not stationary
    phase["step_sqnorm"] = (np.linspace(0.02, 0.01, 4000)
                            + 0.001 * rng.standard_exponential(4000)).tolist()
    s = summarize_stationary(phase)
    d = s["diagnostics"]
    assert s["observed"]["series"] == "step_sqnorm"
    assert abs(d["drift_step_sqnorm"]["z"]) >= DRIFT_Z_MAX
    assert d["stationary"] is False and any(f.startswith("step_sqnorm drift") for f in d["failed"])
    # a record from before momentum (no "momentum", no "step_sqnorm") reads as plain SGD
    old = _hand_phase(np.random.default_rng(4))
    assert summarize_stationary(old)["observed"]["momentum"] == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: theta_free_excess_loss([1.0] * 4, 0.1, 2, momentum=0.9), "needs step_sqnorm"),
    (lambda: theta_free_excess_loss([1.0] * 4, 0.1, 2, momentum=1.0, step_sqnorm=[1.0] * 4),
     r"momentum must be a number in \[0, 1\); got 1\.0"),
    (lambda: theta_free_excess_loss([1.0] * 4, 0.1, 2, step_sqnorm=[1.0] * 6), "same length"),
    (lambda: identity_ratio([1.0] * 4, [0.5] * 4, [0.0, 0.0], 1.0, momentum=0.5),
     "needs step_sqnorm"),
    (lambda: predict_excess_loss(trace_grad_cov=1.0, trace_hessian=1.0, lr=0.1, batch_size=2,
                                 momentum=float("nan")), "momentum must be .* got nan"),
])
def test_momentum_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
