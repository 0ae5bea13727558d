"""Batched observations and action masks, computed from a :class:`~fleetmarl.envs.fleet_core.FleetCore`.

Kept apart from the physics so the feature set (what a network sees) can change without touching how
the world moves. Column order follows ``*_COLUMNS`` in :mod:`fleetmarl.envs.spaces`; every float column
is scaled to lie in [-1, 1] (positions by MAP_SIZE, times by the longest deadline) because a neural
network reads them, and is clipped there as a last guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fleetmarl.envs.spaces import OTHER, OTHER_DIM, POINT, POINT_DIM, STATE, STATE_DIM
from fleetmarl.envs.state_codes import ACTIVE, IDLE, MISSED, SERVED

if TYPE_CHECKING:
    from fleetmarl.envs.fleet_core import FleetCore

ENERGY_SLACK = 1e-9  # float rounding must not mask a trip that uses exactly the energy left


def build_observation(core: FleetCore) -> dict[str, np.ndarray]:
    """``{"state": (B,A,S), "point_features": (B,A,P,F), "other_obs": (B,A,A-1,G), "action_mask": (B,A,P+2)}``."""
    activity = _activity(core)
    point_geometry = _point_geometry(core)
    mask = _action_mask(core, activity, point_geometry)
    return {
        "state": _state(core, activity),
        "point_features": _point_features(core, point_geometry, mask),
        "other_obs": _other_obs(core, activity),
        "action_mask": mask,
    }


def _activity(core: FleetCore) -> dict[str, np.ndarray]:
    """What each vehicle is doing, and where its target lies relative to it."""
    P, M = core.num_points, core.config.MAP_SIZE
    charging = core.charge_left > 0
    has_target = core.vehicle_target != IDLE
    target_rel = np.where(has_target[..., None], (core.target_positions() - core.vehicle_pos) / M, 0.0)
    return {
        "idle": ~has_target & ~charging,
        "to_point": has_target & (core.vehicle_target < P),
        "to_base": core.vehicle_target == P,
        "charging": charging,
        "target_rel": target_rel,
    }


def _point_geometry(core: FleetCore) -> dict[str, np.ndarray]:
    rel = core.point_pos[:, None, :, :] - core.vehicle_pos[:, :, None, :]  # (B, A, P, 2)
    dist = np.sqrt((rel**2).sum(axis=-1))
    travel = dist / core.speed[None, :, None]
    return {"rel": rel, "dist": dist, "travel": travel}


def _action_mask(core: FleetCore, activity: dict[str, np.ndarray], geo: dict[str, np.ndarray]) -> np.ndarray:
    """Point j is allowed for an idle vehicle with room that can reach it by its deadline (and, in
    'full', get back to the base on the energy left). Stay and return are always allowed."""
    B, A, P = core.num_envs, core.num_agents, core.num_points
    active = (core.point_status == ACTIVE)[:, None, :]
    room = (core.capacity - core.vehicle_load)[..., None] >= core.point_samples[:, None, :]
    in_time = core.time + geo["travel"] <= core.point_deadline[:, None, :]
    allowed = activity["idle"][..., None] & active & room & in_time
    if core.full:
        home = np.sqrt(((core.point_pos - core.base) ** 2).sum(axis=-1))  # (B, P)
        need = (geo["dist"] + home[:, None, :]) * core.energy_per_m[None, :, None]
        allowed &= need <= core.vehicle_energy[..., None] + ENERGY_SLACK
    mask = np.ones((B, A, P + 2), dtype=bool)
    mask[..., :P] = allowed
    return mask


def _cargo_slack(core: FleetCore, base_distance: np.ndarray, max_deadline: float) -> np.ndarray:
    """How much time is left before the most urgent carried sample would be late, if it went home now."""
    carried = core.lot_samples > 0
    earliest = np.where(carried, core.lot_deadline, np.inf).min(axis=2)
    slack = (earliest - core.time - base_distance / core.speed) / max_deadline
    return np.where(carried.any(axis=2), slack, 1.0)


def _state(core: FleetCore, activity: dict[str, np.ndarray]) -> np.ndarray:
    c = core.config
    M, B, A = c.MAP_SIZE, core.num_envs, core.num_agents
    max_deadline = float(core.deadline_by_priority.max())
    from_base = core.vehicle_pos - core.base
    base_distance = np.sqrt((from_base**2).sum(axis=-1))
    out = np.zeros((B, A, STATE_DIM))
    out[..., STATE["x"]:STATE["y"] + 1] = from_base / (M / 2.0)
    out[..., STATE["load"]] = core.vehicle_load / core.capacity
    out[..., STATE["energy"]] = core.vehicle_energy / core.energy_capacity
    out[..., STATE["charge_left"]] = np.divide(core.charge_left, core.charge_seconds,
                                               out=np.zeros((B, A)), where=core.charge_seconds > 0)
    out[..., STATE["speed"]] = core.speed / core.speed.max()
    out[..., STATE["capacity"]] = core.capacity / core.capacity.max()
    out[..., STATE["elapsed"]] = core.time / core.episode_seconds
    for name in ("idle", "to_point", "to_base", "charging"):
        out[..., STATE[name]] = activity[name]
    out[..., STATE["target_dx"]:STATE["target_dy"] + 1] = activity["target_rel"]
    out[..., STATE["base_distance"]] = base_distance / (M / np.sqrt(2.0))
    out[..., STATE["cargo_slack"]] = _cargo_slack(core, base_distance, max_deadline)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _point_features(core: FleetCore, geo: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    c = core.config
    M, B, A, P = c.MAP_SIZE, core.num_envs, core.num_agents, core.num_points
    max_deadline = float(core.deadline_by_priority.max())
    status = core.point_status[:, None, :]
    deadline_left = (core.point_deadline - core.time)[:, None, :]
    out = np.zeros((B, A, P, POINT_DIM))
    out[..., POINT["dx"]:POINT["dy"] + 1] = geo["rel"] / M
    out[..., POINT["distance"]] = geo["dist"] / (M * np.sqrt(2.0))
    out[..., POINT["samples"]] = (core.point_samples / c.POINT_SAMPLES_MAX)[:, None, :]
    out[..., POINT["deadline_left"]] = deadline_left / max_deadline
    for level in (1, 2, 3):
        out[..., POINT[f"priority_{level}"]] = (core.point_priority == level)[:, None, :]
    out[..., POINT["feasible"]] = mask[..., :P]
    out[..., POINT["arrival_slack"]] = (deadline_left - geo["travel"]) / max_deadline
    out[..., POINT["heading"]] = (core.heading_counts() / A)[:, None, :]
    out[..., POINT["x"]:POINT["y"] + 1] = ((core.point_pos - core.base) / (M / 2.0))[:, None, :, :]
    out *= (status == ACTIVE)[..., None]  # only live points carry numbers; the flags below say the rest
    out[..., POINT["active"]] = status == ACTIVE
    out[..., POINT["served"]] = status == SERVED
    out[..., POINT["missed"]] = status == MISSED
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _other_obs(core: FleetCore, activity: dict[str, np.ndarray]) -> np.ndarray:
    """Row i of agent a describes agent ``others[a, i]`` (all agents but a, in index order)."""
    c = core.config
    M, B, A = c.MAP_SIZE, core.num_envs, core.num_agents
    others = core.others
    own_pos = core.vehicle_pos[:, :, None, :]
    rel = core.vehicle_pos[:, others] - own_pos  # (B, A, A-1, 2)
    target_abs = core.vehicle_pos + activity["target_rel"] * M
    has_target = activity["to_point"] | activity["to_base"]
    target_rel = np.where(has_target[:, others][..., None], target_abs[:, others] - own_pos, 0.0)
    out = np.zeros((B, A, A - 1, OTHER_DIM))
    out[..., OTHER["dx"]:OTHER["dy"] + 1] = rel / M
    out[..., OTHER["distance"]] = np.sqrt((rel**2).sum(axis=-1)) / (M * np.sqrt(2.0))
    out[..., OTHER["load"]] = (core.vehicle_load / core.capacity)[:, others]
    out[..., OTHER["energy"]] = (core.vehicle_energy / core.energy_capacity)[:, others]
    out[..., OTHER["speed"]] = (core.speed / core.speed.max())[others]
    for name in ("idle", "to_point", "to_base", "charging"):
        out[..., OTHER[name]] = activity[name][:, others]
    out[..., OTHER["target_dx"]:OTHER["target_dy"] + 1] = target_rel / M
    return np.clip(out, -1.0, 1.0).astype(np.float32)
