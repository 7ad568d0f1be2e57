"""Frames of navigation videos: what the agent sees, where it went, and what its memory holds.

One frame of a modular navigation agent on a GoatGrid house (:func:`nav_frame`)::

    +---------------------------------------------------------------------------------+
    | episode 1/2   subgoal 2/5   language   step 37   successes 1/1                 | header; image
    | goal: the purple box in the room with the yellow door                 [goal]   | goals: the goal
    | action forward   goat-modular                                         [image]  | image on the right
    +-------------------+------------------------------+------------------------------+
    |                   |                              | SemanticMap: 5 instances ... |  memory title
    |  first-person     |  top-down map of the house   |  the agent's memory, in the  |
    |  view (the        |  (env.render(): the goal's   |  map's cells: occupancy and  |
    |  partial view     |  instances framed in cyan)   |  instance markers / graph    |
    |  as RGB)          |  + the path walked so far    |  nodes, edges and objects    |
    |                   |  (one colour per subgoal)    |  ball o  box []  key <>      |  legend
    +-------------------+------------------------------+------------------------------+

The memory panel is drawn from the agent's own data structures (:func:`snapshot`), never from
the env's privileged state: GOAT's :class:`~rlmem.memory.semantic_map.SemanticMap` (cells
unknown / floor / wall / door in the door's colour, the cells of the latest view lighter,
every instance record as a marker in its colour at its map cell -- a circle for a ball, a
square for a box, a diamond for a key), MG-Nav's
:class:`~rlmem.memory.spatial_graph.SpatialGraph` (the cells it has covered, region nodes at
their centres joined by their edges, the node the agent believes it is at in yellow, each
object marker joined to the node that holds it), or for the memoryless control a panel that
says "no memory". The agent's own pose (odometry) is the red triangle.

Everything here is a pure function of arrays and plain data returning ``uint8[H, W, 3]``
frames, so tests can check pixels without decoding a video; the rollout that produces the
data is :func:`rlmem.algos.modular.nav_steps`. Cells are indexed ``[x, y]`` as in MiniGrid;
a cell ``(x, y)`` is drawn at pixels ``[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]``
in both the map and the memory panel, so they line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from minigrid.core.constants import COLORS, IDX_TO_COLOR
from PIL import Image, ImageDraw

from rlmem.errors import ConfigError
from rlmem.memory.semantic_map import DOOR, FREE, OBJECT, UNKNOWN, WALL
from rlmem.video import draw_labels, upscale

__all__ = [
    "GraphSnapshot",
    "MapSnapshot",
    "Marker",
    "NavStep",
    "AGENT",
    "CURRENT_NODE",
    "EDGE",
    "NODE",
    "PATH_COLOURS",
    "draw_path",
    "empty_panel",
    "graph_panel",
    "header",
    "layout",
    "map_panel",
    "map_tile",
    "memory_panel",
    "nav_frame",
    "snapshot",
]

MAP_HEIGHT = 288
"""The house map is drawn about this many pixels high (:func:`map_tile`)."""
HEADER_HEIGHT = 62
"""Three text lines, or a goal image thumbnail of ``THUMB`` pixels."""
THUMB = 56
TITLE_HEIGHT = 18
"""Memory panels: a title line above the map cells and a legend line below them."""
SEPARATOR = 4

PATH_COLOURS = ((255, 140, 0), (255, 64, 170), (150, 255, 60), (80, 150, 255), (255, 235, 90), (190, 110, 255))
"""Path colour of subgoal ``k``: ``PATH_COLOURS[k % 6]`` (none is a MiniGrid colour or the goal cyan)."""

_BACKGROUND = (24, 24, 28)  # unknown cells, margins (as rlmem.video)
_TEXT = (235, 235, 235)
_DIM_TEXT = (150, 150, 160)
_FREE = (64, 64, 72)
_FREE_NOW = (104, 104, 116)  # floor in the latest view
_WALL = (150, 150, 160)
_COVERED = (52, 52, 60)  # cells a SpatialGraph has seen
_MEMBER = (120, 120, 130)  # object -> node line
EDGE = (175, 175, 190)
"""Colour of a graph edge."""
NODE = (60, 170, 255)
"""Fill of a graph node."""
CURRENT_NODE = (255, 210, 0)
"""Fill of the node the agent believes it is at."""
AGENT = (255, 70, 70)
"""The agent's pose in a memory panel."""
_OUTLINE = (240, 240, 240)
_FRAME = (70, 70, 80)


# --------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class Marker:
    """An object instance as a memory holds it."""

    cell: tuple[int, int]
    category: str
    """``ball`` / ``box`` / ``key`` (drawn as a circle / square / diamond)."""
    color: str
    """MiniGrid colour name (the marker's fill)."""


@dataclass(frozen=True)
class MapSnapshot:
    """A :class:`~rlmem.memory.semantic_map.SemanticMap` at one step (copies, ``[W, H]`` arrays)."""

    kind: np.ndarray
    """``int8[W, H]`` occupancy kinds (``UNKNOWN`` / ``FREE`` / ``WALL`` / ``DOOR`` / ``OBJECT``)."""
    code: np.ndarray
    """``int16[W, H]`` cell codes (``type * 8 + colour``; doors are drawn in their colour)."""
    closed: np.ndarray
    """``bool[W, H]`` doors seen closed (drawn solid; open doors as a frame)."""
    seen_now: np.ndarray
    """``bool[W, H]`` cells of the latest view."""
    markers: tuple[Marker, ...]
    pose: tuple[int, int, int] | None


@dataclass(frozen=True)
class GraphSnapshot:
    """A :class:`~rlmem.memory.spatial_graph.SpatialGraph` at one step."""

    coverage: np.ndarray
    """``bool[W, H]`` cells the graph has seen."""
    centers: tuple[tuple[int, int], ...]
    """Node ``i``'s centre cell."""
    edges: tuple[tuple[int, int], ...]
    """Undirected, ``a < b``."""
    current: int | None
    """The node the agent believes it is at."""
    objects: tuple[tuple[int, Marker], ...]
    """``(node holding it, marker)`` per instance."""
    pose: tuple[int, int, int] | None


@dataclass(frozen=True)
class NavStep:
    """Everything one frame shows (see :func:`nav_frame`)."""

    view: np.ndarray
    """``uint8[h, w, 3]`` first-person view."""
    top: np.ndarray
    """``uint8[H * tile, W * tile, 3]`` top-down map (``env.render()`` at ``tile``)."""
    tile: int
    path: tuple[tuple[int, int], ...]
    """Cells visited so far, oldest first, the current one last."""
    path_subgoals: tuple[int, ...]
    """The subgoal index at each of ``path``."""
    memory: MapSnapshot | GraphSnapshot | None
    lines: tuple[str, ...]
    """Header text, up to three lines."""
    goal_image: np.ndarray | None = None
    """``uint8[h, w, 3]`` of an image goal (drawn as a thumbnail in the header)."""


def snapshot(agent: Any, pose: Sequence[int] | None = None) -> MapSnapshot | GraphSnapshot | None:
    """What ``agent``'s memory holds now, copied out of its own data structures.

    A :class:`~rlmem.agents.nav_agents.MemorylessAgent` gives None (it has no memory across
    subgoals: the video says so); an agent with a ``graph``
    (:class:`~rlmem.agents.smg_agent.SMGAgent`) a :class:`GraphSnapshot`; one with a ``map``
    (:class:`~rlmem.agents.nav_agents.GoatModularAgent`) a :class:`MapSnapshot`. ``pose`` is the
    agent's odometry ``(x, y, direction)``, drawn as its position in the memory.
    """
    from rlmem.agents.nav_agents import MemorylessAgent

    pose = None if pose is None else tuple(int(v) for v in pose)
    if isinstance(agent, MemorylessAgent):
        return None
    graph = getattr(agent, "graph", None)
    if graph is not None:
        edges = tuple(sorted({(min(a, b), max(a, b)) for a, nbrs in graph.edges.items() for b in nbrs}))
        objects = tuple(
            (rec.node, Marker(rec.cell, rec.category, rec.color))
            for rec in sorted(graph.instances.values(), key=lambda r: (r.first_seen, r.cell))
        )
        return GraphSnapshot(
            coverage=graph.coverage.copy(),
            centers=tuple(tuple(int(v) for v in n.center) for n in graph.nodes),
            edges=edges,
            current=getattr(agent, "node", None),
            objects=objects,
            pose=pose,
        )
    semantic = getattr(agent, "map", None)
    if semantic is not None:
        occ = semantic.occupancy
        return MapSnapshot(
            kind=occ.kind.copy(),
            code=occ.code.copy(),
            closed=occ.closed.copy(),
            seen_now=occ.seen_at == semantic.timestep,
            markers=tuple(Marker(r.cell, r.category, r.color) for r in semantic.instances()),
            pose=pose,
        )
    raise ConfigError(f"nav_video: {type(agent).__name__} has no map or graph to draw")


# --------------------------------------------------------------------------- pieces


def map_tile(extent: tuple[int, int], target_height: int = MAP_HEIGHT) -> int:
    """Pixels per cell that draw a ``(W, H)``-cell house about ``target_height`` px high (8..32)."""
    W, H = (int(v) for v in extent)
    if W < 1 or H < 1:
        raise ConfigError(f"nav_video: the house must have at least one cell, got {extent}")
    return int(np.clip(target_height // H, 8, 32))


def draw_path(
    img: np.ndarray,
    cells: Sequence[tuple[int, int]],
    cell_px: float,
    subgoals: Sequence[int] | None = None,
) -> np.ndarray:
    """The path through ``cells`` drawn on a copy of the top-down map ``img`` (``uint8[h, w, 3]``).

    Segments join cell centres (``(x + 0.5) * cell_px, (y + 0.5) * cell_px``); the segment into
    ``cells[i]`` has the colour of subgoal ``subgoals[i]`` (:data:`PATH_COLOURS`; all subgoal 0
    without ``subgoals``); a ring marks where the path starts. Returns ``uint8[h, w, 3]``.
    """
    img = np.ascontiguousarray(np.array(img, dtype=np.uint8)[..., :3])  # a copy: the caller's map stays clean
    if not cells:
        return img
    if subgoals is not None and len(subgoals) != len(cells):
        raise ConfigError(f"draw_path: {len(cells)} cells but {len(subgoals)} subgoal indices")
    if not cell_px > 0:
        raise ConfigError(f"draw_path: cell_px must be positive, got {cell_px}")
    subgoals = subgoals if subgoals is not None else [0] * len(cells)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    width = max(2, round(cell_px / 7))
    centre = [((x + 0.5) * cell_px, (y + 0.5) * cell_px) for x, y in cells]
    for i in range(1, len(cells)):
        if cells[i] != cells[i - 1]:
            draw.line([centre[i - 1], centre[i]], fill=PATH_COLOURS[subgoals[i] % len(PATH_COLOURS)], width=width)
    r = max(2.0, cell_px * 0.22)
    (cx, cy) = centre[0]
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=PATH_COLOURS[subgoals[0] % len(PATH_COLOURS)], width=width)
    return np.asarray(pil).copy()


def _cells_image(colours: np.ndarray, extent: tuple[int, int], tile: int, fill=_BACKGROUND) -> np.ndarray:
    """``uint8[H * tile, W * tile, 3]`` from per-cell colours ``uint8[W', H', 3]`` (clipped/padded to ``extent``)."""
    W, H = extent
    grid = np.empty((W, H, 3), np.uint8)
    grid[:] = fill
    w, h = min(W, colours.shape[0]), min(H, colours.shape[1])
    grid[:w, :h] = colours[:w, :h]
    img = grid.transpose(1, 0, 2)  # [H, W, 3]: rows are y
    return np.ascontiguousarray(np.repeat(np.repeat(img, tile, axis=0), tile, axis=1))


def _framed(body: np.ndarray, title: str, legend: bool) -> np.ndarray:
    """``body`` with a title line above and (optionally) the marker legend below; a thin frame
    shows the house's extent (unknown cells have the background colour)."""
    body = body.copy()
    body[0], body[-1], body[:, 0], body[:, -1] = _FRAME, _FRAME, _FRAME, _FRAME
    width = body.shape[1]
    top = np.empty((TITLE_HEIGHT, width, 3), np.uint8)
    top[:] = _BACKGROUND
    top = draw_labels(top, [((4, 3), title, _TEXT, "la")], size=11)
    bottom = np.empty((TITLE_HEIGHT, width, 3), np.uint8)
    bottom[:] = _BACKGROUND
    if legend:
        bottom = _legend(bottom)
    return np.concatenate([top, body, bottom], axis=0)


def _legend(strip: np.ndarray) -> np.ndarray:
    pil = Image.fromarray(strip)
    draw = ImageDraw.Draw(pil)
    x, s = 4, 12
    labels = []
    for category in ("ball", "box", "key"):
        _marker(draw, (x, 3, x + s, 3 + s), category, (200, 200, 200))
        labels.append(((x + s + 3, 3), category, _DIM_TEXT, "la"))
        x += s + 3 + 7 * len(category) + 8
    _agent(draw, (x + s / 2, 3 + s / 2), 0, s)
    labels.append(((x + s + 3, 3), "agent", _DIM_TEXT, "la"))
    return draw_labels(np.asarray(pil), labels, size=11)


def _marker(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], category: str, fill) -> None:
    x0, y0, x1, y1 = box
    if category == "ball":
        draw.ellipse(box, fill=fill, outline=_OUTLINE)
    elif category == "box":
        draw.rectangle(box, fill=fill, outline=_OUTLINE)
    else:  # key (or anything else): a diamond
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill, outline=_OUTLINE)


def _agent(draw: ImageDraw.ImageDraw, centre: tuple[float, float], direction: int, size: float) -> None:
    """A triangle pointing along ``direction`` (0 east, 1 south, 2 west, 3 north)."""
    cx, cy = centre
    fx, fy = ((1, 0), (0, 1), (-1, 0), (0, -1))[int(direction) % 4]
    h = size * 0.42
    tip = (cx + fx * h, cy + fy * h)
    left = (cx - fx * h - fy * h * 0.8, cy - fy * h + fx * h * 0.8)
    right = (cx - fx * h + fy * h * 0.8, cy - fy * h - fx * h * 0.8)
    draw.polygon([tip, left, right], fill=AGENT, outline=_OUTLINE)


def _cell_box(cell: tuple[int, int], tile: int, margin: float) -> tuple[float, float, float, float]:
    x, y = cell
    m = tile * margin
    return x * tile + m, y * tile + m, (x + 1) * tile - m - 1, (y + 1) * tile - m - 1


def _inside(cell: Sequence[int], extent: tuple[int, int]) -> bool:
    return 0 <= cell[0] < extent[0] and 0 <= cell[1] < extent[1]


def _colour(name: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in COLORS.get(name, (200, 200, 200)))


def map_panel(snap: MapSnapshot, extent: tuple[int, int], tile: int) -> np.ndarray:
    """A SemanticMap drawn over ``extent = (W, H)`` cells of ``tile`` px (see the module docstring).

    Returns ``uint8[H * tile + 2 * TITLE_HEIGHT, W * tile, 3]``; cell ``(x, y)`` is at row
    ``TITLE_HEIGHT + y * tile``, column ``x * tile``. Cells outside ``extent`` are not drawn.
    """
    kind = np.asarray(snap.kind)
    lut = np.empty((5, 3), np.uint8)
    lut[UNKNOWN], lut[FREE], lut[WALL], lut[DOOR], lut[OBJECT] = _BACKGROUND, _FREE, _WALL, _FREE, _FREE
    colours = lut[np.clip(kind, 0, 4)]
    colours[(kind == FREE) & snap.seen_now] = _FREE_NOW
    colours[(kind == OBJECT) & snap.seen_now] = _FREE_NOW
    body = _cells_image(colours, extent, tile)

    pil = Image.fromarray(body)
    draw = ImageDraw.Draw(pil)
    for x, y in zip(*np.nonzero(kind == DOOR)):
        if not _inside((x, y), extent):
            continue
        colour = _colour(IDX_TO_COLOR.get(int(snap.code[x, y]) % 8, "grey"))
        box = _cell_box((int(x), int(y)), tile, 0.08)
        if snap.closed[x, y]:
            draw.rectangle(box, fill=colour)
        else:  # open: the door's frame only
            draw.rectangle(box, outline=colour, width=max(2, tile // 8))
    for m in snap.markers:
        if _inside(m.cell, extent):
            _marker(draw, _cell_box(m.cell, tile, 0.16), m.category, _colour(m.color))
    if snap.pose is not None and _inside(snap.pose, extent):
        x, y, d = snap.pose
        _agent(draw, ((x + 0.5) * tile, (y + 0.5) * tile), d, tile)
    n_seen = int((kind != UNKNOWN).sum())
    title = f"SemanticMap: {len(snap.markers)} instances, {n_seen} cells seen"
    return _framed(np.asarray(pil), title, legend=True)


def graph_panel(snap: GraphSnapshot, extent: tuple[int, int], tile: int) -> np.ndarray:
    """A SpatialGraph drawn over ``extent = (W, H)`` cells of ``tile`` px (see the module docstring).

    Same size and cell placement as :func:`map_panel`. Nodes are discs of :data:`NODE` colour
    (the current one :data:`CURRENT_NODE`) at their centre cells, edges lines between them,
    objects markers joined to their node.
    """
    cov = np.asarray(snap.coverage, dtype=bool)
    colours = np.empty(cov.shape + (3,), np.uint8)
    colours[:] = _BACKGROUND
    colours[cov] = _COVERED
    body = _cells_image(colours, extent, tile)

    pil = Image.fromarray(body)
    draw = ImageDraw.Draw(pil)
    centre = [((x + 0.5) * tile, (y + 0.5) * tile) for x, y in snap.centers]
    for node, m in snap.objects:
        if 0 <= node < len(centre):
            draw.line([centre[node], ((m.cell[0] + 0.5) * tile, (m.cell[1] + 0.5) * tile)], fill=_MEMBER, width=1)
    for a, b in snap.edges:
        draw.line([centre[a], centre[b]], fill=EDGE, width=max(2, tile // 10))
    for node, m in snap.objects:
        if _inside(m.cell, extent):
            _marker(draw, _cell_box(m.cell, tile, 0.24), m.category, _colour(m.color))
    r = tile * 0.32
    for i, (cx, cy) in enumerate(centre):
        fill = CURRENT_NODE if i == snap.current else NODE
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=_OUTLINE if i == snap.current else None)
    if snap.pose is not None and _inside(snap.pose, extent):
        x, y, d = snap.pose
        _agent(draw, ((x + 0.5) * tile, (y + 0.5) * tile), d, tile * 0.8)
    where = f", at node {snap.current}" if snap.current is not None else ""
    title = f"SpatialGraph: {len(snap.centers)} nodes, {len(snap.edges)} edges{where}, {len(snap.objects)} objects"
    return _framed(np.asarray(pil), title, legend=True)


def empty_panel(extent: tuple[int, int], tile: int, text: str = "no memory", title: str = "memoryless agent") -> np.ndarray:
    """The memory panel of an agent without memory: ``text`` on a blank panel of
    :func:`map_panel`'s size, under ``title``."""
    W, H = extent
    body = np.empty((H * tile, W * tile, 3), np.uint8)
    body[:] = _BACKGROUND
    body = draw_labels(body, [((W * tile // 2, H * tile // 2), text, _DIM_TEXT, "mm")], size=14)
    return _framed(body, title, legend=False)


def memory_panel(snap: MapSnapshot | GraphSnapshot | None, extent: tuple[int, int], tile: int) -> np.ndarray:
    """:func:`map_panel`, :func:`graph_panel` or (``snap`` None) :func:`empty_panel`."""
    if snap is None:
        return empty_panel(extent, tile)
    if isinstance(snap, GraphSnapshot):
        return graph_panel(snap, extent, tile)
    if isinstance(snap, MapSnapshot):
        return map_panel(snap, extent, tile)
    raise ConfigError(f"nav_video: cannot draw a memory of type {type(snap).__name__}")


def header(lines: Sequence[str], width: int, goal_image: np.ndarray | None = None) -> np.ndarray:
    """``uint8[HEADER_HEIGHT, width, 3]``: up to three text lines; a goal image as a
    thumbnail (about ``THUMB`` px high) at the right end."""
    img = np.empty((HEADER_HEIGHT, width, 3), np.uint8)
    img[:] = _BACKGROUND
    img = np.array(draw_labels(  # draw_labels returns a read-only view of the Pillow image
        img, [((6, 3 + 19 * i), text, _TEXT if i == 0 else _DIM_TEXT, "la") for i, text in enumerate(lines[:3])], size=13
    ))
    if goal_image is not None:
        thumb = upscale(goal_image, THUMB)
        h, w = thumb.shape[:2]
        x0, y0 = width - w - 4, (HEADER_HEIGHT - h) // 2
        if x0 > 0:
            img[y0 : y0 + h, x0 : x0 + w] = thumb
    return img


# --------------------------------------------------------------------------- the frame


def layout(
    view_shape: Sequence[int], top_shape: Sequence[int], memory_shape: Sequence[int]
) -> dict[str, tuple[int, int, int, int]]:
    """Where :func:`nav_frame` puts its parts: ``{name: (row, column, height, width)}`` for
    ``header``, ``view`` (the first-person view, upscaled to the map's height), ``map`` and
    ``memory``, given the shapes of the view, the map and the memory panel."""
    view_h, view_w = _upscaled_shape(view_shape, top_shape[0])
    x_map = view_w + SEPARATOR
    x_mem = x_map + top_shape[1] + SEPARATOR
    width = x_mem + memory_shape[1]
    return {
        "header": (0, 0, HEADER_HEIGHT, width),
        "view": (HEADER_HEIGHT, 0, view_h, view_w),
        "map": (HEADER_HEIGHT, x_map, top_shape[0], top_shape[1]),
        "memory": (HEADER_HEIGHT, x_mem, memory_shape[0], memory_shape[1]),
    }


def _upscaled_shape(shape: Sequence[int], target: int) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    if h <= target:
        k = max(1, target // h)
        return h * k, w * k
    return target, max(1, round(w * target / h))


def nav_frame(step: NavStep) -> np.ndarray:
    """One video frame (``uint8[H, W, 3]``, H and W even) from a :class:`NavStep`: the header
    above the first-person view, the map with the path and the memory panel (:func:`layout`)."""
    W, H = step.top.shape[1] // step.tile, step.top.shape[0] // step.tile
    top = draw_path(step.top, step.path, step.tile, step.path_subgoals)
    memory = memory_panel(step.memory, (W, H), step.tile)
    view = upscale(step.view, top.shape[0])
    boxes = layout(step.view.shape, top.shape, memory.shape)
    height = max(r + h for r, _, h, _ in boxes.values())
    width = boxes["header"][3]
    out = np.empty((height + height % 2, width + width % 2, 3), np.uint8)  # H.264 needs even sizes
    out[:] = _BACKGROUND
    parts = {"header": header(step.lines, width, step.goal_image), "view": view, "map": top, "memory": memory}
    for name, part in parts.items():
        r, c, h, w = boxes[name]
        out[r : r + h, c : c + w] = part
    return out
