"""Observations as the loops hold them: an array per leaf of the observation space.

A ``Box`` / ``Discrete`` observation is one array (numpy from the env, a tensor in the
loop); a ``Dict`` observation is a dict of them, one per key (nested Dicts nest). These
helpers are the one place that knows the difference, so :mod:`rlmem.algos.ppo`,
:mod:`rlmem.evaluate` and :mod:`rlmem.video` read the same for both, and a plain
observation stays a plain tensor (one ``isinstance`` check, no wrapping, no copy).

Shapes: the env gives ``[B, *shape]`` per leaf (a batched env) or ``[*shape]`` (one env);
the policy reads ``[T, B, *shape]`` per leaf; dtypes are kept (the encoders convert).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlmem.errors import ConfigError

__all__ = [
    "Obs", "index_envs", "map_obs", "obs_buffer", "stack_final", "store",
    "to_numpy", "to_tensor", "torch_dtype", "unsqueeze",
]

Obs = Union[Tensor, dict[str, "Obs"]]
"""A tensor, or a dict of them keyed like the ``Dict`` observation space."""


def map_obs(fn: Callable[..., Any], *obs: Any) -> Any:
    """Apply ``fn`` leaf-wise to one or more observations of the same structure."""
    first = obs[0]
    if isinstance(first, dict):
        return {k: map_obs(fn, *(o[k] for o in obs)) for k in first}
    return fn(*obs)


def to_tensor(obs: Any, device: torch.device | str | None = None) -> Obs:
    """Numpy array (or scalar, or tensor), or a dict of them -> tensor(s) on ``device``.

    Dtypes are kept; a CPU numpy array is wrapped without a copy (``torch.as_tensor``).
    """
    if isinstance(obs, dict):
        return {k: to_tensor(v, device) for k, v in obs.items()}
    if isinstance(obs, Tensor):
        return obs.to(device)
    return torch.as_tensor(np.asarray(obs), device=device)


def to_numpy(obs: Obs) -> Any:
    """Tensor(s) -> numpy array(s) of the same structure (a checkpoint's observation -> env side)."""
    return map_obs(lambda x: x.cpu().numpy(), obs)


def unsqueeze(obs: Obs, n: int = 1) -> Obs:
    """Prepend ``n`` unit dims to every leaf: ``[B, ...] -> [1, B, ...]`` (one time step)."""
    if isinstance(obs, dict):
        return {k: unsqueeze(v, n) for k, v in obs.items()}
    return obs[(None,) * n]


def obs_buffer(space: gym.Space, T: int, B: int, device: torch.device | str | None = None) -> Obs:
    """Zeros ``[T, B, *shape]`` of the space's dtype per leaf: rollout storage for ``T`` steps of ``B`` envs."""
    if isinstance(space, gym.spaces.Dict):
        return {k: obs_buffer(sub, T, B, device) for k, sub in space.spaces.items()}
    if space.shape is None or space.dtype is None:
        raise ConfigError(f"observation space {space} cannot be stored in a tensor (no fixed shape / dtype)")
    return torch.zeros((T, B, *space.shape), dtype=torch_dtype(space.dtype), device=device)


def store(buf: Obs, t: int, obs: Obs) -> None:
    """``buf[t] = obs`` leaf-wise, in place (``obs`` leaves are ``[B, *shape]``)."""
    if isinstance(buf, dict):
        for k, b in buf.items():
            store(b, t, obs[k])
    else:
        buf[t] = obs


def index_envs(buf: Obs, envs: Tensor) -> Obs:
    """The env-axis minibatch ``buf[:, envs]`` leaf-wise: ``[T, B, ...] -> [T, len(envs), ...]``."""
    if isinstance(buf, dict):
        return {k: index_envs(b, envs) for k, b in buf.items()}
    return buf[:, envs]


def stack_final(final_obs: Sequence[Any], idx: Sequence[int]) -> Any:
    """Stack the last observations of the envs ``idx`` into ``[len(idx), *shape]`` per leaf.

    ``final_obs`` is a SAME_STEP vector env's ``info["final_obs"]``: an object array with one
    *unbatched* observation per env (``None`` where no episode ended); for a ``Dict`` space
    each entry is a dict ``{key: array or scalar}``, so the result is a dict of stacked arrays.
    """
    items = [final_obs[i] for i in idx]
    if not items:
        raise ValueError("stack_final needs at least one env index")
    return _stack(items)


def _stack(items: list) -> Any:
    if isinstance(items[0], dict):
        return {k: _stack([it[k] for it in items]) for k in items[0]}
    return np.stack(items)


def torch_dtype(np_dtype: Any) -> torch.dtype:
    """The torch dtype numpy's ``np_dtype`` converts to."""
    return torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype
