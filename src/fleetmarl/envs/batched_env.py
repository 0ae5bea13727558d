"""B copies of the sampling environment stepped together in NumPy, for training speed (design §2).

Every episode lasts exactly MAX_NUM_STEPS steps, so all copies end together: the step that ends them
reports ``truncated=True`` for every copy, puts the final observation in ``infos["final_obs"]`` and the
per-copy domain metrics in ``infos["episode"]``, and returns the first observation of the next episode
(auto-reset). The generator seeded by :meth:`reset` is owned by the env; auto-resets and
``reset(seed=None)`` continue it, and :meth:`get_rng_state`/:meth:`set_rng_state` let a checkpoint
carry it between rounds so a resumed run sees the same episodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.fleet_core import METRIC_NAMES, FleetCore
from fleetmarl.envs.rng_state import generator_from_state, generator_state

Observation = dict[str, np.ndarray]


class BatchedSamplingEnv:
    """``num_envs`` copies; observations are dicts of arrays with leading ``(B, NUM_AGENTS)`` dims."""

    metrics_names: tuple[str, ...] = METRIC_NAMES

    def __init__(self, config: Config, num_envs: int):
        self.config = config
        self.core = FleetCore(config, num_envs)
        self.num_envs = self.core.num_envs
        self.num_agents = config.NUM_AGENTS
        self.num_points = config.NUM_POINTS
        self.rng = np.random.default_rng()
        self._started = False

    def reset(self, seed: int | None = None) -> Observation:
        """New episode in every copy. A seed restarts the generator; None continues it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._started = True
        return self.core.reset(self.rng)

    def step(self, actions: np.ndarray) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """``actions`` (B, A) ints -> obs, rewards (B, A) float32, terminated (B,), truncated (B,), infos.

        ``infos["invalid_actions"]`` (B, A) bool flags actions that were masked or out of range (they
        were carried out as stay and cost PENALTY_INVALID).
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        rewards, invalid = self.core.step(actions, self.rng)
        obs = self.core.observe()
        terminated = np.zeros(self.num_envs, dtype=bool)
        done = self.core.step_count >= self.config.MAX_NUM_STEPS
        truncated = np.full(self.num_envs, done, dtype=bool)
        infos: dict[str, Any] = {"invalid_actions": invalid}
        if done:
            infos["final_obs"] = obs
            infos["episode"] = self.core.episode_metrics()
            obs = self.core.reset(self.rng)
        return obs, rewards, terminated, truncated, infos

    def get_rng_state(self) -> dict[str, Any]:
        """The generator's state as plain Python values (safe for ``torch.load(weights_only=True)``)."""
        return generator_state(self.rng)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`get_rng_state`; the next ``reset(seed=None)`` continues from it."""
        self.rng = generator_from_state(state)
