"""The one place that picks the learner for ``ENVIRONMENT_TYPE``: the fleet's Transformer MADDPG, or the
classic MLP MADDPG for a PettingZoo module (:mod:`fleetmarl.learner.flat_learner`).

The trainer and checkpoint loading both build agents here, so a checkpoint is always read into the
networks it was written from.
"""

from __future__ import annotations

import torch

from fleetmarl.config import Config, is_fleet_environment
from fleetmarl.envs.policies import pure_policy
from fleetmarl.learner.agent import MADDPGAgent, build_agents
from fleetmarl.learner.flat_learner import FlatMADDPG, build_flat_agents
from fleetmarl.learner.maddpg import MADDPG


def build_team(config: Config, device: torch.device | str = "cpu") -> list[MADDPGAgent]:
    """``config``'s agents (the caller seeds torch first: weights come from its global RNG)."""
    if is_fleet_environment(config):
        return build_agents(config, device)
    from fleetmarl.envs import env_spec

    spec = env_spec(config)
    return build_flat_agents(config, spec.dims(), spec.action_type, device)


def build_algorithm(agents: list[MADDPGAgent], config: Config) -> MADDPG:
    """The update over ``agents``; the teacher's Q-filtered imitation (``TEACHER_POLICY``) applies to the
    fleet only."""
    if is_fleet_environment(config):
        teacher = config.TEACHER_POLICY
        return MADDPG(agents, config, imitation=teacher != "none", relabel=pure_policy(teacher, config))
    return FlatMADDPG(agents, config)


def action_dim(config: Config) -> int | None:
    """What the replay buffer stores per agent: None for one discrete action, D for a continuous one."""
    if is_fleet_environment(config):
        return None
    from fleetmarl.envs import env_spec

    spec = env_spec(config)
    return None if spec.discrete else spec.num_actions
