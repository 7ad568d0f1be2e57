"""How training loops get environments: always batched, always SAME_STEP autoreset.

``make_vec_env`` returns the id's native batched implementation when it registers a
SAME_STEP ``vector_entry_point`` (rlmem's own envs) or rlmem has a native twin of a peer
env (``NATIVE_TWINS``: CartPole-v1), and a ``SyncVectorEnv`` otherwise (MiniGrid, ...),
with the observation adapters of :mod:`rlmem.envs.adapters` for peer envs. All use
Gymnasium's SAME_STEP autoreset: when an episode ends, the returned observation is already
the next episode's first one, and the last observation of the finished episode is in
``info["final_obs"]`` (needed to bootstrap truncations).
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

from rlmem.errors import ConfigError, UnknownNameError

#: Peer ids whose rlmem native batched env equals their SAME_STEP ``SyncVectorEnv`` (tested
#: for that); the constructor takes ``num_envs``, ``max_episode_steps`` and the env kwargs.
NATIVE_TWINS = {"CartPole-v1": "rlmem.envs.cartpole:CartPoleVec"}


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``, or an UnknownNameError naming close matches."""
    import rlmem.envs  # noqa: F401  (registers rlmem/ ids)

    if env_id.startswith("MiniGrid"):
        import minigrid  # noqa: F401  (registers MiniGrid-* ids)
    if env_id.startswith("popgym-"):
        try:
            import popgym  # noqa: F401  (registers popgym-* ids)
        except ImportError:
            raise ConfigError(f"{env_id} is a POPGym env: install it with `pip install rlmem[popgym]`") from None
    try:
        return gym.spec(env_id)
    except (gym.error.Error, ModuleNotFoundError, ImportError) as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `rlmem envs` lists rlmem's ids"
        raise UnknownNameError(f"unknown environment id {env_id!r} ({type(e).__name__}){hint}") from None


def make_vec_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> VectorEnv:
    """``num_envs`` copies of ``env_id`` as one SAME_STEP-autoreset vector env."""
    spec = env_spec(env_id)
    kwargs = dict(env_kwargs or {})
    try:
        if spec.id in NATIVE_TWINS:
            twin = gym.envs.registration.load_env_creator(NATIVE_TWINS[spec.id])
            # max_episode_steps: the registered time limit unless env_kwargs override it, as
            # gym.make (and so SyncVectorEnv) allows
            return twin(num_envs, **{"max_episode_steps": spec.max_episode_steps, **spec.kwargs, **kwargs})
        if spec.vector_entry_point is not None:
            envs = gym.make_vec(spec, num_envs=num_envs, **kwargs)
            if envs.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP:
                return envs
            envs.close()  # a native batched env of another autoreset mode (e.g. CartPole's)
        return gym.make_vec(
            spec,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            wrappers=_adapters(spec),
            **kwargs,
        )
    except TypeError as e:  # an unknown keyword argument of the env constructor
        raise ConfigError(f"environment {env_id}: bad env_kwargs {kwargs}: {e}") from None


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, render_mode: str | None = None) -> gym.Env:
    """One (unbatched) copy of ``env_id``, e.g. for recording videos."""
    spec = env_spec(env_id)
    try:
        env = gym.make(spec, render_mode=render_mode, **(env_kwargs or {}))
    except TypeError as e:
        raise ConfigError(f"environment {env_id}: bad env_kwargs {env_kwargs}: {e}") from None
    for wrap in _adapters(spec):
        env = wrap(env)
    return env


def _adapters(spec: gym.envs.registration.EnvSpec) -> list:
    """Observation adapters that let rlmem's agents read a peer env (rlmem.envs.adapters)."""
    from rlmem.envs.adapters import MiniGridAdapter, is_minigrid

    return [MiniGridAdapter] if is_minigrid(spec) else []
