"""``validation.report.claims``: the paper's three claims as numbers, from known inputs."""

import json
import math

import numpy as np
import pytest

from validation.report import build_report, curve_distance
from validation.report.claims import (Z_AGREE, claims_markdown, curves_claim, stationary_claim,
                                      traces_claim)

GRID = [(bs, lr) for bs in (100, 200, 500) for lr in (0.08, 0.2, 0.5)]


def _groups(equal_noise=0.004, seeds=3, seed=0):
    """Validation curves offset in proportion to log(BS/LR), so that the distance between
    two configurations grows with |Δ log(BS/LR)|; seed noise on top."""
    rng = np.random.default_rng(seed)
    t = np.arange(20.0)
    groups = []
    for bs, lr in GRID:
        offset = 0.02 * math.log(bs / lr / 1000)
        base = 0.6 + 0.01 * t - offset
        groups.append({"batch_size": bs, "lr": lr, "epochs": t,
                       "val_acc": base + equal_noise * rng.normal(size=(seeds, t.size))})
    return groups


def test_equal_ratio_curves_sit_at_the_seed_noise_floor_and_distance_grows():
    # BS/LR = 1000 twice (200/0.2, 500/0.5) and 2500 twice (200/0.08, 500/0.2): their
    # curves differ only by seed noise, so D(equal) matches the floor.
    c = curves_claim(curve_distance(_groups()))
    assert c["n_equal_pairs"] == 2 and c["n_floor_configs"] == 9
    assert abs(c["z_equal_vs_floor"]) < 2
    # E|X − Y| for independent N(0, σ²) per epoch is 2σ/√π
    assert c["noise_floor"] == pytest.approx(2 * 0.004 / math.sqrt(math.pi), rel=0.1)
    assert c["spearman_rho"] > 0.5 and c["mantel_p"] < 0.05
    assert "as close as two seeds" in c["verdict"] and "grows" in c["verdict"]


def test_equal_ratio_curves_that_differ_are_reported_as_farther_apart():
    groups = _groups(equal_noise=0.001)
    for g in groups:                        # break the BS/LR law: every config gets its own shift
        g["val_acc"] = g["val_acc"] + 0.01 * math.log(g["batch_size"])
    c = curves_claim(curve_distance(groups))
    assert c["z_equal_vs_floor"] > 2 and "farther apart than two seeds" in c["verdict"]


def _points(b_lr_s, b_bs_s, b_lr_h, b_bs_h, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    pts = []
    for bs, lr in GRID:
        for s in range(2):
            pts.append({"batch_size": bs, "lr": lr, "seed": s,
                        "trace_grad_cov": 2.0 * lr**b_lr_s * bs**b_bs_s * math.exp(noise * rng.normal()),
                        "trace_hessian": 300.0 * lr**b_lr_h * bs**b_bs_h * math.exp(noise * rng.normal())})
    return pts


def test_trace_slopes_recover_known_power_laws_within_their_se():
    t = traces_claim(_points(0.5, -1.0, -0.2, 0.0))
    assert t["n_runs"] == 18 and t["factor"]["n_configs"] == 9
    truth = {"log_trace_grad_cov": (0.5, -1.0), "log_trace_hessian": (-0.2, 0.0),
             "log_ratio": (-0.7, 1.0)}
    for name, (b_lr, b_bs) in truth.items():
        s = t["slopes"][name]
        # 4 SE: the OLS slopes are normal with the reported SE (Gaussian log-noise).
        assert abs(s["lr"] - b_lr) < 4 * s["lr_se"] and abs(s["bs"] - b_bs) < 4 * s["bs_se"]
        assert 0 < s["lr_se"] < 0.2
    ratios = [p["trace_hessian"] / p["trace_grad_cov"] for p in _points(0.5, -1.0, -0.2, 0.0)]
    assert t["factor"]["min"] >= min(ratios) * 0.99 and t["factor"]["max"] <= max(ratios) * 1.01
    text = " ".join(t["verdicts"])
    assert "at least" in text and "smaller than tr H in every configuration" in text
    assert "shrinks as LR grows" in text           # d log ratio / d log LR = −0.7 < 0


def test_traces_without_a_large_factor_say_so():
    t = traces_claim(_points(0.0, 0.0, 0.0, 0.0, noise=0.01) and
                     [dict(p, trace_hessian=3.0 * p["trace_grad_cov"])
                      for p in _points(0.0, 0.0, 0.0, 0.0, noise=0.01)])
    assert t["factor"]["min"] == pytest.approx(3.0)
    assert "not by magnitudes" in t["verdicts"][0]
    assert traces_claim([])["verdicts"] == ["no run has both traces."]


def _row(bs, lr, obs, se, wang, jast, n_phases=2, n_stationary=2):
    return {"loss": "kld", "batch_size": bs, "lr": lr, "n_phases": n_phases,
            "n_stationary": n_stationary, "observed_excess": obs, "observed_excess_se": se,
            "predicted_wang": wang, "predicted_wang_se": 0.0,
            "predicted_jastrzebski": jast, "predicted_jastrzebski_se": 0.0}


def test_stationary_claim_counts_only_configurations_whose_phases_all_pass():
    rows = [_row(100, 0.08, 1.0, 0.1, 1.1, 5.0),          # (12) z = −1, (6) z = −40
            _row(200, 0.2, 1.0, 0.1, 2.0, 1.05),          # (12) z = −10, (6) z = −0.5
            _row(500, 0.5, 1.0, 0.1, 1.0, 1.0, n_stationary=1),   # not settled: not counted
            _row(500, 0.08, math.nan, math.nan, 1.0, 1.0, n_phases=0, n_stationary=0)]
    s = stationary_claim(rows)
    assert (s["n_phases"], s["n_pass"], s["n_settled_configs"]) == (6, 5, 2)
    assert s["agree"] == {"wang": 1, "jastrzebski": 1}
    assert len(s["rows"]) == 3 and s["rows"][0]["wang_z"] == pytest.approx(-1.0)
    assert s["rows"][0]["jastrzebski_z"] == pytest.approx(-40.0)
    assert not s["rows"][2]["settled"]
    assert f"(12) agrees within {Z_AGREE:g} SE in 1" in s["verdict"]
    md = claims_markdown({}, {}, s)
    assert md.count("\n| kld |") == 3 and "[-1.0]" in md


def test_build_report_writes_claims_json_and_section(tmp_path):
    from test_validation_report import _make_runs

    root = tmp_path / "runs"
    _make_runs(root)
    out = tmp_path / "report"
    text = build_report(root, out).read_text()
    claims = json.loads((out / "claims.json").read_text())
    assert set(claims) == {"curves", "traces", "stationary"}
    assert claims["traces"]["kld"]["n_runs"] > 0
    assert "## The paper's three claims, measured" in text
    assert claims["stationary"]["verdict"] in text


def test_stationary_claim_says_which_checks_failed_and_how_far_the_loss_fell():
    rows = [_row(100, 0.08, 1.0, 0.1, 1.1, 5.0, n_stationary=0)]
    phases = [{"stationary": "no", "failed": "loss drift z = -19.8 (|z| >= 4)",
               "drift_loss_over_excess": -2.0},
              {"stationary": "no", "failed": "loss drift z = -9 (|z| >= 4); n_eff = 3 (< 20)",
               "drift_loss_over_excess": -4.0},
              {"stationary": "yes", "failed": "", "drift_loss_over_excess": -0.1}]
    s = stationary_claim(rows, phases)
    f = s["failures"]
    assert f["n_failed"] == 2 and f["checks"] == {"loss drift": 2, "n_eff": 1}
    assert f["median_drift_over_excess"] == pytest.approx(-3.0) and f["n_ratios"] == 2
    assert "loss drift in 2, n_eff in 1 of 2 failing phases" in s["verdict"]
    assert "median -3× the observed excess (n = 2)" in s["verdict"]
    # Without per-phase rows the verdict is the plain count, as before.
    assert stationary_claim(rows)["failures"]["n_failed"] == 0
