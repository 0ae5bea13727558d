"""Learning-rate and exploration-noise schedules as pure functions of the episode number.

Why pure functions instead of ``torch.optim.lr_scheduler`` objects: an exact resume then needs nothing
but the episode counter (already in ``training_state.pth``); there is no scheduler state to save, load
or get out of step with the optimizer. :meth:`fleetmarl.learner.maddpg.MADDPG.set_episode` applies
:func:`lr_factor` to every optimizer at the start of each round of episodes.
"""

from __future__ import annotations

import math

from fleetmarl.config import Config


def lr_factor(config: Config, episode: int) -> float:
    """Multiplier of ``LR_ACTOR`` / ``LR_CRITIC`` for ``episode`` (0-based).

    - Warm-up: linear over ``LR_WARMUP_EPISODES`` episodes, ``(episode + 1) / LR_WARMUP_EPISODES``, so
      the first episode already learns a little and the full rate is reached at the last warm-up episode.
    - Decay (counted from the end of the warm-up):
      ``exponential``: ``LR_DECAY_RATE ** (t / LR_DECAY_EPISODES)`` (smooth);
      ``step``: ``LR_DECAY_RATE ** (t // LR_DECAY_EPISODES)``;
      ``cosine``: half a cosine from 1 down to ``LR_MIN_RATIO`` over the remaining ``NUM_EPISODES``.
    - Floor: the decayed factor never goes below ``LR_MIN_RATIO``.
    ``ENABLE_LR_SCHEDULING=False`` gives 1.0 for every episode.
    """
    if not config.ENABLE_LR_SCHEDULING:
        return 1.0
    episode = max(0, int(episode))
    warmup = config.LR_WARMUP_EPISODES
    if episode < warmup:
        return (episode + 1) / warmup
    t = episode - warmup
    floor = config.LR_MIN_RATIO
    kind = config.LR_DECAY_TYPE
    if kind == "exponential":
        decayed = config.LR_DECAY_RATE ** (t / config.LR_DECAY_EPISODES)
    elif kind == "step":
        decayed = config.LR_DECAY_RATE ** (t // config.LR_DECAY_EPISODES)
    elif kind == "cosine":
        span = max(1, config.NUM_EPISODES - warmup)
        progress = min(1.0, t / span)
        decayed = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:  # Config validation makes this unreachable; keep the message for direct callers
        raise ValueError(f"unknown LR_DECAY_TYPE {kind!r}")
    return float(max(floor, decayed))


def noise_std(config: Config, episode: int) -> float:
    """Exploration noise std on the actor logits: ``NOISE_STD_START * NOISE_DECAY**episode``, floored at
    ``NOISE_STD_END`` (a start below the end stays at the start)."""
    decayed = config.NOISE_STD_START * config.NOISE_DECAY ** max(0, int(episode))
    return float(max(min(config.NOISE_STD_END, config.NOISE_STD_START), decayed))
