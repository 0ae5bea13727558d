"""Time one MADDPG update of all agents, batched (vmap over stacked parameters) vs a per-agent loop.

The loop is the straightforward implementation with the *same* networks, losses and options: target
actions agent by agent, then for each agent its critic step and (when due) its actor step, then Polyak.
Acting is timed the same way: one ``MADDPG.act`` call for all environments and agents vs one
``agent.act`` call per agent. Timings on a shared machine are noisy, so batched and loop runs are
interleaved and the median of each is reported.

    python benchmarks/bench_update.py                      # defaults: 5 agents, 30 points, batch 512
    python benchmarks/bench_update.py --set EMBED_DIM=32   # try other widths

Prints a table and writes ``benchmarks/results/update.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fleetmarl.agents import (
    LOGIT_REGULARISATION,
    MADDPG,
    MADDPGAgent,
    build_agents,
    select_actions,
    straight_through_gumbel,
)
from fleetmarl.buffer import Batch, ReplayBuffer
from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs.spaces import observation_dims

RESULTS = Path(__file__).resolve().parent / "results" / "update.json"


def random_obs(config: Config, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    d = observation_dims(config)
    a = d.num_agents
    mask = torch.rand(batch, a, d.num_actions, generator=gen) < 0.6
    mask[..., d.num_points] = True
    return {
        "state": torch.randn(batch, a, d.state, generator=gen),
        "point_features": torch.randn(batch, a, d.num_points, d.point, generator=gen),
        "other_obs": torch.randn(batch, a, d.other_rows, d.other, generator=gen),
        "action_mask": mask,
    }


def make_batch(config: Config, gen: torch.Generator) -> Batch:
    b, d = config.BATCH_SIZE, observation_dims(config)
    return Batch(obs=random_obs(config, b, gen), next_obs=random_obs(config, b, gen),
                 actions=torch.randint(0, d.num_actions, (b, d.num_agents), generator=gen),
                 rewards=torch.randn(b, d.num_agents, generator=gen), dones=torch.zeros(b),
                 weights=torch.ones(b), indices=torch.arange(b))


def loop_update(agents: list[MADDPGAgent], config: Config, batch: Batch, update_actor: bool) -> None:
    """Reference: the same MADDPG update, one agent and one small network call at a time."""
    d = agents[0].dims
    obs, nxt = batch.obs, batch.next_obs
    with torch.no_grad():
        next_actions = []
        for j, agent in enumerate(agents):
            logits = agent.actor_target(nxt["state"][:, j], nxt["point_features"][:, j], nxt["other_obs"][:, j])
            noise = (torch.randn_like(logits) * config.TARGET_POLICY_NOISE_STD).clamp(
                -config.TARGET_POLICY_NOISE_CLIP, config.TARGET_POLICY_NOISE_CLIP)
            chosen = select_actions(logits + noise, 0.0, nxt["action_mask"][:, j], fallback=d.num_points)
            next_actions.append(F.one_hot(chosen, d.num_actions).float())
        next_actions_all = torch.stack(next_actions, dim=1)
    replay = F.one_hot(batch.actions, d.num_actions).float()
    for i, agent in enumerate(agents):
        with torch.no_grad():
            q_next = agent.critic_target(nxt["point_features"][:, i], nxt["state"], next_actions_all)
            y = batch.rewards[:, i] + config.GAMMA * (1 - batch.dones) * q_next
        q = agent.critic(obs["point_features"][:, i], obs["state"], replay)
        critic_loss = (batch.weights * (q - y).square()).mean()
        agent.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.critic.parameters(), config.GRAD_CLIP_NORM)
        agent.critic_optimizer.step()
        if update_actor:
            logits = agent.actor(obs["state"][:, i], obs["point_features"][:, i], obs["other_obs"][:, i])
            joint = replay.clone()
            joint[:, i] = straight_through_gumbel(logits, obs["action_mask"][:, i])
            actor_loss = -agent.critic(obs["point_features"][:, i], obs["state"], joint).mean() \
                + LOGIT_REGULARISATION * logits.square().mean()
            agent.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.actor.parameters(), config.GRAD_CLIP_NORM)
            agent.actor_optimizer.step()
    if update_actor:
        with torch.no_grad():
            for agent in agents:
                for net, target in ((agent.actor, agent.actor_target), (agent.critic, agent.critic_target)):
                    for p, t in zip(net.parameters(), target.parameters(), strict=True):
                        t.lerp_(p, config.TAU)


def timed(fn, repeats: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds per call; also appends this process's CPU seconds per call to ``cpu`` (steadier than
    wall time when other processes compete for the cores)."""
    out = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of batched and loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-loop", action="store_true", help="skip the slow per-agent loop reference")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    config = apply_overrides(Config(CAPACITY=4096), args.set)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    agents = build_agents(config, "cpu")
    algo = MADDPG(agents, config)
    batch = make_batch(config, gen)
    obs = random_obs(config, config.NUM_ENVS, gen)

    def batched(actor: bool):
        def run() -> None:
            algo.updates = 0 if actor else 1  # force the delayed schedule's branch
            algo.update(batch)
        return run

    def loop(actor: bool):
        return lambda: loop_update(agents, config, batch, actor)

    def act_loop() -> None:
        with torch.no_grad():
            for i, agent in enumerate(agents):
                agent.act(obs["state"][:, i], obs["point_features"][:, i], obs["other_obs"][:, i], 0.1,
                          obs["action_mask"][:, i])

    cases = {
        "update (critic + actor)": (batched(True), loop(True)),
        "update (critic only)": (batched(False), loop(False)),
        f"act ({config.NUM_ENVS} envs x {config.NUM_AGENTS} agents)": (lambda: algo.act(obs, 0.1), act_loop),
    }
    times: dict[str, dict[str, list[float]]] = {name: {"batched": [], "loop": [], "batched_cpu": [], "loop_cpu": []}
                                                 for name in cases}
    for fast, slow in cases.values():  # warm-up
        fast()
        if not args.no_loop:
            slow()
    for _ in range(args.rounds):
        for name, (fast, slow) in cases.items():
            reps = args.repeats * (20 if name.startswith("act") else 1)
            times[name]["batched"] += timed(fast, reps, times[name]["batched_cpu"])
            if not args.no_loop:
                times[name]["loop"] += timed(slow, reps, times[name]["loop_cpu"])

    buffer = ReplayBuffer(config.replace(CAPACITY=max(config.BATCH_SIZE, 1024)), observation_dims(config), seed=0)
    small = {k: v[:8].numpy() for k, v in random_obs(config, 8, gen).items()}
    for _ in range(buffer.capacity // 8):
        buffer.add(small, np.zeros((8, config.NUM_AGENTS), np.int64), np.zeros((8, config.NUM_AGENTS), np.float32),
                   small, np.zeros(8, bool))
    sample_times = timed(lambda: buffer.sample(config.BATCH_SIZE, "cpu"), 20)

    every = config.ACTOR_UPDATE_FREQUENCY if config.ENABLE_DELAYED_POLICY_UPDATES else 1
    rows = []
    for name, t in times.items():
        fast = statistics.median(t["batched"]) * 1e3
        slow = statistics.median(t["loop"]) * 1e3 if t["loop"] else float("nan")
        cpu_fast = statistics.median(t["batched_cpu"]) * 1e3
        cpu_slow = statistics.median(t["loop_cpu"]) * 1e3 if t["loop_cpu"] else float("nan")
        rows.append({"case": name, "batched_ms": round(fast, 3), "loop_ms": round(slow, 3),
                     "speedup": round(slow / fast, 2) if t["loop"] else None,
                     "batched_cpu_ms": round(cpu_fast, 3), "loop_cpu_ms": round(cpu_slow, 3)})
    keys = ("batched_ms", "loop_ms", "batched_cpu_ms", "loop_cpu_ms")
    mean_update = {k: (rows[0][k] + (every - 1) * rows[1][k]) / every for k in keys}
    rows.insert(2, {"case": f"update, mean with actor every {every}", **{k: round(v, 3) for k, v in mean_update.items()},
                    "speedup": None if args.no_loop else round(mean_update["loop_ms"] / mean_update["batched_ms"], 2)})
    print(f"MADDPG update benchmark: {config.NUM_AGENTS} agents, {config.NUM_POINTS} points, batch {config.BATCH_SIZE}, "
          f"HIDDEN_DIM={config.HIDDEN_DIM} EMBED_DIM={config.EMBED_DIM} heads={config.TRANSFORMER_HEADS} "
          f"layers={config.TRANSFORMER_LAYERS}, {args.threads} threads, torch {torch.__version__}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in load)} (wall times are only meaningful on an idle machine)")
    print(f"{'case':<36}{'batched ms':>12}{'loop ms':>12}{'speedup':>10}{'batched cpu ms':>16}{'loop cpu ms':>13}")
    for row in rows:
        speed = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        print(f"{row['case']:<36}{row['batched_ms']:>12.2f}{row['loop_ms']:>12.2f}{speed:>10}"
              f"{row['batched_cpu_ms']:>16.2f}{row['loop_cpu_ms']:>13.2f}")
    per = buffer.bytes_per_transition()
    print(f"replay buffer: {per} bytes/transition, {per * 100_000 / 1e9:.2f} GB at CAPACITY=100000; "
          f"sample({config.BATCH_SIZE}) {statistics.median(sample_times) * 1e3:.2f} ms")
    params = sum(p.numel() for p in agents[0].actor.parameters()), sum(p.numel() for p in agents[0].critic.parameters())
    result = {
        "config": {k: getattr(config, k) for k in ("NUM_AGENTS", "NUM_POINTS", "BATCH_SIZE", "HIDDEN_DIM", "EMBED_DIM",
                                                   "TRANSFORMER_HEADS", "TRANSFORMER_LAYERS", "NUM_ENVS",
                                                   "ENABLE_DELAYED_POLICY_UPDATES", "ACTOR_UPDATE_FREQUENCY")},
        "actor_params": params[0], "critic_params": params[1],
        "threads": args.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "load_average_before": [round(x, 2) for x in load],
        "rows": rows,
        "buffer_bytes_per_transition": per,
        "buffer_gb_at_100k": round(per * 100_000 / 1e9, 3),
        "sample_ms": round(statistics.median(sample_times) * 1e3, 3),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
