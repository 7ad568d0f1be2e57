"""The recurrent actor-critic every PPO/GRPO agent uses: encoder -> Memory -> heads.

Any registered :class:`rlmem.memory.Memory` plugs in by name (``PolicyConfig.memory``).
Observations: ``Box`` of any shape (flattened) and ``Discrete`` (one-hot). Actions:
``Discrete`` (categorical) and ``Box`` (diagonal Gaussian, state-independent log-std).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

from rlmem import memory as memories
from rlmem.config import PolicyConfig
from rlmem.errors import ConfigError
from rlmem.memory import State


class PolicyOut(NamedTuple):
    """What one forward pass returns (besides the new state)."""

    params: Tensor
    """[T, B, A] action logits (Discrete) or Gaussian means (Box)."""
    value: Tensor
    """[T, B] state values."""
    features: Tensor
    """[T, B, H] the actor memory's output, shown in the video's memory panel."""


def _mlp(in_dim: int, sizes: tuple[int, ...], activation: str) -> tuple[nn.Module, int]:
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [_ortho(nn.Linear(in_dim, size), math.sqrt(2)), act()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


def _ortho(layer: nn.Linear, gain: float) -> nn.Linear:
    """Orthogonal weights and zero bias: the PPO initialisation (CleanRL, SB3)."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def obs_dim(space: gym.Space) -> int:
    """Width of the flat encoding of one observation."""
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    raise ConfigError(
        f"observation space {space} is not supported by the MLP encoder yet (Box and Discrete are)"
    )


class ActorCritic(nn.Module):
    """Encoder -> Memory -> (actor, critic), with an optional separate critic trunk.

    ``forward(obs [T, B, *obs_shape], state, start [T, B] bool) -> (PolicyOut, state)``.
    With ``separate_critic`` the state is ``{"pi": actor_state, "vf": critic_state}``.
    """

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: PolicyConfig):
        super().__init__()
        self.obs_space, self.action_space, self.cfg = obs_space, action_space, cfg
        self.in_dim = obs_dim(obs_space)
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, self.act_dim = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, self.act_dim = False, int(action_space.shape[0])
            self.log_std = nn.Parameter(torch.zeros(self.act_dim))
        else:
            raise ConfigError(f"action space {action_space} is not supported (Discrete and 1-D Box are)")

        self.pi_trunk = _Trunk(self.in_dim, cfg)
        self.vf_trunk = _Trunk(self.in_dim, cfg) if cfg.separate_critic else None
        pi_body, pi_dim = _mlp(self.pi_trunk.out_dim, cfg.head, cfg.activation)
        vf_body, vf_dim = _mlp((self.vf_trunk or self.pi_trunk).out_dim, cfg.head, cfg.activation)
        # Small actor init keeps the first policy near uniform; value head gain 1 (CleanRL).
        self.actor = nn.Sequential(pi_body, _ortho(nn.Linear(pi_dim, self.act_dim), 0.01))
        self.critic = nn.Sequential(vf_body, _ortho(nn.Linear(vf_dim, 1), 1.0))

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        pi = self.pi_trunk.memory.initial_state(batch_size, device)
        if self.vf_trunk is None:
            return pi
        return {"pi": pi, "vf": self.vf_trunk.memory.initial_state(batch_size, device)}

    # ------------------------------------------------------------------ forward
    def encode_obs(self, obs: Tensor) -> Tensor:
        """[T, B, *obs_shape] (any dtype) -> [T, B, in_dim] float32."""
        if isinstance(self.obs_space, gym.spaces.Discrete):
            return nn.functional.one_hot(obs.long() - int(self.obs_space.start), self.in_dim).float()
        return obs.reshape(*obs.shape[:2], self.in_dim).float()

    def forward(self, obs: Tensor, state: State, start: Tensor) -> tuple[PolicyOut, State]:
        x = self.encode_obs(obs)
        if self.vf_trunk is None:
            h, state = self.pi_trunk(x, state, start)
            h_vf = h
        else:
            h, s_pi = self.pi_trunk(x, state["pi"], start)
            h_vf, s_vf = self.vf_trunk(x, state["vf"], start)
            state = {"pi": s_pi, "vf": s_vf}
        return PolicyOut(self.actor(h), self.critic(h_vf).squeeze(-1), h), state

    # ------------------------------------------------------------------ actions
    def distribution(self, params: Tensor) -> Distribution:
        if self.discrete:
            return Categorical(logits=params, validate_args=False)
        return Normal(params, self.log_std.exp().expand_as(params), validate_args=False)

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probability of ``actions`` and entropy, both [T, B]."""
        dist = self.distribution(params)
        if self.discrete:
            return dist.log_prob(actions.long()), dist.entropy()
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    def sample(self, params: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Draw (or take the mode of) actions; returns (actions, log-probabilities)."""
        if self.discrete:
            logp_all = torch.log_softmax(params, dim=-1)
            if deterministic:
                action = params.argmax(-1)
            else:  # inverse-CDF sampling: cheaper than building a Categorical per step
                u = torch.rand(params.shape[:-1] + (1,), device=params.device)
                action = (logp_all.exp().cumsum(-1) < u).sum(-1).clamp_max(self.act_dim - 1)
            return action, logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        dist = self.distribution(params)
        action = params if deterministic else dist.sample()
        return action, dist.log_prob(action).sum(-1)

    def env_action(self, action: Tensor) -> np.ndarray:
        """Tensor actions [B, ...] -> what the vector env takes (Box actions clipped)."""
        a = action.cpu().numpy()
        if not self.discrete:
            a = np.clip(a, self.action_space.low, self.action_space.high)
        return a


class _Trunk(nn.Module):
    """Per-step MLP encoder followed by a memory."""

    def __init__(self, in_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.encoder, enc_dim = _mlp(in_dim, tuple(cfg.encoder), cfg.activation)
        self.memory = memories.make(cfg.memory, enc_dim, **cfg.memory_kwargs)
        self.out_dim = self.memory.out_dim

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        return self.memory(self.encoder(x), state, start)
