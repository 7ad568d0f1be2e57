"""Retention controls (Passive T-Maze, Repeat Previous, Count Recall): conformance, determinism,
oracle and constant-policy returns, batched == SyncVectorEnv, state round trips, validation."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlmem.envs as rlmem_envs
from rlmem.envs.count_recall import CountRecall, CountRecallVec, count_answers
from rlmem.envs.passive_tmaze import PassiveTMaze, PassiveTMazeVec
from rlmem.envs.repeat_previous import RepeatPrevious, RepeatPreviousVec
from rlmem.errors import ConfigError

from envcheck import assert_info_equal

# --------------------------------------------------------------------------- oracles


class PassiveOracle:
    """Remembers the cue from the first observation; answers it at the query."""

    def __init__(self, n_cues: int) -> None:
        self.n, self.cue = n_cues, None

    def __call__(self, obs: np.ndarray) -> int:
        if obs[: self.n].any():
            self.cue = int(obs[: self.n].argmax())
        return self.cue


class RepeatOracle:
    """Keeps the whole observed history; answers the symbol seen k steps ago (0 before)."""

    def __init__(self, k: int) -> None:
        self.k, self.history = k, []

    def __call__(self, obs: np.ndarray) -> int:
        self.history.append(int(obs.argmax()))
        return self.history[-1 - self.k] if len(self.history) > self.k else 0


class CountOracle:
    """Counts every card value it has seen; answers the (capped) count of the current one."""

    def __init__(self, max_count: int) -> None:
        self.max, self.counts = max_count, Counter()

    def __call__(self, obs: np.ndarray) -> int:
        card = int(obs.argmax())
        answer = min(self.counts[card], self.max)
        self.counts[card] += 1
        return answer


# --------------------------------------------------------------------------- the env table


@dataclass
class Case:
    name: str
    single: type
    vec: type
    small: dict  # short episodes, so batched tests see many ends
    oracle: Callable[[dict], Callable[[np.ndarray], int]]
    n_scored: Callable[[Any], int]  # answers that earn the reward scale
    scale: Callable[[Any], float]
    constant_return: Callable[[dict, Any], tuple[float, bool]]  # from the reset state: (return, success) of action 0
    vec_targets: Callable[[dict, Any], np.ndarray]  # the right actions of a batch, from its hidden state
    bad: list


def _passive_constant(state, cfg):
    return (1.0 if int(state["cue"]) == 0 else cfg.wrong_reward), int(state["cue"]) == 0


def _repeat_constant(state, cfg):
    total, ok = 0.0, True
    for t in range(cfg.k, cfg.length):
        right = int(state["symbols"][t - cfg.k]) == 0
        total += cfg.reward_scale if right else -cfg.reward_scale
        ok &= right
    return total, ok


def _count_constant(state, cfg):
    total, ok, seen = 0.0, True, set()
    for card in state["cards"].tolist():
        right = card not in seen  # "0 times before" is right only at a value's first deal
        seen.add(card)
        total += cfg.reward_scale if right else -cfg.reward_scale
        ok &= right
    return total, ok


CASES = [
    Case(
        "passive",
        PassiveTMaze,
        PassiveTMazeVec,
        dict(n_cues=3, delay=4),
        lambda kw: PassiveOracle(kw.get("n_cues", 2)),
        lambda cfg: 1,
        lambda cfg: 1.0,
        _passive_constant,
        lambda s, cfg: s["cue"],
        [
            dict(n_cues=1),
            dict(n_cues=2.0),
            dict(delay=-1),
            dict(delay=True),
            dict(wrong_reward=float("inf")),
            dict(render_mode="human"),
        ],
    ),
    Case(
        "repeat",
        RepeatPrevious,
        RepeatPreviousVec,
        dict(n_symbols=3, k=2, length=9),
        lambda kw: RepeatOracle(kw.get("k", 4)),
        lambda cfg: cfg.length - cfg.k,
        lambda cfg: cfg.reward_scale,
        _repeat_constant,
        lambda s, cfg: s["symbols"][np.arange(len(s["t"])), np.maximum(s["t"] - cfg.k, 0)],
        [dict(n_symbols=1), dict(k=0), dict(k=5, length=5), dict(length=3.5), dict(render_mode="human")],
    ),
    Case(
        "count",
        CountRecall,
        CountRecallVec,
        dict(n_values=3, length=8, max_count=2),
        lambda kw: CountOracle(kw.get("max_count", 15)),
        lambda cfg: cfg.length,
        lambda cfg: cfg.reward_scale,
        _count_constant,
        lambda s, cfg: count_answers(s["cards"], cfg)[np.arange(len(s["t"])), s["t"]],
        [dict(n_values=1), dict(length=0), dict(max_count=0), dict(max_count="3"), dict(render_mode="human")],
    ),
]
CASE_IDS = [c.name for c in CASES]
IDS = {
    "rlmem/PassiveTMaze-v0": (CASES[0], dict(n_cues=2, delay=10)),
    "rlmem/PassiveTMazeLong-v0": (CASES[0], dict(n_cues=2, delay=50)),
    "rlmem/RepeatPrevious-v0": (CASES[1], dict(n_symbols=4, k=4, length=52)),
    "rlmem/RepeatPreviousHard-v0": (CASES[1], dict(n_symbols=4, k=32, length=104)),
    "rlmem/CountRecall-v0": (CASES[2], dict(n_values=4, length=32, max_count=15)),
    "rlmem/CountRecallHard-v0": (CASES[2], dict(n_values=13, length=104, max_count=15)),
}


def play(env: gym.Env, seed: int, policy: Callable[[np.ndarray], int]):
    """One episode; returns (return, steps, terminated, truncated, last info, reset state)."""
    obs, _ = env.reset(seed=seed)
    state = env.unwrapped.get_state()
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        steps += 1
        if terminated or truncated:
            return total, steps, terminated, truncated, info, state


def sync_env(case: Case, n: int, **kw) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: case.single(**kw) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


# --------------------------------------------------------------------------- registration, checker


def test_registration_and_memory_types():
    assert set(IDS) <= set(rlmem_envs.rlmem_ids())
    tags = {"passive": ("sequential",), "repeat": ("sequential", "capacity"), "count": ("capacity",)}
    for env_id, (case, kwargs) in IDS.items():
        spec = gym.spec(env_id)
        assert spec.kwargs == kwargs and spec.max_episode_steps is None
        assert rlmem_envs.memory_types(env_id) == tags[case.name]
        vec = gym.make_vec(env_id, num_envs=4)
        assert isinstance(vec, case.vec) and vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert vec.config == gym.make(env_id).unwrapped.config


@pytest.mark.parametrize("env_id", list(IDS))
def test_check_env(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_kwargs_raise_config_error(case):
    env_id = next(i for i, (c, _) in IDS.items() if c is case)
    for kwargs in case.bad:
        with pytest.raises(ConfigError):
            case.single(**kwargs)
        with pytest.raises(ConfigError):
            case.vec(num_envs=2, **kwargs)
        if "render_mode" not in kwargs:
            with pytest.raises(ConfigError):
                gym.make(env_id, **kwargs)
    with pytest.raises(ConfigError):
        case.vec(num_envs=0)
    with pytest.raises(ConfigError):  # videos come from the single env; the batched one draws nothing
        case.vec(num_envs=2, render_mode="rgb_array")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_render_shows_the_observation(case):
    env = case.single(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    lit = [frame[6, 4 + i * 16 + 8].max() > 150 for i in range(len(obs))]  # amber cells are the 1s
    assert lit == [bool(v > 0.5) for v in obs]


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("env_id", list(IDS))
def test_seeded_copies_agree_and_seeds_matter(env_id):
    def rollout(seed: int, steps: int = 300):
        env, rng = gym.make(env_id), np.random.default_rng(123)
        trace = [env.reset(seed=seed)[0]]
        for _ in range(steps):
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            trace += [obs, reward, terminated, truncated, info.get("success")]
            if terminated or truncated:
                trace.append(env.reset()[0])
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("env_id", list(IDS))
def test_replay_reproduces_episode(env_id):
    env, rng = gym.make(env_id), np.random.default_rng(5)
    env.reset(seed=11)
    actions, record = [], []
    while True:
        actions.append(int(rng.integers(env.action_space.n)))
        out = env.step(actions[-1])
        record.append(out)
        if out[2] or out[3]:
            break
    replay = gym.make(env_id)
    replay.reset(seed=11)
    for a, (obs, reward, terminated, truncated, info) in zip(actions, record, strict=True):
        obs2, reward2, terminated2, truncated2, info2 = replay.step(a)
        assert np.array_equal(obs, obs2) and reward == reward2 and info == info2
        assert (terminated, truncated) == (terminated2, truncated2)


# --------------------------------------------------------------------------- task semantics


@pytest.mark.parametrize("env_id", list(IDS))
def test_oracle_gets_exact_maximal_return(env_id):
    case, kwargs = IDS[env_id]
    env = gym.make(env_id)
    cfg = env.unwrapped.config
    best = 0.0
    for _ in range(case.n_scored(cfg)):  # the same float additions the episode makes
        best += case.scale(cfg)
    assert best == pytest.approx(1.0, abs=1e-12)
    length = getattr(cfg, "episode_length", getattr(cfg, "length", None))
    for seed in range(5):
        total, steps, terminated, truncated, info, _ = play(env, seed, case.oracle(kwargs))
        assert terminated and not truncated and info["success"] is True
        assert total == best and steps == length


@pytest.mark.parametrize("env_id", list(IDS))
def test_constant_policy_gets_its_lower_return(env_id):
    case, _ = IDS[env_id]
    env = gym.make(env_id)
    cfg = env.unwrapped.config
    returns, successes = [], []
    for seed in range(40):
        total, _, terminated, _, info, state = play(env, seed, lambda obs: 0)
        expected, ok = case.constant_return(state, cfg)
        assert terminated and total == expected and info["success"] is ok
        returns.append(total)
        successes.append(ok)
    assert max(returns) <= 1.0 and np.mean(returns) < 0.6 and np.mean(successes) < 0.6
    if case.name == "passive":  # a 50/50 guess: both outcomes show up
        assert 0 < np.mean(successes) < 1


def test_passive_observations_and_cue_flag():
    env = PassiveTMaze(n_cues=3, delay=2, wrong_reward=-1.0)
    obs, info = env.reset(seed=4)
    cue = int(env.get_state()["cue"])
    assert obs.tolist() == np.eye(4)[cue].tolist() and info == {"cue": True}
    seen = []
    for a in (cue, cue, cue, (cue + 1) % 3):  # only the answer at the query counts
        obs, reward, terminated, _, info = env.step(a)
        seen.append((obs.tolist(), reward, terminated, info))
    blank, query = [0.0] * 4, [0.0, 0.0, 0.0, 1.0]
    assert seen == [
        (blank, 0.0, False, {"cue": False}),
        (blank, 0.0, False, {"cue": False}),
        (query, 0.0, False, {"cue": False}),
        (blank, -1.0, True, {"cue": False, "success": False}),
    ]


def test_repeat_and_count_cue_flags():
    env = RepeatPrevious(n_symbols=3, k=2, length=5)
    _, info = env.reset(seed=0)
    flags = [info["cue"]] + [env.step(0)[4]["cue"] for _ in range(5)]
    assert flags == [True, True, True, False, False, False]  # symbols of steps 0..2 are asked for
    env = CountRecall(n_values=3, length=3)
    _, info = env.reset(seed=0)
    assert [info["cue"]] + [env.step(0)[4]["cue"] for _ in range(3)] == [True, True, True, False]


def test_count_answers_are_capped():
    env = CountRecall(n_values=2, length=6, max_count=2)
    env.reset(seed=0)
    state = env.get_state()
    state["cards"][:] = [1, 1, 1, 1, 0, 1]
    env.set_state(state)
    rewards = [env.step(a)[1] for a in (0, 1, 2, 2, 0, 2)]  # 4th and 6th: "2 or more"
    assert rewards == [1 / 6] * 6
    assert count_answers(state["cards"], env.config).tolist() == [0, 1, 2, 2, 0, 2]


# --------------------------------------------------------------------------- batched == single


def compare(vec, sync, case: Case, seed: int, steps: int, p_right: float) -> dict[str, int]:
    """Step both envs with the same actions (right with probability p_right, else random);
    demand identical outputs and info dicts; count episode ends."""
    rng = np.random.default_rng(seed + 1000)
    out_v, out_s = vec.reset(seed=seed), sync.reset(seed=seed)
    assert np.array_equal(out_v[0], out_s[0]) and out_v[0].dtype == out_s[0].dtype == np.float32
    assert_info_equal(out_v[1], out_s[1])
    seen = {"success": 0, "failure": 0}
    n, n_actions = vec.num_envs, vec.single_action_space.n
    for _ in range(steps):
        right = case.vec_targets(vec.get_state(), vec.config)
        actions = np.where(rng.random(n) < p_right, right, rng.integers(0, n_actions, n))
        out_v, out_s = vec.step(actions), sync.step(actions)
        for k, (a, b) in enumerate(zip(out_v[:4], out_s[:4])):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"output {k} differs"
        assert_info_equal(out_v[4], out_s[4])
        if "final_info" in out_v[4]:
            ok = out_v[4]["final_info"]["success"][out_v[4]["_final_info"]]
            seen["success"] += int(ok.sum())
            seen["failure"] += int((~ok).sum())
    state_v = vec.get_state()
    for i, env in enumerate(sync.envs):
        for key, value in env.unwrapped.get_state().items():
            if key in state_v:
                assert np.array_equal(state_v[key][i], value), key
    return seen


@pytest.mark.parametrize("num_envs", [1, 3, 8])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_equals_sync_vector_env(case, num_envs):
    vec, sync = case.vec(num_envs=num_envs, **case.small), sync_env(case, num_envs, **case.small)
    seen = compare(vec, sync, case, seed=3, steps=200, p_right=0.9)
    assert seen["success"] > 0 and seen["failure"] > 0  # many episodes ended, both ways


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_partial_reset_and_seed_conventions(case):
    vec, sync = case.vec(num_envs=4, **case.small), sync_env(case, 4, **case.small)
    compare(vec, sync, case, seed=0, steps=5, p_right=0.5)
    mask = np.array([True, False, True, False])
    out_v = vec.reset(seed=[10, None, 12, None], options={"reset_mask": mask})
    out_s = sync.reset(seed=[10, None, 12, None], options={"reset_mask": mask})
    assert np.array_equal(out_v[0], out_s[0])
    assert_info_equal(out_v[1], out_s[1])
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = rng.integers(0, vec.single_action_space.n, 4)
        x, y = vec.step(a), sync.step(a)
        assert all(np.array_equal(p, q) for p, q in zip(x[:4], y[:4]))
        assert_info_equal(x[4], y[4])
    single = case.single(**case.small)
    single.reset(seed=12)
    vec.reset(seed=10)  # sub-env 2 gets 12: the same first episode as a single env seeded 12
    assert np.array_equal(vec.get_state()["rng"][2], single.get_state()["rng"])


def test_step_before_reset_raises():
    for case in CASES:
        with pytest.raises(gym.error.ResetNeeded):
            case.single().step(0)
        with pytest.raises(gym.error.ResetNeeded):
            case.vec(num_envs=2).step(np.zeros(2, dtype=np.int64))


# --------------------------------------------------------------------------- get_state / set_state


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_single_state_round_trip_resumes_exactly(case):
    env, rng = case.single(**case.small), np.random.default_rng(1)
    env.reset(seed=4)
    for _ in range(3):
        env.step(0)
    saved = json.loads(json.dumps({k: v.tolist() for k, v in env.get_state().items()}))
    actions = rng.integers(0, env.action_space.n, 60).tolist()

    def continue_from(e):
        out = []
        for a in actions:
            obs, reward, terminated, truncated, info = e.step(a)
            out.append((obs.tolist(), reward, terminated, truncated, info))
            if terminated or truncated:
                out.append(e.reset()[0].tolist())
        return out

    expected = continue_from(env)
    restored = case.single(**case.small)  # never reset: set_state alone must suffice
    restored.set_state({k: np.asarray(v, dtype=np.uint64 if k == "rng" else None) for k, v in saved.items()})
    assert continue_from(restored) == expected


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_state_round_trip_resumes_exactly(case):
    vec, rng = case.vec(num_envs=8, **case.small), np.random.default_rng(2)
    n_actions = vec.single_action_space.n
    vec.reset(seed=8)
    for _ in range(7):
        vec.step(rng.integers(0, n_actions, 8))
    saved = {k: v.copy() for k, v in vec.get_state().items()}
    actions = rng.integers(0, n_actions, (40, 8))
    expected = [vec.step(a) for a in actions]
    other = case.vec(num_envs=8, **case.small)
    other.set_state(saved)
    for a, exp in zip(actions, expected):
        got = other.step(a)
        assert all(np.array_equal(x, y) for x, y in zip(got[:4], exp[:4]))
        assert_info_equal(got[4], exp[4])
    with pytest.raises(ConfigError):
        case.vec(num_envs=4, **case.small).set_state(saved)


# --------------------------------------------------------------------------- suite file


def test_retention_suite_file_loads_and_builds():
    from rlmem.suites import load_suite

    entries = load_suite(Path(__file__).resolve().parents[1] / "envs" / "retention.toml")
    assert len({e.name for e in entries}) == len(entries) and {e.env for e in entries} == set(IDS)
    for entry in entries:
        assert entry.steps > 0 and 0 < entry.success_threshold <= 1
        gym.make(entry.env, **entry.env_kwargs).reset(seed=0)
        gym.make_vec(entry.env, num_envs=2, **entry.env_kwargs).reset(seed=0)
