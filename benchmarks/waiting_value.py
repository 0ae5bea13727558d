"""Is waiting worth anything *one step at a time*? The test a critic of a greedy-like fleet has to pass.

``benchmarks/greedy_headroom.py`` shows where OR-Tools beats greedy: it keeps an idle vehicle at the base
while greedy would send it to a point that OR-Tools' plan gives to a vehicle busy now. A learner that
starts as greedy_shift (the dispatch prior) improves one decision at a time: its critic compares "go"
with "stay" *followed by the fleet it has*. This script plays that comparison out in the simulator.

OR-Tools drives episodes from ``--seed``; at every ``--every``-th state of that kind (vehicle idle at the
base, greedy_shift would send it to point p, OR-Tools keeps it and plans p for a busy vehicle) it copies
the environment three times (the same future arrivals in each copy) and counts the samples delivered on
time from there to the end of the episode when

- *go*: every vehicle follows greedy_shift from here;
- *stay once*: that vehicle stays this one step, then greedy_shift goes on;
- *OR-Tools*: a fresh OR-Tools dispatcher goes on from here.

    python benchmarks/waiting_value.py [--episodes 8 --seed 424242 --every 6]

Prints the paired differences to *go* (mean ± 95% half-width) and writes
``benchmarks/results/waiting_value.json``. Needs the ``ortools`` extra.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.batched_env import BatchedSamplingEnv
from fleetmarl.envs.policies import BatchPolicy, reference_policy
from fleetmarl.envs.spaces import STATE
from fleetmarl.eval.evaluation import make_batched_env
from greedy_headroom import BUSY_NOW, planned_for
from machine_info import machine

RESULTS = Path(__file__).resolve().parent / "results" / "waiting_value.json"


def on_time_to_the_end(env: BatchedSamplingEnv, obs: dict, policy: BatchPolicy,
                       first: np.ndarray | None = None) -> np.ndarray:
    """Samples delivered on time from now to the end of the episode in each copy (B,), acting ``first``
    (if given) on this step and ``policy`` after."""
    start = env.core.counters["samples_on_time"].copy()
    while True:
        actions = first if first is not None else policy(obs)
        first = None
        obs, _, _, _, infos = env.step(actions)
        if "episode" in infos:
            return np.asarray(infos["episode"]["samples_on_time"]) - start


def held_back_for_a_busy_vehicle(obs: dict, planner, planned: np.ndarray, greedy: np.ndarray) -> list[tuple[int, int]]:
    """(row, vehicle) pairs this step: idle at the base, greedy would send it to a point, OR-Tools keeps it
    there and plans that point for a vehicle that is busy now."""
    state = obs["state"]
    points = obs["action_mask"].shape[-1] - 2
    found = []
    for b, v in zip(*np.nonzero(state[..., STATE["idle"]] > 0.5), strict=True):
        if greedy[b, v] >= points or planned[b, v] != points or state[b, v, STATE["base_distance"]] > 0:
            continue
        if planned_for(planner.rows[b].plan, greedy[b, v], v, state[b]) == BUSY_NOW:
            found.append((int(b), int(v)))
    return found


def measure(config: Config, episodes: int, seed: int, every: int) -> np.ndarray:
    """Rows (go, stay once, OR-Tools): on-time samples to the end of the episode, one row per state."""
    planner = reference_policy("ortools", 0, config)
    greedy_shift = reference_policy("greedy_shift", 0, config)
    env = make_batched_env(config, num_envs=episodes)
    obs = env.reset(seed=seed)
    rows, seen = [], 0
    for _ in range(config.MAX_NUM_STEPS):
        planned, greedy = planner(obs), greedy_shift(obs)
        for b, v in held_back_for_a_busy_vehicle(obs, planner, planned, greedy):
            seen += 1
            if seen % every:
                continue
            stay = greedy.copy()
            stay[b, v] = config.NUM_POINTS
            rows.append((on_time_to_the_end(copy.deepcopy(env), obs, greedy_shift)[b],
                         on_time_to_the_end(copy.deepcopy(env), obs, greedy_shift, first=stay)[b],
                         on_time_to_the_end(copy.deepcopy(env), obs, reference_policy("ortools", 0, config))[b]))
        obs, *_ = env.step(planned)
    print(f"{len(rows)} of {seen} states measured")
    return np.asarray(rows, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--every", type=int, default=6, help="measure every n-th such state (each costs 3 rollouts)")
    args = parser.parse_args()
    rows = measure(Config(), args.episodes, args.seed, args.every)
    result = {"machine": machine(), "episodes": args.episodes, "seed": args.seed, "states": len(rows),
              "go_mean": float(rows[:, 0].mean())}
    print(f"on-time samples from such a state to the end of the episode, go (greedy_shift): {rows[:, 0].mean():.2f}")
    for column, name in ((1, "stay once, then greedy_shift"), (2, "OR-Tools from there")):
        d = rows[:, column] - rows[:, 0]
        half = float(1.96 * d.std(ddof=1) / np.sqrt(len(d)))
        result[name] = {"difference": float(d.mean()), "half_width": half}
        print(f"  {name:30s} {d.mean():+.2f} ± {half:.2f}")
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
