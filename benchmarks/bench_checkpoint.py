"""How long does a checkpoint stall the training loop? Background (snapshot + submit) vs synchronous.

The real payload at the default config: the 5 default MADDPG agents (actor, critic, both targets, both
Adam optimizers after two updates, the Transformer) and the real replay buffer filled with 50k
random-policy transitions of the default `full` environment. Prints a table and writes
benchmarks/results/checkpoint.json.

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

import numpy as np
import torch

from fleetmarl.checkpoint import CheckpointWriter, save_model_checkpoint, snapshot
from fleetmarl.checkpoint.disk import format_bytes, payload_bytes
from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import random_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import ReplayBuffer


def real_agents(config: Config) -> list:
    """The default MADDPG agents (their Adam moments are filled by the updates below)."""
    torch.manual_seed(config.RANDOM_SEED)
    return build_agents(config, "cpu")


def real_replay_buffer(config: Config, agents: list, transitions: int) -> tuple[ReplayBuffer, MADDPG]:
    """Fill the real replay buffer with `transitions` random-policy steps of the default environment."""
    dims = observation_dims(config)
    buffer = ReplayBuffer(config.replace(CAPACITY=max(config.CAPACITY, transitions)), dims, seed=0)
    envs = 64
    env = BatchedSamplingEnv(config, num_envs=envs)
    rng = np.random.default_rng(0)
    obs = env.reset(seed=0)
    while len(buffer) < transitions:
        actions = random_policy(obs, rng)
        next_obs, rewards, terminated, truncated, infos = env.step(actions)
        dones = terminated | truncated
        buffer.add(obs, actions, rewards, infos["final_obs"] if dones.any() else next_obs, dones)
        obs = next_obs
    algo = MADDPG(agents, config)
    for _ in range(2):  # populate both optimizers' moments
        algo.update(buffer.sample(config.BATCH_SIZE, "cpu"))
    return buffer, algo


def training_state(episode: int) -> dict[str, Any]:
    config = Config()
    return {
        "episode": episode, "noise_std": 0.83, "episode_rewards_log": [float(i) for i in range(episode)],
        "config": config.to_dict(), "total_episodes_planned": config.NUM_EPISODES,
        "rng": {"torch": torch.get_rng_state()},
    }


def bench(transitions: int, repeats: int, root: Path) -> dict[str, Any]:
    config = Config()
    live_agents = real_agents(config)
    replay, _ = real_replay_buffer(config, live_agents, transitions)
    agents = snapshot([a.checkpoint_state() for a in live_agents])
    buffer = snapshot(replay.state_dict())
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
        "agents": config.NUM_AGENTS,
        "buffer_bytes_per_transition": replay.bytes_per_transition(),
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
