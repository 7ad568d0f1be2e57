"""Peer environments on rlmem's agents: MiniGrid through its adapter, image encoder."""

import gymnasium as gym
import numpy as np
import torch

from rlmem.agents.encoders import FlatEncoder, ImageEncoder, make_encoder
from rlmem.agents.policy import ActorCritic
from rlmem.algos.ppo import train
from rlmem.config import PolicyConfig, make_run_config
from rlmem.envs.vector import make_env, make_vec_env


def test_minigrid_observation_is_the_one_hot_egocentric_view():
    env = make_env("MiniGrid-MemoryS7-v0")
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.gen_obs()["image"]  # what MiniGrid itself shows the agent
    assert obs.shape == (7, 7, 20) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert (obs.sum(-1) == 3).all()  # one object, one colour, one state per cell
    np.testing.assert_array_equal(obs[..., :11].argmax(-1), raw[..., 0])
    np.testing.assert_array_equal(obs[..., 11:17].argmax(-1), raw[..., 1])
    np.testing.assert_array_equal(obs[..., 17:].argmax(-1), raw[..., 2])


def test_minigrid_reports_success_at_episode_end():
    envs = make_vec_env("MiniGrid-MemoryS7-v0", 2)
    envs.reset(seed=0)
    ended = None
    for _ in range(300):  # max_steps is 245: a truncation must come
        _, _, term, trunc, info = envs.step(np.zeros(2, dtype=np.int64))  # always turn left
        if (term | trunc).any():
            ended = info
            break
    envs.close()
    assert ended is not None and ended["final_info"]["_success"].any()
    assert not ended["final_info"]["success"].any()  # turning in place never reaches the goal


def test_encoder_is_chosen_from_the_space():
    assert isinstance(make_encoder(gym.spaces.Box(0, 1, (3,)), (8,), "tanh"), FlatEncoder)
    img = make_encoder(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), (), "relu")
    assert isinstance(img, ImageEncoder) and img.scale == 1 / 255
    y = img(torch.randint(0, 255, (4, 2, 7, 7, 3), dtype=torch.uint8))
    assert y.shape == (4, 2, img.out_dim)


def test_gru_agent_trains_on_minigrid_memory():
    """`rlmem train --env MiniGrid-MemoryS7-v0 --agent agents/gru.toml` just works (a short run)."""
    cfg = make_run_config({"ppo": {"num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 1}},
                          env="MiniGrid-MemoryS7-v0", total_steps=256)
    metrics = train(cfg)
    assert metrics["step"] == 256
    envs = make_vec_env("MiniGrid-MemoryS7-v0", 1)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, PolicyConfig())
    assert isinstance(policy.pi_trunk.encoder, ImageEncoder)


def test_popgym_envs_run_on_rlmem_agents():
    import pytest

    pytest.importorskip("popgym")
    cfg = make_run_config({"ppo": {"num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 1}},
                          env="popgym-RepeatPreviousEasy-v0", total_steps=256)
    assert train(cfg)["step"] == 256


def test_missing_popgym_is_one_clear_error(monkeypatch):
    import sys

    import pytest

    from rlmem.errors import ConfigError

    monkeypatch.setitem(sys.modules, "popgym", None)  # import popgym now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install rlmem\[popgym\]"):
        make_vec_env("popgym-RepeatPreviousEasy-v0", 2)
