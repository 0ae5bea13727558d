"""TensorBoard, read back with TensorBoard's own reader: rewards, checkpoints at their episodes, eval metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmarl.config import Config
from fleetmarl.logging import TAG_CHECKPOINT, TAG_CHECKPOINT_TEXT, TAG_EPISODE_REWARD
from tests.conftest import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from fleetmarl.trainer import train

    root = tmp_path_factory.mktemp("tb")
    config = Config(**{**TINY, "ENABLE_TENSORBOARD": True, "EVAL_INTERVAL": 4, "EVAL_EPISODES": 2,
                       "NUM_EPISODES": 8, "MODEL_SAVE_INTERVAL": 4},
                    CHECKPOINTS_DIR=str(root / "checkpoints"), LOG_DIR=str(root / "runs"), RUN_NAME="tiny")
    return train(config, log=lambda message: None)


def accumulator(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_rewards_checkpoints_and_eval_metrics_are_in_the_event_files(run) -> None:
    assert run.log_dir == Path(run.config.LOG_DIR) / "tiny"
    acc = accumulator(run.log_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {TAG_EPISODE_REWARD, TAG_CHECKPOINT, "eval/reward", "eval/on_time_rate",
            "eval/service_rate_weighted", "metrics/on_time_rate"} <= scalars

    rewards = acc.Scalars(TAG_EPISODE_REWARD)
    assert [e.step for e in rewards] == list(range(1, 9))
    assert [e.value for e in rewards] == pytest.approx(run.state.episode_rewards_log, rel=1e-6)

    assert sorted(e.step for e in acc.Scalars(TAG_CHECKPOINT)) == [4, 8]  # one marker at each save's episode
    assert [e.step for e in acc.Scalars("eval/reward")] == [4, 8]
    logged = {int(e["episode"]): e["reward"] for e in run.state.eval_log}
    assert {e.step: e.value for e in acc.Scalars("eval/reward")} == pytest.approx(logged, rel=1e-6)


@pytest.mark.slow
def test_checkpoint_text_names_the_folder_at_its_episode(run) -> None:
    acc = accumulator(run.log_dir)
    tag = f"{TAG_CHECKPOINT_TEXT}/text_summary"
    assert tag in acc.Tags()["tensors"]
    entries = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)}
    assert sorted(entries) == [4, 8]
    saved = sorted(p for p in Path(run.config.CHECKPOINTS_DIR).iterdir() if not p.name.startswith("."))
    assert entries[8] == str(run.last_checkpoint)
    assert {Path(text).name for text in entries.values()} == {p.name for p in saved}


@pytest.mark.slow
def test_plot_reads_the_same_run_both_ways(run, tmp_path: Path) -> None:
    from fleetmarl.eval.plotting import load_history

    from_events = load_history(run.log_dir)
    from_checkpoint = load_history(run.last_checkpoint)
    assert from_events.checkpoint_episodes == from_checkpoint.checkpoint_episodes == [4, 8]
    assert from_events.rewards.tolist() == pytest.approx(from_checkpoint.rewards.tolist(), rel=1e-6)
    assert from_events.on_time is not None and from_checkpoint.on_time is not None
