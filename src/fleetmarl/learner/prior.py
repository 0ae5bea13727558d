"""A dispatcher's choice as a logit bonus: the actor learns corrections to it, not the dispatcher itself.

Residual policy learning (Silver et al. 2018, "Residual Policy Learning"; Johannink et al. 2019) for
discrete choices: the policy acts on ``actor logits + DISPATCH_PRIOR_LOGIT * one_hot(dispatcher's choice)``.
Why: the actor network has to re-derive greedy's score (priority x samples x urgency / distance, an
argmax with sequential claims and return rules) from raw features, and at the guide's ``LR_ACTOR`` it
only gets to ~92% agreement; its disagreements cost about a point of on-time rate (docs/training.md).
With the bonus the untrained fleet *is* the dispatcher, and every departure from it is one the actor
learned to want, by a logit margin larger than the bonus.

The dispatcher is greedy, ``greedy_shift`` (greedy that also brings cargo home before the shift ends) or
``greedy_chain`` (greedy_shift that also leaves a point to a busy vehicle reaching it sooner),
``DISPATCH_PRIOR_POLICY``: any dispatcher whose choice is a function of the observation alone. The bonus
and its dispatcher are part of the trained policy (saved as ``dispatch_prior_logit`` and
``dispatch_prior_policy`` in each ``agent_i.pth``'s ``meta``), so acting in training, the update's actor
and target-actor passes, ``fleetmarl eval`` and the guide's ``agent.act`` all use them. A constant: it
carries no gradient and no parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from fleetmarl.envs.policies import BatchPolicy, greedy_policy
from fleetmarl.envs.spaces import POINT
from fleetmarl.learner.replay.storage import PRIOR_KEY

DISPATCHER_INPUT_KEYS = ("state", "point_features", "other_obs")
"""What the pure dispatchers (greedy, greedy_shift, greedy_chain) read besides the point part of the action mask, which
the ``feasible`` column repeats."""


def dispatcher_choices(obs: Mapping[str, torch.Tensor | np.ndarray], *, together: bool = True,
                   dispatcher: BatchPolicy = greedy_policy) -> np.ndarray:
    """A pure ``dispatcher``'s actions (B, A) on a batched observation (B, A, ...), torch or NumPy.

    ``together``: vehicles are dispatched in index order, each skipping the points the earlier ones were
    sent to, as the greedy dispatcher and a coordinated fleet (``COORDINATED_CHOICES``) choose; otherwise
    each vehicle is asked alone, as an uncoordinated fleet and the guide's one-agent ``agent.act`` choose.
    Without an ``action_mask`` (``agent.act`` may have none) the point part of the mask is read from the
    ``feasible`` column, which holds exactly those entries; stay and return are always allowed.
    """
    arrays = {key: _numpy(obs[key]) for key in DISPATCHER_INPUT_KEYS}
    mask = obs.get("action_mask")
    if mask is None:
        feasible = arrays["point_features"][..., POINT["feasible"]] > 0.5
        mask = np.concatenate([feasible, np.ones((*feasible.shape[:-1], 2), dtype=bool)], axis=-1)
    arrays["action_mask"] = _numpy(mask).astype(bool)
    if together:
        return dispatcher(arrays)
    batch, agents = arrays["state"].shape[:2]
    alone = {key: value.reshape(batch * agents, 1, *value.shape[2:]) for key, value in arrays.items()}
    return dispatcher(alone).reshape(batch, agents)


def prior_choice(obs: Mapping[str, torch.Tensor | np.ndarray], device: torch.device, *, together: bool = True,
                 dispatcher: BatchPolicy = greedy_policy) -> torch.Tensor:
    """The dispatcher's choices (B, A) long on ``device``. Replayed observations carry the choice the replay
    buffer stored with them (``PRIOR_KEY``: the same one, asked once per frame instead of once per update)."""
    stored = obs.get(PRIOR_KEY)
    if stored is not None:
        return torch.as_tensor(stored, device=device).long()
    if "point_slots" in obs:
        raise ValueError("a replayed view of the points (layout 'fleet_view') holds too few points to ask the prior "
                         "dispatcher: build the ReplayBuffer with prior=algo.stored_prior()")
    return torch.as_tensor(dispatcher_choices(obs, together=together, dispatcher=dispatcher), device=device).long()


def prior_bonus(choice: torch.Tensor, weight: float, num_actions: int) -> torch.Tensor:
    """(A, B, K) float32, agent-major like the stacked actors' logits: ``weight`` on ``choice`` (B, A), else 0."""
    return weight * F.one_hot(choice, num_actions).to(torch.float32).transpose(0, 1)


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
