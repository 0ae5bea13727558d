"""A sampled minibatch and how it is read from the storage: n-step targets, next frames, decoding.

Why n-step targets (``N_STEP`` > 1): a delivery is rewarded many steps after the point was chosen;
summing n rewards carries it back n steps per update instead of one. The sum follows each transition's
successor in its environment (:meth:`ReplayStorage.successors`) and stops at an episode's end, a done
flag, or the newest transitions, whose successor is not stored yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fleetmarl.learner.replay.storage import ReplayStorage


@dataclass
class Batch:
    """A sampled minibatch, all torch tensors on the requested device.

    obs / next_obs: state (B, A, S) float32, point_features (B, A, N, F) float32, other_obs
    (B, A, A-1, O) float32, action_mask (B, A, K) bool; actions (B, A) int64, or (B, A, D) float32 for
    continuous actions; rewards (B, A) float32; dones (B,) float32 (1.0 = no bootstrap), or (B, A) per
    agent with ``per_agent_dones``; weights (B,) float32 importance weights (ones when uniform); indices
    (B,) int64 buffer slots, for ``update_priorities``. With ``N_STEP`` > 1, ``rewards``, ``next_obs`` and
    ``dones`` are those of the n-step target (see ``discounts``). A buffer with a dispatch prior adds
    ``prior_choice`` (B, A) int64 to both observations; the ``fleet_view`` layout holds V point rows
    instead of N, with ``point_slots`` (B, A, V) and ``heading_taken`` (B, N) (:mod:`.codecs`).
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


def n_step_targets(storage: ReplayStorage, slots: np.ndarray, gamma: float, n_step: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rewards summed over up to ``n_step`` steps from ``slots`` (discounted), the slot of the last step
    taken, its done flags and the discount of the bootstrapped value, ``gamma ** k * (1 - done)``."""
    rewards = storage.rewards[slots]  # indexing copies: summed into in place below
    dones = storage.dones[slots]
    discounts = np.full(dones.shape, gamma, dtype=np.float32)
    last = slots.copy()
    for _ in range(n_step - 1):
        successor = storage.successors(last)
        done_row = dones if dones.ndim == 1 else dones.all(axis=-1)
        go = (successor >= 0) & ~done_row
        if not go.any():
            break
        nxt = successor[go]
        # per agent (B, A) where dones are per agent: an agent that has finished collects nothing more
        factor = (discounts[go] * ~dones[go]).reshape(len(nxt), -1)
        rewards[go] += factor * storage.rewards[nxt]
        dones[go] = dones[go] | storage.dones[nxt]
        discounts[go] *= gamma
        last[go] = nxt
    return rewards, last, dones, discounts * ~dones


def read_batch(storage: ReplayStorage, indices: np.ndarray, weights: np.ndarray, *, gamma: float, n_step: int,
               device: torch.device) -> Batch:
    """The minibatch of the transitions in slots ``indices``, decoded to full observations on ``device``."""
    rewards, last, dones, discounts = n_step_targets(storage, indices, gamma, n_step)
    obs_frames = {k: v[indices] for k, v in storage.frames.items()}
    next_frames = storage.next_frames(last)
    actions = storage.actions[indices]

    def put(array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        tensor = torch.from_numpy(array).to(device, non_blocking=True)
        return tensor if dtype is None else tensor.to(dtype)

    return Batch(
        obs={k: put(v) for k, v in storage.decode(obs_frames).items()},
        actions=put(actions, torch.int64 if storage.action_dim is None else torch.float32),
        rewards=put(rewards),
        next_obs={k: put(v) for k, v in storage.decode(next_frames).items()},
        dones=put(dones, torch.float32),
        weights=put(weights),
        indices=put(indices.astype(np.int64)),
        discounts=put(discounts),
        taught=None if storage.taught is None else put(storage.taught[indices], torch.int64),
    )
