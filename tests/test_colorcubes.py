"""Color-Cubes: Gymnasium conformance, determinism, oracle returns, hidden colours, batched == single."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rlmem.envs as rlmem_envs
from envcheck import assert_batched_resume, assert_info_equal, assert_single_resume
from rlmem.envs.colorcubes import (
    DOWN,
    FULL,
    HIDDEN,
    LEFT,
    POSITIONS,
    RIGHT,
    STAY,
    UP,
    ColorCubes,
    ColorCubesConfig,
    ColorCubesVec,
    _draw_layout_nb,
    _raw_word,
    _observation_tables,
    _observe_all_nb,
    apply_teleports,
    draw_layout,
    draw_phase_change,
    observe,
    teleport_bound,
    teleport_mask,
)
from rlmem.envs.tmaze import rng_state_to_array
from rlmem.errors import ConfigError

CUBES_IDS = [i for i in rlmem_envs.rlmem_ids() if "ColorCubes" in i]
# Small and busy: frequent teleports and short phases, so every kind of event happens.
BUSY = dict(level="medium", n_cubes=3, n_phases=2, grid_size=4, p_teleport=0.3, max_phase_steps=8)
BUSY_HIDDEN = {**BUSY, "hide_colours": True, "teleport_target": True}


# --------------------------------------------------------------------------- helpers


def toward(agent_cell: int, goal_cell: int, g: int) -> int:
    """One step of a shortest path on the open grid: rows first, then columns."""
    (ay, ax), (gy, gx) = divmod(agent_cell, g), divmod(goal_cell, g)
    if ay != gy:
        return DOWN if gy > ay else UP
    if ax != gx:
        return RIGHT if gx > ax else LEFT
    return STAY


def target_from_full_view(obs: np.ndarray, n: int, g: int) -> int:
    """The memory an agent needs: the target's cell, decoded from a full-view observation."""
    colour = int(np.argmax(obs[2 : 2 + n]))
    y, x = obs[3 + n + 2 * colour : 5 + n + 2 * colour]
    return (int(round(float(y) * g)) - 1) * g + int(round(float(x) * g)) - 1


def run_oracle(env: ColorCubes, seed: int, from_observations: bool):
    """One episode walking shortest paths to the target; its cell comes from ``get_state`` or
    from the last full view seen (remembered, overwritten at every phase start)."""
    cfg, g = env.config, env.config.grid_size
    obs, info = env.reset(seed=seed)
    expected, total, steps, remembered = [], 0.0, 0, None
    while True:
        s = env.get_state()
        agent, goal = int(s["agent"]), int(s["cubes"][s["target"]])
        if int(s["phase_steps"]) == 0:  # a phase starts: its shortest-path return
            d = abs(agent // g - goal // g) + abs(agent % g - goal % g)
            expected += [cfg.step_penalty] * (d - 1) + [cfg.target_reward]
        if info["cue"]:
            remembered = target_from_full_view(obs, cfg.n_cubes, g)
        if from_observations:
            assert remembered == goal  # the target never moves during its phase
        obs, reward, terminated, truncated, info = env.step(toward(agent, remembered if from_observations else goal, g))
        total += reward
        steps += 1
        if terminated or truncated:
            return total, steps, terminated, truncated, info, expected


def sync_env(n: int, **kw) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: ColorCubes(**kw) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)


def noisy_oracle(vec: ColorCubesVec, rng: np.random.Generator, p_greedy: float) -> np.ndarray:
    """Walk toward the target with probability ``p_greedy``, else a random action. The same
    actions go to both envs under comparison."""
    s, g = vec.get_state(), vec.config.grid_size
    goals = s["cubes"][np.arange(vec.num_envs), s["target"]]
    greedy = np.array([toward(int(a), int(c), g) for a, c in zip(s["agent"], goals)])
    return np.where(rng.random(vec.num_envs) < p_greedy, greedy, rng.integers(0, 5, vec.num_envs))


def compare_batched_with_sync(vec, sync, seed: int, steps: int) -> dict[str, int]:
    rng = np.random.default_rng(seed + 1000)
    obs_v, info_v = vec.reset(seed=seed)
    obs_s, info_s = sync.reset(seed=seed)
    assert obs_v.dtype == obs_s.dtype == np.float32 and np.array_equal(obs_v, obs_s)
    assert_info_equal(info_v, info_s)
    seen = {"success": 0, "truncated": 0, "cue": 0}
    for t in range(steps):
        # Mostly greedy, then mostly random: episodes both succeed and time out.
        actions = noisy_oracle(vec, rng, 0.6 if t < steps // 2 else 0.05)
        out_v, out_s = vec.step(actions), sync.step(actions)
        for k, (a, b) in enumerate(zip(out_v[:4], out_s[:4])):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"output {k} differs"
        assert_info_equal(out_v[4], out_s[4])
        info = out_v[4]
        if "final_info" in info:
            seen["success"] += int(info["final_info"]["success"][info["_final_info"]].sum())
        seen["truncated"] += int(out_v[3].sum())
        seen["cue"] += int(info["cue"].sum())
    state_v = vec.get_state()
    for i, env in enumerate(sync.envs):
        for key, value in env.unwrapped.get_state().items():
            if key in state_v:
                assert np.array_equal(state_v[key][i], value), key
    return seen


# --------------------------------------------------------------------------- registration, checker


def test_registration():
    assert set(CUBES_IDS) == {
        "rlmem/ColorCubes-v0",
        "rlmem/ColorCubesTrivial-v0",
        "rlmem/ColorCubesMedium-v0",
        "rlmem/ColorCubesExtreme-v0",
    }
    for env_id in CUBES_IDS:
        assert gym.spec(env_id).vector_entry_point is not None
        assert rlmem_envs.memory_types(env_id) == ("object", "spatial", "rewriting")
    trivial = gym.make("rlmem/ColorCubesTrivial-v0").unwrapped.config
    assert (trivial.n_cubes, trivial.n_phases, trivial.p_teleport) == (1, 1, 0.0)
    assert gym.make("rlmem/ColorCubesExtreme-v0").unwrapped.config.hide_colours
    assert not gym.make("rlmem/ColorCubesMedium-v0").unwrapped.config.hide_colours
    assert gym.make("rlmem/ColorCubes-v0", n_cubes=2).unwrapped.config.n_cubes == 2


@pytest.mark.parametrize("env_id", CUBES_IDS)
def test_check_env_and_render(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    s = env.unwrapped.get_state()
    g = env.unwrapped.config.grid_size
    env.step(UP if int(s["agent"]) // g > 0 else DOWN)
    assert not np.array_equal(env.render(), first)  # the agent moved


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_cubes=25, grid_size=5),  # > G*G - 1
        dict(n_cubes=0),
        dict(grid_size=1),
        dict(n_phases=0),
        dict(p_teleport=-0.1),
        dict(p_teleport=1.5),
        dict(p_teleport=float("nan")),
        dict(level="impossible"),
        dict(view_radius=-1),
        dict(hide_colours="yes"),
        dict(step_penalty=float("inf")),
        dict(render_mode="human"),
    ],
)
def test_bad_kwargs_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        ColorCubes(**kwargs)
    with pytest.raises(ConfigError):
        ColorCubesVec(num_envs=2, **kwargs)
    if "render_mode" not in kwargs:
        with pytest.raises(ConfigError):
            gym.make("rlmem/ColorCubes-v0", **kwargs)


def test_boundary_kwargs_are_accepted():
    ColorCubes(n_cubes=24, grid_size=5, p_teleport=1.0).reset(seed=0)  # full grid: no free cell
    ColorCubes(n_cubes=1, grid_size=2, p_teleport=0.0).reset(seed=0)
    with pytest.raises(ConfigError):
        ColorCubesVec(num_envs=0)


# --------------------------------------------------------------------------- determinism


def test_seeded_copies_agree_and_seeds_matter():
    def rollout(seed: int, steps: int = 300):
        env, rng = ColorCubes(**BUSY), np.random.default_rng(123)
        trace = [env.reset(seed=seed)[0]]
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(5)))
            trace += [obs, reward, terminated, truncated]
            if terminated or truncated:
                trace.append(env.reset()[0])
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_replay_reproduces_episode():
    env, rng = ColorCubes(**BUSY), np.random.default_rng(5)
    env.reset(seed=11)
    actions, record = [], []
    for _ in range(200):
        a = int(rng.integers(5))
        actions.append(a)
        out = env.step(a)
        record.append(out[:4])
        if out[2] or out[3]:
            env.reset()
            break
    replay = ColorCubes(**BUSY)
    replay.reset(seed=11)
    for a, (obs, reward, terminated, truncated) in zip(actions, record, strict=True):
        obs2, reward2, terminated2, truncated2, _ = replay.step(a)
        assert np.array_equal(obs, obs2) and reward == reward2
        assert (terminated, truncated) == (terminated2, truncated2)


# --------------------------------------------------------------------------- task semantics


LEVEL_IDS = ["rlmem/ColorCubesTrivial-v0", "rlmem/ColorCubesMedium-v0", "rlmem/ColorCubesExtreme-v0"]


@pytest.mark.parametrize("env_id", LEVEL_IDS)
@pytest.mark.parametrize("from_observations", [False, True], ids=["get_state", "memory"])
def test_oracle_gets_the_shortest_path_return(env_id, from_observations):
    env = gym.make(env_id).unwrapped
    for seed in range(5):
        total, steps, terminated, truncated, info, expected = run_oracle(env, seed, from_observations)
        assert terminated and not truncated and info["success"] is True
        assert steps == len(expected) and total == sum(expected)
        assert expected.count(env.config.target_reward) == env.config.n_phases


def test_dawdling_truncates_at_the_phase_limit():
    env = ColorCubes(level="trivial")
    env.reset(seed=0)
    limit = env.config.max_phase_steps
    assert limit == 2 * (env.config.grid_size - 1)  # trivial: just the longest shortest path
    assert ColorCubes(level="medium").config.max_phase_steps == 4 * 7  # the default: 4 G
    for t in range(1, limit + 1):
        obs, reward, terminated, truncated, info = env.step(STAY)  # never on the cube: cells are distinct
        assert reward == -0.01 and not terminated and truncated == (t == limit)
        assert info["cue"] is False and obs[3] == 0.0  # no teleports: the full view never returns
    assert info["success"] is False


def test_teleports_are_shown_and_target_changes_each_phase():
    env, rng = ColorCubes(**BUSY), np.random.default_rng(0)
    obs, info = env.reset(seed=1)
    n, moves, phases = BUSY["n_cubes"], 0, 0
    for _ in range(3000):
        before = env.get_state()
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(5)))
        after = env.get_state()
        reached = reward == env.config.target_reward
        target = int(before["target"])
        others = np.arange(n) != target
        teleported = not np.array_equal(before["cubes"][others], after["cubes"][others])
        if reached and not terminated:
            phases += 1
            assert int(after["target"]) != target and info["cue"]
        elif not reached:
            assert before["cubes"][target] == after["cubes"][target]  # the target stays put
            assert info["cue"] == teleported  # an update is shown exactly when a cube moved
            moves += teleported
        if info["cue"]:  # the full view shows every cube at its cell, in colour order
            g = env.config.grid_size
            cells = after["cubes"]
            assert np.allclose(obs[3 + n : 3 + 3 * n:2], (cells // g + 1) / g)
            assert np.allclose(obs[4 + n : 3 + 3 * n:2], (cells % g + 1) / g)
        if terminated or truncated:
            obs, info = env.reset()
    assert moves > 100 and phases > 10


def test_extreme_hides_colours_on_update_steps():
    cfg_kw = {**BUSY, "hide_colours": True}
    env, rng = ColorCubes(**cfg_kw), np.random.default_rng(0)
    obs, info = env.reset(seed=2)
    n, g, updates = BUSY["n_cubes"], BUSY["grid_size"], 0
    window = obs[4 + 5 * n :].reshape(-1, n + 2)
    assert window[:, 2:].sum() == 0  # the window never shows colours either
    for _ in range(2000):
        before = env.get_state()
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(5)))
        after = env.get_state()
        window = obs[4 + 5 * n :].reshape(-1, n + 2)
        assert window[:, 2:].sum() == 0
        moved = reward != env.config.target_reward and not np.array_equal(before["cubes"], after["cubes"])
        if moved:
            updates += 1
            assert info["cue"] is False and obs[2 + n] == 0.0 and obs[3 + 3 * n] == 1.0
            assert not obs[3 + n : 3 + 3 * n].any()  # no coloured positions
            shown = np.round(obs[4 + 3 * n : 4 + 5 * n].reshape(n, 2) * g).astype(int) - 1
            assert sorted(shown[:, 0] * g + shown[:, 1]) == sorted(after["cubes"].tolist())
            assert list(shown[:, 0] * g + shown[:, 1]) == sorted(after["cubes"].tolist())  # cell order, not colour
        elif reward != env.config.target_reward:
            assert obs[3 + 3 * n] == 0.0 and not obs[4 + 3 * n : 4 + 5 * n].any()
        if terminated or truncated:
            obs, info = env.reset()
    assert updates > 50
    # The same steps with colours shown: full views instead.
    plain = ColorCubes(**BUSY)
    plain.reset(seed=2)
    rng = np.random.default_rng(0)
    cues = 0
    for _ in range(200):
        obs, reward, terminated, truncated, info = plain.step(int(rng.integers(5)))
        cues += info["cue"]
        assert obs[3 + 3 * n] == 0.0
        if terminated or truncated:
            plain.reset()
    assert cues > 0


def test_window_shows_the_neighbourhood():
    env = ColorCubes(n_cubes=3, grid_size=4, p_teleport=0.0, view_radius=1)
    env.reset(seed=0)
    state = env.get_state()
    state.update(agent=np.array(0), cubes=np.array([1, 5, 15]), target=np.array(2))  # corner (0, 0)
    env.set_state(state)
    obs = env.step(STAY)[0]
    window = obs[4 + 15 :].reshape(3, 3, 5)  # [outside, cube, colour 0, colour 1, colour 2]
    wall, empty = [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]
    expected = [
        [wall, wall, wall],
        [wall, empty, [0, 1, 1, 0, 0]],  # the agent's cell; cube 0 at (0, 1) to its right
        [wall, empty, [0, 1, 0, 1, 0]],  # cube 1 at (1, 1); cube 2 at (3, 3) is out of view
    ]
    assert window.tolist() == expected
    hidden = ColorCubes(n_cubes=3, grid_size=4, p_teleport=0.0, hide_colours=True)
    hidden.reset(seed=0)
    hidden.set_state(state)
    window = hidden.step(STAY)[0][4 + 15 :].reshape(3, 3, 5)
    assert window.tolist() == [[row[:2] + [0, 0, 0] for row in r] for r in expected]


def test_step_before_reset_raises():
    with pytest.raises(gym.error.ResetNeeded):
        ColorCubes().step(STAY)
    with pytest.raises(gym.error.ResetNeeded):
        ColorCubesVec(num_envs=2).step(np.zeros(2, dtype=np.int64))


# --------------------------------------------------------------------------- batched == single


@pytest.mark.parametrize("kwargs", [BUSY, BUSY_HIDDEN, dict(level="trivial"), dict(level="extreme")],
                         ids=["busy", "busy-hidden", "trivial", "extreme"])  # fmt: skip
@pytest.mark.parametrize("num_envs", [1, 3, 8])
def test_batched_equals_sync_vector_env(kwargs, num_envs):
    seen = {"success": 0, "truncated": 0, "cue": 0}
    for seed in (0, 42):
        vec, sync = ColorCubesVec(num_envs=num_envs, **kwargs), sync_env(num_envs, **kwargs)
        result = compare_batched_with_sync(vec, sync, seed, steps=150)
        seen = {k: seen[k] + result[k] for k in seen}
    assert seen["success"] > 0 and seen["truncated"] > 0


def test_make_vec_returns_native_env_equal_to_sync():
    env_id = "rlmem/ColorCubesMedium-v0"
    vec = gym.make_vec(env_id, num_envs=8)
    assert isinstance(vec, ColorCubesVec) and vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.observation_space.shape == (8, 92) and vec.single_action_space == gym.spaces.Discrete(5)
    sync = gym.make_vec(
        env_id, num_envs=8, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}
    )
    compare_batched_with_sync(vec, sync, seed=3, steps=200)


def test_reset_seed_conventions():
    vec = ColorCubesVec(num_envs=3, **BUSY)
    vec.reset(seed=[5, 6, 7])
    from_list = vec.get_state()
    vec.reset(seed=5)
    assert all(np.array_equal(from_list[k], v) for k, v in vec.get_state().items())
    single = ColorCubes(**BUSY)
    single.reset(seed=6)
    assert np.array_equal(single.get_state()["rng"], from_list["rng"][1])
    assert np.array_equal(single.get_state()["cubes"], from_list["cubes"][1])


# --------------------------------------------------------------------------- get_state / set_state


def test_single_state_round_trip_resumes_exactly():
    env, rng = ColorCubes(**BUSY), np.random.default_rng(1)
    env.reset(seed=4)
    for _ in range(3):
        env.step(int(rng.integers(5)))
    actions = rng.integers(0, 5, 200).tolist()
    assert_single_resume(env, lambda: ColorCubes(**BUSY), actions)


def test_batched_state_round_trip_resumes_exactly():
    vec, rng = ColorCubesVec(num_envs=16, **BUSY), np.random.default_rng(2)
    vec.reset(seed=8)
    for _ in range(30):
        vec.step(rng.integers(0, 5, 16))
    saved = {k: v.copy() for k, v in vec.get_state().items()}
    actions = rng.integers(0, 5, (100, 16))
    assert_batched_resume(vec, lambda: ColorCubesVec(num_envs=16, **BUSY), actions)
    with pytest.raises(ConfigError):
        ColorCubesVec(num_envs=4, **BUSY).set_state(saved)


# --------------------------------------------------------------------------- batched parts == single-env parts
#
# The batched env's compiled loop makes its own draws and observations; each must equal the
# single env's function on the same raw words / states, including the rare cases (agent standing
# on a cube, a full grid, words on the teleport boundary, a window wider than the grid). Several
# teleports in one sub-env are covered by the env-level comparisons below ("all-teleport").


def pcg_words(seed: int, count: int) -> np.ndarray:
    """The first ``count`` raw words of ``Generator(PCG64(seed))``: what the single env draws."""
    return np.random.PCG64(seed).random_raw(count)


def random_states(cfg: ColorCubesConfig, count: int, seed: int, agent_on_cube: float = 0.3):
    """``count`` reachable states: layouts from ``draw_layout``, and the agent moved onto a
    non-target cube with probability ``agent_on_cube`` (cubes do not block it)."""
    rng = np.random.default_rng(seed)
    agent, target = np.zeros(count, np.int64), np.zeros(count, np.int64)
    cubes = np.zeros((count, cfg.n_cubes), np.int64)
    for i in range(count):
        agent[i], cubes[i], target[i] = draw_layout(np.random.Generator(np.random.PCG64(seed * 100_000 + i)), cfg)
        others = [c for c in range(cfg.n_cubes) if c != target[i]]
        if others and rng.random() < agent_on_cube:
            agent[i] = cubes[i, rng.choice(others)]
    return agent, cubes, target


SMALL_CONFIGS = [
    dict(level="medium"),
    dict(level="trivial"),
    dict(level="medium", grid_size=2, n_cubes=1),
    dict(level="medium", grid_size=3, n_cubes=8),  # full grid: no free cell for a teleport
    dict(level="medium", grid_size=4, n_cubes=6, teleport_target=True, p_teleport=1.0),
]


@pytest.mark.parametrize("p", [0.05, 0.3, 1 / 3, 0.5, 0.999999, 1.0, 2.0**-40, 1e-300])
def test_teleport_bound_equals_teleport_mask(p):
    cfg = ColorCubesConfig.from_level("medium", p_teleport=p, teleport_target=True)  # no cube excluded
    t = int(np.ceil(p * 2.0**53))
    edges = [0, 1, (t << 11) - 1, min(t << 11, 2**64 - 1), max(t - 1, 0) << 11, 2**64 - 1, 2**64 - 2048]
    words = np.concatenate([np.array(edges, dtype=np.uint64), pcg_words(7, 4993)]).reshape(-1, cfg.n_cubes)
    reference = teleport_mask(words, np.zeros(len(words), dtype=np.int64), cfg)
    assert np.array_equal(words <= teleport_bound(cfg), reference)
    inside, outside = reference.reshape(-1)[2:4]  # the last word below p, the first one not
    assert inside and (outside == (p == 1.0))


def test_teleport_bound_needs_teleports():
    with pytest.raises(ConfigError):
        teleport_bound(ColorCubesConfig.from_level("trivial"))


def test_compiled_pcg64_gives_numpys_raw_words():
    """The compiled loop's generator step equals numpy's PCG64 word for word (every rotation
    amount occurs in 20k words), and leaves the state where numpy's is after as many words."""
    rng = np.stack([rng_state_to_array(np.random.Generator(np.random.PCG64(s))) for s in range(3)])
    for i, s in enumerate(range(3)):
        got = [_raw_word(rng, i) for _ in range(20_000 if i == 0 else 50)]
        reference = np.random.Generator(np.random.PCG64(s))
        assert np.array_equal(np.array(got, dtype=np.uint64), reference.bit_generator.random_raw(len(got)))
        assert np.array_equal(rng[i], rng_state_to_array(reference))


@pytest.mark.parametrize("kwargs", SMALL_CONFIGS)
def test_compiled_layout_equals_draw_layout(kwargs):
    cfg = ColorCubesConfig.from_level(**kwargs)
    cubes, occupied = np.zeros((2, cfg.n_cubes), dtype=np.int64), np.zeros(cfg.n_cubes + 1, dtype=np.int64)
    for s in range(300):
        rng = np.stack([rng_state_to_array(np.random.Generator(np.random.PCG64(p))) for p in (10_000 + s, s)])
        agent, target = _draw_layout_nb(rng, 1, cfg.cells, cubes, occupied)  # sub-env 1's generator
        a, c, t = draw_layout(np.random.Generator(np.random.PCG64(s)), cfg)
        assert (agent, target) == (a, t) and np.array_equal(cubes[1], c) and not cubes[0].any(), s


@pytest.mark.parametrize(
    "kwargs",
    SMALL_CONFIGS
    + [dict(level="extreme"), dict(level="medium", view_radius=0), dict(level="medium", view_radius=2),
       dict(level="extreme", grid_size=3, n_cubes=3, view_radius=4)],  # a window wider than the grid
)  # fmt: skip
def test_compiled_observation_equals_observe(kwargs):
    cfg, count = ColorCubesConfig.from_level(**kwargs), 300
    agent, cubes, target = random_states(cfg, count, seed=5)
    kinds = [HIDDEN, FULL, POSITIONS] if cfg.hide_colours else [HIDDEN, FULL]  # the reachable ones
    shown = np.random.default_rng(6).choice(kinds, count)
    expected = observe(cfg, agent, cubes, target, shown)
    got = np.full_like(expected, np.nan)  # every entry must be written
    _observe_all_nb(got, agent, cubes, target, shown, _observation_tables(cfg), cfg.hide_colours)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


EDGE_CONFIGS = {
    # Every non-target cube teleports on every step: several rounds of teleports per sub-env,
    # and enough words per step that the read-ahead buffer refills with words left over.
    "all-teleport": dict(level="medium", n_cubes=6, n_phases=3, grid_size=4, p_teleport=1.0, max_phase_steps=6),
    "target-teleports": {**BUSY, "teleport_target": True},
    "one-cube": dict(level="medium", n_cubes=1, n_phases=3, grid_size=3, p_teleport=0.5, teleport_target=True),
    "full-grid": dict(level="medium", n_cubes=8, n_phases=3, grid_size=3, p_teleport=0.5),
    "wide-window": {**BUSY_HIDDEN, "view_radius": 5},
}


@pytest.mark.parametrize("name", list(EDGE_CONFIGS))
def test_batched_equals_sync_vector_env_edge_configs(name):
    kwargs = EDGE_CONFIGS[name]
    seen = compare_batched_with_sync(ColorCubesVec(num_envs=5, **kwargs), sync_env(5, **kwargs), seed=9, steps=150)
    assert seen["cue"] > 0 and seen["success"] + seen["truncated"] > 0


def test_long_random_run_equals_sync():
    """Random actions and no get_state in between (which would empty the read-ahead buffer): about
    11 words per step, so the 2048-word buffer refills with unread words carried over."""
    kwargs = EDGE_CONFIGS["all-teleport"]
    vec, sync, rng = ColorCubesVec(num_envs=4, **kwargs), sync_env(4, **kwargs), np.random.default_rng(12)
    assert np.array_equal(vec.reset(seed=5)[0], sync.reset(seed=5)[0])
    for _ in range(260):
        actions = rng.integers(0, 5, 4)
        out_v, out_s = vec.step(actions), sync.step(actions)
        for a, b in zip(out_v[:4], out_s[:4]):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert_info_equal(out_v[4], out_s[4])
    state = vec.get_state()
    for i, env in enumerate(sync.envs):
        assert all(np.array_equal(state[k][i], v) for k, v in env.unwrapped.get_state().items() if k in state)


def test_reset_mask_mid_run_equals_sync():
    vec, sync, rng = ColorCubesVec(num_envs=6, **BUSY), sync_env(6, **BUSY), np.random.default_rng(11)
    vec.reset(seed=3)
    sync.reset(seed=3)
    for t in range(120):
        if t % 40 == 20:  # some sub-envs restart early, with words still read ahead
            mask = rng.random(6) < 0.5
            mask[0] = True
            out_v, out_s = vec.reset(options={"reset_mask": mask}), sync.reset(options={"reset_mask": mask})
            assert np.array_equal(out_v[0], out_s[0])
            assert_info_equal(out_v[1], out_s[1])
        actions = rng.integers(0, 5, 6)
        out_v, out_s = vec.step(actions), sync.step(actions)
        for a, b in zip(out_v[:4], out_s[:4]):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert_info_equal(out_v[4], out_s[4])


def test_batched_actions_any_integer_dtype_and_bad_actions_raise():
    outs = []
    for dtype in (np.int64, np.int32, np.uint8):
        vec, rng = ColorCubesVec(num_envs=4, **BUSY), np.random.default_rng(0)
        vec.reset(seed=1)
        outs.append([vec.step(rng.integers(0, 5, 4).astype(dtype))[0] for _ in range(30)])
    assert all(np.array_equal(a, b) for a, b in zip(outs[0], outs[1])) and all(
        np.array_equal(a, b) for a, b in zip(outs[0], outs[2])
    )
    vec = ColorCubesVec(num_envs=3)
    vec.reset(seed=0)
    for bad in ([0, 1, 5], [-1, 0, 0], np.array([0, 1, 2], dtype=np.int32) - 3, [0.0, 1.0, 2.0], [0, 1]):
        with pytest.raises(ValueError):
            vec.step(np.asarray(bad))
