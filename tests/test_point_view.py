"""POINT_VIEW: each vehicle's shared networks read only its nearest active points.

Which points are kept (free feasible ones first, then by distance), that a view wider than every
vehicle's active points changes nothing, that a narrow one leaves far points unchoosable, that a
teacher's far choice is no imitation label, and the config checks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import greedy_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.errors import ConfigError
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import ReplayBuffer
from fleetmarl.learner.networks import INACTIVE_LOGIT
from fleetmarl.learner.prior import dispatcher_choices
from fleetmarl.learner.shared_networks import nearest_others, nearest_rows
from tests.conftest import TINY

SHARED = {**TINY, "SHARE_PARAMETERS": True, "NUM_AGENTS": 3}


def _points(distance: list[float], feasible: list[int], heading: list[int], active: list[int]) -> torch.Tensor:
    """One vehicle, one sample: point rows (1, 1, N, F) with the named columns set."""
    d = observation_dims(Config(**SHARED))
    n = len(distance)
    points = torch.zeros(1, 1, n, d.point)
    points[0, 0, :, d.distance_column] = torch.tensor(distance)
    points[0, 0, :, d.feasible_column] = torch.tensor(feasible, dtype=torch.float32)
    points[0, 0, :, d.heading_column] = torch.tensor(heading, dtype=torch.float32)
    points[0, 0, :, d.active_column] = torch.tensor(active, dtype=torch.float32)
    return points


def test_the_view_keeps_free_feasible_points_first_then_the_nearest() -> None:
    d = observation_dims(Config(**SHARED))
    #            slot:   0    1    2    3    4    5
    points = _points([0.1, 0.2, 0.9, 0.8, 0.05, 0.3],
                     feasible=[0, 1, 1, 1, 1, 0],
                     heading=[0, 0, 0, 0, 1, 0],  # slot 4 is taken by another vehicle
                     active=[1, 1, 1, 1, 1, 0])   # slot 5 holds no point
    keep = points[..., d.active_column].reshape(1, -1) > 0.5
    kept = lambda k: set(nearest_rows(keep, points, d, k)[0].nonzero().flatten().tolist())  # noqa: E731
    assert kept(1) == {1}            # the nearest free feasible point
    assert kept(3) == {1, 3, 2}      # every free feasible point, nearest first
    assert kept(4) == {1, 3, 2, 4}   # then the nearest of the rest (the taken one at 0.05 before slot 0 at 0.1)
    assert kept(5) == {0, 1, 2, 3, 4}
    assert kept(6) == {0, 1, 2, 3, 4}  # never an empty slot


def test_the_dispatchers_pick_goes_first_in_the_view() -> None:
    d = observation_dims(Config(**SHARED))
    points = _points([0.1, 0.2, 0.9, 0.8, 0.05, 0.3], feasible=[0, 1, 1, 1, 1, 0], heading=[0, 0, 0, 0, 1, 0],
                     active=[1, 1, 1, 1, 1, 0])
    keep = points[..., d.active_column].reshape(1, -1) > 0.5
    kept = lambda k, pick: set(nearest_rows(keep, points, d, k, torch.tensor([pick]))[0].nonzero().flatten().tolist())  # noqa: E731
    assert kept(1, 2) == {2}          # the far point the dispatcher chose, not the nearest free one
    assert kept(2, 2) == {2, 1}       # then the nearest free feasible point
    assert kept(2, 6) == {1, 3}       # a choice that is no point (stay, 6 = N) leaves the view as it was
    assert kept(2, 7) == {1, 3}


def test_with_a_view_the_fleet_still_acts_as_its_dispatcher_where_the_actor_adds_nothing() -> None:
    """The residual policy's promise (learner/prior.py) kept under a POINT_VIEW of one point: with a bonus
    no logit can outweigh, every vehicle takes the dispatcher's choice, also a point beyond its nearest."""
    config = Config(**{**SHARED, "NUM_POINTS": 12, "INITIAL_POINTS": 8, "POINT_VIEW": 1,
                       "DISPATCH_PRIOR_LOGIT": 1e3})
    algo = MADDPG(build_agents(config), config)
    prior = algo.stored_prior()
    env = BatchedSamplingEnv(config, num_envs=2)
    obs, beyond = env.reset(seed=3), 0
    for _ in range(40):
        tensors = {k: torch.from_numpy(v) for k, v in obs.items()}
        with torch.no_grad():
            actions = algo.act(tensors, 0.0).numpy()
        np.testing.assert_array_equal(actions, prior(obs))
        alone = dispatcher_choices(obs, together=False, dispatcher=algo.team.prior_dispatcher)[0, 0]
        one = algo.agents[0].act(obs["state"][0, 0], obs["point_features"][0, 0], obs["other_obs"][0, 0],
                                 action_mask=obs["action_mask"][0, 0])  # the guide's agent.act, one vehicle
        assert one == alone
        nearest = nearest_rows(tensors["point_features"][..., observation_dims(config).active_column].flatten(0, 1) > 0.5,
                               tensors["point_features"].flatten(0, 1).unsqueeze(0), observation_dims(config), 1)
        chosen = actions.reshape(-1)
        is_point = chosen < config.NUM_POINTS
        beyond += int((~nearest[np.flatnonzero(is_point), chosen[is_point]]).sum())
        obs, *_ = env.step(actions)
    assert beyond > 0, "the dispatcher never chose beyond a vehicle's nearest point: the test shows nothing"


def _obs(config: Config, seed: int = 0) -> dict[str, torch.Tensor]:
    env = BatchedSamplingEnv(config, num_envs=2)
    obs = env.reset(seed=seed)
    for _ in range(5):
        obs, *_ = env.step(greedy_policy(obs))
    return {k: torch.from_numpy(v) for k, v in obs.items()}


def _logits(config: Config, obs: dict[str, torch.Tensor], state_dict=None) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    agents = build_agents(config)
    if state_dict is not None:
        agents[0].team.actor.load_state_dict(state_dict)
    actor = agents[0].team.actor
    with torch.no_grad():
        out = actor(*(obs[k].float().transpose(0, 1) for k in ("state", "point_features", "other_obs")))
    return out, actor.state_dict()


def test_a_view_wider_than_the_active_points_changes_nothing_and_a_narrow_one_hides_far_points() -> None:
    config = Config(**{**SHARED, "NUM_POINTS": 12, "INITIAL_POINTS": 8})
    obs = _obs(config)
    d = observation_dims(config)
    full, weights = _logits(config, obs)
    wide, _ = _logits(config.replace(POINT_VIEW=d.num_points - 1), obs, weights)
    active = int((obs["point_features"][..., d.active_column] > 0.5).sum(-1).max())
    assert active < d.num_points - 1 and torch.equal(full, wide)
    narrow, _ = _logits(config.replace(POINT_VIEW=2), obs, weights)
    scored = (narrow[..., :d.num_points] > INACTIVE_LOGIT).sum(-1)
    assert int(scored.max()) == 2 and int(scored.max()) < int((full[..., :d.num_points] > INACTIVE_LOGIT).sum(-1).max())


def test_imitation_never_asks_for_a_point_outside_the_view() -> None:
    """Pre-training clones the warm-up dispatcher's choices; with a view of 1 most are outside it, and a
    label the actor gives the INACTIVE_LOGIT fill would cost ~1e4 per row."""
    config = Config(**{**SHARED, "NUM_POINTS": 12, "INITIAL_POINTS": 8, "POINT_VIEW": 1})
    env = BatchedSamplingEnv(config, num_envs=4)
    torch.manual_seed(0)
    algo = MADDPG(build_agents(config), config)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, prior=algo.stored_prior())
    obs = env.reset(seed=0)
    for _ in range(20):
        actions = greedy_policy(obs)
        nxt, rewards, terminated, truncated, infos = env.step(actions)
        dones = terminated | truncated
        buffer.add(obs, actions, rewards, infos["final_obs"] if dones.any() else nxt, dones, actions)
        obs = nxt
    out = algo.update(buffer.sample(32, "cpu"), imitate=True)
    assert np.isfinite(float(out["actor_loss"])) and float(out["actor_loss"]) < 50.0


def test_point_view_needs_shared_parameters_and_a_count() -> None:
    with pytest.raises(ConfigError, match="POINT_VIEW .*SHARE_PARAMETERS=True"):
        Config(**{**TINY, "POINT_VIEW": 8})
    with pytest.raises(ConfigError, match="POINT_VIEW must not be negative"):
        Config(**{**SHARED, "POINT_VIEW": -1})


def test_vehicle_view_needs_shared_parameters_and_keeps_the_nearest_other_vehicles() -> None:
    with pytest.raises(ConfigError, match="VEHICLE_VIEW .*SHARE_PARAMETERS=True"):
        Config(**{**TINY, "VEHICLE_VIEW": 2})
    with pytest.raises(ConfigError, match="VEHICLE_VIEW must not be negative"):
        Config(**{**SHARED, "VEHICLE_VIEW": -1})
    d = observation_dims(Config(**SHARED))
    others = torch.zeros(1, 2, 4, d.other)
    others[0, 0, :, d.other_distance_column] = torch.tensor([0.5, 0.1, 0.3, 0.1])  # a tie: the lower row first
    others[0, 1, :, d.other_distance_column] = torch.tensor([0.0, 0.9, 0.8, 0.7])
    assert nearest_others(others, d, 2).tolist() == [[[1, 3], [0, 3]]]
    assert nearest_others(others, d, 3).tolist() == [[[1, 2, 3], [0, 2, 3]]]


def test_a_vehicle_view_wider_than_the_fleet_changes_nothing_and_a_narrow_one_reads_fewer_vehicles() -> None:
    config = Config(**{**SHARED, "NUM_AGENTS": 4, "NUM_POINTS": 12, "INITIAL_POINTS": 8})
    obs = _obs(config)
    full, weights = _logits(config, obs)
    wide, _ = _logits(config.replace(VEHICLE_VIEW=3), obs, weights)  # 3 others: all of them
    assert torch.equal(full, wide)
    narrow, _ = _logits(config.replace(VEHICLE_VIEW=1), obs, weights)
    agents = build_agents(config.replace(VEHICLE_VIEW=1))
    agents[0].team.actor.load_state_dict(weights)
    others = obs["other_obs"].float().transpose(0, 1)  # (A, B, A-1, O): keep only the nearest row by hand
    d = observation_dims(config)
    nearest = others[..., d.other_distance_column].argmin(-1, keepdim=True)
    cut = others.gather(-2, nearest.unsqueeze(-1).expand(*nearest.shape, others.shape[-1]))
    with torch.no_grad():
        by_hand = agents[0].team.actor(obs["state"].float().transpose(0, 1),
                                       obs["point_features"].float().transpose(0, 1), cut)
    assert torch.equal(narrow, by_hand) and not torch.equal(narrow, full)
