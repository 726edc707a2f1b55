"""TrainConfig validation, backend selection, lazy import, and the training loop on tiny runs."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import dnn
from dnn.convnet.backend import import_keras, set_backend, to_numpy
from dnn.convnet.train import HISTORY_COLUMNS, TrainConfig, _batches

keras = import_keras()
REPO = Path(__file__).resolve().parents[3]
TIMING = {"seconds", "train_seconds", "images_per_s"}


# --------------------------------------------------------------------------- config


def test_defaults_are_the_papers():
    c = TrainConfig(batch_size=128, lr=0.1)
    assert (c.epochs, c.depth, c.width, c.momentum, c.milestones, c.lr_decay, c.loss, c.augment) == \
        (125, 56, 16, 0.0, (60, 100), 0.1, "kld", True)
    assert (c.l2, c.shortcut, c.precision, c.data, c.backend) == (1e-4, "projection", "float32", "cifar10", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 0.2


def test_lr_schedule_divides_at_milestones():
    c = TrainConfig(batch_size=128, lr=0.1)
    lrs = [c.lr_at(e) for e in range(125)]
    # Milestone m = after m completed epochs: 0-based epoch 60 is the first at lr/10.
    assert lrs[59] == 0.1 and lrs[60] == pytest.approx(0.01) and lrs[99] == pytest.approx(0.01)
    assert lrs[100] == pytest.approx(0.001) and lrs[124] == pytest.approx(0.001)
    assert len(set(lrs)) == 3


@pytest.mark.parametrize("kw,match", [
    ({"lr": 0.0}, "lr must be"),
    ({"lr": -0.1}, "lr must be"),
    ({"lr": float("nan")}, "lr must be"),
    ({"lr": float("inf")}, "lr must be"),
    ({"batch_size": 0}, "batch_size must be"),
    ({"batch_size": 2.0}, "batch_size must be"),
    ({"batch_size": 600, "data": "synthetic", "n_train": 512},
     "batch_size must be <= the number of training images \\(512\\)"),
    ({"batch_size": 50001}, "batch_size must be <= the number of training images \\(50000\\)"),
    ({"epochs": 0}, "epochs must be"),
    ({"depth": 51}, "depth must be 6n\\+2"),
    ({"depth": 9}, "depth must be 6n\\+2"),
    ({"loss": "mse"}, "loss must be one of"),
    ({"backend": "torch"}, "backend must be one of"),
    ({"precision": "float16"}, "precision must be one of"),
    ({"data": "imagenet"}, "data must be one of"),
    ({"shortcut": "B"}, "shortcut must be one of"),
    ({"milestones": (100, 60)}, "milestones must be strictly increasing"),
    ({"milestones": (0,)}, "milestones must be"),
    ({"milestones": 60}, "milestones must be a sequence"),
    ({"momentum": 1.0}, "momentum must be"),
    ({"lr_decay": 0.0}, "lr_decay must be"),
    ({"l2": -1.0}, "l2 must be"),
    ({"seed": -1}, "seed must be"),
    ({"n_train": 60000}, "n_train must be"),
    ({"n_test": 0}, "n_test must be"),
])
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{"batch_size": 128, "lr": 0.1, **kw})


@pytest.mark.parametrize("value", [1, "False", None])
def test_augment_must_be_a_real_bool(value):
    # bool("False") is True: a string would silently turn augmentation on.
    with pytest.raises(TypeError, match="augment must be True or False"):
        TrainConfig(batch_size=128, lr=0.1, augment=value)


def test_config_round_trips_through_json():
    c = TrainConfig(batch_size=64, lr=0.05, milestones=[3, 5], data_dir=Path("/data"))
    assert c.milestones == (3, 5) and c.data_dir == "/data"
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['learning_rate'\\]"):
        TrainConfig.from_dict({**c.to_dict(), "learning_rate": 0.1})


def test_batches_are_a_reproducible_permutation_per_epoch():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    full = list(_batches(x, y, 3, seed=4, start_epoch=0, epochs=3))
    assert len(full) == 9  # 3 full batches per epoch, remainder of 1 dropped
    for e in range(3):
        idx = np.concatenate([b[1] for b in full[3 * e:3 * e + 3]])
        assert len(set(idx.tolist())) == 9  # no repeats within an epoch
    epoch_orders = [tuple(np.concatenate([b[1] for b in full[3 * e:3 * e + 3]])) for e in range(3)]
    assert len(set(epoch_orders)) == 3  # a fresh permutation each epoch
    resumed = list(_batches(x, y, 3, seed=4, start_epoch=1, epochs=3))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(full[3:], resumed))


# --------------------------------------------------------------------------- backend & import


def test_set_backend_rejects_unknown_and_conflicting():
    current = keras.config.backend()
    other = {"jax": "tensorflow", "tensorflow": "jax"}[current]
    assert set_backend(current) == current
    with pytest.raises(ValueError, match=f"backend '{other}' requested, but keras is already imported with "
                                         f"backend '{current}'"):
        dnn.set_backend(other)
    with pytest.raises(ValueError, match="backend must be one of \\('jax', 'tensorflow'\\); got 'torch'"):
        dnn.set_backend("torch")


def test_bad_environment_backend(monkeypatch):
    from dnn.convnet.backend import default_backend

    monkeypatch.setenv("KERAS_BACKEND", "numpy")
    with pytest.raises(ValueError, match="KERAS_BACKEND must be one of .* got 'numpy'"):
        default_backend()
    monkeypatch.delenv("KERAS_BACKEND")
    assert default_backend() == "jax"


def _run_python(code, env=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_import_dnn_does_not_import_keras():
    code = (
        "import sys, dnn\n"
        "c = dnn.TrainConfig(batch_size=8, lr=0.1)\n"
        "x, y = dnn.synthetic_cifar(4, seed=0)\n"
        "heavy = [m for m in ('keras', 'jax', 'tensorflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert dnn.set_backend('tensorflow') == 'tensorflow'\n"
        "import os; assert os.environ['KERAS_BACKEND'] == 'tensorflow'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    r = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def test_dnn_functions_are_not_shadowed_by_submodules():
    import importlib

    importlib.import_module("dnn.convnet.train")
    importlib.import_module("dnn.convnet.resnet")
    assert callable(dnn.train) and dnn.train.__name__ == "train"
    assert callable(dnn.resnet) and dnn.resnet.__name__ == "resnet"


def test_every_public_name_resolves():
    for name in dnn.__all__:
        assert getattr(dnn, name) is not None, name
    with pytest.raises(AttributeError):
        dnn.no_such_name  # noqa: B018


# --------------------------------------------------------------------------- training


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _history(run_dir):
    return json.loads((Path(run_dir) / "history.json").read_text())["epochs"]


@pytest.mark.slow
def test_training_lowers_loss_and_beats_chance(reference_run):
    config, run_dir, info = reference_run
    hist = _history(run_dir)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    losses = [r["data_loss"] for r in hist]
    assert losses[0] > losses[1] > losses[2]
    # Chance is 0.1; the SE of an accuracy of 0.1 on 512 images is 0.013: require > 4 SE above.
    assert hist[-1]["accuracy"] > 0.1 + 4 * math.sqrt(0.1 * 0.9 / 512)
    for r in hist:
        assert r["loss"] > r["data_loss"] > 0  # loss includes the L2 penalty
        assert 0 <= r["val_accuracy"] <= 1 and math.isfinite(r["val_loss"])
        assert r["images_per_s"] > 0 and r["seconds"] >= r["train_seconds"] > 0


@pytest.mark.slow
def test_lr_changes_at_milestones(reference_run):
    config, run_dir, _ = reference_run
    assert config.milestones == (1, 2)
    assert [r["lr"] for r in _history(run_dir)] == pytest.approx([0.1, 0.05, 0.025], rel=1e-12)


@pytest.mark.slow
def test_run_folder_contents(reference_run):
    config, run_dir, info = reference_run
    names = {p.name for p in Path(run_dir).iterdir()}
    assert {"run.json", "history.json", "history.csv", "checkpoint.npz", "final.weights.h5"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary files left behind
    run = json.loads((Path(run_dir) / "run.json").read_text())
    assert run == json.loads(json.dumps(info))
    assert run["status"] == "completed" and run["epochs_completed"] == 3 and run["diverged_epoch"] is None
    assert run["config"] == {**config.to_dict(), "backend": keras.config.backend()}
    for key in ("versions", "backend", "device", "git_commit", "git_dirty", "wall_time_s", "sessions",
                "data", "n_params", "final"):
        assert key in run, key
    assert run["versions"]["keras"] == keras.__version__ and run["wall_time_s"] > 0
    assert run["data"]["n_train"] == 512 and len(run["data"]["mean"]) == 3
    assert run["final"] == _history(run_dir)[-1]
    csv = (Path(run_dir) / "history.csv").read_text().splitlines()
    assert csv[0].split(",") == list(HISTORY_COLUMNS) and len(csv) == 4


@pytest.mark.slow
def test_rerun_of_a_completed_run_returns_at_once(reference_run, tiny_config, tmp_path):
    config, run_dir, info = reference_run
    before = (Path(run_dir) / "history.json").read_bytes()
    t = time.perf_counter()
    again = dnn.train(config, run_dir, quiet=True)
    assert time.perf_counter() - t < 5
    assert again == json.loads(json.dumps(info))
    assert (Path(run_dir) / "history.json").read_bytes() == before
    with pytest.raises(ValueError, match="different config \\(lr: saved 0.1, given 0.2\\)"):
        dnn.train(dataclasses.replace(config, lr=0.2), run_dir, quiet=True)


@pytest.mark.slow
def test_load_run_reproduces_the_last_validation(reference_run):
    from dnn.convnet.losses import get_loss

    config, run_dir, _ = reference_run
    run = dnn.load_run(run_dir)
    config_, model, (x_tr, y_tr), (x_te, y_te) = run  # a 4-tuple
    assert config_ == dataclasses.replace(config, backend=keras.config.backend())
    assert x_tr.shape == (512, 32, 32, 3) and x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert x_te.shape == (256, 32, 32, 3) and run.x_test is x_te and run.y_train is y_tr
    np.testing.assert_allclose(x_tr.reshape(-1, 3).mean(axis=0, dtype=np.float64), 0, atol=1e-5)
    logits = to_numpy(model(x_te, training=False))
    onehot = np.eye(10, dtype=np.float32)[y_te]
    last = _history(run_dir)[-1]
    # Same weights, same preprocessing, inference-mode BN: the logged validation numbers.
    assert float(np.mean(to_numpy(get_loss(config.loss)(onehot, logits)))) == pytest.approx(
        last["val_data_loss"], rel=1e-4)
    assert float(np.mean(logits.argmax(1) == y_te)) == pytest.approx(last["val_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_history(reference_run, tmp_path):
    config, ref_dir, _ = reference_run

    class Interrupt(Exception):
        pass

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise Interrupt("simulated crash after epoch 1")

    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        dnn.train(config, run_dir, quiet=True, _callbacks=[StopAfterFirstEpoch()])
    partial = json.loads((run_dir / "run.json").read_text())
    assert partial["status"] == "running" and partial["epochs_completed"] == 1
    assert "Interrupt" in partial["interrupted"]["error"] and not (run_dir / "final.weights.h5").exists()
    assert [r["epoch"] for r in _history(run_dir)] == [1]

    info = dnn.train(config, run_dir, quiet=True)  # the same command again
    assert info["status"] == "completed" and len(info["sessions"]) == 2
    assert [s["start_epoch"] for s in info["sessions"]] == [0, 1]
    resumed, reference = _history(run_dir), _history(ref_dir)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]  # each epoch exactly once
    # Bitwise: batch order is a function of (seed, epoch) and every state (weights, BN
    # statistics, optimizer, augmentation RNG) is restored; XLA on CPU is deterministic.
    assert _strip(resumed) == _strip(reference)
    a, b = dnn.load_run(run_dir).model, dnn.load_run(ref_dir).model
    for va, vb in zip(a.variables, b.variables):
        np.testing.assert_array_equal(to_numpy(va), to_numpy(vb))


@pytest.mark.slow
def test_divergence_is_recorded(tiny_config, tmp_path):
    config = tiny_config(lr=1e12, epochs=2, n_train=128, n_test=32)
    info = dnn.train(config, tmp_path / "div", quiet=True)
    assert info["status"] == "diverged" and info["diverged_epoch"] == 1
    assert isinstance(info["diverged_batch"], int)
    hist = _history(tmp_path / "div")
    assert len(hist) == 1 and not math.isfinite(float(hist[0]["loss"]))  # JSON stores NaN as "nan"
    assert not (tmp_path / "div" / "final.weights.h5").exists()
    assert dnn.train(config, tmp_path / "div", quiet=True)["status"] == "diverged"  # not retried
    with pytest.raises(ValueError, match="'diverged' at epoch 1"):
        dnn.load_run(tmp_path / "div")


@pytest.mark.slow
def test_mixed_bfloat16_run(tiny_config, tmp_path):
    config = tiny_config(precision="mixed_bfloat16", epochs=1, n_train=64, n_test=32)
    info = dnn.train(config, tmp_path / "bf16", quiet=True)
    assert info["status"] == "completed" and math.isfinite(info["final"]["loss"])
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    run = dnn.load_run(tmp_path / "bf16")  # loaded in float32
    assert all(str(v.dtype) == "float32" for v in run.model.variables)


def test_load_run_needs_a_run(tmp_path):
    with pytest.raises(ValueError, match="has no run.json"):
        dnn.load_run(tmp_path)


@pytest.mark.slow
def test_tensorflow_backend_trains_in_subprocess(tmp_path):
    """The TensorFlow backend end to end (a fresh process: keras cannot switch backends)."""
    run_dir = tmp_path / "tf_run"
    code = (
        "import dnn, json, sys\n"
        "assert dnn.set_backend('tensorflow') == 'tensorflow'\n"
        "c = dnn.TrainConfig(batch_size=16, lr=0.05, epochs=2, depth=8, width=4, milestones=(1,),\n"
        "                    data='synthetic', n_train=128, n_test=64, backend='tensorflow')\n"
        f"info = dnn.train(c, {str(run_dir)!r}, quiet=True)\n"
        "assert info['status'] == 'completed', info['status']\n"
        f"r = dnn.load_run({str(run_dir)!r})\n"
        "print('LOGITS', json.dumps(r.model(r.x_test[:4], training=False).numpy().tolist()))\n"
    )
    env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    r = _run_python(code, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["backend"] == "tensorflow" and run["config"]["backend"] == "tensorflow"
    assert "tensorflow" in " ".join(run["versions"]) and run["epochs_completed"] == 2
    hist = _history(run_dir)
    assert [h["lr"] for h in hist] == pytest.approx([0.05, 0.005])
    assert all(math.isfinite(h["loss"]) for h in hist)
    # Weights written by TensorFlow load under this process's backend with identical outputs.
    tf_logits = np.array(json.loads(r.stdout.split("LOGITS", 1)[1]))
    here = dnn.load_run(run_dir)
    np.testing.assert_allclose(to_numpy(here.model(here.x_test[:4], training=False)), tf_logits,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_completed_run_with_lost_weights_is_restored_from_its_checkpoint(reference_run, tmp_path):
    """Deleted or truncated final weights: load_run names the file and says to rerun train,
    and rerunning train rebuilds them from checkpoint.npz (no dead end); a stale temp file
    of a killed write is removed when the folder is reopened."""
    import shutil

    from dnn._runio import RunFileError

    config, run_dir, _ = reference_run
    original = dnn.load_run(run_dir).model.get_weights()
    run = tmp_path / "copy"
    shutil.copytree(run_dir, run)
    weights = run / "final.weights.h5"
    for damage in ("delete", "truncate"):
        if damage == "delete":
            weights.unlink()
        else:
            weights.write_bytes(weights.read_bytes()[:1000])
        with pytest.raises(RunFileError, match=f"{weights}: the run is 'completed' but its final "
                                               "weights is (missing|unreadable).*rerun the same train"):
            dnn.load_run(run)
        (run / ".run.json.x1y2.tmp").write_text("{")
        info = dnn.train(config, run, quiet=True)
        assert info["status"] == "completed" and "weights_restored_from_checkpoint" in info
        assert not list(run.glob(".*.tmp*"))
        assert len(_history(run)) == config.epochs                 # nothing retrained
        restored = dnn.load_run(run).model.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(original, restored))


def test_failed_data_load_leaves_no_run_folder(tmp_path, tiny_config):
    from dnn.convnet.data import DataError

    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"not an archive")
    config = tiny_config(data="cifar10", data_dir=str(data))
    with pytest.raises(DataError, match="MD5"):
        dnn.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_corrupt_run_json_is_named(tmp_path, tiny_config):
    from dnn._runio import RunFileError

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"config": ')
    with pytest.raises(RunFileError, match="run.json: not valid JSON.*delete it and rerun"):
        dnn.train(tiny_config(), run, quiet=True)
