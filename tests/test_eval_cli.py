"""`fleetmarl eval` and `fleetmarl compare` as a user meets them: JSON, tables, seeds, errors, TensorBoard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fleetmarl.cli import main
from fleetmarl.config import Config
from tests.conftest import TINY, tiny_overrides

RATES = ("on_time_rate", "service_rate_weighted")
DOMAIN = ("on_time_rate", "service_rate_weighted", "missed_points", "energy_used", "distance_km", "reward")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./config.py decides the environment


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny trained run with periodic evaluation; its last checkpoint."""
    from fleetmarl.trainer import train

    root = tmp_path_factory.mktemp("trained")
    # a large actor learning rate makes the weights at the evaluation clearly different from the first ones
    config = Config(**{**TINY, "EVAL_INTERVAL": 4, "EVAL_EPISODES": 3, "LR_ACTOR": 0.01, "UPDATE_EVERY": 1},
                    CHECKPOINTS_DIR=str(root / "checkpoints"),
                    LOG_DIR=str(root / "runs"))
    result = train(config, log=lambda message: None)
    return result.last_checkpoint


def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: "), lines
    return lines[0]


def assert_sane_metrics(metrics: dict) -> None:
    for name in DOMAIN:
        assert set(metrics[name]) == {"mean", "std"}
        assert metrics[name]["std"] >= 0
    for name in RATES:
        assert 0.0 <= metrics[name]["mean"] <= 1.0
    for name in ("missed_points", "energy_used", "distance_km"):
        assert metrics[name]["mean"] >= 0


# ---------------------------------------------------------------------- reference policies
def test_eval_policy_json_keys_and_ranges(capsys) -> None:
    report = run_json(capsys, "eval", "--policy", "greedy", "--episodes", "3", *tiny_overrides())
    assert report["kind"] == "policy" and report["name"] == "greedy" and report["episodes"] == 3
    assert report["seed"] == Config().RANDOM_SEED + 10_000
    assert report["environment"]["NUM_POINTS"] == TINY["NUM_POINTS"]
    assert_sane_metrics(report["metrics"])
    assert list(report["metrics"])[:6] == list(DOMAIN[:5]) + ["reward"]


def test_same_seed_same_numbers_and_another_seed_differs(capsys) -> None:
    args = ["eval", "--policy", "random", "--episodes", "3", *tiny_overrides()]
    first = run_json(capsys, *args, "--seed", "7")
    assert run_json(capsys, *args, "--seed", "7")["metrics"] == first["metrics"]
    assert run_json(capsys, *args, "--seed", "8")["metrics"] != first["metrics"]


def test_eval_table_is_mean_plus_minus_std(capsys) -> None:
    assert main(["eval", "--policy", "greedy", "--episodes", "2", *tiny_overrides()]) == 0
    out = capsys.readouterr().out
    assert "reference policy 'greedy'" in out
    for label in ("on-time delivery rate", "priority-weighted service rate", "missed points", "energy used",
                  "distance (km)", "reward"):
        line = next(line for line in out.splitlines() if line.strip().startswith(label))
        assert "±" in line


def test_compare_policies_pairs_differences(tmp_path: Path, capsys) -> None:
    report = run_json(capsys, "compare", "greedy", "random", "greedy", "--episodes", "3", "--log-dir",
                      str(tmp_path / "tb"), *tiny_overrides())
    names = [e["name"] for e in report["entries"]]
    assert names == ["greedy", "random", "greedy#2"]
    assert report["baseline"] == "greedy" and len(report["differences"]) == 2
    same = report["differences"][1]["metrics"]
    assert all(d["mean"] == 0.0 and d["std"] == 0.0 for d in same.values())  # same policy, same seeds
    greedy, random_ = report["entries"][0]["metrics"], report["entries"][1]["metrics"]
    diff = report["differences"][0]["metrics"]["reward"]["mean"]
    assert diff == pytest.approx(random_["reward"]["mean"] - greedy["reward"]["mean"])
    assert Path(report["log_dir"]).parent == tmp_path / "tb"


def test_compare_writes_tensorboard_runs(tmp_path: Path, capsys) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    report = run_json(capsys, "compare", "greedy", "random", "--episodes", "2", "--log-dir", str(tmp_path / "tb"),
                      *tiny_overrides())
    log_dir = Path(report["log_dir"])
    runs = sorted(p.name for p in log_dir.iterdir() if p.is_dir())
    assert runs == ["0_greedy", "1_random"]
    acc = EventAccumulator(str(log_dir / "1_random"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"compare/reward", "compare/on_time_rate", "compare_mean/reward", "compare_diff/reward"} <= set(scalars)
    assert len(acc.Scalars("compare/reward")) == 2
    summary = EventAccumulator(str(log_dir))
    summary.Reload()
    assert "compare/table/text_summary" in summary.Tags()["tensors"]


def test_compare_table_text(tmp_path: Path, capsys) -> None:
    assert main(["compare", "greedy", "random", "--episodes", "2", "--no-tensorboard", *tiny_overrides()]) == 0
    out = capsys.readouterr().out
    assert "Δ" in out and "paired difference against greedy" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["eval"], "CHECKPOINT"),
    (["eval", "nowhere/checkpoint_ep8_20250101_000000"], "does not exist"),
    (["eval", "--policy", "greedy", "--episodes", "0"], "--episodes"),
    (["eval", "--policy", "smart"], "--policy"),
    (["eval", "--policy", "greedy", "--set", "NUM_POINT=3"], "NUM_POINTS"),
    (["compare", "greedy", "nowhere"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    assert needle in one_error_line(capsys)


# ---------------------------------------------------------------------- trained checkpoints
@pytest.mark.slow
def test_eval_checkpoint_reproduces_the_training_time_evaluation(trained: Path, capsys) -> None:
    import torch

    state = torch.load(trained / "training_state.pth", weights_only=True)
    logged = state["eval_log"][-1]
    assert int(logged["episode"]) == state["episode"]
    report = run_json(capsys, "eval", str(trained), "--episodes", str(3))
    assert report["kind"] == "checkpoint" and report["episode"] == state["episode"]
    assert_sane_metrics(report["metrics"])
    for name, value in logged.items():
        if name != "episode":
            assert report["metrics"][name]["mean"] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert run_json(capsys, "eval", str(trained), "--episodes", "3")["metrics"] == report["metrics"]


@pytest.mark.slow
def test_checkpoint_env_overrides_and_shape_overrides(trained: Path, capsys) -> None:
    report = run_json(capsys, "eval", str(trained), "--episodes", "2", "--set", "ENVIRONMENT_TYPE=simplified",
                      "--set", "MAX_NUM_STEPS=20")
    assert report["environment"]["ENVIRONMENT_TYPE"] == "simplified"
    assert report["environment"]["MAX_NUM_STEPS"] == 20
    assert main(["eval", str(trained), "--set", "NUM_POINTS=9"]) == 2
    line = one_error_line(capsys)
    assert "NUM_POINTS" in line and "5" in line and "9" in line
    assert main(["eval", str(trained), "--set", "LR_ACTOR=0.1"]) == 2
    assert "LR_ACTOR" in one_error_line(capsys)


@pytest.mark.slow
def test_checkpoint_ignores_a_config_py_in_the_working_directory(trained: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "config.py").write_text("NUM_POINTS = 30\nNUM_AGENTS = 5\n")
    report = run_json(capsys, "eval", str(trained), "--episodes", "1")
    assert report["environment"]["NUM_POINTS"] == TINY["NUM_POINTS"]


@pytest.mark.slow
def test_broken_checkpoint_is_one_line_exit_2(trained: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / trained.name
    shutil.copytree(trained, broken)
    (broken / "agent_1.pth").write_bytes(b"not a checkpoint")
    assert main(["eval", str(broken)]) == 2
    assert "agent_1.pth" in one_error_line(capsys)
    (broken / "MANIFEST.json").unlink()
    assert main(["render", str(broken), "-o", str(tmp_path / "e.png")]) == 2
    assert str(broken) in one_error_line(capsys)


@pytest.mark.slow
def test_checkpoint_for_another_shape_fails_clearly_in_compare(trained: Path, tmp_path: Path, capsys) -> None:
    from fleetmarl.trainer import train

    other = Config(**{**TINY, "NUM_POINTS": 7, "NUM_EPISODES": 2, "MODEL_SAVE_INTERVAL": 2},
                   CHECKPOINTS_DIR=str(tmp_path / "other"))
    other_ckpt = train(other, log=lambda m: None).last_checkpoint
    assert main(["compare", str(trained), str(other_ckpt), "--no-tensorboard", "--episodes", "1"]) == 2
    assert "NUM_POINTS" in one_error_line(capsys)


@pytest.mark.slow
def test_compare_checkpoint_against_reference_policies(trained: Path, tmp_path: Path, capsys) -> None:
    report = run_json(capsys, "compare", str(trained), "greedy", "random", "--episodes", "3",
                      "--log-dir", str(tmp_path / "tb"))
    assert [e["kind"] for e in report["entries"]] == ["checkpoint", "policy", "policy"]
    assert report["environment"]["NUM_POINTS"] == TINY["NUM_POINTS"]  # the checkpoint's environment
    greedy_alone = run_json(capsys, "eval", "--policy", "greedy", "--episodes", "3", *tiny_overrides())
    assert report["entries"][1]["metrics"] == greedy_alone["metrics"]  # same seeds, same numbers
