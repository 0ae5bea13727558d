"""What ``training_state.pth`` holds of a run, written and read back in one place.

Why together: resume is exact only if every counter, log and random generator a save writes is put
back, and is put back where it came from; a key added to :func:`training_state` belongs in a restore
function next to it.
"""

from __future__ import annotations

from typing import Any

import torch

from fleetmarl.learner.schedules import noise_std
from fleetmarl.trainer.parts import RunParts
from fleetmarl.trainer.state import RunState


def training_state(parts: RunParts) -> dict[str, Any]:
    """The guide's ``training_state.pth`` keys, plus everything exact resume needs."""
    c, s = parts.config, parts.state
    rng = random_state(parts)  # taken first, as always, before anything else is read
    return {
        "episode": s.episode,
        "noise_std": noise_std(c, s.episode),
        "episode_rewards_log": list(s.episode_rewards_log),
        "config": c.to_dict(),
        "total_episodes_planned": c.NUM_EPISODES,
        # training_progress, checkpoint_timestamp, environment_type, random_seed: filled by
        # ckpt.complete_training_state, the one place that derives them
        "recent_mean_reward": s.recent_reward(),
        "env_steps": s.env_steps,
        "updates": s.updates,
        "metrics_log": {k: list(v) for k, v in s.metrics_log.items()},
        "eval_log": [dict(e) for e in s.eval_log],
        "run_id": s.run_id,
        "parent": s.parent,
        "algorithm": parts.algo.state_dict(),
        "rng": rng,
        "replay_buffer_saved": c.SAVE_REPLAY_BUFFER,
    }


def random_state(parts: RunParts) -> dict[str, Any]:
    """The generators that decide the run's future outside the replay buffer (which saves its own):
    torch's global one (CUDA's too, where present), the trainer's NumPy one and the environment's."""
    rng: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": parts.rng.bit_generator.state,
        "env": parts.env.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_counters(state: RunState, saved: dict[str, Any]) -> None:
    """The counters and logs of :func:`training_state` (a checkpoint older than a key starts it at zero or
    empty); the run line (``run_id``, ``parent``) is the resume's decision, not restored here."""
    state.episode = int(saved["episode"])
    state.env_steps = int(saved.get("env_steps", 0))
    state.updates = int(saved.get("updates", 0))
    state.episode_rewards_log = [float(r) for r in saved["episode_rewards_log"]]
    state.metrics_log = {k: [float(x) for x in v] for k, v in saved.get("metrics_log", {}).items()}
    state.eval_log = [dict(e) for e in saved.get("eval_log", [])]


def restore_random_state(parts: RunParts, rng: dict[str, Any]) -> None:
    """Put back what :func:`random_state` saved."""
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    parts.rng.bit_generator.state = rng["numpy"]
    parts.env.set_rng_state(rng["env"])
