"""A refactor's before/after check: short training runs whose numbers must come out bit for bit the same.

Why: a change meant to move code around (split a module, drop an unused option) must not change what the
default run computes. This trains a few short runs (the default 5-vehicle fleet, the smoke settings with
n-step and without prioritized replay, and MPE simple_spread) and prints one sha256 per run over its reward
log, its evaluation log and its final weights. Run it on the same CPU before and after the change and
compare the two JSON files (floating-point results differ between CPU models, so compare on one machine).

    python benchmarks/fingerprint.py --out /tmp/before.json     # on the old code
    python benchmarks/fingerprint.py --out /tmp/after.json      # on the new code
    diff /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from fleetmarl.config import SMOKE_SETTINGS, Config
from fleetmarl.trainer import train

RUNS: dict[str, dict[str, Any]] = {
    # the default run, cut to 5 rounds: warm-up, the 2,000 pre-training updates, 2 rounds of learning, an
    # evaluation and a checkpoint
    "default_40ep": dict(NUM_EPISODES=40, EVAL_INTERVAL=40, MODEL_SAVE_INTERVAL=40, NUM_THREADS=1,
                         PROGRESS_BAR=False, ENABLE_TENSORBOARD=False),
    "smoke_nstep3_uniform": dict(SMOKE_SETTINGS, N_STEP=3, ENABLE_PRIORITIZED_REPLAY=False, NUM_EPISODES=16,
                                 EVAL_INTERVAL=8),
    "smoke_simplified": dict(SMOKE_SETTINGS, ENVIRONMENT_TYPE="simplified", NUM_EPISODES=16),
    "simple_spread": dict(ENVIRONMENT_TYPE="mpe2.simple_spread_v3",
                          ENV_KWARGS={"N": 3, "max_cycles": 25, "continuous_actions": True}, MAX_NUM_STEPS=25,
                          NUM_EPISODES=64, NUM_ENVS=16, HIDDEN_DIM=32, BATCH_SIZE=256, CAPACITY=4096,
                          WARMUP_TRANSITIONS=512, UPDATE_EVERY=1, WARMUP_POLICY="random", TEACHER_POLICY="none",
                          ENABLE_PRIORITIZED_REPLAY=False, MIXED_PRECISION="fp32", NUM_THREADS=1,
                          MODEL_SAVE_INTERVAL=64, EVAL_INTERVAL=0, PROGRESS_BAR=False, ENABLE_TENSORBOARD=False),
}


def fingerprint(overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one run in a temporary folder; hash what it learned."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(**{**overrides, "CHECKPOINTS_DIR": str(Path(tmp) / "ckpt"), "LOG_DIR": str(Path(tmp) / "runs")})
        result = train(config, log=lambda _message: None)
    digest = hashlib.sha256()
    digest.update(json.dumps(result.state.episode_rewards_log).encode())
    digest.update(json.dumps(result.state.eval_log, sort_keys=True).encode())
    for agent in result.agents:
        for name, tensor in sorted(agent.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    rewards = result.state.episode_rewards_log
    return {"sha256": digest.hexdigest(), "episodes": len(rewards), "last_reward": rewards[-1],
            "updates": result.state.updates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", type=Path, help="write the fingerprints as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for name in args.runs:
        results[name] = fingerprint(RUNS[name])
        row = results[name]
        print(f"{name:24s} {row['sha256'][:16]}  episodes {row['episodes']:4d}  updates {row['updates']:5d}  "
              f"last reward {row['last_reward']:.6f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
