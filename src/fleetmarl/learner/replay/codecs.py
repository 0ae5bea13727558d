"""How one observation frame (all agents of one environment) is stored, and rebuilt bit for bit.

Why compact (issue 11: 12.5 KB per transition became 1.2 GB per checkpoint):
1. *What every vehicle sees alike is stored once per step.* The per-point columns of
   ``envs.spaces.POINT_COLUMNS`` after ``samples`` are the same for every vehicle; ``feasible`` is the
   action-mask entry; the other-vehicle columns ``load`` .. ``charging`` are that vehicle's own state
   columns. :class:`FleetFrameCodec` checks each of these at encoding and rebuilds them in batch at
   decoding, bit for bit.
2. *Narrow types:* point and relative other-vehicle columns as float16 (every column lies in [-1, 1];
   relative error <= 2^-11), masks as bits, the own state as float32.

One frame at the defaults (A=5, N=30): state 320 + point rows 1,200 + shared point rows 660 + relative
other rows 200 + mask bits 20 = 2,400 bytes. Data that does not have this structure (tests with random
observations, another environment) is stored with :class:`PlainFrameCodec`. A codec's ``name`` is the
``layout`` saved in checkpoints, so :data:`CODECS` maps saved names back to codecs.

3. *A vehicle's view, not the whole fleet* (:class:`ViewFrameCodec`, a ``POINT_VIEW`` or ``VEHICLE_VIEW``
   run): a vehicle's networks read only its V nearest points and W nearest other vehicles, so only those
   rows are stored, with the slot or row each came from. The fleet layout's point and other-vehicle rows
   grow as A x N and A x (A - 1), i.e. with the fleet squared; these grow as A x V and A x W.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fleetmarl.envs.spaces import OTHER_COLUMNS, POINT, POINT_COLUMNS, STATE, ObservationDims
from fleetmarl.learner.shared_networks import nearest_others, nearest_rows

FLOAT16_MAX = float(np.finfo(np.float16).max)
NO_SLOT = -1
"""``point_slots`` of a view row that holds no point (a vehicle that sees fewer than V active points)."""

# Point columns "the same for every vehicle" (envs/spaces.py): from `samples` on.
_SHARED_POINT = np.arange(POINT["samples"], len(POINT_COLUMNS))
_FEASIBLE = POINT["feasible"]
_VEHICLE_POINT = np.array([i for i in range(POINT["samples"]) if i != _FEASIBLE])
# Other-vehicle columns that are that vehicle's own state column of the same name (target_dx/dy are not:
# the other's target is relative to the observer).
_OTHER_FROM_STATE = np.array([OTHER_COLUMNS.index(name) for name in
                              ("load", "energy", "speed", "idle", "to_point", "to_base", "charging")])
_STATE_FOR_OTHER = np.array([STATE[OTHER_COLUMNS[i]] for i in _OTHER_FROM_STATE])
_OTHER_RELATIVE = np.array([i for i in range(len(OTHER_COLUMNS)) if i not in set(_OTHER_FROM_STATE.tolist())])


def _mask_bytes(num_actions: int) -> int:
    """Bytes of one agent's packed action mask."""
    return (num_actions + 7) // 8


def _pack_mask(mask: np.ndarray) -> np.ndarray:
    """Masks as bits (little-endian within a byte): an eighth of a bool array."""
    return np.packbits(np.asarray(mask, dtype=bool), axis=-1, bitorder="little")


def _unpack_mask(packed: np.ndarray, num_actions: int) -> np.ndarray:
    """Inverse of :func:`_pack_mask`, as a bool view (no copy)."""
    return np.unpackbits(packed, axis=-1, count=num_actions, bitorder="little").view(bool)


def _half(value: np.ndarray, what: str) -> np.ndarray:
    """``value`` as float16, refusing values float16 would turn into inf."""
    if np.abs(value).max(initial=0.0) > FLOAT16_MAX:
        raise ValueError(f"{what} has values beyond float16 range ({FLOAT16_MAX}); normalise them in the environment")
    return value.astype(np.float16)


class PlainFrameCodec:
    """Every observation key as given: state and other_obs float32, point_features float16, mask bits."""

    name = "plain"

    def __init__(self, dims: ObservationDims, view: int = 0, vehicle_view: int = 0) -> None:
        a = dims.num_agents
        self.dims = dims
        self.fields = {
            "state": ((a, dims.state), np.float32),
            "point_features": ((a, dims.num_points, dims.point), np.float16),
            "other_obs": ((a, dims.other_rows, dims.other), np.float32),
            "action_mask": ((a, _mask_bytes(dims.num_actions)), np.uint8),
        }

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "state": np.asarray(obs["state"], dtype=np.float32),
            "point_features": _half(np.asarray(obs["point_features"]), "point_features"),
            "other_obs": np.asarray(obs["other_obs"], dtype=np.float32),
            "action_mask": _pack_mask(obs["action_mask"]),
        }

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {
            "state": frames["state"],
            "point_features": frames["point_features"].astype(np.float32),
            "other_obs": frames["other_obs"],
            "action_mask": _unpack_mask(frames["action_mask"], self.dims.num_actions),
        }


class FleetFrameCodec:
    """The sampling fleet's observation with what every vehicle sees alike stored once (module docstring)."""

    name = "fleet"

    def __init__(self, dims: ObservationDims, view: int = 0, vehicle_view: int = 0) -> None:
        a, p = dims.num_agents, dims.num_points
        self.dims = dims
        self.others = np.array([[j for j in range(a) if j != i] for i in range(a)], dtype=np.int64).reshape(a, a - 1)
        self.fields = {
            "state": ((a, dims.state), np.float32),
            "point_vehicle": ((a, p, len(_VEHICLE_POINT)), np.float16),
            "point_shared": ((p, len(_SHARED_POINT)), np.float16),
            "other_relative": ((a, dims.other_rows, len(_OTHER_RELATIVE)), np.float16),
            "action_mask": ((a, _mask_bytes(dims.num_actions)), np.uint8),
        }
        where: dict[int, tuple[str, int]] = {int(c): ("vehicle", i) for i, c in enumerate(_VEHICLE_POINT)}
        where[_FEASIBLE] = ("feasible", 0)
        where.update({int(c): ("shared", i) for i, c in enumerate(_SHARED_POINT)})
        self._point_runs = _runs([where[c] for c in range(len(POINT_COLUMNS))])

    def problem(self, obs: Mapping[str, np.ndarray]) -> str | None:
        """Why ``obs`` does not have the fleet structure this codec relies on, or None."""
        d = self.dims
        if d.point != len(POINT_COLUMNS) or d.other != len(OTHER_COLUMNS) or d.num_agents < 1:
            return "observation widths differ from envs/spaces.py"
        points, mask = np.asarray(obs["point_features"]), np.asarray(obs["action_mask"], dtype=bool)
        shared = points[..., _SHARED_POINT]
        if not np.array_equal(shared, np.broadcast_to(shared[:, :1], shared.shape)):
            return "per-point columns differ between vehicles"
        if not np.array_equal(points[..., _FEASIBLE], mask[..., : d.num_points].astype(points.dtype)):
            return "point column 'feasible' is not the action mask"
        if d.other_rows:
            derived = np.asarray(obs["state"])[:, self.others][..., _STATE_FOR_OTHER]
            if not np.array_equal(np.asarray(obs["other_obs"])[..., _OTHER_FROM_STATE], derived):
                return "other-vehicle columns are not the other vehicles' state columns"
        return None

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        problem = self.problem(obs)
        if problem is not None:
            raise ValueError(f"observation does not fit the compact fleet replay layout: {problem} "
                             "(learner/replay/codecs.py FleetFrameCodec; use layout='plain' for other data)")
        points = np.asarray(obs["point_features"])
        return {
            "state": np.asarray(obs["state"], dtype=np.float32),
            "point_vehicle": _half(points[..., _VEHICLE_POINT], "point_features"),
            "point_shared": _half(points[:, 0][..., _SHARED_POINT], "point_features"),
            "other_relative": _half(np.asarray(obs["other_obs"])[..., _OTHER_RELATIVE], "other_obs"),
            "action_mask": _pack_mask(obs["action_mask"]),
        }

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Full float32 observations (n, A, ...) from encoded frames; NumPy on the host (single-threaded:
        no thread-pool stalls on a busy machine), widened once into the output arrays."""
        d = self.dims
        state = frames["state"]
        n = state.shape[0]
        mask = _unpack_mask(frames["action_mask"], d.num_actions)
        points = np.empty((n, d.num_agents, d.num_points, d.point), dtype=np.float32)
        vehicle, shared = frames["point_vehicle"], frames["point_shared"][:, None]
        sources = {"vehicle": vehicle, "shared": shared, "feasible": mask[..., : d.num_points, None]}
        for start, stop, source, first in self._point_runs:  # a few slice copies, not one per column
            points[..., start:stop] = sources[source][..., first:first + stop - start]
        other = np.empty((n, d.num_agents, d.other_rows, d.other), dtype=np.float32)
        if d.other_rows:
            other[..., _OTHER_RELATIVE] = frames["other_relative"]
            other[..., _OTHER_FROM_STATE] = state[:, self.others][..., _STATE_FOR_OTHER]
        return {"state": state, "point_features": points, "other_obs": other, "action_mask": mask}


def _runs(sources: list[tuple[str, int]]) -> list[tuple[int, int, str, int]]:
    """Output columns [start, stop) that copy consecutive columns of one source from ``first`` on.

    ``sources[c]`` = (source name, column in it) for each output column c.
    """
    runs: list[tuple[int, int, str, int]] = []
    for column, (source, index) in enumerate(sources):
        if runs and runs[-1][2] == source and runs[-1][3] + (column - runs[-1][0]) == index:
            start, _, _, first = runs[-1]
            runs[-1] = (start, column + 1, source, first)
        else:
            runs.append((column, column + 1, source, index))
    return runs


class ViewFrameCodec(FleetFrameCodec):
    """The fleet layout with each vehicle's view only: its ``view`` nearest points (all with 0) and its
    ``vehicle_view`` nearest other vehicles (all with 0); module docstring, point 3.

    Decodes to ``point_features`` (n, A, V, F) in slot order, ``point_slots`` (n, A, V) (``NO_SLOT`` on
    empty rows, which are all zeros and so inactive), ``heading_taken`` (n, N) (what the coordinated
    choices need of the points outside a vehicle's view) and ``other_obs`` (n, A, W, O) of the W nearest
    others, in the order of their rows. Both views are cut from the fleet layout's decoded frame by the
    functions the networks cut theirs with (:func:`~fleetmarl.learner.shared_networks.nearest_rows`,
    :func:`~fleetmarl.learner.shared_networks.nearest_others`), so the learner reads the rows it would
    have selected from the fleet layout.
    """

    name = "fleet_view"

    def __init__(self, dims: ObservationDims, view: int = 0, vehicle_view: int = 0) -> None:
        super().__init__(dims)
        if view <= 0 and vehicle_view <= 0:
            raise ValueError(f"the {self.name!r} replay layout needs POINT_VIEW or VEHICLE_VIEW > 0")
        a, n = dims.num_agents, dims.num_points
        self.view = min(view, n) if view > 0 else n
        self.vehicle_view = min(vehicle_view, dims.other_rows) if vehicle_view > 0 else dims.other_rows
        self.fields = {
            "state": ((a, dims.state), np.float32),
            "view_rows": ((a, self.view, dims.point), np.float16),
            "point_slots": ((a, self.view), np.int16),
            "heading_taken": ((_mask_bytes(n),), np.uint8),
            "other_rows": ((a, self.vehicle_view), np.int16),
            "other_relative": ((a, self.vehicle_view, len(_OTHER_RELATIVE)), np.float16),
            "action_mask": ((a, _mask_bytes(dims.num_actions)), np.uint8),
        }

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        full = super().encode(obs)
        return self.cut(full, super().decode(full))

    def cut(self, full: Mapping[str, np.ndarray], decoded: Mapping[str, np.ndarray],
            pick: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """This layout's frames from the fleet layout's frames ``full`` and their decoding ``decoded``;
        ``pick`` (n, A): the dispatch prior's choices, which go first in each view, as the networks cut it."""
        points = decoded["point_features"]  # (n, A, N, F) as the fleet layout would replay them
        slots = self.view_slots(points, pick)
        rows = np.take_along_axis(points, np.maximum(slots, 0)[..., None], axis=2)
        rows[slots == NO_SLOT] = 0.0
        others = decoded["other_obs"]  # (n, A, A-1, O)
        if self.vehicle_view < self.dims.other_rows:
            nearest = nearest_others(torch.from_numpy(others), self.dims, self.vehicle_view).numpy()
        else:
            nearest = np.broadcast_to(np.arange(self.dims.other_rows), others.shape[:-1])
        return {
            "state": full["state"],
            "view_rows": rows.astype(np.float16),  # exact: the values came from float16
            "point_slots": slots.astype(np.int16),
            "heading_taken": _pack_mask(points[:, 0, :, POINT["heading"]] > 0),
            "other_rows": nearest.astype(np.int16),
            "other_relative": np.take_along_axis(full["other_relative"], nearest[..., None], axis=2),
            "action_mask": full["action_mask"],
        }

    def view_slots(self, points: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
        """Each vehicle's view (n, A, V) of points (n, A, N, F), ``pick`` (n, A) first: the slots of its kept
        rows in ascending order (the order the networks lay rows out in), ``NO_SLOT`` after them."""
        n, a, num_points = points.shape[:3]
        tensor = torch.from_numpy(points)
        keep = (tensor[..., POINT["active"]] > 0.5).reshape(n * a, num_points)
        if self.view < num_points and bool((keep.sum(-1) > self.view).any()):
            first = None if pick is None else torch.from_numpy(np.asarray(pick, np.int64).reshape(n * a))
            keep = nearest_rows(keep, tensor, self.dims, self.view, first)
        keep = keep.numpy()
        # kept slots first, in slot order: a stable sort of "not kept" moves them ahead of the rest
        order = np.argsort(~keep, axis=-1, kind="stable")[:, : self.view]
        slots = np.where(np.take_along_axis(keep, order, axis=-1), order, NO_SLOT)
        return slots.reshape(n, a, self.view)

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = self.dims
        state = frames["state"]
        n, rows = state.shape[0], frames["other_rows"].astype(np.int64)  # (n, A, W) rows of the fleet layout
        other = np.empty((n, d.num_agents, self.vehicle_view, d.other), dtype=np.float32)
        if self.vehicle_view:
            vehicle = self.others[np.arange(d.num_agents)[:, None], rows]  # (n, A, W): which vehicle each row is
            other[..., _OTHER_RELATIVE] = frames["other_relative"]
            other[..., _OTHER_FROM_STATE] = state[np.arange(n)[:, None, None], vehicle][..., _STATE_FOR_OTHER]
        return {"state": state, "point_features": frames["view_rows"].astype(np.float32),
                "point_slots": frames["point_slots"].astype(np.int64), "other_obs": other,
                "action_mask": _unpack_mask(frames["action_mask"], d.num_actions),
                "heading_taken": _unpack_mask(frames["heading_taken"], d.num_points)}


FrameCodec = PlainFrameCodec | FleetFrameCodec | ViewFrameCodec
CODECS = {"plain": PlainFrameCodec, "fleet": FleetFrameCodec, "fleet_view": ViewFrameCodec}


def fitting_layout(dims: ObservationDims, *observations: Mapping[str, np.ndarray], view: bool = False) -> str:
    """What ``layout="auto"`` picks: "fleet" when every one of ``observations`` has the fleet structure,
    "fleet_view" if also ``view`` (the networks read only a view of the points or vehicles), else "plain"."""
    fleet = FleetFrameCodec(dims)
    if not all(fleet.problem(obs) is None for obs in observations):
        return "plain"
    return "fleet_view" if view else "fleet"
