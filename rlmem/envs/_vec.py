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
