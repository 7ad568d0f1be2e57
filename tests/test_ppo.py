"""Recurrent PPO end to end: determinism, exact resume, truncation bootstrap, learning."""

import numpy as np
import pytest
import torch

from rlmem.algos.ppo import train
from rlmem.config import load_preset, make_run_config
from rlmem.evaluate import evaluate, load_policy
from rlmem.runs import Run

TINY = {"ppo": {"num_envs": 4, "num_steps": 16, "num_minibatches": 2, "update_epochs": 2},
        "policy": {"memory": "gru", "memory_kwargs": {"hidden_size": 16}, "encoder": [16]}}


def _params(run: Run) -> dict[str, torch.Tensor]:
    return run.load_checkpoint()["policy"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_seeded_runs_are_identical(tmp_path):
    cfg = make_run_config(TINY, env="rlmem/EndlessTMaze-v0", total_steps=256, seed=3, torch_threads=1)
    runs = [Run.create(tmp_path / f"r{i}", cfg) for i in range(2)]
    for run in runs:
        train(cfg, run)
    _assert_same(_params(runs[0]), _params(runs[1]))
    losses = [[(m["policy_loss"], m["value_loss"]) for m in run.metrics()] for run in runs]
    assert losses[0] == losses[1]
    # and a different seed gives different parameters (the test above could not pass vacuously)
    other = Run.create(tmp_path / "other", make_run_config(TINY, env="rlmem/EndlessTMaze-v0", total_steps=256, seed=4, torch_threads=1))
    train(other.config, other)
    assert any(not torch.equal(_params(runs[0])[k], _params(other)[k]) for k in _params(other))


@pytest.mark.parametrize("memory", ["gru", "lstm"])
def test_resume_equals_straight_run(tmp_path, memory):
    preset = {**TINY, "policy": {**TINY["policy"], "memory": memory}, "checkpoint_every": 100}
    cfg = make_run_config(preset, env="rlmem/EndlessTMaze-v0", total_steps=640, seed=5, torch_threads=1)
    straight = Run.create(tmp_path / "straight", cfg)
    train(cfg, straight)

    paused = Run.create(tmp_path / "paused", cfg)
    first = train(cfg, paused, stop_after=320)
    assert first["paused"] and first["step"] == 320
    resumed = Run.open(paused.path)
    last = train(resumed.config, resumed, resume=True)
    assert last["step"] == 640 and "paused" not in last
    _assert_same(_params(straight), _params(resumed))
    assert [m["step"] for m in resumed.metrics()] == [m["step"] for m in straight.metrics()]
    assert [m["value_loss"] for m in resumed.metrics()] == [m["value_loss"] for m in straight.metrics()]


def test_truncation_bootstraps_with_the_value_of_the_final_observation(monkeypatch):
    """On a truncated step the stored reward is r + gamma * V(final_obs); on a terminated one it is r."""
    from rlmem.algos import ppo

    seen = {}
    real_gae = ppo.gae

    def spy(rewards, values, ends, last, gamma, lam):
        seen["rewards"] = rewards.clone()
        return real_gae(rewards, values, ends, last, gamma, lam)

    monkeypatch.setattr(ppo, "gae", spy)
    # 1 corridor of length 1: max_steps = 6 * 2 = 12. A policy that never turns is truncated at 12.
    env_kwargs = {"n_corridors": 1, "length_mode": "fixed", "l_min": 1, "l_max": 1}
    cfg = make_run_config(
        {**TINY, "ppo": {**TINY["ppo"], "num_steps": 12, "update_epochs": 1}, "policy": {**TINY["policy"]}},
        env="rlmem/EndlessTMaze-v0", env_kwargs=env_kwargs, total_steps=48, seed=0, torch_threads=1,
    )
    # always "forward" inside the corridor but pause at x = 0: forward is action 0; force action 1 (left)
    # at x = 0 means a penalty and no move, so the episode never ends before the time limit
    monkeypatch.setattr(
        ppo.ActorCritic, "sample",
        lambda self, params, deterministic=False: (torch.ones(params.shape[0], dtype=torch.long),
                                                   torch.zeros(params.shape[0])),
    )
    values = {}
    real_final = ppo._final_values

    def final_spy(policy, info, truncated, state, device):
        v = real_final(policy, info, truncated, state, device)
        values["v"] = v.clone()
        return v

    monkeypatch.setattr(ppo, "_final_values", final_spy)
    train(cfg)
    r = seen["rewards"]
    assert torch.allclose(r[:-1], torch.full_like(r[:-1], -0.01))  # the step penalty, no bootstrap
    expected_last = -0.01 + cfg.ppo.gamma * values["v"]
    assert torch.allclose(r[-1], expected_last)
    assert (values["v"] != 0).all()  # the bootstrap really added something


@pytest.mark.slow
def test_gru_learns_a_tmaze_that_the_memoryless_agent_cannot(tmp_path):
    """2 corridors of length 3: memoryless is capped at 0.25 success, GRU gets ~1."""
    env_kwargs = {"n_corridors": 2, "length_mode": "fixed", "l_min": 3, "l_max": 3}
    results = {}
    for memory in ("gru", "none"):
        preset = load_preset(f"agents/{memory}.toml")
        cfg = make_run_config(preset, env="rlmem/EndlessTMaze-v0", env_kwargs=env_kwargs, total_steps=49_152,
                              num_steps=32, seed=1, torch_threads=1)
        run = Run.create(tmp_path / memory, cfg)
        train(cfg, run)
        policy, _ = load_policy(run)
        results[memory] = evaluate(policy, cfg.env, env_kwargs, episodes=200, seed=12345).success
    assert results["gru"] >= 0.9, results
    assert results["none"] <= 0.4, results


def test_window_logs_subgoal_success_rate_where_the_env_reports_it():
    """GoatGrid episodes hold several subgoals: PPO's log has their success rate as well as the
    whole-episode success (which stays near 0 while subgoals already succeed)."""
    from rlmem.algos.common import episode_row, recent_window, restore_rows

    window = restore_rows([[1.0, 10, 1.0], [0.0, 5, float("nan")]])  # an older checkpoint's rows
    assert recent_window(window) == {"episode_return": 0.5, "episode_length": 7.5, "success": 1.0}
    window.append(episode_row(2.0, 3, success=False, subgoal_rate=0.25))
    assert recent_window(window)["subgoal_success_rate"] == 0.25
    cfg = make_run_config(TINY, env="rlmem/GoatGridSmall-v0", total_steps=512, seed=2, torch_threads=1)
    metrics = train(cfg)
    assert 0.0 <= metrics["subgoal_success_rate"] <= 1.0 and "success" in metrics
    tmaze = train(make_run_config(TINY, env="rlmem/EndlessTMaze-v0", total_steps=128, seed=2, torch_threads=1))
    assert "subgoal_success_rate" not in tmaze
