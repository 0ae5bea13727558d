"""Checkpoints: the guide's layout, atomic saves, safe loads, retention and background writing.

See ``docs/checkpoints.md`` (English) and ``docs/checkpoints.zh.md`` (the user's guide).
"""

from fleetmarl.checkpoint.discovery import (
    cleanup_incomplete,
    find_latest_checkpoint,
    is_latest_of_run,
    open_resume,
    resolve_resume,
)
from fleetmarl.checkpoint.disk import (
    check_disk_space,
    ensure_writable,
    estimate_checkpoint_bytes,
    estimate_run_bytes,
    format_bytes,
    planned_checkpoint_count,
)
from fleetmarl.checkpoint.layout import checkpoint_folders, checkpoint_name, parse_checkpoint_name
from fleetmarl.checkpoint.lock import CheckpointsDirBusy, TrainingLock
from fleetmarl.checkpoint.manifest import SCHEMA_VERSION, read_manifest, verify_checkpoint
from fleetmarl.checkpoint.reader import OpenCheckpoint, open_checkpoint
from fleetmarl.checkpoint.remote import RemoteCheckpoints, is_url, local_checkpoint, resolve_remote_resume
from fleetmarl.checkpoint.retention import prune_checkpoints
from fleetmarl.checkpoint.safe_io import CheckpointSaveError, load_plain, save_plain, validate_plain
from fleetmarl.checkpoint.store import (
    REQUIRED_STATE_KEYS,
    config_info_text,
    load_model_checkpoint,
    load_replay_buffer,
    recent_average_reward,
    save_model_checkpoint,
    saved_message,
    write_checkpoint,
)
from fleetmarl.checkpoint.writer import CheckpointWriter, snapshot

__all__ = [
    "SCHEMA_VERSION",
    "REQUIRED_STATE_KEYS",
    "CheckpointSaveError",
    "CheckpointWriter",
    "CheckpointsDirBusy",
    "OpenCheckpoint",
    "RemoteCheckpoints",
    "is_url",
    "local_checkpoint",
    "resolve_remote_resume",
    "TrainingLock",
    "estimate_run_bytes",
    "open_checkpoint",
    "open_resume",
    "check_disk_space",
    "ensure_writable",
    "estimate_checkpoint_bytes",
    "format_bytes",
    "planned_checkpoint_count",
    "prune_checkpoints",
    "snapshot",
    "checkpoint_folders",
    "checkpoint_name",
    "cleanup_incomplete",
    "config_info_text",
    "find_latest_checkpoint",
    "is_latest_of_run",
    "load_model_checkpoint",
    "load_plain",
    "load_replay_buffer",
    "parse_checkpoint_name",
    "read_manifest",
    "recent_average_reward",
    "resolve_resume",
    "save_model_checkpoint",
    "save_plain",
    "saved_message",
    "validate_plain",
    "verify_checkpoint",
    "write_checkpoint",
]
