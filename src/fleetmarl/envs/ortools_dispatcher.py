"""A rolling-horizon OR-Tools dispatcher: the strong reference policy ``"ortools"`` (issue 10).

Why a solver: greedy and random only bound a learned dispatcher from below. This policy re-plans the
whole fleet as a pickup-and-delivery problem with time windows whenever something changes (a vehicle
becomes idle, a new point appears) and, between those epochs, lets vehicles follow the last plan.

It reads only what the learner reads (the batched observation, columns named in
:mod:`fleetmarl.envs.spaces`) plus the config the environment was built from (speeds, capacities,
energy, map size, step length, deadlines). It never sees future arrivals.

The model, per batch row and epoch (docs/environment.md, "OR-Tools dispatcher", lists the approximations):
    * each known active point is an optional pickup (``AddDisjunction``, penalty = priority weight x
      samples) paired with a delivery node at the base (``AddPickupAndDelivery``);
    * time is counted in whole steps: a vehicle leaves a node at the first step boundary after it
      arrives, which is exactly how the environment releases it; a pickup must happen by its deadline
      and the paired delivery by the same deadline (and by the end of the shift);
    * per-vehicle transit matrices carry heterogeneous speeds and energy use; capacity and energy are
      dimensions (energy capped at the charge on board: plans never count on recharging);
    * busy vehicles start where and when they will next be free (at their target, at the base, or
      after charging), so their commitments are respected;
    * the first leg of an idle vehicle is restricted to points its action mask allows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.spaces import POINT, STATE
from fleetmarl.errors import UserError

INSTALL_HINT = "pip install -e '.[ortools]'"
PENALTY_PER_WEIGHTED_SAMPLE = 50_000  # cost units (deciseconds of driving) a dropped weighted sample costs
LATENCY_PER_WEIGHTED_SAMPLE = 300     # cost per step a weighted sample waits to reach the base (spreads the work)
LATE_ONLY_SHARE = 0.2      # penalty share of a point that can still be picked up but no longer delivered on time
COST_PER_SECOND = 10       # arc costs are travel time in deciseconds: fast vehicles are cheaper per metre
ENERGY_SCALE = 1000        # energy units -> integer milli-units
ENERGY_MARGIN = 1e-3       # fraction of the battery kept back against float32 rounding of the observation
STEP_EPS = 1e-6            # a trip of exactly k steps' length takes k steps (the env's arrival tolerance)
GRID_EPS = 1e-3            # deadlines read from float32 land within this many steps of the step grid
HORIZON_EXTRA_STEPS = 10_000  # time-dimension room past the shift for late-only deliveries

Token = tuple[str, tuple]  # ("pick", key) | ("drop", key) | ("cargo", ())


def load_ortools() -> tuple[Any, Any]:
    """``(pywrapcp, routing_enums_pb2)``, or a one-line error that names the extra to install."""
    try:
        from ortools.constraint_solver import pywrapcp, routing_enums_pb2
    except ImportError:
        raise UserError(f"the 'ortools' reference policy needs OR-Tools; install it with {INSTALL_HINT}") from None
    return pywrapcp, routing_enums_pb2


# ---------------------------------------------------------------------- what the dispatcher knows
@dataclass(frozen=True)
class Fleet:
    """Config constants the dispatcher may know (they define the environment, not its future)."""

    speed: np.ndarray
    capacity: np.ndarray
    energy_capacity: np.ndarray
    energy_per_m: np.ndarray
    charge_seconds: np.ndarray
    dt: float
    map_size: float
    max_deadline: float
    total_steps: int
    weights: np.ndarray
    samples_max: int

    @classmethod
    def from_config(cls, config: Config) -> Fleet:
        fleet = config.fleet()
        return cls(speed=np.asarray(fleet["speeds"], dtype=np.float64),
                   capacity=np.asarray(fleet["capacities"], dtype=np.int64),
                   energy_capacity=np.asarray(fleet["energy_capacity"], dtype=np.float64),
                   energy_per_m=np.asarray(fleet["energy_per_km"], dtype=np.float64) / 1000.0,
                   charge_seconds=np.asarray(fleet["charge_seconds"], dtype=np.float64),
                   dt=float(config.STEP_SECONDS), map_size=float(config.MAP_SIZE),
                   max_deadline=float(max(config.PRIORITY_DEADLINES)), total_steps=config.MAX_NUM_STEPS,
                   weights=np.asarray(config.PRIORITY_WEIGHTS, dtype=np.float64),
                   samples_max=config.POINT_SAMPLES_MAX)

    def steps(self, distance: np.ndarray, vehicle: int) -> np.ndarray:
        """Whole steps a trip takes: the vehicle is free again at the first step boundary after arriving."""
        raw = distance / (self.speed[vehicle] * self.dt)
        return np.where(distance > 0, np.ceil(raw - STEP_EPS / (self.speed[vehicle] * self.dt)), 0).astype(np.int64)


@dataclass
class Point:
    """An active point as the observation shows it; ``key`` tells a new point from an old one in a reused slot."""

    slot: int
    key: tuple
    pos: np.ndarray
    samples: int
    weight: float
    deadline_step: int


@dataclass
class Start:
    """Where and when a vehicle is next free to follow a new plan, and what it carries then."""

    pos: np.ndarray
    step: int
    load: int
    energy: float
    cargo_deadline_step: int | None  # earliest deadline of what it carries (None: empty)
    idle: bool                       # free now: its first leg becomes this step's action
    at_base: bool
    allowed: np.ndarray              # (P,) action mask; binds the first leg of an idle vehicle
    committed: tuple | None = None   # key of the point it is driving to (not re-planned)


@dataclass
class Scene:
    now: int
    points: list[Point]
    starts: list[Start]


def _grid_step(seconds: float, dt: float) -> int:
    """Last step boundary at or before ``seconds`` (deadlines sit on the grid; float32 noise is absorbed)."""
    return int(math.floor(seconds / dt + GRID_EPS))


def read_scene(obs: dict[str, np.ndarray], row: int, fleet: Fleet) -> Scene:
    """Rebuild one batch row's world from the observation: points, and each vehicle's next free moment."""
    state = obs["state"][row].astype(np.float64)
    features = obs["point_features"][row].astype(np.float64)
    mask = obs["action_mask"][row].astype(bool)
    now = int(round(state[0, STATE["elapsed"]] * fleet.total_steps))
    shared = features[0]  # per-point columns are the same in every vehicle's rows
    points = [_read_point(shared[j], j, now, fleet) for j in np.flatnonzero(shared[:, POINT["active"]] > 0.5)]
    by_slot = {p.slot: p for p in points}
    starts = [_read_start(state[a], mask[a, :-2], a, now, fleet, by_slot) for a in range(state.shape[0])]
    committed = {s.committed for s in starts if s.committed is not None}
    return Scene(now=now, points=[p for p in points if p.key not in committed], starts=starts)


def _read_point(row: np.ndarray, slot: int, now: int, fleet: Fleet) -> Point:
    half = fleet.map_size / 2.0
    pos = np.array([row[POINT["x"]], row[POINT["y"]]]) * half
    priority = int(np.argmax(row[POINT["priority_1"]:POINT["priority_3"] + 1]))
    deadline = now * fleet.dt + row[POINT["deadline_left"]] * fleet.max_deadline
    step = _grid_step(deadline, fleet.dt)
    return Point(slot=int(slot), key=(int(slot), step, priority, int(round(pos[0])), int(round(pos[1]))),
                 pos=pos, samples=int(round(row[POINT["samples"]] * fleet.samples_max)),
                 weight=float(fleet.weights[priority]), deadline_step=step)


def _read_start(s: np.ndarray, allowed: np.ndarray, a: int, now: int, fleet: Fleet,
                by_slot: dict[int, Point]) -> Start:
    """Positions are relative to the base (the origin here); a busy vehicle starts where its job ends."""
    half = fleet.map_size / 2.0
    pos = np.array([s[STATE["x"]], s[STATE["y"]]]) * half
    load = int(round(s[STATE["load"]] * fleet.capacity[a]))
    energy = s[STATE["energy"]] * fleet.energy_capacity[a]
    base_dist = float(np.hypot(*pos))
    cargo = None
    if load > 0:
        earliest = s[STATE["cargo_slack"]] * fleet.max_deadline + now * fleet.dt + base_dist / fleet.speed[a]
        cargo = _grid_step(earliest, fleet.dt)
    start = Start(pos=pos, step=now, load=load, energy=energy, cargo_deadline_step=cargo,
                  idle=s[STATE["idle"]] > 0.5, at_base=base_dist == 0.0, allowed=allowed)
    if s[STATE["charging"]] > 0.5:
        wait = s[STATE["charge_left"]] * fleet.charge_seconds[a] / fleet.dt
        start.step = now + max(int(math.ceil(wait - GRID_EPS)), 0)
        start.energy = fleet.energy_capacity[a]
    elif s[STATE["to_base"]] > 0.5:
        _drive(start, np.zeros(2), a, fleet)
        start.load, start.cargo_deadline_step = 0, None
    elif s[STATE["to_point"]] > 0.5:
        target = pos + np.array([s[STATE["target_dx"]], s[STATE["target_dy"]]]) * fleet.map_size
        point = _nearest(by_slot, target)
        _drive(start, target if point is None else point.pos, a, fleet)
        if point is not None:
            start.committed = point.key
            start.load += point.samples
            start.cargo_deadline_step = min(point.deadline_step, start.cargo_deadline_step or point.deadline_step)
    start.at_base = bool(np.all(start.pos == 0.0))
    return start


def _drive(start: Start, to: np.ndarray, a: int, fleet: Fleet) -> None:
    distance = float(np.hypot(*(to - start.pos)))
    start.step += int(fleet.steps(np.array(distance), a))
    start.energy -= distance * fleet.energy_per_m[a]
    start.pos = to


def _nearest(by_slot: dict[int, Point], target: np.ndarray) -> Point | None:
    """The active point a busy vehicle drives to (its target offset names a position, not a slot)."""
    if not by_slot:
        return None
    best = min(by_slot.values(), key=lambda p: float(np.hypot(*(p.pos - target))))
    return best if np.hypot(*(best.pos - target)) < 1.0 else None


# ---------------------------------------------------------------------- the routing model
@dataclass
class Layout:
    """Node numbering of one model: 0 = base (every route's end), then starts, pickups, deliveries, cargo."""

    pos: np.ndarray                  # (N, 2) metres from the base
    demand: list[int]
    pickups: dict[tuple, int]        # point key -> pickup node
    deliveries: dict[tuple, int]     # point key -> delivery node
    cargo: dict[int, int]            # vehicle -> node that unloads what it already carries
    tokens: dict[int, Token] = field(default_factory=dict)  # node -> plan token


def lay_out(scene: Scene) -> Layout:
    V, P = len(scene.starts), len(scene.points)
    cargo_vehicles = [v for v, s in enumerate(scene.starts) if s.load > 0]
    n = 1 + V + 2 * P + len(cargo_vehicles)
    pos = np.zeros((n, 2))
    demand = [0] * n
    layout = Layout(pos=pos, demand=demand, pickups={}, deliveries={}, cargo={})
    for v, s in enumerate(scene.starts):
        pos[1 + v] = s.pos
    for i, p in enumerate(scene.points):
        pick, drop = 1 + V + i, 1 + V + P + i
        pos[pick] = p.pos
        demand[pick], demand[drop] = p.samples, -p.samples
        layout.pickups[p.key], layout.deliveries[p.key] = pick, drop
        layout.tokens[pick], layout.tokens[drop] = ("pick", p.key), ("drop", p.key)
    for i, v in enumerate(cargo_vehicles):
        node = 1 + V + 2 * P + i
        demand[node] = -scene.starts[v].load
        layout.cargo[v] = node
        layout.tokens[node] = ("cargo", ())
    return layout


@dataclass
class SolveStats:
    """Counts for the benchmark: how many solves, their wall time, and how often the time cap bound."""

    solves: int = 0
    seconds: float = 0.0
    capped: int = 0
    warm_starts: int = 0
    failures: int = 0


class RoutingSolver:
    """Builds and solves one epoch's model; knows OR-Tools, nothing about batches or plans."""

    def __init__(self, fleet: Fleet, solution_limit: int, time_limit_ms: int):
        self.pywrapcp, enums = load_ortools()
        self.fleet = fleet
        self.time_limit_ms = time_limit_ms
        params = self.pywrapcp.DefaultRoutingSearchParameters()
        params.first_solution_strategy = enums.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION
        params.local_search_metaheuristic = enums.LocalSearchMetaheuristic.GREEDY_DESCENT
        params.solution_limit = solution_limit
        params.time_limit.FromMilliseconds(time_limit_ms)
        self.params = params
        self.stats = SolveStats()

    def solve(self, scene: Scene, previous: list[list[Token]] | None) -> list[list[Token]]:
        """Each vehicle's planned tokens after its start; the previous plan seeds the search when it fits."""
        layout = lay_out(scene)
        manager = self.pywrapcp.RoutingIndexManager(len(layout.pos), len(scene.starts),
                                                    [1 + v for v in range(len(scene.starts))],
                                                    [0] * len(scene.starts))
        routing = self.pywrapcp.RoutingModel(manager)
        self._add_costs_and_dimensions(routing, manager, scene, layout)
        self._add_points(routing, manager, scene, layout)
        self._bind_first_legs(routing, manager, scene, layout)
        routing.CloseModelWithParameters(self.params)
        initial = self._initial(routing, manager, layout, previous)
        started = time.perf_counter()
        if initial is not None:
            self.stats.warm_starts += 1
            solution = routing.SolveFromAssignmentWithParameters(initial, self.params)
        else:
            solution = routing.SolveWithParameters(self.params)
        elapsed = time.perf_counter() - started
        self.stats.solves += 1
        self.stats.seconds += elapsed
        self.stats.capped += elapsed * 1000.0 >= 0.95 * self.time_limit_ms
        if solution is None:
            self.stats.failures += 1
            return [[] for _ in scene.starts]
        return [self._route(routing, manager, layout, solution, v) for v in range(len(scene.starts))]

    def _add_costs_and_dimensions(self, routing, manager, scene: Scene, layout: Layout) -> None:
        f = self.fleet
        diff = layout.pos[:, None, :] - layout.pos[None, :, :]
        dist = np.sqrt((diff**2).sum(axis=-1))
        time_cb, energy_cb = [], []
        for v in range(len(scene.starts)):
            steps = f.steps(dist, v)
            cost = np.ceil(dist / f.speed[v] * COST_PER_SECOND).astype(np.int64)
            energy = np.ceil(dist * f.energy_per_m[v] * ENERGY_SCALE).astype(np.int64)
            time_cb.append(routing.RegisterTransitMatrix(steps.tolist()))
            energy_cb.append(routing.RegisterTransitMatrix(energy.tolist()))
            routing.SetArcCostEvaluatorOfVehicle(routing.RegisterTransitMatrix(cost.tolist()), v)
        horizon = f.total_steps + HORIZON_EXTRA_STEPS
        routing.AddDimensionWithVehicleTransits(time_cb, 0, horizon, False, "time")
        energy_caps = [self._energy_cap(s, v) for v, s in enumerate(scene.starts)]
        routing.AddDimensionWithVehicleTransitAndCapacity(energy_cb, 0, energy_caps, True, "energy")
        demand = routing.RegisterUnaryTransitVector(layout.demand)
        routing.AddDimensionWithVehicleCapacity(demand, 0, [int(c) for c in f.capacity], False, "load")
        time_dim, load_dim = routing.GetDimensionOrDie("time"), routing.GetDimensionOrDie("load")
        for v, s in enumerate(scene.starts):
            time_dim.CumulVar(routing.Start(v)).SetValue(min(s.step, horizon))
            load_dim.CumulVar(routing.Start(v)).SetValue(s.load)
            if v in layout.cargo:
                node = manager.NodeToIndex(layout.cargo[v])
                routing.VehicleVar(node).SetValue(v)  # mandatory, and only this vehicle holds it
                if s.cargo_deadline_step is not None and self._earliest_home(s, v) <= s.cargo_deadline_step:
                    time_dim.CumulVar(node).SetMax(s.cargo_deadline_step)

    def _energy_cap(self, s: Start, v: int) -> int:
        """Energy on board less a rounding margin, but never less than the way home (the mask promised it)."""
        f = self.fleet
        home = math.ceil(float(np.hypot(*s.pos)) * f.energy_per_m[v] * ENERGY_SCALE)
        return max(int((s.energy - ENERGY_MARGIN * f.energy_capacity[v]) * ENERGY_SCALE), home, 0)

    def _earliest_home(self, s: Start, v: int) -> int:
        return s.step + int(self.fleet.steps(np.array(float(np.hypot(*s.pos))), v))

    def _add_points(self, routing, manager, scene: Scene, layout: Layout) -> None:
        """Pickup + base delivery per point; deadlines on both; dropping costs its priority-weighted value."""
        time_dim = routing.GetDimensionOrDie("time")
        end = self.fleet.total_steps
        for p in scene.points:
            pick = manager.NodeToIndex(layout.pickups[p.key])
            drop = manager.NodeToIndex(layout.deliveries[p.key])
            routing.AddPickupAndDelivery(pick, drop)
            on_time = self._on_time_possible(scene, p)
            value = PENALTY_PER_WEIGHTED_SAMPLE * p.weight * p.samples * (1.0 if on_time else LATE_ONLY_SHARE)
            routing.AddDisjunction([pick], int(value))
            routing.AddDisjunction([drop], 0)
            time_dim.CumulVar(pick).SetMax(max(min(p.deadline_step, end), 0))
            if on_time:  # a late delivery earns next to nothing, so only on-time ones are worth hurrying
                time_dim.CumulVar(drop).SetMax(min(p.deadline_step, end))
                latency = int(LATENCY_PER_WEIGHTED_SAMPLE * p.weight * p.samples)
                time_dim.SetCumulVarSoftUpperBound(drop, scene.now, latency)

    def _on_time_possible(self, scene: Scene, p: Point) -> bool:
        """Some vehicle could drive straight there and home by the deadline (and before the shift ends)."""
        f = self.fleet
        limit = min(p.deadline_step, f.total_steps)
        for v, s in enumerate(scene.starts):
            there = s.step + int(f.steps(np.array(float(np.hypot(*(p.pos - s.pos)))), v))
            back = int(f.steps(np.array(float(np.hypot(*p.pos))), v))
            if there <= p.deadline_step and there + back <= limit:
                return True
        return False

    def _bind_first_legs(self, routing, manager, scene: Scene, layout: Layout) -> None:
        """An idle vehicle leaves now, so its first pickup must be one its action mask allows."""
        for v, s in enumerate(scene.starts):
            if not s.idle:
                continue
            banned = [manager.NodeToIndex(layout.pickups[p.key]) for p in scene.points if not s.allowed[p.slot]]
            if banned:
                routing.NextVar(routing.Start(v)).RemoveValues(banned)

    def _initial(self, routing, manager, layout: Layout, previous: list[list[Token]] | None):
        """The last plan, translated to this model's nodes, as the search's starting point (None if unusable)."""
        if previous is None:
            return None
        routes = [seed_route(tokens, layout, v) for v, tokens in enumerate(previous)]
        if not any(routes):
            return None
        return routing.ReadAssignmentFromRoutes([[manager.NodeToIndex(n) for n in r] for r in routes], True)

    def _route(self, routing, manager, layout: Layout, solution, v: int) -> list[Token]:
        tokens: list[Token] = []
        index = solution.Value(routing.NextVar(routing.Start(v)))
        while not routing.IsEnd(index):
            tokens.append(layout.tokens[manager.IndexToNode(index)])
            index = solution.Value(routing.NextVar(index))
        return tokens


def seed_route(tokens: list[Token], layout: Layout, vehicle: int) -> list[int]:
    """Nodes of one previous route still present now; a pickup whose delivery is gone is dropped with it,
    and a delivery of something the vehicle now carries becomes its cargo node."""
    nodes: list[int] = []
    picked: set[tuple] = set()
    for kind, key in tokens:
        if kind == "pick" and key in layout.pickups:
            nodes.append(layout.pickups[key])
            picked.add(key)
        elif kind == "drop" and key in picked:
            nodes.append(layout.deliveries[key])
        elif kind in ("drop", "cargo") and vehicle in layout.cargo and layout.cargo[vehicle] not in nodes:
            nodes.append(layout.cargo[vehicle])
    delivered = {key for kind, key in tokens if kind == "drop"}
    unpaired = {layout.pickups[k] for k in picked - delivered}
    nodes = [n for n in nodes if n not in unpaired]
    if vehicle in layout.cargo and layout.cargo[vehicle] not in nodes:
        nodes.append(layout.cargo[vehicle])
    return nodes


# ---------------------------------------------------------------------- the batch policy
@dataclass
class RowMemory:
    """What one batch row's dispatcher remembers between steps: the plan and what it was made for."""

    point_keys: frozenset = frozenset()
    idle: np.ndarray | None = None
    dispatched: np.ndarray | None = None  # sent somewhere last step (a short trip ends idle again, unseen busy)
    plan: list[list[Token]] | None = None
    last_step: int = -1


class OrToolsDispatcher:
    """``obs -> actions`` for a batch; one plan per batch row, re-solved only at decision epochs."""

    def __init__(self, config: Config):
        self.fleet = Fleet.from_config(config)
        self.solver = RoutingSolver(self.fleet, config.ORTOOLS_SOLUTION_LIMIT, config.ORTOOLS_TIME_LIMIT_MS)
        self.rows: list[RowMemory] = []
        self.decisions = 0

    @property
    def stats(self) -> SolveStats:
        return self.solver.stats

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        mask = obs["action_mask"]
        B, A, num_actions = mask.shape
        if len(self.rows) != B:
            self.rows = [RowMemory() for _ in range(B)]
        actions = np.full((B, A), num_actions - 2, dtype=np.int64)
        for b in range(B):
            actions[b] = self._act_row(obs, b, num_actions - 2)
        return actions

    def _act_row(self, obs: dict[str, np.ndarray], b: int, P: int) -> np.ndarray:
        scene = read_scene(obs, b, self.fleet)
        memory = self.rows[b]
        if scene.now <= memory.last_step:  # a new episode in this row
            memory = self.rows[b] = RowMemory()
        idle = np.array([s.idle for s in scene.starts])
        keys = frozenset(p.key for p in scene.points) | frozenset(s.committed for s in scene.starts if s.committed)
        if is_epoch(memory, keys, idle):
            memory.plan = self.solver.solve(scene, memory.plan)
            self.decisions += 1
        actions = np.array([first_action(s, plan, P) if s.idle else P
                            for s, plan in zip(scene.starts, memory.plan, strict=True)], dtype=np.int64)
        at_base = np.array([s.at_base for s in scene.starts])
        memory.point_keys, memory.idle, memory.last_step = keys, idle, scene.now
        memory.dispatched = idle & ((actions < P) | ((actions == P + 1) & ~at_base))
        return actions


def is_epoch(memory: RowMemory, keys: frozenset, idle: np.ndarray) -> bool:
    """Re-plan when a point appeared since the last plan or a vehicle has just become idle (including one
    sent off last step that is already back to idle: a one-step trip)."""
    if memory.plan is None or memory.idle is None or memory.dispatched is None:
        return True
    return bool(keys - memory.point_keys) or bool((idle & (~memory.idle | memory.dispatched)).any())


def first_action(start: Start, tokens: list[Token], P: int) -> int:
    """An idle vehicle's action: its first planned pickup, home for a delivery, home (or charge) with no plan.

    At the base, stay charges a vehicle that is not full: with nothing planned that is free time.
    """
    if tokens and tokens[0][0] == "pick":
        slot = tokens[0][1][0]
        return slot if start.allowed[slot] else P
    if start.at_base:
        return P
    return P + 1
