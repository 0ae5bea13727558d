"""Fault campaign: does a checkpointed run survive kill -9, a full disk and damaged files?

Runs a tiny configuration (2 agents, 5 points, 16 episodes, a checkpoint every 4, replay chunks of 64
transitions; runs are forked from this process) so each run takes seconds:

1. kill -9: one uninterrupted reference run, then N runs killed with SIGKILL at a random moment
   (training or mid-save), each resumed with ``--resume latest`` (or restarted when no checkpoint was
   committed yet) and compared bit for bit with the reference: reward log and every weight.
2. full disk: ``OSError(ENOSPC)`` injected into the checkpoint writer at a random file of one save;
   the run must go on when an intermediate save fails, exit 1 naming the lost episodes when the last
   one fails, leave no temporary folder and no invalid checkpoint, and resume exactly. As root, also
   a real small tmpfs that fills up during the run.
3. damaged files: a truncated and a bit-flipped copy of each file kind of a checkpoint; ``ckpt verify``
   must fail naming the file, ``--resume PATH`` must refuse it in one line (exit 2), and
   ``--resume latest`` must skip it for the previous checkpoint.

Prints a table and writes benchmarks/results/faults.json.

    python benchmarks/faults.py [--kills 50] [--seed 0] [--episodes 16] [--no-tmpfs] [--set KEY=VALUE] [--out FILE]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from fleetmarl.config import SMOKE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
BASE = {**SMOKE_SETTINGS, "NUM_EPISODES": 16, "CAPACITY": 1024}
TINY = dict(BASE)  # what this campaign's runs train: BASE with its episodes and --set changes (campaign())


def flags(**changes: Any) -> list[str]:
    return [arg for k, v in {**TINY, **changes}.items() for arg in ("--set", f"{k}={v}")]


def train_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "fleetmarl.cli", "train", *flags(), *extra]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)


def cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``fleetmarl ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    import contextlib
    import io

    from fleetmarl.cli import main

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def committed(ckpt_dir: Path) -> list[Path]:
    from fleetmarl.checkpoint import checkpoint_folders

    return [p for p, _ in checkpoint_folders(ckpt_dir)]


def outcome(ckpt_dir: Path) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Reward log and every agent tensor of the newest checkpoint (a shared run's networks are all in
    agent_0.pth; the other agents' files hold none)."""
    last = committed(ckpt_dir)[-1]
    state = torch.load(last / "training_state.pth", weights_only=True)
    weights = {}
    for agent_file in sorted(last.glob("agent_*.pth")):
        saved = torch.load(agent_file, weights_only=True)
        for part in ("actor", "critic", "actor_target", "critic_target"):
            for key, value in saved.get(part, {}).items():
                weights[f"{agent_file.stem}.{part}.{key}"] = value
    return state["episode_rewards_log"], weights


def same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def all_valid(ckpt_dir: Path) -> bool:
    from fleetmarl.checkpoint import verify_checkpoint

    return all(not verify_checkpoint(p) for p in committed(ckpt_dir))


# ---------------------------------------------------------------------- kill -9
class ForkedRun:
    """``fleetmarl train`` in a forked child of this process: a real process to kill -9, without an
    interpreter start-up per run (seconds each on a busy machine). Same interface as Popen here."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: train, then leave without running the parent's cleanup
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                code = cli(args, cwd)[0]
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def start_training(folder: Path) -> Any:
    if hasattr(os, "fork"):
        return ForkedRun(["train", *flags()], folder)
    return subprocess.Popen(train_cmd(), cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)


def wait_for(predicate, proc: Any, timeout: float = 300.0, poll: float = 0.0005) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(poll)
    return False


def temp_folders(ckpt_dir: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(ckpt_dir) if e.name.startswith(".tmp-")]
    except FileNotFoundError:
        return []


def kill_campaign(work: Path, kills: int, rng: random.Random, reference: tuple, saves: int,
                  span: float) -> list[dict[str, Any]]:
    """Even kills land while a save is being written (a random one of the run's saves: killed as soon
    as its hidden temp folder appears); odd kills at a random moment after the first checkpoint."""
    rows = []
    for k in range(kills):
        folder = work / f"kill{k}"
        folder.mkdir()
        ckpt_dir = folder / "checkpoints"
        proc = start_training(folder)
        if k % 2 == 0:
            target = rng.randrange(saves)  # 0 = the first save
            wait_for(lambda d=ckpt_dir, t=target: len(committed(d)) >= t and bool(temp_folders(d)), proc)
            moment = f"mid-save {target + 1}"
        else:
            wait_for(lambda d=ckpt_dir: bool(committed(d)), proc)
            time.sleep(rng.uniform(0.0, span))
            moment = "training"
        mid_save = bool(temp_folders(ckpt_dir))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = proc.returncode == 0
        before = len(committed(ckpt_dir))
        valid_after_kill = all_valid(ckpt_dir)
        code, _, _ = cli(["train", *flags(), *(["--resume", "latest"] if before else [])], folder)
        exact = code == 0 and same(outcome(ckpt_dir), reference)
        rows.append({"kill": k, "aimed_at": moment, "during_save": mid_save, "checkpoints_at_kill": before,
                     "finished_before_kill": finished, "valid_after_kill": valid_after_kill, "resume_exit": code,
                     "bit_exact": exact})
        print(f"  kill {k}: {moment} ({'temp folder present' if mid_save else 'no save in flight'}), {before} "
              f"checkpoints, resume exit {code}, bit-exact {exact}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------- full disk
def enospc_case(work: Path, name: str, fail_at_episode: int, fail_file: int, reference: tuple) -> dict[str, Any]:
    """In-process run with ENOSPC raised at the ``fail_file``-th file written by the save of one episode."""
    from fleetmarl.checkpoint import safe_io

    folder = work / name
    folder.mkdir()
    real = safe_io.write_bytes_synced
    calls = {"n": 0}

    def failing(path: Path, data: Any) -> dict[str, Any]:
        if f"checkpoint_ep{fail_at_episode}_" in path.parent.name:
            calls["n"] += 1
            if calls["n"] == fail_file:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    safe_io.write_bytes_synced = failing
    try:
        code, _, err = cli(["train", *flags()], folder)
    finally:
        safe_io.write_bytes_synced = real
    ckpt_dir = folder / "checkpoints"
    leftovers = [p.name for p in ckpt_dir.iterdir() if p.name.startswith(".tmp-")]
    final = fail_at_episode == TINY["NUM_EPISODES"]
    message = err.strip().splitlines()
    expected_code = 1 if final else 0
    resumed = cli(["train", *flags(), "--resume", "latest"], folder)[0] if final else 0
    exact = same(outcome(ckpt_dir), reference) if resumed == 0 else False
    row = {"case": name, "failed_save_episode": fail_at_episode, "failed_file_index": fail_file, "exit": code,
           "expected_exit": expected_code, "temp_left": leftovers, "all_valid": all_valid(ckpt_dir),
           "message": message[-1] if message else "", "then_bit_exact": exact,
           "ok": code == expected_code and not leftovers and all_valid(ckpt_dir) and exact}
    shutil.rmtree(folder, ignore_errors=True)
    return row


def tmpfs_case(work: Path, size_kb: int) -> dict[str, Any]:
    """A real tmpfs half the size the run needs: the first checkpoints fit, later ones do not (needs root)."""
    mount = work / "tmpfs"
    mount.mkdir()
    name = f"tmpfs {size_kb} KB"
    if os.geteuid() != 0:
        return {"case": name, "skipped": "not root"}
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"case": name, "skipped": f"mount failed: {done.stderr.strip()[:120]}"}
    try:
        out = run(train_cmd("--set", f"CHECKPOINTS_DIR={mount / 'checkpoints'}"), work)
        ckpt_dir = mount / "checkpoints"
        saved = committed(ckpt_dir)
        lines = out.stderr.strip().splitlines()
        leftovers = [p.name for p in ckpt_dir.iterdir() if p.name.startswith(".tmp-")] if ckpt_dir.exists() else []
        ok = out.returncode == 1 and len(lines) == 1 and "are not on disk" in lines[0] and all_valid(ckpt_dir) \
            and not leftovers
        return {"case": name, "exit": out.returncode, "checkpoints": len(saved), "temp_left": leftovers,
                "all_valid": all_valid(ckpt_dir), "message": lines[-1] if lines else "", "ok": ok,
                "failures_reported": sum("checkpoint save failed" in line for line in out.stdout.splitlines())}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


# ---------------------------------------------------------------------- damaged files
def damage(path: Path, how: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))


def damage_campaign(work: Path, reference_dir: Path, rng: random.Random, kinds: list[str] | None) -> list[dict[str, Any]]:
    from fleetmarl.checkpoint.layout import parse_replay_chunk

    saved = committed(reference_dir)
    newest, older = saved[-1], saved[-2]
    files = {"agent_i.pth": "agent_1.pth", "training_state.pth": "training_state.pth",
             "config_info.txt": "config_info.txt", "replay_buffer.pth (head)": "replay_buffer.pth",
             "replay chunk": next(p.name for p in sorted(newest.iterdir()) if parse_replay_chunk(p.name)),
             "MANIFEST.json": "MANIFEST.json"}
    rows = []
    for kind, name in files.items():
        if kinds and not any(k in kind for k in kinds):
            continue
        for how in ("truncated", "bit-flipped"):
            folder = work / f"damage-{name}-{how}"
            ckpt_dir = folder / "checkpoints"
            ckpt_dir.mkdir(parents=True)
            shutil.copytree(older, ckpt_dir / older.name)
            shutil.copytree(newest, ckpt_dir / newest.name)  # real copies: the reference stays intact
            damage(ckpt_dir / newest.name / name, how, rng)
            verify = cli(["ckpt", "verify", str(ckpt_dir / newest.name)], folder)
            explicit = cli(["train", *flags(), "--resume", str(ckpt_dir / newest.name)], folder)
            latest = cli(["train", *flags(), "--resume", "latest"], folder)
            err = explicit[2].strip().splitlines()
            skipped = "skipping broken checkpoint" in latest[1] and newest.name in latest[1]
            row = {"file": kind, "damage": how, "verify_exit": verify[0],
                   "verify_names_file": name in verify[1] or "MANIFEST" in verify[1],
                   "resume_path_exit": explicit[0], "one_line": len(err) == 1 and err[0].startswith("fleetmarl: "),
                   "resume_latest_exit": latest[0], "latest_skipped_it": skipped,
                   "message": err[0][:160] if err else ""}
            row["ok"] = (row["verify_exit"] == 1 and row["verify_names_file"] and row["resume_path_exit"] == 2
                         and row["one_line"] and row["resume_latest_exit"] == 0 and skipped)
            rows.append(row)
            print(f"  {kind} {how}: verify {verify[0]}, --resume PATH {explicit[0]}, "
                  f"--resume latest {latest[0]} (skipped: {skipped})", flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    return rows


# ---------------------------------------------------------------------- campaign
def campaign(kills: int, seed: int, tmpfs: bool = True, damage_kinds: list[str] | None = None,
             disk_cases: int = 4, work: Path | None = None, episodes: int = 16,
             changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """``changes`` replace keys of the tiny config, e.g. a large shared fleet, so a kill -9 is tried on it too."""
    TINY.clear()
    TINY.update({**BASE, "NUM_EPISODES": episodes, **(changes or {})})
    rng = random.Random(seed)
    own = work is None
    work = work or Path(tempfile.mkdtemp(prefix="fleetmarl-faults-"))
    try:
        ref = work / "reference"
        ref.mkdir()
        start = time.perf_counter()  # in this process: no interpreter start-up in the timings
        code, _, err = cli(["train", *flags()], ref)
        if code != 0:
            raise SystemExit(f"reference run failed: {err.strip()}")
        wall = time.perf_counter() - start
        stamps = sorted(p.stat().st_mtime for p in committed(ref / "checkpoints"))
        first = max(0.0, wall - (stamps[-1] - stamps[0]))
        reference = outcome(ref / "checkpoints")
        saves = list(range(TINY["MODEL_SAVE_INTERVAL"], TINY["NUM_EPISODES"] + 1, TINY["MODEL_SAVE_INTERVAL"]))
        print(f"reference run: {wall:.1f} s, first checkpoint after {first:.1f} s, {len(saves)} checkpoints", flush=True)
        kill_rows = kill_campaign(work, kills, rng, reference, len(saves), max(0.1, wall - first))
        disk_rows = []
        for i in range(disk_cases):
            episode = saves[-1] if i % 2 == 0 else rng.choice(saves[:-1])
            disk_rows.append(enospc_case(work, f"enospc{i}", episode, rng.randint(1, 4), reference))
            print(f"  ENOSPC at save of episode {episode}: exit {disk_rows[-1]['exit']}, ok {disk_rows[-1]['ok']}", flush=True)
        if tmpfs:
            used = sum(f.stat().st_size for f in (ref / "checkpoints").rglob("*") if f.is_file() and f.stat().st_nlink == 1)
            used += sum(f.stat().st_size for f in {f.stat().st_ino: f for f in (ref / "checkpoints").rglob("*")
                                                    if f.is_file() and f.stat().st_nlink > 1}.values())
            disk_rows.append(tmpfs_case(work, max(256, used // 2048)))
            print(f"  tmpfs: {disk_rows[-1]}", flush=True)
        damage_rows = damage_campaign(work, ref / "checkpoints", rng, damage_kinds)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return {"config": dict(TINY), "seed": seed, "reference_wall_s": wall, "kills": kill_rows, "full_disk": disk_rows,
            "damaged_files": damage_rows}


def summary(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    kills = result["kills"]
    mid = [r for r in kills if r["during_save"]]
    disk = [r for r in result["full_disk"] if "skipped" not in r]
    skipped = [r for r in result["full_disk"] if "skipped" in r]
    damaged = result["damaged_files"]
    rows = [
        ("kill -9 (half aimed at a save), then --resume latest", f"{len(kills)}",
         f"{sum(r['bit_exact'] for r in kills)} bit-exact ({len(mid)} with a save in flight, "
         f"{sum(not r['checkpoints_at_kill'] for r in kills)} before the first commit, "
         f"{sum(r['finished_before_kill'] for r in kills)} finished first)"),
        ("  every committed checkpoint valid after the kill", f"{len(kills)}", f"{sum(r['valid_after_kill'] for r in kills)}"),
        ("full disk (ENOSPC injected / tmpfs)", f"{len(disk)}",
         f"{sum(r['ok'] for r in disk)} handled (right exit status, no temp folder, all valid, exact resume)"
         + (f"; tmpfs skipped: {skipped[0]['skipped']}" if skipped else "")),
        ("truncated or bit-flipped file", f"{len(damaged)}",
         f"{sum(r['ok'] for r in damaged)} detected (verify 1, --resume PATH 2 in one line, latest skips it)"),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disk-cases", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=16, help="episodes per run (a checkpoint every 4)")
    parser.add_argument("--no-tmpfs", action="store_true", help="skip the real tmpfs case (needs root)")
    parser.add_argument("--damage", nargs="*", default=None, help="only these file kinds (e.g. agent chunk)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a key of the tiny config, e.g. --set SHARE_PARAMETERS=True --set NUM_AGENTS=12")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "faults.json")
    args = parser.parse_args()
    changes = dict(item.split("=", 1) for item in args.set)
    result = campaign(args.kills, args.seed, tmpfs=not args.no_tmpfs, damage_kinds=args.damage,
                      disk_cases=args.disk_cases, episodes=args.episodes, changes=changes)
    rows = [("fault", "runs", "outcome"), *summary(result)]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for row in rows:
        print(f"{row[0].ljust(width[0])}  {row[1].ljust(width[1])}  {row[2]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    bad = any(not r["bit_exact"] for r in result["kills"]) or any(not r.get("ok", True) for r in result["full_disk"]) \
        or any(not r["ok"] for r in result["damaged_files"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
