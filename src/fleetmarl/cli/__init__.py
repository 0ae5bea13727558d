"""Command line: ``fleetmarl train|eval|compare|render|plot|ckpt`` (design §5).

``python main.py [flags]`` is ``fleetmarl train [flags]``. Every user mistake ends as one line
``fleetmarl: ...`` on stderr and exit status 2; a failure at run time exits 1; no tracebacks for
either (set FLEETMARL_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fleetmarl.config import Config, field_docs, load_config
from fleetmarl.errors import FleetmarlError, UserError

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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fleetmarl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fleetmarl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    train = sub.add_parser("train", help="train agents (same as python main.py)")
    add_config_flags(train)
    train.add_argument("--resume", metavar="latest|PATH",
                       help="continue from the newest valid checkpoint in CHECKPOINTS_DIR, or from PATH")
    train.add_argument("--help-config", action="store_true", help="list every config key with its default and meaning")
    train.set_defaults(handler=run_train)

    from fleetmarl.cli import ckpt as ckpt_commands

    ckpt_commands.register(sub)
    for module in _optional_command_modules():
        module.register(sub)
    return parser


def _optional_command_modules() -> list:
    """Evaluation and plotting commands live beside the code they drive."""
    import importlib

    modules = []
    for name in ("fleetmarl.cli.evaluate",):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return modules


def run_train(args: argparse.Namespace) -> int:
    if args.help_config:
        print(describe_config())
        return 0
    config = config_from_args(args)
    from fleetmarl.trainer import train

    train(config, resume=args.resume)
    return 0


def describe_config() -> str:
    from dataclasses import fields

    defaults = Config()
    docs = field_docs()
    lines = [f"{f.name} = {getattr(defaults, f.name)!r}\n    {docs.get(f.name, '')}" for f in fields(Config)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except FleetmarlError as exc:
        if os.environ.get("FLEETMARL_DEBUG"):
            raise
        print(f"fleetmarl: {_strip_prefix(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fleetmarl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fleetmarl ckpt list | head` closed the pipe: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _strip_prefix(message: str) -> str:
    message = message.splitlines()[0] if message else message
    return message[len("fleetmarl: "):] if message.startswith("fleetmarl: ") else message


def _version() -> str:
    from fleetmarl import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
