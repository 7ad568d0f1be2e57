"""The native batched CartPole equals Gymnasium's CartPole-v1 under SyncVectorEnv, bit for bit."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from envcheck import assert_batched_resume, assert_info_equal
from rlmem.envs.cartpole import CartPoleVec
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError


def sync_cartpole(n: int, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(
        "CartPole-v1", num_envs=n, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs,
    )


def balancing_actions(obs: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Push the way the pole falls (episodes reach the time limit), with random actions mixed in."""
    greedy = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
    return np.where(rng.random(len(obs)) < noise, rng.integers(0, 2, len(obs)), greedy)


@pytest.mark.parametrize("kwargs", [{}, {"sutton_barto_reward": True}, {"max_episode_steps": 40}])
def test_equals_sync_vector_env(kwargs):
    n, rng = 5, np.random.default_rng(0)
    ours = CartPoleVec(n, **kwargs)
    theirs = sync_cartpole(n, **kwargs)
    a, b = ours.reset(seed=3), theirs.reset(seed=3)
    assert np.array_equal(a[0], b[0]) and a[0].dtype == b[0].dtype and a[1] == b[1]
    obs, ends = a[0], {"terminated": 0, "truncated": 0}
    for t in range(1200):
        actions = balancing_actions(obs, rng, noise=1.0 if t < 200 else 0.2 if t < 600 else 0.0)
        got, want = ours.step(actions), theirs.step(actions)
        for x, y in zip(got[:4], want[:4]):
            assert x.dtype == y.dtype and np.array_equal(x, y), t
        assert_info_equal(got[4], want[4])
        obs = got[0]
        ends["terminated"] += int(got[2].sum())
        ends["truncated"] += int(got[3].sum())
    assert ends["terminated"] > 0 and ends["truncated"] > 0  # both kinds of episode end were compared
    theirs.close()


def test_reset_seeds_and_mask_as_sync():
    ours, theirs = CartPoleVec(3), sync_cartpole(3)
    assert np.array_equal(ours.reset(seed=[7, 8, 9])[0], theirs.reset(seed=[7, 8, 9])[0])
    mask = np.array([False, True, False])
    assert np.array_equal(ours.reset(options={"reset_mask": mask})[0], theirs.reset(options={"reset_mask": mask})[0])


def test_get_state_set_state_resumes_exactly():
    vec = CartPoleVec(4)
    vec.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(30):
        vec.step(rng.integers(0, 2, 4))
    assert_batched_resume(vec, lambda: CartPoleVec(4), rng.integers(0, 2, (200, 4)))


def test_make_vec_env_takes_the_native_twin():
    envs = make_vec_env("CartPole-v1", 2, {"sutton_barto_reward": True})
    assert isinstance(envs, CartPoleVec) and envs.sutton_barto_reward and envs.max_episode_steps == 500
    assert make_vec_env("CartPole-v1", 2, {"max_episode_steps": 40}).max_episode_steps == 40  # as gym.make
    with pytest.raises(ConfigError, match="bad env_kwargs"):
        make_vec_env("CartPole-v1", 2, {"gravity": 3.0})


def test_bad_input():
    with pytest.raises(ConfigError, match="num_envs"):
        CartPoleVec(0)
    with pytest.raises(ConfigError, match="sutton_barto_reward"):
        CartPoleVec(2, sutton_barto_reward="yes")
    with pytest.raises(ConfigError, match="render_mode"):
        CartPoleVec(2, render_mode="rgb_array")
    vec = CartPoleVec(2)
    with pytest.raises(gym.error.ResetNeeded):
        vec.step(np.array([0, 1]))
    vec.reset(seed=0)
    for bad in (np.array([0, 2]), np.array([0, 1, 1]), np.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="actions"):
            vec.step(bad)
    with pytest.raises(ConfigError, match="shape"):
        vec.set_state({"state": np.zeros((4, 3)), "t": np.zeros(2), "rng": np.zeros((2, 6), np.uint64)})
