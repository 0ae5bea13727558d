"""The stacked networks: set semantics, packing of active points, and one agent = one slice."""

from __future__ import annotations

import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import POINT, observation_dims
from fleetmarl.learner import build_agents, networks
from fleetmarl.learner.networks import (
    INACTIVE_LOGIT,
    Actor,
    CentralCritic,
    PointEncoder,
    select_rows,
    set_pool,
)

CONFIG = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
                TRANSFORMER_LAYERS=2, BATCH_SIZE=4, CAPACITY=16)
DIMS = observation_dims(CONFIG)
A, N, F_ = DIMS.num_agents, DIMS.num_points, DIMS.point


def points_with_active(batch: int, active: torch.Tensor | None = None) -> torch.Tensor:
    """Random point rows (A, B, N, F) whose 'active' column is 0/1 (all active unless given (B, N))."""
    points = torch.randn(A, batch, N, F_)
    flags = torch.ones(batch, N) if active is None else active.float()
    points[..., POINT["active"]] = flags
    return points


def test_encoder_is_invariant_to_point_order() -> None:
    torch.manual_seed(0)
    encoder = PointEncoder(A, F_, 8, 2, 2)
    points = torch.randn(A, 4, N, F_)
    perm = torch.randperm(N)
    tokens, pooled = encoder(select_rows(points, None))
    tokens_p, pooled_p = encoder(select_rows(points[:, :, perm], None))
    assert pooled.shape == (A, 4, 16) and tokens.shape == (A, 4 * N, 8)
    torch.testing.assert_close(pooled_p, pooled, rtol=1e-5, atol=1e-5)
    tokens, tokens_p = tokens.view(A, 4, N, 8), tokens_p.view(A, 4, N, 8)
    torch.testing.assert_close(tokens_p, tokens[:, :, perm], rtol=1e-5, atol=1e-5)  # equivariant tokens


def test_rows_of_other_samples_and_inactive_rows_change_nothing() -> None:
    """Each sample's set is encoded on its own: padding, other samples and inactive rows do not leak in."""
    torch.manual_seed(1)
    encoder = PointEncoder(A, F_, 8, 2, 1)
    active = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    points = points_with_active(2, active)
    junk = points.clone()
    junk[:, :, 3:, : POINT["active"]] = torch.randn(A, 2, 3, POINT["active"]) * 100
    _, pooled = encoder(select_rows(points, POINT["active"]))
    torch.testing.assert_close(encoder(select_rows(junk, POINT["active"]))[1], pooled)
    alone = encoder(select_rows(points[:, :1, :3], None))[1]  # the first sample's three rows by themselves
    torch.testing.assert_close(pooled[:, :1], alone, rtol=1e-5, atol=1e-5)
    empty = points_with_active(1, torch.zeros(1, N, dtype=torch.bool))
    assert torch.equal(encoder(select_rows(empty, POINT["active"]))[1], torch.zeros(A, 1, 16))
    assert set_pool(torch.zeros(2, 0, 3)).shape == (2, 6)


def test_select_rows_keeps_active_rows_in_order() -> None:
    active = torch.tensor([[0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    points = points_with_active(2, active)
    rows = select_rows(points, POINT["active"])
    assert rows.rows.shape == (A, 2, F_)
    assert rows.sample.tolist() == [0, 0] and rows.slot.tolist() == [1, 3] and rows.count.tolist() == [2, 0]
    torch.testing.assert_close(rows.rows, points[:, 0, [1, 3]])
    (group,) = rows.groups  # the sample without rows is in no attention group
    assert group.width == 2 and group.count.tolist() == [2]
    padded = group.pad(rows.rows.index_select(1, group.rows))
    assert padded.shape == (A, 1, 2, F_) and torch.equal(group.unpad(padded), rows.rows)


def test_attention_groups_change_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Grouping samples by row count (less padding) gives the tokens of padding all to the widest."""
    torch.manual_seed(3)
    encoder = PointEncoder(A, F_, 8, 2, 2)
    active = torch.rand(16, 6) < torch.linspace(0.05, 0.95, 16).unsqueeze(-1)  # 0-6 rows per sample
    points = points_with_active(16, active)
    rows = select_rows(points, POINT["active"])
    assert len(rows.groups) == networks.ATTENTION_GROUPS
    assert sorted(torch.cat([g.rows for g in rows.groups]).tolist()) == list(range(rows.rows.shape[1]))
    grouped = encoder(rows)
    monkeypatch.setattr(networks, "ATTENTION_GROUPS", 1)
    single = select_rows(points, POINT["active"])
    assert len(single.groups) == 1
    for got, want in zip(grouped, encoder(single), strict=True):
        torch.testing.assert_close(got, want)


def test_actor_ignores_inactive_slots_and_never_picks_them() -> None:
    torch.manual_seed(2)
    actor = Actor(A, DIMS, 16, 8, 2, 1)
    active = torch.tensor([[1, 0, 1, 0, 1, 0]] * 5, dtype=torch.bool)
    points = points_with_active(5, active)
    state, other = torch.randn(A, 5, DIMS.state), torch.randn(A, 5, DIMS.other_rows, DIMS.other)
    logits = actor(state, points, other)
    assert logits.shape == (A, 5, DIMS.num_actions)
    assert bool((logits[..., [1, 3, 5]] == INACTIVE_LOGIT).all())
    junk = points.clone()
    junk[:, :, [1, 3, 5], : POINT["active"]] = 1e3  # whatever an inactive slot says changes nothing
    torch.testing.assert_close(actor(state, junk, other), logits)


def test_actor_point_logits_follow_their_points() -> None:
    torch.manual_seed(2)
    actor = Actor(A, DIMS, 16, 8, 2, 1)
    state, points = torch.randn(A, 5, DIMS.state), points_with_active(5)
    other = torch.randn(A, 5, DIMS.other_rows, DIMS.other)
    logits = actor(state, points, other)
    perm = torch.randperm(N)
    permuted = actor(state, points[:, :, perm], other)
    torch.testing.assert_close(permuted[..., :N], logits[..., perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(permuted[..., N:], logits[..., N:], rtol=1e-5, atol=1e-5)


def test_critic_reads_the_chosen_point() -> None:
    torch.manual_seed(3)
    critic = CentralCritic(A, DIMS, 16, 8)
    points = torch.randn(A, 4, N, F_)
    states = torch.randn(4, A, DIMS.state)
    actions = torch.nn.functional.one_hot(torch.randint(0, DIMS.num_actions, (4, A)), DIMS.num_actions).float()
    q = critic(critic.embed_points(points), states, actions)
    assert q.shape == (A, 4)
    # Q depends on the chosen point's *features*, not on its slot number
    perm = torch.randperm(N)
    moved = actions.clone()
    moved[..., :N] = actions[..., :N][..., perm]
    torch.testing.assert_close(critic(critic.embed_points(points[:, :, perm]), states, moved), q, rtol=1e-5, atol=1e-5)
    actions.requires_grad_(True)
    critic(critic.embed_points(points), states, actions).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0


def test_each_agent_is_its_slice_of_the_stack() -> None:
    """One implementation: an agent's network is the stacked forward on its own slice of the weights."""
    torch.manual_seed(4)
    agents = build_agents(CONFIG)
    team = agents[0].team
    state, points = torch.randn(A, 7, DIMS.state), points_with_active(7)
    other = torch.randn(A, 7, DIMS.other_rows, DIMS.other)
    together = team.actor(state, points, other)
    for i, agent in enumerate(agents):
        alone = agent.actor(state[i:i + 1], points[i:i + 1], other[i:i + 1])[0]
        torch.testing.assert_close(alone, together[i], rtol=1e-5, atol=1e-5)
        saved = agent.actor.state_dict()
        assert saved["encoder.input.weight"].shape == (8, F_)  # per-agent shapes, as agent_i.pth always held
        assert torch.equal(saved["context.0.weight"], team.actor.context[0].weight[i])
    with torch.no_grad():
        team.actor.context[0].weight[1].add_(1.0)  # a change to the stack is a change to agent 1 only
    assert torch.equal(agents[1].actor.state_dict()["context.0.weight"], team.actor.context[0].weight[1])
    assert not torch.equal(agents[1].actor.state_dict()["context.0.weight"], agents[0].actor.state_dict()["context.0.weight"])


def test_continuous_actor_outputs_bounded_actions() -> None:
    actor = Actor(A, DIMS, 16, 8, 2, 1, continuous=True)
    with torch.no_grad():
        out = actor(torch.randn(A, 3, DIMS.state) * 100, points_with_active(3), torch.randn(A, 3, DIMS.other_rows, DIMS.other))
    assert out.shape == (A, 3, DIMS.num_actions) and float(out.abs().max()) <= 1.0
