"""Deleting old checkpoints, carefully: keep all by default (the guide), else last K and/or best K.

Decisions are made from what is on disk (manifests), not from in-memory history, so they survive a
resume. Only checkpoints of one run line (manifest ``run_id``) are candidates: a run resumed from an
older checkpoint is a branch with a new id and can never prune the line it came from. The newest
checkpoint and any protected one are never deleted, and folders without a valid manifest are left
alone (``fleetmarl ckpt list`` shows them; deleting what we cannot read is the user's call).
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetmarl.checkpoint.layout import CheckpointName, checkpoint_folders, temp_name
from fleetmarl.checkpoint.manifest import read_manifest, verify_checkpoint
from fleetmarl.checkpoint.safe_io import fsync_dir

_SERIAL = itertools.count(1)


@dataclass(frozen=True)
class Candidate:
    """A valid checkpoint with what retention needs from its manifest."""

    path: Path
    name: CheckpointName
    run_id: str | None
    score: float | None


def checkpoint_score(manifest: dict[str, Any]) -> float | None:
    """Evaluation reward if the save had one, else the recent training reward."""
    for key in ("eval_reward", "recent_reward"):
        value = manifest.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def candidates(checkpoints_dir: str | Path, run_id: str | None = None) -> list[Candidate]:
    """Valid checkpoints (oldest first), restricted to one run line when ``run_id`` is given.

    Sizes are checked but hashes are not: pruning must stay cheap, and a size-valid folder with a bad
    hash is still a real checkpoint of the line (it is simply not chosen as 'best' on trust).
    """
    found = []
    for path, name in checkpoint_folders(checkpoints_dir):
        if verify_checkpoint(path, check_hashes=False):
            continue
        manifest = read_manifest(path)
        if run_id is not None and manifest.get("run_id") != run_id:
            continue
        found.append(Candidate(path, name, manifest.get("run_id"), checkpoint_score(manifest)))
    return found


def select_for_deletion(
    found: list[Candidate], keep_last: int, keep_best: int, protect: Iterable[str | Path] = ()
) -> list[Candidate]:
    """Pure decision (oldest first): everything not in last K, best K, the newest or ``protect``."""
    if (keep_last <= 0 and keep_best <= 0) or not found:
        return []
    ordered = sorted(found, key=lambda c: c.name)
    keep = {ordered[-1].path}
    if keep_last > 0:
        keep.update(c.path for c in ordered[-keep_last:])
    if keep_best > 0:
        scored = [c for c in ordered if c.score is not None]
        # ties go to the newer checkpoint: sorted() is stable and we sort newest first
        best = sorted(reversed(scored), key=lambda c: c.score, reverse=True)[:keep_best]
        keep.update(c.path for c in best)
    protected = {Path(p).resolve() for p in protect}
    return [c for c in ordered if c.path not in keep and c.path.resolve() not in protected]


def prune_checkpoints(
    checkpoints_dir: str | Path,
    *,
    keep_last: int = 0,
    keep_best: int = 0,
    run_id: str | None = None,
    protect: Iterable[str | Path] = (),
    dry_run: bool = False,
) -> list[Path]:
    """Delete checkpoints beyond the retention rule; return the ones deleted (or that would be).

    ``keep_last=0`` and ``keep_best=0`` keep everything. ``run_id=None`` treats every valid checkpoint
    in the folder as one line (the ``ckpt prune`` command's default). Call only after the newest
    checkpoint is committed. Each deletion first renames the folder to a hidden temp name, so a crash
    mid-delete leaves a leftover for :func:`cleanup_incomplete`, never a half-deleted 'checkpoint'.
    """
    doomed = select_for_deletion(candidates(checkpoints_dir, run_id), keep_last, keep_best, protect)
    if dry_run:
        return [c.path for c in doomed]
    removed = []
    for candidate in doomed:
        hidden = candidate.path.with_name(temp_name(f"deleting-{candidate.path.name}", next(_SERIAL)))
        try:
            os.rename(candidate.path, hidden)
        except FileNotFoundError:  # someone else removed it meanwhile
            continue
        fsync_dir(candidate.path.parent)
        shutil.rmtree(hidden, ignore_errors=True)
        removed.append(candidate.path)
    return removed
