"""``fleetmarl eval | compare | render | plot``: judge and show a trained fleet without writing Python.

Each handler takes the parsed arguments and returns the exit status. Bad input (a missing or broken
checkpoint, a shape override, an unwritable output) raises :class:`UserError`/:class:`CheckpointError`,
which :func:`fleetmarl.cli.main` prints as one ``fleetmarl: ...`` line with exit status 2.

Heavy modules (torch models, the environment, matplotlib) are imported inside the handlers so that
``fleetmarl --help`` and ``fleetmarl ckpt ...`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetmarl.cli.common import add_config_flags, config_from_args
from fleetmarl.envs.policies import DEFAULT_REFERENCES, REFERENCE_POLICIES
from fleetmarl.errors import UserError

DEFAULT_EPISODES = 32
ENV_SUMMARY_KEYS = ("ENVIRONMENT_TYPE", "NUM_AGENTS", "NUM_POINTS", "MAX_NUM_STEPS", "STEP_SECONDS", "MAP_SIZE")
PETTINGZOO_SUMMARY_KEYS = ("ENVIRONMENT_TYPE", "ENV_KWARGS", "NUM_AGENTS", "MAX_NUM_STEPS")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add eval, compare, render and plot to the CLI."""
    _register_eval(subparsers)
    _register_compare(subparsers)
    _register_render(subparsers)
    _register_plot(subparsers)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_run_flags(parser: argparse.ArgumentParser, *, episodes: bool = True) -> None:
    if episodes:
        parser.add_argument("--episodes", type=_positive_int, default=DEFAULT_EPISODES, metavar="N",
                            help=f"episodes to run (default {DEFAULT_EPISODES})")
    parser.add_argument("--seed", type=int, default=None, metavar="S",
                        help="seed of the first episode (default RANDOM_SEED + 10000, the instances the trainer's "
                             "periodic evaluation uses)")
    add_config_flags(parser)


def _add_entry_flags(parser: argparse.ArgumentParser, verb: str) -> None:
    """What eval and render run: a checkpoint folder, or a reference policy with --policy."""
    parser.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT", help="a checkpoint folder")
    parser.add_argument("--policy", choices=REFERENCE_POLICIES, help=f"{verb} a reference policy instead")


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="run a checkpoint (or a reference policy) without noise on seeded episodes",
        description="Evaluate a trained checkpoint, or a reference policy with --policy, on the same seeded "
                    "episodes; print each domain metric as mean ± std. --set may change the environment keys; a "
                    "checkpoint trained with SHARE_PARAMETERS=True also runs another fleet size, e.g. "
                    "--set NUM_AGENTS=10 --set NUM_POINTS=60 --set INITIAL_POINTS=20.")
    _add_entry_flags(parser, "evaluate")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    _add_run_flags(parser)
    parser.set_defaults(handler=run_eval)


def _register_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="evaluate several checkpoints/policies on the same seeds; one table with paired differences",
        description="Each ENTRY is a checkpoint folder or a reference policy name (" + ", ".join(REFERENCE_POLICIES) + "). All run on "
                    "the same environment (the first checkpoint's, else --config/--set) and the same seeds; "
                    "differences are paired per episode against the first entry.")
    parser.add_argument("entries", nargs="+", metavar="CKPT_OR_POLICY")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--log-dir", metavar="DIR", default=None,
                        help="TensorBoard root for the results (default LOG_DIR); written to DIR/compare_<timestamp>")
    parser.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")
    _add_run_flags(parser)
    parser.set_defaults(handler=run_compare)


def _register_render(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="draw one episode: the map, the points and each vehicle's path (PNG, or GIF animation)",
        description="Run one seeded episode and draw it. -o ending in .gif writes an animation.")
    _add_entry_flags(parser, "render")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="episode.png or episode.gif")
    parser.add_argument("--fps", type=_positive_int, default=8, help="GIF frames per second (default 8)")
    parser.add_argument("--every", type=_positive_int, default=None, metavar="K",
                        help="GIF: draw every K-th step (default: about 60 frames)")
    _add_run_flags(parser, episodes=False)
    parser.set_defaults(handler=run_render)


def _register_plot(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="pictures of a training run")
    kinds = parser.add_subparsers(dest="plot_kind", metavar="KIND")
    kinds.required = True
    rewards = kinds.add_parser(
        "rewards", help="episode reward and on-time rate, smoothed, with checkpoints marked",
        description="SOURCE is a checkpoint folder, a folder of checkpoints (its newest) or a TensorBoard run folder.")
    rewards.add_argument("source", metavar="RUN_DIR_OR_CHECKPOINT")
    rewards.add_argument("-o", "--output", default="rewards.png", metavar="FILE", help="image file (default rewards.png)")
    rewards.add_argument("--window", type=_positive_int, default=None, metavar="N",
                         help="moving-average window in episodes (default about 2%% of the run)")
    rewards.set_defaults(handler=run_plot_rewards)
    curves = kinds.add_parser(
        "curves", help="noise-free evaluation curves of several runs (seeds): mean, band and reference dispatchers",
        description="Each RUN is a checkpoint folder or a folder of checkpoints (its newest valid one); its "
                    "training_state.pth holds the trainer's periodic evaluation (EVAL_INTERVAL, EVAL_EPISODES). "
                    "Draws the mean over runs on the evaluation episodes they share, a band, and each reference "
                    "policy evaluated on the same episodes as a horizontal line.")
    curves.add_argument("runs", nargs="+", metavar="RUN")
    curves.add_argument("-o", "--output", default="curves.png", metavar="FILE", help="image file (default curves.png)")
    curves.add_argument("--metric", default="on_time_rate", metavar="NAME",
                        help="a key of the evaluation log: on_time_rate (default), reward, service_rate_weighted, ...")
    curves.add_argument("--references", default=",".join(DEFAULT_REFERENCES), metavar="NAMES",
                        help=f"comma-separated reference policies drawn as lines (default {','.join(DEFAULT_REFERENCES)}; "
                             f"any of {', '.join(REFERENCE_POLICIES)}; '' for none)")
    curves.add_argument("--episodes", type=_positive_int, default=None, metavar="N",
                        help="episodes per reference evaluation (default each run's EVAL_EPISODES, the episodes "
                             "its curve was evaluated on)")
    curves.add_argument("--band", choices=("minmax", "std"), default="minmax",
                        help="band around the mean: min-max over runs (default) or mean ± sample std")
    curves.set_defaults(handler=run_plot_curves)


# ---------------------------------------------------------------------- resolving what to run
def _single_entry(args: argparse.Namespace, command: str):
    """The checkpoint or the --policy of eval/render, on the configuration the rules say."""
    from fleetmarl.checkpoint.remote import local_checkpoint
    from fleetmarl.eval.evaluation import checkpoint_entry, policy_entry

    if args.checkpoint and args.policy:
        raise UserError(f"give either a CHECKPOINT or --policy to {command}, not both")
    if args.policy:
        return policy_entry(args.policy, config_from_args(args))
    if not args.checkpoint:
        raise UserError(f"{command} needs a CHECKPOINT folder or --policy greedy|random")
    return checkpoint_entry(local_checkpoint(args.checkpoint), overrides=args.overrides, config_file=args.config)


def _compare_entries(args: argparse.Namespace) -> list:
    """Every entry on one environment: the first checkpoint's (with overrides), else --config/--set."""
    from fleetmarl.checkpoint.remote import local_checkpoint
    from fleetmarl.eval.evaluation import checkpoint_entry, policy_entry
    from fleetmarl.eval.policy import saved_config

    def is_policy(spec: str) -> bool:
        return spec in REFERENCE_POLICIES and not Path(spec).exists()

    specs = [spec if is_policy(spec) else local_checkpoint(spec) for spec in args.entries]
    first_ckpt = next((spec for spec in specs if not is_policy(spec)), None)
    entries: list = []
    shared = None
    if first_ckpt is not None:
        first = checkpoint_entry(first_ckpt, overrides=args.overrides, config_file=args.config)
        shared = first.config
    else:
        shared = config_from_args(args)
    for spec in specs:
        if is_policy(spec):
            entries.append(policy_entry(spec, shared))
        elif spec == first_ckpt and not any(e.kind == "checkpoint" for e in entries):
            entries.append(first)
        else:
            entries.append(checkpoint_entry(spec, config=_join_environment(saved_config(spec), shared, args.overrides)))
    _unique_names(entries)
    return entries


def _join_environment(own, shared, overrides=()):
    """A later checkpoint keeps its own network keys but runs on the shared environment (same episodes);
    a ``--set POINT_VIEW`` or ``VEHICLE_VIEW`` reaches every shared-parameter checkpoint, as it reached the first."""
    from fleetmarl.config import ENV_KEYS, Config
    from fleetmarl.eval.policy import VIEW_KEYS

    env_values = {k: v for k, v in shared.to_dict().items() if k in ENV_KEYS}
    asked = {item.partition("=")[0].strip() for item in overrides}
    for key in VIEW_KEYS:
        if own.SHARE_PARAMETERS and key in asked:
            env_values[key] = getattr(shared, key)
    return Config.from_dict({**own.to_dict(), **env_values, "DEVICE": shared.DEVICE})


def _unique_names(entries: list) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        count = seen.get(entry.name, 0)
        seen[entry.name] = count + 1
        if count:
            entry.name = f"{entry.name}#{count + 1}"


def _seed(args: argparse.Namespace, config) -> int:
    from fleetmarl.eval.evaluation import default_eval_seed

    return args.seed if args.seed is not None else default_eval_seed(config)


def environment_summary(config) -> dict[str, Any]:
    from fleetmarl.config import is_fleet_environment

    if is_fleet_environment(config):
        return {key: getattr(config, key) for key in ENV_SUMMARY_KEYS}
    return {key: getattr(config, key) for key in PETTINGZOO_SUMMARY_KEYS}


def _environment_words(env: dict[str, Any]) -> str:
    """'5 agents, 30 points, 180 steps' for the fleet; the agents and ENV_KWARGS for a PettingZoo module."""
    if "ENV_KWARGS" in env:
        return f"{env['NUM_AGENTS']} agents, ENV_KWARGS {json.dumps(env['ENV_KWARGS'])}"
    return f"{env['NUM_AGENTS']} agents, {env['NUM_POINTS']} points, {env['MAX_NUM_STEPS']} steps"


# ---------------------------------------------------------------------- eval
def run_eval(args: argparse.Namespace) -> int:
    from fleetmarl.eval.evaluation import evaluate_entry

    entry = _single_entry(args, "eval")
    seed = _seed(args, entry.config)
    result = evaluate_entry(entry, args.episodes, seed)
    report = {**entry.describe(), "episodes": args.episodes, "seed": seed,
              "environment": environment_summary(entry.config), "metrics": result.summary}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_eval(report))
    return 0


def format_eval(report: dict[str, Any]) -> str:
    from fleetmarl.eval.evaluation import metric_label, ordered_metrics

    env = report["environment"]
    what = f"{report['name']} (trained {report['episode']} episodes)" if report["kind"] == "checkpoint" \
        else f"reference policy '{report['name']}'"
    lines = [f"{what} on '{env['ENVIRONMENT_TYPE']}': {_environment_words(env)}; {report['episodes']} episodes, "
             f"seeds from {report['seed']}"]
    metrics = report["metrics"]
    width = max(len(metric_label(n)) for n in metrics)
    for name in ordered_metrics(metrics):
        lines.append(f"  {metric_label(name):<{width}}  {format_mean_std(name, metrics[name])}")
    return "\n".join(lines)


def format_mean_std(name: str, stats: dict[str, float]) -> str:
    digits = _digits(name, stats["mean"])
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _digits(name: str, value: float) -> int:
    """Rates to three decimals, counts and large totals to one: what a reader can compare at a glance."""
    if "rate" in name:
        return 3
    return 1 if abs(value) >= 10 else 2


# ---------------------------------------------------------------------- compare
def run_compare(args: argparse.Namespace) -> int:
    from fleetmarl.eval.evaluation import evaluate_entry, paired_differences

    entries = _compare_entries(args)
    config = entries[0].config
    seed = _seed(args, config)
    log_dir = None
    if not args.no_tensorboard:
        log_dir = _compare_log_dir(Path(args.log_dir or config.LOG_DIR))
    results = [evaluate_entry(entry, args.episodes, seed) for entry in entries]
    baseline = results[0]
    report = {
        "episodes": args.episodes, "seed": seed, "environment": environment_summary(config),
        "baseline": baseline.entry.name,
        "entries": [{**r.entry.describe(), "metrics": r.summary} for r in results],
        "differences": [{"name": r.entry.name, "against": baseline.entry.name,
                         "metrics": paired_differences(r, baseline)} for r in results[1:]],
        "log_dir": str(log_dir) if log_dir else None,
    }
    table = format_compare(report)
    if log_dir is not None:
        write_compare_tensorboard(log_dir, results, report, table)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table)
        if log_dir is not None:
            print(f"TensorBoard: tensorboard --logdir {log_dir}")
    return 0


def _compare_log_dir(root: Path) -> Path:
    """Create the run folder up front: an unwritable LOG_DIR should fail before minutes of evaluation."""
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    folder = root / f"compare_{stamp}"
    serial = 2
    while folder.exists():
        folder = root / f"compare_{stamp}_{serial}"
        serial += 1
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write TensorBoard results to {folder}: {exc.strerror or exc}; "
                        "pass --log-dir DIR or --no-tensorboard") from None
    return folder


def format_compare(report: dict[str, Any]) -> str:
    """Rows are metrics; each column an entry, with its paired difference against the first entry."""
    from fleetmarl.eval.evaluation import metric_label, ordered_metrics

    entries = report["entries"]
    diffs = {d["name"]: d["metrics"] for d in report["differences"]}
    names = ordered_metrics(entries[0]["metrics"])
    header = ["metric"] + [e["name"] for e in entries]
    rows = [header]
    for name in names:
        row = [metric_label(name)]
        for i, entry in enumerate(entries):
            stats = entry["metrics"].get(name)
            cell = format_mean_std(name, stats) if stats else "-"
            if i and name in diffs.get(entry["name"], {}):
                d = diffs[entry["name"]][name]
                digits = _digits(name, entry["metrics"][name]["mean"])
                cell += f"  (Δ {d['mean']:+.{digits}f} ± {d['ci95']:.{digits}f})"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    env = report["environment"]
    lines = [f"{report['episodes']} episodes on '{env['ENVIRONMENT_TYPE']}' ({_environment_words(env)}), "
             f"seeds from {report['seed']}; Δ = paired difference against "
             f"{report['baseline']} (mean ± 95% half-width)"]
    for j, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_compare_tensorboard(log_dir: Path, results: list, report: dict[str, Any], table: str) -> None:
    """One TensorBoard run per entry (same tags, so they overlay) plus the table as text."""
    from fleetmarl.logging import RunLogger

    for i, result in enumerate(results):
        logger = RunLogger(log_dir / f"{i}_{_safe(result.entry.name)}")
        for name, values in result.per_episode.items():
            for episode, value in enumerate(values):
                logger.scalars({f"compare/{name}": float(value)}, episode)
            logger.scalars({f"compare_mean/{name}": float(values.mean())}, 0)
        if i:
            diff = report["differences"][i - 1]["metrics"]
            logger.scalars({f"compare_diff/{name}": d["mean"] for name, d in diff.items()}, 0)
        logger.close()
    summary = RunLogger(log_dir)
    summary.text("compare/table", "```\n" + table + "\n```", 0)
    summary.text("compare/json", "```\n" + json.dumps(report, indent=2) + "\n```", 0)
    summary.close()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.#-]+", "_", name)


# ---------------------------------------------------------------------- render
def run_render(args: argparse.Namespace) -> int:
    from fleetmarl.eval.plotting import check_output_path
    from fleetmarl.eval.rendering import render_episode

    output = check_output_path(args.output, (".png", ".gif", ".svg", ".pdf"))
    entry = _single_entry(args, "render")
    from fleetmarl.config import is_fleet_environment

    if not is_fleet_environment(entry.config):
        raise UserError(f"render draws the sampling fleet only, not {entry.config.ENVIRONMENT_TYPE}; "
                        "use fleetmarl eval or the environment's own render_mode")
    seed = _seed(args, entry.config)
    written = render_episode(entry.config, entry.make_policy(seed), seed, output, title=_render_title(entry, seed),
                             fps=args.fps, every=args.every)
    print(f"wrote {written}", file=sys.stderr)
    return 0


def _render_title(entry, seed: int) -> str:
    who = f"{entry.name} (episode {entry.episode})" if entry.kind == "checkpoint" else f"{entry.name} policy"
    return f"{who}, {entry.config.ENVIRONMENT_TYPE}, seed {seed}"


# ---------------------------------------------------------------------- plot
def run_plot_rewards(args: argparse.Namespace) -> int:
    from fleetmarl.checkpoint.remote import local_checkpoint
    from fleetmarl.eval.plotting import check_output_path, load_history, plot_rewards

    output = check_output_path(args.output)
    written = plot_rewards(load_history(local_checkpoint(args.source)), output, window=args.window)
    print(f"wrote {written}", file=sys.stderr)
    return 0


def run_plot_curves(args: argparse.Namespace) -> int:
    from fleetmarl.checkpoint.remote import local_checkpoint
    from fleetmarl.eval.plotting import (
        check_output_path,
        learning_curves,
        load_eval_run,
        plot_learning_curves,
        reference_levels,
        reference_names,
    )

    output = check_output_path(args.output)
    names = reference_names(args.references)
    runs = [load_eval_run(local_checkpoint(path)) for path in args.runs]
    curves = learning_curves(runs, args.metric)
    curves.references = reference_levels(runs, names, args.metric, episodes=args.episodes)
    written = plot_learning_curves(curves, output, band=args.band)
    print(format_curves(written, curves))
    return 0


def format_curves(written: Path, curves) -> str:
    """One line: where, the metric's last common evaluation (mean ± sample std, range) and each reference level."""
    from fleetmarl.eval.evaluation import metric_label

    name = curves.metric
    last = curves.values[:, -1]
    digits = _digits(name, float(last.mean()))
    spread = f"{curves.std[-1]:.{digits}f}"
    runs = len(curves.runs)
    line = (f"wrote {written}: {metric_label(name)} at episode {curves.episodes[-1]}, mean of {runs} "
            f"run{'s' if runs > 1 else ''} {last.mean():.{digits}f} ± {spread} "
            f"(std; range {last.min():.{digits}f}..{last.max():.{digits}f})")
    if curves.references:
        line += "; " + ", ".join(f"{ref} {level.level:.{digits}f}" for ref, level in curves.references.items())
    return line
