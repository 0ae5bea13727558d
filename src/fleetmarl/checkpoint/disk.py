"""Disk checks before training, so a three-day run does not discover a full disk at episode 2800.

The guide estimates ~3.75 GB for 3000 episodes by hand; :func:`check_disk_space` does that arithmetic
with the real payload size and the real free space, and says what to change when it will not fit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from fleetmarl.errors import CheckpointError

_FILE_OVERHEAD = 64 * 1024
"""Per-file allowance for torch.save's zip structure, pickled keys, config_info.txt and the manifest."""


def payload_bytes(tree: Any) -> int:
    """Bytes of tensor data in a payload (what dominates a checkpoint's size)."""
    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size()
    if isinstance(tree, dict):
        return sum(payload_bytes(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(payload_bytes(v) for v in tree)
    return 0


def estimate_checkpoint_bytes(
    agent_states: Iterable[Any], training_state: Any = None, replay_buffer_state: Any = None
) -> int:
    """Expected size of one checkpoint folder on disk, from the payloads that would be saved."""
    states = list(agent_states)
    files = len(states) + 3 + (replay_buffer_state is not None)
    data = sum(payload_bytes(s) for s in states) + payload_bytes(training_state) + payload_bytes(replay_buffer_state)
    return data + files * _FILE_OVERHEAD


def format_bytes(size: float) -> str:
    """``1.2 GB`` style (powers of 1024, the way file managers show it)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(checkpoints_dir: str | Path, bytes_per_checkpoint: int, planned_saves: int, *,
                     total: int | None = None) -> str | None:
    """A one-line warning with the numbers if ``planned_saves`` checkpoints will not fit, else None.

    ``total``: the run's whole need when checkpoints share files (:func:`estimate_run_bytes`);
    otherwise every checkpoint counts in full.
    """
    need = max(0, int(bytes_per_checkpoint)) * max(0, int(planned_saves)) if total is None else max(0, int(total))
    free = shutil.disk_usage(_existing_ancestor(Path(checkpoints_dir))).free
    if need <= free:
        return None
    how = (f"{planned_saves} saves x {format_bytes(bytes_per_checkpoint)}" if total is None
           else f"{planned_saves} checkpoints sharing their replay chunks")
    return (
        f"checkpoints will need about {format_bytes(need)} ({how}) in {checkpoints_dir} but only "
        f"{format_bytes(free)} is free; raise MODEL_SAVE_INTERVAL, set KEEP_LAST_CHECKPOINTS, set "
        "SAVE_REPLAY_BUFFER=False or free disk space"
    )


def estimate_run_bytes(
    *, fixed_per_checkpoint: int, transition_bytes: int, head_bytes: int, episodes_left: int, save_interval: int,
    steps_per_episode: int, transitions_per_step: int = 1, capacity: int, buffered_now: int = 0,
    keep_last: int = 0, keep_best: int = 0,
) -> tuple[int, int]:
    """``(bytes, checkpoints)``: disk for a run's checkpoints with incremental replay chunks.

    Each checkpoint costs its own files (agents, training state, the replay head: open tail and
    priorities) plus the replay transitions no earlier kept checkpoint holds: the union of the
    ``capacity``-wide windows behind the kept checkpoints. With every checkpoint kept that is every
    transition of the run; with the last K kept it is at most ``capacity`` + (K - 1) intervals.
    ``transitions_per_step`` is 1 when ``steps_per_episode`` counts one environment's steps.
    """
    saves = planned_checkpoint_count(episodes_left, save_interval, keep_last, keep_best)
    per_interval = save_interval * steps_per_episode * transitions_per_step
    new = max(0, episodes_left) * steps_per_episode * transitions_per_step
    distinct = min(buffered_now + new, capacity + max(0, saves - 1) * per_interval)
    return saves * (fixed_per_checkpoint + head_bytes) + distinct * transition_bytes, saves


def planned_checkpoint_count(
    episodes_left: int, save_interval: int, keep_last: int = 0, keep_best: int = 0
) -> int:
    """How many checkpoints will be on disk at once: every interval plus the final one, capped by retention."""
    saves = max(0, episodes_left) // max(1, save_interval) + 1
    keep = keep_last + keep_best
    return min(saves, keep + 1) if keep else saves


def ensure_writable(checkpoints_dir: str | Path) -> Path:
    """Create ``checkpoints_dir`` and prove we can write there, before any training time is spent."""
    path = Path(checkpoints_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".tmp-write-probe-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(
            f"cannot write checkpoints to {path}: {exc.strerror or exc}; set CHECKPOINTS_DIR to a writable folder"
        ) from None
    return path
