"""Retention, background writer and snapshot, disk checks."""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path

import pytest
import torch

from fleetmarl.checkpoint import (
    CheckpointSaveError,
    CheckpointWriter,
    check_disk_space,
    ensure_writable,
    estimate_checkpoint_bytes,
    find_latest_checkpoint,
    planned_checkpoint_count,
    prune_checkpoints,
    save_model_checkpoint,
    snapshot,
    verify_checkpoint,
)
from fleetmarl.config import Config
from fleetmarl.errors import CheckpointError, FleetmarlError
from tests.test_checkpoint_core import FakeAgent, make_state

ONE = Config(NUM_AGENTS=1)


def save(root: Path, episode: int, run_id: str = "run-a", eval_reward: float | None = None,
         rewards: list[float] | None = None) -> Path:
    state = make_state(episode, f"20250817_{episode // 100:02d}0000", ONE, episode_rewards_log=rewards or [0.0])
    return save_model_checkpoint([FakeAgent()], state, root, run_id=run_id, eval_reward=eval_reward)


# ---------------------------------------------------------------------- retention
def test_keep_all_by_default(tmp_path: Path) -> None:
    for episode in (200, 400, 600):
        save(tmp_path, episode)
    assert prune_checkpoints(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 3


def test_keep_last(tmp_path: Path) -> None:
    paths = [save(tmp_path, e) for e in (200, 400, 600, 800)]
    assert prune_checkpoints(tmp_path, keep_last=2, run_id="run-a", dry_run=True) == paths[:2]
    assert all(p.exists() for p in paths)
    assert prune_checkpoints(tmp_path, keep_last=2, run_id="run-a") == paths[:2]
    assert sorted(tmp_path.iterdir()) == paths[2:]


def test_keep_best_by_eval_then_recent_reward_and_newest_always_kept(tmp_path: Path) -> None:
    a = save(tmp_path, 200, eval_reward=50.0)
    b = save(tmp_path, 400, rewards=[90.0])  # no eval: recent reward counts
    c = save(tmp_path, 600, eval_reward=10.0)
    d = save(tmp_path, 800, eval_reward=1.0)  # newest: never deleted
    removed = prune_checkpoints(tmp_path, keep_best=2, run_id="run-a")
    assert removed == [c]
    assert all(p.exists() for p in (a, b, d))


def test_protected_and_other_run_lines_are_untouched(tmp_path: Path) -> None:
    original = [save(tmp_path, e, run_id="line-1") for e in (200, 400, 600)]
    branch = [save(tmp_path, e, run_id="line-2") for e in (500, 700, 900)]
    removed = prune_checkpoints(tmp_path, keep_last=1, run_id="line-2", protect=[branch[0]])
    assert removed == [branch[1]]
    assert all(p.exists() for p in original)


def test_prune_leaves_invalid_folders_alone(tmp_path: Path) -> None:
    save(tmp_path, 200)
    broken = save(tmp_path, 400)
    (broken / "MANIFEST.json").unlink()
    newest = save(tmp_path, 600)
    prune_checkpoints(tmp_path, keep_last=1)
    assert broken.exists() and newest.exists() and len(list(tmp_path.iterdir())) == 2


def test_prune_survives_resume_from_disk(tmp_path: Path) -> None:
    """Retention reads manifests, so a new process sees the old checkpoints of the same line."""
    for e in (200, 400, 600):
        save(tmp_path, e)
    latest, _ = find_latest_checkpoint(tmp_path)
    after_resume = save(tmp_path, 800)
    assert len(prune_checkpoints(tmp_path, keep_last=2, run_id="run-a", protect=[after_resume])) == 2
    assert latest is not None and latest.exists() and after_resume.exists()


# ---------------------------------------------------------------------- snapshot and writer
def test_snapshot_is_independent_of_live_tensors() -> None:
    agent = FakeAgent()
    state = agent.checkpoint_state()
    copy = snapshot({"agents": [state], "step": 3, "rng": (1, [2]), "none": None})
    with torch.no_grad():
        agent.actor.weight.add_(1.0)
    assert not torch.equal(copy["agents"][0]["actor"]["weight"], agent.actor.weight)
    assert type(copy["agents"][0]["actor"]) is collections.OrderedDict
    assert copy["agents"][0]["actor"]._metadata == state["actor"]._metadata
    assert copy["rng"] == (1, [2]) and copy["none"] is None
    assert copy["agents"][0]["actor"]["weight"].device.type == "cpu"
    assert not copy["agents"][0]["actor"]["weight"].requires_grad


def test_writer_runs_in_background_one_at_a_time(tmp_path: Path) -> None:
    release = threading.Event()
    order: list[str] = []

    def slow_job() -> Path:
        release.wait(5)
        order.append("first")
        return tmp_path / "first"

    def second_job() -> Path:
        order.append("second")
        return tmp_path / "second"

    writer = CheckpointWriter(async_=True)
    assert writer.submit(slow_job) is None
    assert writer.busy  # the caller is not blocked by the write
    threading.Timer(0.05, release.set).start()
    assert writer.submit(second_job) == tmp_path / "first"  # waited for the previous one
    assert writer.wait() == tmp_path / "second"
    assert writer.wait() is None
    assert order == ["first", "second"]
    writer.close()
    with pytest.raises(CheckpointSaveError, match="closed"):
        writer.submit(second_job)


def test_writer_surfaces_background_errors(tmp_path: Path) -> None:
    def failing() -> Path:
        raise OSError(28, "No space left on device")

    def good() -> Path:
        return tmp_path

    with CheckpointWriter(async_=True) as writer:
        writer.submit(failing)
        outcome = writer.submit(good)
        assert isinstance(outcome, FleetmarlError) and "No space left on device" in str(outcome)
        assert writer.wait() == tmp_path
    sync = CheckpointWriter(async_=False)
    assert isinstance(sync.submit(failing), CheckpointSaveError)
    assert sync.submit(good) == tmp_path


def test_writer_saves_real_checkpoint_from_snapshot(tmp_path: Path) -> None:
    agent = FakeAgent()
    frozen = snapshot({"agents": [agent.checkpoint_state()], "state": make_state(config=ONE)})
    expected = agent.actor.weight.detach().clone()
    with CheckpointWriter() as writer:
        writer.submit(lambda: save_model_checkpoint(frozen["agents"], frozen["state"], tmp_path))
        with torch.no_grad():
            agent.actor.weight.mul_(0)  # training goes on mutating weights
        path = writer.wait()
    assert isinstance(path, Path) and verify_checkpoint(path) == []
    loaded = FakeAgent(seed=3)
    from fleetmarl.checkpoint import load_model_checkpoint

    load_model_checkpoint([loaded], path, "cpu")
    assert torch.equal(loaded.actor.weight, expected)


# ---------------------------------------------------------------------- disk
def test_check_disk_space_warns_with_numbers(tmp_path: Path) -> None:
    assert check_disk_space(tmp_path, 1024, 3) is None
    message = check_disk_space(tmp_path / "not" / "yet", 250 * 1024**4, 15)
    assert message is not None and "15 saves x 250.0 TB" in message and "KEEP_LAST_CHECKPOINTS" in message


def test_estimate_and_planned_count() -> None:
    agent = FakeAgent()
    size = estimate_checkpoint_bytes([agent.checkpoint_state()] * 5, {"x": torch.zeros(10)}, {"obs": torch.zeros(1000)})
    assert size > 4000 + 40
    assert planned_checkpoint_count(3000, 200) == 16
    assert planned_checkpoint_count(3000, 200, keep_last=3) == 4


def test_ensure_writable(tmp_path: Path) -> None:
    assert ensure_writable(tmp_path / "a" / "b").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match=f"cannot write checkpoints to {blocker}") as info:
        ensure_writable(blocker / "sub")
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root ignores permissions")
def test_read_only_dir_save_fails_cleanly(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    good = save(tmp_path, 200)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CheckpointSaveError, match="Permission denied"):
            save(tmp_path, 400)
    finally:
        tmp_path.chmod(0o700)
    assert [p.name for p in tmp_path.iterdir()] == [good.name]
