"""``sgd-minima smallnet``: config checks, planners, scoring, reports, exit status, and one tiny run.

Everything but the last test works on synthetic inputs and takes well under a
second each; the end-to-end run (slow) builds a 4-unit MLP (P = 310) on digits,
finds its minimum, and runs real SGD chains (~30 s on 2 idle cores).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import theory
from validation.cli import smallnet as cmd_smallnet
import validation.smallnet as smallnet_pkg
from validation.smallnet import run as sn
from validation.cli._args import UsageError
from validation.cli import _Parser


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own result cache, so none reads or writes the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, needle", [
    (dict(activation="sigmoid"), "activation"),
    (dict(hidden=(0,)), "hidden"),
    (dict(hidden="32"), "hidden"),
    (dict(hidden=()), "hidden"),
    (dict(l2=0.0), "l2"),
    (dict(l2=math.nan), "l2"),
    (dict(eta_h=(0.5, 2.0)), "eta_h"),
    (dict(eta_h=(-0.1,)), "eta_h"),
    (dict(eta_h=()), "eta_h"),
    (dict(eta_h=(0.2, 0.2)), "eta_h"),
    (dict(batch_sizes=(8, 0)), "batch_sizes"),
    (dict(batch_sizes=(8, 8)), "batch_sizes"),
    (dict(chains=1), "chains"),
    (dict(seed=-1), "seed"),
    (dict(steps=1), "steps"),
    (dict(probes=1.5), "probes"),
    (dict(out="  "), "out"),
])
def test_config_rejects_bad_values_naming_the_argument(kwargs, needle):
    with pytest.raises(ValueError) as info:
        sn.SmallnetConfig(**kwargs)
    msg = str(info.value)
    assert msg.startswith(needle)
    value = next(iter(kwargs.values()))
    # the message shows the offending value (or the offending element)
    shown = [repr(value)] + ([repr(x) for x in value] if isinstance(value, tuple) else [])
    assert any(s in msg for s in shown), msg


def test_config_flags_must_be_bools():
    with pytest.raises(TypeError, match="quick"):
        sn.SmallnetConfig(quick="yes")
    with pytest.raises(TypeError, match="replacement"):
        sn.SmallnetConfig(replacement=0)
    with pytest.raises(TypeError, match="cache"):
        sn.SmallnetConfig(cache="no")


def test_config_resolves_the_mode_defaults():
    d, q = sn.SmallnetConfig(), sn.SmallnetConfig(quick=True)
    assert (d.eta_h, d.batch_sizes, d.chains) == ((0.05, 0.2, 0.5, 1.0), (8, 64), 32)
    assert (q.eta_h, q.batch_sizes, q.chains) == ((0.2, 1.0), (8, 64), 16)
    c = sn.SmallnetConfig(quick=True, eta_h=[0.3], hidden=16, chains=4)
    assert (c.eta_h, c.hidden, c.chains) == ((0.3,), (16,), 4)


def test_cli_arguments_build_the_config(tmp_path, monkeypatch):
    p = _Parser(prog="smallnet")
    cmd_smallnet.add_arguments(p)
    args = p.parse_args(["--out", str(tmp_path), "--eta-h", "0.1,0.4", "--batch-sizes", "16",
                         "--hidden", "8,8", "--quick", "--quiet", "--without-replacement",
                         "--no-cache"])
    seen = {}
    monkeypatch.setattr(smallnet_pkg, "run_smallnet", lambda cfg: seen.setdefault("cfg", cfg) and 0)
    assert cmd_smallnet.run(args) == 0
    cfg = seen["cfg"]
    assert (cfg.eta_h, cfg.batch_sizes, cfg.hidden, cfg.chains) == ((0.1, 0.4), (16,), (8, 8), 16)
    assert cfg.quick and cfg.quiet and not cfg.replacement and not cfg.cache and cfg.out == str(tmp_path)
    with pytest.raises(UsageError, match="--eta-h"):
        p.parse_args(["--out", "x", "--eta-h", "0.1,fast"])
    with pytest.raises(ValueError, match=r"eta_h must lie in \(0, 2\).*2\.5"):
        cmd_smallnet.run(p.parse_args(["--out", "x", "--eta-h", "2.5"]))


# ----------------------------------------------------------------------------- planners

def _problem(d=5, seed=0):
    """SPD H and a PSD, non-diagonal Σ that does not commute with H."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    h = a @ a.T / d + 0.05 * np.eye(d)
    b = rng.normal(size=(d, 3))
    return h, b @ b.T


def _brute_force_excess(h, s, lr, c, steps):
    """E_t = ½ tr(H C_t) by iterating C_{t+1} = A C_t A + η² c Σ from C_0 = 0 (full matrices)."""
    a = np.eye(len(h)) - lr * h
    cov, out = np.zeros_like(h), []
    for _ in range(steps + 1):
        out.append(0.5 * np.trace(h @ cov))
        cov = a @ cov @ a + lr * lr * c * s
    return np.array(out)


@pytest.mark.parametrize("eta_h", [0.1, 1.3])
def test_burn_in_planner_matches_the_brute_force_recursion(eta_h):
    h, s = _problem()
    evals, u = np.linalg.eigh(h)
    lr, c = eta_h / evals[-1], 1 / 8
    s_tilde = np.diag(u.T @ s @ u)
    limit = theory.expected_loss_discrete(h, s, lr, 8)
    e_t = _brute_force_excess(h, s, lr, c, 4000)
    missing = 1 - e_t / limit
    t_grid = np.array([0, 1, 7, 50, 400])
    np.testing.assert_allclose(sn.missing_fraction(evals, s_tilde, lr, t_grid), missing[t_grid],
                               rtol=1e-9, atol=1e-12)
    for target in (0.3, 0.01, 1e-4):
        t, frac, capped = sn.plan_burn_in(evals, s_tilde, lr, target=target)
        assert not capped
        assert missing[t] < target <= missing[t - 1]       # the smallest such t
        assert frac == pytest.approx(missing[t], rel=1e-9, abs=1e-12)
    t, frac, capped = sn.plan_burn_in(evals, s_tilde, lr, target=1e-4, max_steps=3)
    assert capped and t == 3 and frac == pytest.approx(missing[3], rel=1e-9)


def test_window_planner_matches_the_brute_force_autocovariance():
    h, s = _problem(seed=1)
    evals, u = np.linalg.eigh(h)
    lr, c, n_chains, rel = 0.7 / evals[-1], 1 / 4, 8, 0.02
    # independent reference in the original basis: Σ_k Cov(L_0, L_k) for a stationary
    # Gaussian chain, Cov = ½ tr(H C A^k H A^k C), C the discrete covariance from theory.
    cov = theory.sgd_covariance(h, s, lr, 4, discrete=True)
    a = np.eye(len(h)) - lr * h
    ak, var_l, total = np.eye(len(h)), None, 0.0
    for k in range(100_000):
        term = 0.5 * np.trace(h @ cov @ ak @ h @ ak @ cov)
        var_l = term if k == 0 else var_l
        total += term if k == 0 else 2 * term
        if term < 1e-16 * total:     # geometric tail below round-off
            break
        ak = ak @ a
    mean = theory.expected_loss_discrete(h, s, lr, 4)
    steps, ess = sn.plan_window(evals, u.T @ s @ u, lr, c, n_chains, rel_se=rel)
    assert steps == math.ceil(total / (n_chains * (rel * mean) ** 2))
    assert ess == pytest.approx(var_l / total, rel=1e-9)


def test_discrete_law_in_blocks_equals_theory_on_the_full_matrices():
    h, s = _problem(d=40, seed=2)
    evals, u = np.linalg.eigh(h)
    s_tilde = np.diag(u.T @ s @ u)
    for repl, n in ((True, None), (False, 50)):
        want = theory.expected_loss_discrete(h, s, 1.1 / evals[-1], 8, n_data=n, replacement=repl)
        got = sn._discrete_law(evals, s_tilde, 1.1 / evals[-1], 8, n_data=n, replacement=repl,
                               block=7)
        assert got == pytest.approx(want, rel=1e-12)


def test_probe_target_halves_the_observed_se_at_the_noisiest_batch():
    # ΔE1 = (η/2) c² tr = 0.5·1·0.25·2 = 0.25; want SE(ΔE1) = ½·0.02·E_disc(=1) = 0.01 → 4% of tr
    assert sn._probe_target(sn.DEFAULT, 0.02, 2.0, 1.0, 0.5, 1.0) == pytest.approx(0.04)
    # a tiny ΔE1 never asks for less than the mode's cap
    assert sn._probe_target(sn.DEFAULT, 0.02, 1e-9, 1.0, 0.5, 1.0) == sn.DEFAULT.probe_rel_se


@pytest.mark.parametrize("n_sketch, eigenbasis", [(1, False), (8, False), (8, True)])
def test_sketched_trace_matches_theory_with_explicit_per_example_hessians(n_sketch, eigenbasis):
    rng = np.random.default_rng(4)
    d, n, lr = 6, 20, 0.4
    a = rng.normal(size=(n, d, 2))
    stack = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(d)        # H_i, PSD, not commuting
    h = stack.mean(axis=0)
    g = rng.normal(size=(n, d))
    sigma = np.cov(g.T, bias=True)
    # reference: theory's exact ΔE1 at S = 1 (c_S = 1) is (η/2)·tr[W K(C0)]
    want = theory.state_dependent_correction(h, sigma, lr, 1, per_example_hessians=stack) / (lr / 2)
    c0 = theory.sgd_covariance(h, sigma, lr, 1, discrete=True)
    evals, u = np.linalg.eigh(h)
    if eigenbasis:      # C0 = U F̃ F̃ᵀ Uᵀ, as the experiment passes it
        from dnn.exact.state_noise import c0_factor_eigenbasis

        factor = c0_factor_eigenbasis(evals, u.T @ sigma @ u, lr, noise_factor=1.0)
        np.testing.assert_allclose(u @ factor @ factor.T @ u.T, c0, rtol=1e-10, atol=1e-14)
    else:
        factor = np.linalg.cholesky(c0)
    mean, se, k = sn.sketched_trace_wk(lambda v, idx: stack[idx] @ v, factor,
                                       evals, u, lr, n, rng=np.random.default_rng(5),
                                       n_sketch=n_sketch, min_probes=3000, max_probes=3000,
                                       batch_size=7, factor_in_eigenbasis=eigenbasis)
    assert k == 3000 and se < 0.05 * want            # the check has power
    assert abs(mean - want) < 4 * se, (mean, se, want)


def test_sketched_trace_stops_at_the_target_set_by_the_running_mean():
    rng = np.random.default_rng(6)
    stack = rng.normal(size=(10, 3, 3))
    stack = stack @ stack.transpose(0, 2, 1)
    evals, u = np.linalg.eigh(stack.mean(axis=0))
    seen = []

    def target(mean):
        seen.append(mean)
        return 0.05

    mean, se, k = sn.sketched_trace_wk(lambda v, idx: stack[idx] @ v, np.eye(3), evals, u,
                                       0.5 / evals[-1], 10, rng=rng, min_probes=10,
                                       max_probes=5000, target_rel_se=target)
    assert 10 <= k < 5000 and se <= 0.05 * mean
    assert len(seen) == k - 9                          # checked from the 10th probe on


# ----------------------------------------------------------------------------- scoring

def test_score_propagates_the_prediction_se():
    p = sn.score(1.0, 0.1, 0.5)
    assert p["z"] == pytest.approx(5.0) and p["rel_error"] == pytest.approx(-0.5)
    assert not p["agrees"] and "se" not in p
    q = sn.score(1.0, 0.1, 0.5, 0.1)
    assert q["z"] == pytest.approx(0.5 / math.sqrt(0.02)) and q["agrees"] and q["se"] == 0.1


def _row(eta_h=0.5, s=8, observed=1.0, se=0.05, drift=0.3, n_chains=8, n_diverged=0,
         values=(0.2, 5.0, 0.4, 0.95, 0.97), sd_se=0.02):
    preds = {k: sn.score(observed, se, v, sd_se if k in ("state_dependent", "linear") else 0.0)
             for k, v in zip(sn.PREDICTIONS, values)}
    if "linear" in preds:
        preds["linear"].update(exists=True, n_diverged=0)
    lr = eta_h / 0.3
    return {"eta_h_max": eta_h, "lr": lr, "batch_size": s, "observed": observed,
            "observed_se": se, "drift_z": drift, "n_chains": n_chains, "n_diverged": n_diverged,
            "noise_factor": 1 / s, "predictions": preds, "verdict": sn.row_verdict(preds),
            "theta_free": {"value": 0.97, "se": 0.04, "z": 0.9, "rel_error": -0.03},
            "identity_ratio": {"value": 1.0, "se": 0.01}}


def test_row_verdict_and_summary():
    row = _row()
    v = row["verdict"]
    assert v["agree"] == ["state_dependent", "linear"]
    assert v["rejected"] == ["wang", "jastrzebski", "discrete"]
    assert "wang -80%" in v["text"]
    s = sn.summary_verdict([row, _row(eta_h=0.05, values=(0.99, 5.0, 1.0, 1.0, 1.0))])
    assert s["wang"]["n_agree"] == 1 and s["wang"]["n_rows"] == 2
    assert s["wang"]["rel_error_min"] == pytest.approx(-0.8)
    assert s["jastrzebski"]["n_agree"] == 0 and s["diverged"] == []
    assert s["theta_free"]["n_agree"] == 2
    # a fluctuation-dissipation identity off by >= 4 SE is flagged (a stationarity diagnostic)
    bad = _row(s=64) | {"identity_ratio": {"value": 1.02, "se": 0.004}}
    lines = sn.verdict_lines(_results([row, bad]))
    assert sum("identity ratio" in x for x in lines) == 1
    assert any("S=64: identity ratio 1.0200 ± 0.004 (z = +5.0)" in x for x in lines)


@pytest.mark.parametrize("change, sound", [
    ({}, True),
    ({"drift_z": 3.9}, True),
    ({"drift_z": -4.1}, False),
    ({"drift_z": math.nan}, False),
    ({"n_diverged": 3}, True),          # counted and reported, the rest still measure
    ({"n_diverged": 7}, False),         # one chain left: no SE
])
def test_soundness(change, sound):
    rows = [_row(), _row(s=64) | change]
    ok, reasons = sn.soundness(rows)
    assert ok is sound and (len(reasons) == 0) is sound
    if not sound:
        assert "S=64" in reasons[0]


# ----------------------------------------------------------------------------- reports + exit

def _results(rows):
    net = {"activation": "tanh", "hidden": [32], "P": 2410, "l2": 1e-3, "n_data": 1797,
           "loss_star": 0.1, "grad_norm": 1e-12, "train_accuracy": 1.0, "h_min": 1e-5, "h_max": 0.3,
           "trace_sigma": 0.58, "trace_h": 15.9, "trace_h_data": 11.1, "trace_h_l2": 4.82}
    grid = np.geomspace(0.1, 6.0, 5)
    sound, reasons = sn.soundness(rows)
    return {"network": net, "rows": rows, "sound": sound, "sound_reasons": reasons,
            "verdict": sn.summary_verdict(rows),
            "curves": {"lr": grid.tolist(), "wang_per_c": (grid * 0.145).tolist(),
                       "jastrzebski_per_c": (grid * 3.98).tolist(),
                       "discrete_per_c": (grid * 0.16).tolist()}}


def test_run_writes_the_files_and_exits_0_when_sound(tmp_path, monkeypatch, capsys):
    rows = [_row(), _row(s=64, n_diverged=2)]
    monkeypatch.setattr(sn, "smallnet_results", lambda cfg: _results(rows) | {"seeds": {"init": 0}})
    out = tmp_path / "out"
    assert sn.run_smallnet(sn.SmallnetConfig(out=str(out), quiet=True)) == 0
    data = json.loads((out / "smallnet.json").read_text())
    assert data["provenance"]["config"]["out"] == str(out)
    assert data["provenance"]["git_commit"] is not None and "jax" in data["provenance"]["versions"]
    md = (out / "smallnet.md").read_text()
    assert md.count("\n| 0.5 |") == 2 and "2 of 8" in md and "DIVERGED: 2 of 8" in md
    assert (out / "smallnet.png").stat().st_size > 10_000
    assert not list(out.glob(".*tmp*"))          # atomic writes leave no temporaries
    text = capsys.readouterr().out
    assert "SOUND: every setting" in text and "NOT SOUND" not in text
    assert "Wang (12): agrees within 4 SE in 0 of 2" in text


def test_run_exits_1_when_a_setting_is_not_stationary(tmp_path, monkeypatch, capsys):
    rows = [_row(), _row(s=64, drift=6.0)]
    monkeypatch.setattr(sn, "smallnet_results", lambda cfg: _results(rows) | {"seeds": {"init": 0}})
    written = []
    monkeypatch.setattr(sn, "write_outputs", lambda results, out: written.append(results) or [])
    assert sn.run_smallnet(sn.SmallnetConfig(out=str(tmp_path), quiet=True)) == 1
    assert written and written[0]["sound"] is False
    assert "NOT SOUND: eta*h_max=0.5, S=64: not stationary, drift z = +6.0" in capsys.readouterr().out


def test_a_setting_whose_chains_all_diverged_is_not_scored():
    p = sn.score(math.nan, math.nan, 0.5)
    assert p["agrees"] is None and math.isnan(p["z"]) and math.isnan(p["rel_error"])
    dead = _row(s=64, observed=math.nan, se=math.nan, n_diverged=8)
    dead["theta_free"] = {"value": math.nan, "se": math.nan, "z": math.nan, "rel_error": math.nan}
    assert dead["verdict"] == {"agree": [], "rejected": [], "text": "no measurement (every chain diverged)"}
    s = sn.summary_verdict([_row(), dead])
    # neither a confirmation nor a rejection: only the measured setting counts
    assert all(s[k]["n_rows"] == 1 for k in sn.PREDICTIONS) and s["theta_free"]["n_rows"] == 1
    assert s["state_dependent"]["n_agree"] == 1 and s["wang"]["n_agree"] == 0
    assert s["diverged"] == [{"eta_h_max": 0.5, "batch_size": 64, "n_diverged": 8, "n_chains": 8}]
    assert sn.soundness([_row(), dead])[0] is False


def test_tables_redraw_from_the_saved_json(tmp_path):
    from validation.smallnet.report import load_results, write_outputs

    dead = _row(s=64, observed=math.nan, se=math.nan, n_diverged=8)
    results = _results([_row(), dead])
    write_outputs(results, tmp_path)
    saved = load_results(tmp_path / "smallnet.json")
    assert math.isnan(saved["rows"][1]["observed"])           # "nan" in the file, a float again
    md = (tmp_path / "smallnet.md").read_text()
    assert sn.markdown_table(saved) in md
    rows = [line for line in md.splitlines() if line.startswith("| 0.5 |")]
    assert rows[1].count("(no measurement)") == 5 and "✗" not in rows[1]
    assert rows[0].count("✗") == 3                  # wang, jastrzebski, discrete rejected
    assert sn.console_table(saved) == sn.console_table(results)
    (tmp_path / "bad.json").write_text("{\"rows\": []")
    with pytest.raises(ValueError, match="bad.json"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a smallnet.json"):
        (tmp_path / "other.json").write_text("[]")
        load_results(tmp_path / "other.json")


def test_figure_has_one_panel_per_batch_size_with_four_predictions():
    import matplotlib.pyplot as plt

    fig = sn.figure(_results([_row(), _row(eta_h=0.1), _row(s=64)]))
    try:
        axes = fig.axes
        assert [a.get_title() for a in axes] == ["S = 8", "S = 64"]
        labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
        for name in ("Wang (12)", "Jastrzębski (6)", "discrete law"):
            assert name in labels
        assert any(x.startswith("discrete + ΔE₁") for x in labels)
        # the observed points carry ±2 SE bars
        bars = axes[0].containers[1]
        seg = bars.lines[2][0].get_segments()[0]
        assert seg[1][1] - seg[0][1] == pytest.approx(4 * 0.05)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- end to end

SCHEMA_NETWORK = {"P", "l2", "loss_star", "grad_norm", "train_accuracy", "trace_sigma", "trace_h",
                  "trace_h_data", "trace_h_l2", "h_min", "h_max"}
SCHEMA_ROW = {"lr", "batch_size", "eta_h_max", "observed", "observed_se", "drift_z", "n_chains",
              "n_diverged", "predictions", "theta_free", "linear", "rho_minus_1", "settled",
              "settle", "accounting"}


@pytest.mark.slow
def test_tiny_network_end_to_end(tmp_path):
    """hidden 4 (P = 310), η·h_max = 0.1, S = 64: the discrete law, and the law plus ΔE1,
    must match real SGD within 4 SE (the state-dependent term is small here: c_S² η)."""
    out = tmp_path / "tiny"
    cfg = sn.SmallnetConfig(hidden=(4,), eta_h=(0.1,), batch_sizes=(64,), chains=8, probes=6,
                            quiet=True, out=str(out))
    assert sn.run_smallnet(cfg) == 0
    r = json.loads((out / "smallnet.json").read_text())
    net = r["network"]
    assert SCHEMA_NETWORK <= set(net) and net["P"] == 310 and net["grad_norm"] <= 1e-8
    assert net["trace_h"] == pytest.approx(net["trace_h_data"] + net["trace_h_l2"], rel=1e-12)
    assert net["trace_h_l2"] == pytest.approx(2 * 1e-3 * 310)
    (row,) = r["rows"]
    assert SCHEMA_ROW <= set(row) and row["n_diverged"] == 0 and row["n_chains"] == 8
    for k in sn.PREDICTIONS:
        assert {"value", "z"} <= set(row["predictions"][k])
    assert {"value", "se"} <= set(row["theta_free"])
    assert row["lr"] == pytest.approx(0.1 / net["h_max"])
    # theory's own functions on the saved traces
    assert row["predictions"]["wang"]["value"] == pytest.approx(
        theory.expected_loss_wang(net["trace_sigma"], row["lr"], 64), rel=1e-12)
    assert row["predictions"]["jastrzebski"]["value"] == pytest.approx(
        theory.expected_loss_jastrzebski(net["trace_h"], row["lr"], 64), rel=1e-12)
    assert abs(row["drift_z"]) < sn.Z_MAX
    assert abs(row["predictions"]["discrete"]["z"]) < sn.Z_MAX, row
    assert abs(row["predictions"]["state_dependent"]["z"]) < sn.Z_MAX, row
    assert set(r["timings"]) >= {"minimum", "exact", "probes", "chains", "stability", "total"}
    assert (out / "smallnet.md").is_file() and (out / "smallnet.png").is_file()
    # the linear prediction, ρ and the accounting exist, and the accounting sums to obs
    lin = row["predictions"]["linear"]
    assert {"value", "se", "z", "rel_error", "agrees", "n_diverged"} <= set(lin)
    assert row["settled"] and row["rho_minus_1"]["value"] < 0 and lin["exists"]
    terms = row["accounting"]["terms"]
    assert sum(t["value"] for t in terms.values()) == pytest.approx(row["observed"], rel=1e-12)
    (block,) = r["stability"]["per_batch_size"]
    assert block["linear_edge"]["eta_h_max"] > 0.1 and block["linear_edge"]["confirmed"]
    assert (out / "stability.png").is_file() and net["preprocess"] == "global"
