"""MANIFEST.json checks itself: ``manifest_sha256`` over its canonical content catches any edit of it,
``ckpt verify`` and ``--resume latest`` treat an edited manifest like a corrupt file, and manifests
written before the field existed still load and verify."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmarl.checkpoint import find_latest_checkpoint, read_manifest, resolve_resume, verify_checkpoint
from fleetmarl.checkpoint.layout import MANIFEST_FILE
from fleetmarl.checkpoint.manifest import (
    CHECKSUM_FIELD,
    manifest_checksum,
    manifest_notes,
    manifest_problem,
    write_manifest,
)
from fleetmarl.errors import CheckpointError
from fleetmarl.trainer import train
from tests.test_checkpoint_incremental import ENV, OLD_CHECKPOINT, config, folders
from tests.test_checkpoint_ops import save

ALTERED = f"{MANIFEST_FILE} was altered after it was written"


def manifest_of(path: Path) -> dict:
    return json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))


def rewrite(path: Path, manifest: dict, **dump_options) -> None:
    """Edit a manifest the way a person or a script would: plain JSON, no new checksum."""
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, **dump_options), encoding="utf-8")


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetmarl.cli", *argv], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


# ---------------------------------------------------------------------- writer and reader agree
def test_a_saved_manifest_carries_the_checksum_of_its_own_content(tmp_path: Path) -> None:
    path = save(tmp_path, 200)
    manifest = manifest_of(path)
    assert manifest[CHECKSUM_FIELD] == manifest_checksum(manifest)
    assert len(manifest[CHECKSUM_FIELD]) == 64 and verify_checkpoint(path) == [] and manifest_notes(path) == []
    assert not list(path.glob("*.tmp*")) and not list(tmp_path.glob(".tmp-*"))  # no half-written leftovers


def test_the_checksum_ignores_formatting_and_key_order_but_not_values(tmp_path: Path) -> None:
    path = save(tmp_path, 200)
    manifest = manifest_of(path)
    rewrite(path, dict(reversed(list(manifest.items()))), separators=(",", ":"))  # same content, other text
    assert verify_checkpoint(path) == []
    manifest["recent_reward"] += 1e-9
    rewrite(path, manifest, indent=2)
    assert verify_checkpoint(path)[0].startswith(ALTERED)


@pytest.mark.parametrize("edit", ["reward", "run_id", "file_hash", "new_key", "dropped_key", "checksum", "duplicate"])
def test_any_edit_of_the_manifest_is_caught(tmp_path: Path, edit: str) -> None:
    path = save(tmp_path, 200)
    manifest = manifest_of(path)
    if edit == "reward":
        manifest["recent_reward"] += 1.0
    elif edit == "run_id":
        manifest["run_id"] = "someone-else"
    elif edit == "file_hash":
        manifest["files"]["agent_0.pth"]["sha256"] = "0" * 64  # with the file changed to match, it would load
    elif edit == "new_key":
        manifest["eval_reward"] = 99.0
    elif edit == "dropped_key":
        del manifest["parent"]
    elif edit == "checksum":
        manifest[CHECKSUM_FIELD] = "0" * 64
    if edit == "duplicate":  # a second "recent_reward" further down: JSON readers take the last one
        text = (path / MANIFEST_FILE).read_text(encoding="utf-8").rstrip().rstrip("}")
        (path / MANIFEST_FILE).write_text(text + ',\n  "recent_reward": 1000.0\n}\n', encoding="utf-8")
    else:
        rewrite(path, manifest, indent=2, ensure_ascii=False)
    assert json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))  # still valid JSON
    [problem] = verify_checkpoint(path)
    assert problem.startswith(ALTERED)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is not valid: {ALTERED}"):
        read_manifest(path)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def base_manifest(tmp_path_factory) -> dict:
    manifest = manifest_of(save(tmp_path_factory.mktemp("base"), 200))
    del manifest[CHECKSUM_FIELD]
    return manifest


@settings(max_examples=60, deadline=None)
@given(meta=st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k != CHECKSUM_FIELD), _JSON, max_size=5))
def test_whatever_the_writer_writes_the_reader_accepts(tmp_path_factory, base_manifest: dict, meta: dict) -> None:
    folder = tmp_path_factory.mktemp("m")
    manifest = {**meta, **base_manifest}
    manifest["extra"] = (1, 2.5, math.inf, "é")  # a tuple, an infinity, a non-ASCII string
    write_manifest(folder, manifest)
    written = manifest_of(folder)
    assert manifest_problem(written) is None and written[CHECKSUM_FIELD] == manifest_checksum(written)


# ---------------------------------------------------------------------- the command line
def test_ckpt_verify_fails_naming_the_checkpoint_with_an_altered_manifest(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    good, edited = save(root, 200), save(root, 400)
    manifest = manifest_of(edited)
    manifest["recent_reward"] += 1.0
    rewrite(edited, manifest, indent=2, ensure_ascii=False)

    one = cli("ckpt", "verify", str(edited), cwd=tmp_path)
    assert one.returncode == 1, one.stdout + one.stderr
    bad = [line for line in one.stdout.splitlines() if line.startswith("BAD")]
    assert bad == [f"BAD {edited}: {ALTERED} (its {CHECKSUM_FIELD} does not match its content); restore it or "
                   "resume from another checkpoint"]
    both = cli("ckpt", "verify", str(root), cwd=tmp_path)
    assert both.returncode == 1 and f"ok  {good}" in both.stdout.splitlines()
    assert [line for line in both.stdout.splitlines() if line.startswith("BAD")] == bad
    listing = cli("ckpt", "list", str(root), cwd=tmp_path)
    assert listing.returncode == 0 and "INVALID: " + ALTERED in listing.stdout


def test_resume_latest_skips_the_altered_checkpoint_and_takes_the_previous(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    older, newest = save(root, 200), save(root, 400)
    manifest = manifest_of(newest)
    manifest["recent_reward"] += 1.0
    rewrite(newest, manifest, indent=2)
    latest, skipped = resolve_resume(root, "latest")
    assert latest == older and [(p, why.split(" (")[0]) for p, why in skipped] == [(newest, ALTERED)]
    with pytest.raises(CheckpointError, match=f"checkpoint {newest} is damaged .*{ALTERED}.*latest valid is {older}"):
        resolve_resume(root, newest)


def test_training_resumes_from_the_checkpoint_before_an_altered_one(tmp_path: Path) -> None:
    train(config(tmp_path, NUM_EPISODES=12), log=lambda m: None)
    *_, previous, newest = folders(tmp_path / "checkpoints")
    manifest = manifest_of(newest)
    manifest["recent_reward"] += 1.0
    rewrite(newest, manifest, indent=2, ensure_ascii=False)
    messages: list[str] = []
    train(config(tmp_path, NUM_EPISODES=16), resume="latest", log=messages.append)
    assert any(m.startswith(f"⚠ skipping broken checkpoint {newest}: {ALTERED}") for m in messages), messages
    assert any(f"resuming from {previous}, episode 8" in m for m in messages), messages


# ---------------------------------------------------------------------- manifests from before the field
def test_an_old_manifest_without_the_checksum_still_loads_and_verifies(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    old = shutil.copytree(OLD_CHECKPOINT, root / OLD_CHECKPOINT.name)
    assert CHECKSUM_FIELD not in manifest_of(old)
    assert verify_checkpoint(old) == [] and read_manifest(old)["episode"] == 4
    assert find_latest_checkpoint(root) == (old, [])
    assert manifest_notes(old) and "no manifest_sha256" in manifest_notes(old)[0]
    out = cli("ckpt", "verify", str(old), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [f"ok  {old}; note: {manifest_notes(old)[0]}"]


def test_the_fixtures_in_tests_data_still_verify() -> None:
    data = Path(__file__).parent / "data"
    for folder in (OLD_CHECKPOINT, *sorted((data / "main_9b4b01c").glob("checkpoint_ep*"))):
        assert verify_checkpoint(folder) == [], folder
