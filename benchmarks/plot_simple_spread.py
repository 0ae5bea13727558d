"""One picture of the simple_spread learning curves: fleetmarl's seeds and BenchMARL's run, return per
agent of the periodic noise-free evaluations against frames, with the random and zero-action floors.

    python benchmarks/plot_simple_spread.py [--fleetmarl benchmarks/results/simple_spread.json]
        [--benchmarl benchmarks/results/benchmarl_simple_spread.json] [-o docs/images/simple_spread_curves.png]

Each file's ``eval_curve`` is read: fleetmarl's as ``[frames, return]`` pairs per run, BenchMARL's as
``{"frames", "return_per_agent"}`` entries; a missing BenchMARL file only leaves its curve out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FLOORS = {"random actions": -25.84, "zero actions": -24.91}  # BenchMARL's measurement (issue 12)


def points(curve: list[Any]) -> tuple[list[float], list[float]]:
    """(frames, return per agent) from either file's curve format."""
    frames, returns = [], []
    for entry in curve:
        if isinstance(entry, dict):
            frames.append(float(entry["frames"]))
            returns.append(float(entry["return_per_agent"]))
        else:
            frames.append(float(entry[0]))
            returns.append(float(entry[1]))
    return frames, returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleetmarl", type=Path, default=RESULTS / "simple_spread.json")
    parser.add_argument("--benchmarl", type=Path, default=RESULTS / "benchmarl_simple_spread.json")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "images" / "simple_spread_curves.png")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ours = json.loads(args.fleetmarl.read_text())
    for run in ours["runs"]:
        x, y = points(run["eval_curve"])
        cpu = run.get("cpu_s")
        label = f"fleetmarl seed {run['seed']}" + (f" ({cpu / 60:.1f} CPU min)" if cpu else "")
        ax.plot(x, y, color="tab:blue", alpha=0.5 + 0.25 * (run["seed"] % 3), label=label)
    if args.benchmarl.is_file():
        theirs = json.loads(args.benchmarl.read_text())
        x, y = points(theirs.get("eval_curve", []))
        wall = theirs.get("wall_s")
        label = "BenchMARL MADDPG seed 0" + (f" ({wall / 60:.1f} min)" if wall else "")
        ax.plot(x, y, color="tab:orange", marker="o", label=label)
    for name, value in FLOORS.items():
        ax.axhline(value, color="grey", linestyle=":" if "random" in name else "--", linewidth=1, label=name)
    ax.set_xlabel("frames (environment steps)")
    ax.set_ylabel("evaluation return per agent")
    ax.set_title("MPE simple_spread, N=3, 25 steps, continuous actions (2-core CPU)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
