"""The DNN and validation subcommands of the CLI: a tiny train -> estimate, and bad input."""

import json
import os
import subprocess
import sys

import pytest

from validation.cli import main

TINY = ["--data", "synthetic", "--n-train", "256", "--n-test", "64", "--depth", "8",
        "--width", "4", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
        "--milestones", "1", "--seed", "3"]


def cli(*args, backend="jax"):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", "import sys; from validation.cli import main; "
                           "sys.exit(main())", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_tiny_train_then_estimate_from_the_cli(tmp_path):
    proc = cli("train", *TINY, "--loss", "xent", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "xent_bs32_lr0.05_seed3"
    assert proc.stdout.strip().endswith(f"{run_dir}: completed")
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["config"]["depth"] == 8
    hist = json.loads((run_dir / "history.json").read_text())["epochs"]
    assert [r["lr"] for r in hist] == pytest.approx([0.05, 0.005])      # milestone after epoch 1

    proc = cli("estimate", str(run_dir), "--examples", "96", "--batch-size", "32", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    est = json.loads((run_dir / "estimates.json").read_text())
    assert est["n_examples"] == 96
    tr_s, tr_h = est["trace_grad_cov"], est["trace_hessian"]
    assert tr_s["trace"] == pytest.approx(tr_s["mean_example_sqnorm"] - tr_s["mean_grad_sqnorm"])
    assert tr_h["n_hvp"] >= 3 and tr_h["se"] > 0

    # Rerunning a completed run trains nothing and reports it as completed.
    proc = cli("train", *TINY, "--loss", "xent", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0 and json.loads((run_dir / "history.json").read_text())["epochs"] == hist

    # A saturated network (the cheap stand-in for an under-trained ResNet-56 whose
    # inference-mode logits are huge): every per-example gradient vanishes, and the
    # estimate is flagged and exits 1 instead of posing as a measurement of 0.0.
    # The run trained with xent, whose gradient on a confidently wrong example is not 0;
    # the paper's clipped kld (the default loss) is the one that flattens both ways.
    import h5py

    run["config"]["loss"] = "kld"
    (run_dir / "run.json").write_text(json.dumps(run))
    with h5py.File(run_dir / "final.weights.h5", "r+") as f:
        kernel = f["layers/dense/vars/0"]
        kernel[...] = kernel[...] * 1e5
    proc = cli("estimate", str(run_dir), "--examples", "96", "--batch-size", "32", "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "degenerate estimate" in proc.stderr
    assert "Traceback" not in proc.stderr
    est = json.loads((run_dir / "estimates.json").read_text())
    assert est["degenerate"] is True and est["n_zero_grad"] == 96
    assert "96 of 96 examples" in est["degenerate_reason"]


@pytest.mark.parametrize("args, message", [
    (["train", *TINY, "--loss", "hinge"], "loss"),
    (["train", *TINY, "--lr", "0"], "lr"),
    (["train", *TINY, "--batch-size", "512"], "batch_size"),
    (["train", *TINY, "--depth", "10"], "depth"),
    (["train", *TINY, "--backend", "torch"], "backend"),
    (["train", *TINY, "--milestones", "a,b"], "--milestones must be comma-separated integers"),
    (["grid", "--preset", "huge"], "preset"),
    (["grid", "--preset", "smoke", "--shard", "3/2"], "shard"),
    (["grid", "--preset", "smoke", "--loss", "mse"], "loss"),
    (["grid", "--preset", "smoke", "--data", "imagenet"], "--data must be one of cifar10, synthetic, fashion_mnist"),
    (["report", "/nonexistent/runs"], "/nonexistent/runs"),
    (["estimate", "/nonexistent/run"], "/nonexistent/run"),
])
def test_bad_dnn_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
    if args[0] == "train":
        args = args + ["--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())              # nothing half-written
