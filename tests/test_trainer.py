"""Training: deterministic for a seed, resumes exactly, logs and checkpoints as the guide says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.trainer import train


def final_weights(result) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v.detach().clone() for i, a in enumerate(result.agents) for k, v in a.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_seed_same_run(tiny_config: Config, tmp_path: Path) -> None:
    a = train(tiny_config, log=lambda m: None)
    b = train(tiny_config.replace(CHECKPOINTS_DIR=str(tmp_path / "other")), log=lambda m: None)
    assert a.state.episode_rewards_log == b.state.episode_rewards_log
    assert len(a.state.episode_rewards_log) == tiny_config.NUM_EPISODES
    assert a.state.updates > 0
    assert_same_weights(final_weights(a), final_weights(b))


def test_different_seed_differs(tiny_config: Config) -> None:
    a = train(tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False), log=lambda m: None)
    b = train(tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False, RANDOM_SEED=7), log=lambda m: None)
    assert a.state.episode_rewards_log != b.state.episode_rewards_log


def test_checkpoints_every_interval_and_at_the_end(tiny_config: Config) -> None:
    messages: list[str] = []
    config = tiny_config.replace(NUM_EPISODES=10, MODEL_SAVE_INTERVAL=4)
    train(config, log=messages.append)
    names = sorted(p.name for p in Path(config.CHECKPOINTS_DIR).iterdir() if not p.name.startswith("."))
    episodes = sorted(int(n.split("_")[1][2:]) for n in names)
    assert episodes == [4, 8, 10]
    for name in names:
        files = {p.name for p in (Path(config.CHECKPOINTS_DIR) / name).iterdir()}
        assert {"agent_0.pth", "agent_1.pth", "training_state.pth", "config_info.txt", "MANIFEST.json"} <= files
    saved = [m for m in messages if m.startswith("💾 模型检查点已保存: ")]
    assert len(saved) == 3
    assert "   包含: 2个智能体 + 训练状态 + 配置信息" in messages


def test_checkpointing_can_be_disabled(tiny_config: Config) -> None:
    train(tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False), log=lambda m: None)
    assert not Path(tiny_config.CHECKPOINTS_DIR).exists()


@pytest.mark.parametrize("save_buffer", [True, False])
def test_resume_continues_to_a_larger_num_episodes(tiny_config: Config, tmp_path: Path, save_buffer: bool) -> None:
    """2k episodes in one go == k episodes, then --resume latest with NUM_EPISODES=2k (bit for bit)."""
    whole = train(tiny_config.replace(CHECKPOINTS_DIR=str(tmp_path / "whole")), log=lambda m: None)
    half_config = tiny_config.replace(NUM_EPISODES=4, SAVE_REPLAY_BUFFER=save_buffer)
    train(half_config, log=lambda m: None)
    messages: list[str] = []
    resumed = train(half_config.replace(NUM_EPISODES=8), resume="latest", log=messages.append)
    assert any("从第4轮恢复训练" in m for m in messages)
    assert resumed.state.episode == 8 and len(resumed.state.episode_rewards_log) == 8
    assert resumed.state.episode_rewards_log[:4] == whole.state.episode_rewards_log[:4]
    if save_buffer:
        assert resumed.state.episode_rewards_log == whole.state.episode_rewards_log
        assert_same_weights(final_weights(resumed), final_weights(whole))
    else:
        assert any("NOT exact" in m for m in messages)


def test_resuming_a_finished_run_trains_and_saves_nothing(tiny_config: Config) -> None:
    """--resume latest on a run already at NUM_EPISODES says so and leaves the folder as it was (it once
    wrote a second checkpoint of the same episode); a larger NUM_EPISODES then continues it."""
    config = tiny_config.replace(NUM_EPISODES=4)
    train(config, log=lambda m: None)
    ckpt_dir = Path(config.CHECKPOINTS_DIR)
    before = sorted(p.name for p in ckpt_dir.iterdir())
    messages: list[str] = []
    result = train(config, resume="latest", log=messages.append)
    assert result.state.episode == 4 and sorted(p.name for p in ckpt_dir.iterdir()) == before
    assert any("nothing to train" in m and "NUM_EPISODES" in m for m in messages)
    longer = train(config.replace(NUM_EPISODES=8), resume="latest", log=lambda m: None)
    assert longer.state.episode == 8 and len(list(ckpt_dir.iterdir())) == len(before) + 1


def test_resume_from_older_checkpoint_never_touches_the_original_line(tiny_config: Config) -> None:
    config = tiny_config.replace(NUM_EPISODES=12)
    train(config, log=lambda m: None)
    ckpt_dir = Path(config.CHECKPOINTS_DIR)
    original = {p.name for p in ckpt_dir.iterdir()}
    assert len(original) == 3
    oldest = min(ckpt_dir.iterdir(), key=lambda p: int(p.name.split("_")[1][2:]))
    messages: list[str] = []
    branch = train(config.replace(KEEP_LAST_CHECKPOINTS=1), resume=oldest, log=messages.append)
    assert branch.state.parent == str(oldest)
    after = {p.name for p in ckpt_dir.iterdir()}
    assert original <= after  # nothing of the original line was overwritten or pruned
    assert len(after - original) == 1  # the branch kept only its own newest checkpoint


def test_resume_latest_with_no_checkpoint_is_a_clear_error(tiny_config: Config) -> None:
    from fleetmarl.errors import CheckpointError

    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        train(tiny_config, resume="latest", log=lambda m: None)


def test_failed_save_is_reported_and_retried_at_the_next_interval(tiny_config: Config, monkeypatch) -> None:
    """A full disk at one save must not end days of training: report, continue, try again."""
    from fleetmarl import checkpoint as ckpt
    from fleetmarl.checkpoint import CheckpointSaveError

    real_save = ckpt.save_model_checkpoint
    calls = []

    def flaky_save(*args, **kwargs):
        calls.append(kwargs.get("training_state", args[1])["episode"])
        if len(calls) == 1:
            raise CheckpointSaveError("no space left on device while writing agent_0.pth")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save_model_checkpoint", flaky_save)
    messages: list[str] = []
    result = train(tiny_config, log=messages.append)
    assert result.state.episode == tiny_config.NUM_EPISODES
    assert calls == [4, 8]
    assert any("checkpoint save failed" in m and "no space left" in m for m in messages)
    saved = [p.name for p in Path(tiny_config.CHECKPOINTS_DIR).iterdir()]
    assert len(saved) == 1 and "ep8" in saved[0]


def test_unwritable_checkpoints_dir_is_reported_before_training(tiny_config: Config, tmp_path: Path) -> None:
    from fleetmarl.errors import CheckpointError

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the checkpoints folder should be")
    with pytest.raises(CheckpointError, match="CHECKPOINTS_DIR"):
        train(tiny_config.replace(CHECKPOINTS_DIR=str(blocker / "checkpoints")), log=lambda m: None)


def test_the_teacher_is_asked_at_acting_time_and_replay_keeps_its_choices(tiny_config: Config) -> None:
    """The warm-up dispatcher is the teacher: its recorded choices are the warm-up actions; afterwards the
    teacher is asked on every step the actor takes, so no stored transition is without a choice."""
    from fleetmarl.envs.policies import pure_policy
    from fleetmarl.trainer import Trainer

    teacher = pure_policy(tiny_config.TEACHER_POLICY, tiny_config)  # the default teacher, greedy_shift
    trainer = Trainer(tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False), log=lambda m: None)
    trainer.run()
    buffer = trainer.buffer
    n = len(buffer)
    assert (buffer.taught[:n] >= 0).all()
    warm = tiny_config.WARMUP_TRANSITIONS
    assert (buffer.taught[:warm] == buffer.actions[:warm]).all()
    batch = buffer.sample(64)
    assert torch.equal(batch.taught, torch.as_tensor(teacher({k: v.numpy() for k, v in batch.obs.items()})))
    assert not torch.equal(batch.taught, batch.actions)  # the actor, not the teacher, acted after warm-up


@pytest.mark.slow
def test_a_planning_teacher_resumes_bit_for_bit(tiny_config: Config, tmp_path: Path) -> None:
    pytest.importorskip("ortools")
    config = tiny_config.replace(TEACHER_POLICY="ortools", WARMUP_POLICY="ortools")
    whole = train(config.replace(CHECKPOINTS_DIR=str(tmp_path / "whole")), log=lambda m: None)
    train(config.replace(NUM_EPISODES=4), log=lambda m: None)
    resumed = train(config, resume="latest", log=lambda m: None)
    assert resumed.state.episode_rewards_log == whole.state.episode_rewards_log
    assert_same_weights(final_weights(resumed), final_weights(whole))


@pytest.mark.parametrize("every", [2, 3])
def test_updates_run_every_update_every_steps_once_warm_up_is_stored(tiny_config: Config, every: int) -> None:
    """The cadence the speed/learning trade-off rests on (UPDATE_EVERY, docs/training.md): the pre-training
    burst once, then one update on each batched step whose count is a multiple of UPDATE_EVERY, from the
    step that fills the warm-up on."""
    c = tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False, UPDATE_EVERY=every)
    result = train(c, log=lambda m: None)
    steps = c.NUM_EPISODES // c.NUM_ENVS * c.MAX_NUM_STEPS
    first = -(-max(c.WARMUP_TRANSITIONS, c.BATCH_SIZE) // c.NUM_ENVS)  # the step that stores the last warm-up transition
    due = sum(1 for step in range(first, steps + 1) if step % every == 0)
    assert result.state.updates == c.PRETRAIN_UPDATES + due * c.UPDATES_PER_ROUND


def test_a_stop_asked_during_pre_training_says_how_long_it_will_wait(tiny_config: Config) -> None:
    """The pre-training burst runs inside a round and a checkpoint only falls between rounds, so a stop
    asked for during it waits for all of it: the signal's answer must say how many updates are left (on
    fleet20 that is ~40 minutes, longer than many schedulers' grace period)."""
    import signal

    from fleetmarl.trainer import Trainer

    c = tiny_config.replace(ENABLE_MODEL_CHECKPOINTING=False, PRETRAIN_UPDATES=3)
    messages: list[str] = []
    trainer = Trainer(c, log=messages.append)
    update = trainer.rollout._update
    seen: list[str | None] = []

    def watched(*, imitate: bool = False):
        if imitate:
            seen.append(trainer.rollout.busy())
            if len(seen) == 2:
                trainer.stop._handle(signal.SIGTERM, None)
        return update(imitate=imitate)

    trainer.rollout._update = watched
    result = trainer.run()
    assert seen[0].startswith("3 of 3 pre-training updates are left;")
    assert seen[1].startswith("2 of 3 pre-training updates are left (about")
    assert any("2 of 3 pre-training updates are left" in m and "a second signal stops now" in m for m in messages)
    assert trainer.rollout.busy() is None  # the burst is over: a stop now only waits for the round
    assert result.stopped_early and result.state.updates >= 3


def test_a_stop_outside_pre_training_adds_nothing_and_a_second_one_exits() -> None:
    import signal

    from fleetmarl.trainer.stop import StopRequest

    messages: list[str] = []
    stop = StopRequest(messages.append)
    stop._handle(signal.SIGINT, None)
    assert stop.requested and len(messages) == 1 and "finishing this round" in messages[0]
    with pytest.raises(SystemExit):
        stop._handle(signal.SIGINT, None)
