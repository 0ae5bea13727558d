"""When a run saves, and how a save goes: a snapshot in memory between two rounds, then the write,
commit, retention and upload in the background, settled before the next save starts.

Why this shape: a checkpoint is only taken between rounds (every ``MODEL_SAVE_INTERVAL`` episodes, on a
stop request, and once at the end), so resume is exact; the loop pays only for the snapshot (logged as
``checkpoint/stall_ms``) while the writing overlaps the next rounds (``ASYNC_CHECKPOINTING``). A failed
save is one line and training goes on, since losing one checkpoint must not lose the run; a failed
*last* save makes the run fail (exit 1), naming what is lost and what is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetmarl import checkpoint as ckpt
from fleetmarl.logging import RunLogger
from fleetmarl.trainer.checkpoint_folder import CheckpointFolder
from fleetmarl.trainer.parts import RunParts
from fleetmarl.trainer.resume import Resumed
from fleetmarl.trainer.stop import StopRequest
from fleetmarl.trainer.training_state import training_state

CheckpointHook = Callable[[Path, dict[str, float]], None]
"""Called in the training loop with each committed checkpoint and its metrics (how a sweep reports to Tune)."""

Save = tuple[int, float]
"""(episode, loop stall in s) of one save"""


class CheckpointSchedule:
    """Saves the run into ``folder``; at most one save is being written at a time."""

    def __init__(self, parts: RunParts, folder: CheckpointFolder, logger: RunLogger, stop: StopRequest, *,
                 log: Callable[[str], None], on_checkpoint: CheckpointHook | None = None,
                 resumed: Resumed | None = None) -> None:
        self.parts = parts
        self.folder = folder
        self.logger = logger
        self.stop = stop
        self.log = log
        self.on_checkpoint = on_checkpoint
        self.writer = ckpt.CheckpointWriter(async_=parts.config.ASYNC_CHECKPOINTING)
        continues = resumed is not None and resumed.continues_line
        self.previous_checkpoint: Path | None = resumed.path if resumed is not None else None
        """the run's newest committed checkpoint: the next save hard-links its replay chunks"""
        self.previous_upload: str | None = resumed.path.name if continues and folder.remote is not None else None
        """name of the run's newest uploaded checkpoint: the next upload copies its replay chunks in the store"""
        self.saved_episode: int | None = resumed.episode if continues else None
        """episode of the run's newest checkpoint on disk (after a resume that continues its line, the resumed
        one: saving that episode again would add nothing)"""
        self.last_checkpoint: Path | None = None
        """the newest checkpoint this run committed (settled)"""
        self._in_flight: Save | None = None  # the save being written in the background
        self._save_stats: dict[Path, dict[str, Any]] = {}
        self._final_failure: tuple[int, BaseException] | None = None  # the run's last save, if it failed

    # ------------------------------------------------------------------ when
    def after_round(self) -> None:
        """Save every MODEL_SAVE_INTERVAL episodes, and after the round a stop was asked in."""
        c, s = self.parts.config, self.parts.state
        if c.ENABLE_MODEL_CHECKPOINTING and (s.episode % c.MODEL_SAVE_INTERVAL == 0 or self.stop.requested):
            self.save()

    def finish(self) -> None:
        """The final checkpoint (the guide: nothing is lost at the end), unless this episode is on disk
        already; then wait for the save in flight and settle it."""
        c, s = self.parts.config, self.parts.state
        if c.ENABLE_MODEL_CHECKPOINTING and self.saved_episode != s.episode:
            self.save()
        self._drain()

    def close(self) -> None:
        """Wait for any save still being written (the writer's thread would hold the process's exit)."""
        self.writer.close()

    def raise_if_last_save_failed(self) -> None:
        """After :meth:`close`: the run fails (exit 1) when its last checkpoint was not written."""
        if self._final_failure is not None:
            raise self._final_save_error(*self._final_failure)

    # ------------------------------------------------------------------ how
    def save(self) -> None:
        """Snapshot in memory now; write, commit and prune in the background (at most one in flight).

        The loop pays for the agents' and training state's copies, the replay buffer's small head
        (its sealed chunks are read by the writer; ``add`` copies one first should the ring reach it)
        and any wait for the previous save: that time is logged as ``checkpoint/stall_ms``.
        """
        c, s = self.parts.config, self.parts.state
        started = time.perf_counter()
        job = self._snapshot()
        episode = s.episode
        previous, self._in_flight = self._in_flight, None
        if self.writer.async_ and previous is not None:
            # settled (and reported to on_checkpoint) before the next job starts: that job's retention may
            # delete the previous checkpoint, which a sweep's Tune must have copied by then
            self._settle(previous, self.writer.wait(), final=False)
        outcome = self.writer.submit(job)
        stall = time.perf_counter() - started
        if self.writer.async_:
            self._in_flight = (episode, stall)
        else:
            self._settle((episode, stall), outcome, final=s.episode >= c.NUM_EPISODES or self.stop.requested)
        self.saved_episode = episode

    def _snapshot(self) -> Callable[[], Path]:
        """Copy what the checkpoint holds now, while no environment is mid-episode; returns the job that
        writes the copy."""
        p = self.parts
        s = p.state
        state = training_state(p)
        eval_reward = s.eval_log[-1]["reward"] if s.eval_log and s.eval_log[-1]["episode"] == s.episode else None
        snapshot = ckpt.snapshot({
            "agents": [a.checkpoint_state() for a in p.agents],
            "training_state": state,
        })
        replay = p.buffer.checkpoint_state() if p.config.SAVE_REPLAY_BUFFER else None

        def job() -> Path:
            return self._write(snapshot, replay, recent_reward=state["recent_mean_reward"], eval_reward=eval_reward)

        return job

    def _write(self, snapshot: dict[str, Any], replay: Any, *, recent_reward: float,
               eval_reward: float | None) -> Path:
        """In the writer's job: write and commit the checkpoint, then upload it or apply local retention."""
        c, s = self.parts.config, self.parts.state
        stats: dict[str, Any] = {}
        try:
            path = ckpt.save_model_checkpoint(
                snapshot["agents"], snapshot["training_state"], self.folder.path,
                replay_buffer_state=replay, run_id=s.run_id, parent=s.parent,
                recent_reward=recent_reward, eval_reward=eval_reward,
                previous=self.previous_checkpoint, stats=stats,
            )
        finally:
            if replay is not None:
                replay.release()
        self.previous_checkpoint = path
        self._save_stats[path] = stats
        for line in ckpt.saved_message(path, len(snapshot["agents"])):
            self.log(line)
        if self.folder.remote is not None:
            self._upload(path)
        elif c.KEEP_LAST_CHECKPOINTS or c.KEEP_BEST_CHECKPOINTS:
            removed = ckpt.prune_checkpoints(self.folder.path, keep_last=c.KEEP_LAST_CHECKPOINTS,
                                             keep_best=c.KEEP_BEST_CHECKPOINTS, run_id=s.run_id, protect={path})
            for old in removed:
                self.log(f"🗑 pruned old checkpoint {old}")
        return path

    def _upload(self, path: Path) -> None:
        """In the background job, after the local commit: upload (MANIFEST.json last), apply retention at
        the URL to this run line, and keep only the newest local copy (the next save links its chunks)."""
        c, run_id, remote = self.parts.config, self.parts.state.run_id, self.folder.remote
        assert remote is not None
        url = remote.upload(path, previous=self.previous_upload)
        self.previous_upload = path.name
        self.log(f"☁ uploaded {url}")
        if c.KEEP_LAST_CHECKPOINTS or c.KEEP_BEST_CHECKPOINTS:
            for old in remote.prune(keep_last=c.KEEP_LAST_CHECKPOINTS, keep_best=c.KEEP_BEST_CHECKPOINTS,
                                    run_id=run_id, protect={path.name}):
                self.log(f"🗑 pruned old checkpoint {old}")
        ckpt.prune_checkpoints(self.folder.path, keep_last=1, run_id=run_id, protect={path})

    def checkpoint_metrics(self, episode: int) -> dict[str, float]:
        """What a committed checkpoint of ``episode`` reports: the recent reward then, and the evaluation
        taken at that episode (``eval_*``) when there was one."""
        s = self.parts.state
        metrics = {"episode": float(episode),
                   "recent_reward": ckpt.recent_average_reward(s.episode_rewards_log[:episode]) or 0.0}
        for entry in s.eval_log:
            if int(entry["episode"]) == episode:
                metrics.update({f"eval_{k}": v for k, v in entry.items() if k != "episode"})
        return metrics

    # ------------------------------------------------------------------ how it ended
    def _drain(self) -> None:
        previous, self._in_flight = self._in_flight, None
        outcome = self.writer.wait()
        if previous is not None:
            self._settle(previous, outcome, final=True)

    def _settle(self, save: Save, outcome: Any, *, final: bool) -> None:
        """Record how the save of episode ``save[0]`` ended. A failed save is one line and training goes
        on (losing one checkpoint must not lose the run); a failed *last* save makes the run fail."""
        c, s = self.parts.config, self.parts.state
        episode, stall = save
        if isinstance(outcome, Path):
            self.last_checkpoint = outcome
            self.logger.checkpoint_saved(outcome, episode, stall_s=stall, stats=self._save_stats.pop(outcome, {}))
            if self.on_checkpoint is not None:
                self.on_checkpoint(outcome, self.checkpoint_metrics(episode))
        elif isinstance(outcome, BaseException):
            if final:
                self._final_failure = (episode, outcome)
            else:
                due = s.episode if self.writer.async_ else s.episode + c.MODEL_SAVE_INTERVAL
                self.log(f"fleetmarl: checkpoint save failed: {_strip_prefix(str(outcome))}; training goes on, "
                         f"the next checkpoint is due at episode {min(due, c.NUM_EPISODES)}")

    def _final_save_error(self, episode: int, error: BaseException) -> ckpt.CheckpointSaveError:
        """The run's last checkpoint was not written: one line with what is lost and what is safe (exit 1)."""
        newest = self.last_checkpoint or self.previous_checkpoint
        first_lost = (_episode_of(newest) if newest is not None else 0) + 1
        where = (f"the newest good checkpoint is {newest} (python main.py --resume latest continues from it)"
                 if newest is not None else "no checkpoint of this run is on disk")
        return ckpt.CheckpointSaveError(
            f"the run's last checkpoint was not written: {_strip_prefix(str(error))}; episodes "
            f"{first_lost}-{episode} are not on disk; {where}")


def _strip_prefix(message: str) -> str:
    return message[len("fleetmarl: "):] if message.startswith("fleetmarl: ") else message


def _episode_of(path: Path) -> int:
    return ckpt.parse_checkpoint_name(path.name).episode
