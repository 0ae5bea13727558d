"""The training loop: act, step, store, update, log, checkpoint (design §3-§6).

Episodes run in synchronous *rounds*: every episode lasts exactly ``MAX_NUM_STEPS`` steps, so the
``NUM_ENVS`` batched environments start and end together, and one round completes ``NUM_ENVS``
episodes. Checkpoints are taken only between rounds, when no environment is mid-episode; that is what
makes ``--resume`` exact without saving the environments' inner state. Hence ``MODEL_SAVE_INTERVAL``
and ``NUM_EPISODES`` must be multiples of ``NUM_ENVS`` (checked by :class:`~fleetmarl.config.Config`).
A PettingZoo environment (``ENVIRONMENT_TYPE`` an import path) keeps the same rule with episodes of any
length: a round lasts until every copy's episode is over, copies that finish early wait, and only the
copies that stepped store transitions (:mod:`fleetmarl.envs.pettingzoo_env`).

Everything that decides the future of a run lives in :class:`RunState` plus four random generators
(torch's global one, the trainer's NumPy one, the environment's, the replay buffer's); all of them go
into ``training_state.pth``.
"""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from fleetmarl import checkpoint as ckpt
from fleetmarl.config import Config, drop_removed_keys, is_fleet_environment
from fleetmarl.device import resolve_device
from fleetmarl.envs import environment_dims, make_batched_env, with_environment_agents
from fleetmarl.envs.policies import BatchPolicy, random_policy, reference_policy
from fleetmarl.errors import CheckpointError, FleetmarlError
from fleetmarl.eval.evaluation import default_eval_seed, evaluate_algorithm
from fleetmarl.learner.buffer import ReplayBuffer
from fleetmarl.learner.factory import action_dim, build_algorithm, build_team
from fleetmarl.learner.schedules import noise_std
from fleetmarl.logging import TAG_EPISODE_REWARD, RunLogger


@dataclass
class RunState:
    """Counters and logs of one run line; with the RNG states they make resume exact."""

    episode: int = 0
    """episodes completed (always a multiple of NUM_ENVS)"""
    env_steps: int = 0
    """batched environment steps taken (each is NUM_ENVS transitions)"""
    updates: int = 0
    """gradient updates of all agents"""
    episode_rewards_log: list[float] = field(default_factory=list)
    """per episode: reward summed over steps and agents"""
    metrics_log: dict[str, list[float]] = field(default_factory=dict)
    """per episode domain metrics (on-time delivery rate, missed points, ...)"""
    eval_log: list[dict[str, float]] = field(default_factory=list)
    """one entry per evaluation: episode plus mean metrics"""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """identifies this run line; retention prunes only checkpoints of the same line"""
    parent: str | None = None
    """checkpoint this line was resumed from, if any"""

    def recent_reward(self) -> float:
        """The guide's 近期平均奖励, over the checkpoint package's window (0.0 before the first episode)."""
        value = ckpt.recent_average_reward(self.episode_rewards_log)
        return 0.0 if value is None else value


@dataclass
class TrainResult:
    """What :func:`train` hands back: where things went and how it ended."""

    state: RunState
    config: Config
    last_checkpoint: Path | None
    log_dir: Path | None
    stopped_early: bool
    agents: list = field(repr=False, default_factory=list)


CheckpointHook = Callable[[Path, dict[str, float]], None]
"""Called in the training loop with each committed checkpoint and its metrics (how a sweep reports to Tune)."""


def train(config: Config, resume: str | Path | None = None, *, log: Callable[[str], None] | None = None,
          on_checkpoint: CheckpointHook | None = None) -> TrainResult:
    """Train from scratch, or continue a run from ``resume`` ('latest' or a checkpoint path)."""
    return Trainer(config, resume=resume, log=log, on_checkpoint=on_checkpoint).run()


class Trainer:
    """Holds the pieces of one run; :meth:`run` is the loop."""

    def __init__(self, config: Config, resume: str | Path | None = None, log: Callable[[str], None] | None = None,
                 on_checkpoint: CheckpointHook | None = None):
        config = with_environment_agents(config)  # a PettingZoo env decides its number of agents
        self.config = config
        self.on_checkpoint = on_checkpoint
        self.log = log or (lambda message: tqdm.write(message, file=sys.stdout))
        if config.NUM_THREADS:
            torch.set_num_threads(config.NUM_THREADS)
        self.device = resolve_device(config.DEVICE)
        self.fleet = is_fleet_environment(config)
        self.dims = environment_dims(config)

        torch.manual_seed(config.RANDOM_SEED)
        self.rng = np.random.default_rng(config.RANDOM_SEED)
        self.agents = build_team(config, self.device)
        # the reference dispatchers exist only for the fleet: a PettingZoo env warms up at random, no teacher
        self.warmup_policy = config.WARMUP_POLICY if self.fleet else "random"
        self.algo = build_algorithm(self.agents, config)
        flat = {} if self.fleet else {"layout": "plain", "per_agent_dones": True}
        self.buffer = ReplayBuffer(config, self.dims, seed=config.RANDOM_SEED + 1, action_dim=action_dim(config), **flat)
        self.env = make_batched_env(config, num_envs=config.NUM_ENVS)
        self.state = RunState()
        self.remote = ckpt.RemoteCheckpoints(config.CHECKPOINTS_DIR) if ckpt.is_url(config.CHECKPOINTS_DIR) else None
        """object storage behind a URL CHECKPOINTS_DIR; saves are written to its local mirror, then uploaded"""
        self.checkpoints_dir = self.remote.mirror if self.remote is not None else Path(config.CHECKPOINTS_DIR)
        self.previous_upload: str | None = None
        """name of the run's newest uploaded checkpoint: the next upload copies its replay chunks in the store"""
        self.fresh_env = True
        self._dispatcher: BatchPolicy | None = None  # warm-up actor, built on use
        self.teacher = self._build_teacher()
        """asked on every step's observation; the buffer keeps its choices for the Q-filtered imitation"""
        self.previous_checkpoint: Path | None = None
        """the run's newest committed checkpoint: the next save hard-links its replay chunks"""
        self.lock = ckpt.TrainingLock(self.checkpoints_dir)
        self._saved_episode: int | None = None
        """episode of the run's newest checkpoint on disk (after a resume that continues its line, the resumed
        one: saving that episode again would add nothing)"""

        if config.ENABLE_MODEL_CHECKPOINTING:
            ckpt.ensure_writable(self.checkpoints_dir)
            self.lock.acquire(warn=self.log)  # one trainer per folder; exits 2 naming the holder
        try:
            if config.ENABLE_MODEL_CHECKPOINTING or resume is not None:
                ckpt.cleanup_incomplete(self.checkpoints_dir)
            if config.ENABLE_MODEL_CHECKPOINTING and self.remote is not None:
                for leftover in self.remote.cleanup_incomplete():
                    self.log(f"🗑 removed unfinished upload {leftover}")
            if resume is not None:
                self._resume(resume)
            self.disk_estimate = self._warn_disk() if config.ENABLE_MODEL_CHECKPOINTING else None
        except BaseException:
            self.lock.release()
            raise

        self.writer = ckpt.CheckpointWriter(async_=config.ASYNC_CHECKPOINTING)
        self.log_dir = self._log_dir()
        self.logger = RunLogger(self.log_dir, purge_step=self.state.episode or None)
        self.last_checkpoint: Path | None = None
        self._stop_requested = False
        self._in_flight: tuple[int, float] | None = None  # (episode, loop stall in s) of the save being written
        self._save_stats: dict[Path, dict[str, Any]] = {}
        self._final_failure: tuple[int, BaseException] | None = None  # the run's last save, if it failed

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        c, s = self.config, self.state
        self._announce()
        bar = tqdm(total=c.NUM_EPISODES, initial=s.episode, unit="ep", disable=not c.PROGRESS_BAR,
                   dynamic_ncols=True, file=sys.stderr)
        previous_handlers = self._install_signal_handlers()
        if s.episode >= c.NUM_EPISODES:
            self.log(f"nothing to train: the run is at episode {s.episode} and NUM_EPISODES is {c.NUM_EPISODES}; "
                     f"to continue it, resume with a larger one, e.g. --set NUM_EPISODES={s.episode + c.MODEL_SAVE_INTERVAL}")
        try:
            while s.episode < c.NUM_EPISODES and not self._stop_requested:
                round_rewards, infos, losses = self._run_round()
                self._record_round(round_rewards, infos, losses, bar)
                if c.EVAL_INTERVAL and s.episode % c.EVAL_INTERVAL == 0:
                    self._evaluate()
                if c.ENABLE_MODEL_CHECKPOINTING and (s.episode % c.MODEL_SAVE_INTERVAL == 0 or self._stop_requested):
                    self._save_checkpoint()
            if c.ENABLE_MODEL_CHECKPOINTING and self._saved_episode != s.episode:
                self._save_checkpoint()  # the final checkpoint (guide: nothing is lost at the end)
            self._drain_writer()
        finally:
            self._restore_signal_handlers(previous_handlers)
            bar.close()
            self.writer.close()
            self.logger.close()
            self.lock.release()
        if self._final_failure is not None:
            raise self._final_save_error(*self._final_failure)
        if self._stop_requested:
            self.log(f"⏹ 训练已停止 (stopped at episode {s.episode}); resume with: python main.py --resume latest")
        return TrainResult(s, c, self.last_checkpoint, self.log_dir, self._stop_requested, self.agents)

    def _run_round(self) -> tuple[np.ndarray, dict[str, Any], dict[str, torch.Tensor]]:
        """One synchronous round: NUM_ENVS episodes of (at most) MAX_NUM_STEPS steps, with updates."""
        c, s = self.config, self.state
        noise = noise_std(c, s.episode)
        self.algo.set_episode(s.episode)
        obs = self.env.reset(seed=c.RANDOM_SEED if self.fresh_env else None)
        self.fresh_env = False
        round_rewards = np.zeros(c.NUM_ENVS, dtype=np.float64)
        losses: dict[str, torch.Tensor] = {}
        infos: dict[str, Any] = {}
        ready = max(c.WARMUP_TRANSITIONS, c.BATCH_SIZE)
        for _ in range(c.MAX_NUM_STEPS):
            warming_up = len(self.buffer) < c.WARMUP_TRANSITIONS
            if warming_up:
                actions = self._warmup_actions(obs)
            else:
                actions = self.algo.act(self._to_torch(obs), noise).cpu().numpy()
            taught = self._teacher_choices(obs, actions, warming_up)
            next_obs, rewards, terminated, truncated, infos = self.env.step(actions)
            dones = terminated | truncated
            self._store(obs, actions, rewards, infos.get("final_obs", next_obs), terminated, dones, infos, taught)
            round_rewards += rewards.sum(axis=1)
            obs = next_obs
            s.env_steps += 1
            if len(self.buffer) >= ready and self.algo.updates == 0 and self.warmup_policy != "random":
                for _ in range(c.PRETRAIN_UPDATES):  # once, when warm-up ends; resume never repeats it
                    losses = self._update(imitate=True)
            if len(self.buffer) >= ready and s.env_steps % c.UPDATE_EVERY == 0:
                for _ in range(c.UPDATES_PER_ROUND):
                    losses = self._update()
            if infos.get("round_over"):
                break
        if not infos.get("round_over", dones.all()):  # a round must end between episodes, or resume is not exact
            raise FleetmarlError("environments did not finish their episodes together; this is a bug in the env")
        return round_rewards, infos, losses

    def _store(self, obs: dict[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
               next_obs: dict[str, np.ndarray], terminated: np.ndarray, dones: np.ndarray,
               infos: dict[str, Any], taught: np.ndarray | None = None) -> None:
        """The fleet stores every copy and ends bootstrapping at its fixed episode end, as always; a PettingZoo
        batch stores only the copies that stepped, with per-agent terminations (truncation bootstraps)."""
        stepped = infos.get("stepped")
        if stepped is None:
            self.buffer.add(obs, actions, rewards, next_obs, dones, taught)
            return
        rows = np.flatnonzero(stepped)
        self.buffer.add({k: v[rows] for k, v in obs.items()}, actions[rows], rewards[rows],
                        {k: v[rows] for k, v in next_obs.items()}, terminated[rows])

    def _warmup_actions(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Before learning starts: a reference dispatcher's choices (useful behaviour to imitate and learn
        from), or uniform random ones from the trainer's generator with WARMUP_POLICY='random'."""
        if not self.fleet:
            return self.env.random_actions(obs, self.rng)
        if self.config.WARMUP_POLICY == "random":
            return random_policy(obs, self.rng)
        if self._dispatcher is None:  # OR-Tools keeps plans per row and notices new episodes itself
            self._dispatcher = reference_policy(self.config.WARMUP_POLICY, self.config.RANDOM_SEED, self.config)
        return self._dispatcher(obs)

    def _build_teacher(self) -> BatchPolicy | None:
        """The fleet's TEACHER_POLICY; the warm-up dispatcher itself when it is the same policy, so a
        stateful one (OR-Tools' plans) is asked once per step and keeps one memory."""
        c = self.config
        if not self.fleet or c.TEACHER_POLICY == "none":
            return None
        if c.TEACHER_POLICY == c.WARMUP_POLICY:
            self._dispatcher = reference_policy(c.WARMUP_POLICY, c.RANDOM_SEED, c)
            return self._dispatcher
        return reference_policy(c.TEACHER_POLICY, c.RANDOM_SEED, c)

    def _teacher_choices(self, obs: dict[str, np.ndarray], actions: np.ndarray, warming_up: bool) -> np.ndarray | None:
        """The teacher's choices on ``obs`` (B, A), asked on every step so a planning teacher follows the
        episode; during a warm-up by that same teacher they are the actions just taken."""
        if self.teacher is None:
            return None
        if warming_up and self.teacher is self._dispatcher:
            return actions
        return self.teacher(obs)

    def _update(self, *, imitate: bool = False) -> dict[str, torch.Tensor]:
        batch = self.buffer.sample(self.config.BATCH_SIZE, self.device)
        out = self.algo.update(batch, imitate=imitate)
        if "td_errors" in out:
            self.buffer.update_priorities(batch.indices, out.pop("td_errors"))
        self.state.updates += 1
        return out

    def _to_torch(self, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in obs.items()}

    # ------------------------------------------------------------------ bookkeeping
    def _record_round(self, round_rewards: np.ndarray, infos: dict[str, Any], losses: dict[str, torch.Tensor],
                      bar: tqdm) -> None:
        c, s = self.config, self.state
        first = s.episode
        episode_metrics = {k: np.asarray(v, dtype=np.float64) for k, v in infos.get("episode", {}).items()}
        for b in range(c.NUM_ENVS):
            episode = first + b + 1
            s.episode_rewards_log.append(float(round_rewards[b]))
            scalars = {TAG_EPISODE_REWARD: round_rewards[b]}
            for name, values in episode_metrics.items():
                s.metrics_log.setdefault(name, []).append(float(values[b]))
                scalars[f"metrics/{name}"] = values[b]
            self.logger.scalars(scalars, episode)
        s.episode += c.NUM_ENVS
        lrs = {f"lr/agent_{i}_actor": a.actor_optimizer.param_groups[0]["lr"] for i, a in enumerate(self.agents)}
        lrs.update({f"lr/agent_{i}_critic": a.critic_optimizer.param_groups[0]["lr"] for i, a in enumerate(self.agents)})
        self.logger.scalars({**{f"loss/{k}": v for k, v in losses.items()}, **lrs,
                             "train/noise_std": noise_std(c, s.episode - c.NUM_ENVS),
                             "train/buffer_size": len(self.buffer), "train/updates": s.updates}, s.episode)
        bar.update(c.NUM_ENVS)
        shown = {"reward": f"{np.mean(round_rewards):.1f}"}
        if "on_time_rate" in s.metrics_log:  # the fleet's headline metric; a PettingZoo env shows return per agent
            shown["on_time"] = f"{np.mean(s.metrics_log['on_time_rate'][-c.NUM_ENVS:]):.2f}"
        else:
            shown["per_agent"] = f"{np.mean(round_rewards) / len(self.agents):.2f}"
        bar.set_postfix(**shown, noise=f"{noise_std(c, s.episode):.3f}", refresh=False)

    def _evaluate(self) -> None:
        c, s = self.config, self.state
        with torch.random.fork_rng(devices=[]):  # evaluation must not shift the training's random stream
            summary = evaluate_algorithm(self.algo, c, episodes=c.EVAL_EPISODES, seed=default_eval_seed(c),
                                         device=self.device)
        entry = {"episode": float(s.episode), **{k: v["mean"] for k, v in summary.items()}}
        s.eval_log.append(entry)
        self.logger.scalars({f"eval/{k}": v for k, v in entry.items() if k != "episode"}, s.episode)

    # ------------------------------------------------------------------ checkpoints
    def training_state(self) -> dict[str, Any]:
        """The guide's ``training_state.pth`` keys, plus everything exact resume needs."""
        c, s = self.config, self.state
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": self.rng.bit_generator.state,
            "env": self.env.get_rng_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "episode": s.episode,
            "noise_std": noise_std(c, s.episode),
            "episode_rewards_log": list(s.episode_rewards_log),
            "config": c.to_dict(),
            "total_episodes_planned": c.NUM_EPISODES,
            # training_progress, checkpoint_timestamp, environment_type, random_seed: filled by
            # ckpt.complete_training_state, the one place that derives them
            "recent_mean_reward": s.recent_reward(),
            "env_steps": s.env_steps,
            "updates": s.updates,
            "metrics_log": {k: list(v) for k, v in s.metrics_log.items()},
            "eval_log": [dict(e) for e in s.eval_log],
            "run_id": s.run_id,
            "parent": s.parent,
            "algorithm": self.algo.state_dict(),
            "rng": rng,
            "replay_buffer_saved": c.SAVE_REPLAY_BUFFER,
        }

    def _save_checkpoint(self) -> None:
        """Snapshot in memory now; write, commit and prune in the background (at most one in flight).

        The loop pays for the agents' and training state's copies, the replay buffer's small head
        (its sealed chunks are read by the writer; ``add`` copies one first should the ring reach it)
        and any wait for the previous save: that time is logged as ``checkpoint/stall_ms``.
        """
        c, s = self.config, self.state
        started = time.perf_counter()
        training_state = self.training_state()
        eval_reward = s.eval_log[-1]["reward"] if s.eval_log and s.eval_log[-1]["episode"] == s.episode else None
        snapshot = ckpt.snapshot({
            "agents": [a.checkpoint_state() for a in self.agents],
            "training_state": training_state,
        })
        replay = self.buffer.checkpoint_state() if c.SAVE_REPLAY_BUFFER else None
        episode = s.episode

        def job() -> Path:
            stats: dict[str, Any] = {}
            try:
                path = ckpt.save_model_checkpoint(
                    snapshot["agents"], snapshot["training_state"], self.checkpoints_dir,
                    replay_buffer_state=replay, run_id=s.run_id, parent=s.parent,
                    recent_reward=training_state["recent_mean_reward"], eval_reward=eval_reward,
                    previous=self.previous_checkpoint, stats=stats,
                )
            finally:
                if replay is not None:
                    replay.release()
            self.previous_checkpoint = path
            self._save_stats[path] = stats
            for line in ckpt.saved_message(path, len(snapshot["agents"])):
                self.log(line)
            if self.remote is not None:
                self._upload(path)
            elif c.KEEP_LAST_CHECKPOINTS or c.KEEP_BEST_CHECKPOINTS:
                removed = ckpt.prune_checkpoints(self.checkpoints_dir, keep_last=c.KEEP_LAST_CHECKPOINTS,
                                                 keep_best=c.KEEP_BEST_CHECKPOINTS, run_id=s.run_id,
                                                 protect={path})
                for old in removed:
                    self.log(f"🗑 pruned old checkpoint {old}")
            return path

        previous, self._in_flight = self._in_flight, None
        if self.writer.async_ and previous is not None:
            # settled (and reported to on_checkpoint) before the next job starts: that job's retention may
            # delete the previous checkpoint, which a sweep's Tune must have copied by then
            self._settle(previous, self.writer.wait(), final=False)
        outcome = self.writer.submit(job)
        stall = time.perf_counter() - started
        if self.writer.async_:
            self._in_flight = (episode, stall)
        else:
            self._settle((episode, stall), outcome, final=s.episode >= c.NUM_EPISODES or self._stop_requested)
        self._saved_episode = episode

    def _upload(self, path: Path) -> None:
        """In the background job, after the local commit: upload (MANIFEST.json last), apply retention at
        the URL to this run line, and keep only the newest local copy (the next save links its chunks)."""
        c, remote = self.config, self.remote
        assert remote is not None
        url = remote.upload(path, previous=self.previous_upload)
        self.previous_upload = path.name
        self.log(f"☁ uploaded {url}")
        if c.KEEP_LAST_CHECKPOINTS or c.KEEP_BEST_CHECKPOINTS:
            for old in remote.prune(keep_last=c.KEEP_LAST_CHECKPOINTS, keep_best=c.KEEP_BEST_CHECKPOINTS,
                                    run_id=self.state.run_id, protect={path.name}):
                self.log(f"🗑 pruned old checkpoint {old}")
        ckpt.prune_checkpoints(self.checkpoints_dir, keep_last=1, run_id=self.state.run_id, protect={path})

    def checkpoint_metrics(self, episode: int) -> dict[str, float]:
        """What a committed checkpoint of ``episode`` reports: the recent reward then, and the evaluation
        taken at that episode (``eval_*``) when there was one."""
        s = self.state
        metrics = {"episode": float(episode),
                   "recent_reward": ckpt.recent_average_reward(s.episode_rewards_log[:episode]) or 0.0}
        for entry in s.eval_log:
            if int(entry["episode"]) == episode:
                metrics.update({f"eval_{k}": v for k, v in entry.items() if k != "episode"})
        return metrics

    def _drain_writer(self) -> None:
        previous, self._in_flight = self._in_flight, None
        outcome = self.writer.wait()
        if previous is not None:
            self._settle(previous, outcome, final=True)

    def _settle(self, save: tuple[int, float], outcome: Any, *, final: bool) -> None:
        """Record how the save of episode ``save[0]`` ended. A failed save is one line and training goes
        on (losing one checkpoint must not lose the run); a failed *last* save makes the run fail."""
        episode, stall = save
        if isinstance(outcome, Path):
            self.last_checkpoint = outcome
            self.logger.checkpoint_saved(outcome, episode, stall_s=stall, stats=self._save_stats.pop(outcome, {}))
            if self.on_checkpoint is not None:
                self.on_checkpoint(outcome, self.checkpoint_metrics(episode))
        elif isinstance(outcome, BaseException):
            if final:
                self._final_failure = (episode, outcome)
            else:
                due = self.state.episode if self.writer.async_ else self.state.episode + self.config.MODEL_SAVE_INTERVAL
                self.log(f"fleetmarl: checkpoint save failed: {_strip_prefix(str(outcome))}; training goes on, "
                         f"the next checkpoint is due at episode {min(due, self.config.NUM_EPISODES)}")

    def _final_save_error(self, episode: int, error: BaseException) -> ckpt.CheckpointSaveError:
        """The run's last checkpoint was not written: one line with what is lost and what is safe (exit 1)."""
        newest = self.last_checkpoint or self.previous_checkpoint
        first_lost = (_episode_of(newest) if newest is not None else 0) + 1
        where = (f"the newest good checkpoint is {newest} (python main.py --resume latest continues from it)"
                 if newest is not None else "no checkpoint of this run is on disk")
        return ckpt.CheckpointSaveError(
            f"the run's last checkpoint was not written: {_strip_prefix(str(error))}; episodes "
            f"{first_lost}-{episode} are not on disk; {where}")

    def _resume(self, resume: str | Path) -> None:
        c = self.config
        if self.remote is not None or ckpt.is_url(str(resume)):
            local, skipped_remote = ckpt.resolve_remote_resume(self.remote, str(resume))
            for bad, why in skipped_remote:
                self.log(f"⚠ skipping unusable checkpoint {bad}: {why}")
            resume = local
        opened, skipped = ckpt.open_resume(self.checkpoints_dir, resume)
        assert opened is not None
        path = opened.path
        for bad, why in skipped:
            self.log(f"⚠ skipping broken checkpoint {bad}: {why}")
        training_state = ckpt.load_model_checkpoint(self.agents, opened, self.device)
        self._report_config_changes(drop_removed_keys(training_state.get("config", {}), f"{path}/training_state.pth"))
        s = self.state
        s.episode = int(training_state["episode"])
        s.env_steps = int(training_state.get("env_steps", 0))
        s.updates = int(training_state.get("updates", 0))
        s.episode_rewards_log = [float(r) for r in training_state["episode_rewards_log"]]
        s.metrics_log = {k: [float(x) for x in v] for k, v in training_state.get("metrics_log", {}).items()}
        s.eval_log = [dict(e) for e in training_state.get("eval_log", [])]
        if s.episode % c.NUM_ENVS:
            raise CheckpointError(f"checkpoint {path} is at episode {s.episode}, not a multiple of "
                                  f"NUM_ENVS={c.NUM_ENVS}; resume with the NUM_ENVS it was trained with")
        # Continuing from the newest checkpoint of a line keeps the line; from an older one starts a
        # branch, so retention of the new line can never delete the original's checkpoints.
        line = training_state.get("run_id")
        if line and self._is_latest_of_run(path, line):
            s.run_id, s.parent = line, training_state.get("parent")
            self.previous_upload = path.name if self.remote is not None else None
            self._saved_episode = s.episode
        else:
            s.parent = str(path)
        self.algo.load_state_dict(training_state.get("algorithm", {}))
        rng = training_state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.rng.bit_generator.state = rng["numpy"]
        self.env.set_rng_state(rng["env"])
        self.fresh_env = False
        buffer_state = ckpt.load_replay_buffer(opened) if training_state.get("replay_buffer_saved") else None
        self.previous_checkpoint = path
        if buffer_state is not None:
            old_format = "obs" in buffer_state
            self.buffer.load_state_dict(buffer_state)
            exact = "exact resume" + (" (replay buffer converted from the format before compact replay)"
                                      if old_format else "")
        else:
            exact = "NOT exact: no replay buffer was saved (SAVE_REPLAY_BUFFER=False), it refills from empty"
        self.log(f"📂 从第{s.episode}轮恢复训练 (resuming from {path}, episode {s.episode}; {exact})")

    def _is_latest_of_run(self, path: Path, line: str) -> bool:
        if self.remote is not None:
            return path.parent == self.checkpoints_dir and self.remote.is_latest_of_run(path.name, line)
        return ckpt.is_latest_of_run(self.checkpoints_dir, path, line)

    def _report_config_changes(self, saved: dict[str, Any]) -> None:
        current = self.config.to_dict()
        changed = [f"{k} {saved[k]!r} -> {current[k]!r}" for k in current if k in saved and saved[k] != current[k]]
        if changed:
            self.log("⚠ resuming with changed config keys (the continued run is not identical to an "
                     "uninterrupted one unless only NUM_EPISODES changed): " + ", ".join(changed))

    # ------------------------------------------------------------------ set-up helpers
    def _announce(self) -> None:
        c = self.config
        params = sum(p.numel() for p in self.agents[0].parameters())
        what = f"{c.NUM_POINTS} points" if self.fleet else f"ENV_KWARGS {c.ENV_KWARGS}"
        if not self.fleet and (c.WARMUP_POLICY != "random" or c.TEACHER_POLICY != "none"):
            self.log("fleetmarl: WARMUP_POLICY/TEACHER_POLICY name fleet dispatchers; on a PettingZoo environment "
                     "warm-up acts at random and there is no teacher")
        self.log(f"fleetmarl: training {len(self.agents)} agents on '{c.ENVIRONMENT_TYPE}' "
                 f"({what}, seed {c.RANDOM_SEED}) for episodes {self.state.episode}..{c.NUM_EPISODES} "
                 f"on {self.device}; {params:,} parameters per agent; "
                 f"checkpoints {self._checkpoint_plan()}; "
                 f"TensorBoard {self.log_dir or 'off'}")

    def _checkpoint_plan(self) -> str:
        c = self.config
        if not c.ENABLE_MODEL_CHECKPOINTING:
            return "off"
        size = f" (about {ckpt.format_bytes(self.disk_estimate)} on disk for this run)" if self.disk_estimate else ""
        return f"every {c.MODEL_SAVE_INTERVAL} episodes in {c.CHECKPOINTS_DIR}{size}"

    def _log_dir(self) -> Path | None:
        c = self.config
        if not c.ENABLE_TENSORBOARD:
            return None
        name = c.RUN_NAME or f"maddpg_{c.ENVIRONMENT_TYPE}_seed{c.RANDOM_SEED}_{self.state.run_id}"
        return Path(c.LOG_DIR) / name

    def _warn_disk(self) -> int:
        """Estimate the run's checkpoint disk (replay chunks shared between checkpoints); warn if it will
        not fit. Returns the estimate, which the start line shows."""
        c = self.config
        agent_bytes = sum(t.numel() * t.element_size() for t in self.agents[0].state_dict().values())
        per_agent = agent_bytes * 4  # weights, targets, two Adam moments
        buffer = self.buffer
        head = (buffer.chunk_transitions * buffer.bytes_per_transition() + 8 * c.CAPACITY) if c.SAVE_REPLAY_BUFFER else 0
        total, saves = ckpt.estimate_run_bytes(
            fixed_per_checkpoint=per_agent * len(self.agents), head_bytes=head,
            transition_bytes=(buffer.bytes_per_transition() + buffer.frame_bytes() // c.MAX_NUM_STEPS)
            if c.SAVE_REPLAY_BUFFER else 0,
            episodes_left=max(0, c.NUM_EPISODES - self.state.episode), save_interval=c.MODEL_SAVE_INTERVAL,
            steps_per_episode=c.MAX_NUM_STEPS, capacity=c.CAPACITY, buffered_now=len(buffer),
            keep_last=c.KEEP_LAST_CHECKPOINTS, keep_best=c.KEEP_BEST_CHECKPOINTS)
        warning = ckpt.check_disk_space(self.checkpoints_dir, total // max(1, saves), saves, total=total)
        if warning:
            self.log(f"⚠ {warning}")
        return total

    def _install_signal_handlers(self) -> dict[int, Any]:
        """First SIGINT/SIGTERM: finish the round, save, exit 0. Second: leave at once (no partial checkpoint,
        because a checkpoint only exists once its folder is renamed into place)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                self.log("fleetmarl: second signal, stopping now without saving")
                raise SystemExit(130)
            self._stop_requested = True
            self.log(f"⏸ {signal.Signals(signum).name} received: finishing this round of episodes, saving a "
                     "checkpoint, then exiting (signal again to stop at once)")

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _strip_prefix(message: str) -> str:
    return message[len("fleetmarl: "):] if message.startswith("fleetmarl: ") else message


def _episode_of(path: Path) -> int:
    return ckpt.parse_checkpoint_name(path.name).episode
