"""GoatGrid: conformance, determinism, SPL and shortest paths, goals per modality, oracle, lifelong."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import DIR_TO_VEC
from minigrid.core.grid import Grid

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
    GoatGridConfig,
    OracleAgent,
    aggregate_by_modality,
    detokenize,
    parse_description,
    shortest_path_length,
    shortest_plan,
    spl,
    tokenize,
)
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError

torch.set_num_threads(1)

GOAT_IDS = ["rlmem/GoatGrid-v0", "rlmem/GoatGridSmall-v0"]
SMALL = dict(layout=(2, 2), room_size=4, n_objects=8, min_subgoals=5, max_subgoals=7, subgoal_budget=80)


# --------------------------------------------------------------------------- helpers


def noisy_actions(rng: np.random.Generator, n: int) -> list[int]:
    """Mostly moves, a few toggles and stops, so episodes run for a while."""
    return [int(a) for a in rng.choice(5, size=n, p=[0.3, 0.3, 0.3, 0.07, 0.03])]


def rollout(env: GoatGrid, seed: int, actions: list[int]) -> list:
    """Every (obs, reward, terminated, truncated, info) of ``actions`` after ``reset(seed)``,
    stopping at the end of the episode."""
    out = [env.reset(seed=seed)]
    for a in actions:
        out.append(env.step(a))
        if out[-1][2] or out[-1][3]:
            break
    return out


def assert_same(a, b, where: str = "") -> None:
    """Deep equality of observations / infos / transitions (numpy arrays by value and dtype)."""
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


def play_oracle(env: GoatGrid, seed: int, detour_at_start: bool = False):
    """One episode by :class:`OracleAgent`; with ``detour_at_start`` it first wastes a left and a
    right turn in every subgoal. Returns the per-subgoal end infos, the last info and the return."""
    agent = OracleAgent()
    env.reset(seed=seed)
    ends, total, fresh = [], 0.0, True
    while True:
        if detour_at_start and fresh:
            for a in (LEFT, RIGHT):
                _, r, term, _, info = env.step(a)
                total += r
                assert not term and "spl" not in info
        fresh = False
        _, r, term, trunc, info = env.step(agent.act(env))
        total += r
        assert not trunc
        if "spl" in info:
            ends.append(info)
            fresh = True
        if term:
            return ends, info, total


def view_cell(viewer: tuple[int, int, int], cell: tuple[int, int]) -> tuple[int, int]:
    """``(column, row)`` of world ``cell`` in the 7x7 egocentric view from pose ``viewer``:
    the viewer is at column 3, row 6, looking up (towards row 0)."""
    x, y, d = viewer
    f = DIR_TO_VEC[d]
    right = (-f[1], f[0])
    dx, dy = cell[0] - x, cell[1] - y
    ahead, side = dx * f[0] + dy * f[1], dx * right[0] + dy * right[1]
    return 3 + int(side), 6 - int(ahead)


# --------------------------------------------------------------------------- registration, checker


@pytest.mark.parametrize("env_id", GOAT_IDS)
@pytest.mark.parametrize("obs_mode", ["symbolic", "rgb"])
def test_check_env_and_spaces(env_id, obs_mode):
    env = gym.make(env_id, obs_mode=obs_mode)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == ((7, 7, 3) if obs_mode == "symbolic" else (56, 56, 3))
    assert obs["goal_text"].shape == (MAX_TOKENS,) and obs["goal_image"].shape == (56, 56, 3)
    assert env.action_space.n == 5
    assert rlmem_envs.memory_types(env_id) == ("spatial", "object")
    assert gym.spec(env_id).max_episode_steps is None


def test_render_highlights_goal_instances():
    env = GoatGrid(render_mode="rgb_array", tile_size=16, **SMALL)
    env.reset(seed=1)
    frame = env.render()
    cfg = env.config
    assert frame.dtype == np.uint8 and frame.shape == (cfg.height * 16, cfg.width * 16, 3)
    cyan = np.all(frame == (0, 255, 255), axis=-1)
    goal_cells = {env.oracle.instances[i].pos for i in env.oracle.goal_ids()}
    for x in range(cfg.width):
        for y in range(cfg.height):
            framed = cyan[y * 16, x * 16 : (x + 1) * 16].all()  # the tile's top edge is cyan
            assert framed == ((x, y) in goal_cells), (x, y)
    quiet = GoatGrid(**SMALL)
    quiet.reset(seed=1)
    with pytest.warns(UserWarning, match="render_mode"):
        assert quiet.render() is None


# --------------------------------------------------------------------------- determinism


def test_seeded_copies_agree_and_replay_reproduces():
    actions = noisy_actions(np.random.default_rng(0), 400)
    a = rollout(GoatGrid(**SMALL), 7, actions)
    b = rollout(GoatGrid(**SMALL), 7, actions)
    assert len(a) > 20
    assert_same(a, b)
    # The same env object replays its recorded actions after a reset with the same seed.
    env = GoatGrid(**SMALL)
    first = rollout(env, 11, actions)
    taken = actions[: len(first) - 1]
    assert_same(rollout(env, 11, taken), first)
    # Another seed draws another house.
    other = GoatGrid(**SMALL)
    other.reset(seed=12)
    env.reset(seed=11)
    assert not np.array_equal(env.grid.encode(), other.grid.encode())


# --------------------------------------------------------------------------- SPL and shortest paths


def test_spl_arithmetic():
    assert spl(True, 10, 10) == 1.0
    assert spl(True, 10, 20) == 0.5
    assert spl(True, 4, 6) == pytest.approx(2 / 3)
    assert spl(False, 10, 10) == 0.0
    assert spl(True, 10, 3) == 1.0  # taken < shortest cannot happen; the max caps it
    with pytest.raises(ConfigError, match="shortest >= 1"):
        spl(True, 0, 0)
    agg = aggregate_by_modality(["image", "category", "image"], [True, True, False], [0.5, 1.0, 0.0])
    assert agg == {"category": {"n": 1.0, "success": 1.0, "spl": 1.0}, "image": {"n": 2.0, "success": 0.5, "spl": 0.25}}


def test_spl_in_the_env_counts_every_action():
    """The oracle with two wasted turns per subgoal: SPL = shortest / (shortest + 2)."""
    env = GoatGrid(**SMALL)
    ends, last, _ = play_oracle(env, seed=3, detour_at_start=True)
    for info in ends:
        assert info["subgoal_success"] and info["taken"] == info["shortest"] + 2
        assert info["spl"] == pytest.approx(info["shortest"] / (info["shortest"] + 2))
    assert last["spl_mean"] == pytest.approx(np.mean([i["spl"] for i in ends]))
    assert last["success"] is True and last["subgoal_success_rate"] == 1.0


# A hand-made layout (x to the right, y down): T = the target object, D = a door.
#   y0  #######
#   y1  #...#T#
#   y2  #...D.#
#   y3  #...#.#
#   y4  #######
_LAYOUT = ["#######", "#...#T#", "#...D.#", "#...#.#", "#######"]


def _handmade(door: str):
    passable = np.array([[c in ".D" for c in row] for row in _LAYOUT]).T  # [x, y]
    closed = np.zeros_like(passable)
    if door == "closed":
        closed[4, 2] = True
    elif door == "wall":
        passable[4, 2] = False
    return passable, closed


def _simulate(passable, closed, pose, plan):
    """Run ``plan`` on the hand-made grid; returns the pose before the final stop."""
    x, y, d = pose
    closed = closed.copy()
    for a in plan[:-1]:
        fx, fy = x + DIR_TO_VEC[d][0], y + DIR_TO_VEC[d][1]
        if a == LEFT:
            d = (d - 1) % 4
        elif a == RIGHT:
            d = (d + 1) % 4
        elif a == TOGGLE:
            closed[fx, fy] = False
        elif a == FORWARD:
            assert passable[fx, fy] and not closed[fx, fy], "walked into a wall or a closed door"
            x, y = fx, fy
    assert plan[-1] == STOP
    return x, y, d


@pytest.mark.parametrize(
    "door, start, with_turns, without_turns",
    [
        # east 2, turn south, 1 down, turn east, toggle + into the door, 1 east, turn north, stop
        ("closed", (1, 1, 0), 10, 7),
        ("open", (1, 1, 0), 9, 6),
        ("wall", (1, 1, 0), None, None),
        ("open", (5, 2, 3), 1, 1),  # already facing the target: just stop
        ("open", (5, 3, 3), 2, 2),  # one step north, stop
        ("open", (5, 3, 1), 4, 2),  # two turns, one step, stop
    ],
)
def test_shortest_path_on_a_handmade_layout(door, start, with_turns, without_turns):
    passable, closed = _handmade(door)
    target = [(5, 1)]
    assert shortest_path_length(passable, closed, start, target) == with_turns
    assert shortest_path_length(passable, closed, start, target, count_turns=False) == without_turns
    plan = shortest_plan(passable, closed, start, target)
    if with_turns is None:
        assert plan is None
        return
    assert len(plan) == with_turns
    assert _simulate(passable, closed, start, plan) == (5, 2, 3)  # below the target, facing north


# --------------------------------------------------------------------------- goals per modality

_DESCRIPTION = re.compile(
    r"the (?:(red|green|blue|purple|yellow|grey) )?(ball|box|key)(?: in the room with the (\w+) door)?"
)


def test_language_descriptions_identify_exactly_one_instance():
    env = GoatGrid(**{**SMALL, "modalities": ("language",), "max_subgoals": 10})
    forms = set()
    for seed in range(12):
        env.reset(seed=seed)
        o = env.oracle
        rooms_with = {}  # door colour -> rooms that have a door of that colour
        for door in o.doors:
            rooms_with.setdefault(door.color, set()).update(door.rooms)
        for k in range(o.n_subgoals):
            text = o.text(k)
            m = _DESCRIPTION.fullmatch(text)
            assert m is not None, text
            color, category, door_color = m.groups()
            assert (color or door_color) is not None, text
            matches = [
                inst.id
                for inst in o.instances
                if inst.category == category
                and (color is None or inst.color == color)
                and (door_color is None or inst.room in rooms_with.get(door_color, set()))
            ]
            assert matches == [o.target_id(k)] == list(o.goal_ids(k)), text
            assert parse_description(text) == (color, category, door_color)
            assert detokenize(tokenize(text)) == text
            forms.add((color is not None, door_color is not None))
    assert forms == {(True, False), (True, True), (False, True)}  # all three forms occur


def test_category_goal_accepts_any_instance_of_the_category():
    env = GoatGrid(**{**SMALL, "modalities": ("category",)})
    obs, info = env.reset(seed=5)
    o = env.oracle
    category = CATEGORIES[obs["goal_category"]]
    assert info["goal_text"] == f"a {category}" and detokenize(obs["goal_text"]) == info["goal_text"]
    same = [inst.id for inst in o.instances if inst.category == category]
    assert set(o.goal_ids()) == set(same) and len(same) >= 2
    other = next(i for i in same if i != o.target_id())  # not the drawn instance: still counts
    plan = shortest_plan(o.passable(), o.closed_doors(), env.agent_pose, [o.instances[other].pos])
    for a in plan:
        _, reward, _, _, info = env.step(a)
    assert info["subgoal_success"] and reward == pytest.approx(1.0 - env.config.step_penalty)


@pytest.mark.parametrize("n_objects", [3, 8])
def test_new_room_goals_never_start_a_subgoal_in_a_goal_room(n_objects):
    def starts_beside_goal(env) -> list[bool]:
        rooms = [{env._instances[i].room for i in sub.goal_ids} for sub in env._subgoals]
        prev = [env._instances[sub.target].room for sub in env._subgoals]
        return [prev[k - 1] in rooms[k] for k in range(1, len(rooms))]

    kwargs = {**SMALL, "n_objects": n_objects}
    on, off = GoatGrid(**kwargs, new_room_goals=True), GoatGrid(**kwargs)
    beside = []
    for seed in range(20):
        on.reset(seed=seed)
        off.reset(seed=seed)
        assert not any(starts_beside_goal(on))
        beside += starts_beside_goal(off)
    assert any(beside)  # without the option some subgoals do start in a goal's room


def test_stopping_at_a_distractor_of_the_same_category_fails():
    env = GoatGrid(**{**SMALL, "modalities": ("language", "image")})
    env.reset(seed=9)
    o = env.oracle
    target = o.instances[o.target_id()]
    distractor = next(i for i in o.instances if i.category == target.category and i.id != target.id)
    plan = shortest_plan(o.passable(), o.closed_doors(), env.agent_pose, [distractor.pos])
    for a in plan:
        _, reward, _, _, info = env.step(a)
    assert info["subgoal_success"] is False and info["spl"] == 0.0 and info["taken"] == len(plan)
    assert reward == -env.config.step_penalty


def test_goal_image_shows_the_target_from_its_viewpoint():
    env = GoatGrid(**{**SMALL, "modalities": ("image", "category"), "max_subgoals": 10})
    t = env.config.goal_tile_size
    images = {}
    n_image = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        o = env.oracle
        for k in range(o.n_subgoals):
            if o.modality(k) == "image":
                n_image += 1
                image, viewer = obs["goal_image"], o.goal_viewpoint(k)
                target = o.instances[o.target_id(k)]
                col, row = view_cell(viewer, target.pos)
                assert 0 <= col < 7 and 0 <= row < 6
                # the renderer stores its float tiles into a uint8 image (truncation)
                expected = Grid.render_tile(env.grid.get(*target.pos), highlight=True, tile_size=t).astype(np.uint8)
                assert np.array_equal(image[row * t : (row + 1) * t, col * t : (col + 1) * t], expected)
                assert np.array_equal(env.goal_spec().image, image)
                # It is exactly what the agent would see standing at the viewpoint now.
                saved = env.agent_pos, env.agent_dir
                env.agent_pos, env.agent_dir = viewer[:2], viewer[2]
                assert np.array_equal(env.egocentric_rgb(t), image)
                env.agent_pos, env.agent_dir = saved
                assert not obs["goal_text"].any() and env.goal_spec().text == ""
                for other_id, other_image in images.items():
                    if other_id != (seed, target.id):
                        assert not np.array_equal(other_image, image)
                images[(seed, target.id)] = image
            else:
                assert not obs["goal_image"].any() and env.goal_spec().image is None
            obs, *_ = env.step(STOP)  # a stop ends the subgoal, right or wrong
    assert n_image >= 5


# --------------------------------------------------------------------------- oracle, lifelong


@pytest.mark.parametrize("env_id, seeds", [("rlmem/GoatGrid-v0", (0, 1)), ("rlmem/GoatGridSmall-v0", (0, 1, 2))])
def test_oracle_agent_succeeds_with_spl_one(env_id, seeds):
    env = gym.make(env_id).unwrapped
    for seed in seeds:
        ends, last, total = play_oracle(env, seed)
        assert len(ends) == last["n_subgoals"] == env.oracle.n_subgoals
        assert all(i["subgoal_success"] and i["spl"] == 1.0 and i["taken"] == i["shortest"] for i in ends)
        assert last["success"] is True and last["spl_mean"] == 1.0
        assert last["subgoal_successes"] == (True,) * len(ends) and last["subgoal_spls"] == (1.0,) * len(ends)
        steps = sum(i["taken"] for i in ends)
        assert total == pytest.approx(len(ends) * 1.0 - steps * env.config.step_penalty)
        assert last["subgoal_modalities"] == tuple(i["modality"] for i in ends)
        with pytest.raises(ResetNeeded):
            env.step(LEFT)


def test_lifelong_no_reset_between_subgoals():
    env = GoatGrid(**SMALL)
    agent = OracleAgent()
    obs, _ = env.reset(seed=4)
    boundaries = 0
    while True:
        pose, grid, steps = env.agent_pose, env.grid.encode(), env.step_count
        obs, _, term, _, info = env.step(agent.act(env))
        if "spl" in info and not term:
            boundaries += 1
            # Same pose, same house (doors opened before stay open), nothing regenerated.
            assert env.agent_pose == pose and np.array_equal(env.grid.encode(), grid)
            assert env.step_count == steps + 1 and obs["subgoal_index"] == info["subgoal_index"] + 1
            # The next subgoal is measured from where the agent stands.
            o = env.oracle
            targets = [o.instances[i].pos for i in o.goal_ids()]
            assert o.shortest == shortest_path_length(o.passable(), o.closed_doors(), pose, targets)
        if term:
            break
    assert boundaries == env.oracle.n_subgoals - 1 >= 4


def test_wrong_stop_and_budget_fail_the_subgoal():
    env = GoatGrid(**{**SMALL, "min_subgoals": 5, "max_subgoals": 5, "subgoal_budget": 6})
    env.reset(seed=2)
    assert env.oracle.plan() != [STOP]  # not facing a goal instance
    pose = env.agent_pose
    _, reward, term, _, info = env.step(STOP)
    assert not term and info["subgoal_success"] is False and info["spl"] == 0.0 and info["taken"] == 1
    assert reward == -env.config.step_penalty and env.agent_pose == pose
    assert env.goal_spec().subgoal_index == 1 and env.goal_spec().steps_left == 6
    n = 1
    while True:  # turning in place: every remaining subgoal runs out of budget
        _, _, term, trunc, info = env.step(LEFT)
        n += 1
        assert not trunc
        if term:
            break
    assert n == 1 + 4 * 6
    assert info["success"] is False and info["subgoal_success_rate"] == 0.0 and info["taken"] == 6


def test_shaping_rewards_progress():
    env = GoatGrid(**{**SMALL, "shaping": 0.1})
    agent = OracleAgent()
    env.reset(seed=6)
    for _ in range(30):
        _, reward, term, _, info = env.step(agent.act(env))
        if "spl" in info:  # the stop (d = 1) succeeds; the potential moves on to the next subgoal
            d_next = 0 if term else env._distance()
            assert reward == pytest.approx(1.0 - env.config.step_penalty + 0.1 * (1 - d_next))
        else:  # every oracle action brings the goal one action closer
            assert reward == pytest.approx(0.1 - env.config.step_penalty)
        if term:
            break


def test_wrong_stop_penalty_applies_to_failed_stops_only():
    env = GoatGrid(**{**SMALL, "wrong_stop_penalty": 0.5})
    agent = OracleAgent()
    env.reset(seed=6)
    _, reward, _, _, info = env.step(STOP)  # (checked) seed 6 does not start facing a goal
    assert info["subgoal_success"] is False and reward == pytest.approx(-0.01 - 0.5)
    while True:  # the oracle's stops succeed: no penalty
        _, reward, term, _, info = env.step(agent.act(env))
        if "spl" in info:
            assert info["subgoal_success"] and reward == pytest.approx(1.0 - 0.01)
            break
    with pytest.raises(ConfigError, match="wrong_stop_penalty"):
        GoatGrid(**{**SMALL, "wrong_stop_penalty": "a lot"})


@pytest.mark.parametrize("seed", [6, 7])
def test_shaping_is_potential_based_so_no_policy_can_farm_it(seed):
    """Random actions (stops, toggles, wandering): an episode's shaping sums to shaping * d of the
    first subgoal's start, as for any policy (Ng et al. 1999), so stopping early earns nothing."""
    env = GoatGrid(**{**SMALL, "shaping": 0.1})
    env.reset(seed=seed)
    d0, rng, shaping = env._distance(), np.random.default_rng(seed), 0.0
    while True:
        _, reward, term, _, info = env.step(int(rng.integers(5)))
        success = info.get("subgoal_success", False)
        shaping += reward + env.config.step_penalty - (1.0 if success else 0.0)
        if term:
            break
    assert shaping == pytest.approx(0.1 * d0)


# --------------------------------------------------------------------------- interfaces


def test_agent_interfaces_and_goal_spec():
    env = GoatGrid(**SMALL)
    obs, info = env.reset(seed=8)
    x, y, d = env.agent_pose
    assert obs["direction"] == d and env.view_to_world(3, 6) == (x, y)
    for vx in range(7):  # every visible view cell shows what lies at view_to_world(vx, vy)
        for vy in range(7):
            code = obs["image"][vx, vy]
            wx, wy = env.view_to_world(vx, vy)
            if code[0] == 0 or (vx, vy) == (3, 6):  # unseen; the agent's own cell
                continue
            cell = env.grid.get(wx, wy) if 0 <= wx < env.width and 0 <= wy < env.height else None
            assert tuple(code) == (cell.encode() if cell is not None else (1, 0, 0))
    assert env.egocentric_rgb().shape == (56, 56, 3) and env.egocentric_rgb(4).shape == (28, 28, 3)
    spec = env.goal_spec()
    assert spec.modality == MODALITIES[obs["goal_modality"]] == info["modality"]
    assert spec.category == CATEGORIES[obs["goal_category"]] and spec.text == info["goal_text"]
    assert np.array_equal(spec.tokens, obs["goal_text"])
    assert not {"id", "target", "pos", "goal_ids"} & set(vars(spec))  # nothing privileged


def test_gps_is_the_position_relative_to_the_episode_start():
    env = GoatGrid(**SMALL, gps=True)
    check_env(env, skip_render_check=True)
    assert "gps" not in GoatGrid(**SMALL).observation_space.spaces  # off by default
    oracle = OracleAgent()
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        x0, y0, _ = env.agent_pose
        assert obs["gps"].tolist() == [0.0, 0.0] and obs["gps"].dtype == np.float32
        moved, terminated = False, False
        while not terminated:
            obs, _, terminated, _, _ = env.step(oracle.act(env))
            x, y, _ = env.agent_pose
            assert obs["gps"].tolist() == [x - x0, y - y0] and obs in env.observation_space
            moved |= (x, y) != (x0, y0)
        assert moved


def test_rgb_observation_is_the_egocentric_render():
    env = GoatGrid(**{**SMALL, "obs_mode": "rgb"})
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs["image"], env.egocentric_rgb())
    obs, *_ = env.step(FORWARD)
    assert np.array_equal(obs["image"], env.egocentric_rgb())


def test_sync_vector_env_batches_dict_observations():
    # Episodes of different lengths end in the same step: the per-subgoal tuples still batch.
    envs = make_vec_env("rlmem/GoatGridSmall-v0", 2, {"min_subgoals": 1, "max_subgoals": 3})
    obs, _ = envs.reset(seed=0)
    assert obs["image"].shape == (2, 7, 7, 3) and obs["goal_image"].shape == (2, 56, 56, 3)
    rng = np.random.default_rng(0)
    ended, together = 0, 0
    for _ in range(300):
        obs, _, term, trunc, info = envs.step(rng.choice(5, size=2, p=[0.2, 0.2, 0.2, 0.1, 0.3]))
        assert envs.single_observation_space.contains({k: v[0] for k, v in obs.items()})
        if term.any():
            ended += int(term.sum())
            assert info["_final_info"][term].all() and info["final_info"]["_success"][term].all()
            for i in np.flatnonzero(term):
                final = info["final_info"]
                assert len(final["subgoal_spls"][i]) == len(final["subgoal_modalities"][i]) == final["n_subgoals"][i]
            together += int(term.all() and len(set(info["final_info"]["n_subgoals"])) == 2)
    envs.close()
    assert ended >= 10 and together >= 1  # the case that breaks array-valued infos happened


@pytest.mark.parametrize("kwargs", [dict(layout=(3, 2), room_size=5), dict(layout=(1, 1), room_size=6)])
def test_houses_at_full_object_capacity_stay_navigable(kwargs):
    env = GoatGrid(**kwargs, n_objects=GoatGridConfig(**kwargs, n_objects=1).max_objects)
    for seed in range(3):
        env.reset(seed=seed)
        W, H = env.width, env.height
        cells = [(x, y, env.grid.get(x, y)) for x in range(W) for y in range(H)]
        walkable = {(x, y) for x, y, obj in cells if obj is None or obj.type == "door"}
        seen, todo = {env.agent_pose[:2]}, [env.agent_pose[:2]]
        while todo:  # flood fill over floor and door cells
            x, y = todo.pop()
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                if (x + dx, y + dy) in walkable and (x + dx, y + dy) not in seen:
                    seen.add((x + dx, y + dy))
                    todo.append((x + dx, y + dy))
        assert seen == walkable
        objects = [inst.pos for inst in env.oracle.instances]
        assert len(objects) == env.config.n_objects
        assert all(any((x + dx, y + dy) in seen for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))) for x, y in objects)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(layout=(0, 2)), "at least 1 room"),
        (dict(layout=(2,)), "layout"),
        (dict(room_size=2), "room_size"),
        (dict(layout=(1, 1), room_size=3, n_objects=3), "do not fit"),
        (dict(n_objects=0), "n_objects"),
        (dict(min_subgoals=0), "min_subgoals"),
        (dict(min_subgoals=6, max_subgoals=5), "min_subgoals <= max_subgoals"),
        (dict(modalities=("category", "smell")), "unknown modalities"),
        (dict(modalities=()), "non-empty"),
        (dict(categories=("chair",)), "unknown categories"),
        (dict(colors=("pink",)), "unknown colors"),
        (dict(goal_image_shape=(50, 50, 3)), "goal_image_shape"),
        (dict(goal_image_shape=(56, 56)), "goal_image_shape"),
        (dict(goal_image_shape=(56, 56, 1)), "goal_image_shape"),
        (dict(obs_mode="depth"), "obs_mode"),
        (dict(subgoal_budget=0), "subgoal_budget"),
        (dict(closed_door_prob=1.5), "closed_door_prob"),
        (dict(step_penalty=float("nan")), "step_penalty"),
        (dict(new_room_goals="yes"), "new_room_goals must be true or false"),
        (dict(gps=1), "gps must be true or false"),
        (dict(no_such_option=1), "unexpected keyword"),
    ],
)
def test_bad_parameters_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GoatGrid(**kwargs)


def test_a_house_that_cannot_be_described_is_a_config_error():
    # Two red balls in one room without doors: no language goal can single one out.
    env = GoatGrid(
        layout=(1, 1), room_size=4, n_objects=2, colors=("red",), categories=("ball",), modalities=("language",)
    )
    with pytest.raises(ConfigError, match="no valid house"):
        env.reset(seed=0)


def test_bad_actions_and_calls():
    env = GoatGrid(**SMALL)
    with pytest.raises(ResetNeeded):
        env.step(LEFT)
    with pytest.raises(ResetNeeded):
        env.goal_spec()
    env.reset(seed=0)
    for bad in (5, -1, 1.5, "left"):
        with pytest.raises(ConfigError, match="action"):
            env.step(bad)
    with pytest.raises(ConfigError, match="description"):
        parse_description("the sofa")
