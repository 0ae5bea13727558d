"""What a finished round adds to the run's records: the per-episode reward and metric logs (kept in the
checkpoint), their TensorBoard scalars, the round's losses and learning rates, and the progress bar.

Why apart from the rollout: acting decides the numbers, this only writes them down; nothing here draws
a random number.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from fleetmarl.learner.schedules import noise_std
from fleetmarl.logging import TAG_EPISODE_REWARD, RunLogger
from fleetmarl.trainer.parts import RunParts
from fleetmarl.trainer.rollout import RoundResult


def record_round(parts: RunParts, result: RoundResult, logger: RunLogger, bar: tqdm) -> None:
    """Log the round's NUM_ENVS episodes, advance ``state.episode`` past them, log the round's training
    scalars and move the bar."""
    c, s = parts.config, parts.state
    _log_episodes(parts, result, logger)
    s.episode += c.NUM_ENVS
    _log_training(parts, result, logger)
    _show(parts, result, bar)


def _log_episodes(parts: RunParts, result: RoundResult, logger: RunLogger) -> None:
    """One reward (and one value per domain metric) per episode, at that episode's number."""
    c, s = parts.config, parts.state
    first = s.episode
    episode_metrics = {k: np.asarray(v, dtype=np.float64) for k, v in result.infos.get("episode", {}).items()}
    for b in range(c.NUM_ENVS):
        episode = first + b + 1
        s.episode_rewards_log.append(float(result.rewards[b]))
        scalars = {TAG_EPISODE_REWARD: result.rewards[b]}
        for name, values in episode_metrics.items():
            s.metrics_log.setdefault(name, []).append(float(values[b]))
            scalars[f"metrics/{name}"] = values[b]
        logger.scalars(scalars, episode)


def _log_training(parts: RunParts, result: RoundResult, logger: RunLogger) -> None:
    """The round's last losses, every agent's learning rates, the exploration noise the round used and the
    buffer's fill, at the round's last episode. A shared team has one pair of optimizers: its rates are
    logged once, as agent 0's, not as 50 identical curves on fleet50."""
    c, s = parts.config, parts.state
    agents = parts.agents[:1] if c.SHARE_PARAMETERS else parts.agents
    lrs = {f"lr/agent_{i}_actor": a.actor_optimizer.param_groups[0]["lr"] for i, a in enumerate(agents)}
    lrs.update({f"lr/agent_{i}_critic": a.critic_optimizer.param_groups[0]["lr"] for i, a in enumerate(agents)})
    logger.scalars({**{f"loss/{k}": v for k, v in result.losses.items()}, **lrs,
                    "train/noise_std": noise_std(c, s.episode - c.NUM_ENVS),
                    "train/buffer_size": len(parts.buffer), "train/updates": s.updates}, s.episode)


def _show(parts: RunParts, result: RoundResult, bar: tqdm) -> None:
    """The bar's postfix: the round's mean reward, the fleet's on-time rate (a PettingZoo env shows the
    return per agent instead) and the next round's noise."""
    c, s = parts.config, parts.state
    bar.update(c.NUM_ENVS)
    shown = {"reward": f"{np.mean(result.rewards):.1f}"}
    if "on_time_rate" in s.metrics_log:  # the fleet's headline metric
        shown["on_time"] = f"{np.mean(s.metrics_log['on_time_rate'][-c.NUM_ENVS:]):.2f}"
    else:
        shown["per_agent"] = f"{np.mean(result.rewards) / len(parts.agents):.2f}"
    bar.set_postfix(**shown, noise=f"{noise_std(c, s.episode):.3f}", refresh=False)
