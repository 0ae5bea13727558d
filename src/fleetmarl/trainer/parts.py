"""The pieces of one run, built once and in one fixed order.

Why one place: the seed decides the agents' weights (torch's global generator), warm-up's random actions
(the trainer's NumPy generator), the replay buffer's sampling and the environment's draws, so the order
these are made in is part of what a seed means. The rollout, the evaluation and the checkpoints all work
on the same pieces, handed to them as one :class:`RunParts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fleetmarl.config import Config, is_fleet_environment
from fleetmarl.device import resolve_device
from fleetmarl.envs import BatchedSamplingEnv, PettingZooBatch, environment_dims, make_batched_env
from fleetmarl.learner.agent import MADDPGAgent
from fleetmarl.learner.buffer import ReplayBuffer
from fleetmarl.learner.factory import action_dim, build_algorithm, build_team
from fleetmarl.learner.maddpg import MADDPG
from fleetmarl.trainer.state import RunState


@dataclass
class RunParts:
    """What the trainer's collaborators share: the config, the learner, its memory, the environment, the
    trainer's random generator and the run's counters."""

    config: Config
    device: torch.device
    fleet: bool
    """the sampling fleet (True) or a PettingZoo environment"""
    agents: list[MADDPGAgent]
    algo: MADDPG
    buffer: ReplayBuffer
    env: BatchedSamplingEnv | PettingZooBatch
    rng: np.random.Generator
    """the trainer's NumPy generator: random warm-up actions draw from it"""
    state: RunState


def build_parts(config: Config) -> RunParts:
    """Seed torch and NumPy, then build the team, the update, the buffer and the environment, always in
    this order: another order would draw the weights differently and make a different run of the seed."""
    device = resolve_device(config.DEVICE)
    fleet = is_fleet_environment(config)
    dims = environment_dims(config)
    torch.manual_seed(config.RANDOM_SEED)
    rng = np.random.default_rng(config.RANDOM_SEED)
    agents = build_team(config, device)
    algo = build_algorithm(agents, config)
    flat = {} if fleet else {"layout": "plain", "per_agent_dones": True}
    buffer = ReplayBuffer(config, dims, seed=config.RANDOM_SEED + 1, action_dim=action_dim(config),
                          prior=algo.stored_prior(), **flat)
    env = make_batched_env(config, num_envs=config.NUM_ENVS)
    return RunParts(config=config, device=device, fleet=fleet, agents=agents, algo=algo, buffer=buffer, env=env,
                    rng=rng, state=RunState())
