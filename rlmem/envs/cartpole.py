"""Native batched ``CartPole-v1``: Gymnasium's CartPole in numpy over N envs, SAME_STEP autoreset.

Gymnasium ships a batched CartPole (``CartPoleVectorEnv``), but with NEXT_STEP autoreset
(a finished env returns its first observation one ``step`` later) and one generator for
all envs; rlmem's loops read SAME_STEP (:mod:`rlmem.envs.vector`), so they used to step
``SyncVectorEnv`` -- N Python ``CartPoleEnv.step`` calls per step, most of a small
recurrent agent's rollout time on CPU. :class:`CartPoleVec` is the same physics on [N]
arrays, equal to ``gym.make_vec("CartPole-v1", N, vectorization_mode="sync",
autoreset_mode=SAME_STEP)`` for the same seeds: observations, rewards, terminated,
truncated and the info dict, bit for bit (tests/test_cartpole.py). The constants are read
from Gymnasium's own ``CartPoleEnv``; each sub-env has its own generator, seeded as
``SyncVectorEnv`` seeds it, drawn from only when that sub-env resets.

:func:`rlmem.envs.vector.make_vec_env` takes it for ``CartPole-v1``; videos still come
from Gymnasium's single env (:func:`rlmem.envs.vector.make_env`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.classic_control import utils
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._vec import SubEnvRNGs, add_final, check_state_keys, is_int, reset_plan
from rlmem.errors import ConfigError

#: Gymnasium's default reset bounds: every state variable uniform in [-0.05, 0.05].
RESET_LOW, RESET_HIGH = -0.05, 0.05


class CartPoleVec(SubEnvRNGs, VectorEnv):
    """``num_envs`` copies of Gymnasium's ``CartPoleEnv`` (+ ``TimeLimit``) in numpy.

    Shapes: observations ``float32[N, 4]`` (x, x_dot, theta, theta_dot), rewards
    ``float64[N]``, actions ``int[N]`` in {0, 1} (push left / right). The state is kept in
    float64 like the single env's. An episode terminates when ``|x| > 2.4`` or
    ``|theta| > 12 deg`` and is truncated after ``max_episode_steps``; either way the
    sub-env restarts in the same step and the last observation is in ``info["final_obs"]``.

    Args:
        num_envs: N.
        max_episode_steps: the time limit (CartPole-v1 registers 500).
        sutton_barto_reward: Gymnasium's option: reward 0 per step and -1 on failure,
            instead of +1 per step.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        max_episode_steps: int = 500,
        sutton_barto_reward: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"CartPoleVec: num_envs must be an integer >= 1, got {num_envs!r}")
        if not is_int(max_episode_steps) or max_episode_steps < 1:
            raise ConfigError(f"CartPoleVec: max_episode_steps must be an integer >= 1, got {max_episode_steps!r}")
        if not isinstance(sutton_barto_reward, (bool, np.bool_)):
            raise ConfigError(f"CartPoleVec: sutton_barto_reward must be true or false, got {sutton_barto_reward!r}")
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(f"CartPoleVec: renders no frames (use gym.make('CartPole-v1')), got render_mode={render_mode!r}")
        self.num_envs = n = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.sutton_barto_reward = bool(sutton_barto_reward)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.physics = CartPoleEnv()  # the constants (and spaces) of Gymnasium's env
        self.single_action_space = self.physics.action_space
        self.single_observation_space = self.physics.observation_space
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        self._state = np.zeros((4, n), dtype=np.float64)  # rows x, x_dot, theta, theta_dot
        self._t = np.zeros(n, dtype=np.int64)            # steps into the episode
        self._init_rngs(n)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); ``options["low"]`` /
        ``["high"]`` set this reset's bounds, as for the single env. Info is ``{}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "CartPoleVec")
        low, high = utils.maybe_parse_reset_bounds(options, RESET_LOW, RESET_HIGH)
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx, low, high)
        self._needs_reset = False
        return self._observe(), {}

    def _restart(self, idx: np.ndarray, low: float = RESET_LOW, high: float = RESET_HIGH) -> None:
        for i in idx.tolist():  # the single env's one draw of 4 from its own generator
            self._state[:, i] = self._rngs[i].uniform(low=low, high=high, size=(4,))  # type: ignore[union-attr]
        self._t[idx] = 0

    def _observe(self) -> np.ndarray:
        return self._state.T.astype(np.float32)

    def step(self, actions):
        """One step of every sub-env: ``CartPoleEnv.step``'s arithmetic, elementwise."""
        if self._needs_reset:
            raise ResetNeeded("CartPoleVec: call reset() before step()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer) or ((a != 0) & (a != 1)).any():
            raise ValueError(f"CartPoleVec: actions must be int[{self.num_envs}] in {{0, 1}}, got {actions!r}")
        p = self.physics
        x, x_dot, theta, theta_dot = self._state
        force = np.where(a == 1, p.force_mag, -p.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + p.polemass_length * np.square(theta_dot) * sintheta) / p.total_mass
        thetaacc = (p.gravity * sintheta - costheta * temp) / (
            p.length * (4.0 / 3.0 - p.masspole * np.square(costheta) / p.total_mass)
        )
        xacc = temp - p.polemass_length * thetaacc * costheta / p.total_mass
        x, x_dot = x + p.tau * x_dot, x_dot + p.tau * xacc  # "euler", CartPole-v1's integrator
        theta, theta_dot = theta + p.tau * theta_dot, theta_dot + p.tau * thetaacc
        self._state = np.stack((x, x_dot, theta, theta_dot))
        self._t += 1

        terminated = (x < -p.x_threshold) | (x > p.x_threshold) | (theta < -p.theta_threshold_radians) | (
            theta > p.theta_threshold_radians
        )
        truncated = self._t >= self.max_episode_steps  # TimeLimit: truncated even when terminated
        if self.sutton_barto_reward:
            reward = np.where(terminated, -1.0, 0.0)
        else:
            reward = np.ones(self.num_envs)
        obs = self._observe()
        info: dict[str, Any] = {}
        done = terminated | truncated
        if done.any():
            add_final(info, obs, done, {})
            idx = np.flatnonzero(done)
            self._restart(idx)
            obs[idx] = self._state[:, idx].T
        return obs, reward, terminated, truncated, info

    def get_state(self) -> dict[str, np.ndarray]:
        """``state`` (``float64[4, N]``), ``t`` (``int64[N]``) and ``rng`` (``uint64[N, 6]``)."""
        if self._needs_reset:
            raise ResetNeeded("CartPoleVec: call reset() before get_state()")
        return {"state": self._state.copy(), "t": self._t.copy(), "rng": self._rng_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, ("state", "t", "rng"), "CartPoleVec")
        n = self.num_envs
        for key, shape in (("state", (4, n)), ("t", (n,)), ("rng", (n, 6))):
            if np.shape(state[key]) != shape:
                raise ConfigError(f"CartPoleVec.set_state: {key!r} has shape {np.shape(state[key])}, expected {shape}")
        self._state = np.asarray(state["state"], dtype=np.float64).copy()
        self._t[:] = state["t"]
        self._set_rng_state(np.asarray(state["rng"]))
        self._needs_reset = False

    def close_extras(self, **kwargs: Any) -> None:
        self.physics.close()
