"""TensorBoard and console output for a training run (design §6).

Why a thin wrapper: the trainer should say *what* happened (an episode ended, a checkpoint was
saved) and not care whether TensorBoard is on. Losses arrive as tensors and are turned into numbers
here, once per round, so the hot loop never waits on the device.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Tag names other tools (tests, `fleetmarl plot`) read back.
TAG_EPISODE_REWARD = "reward/episode"
TAG_CHECKPOINT = "checkpoint/saved"
TAG_CHECKPOINT_TEXT = "checkpoint/path"
TAG_CHECKPOINT_STALL = "checkpoint/stall_ms"
TAG_CHECKPOINT_BYTES = "checkpoint/bytes_written"


class RunLogger:
    """Writes scalars to ``LOG_DIR/RUN_NAME``; a no-op when TensorBoard is disabled."""

    def __init__(self, log_dir: Path | None, purge_step: int | None = None) -> None:
        self.log_dir = log_dir
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run wrote after the checkpoint we resume from,
            # so the curves do not show the lost episodes twice.
            self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        if self._writer is None:
            return
        for tag, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().item()
            self._writer.add_scalar(tag, float(value), step)

    def text(self, tag: str, text: str, step: int) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def checkpoint_saved(self, path: Path, episode: int, *, stall_s: float | None = None,
                         stats: Mapping[str, Any] | None = None) -> None:
        """A marker at the checkpoint's episode, so curves and save points line up in TensorBoard, with
        what the save cost: the training loop's stall and the bytes written (linked bytes apart)."""
        values: dict[str, Any] = {TAG_CHECKPOINT: 1.0}
        if stall_s is not None:
            values[TAG_CHECKPOINT_STALL] = 1000.0 * stall_s
        for key, tag in (("bytes_written", TAG_CHECKPOINT_BYTES), ("bytes_linked", "checkpoint/bytes_linked"),
                         ("write_seconds", "checkpoint/write_s")):
            if stats and key in stats:
                values[tag] = stats[key]
        self.scalars(values, episode)
        self.text(TAG_CHECKPOINT_TEXT, str(path), episode)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
