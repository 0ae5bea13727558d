"""One round of acting: the batched environment steps, its transitions go into the replay buffer, and
the updates run when they are due (design §3-§4).

Episodes run in synchronous *rounds*: every fleet episode lasts exactly ``MAX_NUM_STEPS`` steps, so the
``NUM_ENVS`` batched environments start and end together and one round completes ``NUM_ENVS`` episodes.
A PettingZoo environment keeps the same rule with episodes of any length: a round lasts until every
copy's episode is over, copies that finish early wait, and only the copies that stepped store
transitions (:mod:`fleetmarl.envs.pettingzoo_env`). Why rounds: a checkpoint between two of them finds
no environment mid-episode, which is what makes ``--resume`` exact without saving the environments'
inner state.

Before the buffer holds ``WARMUP_TRANSITIONS`` the actions come from a warm-up policy (a reference
dispatcher, or random); the teacher (``TEACHER_POLICY``) is asked on every observation so the buffer
keeps its choices for the Q-filtered imitation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fleetmarl.envs.policies import BatchPolicy, random_policy, reference_policy
from fleetmarl.errors import FleetmarlError
from fleetmarl.learner.schedules import noise_std
from fleetmarl.trainer.parts import RunParts

Observation = dict[str, np.ndarray]


@dataclass
class RoundResult:
    """What one round hands to the bookkeeping: each copy's episode reward and the last step's news."""

    rewards: np.ndarray
    """(NUM_ENVS,) reward of each copy's episode, summed over steps and agents"""
    infos: dict[str, Any]
    """the environment's info of the round's last step (its ``episode`` metrics among them)"""
    losses: dict[str, torch.Tensor]
    """the last update's losses ({} when no update ran this round)"""


class Rollout:
    """Acts in the batched environment, stores what happened and calls the updates."""

    def __init__(self, parts: RunParts) -> None:
        self.parts = parts
        config = parts.config
        # the reference dispatchers exist only for the fleet: a PettingZoo env warms up at random, no teacher
        self.warmup_policy = config.WARMUP_POLICY if parts.fleet else "random"
        self.fresh_env = True
        """True until the first reset, which seeds the environment (a resumed run restored its generator)"""
        self._dispatcher: BatchPolicy | None = None  # warm-up actor, built on use
        self.teacher = self._build_teacher()
        """asked on every step's observation; the buffer keeps its choices for the Q-filtered imitation"""
        self._pretrain_done: int | None = None
        """imitation updates done while the pre-training burst runs, None outside it"""
        self._pretrain_started = 0.0

    def run_round(self) -> RoundResult:
        """One synchronous round: NUM_ENVS episodes of (at most) MAX_NUM_STEPS steps, with updates."""
        p = self.parts
        c, s = p.config, p.state
        noise = noise_std(c, s.episode)
        p.algo.set_episode(s.episode)
        obs = p.env.reset(seed=c.RANDOM_SEED if self.fresh_env else None)
        self.fresh_env = False
        round_rewards = np.zeros(c.NUM_ENVS, dtype=np.float64)
        losses: dict[str, torch.Tensor] = {}
        infos: dict[str, Any] = {}
        for _ in range(c.MAX_NUM_STEPS):
            warming_up = len(p.buffer) < c.WARMUP_TRANSITIONS
            if warming_up:
                actions = self._warmup_actions(obs)
            else:
                actions = p.algo.act(self._to_torch(obs), noise).cpu().numpy()
            taught = self._teacher_choices(obs, actions, warming_up)
            next_obs, rewards, terminated, truncated, infos = p.env.step(actions)
            dones = terminated | truncated
            self._store(obs, actions, rewards, infos.get("final_obs", next_obs), terminated, dones, infos, taught)
            round_rewards += rewards.sum(axis=1)
            obs = next_obs
            s.env_steps += 1
            losses = self._learn(losses)
            if infos.get("round_over"):
                break
        if not infos.get("round_over", dones.all()):  # a round must end between episodes, or resume is not exact
            raise FleetmarlError("environments did not finish their episodes together; this is a bug in the env")
        return RoundResult(round_rewards, infos, losses)

    def _learn(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The updates due after this step; returns the newest losses (``losses`` when none ran).

        Once the buffer can fill a batch past warm-up: the PRETRAIN_UPDATES imitation updates, only once
        (``algo.updates == 0``, so a resumed run never repeats them) and only after a dispatcher's
        warm-up; then UPDATES_PER_ROUND updates every UPDATE_EVERY steps."""
        p = self.parts
        c = p.config
        ready = max(c.WARMUP_TRANSITIONS, c.BATCH_SIZE)
        if len(p.buffer) >= ready and p.algo.updates == 0 and self.warmup_policy != "random":
            self._pretrain_started = time.monotonic()
            for done in range(c.PRETRAIN_UPDATES):
                self._pretrain_done = done
                losses = self._update(imitate=True)
            self._pretrain_done = None
        if len(p.buffer) >= ready and p.state.env_steps % c.UPDATE_EVERY == 0:
            for _ in range(c.UPDATES_PER_ROUND):
                losses = self._update()
        return losses

    def busy(self) -> str | None:
        """Why a stop asked for now waits long, or None. The pre-training burst runs inside a round and a
        checkpoint only falls between rounds, so a stop waits for the whole burst (minutes on a large
        fleet): a user under a scheduler's grace period needs to know that, and how long."""
        done = self._pretrain_done
        if done is None:
            return None
        total = self.parts.config.PRETRAIN_UPDATES
        left = f"{total - done} of {total} pre-training updates are left"
        if done:
            seconds = (time.monotonic() - self._pretrain_started) / done * (total - done)
            left += f" (about {seconds:.0f} s)" if seconds < 90 else f" (about {seconds / 60:.0f} min)"
        return left + "; the checkpoint comes after them and the rest of this round"

    def _store(self, obs: Observation, actions: np.ndarray, rewards: np.ndarray, next_obs: Observation,
               terminated: np.ndarray, dones: np.ndarray, infos: dict[str, Any],
               taught: np.ndarray | None = None) -> None:
        """The fleet stores every copy and ends bootstrapping at its fixed episode end, as always; a PettingZoo
        batch stores only the copies that stepped, with per-agent terminations (truncation bootstraps)."""
        buffer = self.parts.buffer
        stepped = infos.get("stepped")
        if stepped is None:
            buffer.add(obs, actions, rewards, next_obs, dones, taught)
            return
        rows = np.flatnonzero(stepped)
        buffer.add({k: v[rows] for k, v in obs.items()}, actions[rows], rewards[rows],
                   {k: v[rows] for k, v in next_obs.items()}, terminated[rows])

    def _warmup_actions(self, obs: Observation) -> np.ndarray:
        """Before learning starts: a reference dispatcher's choices (useful behaviour to imitate and learn
        from), or uniform random ones from the trainer's generator with WARMUP_POLICY='random'."""
        p = self.parts
        if not p.fleet:
            return p.env.random_actions(obs, p.rng)
        if p.config.WARMUP_POLICY == "random":
            return random_policy(obs, p.rng)
        if self._dispatcher is None:  # OR-Tools keeps plans per row and notices new episodes itself
            self._dispatcher = reference_policy(p.config.WARMUP_POLICY, p.config.RANDOM_SEED, p.config)
        return self._dispatcher(obs)

    def _build_teacher(self) -> BatchPolicy | None:
        """The fleet's TEACHER_POLICY; the warm-up dispatcher itself when it is the same policy, so a
        stateful one (OR-Tools' plans) is asked once per step and keeps one memory."""
        c = self.parts.config
        if not self.parts.fleet or c.TEACHER_POLICY == "none":
            return None
        if c.TEACHER_POLICY == c.WARMUP_POLICY:
            self._dispatcher = reference_policy(c.WARMUP_POLICY, c.RANDOM_SEED, c)
            return self._dispatcher
        return reference_policy(c.TEACHER_POLICY, c.RANDOM_SEED, c)

    def _teacher_choices(self, obs: Observation, actions: np.ndarray, warming_up: bool) -> np.ndarray | None:
        """The teacher's choices on ``obs`` (B, A), asked on every step so a planning teacher follows the
        episode; during a warm-up by that same teacher they are the actions just taken."""
        if self.teacher is None:
            return None
        if warming_up and self.teacher is self._dispatcher:
            return actions
        return self.teacher(obs)

    def _update(self, *, imitate: bool = False) -> dict[str, torch.Tensor]:
        """One gradient update of all agents on a sampled batch; prioritized replay learns its TD errors."""
        p = self.parts
        batch = p.buffer.sample(p.config.BATCH_SIZE, p.device)
        out = p.algo.update(batch, imitate=imitate)
        if "td_errors" in out:
            p.buffer.update_priorities(batch.indices, out.pop("td_errors"))
        p.state.updates += 1
        return out

    def _to_torch(self, obs: Observation) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v).to(self.parts.device, non_blocking=True) for k, v in obs.items()}
