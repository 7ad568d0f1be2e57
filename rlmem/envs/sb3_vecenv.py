"""rlmem's batched environments as a Stable-Baselines3 ``VecEnv``.

SB3 steps its environments through its own ``VecEnv`` interface (``DummyVecEnv`` loops over
N single envs in Python). :class:`SB3VecEnv` wraps any Gymnasium ``VectorEnv`` with
SAME_STEP autoreset -- what :func:`rlmem.envs.vector.make_vec_env` always returns, so rlmem's
native numpy-batched envs -- and gives SB3 exactly what ``DummyVecEnv`` over the single env
would give for the same seeds and actions::

    from stable_baselines3 import PPO
    from rlmem.envs.sb3_vecenv import make_sb3_vec_env

    venv = make_sb3_vec_env("rlmem/EndlessTMaze-v0", 8)
    PPO("MlpPolicy", venv, seed=1).learn(100_000)

The mapping from Gymnasium's vector API to SB3's:

- ``step_wait`` returns ``obs``, ``rewards float32[N]`` (as DummyVecEnv), ``dones bool[N]`` =
  ``terminated | truncated`` and ``infos``, a list of N dicts. A sub-env's dict holds its
  entries of the step's info dict; for a sub-env whose episode ended it holds the finished
  episode's last info instead (``final_info``: e.g. ``success``), plus
  ``terminal_observation`` (the episode's last observation; the returned ``obs`` row is
  already the next episode's first), ``is_success`` (= ``success``, the key SB3 reads) and,
  for every sub-env as in DummyVecEnv, ``TimeLimit.truncated`` = truncated and not terminated.
- ``reset()`` returns the observations only (the infos go to ``reset_infos``) and uses the
  seeds stored by ``seed(s)``: sub-env ``i`` gets ``s + i`` (SB3's and Gymnasium's
  convention), once; later resets without a new ``seed`` keep the generators going.
- ``get_attr`` / ``set_attr`` / ``env_method`` / ``env_is_wrapped`` reach the sub-env objects
  of a ``SyncVectorEnv``. A native batched env has no sub-env objects: ``get_attr`` returns
  its batch-level attribute (e.g. ``render_mode``) for every index, ``env_is_wrapped`` is
  False (there are no Gymnasium wrappers), and ``set_attr`` / ``env_method`` raise a clear
  error -- use :attr:`SB3VecEnv.vector_env` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rlmem.errors import ConfigError

__all__ = ["SB3VecEnv", "make_sb3_vec_env"]


class SB3VecEnv(VecEnv):
    """A SAME_STEP-autoreset Gymnasium ``VectorEnv`` seen through SB3's ``VecEnv`` API.

    Args:
        vector_env: ``num_envs`` sub-envs with ``metadata["autoreset_mode"] ==
            AutoresetMode.SAME_STEP`` (e.g. from :func:`rlmem.envs.vector.make_vec_env`).
            The adapter owns it: :meth:`close` closes it.

    Shapes: observations ``[N, *single_obs_shape]`` (dtype of the single observation space,
    a dict of such arrays for Dict spaces), actions ``[N, *single_action_shape]``.
    """

    def __init__(self, vector_env: VectorEnv):
        if not isinstance(vector_env, VectorEnv):
            raise ConfigError(f"SB3VecEnv wraps a gymnasium VectorEnv, got {type(vector_env).__name__}")
        mode = vector_env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ConfigError(
                f"SB3VecEnv needs a SAME_STEP autoreset vector env (rlmem.envs.vector.make_vec_env makes one); "
                f"{type(vector_env).__name__} has autoreset_mode {mode}"
            )
        self.vector_env = vector_env
        # SyncVectorEnv keeps real sub-env objects; native batched envs (and AsyncVectorEnv,
        # whose sub-envs live in other processes) do not.
        self._sub_envs: list[gym.Env] | None = list(vector_env.envs) if hasattr(vector_env, "envs") else None
        self._actions: np.ndarray | None = None
        super().__init__(vector_env.num_envs, vector_env.single_observation_space, vector_env.single_action_space)

    # ------------------------------------------------------------------ reset / step
    def reset(self) -> VecEnvObs:
        """Reset every sub-env (seeds from :meth:`seed`, used once); returns the observations."""
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        options = self._options
        if any(o != options[0] for o in options):
            raise ConfigError("SB3VecEnv: a gymnasium VectorEnv takes one options dict for all sub-envs; got different ones")
        obs, info = self.vector_env.reset(seed=seeds, options=options[0] or None)
        self.reset_infos = _unbatch_info(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return _copy_obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("SB3VecEnv.step_wait() called without step_async()")
        obs, rewards, terminated, truncated, info = self.vector_env.step(self._actions)
        self._actions = None
        dones = terminated | truncated
        infos = _unbatch_info(info, self.num_envs)
        if "final_obs" in info:  # SAME_STEP autoreset adds it on steps where a sub-env is done
            final_obs = info["final_obs"]
            final_infos = _unbatch_info(info.get("final_info", {}), self.num_envs)
            for i in np.flatnonzero(dones).tolist():
                # The step's own info row describes the next episode's first observation (the
                # reset info of SAME_STEP autoreset): SB3 keeps that in reset_infos, and gives
                # the finished episode's last info in infos, as DummyVecEnv does.
                self.reset_infos[i] = infos[i]
                infos[i] = final_infos[i]
                infos[i]["terminal_observation"] = final_obs[i]
                if "success" in infos[i]:
                    infos[i]["is_success"] = bool(infos[i]["success"])
        for row, cut in zip(infos, (truncated & ~terminated).tolist()):
            row["TimeLimit.truncated"] = cut
        return _copy_obs(obs), rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.vector_env.close()

    # ------------------------------------------------------------------ sub-env access
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """``attr_name`` of each sub-env; for a native batched env, its batch-level attribute once
        per index (AttributeError if absent, which is how SB3's ``has_attr`` asks)."""
        idx = self._indices(indices)
        if self._sub_envs is not None:
            return [self._sub_envs[i].get_wrapper_attr(attr_name) for i in idx]
        if not hasattr(self.vector_env, attr_name):
            raise AttributeError(f"{type(self.vector_env).__name__} has no attribute {attr_name!r}")
        value = getattr(self.vector_env, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        idx = self._indices(indices)
        if self._sub_envs is None:
            raise NotImplementedError(self._no_sub_envs(f"set_attr({attr_name!r})"))
        for i in idx:
            setattr(self._sub_envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        idx = self._indices(indices)
        if self._sub_envs is None:
            raise NotImplementedError(self._no_sub_envs(f"env_method({method_name!r})"))
        return [self._sub_envs[i].get_wrapper_attr(method_name)(*method_args, **method_kwargs) for i in idx]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        from stable_baselines3.common.env_util import is_wrapped

        idx = self._indices(indices)
        if self._sub_envs is None:
            return [False for _ in idx]  # no sub-env objects, so no Gymnasium wrappers around them
        return [is_wrapped(self._sub_envs[i], wrapper_class) for i in idx]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``uint8[H, W, 3]`` frame per sub-env (``render_mode="rgb_array"`` envs)."""
        if self.render_mode != "rgb_array":
            raise ConfigError(f"SB3VecEnv.get_images needs render_mode='rgb_array', the env has {self.render_mode!r}")
        return list(self.vector_env.render())

    # ------------------------------------------------------------------ helpers
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        idx = list(self._get_indices(indices))
        bad = [i for i in idx if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"SB3VecEnv: sub-env index {bad[0]} out of range for num_envs={self.num_envs}")
        return idx

    def _no_sub_envs(self, what: str) -> str:
        return (
            f"SB3VecEnv.{what}: {type(self.vector_env).__name__} is a batched env without sub-env objects; "
            f"use SB3VecEnv.vector_env directly"
        )


def make_sb3_vec_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> SB3VecEnv:
    """``num_envs`` copies of ``env_id`` (native batched where the id has one) as an SB3 VecEnv."""
    from rlmem.envs.vector import make_vec_env

    return SB3VecEnv(make_vec_env(env_id, num_envs, env_kwargs))


# --------------------------------------------------------------------------- info conversion
def _unbatch_info(info: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays with ``_key`` masks, nested dicts) -> n per-env dicts.

    Entries of 1-D numeric arrays become Python scalars (as a single env usually reports them).

    ``final_obs`` / ``final_info`` are left out: :meth:`SB3VecEnv.step_wait` turns them into
    ``terminal_observation`` and the finished episode's info.
    """
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in info.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        if isinstance(value, dict):
            value = _unbatch_info(value, n)
        elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype != object:
            value = value.tolist()  # one conversion instead of n numpy scalar lookups
        mask = info.get(f"_{key}")
        if mask is None:
            for row, v in zip(out, value):
                row[key] = v
        else:
            for row, present, v in zip(out, mask.tolist(), value):
                if present:
                    row[key] = v
    return out


def _copy_obs(obs: Any) -> Any:
    """A copy SB3 may keep (native envs may reuse their arrays; DummyVecEnv also copies)."""
    if isinstance(obs, dict):
        return {k: np.array(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(np.array(v) for v in obs)
    return np.array(obs)
