"""What a run counts and what it hands back: the counters and logs that, with the random generators,
decide a run's future (so they go into ``training_state.pth``), and the result of :func:`train`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fleetmarl import checkpoint as ckpt
from fleetmarl.config import Config


@dataclass
class RunState:
    """Counters and logs of one run line; with the RNG states they make resume exact."""

    episode: int = 0
    """episodes completed (always a multiple of NUM_ENVS)"""
    env_steps: int = 0
    """batched environment steps taken (each is NUM_ENVS transitions)"""
    updates: int = 0
    """gradient updates of all agents"""
    episode_rewards_log: list[float] = field(default_factory=list)
    """per episode: reward summed over steps and agents"""
    metrics_log: dict[str, list[float]] = field(default_factory=dict)
    """per episode domain metrics (on-time delivery rate, missed points, ...)"""
    eval_log: list[dict[str, float]] = field(default_factory=list)
    """one entry per evaluation: episode plus mean metrics"""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """identifies this run line; retention prunes only checkpoints of the same line"""
    parent: str | None = None
    """checkpoint this line was resumed from, if any"""

    def recent_reward(self) -> float:
        """The guide's 近期平均奖励, over the checkpoint package's window (0.0 before the first episode)."""
        value = ckpt.recent_average_reward(self.episode_rewards_log)
        return 0.0 if value is None else value


@dataclass
class TrainResult:
    """What :func:`train` hands back: where things went and how it ended."""

    state: RunState
    config: Config
    last_checkpoint: Path | None
    log_dir: Path | None
    stopped_early: bool
    agents: list = field(repr=False, default_factory=list)
