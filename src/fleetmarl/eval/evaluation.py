"""Noise-free evaluation on seeded episodes, shared by training-time eval and ``fleetmarl eval/compare``.

Every policy — a trained checkpoint or a reference policy — is a function from a batched observation
dict ``(B, N_agents, ...)`` to actions ``(B, N_agents)``, so all of them run on exactly the same
seeded episodes and their numbers are directly comparable. Because the episodes are the same, a
comparison can use *paired* differences (per episode, entry minus baseline), which need far fewer
episodes than comparing two independent means.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fleetmarl.config import Config, is_fleet_environment
from fleetmarl.envs import make_batched_env, with_environment_agents
from fleetmarl.envs.pettingzoo_env import env_spec, random_actions
from fleetmarl.envs.policies import REFERENCE_POLICIES, reference_policy
from fleetmarl.errors import UserError
from fleetmarl.eval.policy import load_policy  # noqa: F401  (public: fleetmarl.load_policy)

BatchPolicy = Callable[[dict[str, np.ndarray]], np.ndarray]
MAX_EVAL_BATCH = 64  # episodes stepped together; chunk i is seeded with seed + i
EVAL_SEED_OFFSET = 10_000  # the trainer evaluates on RANDOM_SEED + this; eval defaults to the same instances

# Domain metrics first, in the order users read them (design §2); the environment's other counters follow.
METRIC_ORDER = ("on_time_rate", "service_rate_weighted", "missed_points", "energy_used", "distance_km", "reward",
                "reward_per_agent", "length",
                "charging_trips", "conflicts", "invalid_actions", "points_appeared", "points_served",
                "samples_appeared", "samples_delivered", "samples_on_time", "samples_on_board")
METRIC_LABELS = {
    "on_time_rate": "on-time delivery rate",
    "service_rate_weighted": "priority-weighted service rate",
    "missed_points": "missed points",
    "energy_used": "energy used",
    "distance_km": "distance (km)",
    "charging_trips": "charging trips",
    "invalid_actions": "invalid actions",
    "reward": "reward (sum over agents)",
    "reward_per_agent": "reward per agent (mean over agents)",
    "length": "episode length (steps)",
}


def run_episodes(config: Config, policy: BatchPolicy, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Per-episode reward (summed over steps and agents), reward per agent (that sum / agents: the
    standard benchmarks' "return per agent") and the environment's episode metrics."""
    results: dict[str, list[float]] = defaultdict(list)
    chunk = 0
    while len(results["reward"]) < episodes:
        size = min(MAX_EVAL_BATCH, episodes - len(results["reward"]))
        env = make_batched_env(config, num_envs=size)
        obs = env.reset(seed=seed + chunk)
        total = np.zeros(size)
        infos: dict = {}
        for _ in range(config.MAX_NUM_STEPS):
            obs, rewards, _terminated, _truncated, infos = env.step(policy(obs))
            total += rewards.sum(axis=1)
            if infos.get("round_over"):  # PettingZoo episodes may end before MAX_NUM_STEPS
                break
        results["reward"].extend(total.tolist())
        results["reward_per_agent"].extend((total / env.num_agents).tolist())
        for name, values in infos["episode"].items():
            results[name].extend(np.asarray(values, dtype=np.float64).tolist())
        chunk += 1
    return {name: np.asarray(values) for name, values in results.items()}


def summarize(per_episode: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric, in reading order (domain metrics first)."""
    return {name: {"mean": float(np.mean(per_episode[name])), "std": float(np.std(per_episode[name]))}
            for name in ordered_metrics(per_episode)}


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


def default_eval_seed(config: Config) -> int:
    """The instances the trainer's periodic evaluation used, so ``fleetmarl eval`` reproduces its numbers."""
    return config.RANDOM_SEED + EVAL_SEED_OFFSET


def ordered_metrics(names: Iterable[str]) -> list[str]:
    names = list(names)
    return [n for n in METRIC_ORDER if n in names] + sorted(n for n in names if n not in METRIC_ORDER)


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


# ---------------------------------------------------------------------- reference policies
def evaluate_reference(config: Config, policy_name: str, episodes: int, seed: int) -> dict[str, dict[str, float]]:
    """Mean and std of reward and every episode metric of a reference policy over seeded episodes."""
    return summarize(run_episodes(config, environment_reference_policy(policy_name, seed, config), episodes, seed))


def environment_reference_policy(name: str, seed: int, config: Config) -> BatchPolicy:
    """A reference policy for ``config``'s environment: any of them on the fleet; only 'random' (uniform over
    the mask, or in the action box) on a PettingZoo environment, which has no dispatchers."""
    if is_fleet_environment(config):
        return reference_policy(name, seed, config)
    if name != "random":
        raise UserError(f"reference policy {name!r} is a fleet dispatcher; on {config.ENVIRONMENT_TYPE} only "
                        "--policy random exists")
    spec, rng = env_spec(config), np.random.default_rng(seed)
    return lambda obs: random_actions(spec, obs, rng)


# ---------------------------------------------------------------------- evaluation entries
@dataclass
class Entry:
    """One thing to evaluate: a trained checkpoint or a reference policy, and the environment it runs on."""

    name: str
    kind: str  # "checkpoint" or "policy"
    config: Config
    make_policy: Callable[[int], BatchPolicy]  # seed -> fresh policy (fresh RNG, so reruns repeat)
    checkpoint: Path | None = None
    episode: int | None = None

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None, "episode": self.episode}


@dataclass
class EntryResult:
    entry: Entry
    per_episode: dict[str, np.ndarray]

    @property
    def summary(self) -> dict[str, dict[str, float]]:
        return summarize(self.per_episode)


def policy_entry(name: str, config: Config) -> Entry:
    if name not in REFERENCE_POLICIES:
        raise UserError(f"unknown reference policy {name!r}; choose one of {', '.join(REFERENCE_POLICIES)}")
    if not is_fleet_environment(config):
        config = with_environment_agents(config)
        environment_reference_policy(name, 0, config)  # a fleet dispatcher on a PettingZoo env fails here, early
    return Entry(name=name, kind="policy", config=config,
                 make_policy=lambda seed: environment_reference_policy(name, seed, config))  # fresh state per run


def checkpoint_entry(path: str | Path, *, overrides: Sequence[str] = (), config_file: str | Path | None = None,
                     config: Config | None = None, device: torch.device | str | None = None) -> Entry:
    """Load a checkpoint for inference; ``config`` forces a shared environment (compare), else its own."""
    from fleetmarl.eval.policy import load_checkpoint_policy

    loaded = load_checkpoint_policy(path, device, overrides=overrides, config_file=config_file, config=config)
    return Entry(name=Path(path).name, kind="checkpoint", config=loaded.config, make_policy=lambda seed: loaded,
                 checkpoint=loaded.checkpoint, episode=loaded.episode)


def evaluate_entry(entry: Entry, episodes: int, seed: int) -> EntryResult:
    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    return EntryResult(entry, run_episodes(entry.config, entry.make_policy(seed), episodes, seed))


def paired_differences(result: EntryResult, baseline: EntryResult) -> dict[str, dict[str, float]]:
    """Per-episode ``result - baseline`` on the same seeds: mean, std and a 95% half-width of the mean."""
    out: dict[str, dict[str, float]] = {}
    for name in ordered_metrics(result.per_episode):
        if name not in baseline.per_episode:
            continue
        diff = result.per_episode[name] - baseline.per_episode[name]
        std = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
        out[name] = {"mean": float(np.mean(diff)), "std": std, "ci95": 1.96 * std / float(np.sqrt(len(diff)))}
    return out
