"""Modular navigation agents for :mod:`rlmem.envs.goat_grid`: GOAT's and a memoryless control.

Every agent has ``reset()`` (a new episode: a new house) and ``act(obs, info, view) -> action``,
where ``view`` is an :class:`EnvView`: the only part of the env an agent may read (pose,
``view_to_world``, ``egocentric_rgb``, ``goal_spec``), so no agent can reach the privileged
``oracle`` (reading anything else raises). ``obs`` must be GoatGrid's symbolic observation.

- :class:`GoatModularAgent` (``goat-modular``, after GOAT, Chang et al. 2023): a
  :class:`~rlmem.memory.semantic_map.SemanticMap` kept for the whole episode, a goal matcher
  per modality, frontier exploration (nearest frontier: a Dijkstra search over poses on
  known passable cells, turns counted, to face an unknown cell next to known floor) and a
  planner on the occupancy map (the same pose search; closed doors cost a ``toggle``). Once a
  goal is matched it walks to a cell facing the instance and issues ``stop``; the plan treats
  unknown cells as free (optimistic) and is redone every step as the map fills in.
- :class:`MemorylessAgent` (``memoryless``): the same explorer and matcher, but its map and
  instance records are wiped at the start of every subgoal: the control whose later-subgoal
  success must not rise.

:class:`~rlmem.agents.smg_agent.SMGAgent` (MG-Nav's graph agent) lives in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rlmem.envs.goat_grid import FORWARD, LEFT, RIGHT, STOP, GoalSpec, shortest_plan
from rlmem.errors import ConfigError
from rlmem.memory.semantic_map import UNKNOWN, Candidate, Occupancy, SemanticMap

__all__ = [
    "ALLOWED",
    "EnvView",
    "GoatAgentConfig",
    "GoatModularAgent",
    "MemorylessAgent",
    "NavAgent",
    "final_pose",
    "front_cell",
    "plan_to_face",
]

ALLOWED = ("agent_pose", "view_to_world", "egocentric_rgb", "goal_spec")
"""What :class:`EnvView` exposes of a GoatGrid (the module docstring of goat_grid lists them)."""


class EnvView:
    """The read-only window a navigation agent gets on a GoatGrid.

    Holds closures over the env's four allowed accessors, not the env itself; any other
    attribute (``oracle``, ``grid``, ``unwrapped``...) raises :class:`AttributeError`, and
    nothing can be assigned.
    """

    __slots__ = ("_pose", "_view_to_world", "_rgb", "_goal")

    def __init__(self, env: Any):
        base = getattr(env, "unwrapped", env)
        missing = [n for n in ALLOWED if not hasattr(type(base), n)]
        if missing:
            raise ConfigError(f"EnvView: {type(base).__name__} is not a GoatGrid (no {', '.join(missing)})")
        object.__setattr__(self, "_pose", lambda: base.agent_pose)
        object.__setattr__(self, "_view_to_world", base.view_to_world)
        object.__setattr__(self, "_rgb", base.egocentric_rgb)
        object.__setattr__(self, "_goal", base.goal_spec)

    @property
    def agent_pose(self) -> tuple[int, int, int]:
        """``(x, y, direction)`` (odometry)."""
        return self._pose()

    def view_to_world(self, vx: int, vy: int) -> tuple[int, int]:
        """World cell of egocentric view cell ``[vx, vy]``."""
        return self._view_to_world(vx, vy)

    def egocentric_rgb(self, tile_size: int | None = None) -> np.ndarray:
        """``uint8[7t, 7t, 3]`` render of the current view."""
        return self._rgb(tile_size)

    def goal_spec(self) -> GoalSpec:
        """The current goal as the agent is told it."""
        return self._goal()

    def __getattr__(self, name: str):
        raise AttributeError(
            f"EnvView exposes only {', '.join(ALLOWED)}; {name!r} is not for agents (the oracle is privileged)"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("EnvView is read-only")


class NavAgent:
    """Interface of the navigation agents: ``reset()`` then ``act(obs, info, view)`` every step.

    ``stats`` counts what an agent did (its keys depend on the agent), for diagnostics.
    """

    name = "nav"

    def reset(self) -> None:
        raise NotImplementedError

    def act(self, obs: dict, info: dict, view: EnvView) -> int:
        raise NotImplementedError


# --------------------------------------------------------------------------- planning


def plan_to_face(
    occ: Occupancy, pose: Sequence[int], targets: Sequence[tuple[int, int]], *, optimistic: bool = False
) -> list[int] | None:
    """Fewest actions from ``pose`` to face one of ``targets`` (ending with ``STOP``), or None.

    A Dijkstra search over poses (:func:`rlmem.envs.goat_grid.shortest_plan`) on the cells
    ``occ`` knows to be floor or door (closed doors: toggle + forward); ``optimistic`` also lets
    it cross unknown cells (replan as they are revealed).
    """
    if not targets:
        return None
    passable = occ.passable()
    if optimistic:
        passable = passable | (occ.kind == UNKNOWN)
    W, H = passable.shape
    x, y = int(pose[0]), int(pose[1])
    if not (0 <= x < W and 0 <= y < H):
        return None
    return shortest_plan(passable, occ.closed, (x, y, int(pose[2])), targets)


def final_pose(pose: Sequence[int], plan: Sequence[int]) -> tuple[int, int, int]:
    """The pose after the moves of ``plan`` (each forward assumed to succeed; toggles and stop
    do not move)."""
    x, y, d = (int(v) for v in pose)
    for a in plan:
        if a == LEFT:
            d = (d - 1) % 4
        elif a == RIGHT:
            d = (d + 1) % 4
        elif a == FORWARD:
            x, y = x + (1, 0, -1, 0)[d], y + (0, 1, 0, -1)[d]
    return x, y, d


def front_cell(pose: Sequence[int]) -> tuple[int, int]:
    x, y, d = (int(v) for v in pose)
    return x + (1, 0, -1, 0)[d], y + (0, 1, 0, -1)[d]


def _cells(mask: np.ndarray) -> list[tuple[int, int]]:
    return [(int(x), int(y)) for x, y in zip(*np.nonzero(mask))]


# --------------------------------------------------------------------------- GOAT


@dataclass(frozen=True)
class GoatAgentConfig:
    """Settings of :class:`GoatModularAgent` / :class:`MemorylessAgent` (``[policy] memory_kwargs``)."""

    language_threshold: float = 1.0
    """Fraction of a description's parts (category, colour, room) confirmed before a language goal matches."""
    image_threshold: float = 0.9
    """Minimum agreement between the goal image and an instance's surroundings for an image match."""
    image_min_overlap: int = 8
    """Minimum number of cells compared for an image match."""
    max_views: int = 8
    """Views (pose, symbolic view, RGB crop) kept per instance record."""

    def make_map(self) -> SemanticMap:
        return SemanticMap(self.language_threshold, self.image_threshold, self.image_min_overlap, self.max_views)


class GoatModularAgent(NavAgent):
    """GOAT: semantic map + goal matcher + frontier exploration + planner (see the module docstring).

    Per step: integrate the view, match the goal; if some instance matches, take the first
    action of a plan to face it (nearest of the matches for category goals, best score
    otherwise) -- the plan ends with ``stop``; if none matches, explore the nearest frontier
    (kept as the target until it is seen); once nothing is left to explore, settle for the
    best candidate below threshold, else ``stop``.
    """

    name = "goat-modular"

    def __init__(self, config: GoatAgentConfig | None = None):
        self.config = config or GoatAgentConfig()
        self.config.make_map()  # bad thresholds fail here, not at the first step
        self.reset()

    def reset(self) -> None:
        self.map = self.config.make_map()
        self.t = 0
        self._subgoal: int | None = None
        self._frontier: tuple[int, int] | None = None
        self.stats = {"steps": 0, "explore": 0, "goal": 0, "fallback": 0}

    def _begin_subgoal(self) -> None:
        self._frontier = None

    def act(self, obs: dict, info: dict, view: EnvView) -> int:
        pose = view.agent_pose
        k = int(obs["subgoal_index"])
        if k != self._subgoal:
            self._subgoal = k
            self._begin_subgoal()
        self.t += 1
        self.stats["steps"] += 1
        self.map.update(obs["image"], pose, self.t, rgb_fn=view.egocentric_rgb)
        goal = view.goal_spec()
        matched = self.map.match(goal)  # the planner picks the nearest of equals
        if matched:
            action = self._go_to(matched, pose, goal)
            if action is not None:
                self.stats["goal"] += 1
                return action
        action = self._explore(pose)
        if action is not None:
            self.stats["explore"] += 1
            return action
        unsure = self.map.candidates(goal)  # the house is explored: best guess
        if unsure:
            action = self._go_to(unsure, pose, goal)
            if action is not None:
                self.stats["fallback"] += 1
                return action
        return STOP

    def _go_to(self, cands: list[Candidate], pose: Sequence[int], goal: GoalSpec) -> int | None:
        if goal.modality == "category":  # any instance counts: the planner picks the nearest
            targets = [c.record.cell for c in cands]
        else:
            best = (cands[0].score, cands[0].overlap)
            targets = [c.record.cell for c in cands if (c.score, c.overlap) == best]
        plan = plan_to_face(self.map.occupancy, pose, targets, optimistic=True)
        return None if plan is None else plan[0]

    def _explore(self, pose: Sequence[int]) -> int | None:
        occ = self.map.occupancy
        frontier = occ.frontier()
        if self._frontier is not None and not frontier[self._frontier]:
            self._frontier = None  # seen (or no longer next to known floor)
        plan = None
        if self._frontier is not None:
            plan = plan_to_face(occ, pose, [self._frontier])
        if plan is None:
            plan = plan_to_face(occ, pose, _cells(frontier))
            self._frontier = front_cell(final_pose(pose, plan)) if plan else None
        if not plan or plan[0] == STOP:  # facing an unknown cell cannot last: it is in view
            return None
        return plan[0]


class MemorylessAgent(GoatModularAgent):
    """:class:`GoatModularAgent` whose map and records are wiped at every subgoal start."""

    name = "memoryless"

    def _begin_subgoal(self) -> None:
        super()._begin_subgoal()
        self.map = self.config.make_map()

