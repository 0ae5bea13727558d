"""Time one MADDPG update of all agents: stacked networks vs the former vmap path vs a per-agent loop.

"stacked" is ``MADDPG`` as shipped (:mod:`fleetmarl.learner.stacked_networks`: hand-batched GEMMs over stacked
parameters). "vmap" is the same ``MADDPG.update`` with its stacked networks swapped for
``torch.func.vmap(functional_call(...))`` over the same stacked parameters (the implementation it
replaced, kept here only as a reference point). The loop is the straightforward implementation with the *same* networks, losses and options: target
actions agent by agent, then for each agent its critic step and (when due) its actor step, then Polyak.
Acting is timed the same way: one ``MADDPG.act`` call for all environments and agents vs one
``agent.act`` call per agent. Timings on a shared machine are noisy, so the variants are interleaved
round by round and the median of each is reported, with the load average before and after.

    python benchmarks/bench_update.py                      # defaults: 5 agents, 30 points, batch 512
    python benchmarks/bench_update.py --set EMBED_DIM=32   # try other widths

Prints a table and writes ``benchmarks/results/update.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner.agents import (
    LOGIT_REGULARISATION,
    MADDPG,
    MADDPGAgent,
    build_agents,
    select_actions,
    straight_through_gumbel,
)
from fleetmarl.learner.buffer import Batch, ReplayBuffer

RESULTS = Path(__file__).resolve().parent / "results" / "update.json"
VARIANTS = ("stacked", "vmap", "loop")

# vmap has no batching rule for the fused attention kernel and says so once per call
warnings.filterwarnings("ignore", message=r".*batching rule for aten::_scaled_dot_product", category=UserWarning)


class _Method(nn.Module):
    """Lets ``functional_call`` run a method of a parameter-free template (parameters named ``module.*``)."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.module, self.method)(*args)


class VmapActor:
    """The former batched actor: vmap over ``functional_call``; same interface as ``StackedActor``."""

    def __init__(self, template: nn.Module) -> None:
        meta = _Method(copy.deepcopy(template).to("meta"), "forward")
        self._fn = vmap(lambda p, s, x, o: functional_call(meta, {"module." + k: v for k, v in p.items()}, (s, x, o)))

    def __call__(self, params: dict, state: torch.Tensor, points: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self._fn(params, state, points, other)


class VmapCritic:
    """The former batched critic: vmap over ``functional_call``; same interface as ``StackedCritic``."""

    def __init__(self, template: nn.Module) -> None:
        meta = copy.deepcopy(template).to("meta")
        embed, q = _Method(meta, "embed_points"), _Method(meta, "q_value")

        def call(module: nn.Module, params: dict, *args: torch.Tensor) -> Any:
            return functional_call(module, {"module." + k: v for k, v in params.items()}, args)

        self._embed = vmap(lambda p, x: call(embed, p, x))
        self._q_shared = vmap(lambda p, t, pool, s, a: call(q, p, t, pool, s, a), in_dims=(0, 0, 0, None, None))
        self._q_each = vmap(lambda p, t, pool, s, a: call(q, p, t, pool, s, a), in_dims=(0, 0, 0, None, 0))

    def embed_points(self, params: dict, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._embed(params, points)

    def q_value(self, params: dict, tokens: torch.Tensor, pooled: torch.Tensor, states: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        fn = self._q_each if actions.dim() == 4 else self._q_shared  # (A, B, A, K) per agent or (B, A, K)
        return fn(params, tokens, pooled, states, actions)

    def __call__(self, params: dict, points: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q_value(params, *self.embed_points(params, points), states, actions)


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
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per round and variant")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of stacked, vmap and loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-loop", action="store_true", help="skip the slow per-agent loop reference")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    config = apply_overrides(Config(CAPACITY=4096), args.set)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    agents = build_agents(config, "cpu")
    stacked = MADDPG(agents, config)
    vmapped = MADDPG(agents, config)  # same agents and update; only the batched forward differs
    vmapped._actor_all = VmapActor(agents[0].actor)
    vmapped._critic_all = VmapCritic(agents[0].critic)
    batch = make_batch(config, gen)
    obs = random_obs(config, config.NUM_ENVS, gen)

    def update(algo: MADDPG, actor: bool):
        def run() -> None:
            algo.updates = 0 if actor else 1  # force the delayed schedule's branch
            algo.update(batch)
        return run

    def act_loop() -> None:
        with torch.no_grad():
            for i, agent in enumerate(agents):
                agent.act(obs["state"][:, i], obs["point_features"][:, i], obs["other_obs"][:, i], 0.1,
                          obs["action_mask"][:, i])

    cases = {
        "update (critic + actor)": {"stacked": update(stacked, True), "vmap": update(vmapped, True),
                                    "loop": lambda: loop_update(agents, config, batch, True)},
        "update (critic only)": {"stacked": update(stacked, False), "vmap": update(vmapped, False),
                                 "loop": lambda: loop_update(agents, config, batch, False)},
        f"act ({config.NUM_ENVS} envs x {config.NUM_AGENTS} agents)": {
            "stacked": lambda: stacked.act(obs, 0.1), "vmap": lambda: vmapped.act(obs, 0.1), "loop": act_loop},
    }
    variants = [v for v in VARIANTS if not (args.no_loop and v == "loop")]
    wall: dict[str, dict[str, list[float]]] = {name: {v: [] for v in variants} for name in cases}
    cpu: dict[str, dict[str, list[float]]] = {name: {v: [] for v in variants} for name in cases}
    for fns in cases.values():  # warm-up
        for v in variants:
            fns[v]()
    for _ in range(args.rounds):
        for name, fns in cases.items():
            reps = args.repeats * (20 if name.startswith("act") else 1)
            for v in variants:
                wall[name][v] += timed(fns[v], reps, cpu[name][v])
    load_after = os.getloadavg()

    buffer = ReplayBuffer(config.replace(CAPACITY=max(config.BATCH_SIZE, 1024)), observation_dims(config), seed=0)
    small = {k: v[:8].numpy() for k, v in random_obs(config, 8, gen).items()}
    for _ in range(buffer.capacity // 8):
        buffer.add(small, np.zeros((8, config.NUM_AGENTS), np.int64), np.zeros((8, config.NUM_AGENTS), np.float32),
                   small, np.zeros(8, bool))
    sample_times = timed(lambda: buffer.sample(config.BATCH_SIZE, "cpu"), 20)

    def ms(samples: list[float]) -> float:
        return round(statistics.median(samples) * 1e3, 3) if samples else float("nan")

    rows = [{"case": name, **{f"{v}_ms": ms(wall[name][v]) for v in variants},
             **{f"{v}_cpu_ms": ms(cpu[name][v]) for v in variants}} for name in cases]
    every = config.ACTOR_UPDATE_FREQUENCY if config.ENABLE_DELAYED_POLICY_UPDATES else 1
    rows.insert(2, {"case": f"update, mean with actor every {every}",
                    **{k: round((rows[0][k] + (every - 1) * rows[1][k]) / every, 3) for k in rows[0] if k != "case"}})
    for row in rows:
        if "loop_ms" in row:
            row["stacked_speedup_vs_loop"] = round(row["loop_ms"] / row["stacked_ms"], 2)
        row["stacked_speedup_vs_vmap"] = round(row["vmap_ms"] / row["stacked_ms"], 2)

    print(f"MADDPG update benchmark: {config.NUM_AGENTS} agents, {config.NUM_POINTS} points, batch {config.BATCH_SIZE}, "
          f"HIDDEN_DIM={config.HIDDEN_DIM} EMBED_DIM={config.EMBED_DIM} heads={config.TRANSFORMER_HEADS} "
          f"layers={config.TRANSFORMER_LAYERS}, {args.threads} threads, torch {torch.__version__}")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in load_before)}, after: "
          f"{' '.join(f'{x:.1f}' for x in load_after)} (wall times are only meaningful on an idle machine)")
    header = "".join(f"{v + ' ms':>12}" for v in variants) + "".join(f"{v + ' cpu':>12}" for v in variants)
    print(f"{'case':<36}{header}{'vs loop':>9}{'vs vmap':>9}")
    for row in rows:
        cells = "".join(f"{row[f'{v}_ms']:>12.2f}" for v in variants) + "".join(
            f"{row[f'{v}_cpu_ms']:>12.2f}" for v in variants)
        vs_loop = f"{row['stacked_speedup_vs_loop']:.2f}x" if "stacked_speedup_vs_loop" in row else "-"
        print(f"{row['case']:<36}{cells}{vs_loop:>9}{row['stacked_speedup_vs_vmap']:>8.2f}x")
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
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
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
