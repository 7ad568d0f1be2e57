"""Repeat Previous: output the symbol shown ``k`` steps ago (a *retention* control, POPGym-style).

After POPGym's RepeatPrevious (Morad et al., ICLR 2023; our own implementation): a stream of
random symbols; at every step from ``k`` on, the answer is the symbol seen ``k`` steps earlier.
The agent must hold a sliding window of the last ``k`` symbols in order.

Two implementations with identical trajectories for identical seeds:

- :class:`RepeatPrevious` -- the single :class:`gymnasium.Env`.
- :class:`RepeatPreviousVec` -- the native batched :class:`gymnasium.vector.VectorEnv`, equal
  to ``SyncVectorEnv([RepeatPrevious] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share :class:`RepeatPreviousConfig` and :func:`draw_symbols`.
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

__all__ = ["RepeatPrevious", "RepeatPreviousConfig", "RepeatPreviousVec", "draw_symbols"]

METADATA = {"render_modes": ["rgb_array"], "render_fps": 4, "memory_types": ("sequential", "capacity")}


@dataclass(frozen=True)
class RepeatPreviousConfig:
    """Validated parameters of Repeat Previous (shared by the single and batched env)."""

    n_symbols: int = 4
    """Alphabet size (= number of actions). POPGym uses the 4 card suits."""
    k: int = 4
    """How far back the answer lies: at step ``t >= k`` the answer is the symbol of step ``t - k``."""
    length: int = 52
    """Steps per episode (POPGym: 52 cards per deck). Must exceed ``k``."""

    def __post_init__(self) -> None:
        for name, low in (("n_symbols", 2), ("k", 1), ("length", 2)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise ConfigError(f"RepeatPrevious: {name} must be an integer >= {low}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.length <= self.k:
            raise ConfigError(f"RepeatPrevious: length must exceed k, got length={self.length}, k={self.k}")

    @property
    def reward_scale(self) -> float:
        """``1 / (length - k)``: a perfect episode sums to 1 (POPGym's scaling)."""
        return 1.0 / (self.length - self.k)


def draw_symbols(rng: np.random.Generator, config: RepeatPreviousConfig) -> np.ndarray:
    """The whole episode's symbols, ``int64[length]``, in one draw from ``rng`` at reset.

    The stream does not depend on the actions, so drawing it up front is the same
    distribution as drawing one symbol per step, and leaves the batched env a draw loop only
    over the sub-envs that reset.
    """
    return rng.integers(config.n_symbols, size=config.length, dtype=np.int64)


class RepeatPrevious(gym.Env[np.ndarray, np.int64]):
    """Repeat Previous: at every step, name the symbol shown ``k`` steps ago.

    ## Description

    POPGym-style RepeatPrevious (own implementation). Each step shows a random symbol, i.i.d.
    uniform over ``n_symbols`` (POPGym deals from shuffled card decks instead, so its counts
    are balanced; the memory demand is the same). The agent must keep the last ``k`` symbols
    in order.

    ## Action Space

    ``Discrete(n_symbols)``: "the symbol ``k`` steps ago was ``a``". Actions in the first
    ``k`` steps are not scored (there is nothing to repeat yet).

    ## Observation Space

    ``Box(0, 1, (n_symbols,), float32)``: the one-hot current symbol; the terminal
    observation after the last step is all zeros. ``info["cue"]`` (bool, every reset and
    step info) is True when the observed symbol will be asked for later (step ``t`` with
    ``t + k < length``).

    ## Rewards

    At steps ``t >= k``: ``+1 / (length - k)`` for the right symbol, ``-1 / (length - k)``
    for a wrong one (POPGym's scaling); 0 in the first ``k`` steps. Best return 1; a random
    policy gets ``(2 / n_symbols - 1)`` on average (-0.5 with 4 symbols).

    ## Starting State

    The episode's ``length`` symbols, drawn from ``self.np_random`` at reset
    (:func:`draw_symbols`); the first is shown.

    ## Episode End

    Termination after ``length`` steps; ``info["success"]`` is True when every scored answer
    was right. There is no truncation.

    ## Arguments

    ``n_symbols`` (4), ``k`` (4), ``length`` (52). Bad values raise
    :class:`rlmem.errors.ConfigError`. ``get_state()`` / ``set_state()`` expose the hidden
    state (the symbol stream included: oracles read it).
    """

    metadata = METADATA

    def __init__(self, n_symbols: int = 4, k: int = 4, length: int = 52, render_mode: str | None = None) -> None:
        self.config = RepeatPreviousConfig(n_symbols=n_symbols, k=k, length=length)
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"RepeatPrevious: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.config.n_symbols)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.config.n_symbols,), dtype=np.float32)
        self._symbols = np.zeros(self.config.length, dtype=np.int64)
        self._t = self._errors = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._symbols = draw_symbols(self.np_random, self.config)
        self._t = self._errors = 0
        self._needs_reset = False
        return self._observe(), {"cue": self._is_cue()}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("RepeatPrevious: call reset() before step()")
        a = int(action)
        cfg = self.config
        if not 0 <= a < cfg.n_symbols:
            raise ValueError(f"RepeatPrevious: action must be in [0, {cfg.n_symbols}), got {action!r}")
        reward = 0.0
        if self._t >= cfg.k:
            if a == self._symbols[self._t - cfg.k]:
                reward = cfg.reward_scale
            else:
                reward, self._errors = -cfg.reward_scale, self._errors + 1
        self._t += 1
        terminated = self._t == cfg.length
        info: dict[str, Any] = {"cue": self._is_cue()}
        if terminated:
            info["success"] = self._errors == 0
            self._needs_reset = True
        return self._observe(), reward, terminated, False, info

    def _is_cue(self) -> bool:
        return self._t + self.config.k < self.config.length

    def _observe(self) -> np.ndarray:
        obs = np.zeros(self.config.n_symbols, dtype=np.float32)
        if self._t < self.config.length:
            obs[self._symbols[self._t]] = 1.0
        return obs

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]``: the current observation as a strip of cells (see rlmem.envs._draw)."""
        if self.render_mode is None:
            return None
        return observation_strip(self._observe())

    def get_state(self) -> dict[str, np.ndarray]:
        """``symbols`` (int64[length]), ``t`` (steps taken), ``errors`` (wrong scored answers),
        ``needs_reset`` (bool), ``rng`` (uint64[6])."""
        return {
            "symbols": self._symbols.copy(),
            "t": np.array(self._t, dtype=np.int64),
            "errors": np.array(self._errors, dtype=np.int64),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, ("symbols", "t", "errors", "needs_reset", "rng"), "RepeatPrevious")
        symbols = np.asarray(state["symbols"], dtype=np.int64)
        if symbols.shape != (self.config.length,):
            raise ConfigError(
                f"RepeatPrevious.set_state: 'symbols' has shape {symbols.shape}, expected ({self.config.length},)"
            )
        self._symbols = symbols.copy()
        self._t, self._errors = int(state["t"]), int(state["errors"])
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


class RepeatPreviousVec(SubEnvRNGs, VectorEnv):
    """Native batched Repeat Previous: ``num_envs`` copies of :class:`RepeatPrevious` in numpy.

    Equal to ``SyncVectorEnv([RepeatPrevious] * N, autoreset_mode=SAME_STEP)`` -- observations,
    rewards, terminated, truncated and the info dict -- for the same seeds (sub-env ``i`` gets
    ``seed + i``). SAME_STEP autoreset only: ``info["final_obs"]`` / ``info["final_info"]``
    (``success``, ``cue``) with their masks on steps where some sub-env finished.

    Shapes: observations ``float32[N, n_symbols]``, rewards ``float64[N]``, actions ``int[N]``.
    Per-step dynamics are whole-array; each resetting sub-env draws its episode's symbols with
    one call on its own generator.
    """

    metadata = {**METADATA, "render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self, num_envs: int = 1, n_symbols: int = 4, k: int = 4, length: int = 52, render_mode: str | None = None
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"RepeatPreviousVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = RepeatPreviousConfig(n_symbols=n_symbols, k=k, length=length)
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(f"RepeatPreviousVec: renders no frames (use RepeatPrevious), got render_mode={render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.single_action_space = spaces.Discrete(cfg.n_symbols)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(cfg.n_symbols,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        # Row n_symbols is the all-zero terminal observation.
        self._obs_table = np.eye(cfg.n_symbols + 1, cfg.n_symbols, dtype=np.float32)
        self._symbols = np.zeros((n, cfg.length), dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._errors = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        self._init_rngs(n)
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); info ``{"cue", "_cue"}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "RepeatPreviousVec")
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": self._is_cue() & mask, "_cue": mask}

    def _restart(self, idx: np.ndarray) -> None:
        """New episodes for sub-envs ``idx``: the only per-sub-env loop, one draw call each."""
        if len(idx) == 0:
            return
        self._symbols[idx] = [draw_symbols(self._rngs[i], self.config) for i in idx]  # type: ignore[arg-type]
        self._t[idx] = 0
        self._errors[idx] = 0

    def _is_cue(self) -> np.ndarray:
        return self._t + self.config.k < self.config.length

    def _observe(self) -> np.ndarray:
        length = self.config.length
        current = self._symbols[self._rows, np.minimum(self._t, length - 1)]
        return self._obs_table.take(np.where(self._t < length, current, self.config.n_symbols), axis=0)

    def step(self, actions):
        """One step of every sub-env; finished episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("RepeatPreviousVec: call reset() before step()")
        cfg = self.config
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.min() < 0 or a.max() >= cfg.n_symbols:
            raise ValueError(f"RepeatPreviousVec: actions must be int[{self.num_envs}] in [0, {cfg.n_symbols})")
        t = self._t
        scored = t >= cfg.k
        target = self._symbols[self._rows, np.maximum(t - cfg.k, 0)]
        wrong = scored & (a != target)
        reward = np.where(scored, np.where(wrong, -cfg.reward_scale, cfg.reward_scale), 0.0)
        self._errors += wrong
        t += 1
        terminated = t == cfg.length
        obs = self._observe()
        info: dict[str, Any] = {}
        done_idx = terminated.nonzero()[0]
        if len(done_idx):
            add_final(info, obs, terminated, {"cue": self._is_cue(), "success": self._errors == 0})
            self._restart(done_idx)
            obs[done_idx] = self._obs_table.take(self._symbols[done_idx, 0], axis=0)
        info["cue"], info["_cue"] = self._is_cue(), self._all_true.copy()
        return obs, reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def get_state(self) -> dict[str, np.ndarray]:
        """``symbols`` (``int64[N, length]``), ``t``, ``errors`` (``int64[N]``), ``rng`` (``uint64[N, 6]``)."""
        if self._needs_reset:
            raise ResetNeeded("RepeatPreviousVec: call reset() before get_state()")
        state = {k: getattr(self, f"_{k}").copy() for k in ("symbols", "t", "errors")}
        state["rng"] = self._rng_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, ("symbols", "t", "errors", "rng"), "RepeatPreviousVec")
        n = self.num_envs
        shapes = {"symbols": (n, self.config.length), "t": (n,), "errors": (n,), "rng": (n, 6)}
        for k, shape in shapes.items():
            if np.shape(state[k]) != shape:
                raise ConfigError(
                    f"RepeatPreviousVec.set_state: {k!r} has shape {np.shape(state[k])}, expected {shape}"
                )
        for k in ("symbols", "t", "errors"):
            getattr(self, f"_{k}")[:] = state[k]
        self._set_rng_state(state["rng"])
        self._needs_reset = False
