"""Time ReplayBuffer.sample(512) and add() on a full buffer of real default-environment transitions.

Works against any checkout, so before/after can be compared side by side, alternating:

    git worktree add /tmp/old 1f741f4
    for i in 1 2 3; do PYTHONPATH=/tmp/old/src python benchmarks/bench_replay_sample.py
                       PYTHONPATH=src python benchmarks/bench_replay_sample.py; done

Prints one JSON line.
"""
import json
import statistics
import sys
import time

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.envs.policies import random_policy
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.learner.buffer import ReplayBuffer

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
config = Config()
buffer = ReplayBuffer(config.replace(CAPACITY=n), observation_dims(config), seed=0)
env = BatchedSamplingEnv(config, num_envs=config.NUM_ENVS)
rng = np.random.default_rng(0)
obs = env.reset(seed=0)
adds = []
while len(buffer) < n:
    actions = random_policy(obs, rng)
    next_obs, rewards, term, trunc, infos = env.step(actions)
    dones = term | trunc
    s = time.perf_counter()
    buffer.add(obs, actions, rewards, infos["final_obs"] if dones.any() else next_obs, dones)
    adds.append(time.perf_counter() - s)
    obs = next_obs
times = []
for _ in range(300):
    start = time.perf_counter()
    buffer.sample(512, "cpu")
    times.append(time.perf_counter() - start)
out = {"transitions": n, "sample_512_ms_median": 1000 * statistics.median(times[50:]),
       "sample_512_ms_p90": 1000 * sorted(times[50:])[int(0.9 * 250)],
       "add_8_envs_ms_median": 1000 * statistics.median(adds), "bytes_per_transition": buffer.bytes_per_transition()}
print(json.dumps(out))
