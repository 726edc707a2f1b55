"""Bad input of every kind, across theory, sim, dnn and the CLI: each is one clear error.

Library cases assert the exception type and that the message names the argument (or
the file, with its path).  CLI cases assert exit code 2, one line on stderr, no
traceback, the named argument or path, and that nothing was left behind.  Every case
fails during validation, before any simulation or training, so the module takes a
few seconds (the CLI train/estimate cases import no deep-learning framework).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import gzip  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dnn  # noqa: E402
import sim  # noqa: E402
import theory  # noqa: E402
from dnn._runio import RunFileError  # noqa: E402  (dnn.RunFileError once exported)
from validation.cli import main  # noqa: E402

H2 = np.diag([2.0, 1.0])
S2 = np.eye(2)
GQ = sim.GaussianQuadratic(H2, S2)
RNG = np.random.default_rng(0)


def _simulate_method(method, **kw):
    args = dict(lr=0.1, batch_size=4, n_chains=10, n_steps=10, rng=0)
    args.update(kw)
    return lambda: sim.simulate(GQ, method, **args)


def _hut(hvp, dim, **kw):
    return lambda: dnn.hutchinson_trace(hvp, dim, rng=np.random.default_rng(0), **kw)


def _config(**kw):
    from dnn.convnet.train import TrainConfig

    base = dict(batch_size=16, lr=0.1, epochs=1, depth=8, width=4, milestones=(), data="synthetic",
                n_train=64, n_test=32)
    base.update(kw)
    return lambda: TrainConfig(**base)


def _simcfg(**kw):
    from validation.simulate import SimulateConfig

    return lambda: SimulateConfig(**kw)


# (id, call, exception type, text the message must contain)
LIBRARY = [
    # theory: flags, numbers, matrices
    ("noise_factor-replacement-str", lambda: theory.noise_factor(3, n_data=6, replacement="False"),
     TypeError, "replacement"),
    ("noise_factor-replacement-int", lambda: theory.noise_factor(3, n_data=6, replacement=0),
     TypeError, "replacement"),
    ("wang-replacement-str", lambda: theory.expected_loss_wang(1.0, 0.1, 3, n_data=6,
                                                               replacement="no"),
     TypeError, "replacement"),
    ("sgd_covariance-discrete-str", lambda: theory.sgd_covariance(H2, S2, 0.1, 2, discrete="yes"),
     TypeError, "discrete"),
    ("lsq-replacement-int", lambda: theory.least_squares_stationary(
        RNG.normal(size=(10, 2)), RNG.normal(size=10), 0.1, 2, replacement=1), TypeError,
     "replacement"),
    ("noise_factor-batch-gt-n", lambda: theory.noise_factor(8, n_data=6), ValueError,
     "batch_size=8 > n_data=6"),
    ("wang-lr-nan", lambda: theory.expected_loss_wang(1.0, float("nan"), 3), ValueError, "lr"),
    ("wang-lr-inf", lambda: theory.expected_loss_wang(1.0, float("inf"), 3), ValueError, "lr"),
    ("wang-lr-zero", lambda: theory.expected_loss_wang(1.0, 0.0, 3), ValueError, "lr must be > 0"),
    ("wang-lr-negative", lambda: theory.expected_loss_wang(1.0, -0.1, 3), ValueError, "lr"),
    ("wang-lr-string", lambda: theory.expected_loss_wang(1.0, "0.1", 3), ValueError, "lr"),
    ("discrete-unstable", lambda: theory.expected_loss_discrete(H2, S2, 1.0, 2),
     theory.StabilityError, "lr*h_max"),
    ("discrete-indefinite-H", lambda: theory.expected_loss_discrete(np.diag([1.0, -1.0]), S2, 0.1, 2),
     ValueError, "hessian must be positive definite"),
    ("lyapunov-asymmetric", lambda: theory.stationary_covariance([[1.0, 0.5], [0.0, 1.0]], S2),
     ValueError, "hessian must be symmetric"),
    ("lyapunov-shape-mismatch", lambda: theory.stationary_covariance(H2, np.eye(3)), ValueError,
     "same shape"),
    ("lyapunov-sigma-not-psd", lambda: theory.stationary_covariance(H2, np.diag([1.0, -1.0])),
     ValueError, "grad_cov must be positive semidefinite"),
    ("lyapunov-not-square", lambda: theory.stationary_covariance(np.ones((2, 3)), S2), ValueError,
     "square"),
    # sim
    ("sim-lr-tiny-steps", _simulate_method("sgd", lr=1e-9), sim.BudgetError, "max_steps"),
    ("sim-lr-underflow", _simulate_method("sgd", lr=1e-300), sim.BudgetError,
     "infinitely many steps"),
    ("sim-lr-underflow-no-limit", _simulate_method("ou", lr=1e-300, max_steps=None),
     sim.BudgetError, "which no run can finish"),
    ("sim-memory", _simulate_method("sgd", max_memory="1KiB"), sim.BudgetError, "max_memory"),
    ("sim-max-steps-bad", _simulate_method("sgd", max_steps=0), ValueError, "max_steps"),
    ("sim-max-memory-bad", _simulate_method("sgd", max_memory="lots"), ValueError, "max_memory"),
    ("sim-em-unstable", _simulate_method("em", lr=5.0), theory.StabilityError,
     "lr is unstable for method 'em'"),
    ("sim-sgd-unstable", _simulate_method("sgd", lr=1.5), theory.StabilityError, "lr*h_max"),
    ("sim-progress-str", _simulate_method("sgd", progress="no"), TypeError, "progress"),
    ("sim-lr-nan", _simulate_method("sgd", lr=float("nan")), ValueError, "lr"),
    ("sim-lr-string", _simulate_method("sgd", lr="0.1"), ValueError, "lr"),
    ("sim-unknown-method", _simulate_method("rk4"), ValueError, "method"),
    ("sim-unknown-sampler", _simulate_method("sgd", sampler="stratified"), ValueError, "sampler"),
    ("sim-unknown-precision", _simulate_method("sgd", precision="float16"), ValueError,
     "precision"),
    ("sim-asymmetric", lambda: sim.GaussianQuadratic([[1.0, 1.0], [0.0, 1.0]], S2), ValueError,
     "hessian must be symmetric"),
    ("sim-indefinite", lambda: sim.GaussianQuadratic(np.diag([1.0, -2.0]), S2), ValueError,
     "hessian must be positive definite"),
    ("sim-lsq-batch-gt-n", lambda: sim.simulate(sim.LeastSquares(RNG.normal(size=(6, 2)),
                                                                  RNG.normal(size=6)), "sgd",
                                                 lr=0.1, batch_size=7, n_chains=4, n_steps=4,
                                                 rng=0), ValueError, "batch_size"),
    ("simulate-config-quiet-str", _simcfg(quiet="False"), TypeError, "quiet"),
    ("simulate-config-dim-str", _simcfg(dim="3"), TypeError, "dim"),
    ("simulate-config-lr-str", _simcfg(lr="0.1"), TypeError, "lr"),
    ("quick-config-quiet-int", lambda: __import__("validation.quick", fromlist=["QuickConfig"])
     .QuickConfig(quiet=1), TypeError, "quiet"),
    # dnn: estimators
    ("hutchinson-hvp-wrong-shape", _hut(lambda v: v[:2], 3, n_probes=2), ValueError,
     "hvp returned 2 values"),
    ("hutchinson-dim-float", _hut(lambda v: v, 3.0, n_probes=2), ValueError, "dim_or_shapes"),
    ("hutchinson-shape-float", _hut(lambda v: v, [(2.5,)], n_probes=2), ValueError,
     "dim_or_shapes"),
    ("hutchinson-quadratic-form-vector", _hut(lambda v: v, 3, n_probes=2, quadratic_form=True),
     ValueError, "hvp with quadratic_form=True"),
    ("power-hvp-wrong-shape", lambda: dnn.top_hessian_eigenvalue(
        lambda v: np.ones((3, 3)), 3, rng=np.random.default_rng(0)), ValueError,
     "hvp returned 9 values"),
    ("power-dim-str", lambda: dnn.top_hessian_eigenvalue(lambda v: v, "3",
                                                         rng=np.random.default_rng(0)),
     ValueError, "dim_or_shapes"),
    ("grad_cov-string", lambda: dnn.grad_cov_trace([1.0, "a"], np.zeros(3)), ValueError,
     "sqnorms"),
    ("grad_cov-2d", lambda: dnn.grad_cov_trace(np.ones((2, 2)), np.zeros(3)), ValueError,
     "sqnorms"),
    ("two_batch-sizes", lambda: dnn.two_batch_noise([1.0], [0.5], 8, 8), ValueError, "b_big"),
    # dnn: config
    ("train-augment-str", _config(augment="False"), TypeError, "augment"),
    ("train-lr-nan", _config(lr=float("nan")), ValueError, "lr"),
    ("train-lr-str", _config(lr="0.1"), ValueError, "lr"),
    ("train-batch-gt-data", _config(batch_size=128), ValueError, "batch_size"),
    ("train-unknown-loss", _config(loss="hinge"), ValueError, "loss"),
    ("train-unknown-shortcut", _config(shortcut="dense"), ValueError, "shortcut"),
    ("train-unknown-precision", _config(precision="float16"), ValueError, "precision"),
    ("train-unknown-data", _config(data="imagenet"), ValueError, "data"),
    ("train-unknown-backend", _config(backend="torch"), ValueError, "backend"),
    ("cifar-download-str", lambda: dnn.load_cifar10("/nonexistent", download="no"), TypeError,
     "download"),
]


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in LIBRARY], ids=[c[0] for c in LIBRARY])
def test_library_rejects_bad_input(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)


# ------------------------------------------------------------------ run files


def _run_dir(tmp_path, *, status="completed", run_json=None):
    """A run folder as dnn.train leaves it, minus the weights (tests add broken files)."""
    from dnn.convnet.train import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(batch_size=16, lr=0.1, epochs=1, depth=8, width=4, milestones=(),
                      data="synthetic", n_train=64, n_test=32, backend="jax")
    info = {"config": cfg.to_dict(), "status": status} if run_json is None else run_json
    text = info if isinstance(info, str) else json.dumps(info)
    (run / "run.json").write_text(text)
    return run, cfg


def _truncated_h5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.arange(1000.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _truncated_npz(path):
    np.savez(path, a=np.arange(1000.0), meta=np.array("{}"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


RUN_FILES = [
    ("run-json-truncated", dict(run_json='{"config": {"batch'), "run.json", "not valid JSON"),
    ("run-json-list", dict(run_json=[]), "run.json", "expected a JSON object"),
    ("run-json-no-config", dict(run_json={"status": "completed"}), "run.json", "no 'config'"),
    ("run-json-bad-config", dict(run_json={"config": {"lr": 1}}), "run.json", "config is invalid"),
    ("weights-missing", dict(), "final.weights.h5", "is missing"),
    ("weights-truncated", dict(weights=_truncated_h5), "final.weights.h5", "unreadable"),
]


@pytest.mark.parametrize("kw, name, text", [c[1:] for c in RUN_FILES], ids=[c[0] for c in RUN_FILES])
def test_corrupt_run_files_are_named(kw, name, text, tmp_path):
    from dnn.convnet.train import load_run

    kw = dict(kw)
    weights = kw.pop("weights", None)
    run, _ = _run_dir(tmp_path, **kw)
    if weights is not None:
        weights(run / "final.weights.h5")
    with pytest.raises(RunFileError) as info:
        load_run(run)
    assert str(run / name) in str(info.value) and text in str(info.value)
    assert "rerun" in str(info.value)             # says what to do


def test_truncated_checkpoint_is_named(tmp_path):
    from dnn.convnet.train import _load_checkpoint

    path = tmp_path / "checkpoint.npz"
    _truncated_npz(path)
    with pytest.raises(RunFileError) as info:
        _load_checkpoint(path, model=None)        # fails on the file, before any model access
    assert str(path) in str(info.value) and "delete it" in str(info.value)


def test_wrong_md5_archive_is_named(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(gzip.compress(b"not cifar"))
    with pytest.raises(dnn.DataError) as info:
        dnn.load_cifar10(tmp_path, download=False)
    assert str(archive) in str(info.value) and "MD5" in str(info.value)


# ------------------------------------------------------------------ CLI

TRAIN = ["train", "--data", "synthetic", "--n-train", "64", "--n-test", "32", "--depth", "8",
         "--width", "4", "--epochs", "1", "--batch-size", "16", "--lr", "0.05", "--milestones", ""]

CLI = [
    ("quick-seed-negative", ["quick", "--seed", "-1"], "--seed"),
    ("quick-unknown-option", ["quick", "--frobnicate"], "--frobnicate"),
    ("simulate-lr-nan", ["simulate", "--lr", "nan"], "--lr"),
    ("simulate-lr-inf", ["simulate", "--lr", "inf"], "--lr"),
    ("simulate-lr-zero", ["simulate", "--lr", "0"], "lr must be > 0"),
    ("simulate-lr-string", ["simulate", "--lr", "fast"], "--lr"),
    ("simulate-lr-tiny", ["simulate", "--lr", "1e-9"], "max_steps"),
    ("simulate-lr-underflow", ["simulate", "--lr", "1e-300"], "infinitely many steps"),
    ("simulate-dim-huge", ["simulate", "--dim", "100000"], "max_memory"),
    ("simulate-chains-huge", ["simulate", "--chains", "2000000000"], "max_memory"),
    ("simulate-max-memory-small", ["simulate", "--max-memory", "1KiB"], "max_memory"),
    ("simulate-max-memory-bad", ["simulate", "--max-memory", "4XB"], "--max-memory"),
    ("simulate-max-steps-bad", ["simulate", "--max-steps", "0"], "--max-steps"),
    ("simulate-max-steps-small", ["simulate", "--max-steps", "100"], "max_steps"),
    ("simulate-em-unstable", ["simulate", "--method", "em", "--lr", "5"], "lr is unstable"),
    ("simulate-sgd-unstable", ["simulate", "--lr", "5"], "lr*h_max"),
    ("simulate-unknown-method", ["simulate", "--method", "rk4"], "method"),
    ("simulate-unknown-sampler", ["simulate", "--sampler", "x"], "sampler"),
    ("simulate-unknown-problem", ["simulate", "--problem", "logistic"], "problem"),
    ("simulate-unknown-precision", ["simulate", "--precision", "half"], "precision"),
    ("simulate-batch-gt-n", ["simulate", "--batch-size", "300"], "batch_size=300 > n_data=200"),
    ("simulate-one-chain", ["simulate", "--chains", "1"], "chains must be >= 2"),
    ("simulate-steps-huge", ["simulate", "--steps", "100000000"], "max_steps"),
    ("simulate-lsq-dim-gt-n", ["simulate", "--problem", "least-squares", "--dim", "300"],
     "dim=300 > n_data=200"),
    ("simulate-epoch-shuffle-gaussian", ["simulate", "--sampler", "epoch_shuffle"],
     "problem 'least-squares'"),
    ("simulate-ou-lr-underflow", ["simulate", "--method", "ou", "--lr", "1e-300"],
     "infinitely many steps"),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], "--lr"),
    ("train-lr-negative", [*TRAIN, "--lr", "-1"], "lr"),
    ("train-batch-gt-data", [*TRAIN, "--batch-size", "128"], "batch_size"),
    ("train-unknown-loss", [*TRAIN, "--loss", "hinge"], "loss"),
    ("train-unknown-shortcut", [*TRAIN, "--shortcut", "dense"], "shortcut"),
    ("train-unknown-precision", [*TRAIN, "--precision", "fp8"], "precision"),
    ("train-unknown-data", [*TRAIN, "--data", "imagenet"], "data"),
    ("train-unknown-backend", [*TRAIN, "--backend", "torch"], "backend"),
    ("estimate-missing", ["estimate", "{tmp}/no_such_run"], "{tmp}/no_such_run"),
    ("estimate-batch-zero", ["estimate", "{tmp}", "--batch-size", "0"], "--batch-size"),
    ("grid-unknown-preset", ["grid", "--preset", "huge"], "preset"),
    ("grid-bad-shard", ["grid", "--preset", "smoke", "--shard", "3/2"], "shard"),
    ("report-missing", ["report", "{tmp}/no_such_runs"], "{tmp}/no_such_runs"),
]


def _check_cli(args, text, tmp_path, capsys):
    before = sorted(tmp_path.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert text in err, err
    assert sorted(tmp_path.rglob("*")) == before          # nothing half-written
    return err


@pytest.mark.parametrize("args, text", [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli_rejects_bad_input(args, text, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] in ("quick", "simulate", "train"):
        args += ["--out", str(tmp_path / "out"), "--quiet"]
    _check_cli(args, text.replace("{tmp}", str(tmp_path)), tmp_path, capsys)


@pytest.mark.parametrize("command", ["quick", "simulate", "train"])
def test_cli_out_that_is_a_file(command, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    args = {"quick": ["quick"], "simulate": ["simulate"], "train": TRAIN}[command]
    err = _check_cli([*args, "--out", str(target), "--quiet"], f"{target} exists and is not a "
                     "directory", tmp_path, capsys)
    assert "out:" in err and "Errno" not in err
    assert target.read_text() == "x"


def test_cli_estimate_on_a_file(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    _check_cli(["estimate", str(target)], f"{target} is not a directory", tmp_path, capsys)


@pytest.mark.parametrize("kw, name, text", [c[1:] for c in RUN_FILES], ids=[c[0] for c in RUN_FILES])
def test_cli_estimate_corrupt_run_files(kw, name, text, tmp_path, capsys):
    kw = dict(kw)
    weights = kw.pop("weights", None)
    run, _ = _run_dir(tmp_path, **kw)
    if weights is not None:
        weights(run / "final.weights.h5")
    _check_cli(["estimate", str(run), "--quiet"], str(run / name), tmp_path, capsys)


def test_cli_train_wrong_md5_archive_leaves_no_run_folder(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"not cifar"))
    _check_cli([*TRAIN, "--data", "cifar10", "--data-dir", str(data), "--out",
                str(tmp_path / "out"), "--quiet"],
               str(data / "cifar-10-python.tar.gz"), tmp_path, capsys)
    assert not (tmp_path / "out").exists()
