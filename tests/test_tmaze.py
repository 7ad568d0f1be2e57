"""Endless T-Maze: Gymnasium conformance, determinism, oracle returns, batched == single."""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlmem.envs as rlmem_envs
from envcheck import assert_batched_resume, assert_info_equal, assert_single_resume
from rlmem.envs.tmaze import FORWARD, LEFT, EndlessTMaze, EndlessTMazeVec
from rlmem.errors import ConfigError, UnknownNameError

TMAZE_IDS = [i for i in rlmem_envs.rlmem_ids() if "EndlessTMaze" in i]
UNIFORM = dict(n_corridors=3, length_mode="uniform", l_min=2, l_max=6)
FIXED = dict(n_corridors=2, length_mode="fixed", l_min=4, l_max=4)


# --------------------------------------------------------------------------- helpers


def oracle_action(env: EndlessTMaze, remembered_cue: int) -> int:
    """Forward until the junction (known from the hidden state), then the remembered turn."""
    s = env.get_state()
    return FORWARD if s["x"] < s["length"] else remembered_cue + 1


def run_oracle(env: EndlessTMaze, seed: int):
    """Play one episode with a policy that remembers the last cue it saw in an observation."""
    obs, info = env.reset(seed=seed)
    lengths = [int(env.get_state()["length"])]
    total, steps, cue = 0.0, 0, None
    while True:
        if obs[1] or obs[2]:
            cue = 0 if obs[1] else 1  # the memory: overwritten at every corridor start
        corridor_before = int(env.get_state()["corridor"])
        obs, reward, terminated, truncated, info = env.step(oracle_action(env, cue))
        total += reward
        steps += 1
        s = env.get_state()
        if not terminated and int(s["corridor"]) != corridor_before:
            lengths.append(int(s["length"]))
        if terminated or truncated:
            return total, steps, terminated, truncated, info, lengths


def sync_env(n: int, **kw) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: EndlessTMaze(**kw) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


def mixed_actions(vec: EndlessTMazeVec, rng: np.random.Generator) -> np.ndarray:
    """A noisy oracle that reads the hidden state: it dawdles a lot inside corridors and
    usually turns right at junctions, so episodes succeed, fail and time out. The same
    actions go to both envs under comparison."""
    s = vec.get_state()
    in_corridor = s["x"] < s["length"]
    u = rng.random(vec.num_envs)
    act = np.where(in_corridor, np.where(u < 0.85, LEFT, FORWARD), s["cue"] + 1)
    return np.where(~in_corridor & (u > 0.75), rng.integers(0, 3, vec.num_envs), act)


def compare_batched_with_sync(vec, sync, seed: int, steps: int, policy: str) -> dict[str, int]:
    rng = np.random.default_rng(seed + 1000)
    obs_v, info_v = vec.reset(seed=seed)
    obs_s, info_s = sync.reset(seed=seed)
    assert obs_v.dtype == obs_s.dtype == np.float32 and np.array_equal(obs_v, obs_s)
    assert_info_equal(info_v, info_s)
    seen = {"success": 0, "failure": 0, "truncated": 0}
    for _ in range(steps):
        if policy == "random":
            actions = rng.integers(0, 3, vec.num_envs)
        else:
            actions = mixed_actions(vec, rng)
        out_v, out_s = vec.step(actions), sync.step(actions)
        for k, (a, b) in enumerate(zip(out_v[:4], out_s[:4])):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"output {k} differs"
        assert_info_equal(out_v[4], out_s[4])
        info = out_v[4]
        if "final_info" in info:
            ok = info["final_info"]["success"][info["_final_info"]]
            seen["success"] += int(ok.sum())
            seen["failure"] += int((~ok & out_v[2][info["_final_info"]]).sum())
        seen["truncated"] += int(out_v[3].sum())
    # The hidden states, RNG included, agree too.
    state_v = vec.get_state()
    for i, env in enumerate(sync.envs):
        for key, value in env.unwrapped.get_state().items():
            if key in state_v:
                assert np.array_equal(state_v[key][i], value), key
    return seen


# --------------------------------------------------------------------------- registration, checker


@pytest.mark.parametrize("env_id", TMAZE_IDS)
def test_check_env_and_render(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    for _ in range(5):
        env.step(FORWARD)
    frame = env.render()
    assert frame.shape == first.shape and not np.array_equal(frame, first)  # the agent moved


def test_registration():
    assert set(TMAZE_IDS) == {
        "rlmem/EndlessTMaze-v0",
        "rlmem/EndlessTMazeRetention-v0",
        "rlmem/EndlessTMazeFixed-v0",
        "rlmem/EndlessTMazeLong-v0",
    }
    importlib.reload(rlmem_envs)  # registering twice is a no-op
    assert set(TMAZE_IDS) <= set(rlmem_envs.rlmem_ids())
    for env_id in TMAZE_IDS:
        spec = gym.spec(env_id)
        assert spec.max_episode_steps is None and spec.vector_entry_point is not None
        assert rlmem_envs.memory_types(env_id) == ("sequential", "rewriting")
    assert gym.make("rlmem/EndlessTMazeRetention-v0").unwrapped.config.n_corridors == 1
    with pytest.raises(UnknownNameError, match="rlmem/EndlessTMaze-v0"):
        rlmem_envs.memory_types("rlmem/NoSuchEnv-v0")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_corridors=0),
        dict(n_corridors=2.5),
        dict(l_min=7, l_max=3),
        dict(l_min=-2, l_max=5),
        dict(l_min=0, l_max=5),
        dict(l_min=-5, l_max=-1),
        dict(length_mode="gaussian"),
        dict(penalty=float("nan")),
        dict(render_mode="human"),
    ],
)
def test_bad_kwargs_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        EndlessTMaze(**kwargs)
    with pytest.raises(ConfigError):
        EndlessTMazeVec(num_envs=2, **kwargs)
    if "render_mode" not in kwargs:  # gym.make serves "human" itself through HumanRendering
        with pytest.raises(ConfigError):
            gym.make("rlmem/EndlessTMaze-v0", **kwargs)


def test_bad_num_envs_raises():
    with pytest.raises(ConfigError):
        EndlessTMazeVec(num_envs=0)


# --------------------------------------------------------------------------- determinism


def test_seeded_copies_agree_and_seeds_matter():
    def rollout(seed: int, steps: int = 300):
        env, rng = EndlessTMaze(**UNIFORM), np.random.default_rng(123)  # same actions every time
        trace = [env.reset(seed=seed)[0]]
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
            trace += [obs, reward, terminated, truncated]
            if terminated or truncated:
                trace.append(env.reset()[0])
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_replay_reproduces_episode():
    env, rng = EndlessTMaze(**UNIFORM), np.random.default_rng(5)
    env.reset(seed=11)
    actions, record = [], []
    # Mostly forward so the episode crosses junctions before it ends.
    while True:
        a = int(rng.choice(3, p=[0.8, 0.1, 0.1]))
        actions.append(a)
        out = env.step(a)
        record.append(out[:4])
        if out[2] or out[3]:
            break
    replay = EndlessTMaze(**UNIFORM)
    replay.reset(seed=11)
    for a, (obs, reward, terminated, truncated) in zip(actions, record):
        obs2, reward2, terminated2, truncated2, _ = replay.step(a)
        assert np.array_equal(obs, obs2) and reward == reward2
        assert (terminated, truncated) == (terminated2, truncated2)


# --------------------------------------------------------------------------- task semantics


@pytest.mark.parametrize("kwargs", [FIXED, UNIFORM, dict(n_corridors=1, length_mode="uniform", l_min=5, l_max=10)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_gets_maximal_return(kwargs, seed):
    env = EndlessTMaze(**kwargs, turn_reward=2.0)
    total, steps, terminated, truncated, info, lengths = run_oracle(env, seed)
    n = env.config.n_corridors
    assert terminated and not truncated and info["success"] is True
    assert total == n * 2.0
    assert len(lengths) == n and steps == sum(length + 1 for length in lengths)
    if kwargs["length_mode"] == "fixed":
        assert set(lengths) == {kwargs["l_max"]}
    else:
        assert all(kwargs["l_min"] <= length <= kwargs["l_max"] for length in lengths)


def test_uniform_lengths_cover_the_range_and_cues_are_balanced():
    env = EndlessTMaze(n_corridors=1, length_mode="uniform", l_min=3, l_max=7)
    lengths, cues = [], []
    for seed in range(400):
        env.reset(seed=seed)
        s = env.get_state()
        lengths.append(int(s["length"]))
        cues.append(int(s["cue"]))
    assert set(lengths) == {3, 4, 5, 6, 7}
    assert 150 < sum(cues) < 250


@pytest.mark.parametrize("junction_action", ["wrong", "forward"])
def test_wrong_action_at_junction_ends_episode(junction_action):
    env = EndlessTMaze(**FIXED, wrong_turn_reward=-1.0)
    obs, _ = env.reset(seed=3)
    cue = 0 if obs[1] else 1
    for _ in range(FIXED["l_max"]):
        obs, reward, terminated, truncated, info = env.step(FORWARD)
        assert reward == 0.0 and not terminated and "success" not in info
    action = (2 - cue) if junction_action == "wrong" else FORWARD
    obs, reward, terminated, truncated, info = env.step(action)
    assert terminated and not truncated and reward == -1.0 and info["success"] is False


def test_dawdling_truncates_exactly_at_max_steps():
    env = EndlessTMaze(**UNIFORM)
    env.reset(seed=0)
    assert env.max_steps == 6 * (UNIFORM["l_max"] + 1) * UNIFORM["n_corridors"]
    for t in range(1, env.max_steps + 1):
        obs, reward, terminated, truncated, info = env.step(LEFT)  # turning inside a corridor
        assert reward == -0.01 and not terminated
        assert truncated == (t == env.max_steps)
        assert ("success" in info) == truncated
    assert info["success"] is False


def test_terminal_step_at_the_time_limit_counts_as_terminated():
    env = EndlessTMaze(**FIXED)
    env.reset(seed=0)
    state = env.get_state()
    state.update(corridor=np.array(1), x=np.array(4), steps=np.array(env.max_steps - 1))
    env.set_state(state)
    _, reward, terminated, truncated, info = env.step(int(state["cue"]) + 1)
    assert reward == 1.0 and terminated and not truncated and info["success"] is True


def test_hint_visible_only_at_corridor_start():
    env, rng = EndlessTMaze(**UNIFORM), np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    shown = 0
    for _ in range(2000):
        s = env.get_state()
        at_start = int(s["x"]) == 0
        assert info["cue"] is at_start
        assert obs[0] == np.float32(int(s["x"]) / UNIFORM["l_max"])
        expected_hint = [0.0, 0.0] if not at_start else ([1.0, 0.0] if int(s["cue"]) == 0 else [0.0, 1.0])
        assert obs[1:].tolist() == expected_hint
        shown += at_start
        obs, _, terminated, truncated, info = env.step(int(rng.choice(3, p=[0.7, 0.15, 0.15])))
        if terminated or truncated:
            obs, info = env.reset()
    assert 0 < shown < 2000


def test_step_before_reset_raises():
    with pytest.raises(gym.error.ResetNeeded):
        EndlessTMaze().step(FORWARD)
    with pytest.raises(gym.error.ResetNeeded):
        EndlessTMazeVec(num_envs=2).step(np.zeros(2, dtype=np.int64))


# --------------------------------------------------------------------------- batched == single


@pytest.mark.parametrize("kwargs", [UNIFORM, FIXED], ids=["uniform", "fixed"])
@pytest.mark.parametrize("num_envs", [1, 3, 16])
@pytest.mark.parametrize("policy", ["random", "mixed"])
def test_batched_equals_sync_vector_env(kwargs, num_envs, policy):
    seen = {"success": 0, "failure": 0, "truncated": 0}
    for seed in (0, 42):
        vec, sync = EndlessTMazeVec(num_envs=num_envs, **kwargs), sync_env(num_envs, **kwargs)
        result = compare_batched_with_sync(vec, sync, seed, steps=400, policy=policy)
        seen = {k: seen[k] + result[k] for k in seen}
    assert seen["failure"] > 0
    if policy == "mixed":  # the oracle-ish policy reaches every kind of episode end
        assert seen["success"] > 0 and seen["truncated"] > 0


def test_batched_equals_sync_at_the_time_limit():
    """Corridor transitions and last turns on the very step of the time limit (rare in rollouts)."""
    kw = dict(n_corridors=2, length_mode="uniform", l_min=1, l_max=3)
    vec, sync = EndlessTMazeVec(num_envs=4, **kw), sync_env(4, **kw)
    vec.reset(seed=9)
    sync.reset(seed=9)
    max_steps = vec.max_steps
    state = vec.get_state()
    state["x"][:] = state["length"]  # everyone at a junction...
    state["steps"][:] = max_steps - 1  # ...one step before the limit
    state["corridor"][:] = [0, 1, 0, 1]
    vec.set_state(state)
    for i, env in enumerate(sync.envs):
        sub_state = {k: v[i] for k, v in state.items()}
        env.set_state({**sub_state, "failed": np.array(False), "needs_reset": np.array(False)})
    actions = state["cue"] + 1
    actions[2] = 2 - state["cue"][2]  # a wrong turn
    out_v, out_s = vec.step(actions), sync.step(actions)
    for a, b in zip(out_v[:4], out_s[:4]):
        assert np.array_equal(a, b)
    assert_info_equal(out_v[4], out_s[4])
    assert out_v[2].tolist() == [False, True, True, True] and out_v[3].tolist() == [True, False, False, False]
    # Both envs now continue identically (env 0 drew a transition corridor and then a reset one).
    compare = [vec.step(np.zeros(4, dtype=np.int64)), sync.step(np.zeros(4, dtype=np.int64))]
    assert np.array_equal(compare[0][0], compare[1][0])
    assert all(np.array_equal(vec.get_state()["rng"][i], e.get_state()["rng"]) for i, e in enumerate(sync.envs))


def test_make_vec_returns_native_env_equal_to_sync():
    env_id = "rlmem/EndlessTMaze-v0"
    vec = gym.make_vec(env_id, num_envs=8)
    assert isinstance(vec, EndlessTMazeVec)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.observation_space.shape == (8, 3) and vec.single_action_space == gym.spaces.Discrete(3)
    sync = gym.make_vec(
        env_id, num_envs=8, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}
    )
    assert isinstance(sync, SyncVectorEnv)
    compare_batched_with_sync(vec, sync, seed=3, steps=200, policy="random")


def test_reset_seed_conventions():
    vec = EndlessTMazeVec(num_envs=3, **UNIFORM)
    vec.reset(seed=[5, 6, 7])
    from_list = vec.get_state()
    vec.reset(seed=5)
    assert all(np.array_equal(from_list[k], v) for k, v in vec.get_state().items())
    single = EndlessTMaze(**UNIFORM)
    single.reset(seed=6)
    assert np.array_equal(single.get_state()["rng"], from_list["rng"][1])
    vec.reset()  # None keeps the generators running: a new episode, not a replay
    vec.reset()
    assert not np.array_equal(vec.get_state()["rng"], from_list["rng"])
    fresh_a, fresh_b = EndlessTMazeVec(num_envs=3), EndlessTMazeVec(num_envs=3)
    fresh_a.reset()
    fresh_b.reset()
    assert not np.array_equal(fresh_a.get_state()["rng"], fresh_b.get_state()["rng"])


def test_batched_render_gives_one_frame_per_env():
    vec = EndlessTMazeVec(num_envs=3, render_mode="rgb_array")
    vec.reset(seed=0)
    frames = vec.render()
    assert len(frames) == 3 and all(f.dtype == np.uint8 and f.ndim == 3 for f in frames)
    single = EndlessTMaze(render_mode="rgb_array")
    single.reset(seed=1)
    assert np.array_equal(frames[1], single.render())


# --------------------------------------------------------------------------- get_state / set_state


def test_single_state_round_trip_resumes_exactly():
    env, rng = EndlessTMaze(**UNIFORM), np.random.default_rng(1)
    env.reset(seed=4)
    for _ in range(2):  # mid-corridor (l_min = 2), the cue no longer visible
        env.step(FORWARD)
    # Through JSON: the state must be plain numbers.
    actions = rng.choice(3, size=200, p=[0.8, 0.1, 0.1]).tolist()
    assert_single_resume(env, lambda: EndlessTMaze(**UNIFORM), actions)


def test_batched_state_round_trip_resumes_exactly():
    vec, rng = EndlessTMazeVec(num_envs=16, **UNIFORM), np.random.default_rng(2)
    vec.reset(seed=8)
    for _ in range(30):
        vec.step(rng.integers(0, 3, 16))
    saved = {k: v.copy() for k, v in vec.get_state().items()}
    actions = rng.integers(0, 3, (100, 16))
    assert_batched_resume(vec, lambda: EndlessTMazeVec(num_envs=16, **UNIFORM), actions)
    with pytest.raises(ConfigError):
        EndlessTMazeVec(num_envs=4, **UNIFORM).set_state(saved)


def test_rng_state_array_round_trip_keeps_buffered_bits():
    # integers() on a small range buffers half a 64-bit word (has_uint32 = 1): the saved state
    # must carry it, or the next draws differ.
    from rlmem.envs.tmaze import rng_from_array, rng_state_to_array

    rng = np.random.default_rng(0)
    rng.integers(2)
    saved = rng_state_to_array(rng)
    assert saved.dtype == np.uint64 and saved.shape == (6,) and saved[4] == 1
    restored = rng_from_array(saved)
    assert restored.integers(0, 1 << 20, size=8).tolist() == rng.integers(0, 1 << 20, size=8).tolist()


def test_rewriting_suite_file_loads_and_builds():
    from pathlib import Path

    from rlmem.suites import load_suite  # the project's suite loader (rejects unknown keys)

    entries = load_suite(Path(__file__).resolve().parents[1] / "envs" / "rewriting.toml")
    assert len({e.name for e in entries}) == len(entries) >= 4
    for entry in entries:
        assert entry.env in rlmem_envs.rlmem_ids() and entry.steps > 0
        gym.make(entry.env, **entry.env_kwargs).reset(seed=0)
        gym.make_vec(entry.env, num_envs=2, **entry.env_kwargs).reset(seed=0)
        for split in entry.eval_splits.values():  # held-out splits build too
            gym.make(entry.env, **{**entry.env_kwargs, **split}).reset(seed=0)
    uniform = next(e for e in entries if e.name == "tmaze-uniform")
    assert set(uniform.eval_splits) == {"interpolate", "extrapolate-long", "extrapolate-short"}


def test_suite_rejects_malformed_eval_splits(tmp_path):
    from rlmem.errors import ConfigError
    from rlmem.suites import load_suite

    bad = tmp_path / "bad.toml"
    bad.write_text('[[env]]\nname = "x"\nid = "rlmem/EndlessTMaze-v0"\neval_splits = { long = 3 }\n')
    with pytest.raises(ConfigError, match="eval_splits"):
        load_suite(bad)
