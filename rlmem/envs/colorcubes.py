"""Color-Cubes: walk to the cube of the announced colour while cubes teleport (memory *rewriting*).

After Shchendrigin, Cherepanov, Kovalev, Panov, "Memory Retention Is Not Enough to Master
Memory Tasks in Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086). The authors publish no
code for this env: every parameter below is our documented choice and a constructor argument.

Two implementations with identical trajectories for identical seeds:

- :class:`ColorCubes` -- the single :class:`gymnasium.Env`, the reference.
- :class:`ColorCubesVec` -- the native batched :class:`gymnasium.vector.VectorEnv`: one
  numba-compiled loop over ``num_envs`` sub-envs that does what the single env's step does,
  with one RNG per sub-env, equal to ``SyncVectorEnv([ColorCubes] * N,
  autoreset_mode=SAME_STEP)`` step for step.

Both share the validated parameters (:class:`ColorCubesConfig`). The single env's draws
(:func:`draw_layout`, :func:`draw_phase_change`, :func:`teleport_mask`, :func:`apply_teleports`)
and observation (:func:`observe`) are the reference; the compiled loop makes the same draws
from the same raw words (:func:`teleport_bound` is :func:`teleport_mask` as one integer
comparison), and the whole env is tested equal to ``N`` single envs step for step.
"""

from __future__ import annotations

import functools
import math
from bisect import insort
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._vec import check_state_keys, is_int, reset_plan
from rlmem.envs.tmaze import rng_from_array, rng_state_to_array
from rlmem.errors import ConfigError

__all__ = [
    "DOWN",
    "LEFT",
    "LEVELS",
    "RIGHT",
    "STAY",
    "UP",
    "ColorCubes",
    "ColorCubesConfig",
    "ColorCubesVec",
    "observe",
]

STAY, UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3, 4
"""Actions. Rows grow downwards: UP is row - 1, LEFT is column - 1; moves into a wall stay."""
_DY = np.array([0, -1, 1, 0, 0], dtype=np.int64)
_DX = np.array([0, 0, 0, -1, 1], dtype=np.int64)

HIDDEN, FULL, POSITIONS = 0, 1, 2
"""What an observation shows besides the egocentric window: nothing, the full state (positions
and colours: phase starts, and teleport steps unless ``hide_colours``), or positions only
(teleport steps when ``hide_colours``)."""

LEVELS: dict[str, dict[str, Any]] = {
    # view_radius 0 and 8 steps (the largest shortest path on 5 x 5): with a 3 x 3 window and
    # 20 steps a memoryless agent solved trivial by sweeping the grid (measured 1.00 success).
    "trivial": dict(n_cubes=1, n_phases=1, grid_size=5, p_teleport=0.0, hide_colours=False,
                    view_radius=0, max_phase_steps=8),
    "medium": dict(n_cubes=5, n_phases=4, grid_size=7, p_teleport=0.05, hide_colours=False),
    "extreme": dict(n_cubes=5, n_phases=4, grid_size=7, p_teleport=0.05, hide_colours=True),
}
"""The paper's three levels (trivial: N = K = 1 as in the paper; medium/extreme: our choice)."""

RENDER_MODES = ("rgb_array",)
METADATA = {
    "render_modes": list(RENDER_MODES),
    "render_fps": 8,
    # trivial is retention only (object + spatial); the tag describes the family.
    "memory_types": ("object", "spatial", "rewriting"),
}


# --------------------------------------------------------------------------- config


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class ColorCubesConfig:
    """Validated parameters of a Color-Cubes env (shared by the single and batched env).

    Build it with :meth:`from_level`: a level's preset, then any explicit overrides.
    """

    level: str = "medium"
    """The preset the other fields started from (``"trivial"``, ``"medium"``, ``"extreme"``)."""
    n_cubes: int = 5
    """N: cubes, each with its own colour (colour id = cube index). 1 <= N <= G*G - 1."""
    n_phases: int = 4
    """K: phases per episode; each has a new target colour. Success = all K targets reached."""
    grid_size: int = 7
    """G: the grid is G x G cells."""
    p_teleport: float = 0.05
    """Per step, each non-target cube teleports to a random free cell with this probability."""
    hide_colours: bool = False
    """Extreme level: teleport steps show cube positions without colours, and the egocentric
    window shows cubes without colours; colours are seen only at phase starts."""
    teleport_target: bool = False
    """Also let the target cube teleport during its phase (not in the paper's description;
    with ``hide_colours`` it makes tracking identities through anonymous updates necessary)."""
    view_radius: int = 1
    """r: the egocentric window is (2r+1) x (2r+1) cells around the agent."""
    target_reward: float = 1.0
    """Reward of the step that reaches the target cube."""
    step_penalty: float = -0.01
    """Reward of every other step."""
    max_phase_steps: int = 0
    """Time limit per phase (truncation); 0 means ``4 * grid_size`` (a shortest path is at most
    ``2 * (grid_size - 1)`` steps)."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"ColorCubes: level must be one of {tuple(LEVELS)}, got {self.level!r}")
        minima = (("n_cubes", 1), ("n_phases", 1), ("grid_size", 2), ("view_radius", 0), ("max_phase_steps", 0))
        for name, low in minima:
            value = getattr(self, name)
            if not is_int(value) or value < low:
                raise ConfigError(f"ColorCubes: {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.n_cubes > self.grid_size**2 - 1:
            raise ConfigError(
                f"ColorCubes: n_cubes must be <= grid_size**2 - 1 = {self.grid_size**2 - 1} "
                f"(one cell is the agent's), got {self.n_cubes}"
            )
        if not _is_number(self.p_teleport) or not 0.0 <= self.p_teleport <= 1.0:
            raise ConfigError(f"ColorCubes: p_teleport must be a number in [0, 1], got {self.p_teleport!r}")
        for name in ("target_reward", "step_penalty"):
            value = getattr(self, name)
            if not _is_number(value) or not np.isfinite(value):
                raise ConfigError(f"ColorCubes: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))  # Python floats: SyncVectorEnv batches float64
        object.__setattr__(self, "p_teleport", float(self.p_teleport))
        for name in ("hide_colours", "teleport_target"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(f"ColorCubes: {name} must be True or False, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.max_phase_steps == 0:
            object.__setattr__(self, "max_phase_steps", 4 * self.grid_size)

    @classmethod
    def from_level(cls, level: str = "medium", **overrides: Any) -> ColorCubesConfig:
        """The preset of ``level`` with every non-``None`` override applied."""
        if level not in LEVELS:
            raise ConfigError(f"ColorCubes: level must be one of {tuple(LEVELS)}, got {level!r}")
        valid = {f.name for f in fields(cls)} - {"level"}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ConfigError(f"ColorCubes: unknown argument {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
        values = {**LEVELS[level], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(level=level, **values)

    @property
    def cells(self) -> int:
        return self.grid_size * self.grid_size

    @property
    def window(self) -> int:
        """Cells in the egocentric window, (2r+1)**2."""
        return (2 * self.view_radius + 1) ** 2

    @property
    def obs_size(self) -> int:
        """4 + 5N + (2r+1)**2 * (N + 2); see :class:`ColorCubes` for the layout."""
        return 4 + 5 * self.n_cubes + self.window * (self.n_cubes + 2)

    @property
    def teleport_free_cells(self) -> int:
        """Free cells for a teleporting cube (not the agent's, not any cube's, its own included)."""
        return self.cells - 1 - self.n_cubes

    @property
    def draws_teleports(self) -> bool:
        """Whether a step that does not reach the target draws teleport uniforms at all."""
        movable = self.n_cubes - (0 if self.teleport_target else 1)
        return self.p_teleport > 0.0 and movable > 0 and self.teleport_free_cells > 0


# --------------------------------------------------------------------------- random draws
#
# Every draw of both envs goes through these functions, one sub-env at a time, with that
# sub-env's generator: raw 64-bit words from the bit generator (cheaper than Generator methods,
# and the same numbers in both envs by construction). Cells are flat indices y * G + x.


def _kth_free(occupied: list[int], k: int) -> int:
    """The ``k``-th free cell (row-major) given the sorted occupied cells. Plain Python: the
    lists hold N + 1 cells, where numpy's per-call overhead would dominate."""
    for cell in occupied:
        if cell > k:
            break
        k += 1
    return k


def draw_layout(rng: np.random.Generator, cfg: ColorCubesConfig) -> tuple[int, np.ndarray, int]:
    """A new episode: ``(agent cell, cube cells int64[N], target cube)``, all cells distinct.

    One call of ``N + 2`` raw words: the agent's cell, each cube's cell among the still-free
    ones (in cube order), the target colour. Modulo bias is below cells / 2**64.
    """
    raw = rng.bit_generator.random_raw(cfg.n_cubes + 2).tolist()
    agent = raw[0] % cfg.cells
    occupied, cubes = [agent], []
    for i in range(cfg.n_cubes):
        cell = _kth_free(occupied, raw[i + 1] % (cfg.cells - 1 - i))
        insort(occupied, cell)
        cubes.append(cell)
    return agent, np.array(cubes, dtype=np.int64), raw[-1] % cfg.n_cubes


def draw_phase_change(
    rng: np.random.Generator, cfg: ColorCubesConfig, agent: int, cubes: np.ndarray, target: int
) -> int:
    """The agent (standing on the target's cell) reached the target: the target cube moves to a
    random free cell (in place) and a new target colour, different from the old one when N > 1,
    is returned. One call of 2 raw words."""
    raw = rng.bit_generator.random_raw(2).tolist()
    occupied = sorted(cubes.tolist())  # the target's own old cell is the agent's
    cubes[target] = _kth_free(occupied, raw[0] % (cfg.cells - cfg.n_cubes))
    if cfg.n_cubes == 1:
        return target
    return (target + 1 + raw[1] % (cfg.n_cubes - 1)) % cfg.n_cubes


def teleport_mask(raw: np.ndarray, target: np.ndarray, cfg: ColorCubesConfig) -> np.ndarray:
    """Which cubes teleport, from ``N`` raw words per env (``uint64[..., N]``, one per cube in cube
    order, the target's included and ignored unless ``teleport_target``): the word becomes a
    uniform in [0, 1) exactly as ``Generator.random`` does, and the cube teleports when it is
    below ``p_teleport``. Elementwise, so one env and a batch agree bit for bit."""
    u = (raw >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    mask = u < cfg.p_teleport
    if not cfg.teleport_target:
        np.put_along_axis(mask, np.asarray(target)[..., None], False, axis=-1)
    return mask


def apply_teleports(
    rng: np.random.Generator, cfg: ColorCubesConfig, agent: int, cells: list[int], movers: list[int]
) -> None:
    """Move the cubes ``movers`` (ascending cube indices) of ``cells`` (one env's cube cells) to
    random free cells, in place: one raw word each; each cube sees the cells left free by the
    cubes moved before it (its own cell is not free)."""
    raw = rng.bit_generator.random_raw(len(movers)).tolist()
    occupied = sorted(cells + [agent])
    for i, r in zip(movers, raw):
        new = _kth_free(occupied, r % cfg.teleport_free_cells)
        occupied.remove(cells[i])
        insort(occupied, new)
        cells[i] = new




def teleport_bound(cfg: ColorCubesConfig) -> np.uint64:
    """:func:`teleport_mask` as one integer comparison: a cube's uniform is below ``p_teleport``
    iff its word is ``<=`` this bound (for ``p_teleport > 0``; the target is excluded apart).

    Exact: the uniform is ``u = (word >> 11) * 2**-53`` with an integer ``word >> 11 < 2**53``,
    and scaling by a power of two is exact, so ``u < p`` iff ``word >> 11 < ceil(p * 2**53)``
    iff ``word < ceil(p * 2**53) * 2**11`` iff ``word <= ceil(p * 2**53) * 2**11 - 1`` (which
    fits in 64 bits when p = 1). Tested against :func:`teleport_mask` at the boundary.
    """
    if not cfg.p_teleport > 0.0:
        raise ConfigError("ColorCubes: teleport_bound needs p_teleport > 0")
    return np.uint64((math.ceil(cfg.p_teleport * 2.0**53) << 11) - 1)



# --------------------------------------------------------------------------- observation


@functools.lru_cache(maxsize=16)
def _feature_table(cfg: ColorCubesConfig) -> np.ndarray:
    """Window cell code -> features: code 0 empty, 1..N cube (colour code - 1), N + 1 outside."""
    n = cfg.n_cubes
    table = np.zeros((n + 2, n + 2), dtype=np.float32)
    table[n + 1, 0] = 1.0  # outside the grid
    table[1 : n + 1, 1] = 1.0  # a cube
    if not cfg.hide_colours:
        table[1 : n + 1, 2:] = np.eye(n, dtype=np.float32)
    return table


def observe(
    cfg: ColorCubesConfig, agent: np.ndarray, cubes: np.ndarray, target: np.ndarray, shown: np.ndarray
) -> np.ndarray:
    """Observations ``float32[B, obs_size]`` of ``B`` states (``agent int[B]``, ``cubes int[B, N]``,
    ``target int[B]``, ``shown int[B]``); the layout is documented in :class:`ColorCubes`."""
    g, n, r = cfg.grid_size, cfg.n_cubes, cfg.view_radius
    b = len(agent)
    obs = np.zeros((b, cfg.obs_size), dtype=np.float32)
    ay, ax = np.divmod(agent, g)
    obs[:, 0], obs[:, 1] = (ay + 1) / g, (ax + 1) / g
    obs[np.arange(b), 2 + target] = 1.0
    cells = np.arange(cfg.cells)
    cy, cx = (cells // g).take(cubes), (cells % g).take(cubes)  # take: faster than int64 divmod
    obs[:, 2 + n] = shown == FULL
    obs[:, 3 + 3 * n] = shown == POSITIONS
    full = np.flatnonzero(shown == FULL)  # most steps show neither block: fill only the rows that do
    obs[full, 3 + n : 3 + 3 * n] = np.stack([(cy[full] + 1) / g, (cx[full] + 1) / g], axis=-1).reshape(-1, 2 * n)
    anonymous = np.flatnonzero(shown == POSITIONS)
    sy, sx = np.divmod(np.sort(cubes[anonymous], axis=1), g)  # sorted by cell: order carries no identity
    obs[anonymous, 4 + 3 * n : 4 + 5 * n] = np.stack([(sy + 1) / g, (sx + 1) / g], axis=-1).reshape(-1, 2 * n)
    # Egocentric window of cell codes: outside the grid, empty, or cube i (code i + 1).
    w, off = 2 * r + 1, np.arange(-r, r + 1)
    wy, wx = ay[:, None] + off, ax[:, None] + off
    inside = ((wy >= 0) & (wy < g))[:, :, None] & ((wx >= 0) & (wx < g))[:, None, :]
    window = np.where(inside, 0, n + 1)
    dy, dx = cy - ay[:, None] + r, cx - ax[:, None] + r
    env, cube = np.nonzero((dy >= 0) & (dy < w) & (dx >= 0) & (dx < w))
    window[env, dy[env, cube], dx[env, cube]] = cube + 1
    obs[:, 4 + 5 * n :] = _feature_table(cfg).take(window.reshape(-1), axis=0).reshape(b, -1)
    return obs



# --------------------------------------------------------------------------- picture

_PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25), (245, 130, 48),
     (145, 30, 180), (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 128, 128)],
    dtype=np.uint8,
)  # fmt: skip


def render_frame(cfg: ColorCubesConfig, agent: int, cubes: np.ndarray, target: int) -> np.ndarray:
    """Top-down picture ``uint8[H, W, 3]``: grey floor, cubes in their colours (the target with a
    white frame; colours beyond the palette of 10 repeat), the agent as a black square."""
    c, g = 24, cfg.grid_size
    img = np.full((g * c, g * c, 3), 205, dtype=np.uint8)
    img[::c], img[:, ::c] = 160, 160

    def fill(cell: int, colour, inset: int) -> None:
        y, x = divmod(int(cell), g)
        img[y * c + inset : (y + 1) * c - inset, x * c + inset : (x + 1) * c - inset] = colour

    for i, cell in enumerate(cubes):
        if i == target:
            fill(cell, (255, 255, 255), 1)
        fill(cell, _PALETTE[i % len(_PALETTE)], 3)
    fill(agent, (15, 15, 15), 8)
    return img


# --------------------------------------------------------------------------- single env


class ColorCubes(gym.Env[np.ndarray, np.int64]):
    """Color-Cubes: remember where the cube of the target colour is, and walk there.

    ## Description

    From Shchendrigin et al., "Memory Retention Is Not Enough to Master Memory Tasks in
    Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086); no public code, so the details are
    ours. ``N`` cubes of distinct colours (colour id = cube index) lie on a ``G x G`` grid with
    the agent. An episode has ``K`` phases. At the start of each phase the agent sees the full
    state (every cube's position and colour) and the target colour; afterwards only its own
    position, the target colour and a small egocentric window, so it must remember where the
    target is. Reaching the target's cell gives ``target_reward``; that cube teleports to a
    random free cell and the next phase starts with a new target colour (never the same one
    when N > 1) and a fresh full view: the remembered position must be overwritten.
    During a phase each non-target cube teleports with probability ``p_teleport`` per step; on
    such a step the agent is shown the full state again -- except with ``hide_colours`` (the
    extreme level), where it is shown the positions only, sorted by cell (no identities).
    Cubes do not block: the agent may walk over a non-target cube. The target never moves
    during its phase (unless ``teleport_target``), so a shortest path always exists.

    Levels (``level=``; explicit arguments override the preset):

    =========  ===  ===  ===  ==========  ============  ==================================
    level      N    K    G    p_teleport  hide_colours  tests
    =========  ===  ===  ===  ==========  ============  ==================================
    trivial    1    1    5    0           False         retention (the paper's N = K = 1)
    medium     5    4    7    0.05        False         rewriting, distracting updates
    extreme    5    4    7    0.05        True          rewriting, colour-less updates
    =========  ===  ===  ===  ==========  ============  ==================================

    Medium and extreme: ``view_radius = 1`` (3 x 3 window), ``max_phase_steps = 4 G``.
    Trivial: ``view_radius = 0`` (the agent's own cell) and ``max_phase_steps = 8`` (the
    longest shortest path on 5 x 5): with the 3 x 3 window and 20 steps a memoryless agent
    solved it by sweeping the grid (1.00 greedy success after 300k PPO steps); now it gets
    0.35 (greedy, 200 episodes) at 8 steps, while GRU gets 1.00. All levels: ``target_reward = 1``,
    ``step_penalty = -0.01``, ``teleport_target = False``.

    ## Action Space

    ``Discrete(5)``: 0 stay, 1 up (row - 1), 2 down (row + 1), 3 left (column - 1),
    4 right (column + 1). A move into the outer wall leaves the agent in place.

    ## Observation Space

    ``Box(0, 1, (4 + 5N + (2r+1)**2 (N+2),), float32)`` (36 for trivial, 92 for medium and
    extreme), positions encoded as ``(row + 1) / G, (column + 1) / G`` so 0 means "not shown":

    - ``[0:2]`` the agent's position (always);
    - ``[2:2+N]`` the target colour, one-hot (always);
    - ``[2+N]`` full-view flag, then ``[3+N:3+3N]`` cube ``i``'s position at ``3+N+2i`` --
      only on full-view steps (phase starts; teleport steps unless ``hide_colours``), else 0;
    - ``[3+3N]`` positions-only flag, then ``[4+3N:4+5N]`` all cube positions sorted by cell,
      without colours -- only on teleport steps with ``hide_colours``, else 0;
    - ``[4+5N:]`` the egocentric window, row-major around the agent, ``N + 2`` features per
      cell: outside the grid, a cube, the cube's colour one-hot (all 0 with ``hide_colours``).

    ``info["cue"]`` (bool, every reset and step info) says whether this observation shows the
    full state.

    ## Rewards

    ``target_reward`` (+1) on the step that reaches the target, ``step_penalty`` (-0.01) on
    every other step. An optimal episode returns ``sum_k (target_reward + (d_k - 1) *
    step_penalty)`` where ``d_k >= 1`` is the Manhattan distance to the k-th target.

    ## Starting State

    The agent and the N cubes on distinct uniformly random cells; a uniform target colour;
    the full view is shown.

    ## Episode End

    - Termination: the K-th target is reached (``info["success"] = True``).
    - Truncation: ``max_phase_steps`` steps in one phase without reaching its target
      (``info["success"] = False``), enforced here rather than by ``TimeLimit`` so the batched
      env equals it.

    ## Randomness

    Each step that does not reach the target draws one uniform per cube (cube order, the
    target's ignored) when ``p_teleport > 0``, then one cell per teleporting cube; a phase
    change draws the target's new cell and the next colour; no teleports happen on the step a
    target is reached. All draws are raw words of ``self.np_random`` (see :func:`draw_layout`).

    ## Arguments

    ``level`` ("trivial" | "medium" | "extreme"; default "medium"), ``n_cubes``, ``n_phases``,
    ``grid_size``, ``p_teleport``, ``hide_colours``, ``teleport_target``, ``view_radius``,
    ``target_reward``, ``step_penalty``, ``max_phase_steps`` (``None`` keeps the level's value),
    ``render_mode`` (None | "rgb_array"). Bad values raise :class:`rlmem.errors.ConfigError`.

    ``get_state()`` / ``set_state()`` expose the hidden Markov state (for oracles and
    bit-exact resume).
    """

    metadata = METADATA

    def __init__(
        self,
        level: str = "medium",
        n_cubes: int | None = None,
        n_phases: int | None = None,
        grid_size: int | None = None,
        p_teleport: float | None = None,
        hide_colours: bool | None = None,
        teleport_target: bool | None = None,
        view_radius: int | None = None,
        target_reward: float | None = None,
        step_penalty: float | None = None,
        max_phase_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.config = cfg = ColorCubesConfig.from_level(
            level, n_cubes=n_cubes, n_phases=n_phases, grid_size=grid_size, p_teleport=p_teleport,
            hide_colours=hide_colours, teleport_target=teleport_target, view_radius=view_radius,
            target_reward=target_reward, step_penalty=step_penalty, max_phase_steps=max_phase_steps,
        )  # fmt: skip
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ConfigError(f"ColorCubes: render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(5)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(cfg.obs_size,), dtype=np.float32)
        # Hidden state (meaningful after the first reset).
        self._agent = self._target = self._phase = self._phase_steps = self._steps = 0
        self._shown = FULL
        self._cubes = np.zeros(cfg.n_cubes, dtype=np.int64)
        self._needs_reset = True

    # -- dynamics -----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._agent, self._cubes, self._target = draw_layout(self.np_random, self.config)
        self._phase = self._phase_steps = self._steps = 0
        self._shown = FULL
        self._needs_reset = False
        return self._observe(), {"cue": True}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("ColorCubes: call reset() before step()")
        a = int(action)
        if not 0 <= a <= 4:
            raise ValueError(f"ColorCubes: action must be in 0..4, got {action!r}")
        cfg, g = self.config, self.config.grid_size
        self._steps += 1
        self._phase_steps += 1
        y, x = divmod(self._agent, g)
        self._agent = min(max(y + int(_DY[a]), 0), g - 1) * g + min(max(x + int(_DX[a]), 0), g - 1)
        terminated, self._shown = False, HIDDEN
        if self._agent == self._cubes[self._target]:
            reward = cfg.target_reward
            self._phase += 1
            terminated = self._phase == cfg.n_phases
            if not terminated:
                self._target = draw_phase_change(self.np_random, cfg, self._agent, self._cubes, self._target)
                self._phase_steps = 0
                self._shown = FULL
        else:
            reward = cfg.step_penalty
            if cfg.draws_teleports:
                raw = self.np_random.bit_generator.random_raw(cfg.n_cubes)
                mask = teleport_mask(raw, np.int64(self._target), cfg)
                if mask.any():
                    cells = self._cubes.tolist()
                    apply_teleports(self.np_random, cfg, self._agent, cells, np.flatnonzero(mask).tolist())
                    self._cubes = np.array(cells, dtype=np.int64)
                    self._shown = POSITIONS if cfg.hide_colours else FULL
        truncated = not terminated and self._phase_steps >= cfg.max_phase_steps
        info: dict[str, Any] = {"cue": self._shown == FULL}
        if terminated or truncated:
            info["success"] = self._phase == cfg.n_phases
            self._needs_reset = True
        return self._observe(), reward, terminated, truncated, info

    def _observe(self) -> np.ndarray:
        return observe(
            self.config, np.array([self._agent]), self._cubes[None], np.array([self._target]), np.array([self._shown])
        )[0]

    def get_action_meanings(self) -> list[str]:
        return ["STAY", "UP", "DOWN", "LEFT", "RIGHT"]

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]`` top-down picture (see :func:`render_frame`) in ``"rgb_array"`` mode."""
        if self.render_mode is None:
            gym.logger.warn("ColorCubes.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        return render_frame(self.config, self._agent, self._cubes, self._target)

    # -- hidden state -----------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """The hidden Markov state, numpy arrays only: ``agent``, ``target``, ``phase``,
        ``phase_steps``, ``steps``, ``shown`` (int64 scalars; cells are ``row * G + column``),
        ``cubes`` (``int64[N]``), ``needs_reset`` (bool scalar), ``rng`` (``uint64[6]``, PCG64)."""
        state = {k: np.array(getattr(self, f"_{k}"), dtype=np.int64) for k in _SCALARS}
        state["cubes"] = self._cubes.copy()
        state["needs_reset"] = np.array(self._needs_reset)
        state["rng"] = rng_state_to_array(self.np_random)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, _SCALARS + ("cubes", "needs_reset", "rng"), "ColorCubes")
        for k in _SCALARS:
            setattr(self, f"_{k}", int(state[k]))
        cubes = np.asarray(state["cubes"], dtype=np.int64)
        if cubes.shape != (self.config.n_cubes,):
            raise ConfigError(
                f"ColorCubes.set_state: 'cubes' has shape {cubes.shape}, expected ({self.config.n_cubes},)"
            )
        self._cubes = cubes.copy()
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


_SCALARS = ("agent", "target", "phase", "phase_steps", "steps", "shown")



# --------------------------------------------------------------------------- batched env
#
# The batched step is one compiled loop over the sub-envs (numba): each sub-env does exactly
# what ColorCubes.step does, drawing the same raw words from its own PCG64 generator.
# Color-Cubes' steps are full of per-sub-env events (teleports, phase changes, restarts,
# sorted-free-cell draws); as whole-array numpy they cost ~200 numpy calls a step (issue 3:
# ~9x POPGym at N = 1024), compiled they cost a few hundred nanoseconds a sub-env.


# numpy's PCG64 (PCG-XSL-RR 128/64: a 128-bit LCG, the output a xor-shifted, rotated fold of
# the new state), one step per raw word, on states kept as uint64 rows (hi, lo, inc hi, inc lo,
# has_uint32, uinteger) -- rlmem.envs.tmaze.rng_state_to_array's layout. (numba can take one
# numpy Generator as an argument, not one per sub-env; a buffer of words read ahead per sub-env
# made the loop wait on memory.) Every constant is a uint64: numba turns a mix of uint64 and
# int64 into float64.
_MULT_HI, _MULT_LO = np.uint64(2549297995355413924), np.uint64(4865540595714422341)
_LOW32, _U32, _U58, _U63, _U64 = np.uint64(0xFFFFFFFF), np.uint64(32), np.uint64(58), np.uint64(63), np.uint64(64)


@numba.njit(cache=True, inline="always")
def _mul_hi(a, b):
    """The high 64 bits of the 128-bit product of two uint64 (schoolbook on 32-bit halves)."""
    a_lo, a_hi, b_lo, b_hi = a & _LOW32, a >> _U32, b & _LOW32, b >> _U32
    cross1, cross2 = a_lo * b_hi, a_hi * b_lo
    mid = ((a_lo * b_lo) >> _U32) + (cross1 & _LOW32) + (cross2 & _LOW32)
    return a_hi * b_hi + (cross1 >> _U32) + (cross2 >> _U32) + (mid >> _U32)


@numba.njit(cache=True, inline="always")
def _raw_word(rng, i):
    """The next ``bit_generator.random_raw()`` word of sub-env ``i``'s PCG64 state ``rng[i]``."""
    hi, lo = rng[i, 0], rng[i, 1]
    new_lo = lo * _MULT_LO  # state * multiplier (mod 2**128) ...
    new_hi = _mul_hi(lo, _MULT_LO) + lo * _MULT_HI + hi * _MULT_LO
    lo = new_lo + rng[i, 3]  # ... + increment
    hi = new_hi + rng[i, 2] + (np.uint64(1) if lo < new_lo else np.uint64(0))
    rng[i, 0], rng[i, 1] = hi, lo
    folded, rot = hi ^ lo, hi >> _U58
    return (folded >> rot) | (folded << ((_U64 - rot) & _U63))


@numba.njit(cache=True, inline="always")
def _insort(occupied: np.ndarray, m: int, cell: int) -> None:
    """``bisect.insort`` of ``cell`` into the sorted ``occupied[:m]`` (room for ``m + 1``)."""
    k = m - 1
    while k >= 0 and occupied[k] > cell:
        occupied[k + 1] = occupied[k]
        k -= 1
    occupied[k + 1] = cell


@numba.njit(cache=True, inline="always")
def _sort_small(a: np.ndarray, m: int) -> None:
    """Insertion sort of ``a[:m]`` in place (a handful of cells)."""
    for j in range(1, m):
        _insort(a, j, a[j])


@numba.njit(cache=True, inline="always")
def _kth_free_nb(occupied: np.ndarray, m: int, k: int) -> int:
    """:func:`_kth_free` on the sorted ``occupied[:m]``."""
    for j in range(m):
        if occupied[j] > k:
            break
        k += 1
    return k


@numba.njit(cache=True, inline="always")
def _replace(occupied: np.ndarray, m: int, old: int, new: int) -> None:
    """``occupied.remove(old)`` then ``insort(occupied, new)`` on the sorted ``occupied[:m]``."""
    j = 0
    while occupied[j] != old:
        j += 1
    for k in range(j, m - 1):
        occupied[k] = occupied[k + 1]
    _insort(occupied, m - 1, new)


@numba.njit(cache=True, inline="always")
def _draw_layout_nb(rng: np.ndarray, i: int, cells: int, cubes: np.ndarray, occupied: np.ndarray):
    """:func:`draw_layout` from sub-env ``i``'s next ``N + 2`` raw words: fills ``cubes[i]`` and
    returns ``(agent, target)``."""
    n = cubes.shape[1]
    agent = np.int64(_raw_word(rng, i) % np.uint64(cells))
    occupied[0] = agent
    for c in range(n):
        cell = _kth_free_nb(occupied, c + 1, np.int64(_raw_word(rng, i) % np.uint64(cells - 1 - c)))
        _insort(occupied, c + 1, cell)
        cubes[i, c] = cell
    return agent, np.int64(_raw_word(rng, i) % np.uint64(n))


@numba.njit(cache=True, inline="always")
def _observe_nb(out, row, agent, cubes, i, target, shown, tables, hide, occupied) -> None:
    """:func:`observe` of a state into ``out[row]``: the agent's cell ``agent``, the cube cells
    ``cubes[i]``, the target and what is shown; ``tables`` from :func:`_observation_tables`.
    (Rows are indexed, not sliced: a view costs numba more than the work here.)"""
    template, cell_pos, wide, in_view, centre = tables
    n = cubes.shape[1]
    for j in range(out.shape[1]):  # the agent's position and the window's outside-the-grid flags
        out[row, j] = template[agent, j]
    out[row, 2 + target] = 1.0
    if shown == FULL:
        out[row, 2 + n] = 1.0
        for c in range(n):
            out[row, 3 + n + 2 * c], out[row, 4 + n + 2 * c] = cell_pos[cubes[i, c], 0], cell_pos[cubes[i, c], 1]
    elif shown == POSITIONS:
        out[row, 3 + 3 * n] = 1.0
        for c in range(n):
            occupied[c] = cubes[i, c]
        _sort_small(occupied, n)  # sorted by cell: order carries no identity
        for j in range(n):
            out[row, 4 + 3 * n + 2 * j], out[row, 5 + 3 * n + 2 * j] = cell_pos[occupied[j], 0], cell_pos[occupied[j], 1]
    shift = centre - wide[agent]
    for c in range(n):  # the cubes in the window: one table lookup each, no division
        column = in_view[wide[cubes[i, c]] + shift]
        if column:
            out[row, column] = 1.0
            if not hide:
                out[row, column + 1 + c] = 1.0  # colour c is c + 1 columns after the cube feature


def _observation_tables(cfg: ColorCubesConfig) -> tuple:
    """What :func:`_observe_nb` reads: ``template float32[C, obs_size]`` (by the agent's cell: its
    position and feature 0, "outside the grid", of each window cell), ``cell_pos float32[C, 2]``
    (observe's float64 positions cast to float32, so the values are the same), and the window
    lookup: cells re-encoded on a ``G x (2G - 1)`` grid (``wide int64[C]``), where the difference
    of two cells fixes their row and column offsets, so ``in_view[wide[cube] - wide[agent] +
    centre]`` is the column of that cube's "cube" feature in the agent's window, or 0 outside it
    (column 0 is the agent's row, never a window feature)."""
    g, n, r = cfg.grid_size, cfg.n_cubes, cfg.view_radius
    y, x = np.divmod(np.arange(cfg.cells), g)
    cell_pos = np.stack([(y + 1) / g, (x + 1) / g], axis=-1).astype(np.float32)
    off = np.arange(-r, r + 1)
    wy, wx = y[:, None] + off, x[:, None] + off
    outside = ~(((wy >= 0) & (wy < g))[:, :, None] & ((wx >= 0) & (wx < g))[:, None, :])
    template = np.zeros((cfg.cells, cfg.obs_size), dtype=np.float32)
    template[:, :2] = cell_pos
    template[:, 4 + 5 * n :: n + 2] = outside.reshape(cfg.cells, -1)
    span = 2 * g - 1
    wide, centre = y * span + x, (g - 1) * span + (g - 1)
    in_view = np.zeros(span * span, dtype=np.int64)
    near = min(r, g - 1)  # offsets beyond the grid never occur
    for dy in range(-near, near + 1):
        for dx in range(-near, near + 1):
            in_view[centre + dy * span + dx] = 4 + 5 * n + ((dy + r) * (2 * r + 1) + dx + r) * (n + 2) + 1
    return template, cell_pos, wide, in_view, centre


@numba.njit(cache=True)
def _restart_nb(idx, clock, agent, cubes, target, phase, phase_start, start, shown, rng, cells) -> None:
    """New episodes in sub-envs ``idx``, drawn from their generators."""
    occupied = np.empty(cubes.shape[1] + 1, dtype=np.int64)
    for i in idx:
        agent[i], target[i] = _draw_layout_nb(rng, i, cells, cubes, occupied)
        phase[i], start[i], phase_start[i], shown[i] = 0, clock, clock, FULL


@numba.njit(cache=True)
def _observe_all_nb(obs, agent, cubes, target, shown, tables, hide) -> None:
    occupied = np.empty(cubes.shape[1] + 1, dtype=np.int64)
    for i in range(len(agent)):
        _observe_nb(obs, i, agent[i], cubes, i, target[i], shown[i], tables, hide, occupied)


@numba.njit(cache=True)
def _step_nb(
    actions, clock, agent, cubes, target, phase, phase_start, start, shown, rng,  # state
    move, n_phases, max_phase_steps, hide, teleport_target, draws, bound, target_reward, step_penalty,
    tables,  # config
    obs, final, reward, terminated, truncated, cue, final_cue,  # outputs
) -> int:
    """:meth:`ColorCubes.step` for every sub-env, SAME_STEP restarts included; returns how many
    episodes ended. Raw words per sub-env, in the single env's order: a phase change's 2, or N
    teleport uniforms and a cell per mover; then a restart's N + 2."""
    n, cells = cubes.shape[1], len(tables[0])
    free_phase, free_teleport = np.uint64(cells - n), np.uint64(cells - 1 - n)
    occupied = np.empty(n + 1, dtype=np.int64)
    uniforms = np.empty(n, dtype=np.uint64)
    ended = 0
    for i in range(len(agent)):
        here = agent[i] = move[agent[i], actions[i]]
        t, s = target[i], HIDDEN
        reached = here == cubes[i, t]
        done = False
        if reached:
            reward[i] = target_reward
            phase[i] += 1
            done = phase[i] == n_phases
            if not done:  # draw_phase_change: the agent stands on the target's old cell
                for c in range(n):
                    occupied[c] = cubes[i, c]
                _sort_small(occupied, n)
                cubes[i, t] = _kth_free_nb(occupied, n, np.int64(_raw_word(rng, i) % free_phase))
                word = _raw_word(rng, i)  # drawn even when N = 1, as the single env does
                if n > 1:
                    target[i] = (t + 1 + np.int64(word % np.uint64(n - 1))) % n
                phase_start[i], s = clock, FULL
        else:
            reward[i] = step_penalty
            if draws:  # teleport_mask, then apply_teleports for the movers in cube order
                for c in range(n):
                    uniforms[c] = _raw_word(rng, i)
                moved = False
                for c in range(n):
                    if uniforms[c] <= bound and (teleport_target or c != t):
                        if not moved:
                            for c2 in range(n):
                                occupied[c2] = cubes[i, c2]
                            occupied[n] = here
                            _sort_small(occupied, n + 1)
                            moved = True
                        new = _kth_free_nb(occupied, n + 1, np.int64(_raw_word(rng, i) % free_teleport))
                        _replace(occupied, n + 1, cubes[i, c], new)
                        cubes[i, c] = new
                if moved:
                    s = POSITIONS if hide else FULL
        terminated[i] = done
        truncated[i] = timeout = not reached and clock - phase_start[i] >= max_phase_steps
        if done or timeout:
            ended += 1
            _observe_nb(final, i, here, cubes, i, target[i], s, tables, hide, occupied)
            final_cue[i] = s == FULL
            agent[i], target[i] = _draw_layout_nb(rng, i, cells, cubes, occupied)
            phase[i], start[i], phase_start[i], s = 0, clock, clock, FULL
        shown[i], cue[i] = s, s == FULL
        _observe_nb(obs, i, agent[i], cubes, i, target[i], s, tables, hide, occupied)
    return ended


class ColorCubesVec(VectorEnv):
    """Native batched Color-Cubes: ``num_envs`` copies of :class:`ColorCubes`, one compiled loop.

    Trajectories equal ``SyncVectorEnv([lambda: ColorCubes(**kw)] * N,
    autoreset_mode=AutoresetMode.SAME_STEP)`` exactly -- observations, rewards, terminated,
    truncated and the info dict (same keys, masks and dtypes) -- for the same seeds:
    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` via ``gymnasium.utils.seeding``,
    ``seed=None`` keeps already-seeded generators, a list gives one seed per sub-env.

    **Autoreset: SAME_STEP only.** As :class:`rlmem.envs.tmaze.EndlessTMazeVec`: ended
    sub-envs restart inside the same ``step``; ``info["final_obs"]``/``info["final_info"]``
    (``success``, ``cue``) hold the last observation and info, with their ``_`` masks.

    Shapes: observations ``float32[N, obs_size]``, rewards ``float64[N]``,
    terminated/truncated ``bool[N]``, actions ``int[N]`` in 0..4.

    The step is a numba-compiled loop over the sub-envs (``_step_nb``) that does what
    :meth:`ColorCubes.step` does, line for line, on arrays of the batch's state. Each sub-env
    has its own PCG64 generator, seeded by ``gymnasium.utils.seeding`` as the single env's; the
    loop steps it itself (``_raw_word``: numpy's PCG64, on the generator states as uint64 rows),
    so its raw words are the ones ``rng.bit_generator.random_raw`` gives the single env, in the
    same order (tested word for word). :attr:`np_random` builds numpy Generators in the same
    states when asked. This departs from DESIGN.md's "whole-array
    numpy" for this env only: its per-sub-env events cost ~200 numpy calls a step. The first
    step in a fresh checkout compiles the loop (~6 s here); numba caches it on disk after.
    """

    metadata = {**METADATA, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        level: str = "medium",
        n_cubes: int | None = None,
        n_phases: int | None = None,
        grid_size: int | None = None,
        p_teleport: float | None = None,
        hide_colours: bool | None = None,
        teleport_target: bool | None = None,
        view_radius: int | None = None,
        target_reward: float | None = None,
        step_penalty: float | None = None,
        max_phase_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"ColorCubesVec: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = ColorCubesConfig.from_level(
            level, n_cubes=n_cubes, n_phases=n_phases, grid_size=grid_size, p_teleport=p_teleport,
            hide_colours=hide_colours, teleport_target=teleport_target, view_radius=view_radius,
            target_reward=target_reward, step_penalty=step_penalty, max_phase_steps=max_phase_steps,
        )  # fmt: skip
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ConfigError(f"ColorCubesVec: render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.render_mode = render_mode
        self.metadata = dict(self.metadata)
        self.single_action_space = spaces.Discrete(5)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(cfg.obs_size,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)

        # The hidden state, one entry per sub-env. Step counts are clock readings.
        self._agent, self._target, self._phase, self._shown = (np.zeros(n, dtype=np.int64) for _ in range(4))
        self._cubes = np.zeros((n, cfg.n_cubes), dtype=np.int64)
        self._clock = 0  # step() calls so far
        self._start = np.zeros(n, dtype=np.int64)  # clock at the episode's start
        self._phase_start = np.zeros(n, dtype=np.int64)  # clock at the phase's start
        # Each sub-env's PCG64 state as rng_state_to_array's uint64[6] row; seeded at the first
        # reset. An all-zero row has never been seeded (PCG64's increment, column 3, is odd).
        self._rng = np.zeros((n, 6), dtype=np.uint64)
        self._seeds: list[int | None] = [None] * n
        self._tables = _observation_tables(cfg)
        # The next cell, by [cell, action] (a move into the wall stays).
        y, x = np.divmod(np.arange(cfg.cells)[:, None], cfg.grid_size)
        top = cfg.grid_size - 1
        self._move = np.clip(y + _DY, 0, top) * cfg.grid_size + np.clip(x + _DX, 0, top)
        self._bound = teleport_bound(cfg) if cfg.draws_teleports else np.uint64(0)
        self._needs_reset = True

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The sub-envs' generators (as ``SyncVectorEnv.np_random``): fresh Generators in the
        states the compiled loop has stepped them to (drawing from them changes nothing here)."""
        return tuple(rng_from_array(row) for row in self._rng)

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        return tuple(self._seeds)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``, as SyncVectorEnv)."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "ColorCubesVec")
        idx = np.flatnonzero(mask)
        for i in idx:  # Env.reset's rule: a seed reseeds, None keeps the generator
            if seeds[i] is not None or not self._rng[i, 3]:
                rng, self._seeds[i] = seeding.np_random(seeds[i])
                self._rng[i] = rng_state_to_array(rng)
        _restart_nb(idx, self._clock, *self._state(), self._rng, self.config.cells)
        self._needs_reset = False
        return self._observe(), {"cue": mask.copy(), "_cue": mask.copy()}

    def _state(self) -> tuple[np.ndarray, ...]:
        return self._agent, self._cubes, self._target, self._phase, self._phase_start, self._start, self._shown

    def _observe(self) -> np.ndarray:
        cfg = self.config
        obs = np.empty((self.num_envs, cfg.obs_size), dtype=np.float32)
        _observe_all_nb(obs, self._agent, self._cubes, self._target, self._shown, self._tables, cfg.hide_colours)
        return obs

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every sub-env; ended episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("ColorCubesVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"ColorCubesVec: actions must have shape ({self.num_envs},), got {a.shape}")
        if a.dtype.kind not in "iu" or (len(a) and (a.min() < 0 or a.max() > 4)):
            raise ValueError("ColorCubesVec: actions must be integers in 0..4")
        cfg, b = self.config, self.num_envs
        self._clock += 1
        obs, final = np.empty((b, cfg.obs_size), dtype=np.float32), np.empty((b, cfg.obs_size), dtype=np.float32)
        reward = np.empty(b)
        terminated, truncated, cue = np.empty(b, dtype=bool), np.empty(b, dtype=bool), np.empty(b, dtype=bool)
        final_cue = np.zeros(b, dtype=bool)
        ended = _step_nb(
            a.astype(np.int64, copy=False), self._clock, *self._state(), self._rng,
            self._move, cfg.n_phases, cfg.max_phase_steps, cfg.hide_colours, cfg.teleport_target,
            cfg.draws_teleports, self._bound, cfg.target_reward, cfg.step_penalty, self._tables,
            obs, final, reward, terminated, truncated, cue, final_cue,
        )  # fmt: skip
        info: dict[str, Any] = {}
        if ended:
            # SyncVectorEnv's SAME_STEP entries (rlmem.envs._vec.add_final) without a Python
            # call per ended sub-env: final_obs holds rows of `final`, which nothing writes again.
            done = terminated | truncated
            final_obs = np.empty(b, dtype=object)
            final_obs[done] = np.fromiter(final[done], dtype=object, count=ended)
            info["final_obs"], info["_final_obs"] = final_obs, done
            info["final_info"] = {
                "cue": final_cue, "_cue": done.copy(), "success": terminated.copy(), "_success": done.copy()
            }
            info["_final_info"] = done.copy()
        info["cue"], info["_cue"] = cue, np.ones(b, dtype=bool)
        return obs, reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``uint8[H, W, 3]`` frame per sub-env (see :func:`render_frame`)."""
        if self.render_mode is None:
            gym.logger.warn("ColorCubesVec.render() called without render_mode; pass render_mode='rgb_array'.")
            return None
        return tuple(
            render_frame(self.config, int(a), c, int(t)) for a, c, t in zip(self._agent, self._cubes, self._target)
        )

    def get_state(self) -> dict[str, np.ndarray]:
        """Hidden state of the batch: the single env's keys (less ``needs_reset``) with a
        leading ``[N]`` axis; ``rng`` is ``uint64[N, 6]``."""
        if self._needs_reset:
            raise ResetNeeded("ColorCubesVec: call reset() before get_state()")
        state = {
            "agent": self._agent.copy(), "target": self._target.copy(), "phase": self._phase.copy(),
            "phase_steps": self._clock - self._phase_start, "steps": self._clock - self._start,
            "shown": self._shown.copy(), "cubes": self._cubes.copy(),
        }  # fmt: skip
        state["rng"] = self._rng.copy()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, _SCALARS + ("cubes", "rng"), "ColorCubesVec")
        n = self.num_envs
        values = {}
        for k, shape in [(k, (n,)) for k in _SCALARS] + [("cubes", (n, self.config.n_cubes)), ("rng", (n, 6))]:
            values[k] = v = np.asarray(state[k])
            if v.shape != shape:
                raise ConfigError(f"ColorCubesVec.set_state: {k!r} has shape {v.shape}, expected {shape}")
        self._agent[:], self._target[:], self._phase[:], self._shown[:] = (
            values["agent"], values["target"], values["phase"], values["shown"]
        )
        self._cubes[:] = values["cubes"]
        self._phase_start[:] = self._clock - values["phase_steps"]
        self._start[:] = self._clock - values["steps"]
        self._rng[:] = np.asarray(state["rng"], dtype=np.uint64)
        self._seeds = [None] * n
        self._needs_reset = False
