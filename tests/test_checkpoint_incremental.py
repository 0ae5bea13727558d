"""Issue 11: checkpoints that share their replay chunks, stay complete alone, one trainer per folder,
honest ends, and checkpoints written before this change still load."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fleetmarl import checkpoint as ckpt
from fleetmarl.checkpoint import CheckpointSaveError, CheckpointsDirBusy, TrainingLock, verify_checkpoint
from fleetmarl.checkpoint.layout import LOCK_FILE, parse_replay_chunk
from fleetmarl.config import Config
from fleetmarl.trainer import train
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
OLD_CHECKPOINT = ROOT / "tests" / "data" / "checkpoint_ep4_20261124_233115"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
# CAPACITY 1024 -> chunks of 64 transitions; 2 envs x 12 steps = 24 transitions per round of 2 episodes.
CHUNKED = dict(TINY, CAPACITY=1024, NUM_EPISODES=16, MODEL_SAVE_INTERVAL=4)


def config(tmp_path: Path, name: str = "checkpoints", **changes) -> Config:
    return Config(**{**CHUNKED, **changes}, CHECKPOINTS_DIR=str(tmp_path / name), LOG_DIR=str(tmp_path / "runs"))


def folders(root: Path) -> list[Path]:
    return [p for p, _ in ckpt.checkpoint_folders(root)]


def final(path: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    state = torch.load(path / "training_state.pth", weights_only=True)
    weights = {f"{i}.{k}": v for i in range(2) for k, v in torch.load(path / f"agent_{i}.pth", weights_only=True)["actor"].items()}
    return state["episode_rewards_log"], weights


def test_checkpoints_hard_link_the_chunks_they_share(tmp_path: Path) -> None:
    train(config(tmp_path), log=lambda m: None)
    saved = folders(tmp_path / "checkpoints")
    assert [int(p.name.split("_")[1][2:]) for p in saved] == [4, 8, 12, 16]
    inodes: dict[str, set[int]] = {}
    for folder in saved:
        assert verify_checkpoint(folder) == []
        for file in folder.iterdir():
            if parse_replay_chunk(file.name):
                inodes.setdefault(file.name, set()).add(file.stat().st_ino)
    assert len(inodes) >= 2
    assert all(len(found) == 1 for found in inodes.values()), "a chunk was written twice"
    newest = saved[-1]
    manifest = json.loads((newest / "MANIFEST.json").read_text())
    chunks = [name for name in manifest["files"] if parse_replay_chunk(name)]
    assert chunks and all((newest / name).stat().st_nlink > 1 for name in chunks[:1])


def test_a_copied_folder_alone_verifies_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    whole = train(config(tmp_path, "whole"), log=lambda m: None)
    train(config(tmp_path, "half", NUM_EPISODES=12), log=lambda m: None)
    lonely = tmp_path / "elsewhere"
    lonely.mkdir()
    source = folders(tmp_path / "half")[-1]
    shutil.copytree(source, lonely / source.name)  # copies file contents: no link back to its siblings
    shutil.rmtree(tmp_path / "half")
    assert verify_checkpoint(lonely / source.name) == []
    resumed = train(config(tmp_path, "elsewhere"), resume="latest", log=lambda m: None)
    assert resumed.state.episode_rewards_log == whole.state.episode_rewards_log
    rewards_a, weights_a = final(whole.last_checkpoint)
    rewards_b, weights_b = final(resumed.last_checkpoint)
    assert rewards_a == rewards_b and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_retention_never_breaks_the_checkpoints_it_keeps(tmp_path: Path) -> None:
    train(config(tmp_path, KEEP_LAST_CHECKPOINTS=1), log=lambda m: None)
    kept = folders(tmp_path / "checkpoints")
    assert len(kept) == 1 and verify_checkpoint(kept[0]) == []


def test_without_hard_links_chunks_are_copied(tmp_path: Path, monkeypatch) -> None:
    def no_links(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    train(config(tmp_path), log=lambda m: None)
    for folder in folders(tmp_path / "checkpoints"):
        assert verify_checkpoint(folder) == []
        assert all(f.stat().st_nlink == 1 for f in folder.iterdir())


def test_stall_and_bytes_are_logged_at_each_checkpoint(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fleetmarl.logging import TAG_CHECKPOINT_BYTES, TAG_CHECKPOINT_STALL

    result = train(config(tmp_path, ENABLE_TENSORBOARD=True, RUN_NAME="tb"), log=lambda m: None)
    acc = EventAccumulator(str(result.log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    stalls = acc.Scalars(TAG_CHECKPOINT_STALL)
    written = acc.Scalars(TAG_CHECKPOINT_BYTES)
    assert [e.step for e in stalls] == [4, 8, 12, 16] == [e.step for e in written]
    # that the stall is measured and logged; how long it is belongs to benchmarks/bench_checkpoint.py
    assert all(e.value > 0 and math.isfinite(e.value) for e in stalls) and all(e.value > 0 for e in written)


# ---------------------------------------------------------------------- one trainer per folder
def test_a_second_trainer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    with TrainingLock(root):
        with pytest.raises(CheckpointsDirBusy, match=f"pid {os.getpid()} on host {socket.gethostname()}"):
            train(config(tmp_path), log=lambda m: None)
        assert not folders(root)
    assert not (root / LOCK_FILE).exists()


def test_second_trainer_exits_2_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    with TrainingLock(root):
        out = subprocess.run([sys.executable, "-m", "fleetmarl.cli", "train", "--set", f"CHECKPOINTS_DIR={root}"],
                             capture_output=True, text=True, timeout=120, env=ENV, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: ") and f"pid {os.getpid()}" in lines[0], out.stderr


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    messages: list[str] = []
    train(config(tmp_path, NUM_EPISODES=4), log=messages.append)
    assert any("taking over the lock" in m and dead.stdout.strip() in m for m in messages)
    assert not (root / LOCK_FILE).exists()


def test_read_commands_ignore_the_lock(tmp_path: Path) -> None:
    from fleetmarl.cli import main

    train(config(tmp_path, NUM_EPISODES=4), log=lambda m: None)
    with TrainingLock(tmp_path / "checkpoints"):
        assert main(["ckpt", "list", str(tmp_path / "checkpoints")]) == 0
        assert main(["ckpt", "verify", str(tmp_path / "checkpoints")]) == 0


# ---------------------------------------------------------------------- honest ends
def failing_from(monkeypatch, episode: int) -> None:
    real = ckpt.save_model_checkpoint

    def save(agents, training_state, *args, **kwargs):
        if training_state["episode"] >= episode:
            raise CheckpointSaveError(f"could not save checkpoint of episode {training_state['episode']} in x: "
                                      "No space left on device (free disk space); earlier checkpoints are untouched")
        return real(agents, training_state, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_model_checkpoint", save)


@pytest.mark.parametrize("async_", [True, False])
def test_a_run_whose_last_checkpoint_failed_fails_naming_what_is_lost(tmp_path: Path, monkeypatch, async_: bool) -> None:
    failing_from(monkeypatch, 12)
    messages: list[str] = []
    with pytest.raises(CheckpointSaveError) as info:
        train(config(tmp_path, ASYNC_CHECKPOINTING=async_), log=messages.append)
    text = str(info.value)
    assert "episodes 9-16 are not on disk" in text and "checkpoint_ep8_" in text and "No space left" in text
    assert info.value.exit_code == 1
    failures = [m for m in messages if "No space left" in m]
    assert len(failures) == 1 and "episode 12" in failures[0]  # the save at 12: one line; the last one: the error
    assert "untouched" in failures[0] and "intact" not in " ".join(messages)


def test_cli_exit_status_is_1_when_the_last_checkpoint_is_lost(tmp_path: Path, monkeypatch, capsys) -> None:
    from fleetmarl.cli import main

    failing_from(monkeypatch, 8)
    monkeypatch.chdir(tmp_path)
    flags = [arg for k, v in {**CHUNKED, "NUM_EPISODES": 8}.items() for arg in ("--set", f"{k}={v}")]
    assert main(["train", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fleetmarl: ") and "episodes 5-8 are not on disk" in err[0]


# ---------------------------------------------------------------------- before compact replay
def old_flags() -> dict:
    saved = torch.load(OLD_CHECKPOINT / "training_state.pth", weights_only=True)["config"]
    return {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in Config.__dataclass_fields__}


def test_checkpoint_written_before_compact_replay_resumes_with_its_buffer(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(OLD_CHECKPOINT, root / OLD_CHECKPOINT.name)
    messages: list[str] = []
    cfg = Config(**{**old_flags(), "NUM_EPISODES": 8, "CHECKPOINTS_DIR": str(root), "LOG_DIR": str(tmp_path / "runs")})
    result = train(cfg, resume="latest", log=messages.append)
    assert result.state.episode == 8
    assert any("exact resume" in m and "converted" in m for m in messages)
    assert verify_checkpoint(result.last_checkpoint) == []


def test_checkpoint_written_before_compact_replay_evaluates() -> None:
    from fleetmarl.eval.policy import load_policy

    policy = load_policy(OLD_CHECKPOINT)
    assert policy.config.NUM_AGENTS == 2


def test_simplified_ignores_initial_points(tmp_path: Path) -> None:
    result = train(config(tmp_path, ENVIRONMENT_TYPE="simplified", NUM_POINTS=4, INITIAL_POINTS=10, NUM_EPISODES=4),
                   log=lambda m: None)
    assert result.state.episode == 4
