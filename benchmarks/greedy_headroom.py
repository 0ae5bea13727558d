"""How much is there to gain over the greedy dispatcher, and where? Hand-made variants of greedy, paired.

A learner that starts at greedy (the dispatch prior, docs/training.md) can only beat it by changing some
of its decisions. This measures what a few obvious changes are worth, each on the same seeded episodes
as greedy (the paired on-time gap, as ``fleetmarl compare`` reports it), so a reader can tell how big an
improvement the learner would have to find:

- *end of shift*: an idle vehicle with cargo goes home once the shift ends within its drive home plus a
  margin (greedy has no such rule: cargo still on board when the shift ends is never delivered; with
  300 s it is the ``greedy_shift`` reference dispatcher);
- greedy's two go-home thresholds (cargo slack, load) retuned;
- *best pairs first*: the vehicles greedy sends to a point this step are matched to points by the
  highest score over all (vehicle, point) pairs instead of in index order, with greedy_shift's rule (is
  the order in which greedy hands out points what it loses?);
- *chain* (``greedy_chain``): greedy_shift, and an idle vehicle leaves a point to a vehicle busy now
  that reaches it a step sooner from the end of its trip;
- the OR-Tools re-planning dispatcher (needs the ``ortools`` extra; skipped without it), and on its own
  states, how often greedy would make the same choice for an idle vehicle, by kind of action, and where
  OR-Tools keeps a vehicle back from the point greedy would send it to, whom its plan gives that point
  and whether greedy_chain keeps the vehicle back too.

    python benchmarks/greedy_headroom.py [--episodes 100 --seed 424242]

Prints a table and writes ``benchmarks/results/greedy_headroom.json``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.policies import (
    RETURN_CARGO_SLACK,
    RETURN_LOAD,
    BatchPolicy,
    chain_policy,
    greedy_policy,
    point_scores,
    reference_policy,
    shift_end_policy,
)
from fleetmarl.envs.spaces import STATE
from fleetmarl.eval.evaluation import make_batched_env, run_episodes
from learning import paired
from machine_info import machine

RESULTS = Path(__file__).resolve().parent / "results" / "greedy_headroom.json"
KINDS = ("point", "stay", "home")
BUSY_NOW = "a vehicle busy now"
"""``planned_for``'s answer when OR-Tools gives the point to a vehicle that is busy now (waiting_value.py uses it)"""


def variants(config: Config) -> dict[str, object]:
    out: dict[str, object] = {}
    for margin in (60, 300, 600):
        out[f"end of shift, margin {margin} s"] = shift_end_policy(config, margin)
    for slack, load in ((0.2, RETURN_LOAD), (0.05, RETURN_LOAD), (RETURN_CARGO_SLACK, 0.5), (RETURN_CARGO_SLACK, 0.9)):
        out[f"go-home thresholds slack {slack}, load {load}"] = functools.partial(
            greedy_policy, return_slack=slack, return_load=load)
    out["greedy_shift, best pairs first"] = best_pairs_first(shift_end_policy(config))
    out["greedy_chain (leave it to a busy vehicle)"] = chain_policy(config)
    if importlib.util.find_spec("ortools") is not None:
        out["OR-Tools re-planning dispatcher"] = reference_policy("ortools", 0, config)
    return out


def best_pairs_first(dispatcher: BatchPolicy) -> BatchPolicy:
    """``dispatcher``, but the vehicles it sends to a point this step get their points by the highest
    score over all (vehicle, point) pairs, one pair at a time, instead of in index order."""

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        actions = dispatcher(obs)
        points = obs["action_mask"].shape[-1] - 2
        score = np.where(obs["action_mask"][..., :points], point_scores(obs["point_features"]), -np.inf)
        for b, vehicles in enumerate(actions < points):
            left = list(np.flatnonzero(vehicles))
            table = score[b][left]  # (vehicles sent to a point, P)
            while left and np.isfinite(table).any():
                row, slot = np.unravel_index(np.argmax(table), table.shape)
                actions[b, left[row]] = slot
                table[:, slot] = -np.inf
                table = np.delete(table, row, axis=0)
                del left[row]
            actions[b, left] = points  # no point left for them: they stay, never two vehicles on one point
        return actions

    return policy


def kind(action: int, points: int) -> str:
    """'point', 'stay' or 'home' for a fleet action (points, then stay, then return to the base)."""
    return KINDS[0] if action < points else KINDS[1 + int(action - points)]


def agreement_on_ortools_states(config: Config, episodes: int, seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """OR-Tools drives; for each idle vehicle count (OR-Tools' kind, greedy's kind[, same point]), and where
    greedy would send it to a point that OR-Tools does not, whom OR-Tools' plan gives that point."""
    counts: Counter = Counter()
    held_back: Counter = Counter()
    env = make_batched_env(config, num_envs=episodes)
    obs = env.reset(seed=seed)
    planner, chain = reference_policy("ortools", 0, config), chain_policy(config)
    points = config.NUM_POINTS
    for _ in range(config.MAX_NUM_STEPS):
        planned, greedy, chained = planner(obs), greedy_policy(obs), chain(obs)
        idle = obs["state"][..., STATE["idle"]] > 0.5
        for b, v in zip(*np.nonzero(idle), strict=True):
            p, g = planned[b, v], greedy[b, v]
            key = f"{kind(p, points)} / {kind(g, points)}"
            if p < points and g < points:
                key += " (same point)" if p == g else " (another point)"
            counts[key] += 1
            if g < points <= p:
                owner = planned_for(planner.rows[b].plan, g, v, obs['state'][b])
                held_back[f"{kind(p, points)}: {owner}"] += 1
                held_back[f"{owner}: greedy_chain does not send it there either"] += int(chained[b, v] != g)
        obs, *_ = env.step(planned)
    return dict(sorted(counts.items())), dict(sorted(held_back.items()))


def planned_for(plan: list, slot: int, vehicle: int, state: np.ndarray) -> str:
    """Whom OR-Tools' plan (one token list per vehicle) gives the point in ``slot``, seen from ``vehicle``."""
    owners = [u for u, tokens in enumerate(plan) if any(k == "pick" and key[0] == slot for k, key in tokens)]
    if not owners:
        return "nobody (dropped)"
    if owners[0] == vehicle:
        return "this vehicle, later"
    return BUSY_NOW if state[owners[0], STATE["idle"]] < 0.5 else "another idle vehicle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--agreement-episodes", type=int, default=8)
    args = parser.parse_args()
    config = Config()
    greedy = run_episodes(config, greedy_policy, args.episodes, args.seed)["on_time_rate"]
    rows = [{"policy": "greedy", "on_time_rate": float(greedy.mean()), "gap": 0.0, "half_width": 0.0}]
    for name, policy in variants(config).items():
        on_time = run_episodes(config, policy, args.episodes, args.seed)["on_time_rate"]
        gap, half = paired(on_time, greedy)
        rows.append({"policy": name, "on_time_rate": float(on_time.mean()), "gap": gap, "half_width": half})
        print(f"{name:48s} {on_time.mean():.3f}  gap {gap:+.3f} ± {half:.3f}", flush=True)
    agreement, held_back = (agreement_on_ortools_states(config, args.agreement_episodes, args.seed)
                            if importlib.util.find_spec("ortools") is not None else ({}, {}))
    print(f"\n{'policy':48s} on-time  gap to greedy ({args.episodes} episodes from seed {args.seed})")
    for row in rows:
        print(f"{row['policy']:48s} {row['on_time_rate']:.3f}    {row['gap']:+.3f} ± {row['half_width']:.3f}")
    if agreement:
        total = sum(agreement.values())
        print(f"\nidle decisions on OR-Tools' own states ({args.agreement_episodes} episodes): OR-Tools / greedy")
        for key, count in agreement.items():
            print(f"  {key:32s} {count:6d}  {count / total:6.1%}")
        print("\nwhere greedy would send the vehicle to a point and OR-Tools does not: OR-Tools' action: whose the "
              "point is in its plan")
        for key, count in held_back.items():
            print(f"  {key:40s} {count:6d}")
    RESULTS.write_text(json.dumps({
        "machine": machine(),
        "episodes": args.episodes, "seed": args.seed, "rows": rows,
        "ortools_vs_greedy_idle_decisions": agreement,
        "ortools_held_back_points_planned_for": held_back,
    }, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
