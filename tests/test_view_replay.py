"""What the replay buffer stores so that an update's cost does not grow with the fleet squared.

The prior dispatcher's choice is stored with each frame (asked once, not at every update), and a
POINT_VIEW run stores each vehicle's view of the points instead of every point (layout ``fleet_view``).
Both must leave learning exactly as it was: same batches, same losses, same weights, bit for bit; a
checkpoint written before the choice was stored must load with the choice asked again.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import greedy_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import PRIOR_KEY, ReplayBuffer
from fleetmarl.learner.prior import dispatcher_choices
from tests.conftest import TINY
from tests.test_buffer import assert_same_batches, roundtrip

VIEW = {**TINY, "SHARE_PARAMETERS": True, "NUM_AGENTS": 4, "NUM_POINTS": 16, "INITIAL_POINTS": 10, "POINT_VIEW": 3}


def _team(config: Config) -> MADDPG:
    torch.manual_seed(0)
    return MADDPG(build_agents(config), config)


def _filled(config: Config, algo: MADDPG, *, steps: int = 30, **kwargs) -> ReplayBuffer:
    """A buffer of ``steps`` greedy steps of 4 environments (episodes end within them: final frames too)."""
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, chunk_transitions=16, **kwargs)
    env = BatchedSamplingEnv(config, num_envs=4)
    obs = env.reset(seed=0)
    for _ in range(steps):
        actions = greedy_policy(obs)
        nxt, rewards, terminated, truncated, infos = env.step(actions)
        dones = terminated | truncated
        buffer.add(obs, actions, rewards, infos["final_obs"] if dones.any() else nxt, dones, actions)
        obs = nxt
    return buffer


def _learn(config: Config, **buffer_kwargs) -> tuple[list[list[float]], list[torch.Tensor], ReplayBuffer]:
    """Three updates (the first pre-training) from the same weights on the buffer's batches."""
    algo = _team(config)
    if buffer_kwargs.pop("with_prior", True):
        buffer_kwargs["prior"] = algo.stored_prior()
    buffer = _filled(config, algo, **buffer_kwargs)
    losses = []
    for i in range(3):
        out = algo.update(buffer.sample(16, "cpu"), imitate=i == 0)
        losses.append([float(out[k]) for k in ("critic_loss", "actor_loss", "q_mean")])
    return losses, [p.detach().clone() for p in algo.team.actor.parameters()], buffer


@pytest.mark.parametrize("views", [{"POINT_VIEW": 3}, {"POINT_VIEW": 3, "VEHICLE_VIEW": 2},
                                   {"POINT_VIEW": 0, "VEHICLE_VIEW": 1}])
def test_stored_prior_and_view_layout_learn_bit_for_bit_as_every_point_asked_each_update(views: dict) -> None:
    config = Config(**{**VIEW, **views})
    base_losses, base_weights, base = _learn(config, layout="fleet", with_prior=False)
    for kwargs, layout in (({"layout": "fleet"}, "fleet"), ({}, "fleet_view")):
        losses, weights, buffer = _learn(config, **kwargs)
        assert buffer.layout == layout
        assert losses == base_losses
        assert all(torch.equal(a, b) for a, b in zip(weights, base_weights, strict=True))
    if views["POINT_VIEW"]:
        assert buffer.bytes_per_transition() < base.bytes_per_transition()


def test_the_view_layout_stores_each_vehicles_view_with_its_slots() -> None:
    config = Config(**VIEW)
    algo = _team(config)
    buffer = _filled(config, algo, prior=algo.stored_prior())
    batch = buffer.sample(32, "cpu")
    d = observation_dims(config)
    points, slots = batch.obs["point_features"], batch.obs["point_slots"]
    assert points.shape[2] == 3 and slots.shape == points.shape[:3]
    real = slots >= 0
    assert torch.equal(real, points[..., d.active_column] > 0.5)  # padding rows are empty, real rows active
    assert bool((real.sum(-1) == 3).any())  # some vehicle sees more active points than its view
    kept = torch.where(real, slots, torch.full_like(slots, 10**6))
    assert torch.equal(kept, kept.sort(-1).values)  # rows in slot order, as the networks lay them out
    # the coordinated choices read every point's heading flag, not only the view's
    assert batch.obs["heading_taken"].shape == (32, d.num_points)


def test_the_stored_prior_is_the_dispatchers_choice_on_the_replayed_observation() -> None:
    config = Config(**{**VIEW, "POINT_VIEW": 0})
    algo = _team(config)
    buffer = _filled(config, algo, prior=algo.stored_prior())
    batch = buffer.sample(32, "cpu")
    for obs in (batch.obs, batch.next_obs):
        full = {k: v for k, v in obs.items() if k != PRIOR_KEY}
        asked = dispatcher_choices(full, together=algo.coordinated, dispatcher=algo.team.prior_dispatcher)
        assert np.array_equal(obs[PRIOR_KEY].numpy(), asked)


def test_a_buffer_saved_before_the_prior_was_stored_asks_it_when_loaded() -> None:
    config = Config(**{**VIEW, "POINT_VIEW": 0})
    algo = _team(config)
    old = _filled(config, algo)  # as written by a version that asked the prior at every update
    state = roundtrip(old.state_dict())
    assert PRIOR_KEY not in state["tail"]["frames"]
    restored = ReplayBuffer(config, observation_dims(config), seed=0, prior=algo.stored_prior())
    restored.load_state_dict(state)
    reference = _filled(config, algo, prior=algo.stored_prior())
    assert_same_batches(restored, reference)


def test_the_view_layout_restores_exactly_and_goes_on_as_the_original() -> None:
    config = Config(**VIEW)
    algo = _team(config)
    original = _filled(config, algo, prior=algo.stored_prior())
    restored = ReplayBuffer(config, observation_dims(config), seed=0, prior=algo.stored_prior())
    restored.load_state_dict(roundtrip(original.state_dict()))
    assert restored.layout == "fleet_view"
    env = BatchedSamplingEnv(config, num_envs=4)
    obs = env.reset(seed=9)
    for _ in range(3):  # the first add after loading cannot reuse frames: both must store the same
        actions = greedy_policy(obs)
        nxt, rewards, terminated, truncated, _ = env.step(actions)
        for buffer in (original, restored):
            buffer.add(obs, actions, rewards, nxt, terminated | truncated, actions)
        obs = nxt
    assert_same_batches(original, restored)


def test_a_view_replayed_without_the_prior_stored_is_refused_with_the_fix() -> None:
    config = Config(**VIEW)
    algo = _team(config)
    buffer = _filled(config, algo)  # no prior given: the view holds too few points to ask it
    with pytest.raises(ValueError, match="prior=algo.stored_prior"):
        algo.update(buffer.sample(8, "cpu"))
