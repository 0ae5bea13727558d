"""The agents: one stacked set of networks and optimizers for the team, and each agent a view of slice i.

:class:`AgentTeam` owns every parameter, as ``(A, ...)`` tensors (:mod:`fleetmarl.learner.networks`), and
one Adam per network kind over them. :class:`MADDPGAgent` keeps the user's guide's face (``actor``,
``critic``, ``actor_target``, ``critic_target``, ``actor_optimizer``, ``critic_optimizer``,
``transformer``, ``act(state, point_features, other_obs, noise_std=0.0)``, and ``agent_i.pth``), but
each of those is a view of slice i of the team's tensors, not a copy: there is one implementation of the
maths and nothing to keep in sync. Loading an agent's file writes into its slice.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from fleetmarl.config import Config
from fleetmarl.envs.policies import pure_policy
from fleetmarl.envs.spaces import ObservationDims, observation_dims
from fleetmarl.errors import CheckpointError, ConfigError
from fleetmarl.learner.actions import explore_continuous, select_actions
from fleetmarl.learner.networks import Actor, CentralCritic
from fleetmarl.learner.prior import prior_bonus, prior_choice
from fleetmarl.learner.schedules import lr_factor
from fleetmarl.learner.shared_networks import SharedActor, SharedCritic

ACTION_TYPES = ("discrete", "continuous")

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
FLEET_SIZE_KEYS = ("num_agents", "num_points", "num_actions")
"""Meta entries in which a shared-parameter checkpoint may differ from the fleet it drives (``any_fleet``)."""
SHARED_RECORD_KEY = "shares_networks_of"
"""With SHARE_PARAMETERS, agent_i.pth (i > 0) holds only its meta and this key: the agent whose file holds
the one set of networks and optimizers (0), so a checkpoint stores them once, not NUM_AGENTS times."""


class AgentTeam(nn.Module):
    """Every agent's networks as stacked ``(A, ...)`` parameters, with one fused Adam per network kind.

    The targets start as copies of the online networks and never receive gradients.
    """

    SHAREABLE = True
    """whether SHARE_PARAMETERS can build this team (the fleet's networks; not the flat MLPs)"""

    def __init__(self, dims: ObservationDims, config: Config, device: torch.device | str = "cpu",
                 *, action_type: str = "discrete") -> None:
        super().__init__()
        if action_type not in ACTION_TYPES:
            raise ValueError(f"action_type must be one of {', '.join(ACTION_TYPES)}, got {action_type!r}")
        self.dims, self.config = dims, config
        self.device = torch.device(device)
        self.action_type = action_type
        self.continuous = action_type == "continuous"
        self.shared = bool(getattr(config, "SHARE_PARAMETERS", False))
        if self.shared and not self.SHAREABLE:
            raise ConfigError(f"config key SHARE_PARAMETERS applies to the sampling fleet ('full', 'simplified'); "
                              f"{config.ENVIRONMENT_TYPE} trains per-agent networks, set SHARE_PARAMETERS=False")
        """One actor and one critic for every agent (SHARE_PARAMETERS): stacked dim 1, each agent a view of slice 0."""
        self.actor, self.critic = self._make_actor(), self._make_critic()
        self.actor_target = self._make_actor().requires_grad_(False)
        self.critic_target = self._make_critic().requires_grad_(False)
        self.actor_target.load_state_dict(self.actor.state_dict())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.to(self.device)
        self.base_lr_actor = float(config.LR_ACTOR)
        self.base_lr_critic = float(config.LR_CRITIC)
        self.lr_episode = 0
        self.actor_optimizer = _adam(self.actor.parameters(), self.base_lr_actor, self.device)
        self.critic_optimizer = _adam(self.critic.parameters(), self.base_lr_critic, self.device)
        self.dispatches = not self.continuous and dims.heading_column is not None
        """A fleet dispatched to task points (discrete actions, points with a ``heading`` column): the one
        kind of team that coordinated choices, the greedy prior and idle-only exploration apply to."""
        self.dispatch_prior_logit = 0.0
        """Bonus on a dispatcher's choice in every policy's logits (:mod:`fleetmarl.learner.prior`); 0 = none."""
        self.set_dispatch_prior(float(config.DISPATCH_PRIOR_LOGIT) if self.dispatches else 0.0,
                                config.DISPATCH_PRIOR_POLICY)

    def set_dispatch_prior(self, logit: float, policy: str) -> None:
        """The prior's bonus and whose choice gets it; a loaded checkpoint sets what it was trained with."""
        dispatcher = pure_policy(policy, self.config)
        if dispatcher is None:
            raise CheckpointError(f"dispatch prior {policy!r} is not a dispatcher this version knows; "
                                  "upgrade fleetmarl to load this checkpoint")
        self.dispatch_prior_logit, self.dispatch_prior_policy, self.prior_dispatcher = float(logit), policy, dispatcher

    def _make_actor(self) -> nn.Module:
        """One stacked actor (called for the online and the target network); subclasses swap the kind."""
        c = self.config
        if self.shared:
            return SharedActor(self.dims, c.HIDDEN_DIM, c.EMBED_DIM, c.TRANSFORMER_HEADS, c.TRANSFORMER_LAYERS,
                               continuous=self.continuous, view=c.POINT_VIEW, vehicle_view=c.VEHICLE_VIEW)
        return Actor(self.dims.num_agents, self.dims, c.HIDDEN_DIM, c.EMBED_DIM, c.TRANSFORMER_HEADS,
                     c.TRANSFORMER_LAYERS, continuous=self.continuous)

    def _make_critic(self) -> nn.Module:
        """One stacked centralised critic (online or target)."""
        c = self.config
        if self.shared:
            return SharedCritic(self.dims, c.HIDDEN_DIM, c.EMBED_DIM, continuous=self.continuous, view=c.POINT_VIEW)
        return CentralCritic(self.dims.num_agents, self.dims, c.HIDDEN_DIM, c.EMBED_DIM, continuous=self.continuous)

    @property
    def num_agents(self) -> int:
        return self.dims.num_agents

    def slice_of(self, agent_id: int) -> int:
        """Which slice of the stacked networks is agent ``agent_id``'s: its own, or the one shared slice 0."""
        return 0 if self.shared else int(agent_id)

    @property
    def point_rows(self) -> str:
        """"active" when the actors encode only active points, "all" when every slot (files before 0.2)."""
        return _rows_read(self.actor)

    def set_point_rows(self, rows: str) -> None:
        """Encode only active points ("active") or every slot ("all"), as the loaded weights were trained."""
        _set_rows(rows, self.dims, self.actor, self.actor_target)

    @property
    def critic_rows(self) -> str:
        """"active" when the critics encode only active points, "all" when every slot (files before 0.2.1)."""
        return _rows_read(self.critic)

    def set_critic_rows(self, rows: str) -> None:
        """The critics' counterpart of :meth:`set_point_rows`: a resumed run keeps the maths it was trained with."""
        _set_rows(rows, self.dims, self.critic, self.critic_target)

    def set_lr_episode(self, episode: int) -> None:
        """Every optimizer's learning rate = its start value x ``lr_factor(config, episode)``."""
        factor = lr_factor(self.config, episode)
        self.lr_episode = int(episode)
        for optimizer, base in ((self.actor_optimizer, self.base_lr_actor), (self.critic_optimizer, self.base_lr_critic)):
            for group in optimizer.param_groups:
                group["lr"] = base * factor


def _rows_read(network: nn.Module) -> str:
    """Which point rows a network encodes: "active" or "all" (its ``active_column`` is None)."""
    return "all" if network.active_column is None else "active"


def _set_rows(rows: str, dims: ObservationDims, *networks: nn.Module) -> None:
    column = dims.active_column if rows == "active" else None
    for network in networks:
        network.active_column = column


def _adam(params: Any, lr: float, device: torch.device) -> torch.optim.Optimizer:
    # fused Adam: one kernel per step for all tensors; same maths as Adam
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))


class AgentView(nn.Module):
    """Slice ``index`` of a stacked module, with the state_dict and forward of one agent's own network.

    It registers no parameters of its own (the team owns them): ``parameters()`` yields slices,
    ``state_dict()`` gives the per-agent tensors ``agent_i.pth`` has always held, ``load_state_dict``
    copies into the slice, and calling it runs the stacked forward with A = 1 on this agent's weights.
    Attributes of the stacked module read through: a submodule comes back as its own view
    (``agent.actor.encoder``), anything else as it is (``agent.actor.continuous``).
    """

    def __init__(self, stacked: nn.Module, index: int) -> None:
        super().__init__()
        object.__setattr__(self, "stacked", stacked)  # not a submodule: the agent holds no copy
        self.index = int(index)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            value = getattr(object.__getattribute__(self, "stacked"), name)
            return AgentView(value, self.index) if isinstance(value, nn.Module) else value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        for name, param in self.stacked.named_parameters():
            yield (f"{prefix}.{name}" if prefix else name), param[self.index]

    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, torch.Tensor]:
        out = OrderedDict() if destination is None else destination
        for name, tensor in self.stacked.state_dict(keep_vars=keep_vars).items():
            out[prefix + name] = tensor[self.index] if keep_vars else tensor[self.index].detach()
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        own = self.stacked.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise CheckpointError(f"agent network does not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for name, value in state_dict.items():
                if name not in own:
                    continue
                target = own[name][self.index]
                if tuple(value.shape) != tuple(target.shape):
                    raise CheckpointError(f"agent network parameter {name!r} has shape {tuple(value.shape)} in "
                                          f"the checkpoint but {tuple(target.shape)} here")
                target.copy_(value)
        return nn.modules.module._IncompatibleKeys(missing, unexpected)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The stacked forward on this agent alone: inputs and outputs carry an agent dim of size 1."""
        sliced = {name: t[self.index:self.index + 1] for name, t in self.stacked.named_parameters()}
        return functional_call(self.stacked, sliced, args, kwargs)


class OptimizerView:
    """One agent's part of a stacked optimizer, in the per-agent ``Adam.state_dict()`` format.

    State tensors are slice ``index`` of the stacked moments; ``step`` is shared (every agent is updated
    together). ``param_groups`` are the team's: all agents share one learning-rate schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, stacked: nn.Module, index: int) -> None:
        self.optimizer, self.stacked, self.index = optimizer, stacked, int(index)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def state_dict(self) -> dict[str, Any]:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for j, param in enumerate(self.stacked.parameters()):
            moments = self.optimizer.state.get(param)
            if moments:
                state[j] = {k: (v if k == "step" else v[self.index]) for k, v in moments.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": list(range(len(g["params"])))}
                  for g in self.optimizer.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        params = list(self.stacked.parameters())
        saved = state_dict.get("state", {})
        if saved and len(saved) > len(params):
            raise CheckpointError(f"optimizer state holds {len(saved)} tensors but the network has {len(params)}")
        with torch.no_grad():
            for j, param in enumerate(params):
                entry = saved.get(j, saved.get(str(j)))
                if entry is None:
                    continue
                moments = self.optimizer.state[param]
                for key, value in entry.items():
                    value = value.to(param.device)
                    if key == "step":
                        moments[key] = value.to(torch.float32).clone()
                        continue
                    if key not in moments:
                        moments[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    moments[key][self.index].copy_(value)
        for group, saved_group in zip(self.optimizer.param_groups, state_dict.get("param_groups", []), strict=False):
            if "lr" in saved_group:
                group["lr"] = float(saved_group["lr"])


class MADDPGAgent(nn.Module):
    """One agent of a team: views of its slice of the networks and optimizers, the guide's API.

    ``transformer`` is the actor's point encoder (``agent.actor.encoder``): the part that reads the set
    of task points and learns end to end from the actor loss.
    """

    def __init__(self, team: AgentTeam, agent_id: int) -> None:
        super().__init__()
        object.__setattr__(self, "team", team)
        self.agent_id = int(agent_id)
        self.dims, self.config, self.device = team.dims, team.config, team.device
        self.action_type, self.continuous = team.action_type, team.continuous
        index = team.slice_of(agent_id)
        for name in SAVED_MODULES:
            setattr(self, name, AgentView(getattr(team, name), index))
        self.actor_optimizer = OptimizerView(team.actor_optimizer, team.actor, index)
        self.critic_optimizer = OptimizerView(team.critic_optimizer, team.critic, index)

    @property
    def transformer(self) -> AgentView:
        return self.actor.encoder

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        for name in SAVED_MODULES:
            yield from getattr(self, name).named_parameters(f"{prefix}.{name}" if prefix else name)

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
        inputs = [s, _to_tensor(point_features, self.device, torch.float32),
                  _to_tensor(other_obs, self.device, torch.float32)]
        mask = None if action_mask is None else _to_tensor(action_mask, self.device, torch.bool)
        if not batched:
            inputs = [x.unsqueeze(0) for x in inputs]
            mask = None if mask is None else mask.unsqueeze(0)
        choice, view = None, {}
        if self.team.dispatch_prior_logit:  # greedy for this vehicle alone: it cannot see the others' choices
            one = {"state": inputs[0][:, None], "point_features": inputs[1][:, None], "other_obs": inputs[2][:, None]}
            if mask is not None:
                one["action_mask"] = mask[:, None]
            choice = prior_choice(one, self.device, together=False, dispatcher=self.team.prior_dispatcher)  # (B, 1)
            if self.team.shared and self.team.config.POINT_VIEW:
                view = {"pick": choice.transpose(0, 1)}
        out = self.actor(*(x.unsqueeze(0) for x in inputs), **view)[0]  # agent dim of 1 in and out
        if choice is not None:
            out = out + prior_bonus(choice, self.team.dispatch_prior_logit, out.shape[-1])[0]
        if self.continuous:
            actions = explore_continuous(out, noise_std)
        else:
            actions = select_actions(out, noise_std, mask, fallback=self.dims.num_points)
        return as_given(actions, batched=batched, numpy=from_numpy, continuous=self.continuous)

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
            "action_type": self.action_type, "point_rows": self.team.point_rows,
            "critic_rows": self.team.critic_rows, "dispatch_prior_logit": self.team.dispatch_prior_logit,
            "dispatch_prior_policy": self.team.dispatch_prior_policy, "share_parameters": self.team.shared,
        }

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything for ``agent_i.pth``: plain tensors, numbers, strings, lists and dicts only.

        Tensors are views of the live ones (no copy here); the checkpoint package snapshots them. With
        SHARE_PARAMETERS agent 0 holds the shared networks and optimizers and every other agent only its
        meta and :data:`SHARED_RECORD_KEY` (a few hundred bytes).
        """
        team, c = self.team, self.config
        if team.shared and self.agent_id > 0:
            return {"meta": self.meta(), SHARED_RECORD_KEY: 0}
        modules, optimizers = self._get_torch_save_params()
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in modules}
        state.update({name: getattr(self, name).state_dict() for name in optimizers})
        state["transformer"] = self.transformer.state_dict()
        state["lr_actor"] = float(team.actor_optimizer.param_groups[0]["lr"])
        state["lr_critic"] = float(team.critic_optimizer.param_groups[0]["lr"])
        state["lr_schedule"] = {
            "episode": int(team.lr_episode), "base_lr_actor": team.base_lr_actor,
            "base_lr_critic": team.base_lr_critic, "enabled": bool(c.ENABLE_LR_SCHEDULING),
            "decay_type": c.LR_DECAY_TYPE, "factor": float(lr_factor(c, team.lr_episode)),
        }
        state["meta"] = self.meta()
        return state

    def load_checkpoint_state(self, state: dict[str, Any], *, any_fleet: bool = False) -> None:
        """Restore exactly what :meth:`checkpoint_state` saved into this agent's slice (on the team's device).

        ``any_fleet``: the file may be agent 0's of a shared-parameter checkpoint trained on another fleet
        size (NUM_AGENTS, NUM_POINTS); its networks fit this team, which must share parameters too.
        """
        self._check_meta(state.get("meta"), any_fleet=any_fleet)
        if self._is_shared_record(state):
            return  # agent 0's file holds the networks every agent uses
        self.team.set_point_rows(state["meta"].get("point_rows", "all"))  # files before 0.2 read every slot
        self.team.set_critic_rows(state["meta"].get("critic_rows", "all"))  # so did critics before 0.2.1
        meta = state["meta"]  # older files: no prior (no key), or greedy's (no dispatch_prior_policy)
        self.team.set_dispatch_prior(meta.get("dispatch_prior_logit", 0.0), meta.get("dispatch_prior_policy", "greedy"))
        modules, optimizers = self._get_torch_save_params()
        missing = [k for k in (*modules, *optimizers) if k not in state]
        if missing:
            raise CheckpointError(f"agent checkpoint lacks {missing[0]!r}; it was not written by fleetmarl's MADDPGAgent")
        for name in modules:
            getattr(self, name).load_state_dict(state[name])
        for name in optimizers:
            getattr(self, name).load_state_dict(state[name])
        team = self.team
        schedule = state.get("lr_schedule") or {}
        team.lr_episode = int(schedule.get("episode", 0))
        team.base_lr_actor = float(schedule.get("base_lr_actor", team.base_lr_actor))
        team.base_lr_critic = float(schedule.get("base_lr_critic", team.base_lr_critic))
        for optimizer, key in ((team.actor_optimizer, "lr_actor"), (team.critic_optimizer, "lr_critic")):
            if key in state:
                for group in optimizer.param_groups:
                    group["lr"] = float(state[key])

    def _check_meta(self, meta: Any, *, any_fleet: bool = False) -> None:
        if not isinstance(meta, dict):
            raise CheckpointError("agent checkpoint has no 'meta' entry; it was not written by fleetmarl's MADDPGAgent")
        mine = self.meta()
        saved_shared = bool(meta.get("share_parameters", False))  # files before SHARE_PARAMETERS: per agent
        if saved_shared != self.team.shared:
            raise CheckpointError(f"checkpoint was made with SHARE_PARAMETERS={saved_shared} but the config has "
                                  f"SHARE_PARAMETERS={self.team.shared}; the networks differ, use the value it was "
                                  "trained with")
        skip = FLEET_SIZE_KEYS if any_fleet and saved_shared else ()
        for key, config_key in META_CONFIG_KEYS.items():
            if key in meta and key not in skip and meta[key] != mine[key]:
                hint = ("; its networks are per vehicle: only a checkpoint trained with SHARE_PARAMETERS=True runs "
                        "another fleet size") if key in FLEET_SIZE_KEYS and not saved_shared else ""
                raise CheckpointError(f"checkpoint was made for {config_key}={meta[key]} but the config has "
                                      f"{config_key}={mine[key]}{hint}")
        for key, label in META_OBS_KEYS.items():
            if key in meta and key not in skip and meta[key] != mine[key]:
                raise CheckpointError(f"checkpoint was made for an observation {label} of {meta[key]} but this "
                                      f"environment has {mine[key]}")
        if skip and "num_actions" in meta and "num_points" in meta:
            extra, own_extra = meta["num_actions"] - meta["num_points"], mine["num_actions"] - mine["num_points"]
            if extra != own_extra:
                raise CheckpointError(f"checkpoint has {extra} actions besides the points but this environment "
                                      f"has {own_extra}")

    def _is_shared_record(self, state: dict[str, Any]) -> bool:
        """Whether ``state`` is the small record of an agent that uses agent 0's networks; a file that does
        not fit this agent's place in a shared team is refused in one line."""
        if not self.team.shared:
            return False  # a record's meta says share_parameters: _check_meta refused it already
        record = SHARED_RECORD_KEY in state
        if self.agent_id == 0 and record:
            raise CheckpointError("agent 0's file of a SHARE_PARAMETERS checkpoint must hold the shared networks, "
                                  f"but it only points at agent {state[SHARED_RECORD_KEY]}'s")
        if self.agent_id > 0 and not record:
            raise CheckpointError(f"agent {self.agent_id}'s file holds networks of its own, but with "
                                  "SHARE_PARAMETERS=True every agent uses agent 0's; the checkpoint is inconsistent")
        if record and (state[SHARED_RECORD_KEY] != 0 or state["meta"].get("agent_id") != self.agent_id):
            raise CheckpointError(f"agent {self.agent_id}'s file is agent {state['meta'].get('agent_id')}'s record "
                                  f"sharing agent {state[SHARED_RECORD_KEY]}'s networks; the checkpoint is inconsistent")
        return record


def as_given(actions: torch.Tensor, *, batched: bool, numpy: bool, continuous: bool) -> Any:
    """Actions (B, ...) in the form ``act`` was called with: one observation or a batch, NumPy or torch
    (the guide's ``agent.act`` returns a python int for one NumPy observation)."""
    actions = actions if batched else actions.squeeze(0)
    if not numpy:
        return actions
    array = actions.cpu().numpy()
    if continuous:
        return array
    return int(array) if not batched else array.astype(np.int64)


def _to_tensor(value: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)


def build_agents(config: Config, device: torch.device | str = "cpu", *, action_type: str = "discrete",
                 dims: ObservationDims | None = None) -> list[MADDPGAgent]:
    """``config.NUM_AGENTS`` agents sharing one :class:`AgentTeam`; the caller seeds torch first
    (weights come from its global RNG)."""
    team = AgentTeam(dims or observation_dims(config), config, device, action_type=action_type)
    return [MADDPGAgent(team, i) for i in range(team.num_agents)]
