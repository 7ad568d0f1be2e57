"""Stable-Baselines3 inside rlmem: the SB3 VecEnv adapter and the sb3-ppo / sb3-recurrentppo algos.

Adapter: SB3VecEnv over rlmem's native batched env equals SB3's own DummyVecEnv over the
single env (obs, rewards, dones, infos with terminal_observation / TimeLimit.truncated,
reset infos) for the same seeds and actions, and passes SB3's sanity wrappers.
Algos: `rlmem train / eval` through `rlmem.cli.main` give the standard run folder, metrics
and checkpoint; a bad [sb3] key is one line and exit 2; --stop-after + --resume continues
bit-exactly (same weights and metrics as an uninterrupted run).
"""

import json
import tomllib
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import tomli_w
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecMonitor

import rlmem.envs  # noqa: F401  (registers rlmem/ ids)
from rlmem.cli import main
from rlmem.config import load_preset, make_run_config
from rlmem.envs.sb3_vecenv import SB3VecEnv, make_sb3_vec_env
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError
from rlmem.runs import Run

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
ENV = "rlmem/EndlessTMazeRetention-v0"


# --------------------------------------------------------------------------- adapter
def _assert_info_equal(ours: dict, theirs: dict) -> None:
    """Our info dict = DummyVecEnv's, plus SB3's is_success wherever the env reports success."""
    ours = dict(ours)
    if "success" in theirs:
        assert ours.pop("is_success") == bool(theirs["success"])
    assert ours.keys() == theirs.keys(), (ours, theirs)
    for key in theirs:
        assert np.array_equal(ours[key], theirs[key]), (key, ours, theirs)
        if isinstance(theirs[key], np.ndarray):
            assert ours[key].dtype == theirs[key].dtype


def _rollout_both(env_id: str, n: int, steps: int, seed: int, policy) -> dict:
    """Step SB3VecEnv(native) and DummyVecEnv(single envs) in lockstep; assert equality each step."""
    ours = make_sb3_vec_env(env_id, n)
    theirs = DummyVecEnv([lambda: gym.make(env_id) for _ in range(n)])
    ours.seed(seed)
    theirs.seed(seed)
    o1, o2 = ours.reset(), theirs.reset()
    assert np.array_equal(o1, o2) and o1.dtype == o2.dtype
    for a, b in zip(ours.reset_infos, theirs.reset_infos):
        _assert_info_equal(a, b)
    rng = np.random.default_rng(seed)
    seen = {"done": 0, "truncated": 0, "success": 0}
    for t in range(steps):
        actions = policy(rng, t)
        (o1, r1, d1, i1), (o2, r2, d2, i2) = ours.step(actions), theirs.step(actions)
        assert np.array_equal(o1, o2) and o1.dtype == o2.dtype, t
        assert np.array_equal(r1, r2) and r1.dtype == r2.dtype, t
        assert np.array_equal(d1, d2) and d1.dtype == d2.dtype, t
        for k in range(n):
            _assert_info_equal(i1[k], i2[k])
            if d1[k]:  # the finished episode's last obs; the returned row starts the next one
                assert np.array_equal(i1[k]["terminal_observation"], i2[k]["terminal_observation"])
                _assert_info_equal(ours.reset_infos[k], theirs.reset_infos[k])
                seen["truncated"] += i1[k]["TimeLimit.truncated"]
                seen["success"] += i1[k].get("is_success", False)
        seen["done"] += int(d1.sum())
    ours.close()
    theirs.close()
    return seen


def test_adapter_equals_dummy_vec_env_on_endless_tmaze():
    n = 6

    def policy(rng, t):  # env 0 only ever turns inside its corridor: it runs into the time limit
        a = rng.integers(0, 3, n)
        a[0] = 1
        return a

    seen = _rollout_both("rlmem/EndlessTMaze-v0", n, 260, seed=11, policy=policy)
    # the comparison covered every kind of episode end (else it could pass vacuously)
    assert seen["done"] > 20 and seen["truncated"] >= 1


def test_adapter_equals_dummy_vec_env_on_repeat_previous():
    n = 4
    seen = _rollout_both("rlmem/RepeatPrevious-v0", n, 120, seed=3, policy=lambda rng, t: rng.integers(0, 4, n))
    assert seen["done"] >= 2 * n


def test_adapter_seeding_follows_sb3():
    venv = make_sb3_vec_env("rlmem/EndlessTMaze-v0", 3)
    assert venv.seed(5) == [5, 6, 7]
    first = venv.reset()
    single = [gym.make("rlmem/EndlessTMaze-v0").reset(seed=5 + i)[0] for i in range(3)]
    assert np.array_equal(first, np.stack(single))
    # seeds are used once: a later reset continues the generators (a new draw), as DummyVecEnv
    theirs = DummyVecEnv([lambda: gym.make("rlmem/EndlessTMaze-v0") for _ in range(3)])
    theirs.seed(5)
    theirs.reset()
    for _ in range(4):
        assert np.array_equal(venv.reset(), theirs.reset())


def test_adapter_passes_sb3_sanity_wrappers():
    for env_id in ("rlmem/EndlessTMaze-v0", "rlmem/RepeatPrevious-v0"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(gym.make(env_id))  # the single env is a valid SB3 env
    venv = VecMonitor(VecCheckNan(make_sb3_vec_env("rlmem/EndlessTMaze-v0", 4), raise_exception=True))
    venv.seed(0)
    venv.reset()
    rng = np.random.default_rng(0)
    episodes = []
    returns = np.zeros(4)
    for _ in range(200):
        _, r, d, infos = venv.step(rng.integers(0, 3, 4))
        returns += r
        for i in np.flatnonzero(d):
            episodes.append(infos[i]["episode"]["r"])
            assert infos[i]["episode"]["r"] == pytest.approx(returns[i], abs=1e-5)  # VecMonitor agrees
            returns[i] = 0
    assert len(episodes) > 10


def test_adapter_sub_env_access():
    native = make_sb3_vec_env("rlmem/EndlessTMaze-v0", 3)
    assert native.get_attr("render_mode") == [None, None, None]
    assert native.get_attr("max_steps", indices=[1]) == [native.vector_env.max_steps]
    assert not native.has_attr("no_such_attribute")
    assert native.env_is_wrapped(gym.Wrapper) == [False, False, False]
    with pytest.raises(NotImplementedError, match="without sub-env objects"):
        native.env_method("reset")
    with pytest.raises(NotImplementedError, match="without sub-env objects"):
        native.set_attr("foo", 1)
    with pytest.raises(IndexError):
        native.get_attr("render_mode", indices=[3])
    # a SyncVectorEnv (Acrobot: no native batched env) has real sub-envs
    sync = make_sb3_vec_env("Acrobot-v1", 2)
    assert isinstance(sync.vector_env, gym.vector.SyncVectorEnv)
    sync.set_attr("marker", 7, indices=1)
    assert sync.get_attr("marker", indices=[1]) == [7]
    assert sync.env_method("get_wrapper_attr", "marker", indices=[1]) == [7]
    assert sync.env_is_wrapped(gym.wrappers.TimeLimit) == [True, True]


def test_adapter_rejects_other_autoreset_modes():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")  # NEXT_STEP autoreset
    with pytest.raises(ConfigError, match="SAME_STEP"):
        SB3VecEnv(envs)
    assert isinstance(make_sb3_vec_env(ENV, 1).vector_env, type(make_vec_env(ENV, 1)))


# --------------------------------------------------------------------------- config
def _preset(name: str, tmp_path: Path, **sb3) -> Path:
    """agents/<name>.toml with [sb3] overrides, written to tmp_path."""
    data = tomllib.loads((ROOT / "agents" / f"{name}.toml").read_text())
    data["sb3"] = {**data["sb3"], **sb3}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_presets_are_valid():
    for name, algo in (("sb3-ppo", "sb3-ppo"), ("sb3-recurrentppo", "sb3-recurrentppo")):
        cfg = make_run_config(load_preset(ROOT / "agents" / f"{name}.toml"), env=ENV)
        assert cfg.algo == algo and cfg.sb3["n_steps"] == 128


@pytest.mark.parametrize(
    "sb3, fragment",
    [
        ({"n_step": 8}, "unknown config key sb3.n_step for PPO; valid keys in sb3: policy, learning_rate, n_steps"),
        ({"seed": 3}, "sb3.seed cannot be set"),
        ({"n_steps": "many"}, "sb3.n_steps must be an integer"),
        ({"rollout_buffer_class": "RolloutBuffer"}, "needs a Python object"),
        ({"policy": "MlpLstmPolicy"}, "valid: MlpPolicy, CnnPolicy, MultiInputPolicy"),
        ({"policy_kwargs": {"lstm_hidden_size": 8}}, "unknown config key sb3.policy_kwargs.lstm_hidden_size"),
        ({"policy_kwargs": {"activation_fn": "swish"}}, "activation_fn must be one of tanh, relu"),
        ({"gamma": 1.5}, "sb3.gamma must be in (0, 1]"),
    ],
)
def test_bad_sb3_table_is_a_config_error(sb3, fragment):
    preset = tomllib.loads((ROOT / "agents" / "sb3-ppo.toml").read_text())
    preset["sb3"] = {**preset["sb3"], **sb3}
    with pytest.raises(ConfigError) as e:
        make_run_config(preset, env=ENV)
    assert fragment in str(e.value)


def test_bad_sb3_key_on_the_command_line_is_one_line(tmp_path, capsys):
    bad = _preset("sb3-recurrentppo", tmp_path, lstm_size=8)
    rc = main(["train", "--env", ENV, "--agent", str(bad), "--runs-dir", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "unknown config key sb3.lstm_size for RecurrentPPO" in err[0] and "n_steps" in err[0]
    assert not (tmp_path / "runs").exists()  # nothing was created


# --------------------------------------------------------------------------- train / eval / resume
TINY = {  # keeps RecurrentPPO (~100 steps/s with its defaults on 2 cores) to a few seconds
    "sb3-ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 2},
    "sb3-recurrentppo": {"n_steps": 16, "batch_size": 64, "n_epochs": 2, "policy_kwargs": {"lstm_hidden_size": 16, "net_arch": [16]}},
}


def _train(args: list, capsys) -> str:
    rc = main(["train", *map(str, args), "--threads", "1", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


@pytest.mark.parametrize("name", ["sb3-ppo", "sb3-recurrentppo"])
def test_train_eval_resume_through_the_cli(name, tmp_path, capsys):
    preset = _preset(name, tmp_path, **TINY[name])
    runs = tmp_path / "runs"
    common = ["--env", ENV, "--agent", preset, "--steps", 2048, "--num-envs", 4, "--runs-dir", runs]

    # 1. an uninterrupted run: the standard run folder
    _train([*common, "--run-name", "full"], capsys)
    full = Run.open(runs / "full")
    assert full.config.algo == name and (full.path / "config.toml").is_file()
    rows = full.metrics()
    rollout = TINY[name]["n_steps"] * 4
    assert [r["step"] for r in rows] == list(range(rollout, 2048 + 1, rollout))
    for key in ("update", "step", "sps", "episode_return", "episode_length", "success",
                "policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"):
        assert key in rows[-1], key
    assert 0.0 <= rows[-1]["success"] <= 1.0 and rows[-1]["update"] == len(rows)
    ckpt = full.load_checkpoint()  # weights_only=True
    assert ckpt["step"] == 2048 and ckpt["algo"] == name
    assert list(full.path.glob("events.out.tfevents*"))

    # 2. eval prints the success rate with its interval
    assert main(["eval", str(full.path), "--episodes", "12", "--num-envs", "4"]) == 0
    out = capsys.readouterr().out
    assert "success" in out and "95% CI" in out and "episodes   12" in out

    # 3. pause at 1024 steps, resume: the step count continues and the result is bit-exact
    out = _train([*common, "--run-name", "split", "--stop-after", 1024], capsys)
    assert "paused" in out
    split = Run.open(runs / "split")
    paused = split.load_checkpoint()
    assert paused["step"] == 1024 and split.metrics()[-1]["step"] == 1024
    _train(["--resume", split.path], capsys)
    resumed = split.load_checkpoint()
    assert resumed["step"] == 2048
    assert [r["step"] for r in split.metrics()] == [r["step"] for r in rows]
    for k in ckpt["policy"]:
        assert torch.equal(resumed["policy"][k], ckpt["policy"][k]), k
    assert any(not torch.equal(resumed["policy"][k], paused["policy"][k]) for k in paused["policy"])  # it trained on
    strip = lambda r: {k: v for k, v in r.items() if k != "sps"}  # noqa: E731
    assert [strip(r) for r in split.metrics()] == [strip(r) for r in rows]


def test_eval_is_reproducible_and_counts_every_episode(tmp_path, capsys):
    from rlmem.algos.sb3 import evaluate_run

    preset = _preset("sb3-ppo", tmp_path, **TINY["sb3-ppo"])
    _train(["--env", ENV, "--agent", preset, "--steps", 256, "--num-envs", 4,
            "--runs-dir", tmp_path, "--run-name", "r"], capsys)
    run = Run.open(tmp_path / "r")
    a = evaluate_run(run, episodes=10, seed=123, deterministic=False, num_envs=4)
    b = evaluate_run(run, episodes=10, seed=123, deterministic=False, num_envs=4)
    c = evaluate_run(run, episodes=10, seed=124, deterministic=False, num_envs=4)
    assert a == b and a.episodes == 10
    assert (a.mean_return, a.mean_length) != (c.mean_return, c.mean_length)
    lo, hi = a.success_ci
    assert 0.0 <= lo <= a.success <= hi <= 1.0
    # a longer env via --env-kwargs reaches the evaluation (the policy sees a different task)
    d = evaluate_run(run, episodes=10, seed=123, deterministic=False, env_kwargs={"l_min": 12, "l_max": 12}, num_envs=4)
    assert d.mean_length != a.mean_length or d.mean_return != a.mean_return
    json.dumps(a.__dict__)  # plain numbers, ready for reports
