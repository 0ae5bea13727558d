"""Any PettingZoo parallel environment, named by import path, as a batch the trainer can step (issue 12).

``ENVIRONMENT_TYPE = "mpe2.simple_spread_v3"`` imports that module and builds ``NUM_ENVS`` copies of
``parallel_env(**ENV_KWARGS)``. Their observations are put into the learner's observation dict so the
replay buffer, checkpoints, evaluation and plots work unchanged: ``state`` holds each agent's flat
observation ``(B, A, obs_dim)`` (padded with zeros to the widest agent), ``action_mask`` ``(B, A, K)``
(all True unless the environment provides a mask), and ``point_features`` / ``other_obs`` are empty
``(B, A, 0, 0)``. Supported spaces: observations ``Box`` (flattened) or ``Dict`` with ``observation``
(Box) and ``action_mask``; actions all ``Discrete`` (K = the largest n; the rest is masked) or all
``Box`` with finite bounds (the learner's actions in [-1, 1] are scaled to them).

Why rounds, and what a round is here: checkpoints are taken only when no episode is running, so resume
needs no environment internals. A round runs every copy until its episode is over (all agents
terminated or truncated, or ``MAX_NUM_STEPS`` steps, counted as truncation); a copy that finishes early
waits, unstepped, for the others. One round is ``NUM_ENVS`` episodes, as for the fleet. Each episode's
reset seed is drawn from this batch's own generator, the only random state a checkpoint must carry.

Replay needs two different "done"s: an agent that *terminated* has no future (no bootstrap), one that
was *truncated* (time limit) does. ``step`` returns both per agent; the trainer stores terminations.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fleetmarl.config import Config
from fleetmarl.envs.rng_state import generator_from_state, generator_state
from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.errors import UserError

Observation = dict[str, np.ndarray]
SEED_BOUND = 2**31 - 1
"""Reset seeds are drawn below this (PettingZoo environments accept any non-negative int)."""


@dataclass(frozen=True)
class FlatEnvSpec:
    """What the learner must know about a PettingZoo environment, read once from its spaces."""

    module: str
    agents: tuple[str, ...]
    obs_dims: tuple[int, ...]
    """each agent's flattened observation size (padded to the largest in ``state``)"""
    discrete: bool
    num_actions: int
    """K (discrete: the largest Discrete n) or D (continuous: the widest Box)"""
    action_sizes: tuple[int, ...]
    """each agent's own n or Box size"""
    low: np.ndarray | None
    """(A, D) lower bounds of continuous actions (padding: -1)"""
    high: np.ndarray | None
    has_mask: bool

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def obs_dim(self) -> int:
        return max(self.obs_dims)

    @property
    def action_type(self) -> str:
        return "discrete" if self.discrete else "continuous"

    def dims(self) -> ObservationDims:
        """The learner's sizes: the flat observation is the ``state``; there are no point rows."""
        return ObservationDims(num_agents=self.num_agents, num_points=0, state=self.obs_dim, point=0, other=0,
                               other_rows=0, num_actions=self.num_actions)


# ---------------------------------------------------------------------- building and validating
def make_parallel_env(config: Config) -> Any:
    """``module.parallel_env(**ENV_KWARGS)``; every way this can fail is one :class:`UserError` line."""
    path = config.ENVIRONMENT_TYPE
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise UserError(f"ENVIRONMENT_TYPE {path!r} cannot be imported ({exc}); install its package "
                        "(for MPE: pip install -e \".[mpe]\") or correct the import path") from None
    factory = getattr(module, "parallel_env", None)
    if not callable(factory):
        raise UserError(f"ENVIRONMENT_TYPE {path!r} has no parallel_env(); name a PettingZoo module that has one, "
                        "e.g. mpe2.simple_spread_v3")
    try:
        return factory(**config.ENV_KWARGS)
    except Exception as exc:  # the environment's own validation: report it in one line
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"{path}.parallel_env rejected ENV_KWARGS={json.dumps(config.ENV_KWARGS)}: {message}; "
                        "fix ENV_KWARGS") from None


def env_spec(config: Config) -> FlatEnvSpec:
    """The spaces of ``config``'s PettingZoo environment (one throwaway copy, cached per type and kwargs)."""
    return _spec(config.ENVIRONMENT_TYPE, json.dumps(config.ENV_KWARGS, sort_keys=True))


@lru_cache(maxsize=16)
def _spec(path: str, kwargs: str) -> FlatEnvSpec:
    env = make_parallel_env(Config(ENVIRONMENT_TYPE=path, ENV_KWARGS=json.loads(kwargs)))
    try:
        return read_spec(env, path)
    finally:
        _close(env)


def read_spec(env: Any, path: str) -> FlatEnvSpec:
    """Check the spaces are ones the learner handles and collect their sizes."""
    agents = tuple(getattr(env, "possible_agents", ()) or ())
    if not agents:
        raise UserError(f"{path}.parallel_env() has no possible_agents; it is not a PettingZoo parallel environment")
    obs_dims, has_mask = [], False
    for agent in agents:
        size, masked = _observation_size(env.observation_space(agent), path, agent)
        obs_dims.append(size)
        has_mask |= masked
    action_spaces = [env.action_space(agent) for agent in agents]
    kinds = {type(space).__name__ for space in action_spaces}
    if kinds == {"Discrete"}:
        sizes = tuple(int(space.n) for space in action_spaces)
        if any(int(getattr(space, "start", 0)) != 0 for space in action_spaces):
            raise UserError(f"{path}: Discrete action spaces must start at 0; this environment's do not")
        return FlatEnvSpec(path, agents, tuple(obs_dims), True, max(sizes), sizes, None, None, has_mask)
    if kinds == {"Box"}:
        sizes = tuple(int(np.prod(space.shape)) for space in action_spaces)
        width = max(sizes)
        low, high = -np.ones((len(agents), width)), np.ones((len(agents), width))
        for i, space in enumerate(action_spaces):
            lo, hi = np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                raise UserError(f"{path}: agent {agents[i]}'s Box action space has infinite bounds; the actor's "
                                "tanh output is scaled to the bounds, so they must be finite")
            low[i, :sizes[i]], high[i, :sizes[i]] = lo, hi
        return FlatEnvSpec(path, agents, tuple(obs_dims), False, width, sizes, low, high, has_mask)
    raise UserError(f"{path}: action spaces {', '.join(sorted(kinds))} are not supported; every agent needs a "
                    "Discrete or every agent a Box action space")


def _observation_size(space: Any, path: str, agent: str) -> tuple[int, bool]:
    kind = type(space).__name__
    if kind == "Box":
        return int(np.prod(space.shape)), False
    if kind == "Dict" and "observation" in space.spaces and type(space.spaces["observation"]).__name__ == "Box":
        return int(np.prod(space.spaces["observation"].shape)), "action_mask" in space.spaces
    raise UserError(f"{path}: agent {agent}'s observation space {kind} is not supported; it must be a Box, or a "
                    "Dict of 'observation' (Box) and 'action_mask'")


def _close(env: Any) -> None:
    close = getattr(env, "close", None)
    if callable(close):
        close()


# ---------------------------------------------------------------------- the batch
class PettingZooBatch:
    """``num_envs`` copies of a PettingZoo parallel env, stepped in rounds of one episode each (module doc)."""

    def __init__(self, config: Config, num_envs: int) -> None:
        self.config = config
        self.spec = env_spec(config)
        self.envs = [make_parallel_env(config) for _ in range(num_envs)]
        self.num_envs = num_envs
        self.num_agents = self.spec.num_agents
        self.max_steps = config.MAX_NUM_STEPS
        self.rng = np.random.default_rng()
        a, d = self.num_agents, self.spec.obs_dim
        self._obs = np.zeros((num_envs, a, d), np.float32)
        self._mask = np.ones((num_envs, a, self.spec.num_actions), bool)
        self._empty = np.zeros((num_envs, a, 0, 0), np.float32)
        self._alive = np.zeros((num_envs, a), bool)
        self._over = np.ones(num_envs, bool)
        self._steps = np.zeros(num_envs, np.int64)
        self._lengths = np.zeros(num_envs, np.int64)
        self._index = {name: i for i, name in enumerate(self.spec.agents)}
        spaces = [self.envs[0].action_space(name) for name in self.spec.agents] if self.envs else []
        self._action_form = [(space.dtype, space.shape) for space in spaces]

    # ------------------------------------------------------------------ episodes
    def reset(self, seed: int | None = None) -> Observation:
        """A new episode in every copy. A seed restarts the batch's generator; None continues it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        seeds = self.rng.integers(0, SEED_BOUND, size=self.num_envs)
        self._obs[:] = 0.0
        self._mask[:] = True
        for b, env in enumerate(self.envs):
            observations, _ = env.reset(seed=int(seeds[b]))
            self._write(b, observations, env.agents)
        self._over[:] = False
        self._steps[:] = 0
        return self._observation()

    def step(self, actions: np.ndarray) -> tuple[Observation, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Actions (B, A) ints or (B, A, D) in [-1, 1] -> obs, rewards (B, A), terminated (B, A),
        truncated (B, A), infos.

        infos: ``stepped`` (B,) the copies that took this step (the others' episodes are over and they
        wait); ``episode_over`` (B,) copies whose episode ended now; ``final_obs`` when any ended (their
        last observation; nothing auto-resets); ``round_over`` once every episode of the round is over,
        then also ``episode`` with each copy's episode ``length``.
        """
        a = self.num_agents
        rewards = np.zeros((self.num_envs, a), np.float32)
        terminated = np.zeros((self.num_envs, a), bool)
        truncated = np.zeros((self.num_envs, a), bool)
        stepped = ~self._over
        for b in np.flatnonzero(stepped):
            env = self.envs[b]
            live = list(env.agents)
            act = {name: self._env_action(actions[b, self._index[name]], self._index[name]) for name in live}
            observations, reward, term, trunc, _ = env.step(act)
            self._steps[b] += 1
            for name in live:
                i = self._index[name]
                rewards[b, i] = float(reward.get(name, 0.0))
                terminated[b, i] = bool(term.get(name, False))
                truncated[b, i] = bool(trunc.get(name, False))
            terminated[b] |= ~self._alive[b]  # an agent gone earlier stays done (no bootstrap on padding)
            if self._steps[b] >= self.max_steps:
                truncated[b] |= ~terminated[b]
            self._write(b, observations, env.agents)
            if not env.agents or (terminated[b] | truncated[b]).all():
                self._over[b] = True
                self._lengths[b] = self._steps[b]
        ended = stepped & self._over
        obs = self._observation()
        infos: dict[str, Any] = {"stepped": stepped, "episode_over": ended, "round_over": bool(self._over.all())}
        if ended.any():
            infos["final_obs"] = obs
        if infos["round_over"]:
            infos["episode"] = {"length": self._lengths.astype(np.float64).copy()}
        return obs, rewards, terminated, truncated, infos

    def _env_action(self, action: np.ndarray, agent: int) -> Any:
        if self.spec.discrete:
            return int(action)
        size = self.spec.action_sizes[agent]
        low, high = self.spec.low[agent, :size], self.spec.high[agent, :size]
        unit = (np.clip(np.asarray(action, np.float64)[:size], -1.0, 1.0) + 1.0) / 2.0
        dtype, shape = self._action_form[agent]
        return (low + unit * (high - low)).astype(dtype).reshape(shape)

    def _write(self, b: int, observations: dict[str, Any], live: list[str]) -> None:
        """Copy each agent's observation (and mask) into row b; agents no longer live keep zeros."""
        self._alive[b] = False
        for name in live:
            self._alive[b, self._index[name]] = True
        for name, value in observations.items():
            i = self._index[name]
            if isinstance(value, dict):
                if "action_mask" in value:
                    mask = np.asarray(value["action_mask"]).astype(bool).ravel()
                    self._mask[b, i] = False
                    self._mask[b, i, :mask.size] = mask
                value = value["observation"]
            flat = np.asarray(value, np.float32).ravel()
            self._obs[b, i] = 0.0
            self._obs[b, i, :flat.size] = flat
        for i in np.flatnonzero(~self._alive[b]):
            self._obs[b, i] = 0.0
        if self.spec.discrete:
            for i, n in enumerate(self.spec.action_sizes):
                self._mask[b, i, n:] = False

    def _observation(self) -> Observation:
        return {"state": self._obs.copy(), "point_features": self._empty, "other_obs": self._empty,
                "action_mask": self._mask.copy()}

    # ------------------------------------------------------------------ random actions and state
    def random_actions(self, obs: Observation, rng: np.random.Generator) -> np.ndarray:
        """Uniform actions from ``rng``: over the mask (B, A) or in the box (B, A, D)."""
        return random_actions(self.spec, obs, rng)

    def get_rng_state(self) -> dict[str, Any]:
        return generator_state(self.rng)

    def set_rng_state(self, state: dict[str, Any]) -> None:
        self.rng = generator_from_state(state)

    def close(self) -> None:
        for env in self.envs:
            _close(env)


def random_actions(spec: FlatEnvSpec, obs: Observation, rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions for a PettingZoo batch (the floor every trained policy must beat)."""
    mask = np.asarray(obs["action_mask"], bool)
    if spec.discrete:
        return np.where(mask, rng.random(mask.shape), -1.0).argmax(axis=-1)
    return rng.uniform(-1.0, 1.0, size=mask.shape).astype(np.float32)
