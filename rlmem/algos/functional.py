"""Pure functions shared by every training loop: advantages, the clipped loss, minibatches.

Written once and tested once (``tests/test_functional.py``) against reference loops.
All tensors are time-major ``[T, B]``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    episode_end: Tensor,
    last_value: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over a rollout chunk.

    Args:
        rewards: [T, B] float. On a *truncated* step the caller has already added
            ``gamma * V(final_obs)``, so truncation bootstraps while the recursion below
            can cut at every episode end.
        values: [T, B] float, V(obs_t) under the rollout policy.
        episode_end: [T, B] bool, the episode ended at step t (terminated or truncated).
        last_value: [B] float, V of the observation after step T-1 (a fresh episode's
            first observation where ``episode_end[T-1]``; it is then ignored).
        gamma, lam: discount and GAE lambda.

    Returns:
        advantages [T, B] and returns = advantages + values [T, B].
    """
    T = rewards.shape[0]
    not_end = (~episode_end).to(values.dtype)
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)], dim=0)
    deltas = rewards + gamma * next_values * not_end - values
    advantages = torch.empty_like(values)
    running = torch.zeros_like(last_value)
    for t in range(T - 1, -1, -1):  # T steps of [B] work; the deltas above are vectorised
        running = deltas[t] + gamma * lam * not_end[t] * running
        advantages[t] = running
    return advantages, advantages + values


def normalize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero-mean, unit-std over all elements (the advantage normalisation of PPO)."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


def ppo_loss(
    new_logprob: Tensor,
    old_logprob: Tensor,
    advantages: Tensor,
    new_value: Tensor,
    old_value: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_vloss: bool = True,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The clipped PPO objective (Schulman et al. 2017), to be minimised.

    Every tensor has the same shape (e.g. [T, b]); means are over all elements.
    Returns the total loss and detached statistics (policy/value loss, entropy,
    approximate KL (the low-variance ``(r - 1) - log r`` estimator) and clip fraction).
    """
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()

    if clip_vloss:
        v_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        v_loss = 0.5 * torch.max((new_value - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * ((new_value - returns) ** 2).mean()

    ent = entropy.mean()
    loss = pg_loss + vf_coef * v_loss - ent_coef * ent
    with torch.no_grad():
        stats = {
            "policy_loss": pg_loss.detach(),
            "value_loss": v_loss.detach(),
            "entropy": ent.detach(),
            "approx_kl": ((ratio - 1) - log_ratio).mean(),
            "clipfrac": ((ratio - 1).abs() > clip_coef).float().mean(),
        }
    return loss, stats


def env_minibatches(num_envs: int, num_minibatches: int, generator: torch.Generator | None = None) -> list[Tensor]:
    """Shuffle the env axis and cut it into ``num_minibatches`` equal index sets.

    Recurrent PPO cuts minibatches along envs (not time) so every sequence is replayed
    whole from its stored initial state.
    """
    if num_envs % num_minibatches:
        raise ValueError(f"num_envs ({num_envs}) is not divisible by num_minibatches ({num_minibatches})")
    perm = torch.randperm(num_envs, generator=generator)
    return list(perm.view(num_minibatches, -1))


def explained_variance(pred: Tensor, target: Tensor) -> float:
    """1 - Var[target - pred] / Var[target]; nan when the target is constant."""
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)
