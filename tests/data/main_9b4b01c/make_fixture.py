import sys, torch, numpy as np
from fleetmarl.config import Config
from fleetmarl.trainer import train
from fleetmarl.agents import build_agents
from fleetmarl.checkpoint import load_model_checkpoint
cfg = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
             BATCH_SIZE=32, CAPACITY=512, NUM_ENVS=4, NUM_EPISODES=8, MODEL_SAVE_INTERVAL=8, MAX_NUM_STEPS=40,
             WARMUP_TRANSITIONS=64, SAVE_REPLAY_BUFFER=False, ENABLE_TENSORBOARD=False, EVAL_INTERVAL=0,
             PROGRESS_BAR=False, CHECKPOINTS_DIR="ckpts", RANDOM_SEED=7, MAP_SIZE=2000.0)
res = train(cfg)
path = res.last_checkpoint
torch.manual_seed(0)
agents = build_agents(cfg)
load_model_checkpoint(agents, path, "cpu")
from fleetmarl.envs import BatchedSamplingEnv
env = BatchedSamplingEnv(cfg, num_envs=4)
obs = env.reset(seed=3)
obs_t = {k: torch.as_tensor(v) for k, v in obs.items()}
logits = [a.actor(obs_t["state"][:, i].float(), obs_t["point_features"][:, i].float(), obs_t["other_obs"][:, i].float()) for i, a in enumerate(agents)]
torch.save({"obs": obs_t, "logits": torch.stack(logits, 1).detach(), "checkpoint": path.name}, "expected.pt")
print(path)
