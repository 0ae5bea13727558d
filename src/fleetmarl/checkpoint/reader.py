"""Open a checkpoint once, check each file's hash once, and hand the checked files on.

Before issue 8, ``--resume`` hashed every file in ``resolve_resume``, again in ``load_model_checkpoint``
and re-read the manifest in ``load_replay_buffer``; ``fleetmarl eval`` hashed a whole folder (replay
buffer included) twice to load a few MB of actors. :func:`open_checkpoint` reads the manifest and
checks that every listed file is there with its size (cheap, catches an unfinished copy); hashes are
checked either all at once (``verify_all``: what ``--resume`` does to choose a checkpoint) or file by
file as they are read, from the very bytes that are then loaded. Either way no file is hashed twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fleetmarl.checkpoint.manifest import read_manifest, verify_checkpoint
from fleetmarl.checkpoint.safe_io import load_plain
from fleetmarl.errors import CheckpointError


@dataclass
class OpenCheckpoint:
    """A checkpoint folder whose manifest was read and whose listed files all exist with their sizes."""

    path: Path
    manifest: dict[str, Any]
    verified: set[str] = field(default_factory=set)
    """files whose sha256 has been checked against the manifest"""

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def load(self, name: str, map_location: torch.device | str | None = "cpu") -> Any:
        """Load a listed ``.pth`` file with ``weights_only=True``, checking its hash first unless done."""
        if not self.has(name):
            raise CheckpointError(f"checkpoint {self.path} has no {name}; run `fleetmarl ckpt verify {self.path}`")
        file = self.path / name
        if name in self.verified:
            return load_plain(file, map_location)
        data = self.read_bytes(name)
        return load_plain(file, map_location, data=data)

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes, hash-checked against the manifest (once)."""
        entry = self.manifest["files"][name]
        try:
            data = (self.path / name).read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {self.path} is not valid: missing {name}; "
                                  f"run `fleetmarl ckpt verify {self.path}`") from None
        if name not in self.verified:
            if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise CheckpointError(f"checkpoint {self.path} is not valid: {name} is corrupt (sha256 differs "
                                      f"from the manifest); run `fleetmarl ckpt verify {self.path}`")
            self.verified.add(name)
        return data


def open_checkpoint(path: str | Path | OpenCheckpoint, *, verify_all: bool = False) -> OpenCheckpoint:
    """Read the manifest and check sizes (and, with ``verify_all``, every hash); one-line error if not valid."""
    if isinstance(path, OpenCheckpoint):
        if verify_all and path.verified != set(path.manifest["files"]):
            return open_checkpoint(path.path, verify_all=True)
        return path
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist; list the valid ones with `fleetmarl ckpt list`")
    problems = verify_checkpoint(path, check_hashes=verify_all)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"checkpoint {path} is not valid: {problems[0]}{more}; run `fleetmarl ckpt verify {path}`")
    manifest = read_manifest(path)
    return OpenCheckpoint(path, manifest, set(manifest["files"]) if verify_all else set())
