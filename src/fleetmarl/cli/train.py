"""``fleetmarl train`` (= ``python main.py``): train, or resume, from a config file and overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from fleetmarl.cli.common import DEFAULT_CONFIG_FILE, add_config_flags, config_from_args
from fleetmarl.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train agents (same as python main.py)")
    add_config_flags(train)
    train.add_argument("--resume", metavar="latest|PATH",
                       help="continue from the newest valid checkpoint in CHECKPOINTS_DIR, or from PATH")
    train.add_argument("--help-config", action="store_true", help="list every config key with its default and meaning")
    train.set_defaults(handler=run_train)

    init = subparsers.add_parser("init-config", help=f"write a {DEFAULT_CONFIG_FILE} with every key, its default and meaning")
    init.add_argument("path", nargs="?", default=DEFAULT_CONFIG_FILE, help=f"file to write (default ./{DEFAULT_CONFIG_FILE})")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=run_init_config)


def run_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(describe_config())
        return 0
    config = config_from_args(args)
    from fleetmarl.trainer import train

    train(config, resume=args.resume)
    return 0


def describe_config() -> str:
    """Every key, its default and meaning: the text ``init-config`` writes."""
    from fleetmarl.config_file import render_config_file

    return render_config_file()


def run_init_config(args: argparse.Namespace) -> int:
    from fleetmarl.config_file import render_config_file

    path = Path(args.path)
    if path.exists() and not args.force:
        raise UserError(f"{path} exists; pass --force to overwrite it, or give another path")
    if path.suffix != ".py":
        raise UserError(f"{path} must end in .py (a TOML config takes the same keys: KEY = value)")
    try:
        path.write_text(render_config_file(), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}: every key of fleetmarl.Config with its default; edit it, then run python main.py")
    return 0
