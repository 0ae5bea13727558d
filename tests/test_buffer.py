"""Replay buffer: raw observations in, exact batches out; PER sum tree; exact save/restore."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner.buffer import ReplayBuffer, SumTree

SMALL = dict(NUM_AGENTS=3, NUM_POINTS=5, INITIAL_POINTS=3, BATCH_SIZE=8, CAPACITY=50)


def make(prioritized: bool, **changes) -> ReplayBuffer:
    config = Config(**{**SMALL, "ENABLE_PRIORITIZED_REPLAY": prioritized, **changes})
    return ReplayBuffer(config, observation_dims(config), seed=7)


def random_obs(buffer: ReplayBuffer, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for key, shape in buffer.shapes.items():
        if key == "action_mask":
            out[key] = rng.random((batch, *shape)) < 0.7
        else:
            out[key] = rng.standard_normal((batch, *shape)).astype(np.float32)
    return out


def fill(buffer: ReplayBuffer, steps: int, batch: int = 4, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    added = []
    a = buffer.dims.num_agents
    for _ in range(steps):
        obs, nxt = random_obs(buffer, batch, rng), random_obs(buffer, batch, rng)
        actions = rng.integers(0, buffer.dims.num_actions, (batch, a))
        rewards = rng.standard_normal((batch, a)).astype(np.float32)
        dones = rng.random(batch) < 0.2
        buffer.add(obs, actions, rewards, nxt, dones)
        added.append((obs, actions, rewards, nxt, dones))
    return added


@pytest.mark.parametrize("prioritized", [False, True])
def test_sample_returns_what_was_stored(prioritized: bool) -> None:
    buffer = make(prioritized)
    added = fill(buffer, 3)
    assert len(buffer) == 12
    batch = buffer.sample(16, "cpu")
    d = buffer.dims
    assert batch.obs["point_features"].shape == (16, d.num_agents, d.num_points, d.point)
    assert batch.obs["point_features"].dtype == torch.float32
    assert batch.obs["action_mask"].dtype == torch.bool
    assert batch.actions.dtype == torch.int64 and batch.actions.shape == (16, d.num_agents)
    assert batch.weights.shape == (16,) and batch.indices.shape == (16,)
    for row, slot in enumerate(batch.indices.tolist()):
        obs, actions, rewards, nxt, dones = added[slot // 4]
        j = slot % 4
        assert torch.equal(batch.obs["state"][row], torch.from_numpy(obs["state"][j]))
        assert torch.equal(batch.next_obs["action_mask"][row], torch.from_numpy(nxt["action_mask"][j]))
        # float16 storage: within half-precision rounding of the raw features
        np.testing.assert_allclose(batch.obs["point_features"][row].numpy(), obs["point_features"][j], rtol=1e-3, atol=1e-3)
        assert batch.actions[row].tolist() == actions[j].tolist()
        assert batch.rewards[row].tolist() == rewards[j].tolist()
        assert float(batch.dones[row]) == float(dones[j])
    if not prioritized:
        assert torch.all(batch.weights == 1)


def test_ring_wraps_and_keeps_newest() -> None:
    buffer = make(False)
    fill(buffer, 15)  # 60 transitions into 50 slots
    assert len(buffer) == 50 and buffer.ptr == 10


def test_bytes_per_transition_counts_every_array() -> None:
    buffer = make(False)
    d = buffer.dims
    obs_bytes = d.num_agents * (4 * d.state + 2 * d.num_points * d.point + 4 * d.other_rows * d.other + d.num_actions)
    assert buffer.bytes_per_transition() == 2 * obs_bytes + d.num_agents * (2 + 4) + 1
    assert make(True).bytes_per_transition() == buffer.bytes_per_transition() + 8


def test_defaults_fit_in_two_gigabytes() -> None:
    config = Config(CAPACITY=1000)  # same per-transition layout as the default 100000
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    assert buffer.bytes_per_transition() * 100_000 < 2 * 1024**3


def test_point_features_beyond_float16_are_refused() -> None:
    buffer = make(False)
    obs = random_obs(buffer, 1, np.random.default_rng(0))
    obs["point_features"][0, 0, 0, 0] = 1e6
    a = buffer.dims.num_agents
    with pytest.raises(ValueError, match="float16"):
        buffer.add(obs, np.zeros((1, a), int), np.zeros((1, a), np.float32), obs, np.zeros(1, bool))


def test_sum_tree_sums_and_finds() -> None:
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    assert tree.total == 10.0
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.9, 3.0, 6.0, 9.99])).tolist() == [0, 0, 1, 1, 2, 3, 3]
    tree.set(np.array([3, 3]), np.array([7.0, 0.5]))  # duplicates: the last write wins
    assert tree.total == 6.5
    copy = SumTree(5)
    copy.leaves()[:] = tree.leaves()
    copy.rebuild()
    assert np.array_equal(copy.nodes, tree.nodes)


def test_prioritized_sampling_follows_priorities_and_weights_correct_it() -> None:
    buffer = make(True, CAPACITY=64, PER_ALPHA=1.0, PER_BETA=1.0, PER_BETA_INCREMENT=0.0, PER_EPSILON=1e-6)
    fill(buffer, 4, batch=4)  # 16 transitions
    priorities = np.full(16, 0.01)
    priorities[3] = 10.0
    buffer.update_priorities(torch.arange(16), torch.tensor(priorities))
    counts = np.zeros(16)
    for _ in range(20):
        batch = buffer.sample(32, "cpu")
        counts += np.bincount(batch.indices.numpy(), minlength=16)
    assert counts[3] / counts.sum() > 0.9
    weights = buffer.sample(32, "cpu").weights
    assert float(weights.max()) <= 1.0 + 1e-6
    assert float(weights.min()) < 0.01  # the over-sampled transition is down-weighted (beta = 1)


def test_beta_anneals_to_one() -> None:
    buffer = make(True, PER_BETA=0.5, PER_BETA_INCREMENT=0.2)
    fill(buffer, 2)
    betas = []
    for _ in range(4):
        buffer.sample(4, "cpu")
        betas.append(buffer.beta)
    assert betas == pytest.approx([0.7, 0.9, 1.0, 1.0])


@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_restores_exactly(prioritized: bool) -> None:
    original = make(prioritized)
    fill(original, 15)  # wrapped
    original.sample(8, "cpu")
    if prioritized:
        batch = original.sample(8, "cpu")
        original.update_priorities(batch.indices, torch.rand(8))
    blob = io.BytesIO()
    torch.save(original.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    assert state["obs"]["state"].shape[0] == len(original)
    restored = make(prioritized)
    restored.load_state_dict(state)
    for _ in range(3):
        a, b = original.sample(8, "cpu"), restored.sample(8, "cpu")
        assert torch.equal(a.indices, b.indices) and torch.equal(a.weights, b.weights)
        assert torch.equal(a.obs["point_features"], b.obs["point_features"])
    fill(original, 1, seed=5)
    fill(restored, 1, seed=5)
    assert torch.equal(original.sample(8, "cpu").indices, restored.sample(8, "cpu").indices)


def test_state_dict_holds_only_the_filled_part() -> None:
    buffer = make(True)
    fill(buffer, 2)
    state = buffer.state_dict()
    assert state["actions"].shape[0] == 8 and state["priorities"].shape[0] == 8


def test_load_rejects_a_different_shape() -> None:
    buffer = make(False)
    fill(buffer, 1)
    other = make(False, NUM_POINTS=6)
    with pytest.raises(CheckpointError, match="point_features"):
        other.load_state_dict(buffer.state_dict())
