"""Noise-free evaluation on seeded episodes, shared by training-time eval and ``fleetmarl eval``.

Every policy — a trained checkpoint or a reference policy — is a function from a batched observation
dict ``(B, N_agents, ...)`` to actions ``(B, N_agents)``, so all of them run on exactly the same
seeded episodes and their numbers are directly comparable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv

BatchPolicy = Callable[[dict[str, np.ndarray]], np.ndarray]
MAX_EVAL_BATCH = 64  # episodes stepped together; chunk i is seeded with seed + i


def run_episodes(config: Config, policy: BatchPolicy, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Per-episode reward (summed over steps and agents) and the environment's episode metrics."""
    results: dict[str, list[float]] = defaultdict(list)
    chunk = 0
    while len(results["reward"]) < episodes:
        size = min(MAX_EVAL_BATCH, episodes - len(results["reward"]))
        env = BatchedSamplingEnv(config, num_envs=size)
        obs = env.reset(seed=seed + chunk)
        total = np.zeros(size)
        infos: dict = {}
        for _ in range(config.MAX_NUM_STEPS):
            obs, rewards, _terminated, _truncated, infos = env.step(policy(obs))
            total += rewards.sum(axis=1)
        results["reward"].extend(total.tolist())
        for name, values in infos["episode"].items():
            results[name].extend(np.asarray(values, dtype=np.float64).tolist())
        chunk += 1
    return {name: np.asarray(values) for name, values in results.items()}


def summarize(per_episode: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric."""
    return {name: {"mean": float(np.mean(v)), "std": float(np.std(v))} for name, v in per_episode.items()}


def algorithm_policy(algo, device: torch.device | str = "cpu") -> BatchPolicy:
    """Greedy (noise-free) actions of all agents in one batched call."""

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {k: torch.from_numpy(v).to(device) for k, v in obs.items()}
        with torch.no_grad():
            return algo.act(tensors, 0.0).cpu().numpy()

    return policy


def evaluate_algorithm(algo, config: Config, episodes: int, seed: int,
                       device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    return summarize(run_episodes(config, algorithm_policy(algo, device), episodes, seed))
