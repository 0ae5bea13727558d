"""fleetmarl on MPE simple_spread, seed by seed: train, evaluate, and measure what the issue-12 table needs.

Each seed trains ``benchmarks/simple_spread.toml`` (600,000 frames: 24,000 episodes of 25 steps, N=3,
continuous actions) in this process with checkpoints on, then evaluates the final checkpoint on 100
noise-free seeded episodes (``fleetmarl eval``'s episodes). Recorded per seed: final return per agent
(mean and std over the 100 episodes; return = reward summed over the episode, averaged over agents),
the best periodic evaluation during the run, wall time, frames/s, the final checkpoint's size (every
file, replay buffer included) and the whole run's checkpoint disk (hard-linked chunks once), and the
training loop's stall per save. ``cpu_s`` is the process's CPU time: on a machine shared with other
jobs it is what the run would take alone (one torch thread, so about one core). The periodic evaluations give the learning curve, as
``eval_curve: [[frames, return per agent], ...]``, for one picture with BenchMARL's (``train_curve``:
the training episodes' return per agent, with exploration noise, per round).

    python benchmarks/bench_simple_spread.py --seeds 0 1 2 [--set KEY=VALUE ...] [--work DIR]
    python benchmarks/bench_simple_spread.py --seeds 1 --out A.json   # seeds as separate processes, then
    python benchmarks/bench_simple_spread.py --merge A.json B.json     # one file of all of them

Writes ``benchmarks/results/simple_spread.json``. Run it with ``nice -n 19`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fleetmarl.config import load_config  # noqa: E402
from fleetmarl.eval.evaluation import checkpoint_entry, default_eval_seed, evaluate_entry  # noqa: E402
from fleetmarl.trainer import Trainer  # noqa: E402

CONFIG = ROOT / "benchmarks" / "simple_spread.toml"
RESULTS = ROOT / "benchmarks" / "results" / "simple_spread.json"


def folder_bytes(path: Path, seen: set[int] | None = None) -> int:
    """Bytes of the files under ``path``; with ``seen``, a hard-linked file counts once."""
    total = 0
    for file in path.rglob("*"):
        if file.is_file():
            stat = file.stat()
            if seen is not None:
                if stat.st_ino in seen:
                    continue
                seen.add(stat.st_ino)
            total += stat.st_size
    return total


def train_curve(rewards: list[float], agents: int, per_round: int, steps: int) -> list[list[float]]:
    """[frames, mean training return per agent] per round (exploration noise on), small enough to keep."""
    return [[float((i + per_round) * steps), round(sum(rewards[i:i + per_round]) / (agents * per_round), 3)]
            for i in range(0, len(rewards), per_round)]


def run_seed(seed: int, overrides: list[str], work: Path, episodes: int) -> dict[str, Any]:
    folder = work / f"seed{seed}"
    config = load_config(CONFIG, [f"RANDOM_SEED={seed}", f"CHECKPOINTS_DIR={folder / 'checkpoints'}",
                                  f"LOG_DIR={folder / 'runs'}", f"RUN_NAME=simple_spread_seed{seed}", *overrides])
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer = Trainer(config, log=lambda message: print(message, flush=True))
    stalls: list[float] = []
    saved = trainer.logger.checkpoint_saved

    def record(path: Path, episode: int, *, stall_s: float | None = None, stats: Any = None) -> None:
        if stall_s is not None:
            stalls.append(1000.0 * stall_s)
        saved(path, episode, stall_s=stall_s, stats=stats)

    trainer.logger.checkpoint_saved = record  # type: ignore[method-assign]
    result = trainer.run()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    state = result.state
    agents = len(result.agents)
    frames = int(sum(state.metrics_log.get("length", [])))
    final = evaluate_entry(checkpoint_entry(result.last_checkpoint), episodes, default_eval_seed(config))
    per_agent = final.per_episode["reward_per_agent"]
    curve = [[float(e["episode"]) * config.MAX_NUM_STEPS, float(e["reward_per_agent"])] for e in state.eval_log]
    return {
        "seed": seed,
        "final_return_per_agent": float(per_agent.mean()),
        "final_return_per_agent_std": float(per_agent.std()),
        "eval_episodes": episodes,
        "eval_seed": default_eval_seed(config),
        "best_periodic_eval_return_per_agent": max((c[1] for c in curve), default=None),
        "wall_s": wall,
        "cpu_s": cpu,
        "frames": frames,
        "frames_per_s": frames / wall,
        "updates": state.updates,
        "checkpoint": str(result.last_checkpoint),
        "checkpoint_bytes": folder_bytes(result.last_checkpoint),
        "run_checkpoints_disk_bytes": folder_bytes(Path(config.CHECKPOINTS_DIR), seen=set()),
        "save_stall_ms": stalls,
        "eval_curve": curve,
        "train_curve": train_curve(state.episode_rewards_log, agents, config.NUM_ENVS, config.MAX_NUM_STEPS),
    }


def _median_known(values) -> float | None:
    """Median of the values that are known (not None), or None when none is."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None

def write_summary(runs: list[dict[str, Any]], overrides: list[str], out: Path) -> dict[str, Any]:
    summary = {
        "task": "mpe2 simple_spread_v3, N=3, max_cycles 25, continuous actions, 600,000 frames",
        "config": str(CONFIG.relative_to(ROOT)), "overrides": overrides,
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "median_final_return_per_agent": statistics.median(r["final_return_per_agent"] for r in runs),
        # a seed resumed across processes has no one-run time: the medians are over the seeds that do
        "median_wall_s": _median_known(r.get("wall_s") for r in runs),
        "median_cpu_s": _median_known(r.get("cpu_s") for r in runs),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--episodes", type=int, default=100, help="final evaluation episodes per seed")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work_simple_spread")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine the runs of these result files (seeds run as separate processes) into --out")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    if args.merge:
        for path in args.merge:
            runs.extend(json.loads(path.read_text())["runs"])
        summary = write_summary(sorted(runs, key=lambda r: r["seed"]), args.overrides, args.out)
    for seed in args.seeds if not args.merge else []:
        runs.append(run_seed(seed, args.overrides, args.work, args.episodes))
        print(json.dumps({k: v for k, v in runs[-1].items() if k not in ("eval_curve", "train_curve")}),
              flush=True)
        summary = write_summary(runs, args.overrides, args.out)  # after every seed: a cut session keeps them
    for r in runs:
        stall = max(r["save_stall_ms"], default=float("nan"))
        wall, cpu, rate = (r.get(k) or float("nan") for k in ("wall_s", "cpu_s", "frames_per_s"))
        print(f"seed {r['seed']}: return/agent {r['final_return_per_agent']:.2f} ± {r['final_return_per_agent_std']:.2f} "
              f"(best periodic {r['best_periodic_eval_return_per_agent'] or float('nan'):.2f}), {wall / 60:.1f} min, "
              f"{rate:.0f} frames/s, CPU {cpu / 60:.1f} min, "
              f"checkpoint {r['checkpoint_bytes'] / 1e6:.1f} MB, "
              f"max save stall {stall:.0f} ms")
    print(f"median final return per agent: {summary['median_final_return_per_agent']:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
