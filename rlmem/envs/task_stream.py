"""Task stream: one task per episode, solved by a short discrete plan (for *episodic case banks*).

The setting of MemRL (Zhang et al. 2026) and Memento (Zhou et al. 2025), reduced to vectors:
tasks arrive one after another, each described by a feature vector (the "intent"); similar
tasks (a *family*) share a plan, so an agent that keeps a bank of past cases across episodes
can reuse what it found; near-duplicate *distractor* tasks look even more like a family than
its own members do, yet need another plan. Similarity-only retrieval is fooled by them; a
retrieval that learns which cases were useful (MemRL's Q rerank, Memento's learned selector)
need not be.

Two implementations with identical trajectories for identical seeds:

- :class:`TaskStream` -- the single :class:`gymnasium.Env`.
- :class:`TaskStreamVec` -- the native batched :class:`gymnasium.vector.VectorEnv`, equal to
  ``SyncVectorEnv([TaskStream] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share :class:`TaskStreamConfig`, the family generator (:func:`make_world`) and the task
draw (:func:`draw_task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._draw import observation_strip
from rlmem.envs._vec import SubEnvRNGs, add_final, check_state_keys, is_int, reset_plan
from rlmem.envs.tmaze import rng_from_array, rng_state_to_array
from rlmem.errors import ConfigError

__all__ = ["Task", "TaskStream", "TaskStreamConfig", "TaskStreamVec", "World", "draw_task", "make_world"]

METADATA = {"render_modes": ["rgb_array"], "render_fps": 4, "memory_types": ("episodic",)}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TaskStreamConfig:
    """Validated parameters of a task stream (shared by the single and batched env)."""

    feature_dim: int = 32
    """Length ``D`` of a task's feature vector (unit norm)."""
    n_families: int = 10
    """Number of task families (each: one prototype direction, one base plan)."""
    plan_length: int = 5
    """Steps ``L`` of a plan = steps of an episode."""
    n_actions: int = 6
    """Actions ``A`` per plan step."""
    family_spread: float = 0.5
    """Members are ``prototype + family_spread * u`` (``u`` a random unit vector orthogonal to
    the prototype), normalised: every member has cosine ``1 / sqrt(1 + family_spread**2)``
    with its prototype (0.894 at 0.5)."""
    distractor_spread: float = 0.4
    """Distractors are ``prototype + distractor_spread * u``, normalised; must be smaller than
    ``family_spread``, so every distractor is closer to the prototype than every member
    (cosine 0.928 at 0.4)."""
    distractor_rate: float = 0.3
    """Probability that a task is a distractor (0 = a stream without distractors)."""
    world_seed: int = 0
    """Seed of the families (prototypes and base plans). The stream of tasks comes from the
    env's own RNG (``reset(seed=...)``); the families stay fixed for an env instance."""

    def __post_init__(self) -> None:
        minimum = {"feature_dim": 2, "n_families": 1, "plan_length": 1, "n_actions": 2, "world_seed": 0}
        for name, low in minimum.items():
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise ConfigError(f"TaskStream: {name} must be an integer >= {low}, got {v!r}")
            object.__setattr__(self, name, int(v))
        for name in ("family_spread", "distractor_spread", "distractor_rate"):
            v = getattr(self, name)
            is_number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            if not is_number or not np.isfinite(v):
                raise ConfigError(f"TaskStream: {name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.family_spread > 0:
            raise ConfigError(f"TaskStream: family_spread must be > 0, got {self.family_spread}")
        if not 0 <= self.distractor_spread < self.family_spread:
            raise ConfigError(
                "TaskStream: distractors must sit closer to the prototype than members: need "
                f"0 <= distractor_spread < family_spread, got {self.distractor_spread} and {self.family_spread}"
            )
        if not 0 <= self.distractor_rate <= 1:
            raise ConfigError(f"TaskStream: distractor_rate must be in [0, 1], got {self.distractor_rate}")

    @property
    def obs_dim(self) -> int:
        """``D + L + A``: features, step one-hot, previous-action one-hot."""
        return self.feature_dim + self.plan_length + self.n_actions

    @property
    def step_reward(self) -> float:
        """Reward of a correct step: ``1 / L`` (a perfect plan returns 1)."""
        return 1.0 / self.plan_length


# --------------------------------------------------------------------------- families and tasks


@dataclass(frozen=True)
class World:
    """The fixed families of a stream: ``prototypes`` float64[F, D] (unit rows) and
    ``base_plans`` int64[F, L]."""

    prototypes: np.ndarray
    base_plans: np.ndarray


@dataclass(frozen=True)
class Task:
    """One task: ``features`` float32[D] (unit norm), ``plan`` int64[L], its ``family`` and
    whether it is a ``distractor`` of that family."""

    family: int
    distractor: bool
    features: np.ndarray
    plan: np.ndarray


def make_world(config: TaskStreamConfig) -> World:
    """The families of ``config.world_seed``: Gaussian prototype directions, uniform base plans."""
    rng = np.random.Generator(np.random.PCG64(config.world_seed))
    protos = rng.standard_normal((config.n_families, config.feature_dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    plans = rng.integers(config.n_actions, size=(config.n_families, config.plan_length))
    return World(prototypes=protos, base_plans=plans.astype(np.int64))


def draw_task(rng: np.random.Generator, world: World, config: TaskStreamConfig) -> Task:
    """The next task of the stream, from ``rng`` (the only draws an env makes).

    Draw order (fixed, so the single and the batched env agree): one uniform (distractor?),
    the family, ``D`` normals (the offset direction), and for a distractor ``L`` integers (its
    plan: at every step one of the ``A - 1`` actions that differ from the base plan).
    """
    distractor = bool(rng.random() < config.distractor_rate)
    family = int(rng.integers(config.n_families))
    proto = world.prototypes[family]
    u = rng.standard_normal(config.feature_dim)
    # Orthogonal to the prototype, unit length: the cosine to the prototype is then fixed by the
    # spread alone, so "distractors are closer than members" holds for every draw, not on average.
    u -= (u @ proto) * proto
    u /= np.linalg.norm(u)
    spread = config.distractor_spread if distractor else config.family_spread
    x = proto + spread * u
    features = np.clip(x / np.linalg.norm(x), -1.0, 1.0).astype(np.float32)
    plan = world.base_plans[family].copy()
    if distractor:
        plan = (plan + 1 + rng.integers(config.n_actions - 1, size=config.plan_length)) % config.n_actions
    return Task(family=family, distractor=distractor, features=features, plan=plan.astype(np.int64))


def _observe(config: TaskStreamConfig, features: np.ndarray, t: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """``float32[N, D + L + A]`` observations for ``N`` tasks at steps ``t`` [N] after
    previous actions ``prev`` [N] (-1: none)."""
    n, d, L = len(t), config.feature_dim, config.plan_length
    obs = np.zeros((n, config.obs_dim), dtype=np.float32)
    obs[:, :d] = features
    rows = np.arange(n)
    at = t < L  # the terminal observation (t == L) asks for no step
    obs[rows[at], d + t[at]] = 1.0
    has_prev = prev >= 0
    obs[rows[has_prev], d + L + prev[has_prev]] = 1.0
    return obs


# --------------------------------------------------------------------------- single env


class TaskStream(gym.Env[np.ndarray, np.int64]):
    """Task stream: each episode is a new task; emit its plan one action per step.

    ## Description

    A stream of tasks for agents with an *episodic case bank* that outlives episodes
    (MemRL, Memento). The families are fixed by ``world_seed``: family ``f`` has a unit
    prototype direction ``p_f`` and a base plan ``b_f`` (``L`` actions out of ``A``). Each
    reset draws the next task from the env's RNG:

    - a *member* of a uniform family: features ``normalise(p_f + family_spread * u)`` with
      ``u`` a random unit vector orthogonal to ``p_f``; its plan is ``b_f``, so a plan found
      for one member solves every member (plans *transfer* within a family);
    - with probability ``distractor_rate``, a *distractor* of that family: features
      ``normalise(p_f + distractor_spread * u)`` -- closer to ``p_f`` than any member, since
      ``distractor_spread < family_spread`` -- and a fresh plan that differs from ``b_f`` at
      every step. A distractor's plan never recurs.

    Why it exposes similarity-only retrieval: from a member's point of view the cases stored
    for distractors of its family are, on average, *more* similar (cosine ~0.83 with the
    defaults) than the cases of other members (~0.80), so the nearest stored case is often
    a distractor whose plan is wrong at every step. A retrieval that learns the utility of
    each case (MemRL: Q updated with the reward of the episodes that reused it; Memento: a
    learned selector) can learn to pass over those cases. The agents and the comparison are
    in :mod:`rlmem.agents.case_agents` and :mod:`rlmem.casebank_stream`.

    ## Action Space

    ``Discrete(n_actions)``: the plan's action for the step being asked.

    ## Observation Space

    ``Box(-1, 1, (D + L + A,), float32)``: ``[features (D, unit norm), step one-hot (L),
    previous action one-hot (A)]``. The features stay the same for the whole episode; the
    step one-hot is all zeros on the terminal observation, the previous-action block on the
    first one. ``info["distractor"]`` (bool, in every reset and step info) says whether the
    current task is a distractor: for metrics, not for agents.

    ## Rewards

    ``1 / L`` for each step whose action equals the plan's, 0 otherwise: the return is the
    fraction of plan steps right, 1 for a perfect plan. (The per-step reward tells the agent
    which steps were right, not what the right action of a wrong step was.)

    ## Starting State

    Step 0 of a task drawn as above (one uniform, the family, ``D`` normals, and ``L``
    integers for a distractor, all from ``self.np_random``). Task draws never depend on the
    agent's actions, so every agent sees the same stream for the same seed.

    ## Episode End

    Termination after ``L`` steps; ``info["success"]`` is whether every step was right.
    There is no truncation.

    ## Arguments

    ``feature_dim`` (32), ``n_families`` (10), ``plan_length`` (5), ``n_actions`` (6),
    ``family_spread`` (0.5), ``distractor_spread`` (0.4), ``distractor_rate`` (0.3),
    ``world_seed`` (0), ``render_mode`` (None | "rgb_array"). Bad values raise
    :class:`rlmem.errors.ConfigError`. ``get_state()`` / ``set_state()`` expose the hidden
    state (the task's plan: oracles, bit-exact resume).
    """

    metadata = METADATA

    def __init__(
        self,
        feature_dim: int = 32,
        n_families: int = 10,
        plan_length: int = 5,
        n_actions: int = 6,
        family_spread: float = 0.5,
        distractor_spread: float = 0.4,
        distractor_rate: float = 0.3,
        world_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        self.config = cfg = TaskStreamConfig(
            feature_dim=feature_dim,
            n_families=n_families,
            plan_length=plan_length,
            n_actions=n_actions,
            family_spread=family_spread,
            distractor_spread=distractor_spread,
            distractor_rate=distractor_rate,
            world_seed=world_seed,
        )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"TaskStream: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.world = make_world(cfg)
        self.action_space = spaces.Discrete(cfg.n_actions)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(cfg.obs_dim,), dtype=np.float32)
        self._features = np.zeros(cfg.feature_dim, dtype=np.float32)
        self._plan = np.zeros(cfg.plan_length, dtype=np.int64)
        self._family, self._distractor = 0, False
        self._t, self._prev, self._n_correct = 0, -1, 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        task = draw_task(self.np_random, self.world, self.config)
        self._family, self._distractor = task.family, task.distractor
        self._features, self._plan = task.features, task.plan
        self._t, self._prev, self._n_correct = 0, -1, 0
        self._needs_reset = False
        return self._observe(), {"distractor": self._distractor}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("TaskStream: call reset() before step()")
        a = int(action)
        if not 0 <= a < self.config.n_actions:
            raise ValueError(f"TaskStream: action must be in [0, {self.config.n_actions}), got {action!r}")
        correct = a == int(self._plan[self._t])
        self._n_correct += correct
        reward = self.config.step_reward if correct else 0.0
        self._t, self._prev = self._t + 1, a
        terminated = self._t == self.config.plan_length
        info: dict[str, Any] = {"distractor": self._distractor}
        if terminated:
            info["success"] = self._n_correct == self.config.plan_length
            self._needs_reset = True
        return self._observe(), reward, terminated, False, info

    def _observe(self) -> np.ndarray:
        # The batched layout of _observe(), written out for one env (this runs every step).
        cfg = self.config
        obs = np.zeros(cfg.obs_dim, dtype=np.float32)
        obs[: cfg.feature_dim] = self._features
        if self._t < cfg.plan_length:
            obs[cfg.feature_dim + self._t] = 1.0
        if self._prev >= 0:
            obs[cfg.feature_dim + cfg.plan_length + self._prev] = 1.0
        return obs

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]``: the observation as a strip of cells, features mapped to [0, 1]."""
        if self.render_mode is None:
            return None
        obs = self._observe()
        d = self.config.feature_dim
        obs[:d] = (obs[:d] + 1.0) / 2.0
        return observation_strip(obs)

    def get_state(self) -> dict[str, np.ndarray]:
        """Hidden state: ``family``, ``t``, ``prev``, ``n_correct`` (int64), ``distractor``,
        ``needs_reset`` (bool), ``features`` (float32[D]), ``plan`` (int64[L]), ``rng`` (uint64[6])."""
        return {
            "family": np.array(self._family, dtype=np.int64),
            "distractor": np.array(self._distractor),
            "features": self._features.copy(),
            "plan": self._plan.copy(),
            "t": np.array(self._t, dtype=np.int64),
            "prev": np.array(self._prev, dtype=np.int64),
            "n_correct": np.array(self._n_correct, dtype=np.int64),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, _SINGLE_KEYS, "TaskStream")
        cfg = self.config
        features = np.asarray(state["features"], dtype=np.float32).reshape(-1)
        plan = np.asarray(state["plan"], dtype=np.int64).reshape(-1)
        if features.shape != (cfg.feature_dim,) or plan.shape != (cfg.plan_length,):
            raise ConfigError(
                f"TaskStream.set_state: features/plan have shapes {features.shape}/{plan.shape}, "
                f"expected ({cfg.feature_dim},)/({cfg.plan_length},)"
            )
        self._features, self._plan = features, plan
        self._family, self._distractor = int(state["family"]), bool(state["distractor"])
        self._t, self._prev, self._n_correct = int(state["t"]), int(state["prev"]), int(state["n_correct"])
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


_SINGLE_KEYS = ("family", "distractor", "features", "plan", "t", "prev", "n_correct", "needs_reset", "rng")
_BATCH_KEYS = ("family", "distractor", "features", "plan", "t", "prev", "n_correct", "rng")


# --------------------------------------------------------------------------- batched env


class TaskStreamVec(SubEnvRNGs, VectorEnv):
    """Native batched task stream: ``num_envs`` copies of :class:`TaskStream` in numpy.

    Equal to ``SyncVectorEnv([TaskStream] * N, autoreset_mode=SAME_STEP)`` -- observations,
    rewards, terminated, truncated and the info dict -- for the same seeds (sub-env ``i`` gets
    ``seed + i``; all sub-envs share the families of ``world_seed``). SAME_STEP autoreset
    only: ``info["final_obs"]`` / ``info["final_info"]`` (``distractor``, ``success``) with
    their masks on the steps where episodes end (every ``L`` steps, all sub-envs at once
    when they were reset together).

    Shapes: observations ``float32[N, D + L + A]``, rewards ``float64[N]``, actions ``int[N]``.
    Random draws happen only at resets (one task per resetting sub-env, from its generator).
    """

    metadata = {**METADATA, "render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        feature_dim: int = 32,
        n_families: int = 10,
        plan_length: int = 5,
        n_actions: int = 6,
        family_spread: float = 0.5,
        distractor_spread: float = 0.4,
        distractor_rate: float = 0.3,
        world_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"TaskStreamVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = TaskStreamConfig(
            feature_dim=feature_dim,
            n_families=n_families,
            plan_length=plan_length,
            n_actions=n_actions,
            family_spread=family_spread,
            distractor_spread=distractor_spread,
            distractor_rate=distractor_rate,
            world_seed=world_seed,
        )
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(f"TaskStreamVec: renders no frames (use TaskStream), got render_mode={render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.world = make_world(cfg)
        self.single_action_space = spaces.Discrete(cfg.n_actions)
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(cfg.obs_dim,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        self._family = np.zeros(n, dtype=np.int64)
        self._distractor = np.zeros(n, dtype=bool)
        self._features = np.zeros((n, cfg.feature_dim), dtype=np.float32)
        self._plan = np.zeros((n, cfg.plan_length), dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._prev = np.full(n, -1, dtype=np.int64)
        self._n_correct = np.zeros(n, dtype=np.int64)
        self._init_rngs(n)
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); info ``{"distractor", "_distractor"}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "TaskStreamVec")
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"distractor": self._distractor & mask, "_distractor": mask.copy()}

    def _restart(self, idx: np.ndarray) -> None:
        for i in idx.tolist():
            task = draw_task(self._rngs[i], self.world, self.config)  # type: ignore[arg-type]
            self._family[i], self._distractor[i] = task.family, task.distractor
            self._features[i], self._plan[i] = task.features, task.plan
        self._t[idx], self._prev[idx], self._n_correct[idx] = 0, -1, 0

    def _observe(self) -> np.ndarray:
        return _observe(self.config, self._features, self._t, self._prev)

    def step(self, actions):
        """One step of every sub-env; finished episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("TaskStreamVec: call reset() before step()")
        a = np.asarray(actions)
        n, cfg = self.num_envs, self.config
        if a.shape != (n,) or a.min() < 0 or a.max() >= cfg.n_actions:
            raise ValueError(f"TaskStreamVec: actions must be int[{n}] in [0, {cfg.n_actions})")
        a = a.astype(np.int64)
        correct = a == self._plan[np.arange(n), self._t]
        self._n_correct += correct
        reward = np.where(correct, cfg.step_reward, 0.0)
        self._t += 1
        self._prev[:] = a
        terminated = self._t == cfg.plan_length
        obs = self._observe()
        info: dict[str, Any] = {}
        done_idx = terminated.nonzero()[0]
        if len(done_idx):
            success = terminated & (self._n_correct == cfg.plan_length)
            add_final(info, obs, terminated, {"distractor": self._distractor.copy(), "success": success})
            self._restart(done_idx)
            obs[done_idx] = _observe(cfg, self._features[done_idx], self._t[done_idx], self._prev[done_idx])
        info["distractor"], info["_distractor"] = self._distractor.copy(), self._all_true.copy()
        return obs, reward, terminated, np.zeros(n, dtype=bool), info

    def get_state(self) -> dict[str, np.ndarray]:
        """``family``, ``t``, ``prev``, ``n_correct`` (int64[N]), ``distractor`` (bool[N]),
        ``features`` (float32[N, D]), ``plan`` (int64[N, L]), ``rng`` (uint64[N, 6])."""
        if self._needs_reset:
            raise ResetNeeded("TaskStreamVec: call reset() before get_state()")
        state = {k: getattr(self, f"_{k}").copy() for k in _BATCH_KEYS[:-1]}
        state["rng"] = self._rng_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, _BATCH_KEYS, "TaskStreamVec")
        for k in _BATCH_KEYS[:-1]:
            target = getattr(self, f"_{k}")
            v = np.asarray(state[k])
            if v.shape != target.shape:
                raise ConfigError(f"TaskStreamVec.set_state: {k!r} has shape {v.shape}, expected {target.shape}")
            target[:] = v
        rng = np.asarray(state["rng"])
        if rng.shape != (self.num_envs, 6):
            raise ConfigError(f"TaskStreamVec.set_state: 'rng' has shape {rng.shape}, expected ({self.num_envs}, 6)")
        self._set_rng_state(rng)
        self._needs_reset = False
