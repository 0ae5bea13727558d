"""Every setting of fleetmarl, validated once, frozen, with the user's guide's names.

The user edits a ``config.py`` of UPPERCASE constants (their guide's habit); we keep those names as the
field names here so there is exactly one spelling everywhere: in ``config.py``, in ``--set KEY=VALUE``,
in ``training_state.pth['config']`` and in ``config_info.txt``. Each field carries its docstring on the
next line (CleanRL's habit) so ``fleetmarl train --help-config`` can print it.

Impossible combinations are rejected up front by :meth:`Config.__post_init__` with a
:class:`~fleetmarl.errors.ConfigError` naming the key, before any training time is spent.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import math
import re
import runpy
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fleetmarl.errors import ConfigError, FleetmarlWarning

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

ENVIRONMENT_TYPES = ("full", "simplified")
"""The sampling-fleet environments; any other ENVIRONMENT_TYPE is the import path of a PettingZoo module."""
_MODULE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
LR_DECAY_TYPES = ("exponential", "step", "cosine")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
WARMUP_POLICIES = ("greedy", "greedy_shift", "greedy_chain", "ortools", "random")
TEACHER_POLICIES = ("greedy", "greedy_shift", "greedy_chain", "ortools", "none")
PURE_DISPATCHERS = ("greedy", "greedy_shift", "greedy_chain")
"""Dispatchers whose choice is a function of one observation (no plan, no random draws), so they can be asked
again about a replayed one and be a policy's prior."""

REMOVED_KEYS: Mapping[str, Any] = MappingProxyType({
    "EXPLORE_EPSILON": 0.0, "EXPLORE_HOLD_PROB": 0.0, "EXPLORE_HOLD_STEPS": 12, "CRITIC_TEAM_REWARD": False,
    "ACTOR_Q_NORMALIZE": False, "BC_ALTERNATIVES": False, "BC_ALTERNATIVE_MARGIN": 2.0, "BC_EPISODES": 0,
})
"""Research keys that measured no gain and were removed (docs/experiments.md), each with the value that
behaves as the code does now. Files and checkpoints that name one still load: the key is dropped with one
warning, which also says when a value asked for behaviour that is gone."""


@dataclass(frozen=True, kw_only=True)
class Config:
    # ------------------------------------------------------------------ Environment (环境设置)
    ENVIRONMENT_TYPE: str = "full"
    """'full' (points keep arriving, energy and charging), 'simplified' (all points at reset, no energy limit), or
    the import path of a PettingZoo parallel-env module, e.g. 'mpe2.simple_spread_v3' (docs/benchmarks.md)"""
    ENV_KWARGS: dict[str, Any] = field(default_factory=dict)
    """keyword arguments of a PettingZoo module's parallel_env(**ENV_KWARGS); JSON with --set, e.g.
    --set 'ENV_KWARGS={"N": 3, "continuous_actions": true}' (unused by 'full' and 'simplified')"""
    NUM_AGENTS: int = 5
    """number of vehicles (agents)"""
    NUM_POINTS: int = 30
    """task-point slots; in 'full' new points arrive into free slots during the episode"""
    MAX_NUM_STEPS: int = 180
    """steps per episode; every episode lasts exactly this long (a shift of MAX_NUM_STEPS * STEP_SECONDS)"""
    STEP_SECONDS: float = 10.0
    """simulated seconds per step"""
    MAP_SIZE: float = 5000.0
    """side of the square map in metres; the base is at the centre"""
    AGENT_SPEEDS: tuple[float, ...] | None = None
    """per-agent speed in m/s; None = default fleet: first 60% fast (30 m/s), the rest slow (15 m/s)"""
    AGENT_CAPACITIES: tuple[int, ...] | None = None
    """per-agent sample capacity; None = default fleet: fast 8, slow 24"""
    AGENT_ENERGY_CAPACITY: tuple[float, ...] | None = None
    """per-agent energy budget (arbitrary units); None = default fleet: 100 each"""
    AGENT_ENERGY_PER_KM: tuple[float, ...] | None = None
    """per-agent energy used per km travelled; None = default fleet: fast 2.0, slow 3.5"""
    AGENT_CHARGE_SECONDS: tuple[float, ...] | None = None
    """per-agent time to charge fully at the base; None = default fleet: fast 180 s, slow 480 s"""
    POINT_SAMPLES_MIN: int = 1
    """fewest samples at a task point"""
    POINT_SAMPLES_MAX: int = 5
    """most samples at a task point"""
    PRIORITY_DEADLINES: tuple[float, float, float] = (180.0, 600.0, 1800.0)
    """seconds from a point's appearance to its deadline, for priority 1 (high), 2, 3 (low)"""
    PRIORITY_PROBS: tuple[float, float, float] = (0.2, 0.3, 0.5)
    """probability that a new point has priority 1, 2, 3"""
    PRIORITY_WEIGHTS: tuple[float, float, float] = (3.0, 2.0, 1.0)
    """reward weight of one sample of priority 1, 2, 3"""
    INITIAL_POINTS: int = 10
    """points present at reset in 'full' ('simplified' starts with NUM_POINTS)"""
    POINT_ARRIVAL_RATE: float = 1.0
    """'full': mean new points per simulated minute (Poisson), while free slots exist"""
    REWARD_DELIVERY: float = 1.0
    """reward per priority-weighted sample delivered to the base on time"""
    REWARD_LATE_DELIVERY: float = 0.2
    """reward per priority-weighted sample delivered after its deadline"""
    REWARD_PICKUP: float = 0.1
    """small shaping reward per priority-weighted sample picked up"""
    PENALTY_MISSED: float = 0.5
    """penalty per priority-weighted sample whose point expired unserved"""
    PENALTY_ENERGY: float = 0.002
    """penalty per unit of energy used"""
    PENALTY_INVALID: float = 0.05
    """penalty for a masked or out-of-range action (handled as stay)"""
    TEAM_REWARD_WEIGHT: float = 0.5
    """share of the team's total reward added to each agent's own reward"""

    # ------------------------------------------------------------------ Learner: MADDPG + Transformer (算法设置)
    GAMMA: float = 0.95
    """discount factor"""
    N_STEP: int = 1
    """steps of reward summed before the critic bootstraps (n-step TD targets, within an episode); 1 = one-step"""
    TAU: float = 0.01
    """Polyak coefficient for target networks"""
    BATCH_SIZE: int = 512
    """transitions per gradient update"""
    CAPACITY: int = 100_000
    """replay buffer size in transitions (one transition = one step of one environment, all agents)"""
    LR_ACTOR: float = 5e-5
    """actor (and its Transformer) learning rate"""
    LR_CRITIC: float = 5e-4
    """critic learning rate"""
    UPDATE_EVERY: int = 8
    """batched environment steps between gradient updates (8: half the updates of 4; with the dispatch prior the fleet settles at the same level by episode ~400, but its early dip lasts twice the episodes: set 4 for runs under ~400 episodes, docs/training.md)"""
    UPDATES_PER_ROUND: int = 1
    """gradient updates of all agents each time an update is due"""
    WARMUP_TRANSITIONS: int = 4096
    """transitions collected with WARMUP_POLICY before learning starts"""
    GRAD_CLIP_NORM: float = 1.0
    """max gradient norm per network; 0 disables clipping"""
    HIDDEN_DIM: int = 128
    """width of actor and critic MLPs"""
    EMBED_DIM: int = 32
    """Transformer model width for point features"""
    TRANSFORMER_HEADS: int = 2
    """attention heads in the point encoder"""
    TRANSFORMER_LAYERS: int = 1
    """Transformer encoder layers over the points"""
    SHARE_PARAMETERS: bool = False
    """one actor and one critic for every vehicle, sized independently of NUM_AGENTS and NUM_POINTS (the other
    vehicles read as a set, a critic linear in the fleet), so its checkpoint also drives fleets of other sizes
    (fleetmarl eval CKPT --set NUM_AGENTS=M); False = per-vehicle networks (docs/training.md)"""
    POINT_VIEW: int = 0
    """with SHARE_PARAMETERS, each vehicle's networks read only POINT_VIEW active points, the dispatch prior's
    choice and its nearest free ones, so an update's cost per vehicle stops growing with the number of points
    (configs/fleet20.toml); 0 = every active point"""
    VEHICLE_VIEW: int = 0
    """with SHARE_PARAMETERS, each vehicle's actor reads only its VEHICLE_VIEW nearest other vehicles, so its
    cost per vehicle stops growing with the fleet (reading every other vehicle makes a step cost A^2); 0 = all"""
    TARGET_POLICY_NOISE_STD: float = 0.2
    """TD3 target policy smoothing: std of noise on target logits"""
    TARGET_POLICY_NOISE_CLIP: float = 0.5
    """TD3 target policy smoothing: clip of that noise"""
    ENABLE_DELAYED_POLICY_UPDATES: bool = True
    """TD3: update actors (and targets) only every ACTOR_UPDATE_FREQUENCY critic updates"""
    ACTOR_UPDATE_FREQUENCY: int = 2
    """critic updates per actor update when delayed updates are on"""
    ENABLE_LR_SCHEDULING: bool = True
    """decay learning rates by episode"""
    LR_DECAY_TYPE: str = "exponential"
    """'exponential', 'step' or 'cosine'"""
    LR_DECAY_RATE: float = 0.95
    """multiplier per LR_DECAY_EPISODES (exponential, step)"""
    LR_DECAY_EPISODES: int = 100
    """episodes per decay period (exponential, step); cosine spans NUM_EPISODES"""
    LR_MIN_RATIO: float = 0.1
    """learning rates never go below this fraction of their start"""
    LR_WARMUP_EPISODES: int = 0
    """linear warm-up from 0 to the start learning rate over this many episodes"""
    ENABLE_PRIORITIZED_REPLAY: bool = True
    """sample transitions by TD error (sum tree)"""
    PER_ALPHA: float = 0.6
    """how strongly priorities shape sampling (0 = uniform)"""
    PER_BETA: float = 0.4
    """importance-sampling correction at start"""
    PER_BETA_INCREMENT: float = 1e-4
    """added to beta per update, up to 1"""
    PER_EPSILON: float = 1e-6
    """added to |TD error| so no transition has zero priority"""
    NOISE_STD_START: float = 1.0
    """exploration noise std on actor logits at episode 0"""
    NOISE_STD_END: float = 0.05
    """floor of the exploration noise"""
    NOISE_DECAY: float = 0.9991
    """multiplier of the noise std per episode"""
    COORDINATED_CHOICES: bool = True
    """vehicles choose in index order and are not offered a point another vehicle heads to or chose this step"""
    DISPATCH_PRIOR_LOGIT: float = 3.0
    """logit bonus on the DISPATCH_PRIOR_POLICY dispatcher's choice, added to every actor's logits (acting,
    learning, eval and agent.act): the actor learns corrections to it instead of re-deriving it (residual
    policy learning); 0 = the actor alone. A checkpoint keeps the value it was trained with"""
    DISPATCH_PRIOR_POLICY: str = "greedy_chain"
    """whose choice gets the DISPATCH_PRIOR_LOGIT bonus: 'greedy', 'greedy_shift' (greedy that also brings cargo
    home before the shift ends) or 'greedy_chain' (greedy_shift that also leaves a point to a busy vehicle
    reaching it sooner). A checkpoint keeps the one it was trained with"""
    WARMUP_POLICY: str = "greedy_chain"
    """who acts until WARMUP_TRANSITIONS are stored: 'greedy', 'greedy_shift', 'greedy_chain' or 'ortools'
    (reference dispatchers, whose choices the actor then imitates in pre-training) or 'random'"""
    TEACHER_POLICY: str = "greedy_chain"
    """reference dispatcher, 'greedy', 'greedy_shift', 'greedy_chain' or 'ortools', asked on every step; the actor imitates its
    recorded choice where the critic rates it higher than the actor's own (Q-filtered behaviour cloning);
    'none' turns it off"""
    BC_WEIGHT: float = 1.0
    """weight of the Q-filtered imitation term in the actor loss (0 = none)"""
    BC_Q_MARGIN: float = 1.0
    """the Q-filter keeps imitating the teacher unless the critic rates the actor's own choice higher by more
    than this (in reward units; the critic's mean |TD error| is ~1.3): deviations must be confident, not
    critic noise; 0 = any higher rating. With 0 the fleet gave back part of greedy_chain's waits, which a
    one-step critic cannot value (docs/training.md)"""
    PRETRAIN_UPDATES: int = 2000
    """updates run at once when warm-up ends, in which the actor only imitates the warm-up dispatcher's stored
    choices (the critic learns as usual), so acting starts at its level; 0 = none (and none after a random warm-up)"""

    # ------------------------------------------------------------------ Training run (训练设置)
    NUM_EPISODES: int = 3000
    """total episodes to train (a resumed run continues up to this)"""
    NUM_ENVS: int = 8
    """environments stepped together; episodes run in synchronous rounds of NUM_ENVS"""
    RANDOM_SEED: int = 123
    """seed for environments, networks and sampling"""
    DEVICE: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda'"""
    NUM_THREADS: int = 0
    """torch CPU threads; 0 = torch's default"""
    MIXED_PRECISION: str = "auto"
    """'auto' (bf16 autocast where the CPU/GPU multiplies bf16 natively), 'bf16' or 'fp32'"""

    # ------------------------------------------------------------------ Model Checkpointing Settings (模型检查点设置)
    ENABLE_MODEL_CHECKPOINTING: bool = True
    """save checkpoints during training"""
    MODEL_SAVE_INTERVAL: int = 200
    """episodes between checkpoints (a multiple of NUM_ENVS)"""
    CHECKPOINTS_DIR: str = "checkpoints"
    """folder that holds checkpoint_ep{episode}_{YYYYmmdd_HHMMSS} folders, or a URL such as s3://bucket/prefix (pip install -e ".[s3]"; AWS_* variables)"""
    SAVE_REPLAY_BUFFER: bool = True
    """store the replay buffer's filled part with each checkpoint, for exact resume"""
    KEEP_LAST_CHECKPOINTS: int = 0
    """keep only the newest K checkpoints of this run line (0 = keep all)"""
    KEEP_BEST_CHECKPOINTS: int = 0
    """also keep the K best by evaluation (or recent mean) reward (0 = off)"""
    ASYNC_CHECKPOINTING: bool = True
    """write checkpoint files in a background thread so training does not stall"""

    # ------------------------------------------------------------------ Logging and evaluation (日志与评估)
    LOG_DIR: str = "runs"
    """TensorBoard root; each run writes to LOG_DIR/<RUN_NAME>"""
    RUN_NAME: str = ""
    """TensorBoard run name; empty = maddpg_<env>_seed<seed>_<timestamp>"""
    ENABLE_TENSORBOARD: bool = True
    """write TensorBoard event files"""
    PROGRESS_BAR: bool = True
    """show a progress bar with ETA"""
    EVAL_INTERVAL: int = 200
    """episodes between noise-free evaluations during training (0 = off)"""
    EVAL_EPISODES: int = 8
    """episodes per evaluation"""
    ORTOOLS_SOLUTION_LIMIT: int = 100
    """'ortools' reference policy: most improving solutions per re-plan (a count, not a clock, so runs repeat)"""
    ORTOOLS_TIME_LIMIT_MS: int = 1000
    """'ortools' reference policy: safety cap in ms per re-plan (~2 ms typical); results repeat while it never binds"""

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ per-agent resolution
    def fleet(self) -> dict[str, tuple[float, ...]]:
        """Per-agent vehicle parameters with ``None`` keys resolved to the default fleet.

        Why a default pattern instead of fixed lists: ``--set NUM_AGENTS=3`` should just work,
        with the same fast/slow mix as the user's five-vehicle fleet.
        """
        n_fast = max(1, round(self.NUM_AGENTS * 3 / 5))
        fast = [i < n_fast for i in range(self.NUM_AGENTS)]

        def pick(value: tuple | None, fast_value: float, slow_value: float) -> tuple[float, ...]:
            if value is not None:
                return tuple(value)
            return tuple(fast_value if f else slow_value for f in fast)

        return {
            "speeds": pick(self.AGENT_SPEEDS, 30.0, 15.0),
            "capacities": pick(self.AGENT_CAPACITIES, 8, 24),
            "energy_capacity": pick(self.AGENT_ENERGY_CAPACITY, 100.0, 100.0),
            "energy_per_km": pick(self.AGENT_ENERGY_PER_KM, 2.0, 3.5),
            "charge_seconds": pick(self.AGENT_CHARGE_SECONDS, 180.0, 480.0),
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples become lists) so it survives ``torch.load(weights_only=True)``."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "config") -> Config:
        """Build from a mapping of UPPERCASE keys; unknown keys are an error that suggests close names."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        values = drop_removed_keys(values, source)
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown config key {key!r} in {source}{_suggest(key, known)}")
            kwargs[key] = _coerce(key, value, getattr(DEFAULT, key) if DEFAULT is not None else None)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# Keys that define the environment an agent was trained on (every field declared before GAMMA);
# eval may override only these on a checkpoint.
_FIELD_ORDER = list(Config.__dataclass_fields__)
ENV_KEYS = frozenset(_FIELD_ORDER[: _FIELD_ORDER.index("GAMMA")])
# Keys that fix tensor shapes: a checkpoint is only loadable into agents built with the same values.
SHAPE_KEYS = ("NUM_AGENTS", "NUM_POINTS", "HIDDEN_DIM", "EMBED_DIM", "TRANSFORMER_HEADS", "TRANSFORMER_LAYERS")


def shape_difference(saved: Mapping[str, Any] | Config, wanted: Mapping[str, Any] | Config) -> tuple[str, Any, Any] | None:
    """The first key of SHAPE_KEYS whose value differs, as (key, saved, wanted); keys either side lacks are
    skipped. The one rule for "do these weights fit this config" (loading, resuming, evaluating)."""
    def value(source: Mapping[str, Any] | Config, key: str) -> Any:
        return source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)

    for key in SHAPE_KEYS:
        a, b = value(saved, key), value(wanted, key)
        if a is not None and b is not None and a != b:
            return key, a, b
    return None

DEFAULT: Config | None = None  # set at the end of the module, once validation is defined


def field_docs() -> dict[str, str]:
    """Docstring of each field, read from this module's source (the attribute-docstring convention)."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    docs: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Config":
            body = node.body
            for stmt, nxt in zip(body, body[1:], strict=False):
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):
                    docs[stmt.target.id] = str(nxt.value.value)
    return docs


# ---------------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the file (``.py`` of UPPERCASE constants or ``.toml``), then each ``KEY=VALUE``."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        values.update(read_config_file(path))
        source = str(path)
    config = Config.from_dict(values, source=source)
    return apply_overrides(config, overrides)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """UPPERCASE names of a Python file, or the top-level keys of a TOML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing .py or .toml file to --config")
    if path.suffix == ".toml":
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        return {k: v for k, v in data.items()}
    if path.suffix != ".py":
        raise ConfigError(f"config file {path} must end in .py or .toml")
    try:
        namespace = runpy.run_path(str(path), run_name="fleetmarl_config")
    except Exception as exc:  # the user's own file; report it in one line
        raise ConfigError(f"config file {path} failed to run: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """Apply ``KEY=VALUE`` strings, each typed from the key's default."""
    changes: dict[str, Any] = {}
    known = {f.name for f in fields(Config)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"cannot parse --set {item!r}; write it as KEY=VALUE, e.g. --set NUM_EPISODES=400")
        if key in REMOVED_KEYS:
            drop_removed_keys({key: raw.strip()}, "--set")
            continue
        if key not in known:
            raise ConfigError(f"unknown config key {key!r} in --set{_suggest(key, known)}")
        changes[key] = parse_value(key, raw.strip())
    return config.replace(**changes) if changes else config


def parse_value(key: str, raw: str) -> Any:
    """Type a command-line string from the key's default value."""
    default = getattr(DEFAULT, key)
    kind = _kind(key)
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(raw)
        if kind is dict:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if kind is tuple:
            if raw.lower() in ("none", ""):
                if default is None:
                    return None
                raise ValueError
            text = raw if raw.startswith(("(", "[")) else f"({raw},)"
            value = ast.literal_eval(text)
            return tuple(value)
        return raw
    except (ValueError, SyntaxError):
        name = {bool: "true/false", int: "an integer", float: "a number", tuple: "a comma-separated list",
                dict: 'a JSON object, e.g. {"N": 3}'}.get(kind, "text")
        raise ConfigError(f"cannot parse --set {key}={raw!r}: expected {name}") from None


# ---------------------------------------------------------------------- validation
def _validate(c: Config) -> None:
    def fail(key: str, problem: str) -> None:
        raise ConfigError(f"config key {key} {problem}")

    for f in fields(c):
        value = getattr(c, f.name)
        kind = _kind(f.name)
        if kind is bool and not isinstance(value, bool):
            fail(f.name, f"must be true or false, got {value!r}")
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            fail(f.name, f"must be an integer, got {value!r}")
        if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            fail(f.name, f"must be a finite number, got {value!r}")
        if kind is str and not isinstance(value, str):
            fail(f.name, f"must be text, got {value!r}")
        if kind is dict and (not isinstance(value, dict) or not all(isinstance(k, str) for k in value)):
            fail(f.name, f"must be a mapping of names to values (a JSON object), got {value!r}")

    if c.ENVIRONMENT_TYPE not in ENVIRONMENT_TYPES and not _MODULE_PATH.match(c.ENVIRONMENT_TYPE):
        fail("ENVIRONMENT_TYPE", f"must be {' or '.join(ENVIRONMENT_TYPES)} or the import path of a PettingZoo "
             f"parallel-env module such as mpe2.simple_spread_v3, got {c.ENVIRONMENT_TYPE!r}")
    try:
        json.dumps(c.ENV_KWARGS)
    except (TypeError, ValueError):
        fail("ENV_KWARGS", f"must hold only JSON values (numbers, text, true/false, lists, objects), got {c.ENV_KWARGS!r}")
    choices = {"LR_DECAY_TYPE": LR_DECAY_TYPES, "DEVICE": DEVICES,
               "WARMUP_POLICY": WARMUP_POLICIES, "TEACHER_POLICY": TEACHER_POLICIES,
               "DISPATCH_PRIOR_POLICY": PURE_DISPATCHERS, "MIXED_PRECISION": PRECISIONS}
    for key, allowed in choices.items():
        if getattr(c, key) not in allowed:
            fail(key, f"must be one of {', '.join(allowed)}, got {getattr(c, key)!r}")
    for key in ("NUM_AGENTS", "NUM_POINTS", "MAX_NUM_STEPS", "BATCH_SIZE", "CAPACITY", "UPDATE_EVERY", "N_STEP",
                "UPDATES_PER_ROUND", "HIDDEN_DIM", "EMBED_DIM", "TRANSFORMER_HEADS", "TRANSFORMER_LAYERS",
                "ACTOR_UPDATE_FREQUENCY", "LR_DECAY_EPISODES", "NUM_EPISODES", "NUM_ENVS", "MODEL_SAVE_INTERVAL",
                "EVAL_EPISODES", "POINT_SAMPLES_MIN", "ORTOOLS_SOLUTION_LIMIT", "ORTOOLS_TIME_LIMIT_MS"):
        if getattr(c, key) < 1:
            fail(key, f"must be at least 1, got {getattr(c, key)}")
    for key in ("STEP_SECONDS", "MAP_SIZE", "LR_ACTOR", "LR_CRITIC", "TAU", "NOISE_DECAY", "PER_EPSILON"):
        if getattr(c, key) <= 0:
            fail(key, f"must be greater than 0, got {getattr(c, key)}")
    for key in ("WARMUP_TRANSITIONS", "GRAD_CLIP_NORM", "LR_WARMUP_EPISODES", "KEEP_LAST_CHECKPOINTS",
                "KEEP_BEST_CHECKPOINTS", "EVAL_INTERVAL", "NUM_THREADS", "BC_WEIGHT", "BC_Q_MARGIN", "DISPATCH_PRIOR_LOGIT",
                "PRETRAIN_UPDATES", "INITIAL_POINTS", "POINT_ARRIVAL_RATE",
                "NOISE_STD_START", "NOISE_STD_END", "TARGET_POLICY_NOISE_STD", "TARGET_POLICY_NOISE_CLIP",
                "PER_ALPHA", "PER_BETA", "PER_BETA_INCREMENT", "POINT_VIEW", "VEHICLE_VIEW"):
        if getattr(c, key) < 0:
            fail(key, f"must not be negative, got {getattr(c, key)}")
    for key in ("GAMMA", "TAU", "NOISE_DECAY", "LR_MIN_RATIO", "PER_BETA"):
        if not 0 <= getattr(c, key) <= 1:
            fail(key, f"must be between 0 and 1, got {getattr(c, key)}")
    if c.POINT_SAMPLES_MAX < c.POINT_SAMPLES_MIN:
        fail("POINT_SAMPLES_MAX", f"({c.POINT_SAMPLES_MAX}) must be at least POINT_SAMPLES_MIN ({c.POINT_SAMPLES_MIN})")
    # 'simplified' starts with every point and has no arrivals: its unused keys are not checked (issue 11)
    if c.ENVIRONMENT_TYPE == "full" and c.INITIAL_POINTS > c.NUM_POINTS:
        fail("INITIAL_POINTS", f"({c.INITIAL_POINTS}) must not exceed NUM_POINTS ({c.NUM_POINTS})")
    if c.BATCH_SIZE > c.CAPACITY:
        fail("BATCH_SIZE", f"({c.BATCH_SIZE}) must not exceed CAPACITY ({c.CAPACITY})")
    if c.POINT_VIEW and not c.SHARE_PARAMETERS:
        fail("POINT_VIEW", f"({c.POINT_VIEW}) needs SHARE_PARAMETERS=True (per-vehicle networks read every point); "
             "set SHARE_PARAMETERS=True or POINT_VIEW=0")
    if c.VEHICLE_VIEW and not c.SHARE_PARAMETERS:
        fail("VEHICLE_VIEW", f"({c.VEHICLE_VIEW}) needs SHARE_PARAMETERS=True (per-vehicle networks read every "
             "vehicle); set SHARE_PARAMETERS=True or VEHICLE_VIEW=0")
    if c.EMBED_DIM % c.TRANSFORMER_HEADS:
        fail("EMBED_DIM", f"({c.EMBED_DIM}) must be divisible by TRANSFORMER_HEADS ({c.TRANSFORMER_HEADS})")
    for key in ("PRIORITY_DEADLINES", "PRIORITY_PROBS", "PRIORITY_WEIGHTS"):
        value = getattr(c, key)
        if not isinstance(value, tuple) or len(value) != 3 or any(v < 0 for v in value):
            fail(key, f"must be three non-negative numbers (priority 1, 2, 3), got {value!r}")
    if abs(sum(c.PRIORITY_PROBS) - 1.0) > 1e-6:
        fail("PRIORITY_PROBS", f"must sum to 1, got {c.PRIORITY_PROBS!r}")
    if min(c.PRIORITY_DEADLINES) <= 0:
        fail("PRIORITY_DEADLINES", f"must all be greater than 0, got {c.PRIORITY_DEADLINES!r}")
    for key in ("AGENT_SPEEDS", "AGENT_CAPACITIES", "AGENT_ENERGY_CAPACITY", "AGENT_ENERGY_PER_KM", "AGENT_CHARGE_SECONDS"):
        value = getattr(c, key)
        if value is None:
            continue
        if not isinstance(value, tuple) or len(value) != c.NUM_AGENTS:
            fail(key, f"must list one value per agent (NUM_AGENTS={c.NUM_AGENTS}), got {value!r}; or None for the default fleet")
        if key == "AGENT_ENERGY_PER_KM" or key == "AGENT_CHARGE_SECONDS":
            bad = any(v < 0 for v in value)
        else:
            bad = any(v <= 0 for v in value)
        if bad:
            fail(key, f"must be positive for every agent, got {value!r}")
    if c.NUM_EPISODES % c.NUM_ENVS:
        fail("NUM_EPISODES", f"({c.NUM_EPISODES}) must be a multiple of NUM_ENVS ({c.NUM_ENVS}): episodes run in rounds of NUM_ENVS")
    if c.MODEL_SAVE_INTERVAL % c.NUM_ENVS:
        fail("MODEL_SAVE_INTERVAL", f"({c.MODEL_SAVE_INTERVAL}) must be a multiple of NUM_ENVS ({c.NUM_ENVS}): "
             "checkpoints are taken between rounds of NUM_ENVS episodes")
    if c.EVAL_INTERVAL % c.NUM_ENVS:
        fail("EVAL_INTERVAL", f"({c.EVAL_INTERVAL}) must be a multiple of NUM_ENVS ({c.NUM_ENVS})")
    if not c.CHECKPOINTS_DIR:
        fail("CHECKPOINTS_DIR", "must not be empty")


# ---------------------------------------------------------------------- helpers
def _kind(key: str) -> type:
    default = getattr(DEFAULT, key) if DEFAULT is not None else None
    annotation = str(Config.__dataclass_fields__[key].type)
    if annotation.startswith("tuple"):
        return tuple
    if annotation.startswith("dict"):
        return dict
    if isinstance(default, bool) or annotation == "bool":
        return bool
    if annotation == "int":
        return int
    if annotation == "float":
        return float
    return str


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Lists from TOML or training_state become tuples; ints are accepted where floats are expected."""
    kind = _kind(key)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def is_fleet_environment(config: Config) -> bool:
    """True for the sampling fleet ('full', 'simplified'); False for a PettingZoo module path."""
    return config.ENVIRONMENT_TYPE in ENVIRONMENT_TYPES


def drop_removed_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` without the keys of :data:`REMOVED_KEYS`, warning once (one line) if it named any.

    Why a warning, not an error: every checkpoint written before the removal stores those keys in its
    config, and it must still resume and evaluate; a value other than the remaining behaviour is named,
    because that run will now act as if it were unset."""
    named = [key for key in values if key in REMOVED_KEYS]
    if not named:
        return dict(values)
    changed = [f"{key}={values[key]}" for key in named if not _same_value(values[key], REMOVED_KEYS[key])]
    note = f"; {', '.join(changed)} no longer applies" if changed else " (at the values that behave as now)"
    keys = "key" if len(named) == 1 else "keys"
    warnings.warn(f"ignoring removed config {keys} {', '.join(named)} in {source}{note}; see docs/experiments.md",
                  FleetmarlWarning, stacklevel=3)
    return {k: v for k, v in values.items() if k not in REMOVED_KEYS}


def _same_value(value: Any, reference: Any) -> bool:
    """Whether ``value`` (typed, or text from --set) equals ``reference``, a bool or a number."""
    if isinstance(reference, bool):
        return str(value).strip().lower() in (("1", "true", "yes", "on") if reference else ("0", "false", "no", "off"))
    try:
        return float(value) == float(reference)
    except (TypeError, ValueError):
        return False


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key.upper(), list(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else "; see config.py for the known keys"


DEFAULT = Config()

SMOKE_SETTINGS: Mapping[str, Any] = MappingProxyType(dict(
    NUM_AGENTS=2, NUM_POINTS=5, INITIAL_POINTS=3, MAX_NUM_STEPS=12, NUM_ENVS=2, NUM_EPISODES=8,
    BATCH_SIZE=16, CAPACITY=512, WARMUP_TRANSITIONS=24, UPDATE_EVERY=2, HIDDEN_DIM=16, EMBED_DIM=8,
    TRANSFORMER_HEADS=2, MODEL_SAVE_INTERVAL=4, EVAL_INTERVAL=0, PROGRESS_BAR=False,
    ENABLE_TENSORBOARD=False, NUM_THREADS=1, MAP_SIZE=1500.0,
    PRETRAIN_UPDATES=4,  # the default 2,000 imitation updates took ~40 of such a run's ~42 seconds
))
"""Overrides for a run of a second or two that learns nothing but goes through every part of training
(warm-up, pre-training, updates, checkpoints every 4 episodes): what the tests and ``benchmarks/faults.py``
train, so a change to the machinery is exercised in both the same way."""
