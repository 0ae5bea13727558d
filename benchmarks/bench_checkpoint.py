"""How long does a checkpoint stall the training loop? Background (snapshot + submit) vs synchronous.

Payload at the default sizes: 5 agents of a few MB each (actor, critic, both targets, Adam moments,
Transformer) and a replay buffer of 50k transitions (state 5x13, point features 5x30x10 in float16,
other agents 5x4x8, action mask 5x32, each twice for the next observation, plus actions, rewards,
dones). Prints a table and writes benchmarks/results/checkpoint.json.

    python benchmarks/bench_checkpoint.py [--transitions 50000] [--repeats 3] [--dir /tmp/fleetmarl-bench]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from fleetmarl.checkpoint import CheckpointWriter, save_model_checkpoint, snapshot
from fleetmarl.checkpoint.disk import format_bytes, payload_bytes
from fleetmarl.config import Config

N_AGENTS, N_POINTS, STATE_DIM, POINT_DIM, OTHER_DIM, MASK_DIM = 5, 30, 13, 10, 8, 32


def fake_agent_state(seed: int) -> dict[str, Any]:
    """Shaped like a MADDPG agent: networks, targets, optimizers with two Adam moments each."""
    gen = torch.Generator().manual_seed(seed)

    def net(*shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {f"layer{i}.weight": torch.randn(*s, generator=gen) for i, s in enumerate(shapes)}

    actor = net((512, 256), (256, 256), (32, 256))
    critic = net((512, 640), (256, 512), (1, 256))
    transformer = net((192, 64), (64, 64), (256, 64), (64, 256))

    def adam(params: dict[str, torch.Tensor]) -> dict[str, Any]:
        state = {i: {"step": torch.tensor(1000.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
                 for i, p in enumerate(params.values())}
        return {"state": state, "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.999), "params": list(state)}]}

    return {
        "actor": actor, "critic": critic, "actor_target": {k: v.clone() for k, v in actor.items()},
        "critic_target": {k: v.clone() for k, v in critic.items()}, "transformer": transformer,
        "actor_optimizer": adam({**actor, **transformer}), "critic_optimizer": adam(critic),
        "lr_actor": 5e-5, "lr_critic": 5e-4,
    }


def fake_replay_buffer(transitions: int) -> dict[str, Any]:
    obs = {
        "state": torch.randn(transitions, N_AGENTS, STATE_DIM),
        "point_features": torch.randn(transitions, N_AGENTS, N_POINTS, POINT_DIM).half(),
        "other_obs": torch.randn(transitions, N_AGENTS, N_AGENTS - 1, OTHER_DIM),
        "action_mask": torch.rand(transitions, N_AGENTS, MASK_DIM) > 0.3,
    }
    data = {**obs, **{f"next_{k}": v.clone() for k, v in obs.items()}}
    data.update(
        actions=torch.randint(0, MASK_DIM, (transitions, N_AGENTS)),
        rewards=torch.randn(transitions, N_AGENTS),
        dones=torch.zeros(transitions, dtype=torch.bool),
        priorities=torch.rand(transitions),
    )
    return {"size": transitions, "position": transitions, "data": data}


def training_state(episode: int) -> dict[str, Any]:
    config = Config()
    return {
        "episode": episode, "noise_std": 0.83, "episode_rewards_log": [float(i) for i in range(episode)],
        "config": config.to_dict(), "total_episodes_planned": config.NUM_EPISODES,
        "rng": {"torch": torch.get_rng_state()},
    }


def bench(transitions: int, repeats: int, root: Path) -> dict[str, Any]:
    agents = [fake_agent_state(i) for i in range(N_AGENTS)]
    buffer = fake_replay_buffer(transitions)
    sync_s, blocked_s, snapshot_s, background_s = [], [], [], []
    sizes = []
    for r in range(repeats):
        start = time.perf_counter()
        path = save_model_checkpoint(agents, training_state(200 * (2 * r + 1)), root / "sync", replay_buffer_state=buffer)
        sync_s.append(time.perf_counter() - start)
        sizes.append(sum(f.stat().st_size for f in path.iterdir()))

    writer = CheckpointWriter(async_=True)
    for r in range(repeats):
        start = time.perf_counter()
        frozen = snapshot({"agents": agents, "state": training_state(200 * (2 * r + 2)), "buffer": buffer})
        after_snapshot = time.perf_counter()
        writer.submit(lambda f=frozen: save_model_checkpoint(f["agents"], f["state"], root / "async",
                                                             replay_buffer_state=f["buffer"]))
        submitted = time.perf_counter()
        outcome = writer.wait()  # in training, the next save is 200 episodes away: long done by then
        finished = time.perf_counter()
        if isinstance(outcome, BaseException):
            raise outcome
        snapshot_s.append(after_snapshot - start)
        blocked_s.append(submitted - start)
        background_s.append(finished - submitted)
        del frozen
    writer.close()
    return {
        "transitions": transitions,
        "agents": N_AGENTS,
        "agent_state_bytes": payload_bytes(agents[0]),
        "replay_buffer_bytes": payload_bytes(buffer),
        "checkpoint_bytes_on_disk": int(statistics.median(sizes)),
        "sync_save_s": statistics.median(sync_s),
        "async_blocked_s": statistics.median(blocked_s),
        "async_snapshot_s": statistics.median(snapshot_s),
        "async_background_write_s": statistics.median(background_s),
        "repeats": repeats,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder, removed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "checkpoint.json")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="fleetmarl-bench-"))
    try:
        result = bench(args.transitions, args.repeats, root)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    rows = [
        ("checkpoint size on disk", format_bytes(result["checkpoint_bytes_on_disk"])),
        ("  per agent (tensor data)", format_bytes(result["agent_state_bytes"])),
        (f"  replay buffer ({result['transitions']:,} transitions)", format_bytes(result["replay_buffer_bytes"])),
        ("synchronous save: loop blocked", f"{result['sync_save_s']:.3f} s"),
        ("background save: loop blocked (snapshot+submit)", f"{result['async_blocked_s']:.3f} s"),
        ("  of which snapshot (clone to CPU)", f"{result['async_snapshot_s']:.3f} s"),
        ("  write in background (not blocking)", f"{result['async_background_write_s']:.3f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure'.ljust(width)}  value (median of {result['repeats']})")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
