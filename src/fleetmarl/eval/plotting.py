"""Reward curves of a training run, with its checkpoints marked (``fleetmarl plot rewards``).

A run leaves its history in two places: every checkpoint's ``training_state.pth`` (the reward and
metric logs up to that episode) and the TensorBoard event files (``reward/episode``,
``metrics/on_time_rate``, ``checkpoint/saved``). Either is enough, so the command accepts a checkpoint,
a folder of checkpoints or a TensorBoard run folder: users have whichever survived.

Matplotlib runs headless (Agg): training machines have no display.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetmarl.checkpoint import (
    checkpoint_folders,
    load_plain,
    parse_checkpoint_name,
    read_manifest,
    verify_checkpoint,
)
from fleetmarl.checkpoint.layout import TRAINING_STATE_FILE, looks_like_checkpoint
from fleetmarl.errors import CheckpointError, UserError
from fleetmarl.logging import TAG_CHECKPOINT, TAG_EPISODE_REWARD

TAG_ON_TIME = "metrics/on_time_rate"
ON_TIME_METRIC = "on_time_rate"
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


@dataclass
class TrainingHistory:
    """Per-episode curves of one run; ``episodes[i]`` is the 1-based episode of ``rewards[i]``."""

    episodes: np.ndarray
    rewards: np.ndarray
    on_time: np.ndarray | None
    checkpoint_episodes: list[int] = field(default_factory=list)
    source: str = ""


# ---------------------------------------------------------------------- reading a run
def load_history(path: str | Path) -> TrainingHistory:
    """History from a checkpoint folder, a folder of checkpoints (its newest valid one) or a TensorBoard run."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a checkpoint folder, a checkpoints folder or a TensorBoard run folder")
    if path.is_dir() and looks_like_checkpoint(path):
        return history_from_checkpoint(path)
    if path.is_dir() and checkpoint_folders(path):
        valid = [folder for folder, _ in checkpoint_folders(path) if not verify_checkpoint(folder, check_hashes=False)]
        if not valid:
            raise CheckpointError(f"{path} holds no valid checkpoint; run `fleetmarl ckpt verify {path}`")
        return history_from_checkpoint(valid[-1])
    if _event_files(path):
        return history_from_events(path)
    raise UserError(f"{path} is neither a checkpoint nor a TensorBoard run folder (no events.out.tfevents.* files)")


def history_from_checkpoint(folder: Path) -> TrainingHistory:
    """Read only ``training_state.pth`` (never the agents or the replay buffer: plotting needs neither)."""
    problems = verify_checkpoint(folder, check_hashes=False)
    if problems:
        raise CheckpointError(f"checkpoint {folder} is not valid: {problems[0]}; run `fleetmarl ckpt verify {folder}`")
    state = load_plain(folder / TRAINING_STATE_FILE)
    if not isinstance(state, dict) or "episode_rewards_log" not in state:
        raise CheckpointError(f"{folder / TRAINING_STATE_FILE} has no episode_rewards_log to plot")
    rewards = np.asarray([float(r) for r in state["episode_rewards_log"]], dtype=np.float64)
    on_time_log = (state.get("metrics_log") or {}).get(ON_TIME_METRIC)
    on_time = np.asarray(on_time_log, dtype=np.float64) if on_time_log else None
    return TrainingHistory(
        episodes=np.arange(1, len(rewards) + 1),
        rewards=rewards,
        on_time=on_time if on_time is not None and len(on_time) == len(rewards) else None,
        checkpoint_episodes=_sibling_checkpoints(folder, int(state.get("episode", len(rewards)))),
        source=str(folder),
    )


def _sibling_checkpoints(folder: Path, episode: int) -> list[int]:
    """Episodes of the checkpoints of the same run line up to this one: the saves this history went through."""
    try:
        run_id = read_manifest(folder).get("run_id")
    except CheckpointError:
        run_id = None
    marks = {episode}
    for other, name in checkpoint_folders(folder.parent):
        if name.episode > episode:
            continue
        try:
            if run_id is None or read_manifest(other).get("run_id") == run_id:
                marks.add(name.episode)
        except CheckpointError:
            continue  # a damaged neighbour is not a save point worth marking
    return sorted(marks)


def _event_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(folder.glob("events.out.tfevents.*"))


def history_from_events(folder: Path) -> TrainingHistory:
    """Read the run's scalars back with TensorBoard's own reader (the same view the user has in TensorBoard)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags().get("scalars", []))
    if TAG_EPISODE_REWARD not in tags:
        raise UserError(f"TensorBoard run {folder} has no '{TAG_EPISODE_REWARD}' scalars; was it written by `fleetmarl train`?")
    reward_steps, rewards = _scalar_series(accumulator, TAG_EPISODE_REWARD)
    on_time = None
    if TAG_ON_TIME in tags:
        steps, values = _scalar_series(accumulator, TAG_ON_TIME)
        if np.array_equal(steps, reward_steps):
            on_time = values
    marks = sorted(int(s) for s in _scalar_series(accumulator, TAG_CHECKPOINT)[0]) if TAG_CHECKPOINT in tags else []
    return TrainingHistory(episodes=reward_steps, rewards=rewards, on_time=on_time,
                           checkpoint_episodes=marks, source=str(folder))


def _scalar_series(accumulator, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values, last write winning per step (a resumed run may rewrite a few episodes)."""
    by_step = {event.step: event.value for event in accumulator.Scalars(tag)}
    steps = np.asarray(sorted(by_step), dtype=np.int64)
    return steps, np.asarray([by_step[s] for s in steps], dtype=np.float64)


# ---------------------------------------------------------------------- drawing
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so the curve starts at episode 1."""
    if window <= 1 or len(values) == 0:
        return values.astype(np.float64)
    sums = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (sums[idx] - sums[lo]) / (idx - lo)


def default_window(n: int) -> int:
    """About 2% of the run, between 5 and 100 episodes: a visible trend without hiding late changes."""
    if n < 10:
        return 1
    return int(min(100, max(5, n // 50)))


def plot_rewards(history: TrainingHistory, output: str | Path, *, window: int | None = None,
                 title: str | None = None) -> Path:
    """Episode reward (and on-time rate when logged), raw and smoothed, with a dashed line per checkpoint."""
    output = check_output_path(output)
    if len(history.rewards) == 0:
        raise UserError(f"{history.source} has no episodes logged yet; nothing to plot")
    plt = pyplot()
    window = window or default_window(len(history.rewards))
    panels = [("episode reward (sum over agents)", history.rewards, "tab:blue")]
    if history.on_time is not None:
        panels.append(("on-time delivery rate", history.on_time, "tab:green"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, values, colour) in zip(axes[:, 0], panels, strict=True):
        ax.plot(history.episodes, values, color=colour, alpha=0.25 if window > 1 else 1.0, linewidth=0.8,
                label="per episode")
        if window > 1:
            ax.plot(history.episodes, smooth(values, window), color=colour, linewidth=2.0,
                    label=f"moving average ({window} episodes)")
        for i, episode in enumerate(history.checkpoint_episodes):
            ax.axvline(episode, color="grey", linestyle="--", linewidth=0.8, alpha=0.7,
                       label="checkpoint" if i == 0 else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("episode")
    fig.suptitle(title or f"training curve: {_short(history.source)}", fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, output)


# ---------------------------------------------------------------------- shared with rendering
def pyplot():
    """matplotlib.pyplot on the Agg backend, chosen before pyplot is first imported."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_output_path(output: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path:
    """Fail before any work when the picture could not be written (missing folder, no permission, bad type)."""
    output = Path(output)
    if output.suffix.lower() not in suffixes:
        raise UserError(f"cannot write {output}: the file name must end in {', '.join(suffixes)}")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: folder {parent} does not exist; create it first")
    if output.is_dir():
        raise UserError(f"cannot write {output}: it is a folder; give a file name")
    if not os.access(parent, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise UserError(f"cannot write {output}: permission denied")
    return output


def save_figure(fig, output: Path, **kwargs) -> Path:
    """Save and close; an OS failure at write time becomes a one-line user error."""
    plt = pyplot()
    try:
        fig.savefig(output, dpi=kwargs.pop("dpi", 110), **kwargs)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return output


def _short(source: str) -> str:
    path = Path(source)
    parsed = parse_checkpoint_name(path.name)
    return f"{path.parent.name}/{path.name}" if parsed else path.name
