"""The sampling-fleet environment (design §2).

``make_env(config)`` gives the PettingZoo :class:`SamplingEnv`; ``make_env(config, num_envs=B)`` gives
the NumPy-batched :class:`BatchedSamplingEnv` the trainer uses. Both run the same vectorised core.
"""

from __future__ import annotations

from fleetmarl.config import Config, is_fleet_environment
from fleetmarl.envs.batched_env import BatchedSamplingEnv
from fleetmarl.envs.fleet_core import METRIC_NAMES, FleetCore
from fleetmarl.envs.pettingzoo_env import PettingZooBatch, env_spec
from fleetmarl.envs.sampling_env import SamplingEnv
from fleetmarl.envs.spaces import ObservationDims, observation_dims

__all__ = ["BatchedSamplingEnv", "FleetCore", "METRIC_NAMES", "PettingZooBatch", "SamplingEnv", "environment_dims",
           "make_batched_env", "make_env", "with_environment_agents"]


def make_env(config: Config | None = None, num_envs: int | None = None) -> SamplingEnv | BatchedSamplingEnv:
    """SamplingEnv when ``num_envs`` is None, else BatchedSamplingEnv with that many copies."""
    config = config if config is not None else Config()
    if num_envs is None:
        return SamplingEnv(config)
    return BatchedSamplingEnv(config, num_envs)


def make_batched_env(config: Config, num_envs: int) -> BatchedSamplingEnv | PettingZooBatch:
    """The one place that picks the environment from ``ENVIRONMENT_TYPE``: the fleet or a PettingZoo module."""
    if is_fleet_environment(config):
        return BatchedSamplingEnv(config, num_envs)
    return PettingZooBatch(config, num_envs)


def environment_dims(config: Config) -> ObservationDims:
    """The learner's sizes for ``config``'s environment (a PettingZoo module is built once to read its spaces)."""
    return observation_dims(config) if is_fleet_environment(config) else env_spec(config).dims()


def with_environment_agents(config: Config) -> Config:
    """``config`` with NUM_AGENTS read from a PettingZoo environment (its ``possible_agents`` decide, and
    checkpoints record the count); the fleet's config is returned as it is."""
    if is_fleet_environment(config):
        return config
    agents = env_spec(config).num_agents
    return config if config.NUM_AGENTS == agents else config.replace(NUM_AGENTS=agents)
