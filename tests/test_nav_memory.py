"""Navigation memories (SemanticMap, SpatialGraph), the modular agents and the ``modular`` algo.

Tests may read the env's privileged state (the oracle, the grid) to check what the memories
built from observations alone; the agents themselves never may (checked here too).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from rlmem.agents.nav_agents import EnvView, GoatModularAgent, MemorylessAgent
from rlmem.agents.smg_agent import SMGAgent
from rlmem.algos import modular
from rlmem.config import make_run_config
from rlmem.envs.goat_grid import LEFT, GoalSpec, GoatGrid, OracleAgent, tokenize
from rlmem.errors import ConfigError
from rlmem.memory.semantic_map import (
    DOOR,
    FREE,
    OBJECT,
    UNKNOWN,
    UNKNOWN_CODE,
    WALL,
    InstanceRecord,
    Occupancy,
    SemanticMap,
    TileClassifier,
    cell_code,
    register,
    room_door_colors,
    view_to_world,
    visible_objects,
)
from rlmem.memory.spatial_graph import GraphNode, Keyframe, ObjectSighting, SpatialGraph, astar, view_embedding
from rlmem.runs import Run

torch.set_num_threads(1)

SMALL = dict(layout=(2, 2), room_size=4, n_objects=8, min_subgoals=5, max_subgoals=5, subgoal_budget=80)
HOUSE = dict(layout=(3, 2), room_size=5, n_objects=12, min_subgoals=10, max_subgoals=10)
EMPTY = int(cell_code(OBJECT_TO_IDX["empty"], 0))
WALL_CODE = int(cell_code(OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"]))


def code(kind: str, color: str) -> int:
    return int(cell_code(OBJECT_TO_IDX[kind], COLOR_TO_IDX[color]))


def goal(modality: str, category: str, text: str = "", image=None) -> GoalSpec:
    return GoalSpec(modality, category, text, tokenize(text), image, 0, 1, 100)


def scripted_walk(env: GoatGrid, seed: int, steps: int, turn_every: int = 4):
    """Reset ``env`` and walk from goal to goal: the oracle's plan, with a left turn every
    ``turn_every`` steps. Yields ``(obs, pose)`` before each action (until the episode ends)."""
    obs, _ = env.reset(seed=seed)
    oracle = OracleAgent()
    for t in range(steps):
        yield obs, env.agent_pose
        obs, _, term, _, _ = env.step(oracle.act(env) if t % turn_every else LEFT)
        if term:
            return


def truth_kind(env: GoatGrid, x: int, y: int) -> int:
    obj = env.grid.get(x, y)
    return FREE if obj is None else {"wall": WALL, "door": DOOR}.get(obj.type, OBJECT)


# --------------------------------------------------------------------------- geometry and views


def test_view_to_world_is_the_envs_transform():
    env = GoatGrid(**SMALL)
    env.reset(seed=0)
    for x, y, d in [(1, 1, 0), (3, 2, 1), (2, 7, 2), (7, 7, 3)]:
        env.agent_pos, env.agent_dir = (x, y), d
        for vx, vy in itertools.product(range(7), range(7)):
            got = view_to_world((x, y, d), vx, vy)
            assert (int(got[0]), int(got[1])) == env.view_to_world(vx, vy)


def test_tile_classifier_reads_the_rgb_view_as_the_symbolic_view():
    env = GoatGrid(**HOUSE)
    classify = TileClassifier(env.config.obs_tile_size)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=2)
    kinds_seen = set()
    for _ in range(60):
        img = obs["image"].astype(np.int64)
        expected = np.where(img[..., 0] > 0, cell_code(img[..., 0], img[..., 1]), UNKNOWN_CODE)
        expected[3, 6] = EMPTY  # the agent's own cell
        np.testing.assert_array_equal(classify(env.egocentric_rgb()), expected)
        kinds_seen |= set(np.unique(img[..., 0]).tolist())
        obs, _, term, _, _ = env.step(int(rng.choice([0, 1, 2, 2, 2, 3])))
        assert not term
    assert {0, 1, 2} <= kinds_seen  # unseen, floor and walls were all exercised
    with pytest.raises(ConfigError, match="shape"):
        classify(np.zeros((10, 10, 3), np.uint8))


# --------------------------------------------------------------------------- matcher thresholds
#
# A hand-made house (x right, y down), one 3x3 room per side of a wall with a yellow door Y:
#   y0  #########
#   y1  #b..#..b#      b = red boxes at (1, 1) and (7, 1)
#   y2  #...Y...#
#   y3  #...#...#
#   y4  #########


def handmade_map(door_known: bool = True, **kwargs) -> SemanticMap:
    m = SemanticMap(**kwargs)
    occ = Occupancy((9, 5))
    occ.kind[:] = WALL
    occ.code[:] = WALL_CODE
    for x, y in itertools.product([1, 2, 3, 5, 6, 7], [1, 2, 3]):
        occ.kind[x, y], occ.code[x, y] = FREE, EMPTY
    occ.kind[4, 2], occ.code[4, 2] = DOOR, code("door", "yellow")
    if not door_known:
        occ.kind[4, 2], occ.code[4, 2] = UNKNOWN, UNKNOWN_CODE
    for k, cell in enumerate([(1, 1), (7, 1)]):
        occ.kind[cell], occ.code[cell] = OBJECT, code("box", "red")
        m.records[cell] = InstanceRecord(k, "box", "red", cell, 0, 0)
    occ.seen_at[occ.kind != UNKNOWN] = 0
    m.occupancy = occ
    return m


def test_room_doors_come_from_known_cells_only():
    m = handmade_map()
    assert room_door_colors(m.occupancy, (1, 1)) == {"yellow"}
    assert room_door_colors(m.occupancy, (7, 1)) == {"yellow"}  # a door belongs to both rooms
    assert room_door_colors(handmade_map(door_known=False).occupancy, (1, 1)) == set()


def test_language_matching_thresholds():
    text = "the box in the room with the yellow door"
    m = handmade_map()
    cands = m.match(goal("language", "box", text))
    assert [c.score for c in cands] == [1.0, 1.0]
    # the door not seen yet: the relation is unconfirmed (1 of 2 parts) -> below the default threshold
    m = handmade_map(door_known=False)
    assert [c.score for c in m.candidates(goal("language", "box", text))] == [0.5, 0.5]
    assert m.match(goal("language", "box", text)) is None
    assert handmade_map(door_known=False, language_threshold=0.5).match(goal("language", "box", text)) is not None
    # colour is read directly: a wrong colour rules a record out, a right one confirms a part
    assert handmade_map().match(goal("language", "box", "the blue box")) is None
    assert len(handmade_map().match(goal("language", "box", "the red box in the room with the yellow door"))) == 2
    assert handmade_map().match(goal("language", "box", "the red box in the room with the green door")) is None
    # category prefilter: no key is known
    assert handmade_map().match(goal("language", "key", "the key in the room with the yellow door")) is None
    with pytest.raises(ConfigError, match="does not name"):
        handmade_map().match(goal("language", "key", text))


def test_category_matching_orders_by_distance():
    m = handmade_map()
    near_right = m.match(goal("category", "box"), pose=(6, 2, 0))
    assert [c.record.cell for c in near_right] == [(7, 1), (1, 1)]
    assert near_right[0].distance == 1 and near_right[1].distance == 3 + 2
    assert [c.record.cell for c in m.match(goal("category", "box"), pose=(2, 3, 0))] == [(1, 1), (7, 1)]
    assert m.match(goal("category", "ball")) is None


def viewpoints(target=(10, 10)):
    """Poses 1-3 cells before ``target``, at most one to the side, every heading (GoatGrid's)."""
    for d, dist, side in itertools.product(range(4), (1, 2, 3), (-1, 0, 1)):
        fx, fy = [(1, 0), (0, 1), (-1, 0), (0, -1)][d]
        yield target[0] - dist * fx - side * fy, target[1] - dist * fy + side * fx, d


def synthetic_world(rng: np.random.Generator) -> np.ndarray:
    """A 21x21 code grid: floor, a few walls and objects, a blue key at (10, 10), floor under
    every viewpoint."""
    world = np.full((21, 21), EMPTY, dtype=np.int16)
    world[rng.random((21, 21)) < 0.15] = WALL_CODE
    world[rng.random((21, 21)) < 0.08] = code("ball", "green")
    for x, y, _ in viewpoints():
        world[x, y] = EMPTY
    world[10, 10] = code("key", "blue")
    return world


def goal_view(world: np.ndarray, pose) -> np.ndarray:
    vx, vy = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    x, y = view_to_world(pose, vx, vy)
    out = world[x, y].astype(np.int16)
    out[3, 6] = EMPTY
    return out


def test_image_registration_and_thresholds():
    rng = np.random.default_rng(0)
    world = synthetic_world(rng)
    key = code("key", "blue")
    evidence = world[4:17, 4:17].copy()  # radius 6 around (10, 10)
    for pose in viewpoints():
        view = goal_view(world, pose)
        assert register(view, evidence, key) == (1.0, 49)
    view = goal_view(world, (10, 12, 3))  # facing north, key 2 ahead
    # corrupt 3 of the 49 evidence cells under the view: agreement 46/49
    vx, vy = np.meshgrid(np.arange(7), np.arange(7), indexing="ij")
    x, y = view_to_world((10, 12, 3), vx, vy)
    bad = evidence.copy()
    for i, j in [(0, 0), (6, 1), (2, 3)]:
        bad[x[i, j] - 4, y[i, j] - 4] = code("box", "purple")
    assert register(view, bad, key) == (pytest.approx(46 / 49), 49)
    # the matcher: threshold and minimum overlap, through records
    m = SemanticMap(image_threshold=0.95)
    rec = InstanceRecord(0, "key", "blue", (10, 10), 0, 0, evidence=bad)
    m.records[rec.cell] = rec
    m._goal_cache = (b"view", view)  # the goal image is already embedded (the classifier is tested above)
    image_goal = goal("image", "key", image=np.frombuffer(b"view", np.uint8))
    assert m.candidates(image_goal)[0].score == pytest.approx(46 / 49)
    assert m.match(image_goal) is None  # 0.939 < 0.95
    m.image_threshold = 0.9
    assert m.match(image_goal)[0].record is rec
    sparse = np.full_like(evidence, UNKNOWN_CODE)
    sparse[5:8, 5:8] = evidence[5:8, 5:8]  # only the key's 3x3 neighbourhood is known
    rec.evidence = sparse
    c = m.candidates(image_goal)[0]
    assert (c.score, c.overlap) == (1.0, 9) and m.match(image_goal)[0].record is rec
    m.image_min_overlap = 10  # 9 cells compared are not enough evidence
    assert m.match(image_goal) is None
    # another colour in the goal window is not a hypothesis for this record
    assert register(view, evidence, code("key", "red")) == (0.0, 0)


def test_bad_matcher_settings():
    with pytest.raises(ConfigError, match="image_threshold"):
        SemanticMap(image_threshold=1.5)
    with pytest.raises(ConfigError, match="evidence_radius"):
        SemanticMap(evidence_radius=2)
    with pytest.raises(ConfigError, match="min_distance"):
        SpatialGraph(min_distance=0)
    with pytest.raises(ConfigError, match="keyframes_per_node"):
        SpatialGraph(keyframes_per_node=5)


# --------------------------------------------------------------------------- map updates


def test_semantic_map_on_a_scripted_trajectory():
    env = GoatGrid(**HOUSE)
    m = SemanticMap()
    for t, (obs, pose) in enumerate(scripted_walk(env, seed=4, steps=120)):
        m.update(obs["image"], pose, t, rgb_fn=env.egocentric_rgb)
    occ = m.occupancy
    known = occ.known()
    assert known.sum() > 80
    W, H = env.width, env.height
    assert not known[W:].any() and not known[:, H:].any()
    for x, y in zip(*np.nonzero(known)):
        assert occ.kind[x, y] == truth_kind(env, x, y), (x, y)
        if occ.kind[x, y] == DOOR:
            assert occ.closed[x, y] == (not env.grid.get(x, y).is_open)
    # instances found == the oracle's instances on the cells the map has seen
    found = {(r.cell, r.category, r.color) for r in m.instances()}
    visible = {(o.pos, o.category, o.color) for o in env.oracle.instances if known[o.pos]}
    assert found == visible and len(found) >= 3
    for r in m.instances():
        assert 0 <= r.first_seen <= r.last_seen <= 119
        assert 1 <= len(r.views) <= m.max_views
        for v in r.views:
            assert v.crop.shape == (8, 8, 3)
            assert tuple(int(c) for c in view_to_world(v.pose, *v.view_cell)) == r.cell
            assert v.codes[v.view_cell] == r.code
        assert r.evidence[m.evidence_radius, m.evidence_radius] == r.code


# --------------------------------------------------------------------------- graph


def test_astar_on_handmade_graphs():
    # a cheap-looking direct edge that is dearer than the detour
    edges = {"s": {"a": 1.0, "g": 10.0}, "a": {"b": 1.0}, "b": {"g": 1.0}, "g": {}}
    assert astar(edges, "s", "g") == (["s", "a", "b", "g"], 3.0)
    assert astar(edges, "s", "s") == (["s"], 0.0)
    assert astar(edges, "g", "s") is None  # directed: no way back
    assert astar({0: {1: 1.0}, 1: {0: 1.0}, 2: {3: 1.0}}, 0, 3) is None  # another component
    with pytest.raises(ConfigError, match="negative"):
        astar({0: {1: -1.0}}, 0, 1)
    # random grid-embedded graphs: A* with the straight-line heuristic equals Floyd-Warshall
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 12
        pos = rng.integers(0, 10, size=(n, 2)).astype(float)
        edges = {i: {} for i in range(n)}
        for i, j in itertools.combinations(range(n), 2):
            if rng.random() < 0.25:
                w = math.dist(pos[i], pos[j]) * (1 + rng.random())  # >= straight line
                edges[i][j] = edges[j][i] = w
        dist = np.full((n, n), np.inf)
        np.fill_diagonal(dist, 0)
        for i in edges:
            for j, w in edges[i].items():
                dist[i, j] = w
        for k in range(n):
            dist = np.minimum(dist, dist[:, k : k + 1] + dist[k : k + 1, :])
        for s, g in itertools.product(range(n), repeat=2):
            got = astar(edges, s, g, lambda v, g=g: math.dist(pos[v], pos[g]))
            if math.isinf(dist[s, g]):
                assert got is None
            else:
                path, cost = got
                assert cost == pytest.approx(dist[s, g]) and path[0] == s and path[-1] == g
                assert cost == pytest.approx(sum(edges[a][b] for a, b in zip(path, path[1:])))


def build_graph(seed: int = 5, steps: int = 200, **kwargs):
    env = GoatGrid(**HOUSE)
    g = SpatialGraph(**kwargs)
    trail = []
    for t, (obs, pose) in enumerate(scripted_walk(env, seed=seed, steps=steps)):
        n = g.update(obs["image"], pose, t, embed_fn=lambda: view_embedding(env.egocentric_rgb()))
        trail.append((pose, n))
    return env, g, trail


def test_spatial_graph_on_a_scripted_trajectory():
    env, g, trail = build_graph(min_distance=3.0)
    assert len(g.nodes) >= 5
    centres = [n.center for n in g.nodes]
    for a, b in itertools.combinations(centres, 2):
        assert math.dist(a, b) >= 3.0  # farthest-point spacing
    for pose, n in trail:
        assert math.dist(pose[:2], g.nodes[n].center) < 3.0  # every pose is covered by its node
    for node in g.nodes:
        assert 1 <= len(node.keyframes) <= 4
        assert all(k.pose[2] == h for h, k in node.keyframes.items())  # one per heading: >= 90 degrees apart
        for k in node.keyframes.values():
            assert k.embedding.shape == (147,) and abs(float(np.linalg.norm(k.embedding)) - 1) < 1e-5
    # edges join consecutive nodes, both ways, and cost at least the straight line
    for (_, a), (_, b) in zip(trail, trail[1:]):
        if a != b:
            assert b in g.edges[a] and g.edges[a][b] == g.edges[b][a]
    for a in g.edges:
        for b, w in g.edges[a].items():
            assert w >= math.dist(g.nodes[a].center, g.nodes[b].center)
    # the graph is connected, and A* over it agrees with Dijkstra
    far = max(range(len(g.nodes)), key=lambda n: g.distances(0).get(n, -1))
    path, cost = g.plan(0, far)
    assert cost == pytest.approx(g.distances(0)[far]) and path[0] == 0 and path[-1] == far
    assert set(g.distances(0)) == set(range(len(g.nodes)))
    # objects: exactly the oracle's instances the walk saw, each held by the nodes that saw it
    truth = {o.pos: (o.category, o.color) for o in env.oracle.instances}
    assert g.instances and all(truth[c] == (r.category, r.color) for c, r in g.instances.items())
    for c, r in g.instances.items():
        assert all(c in g.nodes[n].objects for n in r.seen_from) and r.node in r.seen_from


def test_more_keyframes_are_never_kept_than_asked():
    _, g, _ = build_graph(steps=120, keyframes_per_node=2)
    assert all(len(n.keyframes) <= 2 for n in g.nodes)
    assert any(len(n.keyframes) == 2 for n in g.nodes)


def test_localization_picks_the_node_on_a_revisit():
    env, g, _ = build_graph()
    embeddings = [(n.id, k) for n in g.nodes for k in n.keyframes.values()]
    distinct = 0
    for nid, k in embeddings:
        # views that look like no other node's keyframe: revisiting the pose must find the node
        if any(other != nid and float(k.embedding @ o.embedding) > 0.99 for other, o in embeddings):
            continue
        env.agent_pos, env.agent_dir = k.pose[:2], k.pose[2]
        query = view_embedding(env.egocentric_rgb())
        if float(query @ k.embedding) < 0.999:
            continue  # the place changed since (the walk opened a door in view)
        ranked = g.localize(query, visible_objects(env.gen_obs()["image"]))
        assert ranked[0][0] == nid
        distinct += 1
    assert distinct >= len(embeddings) // 2
    # the object rerank decides between look-alike places
    g2 = SpatialGraph(top_k=2)
    blank = np.zeros((56, 56, 3), np.uint8)
    blank[::2] = 60
    e = view_embedding(blank)
    for i, cell in enumerate([(1, 1), (9, 9)]):
        g2.nodes.append(GraphNode(i, cell, keyframes={0: Keyframe((*cell, 0), 0, e)}))
    g2.instances[(9, 8)] = ObjectSighting("ball", "red", (9, 8), 0, 0, {1: 1.0})
    g2.nodes[1].objects.add((9, 8))
    assert [n for n, _ in g2.localize(e, set())] == [0, 1]  # a tie: lowest id
    ranked = g2.localize(e, {("ball", "red")})
    assert ranked[0][0] == 1 and ranked[0][1] == pytest.approx(0.3 * 1.0 + 0.7 * 1.0, abs=1e-5)
    assert ranked[1] == (0, pytest.approx(0.3, abs=1e-5))


# --------------------------------------------------------------------------- agents


AGENT_CLASSES = [GoatModularAgent, SMGAgent, MemorylessAgent]


@pytest.mark.parametrize("cls", AGENT_CLASSES, ids=lambda c: c.name)
def test_agents_complete_subgoals_without_the_oracle(cls, monkeypatch):
    def forbidden(self):
        raise AssertionError("an agent read the oracle")

    env = GoatGrid(**SMALL)
    result = modular.play_episode(cls(), env, seed=0)  # the oracle is reachable here...
    monkeypatch.setattr(GoatGrid, "oracle", property(forbidden))  # ...and from now on it is not
    again = modular.play_episode(cls(), env, seed=0)
    assert again == result  # deterministic, and the same without any oracle access
    assert len(result.successes) == 5 and sum(result.successes) >= 3
    assert all(0.0 <= s <= 1.0 for s in result.spls)


def test_env_view_exposes_only_the_allowed_interfaces():
    env = GoatGrid(**SMALL)
    env.reset(seed=1)
    view = EnvView(env)
    assert view.agent_pose == env.agent_pose and view.goal_spec().modality == env.goal_spec().modality
    assert view.view_to_world(3, 5) == env.view_to_world(3, 5)
    assert view.egocentric_rgb().shape == (56, 56, 3)
    for name in ("oracle", "grid", "unwrapped", "_instances", "_env"):
        with pytest.raises(AttributeError, match="exposes only"):
            getattr(view, name)
    with pytest.raises(AttributeError, match="read-only"):
        view.agent_pose = (1, 1, 0)
    with pytest.raises(ConfigError, match="not a GoatGrid"):
        EnvView(object())


def test_memoryless_agent_forgets_at_each_subgoal_and_goat_does_not():
    env = GoatGrid(**SMALL)
    agents = {"goat": GoatModularAgent(), "memoryless": MemorylessAgent()}
    for name, agent in agents.items():
        obs, info = env.reset(seed=3)
        agent.reset()
        view = EnvView(env)
        before = None
        while True:
            k = int(obs["subgoal_index"])
            a = agent.act(obs, info, view)
            explored = int(agent.map.explored().sum())
            if k == 1 and before is not None:
                if name == "goat":
                    assert explored >= before  # the map of subgoal 0 is still there
                else:
                    assert explored <= 7 * 7  # one view's worth: the rest was wiped
                break
            before = explored
            obs, _, _, _, info = env.step(a)


# --------------------------------------------------------------------------- the algorithm


def preset(memory: str, **kwargs) -> dict:
    return {"algo": "modular", "policy": {"memory": memory, "memory_kwargs": kwargs}}


def test_check_config_names_valid_values():
    env = "rlmem/GoatGridSmall-v0"
    for memory in modular.AGENTS:
        make_run_config(preset(memory), env=env)
    with pytest.raises(ConfigError, match="semantic_map, spatial_graph, memoryless"):
        make_run_config(preset("gru"), env=env)
    with pytest.raises(ConfigError, match="valid keys in policy.memory_kwargs: language_threshold"):
        make_run_config(preset("semantic_map", threshold=0.5), env=env)
    with pytest.raises(ConfigError, match="relocalize_every"):
        make_run_config(preset("spatial_graph", relocalize_every=0), env=env)
    with pytest.raises(ConfigError, match="image_threshold"):
        make_run_config(preset("memoryless", image_threshold=2.0), env=env)
    with pytest.raises(ConfigError, match="GoatGrid"):
        make_run_config(preset("semantic_map"), env="rlmem/EndlessTMaze-v0")
    with pytest.raises(ConfigError, match="symbolic"):
        make_run_config(preset("semantic_map"), env=env, env_kwargs={"obs_mode": "rgb"})
    with pytest.raises(ConfigError, match="no network"):
        make_run_config({**preset("semantic_map"), "policy": {"memory": "semantic_map", "encoder": [32]}}, env=env)
    # presets in agents/ are valid
    from pathlib import Path

    from rlmem.config import load_preset

    root = Path(__file__).resolve().parents[1] / "agents"
    for name, memory in [("goat-modular", "semantic_map"), ("smg", "spatial_graph"), ("nav-memoryless", "memoryless")]:
        cfg = make_run_config(load_preset(root / f"{name}.toml"), env=env)
        assert cfg.algo == "modular" and cfg.policy.memory == memory


def test_train_then_evaluate_run(tmp_path):
    cfg = make_run_config(preset("semantic_map", image_threshold=0.85), env="rlmem/GoatGridSmall-v0", seed=3)
    run = Run.create(tmp_path / "run", cfg)
    seen = []
    metrics = modular.train(cfg, run, callback=seen.append)
    assert metrics["step"] == 0 and seen == [metrics]
    ckpt = Run.open(tmp_path / "run").load_checkpoint()
    assert ckpt["policy"] == {"memory": "semantic_map", "memory_kwargs": {"image_threshold": 0.85}}
    res = modular.evaluate_run(Run.open(tmp_path / "run"), episodes=2, seed=100)
    assert res.episodes == 2 and 0.0 <= res.success <= 1.0
    by_index = res.breakdown["success/SPL by subgoal index"]
    by_modality = res.breakdown["success/SPL by modality"]
    assert list(by_index) == ["0", "1", "2", "3", "4"] and all(r["subgoals"] == 2 for r in by_index.values())
    assert by_modality["all"]["subgoals"] == 10
    assert sum(r["subgoals"] for k, r in by_modality.items() if k != "all") == 10
    # the tables are the means of the episodes' own per-subgoal results
    direct = [modular.play_episode(modular.make_agent("semantic_map", {"image_threshold": 0.85}), GoatGrid(**SMALL), 100 + i)
              for i in range(2)]
    assert by_index["0"]["success"] == np.mean([r.successes[0] for r in direct])
    assert by_modality["all"]["spl"] == pytest.approx(np.mean([s for r in direct for s in r.spls]))


def test_subgoal_tables_arithmetic():
    from rlmem.evaluate import subgoal_tables

    tables = subgoal_tables([((True, False), (1.0, 0.0), ("image", "category")),
                             ((True, True, True), (0.5, 1.0, 0.25), ("image", "image", "language"))])
    assert tables["success/SPL by subgoal index"]["1"] == {"subgoals": 2, "success": 0.5, "spl": 0.5}
    assert tables["success/SPL by subgoal index"]["2"] == {"subgoals": 1, "success": 1.0, "spl": 0.25}
    assert tables["success/SPL by modality"]["image"] == {"subgoals": 3, "success": 1.0, "spl": 2.5 / 3}
    assert list(tables["success/SPL by modality"]) == ["category", "image", "language", "all"]
    assert tables["success/SPL by modality"]["all"]["subgoals"] == 5
