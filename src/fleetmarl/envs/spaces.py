"""The observation and action contract between the environment and the learner.

Networks are sized from :func:`observation_dims` only, so the environment may add a column without the
learner changing. Every column is named below (``*_COLUMNS``) and documented in ``docs/environment.md``;
reference policies read columns by these names, never by bare numbers.

Per agent, one observation is a dict with exactly these keys:
    state           (STATE_DIM,)                 its own vehicle
    point_features  (NUM_POINTS, POINT_DIM)      one row per task-point slot (empty slots flagged)
    other_obs       (NUM_AGENTS - 1, OTHER_DIM)  the other vehicles, relative to it
    action_mask     (NUM_ACTIONS,)               True = allowed (bool batched, int8 in the PettingZoo env)
Batched forms add leading dims: ``(B, NUM_AGENTS, ...)``. Every float column lies in [-1, 1].

Actions are discrete: ``0..NUM_POINTS-1`` go to point j, ``NUM_POINTS`` stay/charge,
``NUM_POINTS + 1`` return to base.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from fleetmarl.config import Config

STATE_COLUMNS = (
    "x", "y",                      # position relative to the base / (MAP_SIZE / 2)
    "load",                        # samples carried / capacity
    "energy",                      # energy / energy capacity
    "charge_left",                 # charging seconds left / full-charge seconds
    "speed",                       # own speed / fastest speed in the fleet (vehicle class)
    "capacity",                    # own capacity / largest capacity in the fleet (vehicle class)
    "elapsed",                     # elapsed fraction of the episode
    "idle", "to_point", "to_base", "charging",  # what it is doing now (one-hot)
    "target_dx", "target_dy",      # current target relative to it / MAP_SIZE (0 when idle)
    "base_distance",               # distance to the base / (MAP_SIZE / sqrt 2)
    "cargo_slack",                 # (earliest carried deadline - now - time to base) / max deadline; 1 if empty
)
POINT_COLUMNS = (
    # per vehicle and point
    "dx", "dy",                    # point relative to the vehicle / MAP_SIZE
    "distance",                    # distance / (MAP_SIZE * sqrt 2)
    "feasible",                    # this vehicle may choose it now (= the action mask entry)
    "arrival_slack",               # (deadline - now - travel time) / max deadline
    # per point, the same for every vehicle
    "samples",                     # samples / POINT_SAMPLES_MAX
    "deadline_left",               # seconds to deadline / max deadline
    "priority_1", "priority_2", "priority_3",  # one-hot priority
    "heading",                     # vehicles currently heading to it / NUM_AGENTS
    "x", "y",                      # point relative to the base / (MAP_SIZE / 2)
    "active", "served", "missed",  # slot status; all three 0 = empty slot
)
OTHER_COLUMNS = (
    "dx", "dy",                    # other vehicle relative to this one / MAP_SIZE
    "distance",                    # distance / (MAP_SIZE * sqrt 2)
    "load",                        # its samples carried / its capacity
    "energy",                      # its energy / its energy capacity
    "speed",                       # its speed / fastest speed (vehicle class)
    "idle", "to_point", "to_base", "charging",
    "target_dx", "target_dy",      # its target relative to this vehicle / MAP_SIZE (0 when idle)
)

STATE_DIM = len(STATE_COLUMNS)
POINT_DIM = len(POINT_COLUMNS)
OTHER_DIM = len(OTHER_COLUMNS)
OBS_KEYS = ("state", "point_features", "other_obs", "action_mask")
ACTOR_INPUT_KEYS = OBS_KEYS[:3]
"""What an actor reads, in the order of ``agent.act(state, point_features, other_obs)`` (the guide's call)."""

STATE = {name: i for i, name in enumerate(STATE_COLUMNS)}
POINT = {name: i for i, name in enumerate(POINT_COLUMNS)}
OTHER = {name: i for i, name in enumerate(OTHER_COLUMNS)}


@dataclass(frozen=True)
class ObservationDims:
    """Sizes the networks need; ``other`` rows = NUM_AGENTS - 1 (may be 0 for one agent)."""

    num_agents: int
    num_points: int
    state: int
    point: int
    other: int
    other_rows: int
    num_actions: int
    active_column: int | None = None
    """point-feature column that is 1 for a point an agent can still serve (None: every row counts)"""
    heading_column: int | None = None
    """point-feature column > 0 when some vehicle already heads to the point (None: not known)"""
    distance_column: int | None = None
    """point-feature column of the vehicle's distance to the point (a POINT_VIEW ranks by it)"""
    feasible_column: int | None = None
    """point-feature column that is 1 where the vehicle may choose the point now (ranked first by a POINT_VIEW)"""
    other_distance_column: int | None = None
    """other-vehicle column of its distance to this vehicle (a VEHICLE_VIEW ranks by it)"""


def stay_action(num_points: int) -> int:
    return num_points


def return_action(num_points: int) -> int:
    return num_points + 1


def observation_dims(config: Config) -> ObservationDims:
    return ObservationDims(
        num_agents=config.NUM_AGENTS,
        num_points=config.NUM_POINTS,
        state=STATE_DIM,
        point=POINT_DIM,
        other=OTHER_DIM,
        other_rows=config.NUM_AGENTS - 1,
        num_actions=config.NUM_POINTS + 2,
        active_column=POINT["active"],
        heading_column=POINT["heading"],
        distance_column=POINT["distance"],
        feasible_column=POINT["feasible"],
        other_distance_column=OTHER["distance"],
    )


def agent_observation_space(config: Config) -> spaces.Dict:
    """Gymnasium space of one agent's observation (the PettingZoo env's ``observation_space``).

    The mask is ``MultiBinary`` (int8 values) because Gymnasium's ``Discrete.sample(mask=...)`` wants int8.
    """
    dims = observation_dims(config)
    return spaces.Dict({
        "state": spaces.Box(-1.0, 1.0, (dims.state,), np.float32),
        "point_features": spaces.Box(-1.0, 1.0, (dims.num_points, dims.point), np.float32),
        "other_obs": spaces.Box(-1.0, 1.0, (dims.other_rows, dims.other), np.float32),
        "action_mask": spaces.MultiBinary(dims.num_actions),
    })


def agent_action_space(config: Config) -> spaces.Discrete:
    return spaces.Discrete(config.NUM_POINTS + 2)
