"""``sgd-minima grid --preset smoke --momentum 0.9 --loss kld``, then ``report``, end to end.

Every run trains with β = 0.9, its stationary phase inherits it (β_s = β), is measured
with the momentum estimator ((1+β)/(4η_s))·E‖v‖² and predicted with the momentum forms
of (12) and (6); Table 1 and report.md state β.  Six tiny runs: about 2 min on 2 cores.
"""

import csv
import json
import math

import pytest

from validation.cli import main

pytestmark = pytest.mark.slow

BETA = 0.9


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke_momentum")
    runs, report = root / "runs", root / "report"
    assert main(["grid", "--preset", "smoke", "--loss", "kld", "--momentum", str(BETA),
                 "--out", str(runs), "--quiet"]) == 0
    assert main(["report", str(runs), "--out", str(report)]) == 0
    return runs, report


def test_phases_use_the_training_momentum_and_the_momentum_estimator(grid):
    runs, _ = grid
    phases = 0
    for d in sorted(p for p in runs.iterdir() if (p / "run.json").is_file()):
        run = json.loads((d / "run.json").read_text())
        assert run["config"]["momentum"] == BETA
        if run["status"] != "completed":
            continue
        s = json.loads((d / "stationary.json").read_text())
        if s["status"] != "completed":
            continue
        phases += 1
        p = s["phase"]
        assert p["momentum"] == BETA and p["momentum_source"] == "training run"
        assert len(p["step_sqnorm"]) == len(p["grad_sqnorm"]) == p["steps"]
        obs = s["observed"]
        assert obs["series"] == "step_sqnorm" and obs["momentum"] == BETA
        mean_v = sum(p["step_sqnorm"]) / len(p["step_sqnorm"])
        assert obs["value"] == pytest.approx((1 + BETA) / (4 * p["lr"]) * mean_v, rel=1e-9)
        pred = s["predicted"]
        assert pred["momentum"] == BETA and pred["stability"]["edge"] == pytest.approx(2 * 1.9)
        # (12) at the effective rate η_s/(1 − β): (η_s c_S / (4(1 − β))) tr Σ
        c = pred["noise_factor"]
        assert pred["wang"]["value"] == pytest.approx(
            p["lr"] * c / (4 * (1 - BETA)) * pred["trace_grad_cov"]["value"], rel=1e-9)
        assert s["diagnostics"]["drift_step_sqnorm"] is not None
    assert phases >= 1


def test_table1_and_report_state_beta(grid):
    runs, report = grid
    with open(report / "table1.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["momentum"]) == BETA for r in rows)
    phased = [r for r in rows if int(r["n_phases"])]
    assert phased and all(float(r["stationary_momentum"]) == BETA for r in phased)
    text = (report / "report.md").read_text()
    assert f"Training momentum β = {BETA:g}; stationary phases at momentum β_s = {BETA:g}" in text
    header = (report / "table1.md").read_text().splitlines()[0]
    assert "| β |" in header and "| β_s |" in header
    with open(report / "stationary.csv") as f:
        srows = list(csv.DictReader(f))
    assert srows and all(math.isclose(float(r["stationary_momentum"]), BETA) for r in srows)
