"""Report builders on hand-written run folders: values, curve distance, colours, figures."""

import csv
import json
import math

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from validation import figures as F
from validation.report import (
    TABLE1_COLUMNS,
    build_report,
    curve_distance,
    learning_curve_groups,
    load_runs,
    make_figures,
    table1_rows,
)

CONFIGS = [(100, 0.1), (200, 0.2), (100, 0.025)]   # BS/LR 1000, 1000, 4000
EPOCHS = 5


def _write(path, obj):
    path.write_text(json.dumps(obj))


def _make_runs(root, loss="kld", seeds=(0, 1), diverged=True):
    rng = np.random.default_rng(0)
    truth = {}
    for bs, lr in CONFIGS:
        for seed in seeds:
            name = f"{loss}_bs{bs}_lr{lr:g}_seed{seed}"
            d = root / name
            d.mkdir(parents=True)
            cfg = {"batch_size": bs, "lr": lr, "loss": loss, "seed": seed, "epochs": EPOCHS}
            _write(d / "run.json", {"status": "completed", "config": cfg, "backend": "jax",
                                    "device": "cpu: test", "git_commit": "abc123",
                                    "wall_time_s": 1.5, "versions": {"keras": "3"}})
            speed = 0.1 if bs / lr == 1000 else 0.03
            val = 0.1 + speed * np.arange(1, EPOCHS + 1) + 0.01 * rng.normal(size=EPOCHS)
            _write(d / "history.json", {"columns": ["epoch", "accuracy", "val_accuracy"],
                                        "epochs": [{"epoch": e + 1, "accuracy": float(v) + 0.05,
                                                    "val_accuracy": float(v)}
                                                   for e, v in enumerate(val)]})
            ts, th = float(rng.uniform(10, 20)), float(rng.uniform(2, 4))
            _write(d / "estimates.json", {"trace_grad_cov": {"trace": ts, "sampling_se": 1.0},
                                          "trace_hessian": {"mean": th, "se": 0.1}})
            obs, se = float(rng.uniform(0.01, 0.02)), 0.002
            _write(d / "stationary.json", {
                "status": "completed", "phase": {"lr": lr / 100, "steps": 100},
                "observed": {"value": obs, "se": se, "correction": 0.0, "tau_steps": 3.0,
                             "n_eff": 30.0},
                "predicted": {"wang": {"value": 2 * obs, "se": 0.001},
                              "jastrzebski": {"value": obs / 2, "se": 0.0005},
                              "discrete_correction": 0.05},
                "ratios": {"wang": {"value": 2.0, "se": 0.1},
                           "jastrzebski": {"value": 0.5, "se": 0.05}},
                "relaxation": {"steps_x_lr_x_lambda_max": 10.0}, "wall_time_s": 0.5})
            truth[name] = dict(ts=ts, th=th, obs=obs, val=float(val[-1]))
    if diverged:
        d = root / f"{loss}_bs500_lr0.5_seed0"
        d.mkdir()
        _write(d / "run.json", {"status": "diverged", "config": {"batch_size": 500, "lr": 0.5,
                                                                 "loss": loss, "seed": 0}})
    return truth


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    truth = _make_runs(root)
    return root, truth


def test_table1_values_are_recomputed_from_the_run_files(runs_dir):
    root, truth = runs_dir
    rows = table1_rows(load_runs(root))
    assert len(rows) == len(CONFIGS) + 1           # + the diverged configuration
    for row in rows:
        names = [n for n in truth if n.startswith(f"kld_bs{row['batch_size']}_lr{row['lr']:g}_")]
        if not names:
            assert row["n_diverged"] == 1 and row["n"] == 0
            assert math.isnan(row["trace_grad_cov_mean"])
            continue
        ts = np.array([truth[n]["ts"] for n in names])
        th = np.array([truth[n]["th"] for n in names])
        obs = np.array([truth[n]["obs"] for n in names])
        assert row["n"] == 2 and row["bs_over_lr"] == pytest.approx(row["batch_size"] / row["lr"])
        assert row["trace_grad_cov_mean"] == pytest.approx(ts.mean())
        assert row["trace_grad_cov_sd"] == pytest.approx(ts.std(ddof=1))
        assert row["trace_hessian_mean"] == pytest.approx(th.mean())
        assert row["ratio_mean"] == pytest.approx(np.mean(ts / th))
        assert row["observed_excess"] == pytest.approx(obs.mean())
        assert row["observed_excess_se"] == pytest.approx(math.sqrt(2 * 0.002**2) / 2)
        assert row["predicted_wang"] == pytest.approx(2 * obs.mean())
        assert row["wang_over_observed"] == pytest.approx(2.0)
        assert row["val_acc_mean"] == pytest.approx(np.mean([truth[n]["val"] for n in names]))


def test_build_report_writes_every_artifact(runs_dir, tmp_path):
    root, _ = runs_dir
    out = tmp_path / "report"
    md = build_report(root, out)
    assert md == out / "report.md"
    with open(out / "table1.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == TABLE1_COLUMNS
        assert len(list(reader)) == len(CONFIGS) + 1
    text = md.read_text()
    for name in ("table1.csv", "table1.md", "stationary.csv", "fig2_kld.png", "fig4_kld.png",
                 "curve_distance_kld.png", "curve_distance.csv", "curve_distance.json"):
        assert (out / name).stat().st_size > 0
        assert f"({name})" in text
    for phrase in ("inference mode", "centred", "L2", "quadratic approximation", "Provenance",
                   "1 diverged", "abc123"):
        assert phrase in text


def test_load_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_runs(tmp_path / "missing")
    with pytest.raises(ValueError, match="no run folders"):
        load_runs(tmp_path)


def test_curve_distance_orders_pairs_and_has_a_noise_floor():
    t = np.arange(10.0)
    groups = []
    # log2(BS/LR) = 10, 11, 13 (x 0.69): curve offsets grow with the log ratio
    for bs, lr, shift in ((100, 0.1, 0.0), (200, 0.1, 0.05), (800, 0.1, 0.15)):
        base = 0.5 + 0.01 * t + shift
        groups.append({"batch_size": bs, "lr": lr,
                       "val_acc": np.stack([base, base + 0.002]), "epochs": t})
    d = curve_distance(groups)
    assert d["n_pairs"] == 3
    by = {(p["a"], p["b"]): p for p in d["pairs"]}
    p12 = by[("BS=100,LR=0.1", "BS=200,LR=0.1")]
    # seed pairs (0,0), (0,1), (1,0), (1,1): |Δ| = 0.05, 0.048, 0.052, 0.05
    assert p12["distance"] == pytest.approx(0.05)
    assert p12["dlog_ratio"] == pytest.approx(math.log(2))
    assert d["noise_floor"]["min"] == pytest.approx(0.002)
    assert d["noise_floor"]["max"] == pytest.approx(0.002)
    assert d["spearman_rho"] == pytest.approx(1.0)
    # all 3! label permutations; only the identity reaches ρ = 1
    assert d["n_permutations"] == 6 and d["mantel_p"] == pytest.approx(1 / 6)


def test_reference_ratio_and_classes():
    paper = [s / lr for s in (100, 200, 500) for lr in (0.08, 0.2, 0.5)]
    assert F.reference_ratio(paper) == pytest.approx(1000.0)
    classes = {round(r): F.ratio_class(r, 1000.0) for r in paper}
    assert classes == {1250: "near", 500: "near", 200: "far", 2500: "far", 1000: "equal",
                       400: "far", 6250: "far"}
    with pytest.raises(ValueError):
        F.reference_ratio([])


def test_figures_have_one_curve_per_configuration(runs_dir):
    root, _ = runs_dir
    runs = load_runs(root)
    figs = make_figures(runs)
    assert set(figs) == {"fig2_kld.png", "fig4_kld.png", "curve_distance_kld.png"}
    fig2 = figs["fig2_kld.png"][0]
    assert [len(ax.get_lines()) for ax in fig2.axes] == [len(CONFIGS), len(CONFIGS)]
    colours = sorted(line.get_color() for line in fig2.axes[1].get_lines())
    assert colours == sorted([F.COLOURS["equal"]] * 2 + [F.COLOURS["far"]])
    fig4 = figs["fig4_kld.png"][0]
    assert [len(ax.get_lines()) for ax in fig4.axes] == [2, 1]   # BS 100 and 200; all configs
    fig_cd = figs["curve_distance_kld.png"][0]
    scatter = [c for c in fig_cd.axes[0].collections if isinstance(c, PathCollection)]
    assert len(scatter) == 1 and len(scatter[0].get_offsets()) == 3
    assert len(learning_curve_groups(runs, "kld")) == len(CONFIGS)
