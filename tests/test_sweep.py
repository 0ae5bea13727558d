"""Sweeps on Ray Tune: the plan, the table, and a real two-seed sweep on a local Ray in which one trial's
worker is killed after its first checkpoint, restarted by Tune, and ends bit for bit like an
uninterrupted run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fleetmarl.checkpoint import load_plain
from fleetmarl.cli import main
from fleetmarl.cli.sweep import parse_grid, parse_seeds
from fleetmarl.config import Config
from fleetmarl.errors import UserError
from fleetmarl.sweep import (
    KILL_ONCE_ENV,
    TrialRow,
    format_table,
    make_plan,
    summarize_rows,
    sweep_report,
    trial_config,
)
from fleetmarl.trainer import train
from tests.conftest import TINY, tiny_overrides


def test_plan_is_seeds_times_grid_and_checked_before_ray_starts() -> None:
    plan = make_plan(Config(**TINY), [42, 123], {"LR_ACTOR": [1e-3, 3e-4]})
    assert [(c["RANDOM_SEED"], c["LR_ACTOR"]) for c in plan.combinations()] == [
        (42, 1e-3), (42, 3e-4), (123, 1e-3), (123, 3e-4)]
    with pytest.raises(UserError, match="twice"):
        make_plan(Config(**TINY), [42, 42], {})
    with pytest.raises(UserError):  # an impossible value is caught for the trial that would get it
        make_plan(Config(**TINY), [1], {"NUM_EPISODES": [8, 7]})


def test_command_line_values_are_typed_and_checked() -> None:
    assert parse_seeds("42,123,2024") == [42, 123, 2024]
    assert parse_grid(["LR_ACTOR=0.001,0.0003", "ENVIRONMENT_TYPE=full,simplified"]) == {
        "LR_ACTOR": [0.001, 0.0003], "ENVIRONMENT_TYPE": ["full", "simplified"]}
    for bad in (["RANDOM_SEED=1,2"], ["NOT_A_KEY=1"], ["LR_ACTOR"]):
        with pytest.raises(UserError):
            parse_grid(bad)
    with pytest.raises(UserError, match="integers"):
        parse_seeds("42,x")


def test_each_trial_gets_its_own_folders(tmp_path: Path) -> None:
    plan = make_plan(Config(**TINY), [7], {"LR_ACTOR": [0.002]}, str(tmp_path / "sweeps" / "exp"))
    params = {"base": plan.base, "checkpoints_root": plan.checkpoints_root, "seed": 7, "grid": {"LR_ACTOR": 0.002}}
    local = trial_config(params, tmp_path / "ray_tmp", "trial_0")
    assert (local.RANDOM_SEED, local.LR_ACTOR) == (7, 0.002)
    assert local.CHECKPOINTS_DIR == str(tmp_path / "sweeps" / "exp" / "trial_0" / "checkpoints")
    on_s3 = make_plan(Config(**TINY, CHECKPOINTS_DIR="s3://bucket/sweep/"), [7], {}, str(tmp_path / "exp"))
    params = {"base": on_s3.base, "checkpoints_root": on_s3.checkpoints_root, "seed": 7}
    assert trial_config(params, tmp_path / "ray_tmp", "trial_0").CHECKPOINTS_DIR == "s3://bucket/sweep/trial_0/checkpoints"


def test_table_and_json_summarise_across_seeds() -> None:
    rows = [TrialRow(42, {}, "/s/a", {"on_time_rate": 0.8, "reward": 10.0}),
            TrialRow(123, {}, "/s/b", {"on_time_rate": 0.9, "reward": 14.0}),
            TrialRow(7, {}, None, {}, error="RuntimeError: boom"),
            TrialRow(9, {}, "/s/c", {"on_time_rate": 0.1}, finished=False)]
    summary = summarize_rows(rows)["all"]
    assert summary["seeds"] == [42, 123]
    assert summary["on_time_rate"]["mean"] == pytest.approx(0.85)
    assert summary["on_time_rate"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    table = format_table(rows)
    assert "0.850 ± 0.071" in table and "FAILED" in table and "UNFINISHED" in table and "/s/b" in table
    assert "UNFINISHED" in format_table(rows[3:])  # no trial has final metrics yet (interrupted early)
    report = sweep_report(rows)
    assert [t["seed"] for t in report["trials"]] == [42, 123, 7, 9]
    assert report["trials"][3]["finished"] is False
    assert set(report["trials"][0]) == {"seed", "checkpoint", "metrics"}


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["sweep", "--seeds", "1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[ray]"' in err[0]


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.slow
def test_two_seed_sweep_survives_a_killed_worker_bit_for_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys) -> None:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))  # Ray's workers inherit the driver's environment
    monkeypatch.chdir(tmp_path)
    overrides = tiny_overrides(NUM_EPISODES=8, MODEL_SAVE_INTERVAL=2, EVAL_EPISODES=2)
    try:
        code = main(["sweep", "--seeds", "3,5", "--num-cpus", "2", "--storage", str(tmp_path / "sweeps"),
                     "--name", "two", "--max-failures", "2", "--json", *overrides])
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert marker.is_file(), "no trial was killed"
    killed_seed = int(marker.read_text().split()[0])
    trials = {t["seed"]: t for t in report["trials"]}
    assert set(trials) == {3, 5}
    assert set(report["summary"]["all"]["seeds"]) == {3, 5}
    assert "on_time_rate" in report["summary"]["all"]

    # the restarted trial's last checkpoint equals an uninterrupted run's, bit for bit
    config = Config(**TINY).replace(NUM_EPISODES=8, MODEL_SAVE_INTERVAL=2, EVAL_EPISODES=2, RANDOM_SEED=killed_seed,
                                    CHECKPOINTS_DIR=str(tmp_path / "reference"))
    reference = train(config, log=lambda m: None)
    swept = Path(trials[killed_seed]["checkpoint"])
    for name in ("agent_0.pth", "agent_1.pth"):
        assert _tensors_equal(load_plain(swept / name), load_plain(reference.last_checkpoint / name)), name
    swept_state = load_plain(swept / "training_state.pth")
    reference_state = load_plain(reference.last_checkpoint / "training_state.pth")
    assert swept_state["episode"] == 8
    assert swept_state["episode_rewards_log"] == reference_state["episode_rewards_log"]
    assert _tensors_equal(swept_state["rng"], reference_state["rng"])

    # --resume on the finished sweep (Tuner.restore) trains nothing again and reports the same trials
    try:
        assert main(["sweep", "--resume", str(tmp_path / "sweeps" / "two"), "--num-cpus", "2", "--json"]) == 0
    finally:
        ray.shutdown()
    again = json.loads(capsys.readouterr().out)
    assert {t["seed"]: t["checkpoint"] for t in again["trials"]} == {s: t["checkpoint"] for s, t in trials.items()}
