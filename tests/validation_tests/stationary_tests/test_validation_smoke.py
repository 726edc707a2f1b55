"""The smoke preset end to end: train, estimate, stationary phase, report (one run per session)."""

import csv
import json
import math
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import PathCollection

from validation.grid import get_preset, grid_runs, run_grid
from validation.report import TABLE1_COLUMNS, load_runs, make_figures
from dnn.stationary_summary import measure_traces

pytestmark = pytest.mark.slow

STAGE_FILES = ("run.json", "estimates.json", "stationary.json")


# Here rather than in a conftest.py: tests/dnn_tests has one too, and with --doctest-modules two
# rootless conftest modules of the same name collide.
@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """``run_grid("smoke")`` then ``build_report``, once per session."""
    from validation.report import build_report

    root = tmp_path_factory.mktemp("smoke")
    t0 = time.perf_counter()
    summary = run_grid("smoke", root / "runs", quiet=True)
    t1 = time.perf_counter()
    report = build_report(root / "runs", root / "report")
    return SimpleNamespace(root=root, runs=root / "runs", report_dir=root / "report",
                           report=report, summary=summary, grid_seconds=t1 - t0,
                           report_seconds=time.perf_counter() - t1)


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_every_run_completes_all_stages(smoke):
    runs = grid_runs("smoke")
    s = smoke.summary
    assert s["n_trained"] == len(runs) and s["n_failed"] == 0 and s["n_skipped"] == 0
    for r in runs:
        d = smoke.runs / r.name
        for name in STAGE_FILES:
            assert (d / name).is_file(), f"{r.name}: {name} missing"
        assert _read(d / "run.json")["status"] == "completed"
        st = _read(d / "stationary.json")
        assert st["status"] == "completed" and st["schema_version"] == 2
        ph = st["phase"]
        assert ph["lr"] == pytest.approx(r.lr * 0.1)   # final LR after the milestone
        # the primary estimate is (η_s/4)·mean‖ĝ_k‖² over every recorded step
        assert len(ph["grad_sqnorm"]) == ph["steps"] == len(ph["anchored_dot"])
        assert st["observed"]["value"] == pytest.approx(
            0.25 * ph["lr"] * np.mean(ph["grad_sqnorm"]), rel=1e-9)
        assert st["observed"]["se"] > 0 and st["predicted"]["wang"]["value"] > 0
        assert st["polyak"]["se"] > 0 and math.isfinite(st["identity"]["value"])
        diag = st["diagnostics"]
        assert isinstance(diag["stationary"], bool) and diag["stationary"] == (not diag["failed"])
        assert s["runs"][r.name]["ran"] == ["train", "estimate", "stationary"]


def test_table1_matches_the_run_files(smoke):
    with open(smoke.report_dir / "table1.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == TABLE1_COLUMNS
        rows = list(reader)
    p = get_preset("smoke")
    assert len(rows) == len(p.losses) * len(p.configurations())
    for row in rows:
        names = [r.name for r in grid_runs("smoke", row["loss"])
                 if r.batch_size == int(row["batch_size"]) and r.lr == float(row["lr"])]
        traces = [measure_traces(_read(smoke.runs / n / "estimates.json")) for n in names]
        ts = np.array([t[0] for t in traces])
        th = np.array([t[2] for t in traces])
        assert int(row["n"]) == len(names) == len(p.seeds)
        assert float(row["trace_grad_cov_mean"]) == pytest.approx(ts.mean(), rel=1e-9)
        assert float(row["trace_grad_cov_sd"]) == pytest.approx(ts.std(ddof=1), rel=1e-9)
        assert float(row["trace_hessian_mean"]) == pytest.approx(th.mean(), rel=1e-9)
        assert float(row["trace_hessian_sd"]) == pytest.approx(th.std(ddof=1), rel=1e-9)
        assert float(row["ratio_mean"]) == pytest.approx(np.mean(ts / th), rel=1e-9)
        st = [_read(smoke.runs / n / "stationary.json") for n in names]
        obs = [s["observed"]["value"] for s in st]
        se = [s["observed"]["se"] for s in st]
        assert float(row["observed_excess"]) == pytest.approx(np.mean(obs), rel=1e-9)
        assert float(row["observed_excess_se"]) == pytest.approx(
            math.sqrt(np.sum(np.square(se))) / len(se), rel=1e-9)
        wang = [s["predicted"]["wang"]["value"] for s in st]
        assert float(row["predicted_wang"]) == pytest.approx(np.mean(wang), rel=1e-9)
        polyak = [s["polyak"]["value"] for s in st]
        assert float(row["polyak_excess"]) == pytest.approx(np.mean(polyak), rel=1e-9)
        assert int(row["n_phases"]) == len(st)
        assert int(row["n_stationary"]) == sum(s["diagnostics"]["stationary"] for s in st)
        val = [_read(smoke.runs / n / "history.json")["epochs"][-1]["val_accuracy"]
               for n in names]
        assert float(row["val_acc_mean"]) == pytest.approx(np.mean(val), rel=1e-9)
    md = (smoke.report_dir / "table1.md").read_text()
    assert md.count("\n") == 2 + len(rows)


def test_figures_are_pngs_with_one_curve_per_configuration(smoke):
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    p = get_preset("smoke")
    n_cfg = len(p.configurations())
    n_bs = len({s for s, _ in p.configurations()})
    figs = make_figures(load_runs(smoke.runs))
    expected = {f"{kind}_{loss}.png" for loss in p.losses for kind in ("fig4", "curve_distance")}
    assert set(figs) == expected | {"fig2_kld.png", "fig3_logit_grad.png"}
    for name, (fig, meta) in figs.items():
        if meta["kind"] == "learning_curves":
            assert [len(ax.get_lines()) for ax in fig.axes] == [n_cfg, n_cfg]
        elif name.startswith("fig4_"):
            assert [len(ax.get_lines()) for ax in fig.axes] == [n_bs, 1]
        else:
            pts = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
            assert len(pts[0].get_offsets()) == n_cfg * (n_cfg - 1) // 2
            assert meta["distance"]["noise_floor"] is not None
        plt.close(fig)
        img = mpimg.imread(smoke.report_dir / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert float(np.ptp(img[..., :3])) > 0          # not a blank canvas


def test_report_says_how_many_phases_pass_the_checks(smoke):
    st = [_read(smoke.runs / r.name / "stationary.json") for r in grid_runs("smoke")]
    k = sum(s["diagnostics"]["stationary"] for s in st)
    text = smoke.report.read_text()
    assert f"{k} of {len(st)} completed stationary phases pass the stationarity checks" in text
    with open(smoke.report_dir / "stationary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["stationary"] == "yes" for r in rows) == k
    assert all(bool(r["failed"]) == (r["stationary"] == "no") for r in rows)


def test_report_links_existing_files(smoke):
    import re

    text = smoke.report.read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert (smoke.report_dir / link).is_file(), link
    assert "## Conventions" in text and "## Provenance" in text


def test_second_invocation_trains_nothing(smoke):
    before = {p: p.stat().st_mtime_ns for r in grid_runs("smoke")
              for p in (smoke.runs / r.name / f for f in STAGE_FILES)}
    again = run_grid("smoke", smoke.runs, quiet=True)
    assert again["n_trained"] == 0 and again["n_skipped"] == len(before) // len(STAGE_FILES)
    assert all(not e["ran"] for e in again["runs"].values())
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before


def test_interrupted_run_resumes_and_only_missing_stages_run(smoke, tmp_path):
    # An interrupted run: run.json still says "running" and the stationary phase is missing.
    spec = grid_runs("smoke", "kld")[0]
    dst = tmp_path / spec.name
    shutil.copytree(smoke.runs / spec.name, dst)
    (dst / "stationary.json").unlink()
    info = _read(dst / "run.json")
    info["status"] = "running"
    (dst / "run.json").write_text(json.dumps(info))
    history = _read(dst / "history.json")["epochs"]
    res = run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True)
    entry = res["runs"][spec.name]
    assert entry["status"] == "completed"
    assert entry["ran"] == ["train", "stationary"]      # the estimates were still there
    assert _read(dst / "history.json")["epochs"] == history   # no epoch repeated or added
    assert (dst / "stationary.json").is_file()
