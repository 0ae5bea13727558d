"""Point encoder, actor and critic: set semantics (order of points does not matter) and shapes."""

from __future__ import annotations

import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner.networks import Actor, CentralCritic, PointEncoder, masked_pool

CONFIG = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
                TRANSFORMER_LAYERS=2, BATCH_SIZE=4, CAPACITY=16)
DIMS = observation_dims(CONFIG)


def test_encoder_is_invariant_to_point_order() -> None:
    torch.manual_seed(0)
    encoder = PointEncoder(DIMS.point, 8, 2, 2)
    points = torch.randn(4, DIMS.num_points, DIMS.point)
    perm = torch.randperm(DIMS.num_points)
    tokens, pooled = encoder.encode(points)
    tokens_p, pooled_p = encoder.encode(points[:, perm])
    assert pooled.shape == (4, 16) and tokens.shape == (4, DIMS.num_points, 8)
    torch.testing.assert_close(pooled_p, pooled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tokens_p, tokens[:, perm], rtol=1e-5, atol=1e-6)  # equivariant tokens


def test_padding_mask_hides_empty_slots() -> None:
    torch.manual_seed(1)
    encoder = PointEncoder(DIMS.point, 8, 2, 1)
    points = torch.randn(2, 6, DIMS.point)
    mask = torch.tensor([[True, True, True, False, False, False]] * 2)
    junk = points.clone()
    junk[:, 3:] = torch.randn(2, 3, DIMS.point) * 100
    torch.testing.assert_close(encoder(points, mask), encoder(junk, mask))
    torch.testing.assert_close(encoder(points, mask), encoder(points[:, :3]))
    assert torch.equal(masked_pool(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.bool)), torch.zeros(2, 6))


def test_actor_point_logits_follow_their_points() -> None:
    torch.manual_seed(2)
    actor = Actor(DIMS, 16, 8, 2, 1)
    state = torch.randn(5, DIMS.state)
    points = torch.randn(5, DIMS.num_points, DIMS.point)
    other = torch.randn(5, DIMS.other_rows, DIMS.other)
    logits = actor(state, points, other)
    assert logits.shape == (5, DIMS.num_actions)
    perm = torch.randperm(DIMS.num_points)
    permuted = actor(state, points[:, perm], other)
    n = DIMS.num_points
    torch.testing.assert_close(permuted[:, :n], logits[:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(permuted[:, n:], logits[:, n:], rtol=1e-5, atol=1e-5)
    single = actor(state[0], points[0], other[0])  # unbatched works too
    torch.testing.assert_close(single, logits[0], rtol=1e-5, atol=1e-5)


def test_critic_reads_the_chosen_point() -> None:
    torch.manual_seed(3)
    critic = CentralCritic(DIMS, 16, 8)
    points = torch.randn(4, DIMS.num_points, DIMS.point)
    states = torch.randn(4, DIMS.num_agents, DIMS.state)
    actions = torch.nn.functional.one_hot(torch.randint(0, DIMS.num_actions, (4, DIMS.num_agents)), DIMS.num_actions).float()
    q = critic(points, states, actions)
    assert q.shape == (4,)
    # Q depends on the chosen point's *features*, not on its slot number
    perm = torch.randperm(DIMS.num_points)
    moved = actions.clone()
    moved[..., : DIMS.num_points] = actions[..., : DIMS.num_points][..., perm]
    torch.testing.assert_close(critic(points[:, perm], states, moved), q, rtol=1e-5, atol=1e-5)
    actions.requires_grad_(True)
    critic(points, states, actions).sum().backward()
    assert actions.grad is not None and actions.grad.abs().sum() > 0


def test_continuous_actor_outputs_bounded_actions() -> None:
    actor = Actor(DIMS, 16, 8, 2, 1, continuous=True)
    with torch.no_grad():
        out = actor(torch.randn(3, DIMS.state) * 100, torch.randn(3, DIMS.num_points, DIMS.point),
                    torch.randn(3, DIMS.other_rows, DIMS.other))
    assert out.shape == (3, DIMS.num_actions) and float(out.abs().max()) <= 1.0
