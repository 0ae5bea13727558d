"""fleetmarl: MADDPG with a point-set Transformer for a sample-collecting vehicle fleet.

Public API (imported lazily so ``import fleetmarl`` stays fast and light):
    Config, load_config, make_env, build_agents, train,
    save_model_checkpoint, load_model_checkpoint, load_policy
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Config": "fleetmarl.config",
    "load_config": "fleetmarl.config",
    "make_env": "fleetmarl.envs",
    "build_agents": "fleetmarl.learner",
    "MADDPGAgent": "fleetmarl.learner",
    "train": "fleetmarl.trainer",
    "save_model_checkpoint": "fleetmarl.checkpoint",
    "load_model_checkpoint": "fleetmarl.checkpoint",
    "load_policy": "fleetmarl.eval.evaluation",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetmarl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
