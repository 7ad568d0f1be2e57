"""MG-Nav's sparse spatial memory graph for :mod:`rlmem.envs.goat_grid` (plain numpy, not a torch Memory).

After Wang et al., "MG-Nav: Dual-Scale Visual Navigation with Sparse Spatial Memory" (2025;
BenjaminChen1024/MG-Nav): instead of a dense map the agent keeps a graph of places.

- **Nodes** come from farthest-point sampling over the visited poses with a minimum spacing:
  a visited cell farther than ``min_distance`` (Euclidean, in cells) from every node becomes a
  new node -- the greedy covering rule of FPS applied online, in visit order -- and every other
  pose belongs to its nearest node. So node centres are pairwise ``>= min_distance`` apart and
  every visited cell is within ``min_distance`` of its node.
- **Keyframes**: up to ``keyframes_per_node`` views per node with headings at least 90 degrees
  apart (one per direction in a grid), each an embedding of the egocentric RGB view
  (:func:`view_embedding`); a new view of a heading already held replaces the old one when it
  makes the node's keyframes more diverse (lower maximum cosine similarity to the others).
- **Objects per node**: the instances (category, colour, cell) seen from the node's poses;
  :attr:`SpatialGraph.instances` indexes them with the node that saw each from closest.
- **Local maps**: each node keeps the occupancy of what was seen from its poses
  (:class:`~rlmem.memory.semantic_map.Occupancy`); a local controller plans on the union of a few
  nodes' local maps (:meth:`SpatialGraph.local_map`), never on a global map. A global
  *coverage* mask (seen or not, nothing else) tells exploration where the frontiers are.
- **Edges** join nodes traversed consecutively; the cost is the cell-path length between the
  two centres on their local maps (a lower bound when no path is known: the Manhattan distance),
  the smallest seen so far.
- **Localisation** (:meth:`SpatialGraph.localize`), coarse to fine: the top ``top_k`` nodes by
  global similarity (best cosine between the query embedding and the node's keyframes), then
  reranked by ``global_weight * global + (1 - global_weight) * object`` (MG-Nav: 0.3 / 0.7),
  where the object score is the fraction of the query's visible objects (category, colour)
  that the node holds.
- **Planning**: :func:`astar` over nodes (own implementation; Euclidean distance between
  centres is the heuristic, admissible since an edge costs at least that).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
from minigrid.core.constants import IDX_TO_COLOR

from rlmem.errors import ConfigError
from rlmem.memory.semantic_map import CATEGORY_OF_TYPE, VIEW, Occupancy, grow_array

__all__ = [
    "GraphNode",
    "Keyframe",
    "ObjectSighting",
    "SpatialGraph",
    "astar",
    "view_embedding",
]


def view_embedding(rgb: np.ndarray) -> np.ndarray:
    """``float32[147]`` global descriptor of an egocentric RGB view ``uint8[7t, 7t, 3]``.

    The mean colour of each of the 7x7 tiles, centred and L2-normalised, so the dot product of
    two embeddings is their cosine similarity. Tile-size independent: a goal image and an
    observation rendered at different tile sizes embed alike.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] != rgb.shape[1] or rgb.shape[0] % VIEW:
        raise ConfigError(f"view_embedding: expected an RGB view [7t, 7t, 3], got shape {rgb.shape}")
    t = rgb.shape[0] // VIEW
    tiles = rgb.reshape(VIEW, t, VIEW, t, 3).mean(axis=(1, 3)).ravel() / 255.0
    tiles -= tiles.mean()
    norm = float(np.linalg.norm(tiles))
    return (tiles / norm if norm > 0 else tiles).astype(np.float32)


def astar(
    edges: Mapping[Hashable, Mapping[Hashable, float]],
    start: Hashable,
    goal: Hashable,
    heuristic: Callable[[Hashable], float] | None = None,
) -> tuple[list, float] | None:
    """Cheapest path from ``start`` to ``goal``: ``(nodes, cost)``, or None if unreachable.

    Args:
        edges: ``edges[u][v]`` = cost (>= 0) of the edge u -> v (give both directions for an
            undirected graph); nodes without outgoing edges may be absent.
        heuristic: lower bound of the remaining cost from a node to ``goal`` (admissible and
            consistent, e.g. straight-line distance); None is Dijkstra.
    """
    h = heuristic or (lambda n: 0.0)
    best = {start: 0.0}
    parent: dict = {}
    done = set()
    heap = [(h(start), 0.0, 0, start)]
    tie = 1  # insertion counter: nodes need not be comparable
    while heap:
        _, g, _, u = heapq.heappop(heap)
        if u in done:
            continue
        if u == goal:
            path = [u]
            while path[-1] in parent:
                path.append(parent[path[-1]])
            return path[::-1], g
        done.add(u)
        for v, w in edges.get(u, {}).items():
            if w < 0:
                raise ConfigError(f"astar: negative edge cost {w} on {u!r} -> {v!r}")
            ng = g + w
            if ng < best.get(v, math.inf):
                best[v], parent[v] = ng, u
                heapq.heappush(heap, (ng + h(v), ng, tie, v))
                tie += 1
    return None


@dataclass
class Keyframe:
    pose: tuple[int, int, int]
    timestep: int
    embedding: np.ndarray
    """``float32[D]`` (:func:`view_embedding`)."""


@dataclass
class ObjectSighting:
    """An instance as the graph knows it (cells identify instances: objects do not move)."""

    category: str
    color: str
    cell: tuple[int, int]
    first_seen: int
    last_seen: int
    seen_from: dict[int, float] = field(default_factory=dict)
    """node id -> closest distance (cells) from which a pose of that node saw it."""

    @property
    def node(self) -> int:
        """The node that saw it from closest (ties: the lowest id)."""
        return min(self.seen_from, key=lambda n: (self.seen_from[n], n))


@dataclass
class GraphNode:
    id: int
    center: tuple[int, int]
    keyframes: dict[int, Keyframe] = field(default_factory=dict)
    """heading (0..3) -> keyframe: headings are >= 90 degrees apart by construction."""
    objects: set[tuple[int, int]] = field(default_factory=set)
    """Cells of the instances seen from this node's poses."""
    local: Occupancy = field(default_factory=Occupancy)
    """What was seen from this node's poses."""
    visits: int = 0


class SpatialGraph:
    """MG-Nav's sparse memory graph (see the module docstring).

    Args:
        min_distance: node spacing in cells (> 0).
        keyframes_per_node: K, 1..4 (one per heading at most).
        top_k: nodes kept by the coarse (global) localisation stage (>= 1).
        global_weight: weight of the global score in the rerank, in [0, 1] (object: 1 - it).
    """

    def __init__(self, min_distance: float = 3.0, keyframes_per_node: int = 4, top_k: int = 8, global_weight: float = 0.3):
        if isinstance(min_distance, bool) or not isinstance(min_distance, (int, float)) or not min_distance > 0:
            raise ConfigError(f"SpatialGraph: min_distance must be a positive number of cells, got {min_distance!r}")
        if isinstance(keyframes_per_node, bool) or not isinstance(keyframes_per_node, int) or not 1 <= keyframes_per_node <= 4:
            raise ConfigError(f"SpatialGraph: keyframes_per_node must be 1..4 (one per heading), got {keyframes_per_node!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"SpatialGraph: top_k must be an integer >= 1, got {top_k!r}")
        if isinstance(global_weight, bool) or not isinstance(global_weight, (int, float)) or not 0 <= global_weight <= 1:
            raise ConfigError(f"SpatialGraph: global_weight must be in [0, 1], got {global_weight!r}")
        self.min_distance = float(min_distance)
        self.keyframes_per_node = int(keyframes_per_node)
        self.top_k = int(top_k)
        self.global_weight = float(global_weight)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new house)."""
        self.nodes: list[GraphNode] = []
        self.edges: dict[int, dict[int, float]] = {}
        self.instances: dict[tuple[int, int], ObjectSighting] = {}
        self.coverage = np.zeros((8, 8), dtype=bool)
        self.last_node: int | None = None
        self.version = 0
        """Bumped whenever nodes, keyframes, objects or edges change (for callers' caches)."""

    # ------------------------------------------------------------------ building
    def node_of(self, cell: Sequence[int]) -> int | None:
        """The node a cell belongs to: the nearest centre (ties: lowest id); None if no node."""
        if not self.nodes:
            return None
        c = np.array([n.center for n in self.nodes], dtype=np.float64)
        d = np.hypot(c[:, 0] - cell[0], c[:, 1] - cell[1])
        return int(np.argmin(d))

    def update(
        self,
        image: np.ndarray,
        pose: Sequence[int],
        timestep: int,
        embed_fn: Callable[[], np.ndarray] | None = None,
    ) -> int:
        """Integrate one step: symbolic view ``uint8[7, 7, 3]`` from ``pose``; returns the pose's node.

        ``embed_fn`` returns the current view's embedding (:func:`view_embedding`); it is called
        only when a keyframe may be added or replaced (a heading the node lacks, or a pose new to
        the node). Without it no keyframes are kept.
        """
        pose = tuple(int(v) for v in pose)
        cell = pose[:2]
        n = self.node_of(cell)
        if n is None or math.dist(cell, self.nodes[n].center) >= self.min_distance:
            n = len(self.nodes)
            self.nodes.append(GraphNode(n, cell))
            self.version += 1
        node = self.nodes[n]
        node.visits += 1
        seen = node.local.integrate(image, pose, timestep)
        if len(seen.x):
            self.coverage = grow_array(self.coverage, (int(seen.x.max()) + 2, int(seen.y.max()) + 2), False)
            self.coverage[seen.x, seen.y] = True
        for i in np.flatnonzero(np.isin(seen.types, list(CATEGORY_OF_TYPE))):
            obj = (int(seen.x[i]), int(seen.y[i]))
            cat, col = CATEGORY_OF_TYPE[int(seen.types[i])], IDX_TO_COLOR[int(seen.colors[i])]
            rec = self.instances.get(obj)
            if rec is None or (rec.category, rec.color) != (cat, col):
                rec = self.instances[obj] = ObjectSighting(cat, col, obj, timestep, timestep)
                self.version += 1
            rec.last_seen = timestep
            dist = math.dist(cell, obj)
            if dist < rec.seen_from.get(n, math.inf):
                rec.seen_from[n] = dist
            if obj not in node.objects:
                node.objects.add(obj)
                self.version += 1
        if embed_fn is not None:
            self._keyframe(node, pose, timestep, embed_fn)
        if self.last_node is not None and self.last_node != n:
            self._connect(self.last_node, n)
        self.last_node = n
        return n

    def _keyframe(self, node: GraphNode, pose: tuple[int, int, int], t: int, embed_fn: Callable[[], np.ndarray]) -> None:
        heading = pose[2]
        held = node.keyframes.get(heading)
        if held is not None and held.pose == pose:
            return  # the same view again: nothing new (and no render)
        if held is None and len(node.keyframes) < self.keyframes_per_node:
            node.keyframes[heading] = Keyframe(pose, t, np.asarray(embed_fn(), dtype=np.float32))
            self.version += 1
            return
        new = Keyframe(pose, t, np.asarray(embed_fn(), dtype=np.float32))
        # Replace the keyframe of this heading (or, when K < 4 and the heading is new, the most
        # redundant one) if the swap makes the set more diverse.
        slot = heading if held is not None else max(node.keyframes, key=lambda h: _redundancy(node.keyframes, h))
        others = [k.embedding for h, k in node.keyframes.items() if h != slot]
        if not others or _max_sim(new.embedding, others) < _max_sim(node.keyframes[slot].embedding, others):
            del node.keyframes[slot]
            node.keyframes[heading] = new
            self.version += 1

    def _connect(self, a: int, b: int) -> None:
        ca, cb = self.nodes[a].center, self.nodes[b].center
        local = self.local_map([a, b])
        cost = local.distances(ca)
        W, H = cost.shape
        d = float(cost[cb]) if cb[0] < W and cb[1] < H else math.inf
        if not math.isfinite(d):
            d = float(abs(ca[0] - cb[0]) + abs(ca[1] - cb[1]))
        if d < self.edges.get(a, {}).get(b, math.inf):
            self.edges.setdefault(a, {})[b] = d
            self.edges.setdefault(b, {})[a] = d
            self.version += 1

    # ------------------------------------------------------------------ queries
    def neighbors(self, n: int) -> dict[int, float]:
        return dict(self.edges.get(n, {}))

    def plan(self, start: int, goal: int) -> tuple[list[int], float] | None:
        """A* over nodes: ``(node ids from start to goal, cost)``, None if not connected."""
        gx, gy = self.nodes[goal].center
        return astar(self.edges, start, goal, lambda n: math.hypot(self.nodes[n].center[0] - gx, self.nodes[n].center[1] - gy))

    def distances(self, start: int) -> dict[int, float]:
        """Graph distance from ``start`` to every reachable node (Dijkstra)."""
        dist = {start: 0.0}
        heap = [(0.0, start)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist[u]:
                continue
            for v, w in self.edges.get(u, {}).items():
                if d + w < dist.get(v, math.inf):
                    dist[v] = d + w
                    heapq.heappush(heap, (d + w, v))
        return dist

    def local_map(self, nodes: Iterable[int]) -> Occupancy:
        """The union of the local maps of ``nodes`` (per cell the latest sighting)."""
        return Occupancy.merged(self.nodes[n].local for n in dict.fromkeys(nodes))

    def localize(self, embedding: np.ndarray, objects: Iterable[tuple[str, str]] = ()) -> list[tuple[int, float]]:
        """Coarse-to-fine localisation of a view: ``[(node, score)]`` best first (at most top_k).

        ``embedding``: :func:`view_embedding` of the view; ``objects``: its visible
        ``(category, colour)`` pairs (:func:`~rlmem.memory.semantic_map.visible_objects`).
        Nodes without keyframes are skipped.
        """
        q = np.asarray(embedding, dtype=np.float32)
        scored = [
            (n.id, max(float(k.embedding @ q) for k in n.keyframes.values()))
            for n in self.nodes
            if n.keyframes
        ]
        coarse = sorted(scored, key=lambda s: (-s[1], s[0]))[: self.top_k]
        wanted = set(objects)
        out = []
        for nid, g in coarse:
            held = {(self.instances[c].category, self.instances[c].color) for c in self.nodes[nid].objects}
            o = len(wanted & held) / len(wanted) if wanted else 0.0
            out.append((nid, self.global_weight * g + (1.0 - self.global_weight) * o))
        return sorted(out, key=lambda s: (-s[1], s[0]))

    def find(self, category: str, color: str | None = None) -> list[ObjectSighting]:
        """Instances of ``category`` (and ``color``), in order of first sighting."""
        found = [r for r in self.instances.values() if r.category == category and (color is None or r.color == color)]
        return sorted(found, key=lambda r: (r.first_seen, r.cell))

    def frontier_nodes(self) -> list[int]:
        """Nodes whose local map has floor next to a cell the whole graph has never seen."""
        unknown = ~self.coverage
        return [n.id for n in self.nodes if n.local.frontier(unknown).any()]


def _max_sim(e: np.ndarray, others: list[np.ndarray]) -> float:
    return max(float(e @ o) for o in others)


def _redundancy(frames: dict[int, Keyframe], h: int) -> float:
    others = [k.embedding for g, k in frames.items() if g != h]
    return _max_sim(frames[h].embedding, others) if others else -1.0

