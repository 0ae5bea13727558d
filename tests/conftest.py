"""Shared fixtures: tiny configurations that train in a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmarl.config import SMOKE_SETTINGS, Config

TINY = SMOKE_SETTINGS


def tiny_overrides(**changes) -> list[str]:
    """The TINY config as --set flags, for subprocess tests of the command line."""
    values = {**TINY, **changes}
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture
def tiny_config(tmp_path: Path) -> Config:
    return Config(**TINY, CHECKPOINTS_DIR=str(tmp_path / "checkpoints"), LOG_DIR=str(tmp_path / "runs"))
