"""What the observation builder reads of the simulation: the fleet's state, as a typed protocol.

Why a protocol: :mod:`fleetmarl.envs.fleet_core` calls :func:`fleetmarl.envs.observation.build_observation`,
so typing the builder against :class:`~fleetmarl.envs.fleet_core.FleetCore` itself made the two modules
import each other. This module names exactly what an observation may depend on; ``FleetCore`` has it
all (shapes: B copies, A vehicles, P point slots, L lots; see fleet_core's docstring for the units).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from fleetmarl.config import Config


class FleetState(Protocol):
    """The arrays and sizes of B environment copies that observations and action masks are made of."""

    config: Config
    num_envs: int
    num_agents: int
    num_points: int
    full: bool
    """ENVIRONMENT_TYPE "full": energy and charging count"""
    time: float
    episode_seconds: float
    max_deadline: float
    """the time scale of observations"""
    base: np.ndarray
    """(2,) metres"""
    others: np.ndarray
    """(A, A-1): every agent but a, in index order"""
    # per vehicle type (A,)
    speed: np.ndarray
    capacity: np.ndarray
    energy_capacity: np.ndarray
    energy_per_m: np.ndarray
    charge_seconds: np.ndarray
    # per vehicle (B, A, ...)
    vehicle_pos: np.ndarray
    vehicle_load: np.ndarray
    vehicle_energy: np.ndarray
    vehicle_target: np.ndarray
    charge_left: np.ndarray
    lot_samples: np.ndarray
    lot_deadline: np.ndarray
    # per point slot (B, P, ...)
    point_pos: np.ndarray
    point_samples: np.ndarray
    point_priority: np.ndarray
    point_deadline: np.ndarray
    point_status: np.ndarray

    def target_positions(self) -> np.ndarray:
        """(B, A, 2) position of each vehicle's target."""
        ...

    def heading_counts(self) -> np.ndarray:
        """(B, P) number of vehicles whose target is each point."""
        ...
