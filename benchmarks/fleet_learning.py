"""Trained fleets against the dispatchers, on the fleet they were trained for and on fleets of other sizes.

Why: a shared policy (``SHARE_PARAMETERS``) is only worth shipping if it beats the planner where fleets are
large, and the claim that one checkpoint drives any fleet size needs the table that shows how well. For every
size in ``--sizes`` this runs greedy, greedy_chain and OR-Tools, and every ``--checkpoint`` (a shared one
runs on any size; a per-vehicle one only on its own), on the same seeded evaluation episodes (seed 424242,
as ``fleetmarl compare --seed 424242``), and reports each checkpoint's paired on-time difference to
greedy_chain and to OR-Tools with a 95% interval, plus priority-weighted service, distance, energy and the
wall time per fleet decision.

    python benchmarks/fleet_learning.py --checkpoint s1=runs/f20_s1/checkpoints/checkpoint_ep400_... \\
        --sizes fleet20 --episodes fleet20=100
    python benchmarks/fleet_learning.py --checkpoint s1_all=CKPT --point-view s1_all=0 --sizes fleet20
    python benchmarks/fleet_learning.py --checkpoint s1_w8=CKPT --vehicle-view s1_w8=8 --sizes fleet20
    python benchmarks/fleet_learning.py --checkpoint fleet20=CKPT --checkpoint default5=CKPT5 \\
        --sizes default,fleet10,fleet20,fleet50 --episodes fleet50=20 --ortools-episodes fleet50=8
    python benchmarks/fleet_learning.py --checkpoint s1=CKPT --sizes fleet20 --ortools-limits 3,10,30

Sizes: ``default`` (5 vehicles), ``fleet10`` (the default times 2 with fleet20's arrival factor 1.4:
not a shipped config), ``fleet20`` and ``fleet50`` (``configs/``). OR-Tools may run on fewer episodes (the
first N); its paired differences then use the checkpoint on those same N. ``--reference-cache DIR`` keeps
the dispatchers' per-episode results, so they can be run while the checkpoints still train (no
``--checkpoint``) and are not solved again for each later call. ``--ortools-limits`` also runs OR-Tools on smaller search
budgets (``ORTOOLS_SOLUTION_LIMIT``, 100 by default): how much of its lead is bought with search time, next to
the network's milliseconds. A limit of 1 keeps the previous plan unchanged (the warm start is the first
solution), so new points wait for a larger budget. Writes
``benchmarks/results/fleet_learning.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleet_configs import SEED, TimedPolicy, config_of, scaled
from fleetmarl.config import ENV_KEYS, Config
from fleetmarl.errors import UserError
from fleetmarl.eval.evaluation import (
    EntryResult,
    checkpoint_entry,
    paired_differences,
    policy_entry,
    run_episodes,
)
from fleetmarl.eval.policy import checkpoint_run_config, saved_config
from machine_info import machine

RESULTS = Path(__file__).resolve().parent / "results" / "fleet_learning.json"
SIZES = ("default", "fleet10", "fleet20", "fleet50")
REFERENCES = ("greedy", "greedy_chain", "ortools")
METRICS = ("on_time_rate", "service_rate_weighted", "distance_km", "energy_used", "missed_points")


def size_config(name: str) -> Config:
    if name == "fleet10":
        return scaled(2, "same map", 1.4)
    return config_of(name)


def checkpoint_on(path: str, environment: Config, views: list[str] | None = None) -> Config:
    """The checkpoint's own config (its learner: sharing, views, prior) on ``environment``'s environment keys,
    as ``fleetmarl eval CKPT --set NUM_AGENTS=...`` builds it; ``views`` are its ``--set POINT_VIEW=...`` /
    ``VEHICLE_VIEW=...``, refused the same way for a per-vehicle checkpoint."""
    own = checkpoint_run_config(saved_config(path), views or [])
    return own.replace(**{key: getattr(environment, key) for key in ENV_KEYS})


def run_timed(make_policy, config: Config, episodes: int) -> tuple[dict, dict[str, Any]]:
    """Per-episode metrics of a fresh policy and the wall time it spent choosing, per fleet decision."""
    timed = TimedPolicy(make_policy(SEED))
    started = time.perf_counter()
    per_episode = run_episodes(config, timed, episodes, SEED)
    timing = {"episodes": episodes, "wall_s": time.perf_counter() - started,
              "ms_per_decision": 1000.0 * timed.seconds / max(timed.decisions, 1)}
    stats = getattr(timed.policy, "stats", None)  # OR-Tools: how many solves the time cap stopped
    if stats is not None:
        timing.update(solves=stats.solves, solves_capped_by_time_limit=stats.capped, failed_solves=stats.failures)
    return per_episode, timing


def cached_run(cache: Path | None, label: str, make_policy, config: Config, episodes: int) -> tuple[dict, dict]:
    """``run_timed``, or a reference's earlier result on the same environment and episodes from ``cache``:
    why: OR-Tools on fleet50 takes about a minute an episode, and a checkpoint trained later is compared
    on the same episodes without solving them again. Checkpoints are never cached (their files may change)."""
    if cache is None:
        return run_timed(make_policy, config, episodes)
    environment = json.dumps({key: getattr(config, key) for key in ENV_KEYS}, sort_keys=True, default=str)
    stem = f"{label}_{episodes}_{SEED}_{hashlib.sha256(environment.encode()).hexdigest()[:16]}"
    arrays, meta = cache / f"{stem}.npz", cache / f"{stem}.json"
    if arrays.exists() and meta.exists():
        with np.load(arrays) as saved:
            return {key: saved[key] for key in saved.files}, json.loads(meta.read_text(encoding="utf-8"))
    per_episode, timing = run_timed(make_policy, config, episodes)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(arrays, **per_episode)
    meta.write_text(json.dumps(timing), encoding="utf-8")
    return per_episode, timing


def summary(per_episode: dict, timing: dict[str, Any]) -> dict[str, Any]:
    return {"timing": timing, **{m: {"mean": float(per_episode[m].mean()), "std": float(per_episode[m].std())}
                                 for m in METRICS}}


def evaluate_size(name: str, checkpoints: dict[str, str], episodes: int, ortools_episodes: int,
                  cache: Path | None = None, views: dict[str, list[str]] | None = None,
                  limits: tuple[int, ...] = ()) -> dict[str, Any]:
    config = size_config(name)
    rows: dict[str, Any] = {}
    results: dict[str, EntryResult] = {}
    entries = {ref: policy_entry(ref, config) for ref in REFERENCES if ref != "ortools"}
    planners = {"ortools": config, **{f"ortools_L{limit}": config.replace(ORTOOLS_SOLUTION_LIMIT=limit)
                                      for limit in limits}} if ortools_episodes > 0 else {}
    entries.update({label: policy_entry("ortools", own) for label, own in planners.items()})
    for label, path in checkpoints.items():
        try:
            entries[label] = checkpoint_entry(path, config=checkpoint_on(path, config, (views or {}).get(label)))
        except UserError as error:  # a per-vehicle checkpoint on another size: say so, go on
            rows[label] = {"skipped": str(error).splitlines()[0]}
            print(f"{name:8s} {label:14s} skipped: {rows[label]['skipped']}", flush=True)
    for label, entry in entries.items():
        n = ortools_episodes if label in planners else episodes
        per, timing = cached_run(cache if entry.kind != "checkpoint" else None, f"{name}_{label}",
                                 entry.make_policy, config, n)
        results[label] = EntryResult(entry, per)
        rows[label] = summary(per, timing)
        print(f"{name:8s} {label:14s} n={n:3d} on-time {per['on_time_rate'].mean():.4f}  service "
              f"{per['service_rate_weighted'].mean():.4f}  km {per['distance_km'].mean():7.1f}  energy "
              f"{per['energy_used'].mean():7.1f}  {timing['ms_per_decision']:8.3f} ms/decision", flush=True)
    for label, entry in entries.items():
        if entry.kind != "checkpoint":
            continue
        rows[label]["minus_greedy_chain"] = paired_differences(results[label], results["greedy_chain"])
        if planners:
            mine = results[label]
            if ortools_episodes < episodes:  # the same first episodes as OR-Tools ran
                mine = EntryResult(entry, run_episodes(config, entry.make_policy(SEED), ortools_episodes, SEED))
            for planner in planners:
                rows[label][f"minus_{planner}"] = paired_differences(mine, results[planner])
        for base in ("greedy_chain", *planners):
            d = rows[label].get(f"minus_{base}", {}).get("on_time_rate")
            if d:
                print(f"{name:8s} {label:14s} on-time minus {base:12s} {d['mean']:+.4f} ± {d['ci95']:.4f}", flush=True)
    return {"agents": config.NUM_AGENTS, "episodes": episodes, "ortools_episodes": ortools_episodes, "rows": rows}


def per_size(text: str, default: int) -> dict[str, int]:
    values = {size: default for size in SIZES}
    for item in filter(None, text.split(",")):
        size, _, count = item.partition("=")
        if size not in SIZES:
            raise SystemExit(f"fleet_learning: unknown size {size!r}; choose from {', '.join(SIZES)}")
        values[size] = int(count)
    return values


def command_line(args: argparse.Namespace) -> str:
    """The call that reproduces this record, for the JSON."""
    parts = [*(f"--checkpoint {c}" for c in args.checkpoint), *(f"--point-view {v}" for v in args.point_view),
             *(f"--vehicle-view {v}" for v in args.vehicle_view), f"--sizes {args.sizes}"]
    for flag, value in (("--episodes", args.episodes), ("--ortools-episodes", args.ortools_episodes),
                        ("--ortools-limits", args.ortools_limits)):
        if value:
            parts.append(f"{flag} {value}")
    return "python benchmarks/fleet_learning.py " + " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                        help="repeatable; none = only the dispatchers (e.g. to fill --reference-cache)")
    parser.add_argument("--point-view", action="append", default=[], metavar="LABEL=V",
                        help="evaluate that shared checkpoint with POINT_VIEW=V (0 = every point), not its own")
    parser.add_argument("--vehicle-view", action="append", default=[], metavar="LABEL=W",
                        help="evaluate that shared checkpoint with VEHICLE_VIEW=W (0 = every vehicle), not its own")
    parser.add_argument("--sizes", default="fleet20", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--episodes", default="", help="SIZE=N per size (default 100 each)")
    parser.add_argument("--ortools-episodes", default="", help="SIZE=N per size (default: as --episodes; 0 = skip)")
    parser.add_argument("--ortools-limits", default="", metavar="L1,L2",
                        help="also run OR-Tools with these ORTOOLS_SOLUTION_LIMIT values (its default: 100): "
                             "what the planner reaches on less search, and how fast")
    parser.add_argument("--reference-cache", type=Path, default=None, metavar="DIR",
                        help="keep the dispatchers' per-episode results here and reuse them on a later call")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    views: dict[str, list[str]] = {}
    for key, items in (("POINT_VIEW", args.point_view), ("VEHICLE_VIEW", args.vehicle_view)):
        for label, value in (item.split("=", 1) for item in items):
            views.setdefault(label, []).append(f"{key}={int(value)}")
    episodes = per_size(args.episodes, 100)
    ortools = {size: min(n, episodes[size]) for size, n in per_size(args.ortools_episodes, 10**9).items()}
    limits = tuple(int(limit) for limit in filter(None, args.ortools_limits.split(",")))
    record = {"machine": machine(), "python": platform.python_version(), "seed": SEED,
              "command": command_line(args),
              "checkpoints": checkpoints, "views": views,
              "sizes": {size: evaluate_size(size, checkpoints, episodes[size], ortools[size], args.reference_cache, views,
                                           limits)
                        for size in args.sizes.split(",")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
