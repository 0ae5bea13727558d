"""Replay buffer: raw observations in, exact batches out; PER sum tree; exact save/restore."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import OTHER_COLUMNS, observation_dims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner.buffer import NOT_TAUGHT, ReplayBuffer, SumTree

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
        taught = rng.integers(0, buffer.dims.num_actions, (batch, a))
        buffer.add(obs, actions, rewards, nxt, dones, taught)
        added.append((obs, actions, rewards, nxt, dones, taught))
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
        obs, actions, rewards, nxt, dones, taught = added[slot // 4]
        j = slot % 4
        assert torch.equal(batch.obs["state"][row], torch.from_numpy(obs["state"][j]))
        assert torch.equal(batch.next_obs["action_mask"][row], torch.from_numpy(nxt["action_mask"][j]))
        # float16 storage: within half-precision rounding of the raw features
        np.testing.assert_allclose(batch.obs["point_features"][row].numpy(), obs["point_features"][j], rtol=1e-3, atol=1e-3)
        assert batch.actions[row].tolist() == actions[j].tolist()
        assert batch.taught[row].tolist() == taught[j].tolist()
        assert batch.rewards[row].tolist() == rewards[j].tolist()
        assert float(batch.dones[row]) == float(dones[j])
        assert batch.taught is not None and batch.taught[row].tolist() == taught[j].tolist()
    if not prioritized:
        assert torch.all(batch.weights == 1)


def test_ring_wraps_and_keeps_newest() -> None:
    buffer = make(False)
    fill(buffer, 15)  # 60 transitions into 50 slots
    assert len(buffer) == 50 and buffer.ptr == 10


def test_bytes_per_transition_counts_every_array() -> None:
    buffer = make(False, CAPACITY=64)
    fill(buffer, 1)  # random data: the plain layout, still one frame per observation
    assert buffer.layout == "plain"
    d = buffer.dims
    frame = d.num_agents * (4 * d.state + 2 * d.num_points * d.point + 4 * d.other_rows * d.other + (d.num_actions + 7) // 8)
    assert buffer.bytes_per_transition() == frame + d.num_agents * (2 + 2 + 4) + 1 + 8  # action, taught, reward
    assert make(True).bytes_per_transition() == make(False).bytes_per_transition() + 8


def test_defaults_use_at_most_2500_bytes_per_transition() -> None:
    config = Config(CAPACITY=1000)  # same per-transition layout as the default 100000
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    per_episode_end = buffer.frame_bytes() / config.MAX_NUM_STEPS  # the final frame of each episode
    assert buffer.bytes_per_transition() + per_episode_end <= 2500


def env_transitions(config: Config, steps: int, num_envs: int = 4):
    from fleetmarl.envs import BatchedSamplingEnv
    from fleetmarl.envs.policies import greedy_policy, random_policy

    env = BatchedSamplingEnv(config, num_envs=num_envs)
    rng = np.random.default_rng(0)
    obs = env.reset(seed=0)
    for _ in range(steps):
        actions = random_policy(obs, rng)
        nxt, rewards, terminated, truncated, infos = env.step(actions)
        dones = terminated | truncated
        yield obs, actions, rewards, infos["final_obs"] if dones.any() else nxt, dones, greedy_policy(obs)
        obs = nxt


RELATIVE = [OTHER_COLUMNS.index(name) for name in ("dx", "dy", "distance", "target_dx", "target_dy")]
ENV = dict(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, MAX_NUM_STEPS=7, CAPACITY=100, BATCH_SIZE=16)


@pytest.mark.parametrize("prioritized", [False, True])
def test_fleet_layout_returns_the_environments_observations(prioritized: bool) -> None:
    config = Config(**ENV, ENABLE_PRIORITIZED_REPLAY=prioritized)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, chunk_transitions=16)
    log = []
    for transition in env_transitions(config, 40):
        buffer.add(*transition)
        log.append(transition)
    assert buffer.layout == "fleet" and len(buffer) == 100
    assert buffer.final_total == 20  # one final frame per env per episode end (40 steps, episodes of 7)
    batch = buffer.sample(64)
    for row, slot in enumerate(batch.indices.tolist()):
        step, j = divmod(int(buffer.global_index(np.array([slot]))[0]), 4)
        obs, actions, rewards, nxt, _, taught = log[step]
        for source, got in ((obs, batch.obs), (nxt, batch.next_obs)):
            assert torch.equal(got["state"][row], torch.from_numpy(source["state"][j]))
            assert torch.equal(got["action_mask"][row], torch.from_numpy(source["action_mask"][j]))
            half = source["point_features"][j].astype(np.float16).astype(np.float32)
            assert torch.equal(got["point_features"][row], torch.from_numpy(half))
            other = source["other_obs"][j].copy()  # relative columns float16, the others' own state exact
            other[..., RELATIVE] = other[..., RELATIVE].astype(np.float16)
            assert torch.equal(got["other_obs"][row], torch.from_numpy(other))
        assert batch.actions[row].tolist() == actions[j].tolist()
        assert batch.rewards[row].tolist() == rewards[j].tolist()


def test_structure_checks_name_the_broken_column() -> None:
    config = Config(**ENV)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, layout="fleet")
    obs, actions, rewards, nxt, dones, _ = next(env_transitions(config, 1))
    obs = {k: v.copy() for k, v in obs.items()}
    obs["point_features"][0, 1, 0, -1] += 1.0  # a per-point column that now differs between vehicles
    with pytest.raises(ValueError, match="per-point columns differ"):
        buffer.add(obs, actions, rewards, nxt, dones)


def test_continuous_actions_are_stored_as_floats() -> None:
    config = Config(**SMALL)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, action_dim=2)
    rng = np.random.default_rng(0)
    a = buffer.dims.num_agents
    actions = rng.uniform(-1, 1, (4, a, 2)).astype(np.float32)
    obs = random_obs(buffer, 4, rng)
    buffer.add(obs, actions, np.zeros((4, a), np.float32), obs, np.zeros(4, bool))
    batch = buffer.sample(8)
    assert batch.actions.dtype == torch.float32 and batch.actions.shape == (8, a, 2)
    for row, slot in enumerate(batch.indices.tolist()):
        assert torch.equal(batch.actions[row], torch.from_numpy(actions[slot]))


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


def roundtrip(state: dict) -> dict:
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=True)


def assert_same_batches(a: ReplayBuffer, b: ReplayBuffer, rounds: int = 3) -> None:
    for _ in range(rounds):
        x, y = a.sample(8, "cpu"), b.sample(8, "cpu")
        assert torch.equal(x.indices, y.indices) and torch.equal(x.weights, y.weights)
        for key in x.obs:
            assert torch.equal(x.obs[key], y.obs[key]) and torch.equal(x.next_obs[key], y.next_obs[key])
        assert torch.equal(x.actions, y.actions) and torch.equal(x.rewards, y.rewards)
        assert torch.equal(x.taught, y.taught)


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("real", [False, True])
def test_state_dict_restores_exactly(prioritized: bool, real: bool) -> None:
    config = Config(**ENV, ENABLE_PRIORITIZED_REPLAY=prioritized) if real else None
    original = ReplayBuffer(config, observation_dims(config), seed=7, chunk_transitions=16) if real else make(prioritized)
    if real:
        for transition in env_transitions(config, 40):  # wrapped: 160 transitions into 100 slots
            original.add(*transition)
    else:
        fill(original, 15)  # wrapped
    original.sample(8, "cpu")
    if prioritized:
        batch = original.sample(8, "cpu")
        original.update_priorities(batch.indices, torch.rand(8))
    state = roundtrip(original.state_dict())
    assert sum(c["end"] - c["first"] for c in state["chunks"]) + state["tail"]["end"] - state["tail"]["first"] == len(original)
    restored = ReplayBuffer(config, observation_dims(config), seed=1) if real else make(prioritized)
    restored.load_state_dict(state)
    assert_same_batches(original, restored)
    if real:
        more = list(env_transitions(config, 45))[40:]
        for transition in more:
            original.add(*transition)
            restored.add(*transition)
    else:
        fill(original, 1, seed=5)
        fill(restored, 1, seed=5)
    assert_same_batches(original, restored)


def test_chunks_are_immutable_and_cover_the_live_transitions() -> None:
    config = Config(**ENV)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, chunk_transitions=16)
    transitions = list(env_transitions(config, 60))
    for transition in transitions[:30]:  # 120 transitions into 100 slots
        buffer.add(*transition)
    first = {(c["first"], c["end"]): c for c in buffer.state_dict()["chunks"]}
    for transition in transitions[30:32]:
        buffer.add(*transition)
    again = {(c["first"], c["end"]): c for c in buffer.state_dict()["chunks"]}
    for key in set(first) & set(again):  # a chunk once sealed never changes
        for name in ("actions", "rewards", "next_ref"):
            assert torch.equal(first[key][name], again[key][name])
        for name in first[key]["frames"]:
            assert torch.equal(first[key]["frames"][name], again[key]["frames"][name])
    assert min(first) == (20, 32)  # the oldest chunk is cut to what is still live (120 - 100)


def test_checkpoint_state_survives_the_ring_overwriting_a_pinned_chunk() -> None:
    config = Config(**ENV)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, chunk_transitions=16)
    transitions = list(env_transitions(config, 60))
    for transition in transitions[:25]:
        buffer.add(*transition)
    expected = roundtrip(buffer.state_dict())
    snap = buffer.checkpoint_state()
    for transition in transitions[25:60]:  # 140 more transitions: every pinned chunk is overwritten
        buffer.add(*transition)
    chunks = [chunk.load() for chunk in snap["chunks"]]
    snap.release()
    assert not buffer._pins
    restored = ReplayBuffer(config, observation_dims(config), seed=0)
    restored.load_state_dict({**snap, "chunks": chunks})
    reference = ReplayBuffer(config, observation_dims(config), seed=0)
    reference.load_state_dict(expected)
    assert_same_batches(reference, restored)


def test_state_dict_holds_only_the_filled_part() -> None:
    buffer = make(True)
    fill(buffer, 2)
    state = buffer.state_dict()
    assert state["tail"]["actions"].shape[0] == 8 and state["priorities"].shape[0] == 8


def test_version_1_state_from_before_compact_replay_is_converted() -> None:
    from fleetmarl.checkpoint import load_replay_buffer

    old = load_replay_buffer(OLD_CHECKPOINT)
    assert "obs" in old  # written by main before this change
    config = Config(**old_config())
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    buffer.load_state_dict(old)
    assert len(buffer) == old["size"] and buffer.layout == "fleet"
    batch = buffer.sample(32)
    for row, slot in enumerate(batch.indices.tolist()):
        for name, got in (("obs", batch.obs), ("next_obs", batch.next_obs)):
            assert torch.equal(got["state"][row], old[name]["state"][slot])
            assert torch.equal(got["action_mask"][row], old[name]["action_mask"][slot])
            assert torch.equal(got["point_features"][row], old[name]["point_features"][slot].float())
            torch.testing.assert_close(got["other_obs"][row], old[name]["other_obs"][slot], atol=1e-3, rtol=1e-3)
        assert torch.equal(batch.actions[row], old["actions"][slot].long())


OLD_CHECKPOINT = Path(__file__).parent / "data" / "checkpoint_ep4_20261124_233115"


def old_config() -> dict:
    from fleetmarl.checkpoint import load_plain

    saved = load_plain(OLD_CHECKPOINT / "training_state.pth")["config"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in Config.__dataclass_fields__}


def test_load_rejects_a_different_shape() -> None:
    buffer = make(False)
    fill(buffer, 1)
    other = make(False, NUM_POINTS=6)
    with pytest.raises(CheckpointError, match="point_features"):
        other.load_state_dict(buffer.state_dict())


def test_an_empty_buffer_saves_and_loads() -> None:
    config = Config(**ENV)
    empty = roundtrip(ReplayBuffer(config, observation_dims(config), seed=0).state_dict())
    restored = ReplayBuffer(config, observation_dims(config), seed=0)
    restored.load_state_dict(empty)
    assert len(restored) == 0
    restored.add(*next(env_transitions(config, 1)))
    assert len(restored) == 4 and restored.layout == "fleet"


def test_teacher_choices_are_optional_and_a_state_saved_without_them_loads_as_not_taught() -> None:
    buffer = make(False)
    fill(buffer, 2)
    rng = np.random.default_rng(3)
    a = buffer.dims.num_agents
    buffer.add(random_obs(buffer, 4, rng), np.zeros((4, a), dtype=np.int64), np.zeros((4, a), np.float32),
               random_obs(buffer, 4, rng), np.zeros(4, bool))  # no teacher this step
    assert (buffer.taught[8:12] == NOT_TAUGHT).all() and (buffer.taught[:8] >= 0).all()
    state = roundtrip(buffer.state_dict())
    for payload in [*state["chunks"], state["tail"]]:
        payload.pop("taught")  # as written before teachers were recorded
    restored = make(False)
    restored.load_state_dict(state)
    assert (restored.taught[: len(restored)] == NOT_TAUGHT).all()
    assert torch.equal(restored.sample(8).actions, buffer.sample(8).actions)


@pytest.mark.parametrize("n_step", [1, 3])
def test_n_step_targets_sum_rewards_within_the_episode_and_bootstrap_from_n_steps_on(n_step: int) -> None:
    config = Config(**{**ENV, "N_STEP": n_step, "GAMMA": 0.9})
    buffer = ReplayBuffer(config, observation_dims(config), seed=3)
    steps = list(env_transitions(config, 17))  # 2 whole episodes of 7 steps and 3 steps of a third
    for step in steps:
        buffer.add(*step)
    batch = buffer.sample(64, "cpu")
    for row, slot in enumerate(batch.indices.tolist()):
        t, env = divmod(slot, 4)
        episode_end = (t // 7 + 1) * 7  # the step after this episode's last
        k = min(n_step, episode_end - t, len(steps) - t)
        expected = sum(0.9 ** i * steps[t + i][2][env] for i in range(k))
        np.testing.assert_allclose(batch.rewards[row].numpy(), expected, rtol=1e-5)
        done = t + k == episode_end
        assert float(batch.dones[row]) == float(done)
        assert float(batch.discounts[row]) == pytest.approx(0.0 if done else 0.9 ** k)
        last_next = steps[t + k - 1][3]
        assert torch.equal(batch.next_obs["state"][row], torch.from_numpy(last_next["state"][env]))


def test_n_step_with_per_agent_dones_stops_each_agents_sum_at_its_own_end() -> None:
    config = Config(**{**SMALL, "N_STEP": 3, "GAMMA": 0.5})
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, layout="plain", per_agent_dones=True)
    rng = np.random.default_rng(1)
    frames = [random_obs(buffer, 1, rng) for _ in range(4)]
    dones = [np.array([[False, False, False]]), np.array([[True, False, False]]), np.array([[True, False, True]])]
    for t in range(3):  # one environment, agent 0 finishes at step 1, agent 2 at step 2
        buffer.add(frames[t], np.zeros((1, 3), dtype=np.int64), np.full((1, 3), t + 1.0, dtype=np.float32),
                   frames[t + 1], dones[t])
    batch = buffer.sample(16, "cpu")
    first = batch.indices == 0
    assert first.any()
    row = int(first.nonzero()[0, 0])
    # agent 0: 1 + 0.5 * 2 (done at step 1); agents 1, 2: 1 + 0.5 * 2 + 0.25 * 3
    np.testing.assert_allclose(batch.rewards[row].numpy(), [2.0, 2.75, 2.75])
    np.testing.assert_allclose(batch.discounts[row].numpy(), [0.0, 0.125, 0.0])
    assert torch.equal(batch.next_obs["state"][row], torch.from_numpy(frames[3]["state"][0]))
