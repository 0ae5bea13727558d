"""The sampling environment as a PettingZoo ``ParallelEnv`` (design §2).

A thin view of the vectorised core with one copy (B=1): same physics, same random stream, so it matches
:class:`~fleetmarl.envs.batched_env.BatchedSamplingEnv` with ``num_envs=1`` bit for bit. Unlike the
batched env it does not auto-reset: at the end every agent is truncated and ``agents`` becomes empty,
as PettingZoo expects. The action mask here is int8 (Gymnasium's convention for ``sample(mask=...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from fleetmarl.config import Config
from fleetmarl.envs.fleet_core import METRIC_NAMES, FleetCore
from fleetmarl.envs.spaces import OBS_KEYS, agent_action_space, agent_observation_space

AgentObservation = dict[str, np.ndarray]


class SamplingEnv(ParallelEnv):
    """Agents are named ``vehicle_0 .. vehicle_{NUM_AGENTS-1}``; episodes last MAX_NUM_STEPS steps."""

    metadata = {"name": "fleetmarl_sampling_v0", "render_modes": [], "is_parallelizable": True}
    metrics_names: tuple[str, ...] = METRIC_NAMES

    def __init__(self, config: Config | None = None, render_mode: str | None = None):
        self.config = config if config is not None else Config()
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported; use fleetmarl render")
        self.render_mode = None
        self.core = FleetCore(self.config, 1)
        self.possible_agents = [f"vehicle_{i}" for i in range(self.config.NUM_AGENTS)]
        self.agents: list[str] = []
        self._observation_space = agent_observation_space(self.config)
        self._action_space = agent_action_space(self.config)
        self.rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Dict:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None
              ) -> tuple[dict[str, AgentObservation], dict[str, dict]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        obs = self.core.reset(self.rng)
        return self._split(obs), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Agents missing from ``actions`` stay; masked or out-of-range actions stay with a penalty."""
        if not self.agents:
            raise RuntimeError("the episode is over; call reset() before step()")
        stay = self.config.NUM_POINTS
        batch = np.array([[_as_action(actions.get(agent, stay)) for agent in self.possible_agents]])
        rewards, invalid = self.core.step(batch, self.rng)
        obs = self._split(self.core.observe())
        done = self.core.step_count >= self.config.MAX_NUM_STEPS
        infos: dict[str, dict] = {agent: {"invalid_action": bool(invalid[0, i])}
                                  for i, agent in enumerate(self.possible_agents)}
        if done:
            episode = {name: float(value[0]) for name, value in self.core.episode_metrics().items()}
            for info in infos.values():
                info["episode"] = dict(episode)
        reward = {agent: float(rewards[0, i]) for i, agent in enumerate(self.possible_agents)}
        terminated = {agent: False for agent in self.possible_agents}
        truncated = {agent: done for agent in self.possible_agents}
        if done:
            self.agents = []
        return obs, reward, terminated, truncated, infos

    def _split(self, obs: dict[str, np.ndarray]) -> dict[str, AgentObservation]:
        out = {}
        for i, agent in enumerate(self.possible_agents):
            agent_obs = {key: obs[key][0, i] for key in OBS_KEYS}
            agent_obs["action_mask"] = agent_obs["action_mask"].astype(np.int8)
            out[agent] = agent_obs
        return out

    def close(self) -> None:
        pass


def _as_action(value: Any) -> float:
    """Anything numeric passes through (the core flags bad values); anything else becomes -1 (invalid)."""
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        return -1.0
