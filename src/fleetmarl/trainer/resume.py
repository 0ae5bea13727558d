"""Continuing a run from a checkpoint (``--resume latest`` or a path or URL).

Why it is exact: a checkpoint is taken between rounds, so the weights, the optimizers' state, the
update's own state, the counters, the random generators and the replay buffer are all there is to put
back (a checkpoint saved without its buffer resumes, but not exactly, and says so).
Resuming from the newest checkpoint of a run line continues that line; from an older one it starts a
branch, so the new line's retention can never delete the original's checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetmarl import checkpoint as ckpt
from fleetmarl.config import drop_removed_keys
from fleetmarl.errors import CheckpointError
from fleetmarl.trainer.checkpoint_folder import CheckpointFolder
from fleetmarl.trainer.parts import RunParts
from fleetmarl.trainer.training_state import restore_counters, restore_random_state


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run stands among its checkpoints (what the checkpoint schedule starts from)."""

    path: Path
    """the checkpoint resumed from: the next save hard-links its replay chunks"""
    episode: int
    continues_line: bool
    """True when ``path`` was the newest of its run line, which this run now continues"""


def resume_run(parts: RunParts, folder: CheckpointFolder, resume: str | Path,
               log: Callable[[str], None]) -> Resumed:
    """Load ``resume`` into ``parts`` (weights, counters, update state, generators, replay buffer),
    logging each checkpoint skipped as broken and any config key that changed since it was saved."""
    c, s = parts.config, parts.state
    opened = _open_checkpoint(folder, resume, log)
    path = opened.path
    saved = ckpt.load_model_checkpoint(parts.agents, opened, parts.device)
    _report_config_changes(parts, drop_removed_keys(saved.get("config", {}), f"{path}/training_state.pth"), log)
    restore_counters(s, saved)
    if s.episode % c.NUM_ENVS:
        raise CheckpointError(f"checkpoint {path} is at episode {s.episode}, not a multiple of "
                              f"NUM_ENVS={c.NUM_ENVS}; resume with the NUM_ENVS it was trained with")
    continues_line = _continue_or_branch(parts, folder, path, saved)
    parts.algo.load_state_dict(saved.get("algorithm", {}))
    restore_random_state(parts, saved["rng"])
    buffer_state = ckpt.load_replay_buffer(opened) if saved.get("replay_buffer_saved") else None
    exact = _restore_buffer(parts, buffer_state)
    log(f"📂 从第{s.episode}轮恢复训练 (resuming from {path}, episode {s.episode}; {exact})")
    return Resumed(path=path, episode=s.episode, continues_line=continues_line)


def _open_checkpoint(folder: CheckpointFolder, resume: str | Path, log: Callable[[str], None]) -> ckpt.OpenCheckpoint:
    """The checkpoint ``resume`` names, hashes checked (downloaded to the mirror first when it is at a
    URL), logging each newer one skipped as unusable or broken."""
    if folder.remote is not None or ckpt.is_url(str(resume)):
        local, skipped_remote = ckpt.resolve_remote_resume(folder.remote, str(resume))
        for bad, why in skipped_remote:
            log(f"⚠ skipping unusable checkpoint {bad}: {why}")
        resume = local
    opened, skipped = ckpt.open_resume(folder.path, resume)
    assert opened is not None
    for bad, why in skipped:
        log(f"⚠ skipping broken checkpoint {bad}: {why}")
    return opened


def _continue_or_branch(parts: RunParts, folder: CheckpointFolder, path: Path, saved: dict[str, Any]) -> bool:
    """Continue the saved run line when ``path`` is its newest checkpoint (True); else start a branch
    whose parent is ``path``."""
    s = parts.state
    line = saved.get("run_id")
    if line and folder.is_latest_of_run(path, line):
        s.run_id, s.parent = line, saved.get("parent")
        return True
    s.parent = str(path)
    return False


def _restore_buffer(parts: RunParts, buffer_state: dict[str, Any] | None) -> str:
    """Load the saved replay buffer, if there is one; returns how exact the resume is, for the log line."""
    if buffer_state is None:
        return "NOT exact: no replay buffer was saved (SAVE_REPLAY_BUFFER=False), it refills from empty"
    old_format = "obs" in buffer_state
    parts.buffer.load_state_dict(buffer_state)
    return "exact resume" + (" (replay buffer converted from the format before compact replay)" if old_format else "")


def _report_config_changes(parts: RunParts, saved: dict[str, Any], log: Callable[[str], None]) -> None:
    current = parts.config.to_dict()
    changed = [f"{k} {saved[k]!r} -> {current[k]!r}" for k in current if k in saved and saved[k] != current[k]]
    if changed:
        log("⚠ resuming with changed config keys (the continued run is not identical to an "
            "uninterrupted one unless only NUM_EPISODES changed): " + ", ".join(changed))
