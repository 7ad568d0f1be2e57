"""Passive T-Maze: remember the first cue over a blank delay (a *retention-only* control).

A cue is shown once, then ``delay`` blank observations, then a query: the answer must name
the cue. Nothing happens in between and nothing has to be overwritten, so the task isolates
retention length (the classic passive T-Maze of Bakker 2001 / Ni et al. 2023, reduced to
its memory content: no walking).

Two implementations with identical trajectories for identical seeds:

- :class:`PassiveTMaze` -- the single :class:`gymnasium.Env`.
- :class:`PassiveTMazeVec` -- the native batched :class:`gymnasium.vector.VectorEnv`, equal to
  ``SyncVectorEnv([PassiveTMaze] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share :class:`PassiveTMazeConfig` and :func:`draw_cue`.
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

__all__ = ["PassiveTMaze", "PassiveTMazeConfig", "PassiveTMazeVec", "draw_cue"]

METADATA = {"render_modes": ["rgb_array"], "render_fps": 4, "memory_types": ("sequential",)}


@dataclass(frozen=True)
class PassiveTMazeConfig:
    """Validated parameters of a Passive T-Maze (shared by the single and batched env)."""

    n_cues: int = 2
    """Number of possible cues (= number of actions). 2 is the classic left/right T-Maze."""
    delay: int = 10
    """Blank observations between the cue and the query (0 = query right after the cue)."""
    wrong_reward: float = 0.0
    """Reward of a wrong answer (a correct one gets +1). 0 keeps returns in [0, 1], so the
    mean return equals the success rate; pass -1.0 for a symmetric signal."""

    def __post_init__(self) -> None:
        if not is_int(self.n_cues) or self.n_cues < 2:
            raise ConfigError(f"PassiveTMaze: n_cues must be an integer >= 2, got {self.n_cues!r}")
        if not is_int(self.delay) or self.delay < 0:
            raise ConfigError(f"PassiveTMaze: delay must be an integer >= 0, got {self.delay!r}")
        v = self.wrong_reward
        is_number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if not is_number or not np.isfinite(v):
            raise ConfigError(f"PassiveTMaze: wrong_reward must be a finite number, got {v!r}")
        # Python numbers: rewards then batch to float64 exactly as SyncVectorEnv does.
        object.__setattr__(self, "n_cues", int(self.n_cues))
        object.__setattr__(self, "delay", int(self.delay))
        object.__setattr__(self, "wrong_reward", float(self.wrong_reward))

    @property
    def query_step(self) -> int:
        """Index ``t`` (actions taken so far) of the query observation: ``delay + 1``."""
        return self.delay + 1

    @property
    def episode_length(self) -> int:
        """Steps per episode: the cue step, ``delay`` blank steps, the answer: ``delay + 2``."""
        return self.delay + 2


def draw_cue(rng: np.random.Generator, config: PassiveTMazeConfig) -> int:
    """The episode's cue: one ``integers`` draw from ``rng`` at reset (the only draw)."""
    return int(rng.integers(config.n_cues))


def _observation_table(config: PassiveTMazeConfig) -> np.ndarray:
    """``float32[n_cues + 2, n_cues + 1]``: rows 0..n-1 the cues, row n the query, row n+1 blank."""
    n = config.n_cues
    table = np.zeros((n + 2, n + 1), dtype=np.float32)
    table[np.arange(n + 1), np.arange(n + 1)] = 1.0
    return table


class PassiveTMaze(gym.Env[np.ndarray, np.int64]):
    """Passive T-Maze: see a cue once, wait ``delay`` blank steps, then name the cue.

    ## Description

    A retention-only control for the rewriting suite: the cue must be kept, unchanged, for
    ``delay + 1`` steps and is never overwritten. The query is announced by a flag, so the
    agent need not count steps; the only thing to remember is the cue.

    ## Action Space

    ``Discrete(n_cues)``: the answer "the cue was ``a``". Actions before the query are
    ignored (no-op, reward 0): the agent cannot end the episode early or lose anything.

    ## Observation Space

    ``Box(0, 1, (n_cues + 1,), float32)``: ``[cue one-hot (n_cues), query flag]``.
    Step 0 shows the one-hot cue; the next ``delay`` observations are all zeros; the query
    observation is ``[0, ..., 0, 1]``; the terminal observation after the answer is all zeros.
    ``info["cue"]`` (bool, every reset and step info) is True only on the cue observation.

    ## Rewards

    +1 for the correct answer at the query, ``wrong_reward`` (default 0) for a wrong one,
    0 on every other step. Best return 1; a constant or random policy scores
    ``1 / n_cues`` on average (with ``wrong_reward = 0``).

    ## Starting State

    The cue, uniform over ``n_cues``, drawn from ``self.np_random`` at reset.

    ## Episode End

    Termination after the answer, always at step ``delay + 2``; ``info["success"]`` is
    whether the answer was correct. There is no truncation.

    ## Arguments

    ``n_cues`` (2), ``delay`` (10), ``wrong_reward`` (0.0). Bad values raise
    :class:`rlmem.errors.ConfigError`. ``get_state()`` / ``set_state()`` expose the hidden
    state (oracles, bit-exact resume).
    """

    metadata = METADATA

    def __init__(self, n_cues: int = 2, delay: int = 10, wrong_reward: float = 0.0, render_mode: str | None = None):
        self.config = PassiveTMazeConfig(n_cues=n_cues, delay=delay, wrong_reward=wrong_reward)
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"PassiveTMaze: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        n = self.config.n_cues
        self.action_space = spaces.Discrete(n)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(n + 1,), dtype=np.float32)
        self._t = self._cue = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._cue = draw_cue(self.np_random, self.config)
        self._needs_reset = False
        return self._observe(), {"cue": True}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("PassiveTMaze: call reset() before step()")
        a = int(action)
        if not 0 <= a < self.config.n_cues:
            raise ValueError(f"PassiveTMaze: action must be in [0, {self.config.n_cues}), got {action!r}")
        reward, terminated, info = 0.0, False, {"cue": False}  # after step 0 no cue is shown
        if self._t == self.config.query_step:
            correct = a == self._cue
            reward = 1.0 if correct else self.config.wrong_reward
            terminated, info["success"] = True, correct
            self._needs_reset = True
        self._t += 1
        return self._observe(), reward, terminated, False, info

    def _observe(self) -> np.ndarray:
        obs = np.zeros(self.config.n_cues + 1, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.config.query_step:
            obs[-1] = 1.0
        return obs

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]``: the current observation as a strip of cells (see rlmem.envs._draw)."""
        if self.render_mode is None:
            return None
        return observation_strip(self._observe())

    def get_state(self) -> dict[str, np.ndarray]:
        """Hidden state: ``t`` (steps taken), ``cue`` (int64), ``needs_reset`` (bool), ``rng`` (uint64[6])."""
        return {
            "t": np.array(self._t, dtype=np.int64),
            "cue": np.array(self._cue, dtype=np.int64),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, ("t", "cue", "needs_reset", "rng"), "PassiveTMaze")
        self._t, self._cue = int(state["t"]), int(state["cue"])
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


class PassiveTMazeVec(SubEnvRNGs, VectorEnv):
    """Native batched Passive T-Maze: ``num_envs`` copies of :class:`PassiveTMaze` in numpy.

    Equal to ``SyncVectorEnv([PassiveTMaze] * N, autoreset_mode=SAME_STEP)`` -- observations,
    rewards, terminated, truncated and the info dict -- for the same seeds (sub-env ``i`` gets
    ``seed + i``). SAME_STEP autoreset only: ``info["final_obs"]`` / ``info["final_info"]``
    (``success``, ``cue``) with their masks on steps where some sub-env finished.

    Shapes: observations ``float32[N, n_cues + 1]``, rewards ``float64[N]``, actions ``int[N]``.
    Random draws happen only at resets (one cue per resetting sub-env, from its own generator).
    """

    metadata = {**METADATA, "render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        n_cues: int = 2,
        delay: int = 10,
        wrong_reward: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"PassiveTMazeVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = PassiveTMazeConfig(n_cues=n_cues, delay=delay, wrong_reward=wrong_reward)
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(f"PassiveTMazeVec: renders no frames (use PassiveTMaze), got render_mode={render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.single_action_space = spaces.Discrete(cfg.n_cues)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(cfg.n_cues + 1,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        self._obs_table = _observation_table(cfg)
        self._t = np.zeros(n, dtype=np.int64)
        self._cue = np.zeros(n, dtype=np.int64)
        self._init_rngs(n)
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); info ``{"cue", "_cue"}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "PassiveTMazeVec")
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": mask.copy(), "_cue": mask.copy()}

    def _restart(self, idx: np.ndarray) -> None:
        self._t[idx] = 0
        self._cue[idx] = [draw_cue(self._rngs[i], self.config) for i in idx]  # type: ignore[arg-type]

    def _observe(self) -> np.ndarray:
        n, t = self.config.n_cues, self._t
        row = np.where(t == 0, self._cue, np.where(t == self.config.query_step, n, n + 1))
        return self._obs_table.take(row, axis=0)

    def step(self, actions):
        """One step of every sub-env; finished episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("PassiveTMazeVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.min() < 0 or a.max() >= self.config.n_cues:
            raise ValueError(f"PassiveTMazeVec: actions must be int[{self.num_envs}] in [0, {self.config.n_cues})")
        cfg = self.config
        at_query = self._t == cfg.query_step
        correct = at_query & (a == self._cue)
        reward = np.where(at_query, np.where(correct, 1.0, cfg.wrong_reward), 0.0)
        self._t += 1
        terminated = at_query
        obs = self._observe()
        info: dict[str, Any] = {}
        done_idx = terminated.nonzero()[0]
        if len(done_idx):
            add_final(info, obs, terminated, {"cue": np.zeros(self.num_envs, dtype=bool), "success": correct})
            self._restart(done_idx)
            obs[done_idx] = self._obs_table.take(self._cue[done_idx], axis=0)  # t = 0: the cue
        info["cue"], info["_cue"] = self._t == 0, self._all_true.copy()
        return obs, reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def get_state(self) -> dict[str, np.ndarray]:
        """``t``, ``cue`` (``int64[N]``) and ``rng`` (``uint64[N, 6]``)."""
        if self._needs_reset:
            raise ResetNeeded("PassiveTMazeVec: call reset() before get_state()")
        rng = self._rng_state()
        return {"t": self._t.copy(), "cue": self._cue.copy(), "rng": rng}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, ("t", "cue", "rng"), "PassiveTMazeVec")
        n = self.num_envs
        for k in ("t", "cue"):
            v = np.asarray(state[k])
            if v.shape != (n,):
                raise ConfigError(f"PassiveTMazeVec.set_state: {k!r} has shape {v.shape}, expected ({n},)")
            getattr(self, f"_{k}")[:] = v
        rng = np.asarray(state["rng"])
        if rng.shape != (n, 6):
            raise ConfigError(f"PassiveTMazeVec.set_state: 'rng' has shape {rng.shape}, expected ({n}, 6)")
        self._set_rng_state(rng)
        self._needs_reset = False
