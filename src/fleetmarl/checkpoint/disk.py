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


def check_disk_space(checkpoints_dir: str | Path, bytes_per_checkpoint: int, planned_saves: int) -> str | None:
    """A one-line warning with the numbers if ``planned_saves`` checkpoints will not fit, else None."""
    need = max(0, int(bytes_per_checkpoint)) * max(0, int(planned_saves))
    free = shutil.disk_usage(_existing_ancestor(Path(checkpoints_dir))).free
    if need <= free:
        return None
    return (
        f"checkpoints will need about {format_bytes(need)} ({planned_saves} saves x "
        f"{format_bytes(bytes_per_checkpoint)}) in {checkpoints_dir} but only {format_bytes(free)} is free; "
        "raise MODEL_SAVE_INTERVAL, set KEEP_LAST_CHECKPOINTS, set SAVE_REPLAY_BUFFER=False or free disk space"
    )


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
