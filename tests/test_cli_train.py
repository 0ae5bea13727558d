"""The command line as a user meets it: one-line errors, exit codes, kill -9 and signals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
# Subprocesses import this checkout's code, whatever `pip install -e` points at.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def start_training(flags: list[str], cwd: Path) -> tuple[subprocess.Popen, list[str]]:
    """Start ``fleetmarl train`` and return once it announces training (its signal handlers go in right
    after), with the lines read so far: a fixed sleep fails on a busy machine where imports take longer."""
    proc = subprocess.Popen([sys.executable, "-m", "fleetmarl.cli", "train", *flags], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    while not any(line.startswith("fleetmarl: training") for line in lines):
        line = proc.stdout.readline()
        assert line, f"training exited before it started: {proc.communicate(timeout=60)[1]}"
        lines.append(line)
    time.sleep(1.0)  # into the first rounds
    return proc, lines


def fleetmarl(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetmarl.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=ENV, **kwargs)


def committed(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.exists():
        return []
    return sorted((p for p in ckpt_dir.iterdir() if not p.name.startswith(".")),
                  key=lambda p: int(p.name.split("_")[1][2:]))


@pytest.mark.parametrize(("flags", "needle"), [
    (["--set", "BATCH_SIZ=3"], "BATCH_SIZE"),
    (["--set", "NUM_EPISODES"], "KEY=VALUE"),
    (["--set", "LR_ACTOR=0"], "LR_ACTOR"),
    (["--set", "BATCH_SIZE=1000", "--set", "CAPACITY=10"], "BATCH_SIZE"),
    (["--config", "missing.py"], "missing.py"),
    (["--bogus-flag"], "--bogus-flag"),
])
def test_user_mistakes_are_one_line_exit_2(tmp_path: Path, flags: list[str], needle: str) -> None:
    out = fleetmarl("train", *flags, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: ") and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_main_py_is_fleetmarl_train(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--help-config"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 0 and "MODEL_SAVE_INTERVAL = 200" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "main.py"), "--resume", "nowhere/checkpoint_ep9"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=ENV)
    assert bad.returncode == 2 and bad.stderr.startswith("fleetmarl: ") and "Traceback" not in bad.stderr


def test_reads_config_py_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("NUM_EPISODE = 3\n")
    out = fleetmarl("train", cwd=tmp_path)
    assert out.returncode == 2 and "NUM_EPISODES" in out.stderr and "config.py" in out.stderr


def final_state(run_dir: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    last = committed(run_dir / "checkpoints")[-1]
    state = torch.load(last / "training_state.pth", weights_only=True)
    weights = {}
    for agent_file in sorted(last.glob("agent_*.pth")):
        saved = torch.load(agent_file, weights_only=True)
        for part in ("actor", "critic", "actor_target", "critic_target"):
            for k, v in saved[part].items():
                weights[f"{agent_file.stem}.{part}.{k}"] = v
    return state["episode_rewards_log"], weights


@pytest.mark.slow
def test_kill_9_then_resume_latest_is_bit_exact(tmp_path: Path) -> None:
    flags = tiny_overrides(NUM_EPISODES=24, MODEL_SAVE_INTERVAL=4, MAX_NUM_STEPS=16)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert fleetmarl("train", *flags, cwd=whole).returncode == 0

    proc = subprocess.Popen([sys.executable, "-m", "fleetmarl.cli", "train", *flags], cwd=broken,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 120
    while not committed(broken / "checkpoints") and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.6))  # a random moment, often mid-save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed(broken / "checkpoints"), "no checkpoint before the kill"

    out = fleetmarl("train", *flags, "--resume", "latest", cwd=broken)
    assert out.returncode == 0, out.stderr
    rewards_whole, weights_whole = final_state(whole)
    rewards_resumed, weights_resumed = final_state(broken)
    assert rewards_resumed == rewards_whole
    assert weights_resumed.keys() == weights_whole.keys()
    for key in weights_whole:
        assert torch.equal(weights_resumed[key], weights_whole[key]), key
    assert not [p for p in (broken / "checkpoints").iterdir() if p.name.startswith(".")], "temp folder left behind"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_round_saves_and_exits_0(tmp_path: Path, signum: int) -> None:
    flags = tiny_overrides(NUM_EPISODES=4000, MODEL_SAVE_INTERVAL=1000)
    proc, lines = start_training(flags, tmp_path)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    stdout = "".join(lines) + stdout
    assert proc.returncode == 0, stderr
    saved = committed(tmp_path / "checkpoints")
    assert len(saved) == 1 and (saved[0] / "MANIFEST.json").is_file()
    assert "💾 模型检查点已保存" in stdout and "--resume latest" in stdout
    episode = int(saved[0].name.split("_")[1][2:])
    assert 0 < episode < 4000 and episode % 2 == 0


@pytest.mark.slow
def test_second_signal_exits_at_once_without_partial_checkpoint(tmp_path: Path) -> None:
    flags = tiny_overrides(NUM_EPISODES=4000, MODEL_SAVE_INTERVAL=1000, MAX_NUM_STEPS=400)
    proc, _ = start_training(flags, tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    for folder in committed(tmp_path / "checkpoints"):
        assert (folder / "MANIFEST.json").is_file()
