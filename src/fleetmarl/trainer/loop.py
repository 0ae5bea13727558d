"""The training loop: set the run up, then round after round act, record, evaluate and checkpoint
(design §3-§6).

The loop only decides the order of things; what each step does lives in its own module: acting and
updating in :mod:`~fleetmarl.trainer.rollout`, the records of a round in :mod:`~fleetmarl.trainer.progress`,
evaluation in :mod:`~fleetmarl.trainer.evaluation_schedule`, saving in
:mod:`~fleetmarl.trainer.checkpoint_schedule`, resuming in :mod:`~fleetmarl.trainer.resume`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fleetmarl import checkpoint as ckpt
from fleetmarl.config import Config
from fleetmarl.envs import with_environment_agents
from fleetmarl.logging import RunLogger
from fleetmarl.trainer.checkpoint_folder import CheckpointFolder
from fleetmarl.trainer.checkpoint_schedule import CheckpointHook, CheckpointSchedule
from fleetmarl.trainer.evaluation_schedule import EvaluationSchedule
from fleetmarl.trainer.parts import build_parts
from fleetmarl.trainer.progress import record_round
from fleetmarl.trainer.resume import Resumed, resume_run
from fleetmarl.trainer.rollout import Rollout
from fleetmarl.trainer.state import TrainResult
from fleetmarl.trainer.stop import StopRequest
from fleetmarl.trainer.training_state import training_state


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
        self.log = log or (lambda message: tqdm.write(message, file=sys.stdout))
        if config.NUM_THREADS:
            torch.set_num_threads(config.NUM_THREADS)
        self.parts = build_parts(config)
        # the pieces under the names callers (tests, benchmarks) have always read them by
        p = self.parts
        self.device, self.agents, self.algo, self.buffer, self.env, self.rng, self.state = (
            p.device, p.agents, p.algo, p.buffer, p.env, p.rng, p.state)
        self.folder = CheckpointFolder(config, self.log)
        self.rollout = Rollout(p)
        resumed, self.disk_estimate = self._open(resume)
        self.log_dir = self._log_dir()
        self.logger = RunLogger(self.log_dir, purge_step=self.state.episode or None)
        self.stop = StopRequest(self.log, busy=self.rollout.busy)
        self.evaluations = EvaluationSchedule(p, self.logger)
        self.checkpoints = CheckpointSchedule(p, self.folder, self.logger, self.stop, log=self.log,
                                              on_checkpoint=on_checkpoint, resumed=resumed)

    def _open(self, resume: str | Path | None) -> tuple[Resumed | None, int | None]:
        """Take the checkpoint folder, clear what a crash left there, resume, estimate the disk the run
        needs; the folder is let go again if any of it fails."""
        c = self.config
        self.folder.acquire()
        try:
            self.folder.clear_leftovers(resuming=resume is not None)
            resumed = None
            if resume is not None:
                resumed = resume_run(self.parts, self.folder, resume, self.log)
                self.rollout.fresh_env = False  # the environment's generator was restored: no reseeding
            disk_estimate = self.folder.estimate_disk(self.parts) if c.ENABLE_MODEL_CHECKPOINTING else None
        except BaseException:
            self.folder.release()
            raise
        return resumed, disk_estimate

    # ------------------------------------------------------------------ the loop
    def run(self) -> TrainResult:
        c, s = self.config, self.state
        self._announce()
        bar = tqdm(total=c.NUM_EPISODES, initial=s.episode, unit="ep", disable=not c.PROGRESS_BAR,
                   dynamic_ncols=True, file=sys.stderr)
        self.stop.install()
        if s.episode >= c.NUM_EPISODES:
            self.log(f"nothing to train: the run is at episode {s.episode} and NUM_EPISODES is {c.NUM_EPISODES}; "
                     f"to continue it, resume with a larger one, e.g. --set NUM_EPISODES={s.episode + c.MODEL_SAVE_INTERVAL}")
        try:
            while s.episode < c.NUM_EPISODES and not self.stop.requested:
                result = self.rollout.run_round()
                record_round(self.parts, result, self.logger, bar)
                self.evaluations.after_round()
                self.checkpoints.after_round()
            self.checkpoints.finish()
        finally:
            self.stop.restore()
            bar.close()
            self.checkpoints.close()
            self.logger.close()
            self.folder.release()
        self.checkpoints.raise_if_last_save_failed()
        if self.stop.requested:
            self.log(f"⏹ 训练已停止 (stopped at episode {s.episode}); resume with: python main.py --resume latest")
        return TrainResult(s, c, self.last_checkpoint, self.log_dir, self.stop.requested, self.agents)

    @property
    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint this run committed."""
        return self.checkpoints.last_checkpoint

    def training_state(self) -> dict[str, Any]:
        """The guide's ``training_state.pth`` keys, plus everything exact resume needs."""
        return training_state(self.parts)

    def checkpoint_metrics(self, episode: int) -> dict[str, float]:
        """What a committed checkpoint of ``episode`` reports (see :class:`CheckpointSchedule`)."""
        return self.checkpoints.checkpoint_metrics(episode)

    # ------------------------------------------------------------------ set-up helpers
    def _announce(self) -> None:
        c = self.config
        fleet = self.parts.fleet
        params = sum(p.numel() for p in self.agents[0].parameters())
        what = f"{c.NUM_POINTS} points" if fleet else f"ENV_KWARGS {c.ENV_KWARGS}"
        if not fleet and (c.WARMUP_POLICY != "random" or c.TEACHER_POLICY != "none"):
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
