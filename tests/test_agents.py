"""MADDPG agents and learner: masked acting, end-to-end learning of the Transformer, delayed updates,
determinism and exact checkpoint round trips."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fleetmarl.config import Config
from fleetmarl.envs.spaces import observation_dims
from fleetmarl.errors import CheckpointError
from fleetmarl.learner import MADDPG, MADDPGAgent, build_agents, select_actions
from fleetmarl.learner.buffer import ReplayBuffer

TINY = dict(NUM_AGENTS=3, NUM_POINTS=5, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
            BATCH_SIZE=16, CAPACITY=64)


def tiny(**changes) -> Config:
    return Config(**{**TINY, **changes})


def random_obs(config: Config, batch: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    d = observation_dims(config)
    a = d.num_agents
    mask = torch.rand(batch, a, d.num_actions, generator=gen) < 0.5
    mask[..., d.num_points] = True  # stay is always allowed
    points = torch.randn(batch, a, d.num_points, d.point, generator=gen)
    points[..., d.active_column] = points[:, :1, :, d.active_column]  # a point is active for every agent alike
    return {
        "state": torch.randn(batch, a, d.state, generator=gen),
        "point_features": points,
        "other_obs": torch.randn(batch, a, d.other_rows, d.other, generator=gen),
        "action_mask": mask,
    }


def filled_buffer(config: Config, seed: int = 0) -> ReplayBuffer:
    buffer = ReplayBuffer(config, observation_dims(config), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    d = observation_dims(config)
    for _ in range(8):
        obs, nxt = random_obs(config, 4, gen), random_obs(config, 4, gen)
        actions = torch.randint(0, d.num_actions, (4, d.num_agents), generator=gen)
        rewards = torch.randn(4, d.num_agents, generator=gen)
        buffer.add({k: v.numpy() for k, v in obs.items()}, actions.numpy(), rewards.numpy(),
                   {k: v.numpy() for k, v in nxt.items()}, np.zeros(4, dtype=bool))
    return buffer


def setup(config: Config, seed: int = 0) -> tuple[list[MADDPGAgent], MADDPG, ReplayBuffer]:
    torch.manual_seed(seed)
    agents = build_agents(config, "cpu")
    return agents, MADDPG(agents, config), filled_buffer(config, seed)


def train(algo: MADDPG, buffer: ReplayBuffer, updates: int) -> list[dict[str, torch.Tensor]]:
    outs = []
    for _ in range(updates):
        batch = buffer.sample(algo.config.BATCH_SIZE, "cpu")
        out = algo.update(batch)
        buffer.update_priorities(batch.indices, out["td_errors"])
        outs.append(out)
    return outs


# ---------------------------------------------------------------------- acting
def test_agent_act_types_for_numpy_and_torch() -> None:
    config = tiny()
    agent = build_agents(config)[0]
    obs = random_obs(config, 6, torch.Generator().manual_seed(0))
    one = [obs[k][0, 0].numpy() for k in ("state", "point_features", "other_obs")]
    action = agent.act(*one, action_mask=obs["action_mask"][0, 0].numpy())
    assert type(action) is int
    many = agent.act(*(obs[k][:, 0].numpy() for k in ("state", "point_features", "other_obs")),
                     action_mask=obs["action_mask"][:, 0].numpy())
    assert isinstance(many, np.ndarray) and many.dtype == np.int64 and many.shape == (6,)
    assert many[0] == action
    tensor = agent.act(*(obs[k][:, 0] for k in ("state", "point_features", "other_obs")))
    assert tensor.dtype == torch.int64 and tensor.shape == (6,)


@pytest.mark.parametrize("noise", [0.0, 100.0])
def test_masked_actions_are_never_chosen(noise: float) -> None:
    config = tiny()
    agents = build_agents(config)
    algo = MADDPG(agents, config)
    obs = random_obs(config, 256, torch.Generator().manual_seed(1))
    actions = algo.act(obs, noise)
    assert actions.shape == (256, config.NUM_AGENTS) and actions.dtype == torch.int64
    assert bool(obs["action_mask"].gather(2, actions.unsqueeze(-1)).all())
    single = agents[1].act(obs["state"][:, 1], obs["point_features"][:, 1], obs["other_obs"][:, 1], noise_std=noise,
                           action_mask=obs["action_mask"][:, 1])
    assert bool(obs["action_mask"][:, 1].gather(1, single.unsqueeze(-1)).all())


def test_all_masked_row_falls_back_to_stay() -> None:
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 2] = True
    assert select_actions(torch.randn(2, 7), 1.0, mask, fallback=5).tolist() == [5, 2]


def test_batched_act_follows_every_update_and_load() -> None:
    config = tiny(ENABLE_DELAYED_POLICY_UPDATES=False, LR_ACTOR=0.05, COORDINATED_CHOICES=False)
    agents, algo, buffer = setup(config)
    obs = random_obs(config, 64, torch.Generator().manual_seed(2))
    obs["action_mask"][:] = True  # every action allowed, so a weight change shows in the argmax

    def check() -> torch.Tensor:
        batched = algo.act(obs, 0.0)
        for i, agent in enumerate(agents):
            # with its mask: these random features' ``feasible`` column does not repeat it, as a real one does
            alone = agent.act(obs["state"][:, i], obs["point_features"][:, i], obs["other_obs"][:, i],
                              action_mask=obs["action_mask"][:, i])
            assert torch.equal(batched[:, i], alone)
        return batched

    first = check()
    train(algo, buffer, 3)  # agents are views of the team's weights: they act with the updated ones at once
    second = check()
    assert not torch.equal(first, second)
    torch.manual_seed(5)
    other = build_agents(config)
    agents[0].load_checkpoint_state(roundtrip(other[0].checkpoint_state()))
    check()


# ---------------------------------------------------------------------- learning
def test_transformer_learns_end_to_end() -> None:
    config = tiny(ENABLE_DELAYED_POLICY_UPDATES=False, GRAD_CLIP_NORM=0.0)
    agents, algo, buffer = setup(config)
    before = [{k: v.clone() for k, v in a.transformer.state_dict().items()} for a in agents]
    train(algo, buffer, 1)
    team = agents[0].team
    for i, (agent, old) in enumerate(zip(agents, before, strict=True)):
        assert agent.transformer.state_dict().keys() == agent.actor.encoder.state_dict().keys()
        grads = [p.grad[i] for p in team.actor.encoder.parameters()]  # agent i's slice of each gradient
        assert sum(float(g.abs().sum()) for g in grads) > 0
        changed = [not torch.equal(old[k], v) for k, v in agent.transformer.state_dict().items()]
        assert all(changed)
        assert any(float(p.grad[i].abs().sum()) > 0 for p in team.critic.encoder.parameters())


def test_delayed_updates_hold_actor_and_targets_between_actor_steps() -> None:
    config = tiny(ENABLE_DELAYED_POLICY_UPDATES=True, ACTOR_UPDATE_FREQUENCY=2)
    agents, algo, buffer = setup(config)
    train(algo, buffer, 1)  # update 0 trains the actor
    actor = [p.clone() for p in agents[0].actor.parameters()]
    target = [p.clone() for p in agents[0].critic_target.parameters()]
    critic = [p.clone() for p in agents[0].critic.parameters()]
    out = train(algo, buffer, 1)[0]  # update 1: critic only
    assert all(torch.equal(a, b) for a, b in zip(actor, agents[0].actor.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(target, agents[0].critic_target.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(critic, agents[0].critic.parameters(), strict=True))
    assert algo.state_dict()["updates"] == 2 and algo.state_dict()["actor_updates"] == 1
    assert set(out) >= {"critic_loss", "actor_loss", "q_mean", "td_abs_mean", "td_errors"}
    assert all(isinstance(v, torch.Tensor) for v in out.values())
    assert out["td_errors"].shape == (config.BATCH_SIZE,)


def test_targets_move_by_polyak_average() -> None:
    config = tiny(ENABLE_DELAYED_POLICY_UPDATES=False, TAU=0.25)
    agents, algo, buffer = setup(config)
    old_target = [p.clone() for p in agents[2].actor_target.parameters()]
    train(algo, buffer, 1)
    for old, target, online in zip(old_target, agents[2].actor_target.parameters(), agents[2].actor.parameters(), strict=True):
        torch.testing.assert_close(target, 0.75 * old + 0.25 * online)


def test_critic_fits_rewards() -> None:
    config = tiny(GAMMA=0.0, LR_CRITIC=1e-2, ENABLE_PRIORITIZED_REPLAY=False)
    _, algo, buffer = setup(config)
    losses = [float(out["critic_loss"]) for out in train(algo, buffer, 60)]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_same_seed_gives_identical_training() -> None:
    config = tiny()
    runs = []
    for _ in range(2):
        agents, algo, buffer = setup(config, seed=3)
        outs = train(algo, buffer, 3)
        runs.append(([p.clone() for a in agents for p in a.parameters()], [float(o["critic_loss"]) for o in outs]))
    assert runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))


def test_lr_schedule_applies_to_every_optimizer() -> None:
    config = tiny(LR_DECAY_TYPE="step", LR_DECAY_RATE=0.5, LR_DECAY_EPISODES=10, LR_MIN_RATIO=0.1)
    agents = build_agents(config)
    algo = MADDPG(agents, config)
    algo.set_episode(25)
    for agent in agents:
        assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(config.LR_ACTOR * 0.25)
        assert agent.critic_optimizer.param_groups[0]["lr"] == pytest.approx(config.LR_CRITIC * 0.25)


def test_continuous_agents_train() -> None:
    config = tiny(ENABLE_DELAYED_POLICY_UPDATES=False)
    torch.manual_seed(0)
    agents = build_agents(config, action_type="continuous")
    algo = MADDPG(agents, config)
    d = observation_dims(config)
    gen = torch.Generator().manual_seed(0)
    obs, nxt = random_obs(config, 8, gen), random_obs(config, 8, gen)
    actions = algo.act(obs, 0.3)
    assert actions.shape == (8, d.num_agents, d.num_actions) and float(actions.abs().max()) <= 1.0
    from fleetmarl.learner.buffer import Batch
    batch = Batch(obs=obs, actions=actions, rewards=torch.randn(8, d.num_agents), next_obs=nxt,
                  dones=torch.zeros(8), weights=torch.ones(8), indices=torch.arange(8))
    before = [p.clone() for p in agents[0].transformer.parameters()]
    out = algo.update(batch)
    assert torch.isfinite(out["actor_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, agents[0].transformer.parameters(), strict=True))


def test_rows_without_a_recorded_teacher_choice_are_relabelled_by_a_pure_teacher_or_not_imitated() -> None:
    from fleetmarl.envs.policies import greedy_policy
    from fleetmarl.learner.buffer import NOT_TAUGHT

    config = tiny()
    torch.manual_seed(0)
    buffer = filled_buffer(config)  # added without teacher choices, as a buffer saved before they were kept
    batch = buffer.sample(16)
    assert (batch.taught == NOT_TAUGHT).all()
    greedy = greedy_policy({k: v.numpy() for k, v in batch.obs.items()})
    relabelled = MADDPG(build_agents(config), config, imitation=True, relabel=greedy_policy)._taught(batch)
    assert relabelled.tolist() == greedy.tolist()
    algo = MADDPG(build_agents(config), config, imitation=True)
    assert (algo._taught(batch) == NOT_TAUGHT).all()
    out = algo.team.actor(*algo._agent_major(batch.obs)).float()
    offered = algo._offered(batch.obs, batch.actions).transpose(0, 1)
    critic = algo.critic_loss(batch)
    loss = algo.imitation_loss(batch, critic, out, offered, algo._replay_actions(batch.actions))
    assert torch.equal(loss, torch.zeros_like(loss))  # nothing recorded, nothing imitated


def test_each_critic_learns_its_own_agents_reward() -> None:
    config = tiny(GAMMA=0.0)  # no bootstrap: the target is the reward itself
    _, algo, buffer = setup(config)
    batch = buffer.sample(16)
    rewards = batch.rewards.transpose(0, 1)  # (A, B), different per agent (random draws)
    assert not torch.allclose(rewards[0], rewards[1])
    assert torch.allclose(algo.critic_loss(batch).y, rewards)


# ---------------------------------------------------------------------- checkpoints
def roundtrip(state: dict) -> dict:
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=True)


def test_checkpoint_round_trip_continues_identically() -> None:
    config = tiny()
    agents, algo, buffer = setup(config, seed=4)
    algo.set_episode(8)
    train(algo, buffer, 3)
    saved = [roundtrip(a.checkpoint_state()) for a in agents]
    assert set(saved[0]) >= {"actor", "critic", "actor_target", "critic_target", "actor_optimizer",
                             "critic_optimizer", "transformer", "lr_actor", "lr_critic", "lr_schedule", "meta"}
    assert saved[0]["meta"]["num_points"] == config.NUM_POINTS
    algo_state, buffer_state = dict(algo.state_dict()), roundtrip(buffer.state_dict())
    rng = torch.get_rng_state()

    expected = [float(o["critic_loss"]) for o in train(algo, buffer, 3)]
    expected_params = [p.clone() for a in agents for p in a.parameters()]

    torch.manual_seed(99)  # different init: everything must come from the checkpoint
    fresh = build_agents(config)
    for agent, state in zip(fresh, saved, strict=True):
        agent.load_checkpoint_state(state)
    fresh_algo = MADDPG(fresh, config)
    fresh_algo.load_state_dict(algo_state)
    fresh_buffer = ReplayBuffer(config, observation_dims(config), seed=123)
    fresh_buffer.load_state_dict(buffer_state)
    assert fresh[0].actor_optimizer.param_groups[0]["lr"] == agents[0].actor_optimizer.param_groups[0]["lr"]
    torch.set_rng_state(rng)
    got = [float(o["critic_loss"]) for o in train(fresh_algo, fresh_buffer, 3)]
    assert got == expected
    assert all(torch.equal(a, b) for a, b in zip(expected_params, (p for a in fresh for p in a.parameters()), strict=True))


def test_checkpoint_of_the_former_per_agent_networks_loads_and_acts_the_same() -> None:
    """agent_i.pth files written by 0.1 (commit 9b4b01c, one nn.Module per agent) load into the stacked
    team and give the logits 0.1 computed, on observations saved with them (tests/data/main_9b4b01c)."""
    from pathlib import Path

    from fleetmarl.checkpoint import load_model_checkpoint

    data = Path(__file__).parent / "data" / "main_9b4b01c"
    expected = torch.load(data / "expected_logits.pt", weights_only=True)
    config = Config(NUM_AGENTS=3, NUM_POINTS=6, INITIAL_POINTS=3, HIDDEN_DIM=16, EMBED_DIM=8, TRANSFORMER_HEADS=2,
                    BATCH_SIZE=32, CAPACITY=512, NUM_ENVS=4, MAP_SIZE=2000.0)
    agents = build_agents(config)
    state = load_model_checkpoint(agents, data / expected["checkpoint"], "cpu")
    assert state["episode"] == 8 and agents[0].team.point_rows == "all" and agents[0].team.critic_rows == "all"
    obs = expected["obs"]
    for i, agent in enumerate(agents):
        args = [obs[k][:, i].float().unsqueeze(0) for k in ("state", "point_features", "other_obs")]
        torch.testing.assert_close(agent.actor(*args)[0], expected["logits"][:, i], rtol=1e-4, atol=1e-4)
    assert agents[1].actor_optimizer.state_dict()["state"][0]["exp_avg"].shape == agents[1].actor.state_dict()[
        "encoder.input.weight"].shape


def test_checkpoint_for_other_shape_is_refused_in_one_line() -> None:
    state = roundtrip(build_agents(tiny(NUM_POINTS=4))[0].checkpoint_state())
    agent = build_agents(tiny())[0]
    with pytest.raises(CheckpointError, match="checkpoint was made for NUM_POINTS=4 but the config has NUM_POINTS=5"):
        agent.load_checkpoint_state(state)
    wide = roundtrip(build_agents(tiny(HIDDEN_DIM=32))[0].checkpoint_state())
    with pytest.raises(CheckpointError, match="HIDDEN_DIM=32"):
        agent.load_checkpoint_state(wide)


def test_critics_keep_the_rows_they_were_trained_on() -> None:
    """New critics read only active points; a file without ``critic_rows`` (0.1, early 0.2) loads with
    critics over every slot, so a resumed run continues with the same maths."""
    saved = build_agents(tiny())[0].checkpoint_state()
    assert saved["meta"]["critic_rows"] == "active"
    old = roundtrip(saved)
    del old["meta"]["critic_rows"]
    agents = build_agents(tiny())
    agents[0].load_checkpoint_state(old)
    assert agents[0].team.critic_rows == "all" and agents[0].team.critic.active_column is None
    agents[0].load_checkpoint_state(roundtrip(saved))
    assert agents[0].team.critic_rows == "active" and agents[0].team.critic_target.active_column is not None


def imitation_setup(config: Config):
    """An untrained learner and a 32-row batch with greedy's choices as the teacher's: what
    ``imitation_loss`` takes (algo, batch, critic step, logits, offered masks, replayed one-hots)."""
    from fleetmarl.envs.policies import greedy_policy

    torch.manual_seed(0)
    batch = filled_buffer(config).sample(32)
    batch.taught = torch.as_tensor(greedy_policy({k: v.numpy() for k, v in batch.obs.items()}))
    algo = MADDPG(build_agents(config), config, imitation=True)
    out = algo.team.actor(*algo._agent_major(batch.obs)).float()
    offered = algo._offered(batch.obs, batch.actions).transpose(0, 1)
    return algo, batch, algo.critic_loss(batch), out, offered, algo._replay_actions(batch.actions)


def test_q_filter_margin_keeps_imitating_unless_the_critic_is_confident() -> None:
    """BC_Q_MARGIN: with a margin beyond any Q difference the filter passes every allowed row (plain
    cloning of the teacher); with none it passes only rows where the critic prefers the teacher."""
    config = tiny()
    algo, batch, critic, out, offered, replayed = imitation_setup(config)
    cloned = algo.imitation_loss(batch, critic, out, offered, replayed, q_filter=False)
    losses = {}
    for margin in (0.0, 1e9):
        algo.config = config.replace(BC_Q_MARGIN=margin)
        losses[margin] = algo.imitation_loss(batch, critic, out, offered, replayed)
    assert torch.allclose(losses[1e9], cloned)
    assert not torch.allclose(losses[0.0], cloned)
