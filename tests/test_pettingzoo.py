"""Standard environments (issue 12): any PettingZoo parallel env by import path, trained, resumed exactly
(also after kill -9) and evaluated with the fleet's machinery; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fleetmarl.cli import main as cli_main
from fleetmarl.config import Config, load_config
from fleetmarl.errors import CheckpointError, ConfigError, UserError
from fleetmarl.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SPREAD = "mpe2.simple_spread_v3"
TOY = "tests.toy_parallel_env"
FLAT_TINY = dict(
    NUM_ENVS=2, NUM_EPISODES=8, MODEL_SAVE_INTERVAL=4, EVAL_INTERVAL=4, EVAL_EPISODES=2, BATCH_SIZE=16,
    CAPACITY=512, WARMUP_TRANSITIONS=24, UPDATE_EVERY=2, HIDDEN_DIM=16, MAX_NUM_STEPS=25, PROGRESS_BAR=False,
    ENABLE_TENSORBOARD=False, NUM_THREADS=1, WARMUP_POLICY="random", TEACHER_POLICY="none",
)


def spread_kwargs(continuous: bool) -> dict:
    return {"N": 3, "max_cycles": 10, "continuous_actions": continuous}


def flat_config(tmp_path: Path, env: str = SPREAD, kwargs: dict | None = None, **changes) -> Config:
    values = {**FLAT_TINY, **changes}
    return Config(ENVIRONMENT_TYPE=env, ENV_KWARGS=kwargs if kwargs is not None else spread_kwargs(True),
                  CHECKPOINTS_DIR=str(tmp_path / "checkpoints"), LOG_DIR=str(tmp_path / "runs"), **values)


def weights(result) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v.detach().clone() for i, a in enumerate(result.agents) for k, v in a.state_dict().items()}


def assert_same(a, b) -> None:
    assert a.state.episode_rewards_log == b.state.episode_rewards_log
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = cli_main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- config
def test_env_kwargs_is_a_json_object_in_set_and_survives_the_checkpoint_dict() -> None:
    config = load_config(None, ["ENVIRONMENT_TYPE=mpe2.simple_spread_v3",
                                'ENV_KWARGS={"N": 3, "max_cycles": 25, "continuous_actions": true}'])
    assert config.ENV_KWARGS == {"N": 3, "max_cycles": 25, "continuous_actions": True}
    assert Config.from_dict(config.to_dict()).ENV_KWARGS == config.ENV_KWARGS
    with pytest.raises(ConfigError, match="JSON object"):
        load_config(None, ["ENV_KWARGS=[1, 2]"])
    with pytest.raises(ConfigError, match="ENVIRONMENT_TYPE"):
        Config(ENVIRONMENT_TYPE="not a module")


# ---------------------------------------------------------------------- the adapter
def test_batch_handles_masks_early_terminations_and_episodes_of_different_lengths() -> None:
    from fleetmarl.envs import make_batched_env

    env = make_batched_env(Config(ENVIRONMENT_TYPE=TOY, ENV_KWARGS={"max_cycles": 6}), 3)
    obs = env.reset(seed=1)
    rng = np.random.default_rng(0)
    lengths = np.zeros(3, int)
    agent_1_terminated = np.zeros(3, bool)
    while True:
        actions = env.random_actions(obs, rng)
        assert obs["action_mask"][np.arange(3)[:, None], np.arange(2)[None], actions].all()  # masks respected
        was_stepping = lengths.copy()
        obs, rewards, terminated, truncated, infos = env.step(actions)
        lengths += infos["stepped"]
        assert not (rewards[~infos["stepped"]]).any()  # a finished copy waits: no reward, no step
        if infos["episode_over"].any():
            over = infos["episode_over"]
            assert (terminated[over] | truncated[over]).all()
        assert (was_stepping <= lengths).all()
        agent_1_terminated |= terminated[:, 1] & infos["stepped"]
        if infos["round_over"]:
            break
    assert infos["episode"]["length"].tolist() == lengths.tolist()
    assert len(set(lengths.tolist())) > 1  # this seed gives episodes of different lengths
    assert agent_1_terminated.all()  # agent_1 always terminates (never only truncated)


@pytest.mark.slow
def test_replay_stores_only_stepped_copies_with_per_agent_terminations(tmp_path: Path) -> None:
    from fleetmarl.trainer import Trainer

    config = flat_config(tmp_path, env=TOY, kwargs={"max_cycles": 6}, NUM_EPISODES=4, EVAL_INTERVAL=0,
                         ENABLE_MODEL_CHECKPOINTING=False, WARMUP_TRANSITIONS=1000, CAPACITY=1024)
    trainer = Trainer(config, log=lambda m: None)
    result = trainer.run()
    lengths = result.state.metrics_log["length"]
    assert len(trainer.buffer) == int(sum(lengths))  # waiting copies stored nothing
    dones = trainer.buffer.dones[: len(trainer.buffer)]
    assert dones.shape[1] == 2 and dones[:, 1].sum() > dones[:, 0].sum()  # agent_1 terminates first


# ---------------------------------------------------------------------- training, resume, evaluation
@pytest.mark.slow
@pytest.mark.parametrize("continuous", [True, False])
def test_simple_spread_trains_and_resumes_bit_for_bit(tmp_path: Path, continuous: bool) -> None:
    pytest.importorskip("mpe2")
    kwargs = spread_kwargs(continuous)
    whole = train(flat_config(tmp_path / "whole", kwargs=kwargs), log=lambda m: None)
    assert whole.state.updates > 0 and len(whole.state.episode_rewards_log) == 8
    assert [e["episode"] for e in whole.state.eval_log] == [4.0, 8.0]
    first = flat_config(tmp_path / "split", kwargs=kwargs, NUM_EPISODES=4)
    train(first, log=lambda m: None)
    messages: list[str] = []
    resumed = train(first.replace(NUM_EPISODES=8), resume="latest", log=messages.append)
    assert any("exact resume" in m for m in messages)
    assert_same(resumed, whole)
    action = resumed.agents[0].act(np.zeros(18, np.float32))
    assert (np.shape(action) == (5,)) if continuous else isinstance(action, int)


@pytest.mark.slow
def test_toy_env_with_early_terminations_resumes_bit_for_bit(tmp_path: Path) -> None:
    kwargs = {"max_cycles": 7}
    whole = train(flat_config(tmp_path / "whole", env=TOY, kwargs=kwargs, EVAL_INTERVAL=0), log=lambda m: None)
    first = flat_config(tmp_path / "split", env=TOY, kwargs=kwargs, EVAL_INTERVAL=0, NUM_EPISODES=4)
    train(first, log=lambda m: None)
    resumed = train(first.replace(NUM_EPISODES=8), resume="latest", log=lambda m: None)
    assert_same(resumed, whole)
    assert len(set(whole.state.metrics_log["length"])) > 1


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_for_bit(tmp_path: Path) -> None:
    pytest.importorskip("mpe2")
    changes = dict(NUM_EPISODES=12, EVAL_INTERVAL=0)
    reference = train(flat_config(tmp_path / "ref", **changes), log=lambda m: None)
    config = flat_config(tmp_path / "killed", **changes)
    flags = [a for k, v in config.to_dict().items() if k not in ("ENV_KWARGS",)
             for a in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}")
             if v is not None]
    flags += ["--set", f"ENV_KWARGS={json.dumps(config.ENV_KWARGS)}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "fleetmarl.cli", "train", *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = Path(config.CHECKPOINTS_DIR)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt_dir.exists() and any(p.name.startswith("checkpoint_ep") for p in ckpt_dir.iterdir()):
            break
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = train(config, resume="latest", log=lambda m: None)
    assert_same(resumed, reference)


@pytest.mark.slow
def test_eval_json_reports_reward_per_agent_and_compare_runs_random(tmp_path: Path, capsys) -> None:
    pytest.importorskip("mpe2")
    config = flat_config(tmp_path, kwargs=spread_kwargs(False), NUM_EPISODES=4, EVAL_INTERVAL=0)
    result = train(config, log=lambda m: None)
    code, out, _ = cli(["eval", str(result.last_checkpoint), "--episodes", "4", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    per_agent, total = report["metrics"]["reward_per_agent"]["mean"], report["metrics"]["reward"]["mean"]
    assert per_agent == pytest.approx(total / 3)
    assert report["environment"]["ENV_KWARGS"] == spread_kwargs(False)
    from fleetmarl import load_policy
    from fleetmarl.envs.pettingzoo_env import make_parallel_env

    env = make_parallel_env(config)
    observations, _ = env.reset(seed=3)
    actions = load_policy(result.last_checkpoint).act(observations)  # the env's own dicts in, its actions out
    assert set(actions) == set(env.possible_agents) and all(env.action_space(a).contains(v) for a, v in actions.items())
    env.step(actions)
    code, out, _ = cli(["compare", str(result.last_checkpoint), "random", "--episodes", "4"], capsys)
    assert code == 0 and "reward per agent" in out and "random" in out
    code, _, _ = cli(["plot", "rewards", str(result.last_checkpoint), "-o", str(tmp_path / "r.png")], capsys)
    assert code == 0 and (tmp_path / "r.png").stat().st_size > 0


def test_eval_random_policy_on_any_environment_and_fleet_reward_per_agent(capsys) -> None:
    code, out, _ = cli(["eval", "--policy", "random", "--episodes", "3", "--json", "--set", f"ENVIRONMENT_TYPE={TOY}"],
                       capsys)
    assert code == 0
    report = json.loads(out)
    assert report["environment"]["NUM_AGENTS"] == 2
    assert report["metrics"]["reward_per_agent"]["mean"] == pytest.approx(report["metrics"]["reward"]["mean"] / 2)
    code, out, _ = cli(["eval", "--policy", "random", "--episodes", "2", "--json", "--set", "NUM_AGENTS=2",
                        "--set", "NUM_POINTS=5", "--set", "INITIAL_POINTS=3", "--set", "MAX_NUM_STEPS=6"], capsys)
    fleet = json.loads(out)["metrics"]
    assert code == 0 and "on_time_rate" in fleet
    assert fleet["reward_per_agent"]["mean"] == pytest.approx(fleet["reward"]["mean"] / 2)


# ---------------------------------------------------------------------- bad input: one line, exit 2
@pytest.mark.parametrize(("sets", "words"), [
    (["ENVIRONMENT_TYPE=nosuch_package.env_v0"], "cannot be imported"),
    (["ENVIRONMENT_TYPE=json.decoder"], "has no parallel_env"),
    ([f"ENVIRONMENT_TYPE={TOY}", 'ENV_KWARGS={"bogus": 1}'], "rejected ENV_KWARGS"),
    (["ENVIRONMENT_TYPE=tests.unsupported_env"], "not supported"),
])
def test_bad_environment_is_one_line_and_exit_2(tmp_path: Path, capsys, sets: list[str], words: str) -> None:
    args = ["train", "--set", f"CHECKPOINTS_DIR={tmp_path / 'c'}", "--set", f"LOG_DIR={tmp_path / 'r'}"]
    for item in sets:
        args += ["--set", item]
    code, out, err = cli(args, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("fleetmarl: ") and words in lines[0], err


def test_fleet_dispatcher_and_render_refuse_a_pettingzoo_env(capsys) -> None:
    code, _, err = cli(["eval", "--policy", "greedy", "--set", f"ENVIRONMENT_TYPE={TOY}"], capsys)
    assert code == 2 and "only --policy random" in err
    code, _, err = cli(["render", "--policy", "random", "--set", f"ENVIRONMENT_TYPE={TOY}", "-o", "x.png"], capsys)
    assert code == 2 and "sampling fleet only" in err


@pytest.mark.slow
def test_checkpoint_of_another_environment_is_refused_in_one_line(tmp_path: Path) -> None:
    config = flat_config(tmp_path, env=TOY, kwargs={"max_cycles": 5}, NUM_EPISODES=4, EVAL_INTERVAL=0)
    result = train(config, log=lambda m: None)
    from fleetmarl.eval.policy import load_checkpoint_policy

    with pytest.raises((CheckpointError, UserError), match="ENVIRONMENT_TYPE|observation"):
        load_checkpoint_policy(result.last_checkpoint, overrides=[f"ENVIRONMENT_TYPE={SPREAD}"])


# ---------------------------------------------------------------------- the flat learner
@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_flat_learner_respects_masks_and_bounds_and_learns_only_through_its_losses(action_type: str) -> None:
    from fleetmarl.envs.spaces import ObservationDims
    from fleetmarl.learner.buffer import Batch
    from fleetmarl.learner.flat_learner import FlatMADDPG, build_flat_agents

    torch.manual_seed(0)
    dims = ObservationDims(num_agents=3, num_points=0, state=4, point=0, other=0, other_rows=0, num_actions=5)
    config = Config(ENVIRONMENT_TYPE=TOY, HIDDEN_DIM=16, ENABLE_DELAYED_POLICY_UPDATES=False, MIXED_PRECISION="fp32")
    agents = build_flat_agents(config, dims, action_type)
    algo = FlatMADDPG(agents, config)
    b = 64
    mask = torch.ones(b, 3, 5, dtype=torch.bool)
    mask[..., 0] = False
    obs = {"state": torch.randn(b, 3, 4), "action_mask": mask}
    actions = algo.act(obs, noise_std=2.0)
    if action_type == "discrete":
        assert actions.shape == (b, 3) and (actions != 0).all()
    else:
        assert actions.shape == (b, 3, 5) and actions.abs().max() <= 1.0
    batch = Batch(obs=obs, actions=actions, rewards=torch.randn(b, 3), next_obs=obs,
                  dones=torch.zeros(b, 3), weights=torch.ones(b), indices=torch.arange(b))
    before = {k: v.clone() for k, v in algo.team.state_dict().items()}
    out = algo.update(batch)
    assert torch.isfinite(out["critic_loss"]) and torch.isfinite(out["actor_loss"])
    after = algo.team.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"actor", "critic", "actor_target", "critic_target"}
    state = agents[1].checkpoint_state()
    assert state["meta"]["environment"] == TOY and state["transformer"] == {}


def test_flat_learner_critics_learn_their_own_agents_reward() -> None:
    from fleetmarl.envs.spaces import ObservationDims
    from fleetmarl.learner.buffer import Batch
    from fleetmarl.learner.flat_learner import FlatMADDPG, build_flat_agents

    torch.manual_seed(0)
    dims = ObservationDims(num_agents=3, num_points=0, state=4, point=0, other=0, other_rows=0, num_actions=5)
    b = 16
    obs = {"state": torch.randn(b, 3, 4), "action_mask": torch.ones(b, 3, 5, dtype=torch.bool)}
    batch = Batch(obs=obs, actions=torch.randint(0, 5, (b, 3)), rewards=torch.randn(b, 3), next_obs=obs,
                  dones=torch.zeros(b, 3), weights=torch.ones(b), indices=torch.arange(b))
    config = Config(ENVIRONMENT_TYPE=TOY, HIDDEN_DIM=16, GAMMA=0.0)  # no bootstrap: the target is the reward
    y = FlatMADDPG(build_flat_agents(config, dims, "discrete"), config).critic_loss(batch).y  # (A, B)
    assert torch.allclose(y, batch.rewards.transpose(0, 1))
