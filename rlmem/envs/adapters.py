"""Peer environments on rlmem's agents: observation adapters applied by ``make_vec_env``.

MiniGrid (``MiniGrid-*`` ids, e.g. ``MiniGrid-MemoryS7-v0``): the agent sees only the
egocentric 7x7 symbolic view. :class:`MiniGridAdapter` turns it into a one-hot
``Box(0, 1, (7, 7, 20), float32)`` (11 object types, 6 colours, 3 door states), which the
policy reads with its small CNN, drops the mission string (constant in the Memory envs)
and reports ``info["success"]`` at episode end (MiniGrid pays a positive reward only for
reaching the goal). The env itself is the real MiniGrid, unchanged.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

MINIGRID_CHANNELS = (11, 6, 3)  # OBJECT_TO_IDX, COLOR_TO_IDX, STATE_TO_IDX sizes in minigrid


def is_minigrid(spec: gym.envs.registration.EnvSpec) -> bool:
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return entry.startswith("minigrid")


class MiniGridAdapter(gym.ObservationWrapper):
    """One-hot egocentric view + ``info["success"]`` for MiniGrid envs (see module doc)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, _ = env.observation_space["image"].shape
        self.observation_space = gym.spaces.Box(0.0, 1.0, (h, w, sum(MINIGRID_CHANNELS)), np.float32)
        self._offsets = np.cumsum((0,) + MINIGRID_CHANNELS[:-1])
        self._eye = np.eye(sum(MINIGRID_CHANNELS), dtype=np.float32)

    def observation(self, obs: dict[str, Any]) -> np.ndarray:
        image = obs["image"].astype(np.int64)  # [H, W, 3] (object, colour, state)
        return self._eye[image + self._offsets].sum(axis=2)  # [H, W, 20]

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "success": bool(terminated and reward > 0)}
        return self.observation(obs), reward, terminated, truncated, info
