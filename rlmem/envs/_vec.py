"""Helpers shared by the native batched envs: SyncVectorEnv's reset and SAME_STEP conventions.

Used by the retention controls (passive_tmaze, repeat_previous, count_recall) so their
batched envs reproduce ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)`` the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlmem.errors import ConfigError


def is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_state_keys(state: dict[str, Any], keys: tuple[str, ...], who: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(f"{who}.set_state: missing keys {missing}; expected {list(keys)}")


def reset_plan(
    n: int, seed: int | list[int | None] | None, options: dict[str, Any] | None, who: str
) -> tuple[np.ndarray, list[int | None]]:
    """SyncVectorEnv's reset conventions: ``(mask bool[n], per-sub-env seeds)``.

    An int seed gives sub-env ``i`` seed ``seed + i``; a list gives one seed each; None keeps
    existing generators. ``options["reset_mask"]`` (bool[n], some True) selects sub-envs.
    """
    if seed is None:
        seeds: list[int | None] = [None] * n
    elif is_int(seed):
        seeds = [int(seed) + i for i in range(n)]
    else:
        seeds = [None if s is None else int(s) for s in seed]
        if len(seeds) != n:
            raise ValueError(f"{who}: got {len(seeds)} seeds for num_envs={n}")
    mask = np.ones(n, dtype=bool)
    if options is not None and "reset_mask" in options:
        mask = np.asarray(options["reset_mask"])
        if mask.shape != (n,) or mask.dtype != np.bool_ or not mask.any():
            raise ValueError(f"{who}: options['reset_mask'] must be a bool[{n}] array with a True")
        mask = mask.copy()
    return mask, seeds


def add_final(info: dict[str, Any], obs: np.ndarray, done: np.ndarray, final_info: dict[str, np.ndarray]) -> None:
    """Add SyncVectorEnv's SAME_STEP ``final_obs`` / ``final_info`` entries for the ``done`` sub-envs.

    ``obs`` rows are the finished episodes' last observations (copied here, before the
    autoreset overwrites them); ``final_info`` values are ``[N]`` arrays, masked to ``done``.
    """
    final_obs = np.full(len(done), None, dtype=object)
    for i in done.nonzero()[0].tolist():
        final_obs[i] = obs[i].copy()
    info["final_obs"], info["_final_obs"] = final_obs, done.copy()
    sub: dict[str, Any] = {}
    for key, value in final_info.items():
        sub[key], sub[f"_{key}"] = value & done if value.dtype == bool else np.where(done, value, 0), done.copy()
    info["final_info"], info["_final_info"] = sub, done.copy()


class RawWords:
    """Raw 64-bit words of each sub-env's PCG64 generator, read ``block`` words at a time.

    A batched env that takes its draws here gets exactly the words that
    ``rng.bit_generator.random_raw`` gives a single env one call at a time (the stream is
    the same; only the calls are fewer: one numpy call per sub-env every ``block`` words, not
    one per step). :meth:`sync` rewinds every generator by its unread words
    (``PCG64.advance(-k)``), so generator states equal the single envs' again (``get_state``,
    reseeding); :meth:`drop` forgets the unread words of generators that were replaced.
    """

    def __init__(self, n: int, block: int = 512) -> None:
        self.block = block
        self.buf = np.zeros((n, block), dtype=np.uint64)
        self.pos = np.full(n, block, dtype=np.int64)  # pos == block: nothing buffered

    def take(self, rngs: list, idx: np.ndarray, counts: int | np.ndarray) -> np.ndarray:
        """The next ``counts[j]`` words of sub-env ``idx[j]``: ``uint64[len(idx), max(counts)]``,
        zero beyond each row's count."""
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), idx.shape)
        if len(idx) == 0:
            return np.zeros((0, 0), dtype=np.uint64)
        width = int(counts.max())
        if width > self.block:
            raise ValueError(f"RawWords: {width} words asked at once, block is {self.block}")
        for i in idx[self.pos[idx] + counts > self.block].tolist():  # refill: unread words first
            left = self.block - self.pos[i]
            self.buf[i, :left] = self.buf[i, self.pos[i] :]
            self.buf[i, left:] = rngs[i].bit_generator.random_raw(self.block - left)
            self.pos[i] = 0
        cols = np.minimum(self.pos[idx, None] + np.arange(width), self.block - 1)
        out = self.buf[idx[:, None], cols]
        out[np.arange(width) >= counts[:, None]] = 0
        self.pos[idx] += counts
        return out

    def sync(self, rngs: list) -> None:
        """Give every unread word back to its generator and empty the buffer."""
        for i in np.flatnonzero(self.pos < self.block).tolist():
            rngs[i].bit_generator.advance(-int(self.block - self.pos[i]))
        self.pos[:] = self.block

    def drop(self) -> None:
        """Empty the buffer without touching the generators (they were replaced)."""
        self.pos[:] = self.block


class SubEnvRNGs:
    """Mixin for native batched envs: one generator per sub-env, seeded as SyncVectorEnv does.

    Call :meth:`_init_rngs` in ``__init__``, :meth:`_seed_sub_envs` in ``reset``, and use
    :meth:`_rng_state` / :meth:`_set_rng_state` in ``get_state`` / ``set_state``.
    """

    def _init_rngs(self, n: int) -> None:
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._seeds: list[int | None] = [None] * n

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """The sub-envs' generators (as ``SyncVectorEnv.np_random``)."""
        return tuple(self._rngs)  # type: ignore[arg-type]

    @property
    def np_random_seed(self) -> tuple[int | None, ...]:
        return tuple(self._seeds)

    def _seed_sub_envs(self, idx: np.ndarray, seeds: list[int | None]) -> None:
        """Env.reset's rule for sub-envs ``idx``: a seed reseeds, None keeps a generator."""
        from gymnasium.utils import seeding

        for i in idx:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], self._seeds[i] = seeding.np_random(seeds[i])

    def _rng_state(self) -> np.ndarray:
        """uint64[N, 6]: every sub-env's PCG64 state."""
        from rlmem.envs.tmaze import rng_state_to_array

        return np.stack([rng_state_to_array(r) for r in self._rngs])  # type: ignore[arg-type]

    def _set_rng_state(self, rng: np.ndarray) -> None:
        from rlmem.envs.tmaze import rng_from_array

        self._rngs = [rng_from_array(r) for r in np.asarray(rng)]
        self._seeds = [None] * len(self._rngs)
