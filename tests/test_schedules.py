"""Learning-rate and noise schedules are pure functions of the episode (resume needs no scheduler state)."""

from __future__ import annotations

import math

import pytest

from fleetmarl.config import Config
from fleetmarl.learner.schedules import lr_factor, noise_std


def test_disabled_schedule_is_constant() -> None:
    c = Config(ENABLE_LR_SCHEDULING=False, LR_WARMUP_EPISODES=10)
    assert {lr_factor(c, e) for e in (0, 5, 100, 10_000)} == {1.0}


def test_exponential_is_smooth_and_floored() -> None:
    c = Config(LR_DECAY_TYPE="exponential", LR_DECAY_RATE=0.5, LR_DECAY_EPISODES=100, LR_MIN_RATIO=0.1)
    assert lr_factor(c, 0) == 1.0
    assert lr_factor(c, 50) == pytest.approx(0.5 ** 0.5)
    assert lr_factor(c, 100) == pytest.approx(0.5)
    assert lr_factor(c, 10_000) == pytest.approx(0.1)


def test_step_decays_in_whole_periods() -> None:
    c = Config(LR_DECAY_TYPE="step", LR_DECAY_RATE=0.5, LR_DECAY_EPISODES=100, LR_MIN_RATIO=0.0)
    assert [lr_factor(c, e) for e in (0, 99, 100, 199, 200)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_cosine_spans_the_run_down_to_the_floor() -> None:
    c = Config(LR_DECAY_TYPE="cosine", NUM_EPISODES=400, LR_MIN_RATIO=0.2)
    assert lr_factor(c, 0) == pytest.approx(1.0)
    assert lr_factor(c, 200) == pytest.approx(0.2 + 0.8 * 0.5)
    assert lr_factor(c, 400) == pytest.approx(0.2)
    assert lr_factor(c, 800) == pytest.approx(0.2)
    values = [lr_factor(c, e) for e in range(0, 401, 8)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_warmup_is_linear_then_decay_starts() -> None:
    c = Config(LR_WARMUP_EPISODES=4, LR_DECAY_TYPE="step", LR_DECAY_RATE=0.5, LR_DECAY_EPISODES=10)
    assert [lr_factor(c, e) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(c, 14) == 0.5  # decay counted from the end of the warm-up


def test_noise_decays_per_episode_to_its_floor() -> None:
    c = Config(NOISE_STD_START=1.0, NOISE_STD_END=0.05, NOISE_DECAY=0.99)
    assert noise_std(c, 0) == 1.0
    assert noise_std(c, 10) == pytest.approx(0.99 ** 10)
    floor_at = math.ceil(math.log(0.05) / math.log(0.99))
    assert noise_std(c, floor_at + 1) == 0.05
    assert noise_std(c, 100_000) == 0.05
