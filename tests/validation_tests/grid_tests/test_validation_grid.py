"""Grid definition: presets, run names, sharding and input checks (no training here)."""

import json
from pathlib import Path
from dataclasses import FrozenInstanceError, asdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from validation.grid import (
    PRESETS,
    Preset,
    StationarySettings,
    get_preset,
    grid_runs,
    parse_shard,
    run_grid,
    run_name,
    shard_runs,
)


def test_paper_preset_is_the_papers_grid():
    p = get_preset("paper")
    assert p.configurations() == tuple((s, lr) for s in (100, 200, 500)
                                       for lr in (0.08, 0.2, 0.5))
    assert (p.depth, p.epochs, p.milestones, p.lr_decay, p.momentum) == (56, 125, (60, 100),
                                                                         0.1, 0.0)
    assert p.data == "cifar10" and p.seeds == (0, 1, 2, 3, 4)
    runs = grid_runs("paper")
    assert len(runs) == 9 * 5 * 2
    assert runs[0].name == "kld_bs100_lr0.08_seed0"
    assert {r.loss for r in runs} == {"kld", "logit_grad"}


def test_smoke_preset_is_tiny_and_synthetic():
    p = get_preset("smoke")
    assert p.data == "synthetic" and p.depth == 8 and p.width == 4
    assert 2 <= len(p.configurations()) <= 3 and len(p.seeds) == 2
    ratios = sorted(s / lr for s, lr in p.configurations())
    assert ratios[0] == ratios[1] < ratios[2]      # an equal pair and a far one


def test_fashion_preset_is_the_papers_grid_on_fashion_mnist():
    from validation.grid import train_config

    p = get_preset("fashion")
    assert p.configurations() == get_preset("paper").configurations()
    assert p.data == "fashion_mnist" and p.depth == 8 and p.n_test is None and len(p.seeds) >= 2
    assert set(p.losses) == {"kld", "logit_grad"} and (p.lr_decay, p.momentum) == (0.1, 0.0)
    # The paper's schedule shape: LR / 10 after 60/125 = 48% and 100/125 = 80% of the epochs.
    first, second = (m / p.epochs for m in p.milestones)
    assert abs(first - 0.48) <= 0.03 and abs(second - 0.80) <= 0.03
    assert p.n_train is not None and p.n_train % 10 == 0 and p.n_train <= 60000   # class-balanced
    assert len(grid_runs("fashion", "kld")) == 18
    config = train_config("fashion", grid_runs("fashion")[0])
    assert (config.data, config.train_size, config.test_size) == ("fashion_mnist", p.n_train, 10000)


def test_presets_are_frozen():
    with pytest.raises(FrozenInstanceError):
        PRESETS["paper"].epochs = 3


def test_run_name_formats_the_learning_rate_compactly():
    assert run_name("kld", 100, 0.08, 0) == "kld_bs100_lr0.08_seed0"
    assert run_name("logit_grad", 500, 0.5, 4) == "logit_grad_bs500_lr0.5_seed4"
    assert run_name("kld", 32, 1e-4, 1) == "kld_bs32_lr0.0001_seed1"


def test_all_names_are_distinct():
    names = [r.name for p in PRESETS for r in grid_runs(p)]
    for p in PRESETS:
        ns = [r.name for r in grid_runs(p)]
        assert len(set(ns)) == len(ns)
    assert names


@given(st.integers(1, 20), st.sampled_from(sorted(PRESETS)))
def test_shards_partition_the_grid(n, preset):
    runs = grid_runs(preset)
    shards = [shard_runs(runs, (i, n)) for i in range(n)]
    union = [r.name for s in shards for r in s]
    assert sorted(union) == sorted(r.name for r in runs)   # covered exactly once
    assert len(union) == len(set(union))                   # disjoint
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1                    # balanced
    # deterministic: the same shard twice is the same list
    assert shard_runs(grid_runs(preset), (0, n)) == shards[0]


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1/2 ", (1, 2)),
                                            (None, None)])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/3", "1/0", "a/b", "1", "1/2/3", "", "1.5/3", "/3"])
def test_parse_shard_rejects_bad_strings(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_unknown_preset_and_loss_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="preset must be one of"):
        get_preset("huge")
    with pytest.raises(ValueError, match="preset must be one of"):
        run_grid("huge", tmp_path)
    with pytest.raises(ValueError, match="loss must be one of"):
        run_grid("smoke", tmp_path, losses=("kld", "hinge"))
    with pytest.raises(ValueError, match="loss must be one of"):
        grid_runs("smoke", "kld,mse")
    with pytest.raises(ValueError, match="shard"):
        run_grid("smoke", tmp_path, shard="2/2")
    with pytest.raises(ValueError, match="shard"):
        run_grid("smoke", tmp_path, shard=(0, 0))
    assert not any(tmp_path.iterdir())   # nothing was written


def test_losses_accept_a_comma_separated_string():
    assert {r.loss for r in grid_runs("smoke", "logit_grad")} == {"logit_grad"}
    assert len(grid_runs("smoke", "kld, logit_grad")) == len(grid_runs("smoke"))


def test_preset_validation():
    with pytest.raises(ValueError, match="configurations"):
        Preset(name="empty")
    with pytest.raises(ValueError, match="learning rates"):
        Preset(name="x", configs=((10, -0.1),))
    with pytest.raises(ValueError, match="seeds"):
        Preset(name="x", configs=((10, 0.1),), seeds=(0, 0))
    with pytest.raises(ValueError, match="n_blocks"):
        StationarySettings(n_blocks=1)


def _fake_run(run_dir, config, status):
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": status, "config": config}))


def test_grid_records_diverged_runs_and_moves_on(tmp_path):
    from validation.grid import train_config

    spec = grid_runs("smoke", "kld")[0]
    cfg = asdict(train_config("smoke", spec))
    _fake_run(tmp_path / spec.name, cfg, "diverged")
    res = run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True)
    assert res["n_trained"] == 0 and res["n_diverged"] == 1
    assert res["runs"][spec.name]["status"] == "diverged" and res["n_failed"] == 0
    log = json.loads(open(res["summary_file"]).read())
    assert log["n_diverged"] == 1 and log["shard"] == [0, 6]
    merged = json.loads((tmp_path / "grid.json").read_text())
    assert merged["runs"][spec.name]["status"] == "diverged"
    assert list(merged["invocations"]) == [Path(res["summary_file"]).name]


def test_grid_refuses_a_folder_holding_another_configuration(tmp_path):
    from validation.grid import train_config

    spec = grid_runs("smoke", "kld")[0]
    cfg = asdict(train_config("smoke", spec))
    cfg["epochs"] = 99
    _fake_run(tmp_path / spec.name, cfg, "completed")
    with pytest.raises(ValueError, match="different configuration.*epochs"):
        run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True)


def test_the_grid_modules_import_neither_ray_nor_keras():
    # Ray is imported only for executor="ray"; keras only when a stage runs.
    import subprocess
    import sys

    code = ("import sys, validation.grid, validation.cli.grid, validation.grid.executors, "
            "validation.grid.stages, validation.grid.locking; "
            "print(sorted(m for m in ('ray', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_data_dir_reaches_the_training_config_but_not_the_runs_identity(tmp_path):
    from validation.grid import train_config
    from validation.grid.presets import _config_mismatch
    from dataclasses import asdict

    spec = grid_runs("fashion", "kld")[0]
    a = train_config("fashion", spec)
    b = train_config("fashion", spec, data_dir=tmp_path)
    assert a.data_dir is None and b.data_dir == str(tmp_path)
    # A run trained from another folder is the same run: the grid may resume it.
    assert _config_mismatch(asdict(a), asdict(b)) == []
