"""From network outputs to actions: greedy choice with exploration, and differentiable samples.

Shared by acting (one agent or all) and the update, so the masking rule is written once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED_LOGIT = -1e9
"""Finite stand-in for -inf in the update, so a softmax over a (malformed) all-masked row stays finite."""


def select_actions(logits: torch.Tensor, noise_std: float = 0.0, action_mask: torch.Tensor | None = None,
                   fallback: int | None = None) -> torch.Tensor:
    """Greedy discrete actions from logits (..., K) with optional Gaussian exploration noise.

    Masked actions are never chosen, with or without noise: they are set to -inf *after* the noise.
    A row whose mask allows nothing (a broken environment) gets ``fallback`` (stay), not a masked pick.
    Returns LongTensor (...,). Noise comes from torch's global RNG (reproducible under a seed).
    """
    if noise_std > 0:
        logits = logits + torch.randn_like(logits) * noise_std
    if action_mask is None:
        return logits.argmax(-1)
    action_mask = action_mask.to(torch.bool)
    chosen = logits.masked_fill(~action_mask, float("-inf")).argmax(-1)
    if fallback is not None:
        chosen = torch.where(action_mask.any(-1), chosen, torch.full_like(chosen, fallback))
    return chosen


def straight_through_gumbel(logits: torch.Tensor, action_mask: torch.Tensor | None,
                            temperature: float = 1.0) -> torch.Tensor:
    """Differentiable discrete action (..., K): a hard one-hot sample forward, softmax gradient backward.

    Masked entries get a (finite) huge negative logit, so they are never sampled and carry ~0 gradient.
    """
    logits = logits.float()
    if action_mask is not None:
        logits = logits.masked_fill(~action_mask.to(torch.bool), MASKED_LOGIT)
    gumbel = -torch.empty_like(logits).exponential_().log()
    soft = ((logits + gumbel) / temperature).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def explore_continuous(actions: torch.Tensor, noise_std: float) -> torch.Tensor:
    """Gaussian exploration for continuous actions in [-1, 1], clipped back into the box."""
    if noise_std <= 0:
        return actions
    return (actions + torch.randn_like(actions) * noise_std).clamp(-1.0, 1.0)


# ---------------------------------------------------------------------- coordinated choices
def claimed_before(actions: torch.Tensor, num_points: int) -> torch.Tensor:
    """Points chosen by the agents before each one: actions (B, A) -> (B, A, N) bool.

    Row i says which points agents 0..i-1 chose; rebuilt from replayed actions at update time, it is the
    same set the acting agents saw when they chose in index order.
    """
    chosen = F.one_hot(actions.long().clamp(0, num_points), num_points + 1)[..., :num_points]  # (B, A, N)
    return (chosen.cumsum(1) - chosen) > 0


def select_in_order(logits: torch.Tensor, noise_std: float, action_mask: torch.Tensor, taken: torch.Tensor,
                    num_points: int) -> torch.Tensor:
    """Agents choose one after another; a point already taken, or chosen by an earlier agent, is not offered.

    logits (B, A, K), action_mask (B, A, K) bool, taken (B, N) bool (points some vehicle already heads
    to). This is how the greedy dispatcher avoids sending two vehicles to one point; the networks run
    once for all agents, only the masked argmax is sequential. Returns LongTensor (B, A).
    """
    if noise_std > 0:
        logits = logits + torch.randn_like(logits) * noise_std
    taken = taken.clone()
    chosen = []
    for agent in range(logits.shape[1]):
        mask = action_mask[:, agent].clone()
        mask[:, :num_points] &= ~taken
        action = select_actions(logits[:, agent], 0.0, mask, fallback=num_points)
        to_point = action < num_points
        taken[to_point, action[to_point]] = True
        chosen.append(action)
    return torch.stack(chosen, dim=1)
