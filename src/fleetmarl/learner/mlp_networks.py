"""Classic MADDPG networks for flat observations (PettingZoo environments), stacked across agents.

The fleet's networks read point sets with a Transformer; a standard environment gives each agent one
flat vector, so the actor is an MLP on its own observation and each agent's critic an MLP on every
agent's observation and action (Lowe et al. 2017). As in :mod:`fleetmarl.learner.networks`, every weight
is one tensor with a leading agent dim (:class:`~fleetmarl.learner.networks.StackedLinear`), so all
agents run as one batched GEMM per layer and an agent is slice ``i``.

Shapes: A = agents, B = batch, O = observation size (padded to the widest agent), K = discrete actions
or D = continuous action size, H = HIDDEN_DIM.
"""

from __future__ import annotations

import torch
from torch import nn

from fleetmarl.learner.networks import StackedLinear


class StackedMLP(nn.Module):
    """``layers`` StackedLinear of width ``hidden`` with ReLU between, (A, ..., in) -> (A, ..., out)."""

    def __init__(self, agents: int, in_features: int, hidden: int, out_features: int, layers: int = 2) -> None:
        super().__init__()
        widths = [in_features, *([hidden] * layers), out_features]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            blocks.append(StackedLinear(agents, a, b))
            if i < len(widths) - 2:
                blocks.append(nn.ReLU())
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FlatActor(nn.Module):
    """Each agent's policy on its own observation: obs (A, B, O) -> logits (A, B, K) or tanh actions (A, B, D)."""

    active_column = None  # no point rows (AgentTeam.point_rows reads it)

    def __init__(self, agents: int, obs_dim: int, hidden: int, out_dim: int, *, continuous: bool) -> None:
        super().__init__()
        self.continuous = continuous
        self.mlp = StackedMLP(agents, obs_dim, hidden, out_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.mlp(obs)
        return torch.tanh(out) if self.continuous else out


class FlatCentralCritic(nn.Module):
    """Agent i's Q on all observations and all actions: obs (B, A, O), actions (B, A, K|D) shared by every
    critic, or (A, B, A, K|D) with a joint action per critic (the actor loss) -> Q (A, B)."""

    def __init__(self, agents: int, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.agents = agents
        self.mlp = StackedMLP(agents, agents * (obs_dim + action_dim), hidden, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        a = self.agents
        seen = obs.flatten(-2).unsqueeze(0).expand(a, -1, -1)  # (A, B, A*O)
        joint = actions.flatten(-2)
        if joint.dim() == 2:
            joint = joint.unsqueeze(0).expand(a, -1, -1)  # (A, B, A*K)
        return self.mlp(torch.cat([seen, joint], dim=-1)).squeeze(-1)
