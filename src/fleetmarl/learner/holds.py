"""Held stays: exploration that keeps an idle vehicle waiting for several steps, not one.

Why: the dispatcher that beats greedy (OR-Tools, +0.02 on-time) mostly *waits*: where greedy would send
an idle vehicle to a point, it keeps it back because a vehicle that is busy now will take that point
(329 of 414 such decisions on 8 episodes, 300 of them at the base; ``benchmarks/greedy_headroom.py``).
A one-step stay followed by greedy only delays the departure by a step (worth −0.12 ± 0.67 on-time
samples from such a state, ``benchmarks/waiting_value.py``), so a critic of a greedy-like fleet has
nothing to find one step at a time. Holding the stay for a drawn number of steps (temporally
extended exploration, as "ez-greedy", Dabney et al. 2021) puts sustained waits in the replay, and n-step
targets (``N_STEP``) carry what they were worth back to the decision that began them.

A hold only restricts the acting mask: the held vehicle is offered nothing but stay, so a vehicle after
it in a coordinated step may take the point it would have gone to. Holds end with the round (episodes
end together), so nothing of them crosses a checkpoint and a resume stays exact. Draws come from the
trainer's generator, and only when ``EXPLORE_HOLD_PROB`` > 0.
"""

from __future__ import annotations

import numpy as np


class StayHolds:
    """Per environment and vehicle, how many more steps it is held at stay."""

    def __init__(self, num_envs: int, num_agents: int, num_points: int, probability: float, max_steps: int,
                 rng: np.random.Generator) -> None:
        self.left = np.zeros((num_envs, num_agents), dtype=np.int64)
        self.num_points = num_points
        self.probability = probability
        self.max_steps = max_steps
        self.rng = rng

    def reset(self) -> None:
        """A new round: no vehicle is held."""
        self.left[:] = 0

    def acting_mask(self, action_mask: np.ndarray) -> np.ndarray:
        """The mask to act on this step (B, A, K): a held vehicle may only stay (action ``num_points``).

        A vehicle that may go to some point and is not held starts a hold of 1..``max_steps`` steps
        (uniform) with ``probability``; each held step counts down one."""
        free = action_mask[..., : self.num_points].any(-1)
        start = free & (self.left == 0) & (self.rng.random(self.left.shape) < self.probability)
        self.left[start] = self.rng.integers(1, self.max_steps + 1, size=int(start.sum()))
        held = free & (self.left > 0)
        self.left[held] -= 1
        if not held.any():
            return action_mask
        mask = action_mask.copy()
        mask[held] = False
        mask[held, self.num_points] = True
        return mask
