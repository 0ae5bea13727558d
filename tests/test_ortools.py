"""The OR-Tools dispatcher: feasible on hand-built scenes, repeatable, and better than greedy where greedy is myopic."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("ortools")

from fleetmarl.config import Config  # noqa: E402
from fleetmarl.envs import BatchedSamplingEnv  # noqa: E402
from fleetmarl.envs.ortools_dispatcher import OrToolsDispatcher, load_ortools, read_scene  # noqa: E402
from fleetmarl.envs.policies import greedy_policy, reference_policy  # noqa: E402
from fleetmarl.envs.state_codes import ACTIVE, EMPTY, SERVED  # noqa: E402
from fleetmarl.errors import UserError  # noqa: E402
from fleetmarl.eval.evaluation import run_episodes  # noqa: E402

MAP = 5000.0
CENTRE = np.array([MAP / 2, MAP / 2])
SMALL = Config(NUM_AGENTS=3, NUM_POINTS=12, INITIAL_POINTS=6, MAX_NUM_STEPS=90, MAP_SIZE=4000.0)


def hand_built(points: list[tuple[float, float, int, int, float]], **changes) -> BatchedSamplingEnv:
    """One `full` copy with points at (dx, dy from the base, samples, priority, deadline s); none arrive."""
    values = dict(NUM_AGENTS=2, NUM_POINTS=4, INITIAL_POINTS=0, MAX_NUM_STEPS=60, MAP_SIZE=MAP,
                  POINT_ARRIVAL_RATE=0.0, AGENT_SPEEDS=(30.0, 15.0), AGENT_CAPACITIES=(8, 24))
    values.update(changes)
    env = BatchedSamplingEnv(Config(**values), num_envs=1)
    env.reset(seed=0)
    core = env.core
    core.point_status[:] = EMPTY
    for j, (dx, dy, samples, priority, deadline) in enumerate(points):
        core.point_pos[0, j] = CENTRE + (dx, dy)
        core.point_samples[0, j], core.point_priority[0, j] = samples, priority
        core.point_deadline[0, j], core.point_status[0, j] = deadline, ACTIVE
    env.obs = core.observe()
    return env


def play(env: BatchedSamplingEnv, policy, steps: int) -> dict[str, np.ndarray]:
    """Step with ``policy``, checking on every step that no action is masked and no vehicle is overloaded."""
    obs, metrics = env.obs, env.core.episode_metrics()
    for _ in range(steps):
        actions = policy(obs)
        chosen = np.take_along_axis(obs["action_mask"], actions[..., None], axis=-1)[..., 0]
        assert chosen.all(), "the dispatcher chose a masked action"
        metrics = env.core.episode_metrics()
        obs, _, _, _, infos = env.step(actions)
        assert not infos["invalid_actions"].any()
        assert (env.core.vehicle_load <= env.core.capacity).all()
    env.obs = obs
    return metrics


def test_reads_the_scene_from_the_observation() -> None:
    env = hand_built([(600.0, -300.0, 3, 2, 400.0)])
    scene = read_scene(env.obs, 0, OrToolsDispatcher(env.core.config).fleet)
    (point,) = scene.points
    assert point.pos == pytest.approx([600.0, -300.0], abs=0.01)
    assert (point.samples, point.weight, point.deadline_step) == (3, 2.0, 40)
    assert [s.idle and s.at_base and s.step == 0 for s in scene.starts] == [True, True]


def test_never_chooses_a_masked_point_or_overloads() -> None:
    # 5 + 5 samples never fit the fast vehicle (8) together; the far point is masked for the slow one
    env = hand_built([(500.0, 0.0, 5, 3, 900.0), (-500.0, 0.0, 5, 3, 900.0), (2400.0, 2400.0, 1, 1, 120.0)])
    play(env, OrToolsDispatcher(env.core.config), 40)
    assert env.core.counters["samples_on_time"][0] == 10
    assert env.core.counters["conflicts"][0] == 0


def test_returns_to_charge_before_a_trip_its_battery_cannot_make() -> None:
    # one fast vehicle, 30% charge (15 km): the 2 x 2.1 km round trip fits, then the 2 x 3.3 km one does not
    env = hand_built([(2100.0, 0.0, 2, 3, 1800.0)], NUM_AGENTS=1, AGENT_SPEEDS=(30.0,), AGENT_CAPACITIES=(8,),
                     MAX_NUM_STEPS=120, AGENT_ENERGY_PER_KM=(5.0,))
    env.core.vehicle_energy[:] = 30.0
    env.obs = env.core.observe()
    dispatcher = OrToolsDispatcher(env.core.config)
    play(env, dispatcher, 20)  # serves the near point and comes home
    core = env.core
    core.point_pos[0, 1] = CENTRE + (0.0, 2300.0)
    core.point_samples[0, 1], core.point_priority[0, 1] = 2, 3
    core.point_deadline[0, 1], core.point_status[0, 1] = core.time + 1500.0, ACTIVE
    env.obs = core.observe()
    assert not env.obs["action_mask"][0, 0, 1], "the scene needs the second trip to be out of reach"
    play(env, dispatcher, 60)
    assert core.counters["charging_trips"][0] >= 1
    assert core.point_status[0, 1] == SERVED and core.counters["samples_on_time"][0] == 4


def test_sends_the_fast_vehicle_to_the_urgent_far_point_where_greedy_does_not() -> None:
    # greedy lets the fast vehicle 0 take the rich near point, so the slow one delivers the urgent one late
    points = [(2000.0, 0.0, 1, 1, 180.0), (0.0, 300.0, 5, 3, 1800.0)]
    greedy_env, solver_env = hand_built(points), hand_built(points)
    greedy = play(greedy_env, greedy_policy, 40)
    solved = play(solver_env, OrToolsDispatcher(solver_env.core.config), 40)
    assert greedy["samples_on_time"][0] == 5
    assert solved["samples_on_time"][0] == 6


def test_same_seed_same_actions_and_metrics() -> None:
    def actions_of(seed: int) -> tuple[list[np.ndarray], dict]:
        env = BatchedSamplingEnv(SMALL, num_envs=2)
        obs, policy, taken = env.reset(seed=seed), OrToolsDispatcher(SMALL), []
        for _ in range(SMALL.MAX_NUM_STEPS):
            taken.append(policy(obs))
            obs, _, _, _, infos = env.step(taken[-1])
        return taken, {k: v.tolist() for k, v in infos["episode"].items()}

    first, again = actions_of(7), actions_of(7)
    assert all((a == b).all() for a, b in zip(first[0], again[0], strict=True))
    assert first[1] == again[1]


def test_beats_greedy_on_small_full_episodes() -> None:
    solver = run_episodes(SMALL, reference_policy("ortools", 0, SMALL), episodes=12, seed=0)
    greedy = run_episodes(SMALL, greedy_policy, episodes=12, seed=0)
    assert solver["on_time_rate"].mean() > greedy["on_time_rate"].mean() + 0.02
    assert solver["invalid_actions"].sum() == 0 and solver["conflicts"].sum() == 0


def test_follows_the_plan_between_epochs() -> None:
    env = BatchedSamplingEnv(SMALL, num_envs=2)
    env.obs = env.reset(seed=3)
    dispatcher = OrToolsDispatcher(SMALL)
    play(env, dispatcher, SMALL.MAX_NUM_STEPS - 1)
    assert 0 < dispatcher.stats.solves < 2 * (SMALL.MAX_NUM_STEPS - 1) * 0.8
    assert dispatcher.stats.failures == 0


def test_needs_the_config_and_names_the_extra_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="config"):
        reference_policy("ortools")
    monkeypatch.setitem(sys.modules, "ortools.constraint_solver", None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[ortools\]'"):
        load_ortools()
