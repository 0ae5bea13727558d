"""The observation and action contract between the environment and the learner.

Networks are sized from :func:`observation_dims` only, so the environment may add a column without the
learner changing. Every column is documented in ``docs/environment.md``.

Per agent, one observation is a dict with exactly these keys:
    state           (STATE_DIM,)                 its own vehicle
    point_features  (NUM_POINTS, POINT_DIM)      one row per task-point slot (empty slots flagged)
    other_obs       (NUM_AGENTS - 1, OTHER_DIM)  the other vehicles, relative to it
    action_mask     (NUM_ACTIONS,) bool          True = allowed
Batched forms add leading dims: ``(B, NUM_AGENTS, ...)``.

Actions are discrete: ``0..NUM_POINTS-1`` go to point j, ``NUM_POINTS`` stay/charge,
``NUM_POINTS + 1`` return to base.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetmarl.config import Config

STATE_DIM = 13
POINT_DIM = 10
OTHER_DIM = 8
OBS_KEYS = ("state", "point_features", "other_obs", "action_mask")


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
    )
