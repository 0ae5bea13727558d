"""The environment's contracts: PettingZoo API, seeding, batched == single, auto-reset, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv, SamplingEnv, make_env
from fleetmarl.envs.policies import random_policy
from fleetmarl.envs.spaces import OBS_KEYS, observation_dims

SMALL = dict(NUM_AGENTS=3, NUM_POINTS=8, INITIAL_POINTS=4, MAX_NUM_STEPS=40, MAP_SIZE=2000.0,
             POINT_ARRIVAL_RATE=3.0)


def small(**changes) -> Config:
    return Config(**{**SMALL, **changes})


@pytest.mark.parametrize("env_type", ["full", "simplified"])
def test_parallel_api_test_passes(env_type: str) -> None:
    parallel_api_test(SamplingEnv(small(ENVIRONMENT_TYPE=env_type)), num_cycles=100)


def test_parallel_api_test_passes_with_one_agent() -> None:
    parallel_api_test(SamplingEnv(small(NUM_AGENTS=1, AGENT_CAPACITIES=(8,))), num_cycles=60)


def test_make_env_picks_the_form() -> None:
    assert isinstance(make_env(small()), SamplingEnv)
    assert isinstance(make_env(small(), num_envs=3), BatchedSamplingEnv)


def test_batched_observation_layout_matches_the_contract() -> None:
    config = small()
    dims = observation_dims(config)
    env = BatchedSamplingEnv(config, num_envs=4)
    obs = env.reset(seed=0)
    assert set(obs) == set(OBS_KEYS)
    assert obs["state"].shape == (4, 3, dims.state) and obs["state"].dtype == np.float32
    assert obs["point_features"].shape == (4, 3, 8, dims.point) and obs["point_features"].dtype == np.float32
    assert obs["other_obs"].shape == (4, 3, 2, dims.other) and obs["other_obs"].dtype == np.float32
    assert obs["action_mask"].shape == (4, 3, dims.num_actions) and obs["action_mask"].dtype == bool
    rng = np.random.default_rng(1)
    for _ in range(config.MAX_NUM_STEPS):
        obs, rewards, terminated, truncated, _ = env.step(random_policy(obs, rng))
        assert rewards.shape == (4, 3) and rewards.dtype == np.float32
        assert terminated.shape == truncated.shape == (4,)
        for key in ("state", "point_features", "other_obs"):
            assert np.all(np.abs(obs[key]) <= 1.0), key


def _run_single(config: Config, seed: int, action_seed: int = 7) -> list:
    """One whole episode of the PettingZoo env with seeded random masked actions; every output kept."""
    env = SamplingEnv(config)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    record = [obs]
    while env.agents:
        actions = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        obs, rewards, terminated, truncated, infos = env.step(actions)
        record.append((obs, rewards, terminated, truncated, infos))
    return record


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("env_type", ["full", "simplified"])
def test_same_seed_same_episode_different_seed_differs(env_type: str) -> None:
    config = small(ENVIRONMENT_TYPE=env_type)
    first, again, other = _run_single(config, 5), _run_single(config, 5), _run_single(config, 6)
    assert _equal(first, again)
    assert not _equal(first[0], other[0])
    assert "episode" in first[-1][4]["vehicle_0"]


@pytest.mark.parametrize("env_type", ["full", "simplified"])
def test_batched_with_one_copy_equals_single_env_bit_for_bit(env_type: str) -> None:
    config = small(ENVIRONMENT_TYPE=env_type)
    single, batched = SamplingEnv(config), BatchedSamplingEnv(config, num_envs=1)
    obs_s, _ = single.reset(seed=11)
    obs_b = batched.reset(seed=11)
    agents = single.possible_agents
    rng = np.random.default_rng(3)
    for step in range(config.MAX_NUM_STEPS):
        for i, agent in enumerate(agents):
            for key in OBS_KEYS:
                expected = obs_b[key][0, i].astype(np.int8) if key == "action_mask" else obs_b[key][0, i]
                assert np.array_equal(obs_s[agent][key], expected), (step, key)
        # include masked and out-of-range actions so the invalid path is compared too
        actions = rng.integers(-1, config.NUM_POINTS + 3, size=(1, len(agents)))
        obs_s, rew_s, _, trunc_s, info_s = single.step({a: int(actions[0, i]) for i, a in enumerate(agents)})
        obs_b, rew_b, _, trunc_b, info_b = batched.step(actions)
        assert [rew_s[a] for a in agents] == rew_b[0].tolist()
        assert all(trunc_s[a] == trunc_b[0] for a in agents)
        assert [info_s[a]["invalid_action"] for a in agents] == info_b["invalid_actions"][0].tolist()
    assert "final_obs" in info_b
    for i, agent in enumerate(agents):
        assert np.array_equal(obs_s[agent]["point_features"], info_b["final_obs"]["point_features"][0, i])
    assert info_s[agents[0]]["episode"] == {k: float(v[0]) for k, v in info_b["episode"].items()}


def test_auto_reset_starts_the_next_episode_from_the_same_generator() -> None:
    config = small()
    batched, single = BatchedSamplingEnv(config, num_envs=1), SamplingEnv(config)
    batched.reset(seed=21)
    single.reset(seed=21)
    stay = config.NUM_POINTS
    for step in range(config.MAX_NUM_STEPS):
        obs, _, terminated, truncated, infos = batched.step(np.full((1, config.NUM_AGENTS), stay))
        single.step({a: stay for a in single.agents})
        if step < config.MAX_NUM_STEPS - 1:
            assert not truncated.any() and "episode" not in infos
    assert truncated.all() and not terminated.any()
    assert set(infos["episode"]) == set(batched.metrics_names)
    assert all(v.shape == (1,) for v in infos["episode"].values())
    assert infos["final_obs"]["state"][0, 0, 7] == pytest.approx(1.0)  # elapsed fraction at the end
    assert np.all(obs["state"][..., 7] == 0.0)  # the new episode's first observation
    fresh, _ = single.reset()  # seed=None continues the generator, like the auto-reset did
    assert np.array_equal(fresh["vehicle_0"]["point_features"], obs["point_features"][0, 0])


def test_batched_copies_differ_and_episodes_end_together() -> None:
    config = small()
    env = BatchedSamplingEnv(config, num_envs=3)
    obs = env.reset(seed=2)
    assert not np.array_equal(obs["point_features"][0], obs["point_features"][1])
    rng = np.random.default_rng(0)
    for _ in range(config.MAX_NUM_STEPS - 1):
        obs, _, _, truncated, _ = env.step(random_policy(obs, rng))
        assert not truncated.any()
    _, _, _, truncated, infos = env.step(random_policy(obs, rng))
    assert truncated.all() and infos["episode"]["points_appeared"].shape == (3,)


def test_rng_state_round_trip_reproduces_the_next_episode() -> None:
    env = BatchedSamplingEnv(small(), num_envs=2)
    env.reset(seed=4)
    state = env.get_rng_state()
    first = env.reset()
    other = BatchedSamplingEnv(small(), num_envs=2)
    other.set_rng_state(state)
    again = other.reset()
    assert all(np.array_equal(first[k], again[k]) for k in OBS_KEYS)
    assert isinstance(state["state"]["state"], int)  # plain Python values for a weights_only checkpoint


def test_step_before_reset_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        BatchedSamplingEnv(small(), num_envs=1).step(np.zeros((1, 3), dtype=int))


def test_wrong_action_shape_is_a_value_error() -> None:
    env = BatchedSamplingEnv(small(), num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2,), dtype=int))


@pytest.mark.parametrize("changes, key", [
    (dict(NUM_POINTS=0), "NUM_POINTS"),
    (dict(INITIAL_POINTS=9), "INITIAL_POINTS"),
    (dict(ENVIRONMENT_TYPE="tiny"), "ENVIRONMENT_TYPE"),
    (dict(AGENT_SPEEDS=(10.0, 0.0, 5.0)), "AGENT_SPEEDS"),
    (dict(AGENT_CAPACITIES=(2, 3, 4)), "AGENT_CAPACITIES"),
])
def test_impossible_config_names_the_key(changes: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        SamplingEnv(small(**changes))


@pytest.mark.parametrize("num_envs", [0, -1, 2.5, True])
def test_bad_num_envs_is_a_value_error(num_envs) -> None:
    with pytest.raises(ValueError, match="num_envs"):
        BatchedSamplingEnv(small(), num_envs=num_envs)


def test_named_columns_hold_what_they_say() -> None:
    """Reference policies and docs read columns by name; check several names against the core's arrays."""
    from fleetmarl.envs.spaces import OTHER, POINT, STATE
    from fleetmarl.envs.state_codes import ACTIVE

    config = small()
    env = BatchedSamplingEnv(config, num_envs=2)
    obs = env.reset(seed=8)
    rng = np.random.default_rng(0)
    for _ in range(15):
        obs, *_ = env.step(random_policy(obs, rng))
    core = env.core
    pf, state, other = obs["point_features"], obs["state"], obs["other_obs"]
    active = core.point_status == ACTIVE
    assert np.array_equal(pf[:, 0, :, POINT["active"]] == 1.0, active)
    samples = np.where(active, core.point_samples / config.POINT_SAMPLES_MAX, 0.0)
    assert np.allclose(pf[:, 1, :, POINT["samples"]], samples)
    priority_2 = active & (core.point_priority == 2)
    assert np.array_equal(pf[:, 2, :, POINT["priority_2"]] == 1.0, priority_2)
    assert np.array_equal(pf[..., POINT["feasible"]] == 1.0, obs["action_mask"][..., :config.NUM_POINTS])
    dx = (core.point_pos[:, None, :, 0] - core.vehicle_pos[:, :, None, 0]) / config.MAP_SIZE
    assert np.allclose(pf[..., POINT["dx"]], np.where(active[:, None, :], dx, 0.0), atol=1e-6)
    assert np.allclose(state[..., STATE["load"]], core.vehicle_load / core.capacity)
    assert np.allclose(state[..., STATE["elapsed"]], 15 / config.MAX_NUM_STEPS)
    # agent 0's first "other" row is agent 1
    rel = (core.vehicle_pos[:, 1] - core.vehicle_pos[:, 0]) / config.MAP_SIZE
    assert np.allclose(other[:, 0, 0, OTHER["dx"]:OTHER["dy"] + 1], rel, atol=1e-6)
    assert np.allclose(other[:, 0, 0, OTHER["energy"]], core.vehicle_energy[:, 1] / core.energy_capacity[1])
