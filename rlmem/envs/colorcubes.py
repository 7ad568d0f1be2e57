"""Color-Cubes: walk to the cube of the announced colour while cubes teleport (memory *rewriting*).

After Shchendrigin, Cherepanov, Kovalev, Panov, "Memory Retention Is Not Enough to Master
Memory Tasks in Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086). The authors publish no
code for this env: every parameter below is our documented choice and a constructor argument.

Two implementations with identical trajectories for identical seeds:

- :class:`ColorCubes` -- the single :class:`gymnasium.Env`.
- :class:`ColorCubesVec` -- the native batched :class:`gymnasium.vector.VectorEnv`: whole-array
  numpy movement, rewards and observations over ``num_envs`` sub-envs, one RNG per sub-env,
  equal to ``SyncVectorEnv([ColorCubes] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share the validated parameters (:class:`ColorCubesConfig`), every random draw
(:func:`draw_layout`, :func:`draw_phase_change`, :func:`teleport_mask`, :func:`apply_teleports`)
and the observation (:func:`observe`), so they cannot drift apart.
"""

from __future__ import annotations

import functools
from bisect import insort
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._vec import RawWords, SubEnvRNGs, add_final, check_state_keys, is_int, reset_plan
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


# Row-wise versions for the batched env: the same arithmetic on ``E`` sub-envs at once, fed
# with the same raw words (taken in the same order from each sub-env's stream, see
# rlmem.envs._vec.RawWords), so both envs agree bit for bit (tests/test_colorcubes.py).


def _mod(words: np.ndarray, m: int) -> np.ndarray:
    """``words % m`` as int64 (uint64 arithmetic first: mixing it with int64 gives floats)."""
    return (words % np.uint64(m)).astype(np.int64)


def _kth_free_rows(occupied: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Row-wise :func:`_kth_free`: ``occupied int64[E, M]`` sorted per row (padding >= every
    cell), ``k int64[E]``. Once a sorted cell exceeds ``k`` no later one can count, so
    adding ``occupied[:, j] <= k`` column by column equals the early-exit loop."""
    k = k.copy()
    for j in range(occupied.shape[1]):
        k += occupied[:, j] <= k
    return k


def draw_layouts(words: np.ndarray, cfg: ColorCubesConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`draw_layout` for ``E`` sub-envs from ``words uint64[E, N + 2]``."""
    n = cfg.n_cubes
    agent = _mod(words[:, 0], cfg.cells)
    occupied = np.full((len(words), n + 1), cfg.cells, dtype=np.int64)
    occupied[:, 0] = agent
    cubes = np.empty((len(words), n), dtype=np.int64)
    for i in range(n):
        cubes[:, i] = _kth_free_rows(occupied, _mod(words[:, i + 1], cfg.cells - 1 - i))
        occupied[:, i + 1] = cubes[:, i]
        occupied.sort(axis=1)
    return agent, cubes, _mod(words[:, n + 1], n)


def draw_phase_changes(
    words: np.ndarray, cfg: ColorCubesConfig, cubes: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """:func:`draw_phase_change` for ``E`` sub-envs from ``words uint64[E, 2]``: moves the
    targets in ``cubes int64[E, N]`` (in place) and returns the new targets."""
    n, rows = cfg.n_cubes, np.arange(len(words))
    cubes[rows, target] = _kth_free_rows(np.sort(cubes, axis=1), _mod(words[:, 0], cfg.cells - n))
    if n == 1:
        return target.copy()
    return (target + 1 + _mod(words[:, 1], n - 1)) % n


def apply_teleports_rows(
    words: np.ndarray, cfg: ColorCubesConfig, agent: np.ndarray, cubes: np.ndarray, movers: np.ndarray
) -> None:
    """:func:`apply_teleports` for ``E`` sub-envs: ``movers bool[E, N]``, ``words uint64[E, M]``
    (one per mover, in cube order). Round ``r`` moves every sub-env's ``r``-th mover."""
    rank = np.cumsum(movers, axis=1) - 1
    for r in range(int(movers.sum(axis=1).max(initial=0))):
        e, c = np.nonzero(movers & (rank == r))  # one cube per sub-env with more than r movers
        occupied = np.sort(np.concatenate([agent[e, None], cubes[e]], axis=1), axis=1)
        cubes[e, c] = _kth_free_rows(occupied, _mod(words[e, r], cfg.teleport_free_cells))


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


class ColorCubesVec(SubEnvRNGs, VectorEnv):
    """Native batched Color-Cubes: ``num_envs`` copies of :class:`ColorCubes` in numpy.

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

    Everything is whole-array numpy, random draws included: each sub-env's raw words come
    from its own generator in the single env's order, read ahead in blocks
    (:class:`rlmem.envs._vec.RawWords`), and the layout, phase-change and teleport draws use
    row-wise versions of the single env's functions (:func:`draw_layouts`,
    :func:`draw_phase_changes`, :func:`apply_teleports_rows`). ``get_state`` and reseeding
    give unread words back first, so generator states match the single envs'.
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

        self._agent = np.zeros(n, dtype=np.int64)
        self._target = np.zeros(n, dtype=np.int64)
        self._phase = np.zeros(n, dtype=np.int64)
        self._phase_steps = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._shown = np.zeros(n, dtype=np.int64)
        self._cubes = np.zeros((n, cfg.n_cubes), dtype=np.int64)
        self._init_rngs(n)
        self._words = RawWords(n)
        self._all_true = np.ones(n, dtype=bool)
        self._rows = np.arange(n)
        self._needs_reset = True

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The sub-envs' generators (as ``SyncVectorEnv.np_random``), with no word read ahead."""
        self._words.sync(self._rngs)
        return tuple(self._rngs)  # type: ignore[arg-type]

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``, as SyncVectorEnv)."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "ColorCubesVec")
        idx = np.flatnonzero(mask)
        self._words.sync(self._rngs)  # a kept generator continues where its single env would
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": mask.copy(), "_cue": mask.copy()}

    def _restart(self, idx: np.ndarray) -> None:
        cfg = self.config
        words = self._words.take(self._rngs, idx, cfg.n_cubes + 2)
        self._agent[idx], self._cubes[idx], self._target[idx] = draw_layouts(words, cfg)
        self._phase[idx] = self._phase_steps[idx] = self._steps[idx] = 0
        self._shown[idx] = FULL

    def _observe(self, idx: np.ndarray | None = None) -> np.ndarray:
        if idx is None:
            return observe(self.config, self._agent, self._cubes, self._target, self._shown)
        return observe(self.config, self._agent[idx], self._cubes[idx], self._target[idx], self._shown[idx])

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every sub-env; ended episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("ColorCubesVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"ColorCubesVec: actions must have shape ({self.num_envs},), got {a.shape}")
        if a.min() < 0 or a.max() > 4:
            raise ValueError("ColorCubesVec: actions must be in 0..4")
        cfg, g, take = self.config, self.config.grid_size, self._words.take

        self._steps += 1
        self._phase_steps += 1
        y, x = np.divmod(self._agent, g)
        self._agent = np.clip(y + _DY[a], 0, g - 1) * g + np.clip(x + _DX[a], 0, g - 1)
        reached = self._agent == self._cubes[self._rows, self._target]
        reward = np.where(reached, cfg.target_reward, cfg.step_penalty)
        self._phase += reached
        success = reached & (self._phase == cfg.n_phases)
        terminated = success
        self._shown[:] = HIDDEN
        # Per sub-env, draws come in the single env's order: phase change or teleports, then reset.
        changed = (reached & ~success).nonzero()[0]
        if len(changed):
            cubes = self._cubes[changed]
            self._target[changed] = draw_phase_changes(take(self._rngs, changed, 2), cfg, cubes, self._target[changed])
            self._cubes[changed] = cubes
            self._phase_steps[changed] = 0
            self._shown[changed] = FULL
        idx = (~reached).nonzero()[0]
        if cfg.draws_teleports and len(idx):
            mask = teleport_mask(take(self._rngs, idx, cfg.n_cubes), self._target[idx], cfg)
            moved = mask.any(axis=1)
            if moved.any():
                env_of, movers = idx[moved], mask[moved]
                cubes = self._cubes[env_of]
                words = take(self._rngs, env_of, movers.sum(axis=1))
                apply_teleports_rows(words, cfg, self._agent[env_of], cubes, movers)
                self._cubes[env_of] = cubes
                self._shown[env_of] = POSITIONS if cfg.hide_colours else FULL
        truncated = (self._phase_steps >= cfg.max_phase_steps) & ~terminated

        obs = self._observe()
        cue = self._shown == FULL
        done = terminated | truncated
        info: dict[str, Any] = {}
        done_idx = done.nonzero()[0]
        if len(done_idx):
            add_final(info, obs, done, {"cue": cue, "success": success})
            self._restart(done_idx)
            obs[done_idx] = self._observe(done_idx)
            cue = cue | done
        info["cue"], info["_cue"] = cue, self._all_true.copy()
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
        state = {k: getattr(self, f"_{k}").copy() for k in _SCALARS + ("cubes",)}
        self._words.sync(self._rngs)
        state["rng"] = self._rng_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, _SCALARS + ("cubes", "rng"), "ColorCubesVec")
        n = self.num_envs
        for k, shape in [(k, (n,)) for k in _SCALARS] + [("cubes", (n, self.config.n_cubes)), ("rng", (n, 6))]:
            v = np.asarray(state[k])
            if v.shape != shape:
                raise ConfigError(f"ColorCubesVec.set_state: {k!r} has shape {v.shape}, expected {shape}")
            if k != "rng":
                getattr(self, f"_{k}")[:] = v
        self._set_rng_state(state["rng"])
        self._words.drop()
        self._needs_reset = False
