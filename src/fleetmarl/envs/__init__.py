"""The sampling-fleet environment (design §2).

``make_env(config)`` gives the PettingZoo :class:`SamplingEnv`; ``make_env(config, num_envs=B)`` gives
the NumPy-batched :class:`BatchedSamplingEnv` the trainer uses. Both run the same vectorised core.
"""

from __future__ import annotations

from fleetmarl.config import Config
from fleetmarl.envs.batched_env import BatchedSamplingEnv
from fleetmarl.envs.fleet_core import METRIC_NAMES, FleetCore
from fleetmarl.envs.sampling_env import SamplingEnv

__all__ = ["BatchedSamplingEnv", "FleetCore", "METRIC_NAMES", "SamplingEnv", "make_env"]


def make_env(config: Config | None = None, num_envs: int | None = None) -> SamplingEnv | BatchedSamplingEnv:
    """SamplingEnv when ``num_envs`` is None, else BatchedSamplingEnv with that many copies."""
    config = config if config is not None else Config()
    if num_envs is None:
        return SamplingEnv(config)
    return BatchedSamplingEnv(config, num_envs)
