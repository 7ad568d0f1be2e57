"""Per-step observation encoders, chosen from the observation space.

==========================  ==============================================================
space                       encoder
==========================  ==============================================================
``Box`` of 1 or 2 dims      flatten -> MLP (``PolicyConfig.encoder`` sizes)
``Box`` (H, W, C), H,W >= 5  small CNN (2 conv layers) -> flatten -> MLP; uint8 images in
                            [0, 255] are scaled to [0, 1]
``Discrete``                one-hot -> MLP
==========================  ==============================================================

Every encoder maps ``[T, B, *obs_shape]`` (any dtype) to ``[T, B, out_dim]`` float32.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlmem.errors import ConfigError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def ortho(layer: nn.Module, gain: float) -> nn.Module:
    """Orthogonal weights and zero bias: the PPO initialisation (CleanRL, SB3)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, sizes: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    """Linear + activation layers of the given sizes; returns (module, out_dim)."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [ortho(nn.Linear(in_dim, size), math.sqrt(2)), act()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and min(space.shape[:2]) >= 5


def make_encoder(space: gym.Space, sizes: tuple[int, ...], activation: str) -> "Encoder":
    if isinstance(space, gym.spaces.Discrete):
        return OneHotEncoder(space, sizes, activation)
    if is_image(space):
        return ImageEncoder(space, sizes, activation)
    if isinstance(space, gym.spaces.Box):
        return FlatEncoder(space, sizes, activation)
    raise ConfigError(
        f"observation space {space} is not supported by rlmem's encoders (Box, image Box and Discrete are)"
    )


class Encoder(nn.Module):
    out_dim: int


class FlatEncoder(Encoder):
    """Flatten the observation, then an MLP."""

    def __init__(self, space: gym.spaces.Box, sizes: tuple[int, ...], activation: str):
        super().__init__()
        self.in_dim = int(np.prod(space.shape))
        self.net, self.out_dim = mlp(self.in_dim, sizes, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs.reshape(*obs.shape[:2], self.in_dim).float())


class OneHotEncoder(Encoder):
    """One-hot of a Discrete observation, then an MLP."""

    def __init__(self, space: gym.spaces.Discrete, sizes: tuple[int, ...], activation: str):
        super().__init__()
        self.n, self.start = int(space.n), int(space.start)
        self.net, self.out_dim = mlp(self.n, sizes, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(nn.functional.one_hot(obs.long() - self.start, self.n).float())


class ImageEncoder(Encoder):
    """Channels-last images [T, B, H, W, C]: two 3x3 convolutions (16, 32 channels, the
    second with stride 2), flatten, then the MLP. Small on purpose: MiniGrid-sized views."""

    def __init__(self, space: gym.spaces.Box, sizes: tuple[int, ...], activation: str):
        super().__init__()
        h, w, c = space.shape
        # uint8 pixels in [0, 255] are scaled; float observations (e.g. one-hot maps) are not
        self.scale = 1 / 255 if space.dtype == np.uint8 and float(np.max(space.high)) == 255 else 1.0
        self.conv = nn.Sequential(
            ortho(nn.Conv2d(c, 16, 3, padding=1), math.sqrt(2)), nn.ReLU(),
            ortho(nn.Conv2d(16, 32, 3, stride=2, padding=1), math.sqrt(2)), nn.ReLU(),
            nn.Flatten(),
        )
        conv_out = 32 * ((h + 1) // 2) * ((w + 1) // 2)
        self.net, self.out_dim = mlp(conv_out, sizes or (256,), activation)

    def forward(self, obs: Tensor) -> Tensor:
        T, B = obs.shape[:2]
        x = obs.reshape(T * B, *obs.shape[2:]).permute(0, 3, 1, 2).float() * self.scale
        return self.net(self.conv(x)).reshape(T, B, -1)
