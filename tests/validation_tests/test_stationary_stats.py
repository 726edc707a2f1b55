"""Pure statistics of validation.stationary: batch means, observed excess, predictions, ratios."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from validation.stationary import (
    batch_means,
    discrete_correction,
    drift_check,
    measure_traces,
    observed_excess_loss,
    predict_excess_loss,
    ratio_with_se,
    summarize_stationary,
)


def _ar1(phi, n, rng):
    """Stationary AR(1) with unit innovation variance."""
    x = np.empty(n)
    x[0] = rng.normal() / math.sqrt(1 - phi**2)
    e = rng.normal(size=n)
    for k in range(1, n):
        x[k] = phi * x[k - 1] + e[k]
    return x


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


def test_observed_excess_loss_arithmetic():
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]       # blocks (1,2), (3,4), (5,6)
    r = observed_excess_loss(losses, 0.5, [1.0, 1.5, 2.0])
    assert r.raw == pytest.approx(3.5 - 0.5)
    assert r.correction == pytest.approx((1.5 - 0.5) / 2)
    assert r.value == pytest.approx(3.5)
    # batch means 1.5, 3.5, 5.5: sd 2, SE 2/sqrt(3)
    assert r.se == pytest.approx(2 / math.sqrt(3))
    assert (r.n_records, r.n_blocks) == (6, 3)


def test_observed_excess_loss_unbiased_for_a_quadratic_with_iid_iterates():
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
        r = observed_excess_loss(loss, 0.5 * bar**2 @ h, 0.5 * (blocks**2 @ h))
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
def test_observed_excess_loss_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        observed_excess_loss(**kwargs)


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


def test_summarize_stationary_on_a_hand_made_phase():
    rng = np.random.default_rng(4)
    losses = 1.0 + 0.1 * rng.standard_exponential(400)
    phase = {"status": "completed", "losses": losses.tolist(), "loss_at_mean": 1.0,
             "block_losses": [1.0 + 1e-4] * 20, "lr": 0.1, "batch_size": 10, "n_data": 1000,
             "replacement": True, "steps": 4000, "record_every": 10}
    at_mean = {"trace_grad_cov": {"trace": 40.0, "sampling_se": 4.0},
               "trace_hessian": {"mean": 20.0, "se": 1.0},
               "l2_trace_contribution": {"value": 0.0}, "lambda_max": {"value": 5.0}}
    s = summarize_stationary(phase, at_mean)
    assert s["predicted"]["wang"]["value"] == pytest.approx(0.1 * 0.1 * 40 / 4)
    assert s["predicted"]["jastrzebski"]["value"] == pytest.approx(0.1 * 0.1 * 20 / 4)
    obs = s["observed"]["value"]
    assert obs == pytest.approx(losses.mean() - 1.0 + 1e-4 / 19)
    assert s["ratios"]["wang"]["value"] == pytest.approx(0.1 / obs)
    assert s["relaxation"]["steps_x_lr_x_lambda_max"] == pytest.approx(4000 * 0.1 * 5.0)
    assert s["observed"]["tau_steps"] == pytest.approx(10 * s["observed"]["tau_records"])
    assert summarize_stationary({"status": "diverged"})["observed"] is None


def test_drift_check_flags_a_relaxing_series_and_passes_a_stationary_one():
    rng = np.random.default_rng(5)
    flat = _ar1(0.5, 4000, rng)
    d = drift_check(flat, 20)
    assert abs(d["z"]) < 4
    relaxing = flat + 5.0 * np.exp(-np.arange(4000) / 1500)
    assert drift_check(relaxing, 20)["z"] < -4
    assert drift_check(flat, 3) is None


def test_summarize_flags_non_stationary_phases():
    x = np.linspace(2.0, 1.0, 400)          # still falling: not stationary
    phase = {"status": "completed", "losses": x.tolist(), "loss_at_mean": 1.0,
             "block_losses": [1.5] * 20, "lr": 0.1, "batch_size": 10, "steps": 4000,
             "record_every": 10}
    s = summarize_stationary(phase)
    assert s["diagnostics"]["stationary"] is False
    assert s["diagnostics"]["drift"]["z"] < -4


def test_summarize_flags_blocks_shorter_than_the_mean_curvature_relaxation():
    rng = np.random.default_rng(6)
    losses = (1.0 + 0.1 * rng.standard_exponential(400)).tolist()
    base = {"status": "completed", "losses": losses, "loss_at_mean": 1.0,
            "block_losses": [1.0] * 20, "lr": 0.1, "batch_size": 10, "steps": 4000,
            "record_every": 10}
    at_mean = {"trace_grad_cov": {"trace": 40.0, "sampling_se": 4.0},
               "trace_hessian": {"mean": 20.0, "se": 1.0},
               "l2_trace_contribution": {"value": 0.0}, "lambda_max": {"value": 5.0}}
    # 200-step blocks at lr 0.1: resolved iff the mean curvature tr H / P >= 1/20.
    flat = summarize_stationary(base, {**at_mean, "n_params": 1000})     # h̄ = 0.02
    assert flat["relaxation"]["block_steps_x_lr_x_mean_curvature"] == pytest.approx(0.4)
    assert flat["diagnostics"]["flat_directions_resolved"] is False
    assert flat["diagnostics"]["stationary"] is False
    stiff = summarize_stationary(base, {**at_mean, "n_params": 100})     # h̄ = 0.2
    assert stiff["relaxation"]["block_steps_x_lr_x_mean_curvature"] == pytest.approx(4.0)
    assert stiff["diagnostics"]["flat_directions_resolved"] is True
    assert stiff["diagnostics"]["stationary"] is True


def test_missing_trace_se_is_unknown_not_zero():
    m = {"trace_grad_cov": {"trace": 40.0}, "trace_hessian": {"mean": 20.0}}
    tr_s, tr_s_se, tr_h, tr_h_se, _, _ = measure_traces(m)
    assert (tr_s, tr_h) == (40.0, 20.0)
    assert np.isnan(tr_s_se) and np.isnan(tr_h_se)
