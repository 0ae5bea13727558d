"""MADDPG for PettingZoo environments with flat observations: the team, its agents and the update.

Built on the fleet learner's classes so the parts that are not about observations stay in one place:
:class:`FlatTeam` is an :class:`~fleetmarl.learner.agent.AgentTeam` with the MLP networks of
:mod:`fleetmarl.learner.mlp_networks` (same optimizers, learning-rate schedule and ``agent_i.pth``
views); :class:`FlatMADDPG` reuses :class:`~fleetmarl.learner.maddpg.MADDPG`'s update (one backward,
per-agent gradient clipping, delayed actor updates, Polyak targets, state) and replaces only the losses
and acting. Discrete actions: greedy over the mask with Gaussian noise on the logits when acting, a
straight-through Gumbel-softmax in the actor loss (as the fleet). Continuous actions: tanh in [-1, 1]
(the environment batch scales them to the action space's bounds), Gaussian exploration, TD3 target
smoothing. No teacher or imitation: the reference dispatchers exist only for the fleet.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from fleetmarl.config import Config
from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner.actions import (
    explore_continuous,
    select_actions,
    straight_through_gumbel,
)
from fleetmarl.learner.agent import AgentTeam, AgentView, MADDPGAgent, _to_tensor, as_given
from fleetmarl.learner.maddpg import (
    LOGIT_REGULARISATION,
    MADDPG,
    CriticStep,
    actor_objective,
    bootstrap_factor,
    critic_rewards,
)
from fleetmarl.learner.mlp_networks import FlatActor, FlatCentralCritic

if TYPE_CHECKING:
    from fleetmarl.learner.buffer import Batch

_NO_ENCODER = nn.Identity()
"""Flat actors have no point encoder; ``agent.transformer`` is a view of this empty module (saved as {})."""


class FlatTeam(AgentTeam):
    """Every agent's MLP actor and centralised critic as stacked ``(A, ...)`` parameters, one Adam per kind."""

    SHAREABLE = False

    def _make_actor(self) -> nn.Module:
        d = self.dims
        return FlatActor(d.num_agents, d.state, self.config.HIDDEN_DIM, d.num_actions, continuous=self.continuous)

    def _make_critic(self) -> nn.Module:
        d = self.dims
        return FlatCentralCritic(d.num_agents, d.state, d.num_actions, self.config.HIDDEN_DIM)

    @property
    def point_rows(self) -> str:
        return "all"

    def set_point_rows(self, rows: str) -> None:
        """No point rows in a flat observation."""

    @property
    def critic_rows(self) -> str:
        return "all"

    def set_critic_rows(self, rows: str) -> None:
        """No point rows for the critics either."""


class FlatAgent(MADDPGAgent):
    """One agent of a :class:`FlatTeam`: the guide's attributes and ``agent_i.pth``, acting on a flat observation."""

    @property
    def transformer(self) -> AgentView:
        return AgentView(_NO_ENCODER, self.agent_id)

    @torch.no_grad()
    def act(self, observation: Any, noise_std: float = 0.0, action_mask: Any = None) -> Any:  # type: ignore[override]
        """Action for one observation (O,) or a batch (B, O): int / (B,) ints, or floats in [-1, 1] (D,) /
        (B, D) for continuous actions (:class:`~fleetmarl.envs.pettingzoo_env.PettingZooBatch` scales them)."""
        from_numpy = not isinstance(observation, torch.Tensor)
        obs = _to_tensor(observation, self.device, torch.float32)
        batched = obs.dim() == 2
        obs = obs if batched else obs.unsqueeze(0)
        out = self.actor(obs.unsqueeze(0))[0]  # agent dim of 1 in and out
        if self.continuous:
            actions = explore_continuous(out, noise_std)
        else:
            mask = None if action_mask is None else _to_tensor(action_mask, self.device, torch.bool)
            if mask is not None and not batched:
                mask = mask.unsqueeze(0)
            actions = select_actions(out, noise_std, mask)
        return as_given(actions, batched=batched, numpy=from_numpy, continuous=self.continuous)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "environment": self.config.ENVIRONMENT_TYPE}

    def _check_meta(self, meta: Any, *, any_fleet: bool = False) -> None:
        if isinstance(meta, dict) and meta.get("environment", "full") != self.config.ENVIRONMENT_TYPE:
            raise CheckpointError(f"checkpoint was made for ENVIRONMENT_TYPE={meta.get('environment', 'full')} but "
                                  f"the config has ENVIRONMENT_TYPE={self.config.ENVIRONMENT_TYPE}")
        super()._check_meta(meta, any_fleet=any_fleet)


def build_flat_agents(config: Config, dims: ObservationDims, action_type: str,
                      device: torch.device | str = "cpu") -> list[FlatAgent]:
    """The agents of one :class:`FlatTeam`; the caller seeds torch first (weights come from its global RNG)."""
    team = FlatTeam(dims, config, device, action_type=action_type)
    return [FlatAgent(team, i) for i in range(team.num_agents)]


class FlatMADDPG(MADDPG):
    """MADDPG's update with the flat networks' losses. Batches carry per-agent ``dones`` (B, A): an agent
    that terminated is not bootstrapped, one cut by a time limit is."""

    def __init__(self, agents: list[MADDPGAgent], config: Config) -> None:
        super().__init__(agents, config)
        self.coordinated = False

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], noise_std: float) -> torch.Tensor:
        """obs ``state`` (B, A, O), ``action_mask`` (B, A, K) -> actions (B, A) long or (B, A, D) float."""
        out = self.team.actor(obs["state"].to(self.device, torch.float32).transpose(0, 1)).transpose(0, 1)
        if self.continuous:
            return explore_continuous(out, noise_std)
        return select_actions(out, noise_std, self._mask(obs))

    def _mask(self, obs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        mask = obs.get("action_mask")
        return None if mask is None else mask.to(self.device, torch.bool)

    def critic_loss(self, batch: Batch) -> CriticStep:
        """IS-weighted squared TD error of every agent's critic; targets from the target networks."""
        c, team = self.config, self.team
        with torch.no_grad():
            next_state = batch.next_obs["state"].to(torch.float32)
            q_next = team.critic_target(next_state, self._target_actions(batch.next_obs)).float()  # (A, B)
            y = critic_rewards(batch) + bootstrap_factor(batch, c.GAMMA) * q_next
        q = team.critic(batch.obs["state"].to(torch.float32), self._replay_actions(batch.actions)).float()
        td = q - y
        losses = (batch.weights.to(torch.float32) * td.square()).mean(-1)
        no_points = {f.name: None for f in dataclasses.fields(CriticStep)[4:]}  # the fleet's point embeddings
        return CriticStep(losses, td, q, y, **no_points)

    def actor_loss(self, batch: Batch, critic: CriticStep) -> torch.Tensor:
        """-Q_i of agent i's fresh action with the others' replayed ones, per agent (A,)."""
        team, state = self.team, batch.obs["state"].to(torch.float32)
        out = team.actor(state.transpose(0, 1)).float()  # (A, B, K|D)
        replayed = self._replay_actions(batch.actions)  # (B, A, K|D)
        if self.continuous:
            own, penalty = out, 0.0
        else:
            mask = self._mask(batch.obs)
            own = straight_through_gumbel(out, None if mask is None else mask.transpose(0, 1))
            penalty = LOGIT_REGULARISATION * out.square().mean(dim=(-1, -2))
        joint = torch.where(self._eye[:, None, :, None], own.unsqueeze(2), replayed.unsqueeze(0))  # (A, B, A, K|D)
        frozen = {name: p.detach() for name, p in team.critic.named_parameters()}
        q = torch.func.functional_call(team.critic, frozen, (state, joint)).float()
        return actor_objective(q) + penalty

    def _target_actions(self, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Target policies' actions (B, A, K) one-hot or (B, A, D), with TD3 smoothing noise."""
        c = self.config
        out = self.team.actor_target(next_obs["state"].to(torch.float32).transpose(0, 1)).float()
        if c.TARGET_POLICY_NOISE_STD > 0:
            out = out + (torch.randn_like(out) * c.TARGET_POLICY_NOISE_STD).clamp(
                -c.TARGET_POLICY_NOISE_CLIP, c.TARGET_POLICY_NOISE_CLIP)
        out = out.transpose(0, 1)
        if self.continuous:
            return out.clamp(-1.0, 1.0)
        return F.one_hot(select_actions(out, 0.0, self._mask(next_obs)), self.dims.num_actions).to(torch.float32)

    def pretrain_loss(self, batch: Batch, critic: CriticStep) -> torch.Tensor:
        raise NotImplementedError("imitation pre-training needs a reference dispatcher; PettingZoo envs have none")
