"""Evaluation core and the inference API: seeded, paired, and a checkpoint acts the same every way it is loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.policies import reference_policy
from fleetmarl.errors import CheckpointError, UserError
from fleetmarl.eval.evaluation import (
    EntryResult,
    ordered_metrics,
    paired_differences,
    policy_entry,
    run_episodes,
)
from fleetmarl.eval.policy import checkpoint_run_config
from tests.conftest import TINY


@pytest.fixture(scope="module")
def tiny() -> Config:
    return Config(**TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from fleetmarl.trainer import train

    root = tmp_path_factory.mktemp("trained")
    config = Config(**TINY, CHECKPOINTS_DIR=str(root / "checkpoints"), LOG_DIR=str(root / "runs"))
    return train(config, log=lambda message: None).last_checkpoint


# ---------------------------------------------------------------------- seeded, paired
@pytest.mark.parametrize("name", ["greedy", "random"])
def test_same_seed_gives_the_same_episodes(tiny: Config, name: str) -> None:
    a = run_episodes(tiny, reference_policy(name, 3), episodes=4, seed=3)
    b = run_episodes(tiny, reference_policy(name, 3), episodes=4, seed=3)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert len(a["reward"]) == 4


def test_episodes_beyond_one_batch_are_seeded_per_chunk(tiny: Config, monkeypatch) -> None:
    import fleetmarl.eval.evaluation as evaluation

    monkeypatch.setattr(evaluation, "MAX_EVAL_BATCH", 2)
    chunked = run_episodes(tiny, reference_policy("greedy", 0), episodes=5, seed=11)
    again = run_episodes(tiny, reference_policy("greedy", 0), episodes=5, seed=11)
    assert len(chunked["reward"]) == 5 and len(chunked["on_time_rate"]) == 5
    assert np.array_equal(chunked["reward"], again["reward"])
    assert len(set(chunked["reward"].tolist())) > 1  # chunks get different seeds, not copies of one


def test_paired_differences_are_per_episode(tiny: Config) -> None:
    entry = policy_entry("greedy", tiny)
    base = EntryResult(entry, {"reward": np.array([1.0, 2.0, 3.0]), "on_time_rate": np.array([0.5, 0.5, 0.5])})
    other = EntryResult(entry, {"reward": np.array([2.0, 4.0, 6.0]), "on_time_rate": np.array([0.5, 0.6, 0.7])})
    diff = paired_differences(other, base)
    assert diff["reward"]["mean"] == pytest.approx(2.0)
    assert diff["reward"]["std"] == pytest.approx(1.0)
    assert diff["reward"]["ci95"] == pytest.approx(1.96 / np.sqrt(3))
    assert list(diff) == ["on_time_rate", "reward"]


def test_metric_order_puts_domain_metrics_first() -> None:
    names = ["samples_on_time", "reward", "zeta", "missed_points", "on_time_rate"]
    assert ordered_metrics(names) == ["on_time_rate", "missed_points", "reward", "samples_on_time", "zeta"]


# ---------------------------------------------------------------------- which config a checkpoint runs on
def test_env_keys_may_be_overridden_for_a_checkpoint(tiny: Config) -> None:
    config = checkpoint_run_config(tiny, ["ENVIRONMENT_TYPE=simplified", "MAX_NUM_STEPS=40", "DEVICE=cpu"])
    assert config.ENVIRONMENT_TYPE == "simplified" and config.MAX_NUM_STEPS == 40 and config.DEVICE == "cpu"
    assert checkpoint_run_config(tiny, [f"NUM_POINTS={tiny.NUM_POINTS}"]).NUM_POINTS == tiny.NUM_POINTS


@pytest.mark.parametrize("key", ["NUM_POINTS=9", "NUM_AGENTS=3", "HIDDEN_DIM=32"])
def test_shape_overrides_fail_clearly(tiny: Config, key: str) -> None:
    with pytest.raises(CheckpointError, match=key.split("=")[0]):
        checkpoint_run_config(tiny, [key])


def test_learner_overrides_are_refused(tiny: Config) -> None:
    with pytest.raises(UserError, match="LR_ACTOR"):
        checkpoint_run_config(tiny, ["LR_ACTOR=0.1"])


def test_config_file_contributes_only_environment_keys(tiny: Config, tmp_path: Path) -> None:
    path = tmp_path / "eval.toml"
    path.write_text(f'ENVIRONMENT_TYPE = "simplified"\nLR_ACTOR = 0.3\nNUM_POINTS = {tiny.NUM_POINTS}\n')
    config = checkpoint_run_config(tiny, config_file=path)
    assert config.ENVIRONMENT_TYPE == "simplified" and config.LR_ACTOR == tiny.LR_ACTOR
    path.write_text("NUM_POINTS = 30\n")
    with pytest.raises(CheckpointError, match="NUM_POINTS"):
        checkpoint_run_config(tiny, config_file=path)


# ---------------------------------------------------------------------- the inference API
@pytest.mark.slow
def test_load_policy_acts_on_pettingzoo_observations(trained: Path) -> None:
    import fleetmarl
    from fleetmarl.envs import SamplingEnv

    policy = fleetmarl.load_policy(trained, "cpu")
    env = SamplingEnv(policy.config)
    observations, _ = env.reset(seed=4)
    for _ in range(5):
        actions = policy.act(observations)
        assert set(actions) == set(env.agents)
        for name, action in actions.items():
            assert isinstance(action, int)
            assert observations[name]["action_mask"][action]  # the actor respects the mask
        observations, *_ = env.step(actions)


@pytest.mark.slow
def test_guide_way_batched_way_and_load_policy_agree(trained: Path) -> None:
    """The guide's recipe (build agents, load_model_checkpoint, eval(), act(noise_std=0)) gives each vehicle's
    own choice: the same as ``policy.act`` asked about that vehicle alone, and for vehicle 0 (no earlier
    vehicle's choice to avoid) the same as the fleet choosing together, which ``policy.act`` with every
    vehicle and ``policy(batch)`` both do."""
    from fleetmarl.checkpoint import load_model_checkpoint
    from fleetmarl.envs import BatchedSamplingEnv, SamplingEnv
    from fleetmarl.eval.policy import load_policy, saved_config
    from fleetmarl.learner import build_agents

    policy = load_policy(trained)
    config = saved_config(trained)
    agents = build_agents(config, torch.device("cpu"))
    training_state = load_model_checkpoint(agents, trained, "cpu")
    assert training_state["episode"] == policy.episode
    for agent in agents:
        agent.eval()

    batched = BatchedSamplingEnv(config, num_envs=1).reset(seed=9)
    batch_actions = policy(batched)  # (1, A) through MADDPG.act
    env = SamplingEnv(config)
    observations, _ = env.reset(seed=9)
    api_actions = policy.act(observations)
    for i, name in enumerate(env.possible_agents):
        obs = {k: torch.as_tensor(np.asarray(v)) for k, v in observations[name].items()}
        with torch.no_grad():
            guide = agents[i].act(obs["state"], obs["point_features"], obs["other_obs"], noise_std=0.0,
                                  action_mask=obs["action_mask"])
        alone = policy.act({name: observations[name]})[name]
        assert int(torch.as_tensor(guide).reshape(-1)[0]) == alone
        assert api_actions[name] == int(batch_actions[0, i])
        if i == 0:
            assert alone == api_actions[name]


@pytest.mark.slow
def test_load_policy_never_reads_the_replay_buffer(trained: Path, monkeypatch) -> None:
    import fleetmarl.checkpoint.reader as reader  # every checkpoint file is read (and hash-checked) there
    import fleetmarl.eval.policy as policy_module

    opened: list[str] = []
    for module in (reader,):
        real = module.load_plain
        monkeypatch.setattr(module, "load_plain", lambda path, *a, _real=real, **k: opened.append(Path(path).name)
                            or _real(path, *a, **k))
    assert (trained / "replay_buffer.pth").exists()
    policy_module.load_policy(trained)
    assert "replay_buffer.pth" not in opened
    assert {"training_state.pth", "agent_0.pth", "agent_1.pth"} <= set(opened)


@pytest.mark.slow
def test_unknown_agent_name_is_a_user_error(trained: Path) -> None:
    from fleetmarl.eval.policy import load_policy

    with pytest.raises(UserError, match="vehicle_0"):
        load_policy(trained).act({"truck_9": {}})


def test_observation_without_a_key_is_a_user_error_for_one_vehicle_and_for_the_fleet(trained: Path) -> None:
    from fleetmarl.envs import SamplingEnv
    from fleetmarl.eval.policy import load_policy

    policy = load_policy(trained)
    observations, _ = SamplingEnv(policy.config).reset(seed=9)
    broken = {name: {k: v for k, v in obs.items() if k != "other_obs"} for name, obs in observations.items()}
    first = next(iter(broken))
    for asked in ({first: broken[first]}, broken):  # decentralised path, then the whole fleet together
        with pytest.raises(UserError, match="observation lacks 'other_obs'"):
            policy.act(asked)
