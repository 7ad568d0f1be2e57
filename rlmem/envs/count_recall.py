"""Count Recall: say how often the current card has been dealt before (a *capacity* control).

After POPGym's CountRecall (Morad et al., ICLR 2023; our own implementation): cards are dealt
one per step; the agent must keep a count for every card value -- an order-free, set-like
memory whose size grows with the number of values.

Two implementations with identical trajectories for identical seeds:

- :class:`CountRecall` -- the single :class:`gymnasium.Env`.
- :class:`CountRecallVec` -- the native batched :class:`gymnasium.vector.VectorEnv`, equal to
  ``SyncVectorEnv([CountRecall] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share :class:`CountRecallConfig` and :func:`draw_cards`; the batched env computes the
answers with :func:`count_answers`, the single env by counting step by step.
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

__all__ = ["CountRecall", "CountRecallConfig", "CountRecallVec", "count_answers", "draw_cards"]

METADATA = {"render_modes": ["rgb_array"], "render_fps": 4, "memory_types": ("capacity",)}


@dataclass(frozen=True)
class CountRecallConfig:
    """Validated parameters of Count Recall (shared by the single and batched env)."""

    n_values: int = 4
    """Distinct card values; one count per value must be remembered."""
    length: int = 32
    """Cards dealt (= steps) per episode."""
    max_count: int = 15
    """Answers are capped: action ``max_count`` means "``max_count`` times or more"."""

    def __post_init__(self) -> None:
        for name, low in (("n_values", 2), ("length", 1), ("max_count", 1)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise ConfigError(f"CountRecall: {name} must be an integer >= {low}, got {v!r}")
            object.__setattr__(self, name, int(v))

    @property
    def n_actions(self) -> int:
        """Answers 0..max_count."""
        return self.max_count + 1

    @property
    def reward_scale(self) -> float:
        """``1 / length``: a perfect episode sums to 1 (POPGym's scaling)."""
        return 1.0 / self.length


def draw_cards(rng: np.random.Generator, config: CountRecallConfig) -> np.ndarray:
    """The whole episode's cards, ``int64[length]``, in one draw from ``rng`` at reset.

    The deal does not depend on the actions, so drawing it up front is the same distribution
    as one draw per step and leaves the batched env a draw loop only over resetting sub-envs.
    """
    return rng.integers(config.n_values, size=config.length, dtype=np.int64)


def count_answers(cards: np.ndarray, config: CountRecallConfig) -> np.ndarray:
    """Correct answers for ``int64[..., length]`` cards: for each step, how often its card
    value was dealt before it, capped at ``max_count`` (same shape, int64)."""
    onehot = cards[..., None] == np.arange(config.n_values)  # [..., L, n_values]
    before = np.cumsum(onehot, axis=-2) - onehot
    return np.minimum(np.take_along_axis(before, cards[..., None], axis=-1)[..., 0], config.max_count)


class CountRecall(gym.Env[np.ndarray, np.int64]):
    """Count Recall: at every step, say how many times the card just dealt was dealt before.

    ## Description

    POPGym-style CountRecall (own implementation). A card value, i.i.d. uniform over
    ``n_values``, is dealt every step; the question is always about the card just dealt.
    POPGym instead shows a dealt card and a separate query card each step, deals from shuffled
    decks and gives a clamped linear reward in the error; we score exact answers, as the
    rlmem retention controls do. Solving it needs one counter per value (capacity), not order.

    ## Action Space

    ``Discrete(max_count + 1)``: the count ``a`` of earlier deals of the current value, with
    ``max_count`` meaning "``max_count`` or more".

    ## Observation Space

    ``Box(0, 1, (n_values,), float32)``: the one-hot current card; the terminal observation
    after the last step is all zeros. ``info["cue"]`` (bool, every reset and step info) is
    True while a card is shown (each deal changes a count the agent must keep).

    ## Rewards

    Every step: ``+1 / length`` for the right count, ``-1 / length`` for a wrong one. Best
    return 1. The constant policy "0" is right only at each value's first deal.

    ## Starting State

    The episode's ``length`` cards, drawn from ``self.np_random`` at reset
    (:func:`draw_cards`); the first is shown.

    ## Episode End

    Termination after ``length`` steps; ``info["success"]`` is True when every answer was
    right. There is no truncation.

    ## Arguments

    ``n_values`` (4), ``length`` (32), ``max_count`` (15). Bad values raise
    :class:`rlmem.errors.ConfigError`. ``get_state()`` / ``set_state()`` expose the hidden
    state (the deal included: oracles read it).
    """

    metadata = METADATA

    def __init__(
        self, n_values: int = 4, length: int = 32, max_count: int = 15, render_mode: str | None = None
    ) -> None:
        self.config = CountRecallConfig(n_values=n_values, length=length, max_count=max_count)
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"CountRecall: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.config.n_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.config.n_values,), dtype=np.float32)
        self._cards = np.zeros(self.config.length, dtype=np.int64)
        self._t = self._errors = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._cards = draw_cards(self.np_random, self.config)
        self._t = self._errors = 0
        self._needs_reset = False
        return self._observe(), {"cue": True}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("CountRecall: call reset() before step()")
        a = int(action)
        cfg = self.config
        if not 0 <= a < cfg.n_actions:
            raise ValueError(f"CountRecall: action must be in [0, {cfg.n_actions}), got {action!r}")
        card = self._cards[self._t]
        answer = min(int(np.count_nonzero(self._cards[: self._t] == card)), cfg.max_count)
        if a == answer:
            reward = cfg.reward_scale
        else:
            reward, self._errors = -cfg.reward_scale, self._errors + 1
        self._t += 1
        terminated = self._t == cfg.length
        info: dict[str, Any] = {"cue": not terminated}
        if terminated:
            info["success"] = self._errors == 0
            self._needs_reset = True
        return self._observe(), reward, terminated, False, info

    def _observe(self) -> np.ndarray:
        obs = np.zeros(self.config.n_values, dtype=np.float32)
        if self._t < self.config.length:
            obs[self._cards[self._t]] = 1.0
        return obs

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]``: the current observation as a strip of cells (see rlmem.envs._draw)."""
        if self.render_mode is None:
            return None
        return observation_strip(self._observe())

    def get_state(self) -> dict[str, np.ndarray]:
        """``cards`` (int64[length]), ``t`` (steps taken), ``errors`` (wrong answers),
        ``needs_reset`` (bool), ``rng`` (uint64[6])."""
        return {
            "cards": self._cards.copy(),
            "t": np.array(self._t, dtype=np.int64),
            "errors": np.array(self._errors, dtype=np.int64),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, ("cards", "t", "errors", "needs_reset", "rng"), "CountRecall")
        cards = np.asarray(state["cards"], dtype=np.int64)
        if cards.shape != (self.config.length,):
            raise ConfigError(
                f"CountRecall.set_state: 'cards' has shape {cards.shape}, expected ({self.config.length},)"
            )
        self._cards = cards.copy()
        self._t, self._errors = int(state["t"]), int(state["errors"])
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


class CountRecallVec(SubEnvRNGs, VectorEnv):
    """Native batched Count Recall: ``num_envs`` copies of :class:`CountRecall` in numpy.

    Equal to ``SyncVectorEnv([CountRecall] * N, autoreset_mode=SAME_STEP)`` -- observations,
    rewards, terminated, truncated and the info dict -- for the same seeds (sub-env ``i`` gets
    ``seed + i``). SAME_STEP autoreset only: ``info["final_obs"]`` / ``info["final_info"]``
    (``success``, ``cue``) with their masks on steps where some sub-env finished.

    Shapes: observations ``float32[N, n_values]``, rewards ``float64[N]``, actions ``int[N]``.
    Per-step dynamics are whole-array; each resetting sub-env draws its deal with one call on
    its own generator, and the answers of the new episodes are computed at once
    (:func:`count_answers`).
    """

    metadata = {**METADATA, "render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        n_values: int = 4,
        length: int = 32,
        max_count: int = 15,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"CountRecallVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = CountRecallConfig(n_values=n_values, length=length, max_count=max_count)
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(f"CountRecallVec: renders no frames (use CountRecall), got render_mode={render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.single_action_space = spaces.Discrete(cfg.n_actions)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(cfg.n_values,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        # Row n_values is the all-zero terminal observation.
        self._obs_table = np.eye(cfg.n_values + 1, cfg.n_values, dtype=np.float32)
        self._cards = np.zeros((n, cfg.length), dtype=np.int64)
        self._answers = np.zeros((n, cfg.length), dtype=np.int64)  # derived from _cards
        self._t = np.zeros(n, dtype=np.int64)
        self._errors = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        self._init_rngs(n)
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); info ``{"cue", "_cue"}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "CountRecallVec")
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": mask.copy(), "_cue": mask}

    def _restart(self, idx: np.ndarray) -> None:
        """New episodes for sub-envs ``idx``: the only per-sub-env loop, one draw call each."""
        if len(idx) == 0:
            return
        cards = np.array([draw_cards(self._rngs[i], self.config) for i in idx])  # type: ignore[arg-type]
        self._cards[idx] = cards
        self._answers[idx] = count_answers(cards, self.config)
        self._t[idx] = 0
        self._errors[idx] = 0

    def _observe(self) -> np.ndarray:
        length = self.config.length
        current = self._cards[self._rows, np.minimum(self._t, length - 1)]
        return self._obs_table.take(np.where(self._t < length, current, self.config.n_values), axis=0)

    def step(self, actions):
        """One step of every sub-env; finished episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("CountRecallVec: call reset() before step()")
        cfg = self.config
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.min() < 0 or a.max() >= cfg.n_actions:
            raise ValueError(f"CountRecallVec: actions must be int[{self.num_envs}] in [0, {cfg.n_actions})")
        t = self._t
        wrong = a != self._answers[self._rows, t]
        reward = np.where(wrong, -cfg.reward_scale, cfg.reward_scale)
        self._errors += wrong
        t += 1
        terminated = t == cfg.length
        obs = self._observe()
        info: dict[str, Any] = {}
        done_idx = terminated.nonzero()[0]
        if len(done_idx):
            add_final(info, obs, terminated, {"cue": ~terminated, "success": self._errors == 0})
            self._restart(done_idx)
            obs[done_idx] = self._obs_table.take(self._cards[done_idx, 0], axis=0)
        info["cue"], info["_cue"] = self._all_true.copy(), self._all_true.copy()  # a card is always shown
        return obs, reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def get_state(self) -> dict[str, np.ndarray]:
        """``cards`` (``int64[N, length]``), ``t``, ``errors`` (``int64[N]``), ``rng`` (``uint64[N, 6]``)."""
        if self._needs_reset:
            raise ResetNeeded("CountRecallVec: call reset() before get_state()")
        state = {k: getattr(self, f"_{k}").copy() for k in ("cards", "t", "errors")}
        state["rng"] = self._rng_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, ("cards", "t", "errors", "rng"), "CountRecallVec")
        n = self.num_envs
        shapes = {"cards": (n, self.config.length), "t": (n,), "errors": (n,), "rng": (n, 6)}
        for k, shape in shapes.items():
            if np.shape(state[k]) != shape:
                raise ConfigError(f"CountRecallVec.set_state: {k!r} has shape {np.shape(state[k])}, expected {shape}")
        for k in ("cards", "t", "errors"):
            getattr(self, f"_{k}")[:] = state[k]
        self._answers[:] = count_answers(self._cards, self.config)
        self._set_rng_state(state["rng"])
        self._needs_reset = False
