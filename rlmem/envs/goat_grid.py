"""GoatGrid: GOAT-style lifelong multimodal object navigation in a MiniGrid house.

After Chang et al., "GOAT: GO to Any Thing" (2023) and Khanna et al., "GOAT-Bench: A
Benchmark for Multi-Modal Lifelong Navigation" (CVPR 2024): one episode is a sequence of
5-10 subgoals in the same house, with no reset between them; each subgoal names an object
by its category, by a language description, or by an image; the agent must issue ``stop``
near and facing it within a per-subgoal step budget. Metrics are success and SPL per
subgoal and per modality.

The grid engine, the world objects (:class:`~minigrid.core.world_object.Ball`, ``Box``,
``Key``, ``Door``), the egocentric view and the tile renderer are the real ``minigrid``
package's; this module adds the house generator, the goals, the ``stop`` rule and the
metrics.

Description
-----------
A house of ``cols x rows`` square rooms (interior ``room_size x room_size``) joined by
coloured doors (a random spanning tree of doors between adjacent rooms, plus each other
adjacent pair with probability ``extra_door_prob``; every door is closed but unlocked with
probability ``closed_door_prob``, open otherwise). ``n_objects`` instances of the
categories ``ball``, ``box``, ``key`` (counts balanced: several instances per category)
with colours drawn uniformly from ``colors`` stand on the floor; several may share
category *and* colour, so instances are only told apart by where they are. Objects are
never placed in the cells in front of a door, nor where they would cut the floor apart or
leave an object with no free side; at most a third of the cells can hold one.

Subgoals (drawn at reset; their number uniformly in ``[min_subgoals, max_subgoals]``), each
with a modality drawn uniformly from ``modalities``:

- ``"category"`` -- text ``"a box"``: *any* instance of that category counts.
- ``"language"`` -- a description that identifies exactly one instance in the house, by
  colour and category (``"the purple box"``), category and room (``"the box in the room with
  the yellow door"``) or all three (``"the purple box in the room with the yellow door"``);
  "the room with the yellow door" means *a* room with at least one yellow door among its
  doors (a door belongs to both rooms it joins). Only unique descriptions are generated;
  one is drawn uniformly among them.
- ``"image"`` -- an egocentric RGB view of the target instance rendered by MiniGrid's tile
  renderer from a free floor cell of the target's room, 1-3 cells in front of the target
  and at most one cell to the side, facing the viewing direction, with the target visible
  (rendered when the subgoal starts, so door states are the current ones).

Consecutive subgoals never ask for the instance the agent was just sent to (nor, for a
category goal, for its category), unless the allowed modalities and house leave no other
choice. With ``new_room_goals`` they also never ask for a goal with an instance (for a
category goal: any instance of the category) in the room of the previous target, where a
successful agent stands when the subgoal starts; a house without such a plan is redrawn.
This takes away what a memoryless agent gains on later subgoals from starting next to an
object of the last one (with few objects per house that gain is large), so that a rise
from the first subgoal to later ones measures memory of the house. The category of the
target is given for every modality (as in GOAT-Bench, where agents prefilter candidate
instances by category).

Action Space
------------
``Discrete(5)``: 0 turn left, 1 turn right, 2 forward, 3 toggle (opens/closes the door in
front; does nothing on anything else, so boxes are never opened or destroyed), 4 ``stop``.
Nothing can be picked up.

Observation Space
-----------------
``Dict`` with

- ``image``: the egocentric partial view (``agent_view_size`` = 7). ``obs_mode="symbolic"``:
  ``uint8[7, 7, 3]`` MiniGrid encoding (object 0..10, colour 0..5, state 0..2: the space's
  ``high`` is :data:`SYMBOLIC_HIGH`, so encoders can tell codes from pixels), indexed ``[view_x, view_y]``,
  the agent at ``[3, 6]`` looking towards ``view_y = 0``. ``obs_mode="rgb"``: ``uint8[7t, 7t, 3]``
  MiniGrid's point-of-view render (rows, columns, RGB) with tile size ``t = obs_tile_size``.
- ``direction``: ``Discrete(4)``, 0 east (+x), 1 south (+y), 2 west, 3 north.
- ``goal_modality``: ``Discrete(3)``: 0 category, 1 language, 2 image (:data:`MODALITIES`).
- ``goal_category``: ``Discrete(3)``: 0 ball, 1 box, 2 key (:data:`CATEGORIES`).
- ``goal_text``: ``int64[MAX_TOKENS]`` token ids of the goal text in :data:`VOCAB`, padded
  with 0 (``"<pad>"``); all padding for image goals. The raw string is ``info["goal_text"]``.
- ``goal_image``: ``uint8[H, W, 3]`` (``goal_image_shape``, default 56 x 56): the goal view of
  an image goal, zeros otherwise.
- ``subgoal_index``: ``Discrete(max_subgoals)``, the index of the current subgoal.
- ``gps`` (only with ``gps=True``): ``float32[2]``, the agent's cell minus the episode's start
  cell, ``(dx, dy)`` in cells: habitat's GPS sensor (position relative to the episode start)
  on the grid; with ``direction`` (the compass) it is the odometry the modular agents read
  through ``agent_pose``. Off by default (GOAT-Bench's agents get it; the learned agents of
  earlier rlmem versions did not).

After a step that ends a subgoal, the observation already shows the *next* subgoal.

Rewards
-------
``success_reward`` (+1) for a successful ``stop``; ``-wrong_stop_penalty`` (default 0) for a
failed one; ``-step_penalty`` (0.01) on every step (the ``stop`` included). Optional shaping (``shaping > 0``, default off), potential-based
(Ng et al. 1999): the potential is ``-shaping * d``, with ``d`` the shortest number of
actions to success (:func:`shortest_path_length`) of the *current* subgoal from the agent's
pose, and 0 once the last subgoal has ended; every step adds ``potential(after) -
potential(before)``, i.e. ``shaping * (d_before - d_after)``, where a step that ends a
subgoal measures ``d_after`` to the next subgoal (0 after the last). An episode's shaping
therefore sums to ``shaping * d`` of its first subgoal's start, whatever the agent does:
walking part of the way and then stopping earns nothing over the success reward, and the
optimal policy is unchanged; the shaping only tells each step whether it brought the goal
closer.

Success and SPL
---------------
``stop`` succeeds iff the cell directly in front of the agent (``agent_pos +
DIR_TO_VEC[agent_dir]``, i.e. distance 1 and facing it) holds an instance that satisfies
the goal. A wrong ``stop`` ends the subgoal as a failure; so does running out of
``subgoal_budget`` actions. Either way the next subgoal starts from where the agent stands
(same pose, same door states, nothing regenerated).

``SPL = success * shortest / max(shortest, taken)`` (:func:`spl`), where ``taken`` is the
number of actions of the subgoal (its ``stop`` included) and ``shortest`` the fewest
actions that succeed from the subgoal's start pose: a Dijkstra search over poses
``(x, y, direction)`` in which turns count (1 each), a forward move costs 1, entering a
closed door costs 2 (toggle + forward), and the final ``stop`` counts 1. So an optimal
agent (:class:`OracleAgent`) scores SPL exactly 1.

Starting State
--------------
A fresh house, instance set and subgoal plan are drawn at every reset; the agent starts on
a random free cell facing a random direction.

Episode End
-----------
The episode terminates when its last subgoal ends (success, wrong ``stop`` or budget): the
per-subgoal budget is a rule of the task (GOAT-Bench), so the env never truncates and no
``TimeLimit`` is registered. The episode is at most ``n_subgoals * subgoal_budget`` steps.

Info
----
Every step's ``info`` describes the subgoal under which its action was taken (``reset``'s:
the first subgoal): ``subgoal_index`` (int), ``modality`` (str), ``goal_text`` (str).
A step that ends a subgoal adds ``subgoal_success`` (bool), ``spl`` (float),
``shortest`` and ``taken`` (int). The last step adds ``success`` (bool: *all* subgoals
succeeded, what :mod:`rlmem.evaluate` counts), ``subgoal_success_rate`` and ``spl_mean``
(float), ``n_subgoals`` (int), and the per-subgoal tuples ``subgoal_successes`` (bool),
``subgoal_spls`` (float), ``subgoal_modalities`` (str) -- tuples, so that ``SyncVectorEnv``
batches episodes of different lengths (as object arrays);
:func:`aggregate_by_modality` turns them into per-modality success and SPL.

What memories and agents may read
---------------------------------
- :attr:`GoatGrid.agent_pose` ``(x, y, direction)``, :meth:`GoatGrid.view_to_world`
  (egocentric view cell -> world cell), :meth:`GoatGrid.egocentric_rgb` (the RGB view of the
  current pose, whatever ``obs_mode``), :meth:`GoatGrid.goal_spec` (the current goal: modality,
  category, text, tokens, image; never the target instance).
- Privileged, for tests and oracle agents only: :attr:`GoatGrid.oracle` (a
  :class:`GoatOracle`: instance list with ids and positions, the ids that satisfy the goal,
  the goal image's viewpoint, shortest plans).
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from minigrid.core.constants import COLOR_NAMES, COLOR_TO_IDX, DIR_TO_VEC, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Ball, Box, Door, Key, Wall
from minigrid.minigrid_env import MiniGridEnv

from rlmem.envs._vec import is_int
from rlmem.errors import ConfigError, RunError

__all__ = [
    "ACTION_NAMES",
    "CATEGORIES",
    "FORWARD",
    "LEFT",
    "MAX_TOKENS",
    "MODALITIES",
    "RIGHT",
    "STOP",
    "TOGGLE",
    "VOCAB",
    "DoorRecord",
    "GoalSpec",
    "LifelongGoals",
    "GoatGrid",
    "GoatGridConfig",
    "GoatOracle",
    "ObjectInstance",
    "OracleAgent",
    "aggregate_by_modality",
    "detokenize",
    "parse_description",
    "shortest_path_length",
    "shortest_plan",
    "spl",
    "tokenize",
]

LEFT, RIGHT, FORWARD, TOGGLE, STOP = 0, 1, 2, 3, 4
"""Actions (``Discrete(5)``). The first three equal MiniGrid's ``Actions`` values."""
ACTION_NAMES = ("left", "right", "forward", "toggle", "stop")
SYMBOLIC_HIGH = (max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values()))
"""Largest code per channel of the symbolic view (object, colour, state): the space's ``high``."""

MODALITIES = ("category", "language", "image")
"""Goal modalities; ``obs["goal_modality"]`` is the index in this tuple."""
CATEGORIES = ("ball", "box", "key")
"""Object categories; ``obs["goal_category"]`` is the index in this tuple."""
_OBJECT_CLASSES = {"ball": Ball, "box": Box, "key": Key}

VOCAB = ("<pad>", "<unk>", "a", "the", "in", "room", "with", "door", *CATEGORIES, *COLOR_NAMES)
"""The fixed goal-text vocabulary; id 0 pads. Every generated text uses only these words."""
_WORD_TO_ID = {w: i for i, w in enumerate(VOCAB)}
MAX_TOKENS = 12
"""Length of ``obs["goal_text"]`` (the longest generated text has 10 words)."""

AGENT_VIEW_SIZE = 7
_MAX_GENERATION_ATTEMPTS = 100
_HIGHLIGHT = np.array([0, 255, 255], dtype=np.uint8)  # frame around goal instances in render()

METADATA = {"render_modes": ["rgb_array"], "render_fps": 10, "memory_types": ("spatial", "object")}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GoatGridConfig:
    """Validated parameters of a GoatGrid house and episode (see the module docstring)."""

    layout: tuple[int, int] = (3, 2)
    """Rooms as ``(cols, rows)``; at least one room."""
    room_size: int = 5
    """Interior side of every room in cells (>= 3); the grid is ``cols*(room_size+1)+1`` wide."""
    n_objects: int = 12
    """Object instances in the house, 1 .. :attr:`max_objects`."""
    categories: tuple[str, ...] = CATEGORIES
    """Categories to draw from (subset of :data:`CATEGORIES`); counts are balanced."""
    colors: tuple[str, ...] = tuple(COLOR_NAMES)
    """Object colours to draw from (MiniGrid colour names); doors use all six colours."""
    min_subgoals: int = 5
    """Fewest subgoals per episode (>= 1)."""
    max_subgoals: int = 10
    """Most subgoals per episode (>= min_subgoals); also the size of ``obs["subgoal_index"]``."""
    subgoal_budget: int = 150
    """Actions per subgoal before it fails (>= 1). Pick it above the house's longest shortest path."""
    modalities: tuple[str, ...] = MODALITIES
    """Allowed goal modalities (non-empty subset of :data:`MODALITIES`)."""
    obs_mode: str = "symbolic"
    """``"symbolic"`` (7x7x3 MiniGrid encoding) or ``"rgb"`` (7t x 7t x 3 render)."""
    obs_tile_size: int = 8
    """Tile size in pixels of the ``"rgb"`` observation (>= 1)."""
    goal_image_shape: tuple[int, int, int] = (56, 56, 3)
    """Shape of ``obs["goal_image"]``: ``(7t, 7t, 3)`` for an integer tile size t >= 1."""
    closed_door_prob: float = 0.5
    """Probability that a door starts closed (never locked)."""
    extra_door_prob: float = 0.5
    """Probability of a door between adjacent rooms not joined by the spanning tree (loops)."""
    success_reward: float = 1.0
    """Reward of a successful ``stop``."""
    step_penalty: float = 0.01
    """Subtracted from the reward of every step."""
    wrong_stop_penalty: float = 0.0
    """Subtracted from the reward of a ``stop`` that fails (0 = GOAT-Bench's rule; a training aid:
    without it a learning agent quits every subgoal early, since a wrong stop costs nothing)."""
    shaping: float = 0.0
    """Coefficient of the potential-based shortest-path shaping (0 = off; see Rewards)."""
    gps: bool = False
    """Add ``obs["gps"]``, the position relative to the episode start (see Observation Space)."""
    new_room_goals: bool = False
    """Every subgoal after the first has no goal instance in the previous target's room, so a
    later subgoal never starts beside its goal (see Subgoals)."""

    def __post_init__(self) -> None:
        who = "GoatGrid"
        check_house_fields(self, who)
        for name, low in (("room_size", 3), ("obs_tile_size", 1)):
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise ConfigError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.n_objects > self.max_objects:
            raise ConfigError(
                f"{who}: {self.n_objects} objects do not fit in {self.n_rooms} room(s) of "
                f"{self.room_size}x{self.room_size}: at most {self.max_objects} (a third of the cells "
                "that can hold an object, so the house stays navigable)"
            )
        if self.obs_mode not in ("symbolic", "rgb"):
            raise ConfigError(f"{who}: obs_mode must be 'symbolic' or 'rgb', got {self.obs_mode!r}")
        shape = tuple(self.goal_image_shape) if isinstance(self.goal_image_shape, (tuple, list)) else ()
        if (
            len(shape) != 3
            or not all(is_int(v) for v in shape)
            or shape[2] != 3
            or shape[0] != shape[1]
            or shape[0] < AGENT_VIEW_SIZE
            or shape[0] % AGENT_VIEW_SIZE
        ):
            raise ConfigError(
                f"{who}: goal_image_shape must be (7t, 7t, 3) for an integer tile size t >= 1 "
                f"(e.g. (56, 56, 3)), got {self.goal_image_shape!r}"
            )
        object.__setattr__(self, "goal_image_shape", tuple(int(v) for v in shape))
        if not isinstance(self.gps, (bool, np.bool_)):
            raise ConfigError(f"{who}: gps must be true or false, got {self.gps!r}")
        for name in ("closed_door_prob", "extra_door_prob"):
            p = getattr(self, name)
            if not isinstance(p, (int, float, np.integer, np.floating)) or not 0.0 <= p <= 1.0:
                raise ConfigError(f"{who}: {name} must be a probability in [0, 1], got {p!r}")
            object.__setattr__(self, name, float(p))

    @property
    def n_rooms(self) -> int:
        return self.layout[0] * self.layout[1]

    @property
    def width(self) -> int:
        return self.layout[0] * (self.room_size + 1) + 1

    @property
    def height(self) -> int:
        return self.layout[1] * (self.room_size + 1) + 1

    @property
    def max_objects(self) -> int:
        """A third of the cells that can hold an object (every interior cell but the at most
        4 in front of a room's doors): random placement that keeps the floor connected reliably
        gets that far (it stalls near 30-45%)."""
        return self.n_rooms * (self.room_size**2 - 4) // 3

    @property
    def goal_tile_size(self) -> int:
        return self.goal_image_shape[0] // AGENT_VIEW_SIZE


def check_house_fields(cfg: Any, who: str) -> None:
    """Check and normalise, on a frozen config dataclass, the fields GoatGrid and GoatWorld share:
    ``layout``, ``n_objects``, ``min_subgoals`` / ``max_subgoals`` / ``subgoal_budget``,
    ``categories`` / ``colors`` / ``modalities``, ``new_room_goals`` and the rewards. Bad
    values: ConfigError."""
    layout = tuple(cfg.layout) if isinstance(cfg.layout, (tuple, list)) else None
    if layout is None or len(layout) != 2 or not all(is_int(v) for v in layout):
        raise ConfigError(f"{who}: layout must be (cols, rows) integers, got {cfg.layout!r}")
    if layout[0] < 1 or layout[1] < 1:
        raise ConfigError(f"{who}: the house needs at least 1 room; layout (cols, rows) = {layout}")
    object.__setattr__(cfg, "layout", (int(layout[0]), int(layout[1])))
    for name in ("n_objects", "min_subgoals", "max_subgoals", "subgoal_budget"):
        value = getattr(cfg, name)
        if not is_int(value) or value < 1:
            raise ConfigError(f"{who}: {name} must be an integer >= 1, got {value!r}")
        object.__setattr__(cfg, name, int(value))
    if cfg.max_subgoals < cfg.min_subgoals:
        raise ConfigError(f"{who}: need min_subgoals <= max_subgoals, got {cfg.min_subgoals} > {cfg.max_subgoals}")
    for name, valid in (("categories", CATEGORIES), ("colors", tuple(COLOR_NAMES)), ("modalities", MODALITIES)):
        object.__setattr__(cfg, name, _names(getattr(cfg, name), valid, name, who))
    if not isinstance(cfg.new_room_goals, (bool, np.bool_)):
        raise ConfigError(f"{who}: new_room_goals must be true or false, got {cfg.new_room_goals!r}")
    for name in ("success_reward", "step_penalty", "wrong_stop_penalty", "shaping"):
        v = getattr(cfg, name)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise ConfigError(f"{who}: {name} must be a finite number, got {v!r}")
        object.__setattr__(cfg, name, float(v))


def _names(value: Any, valid: tuple[str, ...], what: str, who: str) -> tuple[str, ...]:
    """A non-empty tuple of distinct names from ``valid`` (a bare string means one name)."""
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list)) or not names:
        raise ConfigError(f"{who}: {what} must be a non-empty list drawn from {list(valid)}, got {value!r}")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"{who}: unknown {what} {unknown}; valid: {list(valid)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{who}: {what} has duplicates: {list(names)}")
    return tuple(names)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ObjectInstance:
    """One object in the house. ``id`` is privileged (only :class:`GoatOracle` hands it out)."""

    id: int
    category: str
    color: str
    pos: tuple[int, int]
    """World cell ``(x, y)``."""
    room: int
    """Room index ``row * cols + col``."""


@dataclass(frozen=True)
class DoorRecord:
    """A door between two rooms."""

    pos: tuple[int, int]
    color: str
    rooms: tuple[int, int]


@dataclass(frozen=True)
class GoalSpec:
    """The current goal as an agent may see it (no instance id, no position)."""

    modality: str
    """One of :data:`MODALITIES`."""
    category: str
    """One of :data:`CATEGORIES` (given for every modality, as in GOAT-Bench)."""
    text: str
    """``"a box"`` / a unique description / ``""`` for image goals."""
    tokens: np.ndarray
    """``int64[MAX_TOKENS]``: ``text`` in :data:`VOCAB` ids, 0-padded."""
    image: np.ndarray | None
    """``uint8[H, W, 3]`` goal view for image goals, else None."""
    subgoal_index: int
    n_subgoals: int
    steps_left: int
    """Actions left in this subgoal's budget."""


@dataclass
class _Subgoal:
    modality: str
    target: int  # the drawn instance (for category goals: one of the instances that count)
    goal_ids: tuple[int, ...]  # every instance whose stop succeeds
    text: str
    viewpoint: tuple[int, int, int] | None  # image goals: (x, y, direction) of the goal view


# --------------------------------------------------------------------------- pure helpers


def later_targets(instances: Sequence[Any], eligible: list[int], prev: Any, modality: str, new_room_goals: bool) -> list[int]:
    """The ids in ``eligible`` that a ``modality`` subgoal right after one for ``prev`` may ask
    for (GoatGrid's and GoatWorld's plans; instances have ``id``, ``category`` and ``room``).

    Not ``prev`` itself, nor for a category goal ``prev``'s category, unless nothing else is
    eligible (a degenerate house); with ``new_room_goals``, nothing whose goal instances (a
    category goal: every instance of the category) include one in ``prev``'s room, which may
    leave none (the caller redraws the house).
    """
    def goal_rooms(i: int) -> set[int]:
        if modality == "category":
            return {o.room for o in instances if o.category == instances[i].category}
        return {instances[i].room}

    fresh = [
        i for i in eligible
        if i != prev.id and not (modality == "category" and instances[i].category == prev.category)
    ]
    eligible = fresh or eligible
    return [i for i in eligible if prev.room not in goal_rooms(i)] if new_room_goals else eligible


def tokenize(text: str, length: int = MAX_TOKENS) -> np.ndarray:
    """``int64[length]`` ids of the words of ``text`` in :data:`VOCAB` (unknown -> 1), 0-padded.

    Raises :class:`ConfigError` if ``text`` has more than ``length`` words.
    """
    words = text.split()
    if len(words) > length:
        raise ConfigError(f"goal text {text!r} has {len(words)} words, more than {length}")
    out = np.zeros(length, dtype=np.int64)
    out[: len(words)] = [_WORD_TO_ID.get(w, 1) for w in words]
    return out


def detokenize(tokens: Iterable[int]) -> str:
    """Inverse of :func:`tokenize` (padding dropped)."""
    return " ".join(VOCAB[int(t)] for t in tokens if int(t) != 0)


def spl(success: bool, shortest: int, taken: int) -> float:
    """Success weighted by path length: ``success * shortest / max(shortest, taken)``.

    ``shortest`` >= 1 and ``taken`` >= 0 are action counts (the ``stop`` included).
    """
    if shortest < 1 or taken < 0:
        raise ConfigError(f"spl: need shortest >= 1 and taken >= 0, got shortest={shortest}, taken={taken}")
    return float(bool(success)) * shortest / max(shortest, taken)


def aggregate_by_modality(
    modalities: Sequence[str], successes: Sequence[bool], spls: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Per-modality ``{"n", "success", "spl"}`` means over subgoals (e.g. many episodes' lists)."""
    out: dict[str, dict[str, float]] = {}
    for m in MODALITIES:
        idx = [i for i, mm in enumerate(modalities) if mm == m]
        if idx:
            out[m] = {
                "n": float(len(idx)),
                "success": float(np.mean([bool(successes[i]) for i in idx])),
                "spl": float(np.mean([spls[i] for i in idx])),
            }
    return out


_DIRS = tuple((int(v[0]), int(v[1])) for v in DIR_TO_VEC)  # plain ints: numpy scalars are slow here


def _front(x: int, y: int, d: int) -> tuple[int, int]:
    dx, dy = _DIRS[d]
    return x + dx, y + dy


def shortest_plan(
    passable: np.ndarray, closed: np.ndarray, start: tuple[int, int, int], targets: Iterable[tuple[int, int]]
) -> list[int] | None:
    """The fewest actions from pose ``start`` to a successful ``stop``, or None if unreachable.

    Args:
        passable: ``bool[W, H]`` indexed ``[x, y]``: cells the agent may stand on (floor and
            doors, open or closed).
        closed: ``bool[W, H]``: closed doors (entering one costs toggle + forward).
        start: ``(x, y, direction)``, directions as MiniGrid's ``DIR_TO_VEC``.
        targets: cells ``(x, y)`` of the instances that count; ``stop`` succeeds when one is
            directly in front of the agent.

    Returns the action list (:data:`LEFT`, :data:`RIGHT`, :data:`FORWARD`, :data:`TOGGLE`,
    ending with :data:`STOP`). Dijkstra over poses with unit costs per action; a shortest path
    never enters a cell twice, so charging 2 for every closed door on it is exact.
    """
    W, H = passable.shape
    # Flat cell indices y * W + x and plain lists: this search runs at every subgoal start.
    free = np.asarray(passable, dtype=bool).T.ravel().tolist()
    shut = np.asarray(closed, dtype=bool).T.ravel().tolist()
    goal = {int(y) * W + int(x) for x, y in targets}
    x0, y0, d0 = (int(v) for v in start)
    s0 = (y0 * W + x0) * 4 + d0
    best = {s0: 0}
    parent: dict[int, tuple[int, tuple[int, ...]]] = {}
    heap = [(0, s0)]
    while heap:
        cost, s = heapq.heappop(heap)
        if cost > best[s]:
            continue
        cell, d = divmod(s, 4)
        y, x = divmod(cell, W)
        dx, dy = _DIRS[d]
        fx, fy = x + dx, y + dy
        inside = 0 <= fx < W and 0 <= fy < H
        front = fy * W + fx
        if inside and front in goal:
            plan = [STOP]
            while s in parent:
                s, acts = parent[s]
                plan[:0] = acts
            return plan
        moves = [(cell * 4 + (d - 1) % 4, (LEFT,)), (cell * 4 + (d + 1) % 4, (RIGHT,))]
        if inside and free[front]:
            moves.append((front * 4 + d, (TOGGLE, FORWARD) if shut[front] else (FORWARD,)))
        for nxt, acts in moves:
            c = cost + len(acts)
            if c < best.get(nxt, c + 1):
                best[nxt] = c
                parent[nxt] = (s, acts)
                heapq.heappush(heap, (c, nxt))
    return None


def shortest_path_length(
    passable: np.ndarray,
    closed: np.ndarray,
    start: tuple[int, int, int],
    targets: Iterable[tuple[int, int]],
    count_turns: bool = True,
) -> int | None:
    """Fewest actions to a successful ``stop`` (the ``stop`` counted), None if unreachable.

    ``count_turns=True`` (what SPL uses): the length of :func:`shortest_plan`.
    ``count_turns=False``: a geodesic on cells instead of poses (each move 1, a closed door 2,
    plus the ``stop``; turns free, ``start``'s direction ignored) -- a lower bound, for
    comparison with metrics that ignore headings.
    """
    if count_turns:
        plan = shortest_plan(passable, closed, start, targets)
        return None if plan is None else len(plan)
    W, H = passable.shape
    targets = {(int(x), int(y)) for x, y in targets}
    x0, y0 = int(start[0]), int(start[1])
    best = {(x0, y0): 0}
    heap = [(0, x0, y0)]
    while heap:
        cost, x, y = heapq.heappop(heap)
        if cost > best[(x, y)]:
            continue
        if any(_front(x, y, d) in targets for d in range(4)):
            return cost + 1
        for d in range(4):
            fx, fy = _front(x, y, d)
            if 0 <= fx < W and 0 <= fy < H and passable[fx, fy]:
                c = cost + (2 if closed[fx, fy] else 1)
                if c < best.get((fx, fy), c + 1):
                    best[(fx, fy)] = c
                    heapq.heappush(heap, (c, fx, fy))
    return None


_RING = ((0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1))  # N, NE, E, ... NW


def _keeps_floor_connected(blocked: np.ndarray, objects: set[tuple[int, int]], cell: tuple[int, int]) -> bool:
    """Whether an object may go on ``cell`` (``blocked bool[W, H]``: walls and objects so far).

    A local test, so generation needs no search per object: the free 4-neighbours of ``cell``
    must be joined through free cells of its 8-neighbour ring (consecutive ring cells are
    4-adjacent), so any path through ``cell`` can go around it -- the free cells stay
    connected. ``cell`` and every object beside it must keep a free side to be stopped at.
    """
    x, y = cell
    free = [not blocked[x + dx, y + dy] for dx, dy in _RING]
    if not any(free[0::2]):
        return False
    if not all(free):
        start = free.index(False)  # label the runs of free ring cells, starting after a blocked one
        run, runs = 0, [-1] * 8
        for k in range(1, 9):
            i = (start + k) % 8
            if free[i]:
                runs[i] = run
            else:
                run += 1
        if len({runs[i] for i in (0, 2, 4, 6) if free[i]}) != 1:
            return False
    for dx, dy in _RING[0::2]:
        nx, ny = x + dx, y + dy
        if (nx, ny) in objects and not any(
            not blocked[nx + ex, ny + ey] and (nx + ex, ny + ey) != cell for ex, ey in _RING[0::2]
        ):
            return False
    return True


# --------------------------------------------------------------------------- the env


class LifelongGoals:
    """What GoatGrid and GoatWorld share about a lifelong episode: the goal as the agent is
    told it, and the end-of-episode summary in ``info``. Reads the env's ``_subgoals``,
    ``_k`` (current subgoal), ``_instances``, ``_tokens``, ``_goal_image``, ``_taken`` (steps
    spent on this subgoal), ``_results`` ((success, spl, modality) per finished subgoal) and
    ``config.subgoal_budget``."""

    def goal_spec(self) -> GoalSpec:
        """The current goal as the agent is told it (no instance id or position)."""
        if not self._subgoals:
            raise ResetNeeded(f"{type(self).__name__}: call reset() before goal_spec()")
        sub = self._subgoals[self._k]
        return GoalSpec(
            modality=sub.modality,
            category=self._instances[sub.target].category,
            text=sub.text,
            tokens=self._tokens.copy(),
            image=self._goal_image.copy() if sub.modality == "image" else None,
            subgoal_index=self._k,
            n_subgoals=len(self._subgoals),
            steps_left=self.config.subgoal_budget - self._taken,
        )

    def _episode_summary(self) -> dict[str, Any]:
        ok = np.array([r[0] for r in self._results], dtype=bool)
        spls = np.array([r[1] for r in self._results], dtype=np.float64)
        return {
            "success": bool(ok.all()),
            "subgoal_success_rate": float(ok.mean()),
            "spl_mean": float(spls.mean()),
            "n_subgoals": len(self._results),
            # tuples, not arrays: SyncVectorEnv batches arrays only when all have one shape
            "subgoal_successes": tuple(bool(v) for v in ok),
            "subgoal_spls": tuple(float(v) for v in spls),
            "subgoal_modalities": tuple(r[2] for r in self._results),
        }


class GoatGrid(LifelongGoals, MiniGridEnv):
    """GOAT-style lifelong multimodal navigation on MiniGrid (see the module docstring)."""

    metadata = METADATA

    def __init__(self, render_mode: str | None = None, tile_size: int = 32, **kwargs: Any):
        """``render_mode``: None or ``"rgb_array"``; ``tile_size``: pixels per cell of
        :meth:`render`; ``**kwargs``: the fields of :class:`GoatGridConfig`."""
        try:
            self.config = cfg = GoatGridConfig(**kwargs)
        except TypeError as e:  # an unknown keyword
            raise ConfigError(f"GoatGrid: {e}; valid: {list(GoatGridConfig.__dataclass_fields__)}") from None
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"GoatGrid: render_mode must be None or 'rgb_array', got {render_mode!r}")
        super().__init__(
            mission_space=MissionSpace(mission_func=lambda: "go to any thing"),
            width=cfg.width,
            height=cfg.height,
            max_steps=cfg.max_subgoals * cfg.subgoal_budget,  # unused: step() is ours
            agent_view_size=AGENT_VIEW_SIZE,
            render_mode=render_mode,
            tile_size=tile_size,
        )
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        if cfg.obs_mode == "symbolic":  # codes: object 0..10, colour 0..5, state 0..2
            high = np.broadcast_to(np.array(SYMBOLIC_HIGH, np.uint8), (AGENT_VIEW_SIZE, AGENT_VIEW_SIZE, 3))
            image = spaces.Box(0, high, (AGENT_VIEW_SIZE, AGENT_VIEW_SIZE, 3), np.uint8)
        else:
            side = AGENT_VIEW_SIZE * cfg.obs_tile_size
            image = spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.observation_space = spaces.Dict(
            {
                "image": image,
                "direction": spaces.Discrete(4),
                "goal_modality": spaces.Discrete(len(MODALITIES)),
                "goal_category": spaces.Discrete(len(CATEGORIES)),
                "goal_text": spaces.Box(0, len(VOCAB) - 1, (MAX_TOKENS,), np.int64),
                "goal_image": spaces.Box(0, 255, cfg.goal_image_shape, np.uint8),
                "subgoal_index": spaces.Discrete(cfg.max_subgoals),
            }
        )
        if cfg.gps:
            span = float(max(cfg.width, cfg.height))
            self.observation_space["gps"] = spaces.Box(-span, span, (2,), np.float32)
        self._zero_image = np.zeros(cfg.goal_image_shape, np.uint8)
        self._room_step, self._cols = cfg.room_size + 1, cfg.layout[0]  # for room_of, called a lot
        self._instances: list[ObjectInstance] = []
        self._doors: list[tuple[Door, DoorRecord]] = []
        self._subgoals: list[_Subgoal] = []
        self._active = False
        self._oracle = GoatOracle(self)

    # -- house generation (called by MiniGridEnv.reset) --------------------------------

    def _gen_grid(self, width: int, height: int) -> None:
        for _ in range(_MAX_GENERATION_ATTEMPTS):
            if self._try_generate():
                return
        raise ConfigError(
            f"GoatGrid: no valid house in {_MAX_GENERATION_ATTEMPTS} attempts with {self.config}: "
            "objects cut the house apart, or no instance can be described uniquely; "
            "use fewer objects, more colours or rooms, or more modalities"
        )

    def _try_generate(self) -> bool:
        """Draw a house, its objects, the agent and the subgoal plan; False if invalid."""
        cfg, rng = self.config, self.np_random
        cols, rows = cfg.layout
        s = cfg.room_size
        self.grid = Grid(cfg.width, cfg.height)
        self.grid.wall_rect(0, 0, cfg.width, cfg.height)
        for i in range(1, cols):
            self.grid.vert_wall(i * (s + 1), 0)
        for j in range(1, rows):
            self.grid.horz_wall(0, j * (s + 1))

        # Doors: a random spanning tree over adjacent rooms (Kruskal on shuffled edges), plus
        # extra doors that make loops.
        edges = [(r, r + 1) for r in range(cols * rows) if r % cols < cols - 1]
        edges += [(r, r + cols) for r in range(cols * (rows - 1))]
        order = rng.permutation(len(edges))
        root = list(range(cols * rows))

        def find(a: int) -> int:
            while root[a] != a:
                a = root[a]
            return a

        door_edges = []
        for k in order:
            a, b = edges[k]
            ra, rb = find(a), find(b)
            if ra != rb:
                root[ra] = rb
                door_edges.append((a, b))
            elif rng.random() < cfg.extra_door_prob:
                door_edges.append((a, b))
        # Door colours: all six without repetition while they last, so "the room with the
        # yellow door" usually narrows things down.
        palette = [COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))]
        self._doors = []
        reserved: set[tuple[int, int]] = set()
        for k, (a, b) in enumerate(sorted(door_edges)):
            offset = int(rng.integers(0, s))
            col, row = a % cols, a // cols  # room a; room b is to its right (b = a + 1) or below
            if b == a + 1:  # door in the vertical wall between them
                pos = ((col + 1) * (s + 1), row * (s + 1) + 1 + offset)
                reserved |= {(pos[0] - 1, pos[1]), (pos[0] + 1, pos[1])}
            else:
                pos = (col * (s + 1) + 1 + offset, (row + 1) * (s + 1))
                reserved |= {(pos[0], pos[1] - 1), (pos[0], pos[1] + 1)}
            door = Door(palette[k % len(palette)], is_open=bool(rng.random() >= cfg.closed_door_prob))
            self.put_obj(door, *pos)
            self._doors.append((door, DoorRecord(pos, door.color, (a, b))))

        # Objects: balanced categories, uniform colours, on cells visited in random order and
        # taken only if the floor stays connected (see _keeps_floor_connected).
        floor = [
            (x, y)
            for y in range(cfg.height)
            for x in range(cfg.width)
            if self.grid.get(x, y) is None and (x, y) not in reserved
        ]
        blocked = np.array(
            [[isinstance(self.grid.get(x, y), Wall) for y in range(cfg.height)] for x in range(cfg.width)]
        )
        cells: list[tuple[int, int]] = []
        for i in rng.permutation(len(floor)):
            if len(cells) == cfg.n_objects:
                break
            if _keeps_floor_connected(blocked, set(cells), floor[i]):
                blocked[floor[i]] = True
                cells.append(floor[i])
        if len(cells) < cfg.n_objects:
            return False
        cats = [cfg.categories[i % len(cfg.categories)] for i in range(cfg.n_objects)]
        cats = [cats[i] for i in rng.permutation(cfg.n_objects)]
        self._instances = []
        for i, (cat, pos) in enumerate(zip(cats, cells)):
            color = cfg.colors[int(rng.integers(0, len(cfg.colors)))]
            self.put_obj(_OBJECT_CLASSES[cat](color), *pos)
            self._instances.append(ObjectInstance(i, cat, color, pos, self.room_of(pos)))
        # The agent: a random floor cell no object took (door-front cells allowed).
        starts = [
            (x, y)
            for y in range(cfg.height)
            for x in range(cfg.width)
            if self.grid.get(x, y) is None and self.room_of((x, y)) >= 0
        ]
        self.agent_pos = starts[int(rng.integers(0, len(starts)))]
        self.agent_dir = int(rng.integers(0, 4))
        self._cache_static()
        return self._house_is_navigable() and self._draw_plan()

    def _cache_static(self) -> None:
        """Arrays for path planning: ``_passable bool[W, H]`` (floor and door cells)."""
        W, H = self.config.width, self.config.height
        self._passable = np.zeros((W, H), dtype=bool)
        for x in range(W):
            for y in range(H):
                obj = self.grid.get(x, y)
                self._passable[x, y] = obj is None or obj.type == "door"
        self._room_doors: dict[int, set[str]] = {r: set() for r in range(self.config.n_rooms)}
        for _, rec in self._doors:
            for r in rec.rooms:
                self._room_doors[r].add(rec.color)

    def _house_is_navigable(self) -> bool:
        """All passable cells connected, and every object has a passable side (what the
        placement rule guarantees; checked once per house, as a safety net)."""
        passable = set(zip(*(v.tolist() for v in np.nonzero(self._passable))))
        start = tuple(self.agent_pos)
        seen = {start}
        queue = deque([start])
        while queue:
            x, y = queue.popleft()
            for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if nxt in passable and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        if len(seen) != len(passable):
            return False
        return all(any(_front(*o.pos, d) in seen for d in range(4)) for o in self._instances)

    # -- goals -------------------------------------------------------------------------

    def room_of(self, cell: tuple[int, int]) -> int:
        """Room index (``row * cols + col``) of a floor cell; -1 for walls, doors and cells
        outside the grid."""
        x, y = int(cell[0]), int(cell[1])
        step = self._room_step
        if not (0 < x < self.width and 0 < y < self.height) or x % step == 0 or y % step == 0:
            return -1
        return (y // step) * self._cols + x // step

    def _descriptions(self, inst: ObjectInstance) -> list[str]:
        """Every description of the three forms that matches ``inst`` and nothing else."""
        out = []
        same = [o for o in self._instances if o.category == inst.category and o.color == inst.color]
        if len(same) == 1:
            out.append(f"the {inst.color} {inst.category}")
        for dc in sorted(self._room_doors[inst.room]):
            rooms = {r for r, colours in self._room_doors.items() if dc in colours}
            if [o.id for o in same if o.room in rooms] == [inst.id]:
                out.append(f"the {inst.color} {inst.category} in the room with the {dc} door")
            if [o.id for o in self._instances if o.category == inst.category and o.room in rooms] == [inst.id]:
                out.append(f"the {inst.category} in the room with the {dc} door")
        return out

    def _viewpoints(self, inst: ObjectInstance) -> list[tuple[int, int, int]]:
        """Candidate goal-image poses: free floor cells of the target's room 1-3 cells in front
        of it and at most one to the side, facing along that line (visibility is checked by
        :meth:`_sees` only for the pose drawn: it costs a view computation)."""
        out = []
        tx, ty = inst.pos
        for d in range(4):
            fx, fy = _front(0, 0, d)  # forward unit vector; right is (-fy, fx)
            for dist in (1, 2, 3):
                for side in (-1, 0, 1):
                    x, y = tx - dist * fx - side * fy, ty - dist * fy + side * fx
                    if self.room_of((x, y)) == inst.room and self.grid.get(x, y) is None:
                        out.append((x, y, d))
        return out

    def _sees(self, pose: tuple[int, int, int], cell: tuple[int, int]) -> bool:
        """Whether MiniGrid's egocentric view from ``pose`` shows ``cell`` (walls and closed
        doors occlude)."""
        saved = (self.agent_pos, self.agent_dir)
        self.agent_pos, self.agent_dir = pose[:2], pose[2]
        try:
            vis = self.gen_obs_grid()[1]
            rel = self.relative_coords(*cell)
            return rel is not None and bool(vis[rel[0], rel[1]])
        finally:
            self.agent_pos, self.agent_dir = saved

    def _draw_plan(self) -> bool:
        """Draw the subgoals; False if some drawn modality has no eligible instance."""
        cfg, rng = self.config, self.np_random
        options = {  # per modality: instance id -> its descriptions / viewpoints (computed once)
            "category": {o.id: [None] for o in self._instances},
            "language": {o.id: self._descriptions(o) for o in self._instances} if "language" in cfg.modalities else {},
            "image": {o.id: self._viewpoints(o) for o in self._instances} if "image" in cfg.modalities else {},
        }
        n = int(rng.integers(cfg.min_subgoals, cfg.max_subgoals + 1))
        self._subgoals = []
        prev: ObjectInstance | None = None
        for _ in range(n):
            modality = cfg.modalities[int(rng.integers(0, len(cfg.modalities)))]
            opts = options[modality]
            eligible = [i for i, o in opts.items() if o]
            if prev is not None:
                eligible = later_targets(self._instances, eligible, prev, modality, cfg.new_room_goals)
            target = None
            while eligible and target is None:
                candidate = self._instances[eligible[int(rng.integers(0, len(eligible)))]]
                if modality == "image":  # a random candidate pose that really shows the target
                    poses = opts[candidate.id]
                    order = rng.permutation(len(poses))
                    choice = next((poses[j] for j in order if self._sees(poses[j], candidate.pos)), None)
                    if choice is None:  # never seen from anywhere near: not an image goal
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

    def _begin_subgoal(self, k: int) -> None:
        """Make subgoal ``k`` current from the agent's pose (nothing else changes)."""
        self._k = k
        self._taken = 0
        sub = self._subgoals[k]
        self._tokens = tokenize(sub.text)
        if sub.modality == "image":
            x, y, d = sub.viewpoint
            self._goal_image = self._render_pov((x, y), d, self.config.goal_tile_size)
        else:
            self._goal_image = self._zero_image
        self._shortest = self._distance()
        if self._shortest is None:  # cannot happen in a navigable house; a bug if it does
            raise RunError(f"GoatGrid: subgoal {k} is unreachable from {self.agent_pose}")

    def _distance(self) -> int | None:
        sub = self._subgoals[self._k]
        return shortest_path_length(
            self._passable, self._closed_doors(), self.agent_pose, [self._instances[i].pos for i in sub.goal_ids]
        )

    def _closed_doors(self) -> np.ndarray:
        closed = np.zeros_like(self._passable)
        for door, rec in self._doors:
            closed[rec.pos] = not door.is_open
        return closed

    # -- gymnasium API -----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New house, objects, agent and subgoal plan; returns ``(obs, info)`` of subgoal 0."""
        super().reset(seed=seed)  # MiniGridEnv.reset: seeds np_random and calls _gen_grid
        self._results: list[tuple[bool, float, str]] = []
        self._active = True
        self._start_cell = tuple(int(v) for v in self.agent_pos)
        self._begin_subgoal(0)
        sub = self._subgoals[0]
        return self._obs(), {"subgoal_index": 0, "modality": sub.modality, "goal_text": sub.text}

    def step(self, action):
        if not self._active:
            raise ResetNeeded("GoatGrid: call reset() before step() (and after the last subgoal)")
        if not (is_int(action) and 0 <= int(action) < len(ACTION_NAMES)):
            raise ConfigError(f"GoatGrid: action must be an integer in 0..{len(ACTION_NAMES) - 1}, got {action!r}")
        cfg, a = self.config, int(action)
        self.step_count += 1
        self._taken += 1
        reward = -cfg.step_penalty
        d_before = self._distance() if cfg.shaping else None
        fx, fy = self.front_pos
        front = self.grid.get(fx, fy)
        if a == LEFT:
            self.agent_dir = (self.agent_dir - 1) % 4
        elif a == RIGHT:
            self.agent_dir = (self.agent_dir + 1) % 4
        elif a == FORWARD:
            if front is None or front.can_overlap():
                self.agent_pos = (int(fx), int(fy))
        elif a == TOGGLE:
            if front is not None and front.type == "door":
                front.toggle(self, (fx, fy))

        sub = self._subgoals[self._k]
        info: dict[str, Any] = {"subgoal_index": self._k, "modality": sub.modality, "goal_text": sub.text}
        # objects never move (nothing can be picked up), so their recorded cells are current
        success = a == STOP and any(self._instances[i].pos == (fx, fy) for i in sub.goal_ids)
        terminated = False
        if a == STOP or self._taken >= cfg.subgoal_budget:
            score = spl(success, self._shortest, self._taken)
            reward += cfg.success_reward if success else (-cfg.wrong_stop_penalty if a == STOP else 0.0)
            info.update(subgoal_success=success, spl=score, shortest=self._shortest, taken=self._taken)
            self._results.append((success, score, sub.modality))
            if self._k + 1 < len(self._subgoals):
                self._begin_subgoal(self._k + 1)
            else:
                terminated, self._active = True, False
                info.update(self._episode_summary())
        if cfg.shaping:  # potential-based (see Rewards): after the last subgoal the potential is 0
            reward += cfg.shaping * (d_before - (0 if terminated else self._distance()))
        return self._obs(), float(reward), terminated, False, info

    def _obs(self) -> dict[str, Any]:
        sub = self._subgoals[self._k]
        image = self.gen_obs()["image"] if self.config.obs_mode == "symbolic" else self.egocentric_rgb()
        obs = {
            "image": image,
            "direction": int(self.agent_dir),
            "goal_modality": MODALITIES.index(sub.modality),
            "goal_category": CATEGORIES.index(self._instances[sub.target].category),
            "goal_text": self._tokens.copy(),
            "goal_image": self._goal_image.copy(),
            "subgoal_index": self._k,
        }
        if self.config.gps:
            x0, y0 = self._start_cell
            obs["gps"] = np.array([self.agent_pos[0] - x0, self.agent_pos[1] - y0], np.float32)
        return obs

    def render(self) -> np.ndarray | None:
        """``uint8[H*tile, W*tile, 3]`` top-down view of the whole house: MiniGrid's render
        (agent triangle, its field of view lightened) with a cyan frame around every instance
        that satisfies the current goal."""
        if self.render_mode != "rgb_array":
            gym.logger.warn("GoatGrid.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        img = self.get_frame(self.highlight, self.tile_size, agent_pov=False)
        if self._subgoals:
            t, w = self.tile_size, max(1, self.tile_size // 10)
            for i in self._subgoals[self._k].goal_ids:
                x, y = self._instances[i].pos
                tile = img[y * t : (y + 1) * t, x * t : (x + 1) * t]
                tile[:w], tile[-w:], tile[:, :w], tile[:, -w:] = _HIGHLIGHT, _HIGHLIGHT, _HIGHLIGHT, _HIGHLIGHT
        return img

    # -- what memories and agents may read ----------------------------------------------

    @property
    def agent_pose(self) -> tuple[int, int, int]:
        """``(x, y, direction)`` of the agent (direction as in ``obs["direction"]``)."""
        return int(self.agent_pos[0]), int(self.agent_pos[1]), int(self.agent_dir)

    def view_to_world(self, vx: int, vy: int) -> tuple[int, int]:
        """World cell ``(x, y)`` of egocentric view cell ``[vx, vy]`` (the symbolic image's
        index; the agent is at ``[3, 6]``). Inverse of MiniGrid's ``get_view_coords``. The cell
        may lie outside the grid for views near the border."""
        f, hs = DIR_TO_VEC[self.agent_dir], AGENT_VIEW_SIZE // 2
        r = (-f[1], f[0])
        ahead, side = AGENT_VIEW_SIZE - 1 - vy, vx - hs
        return int(self.agent_pos[0] + ahead * f[0] + side * r[0]), int(self.agent_pos[1] + ahead * f[1] + side * r[1])

    def egocentric_rgb(self, tile_size: int | None = None) -> np.ndarray:
        """``uint8[7t, 7t, 3]`` RGB egocentric view of the current pose (MiniGrid's POV render;
        ``t = tile_size`` or ``obs_tile_size``), whatever ``obs_mode`` is."""
        return self.get_pov_render(tile_size or self.config.obs_tile_size)

    def _render_pov(self, pos: tuple[int, int], d: int, tile_size: int) -> np.ndarray:
        saved = (self.agent_pos, self.agent_dir)
        self.agent_pos, self.agent_dir = pos, d
        try:
            return self.get_pov_render(tile_size)
        finally:
            self.agent_pos, self.agent_dir = saved

    @property
    def oracle(self) -> GoatOracle:
        """Privileged accessor (instance ids, positions, plans): tests and oracle agents only."""
        return self._oracle


class SubgoalOracle:
    """Privileged view of a lifelong goal env (GoatGrid, GoatWorld): what a memory must *not*
    read -- instance ids and each subgoal's target. Read from the env on access: always current."""

    def __init__(self, env: Any):
        self._env = env

    @property
    def instances(self) -> tuple:
        return tuple(self._env._instances)

    @property
    def n_subgoals(self) -> int:
        return len(self._env._subgoals)

    def target_id(self, k: int | None = None) -> int:
        """The drawn target instance of subgoal ``k`` (default: current)."""
        return self._sub(k).target

    def goal_ids(self, k: int | None = None) -> tuple[int, ...]:
        """Every instance whose ``stop`` succeeds for subgoal ``k`` (default: current)."""
        return self._sub(k).goal_ids

    def goal_viewpoint(self, k: int | None = None):
        """Pose the goal image of subgoal ``k`` was rendered from (None: not an image goal)."""
        return self._sub(k).viewpoint

    def modality(self, k: int | None = None) -> str:
        return self._sub(k).modality

    def text(self, k: int | None = None) -> str:
        return self._sub(k).text

    def _sub(self, k: int | None):
        if not self._env._subgoals:
            raise ResetNeeded(f"{type(self._env).__name__}: call reset() before using the oracle")
        return self._env._subgoals[self._env._k if k is None else k]


class GoatOracle(SubgoalOracle):
    """:class:`SubgoalOracle` of a :class:`GoatGrid`, plus doors, shortest plans and the grid."""

    @property
    def doors(self) -> tuple[DoorRecord, ...]:
        return tuple(rec for _, rec in self._env._doors)

    def door_is_open(self, pos: tuple[int, int]) -> bool:
        return bool(self._env.grid.get(*pos).is_open)

    @property
    def shortest(self) -> int:
        """Shortest action count of the current subgoal from its start pose (SPL's numerator)."""
        return self._env._shortest

    def passable(self) -> np.ndarray:
        """``bool[W, H]``: floor and door cells."""
        return self._env._passable.copy()

    def closed_doors(self) -> np.ndarray:
        """``bool[W, H]``: closed doors now."""
        return self._env._closed_doors()

    def plan(self) -> list[int]:
        """A shortest action list from the agent's pose to a successful ``stop``."""
        env = self._env
        plan = shortest_plan(
            env._passable, env._closed_doors(), env.agent_pose, [env._instances[i].pos for i in self.goal_ids()]
        )
        if plan is None:
            raise RunError("GoatGrid oracle: the current goal is unreachable")
        return plan



class OracleAgent:
    """Walks a shortest plan to the current goal (read from :attr:`GoatGrid.oracle`) and stops.

    Replans every step, so it stays optimal whatever happened before; SPL is exactly 1.
    """

    def act(self, env: gym.Env) -> int:
        return env.unwrapped.oracle.plan()[0]


def parse_description(text: str) -> tuple[str | None, str, str | None]:
    """``(colour or None, category, door colour or None)`` of a language goal text.

    Raises :class:`ConfigError` if ``text`` is not one of the three generated forms.
    """
    m = re.fullmatch(r"the (?:(\w+) )?(\w+)(?: in the room with the (\w+) door)?", text)
    if m is None or m.group(2) not in CATEGORIES:
        raise ConfigError(f"not a GoatGrid description: {text!r}")
    return m.group(1), m.group(2), m.group(3)
