"""``fleetmarl ckpt list|inspect|verify|prune``: look after checkpoints without writing Python.

Each handler takes the parsed arguments and returns the exit status (0 fine, 1 something is wrong
with a checkpoint); bad input raises :class:`UserError`/:class:`CheckpointError`, which the CLI prints
as one ``fleetmarl: ...`` line with exit status 2. ``prune`` is the only action that deletes: it holds the
folder's :class:`TrainingLock` meanwhile (a live trainer there: exit 2, nothing deleted); the others only
read and never take the lock.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetmarl.checkpoint.discovery import cleanup_incomplete
from fleetmarl.checkpoint.disk import format_bytes
from fleetmarl.checkpoint.layout import (
    CONFIG_INFO_FILE,
    DEFAULT_CHECKPOINTS_DIR,
    TIMESTAMP_FORMAT,
    checkpoint_folders,
    looks_like_checkpoint,
    parse_checkpoint_name,
    temp_folders,
)
from fleetmarl.checkpoint.lock import TrainingLock
from fleetmarl.checkpoint.manifest import manifest_notes, read_manifest, verify_checkpoint
from fleetmarl.checkpoint.remote import INCOMPLETE, RemoteEntry, is_url, local_checkpoint, open_remote
from fleetmarl.checkpoint.retention import checkpoint_score, prune_checkpoints
from fleetmarl.errors import CheckpointError, UserError


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``ckpt`` command and its four actions to the CLI's subparsers."""
    ckpt = subparsers.add_parser("ckpt", help="list, inspect, verify or prune checkpoints",
                                 description="Look after checkpoint folders (checkpoint_ep*_YYYYmmdd_HHMMSS).")
    actions = ckpt.add_subparsers(dest="ckpt_command", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="one line per checkpoint: episode, time, size, reward, status")
    listing.add_argument("dir", nargs="?", default=DEFAULT_CHECKPOINTS_DIR, metavar="DIR",
                         help=f"folder of checkpoints or a URL (s3://bucket/prefix); default ./{DEFAULT_CHECKPOINTS_DIR}")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--verify", action="store_true", help="also check every file's sha256 (slower)")
    listing.set_defaults(handler=run_list)

    inspect = actions.add_parser("inspect", help="show a checkpoint's config_info.txt and manifest")
    inspect.add_argument("path", metavar="PATH", help="a checkpoint folder or its URL")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=run_inspect)

    verify = actions.add_parser("verify", help="check sizes and sha256 of every file and the manifest's own "
                                               "checksum; exit 1 if anything is wrong")
    verify.add_argument("path", metavar="PATH|DIR", help="a checkpoint folder or a folder of checkpoints, or their URL")
    verify.set_defaults(handler=run_verify)

    prune = actions.add_parser("prune", help="delete old checkpoints, keeping the last K and/or the best K "
                                             "(refused while a trainer holds the folder)")
    prune.add_argument("dir", nargs="?", default=DEFAULT_CHECKPOINTS_DIR, metavar="DIR",
                       help=f"folder of checkpoints or a URL (s3://bucket/prefix); default ./{DEFAULT_CHECKPOINTS_DIR}")
    prune.add_argument("--keep", type=int, default=0, metavar="K", help="keep the newest K checkpoints")
    prune.add_argument("--keep-best", type=int, default=0, metavar="K",
                       help="also keep the K with the best evaluation (else recent) reward")
    prune.add_argument("--run-id", default=None, help="only prune checkpoints of this run line (see `ckpt list`)")
    prune.add_argument("--dry-run", action="store_true", help="show what would be deleted, delete nothing")
    prune.set_defaults(handler=run_prune)
    return ckpt


# ---------------------------------------------------------------------- list
def describe(path: Path, *, check_hashes: bool = False) -> dict[str, Any]:
    """One checkpoint folder as a row: what the name and manifest say, plus why it is invalid if so."""
    parsed = parse_checkpoint_name(path.name)
    problems = verify_checkpoint(path, check_hashes=check_hashes)
    manifest = read_manifest(path) if _readable(path) else {}
    return {
        "name": path.name,
        "path": str(path),
        "episode": parsed.episode if parsed else None,
        "time": _pretty_time(parsed.timestamp) if parsed else None,
        "bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
        "reward": checkpoint_score(manifest),
        "eval_reward": manifest.get("eval_reward"),
        "recent_reward": manifest.get("recent_reward"),
        "run_id": manifest.get("run_id"),
        "valid": not problems,
        "problems": problems,
    }


def _pretty_time(stamp: str) -> str:
    try:
        return datetime.strptime(stamp, TIMESTAMP_FORMAT).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist; pass the CHECKPOINTS_DIR of your run")
    return path


def describe_remote(entry: RemoteEntry) -> dict[str, Any]:
    """A checkpoint at a URL as the same row :func:`describe` gives (sizes checked, hashes when downloaded)."""
    parsed = parse_checkpoint_name(entry.name)
    manifest = entry.manifest or {}
    return {
        "name": entry.name, "path": entry.url, "episode": parsed.episode if parsed else None,
        "time": _pretty_time(parsed.timestamp) if parsed else None, "bytes": sum(entry.sizes.values()),
        "reward": checkpoint_score(manifest) if manifest else None, "eval_reward": manifest.get("eval_reward"),
        "recent_reward": manifest.get("recent_reward"), "run_id": manifest.get("run_id"),
        "valid": entry.valid, "problems": list(entry.problems),
    }


def _remote_rows(url: str, verify: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(committed or damaged checkpoints, unfinished uploads) at a URL; ``verify`` downloads and hashes."""
    remote = open_remote(url)
    rows, leftovers = [], []
    for entry in remote.entries():
        row = describe_remote(entry)
        if entry.incomplete:
            leftovers.append({"name": row["name"], "path": row["path"], "valid": False, "problems": [INCOMPLETE]})
            continue
        if verify and entry.valid:
            try:
                remote.fetch(entry.name, reuse_local=False)
            except CheckpointError as exc:
                row["valid"], row["problems"] = False, [str(exc)]
        rows.append(row)
    return rows, leftovers


def run_list(args: argparse.Namespace) -> int:
    if is_url(args.dir):
        root: Path | str = args.dir
        rows, leftovers = _remote_rows(args.dir, args.verify)
    else:
        root = _existing_dir(args.dir)
        rows = [describe(path, check_hashes=args.verify) for path, _ in checkpoint_folders(root)]
        leftovers = [{"name": p.name, "path": str(p), "valid": False,
                      "problems": ["unfinished save or delete (removed at the next training start)"]}
                     for p in temp_folders(root)]
    if args.json:
        print(json.dumps(rows + leftovers, indent=2, ensure_ascii=False))
        return 0
    if not rows and not leftovers:
        print(f"no checkpoints in {root}")
        return 0
    table = [("EPISODE", "SAVED", "SIZE", "REWARD", "RUN", "STATUS", "NAME")]
    for row in rows:
        reward = "-" if row["reward"] is None else f"{row['reward']:.2f}" + (" (eval)" if row["eval_reward"] is not None else "")
        status = "ok" if row["valid"] else "INVALID: " + "; ".join(row["problems"])
        table.append((str(row["episode"]), row["time"], format_bytes(row["bytes"]), reward,
                      row["run_id"] or "-", status, row["name"]))
    for row in leftovers:
        table.append(("-", "-", "-", "-", "-", "INCOMPLETE: " + row["problems"][0], row["name"]))
    _print_table(table)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


# ---------------------------------------------------------------------- inspect
def run_inspect(args: argparse.Namespace) -> int:
    path = Path(local_checkpoint(args.path))  # a URL is downloaded (and verified) into the local cache
    if not path.is_dir() or not looks_like_checkpoint(path):
        raise CheckpointError(f"{path} is not a checkpoint folder; list them with `fleetmarl ckpt list`")
    problems = verify_checkpoint(path)
    info_file = path / CONFIG_INFO_FILE
    info = info_file.read_text(encoding="utf-8", errors="replace") if info_file.is_file() else None
    manifest = read_manifest(path) if _readable(path) else None
    sharing = shared_files(path, list(manifest["files"]) if manifest else [])
    if args.json:
        print(json.dumps({"path": str(path), "valid": not problems, "problems": problems,
                          "manifest": manifest, "shared": sharing, "config_info": info}, indent=2, ensure_ascii=False))
        return 0 if not problems else 1
    print(info.rstrip("\n") if info is not None else f"(no {CONFIG_INFO_FILE})")
    print()
    print(f"MANIFEST ({path / 'MANIFEST.json'}):")
    if manifest is None:
        print("  (missing or unreadable)")
    else:
        for key, value in manifest.items():
            if key != "files":
                print(f"  {key}: {value}")
        print("  files:")
        own = shared_bytes = 0
        for name, entry in manifest["files"].items():
            others = sharing.get(name, [])
            note = f"  shared with {', '.join(others)}" if others else ""
            print(f"    {name}  {format_bytes(entry['bytes'])}  sha256 {entry['sha256'][:16]}…{note}")
            if others:
                shared_bytes += entry["bytes"]
            else:
                own += entry["bytes"]
        print(f"  disk: {format_bytes(own + shared_bytes)} in all; {format_bytes(shared_bytes)} hard-linked with "
              f"other checkpoints in {path.parent} (stored once), {format_bytes(own)} its own")
    print()
    print("status: ok" if not problems else "status: INVALID: " + "; ".join(problems))
    return 0 if not problems else 1


def shared_files(path: Path, names: list[str]) -> dict[str, list[str]]:
    """For each file of a checkpoint that is hard-linked elsewhere, the sibling checkpoints holding the
    same file (same inode), or ``["N other links"]`` when those are outside ``path.parent``."""
    inodes: dict[tuple[int, int], str] = {}
    linked = {}
    for name in names:
        try:
            info = (path / name).stat()
        except OSError:
            continue
        if info.st_nlink > 1:
            inodes[(info.st_dev, info.st_ino)] = name
            linked[name] = info.st_nlink - 1
    found: dict[str, list[str]] = {name: [] for name in linked}
    if inodes:
        for folder, _ in checkpoint_folders(path.parent):
            if folder.resolve() == path.resolve():
                continue
            for file in folder.iterdir():
                try:
                    info = file.stat()
                except OSError:
                    continue
                name = inodes.get((info.st_dev, info.st_ino))
                if name is not None:
                    found[name].append(folder.name)
    for name, count in linked.items():
        outside = count - len(found[name])
        if outside > 0:
            found[name].append(f"{outside} other link{'s' if outside > 1 else ''}")
    return found


def _readable(path: Path) -> bool:
    try:
        read_manifest(path)
    except CheckpointError:
        return False
    return True


# ---------------------------------------------------------------------- verify
def run_verify(args: argparse.Namespace) -> int:
    if is_url(args.path):
        return _verify_remote(args.path)
    path = Path(args.path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; pass a checkpoint folder or a folder of checkpoints")
    if looks_like_checkpoint(path):
        targets = [path]
    else:
        targets = [p for p, _ in checkpoint_folders(path)]
        if not targets:
            raise UserError(f"{path} holds no checkpoint_ep* folders; pass a checkpoint folder or CHECKPOINTS_DIR")
    bad = 0
    for target in targets:
        problems = verify_checkpoint(target)
        if problems:
            bad += 1
            for problem in problems:
                print(f"BAD {target}: {problem}")
        else:
            notes = manifest_notes(target)
            print(f"ok  {target}" + "".join(f"; note: {note}" for note in notes))
    if bad:
        print(f"{bad} of {len(targets)} checkpoint(s) failed verification")
    return 1 if bad else 0


def _verify_remote(url: str) -> int:
    """Download each committed checkpoint at ``url`` (or the one it names) and check every hash."""
    remote = open_remote(url)
    entries = remote.entries()
    name = url.rstrip("/").rpartition("/")[2]
    if parse_checkpoint_name(name) is not None:
        entries = [remote.entry(name)]
    if not entries:
        raise UserError(f"{url} holds no checkpoint_ep* prefixes; pass a checkpoint URL or CHECKPOINTS_DIR")
    bad = 0
    for entry in entries:
        problems = list(entry.problems)
        if not problems:
            try:
                remote.fetch(entry.name, reuse_local=False)
            except CheckpointError as exc:
                problems = [str(exc)]
        bad += bool(problems)
        print(f"ok  {entry.url}" if not problems else "\n".join(f"BAD {entry.url}: {p}" for p in problems))
    if bad:
        print(f"{bad} of {len(entries)} checkpoint(s) failed verification")
    return 1 if bad else 0


# ---------------------------------------------------------------------- prune
PRUNE_LOCK_OWNER = "ckpt prune"


def run_prune(args: argparse.Namespace) -> int:
    """Delete by the retention rule, holding the folder's :class:`TrainingLock` while deleting (a live
    trainer there: exit 2 naming it, nothing deleted). ``--dry-run`` only reads, so it takes no lock."""
    if args.keep < 0 or args.keep_best < 0:
        raise UserError("--keep and --keep-best must not be negative")
    if args.keep == 0 and args.keep_best == 0:
        raise UserError("say what to keep: --keep K (newest K) and/or --keep-best K (best K by reward)")
    remote = open_remote(args.dir) if is_url(args.dir) else None
    # a URL's trainer locks its local mirror (this host's trainers are seen; other hosts' are not)
    root = remote.mirror if remote is not None else _existing_dir(args.dir)
    lock = None if args.dry_run else TrainingLock(root, owner=PRUNE_LOCK_OWNER).acquire()
    try:
        if remote is not None:
            removed: list = remote.prune(keep_last=args.keep, keep_best=args.keep_best, run_id=args.run_id,
                                         dry_run=args.dry_run)
        else:
            removed = prune_checkpoints(root, keep_last=args.keep, keep_best=args.keep_best, run_id=args.run_id,
                                        dry_run=args.dry_run)
            if not args.dry_run:
                cleanup_incomplete(root)
    finally:
        if lock is not None:
            lock.release()
    verb = "would delete" if args.dry_run else "deleted"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} checkpoint(s); invalid folders are never pruned (see `fleetmarl ckpt list`)")
    return 0
