"""One MADDPG update of all agents: time, FLOPs, and the share of this CPU's GEMM peak it reaches.

The batch is real: the default `full` environment played by the greedy dispatcher (what the trainer's
warm-up stores) or by the random policy (more active points, so the actor's point encoder has more rows
to read), sampled from the replay buffer as the trainer does. For fp32 and bf16 autocast (where the CPU
multiplies bf16 natively) it reports the median time of an update with and without the actor step,
their FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``, the achieved GFLOP/s, and that as a
fraction of the fp32 / bf16 GEMM peak measured in the same process (2048 x 2048 matmul).

    python benchmarks/bench_update.py                  # defaults: 5 agents, 30 points, batch 512
    python benchmarks/bench_update.py --threads 1      # one core: comparable on a shared machine

Prints a table and writes ``benchmarks/results/update.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import greedy_policy, random_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import Batch, ReplayBuffer
from fleetmarl.learner.precision import cpu_has_native_bf16
from machine_info import cpu_model

RESULTS = Path(__file__).resolve().parent / "results" / "update.json"


def filled_buffer(config: Config, policy: str, steps: int = 360) -> ReplayBuffer:
    env = BatchedSamplingEnv(config, num_envs=config.NUM_ENVS)
    prior = MADDPG(build_agents(config), config).stored_prior()  # the trainer's buffer stores the prior's choices
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, prior=prior)
    rng = np.random.default_rng(0)
    obs = env.reset(seed=0)
    for _ in range(steps):
        actions = greedy_policy(obs) if policy == "greedy" else random_policy(obs, rng)
        nxt, rewards, terminated, truncated, info = env.step(actions)
        done = terminated | truncated
        buffer.add(obs, actions, rewards, info["final_obs"] if done.any() else nxt, done, greedy_policy(obs))
        obs = nxt
    return buffer


def gemm_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square matmul: the ceiling the update's GEMMs could reach on this CPU."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(config: Config, batch: Batch, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    algo = MADDPG(build_agents(config), config, imitation=True)  # the teacher's choices are in the batch
    algo.set_episode(0)
    for _ in range(4):  # warm up allocator and kernels
        algo.update(batch)
    flops = {}
    for name in ("actor", "critic"):
        algo.updates = 0 if name == "actor" else 1  # actor step due on even updates
        with FlopCounterMode(display=False) as counter:
            algo.update(batch)
        flops[name] = counter.get_total_flops()
    times: dict[str, list[float]] = {"actor": [], "critic": []}
    for _ in range(repeats):
        for name in ("actor", "critic"):
            algo.updates = 0 if name == "actor" else 1
            times[name].append(_seconds(lambda: algo.update(batch)))
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    mean_ms = (ms["actor"] + ms["critic"]) / 2  # ACTOR_UPDATE_FREQUENCY = 2
    mean_flops = (flops["actor"] + flops["critic"]) / 2
    return {"ms_with_actor": ms["actor"], "ms_critic_only": ms["critic"], "ms_mean": mean_ms,
            "gflop_with_actor": flops["actor"] / 1e9, "gflop_critic_only": flops["critic"] / 1e9,
            "gflops_achieved": mean_flops / (mean_ms / 1000) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON to write (default benchmarks/results/update.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = apply_overrides(Config(), args.overrides)
    peaks = {"fp32": gemm_peak(torch.float32)}
    precisions = ["fp32"]
    if cpu_has_native_bf16():
        peaks["bf16"] = gemm_peak(torch.bfloat16)
        precisions.append("bf16")
    rows = []
    for data in ("greedy", "random"):
        batch = filled_buffer(base, data).sample(base.BATCH_SIZE, "cpu")
        for precision in precisions:
            config = apply_overrides(base, [f"MIXED_PRECISION={precision}"])
            row = {"data": data, "precision": precision, **measure(config, batch, args.repeats)}
            row["fraction_of_gemm_peak"] = row["gflops_achieved"] / peaks[precision]
            rows.append(row)
    print(f"GEMM peak (2048^2, {torch.get_num_threads()} threads): "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    print(f"{'data':7s} {'precision':9s} {'actor+critic':>12s} {'critic only':>11s} {'mean':>7s} "
          f"{'GFLOP/update':>12s} {'GFLOP/s':>8s} {'of peak':>7s}")
    for r in rows:
        print(f"{r['data']:7s} {r['precision']:9s} {r['ms_with_actor']:10.1f}ms {r['ms_critic_only']:9.1f}ms "
              f"{r['ms_mean']:5.1f}ms {(r['gflop_with_actor'] + r['gflop_critic_only']) / 2:12.2f} "
              f"{r['gflops_achieved']:8.1f} {100 * r['fraction_of_gemm_peak']:6.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "load_average": os.getloadavg()},
        "batch_size": base.BATCH_SIZE, "gemm_peak_gflops": peaks, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
