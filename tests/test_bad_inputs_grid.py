"""Bad input to ``grid`` and ``report``, at the command line and in the library.

Usage errors: exit code 2, one line naming the argument (or path) and the value, and
nothing trained or written.  Broken stage files are not errors: they are reported by
path, moved aside and their stage redone (tested with fast fake stages, see
``validation_tests/grid_tests/grid_helpers.py``).  A failed stage makes ``grid`` exit 1 after the
others are done.
"""

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "validation_tests" / "grid_tests"))
import grid_helpers  # noqa: E402

from validation.cli import main  # noqa: E402
from validation.grid import (  # noqa: E402
    StationarySettings,
    grid_runs,
    parse_shard,
    run_grid,
    train_config,
)
from validation.grid.stages import STAGES  # noqa: E402


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- usage errors: CLI

@pytest.mark.parametrize("option, value, named", [
    ("--shard", "3/2", "3/2"),
    ("--shard", "a/b", "a/b"),
    ("--shard", "-1/2", "-1/2"),
    ("--shard", "1/0", "1/0"),
    ("--preset", "huge", "huge"),
    ("--loss", "hinge", "hinge"),
    ("--loss", "kld,kld", "kld"),
    ("--stationary-lr", "nan", "nan"),
    ("--stationary-lr", "inf", "inf"),
    ("--stationary-lr", "0", "0"),
    ("--stationary-lr", "-1", "-1"),
    ("--stationary-steps", "0", "0"),
    ("--stationary-batch-size", "0", "0"),
    ("--momentum", "1", "1"),
    ("--momentum", "-0.1", "-0.1"),
    ("--momentum", "nan", "nan"),
    ("--momentum", "0.9x", "0.9x"),
    ("--stationary-momentum", "1.5", "1.5"),
    ("--stationary-momentum", "nan", "nan"),
    ("--executor", "bogus", "bogus"),
    ("--address", "localhost:6379", "--address"),   # without --executor ray
    ("--data-dir", "/no/such/folder", "/no/such/folder"),
])
def test_grid_cli_rejects_bad_options_before_any_work(capsys, tmp_path, option, value, named):
    out = tmp_path / "runs"
    argv = ["grid", "--preset", "smoke", "--out", out, "--quiet", f"{option}={value}"]
    if option == "--preset":
        argv = ["grid", f"--preset={value}", "--out", out, "--quiet"]
    code, stdout, err = _cli(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert named in err and err.startswith("sgd-minima grid: error:")
    if option not in ("--stationary-lr", "--stationary-steps", "--stationary-batch-size",
                      "--executor", "--address",
                      "--preset"):
        assert option.lstrip("-") in err
    assert not out.exists()   # nothing trained, nothing written


def test_grid_cli_rejects_an_out_that_is_a_file(capsys, tmp_path):
    f = tmp_path / "not_a_folder"
    f.write_text("x")
    code, _, err = _cli(capsys, "grid", "--preset", "smoke", "--out", f, "--quiet")
    assert code == 2 and str(f) in err and "not a directory" in err
    assert f.read_text() == "x"


def test_grid_cli_ray_without_ray_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # makes `import ray` fail
    out = tmp_path / "runs"
    code, _, err = _cli(capsys, "grid", "--preset", "smoke", "--out", out, "--quiet",
                        "--executor", "ray")
    assert code == 2 and "pip install -e '.[cluster]'" in err and "--executor ray" in err
    assert not out.exists()


# ---------------------------------------------------------------- usage errors: library

@pytest.mark.parametrize("kwargs, match", [
    ({"shard": "3/2"}, r"shard.*3/2"),
    ({"shard": (1, 0)}, r"shard.*1/0"),
    ({"preset": "huge"}, r"preset must be one of.*'huge'"),
    ({"losses": ("kld", "hinge")}, r"loss must be one of.*'hinge'"),
    ({"executor": "bogus"}, r"executor must be one of.*'bogus'"),
    ({"address": "auto"}, r"address.*'auto'"),
    ({"executor": "ray", "max_retries": -1}, r"max_retries.*-1"),
])
def test_run_grid_rejects_bad_arguments_before_any_work(tmp_path, kwargs, match):
    kwargs = {"preset": "smoke", **kwargs}
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match=match):
        run_grid(kwargs.pop("preset"), out, quiet=True, **kwargs)
    assert not out.exists()


@pytest.mark.parametrize("beta", [math.nan, 1.0, -0.5, True, "0.9"])
def test_momentum_settings_must_be_in_the_unit_interval(beta):
    with pytest.raises(ValueError, match=r"stationary momentum must be .*" + str(beta)):
        StationarySettings(momentum=beta)
    from validation.grid import get_preset
    import dataclasses

    with pytest.raises(ValueError, match=r"^momentum must be .*" + str(beta)):
        dataclasses.replace(get_preset("smoke"), momentum=beta)


def test_grid_momentum_flags_reach_training_and_the_phase_and_mixed_beta_is_refused(
        monkeypatch, tmp_path, capsys):
    import validation.stationary as vstat

    grid_helpers.install(monkeypatch)
    seen, sizes = [], []

    def run_stationary(run_dir, **kwargs):
        seen.append(kwargs.get("momentum"))
        sizes.append(kwargs.get("batch_size"))
        rec = {"status": "completed", "phase": {}, "schema_version": 2}
        (run_dir / "stationary.json").write_text(json.dumps(rec))
        return rec

    monkeypatch.setattr(vstat, "run_stationary", run_stationary)
    out = tmp_path / "runs"
    base = ["grid", "--preset", "smoke", "--loss", "kld", "--shard", "0/6", "--out", out,
            "--quiet"]
    code, _, _ = _cli(capsys, *base, "--momentum", "0.9", "--stationary-momentum", "0.5",
                      "--stationary-batch-size", "7")
    assert code == 0 and seen == [0.5] and sizes == [7]
    (run,) = [json.loads(p.read_text()) for p in out.glob("*/run.json")]
    assert run["config"]["momentum"] == 0.9
    # the same folder with another training β: refused before any work, one line, exit 2
    code, _, err = _cli(capsys, *base, "--momentum", "0.5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "different configuration" in err and "momentum" in err
    assert seen == [0.5]


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "100"])
def test_stationary_batch_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match=r"stationary batch_size must be .*" + str(size)):
        StationarySettings(batch_size=size)


@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, 0.0, -1.0, True])
def test_stationary_lr_must_be_finite_and_positive(lr):
    with pytest.raises(ValueError, match=r"stationary lr .*" + str(lr).replace("-", "\\-")):
        StationarySettings(lr=lr)


def test_run_grid_out_dir_naming_a_file(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("keep me")
    with pytest.raises(ValueError, match="out_dir.*file.txt.*not a directory"):
        run_grid("smoke", f, quiet=True)
    assert f.read_text() == "keep me"


def test_run_grid_ray_without_ray(tmp_path, monkeypatch):
    from validation.grid.executors import MissingRayError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingRayError, match=r"pip install -e '\.\[cluster\]'"):
        run_grid("smoke", tmp_path / "runs", executor="ray", quiet=True)
    assert not (tmp_path / "runs").exists()


def test_parse_shard_names_the_value():
    for text in ("3/2", "a/b", "-1/2", "1/0"):
        with pytest.raises(ValueError, match="shard") as info:
            parse_shard(text)
        assert text in str(info.value) or text.replace("/", "") in str(info.value)


# ---------------------------------------------------------------- broken stage files

_ONE = grid_runs("smoke", "kld")[0]   # shard (0, 6) of the kld runs is this run alone
_BROKEN = {
    "truncated": lambda text: text[: len(text) // 2],
    "a list": lambda text: "[1, 2]",
    "empty": lambda text: "",
    "not UTF-8": lambda text: "\udcff",   # written with surrogateescape: a lone 0xff byte
}


def _fake_grid(monkeypatch, tmp_path, **fake):
    calls = grid_helpers.install(monkeypatch, **fake)
    run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True, compilation_cache=False)
    calls.clear()
    return calls, tmp_path / _ONE.name


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
@pytest.mark.parametrize("how", sorted(_BROKEN))
def test_broken_stage_file_is_reported_by_path_and_redone(monkeypatch, tmp_path, stage, how):
    calls, run_dir = _fake_grid(monkeypatch, tmp_path)
    path = run_dir / next(s.filename for s in STAGES if s.name == stage)
    broken = _BROKEN[how](path.read_text())
    path.write_bytes(broken.encode("utf-8", "surrogateescape"))
    with pytest.warns(RuntimeWarning, match=str(path)):
        res = run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True,
                       compilation_cache=False)
    assert calls == [(stage, _ONE.name)]                     # that stage, and only it, redone
    entry = res["runs"][_ONE.name]
    assert entry["ran"] == [stage] and entry["failure"] is None and res["n_failed"] == 0
    assert [f["path"] for f in res["invalid_files"]] == [str(path)]
    assert json.loads(path.read_text())                       # valid again
    assert Path(res["invalid_files"][0]["moved_to"]).read_bytes() == broken.encode(
        "utf-8", "surrogateescape")                           # the broken file is kept aside


@pytest.mark.parametrize("filename, content, problem", [
    ("run.json", {"status": "completed", "config": "kld"}, "key 'config' is a str, not a dict"),
    ("run.json", {"status": "finished", "config": {}}, "status 'finished'"),
    ("run.json", {"config": {}}, "key 'status' is missing"),
    ("estimates.json", {"trace_grad_cov": {}, "trace_hessian": {}}, "key 'lambda_max' is missing"),
    ("estimates.json", {"trace_grad_cov": {}, "trace_hessian": 3.0, "lambda_max": {}},
     "key 'trace_hessian' is a float, not a dict"),
    ("stationary.json", {"status": None, "phase": {}}, "key 'status' is a null, not a str"),
])
def test_ill_typed_stage_file_is_redone_and_the_cli_says_where(monkeypatch, tmp_path, capsys,
                                                               filename, content, problem):
    calls, run_dir = _fake_grid(monkeypatch, tmp_path)
    if filename == "run.json" and "config" in content and content["config"] == {}:
        content["config"] = asdict(train_config("smoke", _ONE))
    (run_dir / filename).write_text(json.dumps(content))
    with pytest.warns(RuntimeWarning, match=problem.replace("(", r"\(")):
        code, out, err = _cli(capsys, "grid", "--preset", "smoke", "--out", tmp_path,
                              "--loss", "kld", "--shard", "0/6", "--quiet")
    assert code == 0
    assert f"redone {run_dir / filename}: {problem}" in out
    stage = next(s.name for s in STAGES if s.filename == filename)
    assert calls == [(stage, _ONE.name)]


def test_stale_temporary_files_are_removed_and_reported(monkeypatch, tmp_path):
    calls, run_dir = _fake_grid(monkeypatch, tmp_path)
    (run_dir / "stationary.json").unlink()
    stale = [run_dir / ".history.json.k3j2.tmp", run_dir / ".final.weights.h5.x1.tmp.weights.h5",
             tmp_path / ".grid.json.abcd.tmp"]
    for p in stale:
        p.write_text("half")
    keep = run_dir / "notes.tmp.txt"   # not a temporary file of ours
    keep.write_text("mine")
    res = run_grid("smoke", tmp_path, losses="kld", shard=(0, 6), quiet=True,
                   compilation_cache=False)
    assert sorted(res["removed_temps"]) == sorted(str(p) for p in stale)
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"
    assert calls == [("stationary", _ONE.name)]


# ---------------------------------------------------------------- a failing stage: exit 1

@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_a_failed_stage_gives_exit_1_and_a_summary_naming_it(monkeypatch, tmp_path, capsys,
                                                            stage):
    runs = grid_runs("smoke", "kld")
    victim = runs[1]
    grid_helpers.install(monkeypatch, fail=(stage, victim.name))
    code, out, err = _cli(capsys, "grid", "--preset", "smoke", "--out", tmp_path, "--loss", "kld",
                          "--quiet")
    assert code == 1
    path = tmp_path / victim.name / next(s.filename for s in STAGES if s.name == stage)
    assert (f"FAILED {victim.name} at stage {stage} ({path}): ValueError: injected failure"
            in out)
    assert "1 FAILED" in out.splitlines()[0]
    # the grid went on: every other run has all its stage files
    for r in runs:
        if r != victim:
            assert all((tmp_path / r.name / s.filename).is_file() for s in STAGES)
    log = json.loads(Path(out.rsplit("details: ", 1)[1].strip()).read_text())
    assert [f["name"] for f in log["failures"]] == [victim.name]
    assert "injected failure" in log["failures"][0]["failure"]["traceback"]


def test_a_diverged_run_is_reported_but_is_not_a_failure(monkeypatch, tmp_path, capsys):
    grid_helpers.install(monkeypatch)
    spec = grid_runs("smoke", "kld")[0]
    (tmp_path / spec.name).mkdir()
    (tmp_path / spec.name / "run.json").write_text(json.dumps(
        {"status": "diverged", "config": asdict(train_config("smoke", spec))}))
    code, out, _ = _cli(capsys, "grid", "--preset", "smoke", "--out", tmp_path, "--loss", "kld",
                        "--shard", "0/6", "--quiet")
    assert code == 0
    assert "1 diverged" in out and f"not a failure): {spec.name}" in out


# ---------------------------------------------------------------- report on nothing usable

def _garbage(root):
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    (root / "junk").mkdir()
    (root / "junk" / "run.json").write_text("{not json")
    return root


@pytest.mark.parametrize("make", [
    pytest.param(lambda root: root, id="missing"),
    pytest.param(lambda root: (root.write_text("x"), root)[1], id="a file"),
    pytest.param(lambda root: (root.mkdir(), root)[1], id="empty"),
    pytest.param(_garbage, id="garbage"),
])
def test_report_on_nothing_usable_exits_nonzero_naming_the_path(capsys, tmp_path, make):
    runs = make(tmp_path / "runs")
    code, _, err = _cli(capsys, "report", runs, "--out", tmp_path / "report")
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(runs) in err
