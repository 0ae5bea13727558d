"""How many environment steps per second: the PettingZoo env vs the NumPy-batched env at B = 1..256.

Only ``env.step`` is timed (random masked actions are drawn outside the timer). One env-step is one
step of one environment copy with all its agents, so the batched rate is B x steps / seconds. The design
asks for the batched env at B=64 to be at least 20x the single env per env-step. Also reports greedy vs
random on ``full`` with default settings (the numbers in docs/environment.md). Prints tables and writes
benchmarks/results/env.json.

    python benchmarks/bench_env.py [--env-steps 20000] [--episodes 50] [--seed 0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv, SamplingEnv
from fleetmarl.envs.policies import random_policy
from fleetmarl.eval.evaluation import evaluate_reference

BATCH_SIZES = (1, 16, 64, 256)
REQUIRED_SPEEDUP_AT_64 = 20.0


def time_single(config: Config, steps: int, seed: int) -> float:
    """Env-steps per second of SamplingEnv (PettingZoo dicts in and out)."""
    env = SamplingEnv(config)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    elapsed = 0.0
    for _ in range(steps):
        if not env.agents:
            obs, _ = env.reset()
        actions = {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}
        start = time.perf_counter()
        obs, *_ = env.step(actions)
        elapsed += time.perf_counter() - start
    return steps / elapsed


def time_batched(config: Config, num_envs: int, env_steps: int, seed: int) -> float:
    """Env-steps per second of BatchedSamplingEnv with ``num_envs`` copies (auto-reset included)."""
    env = BatchedSamplingEnv(config, num_envs)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    steps = max(config.MAX_NUM_STEPS, env_steps // num_envs)
    elapsed = 0.0
    for _ in range(steps):
        actions = random_policy(obs, rng)
        start = time.perf_counter()
        obs, *_ = env.step(actions)
        elapsed += time.perf_counter() - start
    return steps * num_envs / elapsed


def run(env_steps: int, episodes: int, seed: int, rounds: int) -> dict[str, Any]:
    """Best of ``rounds`` interleaved measurements per setting: the machine may be shared, and the
    fastest round is the one least disturbed by other work."""
    config = Config()
    single = 0.0
    batched = dict.fromkeys(BATCH_SIZES, 0.0)
    for _ in range(rounds):
        single = max(single, time_single(config, min(env_steps, 2000), seed))
        for b in BATCH_SIZES:
            batched[b] = max(batched[b], time_batched(config, b, env_steps, seed))
    return {
        "config": {k: getattr(config, k) for k in ("ENVIRONMENT_TYPE", "NUM_AGENTS", "NUM_POINTS", "MAX_NUM_STEPS")},
        "rounds": rounds,
        "single_env_steps_per_s": single,
        "batched_env_steps_per_s": {str(b): rate for b, rate in batched.items()},
        "speedup_vs_single": {str(b): rate / single for b, rate in batched.items()},
        "required_speedup_at_64": REQUIRED_SPEEDUP_AT_64,
        "reference_policies": {name: evaluate_reference(config, name, episodes, seed) for name in ("greedy", "random")},
        "reference_episodes": episodes,
        "reference_seed": seed,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def print_tables(result: dict[str, Any]) -> None:
    print(f"{'env':<22}{'env-steps/s':>14}{'x single':>10}")
    print(f"{'SamplingEnv':<22}{result['single_env_steps_per_s']:>14,.0f}{1.0:>10.1f}")
    for b, rate in result["batched_env_steps_per_s"].items():
        print(f"{'Batched B=' + b:<22}{rate:>14,.0f}{result['speedup_vs_single'][b]:>10.1f}")
    print()
    policies = result["reference_policies"]
    names = ("on_time_rate", "service_rate_weighted", "missed_points", "samples_delivered", "distance_km",
             "energy_used", "charging_trips", "conflicts", "reward")
    print(f"{'metric (mean ± std)':<24}" + "".join(f"{name:>20}" for name in policies))
    for metric in names:
        cells = "".join(f"{policies[p][metric]['mean']:>12.3f} ± {policies[p][metric]['std']:<5.3f}"
                        for p in policies)
        print(f"{metric:<24}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=10000, help="env-steps per batched measurement")
    parser.add_argument("--episodes", type=int, default=50, help="episodes per reference policy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; the best is kept")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "env.json")
    args = parser.parse_args()
    result = run(args.env_steps, args.episodes, args.seed, args.rounds)
    print_tables(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    if result["speedup_vs_single"]["64"] < REQUIRED_SPEEDUP_AT_64:
        print(f"WARNING: batched B=64 is below {REQUIRED_SPEEDUP_AT_64}x the single env")


if __name__ == "__main__":
    main()
