"""The replay buffer the trainer uses: compact storage, uniform or prioritized sampling, exact checkpoints.

:class:`ReplayBuffer` puts together the rooms of :mod:`fleetmarl.learner.replay`: the ring that stores
each observation once (:mod:`~fleetmarl.learner.replay.storage`, frames encoded by
:mod:`~fleetmarl.learner.replay.codecs`), the draw of minibatch slots (:mod:`~fleetmarl.learner.replay.sampler`),
the minibatch read with its n-step targets (:mod:`~fleetmarl.learner.replay.batch`), and the checkpoint
format of a head plus immutable chunks (:mod:`~fleetmarl.learner.replay.persistence`,
:mod:`~fleetmarl.learner.replay.format_v1` for states from before compact replay).

One transition at the defaults (A=5, N=30) takes about 2,470 bytes (a 2,400-byte frame, action 10,
reward 20, done 1, next reference 8, the teacher's choice 10 and the PER leaf 8, and one final frame per
episode end), against 12,519 before compact replay.

Determinism: sampling draws only from the buffer's own ``numpy.random.Generator`` and a restored buffer
samples the same indices as one that was never saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.learner.replay import persistence
from fleetmarl.learner.replay.batch import Batch, read_batch
from fleetmarl.learner.replay.format_v1 import convert_version_1, is_version_1
from fleetmarl.learner.replay.persistence import ReplayCheckpoint, SealedChunk
from fleetmarl.learner.replay.sampler import ReplaySampler, SumTree
from fleetmarl.learner.replay.storage import NOT_TAUGHT, PRIOR_KEY, PriorFn, ReplayStorage

# Batch, NOT_TAUGHT, SumTree and the checkpoint pieces are imported from here by the learner and the tests.
__all__ = ["NOT_TAUGHT", "PRIOR_KEY", "Batch", "ReplayBuffer", "ReplayCheckpoint", "ReplayStorage", "SealedChunk", "SumTree"]


class ReplayBuffer(ReplayStorage):
    """Ring buffer of ``config.CAPACITY`` transitions; prioritized iff ``config.ENABLE_PRIORITIZED_REPLAY``.

    ``action_dim``, ``layout``, ``per_agent_dones`` and ``prior`` are those of :class:`ReplayStorage`, whose
    views are ``config.POINT_VIEW`` and ``config.VEHICLE_VIEW``;
    ``chunk_transitions`` is the unit a checkpoint writes once (default
    :func:`~fleetmarl.learner.replay.persistence.default_chunk_transitions`).
    """

    def __init__(self, config: Config, dims: ObservationDims, seed: int, *, action_dim: int | None = None,
                 layout: str = "auto", chunk_transitions: int | None = None, per_agent_dones: bool = False,
                 prior: PriorFn | None = None) -> None:
        super().__init__(dims, int(config.CAPACITY), action_dim=action_dim, layout=layout,
                         per_agent_dones=per_agent_dones, view=int(config.POINT_VIEW),
                         vehicle_view=int(config.VEHICLE_VIEW), prior=prior)
        self.config = config
        self.sampler = ReplaySampler(config, self.capacity, seed)
        self.chunk_transitions = int(chunk_transitions or persistence.default_chunk_transitions(self.capacity))

    @property
    def prioritized(self) -> bool:
        return self.sampler.prioritized

    @property
    def beta(self) -> float:
        """The current importance-sampling exponent (grows by PER_BETA_INCREMENT per prioritized sample)."""
        return self.sampler.beta

    def bytes_per_transition(self) -> int:
        """As :meth:`ReplayStorage.bytes_per_transition`, plus the PER leaf (internal nodes add about as
        much again, unsaved)."""
        tree = self.sampler.tree
        return super().bytes_per_transition() + (0 if tree is None else tree.nodes.itemsize)

    # ------------------------------------------------------------------ writing and sampling
    def add(self, obs: Mapping[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
            next_obs: Mapping[str, np.ndarray], dones: np.ndarray, taught: np.ndarray | None = None) -> np.ndarray:
        """:meth:`ReplayStorage.add`, the new transitions at the largest priority seen."""
        slots = super().add(obs, actions, rewards, next_obs, dones, taught)
        self.sampler.added(slots)
        return slots

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        """A minibatch drawn by the sampler, with ``N_STEP`` targets, on ``device``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        indices, weights = self.sampler.draw(self.size, batch_size)
        return read_batch(self, indices, weights, gamma=float(self.config.GAMMA), n_step=int(self.config.N_STEP),
                          device=torch.device(device))

    def update_priorities(self, indices: Any, td_errors: Any) -> None:
        """New priorities from |TD errors| (B,); a no-op for uniform replay."""
        self.sampler.update(indices, td_errors)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain copies: the head plus every sealed chunk's payload under ``"chunks"``."""
        return persistence.full_state(self, self.sampler, self.chunk_transitions)

    def checkpoint_state(self) -> ReplayCheckpoint:
        """What a checkpoint needs, cheaply: the head is copied now (open tail, pending frames,
        priorities, counters); sealed chunks are :class:`SealedChunk` read later by the writer."""
        return persistence.snapshot(self, self.sampler, self.chunk_transitions)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (``"chunks"`` may be any iterable of payloads, read one by one),
        or convert a version-1 state (two full observations per slot) written before issue 11."""
        if is_version_1(state):
            state = convert_version_1(self, state)
        self.chunk_transitions = persistence.restore(self, self.sampler, state, self.chunk_transitions)
