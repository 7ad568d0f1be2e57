"""Endless T-Maze: a chain of T-mazes, each with its own cue (memory *rewriting*).

After Shchendrigin, Cherepanov, Kovalev, Panov, "Memory Retention Is Not Enough to
Master Memory Tasks in Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086); the
authors' code is ``Quartz-Admirer/Adaptive-Memory-Envs`` (``environments/endless_tmaze*.py``).

Two implementations with identical trajectories for identical seeds:

- :class:`EndlessTMaze` -- the single :class:`gymnasium.Env` (plain Python, readable).
- :class:`EndlessTMazeVec` -- the native batched :class:`gymnasium.vector.VectorEnv`:
  whole-array numpy dynamics over ``num_envs`` sub-environments, one RNG per sub-env,
  equal to ``SyncVectorEnv([EndlessTMaze] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share the validated parameters (:class:`EndlessTMazeConfig`), the mapping from a random
draw to a corridor (:func:`corridor_from_raw`) and the picture (:func:`render_frame`), so
they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._vec import add_final, check_state_keys, reset_plan
from rlmem.errors import ConfigError

__all__ = [
    "FORWARD",
    "LEFT",
    "RIGHT",
    "EndlessTMaze",
    "EndlessTMazeConfig",
    "EndlessTMazeVec",
    "corridor_from_raw",
    "draw_corridor",
    "render_frame",
    "rng_from_array",
    "rng_state_to_array",
]

FORWARD, LEFT, RIGHT = 0, 1, 2
"""Actions. The correct turn for cue ``c`` (0 = left, 1 = right) is action ``c + 1``."""

LENGTH_MODES = ("fixed", "uniform")
RENDER_MODES = ("rgb_array",)
METADATA = {
    "render_modes": list(RENDER_MODES),
    "render_fps": 8,
    # n_corridors = 1 is a pure retention task; the tag describes the family.
    "memory_types": ("sequential", "rewriting"),
}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EndlessTMazeConfig:
    """Validated parameters of an Endless T-Maze (shared by the single and batched env)."""

    n_corridors: int = 3
    """Corridors per episode; each has its own cue. 1 = classic (retention-only) T-Maze."""
    length_mode: str = "uniform"
    """``"fixed"``: every corridor has length ``l_max``; ``"uniform"``: integer U[l_min, l_max],
    redrawn for every corridor."""
    l_min: int = 5
    """Shortest corridor in ``"uniform"`` mode (validated in both modes: 1 <= l_min <= l_max)."""
    l_max: int = 10
    """Longest corridor; also the normaliser of the position observation."""
    penalty: float = -0.01
    """Reward of a non-forward action inside a corridor (the agent stays)."""
    turn_reward: float = 1.0
    """Reward of a correct turn at a junction."""
    wrong_turn_reward: float = -0.01
    """Reward of a wrong action at a junction (ends the episode). The authors' code gives the
    step penalty (-0.01); the project page says -1."""

    def __post_init__(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        if not is_int(self.n_corridors) or self.n_corridors < 1:
            raise ConfigError(f"EndlessTMaze: n_corridors must be an integer >= 1, got {self.n_corridors!r}")
        if self.length_mode not in LENGTH_MODES:
            raise ConfigError(
                f"EndlessTMaze: length_mode must be one of {LENGTH_MODES}, got {self.length_mode!r}"
            )
        if not is_int(self.l_min) or not is_int(self.l_max):
            raise ConfigError(f"EndlessTMaze: l_min and l_max must be integers, got {self.l_min!r}, {self.l_max!r}")
        if not 1 <= self.l_min <= self.l_max:
            raise ConfigError(
                f"EndlessTMaze: corridor lengths need 1 <= l_min <= l_max, got l_min={self.l_min}, l_max={self.l_max}"
            )
        for name in ("penalty", "turn_reward", "wrong_turn_reward"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
                raise ConfigError(f"EndlessTMaze: {name} must be a finite number, got {value!r}")
        # Normalise numpy scalars to Python numbers: rewards and infos then have the exact
        # types SyncVectorEnv batches (float -> float64, bool -> bool).
        for name in ("n_corridors", "l_min", "l_max"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("penalty", "turn_reward", "wrong_turn_reward"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def max_steps(self) -> int:
        """Time limit (as in the authors' code): 6 * (l_max + 1) * n_corridors steps."""
        return 6 * (self.l_max + 1) * self.n_corridors

    @property
    def fixed(self) -> bool:
        return self.length_mode == "fixed"


def corridor_from_raw(raw, config: EndlessTMazeConfig):
    """Map a raw 64-bit draw to ``(cue, length)``: cue 0 = left, 1 = right.

    The cue is the lowest bit (exactly fair); the length in uniform mode is the other 63 bits
    modulo the number of lengths (bias below span / 2**63: negligible). Works elementwise on
    Python ints and on ``uint64`` arrays alike, so the single and the batched env agree bit
    for bit.
    """
    cue = raw & 1
    if config.fixed:
        return cue, config.l_max
    return cue, config.l_min + (raw >> 1) % (config.l_max - config.l_min + 1)


def draw_corridor(rng: np.random.Generator, config: EndlessTMazeConfig) -> tuple[int, int]:
    """Draw a new corridor from ``rng``: ``(cue, length)`` as Python ints.

    One raw 64-bit draw from ``rng``'s bit generator per corridor: ``Generator.integers``
    costs ~7x more per call, and these draws are the batched env's only per-sub-env loop.
    """
    cue, length = corridor_from_raw(int(rng.bit_generator.random_raw()), config)
    return int(cue), int(length)


# --------------------------------------------------------------------------- RNG state


def rng_state_to_array(rng: np.random.Generator) -> np.ndarray:
    """PCG64 state as ``uint64[6]``: state hi/lo, inc hi/lo, has_uint32, uinteger.

    An array of plain integers (no strings, no pickles): safe in JSON and in
    ``torch.save``/``weights_only`` checkpoints once converted.
    """
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        raise ConfigError(
            f"EndlessTMaze state: only PCG64 generators are supported, got {state.get('bit_generator')}"
        )
    mask = (1 << 64) - 1
    s, inc = state["state"]["state"], state["state"]["inc"]
    return np.array(
        [s >> 64, s & mask, inc >> 64, inc & mask, state["has_uint32"], state["uinteger"]], dtype=np.uint64
    )


def rng_from_array(arr: np.ndarray) -> np.random.Generator:
    """Inverse of :func:`rng_state_to_array`: a fresh Generator in exactly that state."""
    a = [int(v) for v in np.asarray(arr, dtype=np.uint64).reshape(6)]
    rng = np.random.Generator(np.random.PCG64(0))
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
        "has_uint32": a[4],
        "uinteger": a[5],
    }
    return rng


# --------------------------------------------------------------------------- picture

# 3x5 bitmap font for the "k/n" counter.
_GLYPHS = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    "/": ("001", "001", "010", "100", "100"),
}
_GLYPH_MASKS = {ch: np.array([[c == "1" for c in row] for row in rows]) for ch, rows in _GLYPHS.items()}

_BACKGROUND = (24, 24, 28)
_WALL = (64, 64, 70)
_FLOOR = (205, 205, 205)
_JUNCTION = (150, 150, 150)
_CUE_COLOURS = ((40, 110, 240), (245, 145, 20))  # cue 0 = left = blue, cue 1 = right = orange
_ARM_COLOURS = ((140, 175, 245), (250, 200, 140))  # the arms, in a lighter shade of their cue
_AGENT = (15, 15, 15)
_TEXT = (235, 235, 235)
_SUCCESS = (40, 190, 70)
_FAILURE = (220, 40, 40)
_PAD, _TEXT_SCALE = 4, 2
_HEADER = 5 * _TEXT_SCALE + 2 * _PAD


def _cell_size(l_max: int) -> int:
    # About 240 px of corridor for any l_max; never below 6 px so long corridors stay legible.
    return int(np.clip(240 // (l_max + 1), 6, 24))


def _draw_text(img: np.ndarray, text: str, top: int, left: int) -> None:
    s = _TEXT_SCALE
    for ch in text:
        mask = np.kron(_GLYPH_MASKS[ch], np.ones((s, s), dtype=bool))
        img[top : top + mask.shape[0], left : left + mask.shape[1]][mask] = _TEXT
        left += 4 * s


def render_frame(
    config: EndlessTMazeConfig, corridor: int, x: int, length: int, cue: int, failed: bool = False
) -> np.ndarray:
    """Top-down picture of the current corridor: ``uint8[H, W, 3]``, same size for every state.

    The corridor is a horizontal strip of cells 0..length (unused cells up to ``l_max`` are
    wall); the junction is the last cell, with the left arm above it (blue) and the right arm
    below it (orange). Cell 0 shows the cue colour of this corridor, the agent is a dark
    square, the header shows the corridor counter k/n, and the frame turns green on success
    and red after a wrong turn. Nearest-neighbour upscaling keeps it readable.
    """
    c = _cell_size(config.l_max)
    height = _HEADER + 3 * c + _PAD
    width = 2 * _PAD + (config.l_max + 1) * c
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = _BACKGROUND

    def cell(row: int, col: int, colour: tuple[int, int, int], inset: int = 1) -> None:
        top, left = _HEADER + row * c, _PAD + col * c
        img[top + inset : top + c - inset, left + inset : left + c - inset] = colour

    for col in range(config.l_max + 1):
        cell(1, col, _WALL)
    for col in range(length):
        cell(1, col, _FLOOR)
    cell(1, 0, _CUE_COLOURS[cue])
    cell(1, length, _JUNCTION)
    cell(0, length, _ARM_COLOURS[0])
    cell(2, length, _ARM_COLOURS[1])
    cell(1, x, _AGENT, inset=max(2, c // 4))

    k = min(corridor + 1, config.n_corridors)
    _draw_text(img, f"{k}/{config.n_corridors}", _PAD, _PAD)

    if corridor >= config.n_corridors or failed:
        img[:2], img[-2:], img[:, :2], img[:, -2:] = (_SUCCESS if not failed else _FAILURE,) * 4
    return img


# --------------------------------------------------------------------------- single env


class EndlessTMaze(gym.Env[np.ndarray, np.int64]):
    """Endless T-Maze: walk down a chain of corridors, turning where each corridor's cue said.

    ## Description

    From Shchendrigin et al., "Memory Retention Is Not Enough to Master Memory Tasks in
    Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086). An episode is a chain of
    ``n_corridors`` T-mazes. At the start of every corridor the agent sees a cue (left or
    right); the cue disappears after the first step forward. At the end of the corridor (the
    junction) it must turn the way the cue of *this* corridor said. A correct turn leads to
    the start of the next corridor with a fresh random cue, so the agent must overwrite what it
    remembered: with ``n_corridors = 1`` the task only tests retention, with more corridors it
    tests rewriting. Corridor lengths are fixed (``l_max``) or drawn uniformly in
    ``[l_min, l_max]`` for every corridor, which makes the junction unpredictable from a
    step count and forces the agent to track its position.

    ## Action Space

    ``Discrete(3)``: 0 forward, 1 turn left, 2 turn right (the authors' mapping).
    Inside a corridor a turn is a wasted step; at the junction any action other than the
    correct turn -- forward included -- fails the episode (as in the authors' code).

    ## Observation Space

    ``Box(0, 1, (3,), float32)``: ``[x / l_max, hint_left, hint_right]`` where ``x`` is the
    position in the current corridor (0 at its start, ``length`` at the junction). The hint is
    the one-hot cue, shown only while ``x == 0`` and ``[0, 0]`` everywhere else.
    ``info["cue"]`` (bool, in every reset and step info) says whether this observation shows a
    cue.

    ## Rewards

    - ``turn_reward`` (+1) for a correct turn at a junction;
    - ``penalty`` (-0.01) for a turn inside a corridor (the agent does not move);
    - ``wrong_turn_reward`` for a wrong turn or forward at a junction (ends the episode);
      default -0.01 as in the authors' code, where it equals the step penalty (the project
      page says -1: pass ``wrong_turn_reward=-1.0`` for that);
    - 0 otherwise. The best return is ``n_corridors * turn_reward``.

    ## Starting State

    ``x = 0`` of the first corridor, with a random cue and (uniform mode) a random length.

    ## Episode End

    - Termination: a wrong action at a junction (``info["success"] = False``), or the correct
      turn at the last junction (``info["success"] = True``).
    - Truncation: ``max_steps = 6 * (l_max + 1) * n_corridors`` steps, enforced here rather
      than by a ``TimeLimit`` wrapper so the batched env equals it (``info["success"] = False``).
      If the last step both terminates and reaches the limit it counts as terminated (the
      authors' wrapper labels it truncated); Gymnasium's rule is that a true terminal state is
      never bootstrapped.

    An optimal episode takes ``sum_k (length_k + 1)`` steps.

    ## Arguments

    ``n_corridors`` (3), ``length_mode`` ("uniform" | "fixed"), ``l_min`` (5), ``l_max`` (10),
    ``penalty`` (-0.01), ``turn_reward`` (1.0), ``wrong_turn_reward`` (-0.01),
    ``render_mode`` (None | "rgb_array"). Bad values raise :class:`rlmem.errors.ConfigError`.

    ## Differences from the authors' code

    Cues and lengths come from ``self.np_random`` (Gymnasium seeding) rather than the global
    ``random`` module, one draw per corridor instead of all cues at reset (same distribution);
    terminal-and-time-limit counts as terminated (see above); ``wrong_turn_reward`` is an
    argument rather than the step penalty.

    ``get_state()`` / ``set_state()`` expose the hidden Markov state (for oracles and
    bit-exact resume).
    """

    metadata = METADATA

    def __init__(
        self,
        n_corridors: int = 3,
        length_mode: str = "uniform",
        l_min: int = 5,
        l_max: int = 10,
        penalty: float = -0.01,
        turn_reward: float = 1.0,
        wrong_turn_reward: float = -0.01,
        render_mode: str | None = None,
    ) -> None:
        self.config = EndlessTMazeConfig(
            n_corridors=n_corridors,
            length_mode=length_mode,
            l_min=l_min,
            l_max=l_max,
            penalty=penalty,
            turn_reward=turn_reward,
            wrong_turn_reward=wrong_turn_reward,
        )
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ConfigError(f"EndlessTMaze: render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
        self.render_mode = render_mode
        self.max_steps = self.config.max_steps
        self.action_space = spaces.Discrete(3)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        # Hidden state, as plain Python ints (meaningful after the first reset).
        self._corridor = self._x = self._length = self._cue = self._steps = 0
        self._failed = False
        self._needs_reset = True

    # -- dynamics -----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._corridor, self._steps, self._failed = 0, 0, False
        self._start_corridor()
        self._needs_reset = False
        return self._observe(), {"cue": True}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("EndlessTMaze: call reset() before step()")
        a = int(action)
        if a not in (FORWARD, LEFT, RIGHT):
            raise ValueError(f"EndlessTMaze: action must be 0, 1 or 2, got {action!r}")
        cfg = self.config
        self._steps += 1
        reward, terminated = 0.0, False
        if self._x < self._length:  # inside the corridor
            if a == FORWARD:
                self._x += 1
            else:
                reward = cfg.penalty
        elif a == self._cue + 1:  # correct turn at the junction
            reward = cfg.turn_reward
            self._corridor += 1
            if self._corridor == cfg.n_corridors:
                terminated = True
            else:
                self._start_corridor()
        else:  # wrong turn, or forward into the wall of the junction
            reward, terminated, self._failed = cfg.wrong_turn_reward, True, True
        truncated = not terminated and self._steps >= self.max_steps
        info: dict[str, Any] = {"cue": self._x == 0}
        if terminated or truncated:
            info["success"] = self._corridor == cfg.n_corridors
            self._needs_reset = True
        return self._observe(), reward, terminated, truncated, info

    def _start_corridor(self) -> None:
        self._x = 0
        self._cue, self._length = draw_corridor(self.np_random, self.config)

    def _observe(self) -> np.ndarray:
        visible = self._x == 0
        return np.array(
            [self._x / self.config.l_max, visible and self._cue == 0, visible and self._cue == 1],
            dtype=np.float32,
        )

    def get_action_meanings(self) -> list[str]:
        """Action names (the Atari convention; the video recorder labels actions with them)."""
        return ["FORWARD", "LEFT", "RIGHT"]

    # -- picture --------------------------------------------------------------------

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]`` top-down picture (see :func:`render_frame`) in ``"rgb_array"`` mode."""
        if self.render_mode is None:
            gym.logger.warn("EndlessTMaze.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        return render_frame(self.config, self._corridor, self._x, self._length, self._cue, self._failed)

    # -- hidden state -----------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """The hidden Markov state, as numpy arrays only (JSON-/checkpoint-safe).

        Keys: ``corridor``, ``x``, ``length``, ``cue``, ``steps`` (int64 scalars), ``failed``
        (bool scalar), ``needs_reset`` (bool scalar), ``rng`` (``uint64[6]``, the PCG64 state).
        """
        return {
            "corridor": np.array(self._corridor, dtype=np.int64),
            "x": np.array(self._x, dtype=np.int64),
            "length": np.array(self._length, dtype=np.int64),
            "cue": np.array(self._cue, dtype=np.int64),
            "steps": np.array(self._steps, dtype=np.int64),
            "failed": np.array(self._failed),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, _SINGLE_KEYS, "EndlessTMaze")
        self._corridor, self._x, self._length, self._cue, self._steps = (
            int(state[k]) for k in ("corridor", "x", "length", "cue", "steps")
        )
        self._failed, self._needs_reset = bool(state["failed"]), bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


_SINGLE_KEYS = ("corridor", "x", "length", "cue", "steps", "failed", "needs_reset", "rng")
_BATCH_KEYS = ("corridor", "x", "length", "cue", "steps", "rng")


# --------------------------------------------------------------------------- batched env


class EndlessTMazeVec(VectorEnv):
    """Native batched Endless T-Maze: ``num_envs`` copies of :class:`EndlessTMaze` in numpy.

    Trajectories equal ``SyncVectorEnv([lambda: EndlessTMaze(**kw)] * N,
    autoreset_mode=AutoresetMode.SAME_STEP)`` exactly -- observations, rewards, terminated,
    truncated and the info dict (same keys, masks and dtypes) -- for the same seeds:
    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` via ``gymnasium.utils.seeding``,
    ``seed=None`` keeps already-seeded generators (fresh entropy otherwise), a list gives one
    seed per sub-env.

    **Autoreset: SAME_STEP only.** A sub-env whose episode ends is reset inside the same
    ``step``; the returned observation is the first of its new episode, the last one is in
    ``info["final_obs"]`` (object array, ``None`` elsewhere, mask ``info["_final_obs"]``) and
    its info in ``info["final_info"]`` (dict of arrays ``success``, ``cue`` with ``_key``
    masks; mask ``info["_final_info"]``). ``info["cue"]`` (bool ``[N]``, mask ``_cue``) is the
    cue flag of the returned observation. The final_* entries exist only on steps where some
    sub-env is done.

    Shapes: observations ``float32[N, 3]``, rewards ``float64[N]``, terminated/truncated
    ``bool[N]``, actions ``int[N]`` in {0, 1, 2}.

    Per-step dynamics are whole-array numpy; random draws happen only at resets and corridor
    transitions, looping over just the sub-envs that draw, each with its own generator.
    """

    metadata = {**METADATA, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        n_corridors: int = 3,
        length_mode: str = "uniform",
        l_min: int = 5,
        l_max: int = 10,
        penalty: float = -0.01,
        turn_reward: float = 1.0,
        wrong_turn_reward: float = -0.01,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"EndlessTMazeVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = EndlessTMazeConfig(
            n_corridors=n_corridors,
            length_mode=length_mode,
            l_min=l_min,
            l_max=l_max,
            penalty=penalty,
            turn_reward=turn_reward,
            wrong_turn_reward=wrong_turn_reward,
        )
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ConfigError(
                f"EndlessTMazeVec: render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}"
            )
        self.num_envs = n = int(num_envs)
        self.render_mode = render_mode
        self.metadata = dict(self.metadata)  # per instance, like SyncVectorEnv
        self.max_steps = self.config.max_steps
        self.single_action_space = spaces.Discrete(3)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)

        self._corridor = np.zeros(n, dtype=np.int64)
        self._x = np.zeros(n, dtype=np.int64)
        self._length = np.zeros(n, dtype=np.int64)
        self._cue = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._raw_draws: list[Any] = [None] * n  # bound random_raw of each sub-env's generator
        self._seeds: list[int | None] = [None] * n
        # Every observation row is a function of (x, cue): look rows up by 2 * x + cue instead
        # of assembling columns each step. Same float formula as EndlessTMaze._observe.
        positions = np.arange(self.config.l_max + 1)
        table = np.zeros((self.config.l_max + 1, 2, 3), dtype=np.float32)
        table[:, :, 0] = (positions / self.config.l_max)[:, None]
        table[0, 0, 1] = table[0, 1, 2] = 1.0
        self._obs_table = table.reshape(-1, 3)
        # What a step does depends only on (cue, at_junction, action): 12 cases, indexed by
        # k = action + 3 * at_junction + 6 * cue and tabulated here from the single env's rules.
        k = np.arange(12)
        action, at_junction, cue = k % 3, (k // 3) % 2 == 1, k // 6
        correct = at_junction & (action == cue + 1)
        self._move_of = (~at_junction & (action == FORWARD)).astype(np.int64)
        self._correct_of = correct
        self._wrong_of = at_junction & ~correct  # includes forward at the junction
        self._reward_of = np.select(
            [~at_junction & (action != FORWARD), correct, self._wrong_of],
            [self.config.penalty, self.config.turn_reward, self.config.wrong_turn_reward],
            0.0,
        )
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    # -- seeding, reset -------------------------------------------------------------------

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The sub-envs' generators (as ``SyncVectorEnv.np_random``)."""
        return tuple(self._rngs)  # type: ignore[arg-type]

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        return tuple(self._seeds)

    def _set_rng(self, i: int, rng: np.random.Generator, seed: int | None) -> None:
        self._rngs[i], self._seeds[i] = rng, seed
        self._raw_draws[i] = rng.bit_generator.random_raw

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``, as SyncVectorEnv).

        Returns ``obs float32[N, 3]`` and ``{"cue": bool[N], "_cue": bool[N]}``.
        """
        mask, seeds = reset_plan(self.num_envs, seed, options, "EndlessTMazeVec")
        idx = np.flatnonzero(mask)
        for i in idx:
            # Same rule as Env.reset: a seed reseeds, None keeps an existing generator.
            if seeds[i] is not None or self._rngs[i] is None:
                self._set_rng(i, *seeding.np_random(seeds[i]))
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": (self._x == 0) & mask, "_cue": mask.copy()}

    def _restart(self, idx: np.ndarray) -> None:
        """Put sub-envs ``idx`` at the start of a new episode (draws one corridor each)."""
        self._corridor[idx] = 0
        self._steps[idx] = 0
        self._new_corridor(idx)

    def _new_corridor(self, idx: np.ndarray) -> None:
        """Move sub-envs ``idx`` to x = 0 of a fresh corridor.

        The list comprehension is the only per-sub-env Python loop: one raw draw from each
        drawing sub-env's own generator; the mapping to (cue, length) is whole-array.
        """
        if len(idx) == 0:
            return
        draws = self._raw_draws
        raw = np.array([draws[i]() for i in idx], dtype=np.uint64)
        self._cue[idx], self._length[idx] = corridor_from_raw(raw, self.config)
        self._x[idx] = 0

    def _observe(self) -> np.ndarray:
        """``float32[N, 3]`` observations of the current state (a new array every call)."""
        return self._obs_table.take(2 * self._x + self._cue, axis=0)

    # -- dynamics ----------------------------------------------------------------------------

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every sub-env; ended episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("EndlessTMazeVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"EndlessTMazeVec: actions must have shape ({self.num_envs},), got {a.shape}")
        if a.min() < 0 or a.max() > 2:
            raise ValueError("EndlessTMazeVec: actions must be 0, 1 or 2")
        cfg, x = self.config, self._x

        self._steps += 1
        k = a + 3 * (x >= self._length) + 6 * self._cue
        x += self._move_of.take(k)
        reward = self._reward_of.take(k)
        correct = self._correct_of.take(k)
        wrong = self._wrong_of.take(k)

        self._corridor += correct
        success = correct & (self._corridor == cfg.n_corridors)
        terminated = wrong | success
        truncated = (self._steps >= self.max_steps) & ~terminated
        # Transitions draw before any autoreset draw of the same sub-env, as in the single env.
        self._new_corridor((correct ^ success).nonzero()[0])

        obs = self._observe()
        done = terminated | truncated
        info: dict[str, Any] = {}
        done_idx = done.nonzero()[0]
        if len(done_idx):
            add_final(info, obs, done, {"cue": x == 0, "success": success})  # copies obs rows before the autoreset
            self._restart(done_idx)
            obs[done_idx] = self._obs_table.take(self._cue[done_idx], axis=0)  # x = 0
        info["cue"], info["_cue"] = x == 0, self._all_true.copy()
        return obs, reward, terminated, truncated, info

    # -- picture, state -------------------------------------------------------------------------

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``uint8[H, W, 3]`` frame per sub-env (see :func:`render_frame`)."""
        if self.render_mode is None:
            gym.logger.warn("EndlessTMazeVec.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        return tuple(
            render_frame(self.config, int(k), int(x), int(l), int(c))
            for k, x, l, c in zip(self._corridor, self._x, self._length, self._cue)
        )

    def get_state(self) -> dict[str, np.ndarray]:
        """Hidden state of the whole batch: ``corridor``, ``x``, ``length``, ``cue``, ``steps``
        (``int64[N]``) and ``rng`` (``uint64[N, 6]``, one PCG64 state per sub-env)."""
        if self._needs_reset:
            raise ResetNeeded("EndlessTMazeVec: call reset() before get_state()")
        state = {k: getattr(self, f"_{k}").copy() for k in _BATCH_KEYS[:-1]}
        state["rng"] = np.stack([rng_state_to_array(r) for r in self._rngs])  # type: ignore[arg-type]
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, _BATCH_KEYS, "EndlessTMazeVec")
        n = self.num_envs
        for k in _BATCH_KEYS[:-1]:
            v = np.asarray(state[k])
            if v.shape != (n,):
                raise ConfigError(f"EndlessTMazeVec.set_state: {k!r} has shape {v.shape}, expected ({n},)")
            getattr(self, f"_{k}")[:] = v
        rng = np.asarray(state["rng"])
        if rng.shape != (n, 6):
            raise ConfigError(f"EndlessTMazeVec.set_state: 'rng' has shape {rng.shape}, expected ({n}, 6)")
        for i, r in enumerate(rng):
            self._set_rng(i, rng_from_array(r), None)
        self._needs_reset = False
