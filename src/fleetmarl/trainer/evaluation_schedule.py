"""Periodic noise-free evaluation during training (``EVAL_INTERVAL``) and its log.

Why apart: an evaluation plays its own seeded episodes on its own environments, so training must go on
as if it had not happened; the one thing it shares with training is torch's global generator, which it
borrows under ``fork_rng`` and gives back unchanged.
"""

from __future__ import annotations

import torch

from fleetmarl.eval.evaluation import default_eval_seed, evaluate_algorithm
from fleetmarl.logging import RunLogger
from fleetmarl.trainer.parts import RunParts


class EvaluationSchedule:
    """Evaluates the current policy every EVAL_INTERVAL episodes (never with EVAL_INTERVAL=0)."""

    def __init__(self, parts: RunParts, logger: RunLogger) -> None:
        self.parts = parts
        self.logger = logger

    def after_round(self) -> None:
        """Evaluate when the round just finished ends on an EVAL_INTERVAL boundary."""
        c, s = self.parts.config, self.parts.state
        if c.EVAL_INTERVAL and s.episode % c.EVAL_INTERVAL == 0:
            self.evaluate()

    def evaluate(self) -> None:
        """EVAL_EPISODES noise-free episodes; their mean metrics become one ``eval_log`` entry (which the
        checkpoint of this episode reports) and ``eval/*`` scalars."""
        p = self.parts
        c, s = p.config, p.state
        with torch.random.fork_rng(devices=[]):  # evaluation must not shift the training's random stream
            summary = evaluate_algorithm(p.algo, c, episodes=c.EVAL_EPISODES, seed=default_eval_seed(c),
                                         device=p.device)
        entry = {"episode": float(s.episode), **{k: v["mean"] for k, v in summary.items()}}
        s.eval_log.append(entry)
        self.logger.scalars({f"eval/{k}": v for k, v in entry.items() if k != "episode"}, s.episode)
