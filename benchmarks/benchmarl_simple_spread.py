"""BenchMARL's MADDPG on MPE ``simple_spread`` (N=3, 25 steps, continuous actions): the reference side of
the fleetmarl-vs-BenchMARL comparison (issue 12), run on this machine so the wall-time ratio is like
for like.

BenchMARL needs its own torch/torchrl stack, so it lives in a separate virtual environment,
``.venv-benchmarl/`` (git-ignored). This file is a thin launcher: run with the system Python, it re-runs
itself with the venv's Python (``--inner``), where BenchMARL is importable. ``benchmarks/benchmarl_shim.py``
builds BenchMARL's PettingZoo task from ``mpe2`` (pettingzoo 1.27 no longer ships MPE).

Settings match the anchor in the issue: BenchMARL 1.5.2 defaults (``base_experiment.yaml``,
``maddpg.yaml``, ``mlp.yaml``: MLP 256x256 Tanh, lr 5e-5, shared parameters, 10 serial envs) with
6,000 frames per iteration and 1,000 updates of batch 128 per iteration (both BenchMARL's defaults),
seed 0. BenchMARL evaluates every ``--eval-interval`` frames (its default 120,000) on 10 deterministic
episodes; after training the script also evaluates the final policy on ``--final-episodes`` (100) fresh
episodes, and random and zero actions on the same episodes as floors. The wall time and frames/s are
those of ``Experiment.run()`` alone (collection, updates and BenchMARL's own evaluations), not of setup
or the final evaluation. Logging is BenchMARL's JSON logger only (no wandb), and rendering is off.

    python benchmarks/benchmarl_simple_spread.py --setup            # create/update .venv-benchmarl
    python benchmarks/benchmarl_simple_spread.py --frames 12000 --eval-interval 6000   # smoke test
    nice -n 19 python benchmarks/benchmarl_simple_spread.py         # 600,000 frames, seed 0

Writes ``benchmarks/results/benchmarl_simple_spread.json`` (rewritten after every iteration with
``"status": "running"``, so a stopped run leaves its curve so far) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-benchmarl"
VENV_PYTHON = VENV / "bin" / "python"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "benchmarl_simple_spread.json"

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. torchrl 0.11.1 /
# tensordict 0.11.0 / torchvision 0.28.0 are what pip resolves for benchmarl 1.5.2 on torch 2.13.0.
TORCH_PIN = "torch==2.13.0"
PACKAGES = [
    "benchmarl==1.5.2",
    "torchrl==0.11.1",
    "tensordict==0.11.0",
    "torchvision==0.28.0",
    "pettingzoo==1.27.0",
    "mpe2==1.1.1",
]
VERSIONED = ["torch", "torchrl", "tensordict", "benchmarl", "pettingzoo", "mpe2", "numpy", "gymnasium"]

FRAMES_PER_ITER = 6_000
UPDATES_PER_ITER = 1_000
BATCH_SIZE = 128
N_AGENTS = 3
MAX_CYCLES = 25

# The anchor in issue 12 (BenchMARL 1.5.2, same settings, 2 idle cores), kept for the comparison line.
ANCHOR = {"final_eval_return_per_agent": -23.45, "best_eval_return_per_agent": -18.2,
          "wall_minutes": 31.8, "frames_per_s": 315, "random_floor": -25.84, "zero_floor": -24.91}


# --------------------------------------------------------------------------------------------------
# Outside the venv: setup and launch
# --------------------------------------------------------------------------------------------------

def setup_venv() -> None:
    """Create or update ``.venv-benchmarl``; torch is installed alone first so pip never picks a CUDA one."""
    if not VENV_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, TORCH_PIN], check=True)
    subprocess.run([*pip, TORCH_PIN, *PACKAGES], check=True)
    subprocess.run([str(VENV_PYTHON), "-c", "import benchmarl, mpe2, torchrl"], check=True)
    print(f"BenchMARL environment ready in {VENV.relative_to(ROOT)}")


def launch(argv: list[str]) -> None:
    """Replace this process with the venv's Python running this script, so the pid the shell reports is
    the run itself (a signal stops the run, not just a launcher)."""
    if not VENV_PYTHON.exists():
        sys.exit(f"no BenchMARL environment at {VENV.relative_to(ROOT)}: run "
                 f"'python benchmarks/benchmarl_simple_spread.py --setup' first")
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), str(Path(__file__).resolve()), "--inner", *argv])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="create/update .venv-benchmarl and exit")
    parser.add_argument("--frames", type=int, default=600_000,
                        help=f"training frames, a multiple of {FRAMES_PER_ITER} (default 600000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-interval", type=int, default=120_000,
                        help="frames between BenchMARL's evaluations (default 120000, BenchMARL's own)")
    parser.add_argument("--final-episodes", type=int, default=100,
                        help="episodes for the final evaluation and the floors (default 100)")
    parser.add_argument("--eval-seed", type=int, default=12345,
                        help="seed of the final-evaluation env (not the training seed, so the episodes "
                             "are not the ones the training envs started from)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own, one per core, as in the anchor); "
                             "on a busy machine 1 avoids threads spinning against other work")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.frames <= 0 or args.frames % FRAMES_PER_ITER:
        parser.error(f"--frames must be a positive multiple of {FRAMES_PER_ITER}, got {args.frames}")
    if args.eval_interval <= 0 or args.eval_interval % FRAMES_PER_ITER:
        parser.error(f"--eval-interval must be a positive multiple of {FRAMES_PER_ITER}, got {args.eval_interval}")
    if args.final_episodes <= 0:
        parser.error("--final-episodes must be positive")
    if args.threads is not None and args.threads <= 0:
        parser.error("--threads must be positive")
    return args


# --------------------------------------------------------------------------------------------------
# Inside the venv: the BenchMARL run
# --------------------------------------------------------------------------------------------------

def per_agent_return(rollout: Any) -> float:
    """Episode return summed over steps, averaged over the agents (the ``agent`` group is all of them)."""
    return float(rollout.get(("next", "agent", "reward")).sum(0).mean())


def write_json(path: Path, result: dict[str, Any]) -> None:
    """Write atomically, so a run stopped mid-write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


try:  # importable only inside .venv-benchmarl; the launcher side never touches the recorder
    from benchmarl.experiment.callback import Callback
except ImportError:
    Callback = object  # type: ignore[assignment,misc]


class Recorder(Callback):
    """Logs BenchMARL's evaluation and collection returns into ``result`` and rewrites ``out`` after every
    iteration. Module level because BenchMARL pickles its callbacks into the run folder."""

    def __init__(self, result: dict[str, Any], out: Path) -> None:
        super().__init__()
        self.result = result
        self.out = out
        self.start = self.mark = self.collected = time.perf_counter()

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.start, 2)

    def on_batch_collected(self, batch: Any) -> None:
        # Since the previous iteration's last mark: collection (plus BenchMARL's per-iteration logging).
        self.collected = time.perf_counter()
        self.collection_s = self.collected - self.mark

    def on_train_end(self, training_td: Any, group: str) -> None:
        exp = self.experiment
        self.mark = now = time.perf_counter()
        self.result["train_curve"].append({
            "iteration": exp.n_iters_performed + 1, "frames": exp.total_frames,
            "collection_return_per_agent": exp.mean_return, "elapsed_s": self.elapsed(),
            "collection_s": round(self.collection_s, 2), "training_s": round(now - self.collected, 2)})
        write_json(self.out, self.result)

    def on_evaluation_end(self, rollouts: list[Any]) -> None:
        returns = [per_agent_return(r) for r in rollouts]
        exp = self.experiment
        eval_s = time.perf_counter() - self.mark
        self.mark = time.perf_counter()
        self.result["eval_curve"].append({
            "iteration": exp.n_iters_performed + 1, "frames": exp.total_frames,
            "return_per_agent": sum(returns) / len(returns), "episodes": len(returns),
            "elapsed_s": self.elapsed(), "evaluation_s": round(eval_s, 2)})
        write_json(self.out, self.result)


def evaluate(env: Any, policy: Any, episodes: int) -> dict[str, float]:
    """Mean and std of the per-agent episode return of ``policy`` over ``episodes`` episodes of ``env``;
    ``policy=None`` is random actions, ``"zero"`` all-zero actions (the agents never move)."""
    import torch
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    if isinstance(policy, str):  # "zero"
        def zero(td: Any) -> Any:
            return td.set(("agent", "action"), torch.zeros(env.full_action_spec["agent", "action"].shape))
        policy = zero
    returns = []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(max_steps=MAX_CYCLES, policy=policy, break_when_any_done=True,
                                  auto_cast_to_device=True)
            returns.append(per_agent_return(rollout))
    t = torch.tensor(returns)
    return {"mean": float(t.mean()), "std": float(t.std()), "episodes": episodes}


def run_inner(args: argparse.Namespace) -> None:
    """Build BenchMARL's experiment from its config classes, run it, evaluate, write the JSON."""
    import importlib.metadata as md

    import torch
    from benchmarl.algorithms import MaddpgConfig
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    from benchmarl_shim import mpe2_task

    out: Path = args.out.resolve()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # BenchMARL closes cleanly on KeyboardInterrupt
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    task = mpe2_task("SIMPLE_SPREAD", N=N_AGENTS, max_cycles=MAX_CYCLES)

    config = ExperimentConfig.get_from_yaml()
    config.max_n_frames = args.frames
    config.off_policy_collected_frames_per_batch = FRAMES_PER_ITER
    config.off_policy_n_optimizer_steps = UPDATES_PER_ITER
    config.off_policy_train_batch_size = BATCH_SIZE
    config.prefer_continuous_actions = True
    config.evaluation_interval = args.eval_interval
    config.loggers = []          # wandb is not installed; BenchMARL's JSON logger still runs (create_json)
    config.render = False        # no videos: rendering is not part of the comparison
    config.checkpoint_at_end = True  # to measure its size; the save time is taken out of the wall time
    algorithm = MaddpgConfig.get_from_yaml()
    model = MlpConfig.get_from_yaml()
    model.num_cells = [256, 256]

    result: dict[str, Any] = {
        "benchmark": "BenchMARL MADDPG on mpe2 simple_spread_v3", "status": "running",
        "command": "python benchmarks/benchmarl_simple_spread.py " + " ".join(
            a for a in sys.argv[1:] if a != "--inner"),
        "settings": {
            "frames": args.frames, "frames_per_iteration": FRAMES_PER_ITER,
            "iterations": args.frames // FRAMES_PER_ITER, "updates_per_iteration": UPDATES_PER_ITER,
            "batch_size": BATCH_SIZE, "seed": args.seed, "n_agents": N_AGENTS, "max_cycles": MAX_CYCLES,
            "continuous_actions": True, "task_config": task.config, "mlp": model.num_cells,
            "lr": config.lr, "gamma": config.gamma, "n_envs": config.off_policy_n_envs_per_worker,
            "memory_size": config.off_policy_memory_size, "eval_interval_frames": args.eval_interval,
            "eval_episodes": config.evaluation_episodes, "torch_threads": torch.get_num_threads(),
        },
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "usable_cores": len(os.sched_getaffinity(0)), "load_avg_at_start": os.getloadavg(),
                    "python": platform.python_version()},
        "versions": {name: md.version(name) for name in VERSIONED},
        "eval_curve": [], "train_curve": [],
        "anchor": ANCHOR,
    }
    recorder = Recorder(result, out)
    with tempfile.TemporaryDirectory(prefix="benchmarl-") as folder:
        config.save_folder = folder
        experiment = Experiment(task=task, algorithm_config=algorithm, model_config=model, seed=args.seed,
                                config=config, callbacks=[recorder])
        save_s = [0.0]
        save = experiment._save_experiment

        def timed_save() -> None:
            t0 = time.perf_counter()
            save()
            save_s[0] += time.perf_counter() - t0

        experiment._save_experiment = timed_save  # the checkpoint is measured, not part of the timed run
        recorder.start = recorder.mark = start = time.perf_counter()
        try:
            experiment.run()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (below): keep the curve so far, say it stopped
            done = len(result["train_curve"])
            result.update(status="stopped", stopped_after_s=round(time.perf_counter() - start, 1),
                          iterations_done=done, frames_done=done * FRAMES_PER_ITER)
            write_json(out, result)
            sys.exit(f"stopped after {done} iterations; the curve so far is in {out}")
        wall = time.perf_counter() - start - save_s[0]
        result["machine"]["load_avg_at_end"] = os.getloadavg()

        policy_file = Path(folder) / "policy.pt"
        torch.save(experiment.policy.state_dict(), policy_file)
        (full,) = (Path(folder) / experiment.name / "checkpoints").glob("checkpoint_*.pt")
        result["checkpoint"] = {
            "full_bytes": full.stat().st_size, "full_save_s": round(save_s[0], 2),
            "policy_bytes": policy_file.stat().st_size,
            "note": "full = BenchMARL's checkpoint_at_end file (losses, optimisers, replay buffer, "
                    "collector), its save time taken out of wall_s; policy = the actor's state_dict alone"}

        env = task.get_env_fun(num_envs=1, continuous_actions=True, seed=args.eval_seed, device="cpu")()
        final = evaluate(env, experiment.policy, args.final_episodes)
        env.set_seed(args.eval_seed)
        random = evaluate(env, None, args.final_episodes)
        env.set_seed(args.eval_seed)
        zero = evaluate(env, "zero", args.final_episodes)
        env.close()

    evals = result["eval_curve"]
    result.update({
        "status": "complete",
        "wall_s": round(wall, 1), "wall_min": round(wall / 60, 2),
        "frames_per_s": round(args.frames / wall, 1),
        "benchmarl_last_eval_return_per_agent": evals[-1]["return_per_agent"] if evals else None,
        "benchmarl_best_eval_return_per_agent": max(e["return_per_agent"] for e in evals) if evals else None,
        "final_eval": {**final, "seed": args.eval_seed, "deterministic": True},
        "floors": {"random_actions": random, "zero_actions": zero},
        "return_definition": "episode return summed over the 25 steps, averaged over the 3 agents",
    })
    write_json(out, result)
    print_table(result, out)


def print_table(r: dict[str, Any], out: Path) -> None:
    a = r["anchor"]
    rows = [
        ("frames", f"{r['settings']['frames']:,}", "600,000"),
        ("wall time (min)", f"{r['wall_min']:.1f}", f"{a['wall_minutes']}"),
        ("frames/s", f"{r['frames_per_s']:.0f}", f"{a['frames_per_s']}"),
        (f"final eval, {r['final_eval']['episodes']} ep", f"{r['final_eval']['mean']:.2f} +/- "
         f"{r['final_eval']['std']:.2f}", "-"),
        ("BenchMARL last eval, 10 ep", f"{r['benchmarl_last_eval_return_per_agent']:.2f}",
         f"{a['final_eval_return_per_agent']}"),
        ("BenchMARL best eval", f"{r['benchmarl_best_eval_return_per_agent']:.2f}",
         f"{a['best_eval_return_per_agent']}"),
        ("random actions", f"{r['floors']['random_actions']['mean']:.2f} +/- "
         f"{r['floors']['random_actions']['std']:.2f}", f"{a['random_floor']}"),
        ("zero actions", f"{r['floors']['zero_actions']['mean']:.2f}", f"{a['zero_floor']}"),
        ("checkpoint (MB, full / policy)", f"{r['checkpoint']['full_bytes'] / 1e6:.1f} / "
         f"{r['checkpoint']['policy_bytes'] / 1e6:.2f}", "-"),
    ]
    print(f"\nBenchMARL MADDPG, simple_spread N=3 (return per agent), {r['machine']['cpu']}, "
          f"{r['machine']['cores']} cores")
    print(f"{'':32} {'this run':>18} {'anchor':>10}")
    for name, ours, anchor in rows:
        print(f"{name:32} {ours:>18} {anchor:>10}")
    print("eval curve (frames -> return per agent): "
          + ", ".join(f"{e['frames']}: {e['return_per_agent']:.2f}" for e in r["eval_curve"]))
    print(f"wrote {out}")


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.setup:
        setup_venv()
    elif args.inner:
        run_inner(args)
    else:
        launch(argv)


if __name__ == "__main__":
    main()
