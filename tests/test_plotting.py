"""`fleetmarl plot rewards`: curves from a checkpoint or a TensorBoard run, checkpoint marks, bad input."""

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
from fleetmarl.errors import UserError
from fleetmarl.eval.plotting import history_from_events, load_history, plot_rewards, smooth
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
