"""Saving without stalling training: snapshot in memory, write in a background thread.

The loop pays only for :func:`snapshot` (copy tensors to CPU); serialisation, hashing, fsync and
rename happen in a thread while training continues. At most one save is in flight: a new submit
first waits for the previous one, so memory holds at most two snapshots and saves commit in order.
A failed background save is *returned* by the next :meth:`CheckpointWriter.submit` or
:meth:`CheckpointWriter.wait`, never swallowed and never raised into the loop: the trainer prints
it and keeps training (losing one checkpoint must not lose the run).
"""

from __future__ import annotations

import collections
import copy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fleetmarl.checkpoint.safe_io import CheckpointSaveError
from fleetmarl.errors import FleetmarlError

START_DELAY_S = 0.01
"""The background writer waits this long before it starts, so the training loop is back running first."""
Outcome = Path | BaseException | None
"""What a finished save left: its folder, its error, or None when nothing was saved."""


_NUMPY_DTYPES = {torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64,
                 torch.uint8, torch.bool}


def snapshot(tree: Any) -> Any:
    """Deep copy with every tensor detached and cloned to CPU, so the loop can keep mutating weights.

    Containers keep their type (a state_dict's OrderedDict and its ``_metadata`` included); immutable
    leaves are shared; anything else is ``copy.deepcopy``-ed.
    """
    if isinstance(tree, torch.Tensor):
        tensor = tree.detach()
        if tensor.device.type == "cpu" and tensor.dtype in _NUMPY_DTYPES:
            # NumPy's single-threaded memcpy: torch's intra-op pool makes a thousand small copies take
            # 150 ms on a busy 2-core machine instead of 3 ms (the checkpoint stall, issue 11)
            return torch.from_numpy(tensor.numpy().copy())
        return tensor.to("cpu", copy=True)
    if isinstance(tree, (dict, collections.OrderedDict)):
        out = type(tree)((key, snapshot(value)) for key, value in tree.items())
        if hasattr(tree, "_metadata"):
            out._metadata = copy.deepcopy(tree._metadata)  # type: ignore[attr-defined]
        return out
    if type(tree) is list:
        return [snapshot(value) for value in tree]
    if type(tree) is tuple:
        return tuple(snapshot(value) for value in tree)
    if isinstance(tree, (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device, torch.Size)):
        return tree
    return copy.deepcopy(tree)


class CheckpointWriter:
    """Runs save jobs (``Callable[[], Path]``) one at a time, in a thread when ``async_`` is true."""

    def __init__(self, async_: bool = True) -> None:
        self.async_ = async_
        self._thread: threading.Thread | None = None
        self._outcome: Outcome = None
        self._closed = False

    def submit(self, job: Callable[[], Path]) -> Outcome:
        """Wait for the previous save, start ``job``, and return the previous save's outcome.

        Synchronous mode runs ``job`` now and returns its own outcome (Path or error) instead.
        """
        if self._closed:
            raise CheckpointSaveError("checkpoint writer is closed; create a new CheckpointWriter")
        previous = self.wait()
        if not self.async_:
            return _run(job)
        self._outcome = None
        self._thread = threading.Thread(target=self._work, args=(job,), name="fleetmarl-checkpoint", daemon=False)
        self._thread.start()
        return previous

    def wait(self) -> Outcome:
        """Block until the save in flight (if any) ends; return its outcome once (then None)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        outcome, self._outcome = self._outcome, None
        return outcome

    @property
    def busy(self) -> bool:
        """True while a save is being written."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> Outcome:
        """Wait for the last save (call before exit: a daemon-less thread would also hold exit)."""
        outcome = self.wait()
        self._closed = True
        return outcome

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _work(self, job: Callable[[], Path]) -> None:
        # Sleeping gives the GIL straight back to the training loop that just started this thread, so
        # submit() returns at once instead of after the writer's first switch interval (5 ms or more).
        time.sleep(START_DELAY_S)
        self._outcome = _run(job)


def _run(job: Callable[[], Path]) -> Outcome:
    """Run a job, turning any failure into a FleetmarlError value the trainer can print in one line."""
    try:
        return job()
    except FleetmarlError as exc:
        return exc
    except Exception as exc:  # a bug or an OS error in a background thread must still reach the user
        error = CheckpointSaveError(f"checkpoint save failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
