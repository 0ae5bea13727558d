"""MADDPG agents (the policy side) and the MADDPG algorithm over all of them (the learner side).

:class:`MADDPGAgent` owns one agent's networks and optimizers and can act on its own (deployment,
evaluation). :class:`MADDPG` owns the update and the batched acting; it never owns parameters: it
stacks the agents' parameters with ``torch.stack`` (differentiable, so gradients land on each agent's
own parameters and each agent's own optimizer steps them) and runs every agent's network in *one*
call through :mod:`fleetmarl.learner.stacked_networks` (batched GEMMs with fused bias, one attention kernel for
all agents). That turns 5 agents x (actor, target actor, critic, target critic) small calls into 4
large ones.

One update (``MADDPG.update``):
1. target actions of all agents on ``next_obs`` from the target actors (TD3 smoothing: clipped
   Gaussian noise on the target *logits*), masked by the next action mask, as one-hot vectors;
2. ``y_i = r_i + GAMMA * (1 - done) * Q'_i(next)``; critic loss = IS-weighted squared TD error;
3. when an actor update is due (every call, or every ``ACTOR_UPDATE_FREQUENCY`` with delayed updates):
   agent i's action is replaced by a straight-through Gumbel-softmax sample of its masked logits
   (forward: a hard one-hot; backward: the softmax's gradient), other agents keep their replayed
   actions (as in the original MADDPG), and the actor loss is ``-Q_i`` through the critic *as it was
   before this step's critic update* (critic parameters and point tokens detached). Both losses then
   share one backward pass: their gradients touch disjoint parameters;
4. per-network gradient-norm clipping, optimizer steps, and Polyak averaging of both targets when the
   actors were updated.
Nothing in it calls ``.item()`` or ``.cpu()``; losses come back as tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fleetmarl.config import Config
from fleetmarl.envs.spaces import ObservationDims, observation_dims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner.networks import Actor, CentralCritic
from fleetmarl.learner.schedules import lr_factor
from fleetmarl.learner.stacked_networks import StackedActor, StackedCritic

if TYPE_CHECKING:
    from fleetmarl.learner.buffer import Batch

ACTION_TYPES = ("discrete", "continuous")
LOGIT_REGULARISATION = 1e-3
"""Weight of mean(logits^2) in the actor loss (as in MADDPG's reference code): keeps logits on the
scale of the exploration noise instead of drifting until the noise no longer matters."""
MASKED_LOGIT = -1e9
"""Finite stand-in for -inf in the update, so a softmax over a (malformed) all-masked row stays finite."""

# ---------------------------------------------------------------------- what agent_i.pth holds
SAVED_MODULES = ("actor", "critic", "actor_target", "critic_target")
SAVED_OPTIMIZERS = ("actor_optimizer", "critic_optimizer")
META_CONFIG_KEYS = {
    "num_agents": "NUM_AGENTS",
    "num_points": "NUM_POINTS",
    "hidden_dim": "HIDDEN_DIM",
    "embed_dim": "EMBED_DIM",
    "transformer_heads": "TRANSFORMER_HEADS",
    "transformer_layers": "TRANSFORMER_LAYERS",
}
META_OBS_KEYS = {
    "state_dim": "state size",
    "point_dim": "point feature size",
    "other_dim": "other-agent feature size",
    "num_actions": "number of actions",
    "action_type": "action type",
}


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
    if action_mask is not None:
        logits = logits.masked_fill(~action_mask.to(torch.bool), MASKED_LOGIT)
    gumbel = -torch.empty_like(logits).exponential_().log()
    soft = ((logits + gumbel) / temperature).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def _to_tensor(value: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


class MADDPGAgent(nn.Module):
    """One agent: actor, centralised critic, their targets and optimizers.

    ``transformer`` is the actor's point encoder (``agent.actor.encoder``): the part that reads the set
    of task points and learns end to end from the actor loss.
    """

    def __init__(self, agent_id: int, dims: ObservationDims, config: Config, device: torch.device | str = "cpu",
                 *, action_type: str = "discrete") -> None:
        super().__init__()
        if action_type not in ACTION_TYPES:
            raise ValueError(f"action_type must be one of {', '.join(ACTION_TYPES)}, got {action_type!r}")
        self.agent_id = int(agent_id)
        self.dims = dims
        self.config = config
        self.device = torch.device(device)
        self.action_type = action_type
        self.continuous = action_type == "continuous"
        widths = dict(hidden_dim=config.HIDDEN_DIM, embed_dim=config.EMBED_DIM)
        self.actor = Actor(dims, heads=config.TRANSFORMER_HEADS, layers=config.TRANSFORMER_LAYERS,
                           continuous=self.continuous, **widths)
        self.critic = CentralCritic(dims, continuous=self.continuous, **widths)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.to(self.device)
        self.base_lr_actor = float(config.LR_ACTOR)
        self.base_lr_critic = float(config.LR_CRITIC)
        self.lr_episode = 0
        self.actor_optimizer = _adam(self.actor.parameters(), self.base_lr_actor, self.device)
        self.critic_optimizer = _adam(self.critic.parameters(), self.base_lr_critic, self.device)

    @property
    def transformer(self) -> nn.Module:
        return self.actor.encoder

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, state: Any, point_features: Any, other_obs: Any, noise_std: float = 0.0,
            action_mask: Any = None) -> Any:
        """Action for one observation (state (S,)) or a batch (state (B, S)).

        point_features (N, F) / (B, N, F), other_obs (A-1, O) / (B, A-1, O), action_mask (K,) / (B, K)
        bool. NumPy input -> python int (one) or int64 array (B,); torch input -> LongTensor () / (B,).
        Continuous agents return float actions in [-1, 1] of shape (D,) / (B, D) instead.
        """
        from_numpy = not isinstance(state, torch.Tensor)
        s = _to_tensor(state, self.device, torch.float32)
        batched = s.dim() == 2
        p = _to_tensor(point_features, self.device, torch.float32)
        o = _to_tensor(other_obs, self.device, torch.float32)
        mask = None if action_mask is None else _to_tensor(action_mask, self.device, torch.bool)
        if not batched:
            s, p, o = s.unsqueeze(0), p.unsqueeze(0), o.unsqueeze(0)
            mask = None if mask is None else mask.unsqueeze(0)
        out = self.actor(s, p, o)
        if self.continuous:
            actions = (out + torch.randn_like(out) * noise_std).clamp(-1.0, 1.0) if noise_std > 0 else out
        else:
            actions = select_actions(out, noise_std, mask, fallback=self.dims.num_points)
        if not batched:
            actions = actions.squeeze(0)
        if not from_numpy:
            return actions
        array = actions.cpu().numpy()
        if self.continuous:
            return array
        return int(array) if not batched else array.astype(np.int64)

    # ------------------------------------------------------------------ checkpoints
    def _get_torch_save_params(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Names of the modules and optimizers whose state_dicts go into agent_i.pth (SB3's habit)."""
        return SAVED_MODULES, SAVED_OPTIMIZERS

    def meta(self) -> dict[str, Any]:
        d, c = self.dims, self.config
        return {
            "agent_id": self.agent_id, "num_agents": d.num_agents, "num_points": d.num_points,
            "state_dim": d.state, "point_dim": d.point, "other_dim": d.other, "other_rows": d.other_rows,
            "num_actions": d.num_actions, "hidden_dim": c.HIDDEN_DIM, "embed_dim": c.EMBED_DIM,
            "transformer_heads": c.TRANSFORMER_HEADS, "transformer_layers": c.TRANSFORMER_LAYERS,
            "action_type": self.action_type,
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything for ``agent_i.pth``: plain tensors, numbers, strings, lists and dicts only.

        Tensors are the live ones (no copy here); the checkpoint package snapshots them before writing.
        """
        modules, optimizers = self._get_torch_save_params()
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in modules}
        state.update({name: getattr(self, name).state_dict() for name in optimizers})
        state["transformer"] = self.transformer.state_dict()
        state["lr_actor"] = float(self.actor_optimizer.param_groups[0]["lr"])
        state["lr_critic"] = float(self.critic_optimizer.param_groups[0]["lr"])
        state["lr_schedule"] = {
            "episode": int(self.lr_episode), "base_lr_actor": self.base_lr_actor,
            "base_lr_critic": self.base_lr_critic, "enabled": bool(self.config.ENABLE_LR_SCHEDULING),
            "decay_type": self.config.LR_DECAY_TYPE, "factor": float(lr_factor(self.config, self.lr_episode)),
        }
        state["meta"] = self.meta()
        return state

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore exactly what :meth:`checkpoint_state` saved; tensors are copied onto ``self.device``."""
        self._check_meta(state.get("meta"))
        modules, optimizers = self._get_torch_save_params()
        missing = [k for k in (*modules, *optimizers) if k not in state]
        if missing:
            raise CheckpointError(f"agent checkpoint lacks {missing[0]!r}; it was not written by fleetmarl's MADDPGAgent")
        for name in modules:
            getattr(self, name).load_state_dict(state[name])
        if "transformer" in state:  # same tensors as actor.encoder; loading keeps them consistent
            self.transformer.load_state_dict(state["transformer"])
        for name in optimizers:
            getattr(self, name).load_state_dict(state[name])
        schedule = state.get("lr_schedule") or {}
        self.lr_episode = int(schedule.get("episode", 0))
        self.base_lr_actor = float(schedule.get("base_lr_actor", self.base_lr_actor))
        self.base_lr_critic = float(schedule.get("base_lr_critic", self.base_lr_critic))
        for optimizer, key in ((self.actor_optimizer, "lr_actor"), (self.critic_optimizer, "lr_critic")):
            if key in state:
                for group in optimizer.param_groups:
                    group["lr"] = float(state[key])

    def _check_meta(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            raise CheckpointError("agent checkpoint has no 'meta' entry; it was not written by fleetmarl's MADDPGAgent")
        mine = self.meta()
        for key, config_key in META_CONFIG_KEYS.items():
            if key in meta and meta[key] != mine[key]:
                raise CheckpointError(f"checkpoint was made for {config_key}={meta[key]} but the config has "
                                      f"{config_key}={mine[key]}")
        for key, label in META_OBS_KEYS.items():
            if key in meta and meta[key] != mine[key]:
                raise CheckpointError(f"checkpoint was made for an observation {label} of {meta[key]} but this "
                                      f"environment has {mine[key]}")


def _adam(params: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    # fused Adam: one kernel per step instead of a Python loop over tensors; same maths as Adam
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))


def build_agents(config: Config, device: torch.device | str = "cpu", *, action_type: str = "discrete") -> list[MADDPGAgent]:
    """``config.NUM_AGENTS`` agents; the caller seeds torch first (weights come from its global RNG)."""
    dims = observation_dims(config)
    return [MADDPGAgent(i, dims, config, device, action_type=action_type) for i in range(config.NUM_AGENTS)]


# ---------------------------------------------------------------------- the algorithm
class _Stack:
    """Per-agent parameters of one network kind, stacked along a new leading agent dim.

    ``live()`` stacks with autograd (gradients flow back to each agent's parameters); ``frozen()``
    returns a cached detached stack, rebuilt after :meth:`invalidate` (MADDPG calls it after every
    update: fused Adam writes parameters without bumping their version counters) or when a version
    counter moved (``load_state_dict`` and other in-place writes from outside the learner).
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        named = [dict(m.named_parameters()) for m in modules]
        self.names = list(named[0])
        self.per_name = [[params[name] for params in named] for name in named[0]]
        self.flat = [p for group in self.per_name for p in group]
        self._cache: dict[str, torch.Tensor] | None = None
        self._versions: tuple[int, ...] | None = None

    def live(self) -> dict[str, torch.Tensor]:
        return {name: torch.stack(group) for name, group in zip(self.names, self.per_name, strict=True)}

    def invalidate(self) -> None:
        self._cache = None

    def frozen(self) -> dict[str, torch.Tensor]:
        versions = tuple(p._version for p in self.flat)
        if self._cache is None or versions != self._versions:
            with torch.no_grad():
                self._cache = {name: torch.stack(group) for name, group in zip(self.names, self.per_name, strict=True)}
            self._versions = versions
        return self._cache


class MADDPG:
    """The learner over a list of agents: batched acting and batched updates of all of them."""

    def __init__(self, agents: list[MADDPGAgent], config: Config) -> None:
        if not agents:
            raise ValueError("MADDPG needs at least one agent")
        self.agents = list(agents)
        self.config = config
        self.num_agents = len(agents)
        self.dims = agents[0].dims
        self.device = agents[0].device
        self.continuous = agents[0].continuous
        self.updates = 0
        self.actor_updates = 0
        self.episode = 0
        self._actors = _Stack([a.actor for a in agents])
        self._critics = _Stack([a.critic for a in agents])
        self._actor_targets = _Stack([a.actor_target for a in agents])
        self._critic_targets = _Stack([a.critic_target for a in agents])
        self._actor_all = StackedActor(agents[0].actor)  # (A, B, ...) inputs -> (A, B, K|D)
        self._critic_all = StackedCritic(agents[0].critic)
        self._eye = torch.eye(self.num_agents, dtype=torch.bool, device=self.device)
        self._last_actor_loss = torch.zeros((), device=self.device)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], noise_std: float) -> torch.Tensor:
        """Actions of all agents in all environments in one batched call.

        obs: state (B, A, S), point_features (B, A, N, F), other_obs (B, A, A-1, O), action_mask (B, A, K)
        bool. Returns LongTensor (B, A) (continuous: float (B, A, D)). Noise uses torch's global RNG.
        """
        out = self._actor_all(self._actors.frozen(), *self._agent_major(obs))  # (A, B, K)
        if self.continuous:
            if noise_std > 0:
                out = (out + torch.randn_like(out) * noise_std).clamp(-1.0, 1.0)
            return out.transpose(0, 1)
        mask = obs.get("action_mask")
        mask = None if mask is None else mask.to(self.device).transpose(0, 1)
        return select_actions(out, noise_std, mask, fallback=self.dims.num_points).transpose(0, 1)

    def _agent_major(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, A, ...) observation tensors -> (A, B, ...) float32 views, agent-major for the stacked networks."""
        return tuple(obs[k].to(self.device, torch.float32).transpose(0, 1)
                     for k in ("state", "point_features", "other_obs"))  # type: ignore[return-value]

    # ------------------------------------------------------------------ learning
    def actor_update_due(self) -> bool:
        c = self.config
        return not c.ENABLE_DELAYED_POLICY_UPDATES or self.updates % c.ACTOR_UPDATE_FREQUENCY == 0

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient update of every agent (see the module docstring for the steps).

        Returns scalar tensors ``critic_loss``, ``actor_loss`` (the latest actor update's, also on calls
        that skip the actor), ``q_mean``, ``td_abs_mean``, ``target_q_mean`` and ``td_errors`` (B,): the
        |TD error| per transition averaged over agents, for the caller to hand to
        ``buffer.update_priorities(batch.indices, out['td_errors'])``. The caller does that; update does not.
        """
        c = self.config
        obs, next_obs = batch.obs, batch.next_obs
        states = obs["state"].to(torch.float32)  # (B, A, S)
        update_actor = self.actor_update_due()

        with torch.no_grad():
            target_actions = self._target_actions(next_obs)  # (B, A, K) or (B, A, D)
            next_points = next_obs["point_features"].to(torch.float32).transpose(0, 1)
            q_next = self._critic_all(self._critic_targets.frozen(), next_points,
                                      next_obs["state"].to(torch.float32), target_actions)  # (A, B)
            not_done = 1.0 - batch.dones.to(torch.float32)
            y = batch.rewards.to(torch.float32).transpose(0, 1) + c.GAMMA * not_done * q_next  # (A, B)

        replay_actions = self._replay_actions(batch.actions)  # (B, A, K)
        critic_params = self._critics.live()
        points = obs["point_features"].to(torch.float32).transpose(0, 1)  # (A, B, N, F)
        tokens, pooled = self._critic_all.embed_points(critic_params, points)  # (A, B, N, E), (A, B, 2E)
        q = self._critic_all.q_value(critic_params, tokens, pooled, states, replay_actions)  # (A, B)
        td = q - y  # (A, B)
        critic_losses = (batch.weights.to(torch.float32) * td.square()).mean(-1)  # (A,)
        total = critic_losses.sum()  # agents' parameters are disjoint: each gets its own mean loss's gradient

        if update_actor:
            out = self._actor_all(self._actors.live(), *self._agent_major(obs))  # (A, B, K)
            if self.continuous:
                own = out
                regulariser = out.new_zeros(())
            else:
                own = straight_through_gumbel(out, obs["action_mask"].transpose(0, 1))
                regulariser = LOGIT_REGULARISATION * out.square().mean(dim=(-1, -2))
            # agent i's critic sees its own fresh action and the others' replayed ones: (A, B, A, K)
            joint = torch.where(self._eye[:, None, :, None], own.unsqueeze(2), replay_actions.unsqueeze(0))
            frozen_critic = {k: v.detach() for k, v in critic_params.items()}
            q_policy = self._critic_all.q_value(frozen_critic, tokens.detach(), pooled.detach(), states, joint)  # (A, B)
            actor_losses = -q_policy.mean(-1) + regulariser
            total = total + actor_losses.sum()

        for agent in self.agents:
            agent.critic_optimizer.zero_grad(set_to_none=True)
            if update_actor:
                agent.actor_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._clip([a.critic for a in self.agents])
        for agent in self.agents:
            agent.critic_optimizer.step()
        if update_actor:
            self._clip([a.actor for a in self.agents])
            for agent in self.agents:
                agent.actor_optimizer.step()
            self._polyak()
            self.actor_updates += 1
            self._last_actor_loss = actor_losses.detach().mean()
        self.updates += 1
        for stack in (self._actors, self._critics, self._actor_targets, self._critic_targets):
            stack.invalidate()

        td_abs = td.detach().abs()
        return {
            "critic_loss": critic_losses.detach().mean(),
            "actor_loss": self._last_actor_loss,
            "q_mean": q.detach().mean(),
            "target_q_mean": y.mean(),
            "td_abs_mean": td_abs.mean(),
            "td_errors": td_abs.mean(0),
        }

    def _target_actions(self, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Target policies' actions on next_obs with TD3 smoothing: (B, A, K) one-hot or (B, A, D)."""
        c = self.config
        out = self._actor_all(self._actor_targets.frozen(), *self._agent_major(next_obs))  # (A, B, K|D)
        if c.TARGET_POLICY_NOISE_STD > 0:
            noise = (torch.randn_like(out) * c.TARGET_POLICY_NOISE_STD).clamp(
                -c.TARGET_POLICY_NOISE_CLIP, c.TARGET_POLICY_NOISE_CLIP)
            out = out + noise
        if self.continuous:
            return out.clamp(-1.0, 1.0).transpose(0, 1)
        chosen = select_actions(out, 0.0, next_obs["action_mask"].transpose(0, 1), fallback=self.dims.num_points)
        return F.one_hot(chosen, self.dims.num_actions).to(torch.float32).transpose(0, 1)

    def _replay_actions(self, actions: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            return actions.to(torch.float32)
        return F.one_hot(actions.long(), self.dims.num_actions).to(torch.float32)

    def _clip(self, modules: list[nn.Module]) -> None:
        """Clip each network's gradient norm to GRAD_CLIP_NORM, for all agents in two foreach kernels."""
        max_norm = self.config.GRAD_CLIP_NORM
        if max_norm <= 0:
            return
        groups = [[p.grad for p in m.parameters() if p.grad is not None] for m in modules]
        grads = [g for group in groups for g in group]
        norms = torch._foreach_norm(grads)
        factors = []
        start = 0
        for group in groups:
            total = torch.linalg.vector_norm(torch.stack(norms[start:start + len(group)]))
            factor = (max_norm / (total + 1e-6)).clamp(max=1.0)
            factors.extend([factor] * len(group))
            start += len(group)
        torch._foreach_mul_(grads, factors)

    @torch.no_grad()
    def _polyak(self) -> None:
        tau = self.config.TAU
        targets = self._actor_targets.flat + self._critic_targets.flat
        sources = self._actors.flat + self._critics.flat
        torch._foreach_lerp_(targets, sources, tau)

    # ------------------------------------------------------------------ schedules and state
    def set_episode(self, episode: int) -> None:
        """Set every optimizer's learning rate to its start value x ``lr_factor(config, episode)``."""
        factor = lr_factor(self.config, episode)
        self.episode = int(episode)
        for agent in self.agents:
            agent.lr_episode = int(episode)
            for group in agent.actor_optimizer.param_groups:
                group["lr"] = agent.base_lr_actor * factor
            for group in agent.critic_optimizer.param_groups:
                group["lr"] = agent.base_lr_critic * factor

    def state_dict(self) -> dict[str, int]:
        return {"updates": self.updates, "actor_updates": self.actor_updates, "episode": self.episode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        self.actor_updates = int(state.get("actor_updates", 0))
        self.episode = int(state.get("episode", 0))

