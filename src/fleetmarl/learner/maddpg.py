"""MADDPG over a team of agents: batched acting and one batched update of every agent.

One update (:meth:`MADDPG.update`), every agent at once on its slice of the stacked networks:
1. :meth:`MADDPG.critic_loss`: target actions of all agents on ``next_obs`` from the target actors
   (TD3 smoothing: clipped Gaussian noise on the target *logits*), masked, as one-hot vectors;
   ``y_i = r_i + GAMMA * (1 - done) * Q'_i(next)`` (with ``N_STEP`` > 1, r_i summed over n steps and
   ``GAMMA ** n``); loss = IS-weighted squared TD error per agent.
2. :meth:`MADDPG.actor_loss`, when an actor update is due (every ``ACTOR_UPDATE_FREQUENCY`` calls with
   delayed updates): agent i's action is a straight-through Gumbel-softmax sample of its masked logits,
   the others keep their replayed actions (as in MADDPG), and the loss is ``-Q_i`` through the critic
   as it was before this step (critic weights and point tokens detached), plus the teacher's
   cross-entropy where the critic does not rate the actor's own choice clearly higher
   (:meth:`MADDPG.imitation_loss`), weighted by ``BC_WEIGHT``. Pre-training (``update(batch, imitate=True)``) replaces
   this with cloning the replayed warm-up choices (:meth:`MADDPG.pretrain_loss`).
3. One backward pass for both (their gradients touch disjoint parameters), per-agent gradient-norm
   clipping, optimizer steps, and Polyak averaging of both targets when the actors moved.

Shared parameters (``SHARE_PARAMETERS``, :mod:`fleetmarl.learner.shared_networks`): the same steps on one
actor and one critic. The per-agent losses are averaged instead of summed, so the gradient's scale does not
grow with the fleet, and the clipping is over the one network. In the actor loss the critic takes agent
i's fresh action in its own slot and the replayed actions of everybody in the others' term (one pass for
every agent, no (A, B, A, K) joint action).

Coordinated choices (``COORDINATED_CHOICES``): agents choose in index order and are not offered a point
another vehicle heads to or an earlier agent chose; the same masks are rebuilt from the replayed actions
for the Gumbel sample, the imitation target and the target actions.

Mixed precision: with ``MIXED_PRECISION`` on, the update's forwards run under bf16 autocast (GEMMs and
attention in bf16); weights, gradients, optimizer state and losses stay fp32. Acting stays fp32, so the
trainer, ``fleetmarl eval`` and the guide's ``agent.act`` choose the same actions from the same weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from fleetmarl.config import Config
from fleetmarl.envs.spaces import ACTOR_INPUT_KEYS
from fleetmarl.learner.actions import (
    claimed_before,
    explore_continuous,
    select_actions,
    select_in_order,
    straight_through_gumbel,
)
from fleetmarl.learner.agent import AgentTeam, MADDPGAgent
from fleetmarl.learner.networks import INACTIVE_LOGIT, EmbeddedPoints
from fleetmarl.learner.precision import autocast_dtype
from fleetmarl.learner.prior import dispatcher_choices, prior_bonus, prior_choice

Teacher = Callable[[dict[str, np.ndarray]], np.ndarray]
"""A reference policy: batched observation dict (B, A, ...) -> actions (B, A), e.g. the greedy dispatcher.
The trainer asks the teacher at acting time and the buffer keeps its choices (``Batch.taught``)."""

if TYPE_CHECKING:
    from fleetmarl.learner.buffer import Batch
    from fleetmarl.learner.replay.storage import PriorFn

LOGIT_REGULARISATION = 1e-3
"""Weight of mean(logits^2) in the actor loss (as in MADDPG's reference code): keeps logits on the
scale of the exploration noise instead of drifting until the noise no longer matters."""


@dataclass
class CriticStep:
    """What the critic loss hands on: per-agent losses (A,), TD errors and values (A, B), and the
    critic's point embeddings of ``obs``, which the actor loss reuses (detached)."""

    losses: torch.Tensor
    td: torch.Tensor
    q: torch.Tensor
    y: torch.Tensor
    points: EmbeddedPoints


def bootstrap_factor(batch: Batch, gamma: float) -> torch.Tensor:
    """The factor of the target value, agent-major: (A, B) for per-agent dones, else (B,) broadcasting."""
    if batch.discounts is None:
        factor = gamma * (1.0 - batch.dones.to(torch.float32))
    else:
        factor = batch.discounts.to(torch.float32)
    return factor.transpose(0, 1) if factor.dim() == 2 else factor


def critic_rewards(batch: Batch) -> torch.Tensor:
    """The rewards the critics learn, agent-major (A, B): each agent's own (n-step sums where N_STEP > 1)."""
    return batch.rewards.to(torch.float32).transpose(0, 1)


def actor_objective(q: torch.Tensor) -> torch.Tensor:
    """The actor's -Q term per agent (A,) from Q (A, B)."""
    return -q.mean(-1)


class MADDPG:
    """The learner over a list of agents that share one :class:`AgentTeam`."""

    def __init__(self, agents: list[MADDPGAgent], config: Config, *, imitation: bool = False,
                 relabel: Teacher | None = None) -> None:
        """``imitation``: add the Q-filtered imitation of the recorded teacher choices to the actor loss.
        ``relabel``: a teacher that is a pure function of the observation, asked for rows recorded
        without a choice (see :meth:`_taught`)."""
        if not agents:
            raise ValueError("MADDPG needs at least one agent")
        team = agents[0].team
        if any(a.team is not team for a in agents) or len(agents) != team.num_agents:
            raise ValueError("MADDPG needs every agent of one team, as build_agents returns them")
        self.agents = list(agents)
        self.team: AgentTeam = team
        self.config = config
        self.dims = team.dims
        self.device = team.device
        self.continuous = team.continuous
        self.updates = 0
        self.actor_updates = 0
        self.episode = 0
        self.amp_dtype = autocast_dtype(config.MIXED_PRECISION, self.device)
        self.imitation = imitation
        self.relabel = relabel
        self.coordinated = bool(config.COORDINATED_CHOICES) and team.dispatches
        self._eye = torch.eye(team.num_agents, dtype=torch.bool, device=self.device)
        self.shared = bool(getattr(team, "shared", False))
        """one network for every agent: the per-agent losses are averaged (see the module docstring)"""
        self._last_actor_loss = torch.zeros((), device=self.device)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], noise_std: float) -> torch.Tensor:
        """Actions of all agents in all environments in one batched call.

        obs: state (B, A, S), point_features (B, A, N, F), other_obs (B, A, A-1, O), action_mask (B, A, K)
        bool. Returns LongTensor (B, A) (continuous: float (B, A, D)). Noise uses torch's global RNG.
        """
        _, out = self._policy_out(self.team.actor, obs)  # (A, B, K|D); fp32, as agent.act and a deployed policy
        if self.continuous:
            return explore_continuous(out, noise_std).transpose(0, 1)
        return self._choose(out.transpose(0, 1), noise_std, obs)

    def _choose(self, logits: torch.Tensor, noise_std: float, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Discrete actions (B, A) from logits (B, A, K): in agent order with COORDINATED_CHOICES."""
        n = self.dims.num_points
        mask = obs.get("action_mask")
        mask = None if mask is None else mask.to(self.device, torch.bool)
        if self.coordinated and mask is not None:
            return select_in_order(logits, noise_std, mask, self._heading_taken(obs), n)
        return select_actions(logits, noise_std, mask, fallback=n)

    def _heading_taken(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, N) bool: points some vehicle already heads to (the column is the same for every agent; a
        replayed view of the points carries it for every point as ``heading_taken``)."""
        if "heading_taken" in obs:
            return obs["heading_taken"].to(self.device)
        return obs["point_features"][:, 0, :, self.dims.heading_column].to(self.device) > 0

    def _offered(self, obs: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Each agent's mask (B, A, K) as it acted: without the points taken or chosen before it."""
        mask = obs["action_mask"].to(self.device, torch.bool)
        if not self.coordinated:
            return mask
        n = self.dims.num_points
        blocked = self._heading_taken(obs).unsqueeze(1) | claimed_before(actions, n)  # (B, A, N)
        return torch.cat([mask[..., :n] & ~blocked, mask[..., n:]], dim=-1)

    def _in_view(self, offered: torch.Tensor, net: torch.Tensor) -> torch.Tensor:
        """``offered`` (A, B, K) without the points outside the actor's POINT_VIEW (their logit is the
        INACTIVE_LOGIT fill): a teacher's choice of a far point is no label the actor could follow."""
        if not self.config.POINT_VIEW:
            return offered
        n = self.dims.num_points
        return torch.cat([offered[..., :n] & (net[..., :n] > INACTIVE_LOGIT), offered[..., n:]], dim=-1)

    def _policy_out(self, network: torch.nn.Module, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the network's own output, what the policy acts on), both (A, B, K|D) float32: the second adds
        the prior dispatcher's bonus (:mod:`fleetmarl.learner.prior`) when the team has one."""
        choice = self._prior_choice(obs)
        out = network(*self._agent_major(obs), **self._view_slots(obs, choice)).float()
        if choice is None:
            return out, out
        return out, out + prior_bonus(choice, self.team.dispatch_prior_logit, self.dims.num_actions)

    def _prior_choice(self, obs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The prior dispatcher's choices (B, A) on ``obs`` (stored with replayed frames), None without a prior."""
        if not self.team.dispatch_prior_logit:
            return None
        return prior_choice(obs, self.device, together=self.coordinated, dispatcher=self.team.prior_dispatcher)

    def _agent_major(self, obs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """(B, A, ...) observation tensors -> (A, B, ...) float32, agent-major for the stacked networks."""
        return [obs[k].to(self.device, torch.float32).transpose(0, 1) for k in ACTOR_INPUT_KEYS]

    def _view_slots(self, obs: dict[str, torch.Tensor], choice: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """How the networks read their view of the points: ``{"point_slots": (A, B, V)}`` for a replayed view
        (the ``fleet_view`` layout: which slot each row is); with a POINT_VIEW to cut, ``{"pick": (A, B)}``,
        the prior's ``choice`` that goes first in it; else nothing (every point)."""
        slots = obs.get("point_slots")
        if slots is not None:
            return {"point_slots": slots.to(self.device).transpose(0, 1)}
        if self.config.POINT_VIEW and choice is not None:
            return {"pick": choice.transpose(0, 1)}
        return {}

    def stored_prior(self) -> PriorFn | None:
        """What the replay buffer asks once per stored frame: the choices ``prior_choice`` would ask of the
        prior dispatcher at every update (the same arguments), or None without a prior."""
        if not self.team.dispatch_prior_logit:
            return None
        return functools.partial(dispatcher_choices, together=self.coordinated, dispatcher=self.team.prior_dispatcher)

    # ------------------------------------------------------------------ learning
    def actor_update_due(self) -> bool:
        c = self.config
        return not c.ENABLE_DELAYED_POLICY_UPDATES or self.updates % c.ACTOR_UPDATE_FREQUENCY == 0

    def update(self, batch: Batch, *, imitate: bool = False) -> dict[str, torch.Tensor]:
        """One gradient update of every agent (module docstring has the steps).

        Returns scalar tensors ``critic_loss``, ``actor_loss`` (the latest actor update's, also on calls
        that skip the actor), ``q_mean``, ``td_abs_mean``, ``target_q_mean`` and ``td_errors`` (B,): the
        |TD error| per transition averaged over agents, for ``buffer.update_priorities``. With ``imitate``
        the actor loss is the teacher's cross-entropy alone (pre-training; the critic learns as usual).
        """
        team = self.team
        update_actor = self.actor_update_due()
        with self._autocast():
            critic = self.critic_loss(batch)
            total = self._team_loss(critic.losses)
            if update_actor:
                actor_losses = self.pretrain_loss(batch, critic) if imitate else self.actor_loss(batch, critic)
                total = total + self._team_loss(actor_losses)
        team.critic_optimizer.zero_grad(set_to_none=True)
        team.actor_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._step(team.critic, team.critic_optimizer)
        if update_actor:
            self._step(team.actor, team.actor_optimizer)
            self._polyak()
            self.actor_updates += 1
            self._last_actor_loss = actor_losses.detach().mean()
        self.updates += 1
        td_abs = critic.td.detach().abs()
        return {
            "critic_loss": critic.losses.detach().mean(),
            "actor_loss": self._last_actor_loss,
            "q_mean": critic.q.detach().mean(),
            "target_q_mean": critic.y.mean(),
            "td_abs_mean": td_abs.mean(),
            "td_errors": td_abs.mean(0),
        }

    def _team_loss(self, losses: torch.Tensor) -> torch.Tensor:
        """One scalar from per-agent losses (A,): their sum when each agent's parameters are its own (each
        gets its own loss's gradient), their mean when all agents share one network."""
        return losses.mean() if self.shared else losses.sum()

    def critic_loss(self, batch: Batch) -> CriticStep:
        """IS-weighted squared TD error of every agent's critic against the target networks."""
        c, team = self.config, self.team
        with torch.no_grad():
            next_obs = batch.next_obs
            target_actions = self._target_actions(next_obs)  # (B, A, K|D)
            next_points = next_obs["point_features"].to(torch.float32).transpose(0, 1)
            target = team.critic_target
            next_view = self._view_slots(next_obs, self._prior_choice(next_obs))
            q_next = target(target.embed_points(next_points, **next_view),
                            next_obs["state"].to(torch.float32), target_actions).float()  # (A, B)
            y = critic_rewards(batch) + bootstrap_factor(batch, c.GAMMA) * q_next  # (A, B)
        points = batch.obs["point_features"].to(torch.float32).transpose(0, 1)  # (A, B, N, F)
        embedded = team.critic.embed_points(points, **self._view_slots(batch.obs, self._prior_choice(batch.obs)))
        q = team.critic(embedded, batch.obs["state"].to(torch.float32),
                        self._replay_actions(batch.actions)).float()  # (A, B)
        td = q - y
        losses = (batch.weights.to(torch.float32) * td.square()).mean(-1)  # (A,)
        return CriticStep(losses, td, q, y, embedded)

    def actor_loss(self, batch: Batch, critic: CriticStep) -> torch.Tensor:
        """-Q_i of agent i's fresh action with the others' replayed ones, plus Q-filtered imitation, per agent (A,)."""
        team, obs = self.team, batch.obs
        net, out = self._policy_out(team.actor, obs)  # (A, B, K|D)
        replayed = self._replay_actions(batch.actions)  # (B, A, K|D)
        if self.continuous:
            return actor_objective(self._frozen_q(critic, obs, out, replayed))
        offered = self._in_view(self._offered(obs, batch.actions).transpose(0, 1), net)  # (A, B, K)
        own = straight_through_gumbel(out, offered)
        live = net.masked_fill(net <= INACTIVE_LOGIT, 0.0)  # slots without a point are no logit to shrink; the prior is none
        q = self._frozen_q(critic, obs, own, replayed)  # (A, B)
        loss = actor_objective(q) + LOGIT_REGULARISATION * live.square().mean(dim=(-1, -2))
        weight = self.config.BC_WEIGHT if self.imitation else 0.0
        if weight > 0:
            loss = loss + weight * self.imitation_loss(batch, critic, out, offered, replayed)
        return loss

    def pretrain_loss(self, batch: Batch, critic: CriticStep) -> torch.Tensor:
        """Cross-entropy towards the *replayed* choices on every decision, (A,): behaviour cloning of the
        dispatcher that filled the buffer during warm-up (no Q-filter: the critic is still new)."""
        net, out = self._policy_out(self.team.actor, batch.obs)
        offered = self._in_view(self._offered(batch.obs, batch.actions).transpose(0, 1), net)
        return self.imitation_loss(batch, critic, out, offered, self._replay_actions(batch.actions),
                                   labels=batch.actions.long().transpose(0, 1), q_filter=False)

    def imitation_loss(self, batch: Batch, critic: CriticStep, logits: torch.Tensor, offered: torch.Tensor,
                       replayed: torch.Tensor, *, labels: torch.Tensor | None = None,
                       q_filter: bool = True) -> torch.Tensor:
        """Cross-entropy towards the teacher's choice, only where the critic rates it above the actor's own
        (a Q-filter, as in DDPGfD / Nair et al. 2018): the teacher lifts the fleet to its level and cannot
        hold it below what the critic has learned. Per agent (A,)."""
        obs = batch.obs
        taught = labels if labels is not None else self._taught(batch).transpose(0, 1)
        use = taught >= 0  # (A, B): rows with a label
        taught = taught.clamp_min(0)
        k = self.dims.num_actions
        if q_filter:
            with torch.no_grad():
                q_teacher = self._frozen_q(critic, obs, F.one_hot(taught, k).float(), replayed)
                own_best = logits.masked_fill(~offered, float("-inf")).argmax(-1)
                q_own = self._frozen_q(critic, obs, F.one_hot(own_best, k).float(), replayed)
                use = use & (q_teacher > q_own - self.config.BC_Q_MARGIN)
        use = (use & offered.gather(-1, taught.unsqueeze(-1)).squeeze(-1)).float()  # and the label is possible
        log_probs = logits.masked_fill(~offered, -1e9).log_softmax(-1)
        nll = -log_probs.gather(-1, taught.unsqueeze(-1)).squeeze(-1)  # (A, B)
        return (nll * use).sum(-1) / use.sum(-1).clamp_min(1.0)

    def _taught(self, batch: Batch) -> torch.Tensor:
        """The teacher's choices (B, A) recorded with the batch; rows recorded without one (a buffer saved
        before teachers were recorded) are asked of ``relabel``, a teacher that is a pure function of the
        observation (greedy), or stay ``NOT_TAUGHT`` and are not imitated."""
        taught = batch.taught
        if taught is None:
            raise ValueError("Q-filtered imitation needs the teacher's choices recorded in the batch (Batch.taught)")
        missing = (taught < 0).any(-1)
        if self.relabel is not None and bool(missing.any()) and "point_slots" not in batch.obs:  # a view: no relabelling
            rows = missing.nonzero().squeeze(-1)
            obs = {k: v[rows].cpu().numpy() for k, v in batch.obs.items()}
            taught = taught.clone()
            taught[rows] = torch.as_tensor(self.relabel(obs), device=taught.device).long()
        return taught.to(self.device)

    def _frozen_q(self, critic: CriticStep, obs: dict[str, torch.Tensor], own: torch.Tensor,
                  replayed: torch.Tensor) -> torch.Tensor:
        """Q_i (A, B) with agent i's action replaced by ``own`` (A, B, K|D), through the critic with its
        weights and point tokens detached: the actor loss must not train the critic."""
        frozen = {name: p.detach() for name, p in self.team.critic.named_parameters()}
        states = obs["state"].to(torch.float32)
        if self.shared:  # own action in agent i's own slot only; the others' term reads the replayed ones
            return torch.func.functional_call(self.team.critic, frozen, (critic.points.detach(), states, replayed),
                                              {"own": own}).float()
        joint = torch.where(self._eye[:, None, :, None], own.unsqueeze(2), replayed.unsqueeze(0))  # (A, B, A, K|D)
        args = (critic.points.detach(), states, joint)
        return torch.func.functional_call(self.team.critic, frozen, args).float()

    def _target_actions(self, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Target policies' actions on next_obs with TD3 smoothing: (B, A, K) one-hot or (B, A, D)."""
        c = self.config
        _, out = self._policy_out(self.team.actor_target, next_obs)  # (A, B, K|D)
        if c.TARGET_POLICY_NOISE_STD > 0:
            noise = (torch.randn_like(out) * c.TARGET_POLICY_NOISE_STD).clamp(
                -c.TARGET_POLICY_NOISE_CLIP, c.TARGET_POLICY_NOISE_CLIP)
            out = out + noise
        if self.continuous:
            return out.clamp(-1.0, 1.0).transpose(0, 1)
        chosen = self._choose(out.transpose(0, 1), 0.0, next_obs)  # (B, A)
        return F.one_hot(chosen, self.dims.num_actions).to(torch.float32)

    def _replay_actions(self, actions: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            return actions.to(torch.float32)
        return F.one_hot(actions.long(), self.dims.num_actions).to(torch.float32)

    def _step(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Clip each agent's gradient norm of this network to GRAD_CLIP_NORM (with shared parameters: the one
        network's), then step its optimizer."""
        max_norm = self.config.GRAD_CLIP_NORM
        grads = [p.grad for p in network.parameters() if p.grad is not None]
        if max_norm > 0 and grads:
            # per agent: sum of squares over every dim but the agent dim, across all of the network's tensors
            squares = torch.stack([g.square().flatten(1).sum(1) for g in grads]).sum(0)  # (A,)
            factor = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, [factor.view(-1, *([1] * (g.dim() - 1))) for g in grads])
        optimizer.step()

    @torch.no_grad()
    def _polyak(self) -> None:
        team, tau = self.team, self.config.TAU
        targets = [*team.actor_target.parameters(), *team.critic_target.parameters()]
        sources = [*team.actor.parameters(), *team.critic.parameters()]
        torch._foreach_lerp_(targets, sources, tau)

    # ------------------------------------------------------------------ schedules and state
    def set_episode(self, episode: int) -> None:
        """Learning rates follow ``lr_factor(config, episode)`` (a pure function: resume needs no object)."""
        self.episode = int(episode)
        self.team.set_lr_episode(episode)

    def state_dict(self) -> dict[str, int]:
        return {"updates": self.updates, "actor_updates": self.actor_updates, "episode": self.episode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.actor_updates = int(state.get("actor_updates", 0))
        self.episode = int(state.get("episode", 0))
