"""MANIFEST.json: the commit record of a checkpoint, and the only thing that makes a folder loadable.

It is written last (after every other file is fsynced), so its presence means the save finished; its
per-file size and sha256 catch truncation and bit rot later (a copied or half-synced folder). The
manifest checks itself too: ``manifest_sha256`` is the sha256 of its own canonical content (every other
field, see :func:`manifest_checksum`), so an edited manifest (a changed reward, run id or file entry) is
refused like a corrupt file. Manifests written before that field existed still load; ``ckpt verify``
notes that they cannot be checked. The schema version lets an older fleetmarl refuse a newer layout
with a clear message instead of a crash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetmarl.checkpoint.layout import (
    CONFIG_INFO_FILE,
    MANIFEST_FILE,
    TRAINING_STATE_FILE,
    agent_filename,
    checkpoint_folders,
    looks_like_checkpoint,
)
from fleetmarl.checkpoint.safe_io import write_text_synced
from fleetmarl.errors import CheckpointError

SCHEMA_VERSION = 2
"""Bump when the layout changes incompatibly; readers refuse manifests newer than this.
1: one replay_buffer.pth. 2: replay_buffer.pth is a head and the buffer's chunks are files of their own
(``replay_buffer.{first}-{end}.pth``), hard-linked between the checkpoints of a run."""
FORMAT_NAME = "fleetmarl-checkpoint"
CHECKSUM_FIELD = "manifest_sha256"
"""The manifest's own checksum; absent from manifests written before it existed (they still load)."""
NO_CHECKSUM_NOTE = (f"{MANIFEST_FILE} has no {CHECKSUM_FIELD} (written by an older fleetmarl), so edits to it "
                    "cannot be detected; its files were checked")
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed (replay buffers can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"bytes": n, "sha256": hex}}`` for the files of a checkpoint."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)} for name in names}


def build_manifest(folder: Path, file_names: list[str] | Mapping[str, Mapping[str, Any]],
                   meta: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's dict: format, schema, the caller's metadata, then the files' sizes and hashes
    (given as ``{name: {"bytes", "sha256"}}`` when the writer hashed them on the way out, else read)."""
    manifest: dict[str, Any] = {"format": FORMAT_NAME, "schema_version": SCHEMA_VERSION}
    manifest.update(meta)
    if isinstance(file_names, Mapping):
        manifest["files"] = {name: dict(entry) for name, entry in file_names.items()}
    else:
        manifest["files"] = describe_files(folder, list(file_names))
    return manifest


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """Hex sha256 of a manifest's canonical content: every field but :data:`CHECKSUM_FIELD`, as compact
    JSON with sorted keys, UTF-8. The one definition, used by the writer and by every reader."""
    content = {key: value for key, value in manifest.items() if key != CHECKSUM_FIELD}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as a reader will parse it (a JSON round trip: tuples become lists, keys strings),
    with :data:`CHECKSUM_FIELD` set to the checksum of exactly that."""
    sealed = json.loads(json.dumps({k: v for k, v in manifest.items() if k != CHECKSUM_FIELD}, ensure_ascii=False))
    sealed[CHECKSUM_FIELD] = manifest_checksum(sealed)
    return sealed


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Written last and fsynced, its checksum inside it (one file, one write), into the save's hidden
    temp folder that is then renamed into place: its appearance is the commit point of a save."""
    text = json.dumps(seal_manifest(manifest), indent=2, ensure_ascii=False) + "\n"
    write_text_synced(folder / MANIFEST_FILE, text)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Parse and sanity-check a manifest; :class:`CheckpointError` (one line) if it cannot be trusted."""
    folder = Path(folder)
    problem = _manifest_problem(folder)
    if problem is not None:
        raise CheckpointError(f"checkpoint {folder} is not valid: {problem}")
    return json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))


def _manifest_problem(folder: Path) -> str | None:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return f"no {MANIFEST_FILE} (the save did not finish)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{MANIFEST_FILE} is unreadable ({type(exc).__name__}: {str(exc)[:120]})"
    return manifest_problem(manifest)


def manifest_problem(manifest: Any) -> str | None:
    """What makes a parsed manifest untrustworthy, or None; shared by folders on disk and remote prefixes."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        return f"{MANIFEST_FILE} is not a fleetmarl checkpoint manifest"
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version < 1:
        return f"{MANIFEST_FILE} has an invalid schema_version {version!r}"
    if version > SCHEMA_VERSION:
        return (f"{MANIFEST_FILE} has schema version {version}, newer than the {SCHEMA_VERSION} this fleetmarl "
                f"reads (written by fleetmarl {manifest.get('fleetmarl_version', '?')}); upgrade fleetmarl")
    if CHECKSUM_FIELD in manifest and manifest[CHECKSUM_FIELD] != manifest_checksum(manifest):
        return (f"{MANIFEST_FILE} was altered after it was written (its {CHECKSUM_FIELD} does not match its "
                "content); restore it or resume from another checkpoint")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("sha256"), str)
        for v in files.values()
    ):
        return f"{MANIFEST_FILE} has no valid file list"
    outside = [name for name in files if Path(name).name != name or name in (".", "..")]
    if outside:
        return f"{MANIFEST_FILE} lists files outside the checkpoint folder ({outside[0]!r})"
    num_agents = manifest.get("num_agents")
    if not isinstance(num_agents, int) or num_agents < 1:
        return f"{MANIFEST_FILE} has an invalid num_agents {num_agents!r}"
    required = [agent_filename(i) for i in range(num_agents)] + [TRAINING_STATE_FILE, CONFIG_INFO_FILE]
    unlisted = [name for name in required if name not in files]
    if unlisted:
        return f"{MANIFEST_FILE} does not list {', '.join(unlisted)}"
    return None


def verify_checkpoint(path: str | Path, *, check_hashes: bool = True) -> list[str]:
    """Problems with one checkpoint folder, or with each checkpoint in a folder of them; ``[]`` = valid.

    Extra files are ignored (a user's notes must not invalidate a checkpoint). For a folder of
    checkpoints each problem is prefixed with the checkpoint's name.
    """
    path = Path(path)
    if not path.exists():
        return [f"{path} does not exist"]
    if not path.is_dir():
        return [f"{path} is not a folder"]
    if not looks_like_checkpoint(path):
        folders = checkpoint_folders(path)
        if not folders:
            return [f"{path} holds no checkpoint_ep* folders"]
        return [f"{folder.name}: {p}" for folder, _ in folders for p in verify_checkpoint(folder, check_hashes=check_hashes)]
    problem = _manifest_problem(path)
    if problem is not None:
        return [problem + _missing_hint(path)]
    manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    problems = []
    for name, expected in manifest["files"].items():
        problems.extend(_file_problems(path / name, expected, check_hashes))
    return problems


def manifest_notes(folder: str | Path) -> list[str]:
    """What is worth saying about a valid checkpoint's manifest without failing it (an old manifest
    without a self-checksum); ``[]`` when there is nothing, or no readable manifest."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    return [NO_CHECKSUM_NOTE] if isinstance(manifest, dict) and CHECKSUM_FIELD not in manifest else []


def _missing_hint(folder: Path) -> str:
    """Without a manifest we can still say which required files are absent (helps the user decide)."""
    count = _agent_count_from_info(folder)
    if count is None:
        indices = [int(p.stem[6:]) for p in folder.glob("agent_*.pth") if p.stem[6:].isdigit()]
        count = max(indices) + 1 if indices else 0
    expected = [agent_filename(i) for i in range(count)]
    expected += [TRAINING_STATE_FILE, CONFIG_INFO_FILE]
    missing = [name for name in expected if not (folder / name).exists()]
    return f"; missing {', '.join(missing)}" if missing else ""


def _agent_count_from_info(folder: Path) -> int | None:
    """The agent count from config_info.txt (``智能体数量: 5``), which is written before the manifest."""
    try:
        text = (folder / CONFIG_INFO_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        label, _, value = line.partition(":")
        if label.strip() == "智能体数量" and value.strip().isdigit():
            return int(value.strip())
    return None


def _file_problems(path: Path, expected: Mapping[str, Any], check_hashes: bool) -> list[str]:
    if not path.is_file():
        return [f"missing {path.name}"]
    size = path.stat().st_size
    if size < expected["bytes"]:
        return [f"{path.name} is truncated ({size} of {expected['bytes']} bytes)"]
    if size != expected["bytes"]:
        return [f"{path.name} has {size} bytes, the manifest says {expected['bytes']}"]
    if check_hashes and sha256_file(path) != expected["sha256"]:
        return [f"{path.name} is corrupt (sha256 differs from the manifest)"]
    return []
