"""Save and load whole checkpoints: the guide's ``save_model_checkpoint`` / ``load_model_checkpoint``.

A save is atomic. Files go into a hidden ``.tmp-...`` folder inside ``CHECKPOINTS_DIR`` (same file
system, so the final ``os.rename`` is atomic), each fsynced, ``MANIFEST.json`` last, then the folder is
renamed to ``checkpoint_ep{episode}_{timestamp}`` and the parent fsynced. A crash at any point leaves
either the previous checkpoints alone or a complete new one, never a half-written folder that a
resume would pick up.

Agents are duck-typed: ``agent.checkpoint_state() -> dict`` and ``agent.load_checkpoint_state(dict)``
are all this module uses, so the storage layer does not depend on how agents are built.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

import fleetmarl
from fleetmarl.checkpoint.layout import (
    CONFIG_INFO_FILE,
    REPLAY_BUFFER_FILE,
    TRAINING_STATE_FILE,
    agent_filename,
    checkpoint_name,
    format_timestamp,
    parse_replay_chunk,
    replay_chunk_filename,
    temp_name,
)
from fleetmarl.checkpoint.manifest import build_manifest, read_manifest, write_manifest
from fleetmarl.checkpoint.reader import OpenCheckpoint, open_checkpoint
from fleetmarl.checkpoint.safe_io import (
    CheckpointSaveError,
    fsync_dir,
    save_plain,
    validate_plain,
    write_bytes_synced,
    write_text_synced,
)
from fleetmarl.config import ENVIRONMENT_TYPES, SHAPE_KEYS, shape_difference
from fleetmarl.errors import CheckpointError, FleetmarlError

REQUIRED_STATE_KEYS = ("episode", "noise_std", "episode_rewards_log", "config", "total_episodes_planned")
"""What the trainer must put in ``training_state``; the other guide keys are filled in when absent."""
RECENT_REWARD_WINDOW = 100
"""Episodes averaged for the guide's 近期平均奖励 (recent average reward); the trainer uses it too."""


class CheckpointAgent(Protocol):
    """The two methods the storage layer needs from an agent."""

    def checkpoint_state(self) -> dict[str, Any]: ...

    def load_checkpoint_state(self, state: dict[str, Any]) -> None: ...


# Temp folders being written by this process: cleanup_incomplete must not delete them under a live save.
_LIVE_TEMP: set[Path] = set()
_LIVE_LOCK = threading.Lock()
_SERIAL = itertools.count(1)


def live_temp_folders() -> set[Path]:
    """Temp folders this process is writing right now."""
    with _LIVE_LOCK:
        return set(_LIVE_TEMP)


# ---------------------------------------------------------------------- saving
def save_model_checkpoint(
    agents: Sequence[CheckpointAgent | Mapping[str, Any]],
    training_state: Mapping[str, Any],
    checkpoints_dir: str | Path,
    *,
    replay_buffer_state: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    parent: str | None = None,
    recent_reward: float | None = None,
    eval_reward: float | None = None,
    log: Callable[[str], None] | None = None,
    previous: str | Path | None = None,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Save every agent, the training state and (optionally) the replay buffer; return the new folder.

    ``agents`` may hold agents or their already-snapshotted ``checkpoint_state()`` dicts: a background
    save (:class:`~fleetmarl.checkpoint.writer.CheckpointWriter`) must write copies taken while the
    loop was paused, not the live weights. ``log`` (e.g. ``print``) receives the guide's two lines;
    it is off by default because the trainer routes messages through its own progress-bar-safe log.
    ``previous``: the run's previous committed checkpoint, whose replay chunk files are hard-linked
    instead of written again; ``stats`` (a dict) receives what the save wrote (see :func:`write_checkpoint`).
    Raises :class:`CheckpointSaveError` (exit 1) if the save fails; earlier checkpoints are untouched.
    """
    agent_states = [a if isinstance(a, Mapping) else a.checkpoint_state() for a in agents]
    path = write_checkpoint(
        agent_states, training_state, checkpoints_dir, replay_buffer_state=replay_buffer_state,
        run_id=run_id, parent=parent, recent_reward=recent_reward, eval_reward=eval_reward,
        previous=previous, stats=stats,
    )
    if log is not None:
        for line in saved_message(path, len(agent_states)):
            log(line)
    return path


def saved_message(path: Path, num_agents: int) -> list[str]:
    """The guide's two log lines after a save."""
    return [f"💾 模型检查点已保存: {path}", f"   包含: {num_agents}个智能体 + 训练状态 + 配置信息"]


def write_checkpoint(
    agent_states: Sequence[Mapping[str, Any]],
    training_state: Mapping[str, Any],
    checkpoints_dir: str | Path,
    *,
    replay_buffer_state: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    parent: str | None = None,
    recent_reward: float | None = None,
    eval_reward: float | None = None,
    previous: str | Path | None = None,
    stats: dict[str, Any] | None = None,
) -> Path:
    """Write already-collected states atomically; safe to call from a background thread.

    A replay state with ``"chunks"`` (:meth:`ReplayBuffer.state_dict` / ``checkpoint_state``) is written
    as a head (``replay_buffer.pth``) plus one file per chunk; a chunk file that ``previous`` already
    holds (same name, same size) is hard-linked, or copied where the file system cannot link, so each
    folder stays complete on its own. ``stats`` receives ``bytes_written``, ``bytes_linked``,
    ``files_linked``, ``files_copied``, ``write_seconds``.
    """
    started = time.perf_counter()
    if not agent_states:
        raise CheckpointSaveError("cannot save a checkpoint of zero agents")
    state = complete_training_state(training_state)
    configured = state["config"].get("NUM_AGENTS")
    if configured is not None and configured != len(agent_states):
        raise CheckpointSaveError(
            f"cannot save checkpoint: {len(agent_states)} agent states but config NUM_AGENTS is {configured}"
        )
    for i, agent_state in enumerate(agent_states):
        validate_plain(agent_state, f"{agent_filename(i)}: agent {i} checkpoint_state()")
    validate_plain(state, f"{TRAINING_STATE_FILE}: training_state")
    if replay_buffer_state is not None:
        head = {k: v for k, v in replay_buffer_state.items() if k != "chunks"}
        validate_plain(head, f"{REPLAY_BUFFER_FILE}: replay_buffer_state")
    if recent_reward is None:
        recent_reward = recent_average_reward(state["episode_rewards_log"])
    root = Path(checkpoints_dir)
    final_name = checkpoint_name(state["episode"], state["checkpoint_timestamp"])
    meta = _manifest_meta(state, len(agent_states), run_id, parent, recent_reward, eval_reward)
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = root / temp_name(final_name, next(_SERIAL))
        with _LIVE_LOCK:
            _LIVE_TEMP.add(temp)
        try:
            temp.mkdir()
            counts = {"bytes_written": 0, "bytes_linked": 0, "files_linked": 0, "files_copied": 0}
            files = _write_files(temp, agent_states, state, replay_buffer_state, recent_reward,
                                 Path(previous) if previous else None, counts)
            write_manifest(temp, build_manifest(temp, files, meta))
            fsync_dir(temp)
            final = _commit(temp, root, state)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_TEMP.discard(temp)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CheckpointSaveError(
            f"could not save checkpoint of episode {state['episode']} in {root}: {reason} "
            "(free disk space or set CHECKPOINTS_DIR to a writable folder); earlier checkpoints are untouched"
        ) from exc
    if stats is not None:
        stats.update(counts, write_seconds=time.perf_counter() - started)
    return final


def _write_files(
    folder: Path,
    agent_states: Sequence[Mapping[str, Any]],
    state: Mapping[str, Any],
    replay_buffer_state: Mapping[str, Any] | None,
    recent_reward: float | None,
    previous: Path | None,
    counts: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """Every file of the checkpoint, in the guide's order; ``{name: {"bytes", "sha256"}}``."""
    files: dict[str, dict[str, Any]] = {}

    def wrote(name: str, entry: dict[str, Any]) -> None:
        files[name] = entry
        counts["bytes_written"] += entry["bytes"]

    for i, agent_state in enumerate(agent_states):
        wrote(agent_filename(i), save_plain(dict(agent_state), folder / agent_filename(i)))
    wrote(TRAINING_STATE_FILE, save_plain(dict(state), folder / TRAINING_STATE_FILE))
    wrote(CONFIG_INFO_FILE, write_text_synced(folder / CONFIG_INFO_FILE,
                                              config_info_text(state, len(agent_states), recent_reward)))
    if replay_buffer_state is None:
        return files
    if "chunks" not in replay_buffer_state:  # a plain (version 1 or foreign) state: one file
        wrote(REPLAY_BUFFER_FILE, save_plain(dict(replay_buffer_state), folder / REPLAY_BUFFER_FILE))
        return files
    reusable = _reusable_chunks(previous)
    names = []
    for chunk in replay_buffer_state["chunks"]:
        first, end = (chunk["first"], chunk["end"]) if isinstance(chunk, Mapping) else (chunk.first, chunk.end)
        name = replay_chunk_filename(first, end)
        names.append(name)
        entry = _reuse_chunk(reusable.get(name), folder / name, counts)
        if entry is None:
            payload = chunk if isinstance(chunk, Mapping) else chunk.load()
            entry = save_plain(dict(payload), folder / name, f"{name}: replay chunk")
            counts["bytes_written"] += entry["bytes"]
        files[name] = entry
    head = {k: v for k, v in replay_buffer_state.items() if k != "chunks"}
    head["chunk_files"] = names
    wrote(REPLAY_BUFFER_FILE, save_plain(head, folder / REPLAY_BUFFER_FILE))
    return files


def _reusable_chunks(previous: Path | None) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Replay chunk files of the previous committed checkpoint, by name, with their manifest entries."""
    if previous is None:
        return {}
    try:
        listed = read_manifest(previous)["files"]
    except FleetmarlError:  # pruned or damaged since: write everything again
        return {}
    return {name: (previous / name, entry) for name, entry in listed.items() if parse_replay_chunk(name)}


def _reuse_chunk(source: tuple[Path, dict[str, Any]] | None, target: Path, counts: dict[str, int]) -> dict[str, Any] | None:
    """Hard-link (else copy, checking the hash) a chunk file the previous checkpoint holds; None if it cannot."""
    if source is None:
        return None
    path, entry = source
    try:
        if path.stat().st_size != entry["bytes"]:
            return None
        try:
            os.link(path, target)
            counts["files_linked"] += 1
            counts["bytes_linked"] += entry["bytes"]
            return {"bytes": entry["bytes"], "sha256": entry["sha256"]}
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and not path.exists():
                return None
            if exc.errno == errno.ENOSPC:
                raise
        data = path.read_bytes()  # no hard links here (another file system, FAT, some network shares)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return None
        copied = write_bytes_synced(target, data)
        counts["files_copied"] += 1
        counts["bytes_written"] += copied["bytes"]
        return copied
    except FileNotFoundError:
        return None


def _commit(temp: Path, root: Path, state: Mapping[str, Any]) -> Path:
    """Rename into place without ever replacing a committed checkpoint, then persist the rename."""
    for serial in itertools.count(1):
        final = root / checkpoint_name(state["episode"], state["checkpoint_timestamp"], serial)
        if final.exists():
            continue
        try:
            os.rename(temp, final)
        except OSError:
            if final.exists():  # lost a race with another writer; try the next serial
                continue
            raise
        fsync_dir(root)
        return final
    raise AssertionError("unreachable")


def complete_training_state(training_state: Mapping[str, Any]) -> dict[str, Any]:
    """Check the trainer's keys and fill the guide's derived ones, without mutating the caller's dict."""
    missing = [key for key in REQUIRED_STATE_KEYS if key not in training_state]
    if missing:
        raise CheckpointSaveError(f"cannot save checkpoint: training_state lacks {', '.join(missing)}")
    state = dict(training_state)
    config = state["config"]
    if not isinstance(config, Mapping):
        raise CheckpointSaveError("cannot save checkpoint: training_state['config'] must be Config.to_dict()")
    episode = state["episode"]
    if type(episode) is not int or episode < 0:
        raise CheckpointSaveError(f"cannot save checkpoint: training_state['episode'] must be an int >= 0, got {episode!r}")
    planned = state["total_episodes_planned"]
    state.setdefault("training_progress", 100.0 * episode / planned if planned else 0.0)
    state.setdefault("checkpoint_timestamp", format_timestamp())
    state.setdefault("environment_type", config.get("ENVIRONMENT_TYPE"))
    state.setdefault("random_seed", config.get("RANDOM_SEED"))
    return state


def recent_average_reward(episode_rewards_log: Any, window: int = RECENT_REWARD_WINDOW) -> float | None:
    """Mean of the last ``window`` episode rewards; a per-agent entry counts as its sum (team reward)."""
    if episode_rewards_log is None:
        return None
    entries = list(episode_rewards_log)[-window:]
    if not entries:
        return None
    totals = [_as_float(entry) for entry in entries]
    return sum(totals) / len(totals)


def _as_float(entry: Any) -> float:
    if isinstance(entry, torch.Tensor):
        return float(entry.sum())
    if isinstance(entry, (list, tuple)):
        return float(sum(_as_float(e) for e in entry))
    if isinstance(entry, Mapping):
        return float(sum(_as_float(e) for e in entry.values()))
    return float(entry)


def config_info_text(state: Mapping[str, Any], num_agents: int, recent_reward: float | None) -> str:
    """The guide's human-readable ``config_info.txt``, field for field."""
    reward = "N/A" if recent_reward is None or not math.isfinite(recent_reward) else f"{recent_reward:.2f}"
    lines = [
        "模型检查点信息",
        "=" * 50,
        f"保存时间: {state['checkpoint_timestamp']}",
        f"训练轮数: {state['episode']}",
        f"训练进度: {float(state['training_progress']):.1f}%",
        f"当前噪声: {float(state['noise_std']):.6f}",
        f"环境类型: {state['environment_type']}",
        f"随机种子: {state['random_seed']}",
        f"智能体数量: {num_agents}",
        f"近期平均奖励: {reward}",
        "",
        "训练配置参数:",
    ]
    lines += [f"  {key}: {_config_value(value)}" for key, value in state["config"].items()]
    return "\n".join(lines) + "\n"


def _config_value(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _manifest_meta(
    state: Mapping[str, Any],
    num_agents: int,
    run_id: str | None,
    parent: str | None,
    recent_reward: float | None,
    eval_reward: float | None,
) -> dict[str, Any]:
    config = state["config"]
    return {
        "fleetmarl_version": fleetmarl.__version__,
        "torch_version": torch.__version__,
        "episode": state["episode"],
        "timestamp": state["checkpoint_timestamp"],
        "run_id": run_id or state.get("run_id") or uuid.uuid4().hex[:12],
        "parent": parent,
        "num_agents": num_agents,
        "shape": {key: config.get(key) for key in SHAPE_KEYS if key in config},
        "recent_reward": _finite_or_none(recent_reward),
        "eval_reward": _finite_or_none(eval_reward),
    }


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------- loading
def load_model_checkpoint(
    agents: Sequence[CheckpointAgent],
    checkpoint_path: str | Path | OpenCheckpoint,
    device: torch.device | str = "cpu",
    *,
    config: Any = None,
) -> dict[str, Any]:
    """Load a checkpoint into ``agents`` (tensors mapped onto ``device``); return its training_state.

    ``checkpoint_path`` may be an :class:`~fleetmarl.checkpoint.reader.OpenCheckpoint` (``--resume``
    hands on the one it verified). The manifest is read first (a folder without a valid one is never
    loaded; every listed file must be there with its size); each file read is hash-checked once, and
    files not read (the replay buffer, for evaluation) are not hashed. Then the agent count and the shape keys (``NUM_AGENTS``, ``NUM_POINTS``, ``HIDDEN_DIM``, ...) are compared with
    ``config`` (a :class:`~fleetmarl.config.Config` or its dict) or, failing that, with
    ``agents[0].config`` when the agent has one. Everything is read with ``weights_only=True``.
    """
    opened = open_checkpoint(checkpoint_path)
    path, manifest = opened.path, opened.manifest
    map_location = _resolve_device(device, path)
    training_state = opened.load(TRAINING_STATE_FILE, map_location)
    if not isinstance(training_state, dict):
        raise CheckpointError(f"cannot read {path / TRAINING_STATE_FILE}: expected a dict, got {type(training_state).__name__}")
    check_compatible(training_state.get("config") or manifest.get("shape") or {}, _expected_shape(agents, config), path)
    if manifest["num_agents"] != len(agents):
        raise CheckpointError(
            f"checkpoint {path} does not fit: NUM_AGENTS is {manifest['num_agents']} in the checkpoint "
            f"but {len(agents)} here; use --set NUM_AGENTS={manifest['num_agents']} or pick a matching checkpoint"
        )
    for i, agent in enumerate(agents):
        state = opened.load(agent_filename(i), map_location)
        try:
            agent.load_checkpoint_state(state)
        except FleetmarlError:
            raise
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"checkpoint file {path / agent_filename(i)} does not fit agent {i}: {first}") from None
    return training_state


def load_replay_buffer(checkpoint_path: str | Path | OpenCheckpoint,
                       device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The saved replay buffer state, or ``None`` when the checkpoint has none (SAVE_REPLAY_BUFFER off).

    For a chunked buffer (schema 2) ``"chunks"`` is an iterator that reads (and hash-checks) one chunk
    file at a time, so loading a full buffer never holds it twice in memory.
    """
    opened = open_checkpoint(checkpoint_path)
    if not opened.has(REPLAY_BUFFER_FILE):
        return None
    location = _resolve_device(device, opened.path)
    state = opened.load(REPLAY_BUFFER_FILE, location)
    if isinstance(state, dict) and "chunk_files" in state:
        state["chunks"] = _chunks(opened, list(state.pop("chunk_files")), location)
    return state


def _chunks(opened: OpenCheckpoint, names: list[str], location: torch.device) -> Iterator[dict[str, Any]]:
    for name in names:
        yield opened.load(name, location)


def check_compatible(saved: Mapping[str, Any], expected: Mapping[str, Any], path: Path) -> None:
    """One-line error naming the first shape key whose values differ (or a PettingZoo environment that differs:
    its networks are not the fleet's, whatever the shapes)."""
    was, now = saved.get("ENVIRONMENT_TYPE"), expected.get("ENVIRONMENT_TYPE")
    if was and now and was != now and not {was, now} <= set(ENVIRONMENT_TYPES):
        raise CheckpointError(f"checkpoint {path} was trained on ENVIRONMENT_TYPE={was}, not {now}; "
                              f"use --set ENVIRONMENT_TYPE={was} or pick a checkpoint trained on {now}")
    difference = shape_difference(saved, expected)
    if difference:
        key, was, now = difference
        raise CheckpointError(f"checkpoint {path} does not fit: {key} is {was} in the checkpoint but {now} here; "
                              f"use --set {key}={was} or pick a matching checkpoint")


def _expected_shape(agents: Sequence[Any], config: Any) -> dict[str, Any]:
    source = config if config is not None else getattr(agents[0], "config", None) if agents else None
    expected: dict[str, Any] = {}
    if source is not None:
        for key in SHAPE_KEYS:
            value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
            if value is not None:
                expected[key] = value
    expected["NUM_AGENTS"] = len(agents)
    environment = source.get("ENVIRONMENT_TYPE") if isinstance(source, Mapping) else getattr(source, "ENVIRONMENT_TYPE", None)
    if environment is not None:
        expected["ENVIRONMENT_TYPE"] = environment
    return expected


def _resolve_device(device: torch.device | str, path: Path) -> torch.device:
    """Map every tensor onto ``device``; refuse early (one line) when that device does not exist here."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise CheckpointError(f"cannot load {path} onto device {device!r}: not a torch device name") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"cannot load {path} onto {target}: CUDA is not available here; use device 'cpu'")
    return target
