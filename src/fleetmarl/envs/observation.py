"""Batched observations and action masks, computed from the fleet's state (a
:class:`~fleetmarl.envs.fleet_state.FleetState`: the :class:`~fleetmarl.envs.fleet_core.FleetCore`).

Kept apart from the physics so the feature set (what a network sees) can change without touching how
the world moves. Column order follows ``*_COLUMNS`` in :mod:`fleetmarl.envs.spaces`; every float column
is scaled to lie in [-1, 1] (positions by MAP_SIZE, times by the longest deadline) because a neural
network reads them, and is clipped there as a last guard.
"""

from __future__ import annotations

import numpy as np

from fleetmarl.envs.fleet_state import FleetState
from fleetmarl.envs.geometry import planar_distance
from fleetmarl.envs.spaces import POINT_DIM
from fleetmarl.envs.state_codes import ACTIVE, IDLE, MISSED, SERVED

ENERGY_SLACK = 1e-9  # float rounding must not mask a trip that uses exactly the energy left


def build_observation(core: FleetState) -> dict[str, np.ndarray]:
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


def _activity(core: FleetState) -> dict[str, np.ndarray]:
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


def _point_geometry(core: FleetState) -> dict[str, np.ndarray]:
    """(B, A, P) offsets, distances and travel times from every vehicle to every point slot."""
    dx = core.point_pos[:, None, :, 0] - core.vehicle_pos[:, :, None, 0]
    dy = core.point_pos[:, None, :, 1] - core.vehicle_pos[:, :, None, 1]
    dist = planar_distance(dx, dy)
    return {"dx": dx, "dy": dy, "dist": dist, "travel": dist / core.speed[None, :, None]}


def _action_mask(core: FleetState, activity: dict[str, np.ndarray], geo: dict[str, np.ndarray]) -> np.ndarray:
    """Point j is allowed for an idle vehicle with room that can reach it by its deadline (and, in
    'full', get back to the base on the energy left). Stay and return are always allowed."""
    B, A, P = core.num_envs, core.num_agents, core.num_points
    active = (core.point_status == ACTIVE)[:, None, :]
    room = (core.capacity - core.vehicle_load)[..., None] >= core.point_samples[:, None, :]
    in_time = core.time + geo["travel"] <= core.point_deadline[:, None, :]
    allowed = activity["idle"][..., None] & active & room & in_time
    if core.full:
        home = planar_distance(core.point_pos[..., 0] - core.base[0], core.point_pos[..., 1] - core.base[1])
        need = (geo["dist"] + home[:, None, :]) * core.energy_per_m[None, :, None]
        allowed &= need <= core.vehicle_energy[..., None] + ENERGY_SLACK
    mask = np.ones((B, A, P + 2), dtype=bool)
    mask[..., :P] = allowed
    return mask


def _cargo_slack(core: FleetState, base_distance: np.ndarray, max_deadline: float) -> np.ndarray:
    """How much time is left before the most urgent carried sample would be late, if it went home now."""
    carried = core.lot_samples > 0
    earliest = np.where(carried, core.lot_deadline, np.inf).min(axis=2)
    slack = (earliest - core.time - base_distance / core.speed) / max_deadline
    return np.where(carried.any(axis=2), slack, 1.0)


def _state(core: FleetState, activity: dict[str, np.ndarray]) -> np.ndarray:
    c = core.config
    M, B, A = c.MAP_SIZE, core.num_envs, core.num_agents
    from_base = core.vehicle_pos - core.base
    base_distance = np.sqrt((from_base**2).sum(axis=-1))
    charge_left = np.divide(core.charge_left, core.charge_seconds, out=np.zeros((B, A)),
                            where=core.charge_seconds > 0)
    columns = [
        from_base / (M / 2.0),
        (core.vehicle_load / core.capacity)[..., None],
        (core.vehicle_energy / core.energy_capacity)[..., None],
        charge_left[..., None],
        np.broadcast_to((core.speed / core.speed.max())[:, None], (B, A, 1)),
        np.broadcast_to((core.capacity / core.capacity.max())[:, None], (B, A, 1)),
        np.full((B, A, 1), core.time / core.episode_seconds),
        np.stack([activity[name] for name in ("idle", "to_point", "to_base", "charging")], axis=-1),
        activity["target_rel"],
        (base_distance / (M / np.sqrt(2.0)))[..., None],
        np.clip(_cargo_slack(core, base_distance, core.max_deadline), -1.0, 1.0)[..., None],
    ]
    return np.concatenate(columns, axis=-1, dtype=np.float32)


def _point_features(core: FleetState, geo: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Per-(vehicle, point) columns first, then per-point columns shared by all vehicles, then flags.

    Column order is POINT_COLUMNS (a test checks the names against the values); this (B, A, P, F) array
    is the bulk of every step's work, hence the layout trick below.
    """
    c = core.config
    M, B, A, P = c.MAP_SIZE, core.num_envs, core.num_agents, core.num_points
    status = core.point_status
    active = status == ACTIVE
    deadline_left = np.where(active, core.point_deadline - core.time, 0.0)
    # Filled feature-major, (B, A, F, P), so every column write is contiguous; transposed once at the end.
    out = np.empty((B, A, POINT_DIM, P), dtype=np.float32)
    out[:, :, 0] = geo["dx"] / M
    out[:, :, 1] = geo["dy"] / M
    out[:, :, 2] = geo["dist"] / (M * np.sqrt(2.0))
    out[:, :, 3] = mask[..., :P]
    out[:, :, 4] = np.clip((deadline_left[:, None, :] - geo["travel"]) / core.max_deadline, -1.0, 1.0)
    out[:, :, :5] *= active[:, None, None, :]  # only live points carry numbers; the flags say the rest
    shared = np.empty((B, POINT_DIM - 5, P), dtype=np.float32)
    shared[:, 0] = core.point_samples / c.POINT_SAMPLES_MAX
    shared[:, 1] = np.clip(deadline_left / core.max_deadline, 0.0, 1.0)
    for level in (1, 2, 3):
        shared[:, 1 + level] = core.point_priority == level
    shared[:, 5] = core.heading_counts() / A
    shared[:, 6] = (core.point_pos[..., 0] - core.base[0]) / (M / 2.0)
    shared[:, 7] = (core.point_pos[..., 1] - core.base[1]) / (M / 2.0)
    shared[:, :8] *= active[:, None, :]
    shared[:, 8] = active
    shared[:, 9] = status == SERVED
    shared[:, 10] = status == MISSED
    out[:, :, 5:] = shared[:, None]
    return np.ascontiguousarray(out.transpose(0, 1, 3, 2))


def _other_obs(core: FleetState, activity: dict[str, np.ndarray]) -> np.ndarray:
    """Row i of agent a describes agent ``others[a, i]`` (all agents but a, in index order)."""
    c = core.config
    M, B, A = c.MAP_SIZE, core.num_envs, core.num_agents
    others = core.others
    own_pos = core.vehicle_pos[:, :, None, :]
    rel = core.vehicle_pos[:, others] - own_pos  # (B, A, A-1, 2)
    target_abs = core.vehicle_pos + activity["target_rel"] * M
    has_target = activity["to_point"] | activity["to_base"]
    target_rel = np.where(has_target[:, others][..., None], target_abs[:, others] - own_pos, 0.0)
    own = np.concatenate([
        (core.vehicle_load / core.capacity)[..., None],
        (core.vehicle_energy / core.energy_capacity)[..., None],
        np.broadcast_to((core.speed / core.speed.max())[:, None], (B, A, 1)),
        np.stack([activity[name] for name in ("idle", "to_point", "to_base", "charging")], axis=-1),
    ], axis=-1)
    columns = [rel / M, (np.sqrt((rel**2).sum(axis=-1)) / (M * np.sqrt(2.0)))[..., None], own[:, others],
               np.clip(target_rel / M, -1.0, 1.0)]
    return np.concatenate(columns, axis=-1, dtype=np.float32)
