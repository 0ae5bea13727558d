"""Seed and hyperparameter sweeps on Ray Tune: one trial per seed (and grid value), each an ordinary run.

Each trial is :func:`fleetmarl.trainer.train` on its own ``CHECKPOINTS_DIR``; every committed checkpoint
(the guide's folder, unchanged) is reported to Tune with its metrics, so Tune persists it and, when the
trial's worker dies, restarts the trial with that checkpoint: the trial resumes from it exactly as
``--resume PATH`` would (bit for bit on CPU). After training a trial evaluates its final checkpoint on
the noise-free seeded episodes ``fleetmarl eval`` uses, and those metrics make the sweep's table.

Ray is optional (``pip install -e ".[ray]"``); this module imports it only inside functions, and the
command line lives in :mod:`fleetmarl.cli.sweep`.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetmarl.checkpoint.remote import is_url, join_url
from fleetmarl.config import Config
from fleetmarl.errors import UserError

RAY_MISSING = 'Ray Tune is not installed; pip install -e ".[ray]"'
KILL_ONCE_ENV = "FLEETMARL_SWEEP_KILL_ONCE"
"""Test hook: a marker file path. A trial that finds it absent creates it and kills its own worker right
after its first checkpoint is reported, so a test can watch Tune restart it and the trial resume."""
FORWARDED_PREFIXES = ("AWS_", "FLEETMARL_")
"""Environment variables passed to every trial's worker (credentials, endpoint, cache folder, test hooks)."""
TABLE_METRICS = ("on_time_rate", "service_rate_weighted", "missed_points", "reward")
"""Final evaluation metrics shown in the text table (``--json`` has all of them)."""


def require_ray() -> Any:
    """``ray.tune``, or a one-line error naming the extra to install."""
    try:
        from ray import tune
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return tune


# ---------------------------------------------------------------------- what to run
@dataclass(frozen=True)
class SweepPlan:
    """The trials' shared configuration plus what varies: seeds and grid values (already type-checked)."""

    base: dict[str, Any]
    seeds: tuple[int, ...]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    checkpoints_root: str = ""
    """where each trial's own CHECKPOINTS_DIR goes (a subfolder per trial): the base CHECKPOINTS_DIR when it
    is a URL, else the sweep's experiment folder, so the guide's folders outlive Ray's temporary files"""

    def combinations(self) -> list[dict[str, Any]]:
        """Every trial's overrides, ``RANDOM_SEED`` included."""
        keys = list(self.grid)
        return [{"RANDOM_SEED": seed, **dict(zip(keys, values, strict=True))}
                for seed in self.seeds for values in itertools.product(*(self.grid[k] for k in keys))]

    def param_space(self) -> dict[str, Any]:
        """Tune's search space: a grid over seeds and each grid key; ``base`` travels unchanged."""
        tune = require_ray()
        return {"base": self.base, "checkpoints_root": self.checkpoints_root, "seed": tune.grid_search(list(self.seeds)),
                "grid": {key: tune.grid_search(list(values)) for key, values in self.grid.items()}}


def make_plan(base: Config, seeds: Sequence[int], grid: Mapping[str, Sequence[Any]],
              experiment: str = "") -> SweepPlan:
    """Check every trial's configuration now (one-line errors before Ray starts), then freeze the plan.
    ``experiment``: the sweep's folder (:func:`experiment_path`), home of the trials' checkpoints."""
    if not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 42,123,2024")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds lists a seed twice ({','.join(map(str, seeds))}); give each seed once")
    root = base.CHECKPOINTS_DIR if is_url(base.CHECKPOINTS_DIR) else experiment
    plan = SweepPlan(base.to_dict(), tuple(int(s) for s in seeds), {k: tuple(v) for k, v in grid.items()}, root)
    for overrides in plan.combinations():
        Config.from_dict({**plan.base, **overrides})
    return plan


def trial_config(params: Mapping[str, Any], trial_dir: Path, trial_name: str) -> Config:
    """One trial's Config: the base, its seed and grid values, and folders of its own.

    ``CHECKPOINTS_DIR`` is ``<checkpoints_root>/<trial name>/checkpoints`` (two trials never share a
    folder), a URL when the root is one; without a root (a plan made outside the CLI) the trial's
    working folder is used. TensorBoard goes next to the checkpoints, or in the trial folder for a URL.
    """
    base = dict(params["base"])
    root = params.get("checkpoints_root") or ""
    if is_url(root):
        checkpoints, logs = join_url(root, trial_name, "checkpoints"), trial_dir / "runs"
    else:
        folder = Path(root) / trial_name if root else trial_dir
        checkpoints, logs = str(folder / "checkpoints"), folder / "runs"
    return Config.from_dict({**base, **params.get("grid", {}), "RANDOM_SEED": int(params["seed"]),
                             "CHECKPOINTS_DIR": checkpoints, "LOG_DIR": str(logs), "PROGRESS_BAR": False})


# ---------------------------------------------------------------------- the trainable
def run_trial(params: dict[str, Any]) -> None:
    """Tune function trainable: train (resuming from Tune's latest checkpoint after a restart), reporting
    each committed checkpoint, then evaluate the final checkpoint and report its metrics."""
    tune = require_ray()
    from fleetmarl.trainer import train

    context = tune.get_context()
    trial_dir = Path(context.get_trial_dir())
    config = trial_config(params, trial_dir, trial_dir.name)  # Tune's folder name for the trial
    kill_marker = os.environ.get(KILL_ONCE_ENV)

    def report(path: Path, metrics: dict[str, float]) -> None:
        tune.report({**metrics, "seed": config.RANDOM_SEED, "local_checkpoint": str(path)},
                    checkpoint=tune.Checkpoint.from_directory(str(path)))
        if kill_marker and not Path(kill_marker).exists():
            Path(kill_marker).write_text(f"{config.RANDOM_SEED} killed after {path.name}\n", encoding="utf-8")
            os._exit(137)  # what an out-of-memory kill or a lost node looks like to Tune

    restored = tune.get_checkpoint()
    if restored is None:
        result = train(config, on_checkpoint=report)
    else:
        with restored.as_directory() as folder:
            result = train(config, resume=folder, on_checkpoint=report)
    final = final_metrics(result.last_checkpoint, config)
    tune.report({**{f"final_{k}": v for k, v in final.items()}, "episode": float(result.state.episode),
                 "seed": config.RANDOM_SEED, "done": True})


def final_metrics(checkpoint: Path | None, config: Config) -> dict[str, float]:
    """Mean of each metric over ``EVAL_EPISODES`` noise-free episodes of the final checkpoint, on the
    instances ``fleetmarl eval`` uses by default (so the table can be reproduced from the checkpoint)."""
    if checkpoint is None:
        return {}
    from fleetmarl.eval.evaluation import checkpoint_entry, default_eval_seed, evaluate_entry

    entry = checkpoint_entry(checkpoint)
    result = evaluate_entry(entry, config.EVAL_EPISODES, default_eval_seed(entry.config))
    return {name: stats["mean"] for name, stats in result.summary.items()}


# ---------------------------------------------------------------------- running and restoring
@dataclass(frozen=True)
class SweepOptions:
    """Where and how Tune runs the plan."""

    storage: str
    """local folder or fsspec URL where Tune keeps the experiment (trial results and reported checkpoints)"""
    name: str
    """experiment name: the folder under ``storage`` that ``--resume`` points at"""
    max_failures: int = 2
    """restarts of a trial whose worker dies, each from its latest reported checkpoint"""
    cpus_per_trial: float = 1.0
    keep_checkpoints: int = 2
    """reported checkpoints Tune keeps per trial (the trial's own CHECKPOINTS_DIR follows the config's rules)"""


def start_ray(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address``, or start a local Ray with ``num_cpus`` CPUs."""
    require_ray()
    import ray

    if ray.is_initialized():
        return
    # a checkpoint every few seconds is normal for short trials; Tune's 'snapshot too often' warning is noise
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    runtime_env = {"env_vars": forwarded_environment()}
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)


def forwarded_environment() -> dict[str, str]:
    """The driver's storage credentials and fleetmarl settings, which trials on other nodes need too."""
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}


def run_sweep(plan: SweepPlan, options: SweepOptions) -> Any:
    """Run every trial (Ray must be started); return Tune's ResultGrid."""
    tune = require_ray()
    tuner = tune.Tuner(_trainable(options), param_space=plan.param_space(),
                       run_config=_run_config(options))
    return tuner.fit()


def resume_sweep(path: str, options: SweepOptions) -> Any:
    """Continue an interrupted sweep from its experiment folder (finished trials are kept, errored and
    unfinished ones resume from their latest checkpoints)."""
    tune = require_ray()
    storage_path, filesystem = _storage(path)
    if not tune.Tuner.can_restore(storage_path, storage_filesystem=filesystem):
        raise UserError(f"{path} is not a sweep's experiment folder (no Tune state in it); pass the folder "
                        "`fleetmarl sweep` printed at its start, <storage>/<name>")
    tuner = tune.Tuner.restore(storage_path, _trainable(options), resume_errored=True,
                               storage_filesystem=filesystem)
    return tuner.fit()


def experiment_path(options: SweepOptions) -> str:
    """Where the sweep's state lives: the PATH for ``--resume``."""
    return join_url(options.storage, options.name) if is_url(options.storage) else str(Path(options.storage) / options.name)


def _trainable(options: SweepOptions) -> Any:
    tune = require_ray()
    return tune.with_resources(run_trial, {"cpu": options.cpus_per_trial})


def _run_config(options: SweepOptions) -> Any:
    tune = require_ray()
    storage_path, filesystem = _storage(options.storage)
    return tune.RunConfig(
        name=options.name, storage_path=storage_path, storage_filesystem=filesystem, verbose=0,
        failure_config=tune.FailureConfig(max_failures=options.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=options.keep_checkpoints),
    )


def _storage(location: str) -> tuple[str, Any]:
    """Tune's (storage_path, storage_filesystem): a URL goes through the same fsspec file system (and
    AWS variables) as checkpoints; a local folder is made absolute, as Tune requires."""
    if not is_url(location):
        return str(Path(location).resolve()), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    from fleetmarl.checkpoint.remote import filesystem

    fs, path = filesystem(location)
    return path, PyFileSystem(FSSpecHandler(fs))


# ---------------------------------------------------------------------- the summary
@dataclass
class TrialRow:
    """One trial in the final table."""

    seed: int
    grid: dict[str, Any]
    checkpoint: str | None
    metrics: dict[str, float]
    error: str | None = None
    finished: bool = True
    """False for a trial the sweep stopped before it ended (Ctrl-C): ``--resume`` continues it"""


def trial_rows(results: Any, storage: str) -> list[TrialRow]:
    """Tune's ResultGrid as rows, ordered by grid values then seed."""
    scheme = storage.split("://", 1)[0] + "://" if is_url(storage) else ""
    rows = []
    for result in results:
        params = result.config or {}
        metrics = {k[len("final_"):]: float(v) for k, v in (result.metrics or {}).items() if k.startswith("final_")}
        checkpoint = scheme + result.checkpoint.path if result.checkpoint is not None else None
        error = None if result.error is None else f"{type(result.error).__name__}: {str(result.error).splitlines()[0][:200]}"
        finished = bool((result.metrics or {}).get("done"))
        rows.append(TrialRow(int(params.get("seed", -1)), dict(params.get("grid", {})), checkpoint, metrics, error,
                             finished))
    rows.sort(key=lambda r: (sorted((k, str(v)) for k, v in r.grid.items()), r.seed))
    return rows


def summarize_rows(rows: Sequence[TrialRow]) -> dict[str, Any]:
    """Mean and sample std across seeds of each final metric, per grid point (the key is its values)."""
    groups: dict[str, list[TrialRow]] = {}
    for row in rows:
        if row.error is None and row.finished and row.metrics:
            groups.setdefault(_grid_label(row.grid), []).append(row)
    summary = {}
    for label, members in groups.items():
        names = [n for n in members[0].metrics if all(n in m.metrics for m in members)]
        summary[label] = {"seeds": [m.seed for m in members],
                          **{n: mean_std([m.metrics[n] for m in members]) for n in names}}
    return summary


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def sweep_report(rows: Sequence[TrialRow]) -> dict[str, Any]:
    """What ``--json`` prints: ``{"trials": [{seed, checkpoint, metrics, ...}], "summary": {...}}``."""
    trials = [{"seed": r.seed, "checkpoint": r.checkpoint, "metrics": r.metrics,
               **({"grid": r.grid} if r.grid else {}), **({"error": r.error} if r.error else {}),
               **({} if r.finished else {"finished": False})} for r in rows]
    return {"trials": trials, "summary": summarize_rows(rows)}


def format_table(rows: Sequence[TrialRow]) -> str:
    """The per-trial table, then mean ± std across seeds for each grid point."""
    names = [n for n in TABLE_METRICS if any(n in r.metrics for r in rows)] or list(TABLE_METRICS[:1])
    grid_keys = sorted({k for r in rows for k in r.grid})
    header = ["SEED", *grid_keys, *names, "CHECKPOINT"]
    lines = [header]
    for row in rows:
        status = "FAILED" if row.error is not None else None if row.finished else "UNFINISHED"
        values = [_fmt(row.metrics.get(n)) for n in names] if status is None else [status] + [""] * max(0, len(names) - 1)
        lines.append([str(row.seed), *[str(row.grid.get(k, "")) for k in grid_keys], *values,
                      row.checkpoint or (row.error or "-")])
    for label, stats in summarize_rows(rows).items():
        cells = [f"{_fmt(stats[n]['mean'])} ± {_fmt(stats[n]['std'])}" if n in stats else "-" for n in names]
        lines.append([f"mean±std ({len(stats['seeds'])})", *[_grid_value(label, k) for k in grid_keys], *cells, ""])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _grid_label(grid: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={grid[k]}" for k in sorted(grid)) or "all"


def _grid_value(label: str, key: str) -> str:
    for part in label.split(","):
        name, _, value = part.partition("=")
        if name == key:
            return value
    return ""
