"""What a checkpoint costs: bytes per transition, disk, how long the training loop is blocked, write time.

The real payload at the default config: the 5 default MADDPG agents (actor, critic, both targets, both
Adam optimizers after two updates, the Transformer) and the real replay buffer filled with
random-policy transitions of the default `full` environment (8 environments, episodes of 180 steps,
as the trainer adds them), for a half-full (50k) and a full (100k = CAPACITY) buffer. For each:

- the first checkpoint (every chunk written) and the next one after 200 more episodes (36,000
  transitions; the older chunks are hard-linked): bytes written, write time in the background;
- the loop's stall: what the trainer does in the loop (copy agents and training state, the buffer's
  small head, submit), measured the same way as the trainer's `checkpoint/stall_ms` scalar;
- replay bytes on disk per stored transition, and `ReplayBuffer.sample(512)` time.

With `--run` it also replays the default run's checkpoint schedule (3000 episodes, a checkpoint every
200, every checkpoint kept) with the real storage code and reports the disk all checkpoints use
(`du`, hard links counted once) against the newest one's own size. Acting is random (training does
not change what a checkpoint holds or costs). Prints a table and writes benchmarks/results/checkpoint.json.

    python benchmarks/bench_checkpoint.py [--sizes 50000 100000] [--run] [--dir /tmp/fleetmarl-bench]
"""

from __future__ import annotations

import argparse
import json
import os
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
from fleetmarl.checkpoint.layout import REPLAY_BUFFER_FILE, parse_replay_chunk
from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import random_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.buffer import ReplayBuffer


class Filler:
    """Adds random-policy transitions of the default environment the way the trainer does."""

    def __init__(self, config: Config, buffer: ReplayBuffer) -> None:
        self.env = BatchedSamplingEnv(config, num_envs=config.NUM_ENVS)
        self.buffer = buffer
        self.rng = np.random.default_rng(0)
        self.obs = self.env.reset(seed=0)

    def add(self, transitions: int) -> None:
        target = self.buffer.total + transitions
        while self.buffer.total < target:
            actions = random_policy(self.obs, self.rng)
            nxt, rewards, terminated, truncated, infos = self.env.step(actions)
            dones = terminated | truncated
            self.buffer.add(self.obs, actions, rewards, infos["final_obs"] if dones.any() else nxt, dones)
            self.obs = nxt


def training_state(episode: int, config: Config) -> dict[str, Any]:
    return {
        "episode": episode, "noise_std": 0.83, "episode_rewards_log": [float(i) for i in range(episode)],
        "config": config.to_dict(), "total_episodes_planned": config.NUM_EPISODES,
        "rng": {"torch": torch.get_rng_state()},
    }


def replay_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.name == REPLAY_BUFFER_FILE or parse_replay_chunk(f.name))


def disk_usage(root: Path) -> int:
    """Bytes of all files under root, each inode once (what `du` reports for hard links)."""
    seen, total = set(), 0
    for path in root.rglob("*"):
        if path.is_file():
            info = path.stat()
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def checkpoint(agents: list, buffer: ReplayBuffer, writer: CheckpointWriter, state: dict[str, Any], root: Path,
               previous: Path | None) -> tuple[float, dict[str, Any], Path]:
    """One checkpoint as the trainer takes it: (loop stall in s, the writer's stats, folder)."""
    writer.wait()
    stats: dict[str, Any] = {}
    start = time.perf_counter()
    frozen = snapshot({"agents": [a.checkpoint_state() for a in agents], "state": state})
    replay = buffer.checkpoint_state()
    COPY_S.append(time.perf_counter() - start)

    def job() -> Path:
        try:
            return save_model_checkpoint(frozen["agents"], frozen["state"], root, replay_buffer_state=replay,
                                         previous=previous, stats=stats)
        finally:
            replay.release()

    writer.submit(job)
    stall = time.perf_counter() - start
    outcome = writer.wait()
    if isinstance(outcome, BaseException):
        raise outcome
    return stall, stats, outcome


COPY_S: list[float] = []  # the copying part of each stall (the rest is handing over to the thread)


def sample_ms(buffer: ReplayBuffer, batch: int, repeats: int = 60) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sample(batch, "cpu")
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[10:])


def bench_size(transitions: int, root: Path, repeats: int) -> dict[str, Any]:
    config = Config()
    torch.manual_seed(config.RANDOM_SEED)
    agents = build_agents(config, "cpu")
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    filler = Filler(config, buffer)
    filler.add(transitions)
    algo = MADDPG(agents, config)
    for _ in range(2):  # populate both optimizers' moments
        algo.update(buffer.sample(config.BATCH_SIZE, "cpu"))
    writer = CheckpointWriter(async_=True)
    interval = config.MODEL_SAVE_INTERVAL * config.MAX_NUM_STEPS  # transitions per checkpoint interval
    COPY_S.clear()
    run = root / f"size{transitions}"
    stored = len(buffer)
    stall, first_stats, first = checkpoint(agents, buffer, writer, training_state(200, config), run, None)
    stalls = [stall]
    first_replay = replay_bytes(first)
    filler.add(interval)
    stall, next_stats, second = checkpoint(agents, buffer, writer, training_state(400, config), run, first)
    stalls.append(stall)
    both, newest = disk_usage(run), sum(f.stat().st_size for f in second.iterdir())
    previous = second
    for r in range(repeats):  # more stalls: one round of episodes between checkpoints
        filler.add(config.NUM_ENVS * config.MAX_NUM_STEPS)
        stall, _, previous = checkpoint(agents, buffer, writer, training_state(400 + 8 * (r + 1), config), run, previous)
        stalls.append(stall)
    shutil.rmtree(run)
    writer.close()
    return {
        "transitions": transitions,
        "replay_bytes_per_transition_on_disk": first_replay / stored,
        "buffer_bytes_per_transition_ram": buffer.bytes_per_transition(),
        "agent_state_bytes": payload_bytes(agents[0].checkpoint_state()),
        "first_checkpoint_bytes": first_stats["bytes_written"],
        "first_write_s": first_stats["write_seconds"],
        "next_checkpoint_bytes_written": next_stats["bytes_written"],
        "next_write_s": next_stats["write_seconds"],
        "stalls_measured": len(stalls),
        "two_checkpoints_disk_bytes": both,
        "newest_checkpoint_bytes": newest,
        "stall_ms_median": 1000 * statistics.median(stalls),
        "stall_ms_max": 1000 * max(stalls),
        "stall_copy_ms_median": 1000 * statistics.median(COPY_S),
        "sample_512_ms": sample_ms(buffer, config.BATCH_SIZE),
    }


def bench_run(root: Path) -> dict[str, Any]:
    """The default run's checkpoint schedule, every checkpoint kept: disk of all vs the newest."""
    config = Config()
    torch.manual_seed(config.RANDOM_SEED)
    agents = build_agents(config, "cpu")
    buffer = ReplayBuffer(config, observation_dims(config), seed=0)
    filler = Filler(config, buffer)
    writer = CheckpointWriter(async_=True)
    run = root / "default-run"
    previous, stalls, sizes = None, [], []
    rounds_per_save = config.MODEL_SAVE_INTERVAL // config.NUM_ENVS
    for episode in range(config.MODEL_SAVE_INTERVAL, config.NUM_EPISODES + 1, config.MODEL_SAVE_INTERVAL):
        filler.add(rounds_per_save * config.NUM_ENVS * config.MAX_NUM_STEPS)
        stall, stats, previous = checkpoint(agents, buffer, writer, training_state(episode, config), run, previous)
        stalls.append(stall)
        sizes.append((episode, disk_usage(run)))
    writer.close()
    total = disk_usage(run)
    newest = sum(f.stat().st_size for f in previous.iterdir())
    shutil.rmtree(run)
    return {"checkpoints": len(sizes), "all_checkpoints_disk_bytes": total, "newest_checkpoint_bytes": newest,
            "ratio_all_to_newest": total / newest, "disk_after_episode": dict(sizes),
            "stall_ms_max": 1000 * max(stalls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--repeats", type=int, default=8, help="extra checkpoints per size, for the stall")
    parser.add_argument("--run", action="store_true", help="also replay the default run's 15 checkpoints")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder, removed)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "checkpoint.json")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="fleetmarl-bench-"))
    try:
        sizes = [bench_size(n, root, args.repeats) for n in args.sizes]
        run = bench_run(root) if args.run else None
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    rows = [("replay transitions in the checkpoint", *(f"{s['transitions']:,}" for s in sizes))]
    rows += [
        ("replay bytes per transition on disk", *(f"{s['replay_bytes_per_transition_on_disk']:,.0f}" for s in sizes)),
        ("first checkpoint: bytes written", *(format_bytes(s["first_checkpoint_bytes"]) for s in sizes)),
        ("  write time (background)", *(f"{s['first_write_s']:.2f} s" for s in sizes)),
        ("next checkpoint, +200 episodes: bytes written", *(format_bytes(s["next_checkpoint_bytes_written"]) for s in sizes)),
        ("  write time (background)", *(f"{s['next_write_s']:.2f} s" for s in sizes)),
        ("both checkpoints on disk / newest alone",
         *(f"{format_bytes(s['two_checkpoints_disk_bytes'])} / {format_bytes(s['newest_checkpoint_bytes'])}" for s in sizes)),
        ("training loop blocked (median / max)", *(f"{s['stall_ms_median']:.1f} / {s['stall_ms_max']:.1f} ms" for s in sizes)),
        ("  of which copying agents, state, buffer head", *(f"{s['stall_copy_ms_median']:.1f} ms" for s in sizes)),
        ("ReplayBuffer.sample(512)", *(f"{s['sample_512_ms']:.1f} ms" for s in sizes)),
    ]
    width = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    print(f"{'measure'.ljust(width[0])}  " + "  ".join(f"{'buffer':<{w}}" for w in width[1:]))
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, width, strict=True)))
    if run:
        print(f"default run, {run['checkpoints']} checkpoints kept: {format_bytes(run['all_checkpoints_disk_bytes'])} on "
              f"disk, newest alone {format_bytes(run['newest_checkpoint_bytes'])} ({run['ratio_all_to_newest']:.2f}x); "
              f"loop blocked at most {run['stall_ms_max']:.1f} ms")
    result = {"sizes": sizes, "default_run": run, "torch": torch.__version__, "python": platform.python_version(),
              "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
