"""Finding the checkpoint to resume from, and clearing what interrupted saves left behind.

The guide's recipe (``max(glob('checkpoint_ep*'), key=os.path.getctime)``) picks a folder by its
creation time, which can be a half-written one after a crash or a copied one with a fresh ctime. We
order by what the name says (episode, then timestamp) and take the newest folder whose manifest
verifies, reporting every newer folder we skipped and why.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fleetmarl.checkpoint.layout import (
    checkpoint_folders,
    looks_like_checkpoint,
    parse_temp_name,
    temp_folders,
)
from fleetmarl.checkpoint.manifest import read_manifest, verify_checkpoint
from fleetmarl.checkpoint.reader import OpenCheckpoint
from fleetmarl.checkpoint.store import live_temp_folders
from fleetmarl.errors import CheckpointError


def find_latest_checkpoint(checkpoints_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(newest valid checkpoint or None, [(skipped newer folder, reason), ...])``."""
    skipped: list[tuple[Path, str]] = []
    for folder, _ in reversed(checkpoint_folders(checkpoints_dir)):
        problems = verify_checkpoint(folder)
        if not problems:
            return folder, skipped
        skipped.append((folder, "; ".join(problems)))
    return None, skipped


def resolve_resume(
    checkpoints_dir: str | Path, spec: str | Path, *, missing_ok: bool = False
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """Turn ``--resume latest|PATH`` into ``(valid checkpoint, skipped broken newer folders)``.

    Raises a one-line :class:`CheckpointError` when nothing valid can be resumed: an explicit PATH is
    never silently swapped for another checkpoint, but the message names the latest valid one. PATH
    may also be a folder of checkpoints, meaning its latest. With ``missing_ok``, ``latest`` in an
    empty or absent folder gives ``(None, [])`` (start a new run) instead of raising.
    """
    if str(spec) == "latest":
        latest, skipped = find_latest_checkpoint(checkpoints_dir)
        if latest is None and not (missing_ok and not skipped):
            why = f" ({len(skipped)} broken, newest {skipped[0][0].name}: {skipped[0][1]})" if skipped else ""
            raise CheckpointError(
                f"no valid checkpoint to resume in {checkpoints_dir}{why}; remove --resume to start a new run"
            )
        return latest, skipped
    path = Path(spec)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; {_latest_hint(checkpoints_dir)}")
    if path.is_dir() and not looks_like_checkpoint(path):
        return resolve_resume(path, "latest")
    problems = verify_checkpoint(path)
    if problems:
        kind = "incomplete" if all(p.startswith(("missing", "no MANIFEST")) for p in problems) else "damaged"
        raise CheckpointError(f"checkpoint {path} is {kind} ({'; '.join(problems)}); {_latest_hint(path.parent)}")
    return path, []


def open_resume(
    checkpoints_dir: str | Path, spec: str | Path, *, missing_ok: bool = False
) -> tuple[OpenCheckpoint | None, list[tuple[Path, str]]]:
    """:func:`resolve_resume`, returning the chosen checkpoint opened with every hash already checked,
    so loading it (agents, training state, replay buffer) checks no file twice."""
    path, skipped = resolve_resume(checkpoints_dir, spec, missing_ok=missing_ok)
    if path is None:
        return None, skipped
    manifest = read_manifest(path)
    return OpenCheckpoint(path, manifest, set(manifest["files"])), skipped


def is_latest_of_run(checkpoints_dir: str | Path, checkpoint: str | Path, run_id: str) -> bool:
    """True when ``checkpoint`` is the newest valid checkpoint of run line ``run_id`` in the folder.

    Resuming from it continues the line; resuming from an older one starts a branch (a new run id),
    so the branch's retention can never delete the original line's later checkpoints.
    """
    target = Path(checkpoint).resolve()
    for folder, _ in reversed(checkpoint_folders(checkpoints_dir)):
        if verify_checkpoint(folder, check_hashes=False):
            continue
        if read_manifest(folder).get("run_id") != run_id:
            continue
        return folder.resolve() == target
    return False


def _latest_hint(checkpoints_dir: str | Path) -> str:
    latest, _ = find_latest_checkpoint(checkpoints_dir)
    return f"latest valid is {latest}" if latest is not None else f"no valid checkpoint in {checkpoints_dir}"


def cleanup_incomplete(checkpoints_dir: str | Path) -> list[Path]:
    """Delete hidden ``.tmp-`` leftovers of interrupted saves and deletions; return what was removed.

    Spared: folders this process is writing right now, and folders of another process that is still
    alive (two trainers sharing a folder must not destroy each other's save in progress).
    """
    live = live_temp_folders()
    removed = []
    for folder in temp_folders(checkpoints_dir):
        parsed = parse_temp_name(folder.name)
        if folder in live or parsed is None:
            continue
        pid = parsed[1]
        if pid != os.getpid() and _process_alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or we cannot tell: keep its folder
    return True
