"""Layout, manifest, atomic save, safe load, save/load_model_checkpoint, find_latest, verify."""

from __future__ import annotations

import json
import os
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fleetmarl.checkpoint import (
    CheckpointSaveError,
    checkpoint_name,
    cleanup_incomplete,
    find_latest_checkpoint,
    is_latest_of_run,
    load_model_checkpoint,
    load_replay_buffer,
    parse_checkpoint_name,
    read_manifest,
    resolve_resume,
    save_model_checkpoint,
    validate_plain,
    verify_checkpoint,
)
from fleetmarl.checkpoint.manifest import SCHEMA_VERSION, sha256_file, write_manifest
from fleetmarl.checkpoint.store import live_temp_folders
from fleetmarl.config import Config
from fleetmarl.errors import CheckpointError, FleetmarlError


class FakeAgent(nn.Module):
    """Stands in for MADDPGAgent: only the two checkpoint methods matter to the storage layer."""

    def __init__(self, in_dim: int = 4, out_dim: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.actor = nn.Linear(in_dim, out_dim)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=1e-3)
        loss = self.actor(torch.ones(2, in_dim)).sum()
        loss.backward()
        self.actor_optimizer.step()

    def checkpoint_state(self) -> dict:
        return {"actor": self.actor.state_dict(), "actor_optimizer": self.actor_optimizer.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        if state["actor"]["weight"].shape != self.actor.weight.shape:
            raise CheckpointError(f"actor weight shape {tuple(state['actor']['weight'].shape)} does not fit")
        self.actor.load_state_dict(state["actor"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])


def make_state(episode: int = 200, timestamp: str = "20250817_143052", config: Config | None = None, **extra) -> dict:
    config = config or Config(NUM_AGENTS=2)
    state = {
        "episode": episode,
        "noise_std": 0.832456,
        "episode_rewards_log": [1000.0, 1245.67, 1491.34],
        "config": config.to_dict(),
        "total_episodes_planned": 3000,
        "checkpoint_timestamp": timestamp,
        "torch_rng_state": torch.get_rng_state(),
        "python_rng_state": (3, (1, 2, 3), None),
    }
    state.update(extra)
    return state


def save(tmp_path: Path, episode: int = 200, timestamp: str = "20250817_143052", n: int = 2, **kwargs) -> Path:
    agents = [FakeAgent(seed=i) for i in range(n)]
    return save_model_checkpoint(agents, make_state(episode, timestamp), tmp_path, log=None, **kwargs)


# ---------------------------------------------------------------------- layout and config_info.txt
def test_layout_names_and_guide_log_lines(tmp_path: Path, capsys) -> None:
    agents = [FakeAgent(seed=i) for i in range(5)]
    path = save_model_checkpoint(agents, make_state(config=Config()), tmp_path, replay_buffer_state={"size": 3}, log=print)
    assert path.name == "checkpoint_ep200_20250817_143052"
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [f"agent_{i}.pth" for i in range(5)]
        + ["training_state.pth", "config_info.txt", "replay_buffer.pth", "MANIFEST.json"]
    )
    out = capsys.readouterr().out.splitlines()
    assert out == [f"💾 模型检查点已保存: {path}", "   包含: 5个智能体 + 训练状态 + 配置信息"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_config_info_matches_the_guide(tmp_path: Path) -> None:
    agents = [FakeAgent(seed=i) for i in range(5)]
    state = make_state(config=Config(), episode_rewards_log=[1245.67])
    text = (save_model_checkpoint(agents, state, tmp_path, log=None) / "config_info.txt").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[:12] == [
        "模型检查点信息",
        "=" * 50,
        "保存时间: 20250817_143052",
        "训练轮数: 200",
        "训练进度: 6.7%",
        "当前噪声: 0.832456",
        "环境类型: full",
        "随机种子: 123",
        "智能体数量: 5",
        "近期平均奖励: 1245.67",
        "",
        "训练配置参数:",
    ]
    assert "  NUM_EPISODES: 3000" in lines and "  BATCH_SIZE: 512" in lines and "  LR_ACTOR: 5e-05" in lines


def test_parse_checkpoint_name() -> None:
    parsed = parse_checkpoint_name("checkpoint_ep200_20250817_143052")
    assert parsed is not None and (parsed.episode, parsed.timestamp, parsed.serial) == (200, "20250817_143052", 1)
    assert parse_checkpoint_name(".tmp-checkpoint_ep200_20250817_143052-12-1") is None
    assert parse_checkpoint_name("checkpoint_ep2x_20250817_143052") is None


@given(st.integers(0, 10**7), st.datetimes(min_value=datetime(1000, 1, 1)), st.integers(1, 50))
def test_checkpoint_names_round_trip(episode: int, moment, serial: int) -> None:
    stamp = moment.strftime("%Y%m%d_%H%M%S")
    parsed = parse_checkpoint_name(checkpoint_name(episode, stamp, serial))
    assert parsed is not None and (parsed.episode, parsed.timestamp, parsed.serial) == (episode, stamp, serial)


def test_manifest_cannot_point_outside_the_folder(tmp_path: Path) -> None:
    path = save(tmp_path)
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0" * 64}
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    assert "MANIFEST.json was altered" in verify_checkpoint(path)[0]
    # a manifest written with a fresh self-checksum (it is a checksum, not a signature) is still refused
    write_manifest(path, manifest)
    assert "outside the checkpoint folder" in verify_checkpoint(path)[0]


def test_same_second_save_never_overwrites(tmp_path: Path) -> None:
    first = save(tmp_path)
    second = save(tmp_path)
    assert first != second and second.name.endswith("_2")
    assert verify_checkpoint(first) == [] and verify_checkpoint(second) == []


# ---------------------------------------------------------------------- save/load round trip
def test_round_trip_restores_weights_optimizer_and_state(tmp_path: Path) -> None:
    saved_agents = [FakeAgent(seed=i) for i in range(2)]
    path = save_model_checkpoint(saved_agents, make_state(), tmp_path, log=None, replay_buffer_state={"obs": torch.arange(6)})
    fresh = [FakeAgent(seed=10 + i) for i in range(2)]
    state = load_model_checkpoint(fresh, path, "cpu")
    for a, b in zip(saved_agents, fresh, strict=True):
        assert torch.equal(a.actor.weight, b.actor.weight)
        sa, sb = a.actor_optimizer.state_dict()["state"], b.actor_optimizer.state_dict()["state"]
        assert torch.equal(sa[0]["exp_avg"], sb[0]["exp_avg"])
    assert state["episode"] == 200 and state["noise_std"] == 0.832456
    assert state["episode_rewards_log"] == [1000.0, 1245.67, 1491.34]
    assert state["environment_type"] == "full" and state["random_seed"] == 123
    assert state["training_progress"] == pytest.approx(200 / 3000 * 100)
    assert state["torch_rng_state"].dtype == torch.uint8 and state["python_rng_state"] == (3, (1, 2, 3), None)
    assert torch.equal(load_replay_buffer(path)["obs"], torch.arange(6))


def test_save_accepts_snapshotted_states(tmp_path: Path) -> None:
    agents = [FakeAgent(seed=i) for i in range(2)]
    path = save_model_checkpoint([a.checkpoint_state() for a in agents], make_state(), tmp_path)
    fresh = [FakeAgent(seed=5), FakeAgent(seed=6)]
    load_model_checkpoint(fresh, path, "cpu")
    assert torch.equal(fresh[1].actor.bias, agents[1].actor.bias)


def test_every_file_loads_with_weights_only(tmp_path: Path) -> None:
    path = save(tmp_path, replay_buffer_state={"obs": torch.zeros(3)})
    for file in path.glob("*.pth"):
        torch.load(file, weights_only=True)


def test_manifest_contents(tmp_path: Path) -> None:
    path = save(tmp_path, run_id="run-a", parent="checkpoint_ep0_20250817_000000", eval_reward=12.5)
    manifest = read_manifest(path)
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["episode"] == 200 and manifest["timestamp"] == "20250817_143052"
    assert manifest["run_id"] == "run-a" and manifest["parent"] == "checkpoint_ep0_20250817_000000"
    assert manifest["eval_reward"] == 12.5 and manifest["recent_reward"] == pytest.approx(1245.67)
    assert manifest["torch_version"] == torch.__version__ and "fleetmarl_version" in manifest
    for name, info in manifest["files"].items():
        assert info["bytes"] == (path / name).stat().st_size and info["sha256"] == sha256_file(path / name)


def test_views_are_saved_compactly(tmp_path: Path) -> None:
    big = torch.zeros(1_000_000)
    path = save(tmp_path, replay_buffer_state={"obs": big[:10]})
    assert (path / "replay_buffer.pth").stat().st_size < 10_000


def test_load_maps_onto_requested_device(tmp_path: Path) -> None:
    path = save(tmp_path)
    state = load_model_checkpoint([FakeAgent(), FakeAgent()], path, torch.device("cpu"))
    assert state["torch_rng_state"].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_saved_checkpoint_loads_on_cpu(tmp_path: Path) -> None:  # pragma: no cover - GPU only
    agents = [FakeAgent().cuda() for _ in range(2)]
    path = save_model_checkpoint(agents, make_state(), tmp_path, log=None)
    cpu_agents = [FakeAgent(), FakeAgent()]
    load_model_checkpoint(cpu_agents, path, "cpu")
    assert torch.equal(cpu_agents[0].actor.weight, agents[0].actor.weight.cpu())


def test_cuda_requested_without_cuda_is_one_line(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    path = save(tmp_path)
    with pytest.raises(CheckpointError, match="CUDA is not available"):
        load_model_checkpoint([FakeAgent(), FakeAgent()], path, "cuda")


# ---------------------------------------------------------------------- compatibility
def test_wrong_agent_count_names_key_and_values(tmp_path: Path) -> None:
    path = save(tmp_path, n=2)
    with pytest.raises(CheckpointError, match=r"NUM_AGENTS is 2 in the checkpoint but 3 here") as info:
        load_model_checkpoint([FakeAgent() for _ in range(3)], path, "cpu")
    assert "\n" not in str(info.value)


def test_wrong_shape_key_names_key_and_values(tmp_path: Path) -> None:
    path = save(tmp_path)
    with pytest.raises(CheckpointError, match=r"NUM_POINTS is 30 in the checkpoint but 20 here"):
        load_model_checkpoint([FakeAgent(), FakeAgent()], path, "cpu", config=Config(NUM_AGENTS=2, NUM_POINTS=20))
    agents = [FakeAgent(), FakeAgent()]
    agents[0].config = Config(NUM_AGENTS=2, HIDDEN_DIM=64)
    with pytest.raises(CheckpointError, match=r"HIDDEN_DIM is 128 in the checkpoint but 64 here"):
        load_model_checkpoint(agents, path, "cpu")


def test_agent_shape_mismatch_is_checkpoint_error(tmp_path: Path) -> None:
    path = save(tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_checkpoint([FakeAgent(in_dim=5), FakeAgent(in_dim=5)], path, "cpu")


def test_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = save(tmp_path)
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"schema version {SCHEMA_VERSION + 1}, newer.*upgrade fleetmarl"):
        load_model_checkpoint([FakeAgent(), FakeAgent()], path, "cpu")


# ---------------------------------------------------------------------- integrity
def test_verify_reports_missing_truncated_corrupt_and_ignores_extras(tmp_path: Path) -> None:
    path = save(tmp_path)
    assert verify_checkpoint(path) == []
    (path / "notes.txt").write_text("mine")
    assert verify_checkpoint(path) == []
    (path / "agent_1.pth").unlink()
    data = (path / "training_state.pth").read_bytes()
    (path / "training_state.pth").write_bytes(data[:100])
    info = (path / "config_info.txt").read_bytes()
    (path / "config_info.txt").write_bytes(info[:-1] + b"X")
    problems = verify_checkpoint(path)
    assert "missing agent_1.pth" in problems
    assert any(p.startswith("training_state.pth is truncated") for p in problems)
    assert "config_info.txt is corrupt (sha256 differs from the manifest)" in problems


def test_verify_folder_without_manifest(tmp_path: Path) -> None:
    path = save(tmp_path)
    (path / "MANIFEST.json").unlink()
    (path / "agent_1.pth").unlink()
    [problem] = verify_checkpoint(path)
    assert "no MANIFEST.json" in problem and "missing agent_1.pth" in problem
    (path / "MANIFEST.json").write_text("{not json")
    assert "unreadable" in verify_checkpoint(path)[0]


def test_verify_directory_verifies_each(tmp_path: Path) -> None:
    good = save(tmp_path, 200)
    bad = save(tmp_path, 400)
    (bad / "agent_0.pth").unlink()
    assert verify_checkpoint(tmp_path) == [f"{bad.name}: missing agent_0.pth"]
    assert verify_checkpoint(good) == []


def test_folder_without_valid_manifest_is_never_loaded(tmp_path: Path) -> None:
    path = save(tmp_path)
    (path / "MANIFEST.json").unlink()
    with pytest.raises(CheckpointError, match="is not valid: no MANIFEST.json"):
        load_model_checkpoint([FakeAgent(), FakeAgent()], path, "cpu")


# ---------------------------------------------------------------------- safe loading
class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rewrite_manifest(path: Path) -> None:
    """What an attacker who knows the format does: new file hashes and a new self-checksum."""
    manifest = json.loads((path / "MANIFEST.json").read_text())
    for name, info in manifest["files"].items():
        info["bytes"] = (path / name).stat().st_size
        info["sha256"] = sha256_file(path / name)
    write_manifest(path, manifest)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("via_torch_save", [True, False])
def test_malicious_file_with_matching_manifest_is_refused(tmp_path: Path, via_torch_save: bool) -> None:
    ckpts = tmp_path / "ckpts"
    path = save(ckpts)
    marker = tmp_path / "pwned"
    payload = {"actor": _Exploit(marker)}
    with open(path / "agent_0.pth", "wb") as handle:
        if via_torch_save:
            torch.save(payload, handle)
        else:
            pickle.dump(payload, handle)
    _rewrite_manifest(path)
    assert verify_checkpoint(path) == []  # the hash matches: only the safe loader stands in the way
    with pytest.raises(CheckpointError, match=r"refused to load .*agent_0.pth|cannot read .*agent_0.pth") as info:
        load_model_checkpoint([FakeAgent(), FakeAgent()], path, "cpu")
    assert "\n" not in str(info.value) and "agent_0.pth" in str(info.value)
    assert not marker.exists()


def test_payload_validation_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointSaveError, match=r"state\['rng'\]\[1\].*numpy"):
        validate_plain({"rng": [1, np.float64(2.0)]}, "state")
    with pytest.raises(CheckpointSaveError, match="key"):
        validate_plain({(1, 2): 3})
    validate_plain({"a": [torch.zeros(1), 1, 2.0, True, None, "x", (1,)], 3: {"b": b"x"}})
    state = make_state(np_rng=np.random.default_rng(0))
    with pytest.raises(CheckpointSaveError, match=r"training_state\['np_rng'\]"):
        save_model_checkpoint([FakeAgent(), FakeAgent()], state, tmp_path, log=None)
    assert not list(tmp_path.iterdir())


def test_agent_count_must_match_config_on_save(tmp_path: Path) -> None:
    with pytest.raises(CheckpointSaveError, match="1 agent states but config NUM_AGENTS is 2"):
        save_model_checkpoint([FakeAgent()], make_state(), tmp_path)


def test_missing_training_state_keys_are_named(tmp_path: Path) -> None:
    state = make_state()
    del state["noise_std"]
    with pytest.raises(CheckpointSaveError, match="lacks noise_std"):
        save_model_checkpoint([FakeAgent(), FakeAgent()], state, tmp_path, log=None)


# ---------------------------------------------------------------------- atomic commit
def test_failed_save_leaves_earlier_checkpoints_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    good = save(tmp_path, 200)
    import fleetmarl.checkpoint.store as store

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_manifest", boom)
    with pytest.raises(CheckpointSaveError, match="No space left on device.*earlier checkpoints are untouched") as info:
        save(tmp_path, 400)
    assert isinstance(info.value, FleetmarlError) and info.value.exit_code == 1
    assert [p.name for p in tmp_path.iterdir()] == [good.name]
    assert verify_checkpoint(good) == []


def test_interrupted_save_is_ignored_and_cleaned(tmp_path: Path) -> None:
    good = save(tmp_path, 200)
    leftover = tmp_path / ".tmp-checkpoint_ep400_20250817_150000-999999999-1"
    leftover.mkdir()
    (leftover / "agent_0.pth").write_bytes(b"half")
    half = tmp_path / "checkpoint_ep600_20250817_160000"  # renamed by hand, no manifest
    half.mkdir()
    latest, skipped = find_latest_checkpoint(tmp_path)
    assert latest == good and [p for p, _ in skipped] == [half]
    assert cleanup_incomplete(tmp_path) == [leftover]
    assert half.exists()  # not a temp folder: only `ckpt list` reports it


def test_cleanup_spares_live_writers(tmp_path: Path, monkeypatch) -> None:
    mine = tmp_path / f".tmp-checkpoint_ep200_20250817_150000-{os.getpid()}-77"
    mine.mkdir()
    import fleetmarl.checkpoint.discovery as discovery

    monkeypatch.setattr(discovery, "live_temp_folders", lambda: {mine})
    assert cleanup_incomplete(tmp_path) == []
    other_live = tmp_path / f".tmp-checkpoint_ep200_20250817_150000-{os.getppid()}-1"
    other_live.mkdir()
    assert cleanup_incomplete(tmp_path) == [] and other_live.exists()
    assert live_temp_folders() == set()


# ---------------------------------------------------------------------- finding checkpoints
def test_find_latest_orders_by_episode_then_timestamp(tmp_path: Path) -> None:
    save(tmp_path, 400, "20250817_100000")
    save(tmp_path, 200, "20250818_100000")
    newest = save(tmp_path, 400, "20250817_110000")
    broken = save(tmp_path, 600, "20250817_090000")
    (broken / "agent_1.pth").unlink()
    latest, skipped = find_latest_checkpoint(tmp_path)
    assert latest == newest
    assert skipped == [(broken, "missing agent_1.pth")]
    assert find_latest_checkpoint(tmp_path / "absent") == (None, [])


def test_resolve_resume(tmp_path: Path) -> None:
    good = save(tmp_path, 200)
    broken = save(tmp_path, 400)
    (broken / "agent_1.pth").unlink()
    assert resolve_resume(tmp_path, "latest") == (good, [(broken, "missing agent_1.pth")])
    assert resolve_resume(tmp_path, str(good)) == (good, [])
    assert resolve_resume(tmp_path, tmp_path)[0] == good
    with pytest.raises(CheckpointError) as info:
        resolve_resume(tmp_path, broken)
    assert str(info.value) == (
        f"checkpoint {broken} is incomplete (missing agent_1.pth); latest valid is {good}"
    )
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_resume(tmp_path, tmp_path / "nope")
    empty = tmp_path / "empty"
    assert resolve_resume(empty, "latest", missing_ok=True) == (None, [])
    with pytest.raises(CheckpointError, match="no valid checkpoint to resume"):
        resolve_resume(empty, "latest")


def test_is_latest_of_run(tmp_path: Path) -> None:
    old = save(tmp_path, 200, run_id="a")
    new = save(tmp_path, 400, run_id="a")
    branch = save(tmp_path, 600, run_id="b")
    assert is_latest_of_run(tmp_path, new, "a") and not is_latest_of_run(tmp_path, old, "a")
    assert is_latest_of_run(tmp_path, branch, "b") and not is_latest_of_run(tmp_path, branch, "a")
