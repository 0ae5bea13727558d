"""Stopping on SIGINT/SIGTERM without losing the run.

Why a flag and not an exception: the first signal only asks the loop to finish the round it is in (a
checkpoint must fall between rounds for resume to be exact), save and exit 0; the loop and the
checkpoint schedule both read the flag. A second signal leaves at once, and leaves no partial checkpoint
because a checkpoint only exists once its folder is renamed into place.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


class StopRequest:
    """Whether a stop was asked for; :meth:`install` makes the signals ask."""

    def __init__(self, log: Callable[[str], None], busy: Callable[[], str | None] = lambda: None) -> None:
        self.log = log
        self.busy = busy
        """says why the round in progress will take long to finish (None: it will not)"""
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGINT and SIGTERM until :meth:`restore` (only from the main thread, where Python
        delivers signals; a trainer in another thread keeps the process's handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.log("fleetmarl: second signal, stopping now without saving")
            raise SystemExit(130)
        self.requested = True
        self.log(f"⏸ {signal.Signals(signum).name} received: finishing this round of episodes, saving a "
                 "checkpoint, then exiting (signal again to stop at once)")
        busy = self.busy()
        if busy:
            self.log(f"⏸ {busy}; a second signal stops now and keeps only the checkpoints already saved")
