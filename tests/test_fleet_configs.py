"""The large-fleet configs in configs/: they load, hold only changed keys, scale the demand, and the env steps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fleetmarl.config import DEFAULT, Config, load_config
from fleetmarl.envs.policies import greedy_policy
from fleetmarl.eval.evaluation import run_episodes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FLEETS = {"fleet20.toml": 20, "fleet50.toml": 50}


@pytest.mark.parametrize("name", FLEETS)
def test_config_loads_validates_and_sets_only_changed_keys(name: str) -> None:
    path = CONFIGS / name
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    known = set(Config.__dataclass_fields__)
    assert set(raw) <= known, f"unknown keys in {name}: {set(raw) - known}"
    assert all(raw[key] != getattr(DEFAULT, key) for key in raw), "a shipped config repeats a default"
    config = load_config(path)  # validates (ConfigError otherwise)
    assert config.NUM_AGENTS == FLEETS[name]
    assert config.replace(**{k: getattr(DEFAULT, k) for k in raw}) == DEFAULT  # nothing else changed


@pytest.mark.parametrize("name", FLEETS)
def test_demand_grows_with_the_fleet(name: str) -> None:
    """The documented scaling: slots and points at reset times k = NUM_AGENTS / 5, arrivals at least times k."""
    config = load_config(CONFIGS / name)
    k = config.NUM_AGENTS // DEFAULT.NUM_AGENTS
    assert config.NUM_AGENTS == k * DEFAULT.NUM_AGENTS
    assert config.NUM_POINTS == k * DEFAULT.NUM_POINTS
    assert config.INITIAL_POINTS == k * DEFAULT.INITIAL_POINTS
    assert k * DEFAULT.POINT_ARRIVAL_RATE <= config.POINT_ARRIVAL_RATE <= 2 * k * DEFAULT.POINT_ARRIVAL_RATE
    assert config.NUM_EPISODES % config.NUM_ENVS == 0


@pytest.mark.parametrize("name", FLEETS)
def test_greedy_runs_whole_episodes(name: str) -> None:
    config = load_config(CONFIGS / name)
    result = run_episodes(config, greedy_policy, episodes=2, seed=424242)
    assert len(result["on_time_rate"]) == 2
    assert np.all((result["on_time_rate"] >= 0) & (result["on_time_rate"] <= 1))
    assert np.all(result["points_appeared"] > config.INITIAL_POINTS)  # points arrived during the shift
    assert np.all(result["samples_delivered"] > 0)
    assert np.all(result["invalid_actions"] == 0)
    assert np.all(np.isfinite(result["reward"]))
