"""The learning test's configuration (``tests/test_learning.py``) over several seeds, as its docstring lists them.

    python benchmarks/learning_test_seeds.py 1 2 3 4 5 6 7 8 9 10
    python benchmarks/learning_test_seeds.py 1 --set DISPATCH_PRIOR_LOGIT=0     # an ablation

Prints, per seed, the noise-free on-time rate of the trained fleet and of greedy over the test's 32
evaluation episodes, the learned fleet's conflicts and the seconds it took. Run from the repository root.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test's module, whatever the caller's path
from tests.test_learning import SMALL_FLEET  # noqa: E402

from fleetmarl.config import Config, apply_overrides
from fleetmarl.envs.policies import reference_policy
from fleetmarl.eval.evaluation import algorithm_policy, run_episodes
from fleetmarl.learner import MADDPG
from fleetmarl.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", type=int, nargs="+")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    print("seed  learned  greedy  gap     conflicts  seconds")
    for seed in args.seeds:
        start = time.time()
        config = apply_overrides(Config(**{**SMALL_FLEET, "RANDOM_SEED": seed}), args.overrides)
        result = train(config, log=lambda message: None)
        learned = run_episodes(config, algorithm_policy(MADDPG(result.agents, config)), episodes=32, seed=999)
        greedy = run_episodes(config, reference_policy("greedy"), episodes=32, seed=999)
        rate, reference = float(learned["on_time_rate"].mean()), float(greedy["on_time_rate"].mean())
        print(f"{seed:>4}  {rate:7.3f}  {reference:6.3f}  {rate - reference:+.3f}  {int(learned['conflicts'].sum()):>9}"
              f"  {time.time() - start:7.0f}", flush=True)


if __name__ == "__main__":
    main()
