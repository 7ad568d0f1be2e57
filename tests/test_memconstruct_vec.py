"""Memory construction (vector): conformance, determinism, the answerer, reference writers,
batched == SyncVectorEnv, state round trips, validation, the per-competency eval breakdown."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlmem.envs as rlmem_envs
from envcheck import assert_batched_resume, assert_info_equal, assert_single_resume
from rlmem.envs.memconstruct_vec import (
    COMPETENCIES,
    EMPTY,
    HeuristicWriter,
    MemoryConstructionVec,
    MemoryConstructionVecBatched,
    RandomWriter,
    StoreFirstWriter,
)
from rlmem.errors import ConfigError

torch.set_num_threads(1)

ENV_ID = "rlmem/MemoryConstructionVec-v0"
SMALL = dict(n_keys=5, n_values=3, n_slots=2, n_facts=4)  # short episodes: many ends per test


def sync_env(n: int, **kw) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: MemoryConstructionVec(**kw) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


def play(env: MemoryConstructionVec, writer, seed: int):
    """One episode of ``writer`` (a batched writer fed one observation): (return, steps, final info)."""
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(int(writer(obs[None])[0]))
        total, steps = total + reward, steps + 1
        assert not truncated
        if terminated:
            return total, steps, info
        assert reward == 0.0  # the reward is sparse: only the last step scores


def truth_of(state: dict) -> dict[int, int]:
    """Queried keys -> latest relevant value, read from the hidden stream (independent of the envs)."""
    out = {}
    for k, v, r in zip(state["keys"].tolist(), state["values"].tolist(), state["relevant"].tolist()):
        if r:
            out[k] = v
    return out


# --------------------------------------------------------------------------- registration, checker


@pytest.mark.parametrize("kwargs", [{}, dict(SMALL, competency="retrieval"), dict(SMALL, competency="conflict", beta=0.0)])
def test_check_env_and_render(kwargs):
    env = gym.make(ENV_ID, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    env = gym.make(ENV_ID, render_mode="rgb_array", **kwargs)
    env.reset(seed=0)
    first = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    env.step(1)  # write slot 0: the picture changes
    assert env.render().shape == first.shape and not np.array_equal(env.render(), first)


def test_registration_and_make_vec():
    assert ENV_ID in rlmem_envs.rlmem_ids()
    assert rlmem_envs.memory_types(ENV_ID) == ("capacity", "rewriting")
    spec = gym.spec(ENV_ID)
    assert spec.max_episode_steps is None and spec.vector_entry_point is not None
    vec = gym.make_vec(ENV_ID, num_envs=4)
    assert isinstance(vec, MemoryConstructionVecBatched)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    cfg = vec.config
    assert vec.single_action_space == gym.spaces.Discrete(1 + 2 * cfg.n_slots)
    assert vec.observation_space.shape == (4, cfg.n_keys + cfg.n_values + 3 + cfg.n_slots * (1 + cfg.n_keys + cfg.n_values))
    single = gym.make(ENV_ID).unwrapped
    assert single.get_action_meanings() == ["SKIP", "WRITE_0", "WRITE_1", "WRITE_2", "WRITE_3",
                                            "DELETE_0", "DELETE_1", "DELETE_2", "DELETE_3"]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_keys=0),
        dict(n_values=1),
        dict(n_slots=0),
        dict(n_facts=1),
        dict(n_facts=2.0),
        dict(n_facts=9, n_keys=8),  # retrieval needs distinct keys
        dict(competency="summary"),
        dict(beta=-0.1),
        dict(beta=float("nan")),
        dict(beta=True),
    ],
)
def test_bad_kwargs_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        MemoryConstructionVec(**kwargs)
    with pytest.raises(ConfigError):
        MemoryConstructionVecBatched(num_envs=2, **kwargs)
    with pytest.raises(ConfigError):
        gym.make(ENV_ID, **kwargs)


def test_conflict_only_allows_more_facts_than_keys_and_bad_num_envs_raise():
    env = MemoryConstructionVec(n_keys=2, n_facts=10, competency="conflict")
    env.reset(seed=0)
    with pytest.raises(ConfigError):
        MemoryConstructionVecBatched(num_envs=0)
    with pytest.raises(ConfigError):
        MemoryConstructionVecBatched(num_envs=2, render_mode="rgb_array")
    with pytest.raises(gym.error.ResetNeeded):
        MemoryConstructionVec().step(0)
    with pytest.raises(gym.error.ResetNeeded):
        MemoryConstructionVecBatched(num_envs=2).step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError):
        env.step(9)  # Discrete(1 + 2 * 4): actions 0..8


# --------------------------------------------------------------------------- determinism


def test_seeded_copies_agree_and_seeds_matter():
    def rollout(seed: int):
        env, rng = MemoryConstructionVec(**SMALL), np.random.default_rng(123)  # same actions every time
        trace = [env.reset(seed=seed)[0]]
        for _ in range(60):
            obs, reward, terminated, _, info = env.step(int(rng.integers(env.action_space.n)))
            trace += [obs, reward, terminated]
            if terminated:
                trace += [env.reset()[0], str(info["competency"])]
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


# --------------------------------------------------------------------------- task semantics


def test_episode_types_follow_their_definitions():
    seen = {c: 0 for c in COMPETENCIES}
    env = MemoryConstructionVec()  # the registered defaults: K = V = F = 8, M = 4, mixed
    for seed in range(300):
        env.reset(seed=seed)
        s = env.get_state()
        name = COMPETENCIES[int(s["competency"])]
        seen[name] += 1
        keys, values, relevant = s["keys"], s["values"], s["relevant"]
        assert len(keys) == 8 and (s["slot_key"] == EMPTY).all()
        if name == "retrieval":
            assert len(set(keys.tolist())) == 8  # distinct keys: more facts than the 4 slots
            assert 1 <= relevant.sum() <= 4
        else:
            assert relevant.all()
            assert 1 <= len(set(keys.tolist())) <= 4 < 8  # keys come back
            last = {}
            for k, v in zip(keys.tolist(), values.tolist()):
                assert last.get(k) != v  # a repeat always changes the value
                last[k] = v
    assert min(seen.values()) > 100  # mixed draws both types
    for name in COMPETENCIES:
        env = MemoryConstructionVec(competency=name)
        assert {COMPETENCIES[int((env.reset(seed=s), env.get_state())[1]["competency"])] for s in range(20)} == {name}


def test_observation_layout():
    env = MemoryConstructionVec(**SMALL)  # K = 5, V = 3, M = 2, F = 4: obs = 5 + 3 + 3 + 2 * 9 = 29
    obs, info = env.reset(seed=0)
    s = env.get_state()
    s.update(keys=np.array([4, 1, 0, 2]), values=np.array([2, 0, 1, 1]), relevant=np.array([True, False, True, True]),
             slot_key=np.array([EMPTY, 3]), slot_value=np.array([EMPTY, 1]), t=np.array(1))
    env.set_state(s)
    expected = np.zeros(29, dtype=np.float32)
    expected[1] = expected[5 + 0] = 1.0  # fact key 1, value 0, flag 0
    expected[9] = 0.25  # t / F
    expected[11 + 9 + 0] = expected[11 + 9 + 1 + 3] = expected[11 + 9 + 1 + 5 + 1] = 1.0  # slot 1 = (3, 1)
    obs, reward, terminated, _, info = env.step(1 + 0)  # write fact 1 (1, 0) into slot 0
    assert reward == 0.0 and not terminated and info == {"cue": True}
    expected_next = expected.copy()
    expected_next[[1, 5]] = 0.0
    expected_next[[0, 5 + 1, 8]] = 1.0  # fact 2 = (0, 1), relevant
    expected_next[9] = 0.5
    expected_next[[11, 11 + 1 + 1, 11 + 1 + 5 + 0]] = 1.0  # slot 0 = (1, 0)
    assert np.array_equal(obs, expected_next)
    env.set_state({**s, "t": np.array(1)})
    assert np.array_equal(env._observe(), expected)


def test_answerer_reads_the_lowest_matching_slot_and_scores_compression():
    env = MemoryConstructionVec(**SMALL, beta=0.5)
    env.reset(seed=0)
    s = env.get_state()
    # Conflict stream: key 2 is 0 then 1 (latest 1); key 3 is 2. All relevant.
    s.update(competency=np.array(1), keys=np.array([2, 3, 2, 3]), values=np.array([0, 2, 1, 2]),
             relevant=np.ones(4, dtype=bool), t=np.array(3))
    cases = [  # (slots before the last step, action on fact (3, 2), accuracy, used)
        (([2, EMPTY], [1, EMPTY]), 2, 1.0, 2),  # write (3, 2) into slot 1: both right
        (([2, 2], [0, 1]), 0, 0.0, 2),  # the stale (2, 0) in slot 0 shadows the fresh one; 3 missing
        (([2, 2], [1, 0]), 0, 0.5, 2),  # the lowest-index match answers
        (([2, 3], [1, 2]), 0, 1.0, 2),  # skip: already stored
        (([2, 3], [1, 2]), 4, 0.5, 1),  # delete slot 1: key 3 lost
        (([EMPTY, EMPTY], [EMPTY, EMPTY]), 1, 0.5, 1),  # only (3, 2) stored
    ]
    for (sk, sv), action, accuracy, used in cases:
        env.set_state({**s, "slot_key": np.array(sk), "slot_value": np.array(sv)})
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
        assert info["accuracy"] == accuracy and info["used_slots"] == used and info["success"] == (accuracy == 1.0)
        assert reward == pytest.approx(accuracy + 0.5 * (1 - used / 2))
        assert info["competency"] == "conflict" and info["cue"] is False
        assert obs[10] == 1.0 and obs[9] == 1.0 and not obs[:9].any()  # query phase: no fact shown


@pytest.mark.parametrize("competency", ["retrieval", "conflict", "mixed"])
def test_heuristic_writer_is_perfect_from_observations(competency):
    env = MemoryConstructionVec(competency=competency)
    writer = HeuristicWriter(env.config)
    for seed in range(60):
        env.reset(seed=seed)
        n_queried = len(truth_of(env.get_state()))
        total, steps, info = play(env, writer, seed)
        assert steps == env.config.n_facts and info["success"] and info["accuracy"] == 1.0
        assert info["used_slots"] == n_queried  # stores exactly what is asked
        assert total == pytest.approx(1.0 + env.config.beta * (1 - n_queried / env.config.n_slots))


def test_store_first_fails_conflict_episodes_the_heuristic_solves():
    env = MemoryConstructionVec(competency="conflict")
    heuristic, store_first = HeuristicWriter(env.config), StoreFirstWriter(env.config)
    stale = 0
    for seed in range(100):
        env.reset(seed=seed)
        s = env.get_state()
        first = {}
        for k, v in zip(s["keys"].tolist(), s["values"].tolist()):
            first.setdefault(k, v)
        changed = any(first[k] != v for k, v in truth_of(s).items())  # some key's latest is not its first
        assert play(env, heuristic, seed)[2]["accuracy"] == 1.0
        _, _, info = play(env, store_first, seed)
        if changed:
            stale += 1
            assert info["accuracy"] < 1.0 and not info["success"]
    assert stale > 80  # nearly every conflict episode needs an overwrite


def test_random_and_store_first_writers_fall_short_on_retrieval():
    env = MemoryConstructionVec(competency="retrieval")
    scores = {}
    for name, writer in [("random", RandomWriter(env.config, seed=0)), ("store_first", StoreFirstWriter(env.config))]:
        scores[name] = np.mean([play(env, writer, seed)[2]["accuracy"] for seed in range(100)])
    assert scores["random"] < 0.5 and scores["store_first"] < 0.8, scores


# --------------------------------------------------------------------------- batched == single


def compare_batched_with_sync(vec, sync, seed, steps: int, writer) -> int:
    obs_v, info_v = vec.reset(seed=seed)
    obs_s, info_s = sync.reset(seed=seed)
    assert obs_v.dtype == obs_s.dtype == np.float32 and np.array_equal(obs_v, obs_s)
    assert_info_equal(info_v, info_s)
    ends = 0
    for _ in range(steps):
        actions = writer(obs_v)
        out_v, out_s = vec.step(actions), sync.step(actions)
        for k, (a, b) in enumerate(zip(out_v[:4], out_s[:4])):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"output {k} differs"
        assert_info_equal(out_v[4], out_s[4])
        obs_v = out_v[0]
        ends += int(out_v[2].sum())
    state_v = vec.get_state()
    for i, env in enumerate(sync.envs):
        for key, value in env.unwrapped.get_state().items():
            if key in state_v:
                assert np.array_equal(state_v[key][i], value), key
    return ends


class MixedWriter:
    """Heuristic most of the time, random otherwise: overwrites, deletes, duplicates, every case."""

    def __init__(self, config, seed):
        self.heuristic, self.random, self.rng = HeuristicWriter(config), RandomWriter(config, seed), np.random.default_rng(seed)

    def __call__(self, obs):
        return np.where(self.rng.random(len(obs)) < 0.6, self.heuristic(obs), self.random(obs))


@pytest.mark.parametrize("competency", ["mixed", "retrieval", "conflict"])
@pytest.mark.parametrize("num_envs", [1, 5])
def test_batched_equals_sync_vector_env(competency, num_envs):
    kw = dict(SMALL, competency=competency)
    for seed in (0, 42):
        vec, sync = MemoryConstructionVecBatched(num_envs=num_envs, **kw), sync_env(num_envs, **kw)
        ends = compare_batched_with_sync(vec, sync, seed, steps=30, writer=MixedWriter(vec.config, seed))
        assert ends >= 7 * num_envs


def test_make_vec_default_equals_sync_and_breakdown_info_is_there():
    vec = gym.make_vec(ENV_ID, num_envs=6)
    sync = gym.make_vec(ENV_ID, num_envs=6, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    compare_batched_with_sync(vec, sync, seed=3, steps=40, writer=MixedWriter(vec.config, 3))
    vec.reset(seed=0)
    for _ in range(vec.config.n_facts - 1):
        *_, info = vec.step(np.zeros(6, dtype=np.int64))
        assert "final_info" not in info
    *_, info = vec.step(np.zeros(6, dtype=np.int64))
    final = info["final_info"]
    assert set(final) >= {"success", "accuracy", "used_slots", "competency", "cue"}
    assert {str(c) for c in final["competency"]} <= set(COMPETENCIES) and final["_competency"].all()


def test_reset_seed_list_and_mask_conventions():
    vec = MemoryConstructionVecBatched(num_envs=4, **SMALL)
    vec.reset(seed=[9, 9, 9, 5])  # GRPO's groups: several sub-envs replay one stream
    s = vec.get_state()
    assert all(np.array_equal(s[k][0], s[k][i]) for k in ("keys", "values", "relevant") for i in (1, 2))
    vec.reset(seed=9)
    from_int = vec.get_state()
    single = MemoryConstructionVec(**SMALL)
    single.reset(seed=10)
    assert np.array_equal(single.get_state()["keys"], from_int["keys"][1])
    # reset_mask resets only the chosen sub-envs, as SyncVectorEnv does
    sync = sync_env(4, **SMALL)
    vec.reset(seed=1)
    sync.reset(seed=1)
    for _ in range(2):
        a = np.array([1, 2, 0, 3])
        vec.step(a), sync.step(a)
    mask = np.array([True, False, True, False])
    out_v, out_s = vec.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask})
    assert np.array_equal(out_v[0], out_s[0])
    assert_info_equal(out_v[1], out_s[1])


# --------------------------------------------------------------------------- get_state / set_state


def test_single_state_round_trip_resumes_exactly():
    env, rng = MemoryConstructionVec(**SMALL), np.random.default_rng(1)
    env.reset(seed=4)
    env.step(1)
    actions = rng.integers(0, env.action_space.n, 40).tolist()
    assert_single_resume(env, lambda: MemoryConstructionVec(**SMALL), actions)


def test_batched_state_round_trip_resumes_exactly():
    vec, rng = MemoryConstructionVecBatched(num_envs=8, **SMALL), np.random.default_rng(2)
    vec.reset(seed=8)
    for _ in range(6):
        vec.step(rng.integers(0, vec.config.n_actions, 8))
    saved = {k: v.copy() for k, v in vec.get_state().items()}
    assert_batched_resume(vec, lambda: MemoryConstructionVecBatched(num_envs=8, **SMALL),
                          rng.integers(0, vec.config.n_actions, (20, 8)))
    with pytest.raises(ConfigError):
        MemoryConstructionVecBatched(num_envs=4, **SMALL).set_state(saved)
    with pytest.raises(ConfigError):
        MemoryConstructionVecBatched(num_envs=8, **SMALL).set_state({k: v for k, v in saved.items() if k != "rng"})


# --------------------------------------------------------------------------- evaluation breakdown


def test_evaluate_breaks_results_down_by_competency():
    from rlmem.agents.policy import ActorCritic
    from rlmem.config import PolicyConfig
    from rlmem.evaluate import evaluate

    torch.manual_seed(0)
    env = MemoryConstructionVecBatched(num_envs=1, **SMALL)
    policy = ActorCritic(env.single_observation_space, env.single_action_space,
                         PolicyConfig(memory="none", memory_kwargs={"hidden_size": 8}, encoder=(8,)))
    res = evaluate(policy, ENV_ID, SMALL, episodes=50, seed=0, num_envs=8)
    table = res.breakdown["by competency"]
    assert set(table) == set(COMPETENCIES)
    assert sum(row["episodes"] for row in table.values()) == 50
    for row in table.values():
        assert set(row) == {"episodes", "success", "return", "accuracy"}
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["success"] <= row["accuracy"]
    # the weighted rows give back the overall numbers
    total = sum(row["return"] * row["episodes"] for row in table.values()) / 50
    assert total == pytest.approx(res.mean_return)
    # envs without a competency in their final info get no breakdown (unchanged behaviour)
    tmaze = gym.make_vec("rlmem/PassiveTMaze-v0", num_envs=1)
    other = ActorCritic(tmaze.single_observation_space, tmaze.single_action_space,
                        PolicyConfig(memory="none", memory_kwargs={"hidden_size": 8}, encoder=(8,)))
    assert evaluate(other, "rlmem/PassiveTMaze-v0", {"delay": 2}, episodes=10, seed=0).breakdown == {}
