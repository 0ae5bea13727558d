"""fleetmarl: train a MADDPG vehicle fleet, evaluate and compare it, and manage its checkpoints.

``python main.py [flags]`` is ``fleetmarl train [flags]``. Every user mistake ends as one line
``fleetmarl: ...`` on stderr and exit status 2; a failure at run time exits 1; no tracebacks for
either (set FLEETMARL_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from fleetmarl.cli.common import _Parser
from fleetmarl.errors import FleetmarlError, FleetmarlWarning


def build_parser() -> argparse.ArgumentParser:
    """One parser; each command group registers itself from its own module."""
    from fleetmarl.cli import ckpt, evaluate, sweep, train

    parser = _Parser(prog="fleetmarl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fleetmarl {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (train, evaluate, ckpt, sweep):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", FleetmarlWarning)  # once per message: each source names its own keys
            warnings.showwarning = _show_warning
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


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """Our own warnings as one line like our errors; anyone else's in Python's usual form."""
    if issubclass(category, FleetmarlWarning):
        print(f"fleetmarl: warning: {_strip_prefix(str(message))}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _strip_prefix(message: str) -> str:
    message = message.splitlines()[0] if message else message
    return message[len("fleetmarl: "):] if message.startswith("fleetmarl: ") else message


def _version() -> str:
    from fleetmarl import __version__

    return __version__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
