"""A tiny PettingZoo parallel environment for the tests of issue 12: agents that finish at different steps.

Two agents walk on a line. ``agent_1`` *terminates* when it reaches +3 or after a random 2..``short``
steps, ``agent_0`` after a random 3..``max_cycles`` steps, and what is left is *truncated* after
``max_cycles`` steps, so episodes have different lengths; the observation is a ``Dict`` with an action
mask (action 2 is forbidden while an agent stands at 0), so the adapter's mask, per-agent termination
and variable episode lengths are all exercised without the mpe2 package.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


class ToyParallelEnv:
    """Two agents, Discrete(3) moves (-1, 0, +1), reward -|position| per step."""

    metadata = {"name": "toy_parallel_v0"}

    def __init__(self, max_cycles: int = 8, short: int = 4) -> None:
        self.max_cycles, self.short = int(max_cycles), int(short)
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.np_random = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Dict:
        return spaces.Dict({"observation": spaces.Box(-10.0, 10.0, (2,), np.float32),
                            "action_mask": spaces.MultiBinary(3)})

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(3)

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.position = {a: int(self.np_random.integers(-2, 3)) for a in self.agents}
        self.limit = int(self.np_random.integers(2, self.short + 1))  # agent_1's own episode length
        self.end = int(self.np_random.integers(3, self.max_cycles + 1))  # agent_0's
        self.steps = 0
        return {a: self._observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def _observe(self, agent: str) -> dict:
        mask = np.ones(3, np.int8)
        if self.position[agent] == 0:
            mask[2] = 0
        return {"observation": np.array([self.position[agent], self.steps], np.float32), "action_mask": mask}

    def step(self, actions: dict):
        self.steps += 1
        for agent, action in actions.items():
            self.position[agent] += int(action) - 1
        rewards = {a: -float(abs(self.position[a])) for a in self.agents}
        terminated = {a: False for a in self.agents}
        terminated["agent_0"] = self.steps >= self.end and self.steps < self.max_cycles
        terminated["agent_1"] = "agent_1" in self.agents and (self.position["agent_1"] >= 3 or self.steps >= self.limit)
        truncated = {a: self.steps >= self.max_cycles for a in self.agents}
        observations = {a: self._observe(a) for a in self.agents}
        self.agents = [a for a in self.agents if not (terminated[a] or truncated[a])]
        return observations, rewards, terminated, truncated, {a: {} for a in observations}

    def close(self) -> None:
        pass


def parallel_env(**kwargs) -> ToyParallelEnv:
    return ToyParallelEnv(**kwargs)
