"""The large-fleet configs (configs/fleet20.toml, configs/fleet50.toml): how their demand was chosen, and the
reference dispatchers on them.

Two parts, both on the seeded evaluation episodes every comparison uses (seed 424242):

``--scan`` is the scaling study of docs/environment.md, "Large fleets": greedy's on-time rate on k times the
default fleet (k = 4, 10) under three ways of growing the problem, and over the one knob that was tuned, the
arrival rate per vehicle. The table part (the default) runs greedy, greedy_chain, random and OR-Tools on the
default config and on each shipped config, with the time each spends choosing actions.

    python benchmarks/fleet_configs.py --scan [--episodes 100]
    python benchmarks/fleet_configs.py [--episodes 100] [--ortools-episodes default=100,fleet20=100,fleet50=20]

Both print their rows and write their part of ``benchmarks/results/fleet_configs.json`` (the other part is
kept). No training; the table took 35 minutes on 2 cores (AMD EPYC), 22 of them OR-Tools on fleet50.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleetmarl.config import DEFAULT, Config, load_config
from fleetmarl.envs.ortools_dispatcher import OrToolsDispatcher
from fleetmarl.envs.policies import greedy_policy, reference_policy
from fleetmarl.eval.evaluation import Entry, EntryResult, paired_differences, run_episodes
from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fleet_configs.json"
CONFIGS = {"default": None, "fleet20": ROOT / "configs" / "fleet20.toml", "fleet50": ROOT / "configs" / "fleet50.toml"}
POLICIES = ("greedy", "greedy_chain", "random", "ortools")
METRICS = ("on_time_rate", "service_rate_weighted", "distance_km", "missed_points", "samples_on_board", "reward")
SEED = 424242
SCAN_RATES = (1.0, 1.2, 1.4, 1.5, 1.6, 1.8)
SHIPPED_RATES = {4: 1.4, 10: 1.6}
"""The rates in configs/fleet20.toml (k = 4) and configs/fleet50.toml (k = 10)."""
"""Arrival rate per vehicle, in multiples of the default's (1 point per minute for 5 vehicles)."""


class TimedPolicy:
    """A batch policy that counts its calls, the fleet decisions they made (one per episode and step) and
    the wall time spent choosing."""

    def __init__(self, policy):
        self.policy, self.calls, self.decisions, self.seconds = policy, 0, 0, 0.0

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        started = time.perf_counter()
        actions = self.policy(obs)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self.decisions += len(actions)
        return actions


def config_of(name: str) -> Config:
    return DEFAULT if CONFIGS[name] is None else load_config(CONFIGS[name])


# ---------------------------------------------------------------------- the scaling study
def scaled(k: int, how: str, rate: float = 1.0) -> Config:
    """The default fleet times ``k`` (vehicles, point slots, points at reset, arrivals), grown ``how``:

    * ``same map``: nothing else changes (k times the vehicles and the demand on the 5 km map);
    * ``area, fixed shift``: the map's area times k (side times sqrt k, so vehicles and points per km² stay),
      deadlines times sqrt k (the typical distance to the base), speeds, step and shift unchanged;
    * ``area, dilated``: as ``area, fixed shift`` and every time times sqrt k too (step, so the shift;
      charging), energy per km divided by sqrt k: a change of units of ``same map``.

    ``rate`` multiplies the arrival rate per vehicle (the knob that was tuned)."""
    s = math.sqrt(k)
    n = DEFAULT.NUM_AGENTS * k
    values: dict[str, Any] = dict(NUM_AGENTS=n, NUM_POINTS=DEFAULT.NUM_POINTS * k, INITIAL_POINTS=DEFAULT.INITIAL_POINTS * k,
                                  POINT_ARRIVAL_RATE=DEFAULT.POINT_ARRIVAL_RATE * k * rate)
    if how != "same map":
        values.update(MAP_SIZE=DEFAULT.MAP_SIZE * s, PRIORITY_DEADLINES=tuple(d * s for d in DEFAULT.PRIORITY_DEADLINES))
    if how == "area, dilated":
        fleet = Config(NUM_AGENTS=n).fleet()
        values.update(STEP_SECONDS=DEFAULT.STEP_SECONDS * s, POINT_ARRIVAL_RATE=values["POINT_ARRIVAL_RATE"] / s,
                      AGENT_ENERGY_PER_KM=tuple(e / s for e in fleet["energy_per_km"]),
                      AGENT_CHARGE_SECONDS=tuple(c * s for c in fleet["charge_seconds"]))
    return Config(**values)


def scan(episodes: int) -> list[dict[str, Any]]:
    rows = []
    cases = [(1, "same map", 1.0)]
    for k in (4, 10):
        cases += [(k, "same map", r) for r in SCAN_RATES]
        cases += [(k, "area, fixed shift", 1.0), (k, "area, dilated", 1.0)]
    print(f"{'k':>3s} {'growth':18s} {'rate':>5s} {'on-time':>8s} {'service':>8s} {'on board':>9s} {'km':>7s}")
    for k, how, rate in cases:
        config = scaled(k, how, rate)
        r = run_episodes(config, greedy_policy, episodes, SEED)
        row = {"k": k, "agents": config.NUM_AGENTS, "growth": how, "rate_per_vehicle": rate,
               "shipped": how == "same map" and SHIPPED_RATES.get(k) == rate,
               "config": {key: getattr(config, key) for key in ("NUM_POINTS", "INITIAL_POINTS", "POINT_ARRIVAL_RATE",
                                                                 "MAP_SIZE", "STEP_SECONDS", "PRIORITY_DEADLINES")},
               **{m: float(r[m].mean()) for m in ("on_time_rate", "service_rate_weighted", "samples_on_board",
                                                  "samples_appeared", "distance_km")}}
        rows.append(row)
        print(f"{k:3d} {how:18s} {rate:5.2f} {row['on_time_rate']:8.4f} {row['service_rate_weighted']:8.4f} "
              f"{row['samples_on_board'] / row['samples_appeared']:9.3f} {row['distance_km']:7.0f}"
              f"{'  shipped' if row['shipped'] else ''}", flush=True)
    return rows


# ---------------------------------------------------------------------- the dispatchers on the configs
def evaluate(config: Config, name: str, episodes: int) -> tuple[EntryResult, dict[str, Any]]:
    inner = reference_policy(name, SEED, config)
    timed = TimedPolicy(inner)
    started = time.perf_counter()
    per_episode = run_episodes(config, timed, episodes, SEED)
    timing: dict[str, Any] = {"episodes": episodes, "wall_s": time.perf_counter() - started,
                              "policy_s": timed.seconds, "decisions": timed.decisions,
                              "ms_per_decision": 1000.0 * timed.seconds / max(timed.decisions, 1),
                              "s_per_episode": timed.seconds / episodes}
    if isinstance(inner, OrToolsDispatcher):
        stats = inner.stats
        timing.update(solves=stats.solves, ms_per_solve=1000.0 * stats.seconds / max(stats.solves, 1),
                      solves_capped_by_time_limit=stats.capped, failed_solves=stats.failures)
    entry = Entry(name=name, kind="policy", config=config, make_policy=lambda s: reference_policy(name, s, config))
    return EntryResult(entry, per_episode), timing


def table(episodes: int, ortools_episodes: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cname in CONFIGS:
        config = config_of(cname)
        rows: dict[str, Any] = {}
        results: dict[str, EntryResult] = {}
        for pname in POLICIES:
            n = ortools_episodes.get(cname, episodes) if pname == "ortools" else episodes
            results[pname], timing = evaluate(config, pname, n)
            per = results[pname].per_episode
            rows[pname] = {"timing": timing, **{m: {"mean": float(per[m].mean()), "std": float(per[m].std())}
                                                for m in METRICS}}
            print(f"{cname:8s} {pname:13s} n={n:3d} on-time {per['on_time_rate'].mean():.4f} ± {per['on_time_rate'].std():.4f}"
                  f"  service {per['service_rate_weighted'].mean():.4f}  km {per['distance_km'].mean():7.1f}"
                  f"  {timing['ms_per_decision']:8.3f} ms/decision  {timing['wall_s']:7.1f} s", flush=True)
        n_or = ortools_episodes.get(cname, episodes)
        if n_or < episodes:  # greedy on the same (first n_or) episodes, for a paired difference
            greedy_first, _ = evaluate(config, "greedy", n_or)
            rows["greedy_on_ortools_episodes"] = {m: float(greedy_first.per_episode[m].mean()) for m in METRICS}
        else:
            greedy_first = results["greedy"]
        rows["ortools_minus_greedy"] = paired_differences(results["ortools"], greedy_first)["on_time_rate"]
        rows["greedy_chain_minus_greedy"] = paired_differences(results["greedy_chain"], results["greedy"])["on_time_rate"]
        defaults = DEFAULT.to_dict()
        out[cname] = {"config": {k: v for k, v in config.to_dict().items() if v != defaults[k]}, "rows": rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scan", action="store_true", help="run the scaling study instead of the table")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--ortools-episodes", default="default=100,fleet20=100,fleet50=20",
                        help="OR-Tools episodes per config (the first N of the same seeded episodes)")
    args = parser.parse_args()
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    header = {"machine": machine(), "python": platform.python_version(), "seed": SEED, "episodes": args.episodes}
    if args.scan:
        record["scan"] = {**header, "command": f"python benchmarks/fleet_configs.py --scan --episodes {args.episodes}",
                          "rows": scan(args.episodes)}
    else:
        ortools_episodes = {k: int(v) for k, v in (item.split("=") for item in args.ortools_episodes.split(","))}
        record["table"] = {**header, "ortools_episodes": ortools_episodes,
                           "command": f"python benchmarks/fleet_configs.py --episodes {args.episodes} "
                                      f"--ortools-episodes {args.ortools_episodes}",
                           "configs": table(args.episodes, ortools_episodes)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
