"""``fleetmarl ckpt prune`` takes the folder's TrainingLock while it deletes: against a live holder (another
process) it exits 2 naming the holder's pid and host and deletes nothing; read commands never take it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmarl.checkpoint import CheckpointsDirBusy, TrainingLock, checkpoint_folders
from fleetmarl.checkpoint.layout import LOCK_FILE
from fleetmarl.checkpoint.remote import mirror_folder
from fleetmarl.cli import ckpt as commands
from fleetmarl.cli import main
from tests.test_checkpoint_incremental import ENV
from tests.test_checkpoint_ops import save

HOLDER = """
import sys
from fleetmarl.checkpoint import TrainingLock
lock = TrainingLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
lock.release()
"""


def names(root: Path) -> list[str]:
    return [path.name for path, _ in checkpoint_folders(root)]


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetmarl.cli", *argv], capture_output=True, text=True,
                          timeout=120, env=ENV, cwd=cwd)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoints"
    for episode in (200, 400, 600):
        save(folder, episode)
    return folder


def hold(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock the way a trainer does, until its stdin is closed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def let_go(holder: subprocess.Popen) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0


@pytest.fixture()
def held(root: Path) -> Iterator[subprocess.Popen]:
    holder = hold(root)
    try:
        yield holder
    finally:
        if holder.poll() is None:
            let_go(holder)


def test_prune_against_a_live_holder_exits_2_naming_it_and_deletes_nothing(
        root: Path, held: subprocess.Popen) -> None:
    before = names(root)
    out = cli("ckpt", "prune", str(root), "--keep", "1", cwd=root.parent)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: "), out.stderr
    assert f"pid {held.pid} on host {socket.gethostname()}" in lines[0] and "in use by a trainer" in lines[0]
    assert "deleted" not in out.stdout and names(root) == before
    assert json.loads((root / LOCK_FILE).read_text())["pid"] == held.pid  # the holder's lock is untouched


def test_read_commands_and_a_dry_run_work_while_the_lock_is_held(root: Path, held: subprocess.Popen) -> None:
    before = names(root)
    listing = cli("ckpt", "list", str(root), cwd=root.parent)
    assert listing.returncode == 0 and all(name in listing.stdout for name in before)
    verify = cli("ckpt", "verify", str(root), cwd=root.parent)
    assert verify.returncode == 0 and verify.stdout.count("ok  ") == 3, verify.stdout + verify.stderr
    inspect = cli("ckpt", "inspect", str(root / before[-1]), cwd=root.parent)
    assert inspect.returncode == 0 and "status: ok" in inspect.stdout
    dry = cli("ckpt", "prune", str(root), "--keep", "1", "--dry-run", cwd=root.parent)
    assert dry.returncode == 0 and "would delete 2 checkpoint(s)" in dry.stdout
    assert names(root) == before and json.loads((root / LOCK_FILE).read_text())["pid"] == held.pid


def test_prune_works_once_the_holder_lets_go(root: Path) -> None:
    holder = hold(root)
    assert cli("ckpt", "prune", str(root), "--keep", "1", cwd=root.parent).returncode == 2
    let_go(holder)
    out = cli("ckpt", "prune", str(root), "--keep", "1", cwd=root.parent)
    assert out.returncode == 0 and "deleted 2 checkpoint(s)" in out.stdout, out.stdout + out.stderr
    assert names(root) == ["checkpoint_ep600_20250817_060000"] and not (root / LOCK_FILE).exists()


def test_a_trainer_starting_during_a_prune_is_refused(root: Path, monkeypatch) -> None:
    seen: list[str] = []
    real = commands.prune_checkpoints

    def prune_while_someone_tries(*args, **kwargs):
        with pytest.raises(CheckpointsDirBusy) as busy:
            TrainingLock(root).acquire()
        seen.append(str(busy.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(commands, "prune_checkpoints", prune_while_someone_tries)
    assert main(["ckpt", "prune", str(root), "--keep", "1"]) == 0
    [message] = seen
    assert f"in use by `fleetmarl ckpt prune` (pid {os.getpid()} on host {socket.gethostname()}" in message
    assert len(names(root)) == 1 and not (root / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_with_a_warning(root: Path, capsys) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert main(["ckpt", "prune", str(root), "--keep", "1"]) == 0
    out = capsys.readouterr().out
    assert f"taking over the lock of {root} from pid {dead.stdout.strip()}" in out and "deleted 2" in out
    assert len(names(root)) == 1 and not (root / LOCK_FILE).exists()


def test_a_lock_of_another_host_is_not_second_guessed(root: Path, capsys) -> None:
    (root / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "gpu-07", "since": "2025-08-17 14:30:52"}))
    assert main(["ckpt", "prune", str(root), "--keep", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "locked by a trainer (pid 4242 on host gpu-07 since 2025-08-17 14:30:52)" in err[0]
    assert len(names(root)) == 3 and (root / LOCK_FILE).exists()


def test_pruning_a_url_respects_a_trainer_of_this_host_on_its_mirror(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("fsspec")
    monkeypatch.setenv("FLEETMARL_CACHE_DIR", str(tmp_path / "cache"))
    env_url = {**ENV, "FLEETMARL_CACHE_DIR": str(tmp_path / "cache")}
    store = tmp_path / "store"
    for episode in (200, 400):
        save(store, episode)
    url = f"file://{store}"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(mirror_folder(url))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["ckpt", "prune", url, "--keep", "1"]) == 2
        assert f"pid {holder.pid} on host {socket.gethostname()}" in capsys.readouterr().err
        assert len(names(store)) == 2
    finally:
        let_go(holder)
    assert main(["ckpt", "prune", url, "--keep", "1"]) == 0
    assert names(store) == ["checkpoint_ep400_20250817_040000"]
