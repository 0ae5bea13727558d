"""Greedy vs the OR-Tools dispatcher vs random on the same seeded episodes, with paired differences.

Why paired: all three policies run on exactly the same episodes (same seeds), so per-episode differences
cancel most of the episode-to-episode spread and give tight 95% intervals. Also times the dispatcher: wall
seconds per policy call (one decision for the whole batch) and per OR-Tools solve. Prints a table and writes
benchmarks/results/ortools.json (the numbers in docs/environment.md, "OR-Tools dispatcher").

    python benchmarks/bench_ortools.py [--episodes 100] [--seed 0] [--env full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.ortools_dispatcher import OrToolsDispatcher
from fleetmarl.envs.policies import reference_policy
from fleetmarl.eval.evaluation import Entry, EntryResult, paired_differences, run_episodes, summarize
from machine_info import cpu_model

POLICIES = ("greedy", "ortools", "random")
TABLE_METRICS = ("on_time_rate", "service_rate_weighted", "missed_points", "samples_delivered", "distance_km",
                 "energy_used", "charging_trips", "conflicts", "invalid_actions", "reward")


class TimedPolicy:
    """Wraps a batch policy and counts calls and the wall time spent choosing actions."""

    def __init__(self, policy):
        self.policy, self.calls, self.seconds = policy, 0, 0.0

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        started = time.perf_counter()
        actions = self.policy(obs)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        return actions


def evaluate(config: Config, name: str, episodes: int, seed: int) -> tuple[EntryResult, dict[str, Any]]:
    inner = reference_policy(name, seed, config)
    timed = TimedPolicy(inner)
    started = time.perf_counter()
    per_episode = run_episodes(config, timed, episodes, seed)
    timing: dict[str, Any] = {"wall_s": time.perf_counter() - started, "policy_s": timed.seconds,
                              "policy_calls": timed.calls, "ms_per_call": 1000.0 * timed.seconds / max(timed.calls, 1)}
    if isinstance(inner, OrToolsDispatcher):
        stats = inner.stats
        timing.update(solves=stats.solves, ms_per_solve=1000.0 * stats.seconds / max(stats.solves, 1),
                      solves_capped_by_time_limit=stats.capped, warm_starts=stats.warm_starts,
                      failed_solves=stats.failures)
    entry = Entry(name=name, kind="policy", config=config, make_policy=lambda s: reference_policy(name, s, config))
    return EntryResult(entry, per_episode), timing


def print_table(results: dict[str, EntryResult], diffs: dict[str, dict], timing: dict[str, dict]) -> None:
    summaries = {name: summarize(r.per_episode) for name, r in results.items()}
    print(f"{'metric (mean ± std)':26s}" + "".join(f"{n:>20s}" for n in POLICIES)
          + f"{'ortools − greedy (95%)':>28s}")
    for metric in TABLE_METRICS:
        cells = "".join(f"{summaries[n][metric]['mean']:>11.3f} ± {summaries[n][metric]['std']:<6.3f}" for n in POLICIES)
        d = diffs["ortools_vs_greedy"][metric]
        print(f"{metric:26s}{cells}{d['mean']:>+16.4f} ± {d['ci95']:.4f}")
    for name, t in timing.items():
        print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", choices=("full", "simplified"), default="full")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ortools.json"))
    args = parser.parse_args(argv)
    config = Config(ENVIRONMENT_TYPE=args.env)
    results, timing = {}, {}
    for name in POLICIES:
        results[name], timing[name] = evaluate(config, name, args.episodes, args.seed)
    diffs = {"ortools_vs_greedy": paired_differences(results["ortools"], results["greedy"]),
             "ortools_vs_random": paired_differences(results["ortools"], results["random"]),
             "greedy_vs_random": paired_differences(results["greedy"], results["random"])}
    print_table(results, diffs, timing)
    record = {"machine": {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)),
                          "python": platform.python_version()},
              "command": f"python benchmarks/bench_ortools.py --episodes {args.episodes} --seed {args.seed} "
                         f"--env {args.env}",
              "config": {"ENVIRONMENT_TYPE": args.env, "ORTOOLS_SOLUTION_LIMIT": config.ORTOOLS_SOLUTION_LIMIT,
                         "ORTOOLS_TIME_LIMIT_MS": config.ORTOOLS_TIME_LIMIT_MS},
              "summary": {name: summarize(r.per_episode) for name, r in results.items()},
              "paired_differences": diffs, "timing": timing}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
