"""Names on disk: the user's guide fixes them, so they live in exactly one place.

A checkpoint is ``CHECKPOINTS_DIR/checkpoint_ep{episode}_{YYYYmmdd_HHMMSS}/`` (guide §文件夹结构). Two
saves of the same episode in the same second (a resume that immediately saves again) get a ``_2``
suffix rather than overwrite a committed checkpoint. Folders being written, or being deleted, carry a
hidden ``.tmp-`` prefix so that nothing that lists checkpoints ever mistakes them for real ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint_ep"
TIMESTAMP_FORMAT = "%Y%m%d_%H%M%S"
TMP_PREFIX = ".tmp-"
TRAINING_STATE_FILE = "training_state.pth"
CONFIG_INFO_FILE = "config_info.txt"
REPLAY_BUFFER_FILE = "replay_buffer.pth"
"""The replay buffer's head (counters, RNG, priorities, open tail); its sealed chunks are files of their own."""
MANIFEST_FILE = "MANIFEST.json"
LOCK_FILE = ".fleetmarl-train.lock"
"""Held in CHECKPOINTS_DIR by the one trainer writing there (hidden: listings never see it)."""
DEFAULT_CHECKPOINTS_DIR = "checkpoints"

_CHUNK_RE = re.compile(r"^replay_buffer\.(?P<first>\d{12})-(?P<end>\d{12})\.pth$")
_NAME_RE = re.compile(r"^checkpoint_ep(?P<episode>\d+)_(?P<stamp>\d{8}_\d{6})(?:_(?P<serial>\d+))?$")
_TMP_RE = re.compile(r"^\.tmp-(?P<what>.+)-(?P<pid>\d+)-(?P<serial>\d+)$")


def agent_filename(index: int) -> str:
    """``agent_{i}.pth``: one file per agent, numbered like the agents list."""
    return f"agent_{index}.pth"


def replay_chunk_filename(first: int, end: int) -> str:
    """``replay_buffer.{first}-{end}.pth``: transitions [first, end) of the run, an immutable file that
    later checkpoints of the run hard-link instead of writing again."""
    return f"replay_buffer.{int(first):012d}-{int(end):012d}.pth"


def parse_replay_chunk(name: str) -> tuple[int, int] | None:
    """``(first, end)`` of a replay chunk file name, or None."""
    match = _CHUNK_RE.match(name)
    return None if match is None else (int(match["first"]), int(match["end"]))


def format_timestamp(moment: datetime | None = None) -> str:
    """The guide's ``YYYYmmdd_HHMMSS`` in local time (what the user sees in ``ls``)."""
    return (moment or datetime.now()).strftime(TIMESTAMP_FORMAT)


def checkpoint_name(episode: int, timestamp: str, serial: int = 1) -> str:
    """Folder name for a checkpoint; ``serial`` > 1 only disambiguates same-second saves."""
    base = f"{CHECKPOINT_PREFIX}{int(episode)}_{timestamp}"
    return base if serial <= 1 else f"{base}_{serial}"


@dataclass(frozen=True, order=True)
class CheckpointName:
    """A parsed folder name; orders by (episode, timestamp, serial), i.e. newest last."""

    episode: int
    timestamp: str
    serial: int
    name: str


def parse_checkpoint_name(name: str) -> CheckpointName | None:
    """Parse ``checkpoint_ep200_20250817_143052``; ``None`` for anything else (temp folders included)."""
    match = _NAME_RE.match(name)
    if match is None:
        return None
    return CheckpointName(
        episode=int(match["episode"]),
        timestamp=match["stamp"],
        serial=int(match["serial"] or 1),
        name=name,
    )


def temp_name(final_name: str, serial: int) -> str:
    """Hidden name for a folder in the making; the pid lets cleanup spare live writers of other processes."""
    return f"{TMP_PREFIX}{final_name}-{os.getpid()}-{serial}"


def parse_temp_name(name: str) -> tuple[str, int] | None:
    """``(what, pid)`` of a hidden temp folder, or ``None`` when it is not one of ours."""
    match = _TMP_RE.match(name)
    if match is None:
        return None
    return match["what"], int(match["pid"])


def checkpoint_folders(checkpoints_dir: str | Path) -> list[tuple[Path, CheckpointName]]:
    """Every folder named like a checkpoint, oldest first, valid or not (validity is the manifest's job)."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        parsed = parse_checkpoint_name(entry.name)
        if parsed is not None and entry.is_dir():
            found.append((entry, parsed))
    found.sort(key=lambda item: item[1])
    return found


def temp_folders(checkpoints_dir: str | Path) -> list[Path]:
    """Hidden leftovers (``.tmp-...``) of saves or deletions in ``checkpoints_dir``."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and parse_temp_name(p.name) is not None)


def looks_like_checkpoint(path: Path) -> bool:
    """True for a single checkpoint folder (by name or because it holds a manifest)."""
    return parse_checkpoint_name(path.name) is not None or (path / MANIFEST_FILE).exists()
