"""Training: the loop and the rooms it calls (design §3-§6).

Episodes run in synchronous *rounds* of ``NUM_ENVS`` episodes (:mod:`.rollout`); checkpoints are taken
only between rounds, when no environment is mid-episode, which is what makes ``--resume`` exact without
saving the environments' inner state. Hence ``MODEL_SAVE_INTERVAL`` and ``NUM_EPISODES`` must be
multiples of ``NUM_ENVS`` (checked by :class:`~fleetmarl.config.Config`).

Everything that decides the future of a run lives in :class:`RunState` plus four random generators
(torch's global one, the trainer's NumPy one, the environment's, the replay buffer's); all of them go
into ``training_state.pth`` (:mod:`.training_state`).

    state.py                what a run counts (RunState) and hands back (TrainResult)
    parts.py                the run's pieces, built in the order the seed requires
    loop.py                 Trainer: set-up, run(), the start line; train()
    rollout.py              one round: act, step, store, the warm-up and teacher policies, the updates
    progress.py             what a round adds to the logs, TensorBoard and the progress bar
    evaluation_schedule.py  the periodic noise-free evaluation
    checkpoint_folder.py    where checkpoints live: lock, leftovers, disk-space warning
    checkpoint_schedule.py  when to save; the background write, settle and upload; the final save
    training_state.py       what training_state.pth holds of the run, and putting it back
    resume.py               continuing a run from a checkpoint
    stop.py                 SIGINT/SIGTERM: finish the round, save, exit
"""

from __future__ import annotations

from fleetmarl.trainer.checkpoint_schedule import CheckpointHook
from fleetmarl.trainer.loop import Trainer, train
from fleetmarl.trainer.state import RunState, TrainResult

__all__ = ["CheckpointHook", "RunState", "TrainResult", "Trainer", "train"]
