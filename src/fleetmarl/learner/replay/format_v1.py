"""Version-1 replay states (written before issue 11's compact replay), converted to the current format.

Version 1 stored two full observations per slot (``obs`` and ``next_obs``), 12.5 KB per transition. It
does not say which next observation is the following transition's observation, so every next
observation goes to the final store: a converted buffer is about twice the compact size until its
transitions are replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fleetmarl.envs.spaces import OBS_KEYS
from fleetmarl.errors import CheckpointError
from fleetmarl.learner.replay.codecs import CODECS, fitting_layout
from fleetmarl.learner.replay.persistence import FORMAT_NAME, FORMAT_VERSION
from fleetmarl.learner.replay.storage import ReplayStorage


def is_version_1(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` holds full observations per slot (version 1)."""
    return "obs" in state and "next_obs" in state


def convert_version_1(storage: ReplayStorage, state: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 state as a version-2 one for ``storage``'s sizes (whose shapes it must have)."""
    n, capacity = int(state["size"]), int(state["capacity"])
    _check_shapes(storage, state)
    obs = {k: v.cpu().numpy() for k, v in state["obs"].items()}
    nxt = {k: v.cpu().numpy() for k, v in state["next_obs"].items()}
    codec = CODECS[fitting_layout(storage.dims, obs, nxt) if n else "plain"](storage.dims)
    total = n if n < capacity else capacity + int(state["ptr"])
    oldest = total - n
    order = np.arange(oldest, total) % capacity  # slots of the live transitions, oldest first
    age = np.arange(n, dtype=np.int64)  # final frame i is the i-th oldest's: the ring reuses it last
    pick = torch.from_numpy(order)

    def tensors(encoded: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in encoded.items()}

    payload = {
        "first": oldest, "end": total,
        "frames": tensors(codec.encode({k: v[order] for k, v in obs.items()})),
        "actions": state["actions"][pick], "rewards": state["rewards"][pick], "dones": state["dones"][pick],
        "next_ref": torch.from_numpy(-1 - age),
        "final_index": torch.from_numpy(age),
        "final": tensors(codec.encode({k: v[order] for k, v in nxt.items()})),
    }
    converted = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "layout": codec.name, "capacity": capacity,
        "size": n, "ptr": int(state["ptr"]), "total": total, "final_total": n,
        "prioritized": state.get("prioritized"), "action_dim": storage.action_dim,
        "rng": state["rng"], "beta": state["beta"], "max_priority": state["max_priority"],
        "tail": payload, "chunks": [], "pending_first": total, "pending": None,
    }
    if "priorities" in state:
        converted["priorities"] = state["priorities"]
    return converted


def _check_shapes(storage: ReplayStorage, state: Mapping[str, Any]) -> None:
    """Refuse observations of other sizes than this config's, naming the first that differs."""
    for name in ("obs", "next_obs"):
        for key in OBS_KEYS:
            shape = tuple(state[name][key].shape[1:])
            if shape != storage.shapes[key]:
                raise CheckpointError(f"replay buffer checkpoint has {name}.{key} of shape {shape} per transition "
                                      f"but this config needs {storage.shapes[key]}")
