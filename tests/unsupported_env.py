"""A PettingZoo-shaped module whose action space the learner does not support (MultiDiscrete), for the
bad-input test of issue 12."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


class _Env:
    possible_agents = ["a"]

    def observation_space(self, agent: str) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def action_space(self, agent: str) -> spaces.MultiDiscrete:
        return spaces.MultiDiscrete([2, 2])


def parallel_env() -> _Env:
    return _Env()
