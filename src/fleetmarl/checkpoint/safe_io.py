"""Write only what can be read back safely; read nothing that could run code.

``torch.load`` without ``weights_only=True`` unpickles arbitrary objects, and unpickling can execute
code: a checkpoint downloaded from someone else would then own the machine. So every file we write is
*plain data* (tensors, numbers, strings, lists, tuples, dicts) that ``weights_only=True`` accepts, we
check that before writing (a file we cannot safely load is a file we must not write), and our loader
always passes ``weights_only=True`` and turns a refusal into a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fleetmarl.errors import CheckpointError, FleetmarlError

_PLAIN_SCALARS = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device)
_CONTAINERS = (dict, collections.OrderedDict, list, tuple, torch.Size)


class CheckpointSaveError(FleetmarlError):
    """A save failed at run time (exit status 1): the trainer prints it and keeps training."""


def validate_plain(payload: Any, where: str = "payload") -> None:
    """Raise :class:`CheckpointSaveError` naming the first non-plain value, e.g. ``state['rng'][1]``.

    Exact type checks, not ``isinstance``: ``numpy.float64`` *is* a ``float`` subclass yet pickles as a
    numpy global that ``weights_only=True`` refuses.
    """
    stack: list[tuple[Any, str]] = [(payload, where)]
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind in _PLAIN_SCALARS or isinstance(value, torch.Tensor):
            continue
        if kind in (dict, collections.OrderedDict):
            for key, item in value.items():
                if type(key) not in (str, int):
                    raise CheckpointSaveError(
                        f"cannot save {path}: key {key!r} is a {type(key).__name__}; checkpoint dicts need str or int keys"
                    )
                stack.append((item, f"{path}[{key!r}]"))
            continue
        if kind in (list, tuple, torch.Size):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
            continue
        hint = " (convert numpy values with torch.from_numpy(...) or .item())" if kind.__module__.startswith("numpy") else ""
        raise CheckpointSaveError(
            f"cannot save {path}: a {kind.__module__}.{kind.__qualname__} is not plain data{hint}; "
            "checkpoints hold only tensors, numbers, strings, None, lists, tuples and dicts"
        )


def compact_views(payload: Any) -> Any:
    """Copy tensors that view a larger storage: ``torch.save`` writes the *whole* storage otherwise.

    A replay buffer's filled part ``obs[:size]`` would silently cost the full capacity on disk.
    """
    if isinstance(payload, torch.Tensor):
        used = payload.numel() * payload.element_size()
        if payload.untyped_storage().nbytes() > used:
            return payload.detach().clone()
        return payload
    if type(payload) in (dict, collections.OrderedDict):
        out = type(payload)((k, compact_views(v)) for k, v in payload.items())
        if hasattr(payload, "_metadata"):  # a module state_dict's version info
            out._metadata = payload._metadata  # type: ignore[attr-defined]
        return out
    if type(payload) is list:
        return [compact_views(v) for v in payload]
    if type(payload) is tuple:
        return tuple(compact_views(v) for v in payload)
    return payload


def save_plain(payload: Any, path: Path, where: str | None = None) -> dict[str, Any]:
    """Validate, then ``torch.save`` and fsync, so a committed checkpoint survives a power cut.

    Returns ``{"bytes", "sha256"}`` of what was written (hashed in memory on the way out, so the
    manifest never reads the file back).
    """
    validate_plain(payload, where or path.name)
    blob = io.BytesIO()
    torch.save(compact_views(payload), blob)
    return write_bytes_synced(path, blob.getbuffer())


def write_bytes_synced(path: Path, data: bytes | memoryview) -> dict[str, Any]:
    """Write ``data`` to a new file and fsync it; its manifest entry ``{"bytes", "sha256"}``."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_text_synced(path: Path, text: str) -> dict[str, Any]:
    """UTF-8 text, fsynced (config_info.txt, MANIFEST.json); its ``{"bytes", "sha256"}``."""
    data = text.encode("utf-8")
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (new files, a rename); a no-op where the OS cannot (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_plain(path: Path, map_location: torch.device | str | None = "cpu", *, data: bytes | None = None) -> Any:
    """``torch.load(weights_only=True)``; anything that is not plain data is refused, never executed.

    ``data``: the file's bytes, already read (and hash-checked) by the caller; ``path`` then only names it.
    """
    try:
        source = path if data is None else io.BytesIO(data)
        return torch.load(source, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} is missing; run `fleetmarl ckpt verify {path.parent}`") from None
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported global" in line or "GLOBAL" in line), "")
        detail = f" ({detail.strip()[:160]})" if detail else ""
        raise CheckpointError(
            f"refused to load {path}: it contains pickled objects or code, not plain data{detail}; "
            "only load checkpoints written by fleetmarl from sources you trust"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read {path}: the file is corrupt or truncated ({first[:160]}); "
            "resume from another checkpoint (`fleetmarl ckpt list`)"
        ) from None
