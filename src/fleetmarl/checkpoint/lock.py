"""One trainer per ``CHECKPOINTS_DIR``: a lock file held for the whole run.

Two trainers writing into one folder would prune each other's checkpoints and disagree about "latest".
The lock is ``CHECKPOINTS_DIR/.fleetmarl-train.lock``, holding ``{"pid", "host", "since"}`` as JSON and
an exclusive ``flock`` while the trainer lives. The kernel drops the flock when the process dies
(``kill -9`` included), so a lock file whose flock is free is stale: on this host it is taken over with
a warning naming the dead holder. A lock written by another host is not second-guessed (its pid means
nothing here, and flock over a network file system is not reliable): the message says which host
holds it and how to clear it. ``fleetmarl ckpt prune`` deletes checkpoints, so it takes the same lock
for as long as it deletes (recorded with ``"by": "ckpt prune"``): it exits 2 while a trainer runs, and
a trainer started meanwhile is refused. Reading checkpoints (``fleetmarl ckpt list|inspect|verify``,
``prune --dry-run``, eval) never takes the lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from fleetmarl.checkpoint.layout import LOCK_FILE
from fleetmarl.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back to the pid check alone
    fcntl = None  # type: ignore[assignment]


class CheckpointsDirBusy(UserError):
    """Another live trainer holds the folder (exit status 2)."""


TRAINER = "trainer"
"""The lock's usual owner; a lock file naming no owner was written by a trainer."""


class TrainingLock:
    """Hold with :meth:`acquire`, give back with :meth:`release` (also a context manager)."""

    def __init__(self, checkpoints_dir: str | Path, owner: str = TRAINER) -> None:
        self.path = Path(checkpoints_dir) / LOCK_FILE
        self.owner = owner
        """who takes it: :data:`TRAINER` or a command such as ``"ckpt prune"`` (written to the lock file)"""
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, warn: Callable[[str], None] = print) -> TrainingLock:
        """Take the lock or raise :class:`CheckpointsDirBusy` naming the holder's pid and host."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(10):  # only loops when another process swaps the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise CheckpointsDirBusy(self._busy(_read_holder(fd))) from None
                if _inode(self.path) != os.fstat(fd).st_ino:  # unlinked by its last holder meanwhile
                    os.close(fd)
                    continue
                holder = _read_holder(fd)
                if holder and holder.get("pid") != os.getpid():
                    if holder.get("host") != host:
                        raise CheckpointsDirBusy(self._busy(holder, remote=True))
                    if fcntl is None and _alive(int(holder.get("pid", 0))):
                        raise CheckpointsDirBusy(self._busy(holder))
                    warn(f"⚠ taking over the lock of {self.path.parent} from pid {holder.get('pid')} on {host}, "
                         "which is gone (killed or crashed)")
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": host, "by": self.owner,
                                          "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise CheckpointsDirBusy(f"could not take the lock {self.path}: it keeps changing; is another trainer starting?")

    def release(self) -> None:
        """Remove the lock file (while still holding the flock, so no one takes a dying file), then close."""
        if self._fd is None:
            return
        try:
            if _inode(self.path) == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> TrainingLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _busy(self, holder: dict, remote: bool = False) -> str:
        """The one message for a held lock: what holds it (a trainer, or a command such as ``ckpt prune``),
        its pid and host, and what to do."""
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        since = f" since {holder['since']}" if holder.get("since") else ""
        by = holder.get("by") or TRAINER
        what = "a trainer" if by == TRAINER else f"`fleetmarl {by}`"
        if remote:
            return (f"{self.path.parent} is locked by {what} ({who}{since}); if that run is over, delete "
                    f"{self.path}, or set CHECKPOINTS_DIR to another folder")
        if self.owner != TRAINER:
            return (f"{self.path.parent} is in use by {what} ({who}{since}); wait for it to finish, then run "
                    f"`fleetmarl {self.owner}` again")
        what = "another trainer" if by == TRAINER else what
        return (f"{self.path.parent} is in use by {what} ({who}{since}); wait for it to finish or set "
                "CHECKPOINTS_DIR to another folder")


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
