"""The fault campaign users run (`python benchmarks/faults.py`), in a short version: a kill -9 aimed at
a save, an ENOSPC in the last save, a truncated and a bit-flipped replay chunk."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_short_fault_campaign(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    result = faults.campaign(kills=1, seed=3, tmpfs=False, damage_kinds=["chunk"], disk_cases=1, work=tmp_path,
                             episodes=8)
    assert [r["bit_exact"] for r in result["kills"]] == [True]
    assert all(r["valid_after_kill"] for r in result["kills"])
    assert [r["exit"] for r in result["full_disk"]] == [1] and all(r["ok"] for r in result["full_disk"])
    assert len(result["damaged_files"]) == 2 and all(r["ok"] for r in result["damaged_files"])
