"""Shared fixtures: tiny configurations that train in a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmarl.config import Config

TINY = dict(
    NUM_AGENTS=2, NUM_POINTS=5, INITIAL_POINTS=3, MAX_NUM_STEPS=12, NUM_ENVS=2, NUM_EPISODES=8,
    BATCH_SIZE=16, CAPACITY=512, WARMUP_TRANSITIONS=24, UPDATE_EVERY=2, HIDDEN_DIM=16, EMBED_DIM=8,
    TRANSFORMER_HEADS=2, MODEL_SAVE_INTERVAL=4, EVAL_INTERVAL=0, PROGRESS_BAR=False,
    ENABLE_TENSORBOARD=False, NUM_THREADS=1, MAP_SIZE=1500.0,
    PRETRAIN_UPDATES=4,  # the default 2,000 imitation updates took ~40 of a tiny run's ~42 seconds
)


def tiny_overrides(**changes) -> list[str]:
    """The TINY config as --set flags, for subprocess tests of the command line."""
    values = {**TINY, **changes}
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture
def tiny_config(tmp_path: Path) -> Config:
    return Config(**TINY, CHECKPOINTS_DIR=str(tmp_path / "checkpoints"), LOG_DIR=str(tmp_path / "runs"))
