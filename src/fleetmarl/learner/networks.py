"""Networks of one agent: a point-set Transformer encoder, a pointer-style actor, a centralised critic.

Shapes use ``...`` for any leading batch dims (none for one observation, ``(B,)`` for a batch). All
agents at once is :mod:`fleetmarl.learner.stacked_networks`, which restates these forwards over stacked
parameters (A, ...) and must change with them. N = NUM_POINTS, F = point features, E = EMBED_DIM,
H = HIDDEN_DIM, K = num_actions = N + 2, A = NUM_AGENTS.

Why these shapes of network:

- **Point encoder** (:class:`PointEncoder`): a pre-LayerNorm Transformer over the set of point rows,
  no positional encoding, pooled by mean and max over points. Without positions, attention is
  permutation-*equivariant* (row j of the output belongs to point j whatever the order) and the pooled
  vector is permutation-*invariant*. It is written with plain ``Linear`` and ``matmul``/``softmax``
  (not ``nn.MultiheadAttention``) so its stacked twin in :mod:`fleetmarl.learner.stacked_networks` can name
  every weight and evaluate all agents in one batched call. Empty slots are *not* masked
  by default: the environment's status columns say what a slot is, and the network learns to ignore
  empty ones. An explicit padding ``mask`` is supported for callers that have one.
- **Actor** (:class:`Actor`): the action "go to point j" must know *which* point j is, which a pooled
  set embedding cannot say. So the logit of point j is a score of point j's own token against the
  agent's context (a pointer head), and only the two extra actions (stay/charge, return) come from
  the context alone. Permuting the points permutes their logits the same way.
- **Critic** (:class:`CentralCritic`): agent i's critic sees agent i's point rows (through its own,
  cheaper per-point MLP encoder, DeepSets style), every agent's state vector and every agent's action.
  Each agent's discrete action enters as the *embedding of the point it chose* (one-hot action @
  point tokens, plus a learned embedding for stay / return), so Q is differentiable with respect to
  the (straight-through Gumbel) action and knows what the chosen point is. A Transformer in the critic
  too would nearly double the update cost for little gain: the critic's job here is value regression on
  features the environment already makes informative.
- **Continuous actions** (for benchmarks such as PettingZoo MPE): the actor's context feeds a
  ``tanh`` head of ``action_dim`` outputs and the critic reads the raw action vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fleetmarl.envs.spaces import ObservationDims

FFN_RATIO = 2
"""Feed-forward width of the encoder = FFN_RATIO * EMBED_DIM; 2 rather than the usual 4 because the
per-point FFN dominates the update's cost (tokens = batch x points x agents) and 2 learns as well here."""


def masked_pool(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Permutation-invariant pooling: mean and max over points, concatenated.

    tokens (..., N, E), mask (..., N) bool (True = a real point) or None -> (..., 2E).
    Masked rows contribute to neither; a set with no point pools to zeros.
    """
    if tokens.shape[-2] == 0:
        return tokens.new_zeros(*tokens.shape[:-2], 2 * tokens.shape[-1])
    if mask is None:
        return torch.cat([tokens.mean(-2), tokens.amax(-2)], dim=-1)
    keep = mask.unsqueeze(-1).to(tokens.dtype)
    count = keep.sum(-2).clamp_min(1.0)
    mean = (tokens * keep).sum(-2) / count
    # max over real rows only; an all-empty set gives 0 instead of -inf
    neg = torch.finfo(tokens.dtype).min
    peak = tokens.masked_fill(~mask.unsqueeze(-1), neg).amax(-2)
    peak = torch.where(mask.any(-1, keepdim=True), peak, torch.zeros_like(peak))
    return torch.cat([mean, peak], dim=-1)


class AttentionBlock(nn.Module):
    """Pre-LayerNorm self-attention + feed-forward block over point tokens (..., N, E) -> (..., N, E)."""

    def __init__(self, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"EMBED_DIM ({dim}) must be divisible by TRANSFORMER_HEADS ({heads})")
        self.heads = heads
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, ff_dim)
        self.ff_out = nn.Linear(ff_dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        dim = x.shape[-1]
        head_dim = dim // self.heads
        q, k, v = self.qkv(self.norm_attn(x)).unflatten(-1, (3, self.heads, head_dim)).unbind(-3)
        q, k, v = (t.transpose(-2, -3) for t in (q, k, v))  # (..., heads, N, head_dim)
        attn_mask = None
        if mask is not None:
            # padded keys get no attention; a fully padded set attends to everything (no NaN; pooled out)
            keys = mask | ~mask.any(-1, keepdim=True)
            attn_mask = keys.unsqueeze(-2).unsqueeze(-2)  # (..., 1, 1, N)
        # the fused kernel is several times faster than matmul + softmax + matmul on CPU at N ~ 30, and
        # keeps the (..., heads, N, N) score tensor out of memory
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(attended.transpose(-2, -3).flatten(-2))  # (..., N, E)
        return x + self.ff_out(F.relu(self.ff_in(self.norm_ff(x))))


class PointEncoder(nn.Module):
    """Transformer over a set of points: (..., N_points, F) [+ mask (..., N_points)] -> tokens, pooled.

    ``encode`` returns per-point tokens (..., N, E) (permutation-equivariant) and the pooled set vector
    (..., 2E) (permutation-invariant, mean and max); ``forward`` returns only the pooled vector.
    """

    def __init__(self, point_dim: int, embed_dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input = nn.Linear(point_dim, embed_dim)
        self.blocks = nn.ModuleList(AttentionBlock(embed_dim, heads, FFN_RATIO * embed_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(embed_dim)

    @property
    def pooled_dim(self) -> int:
        return 2 * self.embed_dim

    def encode(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input(points)
        for block in self.blocks:
            x = block(x, mask)
        tokens = self.norm(x)
        return tokens, masked_pool(tokens, mask)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(points, mask)[1]


class Actor(nn.Module):
    """Decentralised policy of one agent.

    Inputs: state (..., S), point_features (..., N, F), other_obs (..., A-1, O).
    Output: discrete -> logits (..., K) (points first, then stay, return); continuous -> actions in
    [-1, 1] (..., action_dim).
    """

    def __init__(self, dims: ObservationDims, hidden_dim: int, embed_dim: int, heads: int, layers: int,
                 *, continuous: bool = False) -> None:
        super().__init__()
        self.continuous = continuous
        self.num_points = dims.num_points
        self.encoder = PointEncoder(dims.point, embed_dim, heads, layers)
        context_in = dims.state + dims.other_rows * dims.other + self.encoder.pooled_dim
        self.context = nn.Sequential(nn.Linear(context_in, hidden_dim), nn.ReLU(),
                                     nn.Linear(hidden_dim, hidden_dim), nn.ReLU())
        if continuous:
            self.action_head = nn.Linear(hidden_dim, dims.num_actions)
        else:
            # pointer head: score(point j) = v . relu(W_t token_j + W_c context)
            self.point_key = nn.Linear(embed_dim, embed_dim)
            self.point_query = nn.Linear(hidden_dim, embed_dim, bias=False)
            self.point_score = nn.Linear(embed_dim, 1)
            self.extra_head = nn.Linear(hidden_dim, dims.num_actions - dims.num_points)

    def forward(self, state: torch.Tensor, point_features: torch.Tensor, other_obs: torch.Tensor,
                point_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens, pooled = self.encoder.encode(point_features, point_mask)
        context = self.context(torch.cat([state, other_obs.flatten(-2), pooled], dim=-1))  # (..., H)
        if self.continuous:
            return torch.tanh(self.action_head(context))
        hidden = F.relu(self.point_key(tokens) + self.point_query(context).unsqueeze(-2))  # (..., N, E)
        point_logits = self.point_score(hidden).squeeze(-1)  # (..., N)
        return torch.cat([point_logits, self.extra_head(context)], dim=-1)  # (..., K)


class CentralCritic(nn.Module):
    """Q of one agent from centralised information.

    Inputs: point_features (..., N, F) of *this* agent, states (..., A, S) of all agents, actions of all
    agents: discrete (..., A, K) one-hot (or straight-through Gumbel) vectors, continuous (..., A, D).
    Output: Q (...,).
    """

    def __init__(self, dims: ObservationDims, hidden_dim: int, embed_dim: int, *, continuous: bool = False) -> None:
        super().__init__()
        self.continuous = continuous
        self.num_points = dims.num_points
        self.encoder = nn.Sequential(nn.Linear(dims.point, embed_dim), nn.ReLU(),
                                     nn.Linear(embed_dim, embed_dim), nn.ReLU())
        if continuous:
            action_in = dims.num_agents * dims.num_actions
        else:
            # learned "tokens" for the actions that are not a point (stay/charge, return to base)
            self.extra_action_embed = nn.Parameter(torch.randn(dims.num_actions - dims.num_points, embed_dim) * 0.1)
            action_in = dims.num_agents * embed_dim
        q_in = dims.num_agents * dims.state + 2 * embed_dim + action_in
        self.q = nn.Sequential(nn.Linear(q_in, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                               nn.Linear(hidden_dim, 1))

    def embed_points(self, point_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., N, F) -> tokens (..., N, E), pooled (..., 2E). Independent of the actions, so the actor
        loss can reuse it from the critic loss."""
        tokens = self.encoder(point_features)
        return tokens, masked_pool(tokens)

    def q_value(self, tokens: torch.Tensor, pooled: torch.Tensor, states: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            action_part = actions.flatten(-2)
        else:
            n = self.num_points
            chosen = torch.matmul(actions[..., :n], tokens)  # (..., A, N) @ (..., N, E) -> (..., A, E)
            chosen = chosen + torch.matmul(actions[..., n:], self.extra_action_embed)
            action_part = chosen.flatten(-2)
        return self.q(torch.cat([states.flatten(-2), pooled, action_part], dim=-1)).squeeze(-1)

    def forward(self, point_features: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q_value(*self.embed_points(point_features), states, actions)
