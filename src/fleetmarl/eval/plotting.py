"""Reward curves of a training run, with its checkpoints marked (``fleetmarl plot rewards``).

A run leaves its history in two places: every checkpoint's ``training_state.pth`` (the reward and
metric logs up to that episode) and the TensorBoard event files (``reward/episode``,
``metrics/on_time_rate``, ``checkpoint/saved``). Either is enough, so the command accepts a checkpoint,
a folder of checkpoints or a TensorBoard run folder: users have whichever survived.

``fleetmarl plot curves`` reads the other log a checkpoint keeps, ``eval_log`` (the trainer's periodic
noise-free evaluation), from several runs at once: the mean over runs (seeds) with a band, and the
reference dispatchers evaluated on the very episodes each run's trainer evaluated on.

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
from fleetmarl.config import ENV_KEYS, Config
from fleetmarl.envs.policies import REFERENCE_POLICIES
from fleetmarl.errors import CheckpointError, ConfigError, UserError
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
    checkpoint = resolve_checkpoint(path)
    if checkpoint is not None:
        return history_from_checkpoint(checkpoint)
    if _event_files(path):
        return history_from_events(path)
    raise UserError(f"{path} is neither a checkpoint nor a TensorBoard run folder (no events.out.tfevents.* files)")


def resolve_checkpoint(path: Path) -> Path | None:
    """The checkpoint ``path`` names: itself, or the newest valid one of a folder of checkpoints; None if neither."""
    if path.is_dir() and looks_like_checkpoint(path):
        return path
    if path.is_dir() and checkpoint_folders(path):
        valid = [folder for folder, _ in checkpoint_folders(path) if not verify_checkpoint(folder, check_hashes=False)]
        if not valid:
            raise CheckpointError(f"{path} holds no valid checkpoint; run `fleetmarl ckpt verify {path}`")
        return valid[-1]
    return None


def read_training_state(folder: Path) -> dict:
    """Only ``training_state.pth`` (never the agents or the replay buffer: plotting needs neither), as plain data."""
    problems = verify_checkpoint(folder, check_hashes=False)
    if problems:
        raise CheckpointError(f"checkpoint {folder} is not valid: {problems[0]}; run `fleetmarl ckpt verify {folder}`")
    state = load_plain(folder / TRAINING_STATE_FILE)
    if not isinstance(state, dict):
        raise CheckpointError(f"{folder / TRAINING_STATE_FILE} is not a training state; was it written by fleetmarl train?")
    return state


def history_from_checkpoint(folder: Path) -> TrainingHistory:
    state = read_training_state(folder)
    if "episode_rewards_log" not in state:
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


# ---------------------------------------------------------------------- learning curves across runs
BANDS = {"minmax": "min–max", "std": "mean ± std"}  # --band value -> what the legend says


@dataclass
class EvalRun:
    """One run's periodic noise-free evaluation (``training_state.pth["eval_log"]``) and its saved config."""

    source: Path  # the checkpoint it was read from
    config: Config
    episodes: np.ndarray  # (E,) training episode of each evaluation, increasing
    metrics: dict[str, np.ndarray]  # metric name -> (E,) mean over that evaluation's EVAL_EPISODES episodes


@dataclass
class ReferenceLevel:
    """A reference dispatcher's mean of the metric on each run's evaluation episodes; the line is their mean."""

    name: str
    per_run: list[float]

    @property
    def level(self) -> float:
        return float(np.mean(self.per_run))


@dataclass
class LearningCurves:
    """One metric of several runs on the evaluation episodes they all share: ``values`` is (R, E)."""

    metric: str
    episodes: np.ndarray
    values: np.ndarray
    runs: list[EvalRun]
    references: dict[str, ReferenceLevel] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.values.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Sample std over runs (ddof=1); 0 for a single run."""
        if len(self.values) < 2:
            return np.zeros(self.values.shape[1])
        return self.values.std(axis=0, ddof=1)

    def band(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        if kind == "std":
            return self.mean - self.std, self.mean + self.std
        return self.values.min(axis=0), self.values.max(axis=0)

    @property
    def seeds(self) -> list[int]:
        return [run.config.RANDOM_SEED for run in self.runs]


def load_eval_run(path: str | Path) -> EvalRun:
    """The evaluation log of a checkpoint folder, or of the newest valid checkpoint in a folder of checkpoints."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a checkpoint folder or a folder of checkpoints")
    folder = resolve_checkpoint(path)
    if folder is None:
        raise UserError(f"{path} is not a checkpoint or a folder of checkpoints; `plot curves` reads the "
                        "evaluation log saved in a checkpoint (for a TensorBoard run use `fleetmarl plot rewards`)")
    state = read_training_state(folder)
    try:
        config = Config.from_dict(state.get("config") or {}, source=str(folder / TRAINING_STATE_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {folder} has a config this version cannot use: {exc}") from None
    log = state.get("eval_log") or []
    if not log:
        raise UserError(f"checkpoint {folder} has no evaluation log (eval_log is empty; EVAL_INTERVAL was "
                        f"{config.EVAL_INTERVAL}); train with --set EVAL_INTERVAL=200, or use `fleetmarl plot rewards`")
    by_episode = {int(entry["episode"]): entry for entry in log}  # a resumed run may repeat one: last wins
    episodes = np.asarray(sorted(by_episode), dtype=np.int64)
    names = set.intersection(*(set(entry) - {"episode"} for entry in by_episode.values()))
    metrics = {name: np.asarray([float(by_episode[e][name]) for e in episodes]) for name in names}
    return EvalRun(source=folder, config=config, episodes=episodes, metrics=metrics)


def learning_curves(runs: list[EvalRun], metric: str = ON_TIME_METRIC) -> LearningCurves:
    """The metric of every run on the evaluation episodes common to all (no interpolation: only real evaluations)."""
    if not runs:
        raise UserError("give at least one RUN (a checkpoint folder or a folder of checkpoints)")
    _check_distinct(runs)
    _check_same_environment(runs)
    for run in runs:
        if metric not in run.metrics:
            raise UserError(f"unknown metric {metric!r}: {run.source} logged {', '.join(sorted(run.metrics))}; "
                            "pass one of these with --metric")
    common = runs[0].episodes
    for run in runs[1:]:
        common = np.intersect1d(common, run.episodes)
    if len(common) == 0:
        raise UserError(f"the runs share no evaluation episode ({runs[0].source} at {_episode_span(runs[0])}, "
                        f"{runs[1].source} at {_episode_span(runs[1])}); plot runs trained with the same EVAL_INTERVAL")
    values = np.stack([run.metrics[metric][np.isin(run.episodes, common)] for run in runs])
    return LearningCurves(metric=metric, episodes=common, values=values, runs=list(runs))


def _check_distinct(runs: list[EvalRun]) -> None:
    seen: dict[Path, Path] = {}
    for run in runs:
        key = run.source.resolve()
        if key in seen:
            raise UserError(f"checkpoint {run.source} is given twice; give each run once, or its mean is weighted twice")
        seen[key] = run.source


def _check_same_environment(runs: list[EvalRun]) -> None:
    """Seeds may differ, the environment may not: a mean over two different tasks means nothing."""
    first = runs[0]
    for run in runs[1:]:
        for key in sorted(ENV_KEYS):
            a, b = getattr(first.config, key), getattr(run.config, key)
            if a != b:
                raise UserError(f"runs {first.source} and {run.source} were trained on different environments "
                                f"({key} {a!r} vs {b!r}); plot runs of one environment together")


def _episode_span(run: EvalRun) -> str:
    return f"episodes {run.episodes[0]}..{run.episodes[-1]}" if len(run.episodes) > 1 else f"episode {run.episodes[0]}"


def reference_names(text: str) -> list[str]:
    """``"greedy,random"`` -> names, checked (and the ortools extra found) before any run is read."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in REFERENCE_POLICIES:
            raise UserError(f"unknown reference policy {name!r} in --references; choose from "
                            f"{', '.join(REFERENCE_POLICIES)}, comma-separated (or '' for none)")
    if "ortools" in names:
        import importlib.util

        if importlib.util.find_spec("ortools") is None:
            raise UserError("reference 'ortools' needs the ortools extra: pip install 'fleetmarl[ortools]', "
                            "or leave it out of --references")
    return list(dict.fromkeys(names))


def reference_levels(runs: list[EvalRun], names: list[str], metric: str = ON_TIME_METRIC,
                     episodes: int | None = None) -> dict[str, ReferenceLevel]:
    """Each reference policy on exactly the episodes each run's trainer evaluated on (its config, its
    ``EVAL_EPISODES`` unless ``episodes``, seed ``default_eval_seed``); runs on the same seed share one result."""
    from fleetmarl.envs.policies import reference_policy
    from fleetmarl.eval.evaluation import default_eval_seed, run_episodes

    levels: dict[str, ReferenceLevel] = {}
    for name in names:
        cache: dict[tuple[int, int], float] = {}
        per_run = []
        for run in runs:
            count = episodes or run.config.EVAL_EPISODES
            seed = default_eval_seed(run.config)
            if (seed, count) not in cache:
                results = run_episodes(run.config, reference_policy(name, seed, run.config), count, seed)
                cache[(seed, count)] = float(np.mean(results[metric]))
            per_run.append(cache[(seed, count)])
        levels[name] = ReferenceLevel(name, per_run)
    return levels


REFERENCE_COLOURS = {"greedy": "tab:red", "greedy_shift": "tab:orange", "greedy_chain": "tab:brown", "random": "tab:grey",
                     "ortools": "tab:purple"}


def plot_learning_curves(curves: LearningCurves, output: str | Path, *, band: str = "minmax",
                         title: str | None = None) -> Path:
    """Mean over runs with a band, each run faint, and a dashed horizontal line per reference policy."""
    from fleetmarl.eval.evaluation import metric_label

    output = check_output_path(output)
    plt = pyplot()
    runs = len(curves.runs)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    x = curves.episodes
    for i, values in enumerate(curves.values):
        ax.plot(x, values, color="tab:blue", alpha=0.3, linewidth=0.8, label="each run" if i == 0 else None)
    if runs > 1:
        low, high = curves.band(band)
        ax.fill_between(x, low, high, color="tab:blue", alpha=0.2, linewidth=0, label=f"{BANDS[band]} over {runs} runs")
    ax.plot(x, curves.mean, color="tab:blue", linewidth=2.2, marker="o" if len(x) <= 30 else None, markersize=3,
            label=f"mean of {runs} runs" if runs > 1 else "the run")
    for name, reference in curves.references.items():
        ax.axhline(reference.level, color=REFERENCE_COLOURS.get(name, "black"), linestyle="--", linewidth=1.4,
                   label=f"{name}: {reference.level:.3g}")
    ax.set_xlabel("training episode")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{metric_label(curves.metric)} (noise-free evaluation)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: never over the curves
    ax.set_title(title or curves_title(curves), fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, output)


def curves_title(curves: LearningCurves) -> str:
    from fleetmarl.eval.evaluation import metric_label

    config = curves.runs[0].config
    counts = sorted({run.config.EVAL_EPISODES for run in curves.runs})
    per_eval = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    seeds = ", ".join(str(s) for s in curves.seeds[:8]) + (", ..." if len(curves.seeds) > 8 else "")
    runs = f"{len(curves.runs)} runs" if len(curves.runs) > 1 else "1 run"
    return (f"{metric_label(curves.metric)}, {runs} (seeds {seeds}), {per_eval} evaluation episodes each\n"
            f"'{config.ENVIRONMENT_TYPE}': {config.NUM_AGENTS} agents, {config.NUM_POINTS} points, "
            f"{config.MAX_NUM_STEPS} steps")


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
