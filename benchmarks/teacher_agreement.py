"""Where does a trained fleet leave the greedy dispatcher? Its choices next to greedy's, on its own states.

The learner imitates greedy where its critic rates greedy's choice higher (docs/training.md), so what
it does differently is exactly where it hopes to beat greedy, or where it fails to. This drives the
noise-free fleet through seeded episodes and, at every step, asks greedy what it would do in the same
observation (greedy is a pure function of it). It counts, for vehicles that are free to choose (idle)
and for busy ones, each pair (greedy's kind of action, the fleet's): point, stay or home, plus how
often both chose a point but not the same one.

    python benchmarks/teacher_agreement.py checkpoints/checkpoint_ep400_... [--episodes 16 --seed 424242]

Prints a table and writes ``benchmarks/results/teacher_agreement.json``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from fleetmarl.envs.policies import greedy_policy
from fleetmarl.envs.spaces import STATE
from fleetmarl.eval.evaluation import algorithm_policy, make_batched_env
from fleetmarl.eval.policy import load_checkpoint_policy

RESULTS = Path(__file__).resolve().parent / "results" / "teacher_agreement.json"
KINDS = ("point", "stay", "home")


def kinds(actions: np.ndarray, num_points: int) -> np.ndarray:
    """0 = a point, 1 = stay, 2 = home, per action."""
    return np.where(actions < num_points, 0, np.where(actions == num_points, 1, 2))


def count(checkpoint: str, episodes: int, seed: int) -> dict:
    policy = load_checkpoint_policy(checkpoint)
    config, fleet = policy.config, algorithm_policy(policy.algo)
    env = make_batched_env(config, num_envs=episodes)
    obs = env.reset(seed=seed)
    n = config.NUM_POINTS
    pairs: Counter[tuple[str, str, str]] = Counter()
    other_point = 0
    for _ in range(config.MAX_NUM_STEPS):
        ours, greedy = fleet(obs), greedy_policy(obs)
        idle = obs["state"][..., STATE["idle"]] > 0.5
        for g, o, i in zip(kinds(greedy, n).ravel(), kinds(ours, n).ravel(), idle.ravel(), strict=True):
            pairs[("idle" if i else "busy", KINDS[g], KINDS[o])] += 1
        other_point += int(((ours < n) & (greedy < n) & (ours != greedy) & idle).sum())
        obs, *_ = env.step(ours)
    idle_total = sum(v for (state, _, _), v in pairs.items() if state == "idle")
    idle_same = sum(v for (state, g, o), v in pairs.items() if state == "idle" and g == o) - other_point
    return {"checkpoint": str(checkpoint), "episodes": episodes, "seed": seed,
            "idle_decisions": idle_total, "idle_agreement": idle_same / max(idle_total, 1),
            "both_point_but_another": other_point,
            "pairs": [{"vehicle": s, "greedy": g, "fleet": o, "count": v} for (s, g, o), v in pairs.most_common()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=424242)
    args = parser.parse_args()
    result = count(args.checkpoint, args.episodes, args.seed)
    print(f"{result['checkpoint']}: {result['episodes']} episodes from seed {result['seed']}; "
          f"idle vehicles choose as greedy {result['idle_agreement']:.1%} of {result['idle_decisions']} times")
    print(f"{'vehicle':8} {'greedy':7} {'fleet':7} {'count':>6}")
    for row in result["pairs"]:
        print(f"{row['vehicle']:8} {row['greedy']:7} {row['fleet']:7} {row['count']:6d}")
    print(f"both chose a point, but not the same one: {result['both_point_but_another']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
