"""Error types that carry the exit status the command line promises.

Users see these as one line starting ``fleetmarl: `` (design §5): a usage or input mistake exits 2, a
failure at run time exits 1. Library code raises them; only :mod:`fleetmarl.cli` turns them into exits.
"""

from __future__ import annotations


class FleetmarlError(Exception):
    """Base class: a failure at run time (exit status 1)."""

    exit_code = 1


class UserError(FleetmarlError):
    """The user gave something we cannot use (exit status 2): bad flag, bad file, bad value."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """An impossible configuration. Also a ``ValueError`` so library callers can catch the usual type."""


class CheckpointError(UserError):
    """A checkpoint that is missing, incomplete, corrupt, unsafe or incompatible."""


class FleetmarlWarning(UserWarning):
    """Something the user should know that loses nothing (e.g. a config key that no longer exists). The
    command line prints it as one line starting ``fleetmarl: warning: ``."""
