"""GoatWorld (MiniWorld, headless) and the habitat-sim adapter: conformance, determinism and
replay, goal images, lifelong subgoals, the oracle, SPL on a hand-made layout, bad input.

Headless rendering is slow-ish, so the houses are small and the rollouts short; one env is
shared by the tests that only read it. The habitat adapter's episode parser and its missing-
habitat_sim error run everywhere; its simulator tests run only where ``habitat_sim`` imports
(conda) and a scene exists ($RLMEM_HABITAT_SCENE or habitat's test scene), so they are skipped
on machines without them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import rlmem.envs as rlmem_envs
from rlmem.envs.goat_grid import (
    CATEGORIES,
    FORWARD,
    LEFT,
    MAX_TOKENS,
    MODALITIES,
    RIGHT,
    STOP,
    TOGGLE,
    GoatGrid,
    detokenize,
    parse_description,
)
from rlmem.envs.goat_world import AGENT_RADIUS, GoatWorld, NavGrid, OracleAgent, path_spl
from rlmem.errors import ConfigError

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(layout=(2, 2), room_size=3.0, n_objects=6, min_subgoals=3, max_subgoals=4, subgoal_budget=60)


@pytest.fixture(scope="module")
def env():
    e = GoatWorld(render_mode="rgb_array", render_size=(160, 120), **SMALL)
    yield e
    e.close()


def rollout(env, seed, actions):
    out = [env.reset(seed=seed)]
    for a in actions:
        out.append(env.step(a))
        if out[-1][2]:
            break
    return out


def assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def moves(seed, n):
    """Mostly forward and turns (toggle included), no stop: the agent wanders."""
    rng = np.random.default_rng(seed)
    return [int(a) for a in rng.choice([LEFT, RIGHT, FORWARD, TOGGLE], n, p=[0.25, 0.25, 0.45, 0.05])]


# --------------------------------------------------------------------------- conformance


def test_check_env_spaces_and_registration():
    e = gym.make("rlmem/GoatWorld-v0", **SMALL)
    check_env(e.unwrapped, skip_render_check=True)
    obs, info = e.reset(seed=0)
    assert obs["image"].shape == (60, 80, 3) and obs["image"].dtype == np.uint8
    assert obs["goal_image"].shape == obs["image"].shape
    assert obs["goal_text"].shape == (MAX_TOKENS,) and e.action_space.n == 5
    assert e.observation_space["direction"].n == 12  # 30-degree turns
    grid = GoatGrid(layout=(2, 2), room_size=4, n_objects=8, min_subgoals=3, max_subgoals=4)
    same_keys = ("goal_modality", "goal_category", "goal_text", "subgoal_index")
    assert set(e.observation_space.spaces) == set(grid.observation_space.spaces)
    for key in same_keys:
        assert e.observation_space[key] == grid.observation_space[key], key
    assert set(info) == {"subgoal_index", "modality", "goal_text"}
    assert rlmem_envs.memory_types("rlmem/GoatWorld-v0") == ("spatial", "object")
    assert gym.spec("rlmem/GoatWorld-v0").max_episode_steps is None
    e.close()


def test_importing_rlmem_envs_imports_neither_pyglet_nor_habitat():
    code = (
        "import sys, rlmem.envs, rlmem.envs.goat_world, rlmem.envs.habitat\n"
        "print(rlmem.envs.memory_types('rlmem/GoatWorld-v0'), rlmem.envs.memory_types('rlmem/GoatHabitat-v0'))\n"
        "assert not {'pyglet', 'miniworld', 'habitat_sim'} & set(sys.modules), sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


def test_render_top_view_frames_goal_instances(env):
    env.reset(seed=1)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    cyan = np.all(frame == (0, 255, 255), axis=-1)
    _, scale = env._world.render_top_view(env._world.vis_fb, return_scale=True)
    o = env.oracle

    def window(inst):
        col = int(inst.pos[0] * scale["x_scale"] + scale["x_offset"])
        row = int(inst.pos[1] * scale["z_scale"] + scale["z_offset"])
        h = int((inst.radius + 0.1) * scale["x_scale"]) + 2
        return slice(row - h, row + h + 1), slice(col - h, col + h + 1)

    goals = [o.instances[i] for i in o.goal_ids()]
    for inst in o.instances:  # a cyan square around each instance that satisfies the goal, and only those
        framed = cyan[window(inst)].sum() > 10
        if inst in goals:
            assert framed, inst
        elif all(math.dist(inst.pos, g.pos) > 1.5 for g in goals):  # no goal's square nearby
            assert not framed, inst
    quiet = GoatWorld(**SMALL)
    quiet.reset(seed=1)
    with pytest.warns(UserWarning, match="render_mode"):
        assert quiet.render() is None
    quiet.close()


# --------------------------------------------------------------------------- determinism


def test_seeded_determinism_and_replay(env):
    acts = moves(0, 40) + [STOP] + moves(1, 20)
    first = rollout(env, 7, acts)
    other = GoatWorld(**SMALL)  # a second env in the same process: its own display list
    assert_same(rollout(other, 7, acts), first)
    assert_same(rollout(env, 7, acts), first)  # replay on the same env after other ran
    changed = [not np.array_equal(a[0]["image"], b[0]["image"]) for a, b in zip(first, first[1:])]
    assert sum(changed) > 10  # the views really changed along the way
    different = rollout(other, 8, acts[:5])
    assert not np.array_equal(different[0][0]["image"], first[0][0]["image"])
    other.close()


def test_two_envs_in_one_process_keep_their_own_scenes():
    a, b = (GoatWorld(render_mode="rgb_array", render_size=(160, 120), **SMALL) for _ in range(2))
    obs_a, _ = a.reset(seed=0)
    top_a = a.render()  # the whole house from above: every doorway's coloured frame
    b.reset(seed=1)  # compiles b's rooms and doors: must not replace a's
    assert not np.array_equal(b.render(), top_a)
    assert np.array_equal(a.render(), top_a)
    assert np.array_equal(a.egocentric_rgb(), obs_a["image"])
    a.close()
    b.close()


def test_view_cone_culling_never_changes_the_view(env):
    env.reset(seed=2)
    world, nav = env._world, env.oracle.nav
    ii, jj = np.nonzero(nav.free)
    rng = np.random.default_rng(0)
    for _ in range(25):
        k = rng.integers(len(ii))
        x, z = nav.centres[ii[k], jj[k]]
        yaw = float(rng.uniform(-math.pi, math.pi))
        culled = env.render_view(x, z, yaw)
        saved, world._half_hfov = world._half_hfov, 10.0  # draw every object
        try:
            full = env.render_view(x, z, yaw)
        finally:
            world._half_hfov = saved
        assert np.array_equal(culled, full)


# --------------------------------------------------------------------------- goals


def image_goal_env(seed):
    e = GoatWorld(modalities=("image",), **SMALL)
    obs, _ = e.reset(seed=seed)
    return e, obs


@pytest.mark.parametrize("seed", [4, 9])  # a red ball, a blue key
def test_goal_image_shows_the_target(seed):
    e, obs = image_goal_env(seed)
    o = e.oracle
    assert o.modality() == "image" and obs["goal_modality"] == MODALITIES.index("image")
    assert not obs["goal_text"].any() and obs["goal_image"].any()
    x, z, yaw = o.goal_viewpoint()
    assert np.array_equal(obs["goal_image"], e.render_view(x, z, yaw))
    target = o.instances[o.target_id()]
    assert obs["goal_category"] == CATEGORIES.index(target.category)
    # hiding the target changes the picture: it is in view
    world = e._world
    ent = e._entities[target.id]
    world.entities.remove(ent)
    try:
        hidden = e.render_view(x, z, yaw)
    finally:
        world.entities.append(ent)
    changed = np.any(hidden != obs["goal_image"], axis=-1)
    assert changed.mean() > 0.02, changed.mean()
    # the target's colour dominates the pixels it covers
    channel = {"red": [0], "green": [1], "blue": [2], "yellow": [0, 1]}[target.color]
    px = obs["goal_image"][changed].astype(int)
    others = [c for c in range(3) if c not in channel]
    assert (px[:, channel].min(axis=1) > px[:, others].max(axis=1) + 30).mean() > 0.5
    # the subgoals of different targets have different pictures
    images = {}
    while True:
        images.setdefault(o.target_id(), e.goal_spec().image)
        if e.step(STOP)[2]:
            break
    pictures = list(images.values())
    assert len(pictures) >= 2
    assert all(not np.array_equal(p, q) for i, p in enumerate(pictures) for q in pictures[i + 1 :])
    e.close()


def test_render_view_leaves_no_state_behind():
    a, obs = image_goal_env(4)
    b, _ = image_goal_env(4)
    pos, heading, rng_state = a._world.agent.pos.copy(), a.agent_pose[2], a.np_random.bit_generator.state
    x, z, _ = a.oracle.goal_viewpoint()
    view = a.render_view(x + 0.3, z - 0.2, 1.0)
    assert not np.array_equal(view, obs["image"])
    assert np.array_equal(a._world.agent.pos, pos) and a.agent_pose[2] == heading
    assert a.np_random.bit_generator.state == rng_state
    assert np.array_equal(a.egocentric_rgb(), obs["image"])
    acts = moves(5, 15) + [STOP]
    assert_same([a.step(act) for act in acts], [b.step(act) for act in acts])  # b never rendered a view
    a.close()
    b.close()


def test_language_goals_describe_exactly_their_target():
    e = GoatWorld(modalities=("language",), **SMALL)
    obs, info = e.reset(seed=5)
    o = e.oracle
    for _ in range(o.n_subgoals):
        text = o.text()
        assert detokenize(e.goal_spec().tokens) == text
        color, category, door = parse_description(text)
        rooms = {r for d in o.doors if d.color == door for r in d.rooms}
        matches = [i.id for i in o.instances if i.category == category and color in (None, i.color)
                   and (door is None or i.room in rooms)]
        assert matches == [o.target_id()] and o.goal_ids() == (o.target_id(),), text
        if e.step(STOP)[2]:
            break
    e.close()


# --------------------------------------------------------------------------- lifelong, oracle, SPL


def test_lifelong_subgoals_do_not_reset_the_house(env):
    obs, _ = env.reset(seed=6)
    o = env.oracle
    instances, pose = o.instances, env.agent_pose
    n = o.n_subgoals
    for k in range(n):
        obs, reward, term, trunc, info = env.step(STOP)
        assert "spl" in info and info["subgoal_index"] == k and not trunc
        assert env.agent_pose == pose and o.instances == instances  # same house, same pose
        assert term == (k == n - 1)
        if not term:
            assert obs["subgoal_index"] == k + 1
    assert info["n_subgoals"] == n and len(info["subgoal_spls"]) == n
    with pytest.raises(ResetNeeded):
        env.step(FORWARD)


def test_new_room_goals_never_start_a_subgoal_in_a_goal_room():
    env = GoatWorld(**{**SMALL, "n_objects": 3, "new_room_goals": True})
    for seed in range(4):
        env.reset(seed=seed)
        subs, inst = env._subgoals, env._instances
        for prev, sub in zip(subs, subs[1:]):
            assert inst[prev.target].room not in {inst[i].room for i in sub.goal_ids}
    env.close()


def test_budget_ends_a_subgoal_as_a_failure():
    e = GoatWorld(**{**SMALL, "subgoal_budget": 3})
    e.reset(seed=0)
    infos = [e.step(LEFT)[4] for _ in range(3)]
    assert "spl" not in infos[1] and infos[2]["subgoal_success"] is False and infos[2]["spl"] == 0.0
    assert infos[2]["taken"] == 0.0 and e.goal_spec().subgoal_index == 1
    e.close()


def test_oracle_reaches_and_succeeds(env):
    agent = OracleAgent()
    env.reset(seed=11)
    ends = []
    while True:
        _, _, term, _, info = env.step(agent.act(env))
        if "spl" in info:
            ends.append(info)
        if term:
            break
    assert all(i["subgoal_success"] for i in ends), [i["subgoal_success"] for i in ends]
    assert info["success"] and info["spl_mean"] > 0.8
    for i in ends:  # taken counts whole forward steps
        assert i["taken"] / 0.25 == pytest.approx(round(i["taken"] / 0.25))
        assert i["spl"] == pytest.approx(path_spl(True, i["shortest"], i["taken"]))


def test_a_wrong_stop_fails_with_spl_zero(env):
    env.reset(seed=12)
    o = env.oracle
    assert not o.stop_succeeds()  # (checked) the agent does not start facing a goal
    _, reward, _, _, info = env.step(STOP)
    assert info["subgoal_success"] is False and info["spl"] == 0.0 and reward == pytest.approx(-0.01)


def test_shaping_rewards_geodesic_progress():
    e = GoatWorld(shaping=1.0, **SMALL)
    e.reset(seed=13)
    o, agent = e.oracle, OracleAgent()
    progress = 0.0
    for t in range(12):
        before = o.geodesic()
        _, reward, _, _, info = e.step(agent.act(e) if t % 3 else LEFT)
        if "spl" in info:  # the subgoal ends: the potential moves on to the next subgoal
            assert reward == pytest.approx(-0.01 + before - o.geodesic() + (1.0 if info["subgoal_success"] else 0.0))
            break
        assert reward == pytest.approx(-0.01 + before - o.geodesic())
        progress += reward + 0.01
    assert progress > 0.5  # the oracle's forward steps approach the goal
    e.close()


def test_path_spl_arithmetic():
    assert path_spl(True, 4.0, 5.0) == pytest.approx(0.8)
    assert path_spl(True, 4.0, 3.5) == 1.0  # grid geodesics can exceed a lucky real path: capped
    assert path_spl(False, 4.0, 4.0) == 0.0
    assert path_spl(True, 0.0, 0.0) == 1.0 and path_spl(True, 0.0, 0.25) == 0.0
    for bad in ((-1.0, 1.0), (1.0, -0.5), (math.inf, 1.0), ("3", 1.0)):
        with pytest.raises(ConfigError):
            path_spl(True, *bad)


def two_rooms(cell=0.05):
    """Rooms A = [0, 4] x [0, 4] and B = [4.2, 8.2] x [0, 4] joined by a doorway z in [1.4, 2.6]
    through a 0.2 m wall (hand-made, no MiniWorld)."""
    segs = [
        ((0, 0), (4, 0)), ((0, 4), (4, 4)), ((0, 0), (0, 4)),  # A's outer walls
        ((4, 0), (4, 1.4)), ((4, 2.6), (4, 4)),  # A's east wall, around the doorway
        ((4.2, 0), (4.2, 1.4)), ((4.2, 2.6), (4.2, 4)),  # B's west wall
        ((4, 1.4), (4.2, 1.4)), ((4, 2.6), (4.2, 2.6)),  # the passage's sides
        ((4.2, 0), (8.2, 0)), ((4.2, 4), (8.2, 4)), ((8.2, 0), (8.2, 4)),  # B's outer walls
    ]
    rooms = [(0, 4, 0, 4), (4.2, 8.2, 0, 4), (4, 4.2, 1.4, 2.6)]
    return NavGrid((0, 8.2, 0, 4), cell, AGENT_RADIUS, np.array(segs, dtype=float), np.array(rooms, dtype=float))


def geodesic(nav, start, goal):
    sources = np.zeros(nav.shape, dtype=bool)
    sources[nav.index(*goal)] = True
    return nav.lookup(nav.distance_field(sources), *start)


def test_navgrid_geodesics_on_a_hand_made_layout():
    nav = two_rooms()
    # free cells keep the agent's disc off the walls
    assert not nav.free[nav.index(0.3, 2.0)] and nav.free[nav.index(0.5, 2.0)]
    assert not nav.free[nav.index(4.1, 1.6)] and nav.free[nav.index(4.1, 2.0)]  # the doorway's free strip
    # straight through the doorway: the Euclidean distance (within the grid's 3% + a cell)
    assert geodesic(nav, (2.0, 2.0), (6.2, 2.0)) == pytest.approx(4.2, rel=0.03, abs=0.05)
    # around both door jambs: tangent + arc on circles of the agent's radius about (4, 1.4) and
    # (4.2, 1.4), 0.2 m along the passage, then the mirror image
    c, p, r = np.array([4.0, 1.4]), np.array([2.0, 0.6]), AGENT_RADIUS
    d = np.linalg.norm(p - c)
    tangent = math.sqrt(d * d - r * r)
    touch = math.atan2(p[1] - c[1], p[0] - c[0]) % (2 * math.pi) - math.acos(r / d)  # tangent point's angle
    arc = r * (touch - math.pi / 2)  # from there over the jamb to its top (angle 90 degrees)
    exact = 2 * (tangent + arc) + 0.2
    assert 4.865 < exact < 4.95  # a bit over the 4.865 of the path through the corners (4, 1.8), (4.2, 1.8)
    assert geodesic(nav, (2.0, 0.6), (6.2, 0.6)) == pytest.approx(exact, rel=0.04)
    # with no doorway, the other room is unreachable and a separate component
    nav2 = NavGrid((0, 8.2, 0, 4), 0.05, AGENT_RADIUS,
                   np.array([((4, 0), (4, 4)), ((4.2, 0), (4.2, 4))], dtype=float),
                   np.array([(0, 4, 0, 4), (4.2, 8.2, 0, 4)], dtype=float))
    assert geodesic(nav2, (2.0, 2.0), (6.2, 2.0)) == math.inf
    labels = nav2.components()
    assert labels[nav2.index(2.0, 2.0)] != labels[nav2.index(6.2, 2.0)] and labels.max() == 1
    # a clearance margin closes gaps the agent could only pass with no lateral slack: the
    # doorway (0.4 m of free strip) stays open with 0.1 m, closes with 0.25 m
    for clearance, open_ in ((0.1, True), (0.25, False)):
        walled = NavGrid((0, 8.2, 0, 4), 0.05, AGENT_RADIUS, nav.walls,
                         np.array([(0, 4, 0, 4), (4.2, 8.2, 0, 4), (4, 4.2, 1.4, 2.6)]), clearance=clearance)
        assert math.isfinite(geodesic(walled, (2.0, 2.0), (6.2, 2.0))) == open_


def test_a_star_equals_the_distance_field(env):
    env.reset(seed=15)
    nav, o = env.oracle.nav, env.oracle
    rng = np.random.default_rng(1)
    ii, jj = np.nonzero(nav.free)
    for goal_ids in {o.goal_ids(k) for k in range(o.n_subgoals)}:
        sources = env._sources(goal_ids)
        field = nav.distance_field(sources)
        for _ in range(10):
            k = rng.integers(len(ii))
            x, z = nav.centres[ii[k], jj[k]] + rng.uniform(-0.07, 0.07, 2)
            expected = nav.lookup(field, x, z)
            assert nav.path_length(x, z, sources, env._lower_bound(goal_ids)) == pytest.approx(expected, abs=1e-9)
            assert nav.path_length(x, z, sources) == pytest.approx(expected, abs=1e-9)  # no heuristic


def test_spl_shortest_matches_the_navigation_grid(env):
    env.reset(seed=14)
    o = env.oracle
    x, z, _ = env.agent_pose
    assert o.shortest == pytest.approx(o.geodesic(x, z))
    straight = min(math.hypot(o.instances[i].pos[0] - x, o.instances[i].pos[1] - z) - o.instances[i].radius
                   for i in o.goal_ids()) - env.config.success_distance
    assert o.shortest >= straight - 0.1  # never shorter than the straight line to the region


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(layout=(0, 2)), "at least 1 room"),
        (dict(n_objects=500), "do not fit"),
        (dict(turn_degrees=7), "divides 360"),
        (dict(turn_degrees=30, success_angle=10), "success_angle"),
        (dict(success_distance=0.3), "success_distance"),
        (dict(door_width=0.5), "door_width"),
        (dict(colors=("red", "pink")), "unknown colors"),
        (dict(room_size="big"), "room_size"),
        (dict(roomsize=4), "valid:"),
        (dict(new_room_goals=1), "new_room_goals must be true or false"),
        (dict(render_mode="human"), "render_mode"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        GoatWorld(**kwargs)


def test_bad_actions_and_order(env):
    fresh = GoatWorld(**SMALL)
    with pytest.raises(ResetNeeded):
        fresh.step(FORWARD)
    with pytest.raises(ResetNeeded):
        fresh.goal_spec()
    fresh.close()
    env.reset(seed=0)
    for bad in (5, -1, 2.0, "forward", True):
        with pytest.raises(ConfigError, match="action must be"):
            env.step(bad)


def test_missing_miniworld_is_a_config_error(monkeypatch):
    from rlmem.envs import goat_world

    goat_world._miniworld.cache_clear()
    monkeypatch.setitem(sys.modules, "miniworld", None)  # `import miniworld` now fails
    try:
        with pytest.raises(ConfigError, match=r"pip install rlmem\[nav3d\]"):
            GoatWorld(**SMALL)
    finally:
        monkeypatch.undo()
        goat_world._miniworld.cache_clear()


# --------------------------------------------------------------------------- habitat-sim adapter


def write_objectnav(path: Path, scene_id="data/scene/tiny.glb"):
    goal = lambda oid, x: {  # noqa: E731
        "position": [x, 0.5, 1.0], "object_id": oid, "object_category": "tv_monitor",
        "view_points": [{"agent_state": {"position": [x, 0.0, 2.0], "rotation": [0, 0, 0, 1]}, "iou": 0.5}],
    }
    data = {
        "episodes": [
            {"episode_id": "0", "scene_id": scene_id, "start_position": [0.0, 0.0, 0.0],
             "start_rotation": [0.0, 0.0, 0.0, 1.0], "object_category": "tv_monitor", "goals": []},
            {"episode_id": "1", "scene_id": "other/scene.glb", "start_position": [1.0, 0.0, 0.0],
             "start_rotation": [0.0, 0.7071, 0.0, 0.7071], "object_category": "chair",
             "goals": [{"position": [3, 0, 3], "object_id": 9, "object_category": "chair", "view_points": []}]},
        ],
        "goals_by_category": {"tiny.glb_tv_monitor": [goal(1, 2.0), goal(2, 4.0)]},
        "category_to_task_category_id": {"tv_monitor": 0, "chair": 1},
    }
    path.write_bytes(gzip.compress(json.dumps(data).encode()))


def write_instance_imagenav(path: Path):
    data = {
        "episodes": [{"episode_id": "7", "scene_id": "hm3d/val/00800-TEE/TEE.basis.glb", "start_position": [0, 0, 0],
                      "start_rotation": [0, 0, 0, 1], "goal_object_id": "42", "goal_image_id": 1,
                      "object_category": "bed"}],
        "goals": {"TEE_42": {
            "object_id": "42", "object_category": "bed", "position": [1.0, 0.4, -2.0],
            "view_points": [{"agent_state": {"position": [1.0, 0.0, -1.0], "rotation": [0, 0, 0, 1]}, "iou": 0.3}],
            "image_goals": [
                {"position": [0, 1, 0], "rotation": [0, 0, 0, 1], "hfov": 79, "image_dimensions": [512, 512]},
                {"position": [0.5, 1.2, 0.5], "rotation": [0, 0.38, 0, 0.92], "hfov": 90,
                 "image_dimensions": [480, 640], "frame_coverage": 0.3, "object_coverage": 0.8},
            ],
        }},
    }
    path.write_text(json.dumps(data))


def test_habitat_episode_parser_objectnav_and_instance_imagenav(tmp_path):
    from rlmem.envs.habitat import category_words, load_episodes

    write_objectnav(tmp_path / "objnav.json.gz")
    subs = load_episodes(tmp_path / "objnav.json.gz")
    assert len(subs) == 2
    tv, chair = subs
    assert tv.modality == "category" and tv.category == "tv_monitor" and tv.object_ids == ("1", "2")
    assert tv.positions == ((2.0, 0.5, 1.0), (4.0, 0.5, 1.0))  # from goals_by_category
    assert tv.view_points == (((2.0, 0.0, 2.0),), ((4.0, 0.0, 2.0),))
    assert chair.start_rotation == (0.0, 0.7071, 0.0, 0.7071) and chair.object_ids == ("9",)
    assert chair.view_points == (((3.0, 0.0, 3.0),),)  # no view points: the object's position
    assert category_words(["tv_monitor", "chair", "box"]) == ("tv", "monitor", "chair")

    write_instance_imagenav(tmp_path / "iin.json")
    (img,) = load_episodes(tmp_path / "iin.json")
    assert img.modality == "image" and img.category == "bed" and img.object_ids == ("42",)
    assert img.camera.position == (0.5, 1.2, 0.5) and img.camera.hfov == 90.0
    assert img.camera.image_dimensions == (480, 640) and img.view_points == (((1.0, 0.0, -1.0),),)


def test_habitat_episode_parser_errors(tmp_path):
    from rlmem.envs.habitat import load_episodes

    with pytest.raises(ConfigError, match="no file"):
        load_episodes(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a .*JSON"):
        load_episodes(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"episodes": []}')
    with pytest.raises(ConfigError, match="non-empty"):
        load_episodes(tmp_path / "empty.json")
    no_start = {"episodes": [{"scene_id": "a.glb", "start_rotation": [0, 0, 0, 1]}]}
    (tmp_path / "nopos.json").write_text(json.dumps(no_start))
    with pytest.raises(ConfigError, match="episode 0: missing 'start_position'"):
        load_episodes(tmp_path / "nopos.json")
    bad_image = json.loads(json.dumps({"episodes": [{"scene_id": "s/TEE.basis.glb", "start_position": [0, 0, 0],
                                                     "start_rotation": [0, 0, 0, 1], "goal_object_id": "1",
                                                     "goal_image_id": 3}], "goals": {}}))
    (tmp_path / "iin.json").write_text(json.dumps(bad_image))
    with pytest.raises(ConfigError, match="missing 'TEE_1'"):
        load_episodes(tmp_path / "iin.json")


def test_goat_habitat_without_habitat_sim_is_one_clean_line(tmp_path):
    if _has_habitat_sim():
        pytest.skip("habitat_sim is installed here")
    from rlmem.envs.habitat import HABITAT_HINT

    with pytest.raises(ConfigError, match="conda install habitat-sim"):
        gym.make("rlmem/GoatHabitat-v0", scene="x.glb", episodes="y.json")
    proc = subprocess.run(
        [sys.executable, "-m", "rlmem", "train", "--env", "rlmem/GoatHabitat-v0", "--agent", "agents/gru-nav.toml",
         "--runs-dir", str(tmp_path), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and HABITAT_HINT in lines[0] and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def _has_habitat_sim() -> bool:
    return importlib.util.find_spec("habitat_sim") is not None


def _habitat_scene() -> str:
    """A scene for the habitat tests: $RLMEM_HABITAT_SCENE, or habitat's test scene if downloaded."""
    scene = os.environ.get("RLMEM_HABITAT_SCENE", "data/scene_datasets/habitat-test-scenes/skokloster-castle.glb")
    if not Path(scene).is_file():
        pytest.skip(f"no habitat scene at {scene!r} (set RLMEM_HABITAT_SCENE)")
    return scene


def test_habitat_env_spaces_determinism_and_replay(tmp_path):
    habitat_sim = pytest.importorskip("habitat_sim")
    from rlmem.envs.habitat import HabitatGoatEnv

    scene = _habitat_scene()
    # episodes on this scene's navmesh, written as an ObjectNav file (goals = navigable points)
    cfg = habitat_sim.SimulatorConfiguration()
    cfg.scene_id = scene
    sim = habitat_sim.Simulator(habitat_sim.Configuration(cfg, [habitat_sim.agent.AgentConfiguration()]))
    sim.pathfinder.seed(0)
    first = sim.pathfinder.get_random_navigable_point()
    pts = [[float(v) for v in first]]
    for _ in range(200):  # points of the first point's navmesh island, so every goal is reachable
        candidate = sim.pathfinder.get_random_navigable_point()
        path = habitat_sim.ShortestPath()
        path.requested_start, path.requested_end = first, candidate
        if sim.pathfinder.find_path(path) and len(pts) < 6:
            pts.append([float(v) for v in candidate])
    sim.close()
    assert len(pts) == 6, "the scene's navmesh is too small for the test"
    name = os.path.basename(scene)
    episodes = [{"episode_id": str(i), "scene_id": name, "start_position": pts[i], "start_rotation": [0, 0, 0, 1],
                 "object_category": cat, "goals": [{"position": pts[i + 3], "object_id": i, "object_category": cat,
                                                    "view_points": [{"agent_state": {"position": pts[i + 3]}}]}]}
                for i, cat in enumerate(("chair", "bed", "tv_monitor"))]
    path = tmp_path / "episodes.json"
    path.write_text(json.dumps({"episodes": episodes}))
    env = HabitatGoatEnv(scene=scene, episodes=str(path), min_subgoals=2, max_subgoals=3, subgoal_budget=20)
    check_env(env, skip_render_check=True)
    grid = GoatGrid(layout=(2, 2), room_size=4, n_objects=8, min_subgoals=2, max_subgoals=3)
    assert set(env.observation_space.spaces) == set(grid.observation_space.spaces)
    acts = moves(0, 30) + [STOP]
    first = rollout(env, 3, acts)
    assert_same(rollout(env, 3, acts), first)
    ends = [t[4] for t in first[1:] if "spl" in t[4]]
    assert ends and all(0.0 <= i["spl"] <= 1.0 for i in ends)
    env.close()
