"""``sgd-minima smallnet --momentum β``: config and CLI checks, the heavy-ball planner against
the brute-force stacked recursion, the discrete law with momentum, and end-to-end runs.

The planner and config tests are pure numpy (milliseconds).  The end-to-end runs build
the 4-unit MLP (P = 310; ~30 s) and the ``--quick`` command line on the default network
(slow: a cold θ* cache adds ~50 s).
"""

import json
import math

import numpy as np
import pytest

import theory
from validation.cli import main
from validation.smallnet import run as sn

from test_smallnet import _problem  # SPD H and a Σ that does not commute with it

BETA = 0.9


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own result cache, so none reads or writes the user's ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))




# ----------------------------------------------------------------------------- config and CLI

@pytest.mark.parametrize("beta", [-0.1, 1.0, 2.0, math.nan, True, "0.9"])
def test_config_rejects_a_bad_momentum_naming_it(beta):
    with pytest.raises(ValueError, match=r"^momentum must be"):
        sn.SmallnetConfig(momentum=beta)


def test_momentum_widens_the_learning_rate_range_to_2_1_plus_beta():
    cfg = sn.SmallnetConfig(momentum=BETA, eta_h=(0.05, 2.5, 3.7))
    assert cfg.momentum == BETA and cfg.eta_h == (0.05, 2.5, 3.7)
    with pytest.raises(ValueError, match=r"eta_h must lie in \(0, 3\.8\).*3\.8"):
        sn.SmallnetConfig(momentum=BETA, eta_h=(3.8,))
    with pytest.raises(ValueError, match=r"eta_h must lie in \(0, 2\)"):
        sn.SmallnetConfig(eta_h=(2.5,))
    with pytest.raises(ValueError, match="stability.*momentum"):
        sn.SmallnetConfig(momentum=BETA, stability=True)
    assert sn.SmallnetConfig().momentum == 0.0


@pytest.mark.parametrize("value", ["1", "-0.5", "nan", "fast"])
def test_cli_bad_momentum_exits_2_with_one_line(value, tmp_path, capsys):
    assert main(["smallnet", "--out", str(tmp_path / "x"), "--momentum", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "momentum" in err and err.startswith("sgd-minima smallnet: error:")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- planning

def _stacked_excess(h, s, lr, c, beta, steps):
    """E_t = ½ tr(H Z_t[00]) from Z_{t+1} = A Z_t Aᵀ + Q, Z_0 = 0 (full stacked matrices)."""
    d = len(h)
    a = np.block([[(1 + beta) * np.eye(d) - lr * h, -beta * np.eye(d)],
                  [np.eye(d), np.zeros((d, d))]])
    q = np.zeros((2 * d, 2 * d))
    q[:d, :d] = lr * lr * c * s
    z, out = np.zeros((2 * d, 2 * d)), []
    for _ in range(steps + 1):
        out.append(0.5 * np.trace(h @ z[:d, :d]))
        z = a @ z @ a.T + q
    return np.array(out)


@pytest.mark.parametrize("beta, eta_h", [(0.5, 0.1), (0.5, 1.3), (0.9, 0.1), (0.9, 3.0)])
def test_heavy_ball_burn_in_planner_against_the_stacked_recursion(beta, eta_h):
    h, s = _problem()
    evals, u = np.linalg.eigh(h)
    lr, c = eta_h / evals[-1], 1 / 8
    s_tilde = np.diag(u.T @ s @ u)
    e_t = _stacked_excess(h, s, lr, c, beta, 3000)
    limit = theory.expected_loss_discrete(h, s, lr, 8, momentum=beta)
    assert e_t[-1] == pytest.approx(limit, rel=1e-10)       # the recursion reached (M7)
    missing = 1 - e_t / limit
    for target in (0.3, 0.01, 1e-4):
        t, frac, capped = sn.plan_burn_in(evals, s_tilde, lr, target=target, momentum=beta)
        assert not capped and frac < target
        # the envelope r^{2t} ignores each block's transient factor (A is not normal): up to
        # 1.9× on these problems, so the planned burn-in leaves < 3× the target
        assert missing[t] < 3 * target, (t, missing[t])
        # and it is not wasteful: 3× fewer steps would leave more than the target
        assert missing[t // 3] > target
    # slow directions relax like r ≈ 1 − ηh/(1−β): far slower than plain SGD's 1 − ηh
    r = sn.relaxation_radius(evals, lr, beta)
    assert np.all(r < 1) and r[0] == pytest.approx(theory_block_radius(lr * evals[0], beta))


def theory_block_radius(x, beta):
    """Largest |root| of λ² − (1+β−x)λ + β (the block's characteristic polynomial)."""
    return float(np.max(np.abs(np.roots([1.0, -(1.0 + beta - x), beta]))))


def test_planners_at_momentum_zero_are_the_plain_ones():
    h, s = _problem(seed=3)
    evals, u = np.linalg.eigh(h)
    lr = 0.7 / evals[-1]
    s_tilde = np.diag(u.T @ s @ u)
    t = np.arange(0, 60, 7)
    np.testing.assert_array_equal(sn.missing_fraction(evals, s_tilde, lr, t, 0.0),
                                  sn.missing_fraction(evals, s_tilde, lr, t))
    plain = sn.plan_window(evals, u.T @ s @ u, lr, 0.25, 8, rel_se=0.02)
    assert sn.plan_window(evals, u.T @ s @ u, lr, 0.25, 8, rel_se=0.02, momentum=0.0) == plain
    with pytest.raises(ValueError, match=r"2\(1\+momentum\)"):
        sn.missing_fraction(evals, s_tilde, 2.5 / evals[-1], 3, 0.1)


def test_discrete_law_in_blocks_with_momentum_equals_theory():
    h, s = _problem(d=40, seed=2)
    evals, u = np.linalg.eigh(h)
    s_tilde = np.diag(u.T @ s @ u)
    for eta_h in (0.1, 3.0):
        lr = eta_h / evals[-1]
        want = theory.expected_loss_discrete(h, s, lr, 8, momentum=BETA)
        got = sn._discrete_law(evals, s_tilde, lr, 8, n_data=None, replacement=True,
                               momentum=BETA, block=7)
        assert got == pytest.approx(want, rel=1e-12)


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_tiny_network_end_to_end_with_momentum(tmp_path):
    """hidden 4 (P = 310), η·h_max = 0.01, S = 64, β = 0.9 (η/(1−β) = 0.1/h_max): the
    discrete law with momentum within 4 SE; ΔE₁ and ρ n/a, never their β = 0 values."""
    out = tmp_path / "tiny"
    cfg = sn.SmallnetConfig(hidden=(4,), eta_h=(0.01,), batch_sizes=(64,), chains=8,
                            momentum=BETA, quiet=True, out=str(out))
    assert sn.run_smallnet(cfg) == 0
    r = json.loads((out / "smallnet.json").read_text())
    net, (row,) = r["network"], r["rows"]
    assert r["momentum"] == BETA and row["momentum"] == BETA
    assert r["provenance"]["config"]["momentum"] == BETA
    p = row["predictions"]
    assert p["wang"]["value"] == pytest.approx(
        theory.expected_loss_wang(net["trace_sigma"], row["lr"], 64, momentum=BETA), rel=1e-12)
    assert p["jastrzebski"]["value"] == pytest.approx(
        theory.expected_loss_jastrzebski(net["trace_h"], row["lr"], 64, momentum=BETA), rel=1e-12)
    assert row["settled"] and row["n_diverged"] == 0
    assert abs(p["discrete"]["z"]) < sn.Z_MAX, row
    # not available with momentum: None in the JSON, n/a in the tables
    assert p["state_dependent"] is None and row["delta_e1"] is None
    assert row["rho_minus_1"] is None and r["stability"] is None and r["probes"] == []
    assert p["linear"]["exists"] and abs(p["linear"]["z"]) < sn.Z_MAX
    # the θ*-free value is ((1+β)/(4η))E‖v‖², paired with the observed excess
    tf = row["theta_free"]
    assert abs(tf["z"]) < sn.Z_MAX and abs(tf["rel_error"]) < 0.05
    md = (out / "smallnet.md").read_text()
    assert "Momentum β = 0.9" in md and "((1+β)/(4η))E‖v‖²" in md
    line = next(x for x in md.splitlines() if x.startswith("| 0.01 |"))   # the main table
    assert line.count("n/a") == 2                      # discrete + ΔE₁ and ρ − 1


@pytest.mark.slow
def test_cli_quick_with_momentum_writes_the_momentum_predictions(tmp_path, capsys):
    out = tmp_path / "q"
    rc = main(["smallnet", "--quick", "--quiet", "--momentum", "0.9", "--out", str(out)])
    assert rc in (0, 1)                                # 1: a setting did not settle (reported)
    r = json.loads((out / "smallnet.json").read_text())
    assert r["momentum"] == BETA and len(r["rows"]) == 4
    for row in r["rows"]:
        assert row["predictions"]["discrete"]["value"] > 0
        assert row["predictions"]["state_dependent"] is None
        assert {"value", "se", "z"} <= set(row["theta_free"])
        assert row["predictions"]["wang"]["value"] == pytest.approx(
            theory.expected_loss_wang(r["network"]["trace_sigma"], row["lr"],
                                      row["batch_size"], momentum=BETA), rel=1e-12)
    text = capsys.readouterr().out
    assert "heavy-ball momentum beta = 0.9" in text and "n/a" in text
