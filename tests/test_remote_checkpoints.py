"""Checkpoints at an S3 URL (a moto server on 127.0.0.1): the disk's commit rule, list/verify/prune/eval on
the URL, an upload interrupted before its manifest, and resume from the bucket bit for bit."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetmarl.checkpoint.layout import MANIFEST_FILE
from fleetmarl.checkpoint.remote import (
    RemoteCheckpoints,
    is_url,
    join_url,
    mirror_folder,
    split_checkpoint_url,
)
from fleetmarl.cli import main
from fleetmarl.config import Config
from fleetmarl.trainer import train
from tests.conftest import TINY
from tests.test_trainer import assert_same_weights, final_weights

BUCKET = "fleetmarl-test"


# ---------------------------------------------------------------------- no server needed
def test_urls_are_told_from_paths() -> None:
    assert is_url("s3://bucket/run") and is_url("file:///tmp/x")
    assert not is_url("checkpoints") and not is_url("C:/runs") and not is_url("/tmp/s3://x")
    assert join_url("s3://b/run/", "checkpoint_ep4_20250101_000000") == "s3://b/run/checkpoint_ep4_20250101_000000"
    assert split_checkpoint_url("s3://b/run/checkpoint_ep4_20250101_000000/") == ("s3://b/run", "checkpoint_ep4_20250101_000000")
    assert split_checkpoint_url("s3://b/run") == ("s3://b/run", None)


def test_mirror_is_one_local_folder_per_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETMARL_CACHE_DIR", str(tmp_path))
    assert mirror_folder("s3://b/run") == tmp_path / "remote" / "s3" / "b" / "run"
    assert mirror_folder("s3://b/run") != mirror_folder("s3://b/run2")
    assert mirror_folder("s3://b/../x").is_relative_to(tmp_path)


def test_missing_s3fs_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now fails as if it were not installed
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--set", "CHECKPOINTS_DIR=s3://bucket/run", "--set", "NUM_EPISODES=8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("fleetmarl: ") and 'pip install -e ".[s3]"' in err[0]


def test_file_urls_follow_the_commit_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Upload, list, fetch and prune through fsspec's file:// (no server), with a committed fixture."""
    pytest.importorskip("fsspec")
    monkeypatch.setenv("FLEETMARL_CACHE_DIR", str(tmp_path / "cache"))
    fixture = Path(__file__).parent / "data" / "checkpoint_ep4_20261124_233115"
    store = RemoteCheckpoints(f"file://{tmp_path / 'store'}")
    assert store.upload(fixture) == f"file://{tmp_path / 'store' / fixture.name}"
    assert store.upload(fixture) == f"file://{tmp_path / 'store' / fixture.name}"  # a retried job: no-op
    late = tmp_path / "store" / "checkpoint_ep8_20990101_000000"
    late.mkdir()
    (late / "agent_0.pth").write_bytes(b"partial")  # an upload cut before its manifest

    entry, skipped = store.latest()
    assert entry is not None and entry.name == fixture.name
    assert skipped and skipped[0][0].endswith(late.name) and "did not finish" in skipped[0][1]
    local = store.fetch(fixture.name)
    assert local.parent == store.mirror and (local / MANIFEST_FILE).read_bytes() == (fixture / MANIFEST_FILE).read_bytes()
    assert main(["ckpt", "list", store.url]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    assert store.prune(keep_last=1) == []  # the only committed one is the newest: kept; the partial one untouched
    assert store.cleanup_incomplete() == [store.url + "/" + late.name] and not late.exists()


# ---------------------------------------------------------------------- a moto S3 server
@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    patch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    try:
        RemoteCheckpoints(f"s3://{BUCKET}").fs.mkdir(BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        patch.undo()
        server.stop()


@pytest.fixture(scope="module")
def trained(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny run of 8 episodes straight into the bucket (checkpoints at 4 and 8), trained once."""
    cache = tmp_path_factory.mktemp("cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("FLEETMARL_CACHE_DIR", str(cache))
    url = join_url(s3_server, "run")
    config = Config(**TINY, CHECKPOINTS_DIR=url, LOG_DIR=str(cache / "runs"))
    messages: list[str] = []
    try:
        result = train(config, log=messages.append)
    finally:
        patch.undo()
    return {"url": url, "config": config, "weights": final_weights(result), "messages": messages,
            "rewards": result.state.episode_rewards_log}


@pytest.fixture
def run_copy(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, RemoteCheckpoints]:
    """A private copy of the trained run in the bucket, and an empty local cache (as on another machine)."""
    monkeypatch.setenv("FLEETMARL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    source = RemoteCheckpoints(trained["url"])
    url = join_url(source.url.rsplit("/", 1)[0], f"copy-{uuid.uuid4().hex[:8]}")
    source.fs.copy(source.root, url.split("://", 1)[1], recursive=True)
    return url, RemoteCheckpoints(url)


@pytest.mark.slow
def test_training_uploads_every_checkpoint_manifest_last(trained: dict) -> None:
    remote = RemoteCheckpoints(trained["url"])
    entries = remote.entries()
    assert [e.name.split("_")[1] for e in entries] == ["ep4", "ep8"]
    assert all(e.valid for e in entries)
    for entry in entries:
        assert set(entry.manifest["files"]) | {MANIFEST_FILE} == set(entry.sizes)
    uploads = [m for m in trained["messages"] if m.startswith("☁ uploaded s3://")]
    assert [m.split("/")[-1] for m in uploads] == [e.name for e in entries]


@pytest.mark.slow
def test_interrupted_upload_is_listed_incomplete_then_resume_takes_the_previous_one_bit_for_bit(
        trained: dict, run_copy: tuple[str, RemoteCheckpoints], capsys) -> None:
    url, remote = run_copy
    first, last = remote.entries()
    remote.fs.rm_file(f"{remote.root}/{last.name}/{MANIFEST_FILE}")  # the upload died before its commit

    assert main(["ckpt", "list", url]) == 0
    listing = capsys.readouterr().out
    assert "INCOMPLETE" in listing and last.name in listing
    assert main(["ckpt", "list", url, "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[first.name]["valid"] and not rows[last.name]["valid"]

    messages: list[str] = []
    config = trained["config"].replace(CHECKPOINTS_DIR=url)
    resumed = train(config, resume="latest", log=messages.append)
    assert any(f"removed unfinished upload {join_url(url, last.name)}" in m for m in messages)
    assert any("从第4轮恢复训练" in m for m in messages)
    assert resumed.state.episode_rewards_log == trained["rewards"]
    assert_same_weights(final_weights(resumed), trained["weights"])
    entries = remote.entries()
    # A fresh ep8 was uploaded and committed; within the same second it may reuse the old name.
    assert [e.name for e in entries][0] == first.name and len(entries) == 2
    assert entries[1].name.startswith("checkpoint_ep8_") and all(e.valid for e in entries)
    assert any(m.startswith("☁ uploaded") and m.endswith(entries[1].name) for m in messages)


@pytest.mark.slow
def test_ckpt_commands_and_eval_read_a_url(run_copy: tuple[str, RemoteCheckpoints], capsys) -> None:
    url, remote = run_copy
    first, last = remote.entries()
    assert main(["ckpt", "verify", url]) == 0
    assert capsys.readouterr().out.count("ok  ") == 2
    assert main(["ckpt", "inspect", join_url(url, last.name)]) == 0
    assert "status: ok" in capsys.readouterr().out
    # a checkpoint under another name (how Tune stores a sweep's reported ones) is found by its manifest
    tune_style = join_url(url, "trial", "checkpoint_000001")
    remote.fs.copy(f"{remote.root}/{last.name}", tune_style.split("://", 1)[1], recursive=True)
    assert main(["eval", tune_style, "--episodes", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episode"] == 8 and "on_time_rate" in report["metrics"]

    # a damaged object is caught when downloaded, never loaded
    remote.fs.pipe_file(f"{remote.root}/{first.name}/agent_0.pth", b"x" * first.manifest["files"]["agent_0.pth"]["bytes"])
    assert main(["ckpt", "verify", url]) == 1
    assert "BAD" in capsys.readouterr().out
    shutil.rmtree(remote.mirror, ignore_errors=True)

    # prune: only committed checkpoints; an unfinished upload is left for the next run to clean
    remote.fs.pipe_file(f"{remote.root}/checkpoint_ep12_20990101_000000/agent_0.pth", b"partial")
    assert main(["ckpt", "prune", url, "--keep", "1"]) == 0
    capsys.readouterr()
    left = [(e.name, e.valid) for e in remote.entries()]
    assert left == [(last.name, True), ("checkpoint_ep12_20990101_000000", False)]


@pytest.mark.slow
def test_upload_copies_known_replay_chunks_inside_the_store(run_copy: tuple[str, RemoteCheckpoints]) -> None:
    url, remote = run_copy
    _, last = remote.entries()
    chunks = [n for n in last.manifest["files"] if n.startswith("replay_buffer.0")]
    assert chunks, "the tiny run should have sealed a replay chunk by episode 8"
    twin = remote.fetch(last.name).rename(remote.mirror / "checkpoint_ep8_20990101_000000")
    put: list[str] = []
    original = remote.fs.put_file
    remote.fs.put_file = lambda lpath, rpath, **kw: (put.append(Path(lpath).name), original(lpath, rpath, **kw))[1]
    assert remote.upload(twin, previous=last.name) == join_url(url, twin.name)
    assert put and not set(chunks) & set(put)  # the chunks were copied in the bucket, everything else uploaded
    assert remote.entry(twin.name).valid
