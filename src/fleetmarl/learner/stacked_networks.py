"""All agents' actors and critics in one call, from parameters stacked along a leading agent dim.

The per-agent modules in :mod:`fleetmarl.learner.networks` stay the source of truth (their parameters,
optimizers and state_dicts are what checkpoints hold); this module re-states their forward maths for
a parameter dict whose every tensor has a leading agent dim A (what ``torch.stack`` over the agents'
``named_parameters()`` gives, so gradients flow back to each agent's own tensors).

Why not ``torch.func.vmap(functional_call(...))``: on CPU vmap lowers each ``Linear`` to ``bmm`` plus a
separate broadcast bias add, fills many temporaries, and has no batching rule for
``scaled_dot_product_attention`` (it loops over agents). Written out by hand, a linear layer is one
``baddbmm`` (bias fused), LayerNorm's affine is one ``addcmul``, and attention folds agents into the
batch dim so that one fused attention kernel serves every agent.

Shapes: A = agents (stack dim), B = batch, N = points, F = point features, E = EMBED_DIM,
H = HIDDEN_DIM, S = state, O = other-agent features, K = num_actions (D for continuous actions).
Inputs are agent-major: (A, B, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fleetmarl.learner.networks import Actor, CentralCritic, masked_pool

Params = dict[str, torch.Tensor]


def linear(params: Params, name: str, x: torch.Tensor, *, bias: bool = True) -> torch.Tensor:
    """Per-agent ``nn.Linear``: x (A, ..., in) -> (A, ..., out), weights ``name.weight`` (A, out, in).

    ``bias=False`` skips ``name.bias`` even when the layer has one (the caller adds it elsewhere).
    """
    weight = params[f"{name}.weight"]
    bias_term = params.get(f"{name}.bias") if bias else None
    flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (A, M, in)
    if bias_term is None:
        out = torch.bmm(flat, weight.transpose(1, 2))
    else:
        out = torch.baddbmm(bias_term.unsqueeze(1), flat, weight.transpose(1, 2))  # bias add fused into the GEMM
    return out.view(*x.shape[:-1], weight.shape[1])


def layer_norm(params: Params, name: str, x: torch.Tensor) -> torch.Tensor:
    """Per-agent ``nn.LayerNorm`` over the last dim: normalise without affine, then one fused addcmul."""
    a, dim = x.shape[0], x.shape[-1]
    normed = F.layer_norm(x, (dim,)).reshape(a, -1, dim)  # (A, M, E)
    out = torch.addcmul(params[f"{name}.bias"].unsqueeze(1), normed, params[f"{name}.weight"].unsqueeze(1))
    return out.view(x.shape)


def attention_block(params: Params, name: str, x: torch.Tensor, heads: int,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """:class:`~fleetmarl.learner.networks.AttentionBlock` for all agents: x (A, B, N, E), mask (A, B, N) -> (A, B, N, E).

    Agents and batch fold into one dim, so a single ``scaled_dot_product_attention`` call covers all.
    """
    a, b, n, dim = x.shape
    head_dim = dim // heads
    qkv = linear(params, f"{name}.qkv", layer_norm(params, f"{name}.norm_attn", x))  # (A, B, N, 3E)
    q, k, v = qkv.view(a * b, n, 3, heads, head_dim).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (A*B, heads, N, head_dim)
    attn_mask = None
    if mask is not None:
        keys = mask | ~mask.any(-1, keepdim=True)  # a fully padded set attends to everything (no NaN)
        attn_mask = keys.reshape(a * b, 1, 1, n)
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (A*B, heads, N, head_dim)
    x = x + linear(params, f"{name}.proj", attended.transpose(1, 2).reshape(a, b, n, dim))
    hidden = F.relu(linear(params, f"{name}.ff_in", layer_norm(params, f"{name}.norm_ff", x)))
    return x + linear(params, f"{name}.ff_out", hidden)


class StackedActor:
    """Every agent's :class:`~fleetmarl.learner.networks.Actor` forward at once; holds no parameters.

    ``params`` are the stacked ``Actor.named_parameters()`` (A, ...). Inputs: state (A, B, S),
    point_features (A, B, N, F), other_obs (A, B, A-1, O), point_mask (A, B, N) or None.
    Output: logits (A, B, K), or continuous actions (A, B, D).
    """

    def __init__(self, template: Actor) -> None:
        self.continuous = template.continuous
        self.layers = len(template.encoder.blocks)
        self.heads = template.encoder.blocks[0].heads if self.layers else 1

    def encode(self, params: Params, points: torch.Tensor,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Point encoder: points (A, B, N, F) -> tokens (A, B, N, E), pooled (A, B, 2E)."""
        x = linear(params, "encoder.input", points)
        for i in range(self.layers):
            x = attention_block(params, f"encoder.blocks.{i}", x, self.heads, mask)
        tokens = layer_norm(params, "encoder.norm", x)
        return tokens, masked_pool(tokens, mask)

    def __call__(self, params: Params, state: torch.Tensor, point_features: torch.Tensor,
                 other_obs: torch.Tensor, point_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens, pooled = self.encode(params, point_features, point_mask)
        context = torch.cat([state, other_obs.flatten(-2), pooled], dim=-1)
        context = F.relu(linear(params, "context.0", context))
        context = F.relu(linear(params, "context.2", context))  # (A, B, H)
        if self.continuous:
            return torch.tanh(linear(params, "action_head", context))
        # point_key's bias joins the (A, B, E) query instead of the (A, B, N, E) keys: one broadcast add
        query = linear(params, "point_query", context) + params["point_key.bias"].unsqueeze(1)
        keys = linear(params, "point_key", tokens, bias=False)
        hidden = F.relu(keys + query.unsqueeze(-2))  # (A, B, N, E)
        point_logits = linear(params, "point_score", hidden).squeeze(-1)  # (A, B, N)
        return torch.cat([point_logits, linear(params, "extra_head", context)], dim=-1)  # (A, B, K)


class StackedCritic:
    """Every agent's :class:`~fleetmarl.learner.networks.CentralCritic` at once; holds no parameters.

    ``params`` are the stacked ``CentralCritic.named_parameters()`` (A, ...).
    """

    def __init__(self, template: CentralCritic) -> None:
        self.continuous = template.continuous
        self.num_points = template.num_points

    def embed_points(self, params: Params, point_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """point_features (A, B, N, F) -> tokens (A, B, N, E), pooled (A, B, 2E)."""
        tokens = F.relu(linear(params, "encoder.0", point_features))
        tokens = F.relu(linear(params, "encoder.2", tokens))
        return tokens, masked_pool(tokens)

    def q_value(self, params: Params, tokens: torch.Tensor, pooled: torch.Tensor, states: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        """Q (A, B) of every agent.

        tokens (A, B, N, E), pooled (A, B, 2E); states (B, A, S) shared by all critics or (A, B, A, S);
        actions (B, A, K|D) shared or (A, B, A, K|D) per critic (e.g. each with its own fresh action).
        """
        a, b = pooled.shape[:2]
        if self.continuous:
            action_part = actions.flatten(-2).expand(a, b, -1)
        else:
            n = self.num_points
            # (A?, B, A, N) @ (A, B, N, E) -> (A, B, A, E): each agent's chosen point token
            chosen = torch.matmul(actions[..., :n], tokens)
            chosen = chosen + torch.matmul(actions[..., n:], params["extra_action_embed"].unsqueeze(1))
            action_part = chosen.flatten(-2)
        x = torch.cat([states.flatten(-2).expand(a, b, -1), pooled, action_part], dim=-1)
        x = F.relu(linear(params, "q.0", x))
        x = F.relu(linear(params, "q.2", x))
        return linear(params, "q.4", x).squeeze(-1)

    def __call__(self, params: Params, point_features: torch.Tensor, states: torch.Tensor,
                 actions: torch.Tensor) -> torch.Tensor:
        return self.q_value(params, *self.embed_points(params, point_features), states, actions)
