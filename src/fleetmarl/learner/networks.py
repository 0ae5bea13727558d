"""The networks of every agent at once: parameters stacked along a leading agent dim A.

This is the only implementation of the networks. Each weight is one tensor ``(A, ...)``, as TorchRL's
``MultiAgentNetBase`` keeps them, so a forward over all agents is one batched GEMM per layer (bias fused
into ``baddbmm``) and one fused attention call, and one agent is slice ``i`` of the same tensors
(:class:`fleetmarl.learner.agent.AgentView`). Parameter names follow the per-agent modules that
``agent_i.pth`` has always held (``encoder.input.weight``, ``context.0.weight``, ``q.4.bias``...), so a
slice's state_dict is exactly an agent's file.

Shapes: every input and output is agent-major, ``(A, B, ...)``. A = agents, B = batch, N = points,
F = point features, E = EMBED_DIM, H = HIDDEN_DIM, S = state, O = other-agent features, K = actions
(D for continuous actions).

Why these networks:

- **Point encoder** (:class:`PointEncoder`): a pre-LayerNorm Transformer over the set of point rows,
  no positional encoding, pooled by mean and max. Without positions, attention is permutation-
  *equivariant* (row j of the output belongs to point j whatever the order) and the pooled vector is
  permutation-*invariant*. Empty slots are not masked by default: the status columns say what a slot
  is. An explicit padding ``mask`` is supported for callers that have one.
- **Actor** (:class:`Actor`): "go to point j" must know *which* point j is, which a pooled set vector
  cannot say. So the logit of point j scores point j's own token against the agent's context (a
  pointer head), and only stay / return come from the context alone.
- **Critic** (:class:`CentralCritic`): agent i's critic reads agent i's active point rows (a per-row MLP,
  DeepSets style: a Transformer here would nearly double the update's cost for little gain), every
  agent's state and every agent's action. A discrete action enters as the *embedding of the point it
  chose* (one-hot @ point tokens, plus learned embeddings for stay / return), so Q is differentiable in
  the (straight-through Gumbel) action and knows what the chosen point is.
- **Continuous actions** (standard benchmarks): a ``tanh`` head on the actor's context; the critic
  reads the raw action vectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fleetmarl.envs.spaces import ObservationDims

FFN_RATIO = 2
"""Feed-forward width of the encoder = FFN_RATIO * EMBED_DIM; 2 rather than the usual 4 because the
per-point FFN dominates the update's cost (rows = agents x batch x points) and 2 learns as well here."""


class StackedLinear(nn.Module):
    """``nn.Linear`` for A agents at once: x (A, ..., in) -> (A, ..., out).

    weight (A, out, in), bias (A, out); each agent's slice is initialised as ``nn.Linear`` would be.
    """

    def __init__(self, agents: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(agents, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(agents, out_features)) if bias else None
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        with torch.no_grad():  # kaiming_uniform(a=sqrt 5) of nn.Linear reduces to this bound
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
        """``bias=False`` leaves the bias out (a caller that adds it to a smaller tensor instead)."""
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (A, M, in)
        weight = self.weight.transpose(1, 2)
        if self.bias is None or not bias:
            out = torch.bmm(flat, weight)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), flat, weight)  # bias add fused into the GEMM
        return out.view(*x.shape[:-1], out.shape[-1])


class StackedLayerNorm(nn.Module):
    """``nn.LayerNorm`` over the last dim for A agents: normalise, then one fused per-agent affine."""

    def __init__(self, agents: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(agents, dim))
        self.bias = nn.Parameter(torch.zeros(agents, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, dim = x.shape[0], x.shape[-1]
        normed = F.layer_norm(x, (dim,)).reshape(a, -1, dim)  # (A, M, E)
        out = torch.addcmul(self.bias.unsqueeze(1), normed, self.weight.unsqueeze(1))
        return out.view(x.shape)


def set_pool(tokens: torch.Tensor) -> torch.Tensor:
    """Permutation-invariant pooling of a dense set: mean and max over points, (..., N, E) -> (..., 2E)."""
    if tokens.shape[-2] == 0:
        return tokens.new_zeros(*tokens.shape[:-2], 2 * tokens.shape[-1])
    return torch.cat([tokens.mean(-2), tokens.amax(-2)], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention (..., N, d) with an optional key mask (..., 1, 1, N) (True = attend).

    fp32 uses the fused kernel: several times faster than matmul + softmax + matmul on CPU at N ~ 30.
    bf16 (autocast) writes it out: the fused CPU kernel's bf16 backward is ~9x slower than its fp32 one
    at these shapes, while two bf16 batched GEMMs around an fp32 softmax are faster than either.
    """
    if q.dtype != torch.bfloat16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    # softmax written out: over a last dim of ~10 keys, torch's CPU softmax kernel is ~5x slower than this
    weights = (scores - scores.amax(-1, keepdim=True)).exp()
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.matmul(weights.to(v.dtype), v)


class AttentionBlock(nn.Module):
    """Pre-LayerNorm self-attention + feed-forward over point tokens: x (A, B, N, E), mask (A, B, N) -> x."""

    def __init__(self, agents: int, dim: int, heads: int, ff_dim: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"EMBED_DIM ({dim}) must be divisible by TRANSFORMER_HEADS ({heads})")
        self.heads = heads
        self.norm_attn = StackedLayerNorm(agents, dim)
        self.qkv = StackedLinear(agents, dim, 3 * dim)
        self.proj = StackedLinear(agents, dim, dim)
        self.norm_ff = StackedLayerNorm(agents, dim)
        self.ff_in = StackedLinear(agents, dim, ff_dim)
        self.ff_out = StackedLinear(agents, ff_dim, dim)

    def forward(self, x: torch.Tensor, rows: PointRows) -> torch.Tensor:
        """x (A, T, E) flat rows; only attention lays them out per sample, one :class:`RowGroup` at a time."""
        qkv = self.qkv(self.norm_attn(x))  # (A, T, 3E)
        parts = [self._attend(group, group.pad(qkv.index_select(1, group.rows))) for group in rows.groups]
        attended = torch.cat(parts, dim=1).index_select(1, rows.regroup) if parts else torch.zeros_like(x)
        x = x + self.proj(attended)
        return x + self.ff_out(F.relu(self.ff_in(self.norm_ff(x))))

    def _attend(self, group: RowGroup, qkv: torch.Tensor) -> torch.Tensor:
        """Self-attention within each sample of one group: qkv (A, B_g, W_g, 3E) -> (A, T_g, E)."""
        a, b, w, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2], qkv.shape[3] // 3
        # agents and samples fold into one dim: a single attention call serves every agent
        q, k, v = qkv.reshape(a * b, w, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attended = attention(q, k, v, group.key_mask(a))  # (A*B_g, heads, W_g, E/heads)
        return group.unpad(attended.transpose(1, 2).reshape(a, b, w, dim))


class PointEncoder(nn.Module):
    """Transformer over each sample's set of point rows: :class:`PointRows` -> tokens (A, T, E), pooled (A, B, 2E).

    Tokens are permutation-equivariant, the pooled vector (mean and max over a sample's rows)
    permutation-invariant; a sample without rows pools to zeros. Shapes as in BenchMARL's set encoders,
    with the batch ragged: ``(A, T, .)`` where T is the total number of rows over the batch.
    """

    def __init__(self, agents: int, point_dim: int, embed_dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input = StackedLinear(agents, point_dim, embed_dim)
        self.blocks = nn.ModuleList(AttentionBlock(agents, embed_dim, heads, FFN_RATIO * embed_dim)
                                    for _ in range(layers))
        self.norm = StackedLayerNorm(agents, embed_dim)

    @property
    def pooled_dim(self) -> int:
        return 2 * self.embed_dim

    def forward(self, rows: PointRows) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input(rows.rows)
        for block in self.blocks:
            x = block(x, rows)
        tokens = self.norm(x)
        return tokens, rows.pool(tokens)


INACTIVE_LOGIT = -1e4
"""Logit of a point slot that holds no active point: never the argmax, even without an action mask
(the guide's ``agent.act(state, point_features, other_obs)`` passes none), and finite in bf16."""


ATTENTION_GROUPS = 4
"""Attention runs on up to this many groups of samples with similar row counts, each padded only to its
own widest sample. Padding every sample to the batch's widest wastes most of the attention's work: under
the greedy dispatcher a `full` sample holds 2.5 active points on average but the widest of 512 holds ~12
(attention cost grows with the square of the width)."""


@dataclass(frozen=True)
class RowGroup:
    """Samples attended together, laid out (B_g, width) with their rows first and padding after.

    ``rows`` (T_g,) are the group's rows' indices in the flat layout, ``place`` (T_g,) each row's position
    in the padded ``B_g * width`` layout, ``count`` (B_g,) rows per sample.
    """

    rows: torch.Tensor
    place: torch.Tensor
    count: torch.Tensor
    width: int

    @property
    def batch(self) -> int:
        return self.count.shape[0]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(A, T_g, C) -> (A, B_g, width, C), zeros where no row is."""
        a, c = x.shape[0], x.shape[-1]
        out = x.new_zeros(a, self.batch * self.width, c).index_copy(1, self.place, x)
        return out.view(a, self.batch, self.width, c)

    def unpad(self, y: torch.Tensor) -> torch.Tensor:
        """(A, B_g, width, C) -> (A, T_g, C): the inverse of :meth:`pad`."""
        return y.reshape(y.shape[0], -1, y.shape[-1]).index_select(1, self.place)

    def key_mask(self, agents: int) -> torch.Tensor | None:
        """Attention mask (A*B_g, 1, 1, width), True = a real row; None when every sample is full."""
        if bool((self.count == self.width).all()):
            return None
        keys = torch.arange(self.width, device=self.count.device) < self.count.unsqueeze(-1)  # (B_g, W)
        return keys.repeat(agents, 1).view(agents * self.batch, 1, 1, self.width)


@dataclass(frozen=True)
class PointRows:
    """The point rows an encoder reads, flattened over the batch: each sample keeps a ragged set.

    ``rows`` (A, T, F) holds the kept rows of every sample one after another (T in all); ``sample`` (T,)
    says which batch entry each row belongs to, ``slot`` (T,) which of the N points it is, ``count`` (B,)
    how many rows each sample kept. Per-row layers run on the T rows alone; attention reads them group
    by group (``groups``, samples with rows only), and ``regroup`` (T,) puts the groups' concatenated
    rows back in flat order.
    """

    rows: torch.Tensor
    sample: torch.Tensor
    slot: torch.Tensor
    count: torch.Tensor
    num_points: int
    groups: tuple[RowGroup, ...]
    regroup: torch.Tensor

    @property
    def batch(self) -> int:
        return self.count.shape[0]

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean and max over each sample's rows: (A, T, E) -> (A, B, 2E); a sample without rows gives 0."""
        a, e = tokens.shape[0], tokens.shape[-1]
        total = tokens.new_zeros(a, self.batch, e).index_add(1, self.sample, tokens)
        mean = total / self.count.clamp_min(1).unsqueeze(-1).to(tokens.dtype)
        # rows of a sample are contiguous, so a segment max needs no padding (3x faster than scatter_reduce)
        lengths = self.count.expand(a, -1).contiguous()  # (A, B): segment_reduce wants one length per segment
        peak = torch.segment_reduce(tokens, "max", lengths=lengths, axis=1)  # empty samples: -inf
        peak = torch.where((self.count > 0).unsqueeze(-1), peak, torch.zeros_like(peak))
        return torch.cat([mean, peak], dim=-1)

    def weigh_rows(self, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Sum over each sample's rows of ``weights[..., slot] * x``: weights (X, B, M, N) with X = 1 or
        A, x (A, T, C) -> (A, B, M, C). A one-hot weight picks the chosen point's row (0 for a slot
        without a row); soft weights pass gradients, as a matmul with dense per-slot rows would.

        Sparse batches (under a quarter of the slots kept) weigh the rows one by one; dense ones lay
        the rows out per slot and multiply, which is cheaper there (same result either way).
        """
        x_agents, b, m, n = weights.shape
        index = self.sample * n + self.slot
        if 4 * index.shape[0] >= b * n:
            per_slot = x.new_zeros(x.shape[0], b * n, x.shape[-1]).index_copy(1, index, x)
            return torch.matmul(weights, per_slot.view(x.shape[0], b, n, -1))
        per_row = weights[:, self.sample, :, self.slot].transpose(0, 1)  # (X, T, M): only the kept rows' weights are read
        weighted = per_row.unsqueeze(-1) * x.unsqueeze(2)  # (A, T, M, C)
        return weighted.new_zeros(x.shape[0], b, m, x.shape[-1]).index_add(1, self.sample, weighted)

    def scatter_logits(self, scores: torch.Tensor, fill: float) -> torch.Tensor:
        """Per-row scores (A, T) onto every point slot (A, B, N); slots without a row get ``fill``."""
        a = scores.shape[0]
        out = scores.new_full((a, self.batch * self.num_points), fill)
        out = out.index_copy(1, self.sample * self.num_points + self.slot, scores)
        return out.view(a, self.batch, self.num_points)


def select_rows(points: torch.Tensor, active_column: int | None) -> PointRows:
    """The rows of points (A, B, N, F) that hold an active point (all rows when ``active_column`` is None).

    Why: in ``full`` most slots are empty, served or missed (2.5 of 30 are active on average under the
    greedy dispatcher, at most 12 in a batch of 512); they can never be chosen, and an encoder over all 30
    rows would spend most of the update's time on them and dilute the pooled vector. The active column
    is the same for every agent, so agent 0's row decides.
    """
    a, b, n, _ = points.shape
    if active_column is None:
        keep = torch.ones(b, n, dtype=torch.bool, device=points.device)
    else:
        keep = points[0, :, :, active_column] > 0.5  # (B, N)
    sample, slot, count, groups, regroup = row_layout(keep)
    rows = points[:, sample, slot]  # (A, T, F); indexing reads a transposed (agent-major) view without a copy
    return PointRows(rows, sample, slot, count, n, groups, regroup)


def row_layout(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[RowGroup, ...], torch.Tensor]:
    """The kept rows of keep (B, N) bool, as :class:`PointRows` lays them out: (sample, slot, count, groups,
    regroup)."""
    n = keep.shape[-1]
    flat = keep.flatten().nonzero().squeeze(-1)  # row-major: each sample's rows together, in slot order
    sample, slot = flat // n, flat % n
    count = keep.sum(-1)
    groups = _row_groups(count, torch.cumsum(count, 0) - count)
    regroup = torch.empty_like(flat)
    if groups:
        order = torch.cat([group.rows for group in groups])
        regroup[order] = torch.arange(order.shape[0], device=keep.device)
    return sample, slot, count, groups, regroup


def _row_groups(count: torch.Tensor, first: torch.Tensor) -> tuple[RowGroup, ...]:
    """Samples with rows, sorted by row count and cut into up to ATTENTION_GROUPS equal groups.

    count (B,) rows per sample, first (B,) index of each sample's first row in the flat layout.
    """
    order = torch.argsort(count, stable=True)
    order = order[count[order] > 0]  # a sample without rows has nothing to attend
    if order.shape[0] == 0:
        return ()
    groups = []
    for samples in order.tensor_split(min(ATTENTION_GROUPS, order.shape[0])):
        counts = count[samples]
        total, width = int(counts.sum()), int(counts[-1])  # sorted: the last is the widest
        start = torch.cumsum(counts, 0) - counts  # each sample's first row within the group
        within = torch.arange(total, device=count.device) - start.repeat_interleave(counts, output_size=total)
        rows = first[samples].repeat_interleave(counts, output_size=total) + within
        slots = torch.arange(samples.shape[0], device=count.device) * width
        place = slots.repeat_interleave(counts, output_size=total) + within
        groups.append(RowGroup(rows, place, counts, width))
    return tuple(groups)


class Actor(nn.Module):
    """Decentralised policies of A agents.

    Inputs: state (A, B, S), point_features (A, B, N, F), other_obs (A, B, A-1, O). Output: discrete ->
    logits (A, B, K) (points first, then stay, return; slots without an active point INACTIVE_LOGIT);
    continuous -> actions in [-1, 1] (A, B, D). The encoder reads only the active points
    (:func:`select_rows`) when ``dims.active_column`` names the column that says which they are.
    """

    def __init__(self, agents: int, dims: ObservationDims, hidden_dim: int, embed_dim: int, heads: int,
                 layers: int, *, continuous: bool = False, other_width: int | None = None) -> None:
        """``other_width``: how many context inputs describe the other vehicles; default their flattened
        rows (``other_rows * other``), which ties the context's size to the fleet's."""
        super().__init__()
        self.continuous = continuous
        self.num_points = dims.num_points
        self.active_column = dims.active_column
        self.encoder = PointEncoder(agents, dims.point, embed_dim, heads, layers)
        if other_width is None:
            other_width = dims.other_rows * dims.other
        context_in = dims.state + other_width + self.encoder.pooled_dim
        self.context = nn.Sequential(StackedLinear(agents, context_in, hidden_dim), nn.ReLU(),
                                     StackedLinear(agents, hidden_dim, hidden_dim), nn.ReLU())
        if continuous:
            self.action_head = StackedLinear(agents, hidden_dim, dims.num_actions)
        else:
            # pointer head: score(point j) = v . relu(W_k token_j + W_q context + b_k)
            self.point_key = StackedLinear(agents, embed_dim, embed_dim)
            self.point_query = StackedLinear(agents, hidden_dim, embed_dim, bias=False)
            self.point_score = StackedLinear(agents, embed_dim, 1)
            self.extra_head = StackedLinear(agents, hidden_dim, dims.num_actions - dims.num_points)

    def forward(self, state: torch.Tensor, point_features: torch.Tensor, other_obs: torch.Tensor) -> torch.Tensor:
        rows = select_rows(point_features, self.active_column)
        tokens, pooled = self.encoder(rows)  # (A, T, E), (A, B, 2E)
        context = self.context(torch.cat([state, other_obs.flatten(-2), pooled], dim=-1))  # (A, B, H)
        return self.head(context, tokens, rows)

    def head(self, context: torch.Tensor, tokens: torch.Tensor, rows: PointRows) -> torch.Tensor:
        """Actions from the context (A, B, H) and the point tokens (A, T, E): the pointer head's logits
        (A, B, K), or tanh actions (A, B, D). :class:`~fleetmarl.learner.shared_networks.SharedActor`
        builds the same head and calls this too."""
        if self.continuous:
            return torch.tanh(self.action_head(context))
        # point_key's bias joins the (A, B, E) query rather than the (A, T, E) keys: one add fewer per row
        query = self.point_query(context) + self.point_key.bias.unsqueeze(1)
        hidden = F.relu(self.point_key(tokens, bias=False) + query.index_select(1, rows.sample))  # (A, T, E)
        point_logits = rows.scatter_logits(self.point_score(hidden).squeeze(-1).float(), INACTIVE_LOGIT)
        return torch.cat([point_logits, self.extra_head(context).float()], dim=-1)  # (A, B, K)


class CentralCritic(nn.Module):
    """Q of each of A agents from centralised information.

    ``embed_points`` reads agent i's point rows (A, B, N, F); the forward adds every agent's state
    (B, A, S) and the joint action: (B, A, K|D) shared by all critics, or (A, B, A, K|D) one per critic
    (each critic with its own agent's fresh action). Output Q (A, B).
    """

    def __init__(self, agents: int, dims: ObservationDims, hidden_dim: int, embed_dim: int, *,
                 continuous: bool = False) -> None:
        super().__init__()
        self.continuous = continuous
        self.num_points = dims.num_points
        self.active_column = dims.active_column
        self.encoder = nn.Sequential(StackedLinear(agents, dims.point, embed_dim), nn.ReLU(),
                                     StackedLinear(agents, embed_dim, embed_dim), nn.ReLU())
        if continuous:
            action_in = dims.num_agents * dims.num_actions
        else:
            # learned "tokens" for the actions that are not a point (stay/charge, return to base)
            extra = dims.num_actions - dims.num_points
            self.extra_action_embed = nn.Parameter(torch.randn(agents, extra, embed_dim) * 0.1)
            action_in = dims.num_agents * embed_dim
        q_in = dims.num_agents * dims.state + 2 * embed_dim + action_in
        self.q = nn.Sequential(StackedLinear(agents, q_in, hidden_dim), nn.ReLU(),
                               StackedLinear(agents, hidden_dim, hidden_dim), nn.ReLU(),
                               StackedLinear(agents, hidden_dim, 1))

    def embed_points(self, point_features: torch.Tensor) -> EmbeddedPoints:
        """(A, B, N, F) -> :class:`EmbeddedPoints`. Independent of the actions, so the actor loss reuses
        it from the critic loss.

        With ``active_column`` set only the active points are encoded and pooled, as the actor reads
        them; a chosen point is always active. In ``full`` that is ~12x less work than all 30 slots
        (2.5 are active on average under greedy). ``None`` reads every slot (checkpoints before 0.2.1).
        """
        rows = select_rows(point_features, self.active_column)
        tokens = self.encoder(rows.rows)  # (A, T, E)
        return EmbeddedPoints(tokens, rows.pool(tokens), rows)

    def forward(self, points: EmbeddedPoints, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q (A, B) from :meth:`embed_points`' output (split so the actor loss reuses the embedding)."""
        a, b = points.pooled.shape[:2]
        if self.continuous:
            action_part = actions.flatten(-2).expand(a, b, -1)
        else:
            n = self.num_points
            joint = actions if actions.dim() == 4 else actions.unsqueeze(0)  # (A or 1, B, A, K)
            # the token of the point each agent chose (A, B, A, E), or the learned one of stay / return
            chosen = points.rows.weigh_rows(joint[..., :n], points.tokens)
            chosen = chosen + torch.matmul(joint[..., n:], self.extra_action_embed.unsqueeze(1))
            action_part = chosen.flatten(-2)
        x = torch.cat([states.flatten(-2).expand(a, b, -1), points.pooled, action_part], dim=-1)
        return self.q(x).squeeze(-1)


@dataclass(frozen=True)
class EmbeddedPoints:
    """The critic's reading of a batch's points: tokens (A, T, E) of the kept rows, pooled (A, B, 2E),
    and the rows' layout. Computed once per update and reused by every Q evaluation on ``obs``."""

    tokens: torch.Tensor
    pooled: torch.Tensor
    rows: PointRows

    def detach(self) -> EmbeddedPoints:
        return EmbeddedPoints(self.tokens.detach(), self.pooled.detach(), self.rows)
