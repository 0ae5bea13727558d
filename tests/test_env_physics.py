"""Physics of the sampling environment on hand-placed scenes, plus invariants under random play."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.spaces import POINT, STATE
from fleetmarl.envs.state_codes import ACTIVE, EMPTY, MISSED, SERVED

MAP = 2000.0
BASE = np.array([MAP / 2, MAP / 2])


def scene(points: list[tuple[float, float, int, int, float]], **changes) -> BatchedSamplingEnv:
    """One copy, points given as (dx, dy from base, samples, priority, deadline seconds); nothing arrives."""
    values = dict(NUM_AGENTS=2, NUM_POINTS=4, INITIAL_POINTS=0, MAX_NUM_STEPS=60, MAP_SIZE=MAP,
                  POINT_ARRIVAL_RATE=0.0, AGENT_SPEEDS=(20.0, 20.0), AGENT_CAPACITIES=(6, 6),
                  AGENT_ENERGY_CAPACITY=(100.0, 100.0), AGENT_ENERGY_PER_KM=(10.0, 10.0),
                  AGENT_CHARGE_SECONDS=(100.0, 100.0))
    values.update(changes)
    env = BatchedSamplingEnv(Config(**values), num_envs=1)
    env.reset(seed=0)
    core = env.core
    core.point_status[:] = EMPTY
    for j, (dx, dy, samples, priority, deadline) in enumerate(points):
        core.point_pos[0, j] = BASE + (dx, dy)
        core.point_samples[0, j] = samples
        core.point_priority[0, j] = priority
        core.point_deadline[0, j] = deadline
        core.point_status[0, j] = ACTIVE
    env.obs = core.observe()
    return env


def act(env: BatchedSamplingEnv, *actions: int):
    obs, rewards, terminated, truncated, infos = env.step(np.array([actions]))
    env.obs = obs
    return obs, rewards, infos


STAY, HOME = 4, 5  # with NUM_POINTS=4


@pytest.mark.parametrize("distance", [200.0, 400.0, 450.0, 1000.0])
def test_travel_takes_distance_over_speed(distance: float) -> None:
    env = scene([(distance, 0.0, 2, 3, 1e6)])
    expected_steps = math.ceil(distance / (20.0 * 10.0))
    act(env, 0, STAY)
    for step in range(1, expected_steps):
        assert env.core.vehicle_load[0, 0] == 0
        assert env.core.vehicle_pos[0, 0, 0] == pytest.approx(BASE[0] + 200.0 * step)
        act(env, STAY, STAY)
    assert env.core.vehicle_load[0, 0] == 2 and env.core.point_status[0, 0] == SERVED
    assert env.core.counters["distance_km"][0] == pytest.approx(distance / 1000.0)
    assert env.core.vehicle_energy[0, 0] == pytest.approx(100.0 - distance / 1000.0 * 10.0)


def test_delivery_on_time_and_late() -> None:
    # agent 0 picks a point it can bring home in time; agent 1 one whose deadline passes on the way home
    env = scene([(400.0, 0.0, 3, 1, 100.0), (0.0, 400.0, 2, 2, 25.0)])
    act(env, 0, 1)
    _, rewards, _ = act(env, STAY, STAY)
    assert env.core.vehicle_load[0].tolist() == [3, 2]
    assert env.core.episode_metrics()["samples_on_board"][0] == 5  # if the shift ended now, all five are lost
    act(env, HOME, HOME)
    _, rewards, _ = act(env, STAY, STAY)
    c = env.core.config
    metrics = env.core.episode_metrics()
    assert metrics["samples_delivered"][0] == 5 and metrics["samples_on_time"][0] == 3
    assert metrics["samples_on_board"][0] == 0
    assert env.core.vehicle_load[0].tolist() == [0, 0]
    own = np.array([c.REWARD_DELIVERY * 3 * 3.0, c.REWARD_LATE_DELIVERY * 2 * 2.0]) - c.PENALTY_ENERGY * 2.0
    expected = own + c.TEAM_REWARD_WEIGHT * own.sum()
    assert rewards[0] == pytest.approx(expected.astype(np.float32), rel=1e-5)


def test_first_to_arrive_serves_and_the_point_is_served_once() -> None:
    env = scene([(300.0, 0.0, 4, 2, 1e6)], AGENT_SPEEDS=(20.0, 30.0))
    _, _, _ = act(env, 0, 0)
    assert env.core.counters["conflicts"][0] == 1
    act(env, STAY, STAY)  # the faster agent 1 arrives during this step
    assert env.core.vehicle_load[0].tolist() == [0, 4]
    assert env.core.point_status[0, 0] == SERVED and env.core.counters["points_served"][0] == 1
    assert env.core.vehicle_target[0].tolist() == [-1, -1]  # the loser stops where it is
    assert not env.obs["action_mask"][0, :, 0].any()


def test_equal_arrival_goes_to_the_lower_index() -> None:
    env = scene([(300.0, 0.0, 4, 2, 1e6)])
    act(env, 0, 0)
    act(env, STAY, STAY)
    assert env.core.vehicle_load[0].tolist() == [4, 0]


def test_deadline_expires_at_the_end_of_the_step_it_passes() -> None:
    env = scene([(900.0, 0.0, 2, 1, 25.0)])
    assert not env.obs["action_mask"][0, 0, 0]  # 45 s away, cannot make the 25 s deadline
    for _ in range(2):
        act(env, STAY, STAY)
        assert env.core.point_status[0, 0] == ACTIVE
    _, rewards, _ = act(env, STAY, STAY)
    assert env.core.point_status[0, 0] == MISSED and env.core.counters["missed_points"][0] == 1
    c = env.core.config
    assert rewards[0] == pytest.approx(-c.PENALTY_MISSED * 2 * 3.0 / 2)
    assert env.obs["point_features"][0, 0, 0, POINT["missed"]] == 1.0


def test_charging_takes_the_configured_time_and_blocks_the_vehicle() -> None:
    env = scene([(100.0, 0.0, 1, 3, 1e6)], AGENT_CHARGE_SECONDS=(95.0, 100.0))
    env.core.vehicle_energy[0, 0] = 0.0
    env.obs = env.core.observe()
    act(env, STAY, STAY)
    assert env.core.counters["charging_trips"][0] == 1
    for _ in range(8):  # ceil(95 / 10) = 10 steps; 9 done after this loop
        assert env.obs["state"][0, 0, STATE["charging"]] == 1.0
        assert not env.obs["action_mask"][0, 0, :4].any()
        _, _, infos = act(env, 0, STAY)  # a point while charging is invalid: stays, keeps charging
        assert infos["invalid_actions"][0].tolist() == [True, False]
    assert env.core.vehicle_energy[0, 0] == pytest.approx(100.0 * 90.0 / 95.0)
    act(env, STAY, STAY)
    assert env.core.vehicle_energy[0, 0] == 100.0 and env.core.charge_left[0, 0] == 0.0
    assert env.obs["state"][0, 0, STATE["idle"]] == 1.0 and env.obs["action_mask"][0, 0, 0]


def test_energy_masks_points_without_a_round_trip() -> None:
    env = scene([(300.0, 0.0, 1, 3, 1e6), (800.0, 0.0, 1, 3, 1e6)])
    env.core.vehicle_energy[0, 0] = 10.0  # 1 km of range: 600 m round trip fits, 1600 m does not
    env.obs = env.core.observe()
    assert env.obs["action_mask"][0, 0, :2].tolist() == [True, False]
    assert env.obs["action_mask"][0, 1, :2].tolist() == [True, True]


def test_simplified_has_no_energy_limit_and_all_points_at_reset() -> None:
    config = Config(ENVIRONMENT_TYPE="simplified", NUM_AGENTS=2, NUM_POINTS=6, INITIAL_POINTS=0,
                    MAX_NUM_STEPS=30, MAP_SIZE=MAP, AGENT_ENERGY_CAPACITY=(0.1, 0.1))
    env = BatchedSamplingEnv(config, num_envs=2)
    obs = env.reset(seed=3)
    assert (env.core.point_status == ACTIVE).all()
    assert obs["action_mask"][..., :6].any()  # an energy of 0.1 would block everything in 'full'
    for _ in range(29):
        obs, *_ = env.step(np.zeros((2, 2), dtype=int))
        assert (env.core.vehicle_energy == 0.1).all()
        assert env.core.counters["points_appeared"].tolist() == [6, 6]


def test_capacity_masks_points_that_do_not_fit() -> None:
    env = scene([(100.0, 0.0, 5, 3, 1e6), (0.0, 100.0, 2, 3, 1e6)])
    env.core.vehicle_load[0, 0] = 3
    env.core.lot_samples[0, 0, 0] = 3
    env.obs = env.core.observe()
    assert env.obs["action_mask"][0, 0, :2].tolist() == [False, True]


def test_invalid_actions_are_stay_with_a_penalty() -> None:
    env = scene([(100.0, 0.0, 1, 3, 1e6)])
    c = env.core.config
    for bad in (3, -1, 6, 10**9):  # masked (empty slot), below, above, far above
        before = env.core.vehicle_pos.copy()
        _, rewards, infos = act(env, bad, STAY)
        assert infos["invalid_actions"][0].tolist() == [True, False]
        assert np.array_equal(env.core.vehicle_pos, before)
        assert rewards[0].tolist() == pytest.approx([-c.PENALTY_INVALID * (1 + c.TEAM_REWARD_WEIGHT),
                                                     -c.PENALTY_INVALID * c.TEAM_REWARD_WEIGHT])
    env.step(np.array([[np.nan, 2.5]]))
    assert env.core.counters["invalid_actions"][0] == 6


def test_return_home_unloads_and_at_base_equals_stay() -> None:
    env = scene([(300.0, 0.0, 2, 3, 1e6)])
    _, _, infos = act(env, HOME, HOME)  # already at base: stay, not invalid
    assert not infos["invalid_actions"].any() and env.core.vehicle_target[0].tolist() == [-1, -1]
    act(env, 0, STAY)
    act(env, STAY, STAY)
    act(env, HOME, STAY)
    assert env.core.vehicle_target[0, 0] == 4 and env.core.vehicle_load[0, 0] == 2
    act(env, STAY, STAY)
    assert env.core.vehicle_load[0, 0] == 0 and np.array_equal(env.core.vehicle_pos[0, 0], BASE)


invariant_config = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, MAX_NUM_STEPS=25, MAP_SIZE=3000.0,
                          POINT_ARRIVAL_RATE=6.0, AGENT_ENERGY_CAPACITY=(8.0, 8.0, 8.0),
                          AGENT_CAPACITIES=(5, 6, 9), AGENT_CHARGE_SECONDS=(30.0, 0.0, 45.0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), actions=st.lists(st.lists(st.integers(-2, 9), min_size=6, max_size=6),
                                                    min_size=25, max_size=25))
def test_random_play_keeps_the_invariants(seed: int, actions: list[list[int]]) -> None:
    env = BatchedSamplingEnv(invariant_config, num_envs=2)
    env.reset(seed=seed)
    core = env.core
    capacity, energy_capacity = core.capacity, core.energy_capacity
    for row in actions:
        status_before = core.point_status.copy()
        appeared_before = core.counters["points_appeared"].copy()
        served_before = core.counters["points_served"].copy()
        _, rewards, _, truncated, infos = env.step(np.array(row).reshape(2, 3))
        if truncated.all():
            break
        assert np.isfinite(rewards).all()
        assert (core.vehicle_load <= capacity).all() and (core.vehicle_load >= 0).all()
        assert (core.vehicle_load == core.lot_samples.sum(axis=2)).all()
        assert (core.vehicle_energy >= 0).all() and (core.vehicle_energy <= energy_capacity).all()
        appeared = core.counters["points_appeared"] - appeared_before
        served = core.counters["points_served"] - served_before
        newly_served = ((status_before == ACTIVE) & (core.point_status == SERVED)).sum(axis=1)
        # served at most once: only points active before the step count, and a slot a served point
        # left can only turn active again by a new point appearing in it
        assert (newly_served <= served).all() and (served <= newly_served + appeared).all()
        assert (served <= (status_before == ACTIVE).sum(axis=1)).all()
        revived = (status_before != ACTIVE) & (core.point_status == ACTIVE)
        assert (revived.sum(axis=1) <= appeared).all()
        assert not (((status_before == SERVED) | (status_before == MISSED)) & (core.point_status == EMPTY)).any()
