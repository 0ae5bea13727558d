"""One actor and one critic for every vehicle (``SHARE_PARAMETERS``): weights that fit any fleet size.

The per-vehicle networks (:mod:`fleetmarl.learner.networks`) grow with the fleet: the actor reads the
other vehicles' rows flattened (A-1 of them) and the critic every vehicle's state and action. These two
read each vehicle's part of the observation the same way whatever A and N are, so their parameter count
depends on neither and the same weights drive a fleet of any size.

Both run the existing stacked modules with a stacked dim of 1, the agent dim folded into the batch:
inputs ``(A, B, ...)`` become ``(1, A*B, ...)`` and outputs are unfolded back to ``(A, B, ...)``, so
MADDPG, the agents' views and the checkpoint format see the same shapes as with per-vehicle networks.

- **Actor** (:class:`SharedActor`): the per-vehicle actor's point encoder and pointer head; the other
  vehicles are a *set*: a per-row MLP over their rows, pooled by mean and max (zeros with none).
- **Critic** (:class:`SharedCritic`): cost linear in the fleet. For vehicle i,
  ``Q_i = MLP([s_i, pooled own points_i, e(a_i), mean_{j != i} phi(s_j, e(a_j))])`` where ``e(a)`` is the
  embedding of an action in the acting vehicle's own point tokens (the chosen point's token, or a learned
  stay / return token) and ``phi`` a per-vehicle MLP computed once per vehicle; the mean over the others
  is ``(sum - own) / (A - 1)`` (zeros for one vehicle), so no pair of vehicles is ever formed.
"""

from __future__ import annotations

import torch
from torch import nn

from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.learner.networks import Actor, EmbeddedPoints, PointRows, StackedLinear, row_layout, set_pool


def fold(x: torch.Tensor) -> torch.Tensor:
    """(A, B, ...) -> (1, A*B, ...): every vehicle of every sample is one row of the shared network."""
    return x.reshape(1, x.shape[0] * x.shape[1], *x.shape[2:])


def select_folded_rows(points: torch.Tensor, dims: ObservationDims, view: int = 0,
                       slots: torch.Tensor | None = None, pick: torch.Tensor | None = None) -> PointRows:
    """The active rows of points (A, B, N, F) as :class:`PointRows` of the folded batch (sample = a * B + b),
    rows (1, T, F). Each vehicle's own active column decides, and with ``view`` > 0 only its ``view``
    nearest of them are kept (:func:`nearest_rows`; ``pick`` (A, B), the dispatch prior's choices, is kept
    first). Only the T kept rows are gathered, so the agent-major view (a transpose of the replay's
    (B, A, N, F)) is never copied whole.

    ``slots`` (A, B, V): ``points`` (A, B, V, F) is a view already cut (the replay's ``fleet_view`` layout),
    row v being point ``slots[..., v]`` of ``dims.num_points``; its active rows are kept as they are."""
    a, b, n, _ = points.shape
    if slots is not None:
        keep = (points[..., dims.active_column] > 0.5).reshape(a * b, n)
        sample, position, count, groups, regroup = row_layout(keep)
        rows = points[sample // b, sample % b, position].unsqueeze(0)
        slot = slots.reshape(a * b, n)[sample, position]
        return PointRows(rows, sample, slot, count, dims.num_points, groups, regroup)
    if dims.active_column is None:
        keep = torch.ones(a * b, n, dtype=torch.bool, device=points.device)
    else:
        keep = (points[..., dims.active_column] > 0.5).reshape(a * b, n)
        if 0 < view < n and bool((keep.sum(-1) > view).any()):
            keep = nearest_rows(keep, points, dims, view, None if pick is None else pick.reshape(a * b))
    sample, slot, count, groups, regroup = row_layout(keep)
    rows = points[sample // b, sample % b, slot].unsqueeze(0)  # (1, T, F)
    return PointRows(rows, sample, slot, count, n, groups, regroup)


def nearest_rows(keep: torch.Tensor, points: torch.Tensor, dims: ObservationDims, view: int,
                 pick: torch.Tensor | None = None) -> torch.Tensor:
    """``keep`` (A*B, N) cut to each vehicle's ``view`` nearest kept points, those it may choose now first,
    and ahead of them ``pick`` (A*B,), the dispatch prior's choice, where it is a point (values >= N are not).

    Why: the points grow with the fleet, and a vehicle that reads all of them costs O(N) per row and O(N^2)
    per attention; a far point is rarely the one to take. Ranking by distance minus the feasible flag puts
    every point the vehicle can take ahead of the ones it cannot (distances are scaled into [0, 1]). The
    prior's choice goes first because the policy is that choice plus the actor's corrections: cut out of
    the view, its bonus is lost and the untrained fleet is no longer the dispatcher. On fleet20 a dispatcher
    picks a point beyond the 8 nearest free ones in a quarter to half of its point choices, and there a
    fleet had only its own logits, learned to stay, and stopped driving (docs/training.md, "Large fleets").
    """
    rank = points[..., dims.distance_column].reshape(keep.shape).float()
    if dims.feasible_column is not None:
        feasible = points[..., dims.feasible_column].reshape(keep.shape) > 0.5
        if dims.heading_column is not None:  # a point another vehicle heads to is taken: after the free ones
            feasible = feasible & ~(points[..., dims.heading_column].reshape(keep.shape) > 0)
        rank = rank - feasible.float()
    if pick is not None:
        n = keep.shape[-1]
        slot = pick.clamp(0, n - 1).unsqueeze(-1)
        first = torch.where((pick >= 0) & (pick < n), -2.0, rank.gather(1, slot).squeeze(-1))
        rank = rank.scatter(1, slot, first.unsqueeze(-1))
    nearest = rank.masked_fill(~keep, float("inf")).topk(view, dim=-1, largest=False, sorted=False).indices
    return keep & torch.zeros_like(keep).scatter_(1, nearest, True)


def nearest_others(other_obs: torch.Tensor, dims: ObservationDims, view: int) -> torch.Tensor:
    """Which rows of ``other_obs`` (..., R, O) are the ``view`` nearest other vehicles: indices (..., view),
    ascending (the order the rows are read in). Ties go to the lower index (a stable sort), so a replayed
    view and one cut at acting time agree.

    Why: the actor reads the other vehicles as a set pooled by mean and max; reading all A-1 of them makes
    a step cost A^2. A far vehicle rarely changes which point to take.
    """
    distance = other_obs[..., dims.other_distance_column]
    nearest = torch.sort(distance, dim=-1, stable=True).indices[..., :view]
    return nearest.sort(-1).values


class SharedActor(Actor):
    """One policy for every vehicle: inputs and output as :class:`~fleetmarl.learner.networks.Actor`'s
    (state (A, B, S), point_features (A, B, N, F), other_obs (A, B, A-1, O) -> (A, B, K|D)) for any A
    and N; ``other_obs`` may hold any number of rows."""

    def __init__(self, dims: ObservationDims, hidden_dim: int, embed_dim: int, heads: int, layers: int, *,
                 continuous: bool = False, view: int = 0, vehicle_view: int = 0) -> None:
        super().__init__(1, dims, hidden_dim, embed_dim, heads, layers, continuous=continuous,
                         other_width=2 * embed_dim)
        self.dims, self.view, self.vehicle_view = dims, view, vehicle_view
        self.other_width = embed_dim
        self.other_encoder = nn.Sequential(StackedLinear(1, dims.other, embed_dim), nn.ReLU(),
                                           StackedLinear(1, embed_dim, embed_dim), nn.ReLU())

    def pool_others(self, other_obs: torch.Tensor) -> torch.Tensor:
        """The other vehicles as a set: (1, M, R, O) -> (1, M, 2W), mean and max of a per-row MLP; zeros for R = 0.
        With a ``vehicle_view`` only the nearest that many (:func:`nearest_others`; a replayed view has no more)."""
        if other_obs.shape[-2] == 0:
            return other_obs.new_zeros(*other_obs.shape[:-2], 2 * self.other_width)
        if 0 < self.vehicle_view < other_obs.shape[-2]:
            index = nearest_others(other_obs, self.dims, self.vehicle_view)
            other_obs = other_obs.gather(-2, index.unsqueeze(-1).expand(*index.shape, other_obs.shape[-1]))
        return set_pool(self.other_encoder(other_obs))

    def forward(self, state: torch.Tensor, point_features: torch.Tensor, other_obs: torch.Tensor,
                point_slots: torch.Tensor | None = None, pick: torch.Tensor | None = None) -> torch.Tensor:
        """``point_slots`` (A, B, V): ``point_features`` is a view already cut; else ``pick`` (A, B), the
        dispatch prior's choices, goes first in the view this cuts (:func:`select_folded_rows`)."""
        a, b = state.shape[:2]
        rows = select_folded_rows(point_features, self.dims, self.view, point_slots, pick)
        tokens, pooled = self.encoder(rows)  # (1, T, E), (1, A*B, 2E)
        others = self.pool_others(fold(other_obs))
        context = self.context(torch.cat([fold(state), others, pooled], dim=-1))  # (1, A*B, H)
        out = self.head(context, tokens, rows)  # (1, A*B, K|D)
        return out.view(a, b, out.shape[-1])


class SharedCritic(nn.Module):
    """One critic for every vehicle, linear in the fleet size (module docstring has the formula).

    ``embed_points`` reads each vehicle's point rows (A, B, N, F); the forward adds every vehicle's state
    (B, A, S) and the joint action (B, A, K|D). ``forward(..., own=(A, B, K|D))`` puts vehicle i's
    ``own[i]`` into its own slot of Q_i only, while the others' term reads the joint (replayed) actions:
    the actor loss's "agent i acts fresh, the others as replayed" in one pass. Output Q (A, B).
    """

    def __init__(self, dims: ObservationDims, hidden_dim: int, embed_dim: int, *, continuous: bool = False,
                 view: int = 0) -> None:
        super().__init__()
        self.dims, self.view = dims, view
        self.continuous = continuous
        self.num_points = dims.num_points
        self.active_column = dims.active_column
        self.encoder = nn.Sequential(StackedLinear(1, dims.point, embed_dim), nn.ReLU(),
                                     StackedLinear(1, embed_dim, embed_dim), nn.ReLU())
        if continuous:
            self.action_embed = StackedLinear(1, dims.num_actions, embed_dim)
        else:
            # learned "tokens" for the actions that are not a point (stay/charge, return to base)
            extra = dims.num_actions - dims.num_points
            self.extra_action_embed = nn.Parameter(torch.randn(1, extra, embed_dim) * 0.1)
        self.others = nn.Sequential(StackedLinear(1, dims.state + embed_dim, hidden_dim), nn.ReLU(),
                                    StackedLinear(1, hidden_dim, hidden_dim), nn.ReLU())
        """phi(s_j, e(a_j)): what vehicle j contributes to every other vehicle's Q"""
        q_in = dims.state + 2 * embed_dim + embed_dim + hidden_dim
        self.q = nn.Sequential(StackedLinear(1, q_in, hidden_dim), nn.ReLU(),
                               StackedLinear(1, hidden_dim, hidden_dim), nn.ReLU(),
                               StackedLinear(1, hidden_dim, 1))

    def embed_points(self, point_features: torch.Tensor, point_slots: torch.Tensor | None = None,
                     pick: torch.Tensor | None = None) -> EmbeddedPoints:
        """(A, B, N, F) (or a view (A, B, V, F) with its ``point_slots``; ``pick`` as the actor's,
        :func:`select_folded_rows`) -> :class:`EmbeddedPoints` over the folded batch: tokens (1, T, E),
        pooled (1, A*B, 2E)."""
        rows = select_folded_rows(point_features, self.dims, self.view, point_slots, pick)
        tokens = self.encoder(rows.rows)
        return EmbeddedPoints(tokens, rows.pool(tokens), rows)

    def embed_actions(self, points: EmbeddedPoints, actions: torch.Tensor) -> torch.Tensor:
        """Actions (M, A, B, K|D) -> (M, A, B, E), each in its own vehicle's point tokens (M = action sets)."""
        m, a, b = actions.shape[:3]
        if self.continuous:
            return self.action_embed(actions.reshape(1, m * a * b, -1)).view(m, a, b, -1)
        n = self.num_points
        weights = actions.permute(1, 2, 0, 3).reshape(1, a * b, m, -1)  # (1, A*B, M, K): vehicle rows first
        chosen = points.rows.weigh_rows(weights[..., :n], points.tokens)  # (1, A*B, M, E)
        chosen = chosen + torch.matmul(weights[..., n:], self.extra_action_embed.unsqueeze(1))
        return chosen.view(a, b, m, -1).permute(2, 0, 1, 3)

    def others_term(self, states: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        """mean_{j != i} phi(s_j, e(a_j)) for every vehicle i: states (A, B, S), embedded (A, B, E) -> (A, B, H).

        phi runs once per vehicle; the mean leaves vehicle i out as (sum - phi_i) / (A - 1)."""
        a, b = states.shape[:2]
        phi = self.others(fold(torch.cat([states, embedded], dim=-1))).float().view(a, b, -1)  # (A, B, H)
        if a == 1:
            return torch.zeros_like(phi)
        return (phi.sum(0, keepdim=True) - phi) / (a - 1)

    def forward(self, points: EmbeddedPoints, states: torch.Tensor, actions: torch.Tensor, *,
                own: torch.Tensor | None = None) -> torch.Tensor:
        """Q (A, B) from :meth:`embed_points`' output, states (B, A, S) and the joint actions (B, A, K|D);
        ``own`` (A, B, K|D): vehicle i's action in its own slot instead of ``actions[:, i]``."""
        b, a = states.shape[:2]
        replayed = actions.transpose(0, 1)  # (A, B, K|D)
        sets = replayed.unsqueeze(0) if own is None else torch.stack([replayed, own.to(replayed.dtype)])
        embedded = self.embed_actions(points, sets)  # (1 or 2, A, B, E)
        own_state = states.transpose(0, 1).float()  # (A, B, S)
        others = self.others_term(own_state, embedded[0])
        x = torch.cat([own_state, points.pooled.view(a, b, -1), embedded[-1], others], dim=-1)
        return self.q(fold(x)).view(a, b)
