"""``fleetmarl sweep``: one Ray Tune trial per seed (and grid value), restarted from its checkpoints on failure."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import datetime
from typing import Any

from fleetmarl.cli.common import add_config_flags, config_from_args
from fleetmarl.config import parse_value
from fleetmarl.errors import UserError

DEFAULT_STORAGE = "sweeps"


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="train several seeds (and grid values) as Ray Tune trials; table with mean ± std",
        description="Each trial is an ordinary training run; its checkpoints are reported to Tune, which restarts a "
                    "trial whose worker dies from its latest checkpoint. Needs pip install -e \".[ray]\".")
    add_config_flags(sweep)
    sweep.add_argument("--seeds", default=None, metavar="S1,S2,...",
                       help="comma-separated seeds, one trial each (e.g. 42,123,2024,888,1337)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="also try each value of a config key (repeatable; trials = seeds x values)")
    sweep.add_argument("--num-cpus", type=int, default=None, metavar="N",
                       help="CPUs of the local Ray started when --address is not given (default: all)")
    sweep.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="N", help="CPUs each trial reserves (default 1)")
    sweep.add_argument("--address", default=None, metavar="ADDR",
                       help="join an existing Ray cluster (e.g. auto, or ray://head:10001)")
    sweep.add_argument("--storage", default=DEFAULT_STORAGE, metavar="PATH|URL",
                       help=f"where Tune keeps the sweep (default ./{DEFAULT_STORAGE}; s3://bucket/prefix on a cluster)")
    sweep.add_argument("--name", default=None, help="experiment name under --storage (default sweep_YYYYmmdd_HHMMSS)")
    sweep.add_argument("--max-failures", type=int, default=2, metavar="K",
                       help="restarts of a failed trial, each from its latest checkpoint (default 2)")
    sweep.add_argument("--keep-checkpoints", type=int, default=2, metavar="K",
                       help="reported checkpoints Tune keeps per trial (default 2)")
    sweep.add_argument("--resume", default=None, metavar="PATH",
                       help="continue an interrupted sweep: its experiment folder <storage>/<name>")
    sweep.add_argument("--json", action="store_true", help="print {trials, summary} as JSON instead of a table")
    sweep.set_defaults(handler=run_sweep_command)


def parse_seeds(text: str | None) -> list[int]:
    if not text:
        raise UserError("give the seeds to train, e.g. --seeds 42,123,2024 (or --resume PATH to continue a sweep)")
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, e.g. 42,123,2024; got {text!r}") from None


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``KEY=v1,v2`` flags into typed values (typed like ``--set``)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise UserError(f"cannot parse --grid {item!r}; write KEY=V1,V2, e.g. --grid LR_ACTOR=0.001,0.0003")
        if key in ("RANDOM_SEED", "CHECKPOINTS_DIR", "LOG_DIR"):
            raise UserError(f"--grid {key} is set per trial by the sweep; use --seeds for seeds")
        if key in grid:
            raise UserError(f"--grid {key} is given twice; list all its values in one flag")
        from fleetmarl.config import Config

        if key not in Config.__dataclass_fields__:
            raise UserError(f"unknown config key {key!r} in --grid; see `fleetmarl train --help-config`")
        grid[key] = [parse_value(key, value.strip()) for value in raw.split(",")]
    return grid


def run_sweep_command(args: argparse.Namespace) -> int:
    from fleetmarl import sweep

    sweep.require_ray()  # the one-line 'install the extra' error before anything else
    if args.max_failures < 0 or args.keep_checkpoints < 1 or args.cpus_per_trial <= 0:
        raise UserError("--max-failures must be >= 0, --keep-checkpoints >= 1 and --cpus-per-trial > 0")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise UserError(f"--num-cpus must be at least 1, got {args.num_cpus}")
    options = sweep.SweepOptions(storage=args.storage, name=args.name or f"sweep_{datetime.now():%Y%m%d_%H%M%S}",
                                 max_failures=args.max_failures, cpus_per_trial=args.cpus_per_trial,
                                 keep_checkpoints=args.keep_checkpoints)
    if args.resume:
        if args.seeds or args.grid:
            raise UserError("--resume continues a sweep as it was planned; drop --seeds/--grid")
        sweep.start_ray(args.address, args.num_cpus)
        print(f"fleetmarl: resuming sweep {args.resume}", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):  # Tune's progress output; stdout is for the table/JSON
            results = sweep.resume_sweep(args.resume, options)
        storage = where = args.resume
    else:
        where = sweep.experiment_path(options)
        plan = sweep.make_plan(config_from_args(args), parse_seeds(args.seeds), parse_grid(args.grid), where)
        sweep.start_ray(args.address, args.num_cpus)
        print(f"fleetmarl: sweep of {len(plan.combinations())} trials in {where} "
              f"(continue it with: fleetmarl sweep --resume {where})", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):
            results = sweep.run_sweep(plan, options)
        storage = options.storage
    rows = sweep.trial_rows(results, storage)
    if args.json:
        print(json.dumps(sweep.sweep_report(rows), indent=2))
    else:
        print(sweep.format_table(rows))
    unfinished = sum(not row.finished and row.error is None for row in rows)
    if unfinished:
        print(f"fleetmarl: {unfinished} trial(s) unfinished; continue with: fleetmarl sweep --resume {where}",
              file=sys.stderr)
    return 1 if unfinished or any(row.error for row in rows) else 0
