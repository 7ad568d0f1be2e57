"""GRPO end to end: config checks, grouped rollouts, determinism, exact resume, learning, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmem.agents.policy import ActorCritic
from rlmem.algos.grpo import GRPOConfig, check_config, rollout, train
from rlmem.config import PolicyConfig, load_preset, make_run_config
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError
from rlmem.evaluate import evaluate, load_policy
from rlmem.runs import Run

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ENV = "rlmem/MemoryConstructionVec-v0"
# 3 facts, 2 slots, 1-2 of them flagged relevant: a random writer scores ~0.3, the optimum 1.
TINY_ENV = dict(n_keys=3, n_values=2, n_slots=2, n_facts=3, competency="retrieval")
TINY = {
    "algo": "grpo",
    "policy": {"memory": "none", "memory_kwargs": {"hidden_size": 32}, "encoder": [32]},
    "grpo": {"group_size": 8, "groups_per_update": 8, "learning_rate": 3e-3},
}


def tiny_config(steps: int, seed: int = 1, **grpo):
    preset = {**TINY, "grpo": {**TINY["grpo"], **grpo}}
    return make_run_config(preset, env=ENV, env_kwargs=TINY_ENV, total_steps=steps, seed=seed, torch_threads=1)


def _params(run: Run) -> dict[str, torch.Tensor]:
    return run.load_checkpoint()["policy"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- config


def test_config_is_parsed_and_bad_values_are_one_clear_error():
    g = check_config(tiny_config(100, clip_coef=0.1, kl_coef=0.01))
    assert isinstance(g, GRPOConfig) and g.clip_coef == 0.1 and g.num_envs == 64
    with pytest.raises(ConfigError, match="valid keys in grpo: group_size"):
        tiny_config(100, num_generations=8)
    with pytest.raises(ConfigError, match="group_size"):
        tiny_config(100, group_size=1)
    with pytest.raises(ConfigError, match="num_minibatches"):
        tiny_config(100, num_minibatches=3)
    with pytest.raises(ConfigError, match="scale_rewards"):
        tiny_config(100, scale_rewards="std")
    with pytest.raises(ConfigError, match="integer"):
        tiny_config(100, group_size=2.5)
    with pytest.raises(ConfigError, match=r"\[ppo\]"):  # e.g. --num-envs, which only PPO reads
        make_run_config(TINY, env=ENV, num_envs=4)


# --------------------------------------------------------------------------- rollout


def test_rollout_groups_replay_one_seed_and_masks_whole_episodes():
    torch.manual_seed(0)
    envs = make_vec_env(ENV, 12)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space,
                         PolicyConfig(memory="none", memory_kwargs={"hidden_size": 8}, encoder=(8,)))
    seeds = [5] * 4 + [6] * 4 + [7] * 4
    batch = rollout(policy, envs, seeds, max_steps=100, device=torch.device("cpu"))
    F = envs.config.n_facts
    assert batch.obs.shape == (F, 12, envs.single_observation_space.shape[0]) and batch.valid.all()
    assert batch.lengths.tolist() == [F] * 12 and not np.isnan(batch.success).any()
    first = batch.obs[0]
    for g in range(3):  # the same stream inside a group, different streams across groups
        assert all(torch.equal(first[4 * g], first[4 * g + j]) for j in range(4))
    assert not torch.equal(first[0], first[4])
    # with these 12 different action streams at least one group disagrees on its return
    assert np.ptp(batch.returns.reshape(3, 4), axis=1).max() > 0


def test_rollout_masks_steps_after_each_envs_first_episode_end():
    """Endless T-Maze episodes end at different times; only each env's first episode counts."""
    torch.manual_seed(0)
    kw = {"n_corridors": 2, "length_mode": "uniform", "l_min": 1, "l_max": 4}
    envs = make_vec_env("rlmem/EndlessTMaze-v0", 16, kw)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space,
                         PolicyConfig(memory="gru", memory_kwargs={"hidden_size": 8}, encoder=(8,)))
    batch = rollout(policy, envs, [3] * 16, max_steps=500, device=torch.device("cpu"))
    T = batch.obs.shape[0]
    steps = torch.arange(T)[:, None]
    assert torch.equal(batch.valid, steps < torch.as_tensor(batch.lengths)[None])  # a prefix per env
    assert T == batch.lengths.max() and len(set(batch.lengths.tolist())) > 1
    # the same envs replayed with the recorded actions give the recorded returns
    envs.reset(seed=[3] * 16)
    replay = np.zeros(16)
    for t in range(T):
        _, reward, *_ = envs.step(batch.actions[t].numpy())
        replay += np.where(batch.valid[t].numpy(), reward, 0.0)
    np.testing.assert_allclose(replay, batch.returns)
    cut = rollout(policy, envs, [3] * 16, max_steps=2, device=torch.device("cpu"))
    assert cut.obs.shape[0] == 2 and (cut.lengths <= 2).all()
    assert np.isnan(cut.success).any()  # cut episodes: success unknown
    assert not np.isnan(cut.success[cut.lengths == 1]).any()  # ended at step 1: known


# --------------------------------------------------------------------------- determinism, resume


def test_two_seeded_runs_are_identical(tmp_path):
    cfg = tiny_config(64 * 3 * 3, seed=3)
    runs = [Run.create(tmp_path / f"r{i}", cfg) for i in range(2)]
    for run in runs:
        train(cfg, run)
    _assert_same(_params(runs[0]), _params(runs[1]))
    losses = [[(m["policy_loss"], m["episode_return"]) for m in run.metrics()] for run in runs]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    other = Run.create(tmp_path / "other", tiny_config(64 * 3 * 3, seed=4))
    train(other.config, other)
    assert any(not torch.equal(_params(runs[0])[k], _params(other)[k]) for k in _params(other))


def test_resume_with_a_reference_policy_equals_straight_run(tmp_path):
    cfg = tiny_config(64 * 3 * 4, seed=5, kl_coef=0.05)
    straight = Run.create(tmp_path / "straight", cfg)
    train(cfg, straight)
    paused = Run.create(tmp_path / "paused", cfg)
    first = train(cfg, paused, stop_after=64 * 3 * 2)
    assert first["paused"] and first["step"] == 64 * 3 * 2
    resumed = Run.open(paused.path)
    last = train(resumed.config, resumed, resume=True)
    assert last["step"] == 64 * 3 * 4 and "paused" not in last
    _assert_same(_params(straight), _params(resumed))
    assert [m["policy_loss"] for m in resumed.metrics()] == [m["policy_loss"] for m in straight.metrics()]
    assert all(m["kl"] >= 0 for m in straight.metrics()) and straight.metrics()[-1]["kl"] > 0
    # the frozen reference is the initial policy: it is saved, and differs from the trained one
    ckpt = straight.load_checkpoint()
    assert any(not torch.equal(ckpt["reference"][k], ckpt["policy"][k]) for k in ckpt["policy"])


# --------------------------------------------------------------------------- learning


def test_tiny_grpo_run_raises_the_reward(tmp_path):
    """40 updates (~4 s): the greedy writer goes from chance to (near) always right."""
    cfg = tiny_config(64 * 3 * 40, seed=1)
    run = Run.create(tmp_path / "learn", cfg)
    torch.manual_seed(cfg.seed)  # train() builds its policy right after seeding: the same init
    before = ActorCritic(*_spaces(), cfg.policy)
    train(cfg, run)
    returns = [m["episode_return"] for m in run.metrics()]
    assert np.mean(returns[-5:]) > np.mean(returns[:5]) + 0.4, returns
    after, _ = load_policy(run)
    kw = dict(episodes=200, seed=12345, num_envs=32)
    start, end = evaluate(before.eval(), ENV, TINY_ENV, **kw), evaluate(after, ENV, TINY_ENV, **kw)
    assert start.success < 0.5 and end.success >= 0.9, (start, end)
    assert set(end.breakdown["by competency"]) == {"retrieval"}


def _spaces():
    envs = make_vec_env(ENV, 1, TINY_ENV)
    return envs.single_observation_space, envs.single_action_space


# --------------------------------------------------------------------------- command line


@pytest.mark.slow  # two subprocesses, each importing torch and tensorboard
def test_cli_trains_the_writer_preset_and_eval_prints_the_competency_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def rlmem(*args):
        return subprocess.run([sys.executable, "-m", "rlmem", *map(str, args)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    assert load_preset(ROOT / "agents/writer-grpo.toml")["algo"] == "grpo"
    train_proc = rlmem("train", "--env", ENV, "--agent", "agents/writer-grpo.toml", "--steps", "2048", "--threads", "1",
                       "--quiet", "--runs-dir", tmp_path, "--run-name", "w")
    assert train_proc.returncode == 0, train_proc.stderr
    assert 'algo = "grpo"' in (tmp_path / "w" / "config.toml").read_text()
    proc = rlmem("eval", tmp_path / "w", "--episodes", "40")
    assert proc.returncode == 0, proc.stderr
    assert "by competency" in proc.stdout and "retrieval" in proc.stdout and "conflict" in proc.stdout
    assert "accuracy" in proc.stdout
