"""The fault campaign users run (`python benchmarks/faults.py`), in a short version: a kill -9 aimed at
a save, an ENOSPC in the last save, a truncated and a bit-flipped replay chunk."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_faults():
    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    return faults


@pytest.mark.slow
def test_short_fault_campaign(tmp_path: Path) -> None:
    faults = load_faults()
    result = faults.campaign(kills=1, seed=3, tmpfs=False, damage_kinds=["chunk"], disk_cases=1, work=tmp_path,
                             episodes=8)
    assert [r["bit_exact"] for r in result["kills"]] == [True]
    assert all(r["valid_after_kill"] for r in result["kills"])
    assert [r["exit"] for r in result["full_disk"]] == [1] and all(r["ok"] for r in result["full_disk"])
    assert len(result["damaged_files"]) == 2 and all(r["ok"] for r in result["damaged_files"])


LARGE_SHARED = {"SHARE_PARAMETERS": True, "POINT_VIEW": 4, "VEHICLE_VIEW": 4, "NUM_AGENTS": 12, "NUM_POINTS": 24, "INITIAL_POINTS": 12}


@pytest.mark.slow
def test_a_large_shared_fleet_survives_kill_9_bit_for_bit(tmp_path: Path) -> None:
    """The large-fleet learner (one network for 12 vehicles, each seeing 4 points and 4 others) keeps its state in other
    places than the per-vehicle one (agent_0.pth only, a view per vehicle): a kill mid-save and one mid-training
    must both resume to the uninterrupted run's weights and rewards."""
    result = load_faults().campaign(kills=2, seed=5, tmpfs=False, damage_kinds=["agent_i"], disk_cases=0,
                                    work=tmp_path, episodes=8, changes=LARGE_SHARED)
    assert result["config"]["NUM_AGENTS"] == 12 and result["config"]["SHARE_PARAMETERS"] is True
    assert [r["aimed_at"].split()[0] for r in result["kills"]] == ["mid-save", "training"]
    assert [r["bit_exact"] for r in result["kills"]] == [True, True]
    assert all(r["valid_after_kill"] for r in result["kills"])
    assert len(result["damaged_files"]) == 2 and all(r["ok"] for r in result["damaged_files"])
