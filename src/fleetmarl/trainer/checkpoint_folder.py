"""Where a run's checkpoints live: a local folder, or the local mirror of a URL's object store; held by
this trainer alone (the folder's lock); cleared of what a crashed run left half-written; checked for
room before training starts.

Why apart from the schedule: all of this is decided before the first round (resume reads from here
too), while the schedule only decides when to write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleetmarl import checkpoint as ckpt
from fleetmarl.config import Config
from fleetmarl.trainer.parts import RunParts


class CheckpointFolder:
    """The run's checkpoint storage: ``path`` is where saves are written (the mirror when ``remote``)."""

    def __init__(self, config: Config, log: Callable[[str], None]) -> None:
        self.config = config
        self.log = log
        self.remote = ckpt.RemoteCheckpoints(config.CHECKPOINTS_DIR) if ckpt.is_url(config.CHECKPOINTS_DIR) else None
        """object storage behind a URL CHECKPOINTS_DIR; saves are written to its local mirror, then uploaded"""
        self.path = self.remote.mirror if self.remote is not None else Path(config.CHECKPOINTS_DIR)
        self.lock = ckpt.TrainingLock(self.path)

    def acquire(self) -> None:
        """With checkpointing on: make sure the folder can be written and take its lock (one trainer per
        folder; a second one exits 2 naming the holder). Give it back with :meth:`release`."""
        if self.config.ENABLE_MODEL_CHECKPOINTING:
            ckpt.ensure_writable(self.path)
            self.lock.acquire(warn=self.log)

    def release(self) -> None:
        self.lock.release()

    def clear_leftovers(self, *, resuming: bool) -> None:
        """Remove checkpoints a crashed run left unfinished (locally, and its uploads at the URL), so
        neither a resume nor retention ever counts them."""
        c = self.config
        if c.ENABLE_MODEL_CHECKPOINTING or resuming:
            ckpt.cleanup_incomplete(self.path)
        if c.ENABLE_MODEL_CHECKPOINTING and self.remote is not None:
            for leftover in self.remote.cleanup_incomplete():
                self.log(f"🗑 removed unfinished upload {leftover}")

    def is_latest_of_run(self, path: Path, line: str) -> bool:
        """Whether ``path`` is the newest checkpoint of run line ``line`` (at the URL, when remote)."""
        if self.remote is not None:
            return path.parent == self.path and self.remote.is_latest_of_run(path.name, line)
        return ckpt.is_latest_of_run(self.path, path, line)

    def estimate_disk(self, parts: RunParts) -> int:
        """Estimate the run's checkpoint disk (replay chunks shared between checkpoints); warn if it will
        not fit. Returns the estimate, which the start line shows."""
        c, buffer = self.config, parts.buffer
        agent_bytes = sum(t.numel() * t.element_size() for t in parts.agents[0].state_dict().values())
        per_agent = agent_bytes * 4  # weights, targets, two Adam moments
        files = 1 if parts.agents[0].team.shared else len(parts.agents)  # shared: agent_0.pth holds them once
        head = (buffer.chunk_transitions * buffer.bytes_per_transition() + 8 * c.CAPACITY) if c.SAVE_REPLAY_BUFFER else 0
        total, saves = ckpt.estimate_run_bytes(
            fixed_per_checkpoint=per_agent * files, head_bytes=head,
            transition_bytes=(buffer.bytes_per_transition() + buffer.frame_bytes() // c.MAX_NUM_STEPS)
            if c.SAVE_REPLAY_BUFFER else 0,
            episodes_left=max(0, c.NUM_EPISODES - parts.state.episode), save_interval=c.MODEL_SAVE_INTERVAL,
            steps_per_episode=c.MAX_NUM_STEPS, capacity=c.CAPACITY, buffered_now=len(buffer),
            keep_last=c.KEEP_LAST_CHECKPOINTS, keep_best=c.KEEP_BEST_CHECKPOINTS)
        warning = ckpt.check_disk_space(self.path, total // max(1, saves), saves, total=total)
        if warning:
            self.log(f"⚠ {warning}")
        return total
