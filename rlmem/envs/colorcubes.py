"""Color-Cubes: walk to the cube of the announced colour while cubes teleport (memory *rewriting*).

After Shchendrigin, Cherepanov, Kovalev, Panov, "Memory Retention Is Not Enough to Master
Memory Tasks in Reinforcement Learning" (AAMAS 2026, arXiv 2601.15086). The authors publish no
code for this env: every parameter below is our documented choice and a constructor argument.

Two implementations with identical trajectories for identical seeds:

- :class:`ColorCubes` -- the single :class:`gymnasium.Env`.
- :class:`ColorCubesVec` -- the native batched :class:`gymnasium.vector.VectorEnv`: whole-array
  numpy movement, rewards and observations over ``num_envs`` sub-envs, one RNG per sub-env,
  equal to ``SyncVectorEnv([ColorCubes] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share the validated parameters (:class:`ColorCubesConfig`). The single env's draws
(:func:`draw_layout`, :func:`draw_phase_change`, :func:`teleport_mask`, :func:`apply_teleports`)
and observation (:func:`observe`) are the reference; the batched env runs batched versions of
them (:func:`draw_layouts`, :func:`draw_phase_changes`, :func:`teleport_bound`,
:func:`apply_teleports_rows`, :class:`BatchObserver`) on the same raw words, each tested equal
to its reference, and the whole env is tested equal to ``N`` single envs step for step.
"""

from __future__ import annotations

import functools
import math
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


# Batched versions of the draws: the same results for ``E`` sub-envs at once, from the same raw
# words (taken in the same order from each sub-env's stream, see rlmem.envs._vec.RawWords), so
# both envs agree bit for bit (tests/test_colorcubes.py). Each numpy call costs about as much
# as a few thousand elements of work, so these use few calls rather than the fewest operations.


def _mod(words: np.ndarray, m: int) -> np.ndarray:
    """``words % m`` as int64 (uint64 arithmetic first: mixing it with int64 gives floats; the
    remainder is below 2**63, so reading its bits as int64 is exact and costs no pass)."""
    return (words % np.uint64(m)).view(np.int64)


_BEYOND = 1 << 40
"""A sentinel cell beyond every grid: pads the ``occupied`` rows below."""


_KEY_SHIFT = 42
"""Row ``r`` of a batch of occupied rows is sorted as keys ``cell + (r << 42)``: cells are below
:data:`_BEYOND` (``2**40``), so one sort of all keys sorts every row, and stays within int64
for batches of up to ``2**21`` rows."""

_ROW_KEYS: dict[int, np.ndarray] = {}


def _row_keys(rows: int, m: int) -> np.ndarray:
    """``int64[rows * m]`` (read only): ``r << 42`` for each of the ``m`` entries of row ``r``.
    Cached per ``m`` and grown by doubling: slices of it serve every batch size."""
    keys = _ROW_KEYS.get(m)
    if keys is None or len(keys) < rows * m:
        keys = np.repeat(np.arange(max(64, 2 * rows), dtype=np.int64) << _KEY_SHIFT, m)
        keys.flags.writeable = False
        _ROW_KEYS[m] = keys
    return keys[: rows * m]


def _kth_free_rows(occupied: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Row-wise :func:`_kth_free`: ``occupied int64[E, M]`` (C-contiguous) holds each row's
    occupied cells in any order (a cell may appear twice, as in the single env: the agent on a
    cube) and at least one :data:`_BEYOND`; it is overwritten here. ``k int64[E]``. Sorted,
    the loop stops at the first ``j`` with ``occupied[j] > k + j`` (its ``k`` has grown by one
    per cell before), having added ``j``; the sentinel makes sure there is such a ``j``.

    Numpy's per-call cost shapes this: one stable sort of all rows' keys (see
    :data:`_KEY_SHIFT`; already sorted runs make it cheap) instead of a sort per row, and the
    comparison ``occupied[j] - k > j`` on flat, same-shape arrays (broadcasting a column over
    short rows takes numpy's slow path).
    """
    e, m = occupied.shape
    keys = occupied.reshape(-1)
    keys += _row_keys(e, m)
    keys -= k.repeat(m)  # a constant per row: the order within the row stays
    keys.sort(kind="stable")
    keys -= _row_keys(e, m)
    j = (keys > _arange_tiled(e, m)).reshape(e, m).argmax(axis=1)
    j += k
    return j


_TILED: dict[int, np.ndarray] = {}


def _arange_tiled(rows: int, m: int) -> np.ndarray:
    """``int64[rows * m]`` (read only): ``0..m-1`` repeated ``rows`` times, cached as :func:`_row_keys`."""
    tiled = _TILED.get(m)
    if tiled is None or len(tiled) < rows * m:
        tiled = np.tile(np.arange(m, dtype=np.int64), max(64, 2 * rows))
        tiled.flags.writeable = False
        _TILED[m] = tiled
    return tiled[: rows * m]


@functools.lru_cache(maxsize=16)
def _layout_moduli(cfg: ColorCubesConfig) -> np.ndarray:
    """``uint64[N + 2, 1]``: the agent's cell among C, cube i's among the C - 1 - i cells still
    free, the target among N."""
    n = cfg.n_cubes
    return np.array([cfg.cells, *range(cfg.cells - 1, cfg.cells - 1 - n, -1), n], dtype=np.uint64)[:, None]


def draw_layouts(words: np.ndarray, cfg: ColorCubesConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`draw_layout` for ``E`` sub-envs from word-major ``words uint64[N + 2, E]``:
    ``(agent int64[E], cubes int64[N, E] (cube-major), target int64[E])``, views of one array.

    Taking the ``d``-th cell out of the sorted free cells ``F`` leaves ``F(s_d(j))`` with
    ``s_d(j) = j + (j >= d)``. All cells start free, so with ``d_0`` the agent's draw and
    ``d_{i+1}`` cube ``i``'s, cube ``i`` lands on ``s_{d_0}(s_{d_1}(...s_{d_i}(d_{i+1})))``:
    the loop applies each ``s_{d_m}``, innermost first, to every cube at once (cube-major, so
    each operation runs along the long sub-env axis). In place: step ``m`` reads draw ``d_m``
    and changes only the rows after it.
    """
    n = cfg.n_cubes
    d = (words % _layout_moduli(cfg)).view(np.int64)  # as _mod, with one modulus per word
    cubes = d[1 : n + 1]
    for m in range(n - 1, -1, -1):
        cubes[m:] += cubes[m:] >= d[m]
    return d[0], cubes, d[n + 1]


def _next_targets(words: np.ndarray, target: np.ndarray, n: int) -> np.ndarray:
    """:func:`draw_phase_change`'s new target colours (``int64[E]``) from its second words."""
    if n == 1:
        return target.copy()
    new = _mod(words, n - 1)
    new += target
    new += 1
    new %= n
    return new


def draw_phase_changes(
    words: np.ndarray, cfg: ColorCubesConfig, cubes: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """:func:`draw_phase_change` for ``E`` sub-envs from word-major ``words uint64[2, E]``:
    moves the targets in ``cubes int64[E, N]`` (in place) and returns the new targets."""
    n = cfg.n_cubes
    occupied = np.full((len(target), n + 1), _BEYOND, dtype=np.int64)
    occupied[:, :n] = cubes
    cubes[np.arange(len(target)), target] = _kth_free_rows(occupied, _mod(words[0], cfg.cells - n))
    return _next_targets(words[1], target, n)


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


def _teleport_rounds(rows: np.ndarray, env: np.ndarray, at: np.ndarray, k: np.ndarray, rank: np.ndarray) -> None:
    """The movers' cells, in place on ``rows int64[B, N + 2]`` (each sub-env's cube cells, its
    agent's cell, :data:`_BEYOND`): mover ``j`` is entry ``at[j]`` of ``rows.reshape(-1)``, in
    sub-env ``env[j]``'s row, the ``rank[j]``-th (from 0) mover of that sub-env in cube order,
    and goes to its ``k[j]``-th free cell. Round ``r`` moves every sub-env's ``r``-th mover,
    which sees the cells the earlier rounds left; most steps need one round."""
    counts, ends = np.bincount(rank), [len(env)]
    if len(counts) > 1:  # sort the movers by rank: each round is then a slice
        order = rank.argsort()
        env, at, k = env[order], at[order], k[order]
        ends = counts.cumsum().tolist()
    flat, start = rows.reshape(-1), 0
    for end in ends:
        flat[at[start:end]] = _kth_free_rows(rows.take(env[start:end], axis=0), k[start:end])
        start = end


def apply_teleports_rows(
    words: np.ndarray, cfg: ColorCubesConfig, agent: np.ndarray, cubes: np.ndarray, env: np.ndarray,
    cube: np.ndarray, rank: np.ndarray,
) -> None:  # fmt: skip
    """:func:`apply_teleports` for many sub-envs at once, in place on ``cubes int64[B, N]``
    (``agent int64[B]``): mover ``j`` is cube ``cube[j]`` of sub-env ``env[j]``, the
    ``rank[j]``-th mover of that sub-env in cube order, and draws its cell from ``words[j]``
    (``uint64``). The batched env runs :func:`_teleport_rounds` on its own state rows."""
    n = cfg.n_cubes
    rows = np.full((len(agent), n + 2), _BEYOND, dtype=np.int64)
    rows[:, :n], rows[:, n] = cubes, agent
    _teleport_rounds(rows, env, env * (n + 2) + cube, _mod(words, cfg.teleport_free_cells), rank)
    cubes[:] = rows[:, :n]


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


_PAIR_LIMIT = 1 << 20
"""Grids with at most this many (agent cell, cube cell) pairs get :class:`BatchObserver`'s pair
table (int32: 4 MiB at most, G <= 32); larger ones a table per cell offset."""


class BatchObserver:
    """:func:`observe` for the batched env from per-config lookup tables, bit-identical to it
    (the tables hold observe's float64 expressions cast to float32).

    Per call for ``B`` states: one row copy per sub-env from a table indexed by the agent's cell
    (its position and the window's outside-the-grid flags), then scatters of the few ones that
    remain -- the target colour, the cubes in view (cube flag and colour) -- and the position
    blocks only for the rows that show them.

    Cubes in view: ``pair[agent * C + cube]`` is the column of a cube's "cube" feature in the
    agent's window, or 0 when it is out of view (column 0 is the agent's row, never a window
    feature). It is made from ``in_view``, which serves grids too large for it: cells are
    re-encoded on a ``G x (2G - 1)`` grid (``wide``), where the difference of two cells
    determines their row and column offsets, so ``in_view[wide(cube) - wide(agent) + centre]``
    is the column of a cube at that offset.
    """

    def __init__(self, cfg: ColorCubesConfig, num_envs: int) -> None:
        g, n, r = cfg.grid_size, cfg.n_cubes, cfg.view_radius
        w, feat, base = 2 * r + 1, n + 2, 4 + 5 * n
        self.config, self.size = cfg, cfg.obs_size
        y, x = np.divmod(np.arange(cfg.cells), g)
        # float64 first, as observe computes them, then float32: the same rounding.
        self.pos = np.stack([(y + 1) / g, (x + 1) / g], axis=-1).astype(np.float32)  # [C, 2]
        # By agent cell: its position, and feature 0 ("outside the grid") of each window cell.
        off = np.arange(-r, r + 1)
        wy, wx = y[:, None] + off, x[:, None] + off
        outside = ~(((wy >= 0) & (wy < g))[:, :, None] & ((wx >= 0) & (wx < g))[:, None, :])
        self.by_agent = np.zeros((cfg.cells, self.size), dtype=np.float32)
        self.by_agent[:, :2] = self.pos
        self.by_agent[:, base::feat] = outside.reshape(cfg.cells, w * w)
        span = 2 * g - 1
        self.wide = y * span + x
        centre = (g - 1) * span + (g - 1)
        self.agent_shift = centre - self.wide
        self.in_view = np.zeros(span * span, dtype=np.int32)
        near = min(r, g - 1)  # offsets beyond the grid never occur
        for dy in range(-near, near + 1):
            for dx in range(-near, near + 1):
                self.in_view[centre + dy * span + dx] = base + ((dy + r) * w + dx + r) * feat + 1
        self.pair = None
        if cfg.cells**2 <= _PAIR_LIMIT:
            agent, cube = np.divmod(np.arange(cfg.cells**2), cfg.cells)
            self.pair = self.in_view.take(self.wide.take(cube) + self.agent_shift.take(agent))
        self.row_start = np.arange(2 * num_envs) * self.size  # up to num_envs extra rows (final observations)
        self.target_at = self.row_start + 2  # where each row's target one-hot starts

    def __call__(self, agent: np.ndarray, cubes: np.ndarray, target: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """``float32[B, obs_size]`` for ``agent int64[B]``, ``cubes int64[B, N]``, ``target int64[B]``,
        ``shown int64[B]`` (``B`` at most ``2 * num_envs``); equals ``observe(cfg, agent, cubes, target,
        shown)`` for every reachable state (``shown`` is ``POSITIONS`` only with ``hide_colours``)."""
        full = np.flatnonzero(shown == FULL)
        anonymous = np.flatnonzero(shown == POSITIONS) if self.config.hide_colours else None
        return self.rows(np.ascontiguousarray(agent), cubes, target, full, anonymous)

    def rows(
        self, agent: np.ndarray, cubes: np.ndarray, target: np.ndarray, full: np.ndarray, anonymous: np.ndarray | None
    ) -> np.ndarray:
        """:meth:`__call__` with the rows to show given as index arrays: ``full`` (``shown == FULL``)
        and ``anonymous`` (``shown == POSITIONS``; ``None`` without ``hide_colours``). ``agent``
        must be contiguous (a strided index array costs a copy per call); ``cubes`` may be a
        strided view."""
        b, n, cfg = len(agent), self.config.n_cubes, self.config
        obs = self.by_agent.take(agent, axis=0)
        flat = obs.reshape(-1)
        flat[self.target_at[:b] + target] = 1.0
        # Cube-major ([N, B], C order: numpy would lay out a sum with cubes.T column by column,
        # a loop of N elements per sub-env) so the per-sub-env terms broadcast along the long
        # axis. The indices are valid by construction: mode="wrap" only skips the bounds check.
        if self.pair is not None:
            column = self.pair.take(np.add(cubes.T, agent * cfg.cells, order="C"), mode="wrap")
        else:
            shifted = self.wide.take(cubes.T, mode="wrap")
            shifted += self.agent_shift.take(agent)
            column = self.in_view.take(shifted, mode="wrap")
        column = column.reshape(-1)
        seen = (column != 0).nonzero()[0]  # about one cube per window: scatter only those (bool: a fast path)
        if len(seen):
            cube = seen // b
            at = self.row_start.take(seen - cube * b)
            at += column.take(seen)
            flat[at] = 1.0
            if not cfg.hide_colours:
                at += cube
                flat[1:][at] = 1.0  # colour i is i + 1 columns after the cube feature
        if len(full):  # most rows show neither block
            obs[full, 2 + n] = 1.0
            obs[full, 3 + n : 3 + 3 * n] = self.pos.take(cubes[full], axis=0).reshape(len(full), 2 * n)
        if anonymous is not None and len(anonymous):
            obs[anonymous, 3 + 3 * n] = 1.0
            cells = np.sort(cubes[anonymous], axis=1)  # sorted by cell: order carries no identity
            obs[anonymous, 4 + 3 * n : 4 + 5 * n] = self.pos.take(cells, axis=0).reshape(len(anonymous), 2 * n)
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


class _PeekedWords(RawWords):
    """:class:`rlmem.envs._vec.RawWords` plus a look at every sub-env's next words at once.

    A step's draws in a sub-env (a phase change, or teleport uniforms then teleport cells, then
    a restart's layout) are consecutive words of its stream. :meth:`peek` makes sure
    ``reserve`` words of every sub-env are buffered and returns the first ``width`` of them;
    :meth:`words_at` looks further into some sub-envs' buffered words; nothing is read until
    :meth:`skip` reads what each sub-env's draws used; :meth:`take_buffered` reads further
    buffered words of some sub-envs (restarts).
    """

    def __init__(self, n: int, width: int, reserve: int, block: int | None = None) -> None:
        # A refill costs a Python-level call per sub-env, so longer blocks are cheaper per word:
        # up to 2048 words (16 KiB) per sub-env while the buffer stays within 16 MiB.
        if block is None:
            block = max(512, min(2048, (1 << 21) // n))
        super().__init__(n, block=max(block, 2 * reserve))
        self.width, self.reserve = width, reserve
        self._flat = self.buf.reshape(-1)  # a view: refills write the buffer in place
        self._row_start = np.arange(n) * self.block
        self._peek_at = np.arange(width)[:, None] + self._row_start  # [width, n]
        self._at = np.empty_like(self._peek_at)  # reused: a fresh 40 KiB temporary per step misses the cache

    def peek(self, rngs: list) -> np.ndarray:
        """``uint64[width, n]``: word ``j`` of every sub-env's next ``width``, left unread."""
        for i in (self.pos > self.block - self.reserve).nonzero()[0].tolist():
            # The refill of RawWords.take: unread words to the front, then fresh ones.
            at = int(self.pos[i])
            left = self.block - at
            self.buf[i, :left] = self.buf[i, at:]
            self.buf[i, left:] = rngs[i].bit_generator.random_raw(at)
            self.pos[i] = 0
        np.add(self._peek_at, self.pos, out=self._at)
        return self._flat.take(self._at, mode="wrap")  # in range: skip the check

    def words_at(self, idx: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``uint64[len(idx)]``: word ``offset[j]`` (``< reserve``) of sub-env ``idx[j]``'s unread words."""
        return self._flat.take(self._row_start.take(idx) + self.pos.take(idx) + offset)

    def peeked(self, first: int, idx: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``uint64[len(idx)]``: word ``first + offset[j]`` (``< reserve``) of sub-env ``idx[j]``,
        counted from the last :meth:`peek` (``first < width``): :meth:`words_at` without the
        position arithmetic, valid until the next :meth:`peek` whatever :meth:`skip` read."""
        at = self._at[first].take(idx)
        at += offset
        return self._flat.take(at)

    def skip(self, counts: np.ndarray) -> None:
        """Read ``counts int64[n]`` words of each sub-env (at most ``reserve`` since :meth:`peek`)."""
        self.pos += counts

    def synced_states(self, rngs: list) -> np.ndarray:
        """``uint64[n, 6]``: each generator's state as :meth:`sync` would leave it (unread words
        given back), while the buffer stays: an oracle that reads the state every step would
        otherwise refill a whole block per sub-env every step."""
        states = []
        for rng, unread in zip(rngs, (self.block - self.pos).tolist()):
            if unread:
                ahead = rng.bit_generator.state
                rng.bit_generator.advance(-unread)
                states.append(rng_state_to_array(rng))
                rng.bit_generator.state = ahead
            else:
                states.append(rng_state_to_array(rng))
        return np.stack(states)

    def take_buffered(self, idx: np.ndarray, count: int) -> np.ndarray:
        """The next ``count`` words of sub-envs ``idx``, read: ``uint64[count, len(idx)]``
        (word-major). The caller keeps every sub-env within the ``reserve`` that :meth:`peek`
        buffered."""
        pos = self.pos.take(idx)
        self.pos[idx] = pos + count
        return self._flat.take(np.arange(count)[:, None] + (self._row_start.take(idx) + pos))


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

    Everything is whole-array numpy, random draws included. Each sub-env's raw words come from
    its own generator in the single env's order, read ahead in blocks
    (:class:`rlmem.envs._vec.RawWords`); a step gathers every sub-env's next words at once
    (:class:`_PeekedWords`) and then reads what each one's draws used (2 for a phase change;
    N uniforms plus one per teleporting cube otherwise; N + 2 for a restart). The draws are
    batched versions of the single env's functions (:func:`draw_layouts`,
    :func:`draw_phase_changes`, :func:`teleport_bound`, :func:`apply_teleports_rows`), the
    observation a table-driven :func:`observe` (:class:`BatchObserver`). Reseeding gives unread
    words back and ``get_state`` reports the generators as if it had, so generator states match
    the single envs'.
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

        # What the observation reads is kept in the first n rows of arrays twice as long: a step
        # that ends episodes copies their last states into the rows after, and observes all at
        # once. The cube cells sit in rows of N + 2 with the agent's cell (copied in before the
        # teleport draws) and a sentinel: the rows the draws sort (_kth_free_rows).
        c = cfg.n_cubes
        self._cells = np.full((2 * n, c + 2), _BEYOND, dtype=np.int64)
        self._cells_flat = self._cells.reshape(-1)
        self._agent_rows, self._target_rows, self._shown_rows = (np.zeros(2 * n, dtype=np.int64) for _ in range(3))
        self._cubes, self._agent = self._cells[:n, :c], self._agent_rows[:n]
        self._target, self._shown = self._target_rows[:n], self._shown_rows[:n]
        self._phase = np.zeros(n, dtype=np.int64)
        # Step counts as differences of clock readings: nothing to add every step.
        self._clock = 0  # step() calls so far
        self._start = np.zeros(n, dtype=np.int64)  # clock at the episode's start
        self._phase_start = np.zeros(n, dtype=np.int64)  # clock at the phase's start
        self._goal = np.zeros(n, dtype=np.int64)  # the target cube's cell, kept with _cells
        # Which cubes may teleport ([cube, sub-env]): all but the target, kept with _target.
        self._others = None
        if cfg.draws_teleports and not cfg.teleport_target:
            self._others = np.ones((c, n), dtype=bool)
        self._init_rngs(n)
        # Words one step may use: N teleport uniforms and a cell per movable cube, or a phase
        # change's 2; then a restart's N + 2. Every sub-env's first N (or 2) are looked at at once.
        movable = c - (0 if cfg.teleport_target else 1) if cfg.draws_teleports else 0
        width = max(c if cfg.draws_teleports else 0, 2 if cfg.n_phases > 1 else 0)
        self._words = _PeekedWords(n, width, max(c + movable, width) + c + 2)
        if cfg.draws_teleports:
            self._bound = teleport_bound(cfg)
        self._observer = BatchObserver(cfg, n)
        # The next cell, by cell * 5 + action (a move into the wall stays).
        y, x = np.divmod(np.arange(cfg.cells)[:, None], cfg.grid_size)
        top = cfg.grid_size - 1
        self._move = (np.clip(y + _DY, 0, top) * cfg.grid_size + np.clip(x + _DX, 0, top)).reshape(-1)
        self._row_at = np.arange(n) * (c + 2)  # flat index of each sub-env's row in _cells
        self._cube_id = np.arange(c)[:, None]
        self._count_dtype = np.int8 if 2 * c < 128 else np.int64  # mover counts (+ N) fit
        self._n_words = np.full(n, c, dtype=self._count_dtype)  # N uniforms each
        self._penalties = np.full(n, cfg.step_penalty)
        self._all_true = np.ones(n, dtype=bool)
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
        self._restart(idx, self._words.take(self._rngs, idx, self.config.n_cubes + 2).T)
        self._begin_phases(idx)
        self._needs_reset = False
        return self._observe(self.num_envs), {"cue": mask.copy(), "_cue": mask.copy()}

    def _follow_targets(self, idx: np.ndarray) -> None:
        """The goal cells and the cubes that may teleport of sub-envs ``idx`` follow their targets."""
        target = self._target[idx]
        at = self._row_at[idx]
        at += target
        self._goal[idx] = self._cells_flat[at]
        if self._others is not None:
            self._others[:, idx] = self._cube_id != target

    def _begin_phases(self, idx: np.ndarray) -> None:
        """Sub-envs ``idx`` start a phase (their targets and cells set): the full view is shown."""
        self._follow_targets(idx)
        self._phase_start[idx] = self._clock
        self._shown[idx] = FULL

    def _restart(self, idx: np.ndarray, words: np.ndarray) -> None:
        """New episodes in sub-envs ``idx`` from their next ``words uint64[N + 2, len(idx)]``; the
        caller then begins their first phase (:meth:`_begin_phases`)."""
        agent, cubes, target = draw_layouts(words, self.config)  # cubes: [N, len(idx)]
        self._cubes[idx], self._agent[idx], self._target[idx] = cubes.T, agent, target
        self._phase[idx] = 0
        self._start[idx] = self._clock

    def _observe(self, rows: int, full: np.ndarray | None = None) -> np.ndarray:
        """The observations of the first ``rows`` state rows; ``full`` (``bool[rows]``, optional)
        is ``shown == FULL`` there."""
        shown = self._shown_rows[:rows]
        full = (shown == FULL) if full is None else full
        anonymous = (shown == POSITIONS).nonzero()[0] if self.config.hide_colours else None
        return self._observer.rows(
            self._agent_rows[:rows], self._cells[:rows, : self.config.n_cubes], self._target_rows[:rows],
            full.nonzero()[0], anonymous,
        )  # fmt: skip

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every sub-env; ended episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("ColorCubesVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"ColorCubesVec: actions must have shape ({self.num_envs},), got {a.shape}")
        if a.dtype != np.int64:
            if a.dtype.kind not in "iu" or a.min() < 0 or a.max() > 4:
                raise ValueError("ColorCubesVec: actions must be integers in 0..4")
            a = a.astype(np.int64)
        elif a.view(np.uint64).max() > 4:  # one pass: negative int64 are huge as uint64
            raise ValueError("ColorCubesVec: actions must be integers in 0..4")
        cfg, n, b = self.config, self.config.n_cubes, self.num_envs
        self._clock = clock = self._clock + 1

        agent = self._agent
        self._move.take(agent * 5 + a, out=agent, mode="wrap")  # in place (a view, see __init__)
        reached = agent == self._goal
        reached_at = reached.nonzero()[0]
        reward = self._penalties.copy()
        self._phase += reached
        terminated = self._phase == cfg.n_phases  # only on the step that reaches the last target
        shown = self._shown
        shown.fill(HIDDEN)
        # Per sub-env, draws come in the single env's order: a phase change or teleports, both
        # from its next words (one look serves all sub-envs), then a restart's layout.
        words = self._words.peek(self._rngs)
        used = self._teleport(words, reached_at) if cfg.draws_teleports else None  # words read
        changed = np.greater(reached, terminated).nonzero()[0]  # reached, and the episode goes on
        if len(reached_at):
            reward[reached_at] = cfg.target_reward
            if len(changed):
                self._move_targets(changed, words)
                if used is None:
                    used = np.zeros(b, dtype=np.int64)
                used[changed] = 2
        if used is not None:
            self._words.skip(used)
        # At the phase's time limit, and not on the target (a new phase starts, or the last ends).
        truncated = np.greater(self._phase_start <= clock - cfg.max_phase_steps, reached)

        done = terminated | truncated
        ended = done.nonzero()[0]
        info: dict[str, Any] = {}
        if len(ended):
            # One observer call makes the ended episodes' last observations and every sub-env's
            # next: their states from before the restart ride along after everyone's.
            rows = b + len(ended)
            for whole in (self._cells, self._agent_rows, self._target_rows, self._shown_rows):
                whole[:b].take(ended, axis=0, out=whole[b:rows], mode="wrap")
            self._restart(ended, self._words.take_buffered(ended, n + 2))
            self._begin_phases(np.concatenate((changed, ended)) if len(changed) else ended)
            full = self._shown_rows[:rows] == FULL
            both = self._observe(rows, full)
            obs, cue = both[:b], full[:b]
            # SyncVectorEnv's SAME_STEP entries (rlmem.envs._vec.add_final) without a Python
            # call per ended sub-env: final_obs holds rows of a fresh array nothing writes again.
            final_obs = np.empty(b, dtype=object)
            final_obs[ended] = np.fromiter(both[b:], dtype=object, count=len(ended))
            final_cue = np.zeros(b, dtype=bool)
            final_cue[ended] = full[b:]
            info["final_obs"], info["_final_obs"] = final_obs, done
            info["final_info"] = {"cue": final_cue, "_cue": done.copy(), "success": terminated.copy(), "_success": done.copy()}
            info["_final_info"] = done.copy()
        else:
            if len(changed):
                self._begin_phases(changed)
            cue = shown == FULL
            obs = self._observe(b, cue)
        info["cue"], info["_cue"] = cue, self._all_true.copy()
        return obs, reward, terminated, truncated, info

    def _teleport(self, words: np.ndarray, reached_at: np.ndarray) -> np.ndarray:
        """The teleports of every sub-env but those in ``reached_at`` (which draw none), from the
        peeked ``words uint64[width, n]``: its N uniforms (cube order) say which cubes move, and
        the words after them where. Returns the words each sub-env read (``int64[n]``)."""
        cfg, n, b = self.config, self.config.n_cubes, self.num_envs
        movers = words[:n] <= self._bound  # [cube, sub-env]
        if self._others is not None:
            movers &= self._others
        if len(reached_at):
            movers[:, reached_at] = False
        moved = movers.reshape(-1).nonzero()[0]  # by cube, then sub-env
        if len(moved):
            # Its place among its sub-env's movers, counted from 1: a running count down the
            # cubes (row by row: whole contiguous rows are numpy's fast path).
            running = movers.astype(self._count_dtype)
            for i in range(1, n):
                np.add(running[i], running[i - 1], out=running[i])
            used = running[n - 1] + n  # the N uniforms and a cell per mover
            rank = running.reshape(-1)[moved]
            cube = moved // b
            env = moved - cube * b
            cells = self._words.peeked(n - 1, env, rank)  # word N - 1 + rank: after the uniforms
            rank -= 1
            at = self._row_at[env]
            at += cube
            self._cells[:b, n] = self._agent  # the draws see the agent's cell
            _teleport_rounds(self._cells, env, at, _mod(cells, cfg.teleport_free_cells), rank)
            self._shown[env] = POSITIONS if cfg.hide_colours else FULL
            if cfg.teleport_target:
                self._goal = self._cells_flat[self._row_at + self._target]
        else:
            used = self._n_words.copy()
        if len(reached_at):
            used[reached_at] = 0
        return used

    def _move_targets(self, idx: np.ndarray, words: np.ndarray) -> None:
        """:func:`draw_phase_changes` for sub-envs ``idx`` (agents on their targets), from their
        first two peeked words, on the state rows: the target cubes move and ``_target`` holds
        the next colours (:meth:`_begin_phases` does the rest)."""
        cfg, n = self.config, self.config.n_cubes
        occupied = self._cells.take(idx, axis=0)
        occupied[:, n] = _BEYOND  # the agent stands on the target's old cell: occupied once, by the cube
        old = self._target[idx]
        at = self._row_at[idx]
        at += old
        self._cells_flat[at] = _kth_free_rows(occupied, _mod(words[0, idx], cfg.cells - n))
        self._target[idx] = _next_targets(words[1, idx], old, n)

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
        state["rng"] = self._words.synced_states(self._rngs)
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
        self._agent[:], self._phase[:], self._shown[:], self._cubes[:] = (
            values["agent"], values["phase"], values["shown"], values["cubes"]
        )
        self._phase_start[:] = self._clock - values["phase_steps"]
        self._start[:] = self._clock - values["steps"]
        self._target[:] = values["target"]
        self._follow_targets(np.arange(n))
        self._set_rng_state(state["rng"])
        self._words.drop()
        self._needs_reset = False
