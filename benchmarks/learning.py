"""Does the learner match or beat the greedy dispatcher? Train, then compare on the same seeded episodes.

Each run trains one configuration and seed with ``fleetmarl.train`` (checkpoints, TensorBoard and
periodic evaluation off), then runs the learned fleet, greedy and random on the same evaluation
episodes and reports the on-time delivery rate of each, the paired gap learned - greedy with its 95%
half-width, conflicts per episode and the wall time of training.

    python benchmarks/learning.py --preset small-simplified --seeds 1,2,3
    python benchmarks/learning.py --preset small-full --seeds 1,2,3 --set TEACHER_POLICY=none   # an ablation
    python benchmarks/learning.py --preset default-800 --seeds 42,2024                          # the shorter default run

Presets (``PRESETS``) are small fleets users try first and a shortened default run; every learner
setting is the default unless ``--set`` changes it. Prints a table and appends one JSON line per run to
``benchmarks/results/learning.jsonl`` (with the machine), so ablations accumulate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs.policies import reference_policy
from fleetmarl.eval.evaluation import algorithm_policy, run_episodes
from fleetmarl.learner import MADDPG
from fleetmarl.trainer import train
from machine_info import machine

RESULTS = Path(__file__).resolve().parent / "results" / "learning.jsonl"
QUIET = dict(PROGRESS_BAR=False, ENABLE_TENSORBOARD=False, ENABLE_MODEL_CHECKPOINTING=False)
SMALL = dict(NUM_AGENTS=3, MAX_NUM_STEPS=80, MAP_SIZE=3000.0, NUM_ENVS=8, NUM_EPISODES=320,
             WARMUP_TRANSITIONS=1024, CAPACITY=50_000, EVAL_INTERVAL=40)
PRESETS: dict[str, dict[str, Any]] = {
    "small-simplified": dict(SMALL, ENVIRONMENT_TYPE="simplified", NUM_POINTS=10, INITIAL_POINTS=10),
    "small-full": dict(SMALL, ENVIRONMENT_TYPE="full", NUM_POINTS=10, INITIAL_POINTS=4),
    "default-800": dict(NUM_EPISODES=800),
    "default": dict(),
}


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b and its 95% half-width (normal approximation over episodes)."""
    diff = a - b
    return float(diff.mean()), float(1.96 * diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


def run(preset: str, seed: int, overrides: list[str], episodes: int) -> dict[str, Any]:
    config = apply_overrides(Config(**{**PRESETS[preset], **QUIET, "RANDOM_SEED": seed}), overrides)
    start = time.perf_counter()
    result = train(config, log=lambda message: None)
    seconds = time.perf_counter() - start
    eval_seed = seed + 10_000
    learned = run_episodes(config, algorithm_policy(MADDPG(result.agents, config)), episodes, eval_seed)
    greedy = run_episodes(config, reference_policy("greedy"), episodes, eval_seed)
    random = run_episodes(config, reference_policy("random", seed=seed), episodes, eval_seed)
    gap, half = paired(learned["on_time_rate"], greedy["on_time_rate"])
    return {
        "preset": preset, "seed": seed, "overrides": overrides, "episodes": episodes,
        "learned": float(learned["on_time_rate"].mean()), "greedy": float(greedy["on_time_rate"].mean()),
        "random": float(random["on_time_rate"].mean()), "gap": gap, "gap_95": half,
        "conflicts": float(learned["conflicts"].mean()), "train_seconds": round(seconds, 1),
        "curve": [(int(e["episode"]), round(e["on_time_rate"], 3)) for e in result.state.eval_log],
        "machine": machine(), "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small-simplified")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--episodes", type=int, default=64, help="evaluation episodes (default 64)")
    args = parser.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'preset':18s} {'seed':>5s} {'learned':>8s} {'greedy':>7s} {'random':>7s} {'gap':>15s} {'conflicts':>9s} {'train s':>8s}")
    for seed in (int(s) for s in args.seeds.split(",")):
        row = run(args.preset, seed, args.overrides, args.episodes)
        with RESULTS.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(f"{row['preset']:18s} {seed:5d} {row['learned']:8.3f} {row['greedy']:7.3f} {row['random']:7.3f} "
              f"{row['gap']:+8.3f}±{row['gap_95']:.3f} {row['conflicts']:9.1f} {row['train_seconds']:8.1f}  "
              f"curve {' '.join(f'{v:.2f}' for _, v in row['curve'])}", flush=True)


if __name__ == "__main__":
    main()
