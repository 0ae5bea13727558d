"""SHARE_PARAMETERS: one actor and one critic for every vehicle, whose weights drive a fleet of any size.

Sizes, the linear critic's maths, checkpoints (one copy of the weights, consistency checks, exact resume),
evaluation on other fleet sizes through the command line and ``load_policy``, and a short training run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fleetmarl.cli import main
from fleetmarl.config import Config
from fleetmarl.envs.batched_env import BatchedSamplingEnv
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner import MADDPG, build_agents
from fleetmarl.learner.agent import SHARED_RECORD_KEY
from fleetmarl.learner.networks import INACTIVE_LOGIT
from fleetmarl.learner.shared_networks import SharedCritic
from tests.conftest import TINY

SHARED = {**TINY, "SHARE_PARAMETERS": True, "NUM_AGENTS": 3}


def config_for(tmp: Path, name: str, **changes) -> Config:
    return Config(**{**SHARED, **changes}, CHECKPOINTS_DIR=str(tmp / name), LOG_DIR=str(tmp / "runs"))


def quiet_train(config: Config, resume: str | None = None):
    from fleetmarl.trainer import train

    return train(config, resume=resume, log=lambda _message: None)


def weights(result) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v.detach().clone() for i, a in enumerate(result.agents) for k, v in a.state_dict().items()}


def roundtrip(state: dict) -> dict:
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=True)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray ./config.py decides the environment


@pytest.fixture(scope="module")
def shared_checkpoint(tmp_path_factory) -> Path:
    """A shared-parameter run of 3 vehicles (TINY otherwise); its last checkpoint."""
    return quiet_train(config_for(tmp_path_factory.mktemp("shared"), "ckpt", NUM_EPISODES=4)).last_checkpoint


# ---------------------------------------------------------------------- sizes
def test_parameter_count_does_not_depend_on_the_fleet() -> None:
    def shapes(share: bool, agents: int, points: int) -> dict[str, tuple[int, ...]]:
        config = Config(**{**TINY, "SHARE_PARAMETERS": share, "NUM_AGENTS": agents, "NUM_POINTS": points,
                           "INITIAL_POINTS": 3})
        team = build_agents(config)[0].team
        return {name: tuple(p.shape) for name, p in team.named_parameters()}

    reference = shapes(True, 2, 5)
    for agents, points in ((3, 5), (6, 5), (2, 9), (6, 30)):
        assert shapes(True, agents, points) == reference, (agents, points)
    count = sum(int(np.prod(s)) for s in reference.values())
    per_vehicle = [sum(int(np.prod(s)) for s in shapes(False, a, 5).values()) for a in (2, 3, 6)]
    assert per_vehicle[0] < per_vehicle[1] < per_vehicle[2]  # the per-vehicle team grows with the fleet
    agents = build_agents(Config(**SHARED))
    assert all(sum(p.numel() for p in a.parameters()) == count for a in agents)  # each agent: the one network


def test_every_agent_acts_with_the_one_network_on_any_number_of_other_vehicles() -> None:
    config = Config(**SHARED)
    torch.manual_seed(0)
    agents = build_agents(config)
    d = observation_dims(config)
    gen = torch.Generator().manual_seed(1)
    state, points = torch.randn(4, d.state, generator=gen), torch.randn(4, d.num_points, d.point, generator=gen)
    for rows in (0, 2, 7):  # the others are a set: any number of rows
        others = torch.randn(4, rows, d.other, generator=gen)
        logits = [a.actor(state[None], points[None], others[None]) for a in agents]
        assert all(torch.equal(logits[0], x) for x in logits[1:]) and logits[0].shape == (1, 4, d.num_actions)
        chosen = [a.act(state.numpy(), points.numpy(), others.numpy(), noise_std=0.0) for a in agents]
        assert all(np.array_equal(chosen[0], c) for c in chosen[1:])


# ---------------------------------------------------------------------- the linear critic
def _critic_inputs(agents: int, batch: int = 3, seed: int = 0):
    config = Config(**{**SHARED, "NUM_AGENTS": agents})
    d = observation_dims(config)
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn(agents, batch, d.num_points, d.point, generator=gen)
    active = torch.rand(batch, d.num_points, generator=gen) < 0.6
    active[:, 0] = True
    points[..., d.active_column] = active.float()  # the same points are active for every vehicle
    states = torch.randn(batch, agents, d.state, generator=gen)
    # each vehicle picks an active point, stay or return
    choices = torch.zeros(batch, agents, dtype=torch.long)
    for b in range(batch):
        options = [*active[b].nonzero().flatten().tolist(), d.num_points, d.num_points + 1]
        choices[b] = torch.tensor([options[int(torch.randint(len(options), (1,), generator=gen))]
                                   for _ in range(agents)])
    return config, d, points, states, choices


def test_the_critics_others_term_is_the_mean_over_the_other_vehicles() -> None:
    for agents in (1, 4):
        config, d, points, states, choices = _critic_inputs(agents)
        torch.manual_seed(0)
        critic = SharedCritic(d, config.HIDDEN_DIM, config.EMBED_DIM)
        actions = torch.nn.functional.one_hot(choices, d.num_actions).float()  # (B, A, K)
        embedded = critic.embed_points(points)
        with torch.no_grad():
            e = critic.embed_actions(embedded, actions.transpose(0, 1).unsqueeze(0))[0]  # (A, B, E)
            term = critic.others_term(states.transpose(0, 1), e)
            batch = states.shape[0]
            for i in range(agents):
                for b in range(batch):
                    phis = []
                    for j in range(agents):
                        if j == i:
                            continue
                        c = int(choices[b, j])  # brute force: the chosen point's own row, encoded alone
                        token = (critic.encoder(points[j, b, c][None, None])[0, 0] if c < d.num_points
                                 else critic.extra_action_embed[0, c - d.num_points])
                        phi = critic.others(torch.cat([states[b, j], token])[None, None])[0, 0]
                        phis.append(phi)
                    expected = torch.stack(phis).mean(0) if phis else torch.zeros(config.HIDDEN_DIM)
                    torch.testing.assert_close(term[i, b], expected, rtol=1e-5, atol=1e-6)


def test_an_own_action_changes_only_its_own_q() -> None:
    """The actor loss's entry point: own (A, B, K) enters agent i's own slot only, the others' term reads
    the replayed actions; with own = replayed it is the critic loss's Q."""
    config, d, points, states, choices = _critic_inputs(4, seed=1)
    torch.manual_seed(0)
    critic = SharedCritic(d, config.HIDDEN_DIM, config.EMBED_DIM)
    replayed = torch.nn.functional.one_hot(choices, d.num_actions).float()
    embedded = critic.embed_points(points)
    with torch.no_grad():
        q = critic(embedded, states, replayed)
        torch.testing.assert_close(critic(embedded, states, replayed, own=replayed.transpose(0, 1)), q)
        own = replayed.transpose(0, 1).clone()
        own[2] = torch.nn.functional.one_hot(torch.full((states.shape[0],), d.num_points), d.num_actions).float()
        moved = critic(embedded, states, replayed, own=own)
        changed = (choices[:, 2] != d.num_points)
        assert torch.equal(moved[[0, 1, 3]], q[[0, 1, 3]])  # the others still see agent 2's replayed action
        assert not torch.allclose(moved[2, changed], q[2, changed])


def test_the_actor_loss_q_is_each_agents_fresh_action_with_the_others_replayed() -> None:
    """MADDPG._frozen_q with shared parameters == Q_i of the joint action whose column i is agent i's own."""
    from tests.test_agents import filled_buffer

    config = Config(**{**SHARED, "NUM_AGENTS": 4, "BATCH_SIZE": 16, "CAPACITY": 64})
    torch.manual_seed(0)
    algo = MADDPG(build_agents(config), config)
    batch = filled_buffer(config).sample(16)
    step = algo.critic_loss(batch)
    replayed = algo._replay_actions(batch.actions)  # (B, A, K)
    own = torch.nn.functional.one_hot(torch.randint(0, config.NUM_POINTS + 2, (4, 16)), config.NUM_POINTS + 2).float()
    with torch.no_grad():
        q = algo._frozen_q(step, batch.obs, own, replayed)
        for i in range(4):
            joint = replayed.clone()
            joint[:, i] = own[i]
            expected = algo.team.critic(step.points, batch.obs["state"].float(), joint)[i]
            torch.testing.assert_close(q[i], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_holds_the_weights_once_and_checks_consistency() -> None:
    config = Config(**SHARED)
    torch.manual_seed(0)
    agents = build_agents(config)
    states = [roundtrip(a.checkpoint_state()) for a in agents]
    assert {"actor", "critic", "actor_optimizer", "meta"} <= set(states[0])
    assert states[0]["meta"]["share_parameters"] is True and states[0]["meta"]["num_agents"] == 3
    for i in (1, 2):
        assert set(states[i]) == {"meta", SHARED_RECORD_KEY} and states[i]["meta"]["agent_id"] == i
    torch.manual_seed(1)
    fresh = build_agents(config)
    for agent, state in zip(fresh, states, strict=True):
        agent.load_checkpoint_state(state)
    assert all(torch.equal(a, b) for a, b in zip(agents[0].team.parameters(), fresh[0].team.parameters(), strict=True))
    with pytest.raises(CheckpointError, match="agent 0's file"):
        fresh[0].load_checkpoint_state(states[1])
    with pytest.raises(CheckpointError, match="agent 1's file is agent 2's record"):
        fresh[1].load_checkpoint_state(states[2])
    with pytest.raises(CheckpointError, match="holds networks of its own"):
        fresh[1].load_checkpoint_state(states[0] | {"meta": {**states[0]["meta"], "agent_id": 1}})
    per_vehicle = build_agents(Config(**{**SHARED, "SHARE_PARAMETERS": False}))
    with pytest.raises(CheckpointError, match="SHARE_PARAMETERS=True but the config has SHARE_PARAMETERS=False"):
        per_vehicle[0].load_checkpoint_state(states[0])
    with pytest.raises(CheckpointError, match="NUM_AGENTS=3 but the config has NUM_AGENTS=4"):
        build_agents(Config(**{**SHARED, "NUM_AGENTS": 4}))[0].load_checkpoint_state(states[0])


def test_a_shared_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    whole = quiet_train(config_for(tmp_path, "whole"))
    half = config_for(tmp_path, "half", NUM_EPISODES=4)
    quiet_train(half)
    resumed = quiet_train(half.replace(NUM_EPISODES=8), resume="latest")
    assert resumed.state.episode == 8
    assert resumed.state.episode_rewards_log == whole.state.episode_rewards_log
    a, b = weights(resumed), weights(whole)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    folder = resumed.last_checkpoint
    assert (folder / "agent_2.pth").stat().st_size * 20 < (folder / "agent_0.pth").stat().st_size


# ---------------------------------------------------------------------- other fleet sizes
def _eval(capsys, *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_a_shared_checkpoint_runs_on_fleets_of_other_sizes(shared_checkpoint: Path, tmp_path: Path, capsys) -> None:
    from fleetmarl import load_policy

    for agents, points, initial in ((2, 5, 3), (6, 9, 5)):
        report = _eval(capsys, str(shared_checkpoint), "--episodes", "1", "--set", f"NUM_AGENTS={agents}",
                       "--set", f"NUM_POINTS={points}", "--set", f"INITIAL_POINTS={initial}")
        assert report["environment"]["NUM_AGENTS"] == agents and report["environment"]["NUM_POINTS"] == points
        assert 0.0 <= report["metrics"]["on_time_rate"]["mean"] <= 1.0
    sized = ["--set", "NUM_AGENTS=6", "--set", "NUM_POINTS=9", "--set", "INITIAL_POINTS=5"]
    assert main(["compare", str(shared_checkpoint), "greedy", "--episodes", "1", "--no-tensorboard", *sized]) == 0
    assert "6 agents, 9 points" in capsys.readouterr().out
    assert main(["render", str(shared_checkpoint), "-o", str(tmp_path / "six.png"), *sized]) == 0
    assert (tmp_path / "six.png").stat().st_size > 0
    policy = load_policy(shared_checkpoint, overrides=("NUM_AGENTS=6", "NUM_POINTS=9", "INITIAL_POINTS=5"))
    assert len(policy.agents) == 6 and len(policy.agent_names) == 6
    from fleetmarl.envs import SamplingEnv

    env = SamplingEnv(policy.config)
    observations, _ = env.reset(seed=0)
    actions = policy.act(observations)
    assert set(actions) == set(env.possible_agents)
    alone = policy.act({env.possible_agents[4]: observations[env.possible_agents[4]]})
    assert set(alone) == {env.possible_agents[4]}


def test_a_per_vehicle_checkpoint_refuses_another_fleet_size(tmp_path: Path, capsys) -> None:
    per_vehicle = quiet_train(config_for(tmp_path, "pv", SHARE_PARAMETERS=False, NUM_EPISODES=2,
                                         MODEL_SAVE_INTERVAL=2)).last_checkpoint
    assert main(["eval", str(per_vehicle), "--episodes", "1", "--set", "NUM_AGENTS=4"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SHARE_PARAMETERS=True" in lines[0] and "NUM_AGENTS=3" in lines[0], lines
    assert main(["eval", str(per_vehicle), "--episodes", "1", "--set", "NUM_POINTS=9"]) == 2
    assert "SHARE_PARAMETERS" in capsys.readouterr().err


def test_a_shared_checkpoint_reads_as_many_points_as_asked_at_evaluation(shared_checkpoint: Path, tmp_path: Path,
                                                                       capsys) -> None:
    """POINT_VIEW is not a shape: a shared checkpoint may read fewer (or all) points than it trained with,
    and a per-vehicle one refuses the key in one line, exit 2."""
    from fleetmarl import load_policy

    wide = load_policy(shared_checkpoint)
    narrow = load_policy(shared_checkpoint, overrides=("POINT_VIEW=1",))
    assert wide.config.POINT_VIEW == 0 and narrow.config.POINT_VIEW == 1
    assert narrow.algo.team.actor.view == 1
    obs = BatchedSamplingEnv(narrow.config, 4).reset(seed=0)
    tensors = {k: torch.as_tensor(v) for k, v in obs.items()}
    n = narrow.config.NUM_POINTS

    def points_read(policy) -> torch.Tensor:  # (A, B): point logits the actor gives, one per point it read
        with torch.no_grad():
            out, _ = policy.algo._policy_out(policy.algo.team.actor, tensors)
        return (out[..., :n] > INACTIVE_LOGIT).sum(-1)

    assert int(points_read(narrow).max()) == 1 and int(points_read(wide).max()) > 1
    assert _eval(capsys, str(shared_checkpoint), "--episodes", "1", "--set", "POINT_VIEW=1")["metrics"]
    per_vehicle = quiet_train(config_for(tmp_path, "pv", SHARE_PARAMETERS=False, NUM_EPISODES=2,
                                         MODEL_SAVE_INTERVAL=2)).last_checkpoint
    assert main(["eval", str(per_vehicle), "--episodes", "1", "--set", "POINT_VIEW=2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "SHARE_PARAMETERS" in lines[0] and "POINT_VIEW" in lines[0], lines


def test_a_shared_checkpoint_reads_as_many_other_vehicles_as_asked_at_evaluation(shared_checkpoint: Path,
                                                                               capsys) -> None:
    """VEHICLE_VIEW is a choice at evaluation as POINT_VIEW is, also on a fleet larger than the trained one."""
    from fleetmarl import load_policy

    narrow = load_policy(shared_checkpoint, overrides=("VEHICLE_VIEW=1", "NUM_AGENTS=5"))
    assert narrow.config.VEHICLE_VIEW == 1 and narrow.algo.team.actor.vehicle_view == 1
    assert _eval(capsys, str(shared_checkpoint), "--episodes", "1", "--set", "VEHICLE_VIEW=1",
                 "--set", "NUM_AGENTS=5")["metrics"]


# ---------------------------------------------------------------------- learning
def test_shared_training_learns_without_nan() -> None:
    """The shared critic fits the rewards on the update's own path (PER, TD3, delayed actor, imitation on),
    and every weight stays finite while the actor moves."""
    from tests.test_agents import filled_buffer

    config = Config(**{**SHARED, "BATCH_SIZE": 16, "CAPACITY": 64, "GAMMA": 0.0, "LR_CRITIC": 1e-2})
    torch.manual_seed(0)
    agents = build_agents(config)
    algo = MADDPG(agents, config)
    buffer = filled_buffer(config)
    actor_before = [p.clone() for p in agents[0].actor.parameters()]
    losses = []
    for _ in range(60):
        batch = buffer.sample(config.BATCH_SIZE, "cpu")
        out = algo.update(batch)
        buffer.update_priorities(batch.indices, out["td_errors"])
        losses.append(float(out["critic_loss"]))
        assert torch.isfinite(out["actor_loss"]) and np.isfinite(losses[-1])
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert all(torch.isfinite(p).all() for p in agents[0].team.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agents[0].actor.parameters(), strict=True))


def test_smoke_training_with_shared_parameters(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = quiet_train(config_for(tmp_path, "smoke", NUM_EPISODES=8, ENABLE_MODEL_CHECKPOINTING=False,
                                    ENABLE_TENSORBOARD=True, RUN_NAME="smoke"))
    assert len(result.state.episode_rewards_log) == 8 and all(np.isfinite(result.state.episode_rewards_log))
    assert all(torch.isfinite(v).all() for v in weights(result).values())
    events = EventAccumulator(str(tmp_path / "runs" / "smoke"))
    events.Reload()
    assert sorted(t for t in events.Tags()["scalars"] if t.startswith("lr/")) == [
        "lr/agent_0_actor", "lr/agent_0_critic"]  # one optimizer pair, logged once


def test_the_disk_estimate_counts_the_shared_weights_once(tmp_path: Path) -> None:
    """The start line's estimate: a shared checkpoint's agent_0.pth holds the one network, so its size
    does not grow with the fleet, while per-vehicle checkpoints hold one network per vehicle."""
    from fleetmarl.trainer.checkpoint_folder import CheckpointFolder
    from fleetmarl.trainer.parts import build_parts

    def estimate(share: bool, agents: int) -> int:
        config = config_for(tmp_path, f"est_{share}_{agents}", SHARE_PARAMETERS=share, NUM_AGENTS=agents,
                            NUM_POINTS=12, SAVE_REPLAY_BUFFER=False)
        return CheckpointFolder(config, log=lambda _m: None).estimate_disk(build_parts(config))

    assert estimate(True, 2) == estimate(True, 4)
    assert estimate(False, 4) > 1.9 * estimate(False, 2)
