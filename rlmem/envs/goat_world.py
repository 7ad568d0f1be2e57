"""GoatWorld: GOAT-style lifelong multimodal object navigation in a 3D MiniWorld house.

The first-person 3D backend of :mod:`rlmem.envs.goat_grid` (read its docstring first: the
task, the goal modalities, the observation keys, the info keys and the agent interfaces are
the same). After Chang et al., "GOAT: GO to Any Thing" (2023) and Khanna et al.,
"GOAT-Bench" (CVPR 2024): one episode is 5-10 subgoals in the same house with no reset
between them; a subgoal names an object by category, by a language description or by an
image; the agent must ``stop`` near and facing it within a per-subgoal budget.

The 3D engine is the real ``miniworld`` package (``pip install rlmem[nav3d]``): its
:class:`~miniworld.miniworld.MiniWorldEnv` rooms and portals (``add_rect_room``,
``connect_rooms``), its entities (:class:`~miniworld.entity.Box`, ``Ball``, ``Key``), its
collision test (``move_agent``) and its OpenGL renderer (``render_obs`` for the first-person
view and the goal images, ``render_top_view`` for :meth:`GoatWorld.render`). It runs
headless through EGL: ``pyglet.options["headless"] = True`` is set before ``miniworld`` is
imported, and both are imported only when the first GoatWorld is built, so importing
:mod:`rlmem.envs` never imports pyglet.

Description
-----------
A house of ``cols x rows`` square rooms (side ``room_size`` metres, walls ``wall_thickness``
thick between them) joined by doorways: a random spanning tree of doorways between adjacent
rooms, plus each other adjacent pair with probability ``extra_door_prob``. Every doorway has a
coloured frame (MiniGrid's six colours, without repetition while they last) and is always
open: MiniWorld's portals have no door leaves, so ``toggle`` does nothing here (it is kept so
the action space equals GoatGrid's). ``n_objects``
instances of ``ball``, ``box``, ``key`` (MiniWorld's entities; counts balanced) with colours
drawn uniformly from ``colors`` stand on the floor, away from the doorways and apart from
each other; several may share category *and* colour. A house is redrawn until every room
and a success region of every object are reachable (on the navigation grid, below).

Subgoals are drawn exactly as in GoatGrid (``"category"`` -- ``"a box"``, any instance
counts; ``"language"`` -- a unique description ``"the purple box"``, ``"the box in the room
with the yellow door"`` or both; ``"image"`` -- a first-person view of the target), with the
same vocabulary and tokenizer (imported from :mod:`rlmem.envs.goat_grid`). The goal image is
rendered by ``render_obs`` with the agent placed for one frame on a viewpoint of the target's
room 0.8-2.2 m from the object, facing its centre, with no wall or other object in between
(the agent's pose is restored afterwards; nothing else changes).

Action Space
------------
``Discrete(5)``: 0 turn left and 1 turn right by ``turn_degrees`` (30), 2 move forward
``forward_step`` metres (0.25; blocked by walls and objects: MiniWorld's collision test),
3 toggle (no effect: doorways are always open), 4 ``stop``. The step sizes are exact (no
MiniWorld domain randomisation), as in habitat's ObjectNav (30 degrees, 0.25 m).

Observation Space
-----------------
``Dict`` with GoatGrid's keys:

- ``image``: ``uint8[obs_height, obs_width, 3]`` (60 x 80) first-person RGB (MiniWorld's
  ``render_obs``; 60 degree vertical field of view; the camera is 0.9 m high and pitched 15
  degrees down, habitat-like, so that an object within the success distance is in view --
  MiniWorld's default level camera at 1.5 m sees the floor only from 2.6 m on).
- ``direction``: ``Discrete(360 / turn_degrees)``: the heading index ``h``; the agent faces
  yaw ``h * turn_degrees`` (counter-clockwise seen from above, 0 along +x: MiniWorld's
  ``dir``). Headings are always exact multiples of the turn, so this is a compass.
- ``goal_modality``, ``goal_category``, ``goal_text``, ``subgoal_index``: as in GoatGrid.
- ``goal_image``: ``uint8[obs_height, obs_width, 3]``, the shape of ``image``: the goal view of
  an image goal, zeros otherwise.

After a step that ends a subgoal, the observation already shows the next subgoal.

Rewards
-------
``success_reward`` (+1) for a successful ``stop``; ``-wrong_stop_penalty`` (default 0) for a
failed one; ``-step_penalty`` (0.01) on every step.
Optional shaping (``shaping > 0``, default off), potential-based as in :mod:`rlmem.envs.goat_grid`
with ``d`` the geodesic distance in metres to the current subgoal's success region (0 after the
last subgoal): every step adds ``shaping * (d_before - d_after)``, a step that ends a subgoal
measuring ``d_after`` to the next one, so an episode's shaping sums to ``shaping * d`` of its
start whatever the agent does.

Success and SPL
---------------
``stop`` succeeds iff some instance that satisfies the goal is

- near: the distance from the agent's centre to the object's bounding circle (centre distance
  minus the object's radius) is at most ``success_distance`` (1.0 m);
- faced: the angle between the agent's heading and the direction to the object's centre is at
  most ``success_angle`` degrees (30; at least half a turn, so it can always be met);
- in sight: the segment from the agent to the object's centre crosses no wall (doorways are
  open; other objects are not tested).

A wrong ``stop`` or an exhausted ``subgoal_budget`` (actions) ends the subgoal as a failure; the
next subgoal starts from where the agent stands.

``SPL = success * shortest / max(shortest, taken)`` in metres (:func:`path_spl`), as habitat
measures it: ``taken`` is the distance the agent moved during the subgoal (successful forward
moves times ``forward_step``; turns are free) and ``shortest`` the geodesic distance from the
subgoal's start position to the nearest point where a ``stop`` can succeed (0 if it starts
there). Geodesics are computed on a **navigation grid** (:class:`NavGrid`):

- square cells of ``nav_cell`` metres (0.15) over the house; a cell is free when the agent's
  disc at its centre stays :data:`NAV_CLEARANCE` (0.1 m) away from every wall and object
  (MiniWorld's collision rule plus a margin, so every passage the grid uses is wide enough to
  thread with 30-degree turns and 0.25 m steps; narrower gaps count as closed);
- moves to the 16 neighbours (4 straight, 4 diagonal, 8 knight moves, at their Euclidean
  lengths) when the cells the move sweeps are free; success cells are the free cells near and in
  sight of a goal instance (facing is free: turning costs no distance);
- a continuous position reads the grid through its nearby free cells (field value plus the
  straight distance to the cell centre).

The grid metric overestimates straight lines by at most ~3% (16 neighbours) and corners by a
few percent more; SPL is capped at 1. An agent that steps ``forward_step`` at a time cannot
match a ``shortest`` that is not a multiple of the step (as in habitat), so even an optimal
agent's SPL can fall below 1 on very short subgoals. When ``shortest`` is 0, SPL is
``success`` if the agent did not move and 0 otherwise.

Starting State
--------------
A fresh house, instance set and subgoal plan at every reset; the agent starts on a random
reachable cell centre with a random heading index.

Episode End
-----------
Terminates when the last subgoal ends; never truncates (the per-subgoal budget is a rule of
the task). At most ``max_subgoals * subgoal_budget`` steps.

Info
----
GoatGrid's keys with the same meanings: ``subgoal_index``, ``modality``, ``goal_text`` on every
step; ``subgoal_success``, ``spl``, ``shortest``, ``taken`` when a subgoal ends (``shortest`` and
``taken`` are **metres**, floats); and on the last step ``success``, ``subgoal_success_rate``,
``spl_mean``, ``n_subgoals``, ``subgoal_successes``, ``subgoal_spls``, ``subgoal_modalities``
(:func:`rlmem.envs.goat_grid.aggregate_by_modality` reads them).

What memories and agents may read
---------------------------------
- :attr:`GoatWorld.agent_pose` ``(x, z, heading index)``, :attr:`GoatWorld.yaw` (radians),
  :meth:`GoatWorld.egocentric_rgb` (the current view), :meth:`GoatWorld.goal_spec` (a
  :class:`~rlmem.envs.goat_grid.GoalSpec`, never the target instance). There is no
  ``view_to_world``: a 3D view has no cell-to-cell mapping without depth.
- Privileged, for tests and oracle agents only: :attr:`GoatWorld.oracle`
  (:class:`GoatWorldOracle`: instances with positions, the goal ids, the navigation grid and
  geodesics, the success test) and :class:`OracleAgent`.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import io
import math
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from minigrid.core.constants import COLOR_NAMES

from rlmem.envs._vec import is_int
from rlmem.envs.goat_grid import (
    LifelongGoals,
    ACTION_NAMES,
    CATEGORIES,
    FORWARD,
    LEFT,
    MAX_TOKENS,
    MODALITIES,
    RIGHT,
    STOP,
    VOCAB,
    SubgoalOracle,
    check_house_fields,
    later_targets,
    tokenize,
)
from rlmem.errors import ConfigError, RunError

__all__ = [
    "AGENT_RADIUS",
    "NAV_CLEARANCE",
    "GoatWorld",
    "GoatWorldConfig",
    "GoatWorldOracle",
    "NavGrid",
    "OracleAgent",
    "WorldDoor",
    "WorldInstance",
    "describe",
    "path_spl",
]

AGENT_RADIUS = 0.4
"""Radius in metres of MiniWorld's agent (its collision disc)."""
NAV_CLEARANCE = 0.1
"""Margin in metres between the agent's disc and walls / objects on the navigation grid: every
passage a geodesic uses is then at least 0.2 m wider than the agent, wide enough to thread with
30-degree turns and 0.25 m steps (a narrower gap counts as closed: ``shortest`` may overestimate)."""
CAMERA_HEIGHT = 0.9
"""Camera height in metres (habitat's ObjectNav agent: 0.88; MiniWorld's default: 1.5)."""
CAMERA_PITCH = -15.0
"""Camera pitch in degrees (looking down; MiniWorld's default: 0)."""
INSTALL_HINT = "GoatWorld needs MiniWorld: pip install rlmem[nav3d]"
_MAX_GENERATION_ATTEMPTS = 50
_PLACEMENT_TRIES = 60  # random positions tried per object / goal viewpoint
_VIEW_DISTANCE = (0.8, 2.2)  # metres from the object's bounding circle to a goal viewpoint
_DOOR_HEIGHT = 2.2
_FRAME = 0.08  # door-frame post width / protrusion (metres)
_HIGHLIGHT = np.array([0, 255, 255], dtype=np.uint8)  # outline of goal instances in render()
_RGB = {  # MiniWorld's colour table (miniworld.entity.COLORS), for door frames
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "purple": (0.44, 0.15, 0.76),
    "yellow": (1.0, 1.0, 0.0),
    "grey": (0.39, 0.39, 0.39),
}

METADATA = {"render_modes": ["rgb_array"], "render_fps": 10, "memory_types": ("spatial", "object")}


# --------------------------------------------------------------------------- config


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class GoatWorldConfig:
    """Validated parameters of a GoatWorld house and episode (see the module docstring)."""

    layout: tuple[int, int] = (3, 2)
    """Rooms as ``(cols, rows)``; at least one room."""
    room_size: float = 4.0
    """Side of every (square) room in metres, >= 3."""
    wall_thickness: float = 0.2
    """Gap between adjacent rooms in metres (a doorway is a short passage through it), 0.05-1."""
    door_width: float = 1.2
    """Doorway width in metres: more than the agent's diameter (0.8) plus 0.2."""
    n_objects: int = 12
    """Object instances in the house, 1 .. :attr:`max_objects`."""
    categories: tuple[str, ...] = CATEGORIES
    """Categories to draw from (subset of GoatGrid's ``CATEGORIES``); counts are balanced."""
    colors: tuple[str, ...] = tuple(COLOR_NAMES)
    """Object colours (MiniGrid's = MiniWorld's six colour names); door frames use all six."""
    min_subgoals: int = 5
    """Fewest subgoals per episode (>= 1)."""
    max_subgoals: int = 10
    """Most subgoals per episode (>= min_subgoals); also the size of ``obs["subgoal_index"]``."""
    subgoal_budget: int = 250
    """Actions per subgoal before it fails (>= 1)."""
    modalities: tuple[str, ...] = MODALITIES
    """Allowed goal modalities (non-empty subset of ``MODALITIES``)."""
    obs_width: int = 80
    """Width in pixels of ``image`` and ``goal_image`` (>= 8)."""
    obs_height: int = 60
    """Height in pixels of ``image`` and ``goal_image`` (>= 8)."""
    turn_degrees: int = 30
    """Turn per left/right action; an integer that divides 360, below 180."""
    forward_step: float = 0.25
    """Metres per forward action, in (0, 0.5] (longer steps could cross a wall: MiniWorld tests
    collisions at the end point only)."""
    success_distance: float = 1.0
    """Metres from the agent's centre to a goal object's bounding circle for a successful stop;
    more than the agent's radius (0.4)."""
    success_angle: float = 30.0
    """Degrees between heading and object for a successful stop, in [turn_degrees / 2, 180]."""
    extra_door_prob: float = 0.5
    """Probability of a doorway between adjacent rooms not joined by the spanning tree."""
    nav_cell: float = 0.15
    """Cell side of the navigation grid in metres (SPL, shaping, oracle), in [0.02, 0.25]."""
    success_reward: float = 1.0
    """Reward of a successful ``stop``."""
    step_penalty: float = 0.01
    """Subtracted from the reward of every step."""
    wrong_stop_penalty: float = 0.0
    """Subtracted from the reward of a ``stop`` that fails (0 = GOAT-Bench's rule; a training aid:
    without it a learning agent quits every subgoal early, since a wrong stop costs nothing)."""
    shaping: float = 0.0
    """Coefficient of the potential-based geodesic shaping (per metre; 0 = off; see Rewards)."""
    new_room_goals: bool = False
    """Every subgoal after the first has no goal instance in the previous target's room
    (as GoatGrid's option: a later subgoal never starts beside its goal)."""

    def __post_init__(self) -> None:
        who = "GoatWorld"
        check_house_fields(self, who)
        for name in ("obs_width", "obs_height"):
            value = getattr(self, name)
            if not is_int(value) or value < 8:
                raise ConfigError(f"{who}: {name} must be an integer >= 8, got {value!r}")
            object.__setattr__(self, name, int(value))
        t = self.turn_degrees
        if not is_int(t) or not 0 < t < 180 or 360 % t:
            raise ConfigError(f"{who}: turn_degrees must be an integer below 180 that divides 360, got {t!r}")
        object.__setattr__(self, "turn_degrees", int(t))
        ranges = {  # name: (low, high, low inclusive)
            "room_size": (3.0, 100.0, True),
            "wall_thickness": (0.05, 1.0, True),
            "forward_step": (0.0, 0.5, False),
            "success_distance": (AGENT_RADIUS, 10.0, False),
            "success_angle": (self.turn_degrees / 2, 180.0, True),
            "extra_door_prob": (0.0, 1.0, True),
            "nav_cell": (0.02, 0.25, True),
        }
        for name, (low, high, inclusive) in ranges.items():
            v = getattr(self, name)
            ok = _number(v) and np.isfinite(v) and (v >= low if inclusive else v > low) and v <= high
            if not ok:
                bracket = "[" if inclusive else "("
                raise ConfigError(f"{who}: {name} must be a number in {bracket}{low:g}, {high:g}], got {v!r}")
            object.__setattr__(self, name, float(v))
        if not _number(self.door_width) or not 2 * AGENT_RADIUS + 0.2 <= self.door_width <= self.room_size - 1.0:
            raise ConfigError(
                f"{who}: door_width must be in [{2 * AGENT_RADIUS + 0.2:g}, room_size - 1 = "
                f"{self.room_size - 1.0:g}] metres, got {self.door_width!r}"
            )
        object.__setattr__(self, "door_width", float(self.door_width))
        if self.n_objects > self.max_objects:
            raise ConfigError(
                f"{who}: {self.n_objects} objects do not fit in {self.n_rooms} room(s) of "
                f"{self.room_size:g} m: at most {self.max_objects} (one per 3 square metres, so the "
                "house stays navigable)"
            )

    @property
    def n_rooms(self) -> int:
        return self.layout[0] * self.layout[1]

    @property
    def max_objects(self) -> int:
        return self.n_rooms * int(self.room_size**2 // 3)

    @property
    def n_headings(self) -> int:
        return 360 // self.turn_degrees

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.obs_height, self.obs_width, 3)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class WorldInstance:
    """One object in the house. ``id`` is privileged (only :class:`GoatWorldOracle` hands it out)."""

    id: int
    category: str
    color: str
    pos: tuple[float, float]
    """Centre ``(x, z)`` on the floor, metres."""
    radius: float
    """Radius of MiniWorld's bounding circle of the entity, metres."""
    room: int
    """Room index ``row * cols + col``."""


@dataclass(frozen=True)
class WorldDoor:
    """A doorway between two rooms."""

    pos: tuple[float, float]
    """Centre ``(x, z)`` of the doorway, in the middle of the wall."""
    color: str
    rooms: tuple[int, int]


@dataclass
class _Subgoal:
    modality: str
    target: int
    goal_ids: tuple[int, ...]
    text: str
    viewpoint: tuple[float, float, float] | None  # image goals: (x, z, yaw) of the goal view


# --------------------------------------------------------------------------- pure helpers


def path_spl(success: bool, shortest: float, taken: float) -> float:
    """Success weighted by path length in metres: ``success * shortest / max(shortest, taken)``.

    ``shortest`` (the geodesic to the success region) and ``taken`` (the distance moved) are
    >= 0. With ``shortest == 0`` the agent started where it could stop: SPL is ``success`` if it
    did not move (``taken == 0``) and 0 otherwise.
    """
    if not (_number(shortest) and _number(taken)) or not (np.isfinite(shortest) and np.isfinite(taken)):
        raise ConfigError(f"path_spl: shortest and taken must be finite numbers, got {shortest!r}, {taken!r}")
    if shortest < 0 or taken < 0:
        raise ConfigError(f"path_spl: need shortest >= 0 and taken >= 0, got shortest={shortest}, taken={taken}")
    if not success:
        return 0.0
    if shortest == 0:
        return 1.0 if taken == 0 else 0.0
    return float(shortest / max(shortest, taken))


def describe(inst: WorldInstance, instances: Sequence[WorldInstance], room_doors: dict[int, set[str]]) -> list[str]:
    """Every description of GoatGrid's three forms that matches ``inst`` and no other instance.

    ``room_doors`` maps a room index to the colours of its doorways; "the room with the yellow
    door" means *a* room with a yellow doorway among its doorways.
    """
    out = []
    same = [o for o in instances if o.category == inst.category and o.color == inst.color]
    if len(same) == 1:
        out.append(f"the {inst.color} {inst.category}")
    for dc in sorted(room_doors.get(inst.room, ())):
        rooms = {r for r, colours in room_doors.items() if dc in colours}
        if [o.id for o in same if o.room in rooms] == [inst.id]:
            out.append(f"the {inst.color} {inst.category} in the room with the {dc} door")
        if [o.id for o in instances if o.category == inst.category and o.room in rooms] == [inst.id]:
            out.append(f"the {inst.category} in the room with the {dc} door")
    return out


def _point_segment_distance(p: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """``float[N, M]`` distances from points ``p [N, 2]`` to segments ``segs [M, 2, 2]``
    (the closest point clamped to the segment, as MiniWorld's ``intersect_circle_segs``)."""
    a, b = segs[:, 0], segs[:, 1]
    ab = b - a
    ap = p[:, None, :] - a[None]
    t = np.clip((ap * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12)[None], 0.0, 1.0)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(p[:, None, :] - closest, axis=-1)


def _segments_cross(p: np.ndarray, q: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """``bool[N]``: whether segment ``p[i] -> q[i]`` (``[N, 2]`` or ``[2]``) properly crosses
    or touches any of ``segs [M, 2, 2]``."""
    p = np.atleast_2d(p)[:, None, :]
    q = np.atleast_2d(q)[:, None, :]
    if len(segs) == 0:
        return np.zeros(max(len(p), len(q)), dtype=bool)
    a, b = segs[None, :, 0], segs[None, :, 1]

    def orient(u, v, w):
        return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0])

    d1, d2 = orient(a, b, p), orient(a, b, q)
    d3, d4 = orient(p, q, a), orient(p, q, b)
    return ((d1 * d2 <= 0) & (d3 * d4 <= 0)).any(axis=1)


def _in_sight(points: np.ndarray, target: tuple[float, float], walls: np.ndarray) -> np.ndarray:
    """``bool[N]``: the segment from each point ``[N, 2]`` to ``target`` crosses no wall."""
    tgt = np.broadcast_to(np.asarray(target, dtype=np.float64), points.shape)
    return ~_segments_cross(points, tgt, walls)


# The 16 moves of the navigation grid: (di, dj, cells the straight segment sweeps).
def _moves() -> list[tuple[int, int, tuple[tuple[int, int], ...]]]:
    out = []
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        out.append((di, dj, ()))
    for si in (1, -1):
        for sj in (1, -1):
            out.append((si, sj, ((si, 0), (0, sj))))
            out.append((2 * si, sj, ((si, 0), (si, sj))))
            out.append((si, 2 * sj, ((0, sj), (si, sj))))
    return out


_MOVES = _moves()


def _shift(a: np.ndarray, di: int, dj: int, fill: Any) -> np.ndarray:
    """``out[i, j] = a[i + di, j + dj]`` (``fill`` outside)."""
    out = np.full_like(a, fill)
    W, H = a.shape
    src_i, dst_i = (slice(di, W), slice(0, W - di)) if di >= 0 else (slice(0, W + di), slice(-di, W))
    src_j, dst_j = (slice(dj, H), slice(0, H - dj)) if dj >= 0 else (slice(0, H + dj), slice(-dj, H))
    out[dst_i, dst_j] = a[src_i, src_j]
    return out


class NavGrid:
    """Discretised free space of the agent's centre, for geodesic distances (SPL, shaping, oracle).

    Cells are squares of side ``cell`` covering ``bounds = (min_x, max_x, min_z, max_z)``, indexed
    ``[i, j]`` with centre ``(min_x + (i + 0.5) cell, min_z + (j + 0.5) cell)``. A cell is free when
    its centre lies inside one of ``rooms`` (``float[R, 4]`` rectangles ``min_x, max_x, min_z,
    max_z``) and a disc of ``agent_radius`` there stays ``clearance`` away from every wall segment
    (``walls float[M, 2, 2]``, ``(x, z)`` end points) and every obstacle disc (``obstacles
    float[K, 3]``: ``x, z, radius``) -- MiniWorld's collision rule (``clearance = 0``) plus a
    margin. Moves go to the 16
    neighbours (lengths ``cell``, ``cell * sqrt(2)``, ``cell * sqrt(5)``) when the cells the straight
    segment sweeps are free.
    """

    def __init__(
        self,
        bounds: tuple[float, float, float, float],
        cell: float,
        agent_radius: float,
        walls: np.ndarray,
        rooms: np.ndarray,
        obstacles: np.ndarray | None = None,
        clearance: float = 0.0,
    ):
        min_x, max_x, min_z, max_z = (float(v) for v in bounds)
        if not (cell > 0 and max_x > min_x and max_z > min_z):
            raise ConfigError(f"NavGrid: need cell > 0 and non-empty bounds, got cell={cell}, bounds={bounds}")
        self.cell, self.origin = float(cell), (min_x, min_z)
        W, H = int(math.ceil((max_x - min_x) / cell)), int(math.ceil((max_z - min_z) / cell))
        self.shape = (W, H)
        xs = min_x + (np.arange(W) + 0.5) * cell
        zs = min_z + (np.arange(H) + 0.5) * cell
        centres = np.stack(np.meshgrid(xs, zs, indexing="ij"), axis=-1)  # [W, H, 2]
        self.centres = centres
        pts = centres.reshape(-1, 2)
        walls = np.asarray(walls, dtype=np.float64).reshape(-1, 2, 2)
        rooms = np.asarray(rooms, dtype=np.float64).reshape(-1, 4)
        inside = np.zeros(len(pts), dtype=bool)
        for x0, x1, z0, z1 in rooms:
            inside |= (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > z0) & (pts[:, 1] < z1)
        free = inside.copy()
        reach = agent_radius + clearance
        if len(walls):
            free[inside] &= (_point_segment_distance(pts[inside], walls) >= reach).all(axis=1)
        if obstacles is not None and len(obstacles):
            obs = np.asarray(obstacles, dtype=np.float64).reshape(-1, 3)
            d = np.linalg.norm(pts[:, None, :] - obs[None, :, :2], axis=-1)
            free &= (d >= reach + obs[None, :, 2]).all(axis=1)
        self.free = free.reshape(W, H)
        self.walls = walls
        # ok[m][i, j]: move m from cell (i, j) stays on free cells
        self._ok = []
        for di, dj, swept in _MOVES:
            ok = self.free & _shift(self.free, di, dj, False)
            for si, sj in swept:
                ok &= _shift(self.free, si, sj, False)
            self._ok.append(ok)
        # per move: the cells it starts from (a slice), the cells it reaches, where it is allowed
        self._relax = []
        for (di, dj, _), ok in zip(_MOVES, self._ok):
            dst = (slice(max(-di, 0), W - max(di, 0)), slice(max(-dj, 0), H - max(dj, 0)))
            src = (slice(max(di, 0), W + min(di, 0)), slice(max(dj, 0), H + min(dj, 0)))
            self._relax.append((dst, src, ok[dst], cell * math.hypot(di, dj)))

    def index(self, x: float, z: float) -> tuple[int, int]:
        """The cell ``(i, j)`` containing ``(x, z)`` (may lie outside the grid)."""
        return (int(math.floor((x - self.origin[0]) / self.cell)), int(math.floor((z - self.origin[1]) / self.cell)))

    def distance_field(self, sources: np.ndarray) -> np.ndarray:
        """``float64[W, H]`` geodesic metres from each cell to the nearest free ``sources`` cell
        (``bool[W, H]``); ``inf`` where unreachable or blocked. Bellman-Ford relaxation over the
        16 moves, whole-array numpy, until nothing changes (exact on the grid graph)."""
        dist = np.where(self.free & sources, 0.0, np.inf)
        changed = True
        while changed:
            changed = False
            for dst, src, ok, length in self._relax:
                here = dist[dst]  # a view: updates write through, so later moves see them
                cand = dist[src] + length
                better = ok & (cand < here)
                if better.any():
                    here[better] = cand[better]
                    changed = True
        return dist

    def _near_cells(self, x: float, z: float) -> list[tuple[int, int, float]]:
        """``(i, j, straight distance)`` of the cells within two cells of ``(x, z)``."""
        i0, j0 = self.index(x, z)
        W, H = self.shape
        out = []
        for i in range(max(i0 - 2, 0), min(i0 + 3, W)):
            for j in range(max(j0 - 2, 0), min(j0 + 3, H)):
                cx, cz = self.centres[i, j]
                out.append((i, j, math.hypot(cx - x, cz - z)))
        return out

    def path_length(self, x: float, z: float, sources: np.ndarray, heuristic: np.ndarray | None = None) -> float:
        """Geodesic metres from ``(x, z)`` to the nearest ``sources`` cell: the same value as
        ``lookup(distance_field(sources), x, z)``, found by A* from the point instead of a whole
        field (far fewer cells when the path is short).

        ``heuristic``: ``float[W, H]``, a lower bound of each cell's geodesic that changes by at
        most the move length between neighbours (e.g. the straight distance to the sources' region);
        None: 0 (Dijkstra).
        """
        W, H = self.shape
        if not hasattr(self, "_flat"):  # plain lists: A* touches cells one by one
            self._flat = (
                self.free.ravel().tolist(),
                [ok.ravel().tolist() for ok in self._ok],
                [di * H + dj for di, dj, _ in _MOVES],
                [self.cell * math.hypot(di, dj) for di, dj, _ in _MOVES],
            )
        free, oks, offsets, lengths = self._flat
        goal = np.asarray(sources, dtype=bool).ravel().tolist()
        h = [0.0] * (W * H) if heuristic is None else np.asarray(heuristic, dtype=np.float64).ravel().tolist()
        best: dict[int, float] = {}
        heap: list[tuple[float, float, int]] = []
        for i, j, d in self._near_cells(x, z):
            c = i * H + j
            if free[c] and d < best.get(c, math.inf):
                best[c] = d
                heapq.heappush(heap, (d + h[c], d, c))
        while heap:
            _, g, c = heapq.heappop(heap)
            if g > best[c]:
                continue
            if goal[c]:
                return g
            for ok, off, length in zip(oks, offsets, lengths):
                if ok[c]:
                    n, gn = c + off, g + length
                    if gn < best.get(n, math.inf):
                        best[n] = gn
                        heapq.heappush(heap, (gn + h[n], gn, n))
        return math.inf

    def lookup(self, field: np.ndarray, x: float, z: float) -> float:
        """Geodesic metres from the continuous point ``(x, z)``: the smallest ``field`` value plus
        straight distance over the cells within two cells of it (``inf`` if none is reachable).
        Blocked cells have ``inf`` in every field, so only free cells count."""
        return min((field[i, j] + d for i, j, d in self._near_cells(x, z)), default=math.inf)

    def components(self) -> np.ndarray:
        """``int32[W, H]`` connected-component labels of the free cells (-1 blocked), 0 the largest."""
        W, H = self.shape
        labels = -np.ones((W, H), dtype=np.int32)
        oks = [ok.tolist() for ok in self._ok]
        sizes = []
        for i0, j0 in zip(*np.nonzero(self.free)):
            if labels[i0, j0] >= 0:
                continue
            lab = len(sizes)
            labels[i0, j0] = lab
            queue, n = deque([(int(i0), int(j0))]), 0
            while queue:
                i, j = queue.popleft()
                n += 1
                for m, (di, dj, _) in enumerate(_MOVES[:4]):  # straight moves suffice for connectivity
                    if oks[m][i][j] and labels[i + di, j + dj] < 0:
                        labels[i + di, j + dj] = lab
                        queue.append((i + di, j + dj))
            sizes.append(n)
        order = np.argsort(-np.asarray(sizes), kind="stable")
        remap = np.empty(len(sizes) + 1, dtype=np.int32)
        remap[-1] = -1
        remap[order] = np.arange(len(sizes), dtype=np.int32)
        return remap[labels]


# --------------------------------------------------------------------------- MiniWorld, lazily


@functools.lru_cache(maxsize=None)
def _miniworld() -> SimpleNamespace:
    """Import pyglet (headless) and miniworld once; the GoatWorld-specific MiniWorldEnv subclass."""
    try:
        import pyglet
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    # Before miniworld imports pyglet.window: render through EGL, no display needed.
    pyglet.options["headless"] = True
    try:
        from miniworld import entity as mw_entity
        from miniworld import miniworld as mw
        from miniworld.opengl import drawBox
        from miniworld.params import DEFAULT_PARAMS
        from pyglet import gl
    except ImportError as e:
        raise ConfigError(f"{INSTALL_HINT} ({e})") from None

    class World(mw.MiniWorldEnv):
        """MiniWorldEnv whose world comes from ``builder(world)`` and whose static geometry (rooms,
        door frames) has its own display list.

        MiniWorld compiles the static scene into display list 1 of an OpenGL namespace that every
        env of the process shares, so a second env in the same process would overwrite the first
        one's rooms; each World allocates its own list (``glGenLists``) instead.
        """

        def __init__(self, obs_width: int, obs_height: int, render_size: tuple[int, int], forward_step: float,
                     turn_degrees: int):
            self.builder: Callable[[Any], None] | None = None  # None: a placeholder room (construction)
            self.decorations: list[tuple[tuple[float, ...], tuple[float, float, float]]] = []
            self._static_list = 0
            self._culling = False
            # half the horizontal field of view of the 60-degree vertical one, plus a safety margin
            self._half_hfov = math.atan(math.tan(math.radians(30)) * obs_width / obs_height) + math.radians(2)
            # MiniWorld prints frame-buffer fallbacks ("Falling back to num_samples=4"): library
            # code does not print, so its constructor's stdout is swallowed.
            # No domain randomisation; a habitat-like camera, low and pitched down, so an object
            # within the success distance is in view (MiniWorld's 1.5 m level camera sees the floor
            # only from 2.6 m on).
            params = DEFAULT_PARAMS.no_random()
            params.set("cam_height", CAMERA_HEIGHT)
            params.set("cam_pitch", CAMERA_PITCH)
            params.set("forward_step", forward_step)
            params.set("forward_drift", 0.0)
            params.set("turn_step", float(turn_degrees))
            with contextlib.redirect_stdout(io.StringIO()):
                super().__init__(
                    params=params,
                    max_episode_steps=2**31 - 1,  # unused: GoatWorld steps and ends episodes itself
                    obs_width=obs_width,
                    obs_height=obs_height,
                    window_width=render_size[0],
                    window_height=render_size[1],
                    domain_rand=False,
                )

        def _gen_world(self) -> None:
            if self.builder is None:
                self.add_rect_room(min_x=0, max_x=1, min_z=0, max_z=1)
                self.place_agent(pos=np.array([0.5, 0.0, 0.5]), dir=0.0)
            else:
                self.builder(self)

        def _render_static(self) -> None:
            # MiniWorld's _render_static (lights, rooms, static entities) into this env's own list,
            # plus the coloured door frames.
            self.shadow_window.switch_to()  # compile in this env's context (MiniWorld's reset does not switch)
            if not self._static_list:
                self._static_list = gl.glGenLists(1)
            gl.glNewList(self._static_list, gl.GL_COMPILE)
            gl.glLightfv(gl.GL_LIGHT0, gl.GL_POSITION, (gl.GLfloat * 4)(*self.light_pos + [1]))
            gl.glLightfv(gl.GL_LIGHT0, gl.GL_AMBIENT, (gl.GLfloat * 4)(*self.light_ambient))
            gl.glLightfv(gl.GL_LIGHT0, gl.GL_DIFFUSE, (gl.GLfloat * 4)(*self.light_color))
            gl.glEnable(gl.GL_LIGHTING)
            gl.glEnable(gl.GL_LIGHT0)
            gl.glShadeModel(gl.GL_SMOOTH)
            gl.glEnable(gl.GL_COLOR_MATERIAL)
            gl.glColorMaterial(gl.GL_FRONT_AND_BACK, gl.GL_AMBIENT_AND_DIFFUSE)
            gl.glEnable(gl.GL_TEXTURE_2D)
            for room in self.rooms:
                room._render()
            gl.glDisable(gl.GL_TEXTURE_2D)
            for (x0, x1, y0, y1, z0, z1), rgb in self.decorations:
                gl.glColor3f(*rgb)
                drawBox(x_min=x0, x_max=x1, y_min=y0, y_max=y1, z_min=z0, z_max=z1)
            gl.glEnable(gl.GL_TEXTURE_2D)
            gl.glEndList()

        def render_obs(self, frame_buffer=None):
            self._culling = True
            try:
                return super().render_obs(frame_buffer)
            finally:
                self._culling = False

        def _in_view(self, ent, cam: np.ndarray) -> bool:
            """Whether ``ent`` can touch the frustum of a camera at ``cam`` (horizontal test, conservative)."""
            dx, dz = ent.pos[0] - cam[0], ent.pos[2] - cam[2]
            reach = math.hypot(ent.radius, ent.height)  # bounding sphere about the floor point
            dist = math.hypot(dx, dz)
            if dist <= reach:
                return True
            off = abs((math.atan2(-dz, dx) - self.agent.dir + math.pi) % (2 * math.pi) - math.pi)
            return off <= self._half_hfov + math.asin(reach / dist)

        def _render_world(self, frame_buffer, render_agent):
            gl.glCallList(self._static_list)
            # Objects are drawn every frame, first-person views skipping those outside the view cone:
            # MiniWorld's ball mesh has 5k triangles, which dominate software (llvmpipe) rendering.
            cam = self.agent.cam_pos if self._culling else None
            for ent in self.entities:
                if ent is not self.agent and (cam is None or self._in_view(ent, cam)):
                    ent.render()
            if render_agent:
                self.agent.render()
            return frame_buffer.resolve()

        def close(self) -> None:
            super().close()
            if self._static_list:
                self.shadow_window.switch_to()
                gl.glDeleteLists(self._static_list, 1)
                self._static_list = 0
            self.shadow_window.close()

    return SimpleNamespace(World=World, Box=mw_entity.Box, Ball=mw_entity.Ball, Key=mw_entity.Key)


# --------------------------------------------------------------------------- the env


class GoatWorld(LifelongGoals, gym.Env):
    """GOAT-style lifelong multimodal navigation in a MiniWorld house (see the module docstring)."""

    metadata = METADATA

    def __init__(self, render_mode: str | None = None, render_size: tuple[int, int] = (480, 360), **kwargs: Any):
        """``render_mode``: None or ``"rgb_array"``; ``render_size``: ``(width, height)`` of
        :meth:`render`'s top view; ``**kwargs``: the fields of :class:`GoatWorldConfig`."""
        try:
            self.config = cfg = GoatWorldConfig(**kwargs)
        except TypeError as e:  # an unknown keyword
            raise ConfigError(f"GoatWorld: {e}; valid: {list(GoatWorldConfig.__dataclass_fields__)}") from None
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"GoatWorld: render_mode must be None or 'rgb_array', got {render_mode!r}")
        size = tuple(render_size) if isinstance(render_size, (tuple, list)) else ()
        if len(size) != 2 or not all(is_int(v) and 16 <= v <= 4096 for v in size):
            raise ConfigError(f"GoatWorld: render_size must be (width, height) in 16..4096 pixels, got {render_size!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        image = spaces.Box(0, 255, cfg.image_shape, np.uint8)
        self.observation_space = spaces.Dict(
            {
                "image": image,
                "direction": spaces.Discrete(cfg.n_headings),
                "goal_modality": spaces.Discrete(len(MODALITIES)),
                "goal_category": spaces.Discrete(len(CATEGORIES)),
                "goal_text": spaces.Box(0, len(VOCAB) - 1, (MAX_TOKENS,), np.int64),
                "goal_image": spaces.Box(0, 255, cfg.image_shape, np.uint8),
                "subgoal_index": spaces.Discrete(cfg.max_subgoals),
            }
        )
        self._zero_image = np.zeros(cfg.image_shape, np.uint8)
        self._turn = 2 * math.pi / cfg.n_headings
        self._stride = cfg.room_size + cfg.wall_thickness  # room (c, r) starts at (c, r) * stride
        mw = _miniworld()
        self._mw = mw
        try:
            self._world = mw.World(
                cfg.obs_width, cfg.obs_height, (int(size[0]), int(size[1])), cfg.forward_step, cfg.turn_degrees
            )
        except Exception as e:  # pyglet raises many types when no OpenGL context can be made
            raise RunError(
                f"GoatWorld: MiniWorld could not create an OpenGL context ({type(e).__name__}: {e}); "
                "headless rendering needs EGL (e.g. Mesa's libEGL)"
            ) from None
        self._world.builder = self._build_house
        self._instances: list[WorldInstance] = []
        self._doors: list[WorldDoor] = []
        self._subgoals: list[_Subgoal] = []
        self._fields: dict[tuple[int, ...], np.ndarray] = {}
        self._active = False
        self._oracle = GoatWorldOracle(self)

    # -- house generation (called by MiniWorldEnv.reset through World._gen_world) ---------

    def _build_house(self, world) -> None:
        for _ in range(_MAX_GENERATION_ATTEMPTS):
            # what MiniWorldEnv.reset sets up before _gen_world, so a failed attempt leaves nothing
            world.rooms, world.entities, world.wall_segs, world.decorations = [], [], [], []
            if self._try_generate(world):
                return
        raise ConfigError(
            f"GoatWorld: no valid house in {_MAX_GENERATION_ATTEMPTS} attempts with {self.config}: "
            "objects block the house, or no instance can be described uniquely; "
            "use fewer objects, bigger rooms, more colours, or more modalities"
        )

    def _room_rect(self, r: int) -> tuple[float, float, float, float]:
        cols, s = self.config.layout[0], self.config.room_size
        x0, z0 = (r % cols) * self._stride, (r // cols) * self._stride
        return x0, x0 + s, z0, z0 + s

    def room_of(self, x: float, z: float) -> int:
        """Room index (``row * cols + col``) of the point ``(x, z)``; -1 outside every room
        (in a wall, a doorway passage or outside the house)."""
        cols, rows = self.config.layout
        c, r = int(math.floor(x / self._stride)), int(math.floor(z / self._stride))
        if not (0 <= c < cols and 0 <= r < rows):
            return -1
        x0, x1, z0, z1 = self._room_rect(r * cols + c)
        return r * cols + c if x0 < x < x1 and z0 < z < z1 else -1

    def _try_generate(self, world) -> bool:
        """Rooms, doorways, objects, navigation grid, agent and subgoal plan; False if invalid."""
        cfg, rng, mw = self.config, world.np_random, self._mw
        cols, rows = cfg.layout
        s, g, w = cfg.room_size, cfg.wall_thickness, cfg.door_width
        rooms = []
        for r in range(cfg.n_rooms):
            x0, x1, z0, z1 = self._room_rect(r)
            # MiniWorld's default textures for every room: pyglet decodes each new RGB texture in
            # pure Python (seconds per texture), so rooms differ by their door colours, as in GoatGrid.
            rooms.append(world.add_rect_room(min_x=x0, max_x=x1, min_z=z0, max_z=z1))

        # Doorways: a random spanning tree over adjacent rooms (Kruskal on shuffled edges) plus
        # extra doorways that make loops, as in GoatGrid.
        edges = [(r, r + 1) for r in range(cfg.n_rooms) if r % cols < cols - 1]
        edges += [(r, r + cols) for r in range(cols * (rows - 1))]
        root = list(range(cfg.n_rooms))

        def find(a: int) -> int:
            while root[a] != a:
                a = root[a]
            return a

        door_edges = []
        for k in rng.permutation(len(edges)):
            a, b = edges[k]
            ra, rb = find(a), find(b)
            if ra != rb:
                root[ra] = rb
                door_edges.append((a, b))
            elif rng.random() < cfg.extra_door_prob:
                door_edges.append((a, b))
        palette = [COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))]
        self._doors = []
        margin = 0.3
        for k, (a, b) in enumerate(sorted(door_edges)):
            color = palette[k % len(palette)]
            ax0, ax1, az0, az1 = self._room_rect(a)
            vertical = b == a + 1  # b is right of a: the doorway crosses the wall x in [ax1, ax1 + g]
            lo = (az0 if vertical else ax0) + float(rng.uniform(margin, s - margin - w))  # along the wall
            hi = lo + w
            wall = (ax1, ax1 + g) if vertical else (az1, az1 + g)  # across the wall
            if vertical:
                world.connect_rooms(rooms[a], rooms[b], min_z=lo, max_z=hi, max_y=_DOOR_HEIGHT)
            else:
                world.connect_rooms(rooms[a], rooms[b], min_x=lo, max_x=hi, max_y=_DOOR_HEIGHT)
            # the coloured frame: two posts and a lintel, sticking out of the wall on both sides
            across = (wall[0] - _FRAME, wall[1] + _FRAME)
            pieces = (((lo - _FRAME, lo), (0.0, _DOOR_HEIGHT)), ((hi, hi + _FRAME), (0.0, _DOOR_HEIGHT)),
                      ((lo - _FRAME, hi + _FRAME), (_DOOR_HEIGHT, _DOOR_HEIGHT + 0.2)))
            for (a0, a1), (y0, y1) in pieces:
                xz = (across, (a0, a1)) if vertical else ((a0, a1), across)
                world.decorations.append(((xz[0][0], xz[0][1], y0, y1, xz[1][0], xz[1][1]), _RGB[color]))
            along_mid, across_mid = (lo + hi) / 2, (wall[0] + wall[1]) / 2
            center = (across_mid, along_mid) if vertical else (along_mid, across_mid)
            self._doors.append(WorldDoor((float(center[0]), float(center[1])), color, (a, b)))

        # Objects: balanced categories, uniform colours; uniform positions in a random room, clear
        # of walls, doorways and each other (rejection sampling, bounded).
        cats = [cfg.categories[i % len(cfg.categories)] for i in range(cfg.n_objects)]
        cats = [cats[i] for i in rng.permutation(cfg.n_objects)]
        classes = {"ball": lambda c: mw.Ball(c, size=0.6), "box": lambda c: mw.Box(c, size=0.6), "key": mw.Key}
        placed: list[tuple[Any, str, str, float, float, int]] = []
        for cat in cats:
            color = cfg.colors[int(rng.integers(0, len(cfg.colors)))]
            ent = classes[cat](color)
            spot = None
            for _ in range(_PLACEMENT_TRIES):
                r = int(rng.integers(0, cfg.n_rooms))
                x0, x1, z0, z1 = self._room_rect(r)
                pad = ent.radius + 0.1
                x, z = float(rng.uniform(x0 + pad, x1 - pad)), float(rng.uniform(z0 + pad, z1 - pad))
                if any(math.hypot(x - d.pos[0], z - d.pos[1]) < ent.radius + w for d in self._doors):
                    continue
                if any(math.hypot(x - px, z - pz) < ent.radius + e.radius + 0.3 for e, _, _, px, pz, _ in placed):
                    continue
                spot = (x, z, r)
                break
            if spot is None:
                return False
            placed.append((ent, cat, color, spot[0], spot[1], spot[2]))
        self._instances = []
        for i, (ent, cat, color, x, z, r) in enumerate(placed):
            world.place_entity(ent, pos=np.array([x, 0.0, z]), dir=float(rng.uniform(-math.pi, math.pi)))
            self._instances.append(WorldInstance(i, cat, color, (x, z), float(ent.radius), r))
        self._entities = [p[0] for p in placed]

        # The navigation grid and its largest component: every room and a success region of
        # every object must be in it.
        self._walls = np.asarray(world.wall_segs, dtype=np.float64)[:, :, [0, 2]]
        rects = np.array([[rm.min_x, rm.max_x, rm.min_z, rm.max_z] for rm in world.rooms])
        obstacles = np.array([[o.pos[0], o.pos[1], o.radius] for o in self._instances])
        bounds = (rects[:, 0].min(), rects[:, 1].max(), rects[:, 2].min(), rects[:, 3].max())
        self._nav = NavGrid(bounds, cfg.nav_cell, AGENT_RADIUS, self._walls, rects, obstacles, NAV_CLEARANCE)
        labels = self._nav.components()
        self._reachable = labels == 0
        centres = self._nav.centres[self._reachable]
        col, row = np.floor(centres / self._stride).astype(int).T
        inside = (centres - np.stack([col, row], axis=1) * self._stride < s).all(axis=1)  # not in a wall gap
        if len(set((row * cols + col)[inside].tolist())) < cfg.n_rooms:
            return False
        self._fields = {}
        self._success_cells = {}
        for o in self._instances:
            cells = self._success_mask(o)
            if not cells.any():
                return False
            self._success_cells[o.id] = cells

        # The agent: a random reachable cell centre, a random heading index.
        ii, jj = np.nonzero(self._reachable)
        k = int(rng.integers(0, len(ii)))
        x, z = self._nav.centres[ii[k], jj[k]]
        self._heading = int(rng.integers(0, cfg.n_headings))
        world.place_agent(pos=np.array([float(x), 0.0, float(z)]), dir=self._heading * self._turn)
        self._room_doors: dict[int, set[str]] = {r: set() for r in range(cfg.n_rooms)}
        for d in self._doors:
            for r in d.rooms:
                self._room_doors[r].add(d.color)
        return self._draw_plan(world)

    def _success_mask(self, o: WorldInstance) -> np.ndarray:
        """``bool[W, H]``: reachable cells from which a ``stop`` facing ``o`` succeeds (near, in sight)."""
        nav, cfg = self._nav, self.config
        mask = self._reachable.copy()
        pts = nav.centres[mask]
        near = np.linalg.norm(pts - np.asarray(o.pos), axis=1) - o.radius <= cfg.success_distance
        ok = np.zeros(len(pts), dtype=bool)
        if near.any():
            ok[near] = _in_sight(pts[near], o.pos, self._walls)
        mask[mask] = ok
        return mask

    def _viewpoint(self, world, o: WorldInstance) -> tuple[float, float, float] | None:
        """A random goal-image pose ``(x, z, yaw)`` in ``o``'s room facing it, collision-free, with
        no wall or other object between; None if none is found."""
        rng = world.np_random
        x0, x1, z0, z1 = self._room_rect(o.room)
        others = [p for p in self._instances if p.id != o.id]
        for _ in range(_PLACEMENT_TRIES):
            dist = o.radius + float(rng.uniform(*_VIEW_DISTANCE))
            bearing = float(rng.uniform(-math.pi, math.pi))
            x, z = o.pos[0] + dist * math.cos(bearing), o.pos[1] + dist * math.sin(bearing)
            if not (x0 + AGENT_RADIUS < x < x1 - AGENT_RADIUS and z0 + AGENT_RADIUS < z < z1 - AGENT_RADIUS):
                continue
            if world.intersect(world.agent, np.array([x, 0.0, z]), AGENT_RADIUS):
                continue
            p, q = np.array([x, z]), np.asarray(o.pos)
            blocked = False
            for other in others:  # another object's disc on the line of sight hides the target
                if _point_segment_distance(np.asarray([other.pos]), np.array([[p, q]]))[0, 0] < other.radius:
                    blocked = True
                    break
            if blocked or _segments_cross(p, q, self._walls)[0]:
                continue
            yaw = math.atan2(-(o.pos[1] - z), o.pos[0] - x)  # MiniWorld: forward = (cos, -sin)
            return (x, z, yaw)
        return None

    def _draw_plan(self, world) -> bool:
        """Draw the subgoals (as GoatGrid does); False if a drawn modality has no eligible instance."""
        cfg, rng = self.config, world.np_random
        options: dict[str, dict[int, list]] = {
            "category": {o.id: [None] for o in self._instances},
            "language": {o.id: describe(o, self._instances, self._room_doors) for o in self._instances}
            if "language" in cfg.modalities else {},
            "image": {o.id: [None] for o in self._instances} if "image" in cfg.modalities else {},
        }
        n = int(rng.integers(cfg.min_subgoals, cfg.max_subgoals + 1))
        self._subgoals = []
        prev: WorldInstance | None = None
        for _ in range(n):
            modality = cfg.modalities[int(rng.integers(0, len(cfg.modalities)))]
            opts = options[modality]
            eligible = [i for i, o in opts.items() if o]
            if prev is not None:
                eligible = later_targets(self._instances, eligible, prev, modality, cfg.new_room_goals)
            target, choice = None, None
            while eligible and target is None:
                candidate = self._instances[eligible[int(rng.integers(0, len(eligible)))]]
                if modality == "image":
                    choice = self._viewpoint(world, candidate)
                    if choice is None:  # no clear view of it anywhere near: not an image goal
                        opts[candidate.id] = []
                        eligible.remove(candidate.id)
                        continue
                else:
                    choice = opts[candidate.id][int(rng.integers(0, len(opts[candidate.id])))]
                target = candidate
            if target is None:
                return False
            if modality == "category":
                ids = tuple(o.id for o in self._instances if o.category == target.category)
                sub = _Subgoal(modality, target.id, ids, f"a {target.category}", None)
            elif modality == "language":
                sub = _Subgoal(modality, target.id, (target.id,), choice, None)
            else:
                sub = _Subgoal(modality, target.id, (target.id,), "", choice)
            self._subgoals.append(sub)
            prev = target
        return True

    # -- subgoals and geometry -------------------------------------------------------------

    def _field(self, goal_ids: tuple[int, ...]) -> np.ndarray:
        """Geodesic field to the success region of ``goal_ids`` (cached per episode: objects and
        walls never move)."""
        field = self._fields.get(goal_ids)
        if field is None:
            field = self._fields[goal_ids] = self._nav.distance_field(self._sources(goal_ids))
        return field

    def _geodesic(self) -> float:
        """Geodesic metres from the agent to the current success region (0 inside it).

        Read from the cached field when there is one (shaping, oracle); otherwise one A* search,
        which costs far less than a field when a subgoal ends before anyone needs the field."""
        x, z = self._xz()
        goal_ids = self._subgoals[self._k].goal_ids
        if any(self._near_and_in_sight(self._instances[i], x, z) for i in goal_ids):
            return 0.0
        if goal_ids in self._fields or self.config.shaping:
            return self._nav.lookup(self._field(goal_ids), x, z)
        return self._nav.path_length(x, z, self._sources(goal_ids), self._lower_bound(goal_ids))

    def _sources(self, goal_ids: tuple[int, ...]) -> np.ndarray:
        sources = np.zeros(self._nav.shape, dtype=bool)
        for i in goal_ids:
            sources |= self._success_cells[i]
        return sources

    def _lower_bound(self, goal_ids: tuple[int, ...]) -> np.ndarray:
        """``float[W, H]``: straight distance from each cell centre to the goals' success discs
        (an A* heuristic: no path to the success region is shorter)."""
        c = self._nav.centres
        gaps = [np.linalg.norm(c - np.asarray(self._instances[i].pos), axis=-1) - self._instances[i].radius
                for i in goal_ids]
        return np.maximum(np.min(gaps, axis=0) - self.config.success_distance, 0.0)

    def _xz(self) -> tuple[float, float]:
        p = self._world.agent.pos
        return float(p[0]), float(p[2])

    def _stop_succeeds(self, goal_ids: Sequence[int]) -> bool:
        x, z = self._xz()
        return any(self._satisfies(self._instances[i], x, z, self._heading * self._turn) for i in goal_ids)

    def _satisfies(self, o: WorldInstance, x: float, z: float, yaw: float) -> bool:
        """The success test: near, faced and in sight (see the module docstring)."""
        bearing = math.atan2(-(o.pos[1] - z), o.pos[0] - x)  # the yaw that faces the object's centre
        off = abs((bearing - yaw + math.pi) % (2 * math.pi) - math.pi)
        return math.degrees(off) <= self.config.success_angle + 1e-9 and self._near_and_in_sight(o, x, z)

    def _near_and_in_sight(self, o: WorldInstance, x: float, z: float) -> bool:
        if math.hypot(o.pos[0] - x, o.pos[1] - z) - o.radius > self.config.success_distance:
            return False
        return not _segments_cross(np.array([x, z]), np.asarray(o.pos), self._walls)[0]

    def _begin_subgoal(self, k: int) -> None:
        """Make subgoal ``k`` current from the agent's pose (nothing else changes)."""
        self._k = k
        self._taken = 0
        self._moves = 0
        sub = self._subgoals[k]
        self._tokens = tokenize(sub.text)
        self._goal_image = self.render_view(*sub.viewpoint) if sub.modality == "image" else self._zero_image
        self._shortest = self._geodesic()
        if not math.isfinite(self._shortest):  # generation checked reachability; a bug if it happens
            raise RunError(f"GoatWorld: subgoal {k} is unreachable from {self.agent_pose}")

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New house, objects, agent and subgoal plan; returns ``(obs, info)`` of subgoal 0."""
        super().reset(seed=seed)
        world = self._world
        # One RNG stream: MiniWorld's own helpers (reset, place_entity, ...) draw from ours.
        world.np_random = self.np_random
        self._image = world.reset()[0]  # MiniWorldEnv.reset: _gen_world -> _build_house, then a render
        self._results: list[tuple[bool, float, str]] = []
        self._active = True
        self._begin_subgoal(0)
        sub = self._subgoals[0]
        return self._obs(), {"subgoal_index": 0, "modality": sub.modality, "goal_text": sub.text}

    def step(self, action):
        if not self._active:
            raise ResetNeeded("GoatWorld: call reset() before step() (and after the last subgoal)")
        if not (is_int(action) and 0 <= int(action) < len(ACTION_NAMES)):
            raise ConfigError(f"GoatWorld: action must be an integer in 0..{len(ACTION_NAMES) - 1}, got {action!r}")
        cfg, a, world = self.config, int(action), self._world
        world.step_count += 1
        self._taken += 1
        reward = -cfg.step_penalty
        d_before = self._geodesic() if cfg.shaping else None
        if a == LEFT:  # counter-clockwise, as MiniWorld's turn_left
            self._heading = (self._heading + 1) % cfg.n_headings
        elif a == RIGHT:
            self._heading = (self._heading - 1) % cfg.n_headings
        elif a == FORWARD:
            if world.move_agent(cfg.forward_step, 0.0):  # MiniWorld's collision test; False: blocked
                self._moves += 1
        # TOGGLE: doorways are always open in MiniWorld; STOP: judged below
        world.agent.dir = self._heading * self._turn  # exact: never accumulate float turns

        sub = self._subgoals[self._k]
        info: dict[str, Any] = {"subgoal_index": self._k, "modality": sub.modality, "goal_text": sub.text}
        success = a == STOP and self._stop_succeeds(sub.goal_ids)
        terminated = False
        if a == STOP or self._taken >= cfg.subgoal_budget:
            taken = self._moves * cfg.forward_step
            score = path_spl(success, self._shortest, taken)
            reward += cfg.success_reward if success else (-cfg.wrong_stop_penalty if a == STOP else 0.0)
            info.update(subgoal_success=success, spl=score, shortest=float(self._shortest), taken=float(taken))
            self._results.append((success, score, sub.modality))
            if self._k + 1 < len(self._subgoals):
                self._begin_subgoal(self._k + 1)
            else:
                terminated, self._active = True, False
                info.update(self._episode_summary())
        if cfg.shaping:  # potential-based (see Rewards): after the last subgoal the potential is 0
            reward += cfg.shaping * (d_before - (0.0 if terminated else self._geodesic()))
        self._image = world.render_obs()
        return self._obs(), float(reward), terminated, False, info

    def _obs(self) -> dict[str, Any]:
        sub = self._subgoals[self._k]
        return {
            "image": self._image,
            "direction": self._heading,
            "goal_modality": MODALITIES.index(sub.modality),
            "goal_category": CATEGORIES.index(self._instances[sub.target].category),
            "goal_text": self._tokens.copy(),
            "goal_image": self._goal_image.copy(),
            "subgoal_index": self._k,
        }

    def render(self) -> np.ndarray | None:
        """``uint8[height, width, 3]`` (``render_size``) top view of the whole house: MiniWorld's
        ``render_top_view`` (the agent a red triangle) with a cyan square around every instance
        that satisfies the current goal."""
        if self.render_mode != "rgb_array":
            gym.logger.warn("GoatWorld.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        world = self._world
        img, scale = world.render_top_view(world.vis_fb, render_agent=True, return_scale=True)
        img = np.array(img)
        if self._subgoals:
            H, W = img.shape[:2]
            for i in self._subgoals[self._k].goal_ids:
                o = self._instances[i]
                cx = o.pos[0] * scale["x_scale"] + scale["x_offset"]
                cz = o.pos[1] * scale["z_scale"] + scale["z_offset"]
                h = (o.radius + 0.1) * scale["x_scale"]
                c0, c1 = int(max(cx - h, 0)), int(min(cx + h, W - 1))
                r0, r1 = int(max(cz - h, 0)), int(min(cz + h, H - 1))
                img[r0 : r0 + 2, c0 : c1 + 1] = img[r1 - 1 : r1 + 1, c0 : c1 + 1] = _HIGHLIGHT
                img[r0 : r1 + 1, c0 : c0 + 2] = img[r0 : r1 + 1, c1 - 1 : c1 + 1] = _HIGHLIGHT
        return img

    def close(self) -> None:
        world = getattr(self, "_world", None)
        if world is not None:
            world.close()
            self._world = None

    # -- what memories and agents may read ----------------------------------------------

    @property
    def agent_pose(self) -> tuple[float, float, int]:
        """``(x, z, heading index)``: the agent's centre in metres and ``obs["direction"]``."""
        x, z = self._xz()
        return x, z, int(self._heading)

    @property
    def yaw(self) -> float:
        """The agent's heading in radians (``heading index * turn``)."""
        return self._heading * self._turn

    def egocentric_rgb(self) -> np.ndarray:
        """``uint8[obs_height, obs_width, 3]``: the first-person view of the current pose."""
        return self._world.render_obs()

    def render_view(self, x: float, z: float, yaw: float) -> np.ndarray:
        """``uint8[obs_height, obs_width, 3]``: the first-person view from pose ``(x, z, yaw)``.

        The agent is placed there for one ``render_obs`` and put back; no collision test, no
        RNG draw, no other state changes (how goal images are made)."""
        agent = self._world.agent
        saved_pos, saved_dir = agent.pos.copy(), agent.dir
        agent.pos, agent.dir = np.array([float(x), 0.0, float(z)]), float(yaw)
        try:
            return self._world.render_obs()
        finally:
            agent.pos, agent.dir = saved_pos, saved_dir

    @property
    def oracle(self) -> GoatWorldOracle:
        """Privileged accessor (instance ids, positions, geodesics): tests and oracle agents only."""
        return self._oracle


class GoatWorldOracle(SubgoalOracle):
    """:class:`~rlmem.envs.goat_grid.SubgoalOracle` of a :class:`GoatWorld` (goal viewpoints are
    ``(x, z, yaw)``), plus doors, the navigation grid and geodesics."""

    @property
    def doors(self) -> tuple[WorldDoor, ...]:
        return tuple(self._env._doors)

    @property
    def nav(self) -> NavGrid:
        """The episode's navigation grid."""
        return self._env._nav

    @property
    def shortest(self) -> float:
        """Geodesic metres of the current subgoal from its start position (SPL's numerator)."""
        return self._env._shortest

    def geodesic(self, x: float | None = None, z: float | None = None) -> float:
        """Geodesic metres from ``(x, z)`` (default: the agent) to the current success region
        (0 inside it; read from the navigation grid otherwise)."""
        env = self._env
        if x is None or z is None:
            x, z = env._xz()
        goal_ids = self.goal_ids()
        if any(env._near_and_in_sight(env._instances[i], x, z) for i in goal_ids):
            return 0.0
        return env._nav.lookup(env._field(goal_ids), x, z)

    def stop_succeeds(self, x: float | None = None, z: float | None = None, yaw: float | None = None) -> bool:
        """Whether ``stop`` at pose ``(x, z, yaw)`` (default: the agent's) would succeed now."""
        env = self._env
        ax, az = env._xz()
        x, z = ax if x is None else x, az if z is None else z
        yaw = env.yaw if yaw is None else yaw
        return any(env._satisfies(env._instances[i], x, z, yaw) for i in self.goal_ids())

    def satisfies(self, instance_id: int, x: float, z: float, yaw: float | None) -> bool:
        """The success test for one instance at pose ``(x, z, yaw)``; ``yaw=None``: facing it
        exactly (so only near and in sight are tested)."""
        env = self._env
        inst = env._instances[instance_id]
        if yaw is None:
            yaw = math.atan2(-(inst.pos[1] - z), inst.pos[0] - x)
        return env._satisfies(inst, x, z, yaw)



class OracleAgent:
    """Greedy geodesic descent with privileged access (:attr:`GoatWorld.oracle`): tests and baselines.

    ``stop`` when it would succeed; when a goal instance is near and in sight, turn (the shorter
    way) to the heading closest to it; otherwise pick the heading whose collision-free forward
    step lowers the geodesic the most (ties: fewest turns; when no single step does, e.g. at a
    door jamb, the best two-step move) and turn towards it or step forward. Not optimal
    (30-degree headings, a short lookahead), but its SPL is close to 1.
    """

    def act(self, env: gym.Env) -> int:
        e = env.unwrapped
        o = e.oracle
        if o.stop_succeeds():
            return STOP
        x, z, h = e.agent_pose
        n = e.config.n_headings
        turn = 2 * math.pi / n
        seen = [i for i in o.goal_ids() if o.satisfies(i, x, z, None)]
        if seen:  # near and in sight: face the closest one
            inst = min((o.instances[i] for i in seen), key=lambda p: math.hypot(p.pos[0] - x, p.pos[1] - z))
            target = int(round(math.atan2(-(inst.pos[1] - z), inst.pos[0] - x) / turn)) % n
        else:
            here = o.geodesic(x, z) - 1e-9
            target = self._descend(e, x, z, h, here, depth=1)
            if target is None:
                target = self._descend(e, x, z, h, here, depth=2)
            if target is None:  # nothing gets closer (a grid artefact): turn and look again
                return LEFT
        if target == h:
            return FORWARD
        return LEFT if (target - h) % n <= n // 2 else RIGHT

    @staticmethod
    def _descend(e: GoatWorld, x: float, z: float, h: int, bound: float, depth: int) -> int | None:
        """The heading (fewest turns from ``h`` first) whose ``depth`` collision-free forward steps
        (later steps in any heading) reach the lowest geodesic below ``bound``; None if none does."""
        n, step, world, o = e.config.n_headings, e.config.forward_step, e._world, e.oracle
        turn = 2 * math.pi / n

        def ahead(px: float, pz: float, k: int) -> tuple[float, float] | None:
            nx, nz = px + step * math.cos(k * turn), pz - step * math.sin(k * turn)
            return None if world.intersect(world.agent, np.array([nx, 0.0, nz]), AGENT_RADIUS) else (nx, nz)

        def value(px: float, pz: float, left: int) -> float:
            best = o.geodesic(px, pz)
            if left > 0:
                for k in range(n):
                    nxt = ahead(px, pz, k)
                    if nxt is not None:
                        best = min(best, value(*nxt, left - 1))
            return best

        target, best = None, bound
        for turns in sorted(range(-(n // 2), n // 2 + 1), key=abs):
            k = (h + turns) % n
            nxt = ahead(x, z, k)
            if nxt is not None:
                d = value(*nxt, depth - 1)
                if d < best:
                    best, target = d, k
        return target
