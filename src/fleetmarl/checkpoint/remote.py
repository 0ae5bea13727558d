"""Checkpoints on object storage (``s3://bucket/prefix``, ``file://...``, any fsspec URL) with the disk's rules.

Object stores have no atomic folder rename, so the commit point is the manifest itself: a checkpoint's
files are uploaded under ``<url>/checkpoint_ep{N}_{stamp}/``, each checked against the manifest (size,
and MD5 where the store's ETag is one), and ``MANIFEST.json`` is uploaded last. A prefix without a
manifest is an unfinished upload: ``latest`` ignores it, ``ckpt list`` shows it as incomplete and the
next training run deletes it. Deleting a checkpoint removes its manifest first, so a half-deleted one
is never taken for a valid one.

Writing stays local: the trainer saves into a *mirror* folder (a local cache, see :func:`mirror_folder`)
with the ordinary atomic writer, then the same background job uploads the committed folder. Reading
downloads a checkpoint into the mirror, verifies every hash, and hands the local folder to the existing
reader. Replay chunks that the previous checkpoint already holds are copied inside the store (no upload),
the remote counterpart of hard-linking them on disk. Credentials and endpoint come from the standard AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``), read by s3fs/botocore.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import posixpath
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetmarl.checkpoint.layout import (
    MANIFEST_FILE,
    checkpoint_folders,
    parse_checkpoint_name,
    parse_replay_chunk,
    temp_name,
)
from fleetmarl.checkpoint.manifest import manifest_problem, verify_checkpoint
from fleetmarl.checkpoint.retention import Candidate, checkpoint_score, select_for_deletion
from fleetmarl.checkpoint.safe_io import CheckpointSaveError, fsync_dir
from fleetmarl.errors import CheckpointError, UserError

CACHE_ENV = "FLEETMARL_CACHE_DIR"
"""Overrides where remote checkpoints are staged and downloaded (default ``$XDG_CACHE_HOME/fleetmarl``)."""
S3_EXTRA = 'pip install -e ".[s3]"'
INCOMPLETE = f"no {MANIFEST_FILE}: the upload did not finish (removed at the next training start)"
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_SERIAL = itertools.count(1)


def is_url(location: str | os.PathLike[str] | None) -> bool:
    """True for ``scheme://...`` (two letters or more, so a Windows drive is still a path)."""
    return location is not None and bool(_URL_RE.match(str(location)))


def join_url(url: str, *names: str) -> str:
    """``url/name/...`` without doubled slashes."""
    return "/".join([url.rstrip("/"), *(n.strip("/") for n in names)])


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system serving ``url`` and the path inside it; one-line error naming the extra."""
    try:
        import fsspec
    except ImportError:
        raise UserError(f"{url} is a URL, which needs fsspec; {S3_EXTRA}") from None
    protocol = url.split("://", 1)[0].lower()
    try:
        return fsspec.core.url_to_fs(url, **_storage_options(protocol))
    except ImportError as exc:
        raise UserError(f"{url} needs a package that is not installed ({exc}); {S3_EXTRA}") from None
    except ValueError as exc:
        raise UserError(f"{url}: {protocol}:// is not a storage fsspec knows ({exc}); use s3://, file://, ...") from None


def _storage_options(protocol: str) -> dict[str, Any]:
    """s3: the endpoint from AWS_ENDPOINT_URL (MinIO, moto, other S3 compatibles) and no listing cache,
    because another process (a resumed run, ``ckpt list``) must see what was just uploaded."""
    if protocol not in ("s3", "s3a"):
        return {}
    options: dict[str, Any] = {"use_listings_cache": False}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def mirror_folder(url: str) -> Path:
    """The local folder that stages uploads to ``url`` and caches its downloads (one per URL)."""
    root = os.environ.get(CACHE_ENV) or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "fleetmarl")
    protocol, _, rest = url.partition("://")
    parts = [re.sub(r"[^A-Za-z0-9_.=-]+", "_", p) for p in rest.split("/") if p not in ("", ".", "..")]
    folder = Path(root).expanduser() / "remote" / protocol.lower()
    return folder.joinpath(*parts)


def split_checkpoint_url(url: str) -> tuple[str, str | None]:
    """``(folder url, checkpoint name)`` when the URL names one checkpoint, else ``(url, None)``."""
    base, _, name = url.rstrip("/").rpartition("/")
    return (base, name) if parse_checkpoint_name(name) is not None else (url.rstrip("/"), None)


@dataclass
class RemoteEntry:
    """One checkpoint prefix: its files' sizes and, if committed, its manifest."""

    name: str
    url: str
    sizes: dict[str, int]
    manifest: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.manifest is not None and not self.problems

    @property
    def incomplete(self) -> bool:
        return MANIFEST_FILE not in self.sizes


class RemoteCheckpoints:
    """A folder of checkpoints at a URL, and its local mirror."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)
        self.root = self.root.rstrip("/")
        self.mirror = mirror_folder(self.url)

    def __repr__(self) -> str:
        return f"RemoteCheckpoints({self.url!r})"

    # ------------------------------------------------------------------ reading what is there
    def entries(self) -> list[RemoteEntry]:
        """Every prefix named like a checkpoint, oldest first, with what its manifest says (sizes only)."""
        found = []
        for name in self._child_names(self.root):
            parsed = parse_checkpoint_name(name)
            if parsed is not None:
                found.append((parsed, self.entry(name)))
        found.sort(key=lambda item: item[0])
        return [entry for _, entry in found]

    def entry(self, name: str) -> RemoteEntry:
        """One checkpoint prefix: its files, its manifest, and the problems that make it unusable."""
        prefix = posixpath.join(self.root, name)
        sizes = {posixpath.basename(info["name"].rstrip("/")): int(info.get("size") or 0)
                 for info in self._listing(prefix) if info.get("type") == "file"}
        entry = RemoteEntry(name, join_url(self.url, name), sizes, None)
        if MANIFEST_FILE not in sizes:
            entry.problems.append(INCOMPLETE)
            return entry
        try:
            manifest = json.loads(self.fs.cat_file(posixpath.join(prefix, MANIFEST_FILE)))
        except (OSError, ValueError) as exc:
            entry.problems.append(f"{MANIFEST_FILE} is unreadable ({type(exc).__name__})")
            return entry
        problem = manifest_problem(manifest)
        if problem is not None:
            entry.problems.append(problem)
            return entry
        entry.manifest = manifest
        for file, expected in manifest["files"].items():
            if file not in sizes:
                entry.problems.append(f"missing {file}")
            elif sizes[file] != expected["bytes"]:
                entry.problems.append(f"{file} has {sizes[file]} bytes, the manifest says {expected['bytes']}")
        return entry

    def latest(self) -> tuple[RemoteEntry | None, list[tuple[str, str]]]:
        """``(newest committed checkpoint, [(newer skipped url, why)])``; unfinished uploads are skipped."""
        skipped = []
        for entry in reversed(self.entries()):
            if entry.valid:
                return entry, skipped
            skipped.append((entry.url, "; ".join(entry.problems)))
        return None, skipped

    # ------------------------------------------------------------------ downloading
    def fetch(self, name: str, *, reuse_local: bool = True) -> Path:
        """Download checkpoint ``name`` into the mirror and verify every hash; return the local folder,
        ready for the ordinary reader. ``reuse_local`` keeps a local copy with the same manifest and
        links replay chunks already downloaded; off, every byte comes from the store (what verify checks)."""
        entry = self.entry(name)
        if not entry.valid:
            kind = "incomplete" if entry.incomplete else "damaged"
            raise CheckpointError(f"checkpoint {entry.url} is {kind} ({'; '.join(entry.problems)}); "
                                  f"list the valid ones with `fleetmarl ckpt list {self.url}`")
        assert entry.manifest is not None
        local = self.mirror / name
        manifest_bytes = self.fs.cat_file(posixpath.join(self.root, name, MANIFEST_FILE))
        if reuse_local and _same_manifest(local, manifest_bytes) and not verify_checkpoint(local, check_hashes=False):
            return local
        self.mirror.mkdir(parents=True, exist_ok=True)
        temp = self.mirror / temp_name(name, next(_SERIAL))
        temp.mkdir()
        try:
            reusable = self._local_chunks() if reuse_local else {}
            for file, expected in entry.manifest["files"].items():
                source = reusable.get((file, expected["sha256"]))
                if source is None or not _link_or_copy(source, temp / file):
                    self.fs.get_file(posixpath.join(self.root, name, file), str(temp / file))
            (temp / MANIFEST_FILE).write_bytes(manifest_bytes)
            problems = verify_checkpoint(temp)
            if problems:
                raise CheckpointError(f"checkpoint {entry.url} does not match its manifest ({problems[0]}); "
                                      f"run `fleetmarl ckpt verify {entry.url}`")
            _replace(temp, local)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return local

    def resolve_resume(self, spec: str) -> tuple[Path, list[tuple[str, str]]]:
        """``--resume latest`` (newest committed checkpoint at the URL) or a checkpoint name, downloaded."""
        if spec == "latest":
            entry, skipped = self.latest()
            if entry is None:
                why = f" ({len(skipped)} unusable, newest {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
                raise CheckpointError(f"no valid checkpoint to resume in {self.url}{why}; "
                                      "remove --resume to start a new run")
            return self.fetch(entry.name), skipped
        return self.fetch(spec), []

    def is_latest_of_run(self, name: str, run_id: str) -> bool:
        """True when ``name`` is the newest committed checkpoint of run line ``run_id`` at the URL."""
        for entry in reversed(self.entries()):
            if entry.valid and entry.manifest is not None and entry.manifest.get("run_id") == run_id:
                return entry.name == name
        return False

    # ------------------------------------------------------------------ writing
    def upload(self, local: Path, previous: str | None = None) -> str:
        """Upload a committed local checkpoint: every file, each checked, then ``MANIFEST.json``.

        Replay chunks that checkpoint ``previous`` (a name at this URL) holds with the same hash are
        copied inside the store instead of uploaded. Returns the checkpoint's URL; raises a one-line
        :class:`CheckpointSaveError` on any failure (the local checkpoint stays committed).
        """
        target = posixpath.join(self.root, local.name)
        manifest_bytes = (local / MANIFEST_FILE).read_bytes()
        manifest = json.loads(manifest_bytes)
        try:
            if self.fs.exists(posixpath.join(target, MANIFEST_FILE)):
                if self.fs.cat_file(posixpath.join(target, MANIFEST_FILE)) == manifest_bytes:
                    return join_url(self.url, local.name)  # uploaded before (a retried job)
                raise CheckpointSaveError(f"{join_url(self.url, local.name)} already holds another checkpoint; "
                                          "is a second trainer writing to this URL?")
            self.fs.makedirs(target, exist_ok=True)
            before = self._previous_files(previous)
            for file, expected in manifest["files"].items():
                destination = posixpath.join(target, file)
                if parse_replay_chunk(file) and before.get(file) == expected:
                    self.fs.copy(posixpath.join(self.root, previous or "", file), destination)
                else:
                    self.fs.put_file(str(local / file), destination)
                self._check_uploaded(destination, expected, local / file)
            self.fs.pipe_file(posixpath.join(target, MANIFEST_FILE), manifest_bytes)  # the commit
            self._check_uploaded(posixpath.join(target, MANIFEST_FILE), {"bytes": len(manifest_bytes)}, None)
        except CheckpointSaveError:
            raise
        except Exception as exc:  # network, credentials, quota: one line; the run goes on
            raise CheckpointSaveError(f"could not upload checkpoint {local.name} to {self.url}: "
                                      f"{type(exc).__name__}: {str(exc)[:200]} (check AWS_* variables and the "
                                      f"bucket); the local copy {local} is complete") from exc
        return join_url(self.url, local.name)

    def _previous_files(self, previous: str | None) -> dict[str, dict[str, Any]]:
        if previous is None:
            return {}
        entry = self.entry(previous)
        return {} if not entry.valid or entry.manifest is None else entry.manifest["files"]

    def _check_uploaded(self, destination: str, expected: dict[str, Any], local: Path | None) -> None:
        """Size always; MD5 too when the store's ETag is a plain MD5 (single-part upload, no KMS)."""
        info = self.fs.info(destination)
        if int(info.get("size") or 0) != expected["bytes"]:
            raise CheckpointSaveError(f"upload of {destination} is {info.get('size')} bytes, expected "
                                      f"{expected['bytes']}; the checkpoint was not committed")
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        if local is not None and re.fullmatch(r"[0-9a-f]{32}", etag) and _md5(local) != etag:
            raise CheckpointSaveError(f"upload of {destination} differs from {local} (MD5); the checkpoint was "
                                      "not committed")

    def delete(self, name: str) -> None:
        """Remove a checkpoint: its manifest first (from then on it is merely incomplete), then the rest."""
        prefix = posixpath.join(self.root, name)
        manifest = posixpath.join(prefix, MANIFEST_FILE)
        if self.fs.exists(manifest):
            self.fs.rm_file(manifest)
        if self.fs.exists(prefix):
            self.fs.rm(prefix, recursive=True)

    def prune(self, *, keep_last: int = 0, keep_best: int = 0, run_id: str | None = None,
              protect: Iterable[str] = (), dry_run: bool = False) -> list[str]:
        """The retention rule of :func:`~fleetmarl.checkpoint.retention.prune_checkpoints` at the URL:
        only committed checkpoints (of ``run_id``'s line when given); returns the URLs deleted."""
        found = [Candidate(Path(e.name), parse_checkpoint_name(e.name), e.manifest.get("run_id"),  # type: ignore[arg-type]
                           checkpoint_score(e.manifest))
                 for e in self.entries()
                 if e.valid and e.manifest is not None and (run_id is None or e.manifest.get("run_id") == run_id)]
        doomed = select_for_deletion(found, keep_last, keep_best, [Path(p) for p in protect])
        if not dry_run:
            for candidate in doomed:
                self.delete(candidate.path.name)
        return [join_url(self.url, c.path.name) for c in doomed]

    def cleanup_incomplete(self) -> list[str]:
        """Delete unfinished uploads (checkpoint prefixes without a manifest); return their URLs.

        Like the lock on disk, this assumes one trainer per URL: another machine's upload in progress
        would look unfinished too.
        """
        removed = []
        for entry in self.entries():
            if entry.incomplete:
                self.fs.rm(posixpath.join(self.root, entry.name), recursive=True)
                removed.append(entry.url)
        return removed

    # ------------------------------------------------------------------ helpers
    def _listing(self, path: str) -> list[dict[str, Any]]:
        self.fs.invalidate_cache(path)
        try:
            return list(self.fs.ls(path, detail=True))
        except FileNotFoundError:
            return []

    def _child_names(self, path: str) -> list[str]:
        return [posixpath.basename(info["name"].rstrip("/")) for info in self._listing(path)
                if info.get("type") == "directory"]

    def _local_chunks(self) -> dict[tuple[str, str], Path]:
        """Replay chunks already in the mirror, by (name, sha256), so a download does not fetch them again."""
        found: dict[tuple[str, str], Path] = {}
        for folder, _ in checkpoint_folders(self.mirror):
            try:
                files = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            for file, entry in files.items():
                if parse_replay_chunk(file) and isinstance(entry, dict):
                    found.setdefault((file, str(entry.get("sha256"))), folder / file)
        return found


# ---------------------------------------------------------------------- entry points for commands
def open_remote(url: str) -> RemoteCheckpoints:
    """A folder of checkpoints at ``url`` (one-line error when the URL cannot be served)."""
    return RemoteCheckpoints(split_checkpoint_url(url)[0])


def locate(url: str) -> tuple[RemoteCheckpoints, str | None]:
    """``(folder of checkpoints, checkpoint name or None)`` for a URL. A checkpoint is a prefix named
    ``checkpoint_ep*`` or one holding a manifest (a sweep's ``checkpoint_00000N`` that Tune stored)."""
    folder, name = split_checkpoint_url(url)
    if name is None:
        remote = RemoteCheckpoints(folder)
        if "/" in remote.root and remote.fs.exists(posixpath.join(remote.root, MANIFEST_FILE)):
            folder, name = folder.rsplit("/", 1)
    return RemoteCheckpoints(folder), name


def local_checkpoint(location: str) -> str:
    """A local path for what ``eval``/``compare``/``plot``/``ckpt inspect`` read: a path stays as it is; a
    checkpoint URL is downloaded and verified; a folder URL gives the mirror holding its newest valid one."""
    if not is_url(location):
        return location
    remote, name = locate(location)
    if name is not None:
        return str(remote.fetch(name))
    entry, _ = remote.latest()
    if entry is None:
        raise CheckpointError(f"no valid checkpoint in {location}; list them with `fleetmarl ckpt list {location}`")
    remote.fetch(entry.name)
    return str(remote.mirror)


def resolve_remote_resume(remote: RemoteCheckpoints | None, spec: str) -> tuple[Path, list[tuple[str, str]]]:
    """``--resume`` when CHECKPOINTS_DIR and/or the spec is a URL: the local folder to resume from."""
    if is_url(spec):
        source, name = locate(spec)
        return source.resolve_resume(name or "latest")
    if spec == "latest" and remote is not None:
        return remote.resolve_resume("latest")
    if remote is not None and parse_checkpoint_name(spec) is not None and not Path(spec).exists():
        return remote.resolve_resume(spec)  # a bare checkpoint name at the URL
    return Path(spec), []


def _same_manifest(local: Path, manifest_bytes: bytes) -> bool:
    try:
        return (local / MANIFEST_FILE).read_bytes() == manifest_bytes
    except OSError:
        return False


def _link_or_copy(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
        return True
    except OSError:
        try:
            shutil.copyfile(source, target)
            return True
        except OSError:
            return False


def _replace(temp: Path, final: Path) -> None:
    """Rename the downloaded folder into place; an older local copy of that name is moved aside first."""
    if final.exists():
        aside = final.with_name(temp_name(f"deleting-{final.name}", next(_SERIAL)))
        os.rename(final, aside)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(temp, final)
    fsync_dir(final.parent)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["CACHE_ENV", "RemoteCheckpoints", "RemoteEntry", "filesystem", "is_url", "join_url", "local_checkpoint", "locate",
           "mirror_folder", "open_remote", "resolve_remote_resume", "split_checkpoint_url"]
