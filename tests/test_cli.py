"""The sgd-minima command line: files written, exit codes, one-line errors."""

import json
import math
import subprocess
import sys

import pytest

from validation.cli import main


def run_cli(*args):
    """Run the installed entry point in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-c", "import sys; from validation.cli import main; "
                           "sys.exit(main())", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    proc = run_cli("quick", "--out", str(out))       # with its progress bar (on stderr)
    return proc, out


def test_quick_progress_bar_ends_its_own_line(quick_run):
    # A bar left without its newline puts the first result line on the bar's line
    # when stdout and stderr share a terminal.
    proc, _ = quick_run
    assert "quick: 100%" in proc.stderr and proc.stderr.endswith("\n")


def test_simulate_default_step_limit_is_sims():
    import sim
    from validation.cli import simulate as cmd_simulate

    assert cmd_simulate.DEFAULT_MAX_STEPS == sim.DEFAULT_MAX_STEPS


def test_quick_exits_zero_and_writes_its_files(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Without --quiet stderr holds the progress bar and nothing else (no warnings).
    assert all(not line.strip() or line.startswith("quick:")
               for line in proc.stderr.replace("\r", "\n").splitlines()), proc.stderr
    data = json.loads((out / "quick.json").read_text())
    names = [c["name"] for c in data["cases"]]
    assert names == ["aligned", "misaligned", "large-lr", "lsq-replacement", "lsq-no-replacement",
                     "momentum", "momentum-large-lr"]
    for case in data["cases"]:
        for key in ("name", "lr", "batch_size", "simulated_mean", "simulated_se", "predictions"):
            assert key in case
        assert {"wang", "jastrzebski", "discrete"} <= set(case["predictions"])
        for p in case["predictions"].values():
            assert p["z"] == pytest.approx((case["simulated_mean"] - p["value"]) / case["simulated_se"])
    assert data["provenance"]["config"]["seed"] == 0
    assert data["provenance"]["versions"]["numpy"]
    assert (out / "quick.md").read_text().count("\n| (") == 7
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_tells_the_story(quick_run):
    _, out = quick_run
    cases = {c["name"]: c for c in json.loads((out / "quick.json").read_text())["cases"]}
    assert all(c["passed"] for c in cases.values())
    a, b, c = cases["aligned"]["predictions"], cases["misaligned"]["predictions"], cases["large-lr"]["predictions"]
    assert a["wang"]["agrees"] and a["jastrzebski"]["agrees"]
    assert a["wang"]["required"] and a["jastrzebski"]["required"]
    assert b["wang"]["agrees"] and b["wang"]["required"]
    assert not b["jastrzebski"]["agrees"] and abs(b["jastrzebski"]["z"]) > 10
    assert b["jastrzebski"]["must_reject"] and c["wang"]["must_reject"]
    assert c["discrete"]["agrees"] and not c["wang"]["agrees"]
    for name in ("lsq-replacement", "lsq-no-replacement"):
        p = cases[name]["predictions"]
        assert p["exact"]["agrees"] and p["exact"]["required"]
        assert not p["discrete"]["agrees"] and not p["wang"]["agrees"]
    # Momentum: (12) holds at the effective rate η/(1 − β) when η·h is small, not at η;
    # at large η·h only the exact discrete law with momentum holds.
    e, f = cases["momentum"]["predictions"], cases["momentum-large-lr"]["predictions"]
    assert cases["momentum"]["momentum"] == 0.9
    assert e["wang"]["required"] and e["wang"]["agrees"] and e["discrete"]["agrees"]
    assert e["wang_no_momentum"]["must_reject"] and not e["wang_no_momentum"]["agrees"]
    assert f["discrete"]["required"] and f["discrete"]["agrees"]
    assert f["wang"]["must_reject"] and not f["wang"]["agrees"]


def test_quick_imports_no_deep_learning_framework(tmp_path):
    code = ("import sys; from validation.cli import main; rc = main(['quick', '--quiet', '--out', "
            f"{str(tmp_path)!r}]); heavy = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]; "
            "print(heavy); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert proc.stderr == ""                     # --quiet: no progress bars


@pytest.mark.parametrize("args, message", [
    (["simulate", "--lr", "-0.1"], "lr must be > 0; got -0.1"),
    (["simulate", "--method", "rk4"], "method must be one of sgd, em, ou; got 'rk4'"),
    (["simulate", "--sampler", "stratified"], "sampler must be one of"),
    (["simulate", "--lr", "5", "--dim", "4"], "lr*h_max"),
    (["simulate", "--problem", "least-squares", "--batch-size", "300", "--n-data", "200"],
     "batch_size=300 > n_data=200"),
    (["simulate", "--chains", "0"], "argument --chains: expected an integer >= 1, got '0'"),
    (["simulate", "--lr", "abc"], "expected a number, got 'abc'"),
    (["simulate", "--misalignment", "2"], "misalignment must be in [0, 1]; got 2.0"),
    (["simulate", "--precision", "float16"], "precision must be float64 or float32; got 'float16'"),
    (["simulate", "--problem", "least-squares", "--precision", "float32"],
     "precision 'float32' needs a Gaussian-noise method"),
    (["simulate", "--momentum", "1"], "momentum must be in [0, 1); got 1.0"),
    (["simulate", "--momentum", "-0.5"], "momentum must be in [0, 1); got -0.5"),
    (["simulate", "--momentum", "nan"], "expected a finite number, got 'nan'"),
    (["simulate", "--momentum", "0.5", "--method", "em"], "momentum needs method 'sgd'"),
    (["simulate", "--momentum", "0.9", "--lr", "4", "--dim", "4"], "2(1+momentum)"),
    (["quick", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_out_that_is_a_file_exits_2_before_any_work(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["quick", "--quiet", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(target) in err
    assert target.read_text() == "x"


def test_simulate_flags_epoch_shuffling_as_an_expected_difference(tmp_path):
    out = tmp_path / "epoch"
    assert main(["simulate", "--problem", "least-squares", "--sampler", "epoch_shuffle",
                 "--dim", "3", "--n-data", "40", "--batch-size", "8", "--lr", "0.1",
                 "--chains", "100", "--steps", "400", "--quiet", "--out", str(out)]) == 0
    data = json.loads((out / "simulate.json").read_text())["result"]
    assert "Kuehn & Rosenow" in data["expected_difference"]
    assert "expected difference" in (out / "simulate.md").read_text()


def test_bad_arguments_exit_2_in_a_real_process():
    proc = run_cli("simulate", "--method", "rk4")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "sgd-minima simulate: error: method must be one of sgd, em, ou; got 'rk4'"


def test_simulate_writes_json_and_markdown(tmp_path):
    out = tmp_path / "sim"
    rc = main(["simulate", "--dim", "4", "--lr", "0.05", "--chains", "200", "--steps", "500",
               "--quiet", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "simulate.json").read_text())
    assert data["provenance"]["config"]["dim"] == 4
    assert set(data["result"]["predictions"]) == {"wang", "jastrzebski", "discrete"}
    assert abs(data["result"]["predictions"]["discrete"]["z"]) < 4
    assert (out / "simulate.md").read_text().startswith("| sgd | gaussian |")


# Least squares at lr 0.1: near the stacked map's mean-square edge the excess is
# heavy-tailed and no across-chain SE is trustworthy.
@pytest.mark.parametrize("problem, lr", [("gaussian", "0.3"), ("least-squares", "0.1")])
def test_simulate_with_momentum_matches_the_heavy_ball_law(tmp_path, problem, lr):
    # beta = 0.9 at a large eta*h, where the discrete law with momentum (and, for real
    # minibatches, the finite-sum law) is the reference; the theta*-free value must
    # agree with the measured excess too.  |z| < 4: false alarm 6e-5 per check.
    out = tmp_path / problem
    extra = ["--n-data", "60", "--dim", "4"] if problem == "least-squares" else ["--dim", "4"]
    assert main(["simulate", "--problem", problem, "--momentum", "0.9", "--lr", lr,
                 "--chains", "300", "--steps", "3000", "--quiet", "--out", str(out), *extra]) == 0
    result = json.loads((out / "simulate.json").read_text())["result"]
    assert result["momentum"] == 0.9
    ref = "exact" if problem == "least-squares" else "discrete"
    assert abs(result["predictions"][ref]["z"]) < 4
    tf = result["theta_free"]
    z = (tf["value"] - result["simulated_mean"]) / math.hypot(tf["se"], result["simulated_se"])
    assert abs(z) < 4
    assert "momentum=0.9" in (out / "simulate.md").read_text()
