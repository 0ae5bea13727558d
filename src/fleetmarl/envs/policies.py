"""Reference policies (design §2): uniform random over the mask, and greedy dispatchers.

Both read only the batched observation dict the learner reads (``(B, A, ...)`` arrays, columns named in
:mod:`fleetmarl.envs.spaces`), so their numbers are a fair baseline for a trained agent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fleetmarl.config import PURE_DISPATCHERS, Config
from fleetmarl.envs.spaces import OTHER, POINT, STATE

BatchPolicy = Callable[[dict[str, np.ndarray]], np.ndarray]
REFERENCE_POLICIES = ("random", "greedy", "greedy_shift", "greedy_chain", "ortools")
DEFAULT_REFERENCES = ("greedy", "greedy_shift", "greedy_chain", "random")
"""The ones a learning-curve plot draws unless told: ortools needs its extra and minutes per run."""

# Greedy tuning, in observation units (times are fractions of the longest deadline).
PRIORITY_SCORE = np.array([3.0, 2.0, 1.0])  # ranking of priority 1, 2, 3
DISTANCE_FLOOR = 0.02                        # keeps the score finite for a point right next to the vehicle
RETURN_CARGO_SLACK = 0.1                     # go home when the most urgent carried sample has this little slack
RETURN_LOAD = 0.75                           # ...or when this full
CHARGE_BELOW = 0.6                           # at the base, top up below this energy fraction
SHIFT_END_MARGIN_S = 300.0                   # greedy_shift: head home this long before the drive home must start


def random_policy(obs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Uniform over each agent's allowed actions: (B, A) int64."""
    mask = obs["action_mask"].astype(bool)
    draws = rng.random(mask.shape)
    return np.where(mask, draws, -1.0).argmax(axis=-1)


def greedy_policy(obs: dict[str, np.ndarray], *, return_slack: float = RETURN_CARGO_SLACK,
                  return_load: float = RETURN_LOAD, leave: np.ndarray | None = None) -> np.ndarray:
    """Dispatch idle vehicles in index order to the best unclaimed feasible point; go home when it must.

    Score of a point = priority rank x samples x (1 + urgency) / distance, where urgency grows as the
    deadline nears; points another vehicle already heads to, or an earlier vehicle claimed this step,
    are skipped. A vehicle goes home when its cargo is urgent, it is fairly full, or nothing is feasible;
    at the base it charges when low. Busy vehicles keep going (stay). ``return_slack`` and ``return_load``
    are the two go-home thresholds, parameters so that retuning them could be measured (it was worth
    nothing: docs/experiments.md). ``leave`` (B, A, P), True where a vehicle should leave a point to another
    (greedy_chain), narrows each vehicle's choice further.
    """
    state, features = obs["state"], obs["point_features"]
    mask = obs["action_mask"].astype(bool)
    B, A, num_actions = mask.shape
    P = num_actions - 2
    score = point_scores(features)
    actions = np.full((B, A), P, dtype=np.int64)
    claimed = np.zeros((B, P), dtype=bool)
    rows = np.arange(B)
    for agent in range(A):  # sequential dispatch: later vehicles see earlier claims (A is small)
        s = state[:, agent]
        idle = s[:, STATE["idle"]] > 0.5
        load = s[:, STATE["load"]]
        at_base = s[:, STATE["base_distance"]] <= 0.0
        allowed = mask[:, agent, :P] & ~claimed
        if leave is not None:
            allowed &= ~leave[:, agent]
        agent_score = np.where(allowed, score[:, agent], -np.inf)
        best = agent_score.argmax(axis=1)
        has_point = np.isfinite(agent_score[rows, best])
        must_return = (load > 0) & ((s[:, STATE["cargo_slack"]] < return_slack)
                                    | (load >= return_load) | ~has_point)
        charge = at_base & (s[:, STATE["energy"]] < np.where(has_point, CHARGE_BELOW, 1.0))
        go_point = idle & has_point & ~must_return & ~charge
        go_home = idle & ~at_base & (must_return | ~has_point)
        actions[:, agent] = np.where(go_point, best, np.where(go_home, P + 1, P))
        claimed[rows[go_point], best[go_point]] = True
    return actions


def shift_end_policy(config: Config, margin_s: float = SHIFT_END_MARGIN_S) -> BatchPolicy:
    """Greedy, except that an idle vehicle with cargo, away from the base, goes home once the shift ends
    within its drive home plus ``margin_s`` seconds ("greedy_shift").

    Why: cargo still on board when the shift ends is never delivered, and greedy has no rule for it; this
    one rule is worth about half a point of on-time rate over greedy (docs/experiments.md), so
    it is a teacher a learning fleet can beat greedy with. It needs the config for the shift length and
    the fleet's top speed, which the observation gives only as fractions.
    """
    home = _home_before_shift_end(config, margin_s)
    return lambda obs: home(obs, greedy_policy(obs))


def chain_policy(config: Config, margin_s: float | None = None) -> BatchPolicy:
    """greedy_shift, except that an idle vehicle leaves a point to a vehicle busy now that will reach it
    sooner, from where its current trip ends ("greedy_chain"; :func:`busy_vehicle_sooner`).

    Why: greedy sends an idle vehicle to the best point it can reach, even when a vehicle about to finish a
    job next to that point would get there first; the idle one then drives far and the busy one finds
    nothing near. The OR-Tools planner, which routes busy vehicles from where they will next be free, keeps
    the idle vehicle back in most of the decisions where it differs from greedy (329 of 414, measured on
    the default fleet): leaving the point to the busy vehicle is most of its margin. This rule takes that
    part of the plan with one comparison of arrival times; it is +0.008 to +0.012 on-time over
    greedy_shift on the default fleet (docs/experiments.md). ``margin_s`` is
    how much sooner the busy vehicle must be (default one step), a parameter for
    ``benchmarks/dispatchers.py``.
    """
    home = _home_before_shift_end(config, SHIFT_END_MARGIN_S)
    return lambda obs: home(obs, greedy_policy(obs, leave=busy_vehicle_sooner(obs, config, margin_s)))


def busy_vehicle_sooner(obs: dict[str, np.ndarray], config: Config, margin_s: float | None = None) -> np.ndarray:
    """(B, A, P) bool: True where some other vehicle, driving to a point or to the base now, would reach point
    p straight from the end of that trip at least ``margin_s`` (default one step, ``STEP_SECONDS``) before
    this vehicle, and within p's deadline. Only idle vehicles choose, so only their rows are computed (the
    rest are False): this runs on every update's batch when greedy_chain is the prior. Charging vehicles are
    left out (the observation does not say when they will be done)."""
    margin_s = config.STEP_SECONDS if margin_s is None else margin_s
    state, features, others = obs["state"], obs["point_features"], obs["other_obs"]
    idle = state[..., STATE["idle"]] > 0.5
    out = np.zeros(features.shape[:3], dtype=bool)
    if not idle.any():
        return out
    state, features, others = state[idle], features[idle], others[idle]  # (N, S), (N, P, F), (N, K, O)
    fastest = max(config.fleet()["speeds"])
    size = config.MAP_SIZE
    deadline = features[..., POINT["deadline_left"]] * max(config.PRIORITY_DEADLINES)  # (N, P)
    busy = (others[..., OTHER["to_point"]] > 0.5) | (others[..., OTHER["to_base"]] > 0.5)  # (N, K)
    # Only (vehicle, busy other, point with time left) triples can be True: a trip time is never negative.
    # Computing just those keeps this O(pairs that matter) instead of O(A^2 N) on a large fleet's batch.
    row, other, point = np.nonzero(busy[:, :, None] & (deadline > 0)[:, None, :])
    own = features[row, point, POINT["distance"]] * size * np.sqrt(2.0) / (state[row, STATE["speed"]] * fastest)
    seen = others[row, other]                                                   # (T, O)
    position = seen[:, [OTHER["dx"], OTHER["dy"]]] * size                      # relative to the vehicle
    trip_end = seen[:, [OTHER["target_dx"], OTHER["target_dy"]]] * size
    speed = np.maximum(seen[:, OTHER["speed"]], 1e-6) * fastest
    onward = np.linalg.norm(features[row, point][:, [POINT["dx"], POINT["dy"]]] * size - trip_end, axis=-1)
    theirs = (np.linalg.norm(trip_end - position, axis=-1) + onward) / speed
    sooner = (theirs < deadline[row, point]) & (theirs + margin_s <= own)
    found = np.zeros(features.shape[:2], dtype=bool)
    found[row[sooner], point[sooner]] = True
    out[idle] = found
    return out


def _home_before_shift_end(config: Config, margin_s: float) -> Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]:
    """greedy_shift's rule as a correction of another dispatcher's actions (in place, returned)."""
    fastest = max(config.fleet()["speeds"])
    shift = config.MAX_NUM_STEPS * config.STEP_SECONDS
    distance_unit = config.MAP_SIZE / np.sqrt(2.0)

    def correct(obs: dict[str, np.ndarray], actions: np.ndarray) -> np.ndarray:
        s = obs["state"]
        seconds_left = shift * (1.0 - s[..., STATE["elapsed"]])
        distance = s[..., STATE["base_distance"]] * distance_unit
        drive = distance / (s[..., STATE["speed"]] * fastest)
        go = ((s[..., STATE["idle"]] > 0.5) & (s[..., STATE["load"]] > 0) & (distance > 0)
              & (seconds_left < drive + margin_s))
        actions[go] = obs["action_mask"].shape[-1] - 1
        return actions

    return correct


def point_scores(features: np.ndarray) -> np.ndarray:
    """(B, A, P) desirability of each point for each vehicle; higher is better."""
    priority = features[..., POINT["priority_1"]:POINT["priority_3"] + 1] @ PRIORITY_SCORE
    urgency = 1.0 - features[..., POINT["deadline_left"]]
    value = priority * features[..., POINT["samples"]] * (1.0 + urgency)
    score = value / (features[..., POINT["distance"]] + DISTANCE_FLOOR)
    return np.where(features[..., POINT["heading"]] > 0, -np.inf, score)


def pure_policy(name: str, config: Config) -> BatchPolicy | None:
    """The named reference policy if its choice is a function of the observation alone (``PURE_DISPATCHERS``),
    so it may be asked again about a replayed one or be a policy's prior; None for one with memory or its own
    random draws (ortools, random)."""
    return reference_policy(name, 0, config) if name in PURE_DISPATCHERS else None


def reference_policy(name: str, seed: int = 0, config: Config | None = None) -> BatchPolicy:
    """``"random"`` (its own generator, seeded by ``seed``), ``"greedy"``, ``"greedy_shift"``, ``"greedy_chain"``
    or ``"ortools"`` as an obs -> actions function. ``"greedy_shift"`` and ``"greedy_chain"`` read the shift
    length, speeds and map size, and ``"ortools"``
    re-plans routes with a solver (:mod:`fleetmarl.envs.ortools_dispatcher`), so both need the ``config`` the
    environment was built from; ortools keeps one plan per batch row, so use a fresh one per evaluation."""
    if name == "greedy":
        return greedy_policy
    if name in ("greedy_shift", "greedy_chain", "ortools") and config is None:
        raise ValueError(f"reference policy {name!r} needs the environment's config: reference_policy({name!r}, "
                         "seed, config)")
    if name == "greedy_shift":
        return shift_end_policy(config)
    if name == "greedy_chain":
        return chain_policy(config)
    if name == "ortools":
        from fleetmarl.envs.ortools_dispatcher import OrToolsDispatcher  # optional extra; imported on use

        return OrToolsDispatcher(config)
    if name == "random":
        rng = np.random.default_rng(seed)
        return lambda obs: random_policy(obs, rng)
    raise ValueError(f"unknown reference policy {name!r}; choose one of {', '.join(REFERENCE_POLICIES)}")
