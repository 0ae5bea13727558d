"""The stacked (all agents at once) networks compute exactly what each agent's own modules compute,
forward and backward, so MADDPG's batched update trains the per-agent modules it claims to."""

from __future__ import annotations

import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner.agents import MADDPGAgent, build_agents
from fleetmarl.learner.stacked_networks import StackedActor, StackedCritic

CONFIG = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
                TRANSFORMER_LAYERS=2, BATCH_SIZE=4, CAPACITY=16)
DIMS = observation_dims(CONFIG)
TOL = dict(rtol=1e-5, atol=1e-6)


def stack(modules: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Stack with autograd, as ``MADDPG``'s ``_Stack.live()`` does."""
    named = [dict(m.named_parameters()) for m in modules]
    return {name: torch.stack([params[name] for params in named]) for name in named[0]}


def agents(action_type: str) -> list[MADDPGAgent]:
    torch.manual_seed(0)
    built = build_agents(CONFIG, action_type=action_type)
    with torch.no_grad():  # fresh LayerNorms are (1, 0); give each agent its own affine to test it too
        for agent in built:
            for module in agent.actor.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.normal_(1.0, 0.2)
                    module.bias.normal_(0.0, 0.2)
    return built


def inputs(batch: int = 4) -> tuple[torch.Tensor, ...]:
    """Agent-major actor inputs: state (A, B, S), points (A, B, N, F), other (A, B, A-1, O)."""
    gen = torch.Generator().manual_seed(1)
    a = DIMS.num_agents
    return (torch.randn(a, batch, DIMS.state, generator=gen),
            torch.randn(a, batch, DIMS.num_points, DIMS.point, generator=gen),
            torch.randn(a, batch, DIMS.other_rows, DIMS.other, generator=gen))


def point_mask(batch: int = 4) -> torch.Tensor:
    mask = torch.rand(DIMS.num_agents, batch, DIMS.num_points, generator=torch.Generator().manual_seed(2)) < 0.6
    mask[0, 0] = False  # a set with no real point at all
    return mask


@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
@pytest.mark.parametrize("masked", [False, True])
def test_stacked_actor_equals_each_agents_actor(action_type: str, masked: bool) -> None:
    team = agents(action_type)
    state, points, other = inputs()
    mask = point_mask() if masked else None
    with torch.no_grad():
        out = StackedActor(team[0].actor)(stack([a.actor for a in team]), state, points, other, mask)
        ref = torch.stack([a.actor(state[i], points[i], other[i], None if mask is None else mask[i])
                           for i, a in enumerate(team)])
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL)


@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_stacked_critic_equals_each_agents_critic(action_type: str) -> None:
    team = agents(action_type)
    _, points, _ = inputs()
    gen = torch.Generator().manual_seed(3)
    states = torch.randn(4, DIMS.num_agents, DIMS.state, generator=gen)
    shared = torch.rand(4, DIMS.num_agents, DIMS.num_actions, generator=gen)  # (B, A, K) seen by every critic
    each = torch.rand(DIMS.num_agents, 4, DIMS.num_agents, DIMS.num_actions, generator=gen)  # (A, B, A, K)
    critic = StackedCritic(team[0].critic)
    with torch.no_grad():
        params = stack([a.critic for a in team])
        q_shared = critic(params, points, states, shared)
        tokens, pooled = critic.embed_points(params, points)
        q_each = critic.q_value(params, tokens, pooled, states, each)
        ref_shared = torch.stack([a.critic(points[i], states, shared) for i, a in enumerate(team)])
        ref_each = torch.stack([a.critic(points[i], states, each[i]) for i, a in enumerate(team)])
    assert q_shared.shape == (DIMS.num_agents, 4)
    torch.testing.assert_close(q_shared, ref_shared, **TOL)
    torch.testing.assert_close(q_each, ref_each, **TOL)


def test_gradients_reach_each_agent_as_in_a_per_agent_loop() -> None:
    """One update's losses (critic regression + actor through the critic), stacked vs agent by agent."""
    team = agents("discrete")
    state, points, other = inputs()
    gen = torch.Generator().manual_seed(4)
    states = state.transpose(0, 1)  # (B, A, S)
    actions = torch.rand(4, DIMS.num_agents, DIMS.num_actions, generator=gen)
    targets = torch.randn(DIMS.num_agents, 4, generator=gen)
    mask = point_mask()

    def losses(q: torch.Tensor, logits: torch.Tensor, q_policy: torch.Tensor) -> torch.Tensor:
        return (q - targets).square().mean(-1).sum() - q_policy.mean(-1).sum() + logits.square().mean()

    # stacked: every agent at once, actor loss through the frozen critic with agent i's action swapped in
    actor, critic = StackedActor(team[0].actor), StackedCritic(team[0].critic)
    critic_params = stack([a.critic for a in team])
    logits = actor(stack([a.actor for a in team]), state, points, other, mask)  # (A, B, K)
    tokens, pooled = critic.embed_points(critic_params, points)
    q = critic.q_value(critic_params, tokens, pooled, states, actions)
    own = logits.softmax(-1)
    eye = torch.eye(DIMS.num_agents, dtype=torch.bool)
    joint = torch.where(eye[:, None, :, None], own.unsqueeze(2), actions.unsqueeze(0))  # (A, B, A, K)
    frozen = {k: v.detach() for k, v in critic_params.items()}
    q_policy = critic.q_value(frozen, tokens.detach(), pooled.detach(), states, joint)
    losses(q, logits, q_policy).backward()
    stacked_grads = [[p.grad.clone() for p in a.parameters() if p.grad is not None] for a in team]

    for agent in team:
        agent.zero_grad(set_to_none=True)
    q_loop, logits_loop, q_policy_loop = [], [], []
    for i, agent in enumerate(team):
        q_loop.append(agent.critic(points[i], states, actions))
        logits_i = agent.actor(state[i], points[i], other[i], mask[i])
        joint_i = actions.clone()
        joint_i[:, i] = logits_i.softmax(-1)
        frozen_critic = {k: v.detach() for k, v in agent.critic.named_parameters()}
        q_policy_loop.append(torch.func.functional_call(agent.critic, frozen_critic, (points[i], states, joint_i)))
        logits_loop.append(logits_i)
    losses(torch.stack(q_loop), torch.stack(logits_loop), torch.stack(q_policy_loop)).backward()
    loop_grads = [[p.grad for p in a.parameters() if p.grad is not None] for a in team]

    assert [len(g) for g in stacked_grads] == [len(g) for g in loop_grads]
    assert all(len(g) == sum(1 for p in a.actor.parameters()) + sum(1 for p in a.critic.parameters())
               for g, a in zip(stacked_grads, team, strict=True))
    for mine, ref in zip(stacked_grads, loop_grads, strict=True):
        for g, r in zip(mine, ref, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
