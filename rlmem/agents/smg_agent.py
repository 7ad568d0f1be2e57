"""MG-Nav's graph agent (``smg``) for :mod:`rlmem.envs.goat_grid`: graph planner + local controller.

After Wang et al., "MG-Nav" (2025): the agent's only long-term memory is a
:class:`~rlmem.memory.spatial_graph.SpatialGraph` (place nodes with keyframes, objects and a
local map each). Per step:

1. integrate the view into the graph (odometry places it; the pose joins its nearest node or
   founds a new one);
2. re-localise visually every ``relocalize_every`` steps and at every subgoal start (coarse
   keyframe similarity, then object rerank, :meth:`SpatialGraph.localize`): the node the agent
   believes it is at, from which routes start;
3. resolve the goal to a node: category and language goals by the objects the nodes hold
   (language: colour, category and the doors of the object's room as the observing nodes'
   local maps show them); image goals by localising the goal image in the graph (the same
   coarse-to-fine ranking) among nodes that hold an object of the goal's category and colour;
4. travel: A* over nodes, then a local controller -- a pose search on the union of the current
   and next node's local maps -- walks to the next node's centre; at the last node it plans to
   face the instance (image goals: *image-goal mode*, the goal view registered against the
   local maps around the agent, :func:`~rlmem.memory.semantic_map.register`; a node where it
   fails is ruled out for this subgoal);
5. explore when no node holds the goal: the nearest frontier of the local maps around the
   agent (cells the graph has never seen, next to known floor), else travel to the nearest node
   that has one.

When a local plan fails (a wrong localisation leaves the agent outside the local maps) the
agent re-localises by odometry; only if that fails too does it plan on the union of all
local maps (``stats["global_fallback"]`` counts those steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

from rlmem.agents.nav_agents import EnvView, NavAgent, final_pose, front_cell, plan_to_face
from rlmem.envs.goat_grid import STOP, GoalSpec, parse_description
from rlmem.errors import ConfigError
from rlmem.memory.semantic_map import (
    GOAL_WINDOW,
    TileClassifier,
    VIEW,
    cell_code,
    register,
    room_door_colors,
    visible_objects,
)
from rlmem.memory.spatial_graph import ObjectSighting, SpatialGraph, view_embedding

__all__ = ["SMGAgent", "SMGAgentConfig"]

_EVIDENCE_RADIUS = 6  # cells around an instance compared with a goal image (a goal view spans 5)


@dataclass(frozen=True)
class SMGAgentConfig:
    """Settings of :class:`SMGAgent` (``[policy] memory_kwargs`` with ``memory = "spatial_graph"``)."""

    min_node_distance: float = 3.0
    """Node spacing in cells (MG-Nav: about 1 m)."""
    keyframes_per_node: int = 4
    """Keyframes per node, headings 90 degrees apart (MG-Nav: K = 4)."""
    top_k: int = 8
    """Nodes kept by the coarse localisation stage before the object rerank."""
    global_weight: float = 0.3
    """Weight of keyframe similarity in the rerank (objects: 1 - it; MG-Nav: 0.3 / 0.7)."""
    relocalize_every: int = 30
    """Steps between visual re-localisations (MG-Nav: about 30)."""
    language_threshold: float = 1.0
    """Fraction of a description's parts confirmed before a language goal matches."""
    image_threshold: float = 0.9
    """Minimum agreement of the goal image with an instance's surroundings (image-goal mode)."""
    image_min_overlap: int = 8
    """Minimum number of cells compared in image-goal mode."""

    def __post_init__(self) -> None:
        if isinstance(self.relocalize_every, bool) or not isinstance(self.relocalize_every, int) or self.relocalize_every < 1:
            raise ConfigError(f"SMGAgent: relocalize_every must be an integer >= 1, got {self.relocalize_every!r}")
        for name in ("language_threshold", "image_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"SMGAgent: {name} must be in (0, 1], got {v!r}")
        if isinstance(self.image_min_overlap, bool) or not isinstance(self.image_min_overlap, int) or self.image_min_overlap < 1:
            raise ConfigError(f"SMGAgent: image_min_overlap must be an integer >= 1, got {self.image_min_overlap!r}")
        self.make_graph()  # the graph checks its own settings

    def make_graph(self) -> SpatialGraph:
        return SpatialGraph(self.min_node_distance, self.keyframes_per_node, self.top_k, self.global_weight)


class SMGAgent(NavAgent):
    """Graph planner + local controller over a :class:`SpatialGraph` (see the module docstring)."""

    name = "smg"

    def __init__(self, config: SMGAgentConfig | None = None):
        self.config = config or SMGAgentConfig()
        self._classifiers: dict[int, TileClassifier] = {}
        self.reset()

    def reset(self) -> None:
        self.graph = self.config.make_graph()
        self.t = 0
        self.node: int | None = None  # where the agent believes it is (localisation / route progress)
        self._subgoal: int | None = None
        self._since_relocalize = 0
        self._frontier: tuple[int, int] | None = None
        self._rejected: set[int] = set()  # nodes where image-goal mode failed this subgoal
        self._image_node: int | None = None  # the node an image goal is being checked at
        self._goal_key: tuple | None = None
        self._goal_cache: dict = {}
        self.stats = {
            "steps": 0, "relocalizations": 0, "relocalized_at_own_node": 0, "explore": 0, "goal": 0,
            "odometry_fallback": 0, "global_fallback": 0, "rejected_nodes": 0,
        }

    # ------------------------------------------------------------------ the step
    def act(self, obs: dict, info: dict, view: EnvView) -> int:
        pose = tuple(int(v) for v in view.agent_pose)
        self.t += 1
        self.stats["steps"] += 1
        rendered: list[np.ndarray] = []

        def embedding() -> np.ndarray:  # at most one render per step, only when needed
            if not rendered:
                rendered.append(view_embedding(view.egocentric_rgb()))
            return rendered[0]

        member = self.graph.update(obs["image"], pose, self.t, embed_fn=embedding)
        k = int(obs["subgoal_index"])
        new_subgoal = k != self._subgoal
        if new_subgoal:
            self._subgoal, self._rejected, self._frontier, self._image_node = k, set(), None, None
        if new_subgoal or self.node is None or self._since_relocalize >= self.config.relocalize_every:
            ranked = self.graph.localize(embedding(), visible_objects(obs["image"]))
            self.node = ranked[0][0] if ranked else member
            self._since_relocalize = 0
            self.stats["relocalizations"] += 1
            self.stats["relocalized_at_own_node"] += int(self.node == member)
        self._since_relocalize += 1

        goal = view.goal_spec()
        target = self._resolve(goal, member, exhaustive=False)
        if target is not None:
            action = self._travel(pose, member, *target)
            if action is not None:
                self.stats["goal"] += 1
                return action
        action = self._explore(pose, member)
        if action is not None:
            self.stats["explore"] += 1
            return action
        target = self._resolve(goal, member, exhaustive=True)  # nothing left to see: best guess
        if target is not None:
            action = self._travel(pose, member, *target)
            if action is not None:
                return action
        return STOP

    # ------------------------------------------------------------------ goals
    def _resolve(self, goal: GoalSpec, member: int, exhaustive: bool) -> tuple[int, tuple[int, int] | None] | None:
        """``(node, cell)``: walk to face the instance at ``cell`` (held by ``node``), or with
        ``cell`` None go to ``node`` to check an image goal there; None: nothing known fits.
        ``exhaustive``: settle for the best unconfirmed candidate."""
        g = self.graph
        if goal.modality == "image":
            return self._resolve_image(goal, member, exhaustive)
        if goal.modality == "category":
            found = g.find(goal.category)
        else:
            color, category, door = parse_description(goal.text)
            found = []
            for rec in g.find(category, color):
                confirmed = door is None or door in room_door_colors(g.local_map(rec.seen_from), rec.cell)
                if confirmed or exhaustive:
                    found.append(rec)
        if not found:
            return None
        start = self.node if self.node is not None else member
        dist = g.distances(start)
        best = min(found, key=lambda r: (dist.get(r.node, math.inf) + math.dist(g.nodes[r.node].center, r.cell), r.cell))
        return best.node, best.cell

    def _image_goal(self, goal: GoalSpec) -> tuple[np.ndarray, np.ndarray, set[int]]:
        """(goal view codes, goal embedding, the codes its target may have), once per goal."""
        key = (goal.subgoal_index, goal.image.tobytes())
        if self._goal_key != key:
            t = goal.image.shape[0] // VIEW
            if t not in self._classifiers:
                self._classifiers[t] = TileClassifier(t)
            codes = self._classifiers[t](goal.image)
            cat_type = OBJECT_TO_IDX[goal.category]
            wanted = {int(codes[c]) for c in GOAL_WINDOW if codes[c] >= 0 and codes[c] // 8 == cat_type}
            self._goal_key, self._goal_cache = key, {"codes": codes, "emb": view_embedding(goal.image), "wanted": wanted}
        c = self._goal_cache
        return c["codes"], c["emb"], c["wanted"]

    def _register(self, codes: np.ndarray, cell: tuple[int, int], nodes: Sequence[int]) -> tuple[float, int]:
        patch = self.graph.local_map(nodes).patch(cell, _EVIDENCE_RADIUS)
        return register(codes, patch, _code(self.graph.instances[cell]))

    def _accepts(self, score: tuple[float, int]) -> bool:
        return score[0] >= self.config.image_threshold - 1e-9 and score[1] >= self.config.image_min_overlap

    def _resolve_image(self, goal: GoalSpec, member: int, exhaustive: bool) -> tuple | None:
        g = self.graph
        codes, emb, wanted = self._image_goal(goal)
        if not wanted:
            return None
        # Image-goal mode around the agent: the goal view against the local maps it stands in.
        near = [member, *g.neighbors(member)]
        local_objects = {c for n in near for c in g.nodes[n].objects if _code(g.instances[c]) in wanted}
        scored = sorted(((self._register(codes, c, near), c) for c in local_objects), reverse=True)
        if scored and self._accepts(scored[0][0]):
            cell = scored[0][1]
            return g.instances[cell].node, cell
        if exhaustive:  # every instance that fits, each against the local maps of its observers
            scored = sorted(
                ((self._register(codes, c, list(r.seen_from)), c) for c, r in g.instances.items() if _code(r) in wanted),
                reverse=True,
            )
            if scored:
                cell = scored[0][1]
                return g.instances[cell].node, cell
            return None
        # Image-goal mode found nothing here: the node the agent went to check is ruled out.
        if self._image_node == member:
            self._rejected.add(member)
            self.stats["rejected_nodes"] += 1
            self._image_node = None
        if self._image_node is not None and self._image_node not in self._rejected:
            return self._image_node, None  # keep going to the node chosen before
        # Localise the goal image in the graph among nodes that hold a fitting object.
        for node, _score in g.localize(emb, visible_objects(codes)):
            if node in self._rejected:
                continue
            if any(_code(g.instances[c]) in wanted for c in g.nodes[node].objects):
                self._image_node = node
                return self._resolve_image(goal, member, exhaustive) if node == member else (node, None)
        return None

    # ------------------------------------------------------------------ moving
    def _travel(self, pose: tuple, member: int, goal_node: int, cell: tuple[int, int] | None = None) -> int | None:
        """One action towards ``cell`` (to face it) in ``goal_node``, or towards the node's centre."""
        g = self.graph
        start = self.node if self.node is not None else member
        route = g.plan(start, goal_node)
        path = route[0] if route is not None else None
        while path is not None and len(path) > 1 and _near(pose, g.nodes[path[1]].center):
            self.node, path = path[1], path[1:]  # waypoint reached
        if path is None:
            action = None
        elif cell is not None and len(path) <= 2:
            action = self._local_step(pose, [member, *path, *g.neighbors(path[-1])], [cell], optimistic=True)
        elif len(path) == 1:
            centre = g.nodes[path[0]].center
            if _near(pose, centre):
                return None  # arrived (the node's centre is the nearest: the pose is a member)
            action = self._local_step(pose, [member, path[0], *g.neighbors(path[0])], [centre])
        else:
            action = self._local_step(pose, [member, *path[:2]], [g.nodes[path[1]].center])
        if action is not None:
            return action
        if start != member:  # a wrong localisation: trust odometry and try again
            self.node = member
            self.stats["odometry_fallback"] += 1
            return self._travel(pose, member, goal_node, cell)
        # no route or no local plan: the union of every local map
        targets = [cell] if cell is not None else [g.nodes[goal_node].center]
        plan = plan_to_face(g.local_map(range(len(g.nodes))), pose, targets, optimistic=True)
        if plan is None or (plan[0] == STOP and cell is None):
            return None
        self.stats["global_fallback"] += 1
        return plan[0]

    def _local_step(self, pose: tuple, nodes: Sequence[int], targets: list, optimistic: bool = False) -> int | None:
        """First action of a plan on the local maps of ``nodes`` (the agent's own node among
        them: its latest view, e.g. of a door it just opened, must count)."""
        plan = plan_to_face(self.graph.local_map(nodes), pose, targets, optimistic=optimistic)
        return None if plan is None else plan[0]

    def _explore(self, pose: tuple, member: int) -> int | None:
        g = self.graph
        self.node = member
        near = [member, *g.neighbors(member)]
        local = g.local_map(near)
        frontier = local.frontier(~g.coverage)
        if self._frontier is not None:
            x, y = self._frontier
            if not (x < frontier.shape[0] and y < frontier.shape[1] and frontier[x, y]):
                self._frontier = None
        plan = plan_to_face(local, pose, [self._frontier]) if self._frontier is not None else None
        if plan is None:
            plan = plan_to_face(local, pose, list(zip(*(v.tolist() for v in np.nonzero(frontier)))))
            self._frontier = front_cell(final_pose(pose, plan)) if plan else None
        if plan and plan[0] != STOP:
            return plan[0]
        # nothing to see from here: go to the nearest node that still borders the unknown
        dist = g.distances(member)
        far = sorted((dist[n], n) for n in g.frontier_nodes() if n in dist and n not in near)
        for _, n in far:
            action = self._travel(pose, member, n)
            if action is not None:
                return action
        return None


def _near(pose: Sequence[int], cell: Sequence[int]) -> bool:
    return abs(pose[0] - cell[0]) + abs(pose[1] - cell[1]) <= 1


def _code(rec: ObjectSighting) -> int:
    return int(cell_code(OBJECT_TO_IDX[rec.category], COLOR_TO_IDX[rec.color]))
