"""How every cost grows with the fleet: 5, 10, 20, 50 (and 100) vehicles, side by side in one run.

Why: a learned dispatcher pays where fleets are large, so each part of the cost must be known as a
function of the fleet size A: environment steps, acting, the update, memory, replay and checkpoint bytes,
and the reference dispatchers' decision time. Demand grows with the fleet (points, initial points and
arrivals proportional to A, map area proportional to A: :func:`fleet_config`), so every size is the same
kind of problem. Each size runs in its own process (peak memory is per process, and no size warms the
caches of the next). For each metric the growth exponent b of ``cost ~ A**b`` is fitted over the sizes:
b = 1 for a per-step cost is linear in the fleet, i.e. a constant cost per vehicle-step.

    python benchmarks/bench_scale.py                                  # 5, 10, 20, 50; one thread
    python benchmarks/bench_scale.py --sizes 5,10,20,50,100 --set SHARE_PARAMETERS=True --out /tmp/s.json
    python benchmarks/bench_scale.py --sizes 5,20,40 --train-episodes 16 --set SHARE_PARAMETERS=True --set POINT_VIEW=8

Prints a table and writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fleetmarl.checkpoint import save_model_checkpoint
from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import greedy_policy, reference_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner.buffer import ReplayBuffer
from fleetmarl.learner.factory import build_algorithm, build_team
from machine_info import cpu_model

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
BASE_AGENTS = 5
METRICS = {  # key: (column title, format)
    "parameters_per_agent": ("params/agent", "{:>12,.0f}"),
    "env_vehicle_steps_per_s": ("env veh-steps/s", "{:>15,.0f}"),
    "act_ms_per_step": ("act ms/step", "{:>11.2f}"),
    "update_ms": ("update ms", "{:>9.1f}"),
    "update_ms_per_vehicle": ("update ms/veh", "{:>13.2f}"),
    "train_ms_per_vehicle_step": ("train ms/veh-step", "{:>17.3f}"),
    "peak_rss_mb": ("peak MB", "{:>8.0f}"),
    "replay_bytes_per_transition": ("replay B/trans", "{:>14,.0f}"),
    "checkpoint_agents_mb": ("agents MB", "{:>9.2f}"),
    "greedy_ms_per_decision": ("greedy ms", "{:>9.3f}"),
    "ortools_ms_per_decision": ("ortools ms", "{:>10.1f}"),
}


def fleet_config(base: Config, agents: int) -> Config:
    """``base`` grown to ``agents`` vehicles with demand in proportion: 6 point slots, 2 initial points and
    1/5 arrival per minute per vehicle, and a map whose area grows with the fleet (the default at 5)."""
    scale = agents / BASE_AGENTS
    return base.replace(NUM_AGENTS=agents, NUM_POINTS=6 * agents, INITIAL_POINTS=2 * agents,
                        POINT_ARRIVAL_RATE=base.POINT_ARRIVAL_RATE * scale, MAP_SIZE=base.MAP_SIZE * math.sqrt(scale))


def _median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def _to_torch(obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in obs.items()}


def train_ms_per_vehicle_step(config: Config, episodes: int) -> float:
    """Wall ms per vehicle-step of ``fleetmarl train`` for ``episodes`` episodes: acting, stepping, storing,
    sampling and updating together, learning after 256 warm-up transitions (the default 4,096 would leave
    a short run without updates), without the one-time pre-training burst, checkpoints, TensorBoard or
    evaluation: what the cost of a long run grows with."""
    from fleetmarl.trainer import train

    with tempfile.TemporaryDirectory() as root:
        run = config.replace(NUM_EPISODES=episodes, PRETRAIN_UPDATES=0, WARMUP_TRANSITIONS=256, ENABLE_MODEL_CHECKPOINTING=False,
                             ENABLE_TENSORBOARD=False, EVAL_INTERVAL=0, PROGRESS_BAR=False,
                             CHECKPOINTS_DIR=str(Path(root) / "checkpoints"), LOG_DIR=str(Path(root) / "runs"))
        start = time.perf_counter()
        train(run, log=lambda _message: None)
        wall = time.perf_counter() - start
    return 1000.0 * wall / (episodes * config.MAX_NUM_STEPS * config.NUM_AGENTS)


def measure(config: Config, steps: int, repeats: int, ortools_steps: int, train_episodes: int = 0) -> dict[str, Any]:
    """Every metric of one fleet size (in this process)."""
    torch.manual_seed(0)
    agents = build_team(config)
    algo = build_algorithm(agents, config)
    algo.set_episode(0)
    env = BatchedSamplingEnv(config, num_envs=config.NUM_ENVS)
    buffer = ReplayBuffer(config, observation_dims(config), seed=0, prior=algo.stored_prior())  # as the trainer's
    obs = env.reset(seed=0)
    env_s = greedy_s = 0.0
    for _ in range(steps):  # the greedy fleet fills the buffer, as the trainer's warm-up does
        start = time.perf_counter()
        actions = greedy_policy(obs)
        greedy_s += time.perf_counter() - start
        start = time.perf_counter()
        nxt, rewards, terminated, truncated, infos = env.step(actions)
        env_s += time.perf_counter() - start
        dones = terminated | truncated
        buffer.add(obs, actions, rewards, infos["final_obs"] if dones.any() else nxt, dones, actions)
        obs = nxt
    torch_obs = _to_torch(obs)
    act_ms = _median_ms(lambda: algo.act(torch_obs, 0.1), repeats)
    batch = buffer.sample(config.BATCH_SIZE, "cpu")
    update_ms = _median_ms(lambda: algo.update(batch), repeats)  # alternates actor+critic and critic-only
    with tempfile.TemporaryDirectory() as root:
        state = {"episode": 0, "noise_std": 1.0, "episode_rewards_log": [], "config": config.to_dict(),
                 "total_episodes_planned": config.NUM_EPISODES}
        folder = save_model_checkpoint([a.checkpoint_state() for a in agents], state, root)
        agents_bytes = sum(f.stat().st_size for f in Path(folder).glob("agent_*.pth"))
    decisions = steps * config.NUM_ENVS
    row: dict[str, Any] = {
        "agents": config.NUM_AGENTS, "points": config.NUM_POINTS, "map_size": config.MAP_SIZE,
        "parameters_per_agent": sum(p.numel() for p in agents[0].parameters()),
        "env_vehicle_steps_per_s": decisions * config.NUM_AGENTS / env_s,
        "act_ms_per_step": act_ms / config.NUM_ENVS,
        "update_ms": update_ms, "update_ms_per_vehicle": update_ms / config.NUM_AGENTS,
        "replay_bytes_per_transition": buffer.bytes_per_transition(),
        "checkpoint_agents_mb": agents_bytes / 1e6,
        "greedy_ms_per_decision": 1000.0 * greedy_s / decisions,
    }
    if train_episodes > 0:
        row["train_ms_per_vehicle_step"] = train_ms_per_vehicle_step(config, train_episodes)
    if ortools_steps > 0:
        row["ortools_ms_per_decision"] = ortools_ms(config, ortools_steps)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB
    return row


def ortools_ms(config: Config, steps: int) -> float | None:
    """Wall ms per OR-Tools decision (one step of one environment, the whole fleet), or None without it."""
    try:
        policy = reference_policy("ortools", 0, config)
    except Exception as exc:  # the optional extra is missing: the other columns still mean something
        print(f"  (OR-Tools not measured: {exc})", file=sys.stderr)
        return None
    env = BatchedSamplingEnv(config, num_envs=1)
    obs = env.reset(seed=0)
    spent = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        actions = policy(obs)
        spent += time.perf_counter() - start
        obs = env.step(actions)[0]
    return 1000.0 * spent / steps


def growth_exponents(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares slope of log(metric) on log(agents) per metric: cost ~ A**b."""
    out = {}
    for key in METRICS:
        pairs = [(r["agents"], r[key]) for r in rows if r.get(key)]
        if len(pairs) >= 2:
            x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
            out[key] = float(np.polyfit(x, y, 1)[0])
    return out


def print_table(rows: list[dict[str, Any]], exponents: dict[str, float]) -> None:
    print(f"{'vehicles':>8s} {'points':>6s} " + " ".join(title for title, _ in METRICS.values()))
    for r in rows:
        cells = [fmt.format(r[k]) if r.get(k) is not None else f"{'-':>{len(t)}s}" for k, (t, fmt) in METRICS.items()]
        print(f"{r['agents']:>8d} {r['points']:>6d} " + " ".join(cells))
    cells = [f"{exponents[k]:>{len(t)}.2f}" if k in exponents else f"{'-':>{len(t)}s}" for k, (t, _) in METRICS.items()]
    print(f"{'A**b, b =':>15s} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,10,20,50", help="fleet sizes, comma-separated (default 5,10,20,50)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every size, e.g. SHARE_PARAMETERS=True")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: comparable on a shared machine)")
    parser.add_argument("--steps", type=int, default=200, help="environment steps that fill the buffer")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of act and update (median)")
    parser.add_argument("--ortools-steps", type=int, default=30, help="OR-Tools decisions timed per size (0 = skip)")
    parser.add_argument("--train-episodes", type=int, default=0,
                        help="also time `fleetmarl train` for this many episodes per size (0 = skip; 16 in the docs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = apply_overrides(Config(), args.overrides)
    if args.one is not None:
        print(json.dumps(measure(fleet_config(base, args.one), args.steps, args.repeats, args.ortools_steps,
                                 args.train_episodes)))
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(size), "--threads", str(args.threads), "--steps",
                   str(args.steps), "--repeats", str(args.repeats), "--ortools-steps", str(args.ortools_steps),
                   "--train-episodes", str(args.train_episodes), *(f"--set={o}" for o in args.overrides)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{size} vehicles failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"measured {size} vehicles", file=sys.stderr)
    exponents = growth_exponents(rows)
    print_table(rows, exponents)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "threads": args.threads,
                    "torch": torch.__version__, "load_average": os.getloadavg()},
        "command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]),
        "overrides": args.overrides, "rows": rows, "growth_exponents": exponents}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
