"""`fleetmarl plot rewards` and `plot curves`: curves from checkpoints or a TensorBoard run, checkpoint marks,
evaluation curves of several runs with reference levels, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fleetmarl.checkpoint import save_model_checkpoint
from fleetmarl.cli import main
from fleetmarl.config import Config
from fleetmarl.envs.policies import reference_policy
from fleetmarl.errors import UserError
from fleetmarl.eval.evaluation import default_eval_seed, run_episodes
from fleetmarl.eval.plotting import (
    history_from_events,
    learning_curves,
    load_eval_run,
    load_history,
    plot_rewards,
    reference_levels,
    smooth,
)
from fleetmarl.logging import RunLogger
from tests.conftest import TINY


def fake_checkpoint(root: Path, episode: int, rewards: list[float], run_id: str = "line1",
                    stamp: str = "20250817_143052") -> Path:
    """A real, valid checkpoint whose agents are plain tensors: plotting never loads agents."""
    config = Config(**TINY)
    state = {
        "episode": episode, "noise_std": 0.5, "episode_rewards_log": rewards, "config": config.to_dict(),
        "total_episodes_planned": 40, "checkpoint_timestamp": stamp,
        "metrics_log": {"on_time_rate": [min(1.0, i / len(rewards)) for i in range(len(rewards))]},
    }
    agents = [{"w": torch.zeros(2)} for _ in range(config.NUM_AGENTS)]
    return save_model_checkpoint(agents, state, root, run_id=run_id)


def run_of_checkpoints(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rewards = [float(r) for r in np.cumsum(rng.normal(1.0, 3.0, size=40))]
    fake_checkpoint(root, 20, rewards[:20], stamp="20250817_143052")
    fake_checkpoint(root, 30, rewards[:30], run_id="other", stamp="20250817_143053")
    return fake_checkpoint(root, 40, rewards, stamp="20250817_143054")


def assert_real_image(path: Path, min_side: int = 300) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert width >= min_side and height >= min_side // 2
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 5  # not a blank canvas


def test_history_from_checkpoint_marks_only_its_own_run_line(tmp_path: Path) -> None:
    last = run_of_checkpoints(tmp_path / "ckpts")
    history = load_history(last)
    assert len(history.rewards) == 40 and history.episodes[0] == 1 and history.episodes[-1] == 40
    assert history.on_time is not None and len(history.on_time) == 40
    assert history.checkpoint_episodes == [20, 40]  # ep30 belongs to another run line
    assert load_history(tmp_path / "ckpts").checkpoint_episodes == [20, 40]  # folder = its newest


def test_history_from_tensorboard_events(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path / "run")
    for episode in range(1, 25):
        logger.scalars({"reward/episode": float(episode), "metrics/on_time_rate": episode / 24}, episode)
    logger.checkpoint_saved(tmp_path / "checkpoint_ep8_20250817_143052", 8)
    logger.checkpoint_saved(tmp_path / "checkpoint_ep16_20250817_143052", 16)
    logger.close()
    history = history_from_events(tmp_path / "run")
    assert history.rewards.tolist() == [float(e) for e in range(1, 25)]
    assert history.checkpoint_episodes == [8, 16]
    assert history.on_time is not None and history.on_time[-1] == pytest.approx(1.0)


def test_smooth_is_a_trailing_mean() -> None:
    values = np.array([1.0, 3.0, 5.0, 7.0])
    assert smooth(values, 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert smooth(values, 1).tolist() == values.tolist()


def test_plot_rewards_command_writes_a_real_png(tmp_path: Path) -> None:
    last = run_of_checkpoints(tmp_path / "ckpts")
    out = tmp_path / "rewards.png"
    assert main(["plot", "rewards", str(last), "-o", str(out)]) == 0
    assert_real_image(out)


def test_plot_rewards_from_a_run_folder(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path / "run")
    for episode in range(1, 9):
        logger.scalars({"reward/episode": float(episode % 3)}, episode)
    logger.close()
    out = plot_rewards(load_history(tmp_path / "run"), tmp_path / "curve.png")
    assert_real_image(out)


@pytest.mark.parametrize("target", ["missing_dir/rewards.png", "rewards.txt"])
def test_bad_output_is_one_line_exit_2(tmp_path: Path, capsys, target: str) -> None:
    last = run_of_checkpoints(tmp_path / "ckpts")
    assert main(["plot", "rewards", str(last), "-o", str(tmp_path / target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fleetmarl: cannot write")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UserError, match="permission denied"):
            plot_rewards(load_history(run_of_checkpoints(tmp_path / "ckpts")), locked / "r.png")
    finally:
        locked.chmod(0o700)


def test_missing_or_foreign_source_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["plot", "rewards", str(tmp_path / "nowhere"), "-o", str(tmp_path / "r.png")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["plot", "rewards", str(tmp_path / "empty"), "-o", str(tmp_path / "r.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("fleetmarl: ") for line in lines)
    assert not (tmp_path / "r.png").exists()


# ---------------------------------------------------------------------- plot curves (several runs)
def eval_run(root: Path, seed: int, episodes: list[int], on_time: list[float], **config_changes) -> Path:
    """A valid checkpoint whose training_state holds an eval_log in the trainer's format (see Trainer._evaluate)."""
    config = Config(**{**TINY, "EVAL_INTERVAL": 4, "EVAL_EPISODES": 2, "RANDOM_SEED": seed, **config_changes})
    log = [{"episode": float(e), "on_time_rate": v, "reward": 10.0 * v, "service_rate_weighted": v}
           for e, v in zip(episodes, on_time, strict=True)]
    state = {"episode": episodes[-1] if episodes else 4, "noise_std": 0.1, "episode_rewards_log": [1.0] * 4,
             "config": config.to_dict(), "total_episodes_planned": 12, "checkpoint_timestamp": "20250817_143052",
             "metrics_log": {}, "eval_log": log}
    agents = [{"w": torch.zeros(2)} for _ in range(config.NUM_AGENTS)]
    return save_model_checkpoint(agents, state, root, run_id=f"seed{seed}")


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    """Seeds 1-3; the third was evaluated at 4, 8 and 10 only, so the common episodes are 4 and 8."""
    return [eval_run(tmp_path / "s1", 1, [4, 8, 12], [0.1, 0.5, 0.6]),
            eval_run(tmp_path / "s2", 2, [4, 8, 12], [0.3, 0.4, 0.8]),
            eval_run(tmp_path / "s3", 3, [4, 8, 10], [0.2, 0.9, 0.95])]


def test_learning_curves_use_the_common_evaluations(three_runs: list[Path]) -> None:
    curves = learning_curves([load_eval_run(path) for path in three_runs], "on_time_rate")
    assert curves.episodes.tolist() == [4, 8]
    assert curves.mean.tolist() == pytest.approx([0.2, 0.6])
    assert [a.tolist() for a in curves.band("minmax")] == [pytest.approx([0.1, 0.4]), pytest.approx([0.3, 0.9])]
    assert curves.std.tolist() == pytest.approx([np.std([0.1, 0.3, 0.2], ddof=1), np.std([0.5, 0.4, 0.9], ddof=1)])
    assert curves.seeds == [1, 2, 3]


def test_plot_curves_command_png_line_and_reference_levels(three_runs: list[Path], capsys) -> None:
    out = three_runs[0].parent.parent / "curves.png"
    folder_of_second = three_runs[1].parent  # a folder of checkpoints: its newest one
    assert main(["plot", "curves", str(three_runs[0]), str(folder_of_second), str(three_runs[2]), "-o", str(out)]) == 0
    assert_real_image(out)
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1 and line[0].startswith(f"wrote {out}: on-time delivery rate at episode 8, mean of 3 runs 0.600")

    # the lines are greedy/random on exactly each run's evaluation episodes: its config, EVAL_EPISODES, eval seed
    runs = [load_eval_run(path) for path in three_runs]
    levels = reference_levels(runs, ["greedy", "random"], "on_time_rate")
    for name, level in levels.items():
        expected = [run_episodes(r.config, reference_policy(name, default_eval_seed(r.config), r.config), 2,
                                 default_eval_seed(r.config))["on_time_rate"].mean() for r in runs]
        assert level.per_run == pytest.approx(expected) and level.level == pytest.approx(np.mean(expected))
        assert f"{name} {level.level:.3f}" in line[0]
    assert [default_eval_seed(r.config) for r in runs] == [10_001, 10_002, 10_003]
    three = reference_levels(runs[:1], ["greedy"], "reward", episodes=3)["greedy"]
    assert three.per_run == pytest.approx([run_episodes(runs[0].config, reference_policy("greedy"), 3, 10_001)["reward"].mean()])


@pytest.mark.parametrize("case, expected", [
    ("no_eval_log", "has no evaluation log"),
    ("unknown_metric", "unknown metric 'bogus'"),
    ("other_environment", "different environments (NUM_POINTS"),
    ("no_common_episode", "share no evaluation episode"),
    ("twice", "is given twice"),
    ("unknown_reference", "unknown reference policy 'best'"),
    ("not_a_checkpoint", "is not a checkpoint or a folder of checkpoints"),
    ("missing_folder", "cannot write"),
    ("bad_suffix", "cannot write"),
])
def test_plot_curves_bad_input_is_one_line_exit_2(tmp_path: Path, capsys, case: str, expected: str) -> None:
    first = eval_run(tmp_path / "a", 1, [4, 8], [0.1, 0.2])
    second = {
        "no_eval_log": lambda: eval_run(tmp_path / "b", 2, [], []),
        "other_environment": lambda: eval_run(tmp_path / "b", 2, [4, 8], [0.1, 0.2], NUM_POINTS=6),
        "no_common_episode": lambda: eval_run(tmp_path / "b", 2, [6, 10], [0.1, 0.2]),
        "twice": lambda: first.parent,
        "not_a_checkpoint": lambda: (tmp_path / "plain").mkdir() or tmp_path / "plain",
    }.get(case, lambda: eval_run(tmp_path / "b", 2, [4, 8], [0.1, 0.2]))()
    out = {"missing_folder": tmp_path / "nowhere" / "c.png", "bad_suffix": tmp_path / "c.txt"}.get(case, tmp_path / "c.png")
    extra = {"unknown_metric": ["--metric", "bogus"], "unknown_reference": ["--references", "greedy,best"]}.get(case, [])
    assert main(["plot", "curves", str(first), str(second), "-o", str(out), *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: ") and expected in lines[0], lines
    assert not out.exists()


def test_plot_curves_reads_what_the_trainer_writes(tmp_path: Path, capsys) -> None:
    """A real (update-free, so fast) run: its eval_log is what `plot curves` reads, at EVAL_INTERVAL."""
    from fleetmarl.trainer import train

    config = Config(**{**TINY, "NUM_EPISODES": 4, "EVAL_INTERVAL": 2, "EVAL_EPISODES": 2, "WARMUP_TRANSITIONS": 500},
                    CHECKPOINTS_DIR=str(tmp_path / "checkpoints"), LOG_DIR=str(tmp_path / "runs"))
    train(config, log=lambda message: None)
    run = load_eval_run(tmp_path / "checkpoints")
    assert run.episodes.tolist() == [2, 4] and {"on_time_rate", "reward"} <= set(run.metrics)
    assert main(["plot", "curves", str(tmp_path / "checkpoints"), "-o", str(tmp_path / "c.svg"),
                 "--metric", "reward", "--references", "greedy", "--band", "std"]) == 0
    assert (tmp_path / "c.svg").stat().st_size > 1000
    assert "reward (sum over agents) at episode 4, mean of 1 run" in capsys.readouterr().out
