"""What every command shares: the one-line-error parser, and ``--config``/``--set`` into a Config."""

from __future__ import annotations

import argparse
from pathlib import Path

from fleetmarl.config import Config, load_config
from fleetmarl.errors import UserError

DEFAULT_CONFIG_FILE = "config.py"


class _Parser(argparse.ArgumentParser):
    """argparse prints a usage block and exits 2; we want the one-line error contract instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see '{self.prog} --help')")


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set``, shared by train, eval, compare and render."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"config file: .py of UPPERCASE constants or .toml (default: ./{DEFAULT_CONFIG_FILE} if present)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set NUM_EPISODES=400")


def config_from_args(args: argparse.Namespace) -> Config:
    """The file (explicit, or ./config.py when present), then the ``--set`` overrides."""
    path = args.config
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    return load_config(path, args.overrides)
