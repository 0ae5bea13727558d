"""The default training loop end to end, this checkout against an earlier commit, side by side.

Both run the same command, ``python main.py`` with the defaults and checkpoints, TensorBoard and periodic
evaluation off, in an empty working folder (so no ``config.py`` is read). The time of 48 episodes after
a one-round warm-up is ``T(56 episodes) - T(8 episodes)``, which leaves out start-up and the first
round. Runs alternate between the two trees (same machine load for both), and the best of ``--repeats``
is kept; the children's CPU time is reported too (with ``--set NUM_THREADS=1`` it is the figure that a
busy machine disturbs least). The earlier commit is checked out with ``git worktree`` into a temporary folder.

The current tree runs with ``PRETRAIN_UPDATES=0`` by default (``--current-set``): the imitation
pre-training is a one-time burst when warm-up ends (2000 updates, about the cost of 45 rounds' updates)
that would otherwise fall inside these 48 episodes; its cost is reported on its own line.

    python benchmarks/bench_train.py                        # against 9b4b01c (fleetmarl 0.1)
    python benchmarks/bench_train.py --baseline HEAD~3 --repeats 3
    python benchmarks/bench_train.py --start 32 --current-set none   # both at their defaults, after warm-up
    python benchmarks/bench_train.py --no-pretrain-cost              # skip timing the pre-training burst

With ``--start 32`` the timed episodes 32-80 come after the current tree's greedy warm-up (4096
transitions, three rounds) and its pre-training burst, so both trees' loops run as in a real default
run; ``--current-set none`` keeps the current tree at its defaults.

Prints a table and writes ``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_speed.json"
"""Each run writes here; ``--out`` names another file (e.g. one per protocol)."""
QUIET = ["--set", "ENABLE_MODEL_CHECKPOINTING=False", "--set", "ENABLE_TENSORBOARD=False",
         "--set", "EVAL_INTERVAL=0", "--set", "PROGRESS_BAR=False"]


def run_seconds(tree: Path, episodes: int, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system of the child) of one training command."""
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "PYTHONPATH": str(tree / "src")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(tree / "main.py"), "--set", f"NUM_EPISODES={episodes}", *QUIET, *extra],
                       cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pretrain_seconds(extra: list[str]) -> float:
    """Wall seconds of the current tree's one-time pre-training burst: 24 episodes with and without it."""
    with_pretrain, without = run_seconds(ROOT, 24, extra), run_seconds(ROOT, 24, extra + ["--set", "PRETRAIN_UPDATES=0"])
    print(f"current   one-time imitation pre-training (default PRETRAIN_UPDATES): {with_pretrain[0] - without[0]:.1f} s "
          f"wall, {with_pretrain[1] - without[1]:.1f} s CPU", flush=True)
    return with_pretrain[0] - without[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="9b4b01c", help="git revision to compare with (default 9b4b01c)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for both (e.g. NUM_THREADS=1)")
    parser.add_argument("--current-set", dest="current", action="append", default=None, metavar="KEY=VALUE",
                        help="override for the current tree only (default PRETRAIN_UPDATES=0; 'none' for none)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON to write (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--start", type=int, default=8,
                        help="episodes before the timed 48 (default 8: one round; 32 = after the current "
                             "tree's greedy warm-up and its pre-training burst, so both loops are in steady state)")
    parser.add_argument("--no-pretrain-cost", dest="pretrain_cost", action="store_false",
                        help="skip the extra runs that time the one-time pre-training burst (minutes)")
    args = parser.parse_args()
    extra = [item for kv in args.extra for item in ("--set", kv)]
    current_only = [item for kv in (args.current or ["PRETRAIN_UPDATES=0"]) if kv != "none" for item in ("--set", kv)]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            trees = {"baseline": (baseline, extra), "current": (ROOT, extra + current_only)}
            samples: dict[str, list[float]] = {name: [] for name in trees}
            cpu: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.repeats):
                for name, (tree, flags) in trees.items():
                    short, long = run_seconds(tree, args.start, flags), run_seconds(tree, args.start + 48, flags)
                    samples[name].append(long[0] - short[0])
                    cpu[name].append(long[1] - short[1])
                    print(f"{name:9s} 48 episodes: {long[0] - short[0]:7.1f} s wall, {long[1] - short[1]:7.1f} s CPU "
                          f"({args.start + 48}: {long[0]:.1f} s, {args.start}: {short[0]:.1f} s)", flush=True)
            pretrain = pretrain_seconds(extra) if args.pretrain_cost else None
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], check=False)
    best = {name: min(values) for name, values in samples.items()}
    best_cpu = {name: min(values) for name, values in cpu.items()}
    speedup = best["baseline"] / best["current"]
    cpu_speedup = best_cpu["baseline"] / best_cpu["current"]
    print(f"best of {args.repeats}: baseline {best['baseline']:.1f} s, current {best['current']:.1f} s -> {speedup:.2f}x wall; "
          f"CPU {best_cpu['baseline']:.1f} s vs {best_cpu['current']:.1f} s -> {cpu_speedup:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "baseline": args.baseline, "extra": args.extra, "seconds_48_episodes": samples, "best": best,
        "cpu_seconds_48_episodes": cpu, "best_cpu": best_cpu, "cpu_speedup": cpu_speedup,
        "speedup": speedup, "pretrain_seconds": pretrain, "current_only": args.current or ["PRETRAIN_UPDATES=0"],
        "timed_episodes": [args.start, args.start + 48],
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
