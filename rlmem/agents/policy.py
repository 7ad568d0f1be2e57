"""The recurrent actor-critic every PPO/GRPO agent uses: encoder -> Memory -> heads.

Any registered :class:`rlmem.memory.Memory` plugs in by name (``PolicyConfig.memory``).
Observations: flat ``Box`` (MLP), image ``Box`` (small CNN), ``Discrete`` (one-hot) and
``Dict`` of those and of integer-id vectors (one encoder per key, concatenated: how a goal
enters beside the view), see :mod:`rlmem.agents.encoders`; a ``Dict`` observation is a dict
of tensors (:mod:`rlmem.agents.obs`). Actions:
``Discrete`` (categorical) and ``Box`` (diagonal Gaussian, state-independent log-std).
"""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Normal

from rlmem import memory as memories
from rlmem.agents.encoders import make_encoder, mlp, ortho
from rlmem.agents.obs import Obs
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


class ActorCritic(nn.Module):
    """Encoder -> Memory -> (actor, critic), with an optional separate critic trunk.

    ``forward(obs [T, B, *obs_shape], state, start [T, B] bool) -> (PolicyOut, state)``;
    for a ``Dict`` space ``obs`` is ``{key: [T, B, *shape_key]}``. With ``separate_critic`` the state is ``{"pi": actor_state, "vf": critic_state}``.
    """

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: PolicyConfig):
        super().__init__()
        self.obs_space, self.action_space, self.cfg = obs_space, action_space, cfg
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete, self.act_dim = True, int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete, self.act_dim = False, int(action_space.shape[0])
            self.log_std = nn.Parameter(torch.zeros(self.act_dim))
        else:
            raise ConfigError(f"action space {action_space} is not supported (Discrete and 1-D Box are)")

        self.pi_trunk = _Trunk(obs_space, cfg)
        self.vf_trunk = _Trunk(obs_space, cfg) if cfg.separate_critic else None
        pi_body, pi_dim = mlp(self.pi_trunk.out_dim, cfg.head, cfg.activation)
        vf_body, vf_dim = mlp((self.vf_trunk or self.pi_trunk).out_dim, cfg.head, cfg.activation)
        # Small actor init keeps the first policy near uniform; value head gain 1 (CleanRL).
        self.actor = nn.Sequential(pi_body, ortho(nn.Linear(pi_dim, self.act_dim), 0.01))
        self.critic = nn.Sequential(vf_body, ortho(nn.Linear(vf_dim, 1), 1.0))

    # ------------------------------------------------------------------ state
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        pi = self.pi_trunk.memory.initial_state(batch_size, device)
        if self.vf_trunk is None:
            return pi
        return {"pi": pi, "vf": self.vf_trunk.memory.initial_state(batch_size, device)}

    # ------------------------------------------------------------------ forward
    def forward(self, obs: Obs, state: State, start: Tensor) -> tuple[PolicyOut, State]:
        x = obs
        if self.vf_trunk is None:
            h, state = self.pi_trunk(x, state, start)
            h_vf = h
        else:
            h, s_pi = self.pi_trunk(x, state["pi"], start)
            h_vf, s_vf = self.vf_trunk(x, state["vf"], start)
            state = {"pi": s_pi, "vf": s_vf}
        return PolicyOut(self.actor(h), self.critic(h_vf).squeeze(-1), h), state

    def replay(self, obs: Obs, state: State, start: Tensor) -> PolicyOut:
        """``forward``'s output without the final state (PPO's update replays chunks and
        discards it; some memories then skip work, see :meth:`Memory.replay`)."""
        h = self.pi_trunk.replay(obs, state if self.vf_trunk is None else state["pi"], start)
        h_vf = h if self.vf_trunk is None else self.vf_trunk.replay(obs, state["vf"], start)
        return PolicyOut(self.actor(h), self.critic(h_vf).squeeze(-1), h)

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
                action = params.argmax(-1, keepdim=True)
            else:  # Gumbel-max: argmax(log p + Gumbel) = argmax(log p - log Exp(1)); fewer ops per
                # step than a Categorical or an inverse CDF, which matters in the rollout loop
                noise = torch.empty_like(logp_all).exponential_().log_()
                action = (logp_all - noise).argmax(-1, keepdim=True)
            return action.squeeze(-1), logp_all.gather(-1, action).squeeze(-1)
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
    """Per-step encoder (chosen from the observation space) followed by a memory."""

    def __init__(self, obs_space: gym.Space, cfg: PolicyConfig):
        super().__init__()
        self.encoder = make_encoder(obs_space, tuple(cfg.encoder), cfg.activation, goal_gating=cfg.goal_gating)
        self.memory = memories.make(cfg.memory, self.encoder.out_dim, **cfg.memory_kwargs)
        self.out_dim = self.memory.out_dim

    def forward(self, obs: Obs, state: State, start: Tensor) -> tuple[Tensor, State]:
        return self.memory(self.encoder(obs), state, start)

    def replay(self, obs: Obs, state: State, start: Tensor) -> Tensor:
        return self.memory.replay(self.encoder(obs), state, start)
