"""The momentum θ*-free estimator on a linear model, against the exact heavy-ball law.

On L(θ) = (1/2N)‖Xθ − y‖² with i.i.d. minibatches, heavy-ball SGD at β = 0.9 has an
exactly known stationary excess loss (``theory.least_squares_stationary(...,
momentum=β)``: discrete time, state-dependent noise).  The phase's primary value
((1+β)/(4η))·mean‖v_k‖² must match it within 4 batch-means SE, and must reject (12)
at the effective rate η/(1 − β), 28 % lower here, or agreement would prove nothing.
The recorded ‖ĝ_k‖² and ‖v_k‖² must equal a float64 replay, and the identity
accumulators must obey the heavy-ball telescoping sum exactly.  JAX (compiled
loop) in-process, a few seconds; TensorFlow (per-step) in a subprocess, slow.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quadratic_case  # noqa: E402

# 4 SE: a false alarm would be 6e-5 for a normal z (t_19 tail 8e-4); seeded, so no flakes.
Z_MAX = 4.0
BETA = quadratic_case.MOMENTUM


@pytest.fixture(scope="module")
def measured():
    return quadratic_case.run(momentum=BETA)


def _check(r):
    assert r["status"] == "completed" and r["momentum"] == BETA
    obs = r["observed"]
    assert obs["series"] == "step_sqnorm" and obs["momentum"] == BETA
    z = (obs["value"] - r["exact"]) / obs["se"]
    assert abs(z) < Z_MAX, f"θ*-free {obs['value']:.5f} ± {obs['se']:.5f}, exact {r['exact']:.5f}"
    factor = (1 + BETA) / (4 * r["lr"])
    assert obs["value"] == pytest.approx(factor * np.mean(r["step_sqnorm"]), rel=1e-12)
    # the checks run on ‖v‖² (drift and n_eff) as well as on the loss and ‖ĝ‖²
    diag = r["diagnostics"]
    assert diag["drift_step_sqnorm"] is not None
    assert r["stationary_check"] is True and diag["failed"] == [], diag["failed"]
    assert obs["n_eff"] >= 20 and obs["tau_steps"] * 5 < obs["n_steps"] / obs["n_blocks"]
    # E[(θ − θ̄)·ĝ] = ((1+β)/(2η)) E‖v‖² holds for any loss at stationarity
    ident = r["identity"]
    assert abs(ident["value"] - 1) < Z_MAX * ident["se"], ident
    # the Polyak column needs no momentum formula: it must agree too
    pol = r["polyak"]
    assert abs(pol["value"] - r["exact"]) < Z_MAX * pol["se"], pol
    return z


def test_momentum_estimator_recovers_the_exact_heavy_ball_law(measured):
    _check(measured)


def test_momentum_measurement_rejects_12_at_the_effective_rate(measured):
    # (12) at η/(1 − β) is 28 % below the exact law here: the estimate must tell them apart
    obs = measured["observed"]
    assert measured["exact"] / measured["wang_continuous"] > 1.2
    assert abs(obs["value"] - measured["wang_continuous"]) / obs["se"] > Z_MAX


def test_recorded_step_and_gradient_norms_match_a_float64_heavy_ball_replay(measured):
    sq, vsq, _ = quadratic_case.replay(measured["burn_in"], measured["steps"],
                                       lr=measured["lr"], momentum=BETA)
    np.testing.assert_allclose(measured["grad_sqnorm"], sq, rtol=2e-3, atol=1e-5 * sq.mean())
    np.testing.assert_allclose(measured["step_sqnorm"], vsq, rtol=2e-3, atol=1e-5 * vsq.mean())


def test_identity_accumulators_obey_the_heavy_ball_telescoping_sum(measured):
    # Σ x_k·ĝ_k = ((1+β)/(2η)) Σ‖v_{k+1}‖² + [(1−β)(‖x_0‖² − ‖x_K‖²)/2 + β(p_0 − p_K)]/η,
    # x = θ − θ̄, p = x·v: on-device accumulators on the left, host snapshots on the right
    i, eta = measured["identity"], measured["lr"]
    total = np.sum(measured["step_sqnorm"])
    boundary = ((1 - BETA) * (i["sqdist_start"] - i["sqdist_end"]) / 2
                + BETA * (i["veldot_start"] - i["veldot_end"])) / eta
    expected = 1 + boundary / ((1 + BETA) / (2 * eta) * total)
    assert i["value"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_momentum_phase_on_tensorflow_in_fresh_process(measured):
    # TensorFlow keeps the per-step path; a shorter phase (4000 steps, about 40 s) with
    # the same draws: same trajectory up to float32 round-off, and the exact law within 4 SE
    other = quadratic_case.other_backend(measured["backend"])
    r = quadratic_case.run_in_fresh_process(other, BETA, 4000)
    assert r["backend"] == other and r["momentum"] == BETA
    obs = r["observed"]
    assert abs(obs["value"] - r["exact"]) < Z_MAX * obs["se"], obs
    n = len(r["step_sqnorm"])
    np.testing.assert_allclose(r["step_sqnorm"][:200], measured["step_sqnorm"][:200], rtol=1e-3)
    assert n == 4000
