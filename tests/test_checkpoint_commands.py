"""``fleetmarl ckpt list|inspect|verify|prune``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fleetmarl.checkpoint import SCHEMA_VERSION
from fleetmarl.cli import ckpt as commands
from fleetmarl.errors import CheckpointError, UserError
from tests.test_checkpoint_ops import save


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fleetmarl")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ckpt", *argv])
    return args.handler(args)


@pytest.fixture()
def ckpts(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    save(root, 200, eval_reward=3.5)
    save(root, 400)
    broken = save(root, 600)
    (broken / "agent_0.pth").unlink()
    (root / ".tmp-checkpoint_ep800_20250817_080000-999999999-1").mkdir()
    return root


def test_list_table_and_json(ckpts: Path, capsys) -> None:
    assert run("list", str(ckpts)) == 0
    out = capsys.readouterr().out
    assert "EPISODE" in out and "3.50 (eval)" in out and "INVALID: missing agent_0.pth" in out
    assert "INCOMPLETE" in out and "checkpoint_ep400_20250817_040000" in out
    assert run("list", str(ckpts), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["valid"] for r in rows] == [True, True, False, False]
    assert rows[0]["episode"] == 200 and rows[0]["time"] == "2025-08-17 02:00:00" and rows[0]["bytes"] > 0


def test_list_defaults_to_checkpoints_in_cwd(ckpts: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(ckpts.parent)
    assert run("list") == 0
    assert "checkpoint_ep200" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="does not exist"):
        run("list", str(ckpts / "nope"))


def test_inspect(ckpts: Path, capsys) -> None:
    good = ckpts / "checkpoint_ep200_20250817_020000"
    assert run("inspect", str(good)) == 0
    out = capsys.readouterr().out
    assert out.startswith("模型检查点信息") and f"schema_version: {SCHEMA_VERSION}" in out and "agent_0.pth" in out
    assert run("inspect", str(good), "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["manifest"]["episode"] == 200 and data["config_info"].startswith("模型检查点信息")
    assert run("inspect", str(ckpts / "checkpoint_ep600_20250817_060000")) == 1
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        run("inspect", str(ckpts))


def test_verify_names_every_bad_file(ckpts: Path, capsys) -> None:
    assert run("verify", str(ckpts)) == 1
    out = capsys.readouterr().out
    assert "ok  " in out and "BAD " in out and "missing agent_0.pth" in out
    assert run("verify", str(ckpts / "checkpoint_ep200_20250817_020000")) == 0
    assert capsys.readouterr().out.startswith("ok  ")
    with pytest.raises(CheckpointError, match="does not exist"):
        run("verify", str(ckpts / "nope"))


def test_prune(ckpts: Path, capsys) -> None:
    assert run("prune", str(ckpts), "--keep", "1", "--dry-run") == 0
    assert "would delete" in capsys.readouterr().out and (ckpts / "checkpoint_ep200_20250817_020000").exists()
    assert run("prune", str(ckpts), "--keep", "1") == 0
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == ["checkpoint_ep400_20250817_040000", "checkpoint_ep600_20250817_060000"]
    with pytest.raises(UserError, match="say what to keep"):
        run("prune", str(ckpts))


def test_registered_in_the_cli(ckpts: Path, capsys) -> None:
    cli = pytest.importorskip("fleetmarl.cli")
    assert cli.main(["ckpt", "verify", str(ckpts / "checkpoint_ep200_20250817_020000")]) == 0
    assert cli.main(["ckpt", "verify", str(ckpts / "missing")]) == 2
    assert capsys.readouterr().err.startswith("fleetmarl: ")
