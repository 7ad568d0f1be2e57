"""DAgger (``algo = "dagger"``): config checks, the beta schedule, imitation learning, runs, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clitools import assert_clean_error, rlmem_cli
from rlmem.algos import dagger
from rlmem.algos.dagger import DaggerConfig, beta_at
from rlmem.config import load_preset, make_run_config
from rlmem.errors import ConfigError
from rlmem.runs import Run

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ENV = "rlmem/GoatGridSmall-v0"


def preset(**dagger_kw) -> dict:
    """A small student (GRU-32) on 2 envs x 32 steps, 8 gradient steps per round."""
    return {
        "algo": "dagger",
        "policy": {"memory": "gru", "memory_kwargs": {"hidden_size": 32}, "encoder": [32], "activation": "relu"},
        "ppo": {"num_envs": 2, "num_steps": 32, "num_minibatches": 1, "update_epochs": 8, "learning_rate": 2e-3},
        "dagger": dagger_kw,
    }


def test_check_config_rejects_bad_settings_with_the_valid_ones():
    cfg = make_run_config(preset(), env=ENV)
    assert dagger.check_config(cfg) == DaggerConfig()
    with pytest.raises(ConfigError, match="semantic_map, spatial_graph, memoryless"):
        make_run_config(preset(teacher="oracle"), env=ENV)
    with pytest.raises(ConfigError, match="language_threshold"):
        make_run_config(preset(teacher_kwargs={"threshold": 0.5}), env=ENV)
    with pytest.raises(ConfigError, match="beta_start and beta_end"):
        make_run_config(preset(beta_end=1.5), env=ENV)
    with pytest.raises(ConfigError, match="beta_fraction"):
        make_run_config(preset(beta_fraction=0.0), env=ENV)
    with pytest.raises(ConfigError, match="buffer_rounds"):
        make_run_config(preset(buffer_rounds=0), env=ENV)
    with pytest.raises(ConfigError, match="valid keys in dagger: teacher"):
        make_run_config(preset(beta=0.5), env=ENV)
    with pytest.raises(ConfigError, match="does not read ppo.ent_coef"):
        make_run_config({**preset(), "ppo": {**preset()["ppo"], "ent_coef": 0.1}}, env=ENV)
    with pytest.raises(ConfigError, match="GoatGrid"):
        make_run_config(preset(), env="rlmem/EndlessTMaze-v0")
    with pytest.raises(ConfigError, match="the \\[dagger\\] table is for algo dagger"):
        make_run_config({**preset(beta_end=0.5), "algo": "ppo"}, env=ENV)
    for name, memory in (("gru-nav-dagger", "gru"), ("gtrxl-nav-dagger", "gtrxl"), ("nav-none-dagger", "none")):
        cfg = make_run_config(load_preset(ROOT / "agents" / f"{name}.toml"), env=ENV)
        assert cfg.algo == "dagger" and cfg.policy.memory == memory and cfg.env_kwargs == {"gps": True}


def test_beta_falls_linearly_then_stays():
    d = DaggerConfig(beta_start=1.0, beta_end=0.2, beta_fraction=0.5)
    assert [beta_at(s, 1000, d) for s in (0, 250, 500, 900)] == pytest.approx([1.0, 0.6, 0.2, 0.2])


@pytest.mark.parametrize("student, first_above, last_below", [
    # preset()'s GRU-32 gets to about 0.9.
    ("gru-32", 1.4, 1.0),
    # agents/gtrxl-nav-dagger.toml's network: its 192-step window is longer than these chunks,
    # so every replay starts from a stored window. It learns faster: the first round's mean
    # loss is ~1.4, the last ~0.2-0.5.
    ("gtrxl-nav-dagger", 1.2, 0.8),
])
def test_student_learns_to_imitate_the_teacher(student, first_above, last_below):
    # Pure behaviour cloning (beta 1 throughout): the cross-entropy to goat-modular's labels
    # starts near log(5) (a near-uniform actor) and must fall well below the entropy of the
    # labels' marginal distribution (1.21 nats over 40 teacher episodes on this env: forward
    # 57%, left 17%, right 14%, stop 10%, toggle 2%), which is all a student that ignored its
    # inputs could reach.
    settings = preset(beta_end=1.0)
    if student != "gru-32":
        settings["policy"] = load_preset(ROOT / "agents" / f"{student}.toml")["policy"]
    cfg = make_run_config(settings, env=ENV, total_steps=64 * 24, seed=2, torch_threads=1)
    rows = []
    dagger.train(cfg, callback=rows.append)
    assert rows[0]["imitation_loss"] > first_above
    assert min(r["imitation_loss"] for r in rows[-4:]) < last_below
    assert all(r["teacher_share"] == 1.0 for r in rows)
    assert rows[-1]["agreement"] > 0.5


def test_runs_are_seeded_and_evaluate_like_ppo_runs(tmp_path):
    cfg = make_run_config(preset(beta_start=0.5, beta_end=0.0, beta_fraction=1.0), env=ENV, total_steps=64 * 3,
                          seed=4, torch_threads=1)
    params = []
    for name in ("a", "b"):
        run = Run.create(tmp_path / name, cfg)
        metrics = dagger.train(cfg, run)
        params.append(Run.open(tmp_path / name).load_checkpoint()["policy"])
    assert metrics["step"] == 192 and 0.0 < metrics["teacher_share"] < 1.0
    assert params[0].keys() == params[1].keys()
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])
    res = dagger.evaluate_run(Run.open(tmp_path / "a"), episodes=2, seed=100, num_envs=2)
    assert res.episodes == 2
    assert res.breakdown["success/SPL by modality"]["all"]["subgoals"] == 10
    # resume continues the schedule from the checkpoint
    more = make_run_config(preset(beta_start=0.5, beta_end=0.0, beta_fraction=1.0), env=ENV, total_steps=64 * 4,
                           seed=4, torch_threads=1)
    run = Run(tmp_path / "a", more)
    assert dagger.train(more, run, resume=True)["step"] == 256


def test_nav_benchmark_wipes_a_learned_memory_at_each_subgoal(tmp_path, monkeypatch):
    # benchmarks/nav_agents.py --wipe: the same weights with the memory state reset at every
    # subgoal start (the learned counterpart of the memoryless modular agent).
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import nav_agents

    cfg = make_run_config(preset(), env=ENV, total_steps=64, seed=3, torch_threads=1)
    dagger.train(cfg, Run.create(tmp_path / "r", cfg))
    starts: list[list[bool]] = []
    real_actor = nav_agents.policy_actor

    def recording_actor(policy, deterministic=True):
        act, flags = real_actor(policy, deterministic), []
        starts.append(flags)

        def wrapped(obs, info, start):
            flags.append(bool(start))
            return act(obs, info, start)
        return wrapped

    monkeypatch.setattr(nav_agents, "policy_actor", recording_actor)
    kept = nav_agents.play_learned(str(tmp_path / "r"), ENV, {"subgoal_budget": 6}, 2, 100)
    wiped = nav_agents.play_learned(str(tmp_path / "r"), ENV, {"subgoal_budget": 6}, 2, 100, wipe=True)
    assert sum(starts[0]) == 2                                 # one start per episode
    assert sum(starts[1]) == sum(len(r.successes) for r in wiped) == 10  # one per subgoal
    # subgoal 0 is played from the same (fresh) state either way
    assert [r.spls[0] for r in kept] == [r.spls[0] for r in wiped]


def test_cli_train_and_a_bad_teacher(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('algo = "dagger"\n[dagger]\nteacher = "oracle"\n')
    assert_clean_error(rlmem_cli("train", "--env", ENV, "--agent", bad, "--runs-dir", tmp_path), "dagger.teacher")
    proc = rlmem_cli("train", "--env", ENV, "--agent", ROOT / "agents" / "gru-nav-dagger.toml", "--steps", 1024,
                     "--num-envs", 4, "--runs-dir", tmp_path, "--run-name", "r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "steps=1024" in proc.stdout
    assert (tmp_path / "r" / "metrics.jsonl").read_text().count("imitation_loss") == 2
    assert Run.open(tmp_path / "r").config.env_kwargs == {"gps": True}  # the preset's env_kwargs


def test_ppo_starts_from_a_dagger_run(tmp_path):
    from rlmem.agents.policy import ActorCritic
    from rlmem.algos import ppo
    from rlmem.algos.common import init_weights
    from rlmem.envs.vector import make_env
    from rlmem.errors import RunError

    cfg = make_run_config(preset(), env=ENV, total_steps=64, seed=5, torch_threads=1)
    dagger.train(cfg, Run.create(tmp_path / "dagger", cfg))
    taught = Run.open(tmp_path / "dagger").load_checkpoint()["policy"]
    env = make_env(ENV)
    fresh = ActorCritic(env.observation_space, env.action_space, cfg.policy)
    init_weights(fresh, str(tmp_path / "dagger"))
    assert all(torch.equal(fresh.state_dict()[k], taught[k]) for k in taught)
    other = ActorCritic(env.observation_space, env.action_space, make_run_config({**preset(), "policy": {
        "memory": "lstm", "encoder": [32]}}, env=ENV).policy)
    with pytest.raises(RunError, match="differs from this run's"):
        init_weights(other, str(tmp_path / "dagger"))
    with pytest.raises(ConfigError, match="algo ppo or dagger"):
        make_run_config({"algo": "nec", "policy": {"memory": "none"}}, env="CartPole-v1", init_from=str(tmp_path))
    # PPO on the same network: its first rollout acts with the taught weights
    ppo_preset = {"policy": preset()["policy"], "ppo": {"num_envs": 2, "num_steps": 32, "num_minibatches": 1,
                                                          "update_epochs": 1}}
    ppo_cfg = make_run_config(ppo_preset, env=ENV, total_steps=64, seed=5, init_from=str(tmp_path / "dagger"))
    run = Run.create(tmp_path / "ppo", ppo_cfg)
    assert ppo.train(ppo_cfg, run)["step"] == 64
    assert Run.open(tmp_path / "ppo").config.init_from == str(tmp_path / "dagger")
    before = set(tmp_path.iterdir())
    proc = rlmem_cli("train", "--env", ENV, "--agent", ROOT / "agents" / "gru-nav.toml", "--init-from", tmp_path / "nowhere",
                     "--runs-dir", tmp_path)
    assert_clean_error(proc, "no run folder at")
    assert set(tmp_path.iterdir()) == before  # no run folder was created
