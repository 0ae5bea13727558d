"""What you deploy: a trained checkpoint as a function from observations to actions.

Kept apart from the learner (Tianshou's Policy/Algorithm split): inference needs the actors and their
point encoders, never the replay buffer, and must not care how training was organised. The one place
that turns a checkpoint folder plus optional environment overrides into a ready policy is
:func:`load_checkpoint_policy`; ``fleetmarl eval/compare/render`` and :func:`fleetmarl.load_policy` all
go through it, so they cannot disagree about which configuration a checkpoint runs on.

Configuration rule (issue 5): a checkpoint runs on the configuration saved inside it. Environment keys
(``ENV_KEYS``) may be overridden, e.g. to test on ``simplified`` or a longer shift; keys that fix tensor
shapes (``SHAPE_KEYS``) may not, because the weights only fit the shapes they were trained on. A checkpoint
trained with ``SHARE_PARAMETERS=True`` has one actor and one critic whose shapes depend on neither
``NUM_AGENTS`` nor ``NUM_POINTS`` (:data:`FLEET_SIZE_KEYS`), so it runs on a fleet of any size: every
vehicle of the new fleet uses the weights in its ``agent_0.pth``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fleetmarl.checkpoint import load_model_checkpoint, open_checkpoint, verify_checkpoint
from fleetmarl.checkpoint.layout import TRAINING_STATE_FILE, agent_filename, looks_like_checkpoint
from fleetmarl.config import (
    ENV_KEYS,
    SHAPE_KEYS,
    Config,
    apply_overrides,
    parse_value,
    read_config_file,
    shape_difference,
)
from fleetmarl.envs.spaces import ACTOR_INPUT_KEYS, OBS_KEYS
from fleetmarl.errors import CheckpointError, ConfigError, UserError

# Keys that change how inference runs, not what the weights mean; safe to set for a checkpoint.
RUNTIME_KEYS = frozenset({"DEVICE", "NUM_THREADS", "LOG_DIR", "RUN_NAME", "RANDOM_SEED", "EVAL_EPISODES"})
FLEET_SIZE_KEYS = ("NUM_AGENTS", "NUM_POINTS")
"""Shape keys of per-vehicle networks that a SHARE_PARAMETERS checkpoint does not depend on."""
VIEW_KEYS = ("POINT_VIEW", "VEHICLE_VIEW")
"""How many points and other vehicles each vehicle of a SHARE_PARAMETERS checkpoint reads: its networks
read sets of any size, so these are choices at evaluation too. Why allow it: on fleet20 reading every point
at evaluation beats the view of 8 it was trained with (docs/training.md, 'Large fleets')."""


def shape_keys(saved: Config) -> tuple[str, ...]:
    """The keys whose values ``saved``'s weights depend on: SHAPE_KEYS, less the fleet size when shared."""
    if saved.SHARE_PARAMETERS:
        return tuple(key for key in SHAPE_KEYS if key not in FLEET_SIZE_KEYS)
    return SHAPE_KEYS


def other_fleet_size(saved: Config, wanted: Config) -> bool:
    """Whether ``wanted`` asks a (shared-parameter) checkpoint for another NUM_AGENTS or NUM_POINTS."""
    return any(getattr(saved, key) != getattr(wanted, key) for key in FLEET_SIZE_KEYS)


# ---------------------------------------------------------------------- configuration of a checkpoint
def saved_config(checkpoint: str | Path) -> Config:
    """The configuration a checkpoint was trained with, read from ``training_state.pth`` alone."""
    path = _checked_checkpoint(checkpoint)
    state = open_checkpoint(path).load(TRAINING_STATE_FILE)  # hashes this file only, not the replay buffer
    values = state.get("config") if isinstance(state, dict) else None
    if not isinstance(values, Mapping):
        raise CheckpointError(f"{path / TRAINING_STATE_FILE} holds no config; it was not written by fleetmarl train")
    try:
        return Config.from_dict(values, source=str(path / TRAINING_STATE_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} has a config this version cannot use: {exc}") from None


def checkpoint_run_config(saved: Config, overrides: Iterable[str] = (), config_file: str | Path | None = None) -> Config:
    """``saved`` with the environment keys of an explicit ``--config`` file and the ``--set`` overrides applied.

    A config file normally lists every key, so only its environment keys are taken; a ``--set`` of any
    other non-runtime key is refused (it would silently do nothing). The device defaults to 'auto' so a
    checkpoint trained on a GPU box evaluates on a laptop.
    """
    config = saved.replace(DEVICE="auto")
    if config_file is not None:
        from_file = {k: v for k, v in read_config_file(config_file).items() if k in ENV_KEYS}
        merged = Config.from_dict({**config.to_dict(), **from_file}, source=str(config_file))
        _check_shapes(saved, merged, f"--config {config_file}")
        config = merged
    overrides = list(overrides)
    for item in overrides:
        key, _, raw = item.partition("=")
        key = key.strip()
        if key in shape_keys(saved) and parse_value(key, raw.strip()) != getattr(saved, key):
            raise CheckpointError(_shape_message(f"--set {key}={raw.strip()}", key, getattr(saved, key)))
        if key in VIEW_KEYS and saved.SHARE_PARAMETERS:
            continue
        if key in Config.__dataclass_fields__ and key not in ENV_KEYS | RUNTIME_KEYS | set(SHAPE_KEYS):
            raise UserError(f"--set {key} has no effect on this checkpoint; only environment keys "
                            f"(e.g. ENVIRONMENT_TYPE, MAX_NUM_STEPS, MAP_SIZE), {', '.join(sorted(RUNTIME_KEYS))} "
                            f"and, for a SHARE_PARAMETERS checkpoint, {' and '.join(VIEW_KEYS)} may be set")
    return apply_overrides(config, overrides)


def _check_shapes(saved: Config, wanted: Config, where: str) -> None:
    difference = shape_difference({key: getattr(saved, key) for key in shape_keys(saved)}, wanted)
    if difference:
        key, was, now = difference
        raise CheckpointError(_shape_message(f"{where} {key}={now}", key, was))


def _shape_message(what: str, key: str, saved_value: Any) -> str:
    if key in FLEET_SIZE_KEYS:
        return (f"{what} does not fit this checkpoint, which was trained with {key}={saved_value} and per-vehicle "
                f"networks whose shapes depend on {key}; another fleet size needs a checkpoint trained with "
                "SHARE_PARAMETERS=True")
    return (f"{what} does not fit this checkpoint, which was trained with {key}={saved_value}; the network "
            f"shapes depend on {key}, so drop that override or use a checkpoint trained with it")


def _checked_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; list the valid ones with `fleetmarl ckpt list`")
    if not path.is_dir() or not looks_like_checkpoint(path):
        raise CheckpointError(f"{path} is not a checkpoint folder (checkpoint_ep<episode>_<YYYYmmdd_HHMMSS>); "
                              "list the valid ones with `fleetmarl ckpt list`")
    problems = verify_checkpoint(path, check_hashes=False)  # files and sizes; each file read is hash-checked
    if problems:
        raise CheckpointError(f"checkpoint {path} is not valid: {problems[0]}; run `fleetmarl ckpt verify {path}`")
    return path


# ---------------------------------------------------------------------- the deployable policy
@dataclass
class CheckpointPolicy:
    """Noise-free actions of every agent from a trained checkpoint.

    Call it with a batched observation dict ``(B, N_agents, ...)`` (numpy) to get actions
    ``(B, N_agents)``; :meth:`act` takes a PettingZoo observation dict instead.
    """

    checkpoint: Path
    config: Config
    agents: list
    algo: Any
    device: torch.device
    episode: int
    agent_names: list[str] = field(default_factory=list)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        tensors = {k: torch.as_tensor(np.asarray(obs[k])).to(self.device) for k in OBS_KEYS}
        with torch.no_grad():
            return self.algo.act(tensors, 0.0).cpu().numpy()

    def act(self, observations: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, int]:
        """``{agent_name: {state, point_features, other_obs, action_mask}}`` -> ``{agent_name: action}``.

        Names are those of :class:`fleetmarl.envs.SamplingEnv` (``possible_agents``). With every vehicle's
        observation the fleet chooses together, as it was trained and as ``policy(batch)`` does (vehicles in
        index order, no point offered that an earlier one just chose); a dict holding only some vehicles
        gets each actor's choice from its own observation alone (decentralised execution).
        """
        unknown = [name for name in observations if name not in self.agent_names]
        if unknown:
            raise UserError(f"unknown agent name(s) {', '.join(map(str, unknown))}; this policy drives "
                            f"{', '.join(self.agent_names)}")
        from fleetmarl.config import is_fleet_environment

        if not is_fleet_environment(self.config):
            return self._act_flat(observations)
        if set(observations) == set(self.agent_names):
            rows = [observations[name] for name in self.agent_names]
            batch = {k: np.stack([self._tensor(row, k).cpu().numpy() for row in rows])[None] for k in OBS_KEYS}
            chosen = self(batch)[0]
            return {name: int(chosen[self.agent_names.index(name)]) for name in observations}
        actions: dict[str, int] = {}
        with torch.no_grad():
            for name, obs in observations.items():
                agent = self.agents[self.agent_names.index(name)]
                action = agent.act(*(self._tensor(obs, k) for k in ACTOR_INPUT_KEYS), noise_std=0.0,
                                   action_mask=self._tensor(obs, "action_mask"))
                actions[name] = int(torch.as_tensor(action).reshape(-1)[0])
        return actions

    def _act_flat(self, observations: Mapping[str, Any]) -> dict[str, Any]:
        """A PettingZoo environment's own observations (arrays, or dicts of observation and action_mask) ->
        its own actions: ints, or arrays within the Box bounds."""
        from fleetmarl.envs.pettingzoo_env import env_spec

        spec = env_spec(self.config)
        actions: dict[str, Any] = {}
        for name, obs in observations.items():
            i = self.agent_names.index(name)
            mask = None
            if isinstance(obs, Mapping):
                mask = np.zeros(spec.num_actions, bool)
                given = np.asarray(obs.get("action_mask", np.ones(spec.action_sizes[i]))).astype(bool).ravel()
                mask[:given.size] = given
                obs = obs["observation"]
            flat = np.zeros(spec.obs_dim, np.float32)
            values = np.asarray(obs, np.float32).ravel()
            flat[:values.size] = values
            action = self.agents[i].act(flat, noise_std=0.0, action_mask=mask)
            if spec.discrete:
                actions[name] = int(action)
            else:
                size = spec.action_sizes[i]
                low, high = spec.low[i, :size], spec.high[i, :size]
                actions[name] = (low + (np.asarray(action)[:size] + 1.0) / 2.0 * (high - low)).astype(np.float32)
        return actions

    def _tensor(self, obs: Mapping[str, Any], key: str) -> torch.Tensor:
        if key not in obs:
            raise UserError(f"observation lacks {key!r}; expected keys {', '.join(OBS_KEYS)}")
        return torch.as_tensor(np.asarray(obs[key])).to(self.device)


def load_checkpoint_policy(checkpoint: str | Path, device: torch.device | str | None = None, *,
                           overrides: Iterable[str] = (), config_file: str | Path | None = None,
                           config: Config | None = None) -> CheckpointPolicy:
    """Build the agents the checkpoint needs and load its weights (not its replay buffer).

    ``config`` (already resolved, e.g. a comparison's shared environment) wins over ``overrides``.
    """
    path = _checked_checkpoint(checkpoint)  # before importing the models: a typo should fail fast
    from fleetmarl.device import resolve_device
    from fleetmarl.learner.factory import build_algorithm, build_team

    saved = saved_config(path)
    if config is None:
        config = checkpoint_run_config(saved, overrides, config_file)
    else:
        _check_shapes(saved, config, "the comparison's environment:")
    target = torch.device(device) if device is not None else resolve_device(config.DEVICE)
    agents = build_team(config, target)
    if other_fleet_size(saved, config):  # shared weights (_check_shapes let it through) on another fleet
        state = _load_shared_into(agents, path, target)
    else:
        state = load_model_checkpoint(agents, path, target, config=config)
    for agent in agents:
        agent.eval()
    return CheckpointPolicy(checkpoint=path, config=config, agents=agents, algo=build_algorithm(agents, config),
                            device=target, episode=int(state.get("episode", 0)), agent_names=agent_names(config))


def _load_shared_into(agents: list, path: Path, device: torch.device) -> dict[str, Any]:
    """A SHARE_PARAMETERS checkpoint's networks (all in agent_0.pth) into a team of another fleet size;
    returns its training_state. Files are hash-checked as they are read, as load_model_checkpoint does."""
    opened = open_checkpoint(path)
    state = opened.load(TRAINING_STATE_FILE, device)
    if not isinstance(state, dict):
        raise CheckpointError(f"cannot read {path / TRAINING_STATE_FILE}: expected a dict, got {type(state).__name__}")
    agents[0].load_checkpoint_state(opened.load(agent_filename(0), device), any_fleet=True)
    return state


def agent_names(config: Config) -> list[str]:
    """The PettingZoo names of the agents, taken from the environment so the two never disagree."""
    from fleetmarl.config import is_fleet_environment
    from fleetmarl.envs import SamplingEnv, env_spec

    if not is_fleet_environment(config):
        return list(env_spec(config).agents)
    env = SamplingEnv(config)
    try:
        return list(env.possible_agents)
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()


def load_policy(checkpoint: str | Path, device: torch.device | str = "cpu", *,
                overrides: Iterable[str] = ()) -> CheckpointPolicy:
    """Deployment entry point: ``load_policy(path).act(observations) -> {agent_name: action}``.

    ``overrides``: ``KEY=VALUE`` environment keys, as ``fleetmarl eval --set``; a checkpoint trained with
    SHARE_PARAMETERS=True drives a fleet of another size with ``("NUM_AGENTS=8", "NUM_POINTS=48", ...)``."""
    return load_checkpoint_policy(checkpoint, device, overrides=overrides)
