"""How the fixture beside this file was made, with fleetmarl 0.1 (commit 9b4b01c), one module per agent:

    git worktree add /tmp/v01 9b4b01c && cd /tmp/scratch && PYTHONPATH=/tmp/v01/src python make_fixture.py

It trains 8 tiny episodes, saves a checkpoint, and stores the logits each agent's actor gives on one
batch of observations, so tests can check that today's stacked networks load the file and act the same.
"""

import torch

from fleetmarl.agents import build_agents  # 0.1 layout
from fleetmarl.checkpoint import load_model_checkpoint
from fleetmarl.config import Config
from fleetmarl.envs import BatchedSamplingEnv
from fleetmarl.trainer import train

cfg = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
             BATCH_SIZE=32, CAPACITY=512, NUM_ENVS=4, NUM_EPISODES=8, MODEL_SAVE_INTERVAL=8, MAX_NUM_STEPS=40,
             WARMUP_TRANSITIONS=64, SAVE_REPLAY_BUFFER=False, ENABLE_TENSORBOARD=False, EVAL_INTERVAL=0,
             PROGRESS_BAR=False, CHECKPOINTS_DIR="ckpts", RANDOM_SEED=7, MAP_SIZE=2000.0)
path = train(cfg).last_checkpoint
torch.manual_seed(0)
agents = build_agents(cfg)
load_model_checkpoint(agents, path, "cpu")
obs = {k: torch.as_tensor(v) for k, v in BatchedSamplingEnv(cfg, num_envs=4).reset(seed=3).items()}
logits = [a.actor(obs["state"][:, i].float(), obs["point_features"][:, i].float(), obs["other_obs"][:, i].float())
          for i, a in enumerate(agents)]
torch.save({"obs": obs, "logits": torch.stack(logits, 1).detach(), "checkpoint": path.name}, "expected.pt")
