"""`fleetmarl render`: a real map picture, a real animation, from observations only; bad outputs exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fleetmarl.cli import main
from fleetmarl.config import Config
from fleetmarl.envs.policies import greedy_policy
from fleetmarl.eval.rendering import record_episode
from tests.conftest import TINY, tiny_overrides
from tests.test_plotting import assert_real_image


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./config.py decides the environment


def test_trace_follows_the_environment(tmp_path: Path) -> None:
    config = Config(**{**TINY, "MAX_NUM_STEPS": 30})
    trace = record_episode(config, greedy_policy, seed=5)
    assert trace.vehicles.shape == (31, config.NUM_AGENTS, 2)
    half = config.MAP_SIZE / 2
    assert np.all(np.abs(trace.vehicles) <= half + 1e-6)
    assert np.allclose(trace.vehicles[0], 0.0)  # every vehicle starts at the base
    assert np.abs(trace.vehicles[-1] - trace.vehicles[0]).max() > 0  # greedy moves
    assert trace.points and all(v.priority in (1, 2, 3) for v in trace.points)
    served = sum(v.outcome == "served" for v in trace.points)
    assert served == trace.metrics["points_served"]  # what the picture shows is what the env counted
    assert sum(v.outcome == "missed" for v in trace.points) == trace.metrics["missed_points"]
    again = record_episode(config, greedy_policy, seed=5)
    assert np.array_equal(trace.vehicles, again.vehicles)


def test_render_png_of_a_reference_policy(tmp_path: Path) -> None:
    out = tmp_path / "episode.png"
    assert main(["render", "--policy", "greedy", "-o", str(out), *tiny_overrides(MAX_NUM_STEPS=30)]) == 0
    assert_real_image(out, min_side=500)


def test_render_gif_has_many_frames(tmp_path: Path) -> None:
    out = tmp_path / "episode.gif"
    assert main(["render", "--policy", "random", "-o", str(out), "--every", "2", *tiny_overrides()]) == 0
    with Image.open(out) as image:
        assert image.format == "GIF"
        assert image.n_frames == TINY["MAX_NUM_STEPS"] // 2 + 1
        assert min(image.size) >= 300


@pytest.mark.parametrize("target", ["no/such/folder/ep.png", "episode.mp4"])
def test_bad_output_exits_2_before_running(tmp_path: Path, capsys, target: str) -> None:
    assert main(["render", "--policy", "greedy", "-o", str(tmp_path / target), *tiny_overrides()]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: cannot write")


def test_render_needs_exactly_one_source(tmp_path: Path, capsys) -> None:
    assert main(["render", "-o", str(tmp_path / "e.png")]) == 2
    assert main(["render", str(tmp_path), "--policy", "greedy", "-o", str(tmp_path / "e.png")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("fleetmarl: ") for line in lines)
