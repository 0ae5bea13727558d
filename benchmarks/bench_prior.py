"""What the dispatch prior costs an update: none, greedy_shift's and greedy_chain's (the default), side by side.

The learners update on the same batches, sampled from a buffer the greedy dispatcher filled on the
default `full` fleet (what warm-up stores), alternating, CPU time of this process (one torch thread:
a busy machine disturbs it least). The prior runs its dispatcher in NumPy on the batch's
observations (actor steps) and next observations (every update).

    python benchmarks/bench_prior.py --repeats 6

Prints a table and writes ``benchmarks/results/prior_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fleetmarl.config import Config
from fleetmarl.envs import make_batched_env
from fleetmarl.envs.policies import greedy_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import ReplayBuffer
from machine_info import machine

RESULTS = Path(__file__).resolve().parent / "results" / "prior_cost.json"


def greedy_buffer(config: Config, rounds: int = 3) -> ReplayBuffer:
    env = make_batched_env(config, config.NUM_ENVS)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    obs = env.reset(seed=0)
    for _ in range(config.MAX_NUM_STEPS * rounds):
        actions = greedy_policy(obs)
        nxt, rewards, terminated, truncated, infos = env.step(actions)
        buffer.add(obs, actions, rewards, infos.get("final_obs", nxt), terminated | truncated, actions)
        obs = nxt
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--batches", type=int, default=4, help="updates per timed repeat")
    args = parser.parse_args()
    torch.set_num_threads(1)
    default = Config()
    buffer = greedy_buffer(default)
    batches = [buffer.sample(default.BATCH_SIZE) for _ in range(args.batches)]
    variants = {"none": dict(DISPATCH_PRIOR_LOGIT=0.0), "greedy_shift": dict(DISPATCH_PRIOR_POLICY="greedy_shift"),
                "greedy_chain": dict(DISPATCH_PRIOR_POLICY="greedy_chain")}
    learners = {}
    for name, overrides in variants.items():
        torch.manual_seed(0)
        config = default.replace(**overrides)
        learners[name] = MADDPG(build_agents(config), config, imitation=True)
    times: dict[str, list[float]] = {name: [] for name in learners}
    for _ in range(args.repeats):
        for name, learner in learners.items():
            start = time.process_time()
            for batch in batches:
                learner.update(batch)
            times[name].append((time.process_time() - start) / len(batches) * 1e3)
    print("prior          median ms CPU / update  min")
    rows = []
    for name, values in times.items():
        rows.append({"prior": name, "median_ms": statistics.median(values), "min_ms": min(values)})
        print(f"{name:14s} {statistics.median(values):>22.1f}  {min(values):.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "rows": rows, "repeats": args.repeats,
                                   "batch_size": default.BATCH_SIZE}, indent=2) + "\n")


if __name__ == "__main__":
    main()
