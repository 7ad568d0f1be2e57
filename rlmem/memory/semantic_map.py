"""GOAT's instance-aware semantic map for :mod:`rlmem.envs.goat_grid` (plain numpy, not a torch Memory).

After Chang et al., "GOAT: GO to Any Thing" (2023; facebookresearch/home-robot ``goat_agent``):
the agent keeps an allocentric map built from its observations and odometry, plus one record
per object instance it has seen; a goal of any modality is matched against those records,
with the goal's category as a prefilter and a threshold per modality. Here:

- **Occupancy** (:class:`Occupancy`): ``int8[W, H]`` cell kinds (:data:`UNKNOWN`, :data:`FREE`,
  :data:`WALL`, :data:`DOOR`, :data:`OBJECT`), the symbolic code of each cell (type and colour,
  :func:`cell_code`), closed doors, and the timestep each cell was last seen. It is filled from
  the egocentric symbolic view and the agent's pose (GOAT assumes odometry) with
  :func:`view_to_world`, the same transform as ``GoatGrid.view_to_world``, and grows as new
  cells come into view (nothing about the house size is assumed).
- **Instance records** (:class:`InstanceRecord`): category and colour read from the symbolic
  view, the map cell, first / last seen timesteps, and the *views* in which the instance was
  seen (:class:`InstanceView`: pose, the 7x7 symbolic view, an RGB crop of the instance from
  the egocentric render). Objects are told apart only by where they are, so a sighting is
  associated with a record by cell, category and colour; a cell seen empty drops its record.
  Every view also goes into the record's *evidence*: the codes of the cells around the instance
  (radius ``evidence_radius``) fused over its views, in world orientation.
- **Goal matching** (:meth:`SemanticMap.match`), after a category prefilter:

  ========= ===================================================================================
  category  every record of the category counts (score 1); ordered nearest first from ``pose``
  language  the goal text is parsed (colour, category, "in the room with the <c> door"); score =
            fraction of its parts confirmed by observation. The room of a record is the flood fill
            of *known* floor / object cells around it, and its doors are the known door cells that
            touch it, so a confirmed relation is always true (observation only adds cells);
            accepted at ``score >= language_threshold``.
  image     the goal image is embedded into a 7x7 grid of cell codes by a fixed tile classifier
            (:class:`TileClassifier`: MiniGrid's own tile renders as the "pretrained detector",
            visible tiles only) and registered against each candidate's evidence: for every
            heading and every cell of the goal view's target window holding the record's
            category and colour, the fraction of cells known in both that agree (door state
            ignored: doors change). Accepted at ``score >= image_threshold`` with at least
            ``image_min_overlap`` cells compared -- GOAT's keypoint matching with a geometric
            check, in a grid.
  ========= ===================================================================================

Nothing here reads the env's privileged state: the map sees only what the agent is shown.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, DIR_TO_VEC, IDX_TO_COLOR, OBJECT_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.world_object import Ball, Box, Door, Key, Wall

from rlmem.envs.goat_grid import CATEGORIES, GoalSpec, parse_description
from rlmem.errors import ConfigError

__all__ = [
    "DOOR",
    "FREE",
    "OBJECT",
    "UNKNOWN",
    "UNKNOWN_CODE",
    "WALL",
    "CATEGORY_OF_TYPE",
    "GOAL_WINDOW",
    "Candidate",
    "InstanceRecord",
    "InstanceView",
    "Occupancy",
    "SemanticMap",
    "TileClassifier",
    "cell_code",
    "grow_array",
    "register",
    "room_door_colors",
    "view_to_world",
    "visible_objects",
]

VIEW = 7
"""Side of GoatGrid's egocentric view; the agent is at view cell ``[3, 6]`` looking to ``vy = 0``."""

UNKNOWN, FREE, WALL, DOOR, OBJECT = 0, 1, 2, 3, 4
"""Occupancy kinds (``Occupancy.kind``). FREE and DOOR cells can be stood on."""

UNKNOWN_CODE = -1
"""Cell code of a cell never seen (``Occupancy.code``, view codes, evidence)."""

_T = OBJECT_TO_IDX
_KIND_OF_TYPE = np.full(max(_T.values()) + 1, UNKNOWN, dtype=np.int8)
for _name, _kind in (("empty", FREE), ("floor", FREE), ("goal", FREE), ("agent", FREE), ("wall", WALL),
                     ("lava", WALL), ("door", DOOR), ("key", OBJECT), ("ball", OBJECT), ("box", OBJECT)):
    _KIND_OF_TYPE[_T[_name]] = _kind
_CATEGORY_TYPES = {c: _T[c] for c in CATEGORIES}
CATEGORY_OF_TYPE = {t: c for c, t in _CATEGORY_TYPES.items()}
"""MiniGrid object type index -> GoatGrid category (``ball``, ``box``, ``key``)."""
_DIRS = np.array([tuple(int(v) for v in d) for d in DIR_TO_VEC], dtype=np.int64)  # [4, 2]

# View cells where a goal image shows its target: 1-3 cells ahead of the viewer, at most one to
# the side (GoatGrid's image-goal viewpoints).
GOAL_WINDOW = tuple((vx, vy) for vy in (5, 4, 3) for vx in (3, 2, 4))


def cell_code(type_idx: int | np.ndarray, color_idx: int | np.ndarray) -> int | np.ndarray:
    """Symbolic code of a cell: ``type * 8 + colour`` (MiniGrid indices); a door's state is left
    out, so a door keeps its code when it is opened or closed."""
    return type_idx * 8 + color_idx


EMPTY_CODE = int(cell_code(_T["empty"], 0))


def view_to_world(pose: Sequence[int], vx: np.ndarray | int, vy: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """World cells ``(x, y)`` of egocentric view cells ``[vx, vy]`` seen from ``pose = (x, y, dir)``.

    The same transform as ``GoatGrid.view_to_world`` (the inverse of MiniGrid's
    ``get_view_coords``), vectorised: ``vx, vy`` are ints or int arrays of one shape.
    """
    x, y, d = (int(v) for v in pose)
    fx, fy = _DIRS[d]
    rx, ry = -fy, fx  # the agent's right
    ahead, side = VIEW - 1 - np.asarray(vy), np.asarray(vx) - VIEW // 2
    return x + ahead * fx + side * rx, y + ahead * fy + side * ry


def visible_objects(codes: np.ndarray) -> set[tuple[str, str]]:
    """``{(category, colour)}`` of the objects in a ``[7, 7]`` code grid or ``[7, 7, 3]`` symbolic view."""
    if codes.ndim == 3:
        codes = cell_code(codes[..., 0].astype(np.int64), codes[..., 1].astype(np.int64))
    out = set()
    for c in np.unique(codes):
        if c >= 0 and c // 8 in CATEGORY_OF_TYPE:
            out.add((CATEGORY_OF_TYPE[int(c) // 8], IDX_TO_COLOR[int(c) % 8]))
    return out


def grow_array(arr: np.ndarray, shape: tuple[int, int], fill) -> np.ndarray:
    """``arr`` (2-D) padded with ``fill`` to at least ``shape`` (itself if already that big)."""
    if arr.shape[0] >= shape[0] and arr.shape[1] >= shape[1]:
        return arr
    out = np.full((max(arr.shape[0], shape[0]), max(arr.shape[1], shape[1])), fill, dtype=arr.dtype)
    out[: arr.shape[0], : arr.shape[1]] = arr
    return out


# --------------------------------------------------------------------------- occupancy


@dataclass
class Observed:
    """The cells one view showed (world coordinates inside the map) and their symbolic codes."""

    x: np.ndarray
    """``int64[N]`` world x of each visible cell."""
    y: np.ndarray
    """``int64[N]``."""
    vx: np.ndarray
    """``int64[N]`` the view cell each came from."""
    vy: np.ndarray
    types: np.ndarray
    """``int64[N]`` MiniGrid object type."""
    colors: np.ndarray
    """``int64[N]`` MiniGrid colour index."""


class Occupancy:
    """What has been seen of the house, indexed ``[x, y]`` like MiniGrid's grid.

    Arrays (all ``[W, H]``; ``W, H`` grow to one cell past the farthest cell seen, so the ring
    of unknown cells around what was seen always exists):

    - ``kind`` ``int8``: :data:`UNKNOWN` / :data:`FREE` / :data:`WALL` / :data:`DOOR` / :data:`OBJECT`;
    - ``code`` ``int16``: :func:`cell_code` of the last sighting, :data:`UNKNOWN_CODE` if never seen;
    - ``closed`` ``bool``: doors seen closed (entering one costs a toggle);
    - ``seen_at`` ``int32``: timestep of the last sighting, -1 if never seen.
    """

    def __init__(self, shape: tuple[int, int] = (8, 8)):
        self.kind = np.zeros(shape, dtype=np.int8)
        self.code = np.full(shape, UNKNOWN_CODE, dtype=np.int16)
        self.closed = np.zeros(shape, dtype=bool)
        self.seen_at = np.full(shape, -1, dtype=np.int32)

    @property
    def shape(self) -> tuple[int, int]:
        return self.kind.shape

    def grow(self, shape: tuple[int, int]) -> None:
        """Make the arrays at least ``shape`` (new cells unknown)."""
        self.kind = grow_array(self.kind, shape, UNKNOWN)
        self.code = grow_array(self.code, shape, UNKNOWN_CODE)
        self.closed = grow_array(self.closed, shape, False)
        self.seen_at = grow_array(self.seen_at, shape, -1)

    def integrate(self, image: np.ndarray, pose: Sequence[int], t: int) -> Observed:
        """Write the visible cells of a symbolic view ``uint8[7, 7, 3]`` seen from ``pose`` at
        timestep ``t``; returns them. Cells at negative coordinates (MiniGrid pads views past the
        border with walls) are skipped."""
        image = np.asarray(image)
        if image.shape != (VIEW, VIEW, 3):
            raise ConfigError(f"Occupancy: expected a symbolic view uint8[7, 7, 3] (obs_mode='symbolic'), got shape {image.shape}")
        types = image[..., 0].astype(np.int64)
        vx, vy = np.nonzero(types != _T["unseen"])
        x, y = view_to_world(pose, vx, vy)
        keep = (x >= 0) & (y >= 0)
        # MiniGrid shows the agent's own cell as empty floor, even when it stands in a doorway:
        # it says something only about a cell never seen before (which the agent stands on).
        own = (vx == VIEW // 2) & (vy == VIEW - 1)
        px, py = int(pose[0]), int(pose[1])
        if 0 <= px < self.shape[0] and 0 <= py < self.shape[1] and self.kind[px, py] != UNKNOWN:
            keep &= ~own
        vx, vy, x, y = vx[keep], vy[keep], x[keep], y[keep]
        seen = Observed(x, y, vx, vy, types[vx, vy], image[vx, vy, 1].astype(np.int64))
        if len(x):
            self.grow((int(x.max()) + 2, int(y.max()) + 2))
            self.kind[x, y] = _KIND_OF_TYPE[seen.types]
            self.code[x, y] = cell_code(seen.types, seen.colors)
            self.closed[x, y] = (seen.types == _T["door"]) & (image[vx, vy, 2] != 0)
            self.seen_at[x, y] = t
        return seen

    def known(self) -> np.ndarray:
        """``bool[W, H]``: cells seen at least once (the explored mask)."""
        return self.kind != UNKNOWN

    def passable(self) -> np.ndarray:
        """``bool[W, H]``: cells known to be floor or door (closed doors too: they open)."""
        return (self.kind == FREE) | (self.kind == DOOR)

    def frontier(self, unknown: np.ndarray | None = None) -> np.ndarray:
        """``bool[W, H]``: unknown cells next to a known passable cell (4-neighbourhood).

        ``unknown`` (``bool[W', H']``, optional) replaces this map's own unknown mask, e.g. a
        global coverage mask for a local map; cells outside it count as unknown.
        """
        free = self.passable()
        near = np.zeros_like(free)
        near[1:] |= free[:-1]
        near[:-1] |= free[1:]
        near[:, 1:] |= free[:, :-1]
        near[:, :-1] |= free[:, 1:]
        if unknown is None:
            unknown = ~self.known()
        else:
            unknown = grow_array(np.asarray(unknown, dtype=bool), self.shape, True)[: self.shape[0], : self.shape[1]]
        return near & unknown

    def patch(self, cell: Sequence[int], radius: int) -> np.ndarray:
        """``int16[2r+1, 2r+1]`` codes around ``cell`` (index ``[r + dx, r + dy]``), unknown outside."""
        r = int(radius)
        out = np.full((2 * r + 1, 2 * r + 1), UNKNOWN_CODE, dtype=np.int16)
        x0, y0 = int(cell[0]) - r, int(cell[1]) - r
        W, H = self.shape
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + 2 * r + 1, W), min(y0 + 2 * r + 1, H)
        if xa < xb and ya < yb:
            out[xa - x0 : xb - x0, ya - y0 : yb - y0] = self.code[xa:xb, ya:yb]
        return out

    def copy(self) -> "Occupancy":
        out = Occupancy(self.shape)
        out.kind, out.code, out.closed, out.seen_at = self.kind.copy(), self.code.copy(), self.closed.copy(), self.seen_at.copy()
        return out

    @classmethod
    def merged(cls, parts: Iterable["Occupancy"]) -> "Occupancy":
        """One map from several (e.g. the local maps of graph nodes): per cell the latest sighting."""
        parts = list(parts)
        shape = (max([p.shape[0] for p in parts] + [1]), max([p.shape[1] for p in parts] + [1]))
        out = cls(shape)
        for p in parts:
            W, H = p.shape
            newer = p.seen_at > out.seen_at[:W, :H]
            for name in ("kind", "code", "closed", "seen_at"):
                dst = getattr(out, name)[:W, :H]
                dst[newer] = getattr(p, name)[newer]
        return out

    def distances(self, start: Sequence[int]) -> np.ndarray:
        """``float64[W, H]``: fewest moves from cell ``start`` over known passable cells (doors
        count 1; ``inf`` where unreachable). ``start`` itself need not be passable."""
        W, H = self.shape
        dist = np.full((W, H), np.inf)
        x0, y0 = int(start[0]), int(start[1])
        if not (0 <= x0 < W and 0 <= y0 < H):
            return dist
        free = self.passable()
        dist[x0, y0] = 0
        queue = deque([(x0, y0)])
        while queue:
            x, y = queue.popleft()
            d = dist[x, y] + 1
            for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if 0 <= nx < W and 0 <= ny < H and free[nx, ny] and dist[nx, ny] > d:
                    dist[nx, ny] = d
                    queue.append((nx, ny))
        return dist


def room_door_colors(occ: Occupancy, cell: Sequence[int]) -> set[str]:
    """Colours of the known doors of the room around ``cell``.

    The room is the flood fill (4-neighbourhood) of *known* floor and object cells from ``cell``;
    walls, doors and unknown cells stop it. Its doors are the door cells touching it. With a
    partial map the region is a subset of the true room, so every colour returned is truly one
    of the room's doors (some may be missing until more is seen).
    """
    W, H = occ.shape
    x0, y0 = int(cell[0]), int(cell[1])
    if not (0 <= x0 < W and 0 <= y0 < H):
        return set()
    inside = (occ.kind == FREE) | (occ.kind == OBJECT)
    seen, colors = {(x0, y0)}, set()
    queue = deque([(x0, y0)])
    while queue:
        x, y = queue.popleft()
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if not (0 <= nx < W and 0 <= ny < H) or (nx, ny) in seen:
                continue
            if occ.kind[nx, ny] == DOOR:
                colors.add(IDX_TO_COLOR[int(occ.code[nx, ny]) % 8])
            elif inside[nx, ny]:
                seen.add((nx, ny))
                queue.append((nx, ny))
    return colors


# --------------------------------------------------------------------------- goal images


class TileClassifier:
    """Egocentric RGB view -> ``int16[7, 7]`` cell codes (indexed ``[vx, vy]`` like the symbolic view).

    The fixed "detector" of this grid world: every tile of the image is compared with MiniGrid's
    own render of each cell content GoatGrid can show (empty floor, wall, doors open / closed,
    balls / boxes / keys, every colour), *highlighted* as the renderer draws visible cells; a
    tile within ``tolerance`` (mean absolute pixel difference) of a prototype gets its code,
    any other tile (cells outside the field of view, drawn dark) :data:`UNKNOWN_CODE`. The
    viewer's own cell ``[3, 6]`` (the agent triangle) is floor by construction. So a goal image
    becomes exactly the symbolic view the agent would get from the goal's viewpoint.
    """

    def __init__(self, tile_size: int, tolerance: float = 4.0):
        if tile_size < 1:
            raise ConfigError(f"TileClassifier: tile_size must be >= 1, got {tile_size}")
        self.tile_size = int(tile_size)
        self.tolerance = float(tolerance)
        objects: list = [None, Wall()]
        objects += [Door(c, is_open=o) for c in COLOR_NAMES for o in (True, False)]
        objects += [cls(c) for cls in (Ball, Box, Key) for c in COLOR_NAMES]
        self._protos = np.stack(
            [Grid.render_tile(o, highlight=True, tile_size=self.tile_size).astype(np.float32) for o in objects]
        )  # [P, t, t, 3]
        self._codes = np.array(
            [EMPTY_CODE if o is None else cell_code(_T[o.type], COLOR_TO_IDX[o.color]) for o in objects], dtype=np.int16
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        t = self.tile_size
        image = np.asarray(image)
        if image.shape != (VIEW * t, VIEW * t, 3):
            raise ConfigError(f"TileClassifier: expected an image of shape {(VIEW * t, VIEW * t, 3)}, got {image.shape}")
        # image rows are view rows (vy), columns are view columns (vx)
        tiles = image.reshape(VIEW, t, VIEW, t, 3).transpose(2, 0, 1, 3, 4).astype(np.float32)  # [vx, vy, t, t, 3]
        dist = np.abs(tiles[:, :, None] - self._protos[None, None]).mean(axis=(3, 4, 5))  # [7, 7, P]
        best = dist.argmin(axis=-1)
        codes = np.where(dist.min(axis=-1) <= self.tolerance, self._codes[best], UNKNOWN_CODE).astype(np.int16)
        codes[VIEW // 2, VIEW - 1] = EMPTY_CODE
        return codes


def _offsets(d: int, target: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """World offsets ``(dx, dy)`` (``int64[7, 7]`` each, indexed ``[vx, vy]``) from the view's
    ``target`` cell to every view cell, for a viewer facing direction ``d``."""
    vx, vy = np.meshgrid(np.arange(VIEW), np.arange(VIEW), indexing="ij")
    fx, fy = _DIRS[d]
    rx, ry = -fy, fx
    ahead, side = target[1] - vy, vx - target[0]
    return ahead * fx + side * rx, ahead * fy + side * ry


_OFFSETS = {(d, t): _offsets(d, t) for d in range(4) for t in GOAL_WINDOW}


def register(goal_codes: np.ndarray, evidence: np.ndarray, target_code: int) -> tuple[float, int]:
    """How well a goal view fits an instance's surroundings: ``(agreement, overlap)``.

    Args:
        goal_codes: ``int16[7, 7]`` codes of the goal view (:class:`TileClassifier`).
        evidence: ``int16[2r+1, 2r+1]`` codes around the instance, world orientation, the
            instance at the centre (:data:`UNKNOWN_CODE` where unknown).
        target_code: the instance's code; only goal-window cells holding it are hypotheses.

    Every hypothesis (viewer heading, which window cell is the instance) maps the goal view
    onto the evidence; ``agreement`` is the fraction of cells known in both whose codes are
    equal and ``overlap`` how many were compared. Returns the best hypothesis by
    (agreement, overlap), or ``(0.0, 0)`` if the goal window never shows ``target_code``.
    """
    r = evidence.shape[0] // 2
    goal_known = goal_codes != UNKNOWN_CODE
    best = (0.0, 0)
    for tcell in GOAL_WINDOW:
        if goal_codes[tcell] != target_code:
            continue
        for d in range(4):
            dx, dy = _OFFSETS[(d, tcell)]
            inside = (np.abs(dx) <= r) & (np.abs(dy) <= r)
            vals = np.full(goal_codes.shape, UNKNOWN_CODE, dtype=np.int16)
            vals[inside] = evidence[r + dx[inside], r + dy[inside]]
            both = goal_known & (vals != UNKNOWN_CODE)
            n = int(both.sum())
            if n:
                score = (float((goal_codes[both] == vals[both]).sum()) / n, n)
                best = max(best, score)
    return best


# --------------------------------------------------------------------------- records


@dataclass
class InstanceView:
    """One sighting of an instance worth keeping (a new heading or view cell)."""

    timestep: int
    pose: tuple[int, int, int]
    view_cell: tuple[int, int]
    """Where the instance was in the view ``[vx, vy]``."""
    codes: np.ndarray
    """``int16[7, 7]`` codes of the whole symbolic view."""
    crop: np.ndarray | None
    """``uint8[t, t, 3]``: the instance's tile of the egocentric RGB render (None if no render)."""


@dataclass
class InstanceRecord:
    """An object instance as the map knows it (``key`` is the map's own id, in order of discovery)."""

    key: int
    category: str
    color: str
    cell: tuple[int, int]
    first_seen: int
    last_seen: int
    views: list[InstanceView] = field(default_factory=list)
    evidence: np.ndarray | None = None
    """``int16[2r+1, 2r+1]`` codes around the instance fused over all its views (world orientation)."""

    @property
    def code(self) -> int:
        return int(cell_code(_CATEGORY_TYPES[self.category], COLOR_TO_IDX[self.color]))


@dataclass(frozen=True)
class Candidate:
    """A record that may satisfy a goal, with its matching score (higher is better)."""

    record: InstanceRecord
    score: float
    overlap: int = 0
    """Image goals: cells compared by :func:`register`."""
    distance: float = float("inf")
    """Fewest moves from the query pose to a cell beside the instance over known cells."""


class SemanticMap:
    """GOAT's instance-aware semantic map (see the module docstring).

    Args:
        language_threshold: fraction of a description's parts (category, colour, room) that
            must be confirmed by observation for a language match, in (0, 1].
        image_threshold: minimum agreement (:func:`register`) of an image match, in (0, 1].
        image_min_overlap: minimum number of cells compared for an image match (>= 1).
        max_views: views kept per instance (>= 1); later sightings still update the evidence.
        evidence_radius: half side of each instance's evidence patch in cells (>= 5 covers a
            goal view whose target is 3 cells ahead).
    """

    def __init__(
        self,
        language_threshold: float = 1.0,
        image_threshold: float = 0.9,
        image_min_overlap: int = 8,
        max_views: int = 8,
        evidence_radius: int = 6,
    ):
        for name, v in (("language_threshold", language_threshold), ("image_threshold", image_threshold)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"SemanticMap: {name} must be in (0, 1], got {v!r}")
        for name, v, low in (("image_min_overlap", image_min_overlap, 1), ("max_views", max_views, 1),
                             ("evidence_radius", evidence_radius, 5)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"SemanticMap: {name} must be an integer >= {low}, got {v!r}")
        self.language_threshold = float(language_threshold)
        self.image_threshold = float(image_threshold)
        self.image_min_overlap = int(image_min_overlap)
        self.max_views = int(max_views)
        self.evidence_radius = int(evidence_radius)
        self._classifiers: dict[int, TileClassifier] = {}
        self._goal_cache: tuple[bytes, np.ndarray] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new house)."""
        self.occupancy = Occupancy()
        self.records: dict[tuple[int, int], InstanceRecord] = {}
        self.timestep = -1
        self._next_key = 0

    # ------------------------------------------------------------------ update
    def update(
        self,
        image: np.ndarray,
        pose: Sequence[int],
        timestep: int,
        rgb_fn: Callable[[], np.ndarray] | None = None,
    ) -> list[InstanceRecord]:
        """Integrate one step's symbolic view ``uint8[7, 7, 3]`` seen from ``pose = (x, y, dir)``.

        ``rgb_fn`` (optional) returns the egocentric RGB render ``uint8[7t, 7t, 3]``; it is called
        only when an instance view is stored (for its crop). Returns the records seen now.
        """
        seen = self.occupancy.integrate(image, pose, timestep)
        self.timestep = int(timestep)
        is_object = np.isin(seen.types, list(CATEGORY_OF_TYPE))
        # A cell seen without its recorded object: the object is gone (never in GoatGrid, where
        # objects stay put, but a map must not keep what it sees is false).
        visible = set(zip(seen.x[~is_object].tolist(), seen.y[~is_object].tolist()))
        for cell in [c for c in self.records if c in visible]:
            del self.records[cell]
        now, rgb = [], None
        pose = tuple(int(v) for v in pose)
        for i in np.flatnonzero(is_object):
            cell = (int(seen.x[i]), int(seen.y[i]))
            category, color = CATEGORY_OF_TYPE[int(seen.types[i])], IDX_TO_COLOR[int(seen.colors[i])]
            rec = self.records.get(cell)
            if rec is None or rec.category != category or rec.color != color:
                rec = InstanceRecord(self._next_key, category, color, cell, self.timestep, self.timestep)
                rec.evidence = np.full((2 * self.evidence_radius + 1,) * 2, UNKNOWN_CODE, dtype=np.int16)
                self._next_key += 1
                self.records[cell] = rec
            rec.last_seen = self.timestep
            self._add_evidence(rec, seen)
            view_cell = (int(seen.vx[i]), int(seen.vy[i]))
            if len(rec.views) < self.max_views and all((v.pose[2], v.view_cell) != (pose[2], view_cell) for v in rec.views):
                if rgb is None and rgb_fn is not None:
                    rgb = np.asarray(rgb_fn())
                codes = np.full((VIEW, VIEW), UNKNOWN_CODE, dtype=np.int16)
                codes[seen.vx, seen.vy] = cell_code(seen.types, seen.colors)
                crop = None
                if rgb is not None:
                    t = rgb.shape[0] // VIEW
                    crop = rgb[view_cell[1] * t : (view_cell[1] + 1) * t, view_cell[0] * t : (view_cell[0] + 1) * t].copy()
                rec.views.append(InstanceView(self.timestep, pose, view_cell, codes, crop))
            now.append(rec)
        return now

    def _add_evidence(self, rec: InstanceRecord, seen: Observed) -> None:
        r = self.evidence_radius
        dx, dy = seen.x - rec.cell[0], seen.y - rec.cell[1]
        near = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        rec.evidence[r + dx[near], r + dy[near]] = cell_code(seen.types[near], seen.colors[near])

    # ------------------------------------------------------------------ queries
    def instances(self, category: str | None = None) -> list[InstanceRecord]:
        """Known records (of ``category``), in order of discovery."""
        recs = [r for r in self.records.values() if category is None or r.category == category]
        return sorted(recs, key=lambda r: r.key)

    def explored(self) -> np.ndarray:
        """``bool[W, H]``: cells seen at least once."""
        return self.occupancy.known()

    def goal_codes(self, image: np.ndarray) -> np.ndarray:
        """``int16[7, 7]`` codes of a goal image (cached for the last image)."""
        image = np.asarray(image)
        key = image.tobytes()
        if self._goal_cache is None or self._goal_cache[0] != key:
            t = image.shape[0] // VIEW
            if t not in self._classifiers:
                self._classifiers[t] = TileClassifier(t)
            self._goal_cache = (key, self._classifiers[t](image))
        return self._goal_cache[1]

    def candidates(self, goal: GoalSpec, pose: Sequence[int] | None = None) -> list[Candidate]:
        """Every record of the goal's category with its score, best first (ties: nearest first).

        No threshold is applied (see :meth:`match`). ``pose`` orders equal scores by distance.
        """
        if goal.category not in CATEGORIES:
            raise ConfigError(f"SemanticMap: unknown goal category {goal.category!r}; valid: {list(CATEGORIES)}")
        records = self.instances(goal.category)  # the category prefilter, for every modality
        dist = self.occupancy.distances(pose[:2]) if pose is not None and records else None
        out = []
        if goal.modality == "category":
            out = [Candidate(r, 1.0) for r in records]
        elif goal.modality == "language":
            color, category, door = parse_description(goal.text)
            if category != goal.category:
                raise ConfigError(f"SemanticMap: goal text {goal.text!r} does not name category {goal.category!r}")
            for r in records:
                if color is not None and r.color != color:
                    continue  # colour is seen directly: a mismatch rules the record out
                parts = 1 + (color is not None) + (door is not None)
                confirmed = 1 + (color is not None) + (door is not None and door in room_door_colors(self.occupancy, r.cell))
                out.append(Candidate(r, confirmed / parts))
        elif goal.modality == "image":
            if goal.image is None:
                raise ConfigError("SemanticMap: an image goal without an image")
            codes = self.goal_codes(goal.image)
            for r in records:
                score, overlap = register(codes, r.evidence, r.code)
                if overlap:
                    out.append(Candidate(r, score, overlap))
        else:
            raise ConfigError(f"SemanticMap: unknown goal modality {goal.modality!r}; valid: category, language, image")
        if dist is not None:
            out = [Candidate(c.record, c.score, c.overlap, _beside(dist, c.record.cell)) for c in out]
        return sorted(out, key=lambda c: (-c.score, -c.overlap, c.distance, c.record.key))

    def match(self, goal: GoalSpec, pose: Sequence[int] | None = None) -> list[Candidate] | None:
        """The candidates that pass the goal modality's threshold, best first; None if none does."""
        out = [c for c in self.candidates(goal, pose) if self.accepts(goal.modality, c)]
        return out or None

    def accepts(self, modality: str, c: Candidate) -> bool:
        """Whether candidate ``c`` passes the threshold of ``modality``."""
        if modality == "language":
            return c.score >= self.language_threshold - 1e-9
        if modality == "image":
            return c.score >= self.image_threshold - 1e-9 and c.overlap >= self.image_min_overlap
        return True


def _beside(dist: np.ndarray, cell: tuple[int, int]) -> float:
    """Fewest moves to a cell beside ``cell`` (from a :meth:`Occupancy.distances` array)."""
    W, H = dist.shape
    x, y = cell
    near = [dist[nx, ny] for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)) if 0 <= nx < W and 0 <= ny < H]
    return float(min(near)) if near else float("inf")

