"""Lets BenchMARL 1.5.2's PettingZoo MPE tasks run with pettingzoo 1.27 and ``mpe2``.

BenchMARL builds its PettingZoo tasks through TorchRL's ``PettingZooEnv(task="simple_spread_v3", ...)``,
which looks the task up in PettingZoo's module registry. Since pettingzoo 1.25 the MPE environments live
in their own package, ``mpe2``, and ``pettingzoo.mpe`` is a stub that raises ``ImportError`` on import.
TorchRL 0.11's fallback loader only catches ``ModuleNotFoundError``, so building any MPE task fails
before training starts. The shim changes only where the environment comes from: it builds
``mpe2.<task>.parallel_env(**task_config)`` itself and hands it to TorchRL's ``PettingZooWrapper`` with
the same arguments BenchMARL passes to ``PettingZooEnv`` (parallel API, categorical actions, global
state, seed, device, render mode). Everything else (specs, group map, transforms, algorithms) is
BenchMARL's own code, inherited unchanged from ``PettingZooClass``.

Only used inside the BenchMARL virtual environment (``benchmarks/benchmarl_simple_spread.py --setup``).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

from benchmarl.environments import PettingZooTask
from benchmarl.environments.pettingzoo.common import PettingZooClass
from torchrl.envs import EnvBase, PettingZooWrapper


class Mpe2PettingZooClass(PettingZooClass):
    """BenchMARL's PettingZoo task class with the environment taken from ``mpe2``."""

    def get_env_fun(
        self,
        num_envs: int,
        continuous_actions: bool,
        seed: int | None,
        device: Any,
    ) -> Callable[[], EnvBase]:
        """Same contract as ``PettingZooClass.get_env_fun``: one unbatched env per call (BenchMARL
        batches it with ``SerialEnv``), so ``num_envs`` is ignored exactly as upstream ignores it."""
        config = copy.deepcopy(self.config)
        if self.supports_continuous_actions() and self.supports_discrete_actions():
            config["continuous_actions"] = continuous_actions
        module = importlib.import_module(f"mpe2.{config.pop('task')}")

        def make() -> EnvBase:
            return PettingZooWrapper(
                env=module.parallel_env(render_mode="rgb_array", **config),
                categorical_actions=True,
                device=device,
                seed=seed,
                return_state=self.has_state(),
            )

        return make


def mpe2_task(name: str, **overrides: Any) -> Mpe2PettingZooClass:
    """BenchMARL's task ``name`` (e.g. ``"SIMPLE_SPREAD"``), its YAML defaults updated with ``overrides``
    (e.g. ``max_cycles=25``), built from ``mpe2``."""
    upstream = PettingZooTask[name].get_from_yaml()
    config = {**upstream.config, **overrides}
    return Mpe2PettingZooClass(name=upstream.name, config=config)
