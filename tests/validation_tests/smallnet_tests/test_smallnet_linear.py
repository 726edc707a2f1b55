"""``smallnet``'s linear prediction, accounting, settling, stability report and input scaling.

All on synthetic rows and small arrays (well under a second each), except the settle loop,
which runs real chains on a 4-unit MLP over 150 digits (slow).
"""

import json
import math

import numpy as np
import pytest

import validation.smallnet as smallnet_pkg
from validation.cli import _Parser, main
from validation.cli import smallnet as cmd_smallnet
from validation.smallnet import run as sn
from validation.smallnet.accounting import SHARE_TARGET, accounting, accounting_lines
from validation.smallnet.measure import is_settled
from validation.smallnet.report import load_results, stability_figure, write_outputs


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _linear(obs_chains, lin_chains, n_diverged=0, n_chains=None):
    o, l_ = np.asarray(obs_chains, float), np.asarray(lin_chains, float)
    n = o.size
    d = o - l_
    return {"value": float(l_.mean()), "se": float(l_.std(ddof=1) / math.sqrt(n)), "n": n,
            "n_chains": n_chains or n, "n_diverged": n_diverged, "diverged_steps": [],
            "drift_z": 0.1, "identity_ratio": {"value": 1.0, "se": 0.01},
            "dist_sq": {"value": 1.0, "se": 0.1, "n": n},
            "paired": {"obs_minus_linear": float(d.mean()),
                       "se": float(d.std(ddof=1) / math.sqrt(n)), "n": n},
            "per_chain": {"observed": o.tolist(), "linear": l_.tolist()}, "seconds": 1.0}


def _row(eta_h=0.2, s=8, obs_chains=None, lin_chains=None, wang=0.5, disc=0.55, n_diverged=0,
         settled=True):
    rng = np.random.default_rng(int(eta_h * 100) + s)
    o = np.asarray(obs_chains if obs_chains is not None else 1.0 + 0.05 * rng.normal(size=8))
    l_ = np.asarray(lin_chains if lin_chains is not None else o - 0.1 + 0.01 * rng.normal(size=8))
    obs, se = float(o.mean()), float(o.std(ddof=1) / math.sqrt(o.size))
    preds = {"wang": sn.score(obs, se, wang), "jastrzebski": sn.score(obs, se, 9.0),
             "discrete": sn.score(obs, se, disc), "state_dependent": sn.score(obs, se, 0.7, 0.01)}
    return {"eta_h_max": eta_h, "lr": eta_h / 0.3, "batch_size": s, "observed": obs,
            "observed_se": se, "drift_z": 0.2, "n_chains": o.size, "n_diverged": 0,
            "noise_factor": 1 / s, "predictions": preds,
            "theta_free": {"value": obs, "se": se, "z": 0.1, "rel_error": 0.0},
            "identity_ratio": {"value": 1.0, "se": 0.01},
            "linear": _linear(o, l_, n_diverged=n_diverged),
            "settled": settled,
            "settle": {"settled": settled, "reason": "" if settled else "drift z = -3.4",
                       "steps": 6000, "seconds": 3.0, "linear_settled": True,
                       "attempts": [{"burn_in": 1000, "n_steps": 2000}, {"burn_in": 3000,
                                                                        "n_steps": 3000}]}}


def _stability(rows, rho_values):
    per = {}
    for r, v in zip(rows, rho_values):
        per.setdefault(r["batch_size"], {})[f"{r['eta_h_max']:g}"] = {
            "value": v, "se": 1e-4, "se_kind": "last refinement (one-sided)", "lower_bound": True,
            "subspace_dim": 24, "steps": 6000, "stable": v < 0,
            "growth_over_run": 6000 * math.log1p(v), "visible_in_run": 6000 * math.log1p(v) >= 1}
    blocks = [{"batch_size": s, "noise_factor": 1 / s, "subspace_dim": 24, "subspace": {},
               "linear_edge": {"eta_h_max": 0.5, "bracket": [0.4995, 0.5005],
                               "rho_at_bracket": [0.9999, 1.0001], "confirmed": True,
                               "without_pilots": 0.51, "refinement": 0.01, "upper_bound": True},
               "linear_edge_within_run": {"eta_h_max": 0.7, "bracket": [0.69, 0.7], "steps": 6000},
               "real_edge": {"eta_h_max": None, "bracket": [1.0, None], "evaluations": [],
                             "searched": False},
               "rows": per[s], "seconds": 1.0} for s in sorted(per)]
    from validation.smallnet.stability import STABILITY_METHOD

    return {"method": STABILITY_METHOD,
            "per_batch_size": blocks, "real_edge_searched": False,
            "rows": [{"eta_h_max": r["eta_h_max"], "batch_size": r["batch_size"],
                      "rho_minus_1": per[r["batch_size"]][f"{r['eta_h_max']:g}"]} for r in rows]}


def _finished(rows, rho_values):
    st = _stability(rows, rho_values)
    for r in rows:
        sn._finish_row(r, st)
    return st


# ----------------------------------------------------------------------------- accounting

def test_accounting_sums_to_the_observation_and_shares_carry_paired_ses():
    row = _row()
    _finished([row], [-1e-5])
    a = row["accounting"]
    t = a["terms"]
    total = sum(t[k]["value"] for k in ("wang", "discrete_time", "state_dependent", "nonlinearity"))
    assert total == pytest.approx(row["observed"], rel=1e-14) and a["sum"] == pytest.approx(total)
    assert sum(t[k]["share"] for k in t) == pytest.approx(1.0, rel=1e-14)
    lin = row["linear"]
    assert t["nonlinearity"]["value"] == pytest.approx(row["observed"] - lin["value"])
    assert t["nonlinearity"]["se"] == lin["paired"]["se"]          # chains paired by batches
    assert t["state_dependent"]["se"] == lin["se"]
    # the paired share SE of obs − linear is that of 1 − l̄/ō by the delta method
    o, l_ = np.array(lin["per_chain"]["observed"]), np.array(lin["per_chain"]["linear"])
    g = -l_ / o.mean() + l_.mean() * o / o.mean() ** 2
    assert t["nonlinearity"]["share_se"] == pytest.approx(g.std(ddof=1) / math.sqrt(o.size))
    assert t["wang"]["se"] == 0.0 and t["wang"]["share_se"] > 0
    # 0.5 → 0.55 → ~0.9 → obs: the running sum reaches 5% only with the last term
    assert a["factors_needed"] == 4 and len(a["partial_rel_error"]) == 4


@pytest.mark.parametrize("wang, disc, lin_shift, k", [
    (0.98, 0.99, 0.0, 1),        # (12) alone is within 5%
    (0.80, 0.97, 0.0, 2),        # discrete time closes it
    (0.50, 0.60, 0.02, 3),       # linearised SGD is within 5%
    (0.50, 0.60, 0.20, 4),       # only the nonlinearity closes it
])
def test_factors_needed_for_five_percent(wang, disc, lin_shift, k):
    o = np.full(8, 1.0) + 1e-3 * np.arange(8)
    row = _row(obs_chains=o, lin_chains=o - lin_shift, wang=wang, disc=disc)
    _finished([row], [-1e-5])
    assert row["accounting"]["factors_needed"] == k
    assert abs(row["accounting"]["partial_rel_error"][k - 1]) <= SHARE_TARGET


def test_a_row_beyond_the_linear_edge_has_its_last_two_terms_undefined():
    row = _row(n_diverged=3)
    _finished([row], [0.05])
    a = row["accounting"]
    assert a["terms"]["state_dependent"] is None and a["terms"]["nonlinearity"] is None
    assert "3 of 8 linearised chains diverged" in a["undefined_reason"]
    assert "rho(T) - 1 = +0.05" in a["undefined_reason"]
    both = a["combined_beyond_discrete"]
    assert both["value"] == pytest.approx(row["observed"] - 0.55)
    assert a["sum"] == pytest.approx(row["observed"]) and a["factors_needed"] == 4
    p = row["predictions"]["linear"]
    assert p["exists"] is False and p["agrees"] is None and math.isnan(p["value"])
    line = "\n".join(accounting_lines([row]))
    assert line.count("undefined (together") == 2


def test_a_slow_instability_is_reported_but_the_run_average_is_kept():
    row = _row()
    _finished([row], [1e-6])                    # e^(0.006) over 6000 steps: invisible
    p = row["predictions"]["linear"]
    assert p["exists"] is True and "not a stationary law" in p["note"]
    assert row["accounting"]["terms"]["nonlinearity"] is not None


def test_linear_z_uses_the_paired_se():
    row = _row()
    _finished([row], [-1e-5])
    p, lin = row["predictions"]["linear"], row["linear"]
    assert p["z"] == pytest.approx(lin["paired"]["obs_minus_linear"] / lin["paired"]["se"])
    assert p["z_kind"] == "paired" and p["se"] == lin["se"]


# ----------------------------------------------------------------------------- settling

@pytest.mark.parametrize("args, ok", [
    ((2.9, 1.0, 0.01, 8), True),
    ((-3.0, 1.0, 0.01, 8), False),       # |drift z| >= 3
    ((0.0, 1.039, 0.01, 8), True),
    ((0.0, 0.96, 0.01, 8), False),       # identity ratio 4 SE from 1
    ((0.0, 1.0, 0.01, 1), False),        # no SE from one chain
    ((math.nan, 1.0, 0.01, 8), False),
    ((0.0, 1.0, 0.0, 8), False),
])
def test_is_settled(args, ok):
    got, reason = is_settled(*args)
    assert got is ok and (reason == "") is ok


def test_unsettled_rows_are_left_out_of_the_verdict_and_make_the_run_unsound():
    good, bad = _row(), _row(eta_h=0.05, settled=False)
    _finished([good, bad], [-1e-5, -1e-6])
    v = sn.summary_verdict([good, bad])
    assert v["wang"]["n_rows"] == 1 and v["unsettled"] == [{"eta_h_max": 0.05, "batch_size": 8}]
    sound, reasons = sn.soundness([good, bad])
    assert not sound and "not settled after 6000 steps (drift z = -3.4)" in reasons[0]
    lines = sn.verdict_lines(_results([good, bad]))
    assert any(x.startswith("NOT SETTLED: eta*h_max=0.05") for x in lines)
    assert any(x.startswith("slowest to settle: eta*h_max=0.2, S=8, 6,000 steps (1 extension")
               for x in lines)


class _FakeStats:
    """What measure_setting reads from ChainStats, with a scripted drift z per window."""

    def __init__(self, burn_in, n_steps, drift, n_diverged=0):
        from dnn.exact.chains import Estimate

        self.burn_in, self.n_steps, self._drift = burn_in, n_steps, drift
        self.n_chains, self.n_diverged = 8, n_diverged
        self._ratio = Estimate(1.0, 0.01, 8)
        self.final_state = ("state", burn_in + n_steps)

    def drift_z(self):
        return self._drift

    def identity_ratio(self):
        return self._ratio


def _scripted(monkeypatch, drifts, lin_drift=0.0, lin_diverged=0):
    """Patch both chain runners: the k-th real window has drift ``drifts[k]``."""
    import dnn.exact.chains as chains
    import dnn.exact.linear_chains as linear_chains

    calls = {"real": [], "linear": []}

    def runner(kind):
        def run(model, data, theta, *, burn_in, n_steps, state=None, hessian=None, **kw):
            start = 0 if state is None else state[1]
            calls[kind].append((start, burn_in, n_steps))
            k = len(calls[kind]) - 1
            drift = drifts[min(k, len(drifts) - 1)] if kind == "real" else lin_drift
            return _FakeStats(start + burn_in, n_steps, drift,
                              lin_diverged if kind == "linear" else 0)
        return run

    monkeypatch.setattr(chains, "run_sgd_chains", runner("real"))
    monkeypatch.setattr(linear_chains, "run_linear_chains", runner("linear"))
    return calls


def _measure(max_total_steps=100_000):
    from validation.smallnet.measure import measure_setting

    return measure_setting(None, None, None, None, lr=0.1, batch_size=8, n_chains=8,
                           burn_in=1000, window=2000, record_every=10, replacement=True,
                           seed=1, max_total_steps=max_total_steps)


def test_the_settle_loop_continues_both_chain_sets_with_doubled_windows(monkeypatch):
    calls = _scripted(monkeypatch, drifts=[-5.0, -3.2, 1.0])
    st = _measure()["settle"]
    assert st["settled"] and len(st["attempts"]) == 3 and st["steps"] == 1000 + 2000 + 4000 + 8000
    assert [a["settled"] for a in st["attempts"]] == [False, False, True]
    assert "drift z = -5.0" in st["attempts"][0]["reason"]
    # each later window twice the last, continued from where the chains stand: one long run
    assert calls["real"] == [(0, 1000, 2000), (3000, 0, 4000), (7000, 0, 8000)]
    assert calls["linear"] == calls["real"]              # the same burn-in and window rules


def test_the_settle_loop_stops_at_the_cap_and_marks_the_row(monkeypatch):
    _scripted(monkeypatch, drifts=[-5.0])
    st = _measure(max_total_steps=10_000)["settle"]
    # 3000 run; the next window (4000) fits (7000); the one after (8000) would pass 10 000
    assert not st["settled"] and st["steps"] == 7000 and len(st["attempts"]) == 2
    assert st["max_total_steps"] == 10_000 and "drift" in st["reason"]


def test_the_settle_loop_waits_for_the_linear_chains_unless_they_diverged(monkeypatch):
    _scripted(monkeypatch, drifts=[0.0], lin_drift=4.0)
    st = _measure(max_total_steps=10_000)["settle"]
    assert st["settled"] and not st["linear_settled"] and len(st["attempts"]) == 2
    _scripted(monkeypatch, drifts=[0.0], lin_drift=4.0, lin_diverged=2)
    st = _measure()["settle"]
    assert st["settled"] and len(st["attempts"]) == 1 and st["linear_reason"] == "diverged"


# ----------------------------------------------------------------------------- reports

def _results(rows, stability=None):
    net = {"activation": "tanh", "hidden": [32], "P": 2410, "l2": 1e-3, "n_data": 1797,
           "loss_star": 0.1, "grad_norm": 1e-12, "train_accuracy": 1.0, "h_min": 1e-5, "h_max": 0.3,
           "trace_sigma": 0.58, "trace_h": 15.9, "trace_h_data": 11.1, "trace_h_l2": 4.82,
           "preprocess": "global",
           "inputs": {"max_abs": 1.85, "max_sd_global": 1.85, "max_sd_per_feature": 42.4}}
    grid = np.geomspace(0.1, 6.0, 5)
    sound, reasons = sn.soundness(rows)
    out = {"network": net, "rows": rows, "sound": sound, "sound_reasons": reasons,
           "verdict": sn.summary_verdict(rows),
           "curves": {"lr": grid.tolist(), "wang_per_c": (grid * 0.145).tolist(),
                      "jastrzebski_per_c": (grid * 3.98).tolist(),
                      "discrete_per_c": (grid * 0.16).tolist()}}
    if stability is not None:
        out["stability"] = stability
    return out


SCHEMA_LINEAR = {"value", "se", "z", "rel_error", "agrees", "n_diverged"}
SCHEMA_RHO = {"value", "se", "lower_bound", "subspace_dim", "stable", "growth_over_run"}
SCHEMA_EDGE = {"eta_h_max", "bracket"}


def test_json_schema_and_every_table_redraws_from_smallnet_json(tmp_path):
    rows = [_row(), _row(s=64), _row(eta_h=1.0, n_diverged=8)]
    st = _finished(rows, [-1e-5, -2e-5, 0.6])
    results = _results(rows, st)
    paths = write_outputs(results, tmp_path)
    assert (tmp_path / "stability.png").stat().st_size > 10_000 and len(paths) == 4
    saved = load_results(tmp_path / "smallnet.json")
    for r in saved["rows"]:
        assert SCHEMA_LINEAR <= set(r["predictions"]["linear"])
        assert SCHEMA_RHO <= set(r["rho_minus_1"]) and "settled" in r and "accounting" in r
    for b in saved["stability"]["per_batch_size"]:
        for k in ("linear_edge", "real_edge", "linear_edge_within_run"):
            assert SCHEMA_EDGE <= set(b[k])
    assert {(r["eta_h_max"], r["batch_size"]) for r in saved["stability"]["rows"]} == \
        {(0.2, 8), (0.2, 64), (1.0, 8)}
    md = (tmp_path / "smallnet.md").read_text()
    assert sn.markdown_table(saved) in md and "\n".join(accounting_lines(saved["rows"])) in md
    assert "\n".join(sn.stability_lines(saved)) in md
    assert sn.console_table(saved) == sn.console_table(results)
    assert "none (8 of 8 diverged)" in md and "NO LINEAR THEORY at eta*h_max=1, S=8" in md
    import matplotlib.pyplot as plt
    fig = stability_figure(saved)
    try:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert any(x.startswith("linear edge") for x in labels)
        assert "row: no linear law" in labels
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- inputs

def test_preprocess_is_parsed_and_reaches_the_config(tmp_path, monkeypatch):
    p = _Parser(prog="smallnet")
    cmd_smallnet.add_arguments(p)
    seen = {}
    monkeypatch.setattr(smallnet_pkg, "run_smallnet", lambda cfg: seen.setdefault("cfg", cfg) and 0)
    for value in ("global", "feature", "minmax"):
        cmd_smallnet.run(p.parse_args(["--out", str(tmp_path), "--preprocess", value,
                                       "--stability"]))
        assert seen.pop("cfg").preprocess == value
    cmd_smallnet.run(p.parse_args(["--out", str(tmp_path)]))
    cfg = seen.pop("cfg")
    assert cfg.preprocess == "global" and cfg.stability is False


def test_a_bad_preprocess_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["smallnet", "--out", str(tmp_path), "--preprocess", "zscore"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--preprocess" in err and "zscore" in err
    with pytest.raises(ValueError, match=r"^preprocess must be one of global, feature, minmax; got 'zscore'"):
        sn.SmallnetConfig(preprocess="zscore")
    with pytest.raises(TypeError, match="stability"):
        sn.SmallnetConfig(stability="yes")


def test_the_three_input_scalings():
    from dnn.exact.digits import input_scale, load_digits

    g, f, m = (load_digits(preprocess=p) for p in ("global", "feature", "minmax"))
    assert g.x.mean() == pytest.approx(0, abs=1e-12) and g.x.std() == pytest.approx(1)
    assert np.abs(f.x.mean(axis=0)).max() < 1e-12 and m.x.max() == 1.0 and m.x.min() == 0.0
    np.testing.assert_array_equal(f.x, load_digits().x)          # the old default is "feature"
    # per-feature standardisation makes a rarely lit pixel tens of sd; a global scaling does not
    assert input_scale(f.x)["max_abs"] > 20 > 2 > input_scale(g.x)["max_abs"]
    with pytest.raises(ValueError, match="preprocess"):
        load_digits(preprocess="zscore")
    with pytest.raises(ValueError, match="standardize=False"):
        load_digits(False, preprocess="global")


def test_the_cache_key_names_the_input_scaling():
    from dnn.exact.digits import load_digits
    from dnn.exact.mlp import MLP, MLPConfig
    from validation.smallnet.cache import cache_key

    model = MLP(MLPConfig(), 64, 10)
    keys = {p: cache_key(model, load_digits(preprocess=p)) for p in ("global", "feature")}
    assert keys["global"][0] != keys["feature"][0]
    assert keys["global"][1]["preprocess"] == "global" and keys["feature"][1]["format"] == 2


def test_results_json_round_trips_nan_in_the_new_fields(tmp_path):
    rows = [_row(eta_h=1.0, n_diverged=8)]
    st = _finished(rows, [0.6])
    write_outputs(_results(rows, st), tmp_path)
    raw = json.loads((tmp_path / "smallnet.json").read_text())
    assert raw["rows"][0]["predictions"]["linear"]["value"] == "nan"
    back = load_results(tmp_path / "smallnet.json")
    assert math.isnan(back["rows"][0]["predictions"]["linear"]["value"])
