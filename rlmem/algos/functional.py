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


def group_advantages(returns: Tensor, group_size: int, scale_rewards: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages of GRPO (Shao et al. 2024, DeepSeekMath): ``(R - mean) / (std + eps)``.

    Args:
        returns: [N] float, one return per episode; groups are ``group_size`` *consecutive*
            episodes (the G rollouts of one seed / prompt), so N must be a multiple of G.
        group_size: G.
        scale_rewards: TRL's ``GRPOConfig.scale_rewards``: ``"group"`` divides by each group's
            std, ``"batch"`` by the std of all N returns, ``"none"`` only subtracts the group
            mean (Dr. GRPO, which argues the std scaling biases toward easy/hard groups).
        eps: added to the std, TRL's 1e-4: a group whose returns are all equal gets advantage 0
            (not 0/0), and its episodes then carry no policy gradient.

    The std is the *unbiased* sample std (Bessel's n - 1), as TRL (``torch.std`` / ``nanstd``)
    and the DeepSeekMath reference compute it; with G = 1 there is nothing to compare and
    every advantage is 0.

    Returns:
        advantages [N], same dtype as ``returns``.
    """
    if group_size < 1 or returns.ndim != 1 or returns.shape[0] % group_size:
        raise ValueError(f"returns of shape {tuple(returns.shape)} do not split into groups of {group_size}")
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}")
    grouped = returns.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if scale_rewards == "none" or group_size == 1:
        return centred
    if scale_rewards == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    else:
        std = returns.std() if returns.numel() > 1 else torch.zeros((), dtype=returns.dtype)
    return centred / (std + eps)
