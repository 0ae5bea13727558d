"""The default training loop end to end, this checkout against an earlier commit, side by side.

Both run the same command, ``python main.py`` with the defaults and checkpoints, TensorBoard and periodic
evaluation off, in an empty working folder (so no ``config.py`` is read). The time of 48 episodes after
a one-round warm-up is ``T(56 episodes) - T(8 episodes)``, which leaves out start-up and the first
round. Runs alternate between the two trees (same machine load for both), and the best of ``--repeats``
is kept. The earlier commit is checked out with ``git worktree`` into a temporary folder.

The current tree runs with ``PRETRAIN_UPDATES=0`` by default (``--current-set``): the imitation
pre-training is a one-time burst when warm-up ends (2000 updates, about the cost of 45 rounds' updates)
that would otherwise fall inside these 48 episodes; its cost is reported on its own line.

    python benchmarks/bench_train.py                        # against 9b4b01c (fleetmarl 0.1)
    python benchmarks/bench_train.py --baseline HEAD~3 --repeats 3

Prints a table and writes ``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_speed.json"
QUIET = ["--set", "ENABLE_MODEL_CHECKPOINTING=False", "--set", "ENABLE_TENSORBOARD=False",
         "--set", "EVAL_INTERVAL=0", "--set", "PROGRESS_BAR=False"]


def run_seconds(tree: Path, episodes: int, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        start = time.perf_counter()
        subprocess.run([sys.executable, str(tree / "main.py"), "--set", f"NUM_EPISODES={episodes}", *QUIET, *extra],
                       cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="9b4b01c", help="git revision to compare with (default 9b4b01c)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for both (e.g. NUM_THREADS=1)")
    parser.add_argument("--current-set", dest="current", action="append", default=None, metavar="KEY=VALUE",
                        help="override for the current tree only (default PRETRAIN_UPDATES=0)")
    args = parser.parse_args()
    extra = [item for kv in args.extra for item in ("--set", kv)]
    current_only = [item for kv in (args.current or ["PRETRAIN_UPDATES=0"]) for item in ("--set", kv)]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            trees = {"baseline": (baseline, extra), "current": (ROOT, extra + current_only)}
            samples: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.repeats):
                for name, (tree, flags) in trees.items():
                    short, long = run_seconds(tree, 8, flags), run_seconds(tree, 56, flags)
                    samples[name].append(long - short)
                    print(f"{name:9s} 48 episodes: {long - short:7.1f} s  (56: {long:.1f} s, 8: {short:.1f} s)", flush=True)
            pretrain = run_seconds(ROOT, 24, extra) - run_seconds(ROOT, 24, extra + ["--set", "PRETRAIN_UPDATES=0"])
            print(f"current   one-time imitation pre-training (default PRETRAIN_UPDATES): {pretrain:.1f} s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
    best = {name: min(values) for name, values in samples.items()}
    speedup = best["baseline"] / best["current"]
    print(f"best of {args.repeats}: baseline {best['baseline']:.1f} s, current {best['current']:.1f} s -> {speedup:.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "baseline": args.baseline, "extra": args.extra, "seconds_48_episodes": samples, "best": best,
        "speedup": speedup, "pretrain_seconds": pretrain, "current_only": args.current or ["PRETRAIN_UPDATES=0"],
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
