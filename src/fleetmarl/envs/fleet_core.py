"""The vectorised simulation behind every form of the environment: B copies as NumPy arrays.

One core steps all copies, all vehicles and all point slots with whole-array operations (no Python loop
over environments, agents or points), so the single PettingZoo env, the batched env and B=1 share one
code path and agree bit for bit. Randomness is always drawn from a caller-owned ``np.random.Generator``
in a fixed order and fixed shapes, so the same seed gives the same episode.

Public arrays (read them, e.g. for rendering; shapes with B copies, A vehicles, P point slots, L lots):
    vehicle_pos (B, A, 2) metres, base at (MAP_SIZE/2, MAP_SIZE/2)   vehicle_load (B, A) samples carried
    vehicle_energy (B, A)   charge_left (B, A) seconds   vehicle_target (B, A): -1 idle, j point, P base
    point_pos (B, P, 2)   point_samples (B, P)   point_priority (B, P) 1..3 (0 empty slot)
    point_deadline (B, P) absolute seconds   point_status (B, P): EMPTY, ACTIVE, SERVED, MISSED
    time (seconds since reset, same for all copies)   step_count
"""

from __future__ import annotations

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.geometry import planar_distance
from fleetmarl.envs.observation import build_observation
from fleetmarl.envs.state_codes import ACTIVE, EMPTY, IDLE, MISSED, SERVED
from fleetmarl.errors import ConfigError

ARRIVAL_TOLERANCE_M = 1e-6  # rounding slack so a trip of exactly k steps' distance takes k steps

METRIC_NAMES = (
    "on_time_rate", "service_rate_weighted", "missed_points", "energy_used", "distance_km",
    "charging_trips", "conflicts", "invalid_actions", "samples_appeared", "samples_delivered",
    "samples_on_time", "points_appeared", "points_served", "samples_on_board",
)
# Raw per-episode counters; the two rates in METRIC_NAMES are derived from them at episode end, and
# samples_on_board from the vehicles' loads.
_COUNTERS = (
    "missed_points", "energy_used", "distance_km", "charging_trips", "conflicts", "invalid_actions",
    "samples_appeared", "samples_delivered", "samples_on_time", "points_appeared", "points_served",
    "weighted_appeared", "weighted_served",
)


class FleetCore:
    """State and physics of B environment copies (design §2); see the module docstring for the arrays.

    Observations are built from it as a :class:`~fleetmarl.envs.fleet_state.FleetState` (what they may read).
    """

    def __init__(self, config: Config, num_envs: int):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.config = config
        self.num_envs = B = int(num_envs)
        self.num_agents = A = config.NUM_AGENTS
        self.num_points = P = config.NUM_POINTS
        self.full = config.ENVIRONMENT_TYPE == "full"
        fleet = config.fleet()
        if max(fleet["capacities"]) < config.POINT_SAMPLES_MAX:
            raise ConfigError(f"config key AGENT_CAPACITIES: no vehicle can hold POINT_SAMPLES_MAX="
                              f"{config.POINT_SAMPLES_MAX} samples (capacities {fleet['capacities']}); "
                              "raise a capacity or lower POINT_SAMPLES_MAX")
        self.speed = np.asarray(fleet["speeds"], dtype=np.float64)
        self.capacity = np.asarray(fleet["capacities"], dtype=np.int64)
        self.energy_capacity = np.asarray(fleet["energy_capacity"], dtype=np.float64)
        self.energy_per_m = np.asarray(fleet["energy_per_km"], dtype=np.float64) / 1000.0
        self.charge_seconds = np.asarray(fleet["charge_seconds"], dtype=np.float64)
        self.base = np.full(2, config.MAP_SIZE / 2.0)
        self.deadline_by_priority = np.asarray(config.PRIORITY_DEADLINES, dtype=np.float64)
        self.max_deadline = float(self.deadline_by_priority.max())  # the time scale of observations
        self.weight_by_priority = np.asarray(config.PRIORITY_WEIGHTS, dtype=np.float64)
        self.priority_cumprob = np.cumsum(np.asarray(config.PRIORITY_PROBS, dtype=np.float64))[:2]
        self.dt = float(config.STEP_SECONDS)
        self.episode_seconds = config.MAX_NUM_STEPS * self.dt
        self.num_lots = int(self.capacity.max())
        # others[a] = every agent but a, in index order: row order of other_obs
        self.others = np.array([[k for k in range(A) if k != a] for a in range(A)], dtype=np.int64).reshape(A, A - 1)  # every lot holds >= 1 sample, so this many always fit

        self.vehicle_pos = np.zeros((B, A, 2))
        self.vehicle_load = np.zeros((B, A), dtype=np.int64)
        self.vehicle_energy = np.zeros((B, A))
        self.charge_left = np.zeros((B, A))
        self.vehicle_target = np.full((B, A), IDLE, dtype=np.int64)
        # Carried "lots" (one per pickup) keep each pickup's deadline, so delivery can be judged on time.
        self.lot_samples = np.zeros((B, A, self.num_lots), dtype=np.int64)
        self.lot_weight = np.zeros((B, A, self.num_lots))
        self.lot_deadline = np.zeros((B, A, self.num_lots))
        self.point_pos = np.zeros((B, P, 2))
        self.point_samples = np.zeros((B, P), dtype=np.int64)
        self.point_priority = np.zeros((B, P), dtype=np.int64)
        self.point_deadline = np.zeros((B, P))
        self.point_status = np.zeros((B, P), dtype=np.int8)
        self.time = 0.0
        self.step_count = 0
        self.counters = {name: np.zeros(B) for name in _COUNTERS}
        self.action_mask = np.zeros((B, A, P + 2), dtype=bool)
        self._starting_charge = np.zeros((B, A), dtype=bool)  # set by each step's choices, read by charging

    # ------------------------------------------------------------------ reset
    def reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Start a new episode in every copy; returns the first batched observation."""
        B, P = self.num_envs, self.num_points
        self.time = 0.0
        self.step_count = 0
        self.vehicle_pos[:] = self.base
        self.vehicle_load[:] = 0
        self.vehicle_energy[:] = self.energy_capacity
        self.charge_left[:] = 0.0
        self.vehicle_target[:] = IDLE
        self.lot_samples[:] = 0
        self.lot_weight[:] = 0.0
        self.lot_deadline[:] = 0.0
        for counter in self.counters.values():
            counter[:] = 0.0
        pos, samples, priority = self._draw_points(rng)
        initial = self.config.INITIAL_POINTS if self.full else P
        present = np.broadcast_to(np.arange(P) < initial, (B, P))
        self.point_status[:] = EMPTY
        self.point_samples[:] = 0
        self.point_priority[:] = 0
        self.point_deadline[:] = 0.0
        self.point_pos[:] = 0.0
        self._place_points(present, pos, samples, priority)
        return self.observe()

    def _draw_points(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate attributes for every slot of every copy; fixed shapes keep the random stream aligned."""
        B, P, c = self.num_envs, self.num_points, self.config
        pos = rng.uniform(0.0, c.MAP_SIZE, size=(B, P, 2))
        samples = rng.integers(c.POINT_SAMPLES_MIN, c.POINT_SAMPLES_MAX + 1, size=(B, P))
        u = rng.random(size=(B, P))
        priority = 1 + (u[..., None] >= self.priority_cumprob).sum(axis=-1)
        return pos, samples, priority

    def _place_points(self, where: np.ndarray, pos: np.ndarray, samples: np.ndarray,
                      priority: np.ndarray) -> None:
        """Make the slots in ``where`` (B, P) active new points appearing now."""
        self.point_pos[where] = pos[where]
        self.point_samples[where] = samples[where]
        self.point_priority[where] = priority[where]
        self.point_deadline[where] = self.time + self.deadline_by_priority[priority[where] - 1]
        self.point_status[where] = ACTIVE
        weights = self.weight_by_priority[priority - 1]
        self.counters["points_appeared"] += where.sum(axis=1)
        self.counters["samples_appeared"] += (samples * where).sum(axis=1)
        self.counters["weighted_appeared"] += (samples * weights * where).sum(axis=1)

    # ------------------------------------------------------------------ observation
    def observe(self) -> dict[str, np.ndarray]:
        """Batched observation of the current state; also refreshes ``self.action_mask``."""
        obs = build_observation(self)
        self.action_mask = obs["action_mask"]
        return obs

    # ------------------------------------------------------------------ step
    def step(self, actions: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Advance every copy by STEP_SECONDS. Returns rewards (B, A) float32 and invalid flags (B, A).

        Order within a step: apply choices, charge, move, pick up (first to arrive serves), unload at
        the base, expire deadlines, release vehicles whose point is gone, let new points arrive.
        """
        act, invalid = self._sanitize(actions)
        self.counters["invalid_actions"] += invalid.sum(axis=1)
        t_start, t_end = self.time, self.time + self.dt
        self._apply_choices(act)
        self._advance_charging()
        arrived, arrive_time, energy_used = self._move(t_start)
        pickup_weighted = self._pick_up(arrived, arrive_time)
        on_time_weighted, late_weighted = self._unload(arrived, arrive_time, t_start)
        missed_weighted = self._expire(t_end)
        self._release_orphans()
        self.time = t_end
        self.step_count += 1
        if self.full:
            self._arrivals(rng)
        rewards = self._rewards(on_time_weighted, late_weighted, pickup_weighted, energy_used, invalid,
                                missed_weighted)
        return rewards, invalid

    def _sanitize(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masked, out-of-range or non-integer actions become stay and are flagged invalid."""
        B, A, P = self.num_envs, self.num_agents, self.num_points
        raw = np.asarray(actions)
        if raw.shape != (B, A):
            raise ValueError(f"actions must have shape (num_envs, NUM_AGENTS) = {(B, A)}, got {raw.shape}")
        if raw.dtype.kind in "iu":
            as_int = raw.astype(np.int64)
            whole = np.ones((B, A), dtype=bool)
        else:
            as_float = np.asarray(raw, dtype=np.float64)
            whole = np.isfinite(as_float) & (as_float == np.floor(as_float)) & (np.abs(as_float) < 2**31)
            as_int = np.where(whole, as_float, -1).astype(np.int64)
        in_range = whole & (as_int >= 0) & (as_int < P + 2)
        safe = np.where(in_range, as_int, P)
        allowed = np.take_along_axis(self.action_mask, safe[..., None], axis=-1)[..., 0]
        valid = in_range & allowed
        return np.where(valid, safe, P), ~valid

    def _apply_choices(self, act: np.ndarray) -> None:
        P = self.num_points
        idle = (self.vehicle_target == IDLE) & (self.charge_left <= 0)
        at_base = self._at_base()
        go_point = act < P  # the mask only allows these for idle vehicles
        self.vehicle_target = np.where(go_point, act, self.vehicle_target)
        go_base = (act == P + 1) & ~at_base
        self.vehicle_target = np.where(go_base, P, self.vehicle_target)
        stay = (act == P) | ((act == P + 1) & at_base)
        if self.full:
            start = stay & idle & at_base & (self.vehicle_energy < self.energy_capacity)
            deficit = 1.0 - self.vehicle_energy / self.energy_capacity
            self.charge_left = np.where(start, self.charge_seconds * deficit, self.charge_left)
            self.counters["charging_trips"] += start.sum(axis=1)
            self._starting_charge = start
        else:
            self._starting_charge = np.zeros_like(stay)
        # A conflict is each vehicle sent this step to a point that another vehicle already had or got.
        new_choices = self._count_per_point(np.where(go_point, act, -1))
        extra = np.minimum(new_choices, np.maximum(self.heading_counts() - 1, 0))
        self.counters["conflicts"] += extra.sum(axis=1)

    def heading_counts(self) -> np.ndarray:
        """(B, P) number of vehicles whose target is each point."""
        return self._count_per_point(self.vehicle_target)

    def _count_per_point(self, choice: np.ndarray) -> np.ndarray:
        """(B, P) how many entries of ``choice`` (B, A) name each point; other values are ignored."""
        B, P = self.num_envs, self.num_points
        is_point = (choice >= 0) & (choice < P)
        flat = (np.arange(B)[:, None] * P + choice)[is_point]
        return np.bincount(flat, minlength=B * P).reshape(B, P)

    def _advance_charging(self) -> None:
        """Charging is linear: a full charge takes the vehicle's charge seconds; it is busy meanwhile."""
        charging = self._starting_charge | (self.charge_left > 0)
        left = np.maximum(self.charge_left - self.dt, 0.0)
        self.charge_left = np.where(charging, left, self.charge_left)
        frac_left = np.divide(self.charge_left, self.charge_seconds,
                              out=np.zeros_like(self.charge_left), where=self.charge_seconds > 0)
        charged = self.energy_capacity * (1.0 - frac_left)
        self.vehicle_energy = np.where(charging, np.maximum(charged, self.vehicle_energy), self.vehicle_energy)

    def target_positions(self) -> np.ndarray:
        """(B, A, 2) position of each vehicle's target (the base for idle vehicles; unused there)."""
        P = self.num_points
        index = np.clip(self.vehicle_target, 0, P - 1)
        point = np.take_along_axis(self.point_pos, index[..., None], axis=1)
        to_point = (self.vehicle_target >= 0) & (self.vehicle_target < P)
        return np.where(to_point[..., None], point, self.base)

    def _move(self, t_start: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Straight-line travel at the vehicle's speed; returns arrived (B, A), arrival time, energy used."""
        target_pos = self.target_positions()
        delta = target_pos - self.vehicle_pos
        dist = planar_distance(delta[..., 0], delta[..., 1])
        moving = self.vehicle_target != IDLE
        reach = np.broadcast_to(self.speed * self.dt, dist.shape)
        if self.full:
            energy_reach = np.divide(self.vehicle_energy, self.energy_per_m,
                                     out=np.full_like(dist, np.inf), where=self.energy_per_m > 0)
            reach = np.minimum(reach, energy_reach)
        arrived = moving & (dist <= reach + ARRIVAL_TOLERANCE_M)
        moved = np.where(arrived, dist, np.where(moving, np.minimum(dist, reach), 0.0))
        frac = np.divide(moved, dist, out=np.zeros_like(dist), where=dist > 0)
        self.vehicle_pos = np.where(arrived[..., None], target_pos, self.vehicle_pos + delta * frac[..., None])
        arrive_time = t_start + dist / self.speed
        energy_used = moved * self.energy_per_m
        if self.full:
            self.vehicle_energy = np.maximum(self.vehicle_energy - energy_used, 0.0)
        self.counters["distance_km"] += moved.sum(axis=1) / 1000.0
        self.counters["energy_used"] += energy_used.sum(axis=1)
        return arrived, arrive_time, energy_used

    def _pick_up(self, arrived: np.ndarray, arrive_time: np.ndarray) -> np.ndarray:
        """First vehicle to reach an active point before its deadline serves it (ties: lowest index).

        Compared pairwise between vehicles, (B, A, A), which is smaller than a (B, A, P) table.
        """
        A, P = self.num_agents, self.num_points
        at_point = arrived & (self.vehicle_target < P)
        target = np.where(at_point, self.vehicle_target, -1)
        when = np.where(at_point, arrive_time, np.inf)
        rival = (target[:, :, None] == target[:, None, :]) & at_point[:, None, :]  # [b, a, other]
        lower_index = np.arange(A)[None, :] < np.arange(A)[:, None]  # [a, other]: other < a
        beaten = (when[:, None, :] < when[:, :, None]) | ((when[:, None, :] == when[:, :, None]) & lower_index)
        first = at_point & ~(rival & beaten).any(axis=2)
        index = np.clip(target, 0, P - 1)
        status = np.take_along_axis(self.point_status, index, axis=1)
        deadline = np.take_along_axis(self.point_deadline, index, axis=1)
        winner = first & (status == ACTIVE) & (when <= deadline)
        picked = np.where(winner, np.take_along_axis(self.point_samples, index, axis=1), 0)
        priority = np.maximum(np.take_along_axis(self.point_priority, index, axis=1), 1)
        picked_weight = np.where(winner, self.weight_by_priority[priority - 1], 0.0)

        slot = np.argmax(self.lot_samples == 0, axis=2)
        b, a = np.nonzero(winner)
        self.lot_samples[b, a, slot[b, a]] = picked[b, a]
        self.lot_weight[b, a, slot[b, a]] = picked_weight[b, a]
        self.lot_deadline[b, a, slot[b, a]] = deadline[b, a]
        self.point_status[b, index[b, a]] = SERVED
        self.vehicle_load += picked
        self.vehicle_target = np.where(at_point, IDLE, self.vehicle_target)
        self.counters["points_served"] += winner.sum(axis=1)
        self.counters["weighted_served"] += (picked * picked_weight).sum(axis=1)
        return picked * picked_weight

    def _unload(self, arrived: np.ndarray, arrive_time: np.ndarray, t_start: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """Every vehicle at the base unloads; a lot is on time if it arrives by its deadline."""
        at_base = self._at_base()
        unload_time = np.where(arrived, arrive_time, t_start)
        carried = (self.lot_samples > 0) & at_base[..., None]
        on_time = carried & (self.lot_deadline >= unload_time[..., None])
        late = carried & ~on_time
        weighted = self.lot_samples * self.lot_weight
        on_time_weighted = (weighted * on_time).sum(axis=2)
        late_weighted = (weighted * late).sum(axis=2)
        self.counters["samples_delivered"] += (self.lot_samples * carried).sum(axis=(1, 2))
        self.counters["samples_on_time"] += (self.lot_samples * on_time).sum(axis=(1, 2))
        self.lot_samples = np.where(carried, 0, self.lot_samples)
        self.vehicle_load = np.where(at_base, 0, self.vehicle_load)
        self.vehicle_target = np.where(arrived & (self.vehicle_target == self.num_points), IDLE,
                                       self.vehicle_target)
        return on_time_weighted, late_weighted

    def _expire(self, t_end: float) -> np.ndarray:
        """Active points whose deadline has passed by the end of the step are missed."""
        expired = (self.point_status == ACTIVE) & (self.point_deadline <= t_end)
        weights = self.weight_by_priority[np.maximum(self.point_priority, 1) - 1]
        self.point_status = np.where(expired, MISSED, self.point_status).astype(np.int8)
        self.counters["missed_points"] += expired.sum(axis=1)
        return (expired * self.point_samples * weights).sum(axis=1)

    def _release_orphans(self) -> None:
        """A vehicle whose point was served by another or expired stops where it is (idle)."""
        P = self.num_points
        to_point = (self.vehicle_target >= 0) & (self.vehicle_target < P)
        status = np.take_along_axis(self.point_status, np.clip(self.vehicle_target, 0, P - 1), axis=1)
        self.vehicle_target = np.where(to_point & (status != ACTIVE), IDLE, self.vehicle_target)

    def _arrivals(self, rng: np.random.Generator) -> None:
        """Poisson arrivals fill the lowest-index free (non-active) slots of each copy."""
        lam = self.config.POINT_ARRIVAL_RATE * self.dt / 60.0
        count = rng.poisson(lam, size=self.num_envs)
        pos, samples, priority = self._draw_points(rng)
        free = self.point_status != ACTIVE
        rank = np.cumsum(free, axis=1)
        self._place_points(free & (rank <= count[:, None]), pos, samples, priority)

    def _rewards(self, on_time_weighted: np.ndarray, late_weighted: np.ndarray, pickup_weighted: np.ndarray,
                 energy_used: np.ndarray, invalid: np.ndarray, missed_weighted: np.ndarray) -> np.ndarray:
        """r_i = own_i + TEAM_REWARD_WEIGHT * sum_k own_k - PENALTY_MISSED * missed / A (docs/environment.md)."""
        c = self.config
        own = (c.REWARD_DELIVERY * on_time_weighted + c.REWARD_LATE_DELIVERY * late_weighted
               + c.REWARD_PICKUP * pickup_weighted - c.PENALTY_ENERGY * energy_used
               - c.PENALTY_INVALID * invalid)
        team = own.sum(axis=1, keepdims=True)
        shared_missed = c.PENALTY_MISSED * missed_weighted[:, None] / self.num_agents
        return (own + c.TEAM_REWARD_WEIGHT * team - shared_missed).astype(np.float32)

    def _at_base(self) -> np.ndarray:
        # Arrivals snap to the base exactly, so equality is the right test.
        return np.all(self.vehicle_pos == self.base, axis=-1)

    # ------------------------------------------------------------------ metrics
    def episode_metrics(self) -> dict[str, np.ndarray]:
        """Domain metrics of the episode so far, each (B,) float64 (docs/environment.md)."""
        c = self.counters
        on_time = np.divide(c["samples_on_time"], c["samples_appeared"],
                            out=np.zeros(self.num_envs), where=c["samples_appeared"] > 0)
        service = np.divide(c["weighted_served"], c["weighted_appeared"],
                            out=np.zeros(self.num_envs), where=c["weighted_appeared"] > 0)
        # Read at the last step, cargo on board was picked up and never delivered: the shift ended first.
        derived = {"on_time_rate": on_time, "service_rate_weighted": service,
                   "samples_on_board": self.vehicle_load.sum(axis=1).astype(np.float64)}
        return {name: derived[name] if name in derived else c[name].copy() for name in METRIC_NAMES}
