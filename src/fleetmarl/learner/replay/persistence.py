"""The replay checkpoint format (version 2): a small head plus immutable chunks, saved and restored exactly.

Why chunks (incremental checkpoints): transition ``g`` lives in slot ``g % CAPACITY``; chunk k holds
transitions ``[k*S, (k+1)*S)`` (S = ``chunk_transitions``). Once full and every next observation in it is
known, a chunk never changes again (priorities live apart, in the head), so a checkpoint writes it once
and later checkpoints hard-link the file. :func:`snapshot` copies only the small head (open tail,
pending frames, priorities, counters) in the training loop; sealed chunks are read later by the writer
thread, through the storage's pins (copy on write, :mod:`.storage`), so a background save always writes
the state of its snapshot.

A state is plain data (tensors, ints, strings: ``torch.load(weights_only=True)`` reads it). Chunk payload:
``first``, ``end``, ``frames`` (the codec's fields), ``actions``, ``rewards``, ``dones``, ``next_ref``,
``final_index`` and ``final`` (the final frames the chunk refers to), ``taught`` (discrete actions).
Version 1 (two full observations per slot) is converted by :mod:`.format_v1` before it gets here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fleetmarl.errors import CheckpointError
from fleetmarl.learner.replay.codecs import CODECS
from fleetmarl.learner.replay.sampler import ReplaySampler
from fleetmarl.learner.replay.storage import NOT_TAUGHT, PRIOR_KEY, ReplayStorage, final_indices

FORMAT_NAME = "fleetmarl-replay"
FORMAT_VERSION = 2
"""Version of a saved replay state; version 1 (two full observations per slot) still loads."""
CHUNK_TRANSITIONS = 2048
"""Transitions per immutable chunk (at most; small buffers use CAPACITY // 16, at least 64): the unit a
checkpoint writes once and hard-links afterwards. 2048 default transitions are about 5 MB."""


def default_chunk_transitions(capacity: int) -> int:
    """Chunk size for a ring of ``capacity``: small buffers get at least 16 chunks."""
    return min(CHUNK_TRANSITIONS, max(64, capacity // 16))


@dataclass
class SealedChunk:
    """A sealed chunk of a :func:`snapshot`: transitions ``[first, end)``.

    ``load()`` returns its plain payload (read from the live buffer, or the copy ``add`` took before the
    ring overwrote it); the writer calls it only when the file is not already on disk to link.
    """

    first: int
    end: int
    load: Callable[[], dict[str, Any]]


class ReplayCheckpoint(dict):
    """A :func:`snapshot`: the head (plain data, copied) plus ``"chunks"`` of :class:`SealedChunk`.

    Call :meth:`release` once the save is over, so ``add`` stops guarding the chunks it pinned.
    """

    release: Callable[[], None] = staticmethod(lambda: None)


# ---------------------------------------------------------------------- saving
def chunk_ranges(storage: ReplayStorage, chunk_transitions: int) -> tuple[list[tuple[int, int]], int]:
    """Sealed chunk ranges of the live transitions (oldest first) and where the open tail starts.

    A chunk is sealed when it is full and none of its transitions waits for its next observation.
    The oldest chunk is cut to the live part, so a checkpoint never carries overwritten transitions.
    """
    s = chunk_transitions
    oldest = storage.total - storage.size
    resolved = storage.pending_first if storage.pending is not None else storage.total
    tail = (resolved // s) * s
    ranges = []
    start = (oldest // s) * s
    while start < tail:
        ranges.append((max(start, oldest), start + s))
        start += s
    return ranges, max(tail, oldest)


def range_payload(storage: ReplayStorage, first: int, end: int) -> dict[str, Any]:
    """Plain copies of transitions [first, end) and of the final frames they refer to."""
    slots = np.arange(first, end) % storage.capacity
    refs = storage.next_ref[slots].copy()
    finals = final_indices(refs)
    payload = {
        "first": int(first), "end": int(end),
        "frames": {k: torch.from_numpy(v[slots]) for k, v in storage.frames.items()},
        "actions": torch.from_numpy(storage.actions[slots]),
        "rewards": torch.from_numpy(storage.rewards[slots]),
        "dones": torch.from_numpy(storage.dones[slots]),
        "next_ref": torch.from_numpy(refs),
        "final_index": torch.from_numpy(finals.astype(np.int64)),
        "final": {k: torch.from_numpy(v[finals % storage.capacity]) for k, v in storage.final.items()},
    }
    if storage.taught is not None:
        payload["taught"] = torch.from_numpy(storage.taught[slots])
    return payload


def head(storage: ReplayStorage, sampler: ReplaySampler, tail_first: int, chunk_transitions: int) -> dict[str, Any]:
    """Everything but the sealed chunks, as plain copies: counters, the open tail from ``tail_first``,
    the pending frames and the sampler's state."""
    s, n = storage, storage.size
    state: dict[str, Any] = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "layout": s.layout,
        "capacity": s.capacity, "size": n, "ptr": s.ptr, "total": s.total,
        "final_total": s.final_total, "prioritized": sampler.prioritized,
        "action_dim": s.action_dim, "chunk_transitions": chunk_transitions,
        "rng": plain_rng_state(sampler.rng.bit_generator.state),
        "beta": float(sampler.beta), "max_priority": float(sampler.max_priority),
        "tail": range_payload(s, tail_first, s.total) if s.codec is not None else None,
        "pending_first": s.pending_first,
        "pending": None if s.pending is None else {k: torch.from_numpy(v.copy()) for k, v in s.pending.items()},
    }
    if sampler.tree is not None:
        state["priorities"] = torch.from_numpy(sampler.tree.leaves(n).copy())
    return state


def full_state(storage: ReplayStorage, sampler: ReplaySampler, chunk_transitions: int) -> dict[str, Any]:
    """Everything, as plain copies: the head plus every sealed chunk's payload under ``"chunks"``."""
    ranges, tail = chunk_ranges(storage, chunk_transitions)
    state = head(storage, sampler, tail, chunk_transitions)
    state["chunks"] = [range_payload(storage, first, end) for first, end in ranges]
    return state


def snapshot(storage: ReplayStorage, sampler: ReplaySampler, chunk_transitions: int) -> ReplayCheckpoint:
    """What a checkpoint needs, cheaply: the head is copied now; the sealed chunks are pinned and become
    :class:`SealedChunk` that the writer reads later."""
    ranges, tail = chunk_ranges(storage, chunk_transitions)
    state = ReplayCheckpoint(head(storage, sampler, tail, chunk_transitions))
    pins = storage.pin(ranges, lambda first, end: range_payload(storage, first, end))
    state["chunks"] = [SealedChunk(p.first, p.end, lambda p=p: storage.read_pinned(p)) for p in pins]
    state.release = lambda: storage.unpin(pins)
    return state


def plain_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """numpy's bit-generator state as plain Python ints/strings (weights_only-loadable)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (np.integer, int)):
            return int(value)
        return value
    return plain(state)


# ---------------------------------------------------------------------- restoring
def restore(storage: ReplayStorage, sampler: ReplaySampler, state: Mapping[str, Any], chunk_transitions: int) -> int:
    """Load a version-2 ``state`` (``"chunks"`` may be any iterable of payloads, read one by one) into
    ``storage`` and ``sampler``; returns the chunk size to go on with (the saved one)."""
    _check_sizes(storage, state)
    storage.total = int(state["total"])
    storage.final_total = int(state["final_total"])
    chunk_transitions = int(state.get("chunk_transitions", chunk_transitions))
    _use_saved_layout(storage, state["layout"])
    _clear_transitions(storage)
    storage.forget_encoded()
    payloads: Iterable[Mapping[str, Any]] = state.get("chunks", [])
    without_prior = False  # a chunk written before the prior's choice was stored (it may be linked into newer checkpoints)
    for payload in itertools.chain(payloads, [state.get("tail")]):
        if payload is not None:
            _put_payload(storage, payload)
            without_prior |= PRIOR_KEY not in payload["frames"]
    storage.pending_first = int(state["pending_first"])
    pending = state.get("pending")
    storage.pending = None if pending is None else {k: v.cpu().numpy().copy() for k, v in pending.items()}
    if storage.prior is not None and (without_prior or (pending is not None and PRIOR_KEY not in pending)):
        storage.fill_prior()
    priorities = state["priorities"].cpu().numpy() if sampler.tree is not None and "priorities" in state else None
    sampler.restore(state["rng"], state["beta"], state["max_priority"], priorities, storage.size)
    return chunk_transitions


def _check_sizes(storage: ReplayStorage, state: Mapping[str, Any]) -> None:
    """Refuse a state this storage cannot hold, saying which setting to change."""
    n, capacity = int(state["size"]), int(state["capacity"])
    if n > storage.capacity:
        raise CheckpointError(f"replay buffer checkpoint holds {n} transitions but CAPACITY={storage.capacity}; "
                              f"use --set CAPACITY={capacity}")
    if capacity != storage.capacity:
        raise CheckpointError(f"replay buffer checkpoint was made for CAPACITY={capacity} but the "
                              f"config has CAPACITY={storage.capacity}")
    if state.get("action_dim") != storage.action_dim:
        raise CheckpointError(f"replay buffer checkpoint holds actions of dim {state.get('action_dim')} "
                              f"but this buffer stores {storage.action_dim}")


def _use_saved_layout(storage: ReplayStorage, layout: str) -> None:
    """Switch to the saved layout; "auto" was saved before the first add chose one."""
    if layout not in (*CODECS, "auto"):
        raise CheckpointError(f"replay buffer checkpoint has an unknown layout {layout!r}; upgrade fleetmarl")
    if layout == "auto":
        storage.codec = storage.full_codec = None
        storage.layout, storage.frames, storage.final, storage.fields = "auto", {}, {}, {}
    else:
        storage.use_layout(layout)


def _clear_transitions(storage: ReplayStorage) -> None:
    """Slots no payload fills read as empty, as in a fresh buffer."""
    storage.actions[:] = 0
    if storage.taught is not None:
        storage.taught[:] = NOT_TAUGHT
    storage.rewards[:] = 0
    storage.dones[:] = False
    storage.next_ref[:] = 0


def _put_payload(storage: ReplayStorage, payload: Mapping[str, Any]) -> None:
    """Write one chunk (or the tail) back into its slots, checking shapes against this config."""
    assert storage.codec is not None
    first, end = int(payload["first"]), int(payload["end"])
    slots = np.arange(first, end) % storage.capacity
    for key, (shape, _) in storage.fields.items():
        if key == PRIOR_KEY and key not in payload["frames"]:
            continue  # saved before the prior's choice was stored: restore() asks the prior afterwards
        value = payload["frames"][key]
        if tuple(value.shape[1:]) != shape:
            raise CheckpointError(f"replay buffer checkpoint has frames.{key} of shape {tuple(value.shape[1:])} "
                                  f"per transition but this config needs {shape}")
        storage.frames[key][slots] = value.cpu().numpy()
    dones = payload["dones"].cpu().numpy()
    if dones.shape[1:] != storage.dones.shape[1:]:
        raise CheckpointError(f"replay buffer checkpoint has done flags of shape {dones.shape[1:]} per transition "
                              f"but this environment needs {storage.dones.shape[1:]}")
    storage.actions[slots] = payload["actions"].cpu().numpy()
    if storage.taught is not None and "taught" in payload:  # absent: saved before teachers were recorded
        storage.taught[slots] = payload["taught"].cpu().numpy()
    storage.rewards[slots] = payload["rewards"].cpu().numpy()
    storage.dones[slots] = dones
    storage.next_ref[slots] = payload["next_ref"].cpu().numpy()
    finals = payload["final_index"].cpu().numpy() % storage.capacity
    for key, value in payload["final"].items():
        storage.final[key][finals] = value.cpu().numpy()
