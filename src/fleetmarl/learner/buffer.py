"""Replay buffer of raw observations, uniform or prioritized (vectorised sum tree), with exact save/restore.

Why raw observations: the system this replaces stored Transformer embeddings computed at acting time,
so the Transformer never received a gradient and replayed embeddings went stale. Here the buffer keeps
exactly what the environment returned and the networks re-encode it at every update.

Storage (one transition = one step of one environment, all agents), preallocated NumPy arrays:
    state           (C, A, S)        float32
    point_features  (C, A, N, F)     float16 (see below)
    other_obs       (C, A, A-1, O)   float32
    action_mask     (C, A, K)        bool
    the same four for next_obs, then actions (C, A) int16, rewards (C, A) float32, dones (C,) bool.
At the defaults (A=5, N=30, F=10, S=13, O=8, K=32) that is 8,131 bytes per transition (see
:meth:`ReplayBuffer.bytes_per_transition`), 813 MB at CAPACITY=100,000 (float32 points would be 14.1 KB,
1.41 GB). Point features are the bulk, hence float16: about 3 significant decimal digits (relative
error <= 2^-11 = 0.05%; integers exact up to 2048; largest finite value 65504). That is ample for
normalised features (positions / MAP_SIZE, times / deadline, flags); an environment that emits raw
metres or seconds above 65504 would overflow, so :meth:`ReplayBuffer.add` checks and refuses instead of
storing ``inf``.

Prioritized replay (``ENABLE_PRIORITIZED_REPLAY``): priorities ``(|td| + PER_EPSILON) ** PER_ALPHA`` in a
sum tree held in one float64 array; updates and stratified sampling are vectorised over the batch, one
NumPy operation per tree level. New transitions get the largest priority seen so far. Importance
weights ``(size * P(i)) ** -beta`` are divided by their largest possible value (from the smallest
priority in the buffer); ``beta`` grows by ``PER_BETA_INCREMENT`` per :meth:`ReplayBuffer.sample` call
(one call per update), up to 1.

Determinism: sampling draws only from the buffer's own ``numpy.random.Generator``; internal tree nodes
are always recomputed as left + right (never incremented), so rebuilding the tree from saved leaves
gives bit-identical sums and a restored buffer samples the same indices as one that was never saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.errors import CheckpointError

POINT_DTYPE = np.float16
FLOAT16_MAX = float(np.finfo(np.float16).max)
OBS_FIELDS = ("state", "point_features", "other_obs", "action_mask")


@dataclass
class Batch:
    """A sampled minibatch, all torch tensors on the requested device.

    obs / next_obs: state (B, A, S) float32, point_features (B, A, N, F) float32, other_obs
    (B, A, A-1, O) float32, action_mask (B, A, K) bool; actions (B, A) int64; rewards (B, A) float32;
    dones (B,) float32 (1.0 = no bootstrap); weights (B,) float32 importance weights (ones when
    uniform); indices (B,) int64 buffer slots, for ``update_priorities``.
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    dones: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor


class SumTree:
    """Binary sum tree over ``capacity`` leaves in one array: node i has children 2i and 2i+1, leaves
    start at ``self.base`` (a power of two). All operations take arrays of leaves."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.base = 1 << max(0, (capacity - 1).bit_length())
        self.nodes = np.zeros(2 * self.base, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def leaves(self, count: int | None = None) -> np.ndarray:
        return self.nodes[self.base:self.base + (self.capacity if count is None else count)]

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        nodes = self.nodes
        pos = np.asarray(indices, dtype=np.int64) + self.base
        nodes[pos] = values  # with duplicate indices the last value wins, like sequential writes
        pos = np.unique(pos >> 1)
        while pos[0] >= 1:
            nodes[pos] = nodes[2 * pos] + nodes[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos >> 1)

    def rebuild(self) -> None:
        nodes = self.nodes
        width = self.base
        while width > 1:
            parents = np.arange(width // 2, width)
            nodes[parents] = nodes[2 * parents] + nodes[2 * parents + 1]
            width //= 2

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf index for each prefix-sum target in [0, total)."""
        nodes = self.nodes
        idx = np.ones(len(targets), dtype=np.int64)
        remaining = np.array(targets, dtype=np.float64)
        while idx[0] < self.base:
            left = nodes[2 * idx]
            go_right = remaining >= left
            remaining = np.where(go_right, remaining - left, remaining)
            idx = 2 * idx + go_right
        return idx - self.base


class ReplayBuffer:
    """Ring buffer of ``config.CAPACITY`` transitions; prioritized iff ``config.ENABLE_PRIORITIZED_REPLAY``."""

    def __init__(self, config: Config, dims: ObservationDims, seed: int) -> None:
        self.config = config
        self.dims = dims
        self.capacity = int(config.CAPACITY)
        self.prioritized = bool(config.ENABLE_PRIORITIZED_REPLAY)
        self.alpha = float(config.PER_ALPHA)
        self.epsilon = float(config.PER_EPSILON)
        self.beta = float(config.PER_BETA)
        self.beta_increment = float(config.PER_BETA_INCREMENT)
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)
        self.ptr = 0
        self.size = 0
        c, a = self.capacity, dims.num_agents
        self.shapes = {
            "state": (a, dims.state),
            "point_features": (a, dims.num_points, dims.point),
            "other_obs": (a, dims.other_rows, dims.other),
            "action_mask": (a, dims.num_actions),
        }
        self.dtypes = {"state": np.float32, "point_features": POINT_DTYPE, "other_obs": np.float32, "action_mask": np.bool_}
        self.obs = {k: np.zeros((c, *shape), dtype=self.dtypes[k]) for k, shape in self.shapes.items()}
        self.next_obs = {k: np.zeros((c, *shape), dtype=self.dtypes[k]) for k, shape in self.shapes.items()}
        self.actions = np.zeros((c, a), dtype=np.int16)
        self.rewards = np.zeros((c, a), dtype=np.float32)
        self.dones = np.zeros((c,), dtype=np.bool_)
        self.tree = SumTree(c) if self.prioritized else None

    def __len__(self) -> int:
        return self.size

    def bytes_per_transition(self) -> int:
        """Bytes of RAM (and of a saved checkpoint) per stored transition."""
        per = 0
        for store in (self.obs, self.next_obs):
            per += sum(arr[0].nbytes for arr in store.values())
        per += self.actions[0].nbytes + self.rewards[0].nbytes + self.dones[:1].nbytes
        if self.tree is not None:
            per += self.tree.nodes.itemsize  # one leaf (internal nodes add about as much again, unsaved)
        return int(per)

    # ------------------------------------------------------------------ writing
    def add(self, obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
            next_obs: dict[str, np.ndarray], dones: np.ndarray) -> None:
        """Store one transition per environment: obs arrays (B, A, ...), actions (B, A), rewards (B, A),
        dones (B,)."""
        actions = np.asarray(actions)
        count = actions.shape[0]
        slots = (self.ptr + np.arange(count)) % self.capacity
        for store, source in ((self.obs, obs), (self.next_obs, next_obs)):
            for key in OBS_FIELDS:
                value = np.asarray(source[key])
                if key == "point_features" and np.abs(value).max(initial=0.0) > FLOAT16_MAX:
                    raise ValueError(f"point_features has values beyond float16 range ({FLOAT16_MAX}); "
                                     "normalise them in the environment")
                store[key][slots] = value
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.dones[slots] = dones
        if self.tree is not None:
            self.tree.set(slots, np.full(count, self.max_priority ** self.alpha))
        self.ptr = int((self.ptr + count) % self.capacity)
        self.size = int(min(self.capacity, self.size + count))

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if self.tree is None:
            indices = self.rng.integers(0, self.size, size=batch_size)
            weights = np.ones(batch_size, dtype=np.float32)
        else:
            indices, weights = self._sample_prioritized(batch_size)
        device = torch.device(device)

        def put(array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
            tensor = torch.from_numpy(array).to(device, non_blocking=True)
            return tensor if dtype is None else tensor.to(dtype)

        def gather(store: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            out = {k: put(store[k][indices]) for k in OBS_FIELDS}
            out["point_features"] = out["point_features"].to(torch.float32)  # widen after the transfer
            return out

        return Batch(
            obs=gather(self.obs),
            actions=put(self.actions[indices], torch.int64),
            rewards=put(self.rewards[indices]),
            next_obs=gather(self.next_obs),
            dones=put(self.dones[indices], torch.float32),
            weights=put(weights),
            indices=put(indices.astype(np.int64)),
        )

    def _sample_prioritized(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        tree = self.tree
        assert tree is not None
        total = tree.total
        segment = total / batch_size
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * segment  # stratified
        indices = np.minimum(tree.find(np.minimum(targets, np.nextafter(total, 0.0))), self.size - 1)
        leaves = tree.leaves(self.size)
        probs = leaves[indices] / total
        smallest = leaves.min() / total
        self.beta = min(1.0, self.beta + self.beta_increment)
        weights = (self.size * probs) ** (-self.beta) / (self.size * smallest) ** (-self.beta)
        return indices, weights.astype(np.float32)

    def update_priorities(self, indices: Any, td_errors: Any) -> None:
        """New priorities from |TD errors| (B,); torch tensors are copied to the host here, once."""
        if self.tree is None:
            return
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        if isinstance(td_errors, torch.Tensor):
            td_errors = td_errors.detach().to(torch.float64).cpu().numpy()
        raw = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.epsilon
        self.max_priority = max(self.max_priority, float(raw.max()))
        self.tree.set(np.asarray(indices, dtype=np.int64), raw ** self.alpha)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The filled part only, as tensors that *share memory* with the buffer (the checkpoint package
        snapshots them before writing), plus counters, the sampling RNG state and PER leaves."""
        n = self.size
        state: dict[str, Any] = {
            "capacity": self.capacity, "size": n, "ptr": self.ptr, "prioritized": self.prioritized,
            "obs": {k: torch.from_numpy(v[:n]) for k, v in self.obs.items()},
            "next_obs": {k: torch.from_numpy(v[:n]) for k, v in self.next_obs.items()},
            "actions": torch.from_numpy(self.actions[:n]),
            "rewards": torch.from_numpy(self.rewards[:n]),
            "dones": torch.from_numpy(self.dones[:n]),
            "rng": _plain_rng_state(self.rng.bit_generator.state),
            "beta": float(self.beta), "max_priority": float(self.max_priority),
        }
        if self.tree is not None:
            state["priorities"] = torch.from_numpy(self.tree.leaves(n))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        if n > self.capacity:
            raise CheckpointError(f"replay buffer checkpoint holds {n} transitions but CAPACITY={self.capacity}; "
                                  f"use --set CAPACITY={state['capacity']}")
        if int(state["capacity"]) != self.capacity:
            raise CheckpointError(f"replay buffer checkpoint was made for CAPACITY={state['capacity']} but the "
                                  f"config has CAPACITY={self.capacity}")
        for name, store in (("obs", self.obs), ("next_obs", self.next_obs)):
            for key in OBS_FIELDS:
                value = state[name][key]
                if tuple(value.shape[1:]) != self.shapes[key]:
                    raise CheckpointError(f"replay buffer checkpoint has {name}.{key} of shape {tuple(value.shape[1:])} "
                                          f"per transition but this config needs {self.shapes[key]}")
                store[key][:n] = value.cpu().numpy()
                store[key][n:] = 0
        self.actions[:n] = state["actions"].cpu().numpy()
        self.rewards[:n] = state["rewards"].cpu().numpy()
        self.dones[:n] = state["dones"].cpu().numpy()
        self.size, self.ptr = n, int(state["ptr"])
        self.rng.bit_generator.state = state["rng"]
        self.beta = float(state["beta"])
        self.max_priority = float(state["max_priority"])
        if self.tree is not None:
            self.tree.nodes[:] = 0.0
            if "priorities" in state:
                self.tree.leaves(n)[:] = state["priorities"].cpu().numpy()
            else:  # saved without PER: start every transition at the same priority
                self.tree.leaves(n)[:] = self.max_priority ** self.alpha
            self.tree.rebuild()


def _plain_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """numpy's bit-generator state as plain Python ints/strings (weights_only-loadable)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (np.integer, int)):
            return int(value)
        return value
    return plain(state)
