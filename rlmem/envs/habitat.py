"""HabitatGoatEnv: the GOAT task on habitat-sim scenes (HM3D, Gibson), with GoatGrid's spaces.

An adapter, not a reimplementation of habitat-lab: it drives ``habitat_sim`` directly
(``Simulator``, ``SimulatorConfiguration(scene_id)``, an RGB ``CameraSensorSpec``, an
``AgentConfiguration`` with ``move_forward`` / ``turn_left`` / ``turn_right``) and reads
habitat's own episode files, so a memory or agent written against
:class:`~rlmem.envs.goat_grid.GoatGrid` or :class:`~rlmem.envs.goat_world.GoatWorld` runs on
photo-realistic scans unchanged.

``habitat_sim`` has no pip wheel for Linux: it installs with conda (``conda install
habitat-sim -c conda-forge -c aihabitat``). It is imported only when a
:class:`HabitatGoatEnv` is built; without it the constructor raises
:class:`~rlmem.errors.ConfigError` with that command, and nothing else in rlmem needs it. The
episode-file parser (:func:`load_episodes`) is plain Python and works without it.

Episodes
--------
``episodes`` is a habitat episode file (``.json`` or ``.json.gz``) of one of two datasets:

- **ObjectNav-v1** (HM3D / Gibson / MP3D ObjectNav): episodes with ``scene_id``,
  ``start_position`` ``[x, y, z]``, ``start_rotation`` (quaternion ``[x, y, z, w]``) and
  ``object_category``; the goals are inline (``episode["goals"]``) or in the file's
  ``goals_by_category`` under ``"<scene file name>_<category>"``. Each goal has ``position``,
  ``object_id``, ``object_category`` and ``view_points`` (``[{"agent_state": {"position":
  ...}}]``). Every instance of the category counts: a ``"category"`` subgoal ``"a chair"``.
- **InstanceImageNav-v1** (HM3D instance image nav): episodes with ``goal_object_id``,
  ``goal_image_id`` and ``object_category``; the goal is the file's ``goals`` entry
  ``"<scene name without .basis.glb>_<goal_object_id>"``, with ``view_points`` and
  ``image_goals`` (camera ``position``, ``rotation``, ``hfov``, ``image_dimensions``). One
  instance counts: an ``"image"`` subgoal whose goal image is rendered in the scene from
  ``image_goals[goal_image_id]``'s camera pose (with this env's camera resolution and field of
  view, so ``goal_image`` has ``image``'s shape).

Only the episodes of ``scene`` (matched by file name) are used. GOAT's *language* goals come
from GOAT-Bench's own files, which this adapter does not read: every subgoal here is a
category or an image goal.

Task
----
As GoatGrid / GoatWorld: an episode is ``min_subgoals..max_subgoals`` subgoals drawn from the
scene's parsed episodes (without repetition while they last), in one scene with no reset
between them. The agent starts at the first drawn episode's start pose; later subgoals start
where the agent stands (their start poses are ignored).

Action Space
------------
``Discrete(5)``: 0 ``turn_left``, 1 ``turn_right`` (``turn_degrees``, 30), 2 ``move_forward``
(``forward_step``, 0.25 m; habitat slides along obstacles), 3 toggle (no effect: these scenes
have no doors to open), 4 ``stop``.

Observation Space
-----------------
GoatGrid's keys: ``image`` ``uint8[obs_height, obs_width, 3]`` (the RGB sensor, 0.88 m high,
``hfov`` 79 degrees), ``direction`` ``Discrete(360 / turn_degrees)`` (the yaw rounded to a
multiple of the turn; habitat's turns are exact, so the offset stays fixed in an episode),
``goal_modality`` ``Discrete(3)`` (:data:`~rlmem.envs.goat_grid.MODALITIES`), ``goal_category``
``Discrete(len(categories))`` (the scene's categories in the file, sorted: :attr:`categories`),
``goal_text`` ``int64[MAX_TOKENS]`` (ids in :attr:`vocab`: GoatGrid's vocabulary followed by
the category words; ``"a chair"``), ``goal_image`` (``image``'s shape; zeros for category
goals), ``subgoal_index`` ``Discrete(max_subgoals)``.

Success and SPL
---------------
As GOAT-Bench: ``stop`` succeeds when the geodesic distance (habitat's navmesh) from the agent
to the nearest view point of a goal instance is at most ``success_distance`` (0.25 m); when
``success_angle`` < 180 the agent must also face the instance's centre within that many
degrees. ``SPL = success * shortest / max(shortest, taken)`` in metres
(:func:`rlmem.envs.goat_world.path_spl`): ``shortest`` is the geodesic from the subgoal's start
to the nearest view point, ``taken`` the distance the agent moved. Rewards, the budget and the
info keys are GoatWorld's.

Tests run only where ``habitat_sim`` imports (and a scene is available); they cannot run on
machines without conda's habitat-sim.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rlmem.envs._vec import is_int
from rlmem.envs.goat_grid import ACTION_NAMES, FORWARD, LEFT, MAX_TOKENS, MODALITIES, RIGHT, STOP, VOCAB, GoalSpec
from rlmem.envs.goat_world import path_spl
from rlmem.errors import ConfigError, RunError

__all__ = ["HABITAT_HINT", "HabitatGoatEnv", "HabitatSubgoal", "ImageCamera", "load_episodes"]

HABITAT_HINT = "habitat-sim installs with conda: conda install habitat-sim -c conda-forge -c aihabitat"

METADATA = {"render_modes": ["rgb_array"], "render_fps": 10, "memory_types": ("spatial", "object")}


# --------------------------------------------------------------------------- episode files


@dataclass(frozen=True)
class ImageCamera:
    """The camera of an instance-image goal (InstanceImageNav's ``image_goals[i]``)."""

    position: tuple[float, float, float]
    rotation: tuple[float, float, float, float]
    """Quaternion ``(x, y, z, w)``."""
    hfov: float
    image_dimensions: tuple[int, int]


@dataclass(frozen=True)
class HabitatSubgoal:
    """One parsed habitat episode, as a GOAT subgoal."""

    episode_id: str
    scene_id: str
    start_position: tuple[float, float, float]
    start_rotation: tuple[float, float, float, float]
    """Quaternion ``(x, y, z, w)``, habitat's coefficient order."""
    modality: str
    """``"category"`` (ObjectNav) or ``"image"`` (InstanceImageNav)."""
    category: str
    object_ids: tuple[str, ...]
    """The instances whose ``stop`` counts (every goal of an ObjectNav episode; one for an image goal)."""
    positions: tuple[tuple[float, float, float], ...]
    """Centre of each counted instance, aligned with ``object_ids``."""
    view_points: tuple[tuple[tuple[float, float, float], ...], ...]
    """Navigable view positions of each counted instance (its centre when the file lists none)."""
    camera: ImageCamera | None
    """The goal image's camera (image goals only)."""


def _vector(value: Any, n: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ConfigError(f"{where}: expected a list of {n} finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _field(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ConfigError(f"{where}: missing {key!r}")
    return d[key]


def _scene_name(scene_id: str) -> str:
    """``"hm3d/val/00800-TEEsavR23oF/TEEsavR23oF.basis.glb"`` -> ``"TEEsavR23oF"`` (InstanceImageNav's key)."""
    name = os.path.basename(scene_id)
    for suffix in (".glb", ".basis"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name


def _goal(goal: Any, where: str) -> tuple[str, str, tuple[float, float, float], tuple[tuple[float, float, float], ...]]:
    """``(object_id, category, position, view positions)`` of a serialized ObjectGoal."""
    position = _vector(_field(goal, "position", where), 3, f"{where}.position")
    category = _field(goal, "object_category", where)
    views = []
    for k, view in enumerate(goal.get("view_points") or []):
        state = _field(view, "agent_state", f"{where}.view_points[{k}]")
        views.append(_vector(_field(state, "position", f"{where}.view_points[{k}]"), 3,
                             f"{where}.view_points[{k}].agent_state.position"))
    return str(goal.get("object_id", "")), str(category), position, tuple(views) or (position,)


def load_episodes(path: str | os.PathLike) -> tuple[HabitatSubgoal, ...]:
    """Parse a habitat ObjectNav-v1 or InstanceImageNav-v1 episode file (``.json`` / ``.json.gz``).

    Returns one :class:`HabitatSubgoal` per episode. Raises :class:`ConfigError` naming the file,
    the episode and the field for a missing file, bad JSON, or a missing / malformed field.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"habitat episodes: no file {str(p)!r}")
    try:
        raw = gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"habitat episodes {str(p)!r}: not a (gzipped) JSON file ({e})") from None
    episodes = _field(data, "episodes", f"habitat episodes {str(p)!r}")
    if not isinstance(episodes, list) or not episodes:
        raise ConfigError(f"habitat episodes {str(p)!r}: 'episodes' must be a non-empty list")
    out = []
    for i, ep in enumerate(episodes):
        where = f"habitat episodes {p.name}: episode {i}"
        if not isinstance(ep, dict):
            raise ConfigError(f"{where}: expected an object, got {type(ep).__name__}")
        scene_id = _field(ep, "scene_id", where)
        if not isinstance(scene_id, str) or not scene_id:
            raise ConfigError(f"{where}: scene_id must be a non-empty string, got {scene_id!r}")
        start_position = _vector(_field(ep, "start_position", where), 3, f"{where}.start_position")
        start_rotation = _vector(_field(ep, "start_rotation", where), 4, f"{where}.start_rotation")
        episode_id = str(ep.get("episode_id", i))
        if "goal_object_id" in ep:  # InstanceImageNav-v1
            key = f"{_scene_name(scene_id)}_{ep['goal_object_id']}"
            goals = _field(data, "goals", f"habitat episodes {p.name}")
            goal = _field(goals, key, f"{where}: goals")
            object_id, category, position, views = _goal(goal, f"{where}: goals[{key!r}]")
            images = _field(goal, "image_goals", f"{where}: goals[{key!r}]")
            k = _field(ep, "goal_image_id", where)
            if not is_int(k) or not isinstance(images, list) or not 0 <= k < len(images):
                raise ConfigError(f"{where}: goal_image_id {k!r} is not an index of the {key!r} image_goals")
            cam = images[k]
            cw = f"{where}: goals[{key!r}].image_goals[{k}]"
            dims = _vector(_field(cam, "image_dimensions", cw), 2, f"{cw}.image_dimensions")
            camera = ImageCamera(
                position=_vector(_field(cam, "position", cw), 3, f"{cw}.position"),
                rotation=_vector(_field(cam, "rotation", cw), 4, f"{cw}.rotation"),
                hfov=_vector([_field(cam, "hfov", cw)], 1, f"{cw}.hfov")[0],
                image_dimensions=(int(dims[0]), int(dims[1])),
            )
            category = str(ep.get("object_category") or category)
            object_id = object_id or str(ep["goal_object_id"])
            out.append(HabitatSubgoal(episode_id, scene_id, start_position, start_rotation, "image", category,
                                      (object_id,), (position,), (views,), camera))
        else:  # ObjectNav-v1
            goals = ep.get("goals") or []
            category = ep.get("object_category")
            if not category and goals and isinstance(goals[0], dict):
                category = goals[0].get("object_category")
            if not category:
                raise ConfigError(f"{where}: missing 'object_category' (and no inline goals to read it from)")
            if not goals:
                key = f"{os.path.basename(scene_id)}_{category}"
                goals = _field(_field(data, "goals_by_category", f"{where}: no inline goals and"), key,
                               f"{where}: goals_by_category")
            if not isinstance(goals, list) or not goals:
                raise ConfigError(f"{where}: no goals for category {category!r}")
            parsed = [_goal(g, f"{where}: goal {j}") for j, g in enumerate(goals)]
            out.append(HabitatSubgoal(episode_id, scene_id, start_position, start_rotation, "category",
                                      str(category), tuple(g[0] for g in parsed), tuple(g[2] for g in parsed),
                                      tuple(g[3] for g in parsed), None))
    return tuple(out)


def category_words(categories: Sequence[str]) -> tuple[str, ...]:
    """The words of the category names (``"tv_monitor"`` -> ``"tv"``, ``"monitor"``) missing from
    GoatGrid's vocabulary, in first-seen order."""
    words: list[str] = []
    for c in categories:
        for w in re.split(r"[\s_]+", c.strip().lower()):
            if w and w not in VOCAB and w not in words:
                words.append(w)
    return tuple(words)


def _category_text(category: str) -> str:
    return "a " + " ".join(w for w in re.split(r"[\s_]+", category.strip().lower()) if w)


# --------------------------------------------------------------------------- the env


def _habitat_sim():
    try:
        import habitat_sim
    except ImportError:
        raise ConfigError(HABITAT_HINT) from None
    return habitat_sim


def _yaw(q) -> float:
    """Yaw (radians, counter-clockwise about +y) of a habitat rotation quaternion (``.w .x .y .z``)."""
    # the heading of the agent's forward axis -z, projected on the floor
    fx = -2 * (q.x * q.z + q.w * q.y)
    fz = -(1 - 2 * (q.x * q.x + q.y * q.y))
    return math.atan2(-fx, -fz)


class HabitatGoatEnv(gym.Env):
    """The GOAT task on a habitat-sim scene with habitat's ObjectNav / InstanceImageNav episodes
    (see the module docstring)."""

    metadata = METADATA

    def __init__(
        self,
        scene: str | None = None,
        episodes: str | None = None,
        render_mode: str | None = None,
        *,
        obs_width: int = 80,
        obs_height: int = 60,
        hfov: float = 79.0,
        camera_height: float = 0.88,
        turn_degrees: int = 30,
        forward_step: float = 0.25,
        success_distance: float = 0.25,
        success_angle: float = 180.0,
        min_subgoals: int = 5,
        max_subgoals: int = 10,
        subgoal_budget: int = 500,
        success_reward: float = 1.0,
        step_penalty: float = 0.01,
        gpu_device_id: int = 0,
    ):
        """``scene``: path of the scene mesh (``.glb``); ``episodes``: path of an ObjectNav-v1 or
        InstanceImageNav-v1 episode file whose episodes include that scene; the rest as in
        :class:`~rlmem.envs.goat_world.GoatWorldConfig`. Raises :class:`ConfigError` first of all
        when ``habitat_sim`` is not installed."""
        habitat_sim = _habitat_sim()
        who = "HabitatGoatEnv"
        if not scene or not episodes:
            raise ConfigError(
                f"{who}: needs scene=PATH.glb and episodes=PATH.json.gz (a habitat ObjectNav / InstanceImageNav file)"
            )
        if not Path(scene).is_file():
            raise ConfigError(f"{who}: no scene file {scene!r}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"{who}: render_mode must be None or 'rgb_array', got {render_mode!r}")
        integers = (("obs_width", obs_width, 8), ("obs_height", obs_height, 8), ("min_subgoals", min_subgoals, 1),
                    ("max_subgoals", max_subgoals, 1), ("subgoal_budget", subgoal_budget, 1))
        for name, value, low in integers:
            if not is_int(value) or value < low:
                raise ConfigError(f"{who}: {name} must be an integer >= {low}, got {value!r}")
        if max_subgoals < min_subgoals:
            raise ConfigError(f"{who}: need min_subgoals <= max_subgoals, got {min_subgoals} > {max_subgoals}")
        if not is_int(turn_degrees) or not 0 < turn_degrees < 180 or 360 % turn_degrees:
            raise ConfigError(f"{who}: turn_degrees must be an integer below 180 dividing 360, got {turn_degrees!r}")
        numbers = (("hfov", hfov, 1.0, 179.0), ("camera_height", camera_height, 0.05, 3.0),
                   ("forward_step", forward_step, 0.01, 1.0), ("success_distance", success_distance, 0.0, 10.0),
                   ("success_angle", success_angle, turn_degrees / 2, 180.0))
        for name, value, low, high in numbers:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"{who}: {name} must be a number in [{low:g}, {high:g}], got {value!r}")

        name = os.path.basename(scene)
        records = [r for r in load_episodes(episodes) if os.path.basename(r.scene_id) == name]
        if not records:
            raise ConfigError(f"{who}: {episodes!r} has no episode in scene {name!r}")
        self.records = tuple(records)
        self.categories = tuple(sorted({r.category for r in records}))
        self.vocab = VOCAB + category_words(self.categories)
        self._word_ids = {w: i for i, w in enumerate(self.vocab)}
        self.render_mode = render_mode
        self._n_headings = 360 // turn_degrees
        self._turn = math.radians(turn_degrees)
        self._forward_step = float(forward_step)
        self._success_distance, self._success_angle = float(success_distance), float(success_angle)
        self._min_subgoals, self._max_subgoals, self._budget = min_subgoals, max_subgoals, subgoal_budget
        self._success_reward, self._step_penalty = float(success_reward), float(step_penalty)
        shape = (obs_height, obs_width, 3)
        self.action_space = spaces.Discrete(len(ACTION_NAMES))
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, shape, np.uint8),
                "direction": spaces.Discrete(self._n_headings),
                "goal_modality": spaces.Discrete(len(MODALITIES)),
                "goal_category": spaces.Discrete(len(self.categories)),
                "goal_text": spaces.Box(0, len(self.vocab) - 1, (MAX_TOKENS,), np.int64),
                "goal_image": spaces.Box(0, 255, shape, np.uint8),
                "subgoal_index": spaces.Discrete(max_subgoals),
            }
        )
        self._zero_image = np.zeros(shape, np.uint8)

        sim_cfg = habitat_sim.SimulatorConfiguration()
        sim_cfg.scene_id = str(scene)
        sim_cfg.gpu_device_id = int(gpu_device_id)
        sim_cfg.enable_physics = False
        rgb = habitat_sim.CameraSensorSpec()
        rgb.uuid = "rgb"
        rgb.sensor_type = habitat_sim.SensorType.COLOR
        rgb.resolution = [obs_height, obs_width]
        rgb.position = [0.0, float(camera_height), 0.0]
        rgb.hfov = float(hfov)
        agent_cfg = habitat_sim.agent.AgentConfiguration()
        agent_cfg.sensor_specifications = [rgb]
        act, amount = habitat_sim.agent.ActionSpec, habitat_sim.agent.ActuationSpec
        agent_cfg.action_space = {
            "move_forward": act("move_forward", amount(amount=float(forward_step))),
            "turn_left": act("turn_left", amount(amount=float(turn_degrees))),
            "turn_right": act("turn_right", amount(amount=float(turn_degrees))),
        }
        try:
            self._sim = habitat_sim.Simulator(habitat_sim.Configuration(sim_cfg, [agent_cfg]))
        except Exception as e:  # habitat raises plain RuntimeErrors for scenes, GPUs and EGL
            raise RunError(f"{who}: habitat-sim could not load {scene!r}: {e}") from None
        self._hs = habitat_sim
        self._agent = self._sim.initialize_agent(0)
        self._plan: list[HabitatSubgoal] = []
        self._active = False

    # -- helpers ---------------------------------------------------------------------------

    def _tokens(self, text: str) -> np.ndarray:
        out = np.zeros(MAX_TOKENS, dtype=np.int64)
        words = text.split()[:MAX_TOKENS]
        out[: len(words)] = [self._word_ids.get(w, 1) for w in words]
        return out

    def _position(self) -> np.ndarray:
        return np.asarray(self._agent.get_state().position, dtype=np.float64)

    def _heading(self) -> int:
        return int(round(_yaw(self._agent.get_state().rotation) / self._turn)) % self._n_headings

    def _geodesic(self, position: np.ndarray, view_points: Sequence[Sequence[float]]) -> float:
        """Navmesh geodesic metres from ``position`` to the nearest of ``view_points``."""
        path = self._hs.MultiGoalShortestPath()
        path.requested_start = np.asarray(position, dtype=np.float32)
        path.requested_ends = [np.asarray(v, dtype=np.float32) for v in view_points]
        return float(path.geodesic_distance) if self._sim.pathfinder.find_path(path) else math.inf

    def _stop_succeeds(self, sub: HabitatSubgoal) -> bool:
        pos = self._position()
        yaw = _yaw(self._agent.get_state().rotation)
        for position, views in zip(sub.positions, sub.view_points):
            if self._geodesic(pos, views) > self._success_distance:
                continue
            if self._success_angle < 180.0:
                bearing = math.atan2(-(position[0] - pos[0]), -(position[2] - pos[2]))  # habitat faces -z
                off = abs((bearing - yaw + math.pi) % (2 * math.pi) - math.pi)
                if math.degrees(off) > self._success_angle:
                    continue
            return True
        return False

    def _render_camera(self, camera: ImageCamera) -> np.ndarray:
        """The RGB sensor's view from ``camera``'s pose (the agent's state is restored after)."""
        hs, agent = self._hs, self._agent
        saved = agent.get_state()
        pose = hs.agent.SixDOFPose(
            position=np.asarray(camera.position, dtype=np.float32),
            rotation=hs.utils.common.quat_from_coeffs(np.asarray(camera.rotation)),
        )
        state = hs.AgentState(position=saved.position, rotation=saved.rotation, sensor_states={"rgb": pose})
        agent.set_state(state, infer_sensor_states=False)
        try:
            return np.ascontiguousarray(self._sim.get_sensor_observations()["rgb"][:, :, :3])
        finally:
            agent.set_state(saved, infer_sensor_states=False)

    def _begin_subgoal(self, k: int) -> None:
        self._k, self._taken, self._moved = k, 0, 0.0
        sub = self._plan[k]
        self._text = "" if sub.modality == "image" else _category_text(sub.category)
        self._goal_image = self._render_camera(sub.camera) if sub.modality == "image" else self._zero_image
        self._shortest = self._geodesic(self._position(), [v for views in sub.view_points for v in views])
        if not math.isfinite(self._shortest):
            raise RunError(f"HabitatGoatEnv: episode {sub.episode_id}'s goal is unreachable from the agent")

    def _obs(self, rgb: np.ndarray) -> dict[str, Any]:
        sub = self._plan[self._k]
        return {
            "image": np.ascontiguousarray(rgb[:, :, :3]),
            "direction": self._heading(),
            "goal_modality": MODALITIES.index(sub.modality),
            "goal_category": self.categories.index(sub.category),
            "goal_text": self._tokens(self._text),
            "goal_image": self._goal_image.copy(),
            "subgoal_index": self._k,
        }

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._sim.seed(int(seed))
        rng = self.np_random
        n = int(rng.integers(self._min_subgoals, self._max_subgoals + 1))
        order = np.concatenate([rng.permutation(len(self.records)) for _ in range(-(-n // len(self.records)))])
        self._plan = [self.records[int(i)] for i in order[:n]]
        first = self._plan[0]
        state = self._hs.AgentState()
        state.position = np.asarray(first.start_position, dtype=np.float32)
        state.rotation = self._hs.utils.common.quat_from_coeffs(np.asarray(first.start_rotation))
        self._agent.set_state(state)
        self._results: list[tuple[bool, float, str]] = []
        self._active = True
        self._begin_subgoal(0)
        rgb = self._sim.get_sensor_observations()["rgb"]
        return self._obs(rgb), {"subgoal_index": 0, "modality": first.modality, "goal_text": self._text}

    def step(self, action):
        if not self._active:
            raise ResetNeeded("HabitatGoatEnv: call reset() before step() (and after the last subgoal)")
        if not (is_int(action) and 0 <= int(action) < len(ACTION_NAMES)):
            raise ConfigError(
                f"HabitatGoatEnv: action must be an integer in 0..{len(ACTION_NAMES) - 1}, got {action!r}"
            )
        a = int(action)
        self._taken += 1
        before = self._position()
        name = {LEFT: "turn_left", RIGHT: "turn_right", FORWARD: "move_forward"}.get(a)
        rgb = self._sim.step(name)["rgb"] if name else self._sim.get_sensor_observations()["rgb"]
        if a == FORWARD:
            delta = self._position() - before
            self._moved += float(math.hypot(delta[0], delta[2]))
        sub = self._plan[self._k]
        info: dict[str, Any] = {"subgoal_index": self._k, "modality": sub.modality, "goal_text": self._text}
        reward = -self._step_penalty
        terminated = False
        if a == STOP or self._taken >= self._budget:
            success = a == STOP and self._stop_succeeds(sub)
            score = path_spl(success, self._shortest, self._moved)
            reward += self._success_reward if success else 0.0
            info.update(subgoal_success=success, spl=score, shortest=float(self._shortest), taken=float(self._moved))
            self._results.append((success, score, sub.modality))
            if self._k + 1 < len(self._plan):
                self._begin_subgoal(self._k + 1)
            else:
                terminated, self._active = True, False
                ok = np.array([r[0] for r in self._results], dtype=bool)
                spls = np.array([r[1] for r in self._results], dtype=np.float64)
                info.update(
                    success=bool(ok.all()), subgoal_success_rate=float(ok.mean()), spl_mean=float(spls.mean()),
                    n_subgoals=len(self._results), subgoal_successes=tuple(bool(v) for v in ok),
                    subgoal_spls=tuple(float(v) for v in spls), subgoal_modalities=tuple(r[2] for r in self._results),
                )
        return self._obs(rgb), float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]`` top-down map of the navmesh at the agent's height (5 cm pixels):
        navigable grey, the agent red, the current goals' view points cyan."""
        if self.render_mode != "rgb_array":
            gym.logger.warn("HabitatGoatEnv.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        pf, mpp = self._sim.pathfinder, 0.05
        pos = self._position()
        nav = np.asarray(pf.get_topdown_view(mpp, float(pos[1])), dtype=bool)
        img = np.where(nav[..., None], 160, 40).astype(np.uint8).repeat(3, axis=-1)
        lower = np.asarray(pf.get_bounds()[0], dtype=np.float64)

        def dot(p, color, r):
            col, row = int((p[0] - lower[0]) / mpp), int((p[2] - lower[2]) / mpp)
            img[max(row - r, 0) : row + r + 1, max(col - r, 0) : col + r + 1] = color

        if self._plan:
            for views in self._plan[self._k].view_points:
                for v in views:
                    dot(v, (0, 255, 255), 2)
        dot(pos, (255, 0, 0), 4)
        return img

    def close(self) -> None:
        sim = getattr(self, "_sim", None)
        if sim is not None:
            sim.close()
            self._sim = None

    # -- what memories and agents may read ----------------------------------------------

    @property
    def agent_pose(self) -> tuple[float, float, int]:
        """``(x, z, heading index)``: the agent's floor position (habitat's x and z) and
        ``obs["direction"]``."""
        p = self._position()
        return float(p[0]), float(p[2]), self._heading()

    def egocentric_rgb(self) -> np.ndarray:
        return np.ascontiguousarray(self._sim.get_sensor_observations()["rgb"][:, :, :3])

    def goal_spec(self) -> GoalSpec:
        if not self._plan:
            raise ResetNeeded("HabitatGoatEnv: call reset() before goal_spec()")
        sub = self._plan[self._k]
        return GoalSpec(
            modality=sub.modality,
            category=sub.category,
            text=self._text,
            tokens=self._tokens(self._text),
            image=self._goal_image.copy() if sub.modality == "image" else None,
            subgoal_index=self._k,
            n_subgoals=len(self._plan),
            steps_left=self._budget - self._taken,
        )
