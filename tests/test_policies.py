"""Reference policies: they only pick allowed actions, greedy clearly beats random, greedy_shift is greedy
plus one rule and greedy_chain is greedy_shift plus one more."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import busy_vehicle_sooner, greedy_policy, random_policy, reference_policy
from fleetmarl.envs.spaces import OTHER, OTHER_DIM, POINT, POINT_DIM, STATE, STATE_DIM
from fleetmarl.eval.evaluation import evaluate_reference

CONFIG = Config(NUM_AGENTS=3, NUM_POINTS=10, INITIAL_POINTS=5, MAX_NUM_STEPS=60, MAP_SIZE=3000.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), masks=st.lists(st.booleans(), min_size=2 * 3 * 4, max_size=2 * 3 * 4))
def test_random_policy_samples_only_allowed_actions(seed: int, masks: list[bool]) -> None:
    mask = np.array(masks).reshape(2, 3, 4)
    mask[..., 2] = True  # stay is always allowed by the env
    actions = random_policy({"action_mask": mask}, np.random.default_rng(seed))
    assert actions.shape == (2, 3)
    assert np.take_along_axis(mask, actions[..., None], axis=-1).all()


def test_random_policy_is_uniform_over_the_mask() -> None:
    mask = np.array([[[True, False, True, True]]])
    rng = np.random.default_rng(0)
    draws = np.array([random_policy({"action_mask": mask}, rng)[0, 0] for _ in range(3000)])
    counts = np.bincount(draws, minlength=4)
    assert counts[1] == 0 and all(abs(c - 1000) < 120 for c in counts[[0, 2, 3]])


@pytest.mark.parametrize("env_type", ["full", "simplified"])
def test_policies_never_choose_masked_actions(env_type: str) -> None:
    config = CONFIG.replace(ENVIRONMENT_TYPE=env_type)
    for policy in (greedy_policy, reference_policy("random", seed=1), reference_policy("greedy_shift", 0, config),
                   reference_policy("greedy_chain", 0, config)):
        env = BatchedSamplingEnv(config, num_envs=4)
        obs = env.reset(seed=0)
        for _ in range(config.MAX_NUM_STEPS):
            obs, _, _, _, infos = env.step(policy(obs))
            assert not infos["invalid_actions"].any()


def test_greedy_dispatch_sends_one_vehicle_per_point() -> None:
    env = BatchedSamplingEnv(CONFIG, num_envs=8)
    obs = env.reset(seed=5)
    for _ in range(20):
        obs, _, _, _, _ = env.step(greedy_policy(obs))
    assert env.core.counters["conflicts"].sum() == 0


def test_greedy_beats_random_on_time_delivery() -> None:
    greedy = evaluate_reference(CONFIG, "greedy", episodes=8, seed=0)
    rand = evaluate_reference(CONFIG, "random", episodes=8, seed=0)
    assert greedy["on_time_rate"]["mean"] > rand["on_time_rate"]["mean"] + 0.2
    assert greedy["missed_points"]["mean"] < rand["missed_points"]["mean"]
    assert set(greedy) >= {"reward", *BatchedSamplingEnv.metrics_names}


def test_reference_evaluation_is_seeded() -> None:
    first = evaluate_reference(CONFIG, "random", episodes=2, seed=3)
    assert first == evaluate_reference(CONFIG, "random", episodes=2, seed=3)
    assert first != evaluate_reference(CONFIG, "random", episodes=2, seed=4)


def test_unknown_reference_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="greedy"):
        reference_policy("smart")


def test_greedy_shift_is_greedy_except_that_loaded_idle_vehicles_head_home_as_the_shift_ends() -> None:
    config = CONFIG.replace(MAX_NUM_STEPS=180)  # a 30-minute shift; the drive home is at most ~2.5 minutes
    env = BatchedSamplingEnv(config, num_envs=8)
    obs = env.reset(seed=2)
    shift_end = reference_policy("greedy_shift", 0, config)
    home = config.NUM_POINTS + 1
    turned = 0
    for _ in range(config.MAX_NUM_STEPS):
        actions, greedy = shift_end(obs), greedy_policy(obs)
        differ = actions != greedy
        state = obs["state"][differ]
        assert (actions[differ] == home).all()
        assert (state[:, STATE["idle"]] > 0.5).all() and (state[:, STATE["load"]] > 0).all()
        assert (state[:, STATE["elapsed"]] > 0.7).all()  # only in the last ~8 minutes (margin 5 + drive)
        turned += int(differ.sum())
        obs, *_ = env.step(actions)
    assert turned > 0


def test_greedy_shift_needs_the_config() -> None:
    with pytest.raises(ValueError, match="config"):
        reference_policy("greedy_shift")


def two_vehicles(other_activity: str, deadline_s: float) -> dict[str, np.ndarray]:
    """One idle vehicle at the base and one point 2500 m east; the other vehicle is 2000 m east, doing
    ``other_activity`` with its trip ending 2250 m east (250 m short of the point). Both at top speed."""
    config = Config()
    size = config.MAP_SIZE
    state = np.zeros((1, 2, STATE_DIM))
    state[..., STATE["speed"]] = 1.0
    state[0, 0, STATE["idle"]] = 1.0
    features = np.zeros((1, 2, 1, POINT_DIM))
    features[0, 0, 0, [POINT["dx"], POINT["distance"]]] = 2500 / size, 2500 / (size * np.sqrt(2.0))
    features[..., POINT["deadline_left"]] = deadline_s / max(config.PRIORITY_DEADLINES)
    features[..., POINT["active"]] = 1.0
    others = np.zeros((1, 2, 1, OTHER_DIM))
    others[0, 0, 0, [OTHER["dx"], OTHER["target_dx"], OTHER["speed"], OTHER[other_activity]]] = (
        2000 / size, 2250 / size, 1.0, 1.0)
    return {"state": state, "point_features": features, "other_obs": others}


@pytest.mark.parametrize(("activity", "deadline_s", "sooner"), [
    ("to_point", 1800.0, True),     # it is there after 250 + 250 m, long before the idle one's 2500 m
    ("to_base", 1800.0, True),      # any trip: what counts is where it ends
    ("charging", 1800.0, False),    # its end is unknown: never counted on
    ("idle", 1800.0, False),        # an idle vehicle decides for itself (greedy's claims)
    ("to_point", 1.0, False),       # it would arrive after the deadline
])
def test_a_point_is_left_to_a_busy_vehicle_only_when_it_gets_there_sooner_and_in_time(
        activity: str, deadline_s: float, sooner: bool) -> None:
    assert busy_vehicle_sooner(two_vehicles(activity, deadline_s), Config())[0, 0, 0] == sooner


def test_greedy_chain_is_greedy_shift_except_that_it_leaves_points_to_busy_vehicles_that_get_there_sooner() -> None:
    config = CONFIG.replace(MAX_NUM_STEPS=120)
    env = BatchedSamplingEnv(config, num_envs=8)
    obs = env.reset(seed=3)
    chain, shift = reference_policy("greedy_chain", 0, config), reference_policy("greedy_shift", 0, config)
    left = 0
    for _ in range(config.MAX_NUM_STEPS):
        actions, before, claims = chain(obs), shift(obs), greedy_policy(obs)
        sooner = busy_vehicle_sooner(obs, config)
        sent = actions < config.NUM_POINTS
        assert not np.take_along_axis(sooner, np.where(sent, actions, 0)[..., None], axis=-1)[..., 0][sent].any()
        for row in np.flatnonzero((actions != before).any(axis=1)):
            first = int(np.flatnonzero(actions[row] != before[row])[0])  # later vehicles see other claims
            left_to_busy = before[row, first] < config.NUM_POINTS and sooner[row, first, before[row, first]]
            # or greedy_shift's earlier vehicle claimed the point, then its shift-end rule sent it home instead
            claimed_then_home = (claims[row, :first] == actions[row, first]).any()
            assert left_to_busy or claimed_then_home
            left += left_to_busy
        obs, *_ = env.step(actions)
    assert left > 0
