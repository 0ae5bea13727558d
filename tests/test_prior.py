"""A dispatcher as a logit prior (DISPATCH_PRIOR_LOGIT, DISPATCH_PRIOR_POLICY): the untrained fleet acts as
that dispatcher, in the team's acting, the guide's agent.act and a loaded checkpoint; the actor still learns;
0 changes nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs import make_batched_env
from fleetmarl.envs.policies import greedy_policy, reference_policy
from fleetmarl.errors import CheckpointError
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.prior import dispatcher_choices
from tests.test_agents import filled_buffer

SMALL = dict(NUM_AGENTS=3, NUM_POINTS=8, INITIAL_POINTS=5, MAX_NUM_STEPS=40, MAP_SIZE=3000.0, HIDDEN_DIM=16,
             EMBED_DIM=8, TRANSFORMER_HEADS=2, BATCH_SIZE=16, CAPACITY=64, NUM_ENVS=4, NUM_EPISODES=8,
             MODEL_SAVE_INTERVAL=8, EVAL_INTERVAL=8,
             DISPATCH_PRIOR_POLICY="greedy")  # the tests compare with greedy_policy; greedy_shift's has its own


def observations(config: Config, steps: int = 30) -> list[dict[str, np.ndarray]]:
    """Observations along greedy-driven episodes: real masks, claims and vehicles in every phase."""
    env = make_batched_env(config, config.NUM_ENVS)
    obs = env.reset(seed=3)
    seen = []
    for _ in range(steps):
        seen.append(obs)
        obs = env.step(greedy_policy(obs))[0]
    return seen


def tensors(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v) for k, v in obs.items()}


def test_untrained_fleet_with_a_dominant_prior_acts_as_greedy() -> None:
    config = Config(**SMALL, DISPATCH_PRIOR_LOGIT=1e4)
    torch.manual_seed(0)
    algo = MADDPG(build_agents(config), config)
    seen = observations(config)
    assert sum(int((greedy_policy(o) < config.NUM_POINTS).sum()) for o in seen) > 10  # points were dispatched
    for obs in seen:
        np.testing.assert_array_equal(algo.act(tensors(obs), 0.0).numpy(), greedy_policy(obs))


def test_guide_agent_act_adds_the_prior_with_or_without_a_mask() -> None:
    """agent.act sees one vehicle: greedy for that vehicle alone, the mask read from the ``feasible`` column."""
    config = Config(**SMALL, DISPATCH_PRIOR_LOGIT=1e4)
    agents = build_agents(config)
    for obs in observations(config, steps=12):
        for i, agent in enumerate(agents):
            alone = {k: v[:, i:i + 1] for k, v in obs.items()}
            expected = greedy_policy(alone)[:, 0]
            args = (obs["state"][:, i], obs["point_features"][:, i], obs["other_obs"][:, i])
            np.testing.assert_array_equal(agent.act(*args, noise_std=0.0), expected)
            np.testing.assert_array_equal(agent.act(*args, noise_std=0.0, action_mask=obs["action_mask"][:, i]), expected)
            del alone["action_mask"]
            np.testing.assert_array_equal(dispatcher_choices(alone)[:, 0], expected)


def test_prior_is_saved_with_the_agents_and_absent_means_none() -> None:
    config = Config(**SMALL, DISPATCH_PRIOR_LOGIT=2.5)
    state = build_agents(config)[0].checkpoint_state()
    assert state["meta"]["dispatch_prior_logit"] == 2.5
    buffer = io.BytesIO()
    torch.save(state, buffer)
    plain = build_agents(Config(**SMALL, DISPATCH_PRIOR_LOGIT=0.0))  # the config says 0: the file's value wins, as it was trained
    plain[0].load_checkpoint_state(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert plain[0].team.dispatch_prior_logit == 2.5
    del state["meta"]["dispatch_prior_logit"]  # a file written before the prior existed
    plain[0].load_checkpoint_state(state)
    assert plain[0].team.dispatch_prior_logit == 0.0


@pytest.mark.parametrize("name", ["greedy_shift", "greedy_chain"])
def test_a_dispatcher_prior_acts_as_its_dispatcher_in_the_team_and_in_agent_act(name: str) -> None:
    config = Config(**{**SMALL, "DISPATCH_PRIOR_POLICY": name}, DISPATCH_PRIOR_LOGIT=1e4)
    agents = build_agents(config)
    algo, dispatcher = MADDPG(agents, config), reference_policy(name, 0, config)
    seen = observations(config, steps=config.MAX_NUM_STEPS)
    assert any((dispatcher(o) != greedy_policy(o)).any() for o in seen)  # the rule applied somewhere
    for obs in seen:
        np.testing.assert_array_equal(algo.act(tensors(obs), 0.0).numpy(), dispatcher(obs))
        alone = {k: v[:, :1] for k, v in obs.items()}
        np.testing.assert_array_equal(
            agents[0].act(obs["state"][:, 0], obs["point_features"][:, 0], obs["other_obs"][:, 0], noise_std=0.0),
            dispatcher(alone)[:, 0])


def test_prior_dispatcher_is_saved_with_the_agents_and_absent_means_greedy() -> None:
    state = build_agents(Config(**{**SMALL, "DISPATCH_PRIOR_POLICY": "greedy_shift"}))[0].checkpoint_state()
    assert state["meta"]["dispatch_prior_policy"] == "greedy_shift"
    plain = build_agents(Config(**SMALL))
    plain[0].load_checkpoint_state(state)
    assert plain[0].team.dispatch_prior_policy == "greedy_shift"
    assert (plain[0].team.prior_dispatcher(observations(Config(**SMALL), steps=1)[0]) >= 0).all()
    del state["meta"]["dispatch_prior_policy"]  # a file written when the prior was always greedy's
    plain[0].load_checkpoint_state(state)
    assert plain[0].team.prior_dispatcher is greedy_policy
    state["meta"]["dispatch_prior_policy"] = "psychic"  # a newer version's dispatcher
    with pytest.raises(CheckpointError, match="psychic"):
        plain[0].load_checkpoint_state(state)


def test_prior_zero_leaves_the_policy_unchanged_and_the_actor_learns_with_one() -> None:
    seen = observations(Config(**SMALL, DISPATCH_PRIOR_LOGIT=0.0), steps=6)
    acted = {}
    for weight in (0.0, 3.0):
        config = Config(**SMALL, DISPATCH_PRIOR_LOGIT=weight)
        torch.manual_seed(0)
        algo = MADDPG(build_agents(config), config)
        logits = [algo._policy_out(algo.team.actor, tensors(o)) for o in seen]
        acted[weight] = [out for _, out in logits]
        if weight == 0:
            assert all(net is out for net, out in logits)
        before = [p.detach().clone() for p in algo.team.actor.parameters()]
        buffer = filled_buffer(config)
        for _ in range(4):
            algo.update(buffer.sample(config.BATCH_SIZE))
        assert any(not torch.equal(b, p) for b, p in zip(before, algo.team.actor.parameters(), strict=True))
    for plain, with_prior, obs in zip(acted[0.0], acted[3.0], seen, strict=True):
        bonus = (with_prior - plain).transpose(0, 1)  # (B, A, K)
        choice = torch.as_tensor(greedy_policy(obs))
        assert torch.allclose(bonus.gather(-1, choice.unsqueeze(-1)), torch.full((*choice.shape, 1), 3.0))
        assert torch.allclose(bonus.sum(-1), torch.full(choice.shape, 3.0))
