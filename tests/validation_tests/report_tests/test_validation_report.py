"""Report builders on hand-written run folders: values, curve distance, colours, figures."""

import csv
import json
import math

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from validation.report import figures as F
from validation.report import (
    TABLE1_COLUMNS,
    build_report,
    curve_distance,
    learning_curve_groups,
    load_runs,
    make_figures,
    scan_runs,
    table1_markdown,
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
            ok = seed == 0                        # one phase per configuration passes
            _write(d / "stationary.json", {
                "schema_version": 2, "status": "completed",
                "phase": {"lr": lr / 100, "steps": 100},
                "observed": {"value": obs, "se": se, "tau_steps": 3.0, "n_eff": 30.0},
                "polyak": {"value": obs / 2, "se": 0.001, "correction": 0.0},
                "identity": {"value": 0.99, "se": 0.01, "sqdist_start": 1.0, "sqdist_end": 1.1},
                "diagnostics": {"stationary": ok, "drift_loss": {"z": 0.5},
                                "drift_grad_sqnorm": {"z": 5.0 if not ok else -0.5},
                                "failed": [] if ok else ["grad_sqnorm drift z = 5 (|z| >= 4)"]},
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
        assert row["polyak_excess"] == pytest.approx(obs.mean() / 2)
        assert row["polyak_excess_se"] == pytest.approx(math.sqrt(2 * 0.001**2) / 2)
        assert row["identity_ratio"] == pytest.approx(0.99)
        assert (row["n_phases"], row["n_stationary"]) == (2, 1)
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
    for phrase in ("inference mode", "centred", "L2", "needs no θ*", "Assumptions",
                   "quadratic over the range", "BN statistics frozen", "Identity ratio",
                   "Provenance", "1 diverged", "abc123",
                   f"{len(CONFIGS)} of {2 * len(CONFIGS)} completed stationary phases pass"):
        assert phrase in text
    assert "## Skipped" not in text


def test_records_from_before_momentum_read_as_plain_sgd(runs_dir, tmp_path):
    # these fixtures have no "momentum" in run.json's config nor in stationary.json's
    # phase: both were plain SGD, and the report says β = β_s = 0
    root, _ = runs_dir
    rows = table1_rows(load_runs(root))
    assert all(r["momentum"] == 0.0 for r in rows)
    assert all(r["stationary_momentum"] == 0.0 for r in rows if r["n_phases"])
    text = build_report(root, tmp_path / "report").read_text()
    assert "Training momentum β = 0; stationary phases at momentum β_s = 0" in text


def test_table1_markdown_shows_k_of_n_stationary_and_both_methods(runs_dir):
    root, _ = runs_dir
    md = table1_markdown(table1_rows(load_runs(root)))
    header = md.splitlines()[0]
    for col in ("observed (θ*-free) ± SE", "stationary", "Polyak ± SE", "identity ratio"):
        assert col in header
    assert md.count(" 1/2 ") == len(CONFIGS)


def _garbage(root):
    """Sub-folders that are not runs, each for a different reason."""
    (root / "empty").mkdir(parents=True)
    (root / "bad_json").mkdir()
    (root / "bad_json" / "run.json").write_text("{not json")
    (root / "a_list").mkdir()
    (root / "a_list" / "run.json").write_text("[1, 2]")
    (root / "no_config").mkdir()
    (root / "no_config" / "run.json").write_text('{"status": "completed"}')
    (root / "grid.json").write_text("{}")          # a file: not a folder, ignored
    return {"empty": "no run.json", "bad_json": "run.json unreadable",
            "a_list": "not a JSON object", "no_config": "no config"}


def test_load_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_runs(tmp_path / "file")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match="no run folders"):
        load_runs(tmp_path / "runs")
    reasons = _garbage(tmp_path / "runs")
    with pytest.raises(ValueError, match="no usable run folders") as exc:
        load_runs(tmp_path / "runs")
    for name, why in reasons.items():
        assert f"{name}: " in str(exc.value) and why in str(exc.value)


def test_skipped_folders_and_bad_files_are_listed_not_hidden(runs_dir, tmp_path):
    root, truth = runs_dir
    reasons = _garbage(root)
    name = sorted(truth)[0]
    (root / name / "estimates.json").write_text('{"trace_grad_cov": ')         # truncated
    old = sorted(truth)[1]
    _write(root / old / "stationary.json", {"status": "completed", "phase": {},
                                            "observed": {"value": 1.0, "se": 0.1}})
    scan = scan_runs(root)
    assert {n for n, _ in scan.skipped} == set(reasons)
    assert len(scan.runs) == len(truth) + 1                     # + the diverged run
    notes = dict(scan.notes)
    assert "estimates.json unreadable" in notes[name]
    assert "older schema" in notes[old]
    lines = []
    md = build_report(root, tmp_path / "report", log=lines.append).read_text()
    assert len(lines) == len(reasons) + 2
    for n, why in reasons.items():
        assert any(line.startswith(f"skipped {root / n}: ") and why in line for line in lines)
        assert f"- `{n}`: " in md
    assert "## Skipped" in md and "older schema" in md
    # the outdated record is not used: that configuration has one phase left
    rows = {(r["batch_size"], r["lr"]): r for r in table1_rows(scan.runs)}
    cfg = next(c for c in CONFIGS if old.startswith(f"kld_bs{c[0]}_lr{c[1]:g}_"))
    assert rows[cfg]["n_phases"] == 1


def test_cli_report_exit_codes(runs_dir, tmp_path, capsys):
    from validation.cli import main

    root, _ = runs_dir
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    _garbage(tmp_path / "garbage")
    for bad in ("missing", "afile", "empty", "garbage"):
        out = tmp_path / f"out_{bad}"
        assert main(["report", str(tmp_path / bad), "--out", str(out)]) == 2, bad
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and str(tmp_path / bad) in err, err
        assert "Traceback" not in err and not out.exists()
    # partly garbage: the report is built, exit 0, and every skipped folder is on stderr
    _garbage(root)
    assert main(["report", str(root), "--out", str(tmp_path / "ok")]) == 0
    cap = capsys.readouterr()
    assert "wrote" in cap.out
    assert sum(line.startswith("sgd-minima report: skipped ") for line in
               cap.err.splitlines()) == 4


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
