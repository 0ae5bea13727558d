"""Compact replay buffer of raw observations, uniform or prioritized (vectorised sum tree), persisted in
immutable chunks for incremental checkpoints, with exact save/restore.

Why raw observations: the system this replaces stored Transformer embeddings computed at acting time,
so the Transformer never received a gradient and replayed embeddings went stale. Here the buffer keeps
what the environment returned and the networks re-encode it at every update.

Why compact (issue 11: 12.5 KB per transition became 1.2 GB per checkpoint). Three facts of the data:
1. *Each observation is stored once.* The next observation of step t is the observation of step t+1,
   except where an episode ends. :meth:`ReplayBuffer.add` keeps the newest ``next_obs`` *pending*; when
   the following ``add`` starts from the same observation (row by row) the transition just points at
   the new transition's frame, otherwise the pending frame moves to a small *final* store.
2. *What every vehicle sees alike is stored once per step.* The per-point columns of
   ``envs.spaces.POINT_COLUMNS`` after ``samples`` are the same for every vehicle; ``feasible`` is the
   action-mask entry; the other-vehicle columns ``load`` .. ``charging`` are that vehicle's own state
   columns. :class:`FleetFrameCodec` checks each of these at ``add`` and rebuilds them in batch at
   sample time, bit for bit.
3. *Narrow types:* point and relative other-vehicle columns as float16 (every column lies in [-1, 1];
   relative error <= 2^-11), masks as bits, the own state as float32.

One frame at the defaults (A=5, N=30): state 320 + point rows 1,200 + shared point rows 660 + relative
other rows 200 + mask bits 20 = 2,400 bytes; a transition adds action 10, reward 20, done 1, next
reference 8, the teacher's choice 10 and the PER leaf 8, and one final frame per episode end (2,400 /
MAX_NUM_STEPS): about 2,470 bytes in all, against 12,519 before. Data that does not have this structure (tests with random
observations, another environment) is stored with :class:`PlainFrameCodec` (still once per
observation); ``layout="auto"`` picks the codec from the first ``add`` and the choice is saved.

Chunks: transition ``g`` (the g-th ever added) lives in slot ``g % CAPACITY``. Chunk k holds transitions
``[k*S, (k+1)*S)`` (S = ``chunk_transitions``); once full and every next observation in it is known, it
never changes again (priorities live apart, in the checkpoint's head), so a checkpoint writes it once
and later checkpoints hard-link the file. :meth:`ReplayBuffer.checkpoint_state` copies only the small
head (open tail, pending frames, priorities, counters) in the training loop; sealed chunks are read later
by the writer thread, and should the ring reach a chunk before the writer has read it, ``add`` copies
that chunk first (copy on write), so a background save always writes the state of its snapshot.

Prioritized replay (``ENABLE_PRIORITIZED_REPLAY``): priorities ``(|td| + PER_EPSILON) ** PER_ALPHA`` in a
sum tree held in one float64 array; updates and stratified sampling are vectorised over the batch, one
NumPy operation per tree level. New transitions get the largest priority seen so far. Importance
weights ``(size * P(i)) ** -beta`` are divided by their largest possible value (from the smallest
priority in the buffer); ``beta`` grows by ``PER_BETA_INCREMENT`` per :meth:`ReplayBuffer.sample` call.

Determinism: sampling draws only from the buffer's own ``numpy.random.Generator``; internal tree nodes
are always recomputed as left + right (never incremented), so rebuilding the tree from saved leaves
gives bit-identical sums and a restored buffer samples the same indices as one that was never saved.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import OBS_KEYS, OTHER_COLUMNS, POINT, POINT_COLUMNS, STATE, ObservationDims
from fleetmarl.errors import CheckpointError

POINT_DTYPE = np.float16
FLOAT16_MAX = float(np.finfo(np.float16).max)
OBS_FIELDS = OBS_KEYS
FORMAT_VERSION = 2
"""Version of :meth:`ReplayBuffer.state_dict`; version 1 (two full observations per slot) still loads."""
CHUNK_TRANSITIONS = 2048
"""Transitions per immutable chunk (at most; small buffers use CAPACITY // 16, at least 64): the unit a
checkpoint writes once and hard-links afterwards. 2048 default transitions are about 5 MB."""
NOT_TAUGHT = -1
"""``taught`` of a transition without a recorded teacher choice."""
PENDING = np.iinfo(np.int64).min
"""``next_ref`` of the newest transitions, whose next observation is still in the pending frames."""

# Point columns "the same for every vehicle" (envs/spaces.py): from `samples` on.
_SHARED_POINT = np.arange(POINT["samples"], len(POINT_COLUMNS))
_FEASIBLE = POINT["feasible"]
_VEHICLE_POINT = np.array([i for i in range(POINT["samples"]) if i != _FEASIBLE])
# Other-vehicle columns that are that vehicle's own state column of the same name (target_dx/dy are not:
# the other's target is relative to the observer).
_OTHER_FROM_STATE = np.array([OTHER_COLUMNS.index(name) for name in
                              ("load", "energy", "speed", "idle", "to_point", "to_base", "charging")])
_STATE_FOR_OTHER = np.array([STATE[OTHER_COLUMNS[i]] for i in _OTHER_FROM_STATE])
_OTHER_RELATIVE = np.array([i for i in range(len(OTHER_COLUMNS)) if i not in set(_OTHER_FROM_STATE.tolist())])


@dataclass
class Batch:
    """A sampled minibatch, all torch tensors on the requested device.

    obs / next_obs: state (B, A, S) float32, point_features (B, A, N, F) float32, other_obs
    (B, A, A-1, O) float32, action_mask (B, A, K) bool; actions (B, A) int64, or (B, A, D) float32 for
    continuous actions; rewards (B, A) float32; dones (B,) float32 (1.0 = no bootstrap), or (B, A) per
    agent with ``per_agent_dones``; weights (B,) float32 importance weights (ones when uniform); indices
    (B,) int64 buffer slots, for ``update_priorities``. With ``N_STEP`` > 1, ``rewards``, ``next_obs`` and
    ``dones`` are those of the n-step target (see ``discounts``).
    """

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    dones: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    discounts: torch.Tensor | None = None
    """Shaped as ``dones``: the factor of the bootstrapped value, ``GAMMA ** k * (1 - done)`` where k steps
    of reward are summed in ``rewards`` and ``next_obs`` is k steps on (n-step targets, ``N_STEP``); None
    means one step, ``GAMMA * (1 - dones)``."""
    taught: torch.Tensor | None = None
    """(B, A) int64: the teacher's choice recorded when the step was taken, ``NOT_TAUGHT`` where none was
    (random warm-up without a teacher, a buffer saved before teachers were recorded); None for continuous
    actions."""


# ---------------------------------------------------------------------- frame codecs
def _mask_bytes(num_actions: int) -> int:
    return (num_actions + 7) // 8


def _pack_mask(mask: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(mask, dtype=bool), axis=-1, bitorder="little")


def _unpack_mask(packed: np.ndarray, num_actions: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=num_actions, bitorder="little").view(bool)


def _half(value: np.ndarray, what: str) -> np.ndarray:
    if np.abs(value).max(initial=0.0) > FLOAT16_MAX:
        raise ValueError(f"{what} has values beyond float16 range ({FLOAT16_MAX}); normalise them in the environment")
    return value.astype(np.float16)


class PlainFrameCodec:
    """Every observation key as given: state and other_obs float32, point_features float16, mask bits."""

    name = "plain"

    def __init__(self, dims: ObservationDims) -> None:
        a = dims.num_agents
        self.dims = dims
        self.fields = {
            "state": ((a, dims.state), np.float32),
            "point_features": ((a, dims.num_points, dims.point), np.float16),
            "other_obs": ((a, dims.other_rows, dims.other), np.float32),
            "action_mask": ((a, _mask_bytes(dims.num_actions)), np.uint8),
        }

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "state": np.asarray(obs["state"], dtype=np.float32),
            "point_features": _half(np.asarray(obs["point_features"]), "point_features"),
            "other_obs": np.asarray(obs["other_obs"], dtype=np.float32),
            "action_mask": _pack_mask(obs["action_mask"]),
        }

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "state": frames["state"],
            "point_features": frames["point_features"].astype(np.float32),
            "other_obs": frames["other_obs"],
            "action_mask": _unpack_mask(frames["action_mask"], self.dims.num_actions),
        }


class FleetFrameCodec:
    """The sampling fleet's observation with what every vehicle sees alike stored once (module docstring)."""

    name = "fleet"

    def __init__(self, dims: ObservationDims) -> None:
        a, p = dims.num_agents, dims.num_points
        self.dims = dims
        self.others = np.array([[j for j in range(a) if j != i] for i in range(a)], dtype=np.int64).reshape(a, a - 1)
        self.fields = {
            "state": ((a, dims.state), np.float32),
            "point_vehicle": ((a, p, len(_VEHICLE_POINT)), np.float16),
            "point_shared": ((p, len(_SHARED_POINT)), np.float16),
            "other_relative": ((a, dims.other_rows, len(_OTHER_RELATIVE)), np.float16),
            "action_mask": ((a, _mask_bytes(dims.num_actions)), np.uint8),
        }
        where: dict[int, tuple[str, int]] = {int(c): ("vehicle", i) for i, c in enumerate(_VEHICLE_POINT)}
        where[_FEASIBLE] = ("feasible", 0)
        where.update({int(c): ("shared", i) for i, c in enumerate(_SHARED_POINT)})
        self._point_runs = _runs([where[c] for c in range(len(POINT_COLUMNS))])

    def problem(self, obs: Mapping[str, np.ndarray]) -> str | None:
        """Why ``obs`` does not have the fleet structure this codec relies on, or None."""
        d = self.dims
        if d.point != len(POINT_COLUMNS) or d.other != len(OTHER_COLUMNS) or d.num_agents < 1:
            return "observation widths differ from envs/spaces.py"
        points, mask = np.asarray(obs["point_features"]), np.asarray(obs["action_mask"], dtype=bool)
        shared = points[..., _SHARED_POINT]
        if not np.array_equal(shared, np.broadcast_to(shared[:, :1], shared.shape)):
            return "per-point columns differ between vehicles"
        if not np.array_equal(points[..., _FEASIBLE], mask[..., : d.num_points].astype(points.dtype)):
            return "point column 'feasible' is not the action mask"
        if d.other_rows:
            derived = np.asarray(obs["state"])[:, self.others][..., _STATE_FOR_OTHER]
            if not np.array_equal(np.asarray(obs["other_obs"])[..., _OTHER_FROM_STATE], derived):
                return "other-vehicle columns are not the other vehicles' state columns"
        return None

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        problem = self.problem(obs)
        if problem is not None:
            raise ValueError(f"observation does not fit the compact fleet replay layout: {problem} "
                             "(learner/buffer.py FleetFrameCodec; use layout='plain' for other data)")
        points = np.asarray(obs["point_features"])
        return {
            "state": np.asarray(obs["state"], dtype=np.float32),
            "point_vehicle": _half(points[..., _VEHICLE_POINT], "point_features"),
            "point_shared": _half(points[:, 0][..., _SHARED_POINT], "point_features"),
            "other_relative": _half(np.asarray(obs["other_obs"])[..., _OTHER_RELATIVE], "other_obs"),
            "action_mask": _pack_mask(obs["action_mask"]),
        }

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Full float32 observations (n, A, ...) from encoded frames; NumPy on the host (single-threaded:
        no thread-pool stalls on a busy machine), widened once into the output arrays."""
        d = self.dims
        state = frames["state"]
        n = state.shape[0]
        mask = _unpack_mask(frames["action_mask"], d.num_actions)
        points = np.empty((n, d.num_agents, d.num_points, d.point), dtype=np.float32)
        vehicle, shared = frames["point_vehicle"], frames["point_shared"][:, None]
        sources = {"vehicle": vehicle, "shared": shared, "feasible": mask[..., : d.num_points, None]}
        for start, stop, source, first in self._point_runs:  # a few slice copies, not one per column
            points[..., start:stop] = sources[source][..., first:first + stop - start]
        other = np.empty((n, d.num_agents, d.other_rows, d.other), dtype=np.float32)
        if d.other_rows:
            other[..., _OTHER_RELATIVE] = frames["other_relative"]
            other[..., _OTHER_FROM_STATE] = state[:, self.others][..., _STATE_FOR_OTHER]
        return {"state": state, "point_features": points, "other_obs": other, "action_mask": mask}


def _runs(sources: list[tuple[str, int]]) -> list[tuple[int, int, str, int]]:
    """Output columns [start, stop) that copy consecutive columns of one source from ``first`` on.

    ``sources[c]`` = (source name, column in it) for each output column c.
    """
    runs: list[tuple[int, int, str, int]] = []
    for column, (source, index) in enumerate(sources):
        if runs and runs[-1][2] == source and runs[-1][3] + (column - runs[-1][0]) == index:
            start, _, _, first = runs[-1]
            runs[-1] = (start, column + 1, source, first)
        else:
            runs.append((column, column + 1, source, index))
    return runs


CODECS = {"plain": PlainFrameCodec, "fleet": FleetFrameCodec}


# ---------------------------------------------------------------------- sum tree
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


# ---------------------------------------------------------------------- checkpoint pieces
@dataclass
class SealedChunk:
    """A sealed chunk of a :meth:`ReplayBuffer.checkpoint_state`: transitions ``[first, end)``.

    ``load()`` returns its plain payload (read from the live buffer, or the copy ``add`` took before the
    ring overwrote it); the writer calls it only when the file is not already on disk to link.
    """

    first: int
    end: int
    load: Callable[[], dict[str, Any]]


class ReplayCheckpoint(dict):
    """``checkpoint_state()``: the head (plain data, copied) plus ``"chunks"`` of :class:`SealedChunk`.

    Call :meth:`release` once the save is over, so ``add`` stops guarding the chunks it pinned.
    """

    release: Callable[[], None] = staticmethod(lambda: None)


class _Pin:
    __slots__ = ("first", "end", "copy")

    def __init__(self, first: int, end: int) -> None:
        self.first, self.end, self.copy = first, end, None


# ---------------------------------------------------------------------- the buffer
class ReplayBuffer:
    """Ring buffer of ``config.CAPACITY`` transitions; prioritized iff ``config.ENABLE_PRIORITIZED_REPLAY``.

    ``action_dim=None`` stores discrete actions (one int per agent); an int stores continuous actions
    of that many floats per agent. ``layout`` is ``"auto"`` (compact fleet frames when the first
    ``add`` has their structure, else plain), ``"fleet"`` or ``"plain"``. ``per_agent_dones`` stores a
    done flag per agent (B, A) instead of one per environment (B,): environments whose agents finish
    at different steps.
    """

    def __init__(self, config: Config, dims: ObservationDims, seed: int, *, action_dim: int | None = None,
                 layout: str = "auto", chunk_transitions: int | None = None, per_agent_dones: bool = False) -> None:
        if layout not in ("auto", *CODECS):
            raise ValueError(f"layout must be 'auto', 'fleet' or 'plain', not {layout!r}")
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
        self.action_dim = action_dim
        self.chunk_transitions = int(chunk_transitions or min(CHUNK_TRANSITIONS, max(64, self.capacity // 16)))
        self.layout = layout
        a, c = dims.num_agents, self.capacity
        self.shapes = {
            "state": (a, dims.state),
            "point_features": (a, dims.num_points, dims.point),
            "other_obs": (a, dims.other_rows, dims.other),
            "action_mask": (a, dims.num_actions),
        }
        self.total = 0
        """transitions ever added; transition g lives in slot g % capacity"""
        self.final_total = 0
        """frames ever moved to the final store; final frame f lives in its slot f % capacity"""
        self.codec: PlainFrameCodec | FleetFrameCodec | None = None
        self.frames: dict[str, np.ndarray] = {}
        self.final: dict[str, np.ndarray] = {}
        action_shape = (c, a) if action_dim is None else (c, a, int(action_dim))
        self.actions = np.zeros(action_shape, dtype=np.int16 if action_dim is None else np.float32)
        # The teacher's choice on each step's observation, recorded at acting time: a stateful teacher
        # (the OR-Tools dispatcher keeps a plan per environment) cannot be asked again at update time.
        self.taught = None if action_dim is not None else np.full((c, a), NOT_TAUGHT, dtype=np.int16)
        self.rewards = np.zeros((c, a), dtype=np.float32)
        self.dones = np.zeros((c, a) if per_agent_dones else (c,), dtype=np.bool_)
        self.next_ref = np.zeros((c,), dtype=np.int64)
        self.pending: dict[str, np.ndarray] | None = None
        self.pending_first = 0
        self.tree = SumTree(c) if self.prioritized else None
        self._pins: list[_Pin] = []
        self._lock = threading.Lock()
        if layout != "auto":
            self._use_codec(layout)

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        return min(self.total, self.capacity)

    @property
    def ptr(self) -> int:
        return self.total % self.capacity

    def __len__(self) -> int:
        return self.size

    def bytes_per_transition(self) -> int:
        """Bytes of RAM (and of a checkpoint) per stored transition, not counting the final frames at
        episode ends (one frame per episode, i.e. :meth:`frame_bytes` / MAX_NUM_STEPS more)."""
        per = self.frame_bytes() + self.actions[0].nbytes + self.rewards[0].nbytes + 1 + self.next_ref.itemsize
        if self.taught is not None:
            per += self.taught[0].nbytes
        if self.tree is not None:
            per += self.tree.nodes.itemsize  # one leaf (internal nodes add about as much again, unsaved)
        return int(per)

    def frame_bytes(self) -> int:
        """Bytes of one stored observation frame (all agents)."""
        codec = self.codec or CODECS["fleet" if self.layout == "auto" else self.layout](self.dims)
        return int(sum(np.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in codec.fields.values()))

    def _use_codec(self, name: str) -> None:
        self.codec = CODECS[name](self.dims)
        self.layout = name
        c = self.capacity
        # np.zeros maps untouched pages lazily: the final store costs memory only as episodes end.
        self.frames = {k: np.zeros((c, *shape), dtype=dtype) for k, (shape, dtype) in self.codec.fields.items()}
        self.final = {k: np.zeros((c, *shape), dtype=dtype) for k, (shape, dtype) in self.codec.fields.items()}

    # ------------------------------------------------------------------ writing
    def add(self, obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
            next_obs: dict[str, np.ndarray], dones: np.ndarray, taught: np.ndarray | None = None) -> None:
        """Store one transition per environment: obs arrays (B, A, ...), actions (B, A) or (B, A, D),
        rewards (B, A), dones (B,) (or (B, A) with ``per_agent_dones``), and optionally the teacher's
        choices (B, A) on ``obs`` (discrete actions only)."""
        actions = np.asarray(actions)
        count = actions.shape[0]
        if self.codec is None:
            fleet = FleetFrameCodec(self.dims)
            self._use_codec("fleet" if fleet.problem(obs) is None and fleet.problem(next_obs) is None else "plain")
        assert self.codec is not None
        enc_obs, enc_next = self.codec.encode(obs), self.codec.encode(next_obs)
        first, c = self.total, self.capacity
        slots = (first + np.arange(count)) % c
        with self._lock:
            self._resolve_pending(enc_obs, count)
            if self._pins and first + count > c:
                self._copy_pinned_before_overwrite(first - c, first - c + count)
            for key, value in enc_obs.items():
                self.frames[key][slots] = value
            self.actions[slots] = actions
            if self.taught is not None:
                self.taught[slots] = NOT_TAUGHT if taught is None else taught
            self.rewards[slots] = rewards
            self.dones[slots] = dones
            self.next_ref[slots] = PENDING
            self.pending = {k: v.copy() for k, v in enc_next.items()}
            self.pending_first = first
            self.total = first + count
        if self.tree is not None:
            self.tree.set(slots, np.full(count, self.max_priority ** self.alpha))

    def _resolve_pending(self, enc_obs: dict[str, np.ndarray], count: int) -> None:
        """Point the previous add's transitions at this add's frames where they are the same observation;
        move the others' next frames to the final store."""
        if self.pending is None:
            return
        waiting = self.total - self.pending_first
        rows = np.arange(waiting)
        same = np.zeros(waiting, dtype=bool)
        if waiting == count:
            same[:] = True
            for key, value in enc_obs.items():
                same &= (value.reshape(count, -1) == self.pending[key].reshape(waiting, -1)).all(axis=1)
        slots = (self.pending_first + rows) % self.capacity
        self.next_ref[slots[same]] = self.total + rows[same]
        moved = rows[~same]
        if len(moved):
            finals = self.final_total + np.arange(len(moved))
            if self._pins:
                self._copy_pinned_for_finals(finals)
            for key, value in self.pending.items():
                self.final[key][finals % self.capacity] = value[moved]
            self.next_ref[slots[~same]] = -1 - finals
            self.final_total += len(moved)
        self.pending = None

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
        rewards, last, dones, discounts = self._n_step(indices)
        obs_frames = {k: v[indices] for k, v in self.frames.items()}
        next_frames = self._next_frames(last)
        actions = self.actions[indices]

        def put(array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
            tensor = torch.from_numpy(array).to(device, non_blocking=True)
            return tensor if dtype is None else tensor.to(dtype)

        assert self.codec is not None
        return Batch(
            obs={k: put(v) for k, v in self.codec.decode(obs_frames).items()},
            actions=put(actions, torch.int64 if self.action_dim is None else torch.float32),
            rewards=put(rewards),
            next_obs={k: put(v) for k, v in self.codec.decode(next_frames).items()},
            dones=put(dones, torch.float32),
            weights=put(weights),
            indices=put(indices.astype(np.int64)),
            discounts=put(discounts),
            taught=None if self.taught is None else put(self.taught[indices], torch.int64),
        )

    def _n_step(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rewards summed over up to ``N_STEP`` steps from ``slots`` (discounted), the slot of the last step
        taken, its done flags and the discount of the bootstrapped value, ``GAMMA ** k * (1 - done)``.

        Why: a delivery is rewarded many steps after the point was chosen; summing n rewards carries it
        back n steps per update instead of one. The chain follows ``next_ref`` (the transition that
        continues each one in its environment, always newer, so still stored) and stops at an episode's
        end, a done flag, or the newest transitions, whose successor is not stored yet."""
        gamma, c = float(self.config.GAMMA), self.capacity
        rewards = self.rewards[slots]  # indexing copies: summed into in place below
        dones = self.dones[slots]
        discounts = np.full(dones.shape, gamma, dtype=np.float32)
        last = slots.copy()
        for _ in range(int(self.config.N_STEP) - 1):
            ref = self.next_ref[last]
            done_row = dones if dones.ndim == 1 else dones.all(axis=-1)
            go = (ref >= 0) & ~done_row
            if not go.any():
                break
            nxt = ref[go] % c
            # per agent (B, A) where dones are per agent: an agent that has finished collects nothing more
            factor = (discounts[go] * ~dones[go]).reshape(len(nxt), -1)
            rewards[go] += factor * self.rewards[nxt]
            dones[go] = dones[go] | self.dones[nxt]
            discounts[go] *= gamma
            last[go] = nxt
        return rewards, last, dones, discounts * ~dones

    def _next_frames(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Encoded frames of the next observations of ``slots``."""
        c = self.capacity
        ref = self.next_ref[slots]
        linked = ref >= 0
        source = np.where(linked, ref % c, slots)
        nxt = {k: v[source] for k, v in self.frames.items()}
        if not linked.all():
            final = ~linked & (ref != PENDING)
            if final.any():
                fslots = (-1 - ref[final]) % c
                for key, value in self.final.items():
                    nxt[key][final] = value[fslots]
            pending = ref == PENDING
            if pending.any():
                assert self.pending is not None
                rows = self._global(slots[pending]) - self.pending_first
                for key, value in self.pending.items():
                    nxt[key][pending] = value[rows]
        return nxt

    def _global(self, slots: np.ndarray) -> np.ndarray:
        """Global transition index of live slots."""
        newest = self.total - 1
        return newest - (newest - slots) % self.capacity

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

    # ------------------------------------------------------------------ chunks
    def _chunk_ranges(self) -> tuple[list[tuple[int, int]], int]:
        """Sealed chunk ranges of the live transitions (oldest first) and where the open tail starts.

        A chunk is sealed when it is full and none of its transitions waits for its next observation.
        The oldest chunk is cut to the live part, so a checkpoint never carries overwritten transitions.
        """
        s = self.chunk_transitions
        oldest = self.total - self.size
        resolved = self.pending_first if self.pending is not None else self.total
        tail = (resolved // s) * s
        ranges = []
        start = (oldest // s) * s
        while start < tail:
            ranges.append((max(start, oldest), start + s))
            start += s
        return ranges, max(tail, oldest)

    def _range_payload(self, first: int, end: int) -> dict[str, Any]:
        """Plain copies of transitions [first, end) and of the final frames they refer to."""
        slots = np.arange(first, end) % self.capacity
        refs = self.next_ref[slots].copy()
        finals = (-1 - refs[(refs < 0) & (refs != PENDING)]) if len(refs) else refs
        payload = {
            "first": int(first), "end": int(end),
            "frames": {k: torch.from_numpy(v[slots]) for k, v in self.frames.items()},
            "actions": torch.from_numpy(self.actions[slots]),
            "rewards": torch.from_numpy(self.rewards[slots]),
            "dones": torch.from_numpy(self.dones[slots]),
            "next_ref": torch.from_numpy(refs),
            "final_index": torch.from_numpy(finals.astype(np.int64)),
            "final": {k: torch.from_numpy(v[finals % self.capacity]) for k, v in self.final.items()},
        }
        if self.taught is not None:
            payload["taught"] = torch.from_numpy(self.taught[slots])
        return payload

    def _copy_pinned_before_overwrite(self, first: int, end: int) -> None:
        """Called with the lock held: transitions [first, end) are about to be overwritten."""
        for pin in self._pins:
            if pin.copy is None and pin.first < end and first < pin.end:
                pin.copy = self._range_payload(pin.first, pin.end)

    def _copy_pinned_for_finals(self, finals: np.ndarray) -> None:
        """Called with the lock held: final slots of ``finals`` are about to be reused."""
        reused = finals - self.capacity
        if reused.max() < 0:
            return
        for pin in self._pins:
            if pin.copy is None:
                refs = self.next_ref[np.arange(pin.first, pin.end) % self.capacity]
                held = -1 - refs[(refs < 0) & (refs != PENDING)]
                if np.isin(held, reused).any():
                    pin.copy = self._range_payload(pin.first, pin.end)

    def _read_pinned(self, pin: _Pin) -> dict[str, Any]:
        payload = self._range_payload(pin.first, pin.end)  # outside the lock: the training loop goes on
        with self._lock:
            if pin.copy is not None:  # add() overwrote it meanwhile; its copy was taken before that
                payload = pin.copy
            if pin in self._pins:
                self._pins.remove(pin)
        return payload

    def _head(self, tail_first: int) -> dict[str, Any]:
        n = self.size
        head: dict[str, Any] = {
            "format": "fleetmarl-replay", "version": FORMAT_VERSION, "layout": self.layout,
            "capacity": self.capacity, "size": n, "ptr": self.ptr, "total": self.total,
            "final_total": self.final_total, "prioritized": self.prioritized,
            "action_dim": self.action_dim, "chunk_transitions": self.chunk_transitions,
            "rng": _plain_rng_state(self.rng.bit_generator.state),
            "beta": float(self.beta), "max_priority": float(self.max_priority),
            "tail": self._range_payload(tail_first, self.total) if self.codec is not None else None,
            "pending_first": self.pending_first,
            "pending": None if self.pending is None else {k: torch.from_numpy(v.copy()) for k, v in self.pending.items()},
        }
        if self.tree is not None:
            head["priorities"] = torch.from_numpy(self.tree.leaves(n).copy())
        return head

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain copies: the head plus every sealed chunk's payload under ``"chunks"``."""
        ranges, tail = self._chunk_ranges()
        state = self._head(tail)
        state["chunks"] = [self._range_payload(first, end) for first, end in ranges]
        return state

    def checkpoint_state(self) -> ReplayCheckpoint:
        """What a checkpoint needs, cheaply: the head is copied now (open tail, pending frames,
        priorities, counters); sealed chunks are :class:`SealedChunk` read later by the writer."""
        ranges, tail = self._chunk_ranges()
        state = ReplayCheckpoint(self._head(tail))
        pins = [_Pin(first, end) for first, end in ranges]
        with self._lock:
            self._pins.extend(pins)
        state["chunks"] = [SealedChunk(p.first, p.end, lambda p=p: self._read_pinned(p)) for p in pins]

        def release() -> None:
            with self._lock:
                for pin in pins:
                    if pin in self._pins:
                        self._pins.remove(pin)

        state.release = release
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (``"chunks"`` may be any iterable of payloads, read one by one),
        or convert a version-1 state (two full observations per slot) written before issue 11."""
        if "obs" in state and "next_obs" in state:
            state = _convert_version_1(self, state)
        n, capacity = int(state["size"]), int(state["capacity"])
        if n > self.capacity:
            raise CheckpointError(f"replay buffer checkpoint holds {n} transitions but CAPACITY={self.capacity}; "
                                  f"use --set CAPACITY={capacity}")
        if capacity != self.capacity:
            raise CheckpointError(f"replay buffer checkpoint was made for CAPACITY={capacity} but the "
                                  f"config has CAPACITY={self.capacity}")
        if state.get("action_dim") != self.action_dim:
            raise CheckpointError(f"replay buffer checkpoint holds actions of dim {state.get('action_dim')} "
                                  f"but this buffer stores {self.action_dim}")
        self.total = int(state["total"])
        self.final_total = int(state["final_total"])
        self.chunk_transitions = int(state.get("chunk_transitions", self.chunk_transitions))
        layout = state["layout"]
        if layout not in (*CODECS, "auto"):  # "auto": saved before the first add chose a layout
            raise CheckpointError(f"replay buffer checkpoint has an unknown layout {layout!r}; upgrade fleetmarl")
        if layout == "auto":
            self.codec, self.layout, self.frames, self.final = None, "auto", {}, {}
        else:
            self._use_codec(layout)
        self.actions[:] = 0
        if self.taught is not None:
            self.taught[:] = NOT_TAUGHT
        self.rewards[:] = 0
        self.dones[:] = False
        self.next_ref[:] = 0
        payloads: Iterable[Mapping[str, Any]] = state.get("chunks", [])
        for payload in itertools.chain(payloads, [state.get("tail")]):
            if payload is not None:
                self._put_payload(payload)
        self.pending_first = int(state["pending_first"])
        pending = state.get("pending")
        self.pending = None if pending is None else {k: v.cpu().numpy().copy() for k, v in pending.items()}
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

    def _put_payload(self, payload: Mapping[str, Any]) -> None:
        assert self.codec is not None
        first, end = int(payload["first"]), int(payload["end"])
        slots = np.arange(first, end) % self.capacity
        for key, (shape, _) in self.codec.fields.items():
            value = payload["frames"][key]
            if tuple(value.shape[1:]) != shape:
                raise CheckpointError(f"replay buffer checkpoint has frames.{key} of shape {tuple(value.shape[1:])} "
                                      f"per transition but this config needs {shape}")
            self.frames[key][slots] = value.cpu().numpy()
        dones = payload["dones"].cpu().numpy()
        if dones.shape[1:] != self.dones.shape[1:]:
            raise CheckpointError(f"replay buffer checkpoint has done flags of shape {dones.shape[1:]} per transition "
                                  f"but this environment needs {self.dones.shape[1:]}")
        self.actions[slots] = payload["actions"].cpu().numpy()
        if self.taught is not None and "taught" in payload:  # absent: saved before teachers were recorded
            self.taught[slots] = payload["taught"].cpu().numpy()
        self.rewards[slots] = payload["rewards"].cpu().numpy()
        self.dones[slots] = dones
        self.next_ref[slots] = payload["next_ref"].cpu().numpy()
        finals = payload["final_index"].cpu().numpy() % self.capacity
        for key, value in payload["final"].items():
            self.final[key][finals] = value.cpu().numpy()


def _convert_version_1(buffer: ReplayBuffer, state: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 state (obs and next_obs stored in full per slot) as a version-2 one.

    Every next observation goes to the final store (the old format does not say which follow each
    other), so a converted buffer is about twice the compact size until its transitions are replaced.
    """
    n, capacity = int(state["size"]), int(state["capacity"])
    for name in ("obs", "next_obs"):
        for key in OBS_FIELDS:
            shape = tuple(state[name][key].shape[1:])
            if shape != buffer.shapes[key]:
                raise CheckpointError(f"replay buffer checkpoint has {name}.{key} of shape {shape} per transition "
                                      f"but this config needs {buffer.shapes[key]}")
    obs = {k: v.cpu().numpy() for k, v in state["obs"].items()}
    nxt = {k: v.cpu().numpy() for k, v in state["next_obs"].items()}
    fleet = FleetFrameCodec(buffer.dims)
    codec = fleet if n and fleet.problem(obs) is None and fleet.problem(nxt) is None else PlainFrameCodec(buffer.dims)
    total = n if n < capacity else capacity + int(state["ptr"])
    oldest = total - n
    order = np.arange(oldest, total) % capacity  # slots of the live transitions, oldest first
    age = np.arange(n, dtype=np.int64)  # final frame i is the i-th oldest's: the ring reuses it last
    pick = torch.from_numpy(order)
    tensors = lambda enc: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in enc.items()}  # noqa: E731
    payload = {
        "first": oldest, "end": total,
        "frames": tensors(codec.encode({k: v[order] for k, v in obs.items()})),
        "actions": state["actions"][pick], "rewards": state["rewards"][pick], "dones": state["dones"][pick],
        "next_ref": torch.from_numpy(-1 - age),
        "final_index": torch.from_numpy(age),
        "final": tensors(codec.encode({k: v[order] for k, v in nxt.items()})),
    }
    converted = {
        "format": "fleetmarl-replay", "version": FORMAT_VERSION, "layout": codec.name, "capacity": capacity,
        "size": n, "ptr": int(state["ptr"]), "total": total, "final_total": n,
        "prioritized": state.get("prioritized"), "action_dim": buffer.action_dim,
        "rng": state["rng"], "beta": state["beta"], "max_priority": state["max_priority"],
        "tail": payload, "chunks": [], "pending_first": total, "pending": None,
    }
    if "priorities" in state:
        converted["priorities"] = state["priorities"]
    return converted


def _plain_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """numpy's bit-generator state as plain Python ints/strings (weights_only-loadable)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (np.integer, int)):
            return int(value)
        return value
    return plain(state)
