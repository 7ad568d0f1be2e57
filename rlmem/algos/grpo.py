"""Group-relative policy optimisation (GRPO) with any :class:`rlmem.memory.Memory`: no critic.

GRPO (Shao et al. 2024, DeepSeekMath; TRL's ``GRPOTrainer``) for resettable environments,
reading top to bottom:

1. Rollout: ``groups_per_update`` groups of ``group_size`` (G) envs in one batched env. The G
   envs of a group are reset with the *same* seed, so they play the same episode start (same
   stream, same maze) with different sampled actions. Each env plays until its first episode
   end (the steps after the SAME_STEP autoreset are masked out) or ``max_episode_steps``.
2. Advantages: the undiscounted return R of each episode, standardised within its group,
   ``A = (R - mean) / (std + eps)`` (:func:`rlmem.algos.functional.group_advantages`), the same
   A for every step of the episode: the group mean is the baseline a critic would learn.
3. Update: ``update_epochs`` passes; minibatches of whole episodes (the env axis) are replayed
   from the initial memory state with the start mask (whole-episode BPTT); PPO's clipped
   ratio (:func:`rlmem.algos.functional.ppo_loss` without its value term) averaged over the
   valid steps (TRL's default token-level "dapo" aggregation), plus ``kl_coef`` x the k3 KL
   estimator to a frozen copy of the initial policy when ``kl_coef > 0``.

The policy is :class:`rlmem.agents.policy.ActorCritic` (its critic head is unused), so GRPO
runs evaluate, record and load exactly like PPO runs. Group k of the run (counted over all
updates) is seeded ``seed + k``; evaluation seeds start at ``seed + 1_000_003``. Same seed and
thread count give the same parameters on CPU, also across a stop and ``--resume``
(checkpoints hold the optimiser, the torch RNG and the reference policy; every update starts
fresh episodes, so no env state is needed).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlmem.agents.obs import index_envs, map_obs, to_tensor, unsqueeze
from rlmem.agents.policy import ActorCritic
from rlmem.algos.functional import env_minibatches, group_advantages, ppo_loss
# GRPO policies are ActorCritic networks: they evaluate and record exactly like PPO's.
from rlmem.algos.common import check_device, end_update
from rlmem.algos.ppo import evaluate_run, record_run  # noqa: F401 (re-exported)
from rlmem.config import PPOConfig, RunConfig, from_dict
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError
from rlmem.memory import index_state
from rlmem.runs import Run

__all__ = ["GRPOConfig", "check_config", "evaluate_run", "record_run", "rollout", "train"]


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO hyperparameters: the ``[grpo]`` table of an agent preset (TRL names in brackets)."""

    group_size: int = 8
    """G: rollouts per seed (``num_generations``); advantages compare the G returns."""
    groups_per_update: int = 16
    """Groups (seeds) per update; the batched env has ``group_size * groups_per_update`` envs."""
    update_epochs: int = 2
    """Passes over each batch of episodes (``num_iterations``); 1 makes the clip inactive."""
    num_minibatches: int = 2
    """Minibatches per epoch, split along the episodes; must divide the number of envs."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over ``total_steps``."""
    clip_coef: float = 0.2
    """Ratio clip epsilon (``epsilon``)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL estimator to the frozen initial policy (``beta``); 0: no reference."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient (GRPO has none by default; a little helps tiny discrete tasks)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    max_episode_steps: int = 1000
    """Episodes still running after this many steps are cut: their return so far counts, their
    success is unknown. Envs with a time limit of their own end earlier."""
    scale_rewards: str = "group"
    """``group``, ``batch`` or ``none`` (``scale_rewards``): which std divides the centred returns."""

    @property
    def num_envs(self) -> int:
        return self.group_size * self.groups_per_update


def check_config(cfg: RunConfig) -> GRPOConfig:
    """Parse and validate ``cfg.grpo``; a ConfigError names the bad key (or the valid ones)."""
    g = from_dict(GRPOConfig, cfg.grpo, "grpo")
    checks = [
        (g.group_size >= 2, f"grpo.group_size must be >= 2 (advantages compare a group), got {g.group_size}"),
        (g.groups_per_update >= 1, f"grpo.groups_per_update must be >= 1, got {g.groups_per_update}"),
        (g.update_epochs >= 1, f"grpo.update_epochs must be >= 1, got {g.update_epochs}"),
        (g.num_minibatches >= 1 and g.num_envs % g.num_minibatches == 0,
         f"grpo.num_minibatches ({g.num_minibatches}) must divide group_size * groups_per_update ({g.num_envs})"),
        (g.learning_rate > 0, f"grpo.learning_rate must be positive, got {g.learning_rate}"),
        (g.clip_coef > 0, f"grpo.clip_coef must be positive, got {g.clip_coef}"),
        (g.kl_coef >= 0, f"grpo.kl_coef must be >= 0, got {g.kl_coef}"),
        (g.ent_coef >= 0, f"grpo.ent_coef must be >= 0, got {g.ent_coef}"),
        (g.max_grad_norm > 0, f"grpo.max_grad_norm must be positive, got {g.max_grad_norm}"),
        (g.max_episode_steps >= 1, f"grpo.max_episode_steps must be >= 1, got {g.max_episode_steps}"),
        (g.scale_rewards in ("group", "batch", "none"),
         f"grpo.scale_rewards must be group, batch or none, got {g.scale_rewards!r}"),
        # The [ppo] table (and --num-envs, which sets ppo.num_envs) would be silently ignored.
        (cfg.ppo == PPOConfig(), "algo grpo reads its settings from [grpo] (group_size x groups_per_update envs); "
                                 "drop the [ppo] table and --num-envs"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    return g


class Episodes(NamedTuple):
    """One batch of whole episodes, time-major; ``T`` = the longest episode."""

    obs: Tensor | dict
    """[T, N, *obs_shape] what the policy read at each step (a dict of such for Dict spaces)."""
    actions: Tensor
    """[T, N] (or [T, N, A]) the sampled actions."""
    logp: Tensor
    """[T, N] their log-probabilities under the rollout policy."""
    valid: Tensor
    """[T, N] bool: step t belongs to env n's first episode."""
    returns: np.ndarray
    """float64[N] undiscounted return of each episode."""
    lengths: np.ndarray
    """int64[N] steps of each episode."""
    success: np.ndarray
    """float64[N] final_info success (nan where the env reports none or the episode was cut)."""


def rollout(policy: ActorCritic, envs, seeds: list[int], max_steps: int, device: torch.device) -> Episodes:
    """Play one episode per env from ``envs.reset(seed=seeds)`` (one seed per env) with sampled actions."""
    n = envs.num_envs
    obs, _ = envs.reset(seed=seeds)
    state = policy.initial_state(n, device)
    alive = np.ones(n, dtype=bool)
    returns, lengths, success = np.zeros(n), np.zeros(n, dtype=np.int64), np.full(n, np.nan)
    obs_l, act_l, logp_l, valid_l = [], [], [], []
    for t in range(max_steps):
        obs_t = to_tensor(obs, device)
        # A start only at t = 0: steps after an env's first end are masked out, so its memory
        # may run on; the update replays exactly this mask.
        start = torch.full((1, n), t == 0, dtype=torch.bool, device=device)
        with torch.no_grad():
            out, state = policy(unsqueeze(obs_t), state, start)
            action, logp = policy.sample(out.params[0])
        obs, reward, terminated, truncated, info = envs.step(policy.env_action(action))
        obs_l.append(obs_t)
        act_l.append(action)
        logp_l.append(logp)
        valid_l.append(torch.as_tensor(alive.copy()))
        returns[alive] += reward[alive]
        lengths[alive] += 1
        ended = (terminated | truncated) & alive
        final = info.get("final_info", {})
        if ended.any() and "success" in final:
            known = ended & final["_success"]
            success[known] = final["success"][known]
        alive &= ~ended
        if not alive.any():
            break
    return Episodes(map_obs(lambda *steps: torch.stack(steps), *obs_l), torch.stack(act_l), torch.stack(logp_l), torch.stack(valid_l).to(device),
                    returns, lengths, success)


def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``cfg`` with GRPO and return the last update's metrics (see :func:`rlmem.algos.ppo.train`)."""
    g = check_config(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    device = check_device(cfg.device)
    G, N = g.group_size, g.num_envs

    envs = make_vec_env(cfg.env, N, cfg.env_kwargs)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.policy).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=g.learning_rate, eps=1e-5)
    # TRL's reference model: the initial policy, frozen.
    reference = copy.deepcopy(policy).requires_grad_(False) if g.kl_coef > 0 else None
    update, global_step = 0, 0

    if resume:
        if run is None:
            raise ValueError("resume needs a run")
        ckpt = run.load_checkpoint()
        policy.load_state_dict(ckpt["policy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if reference is not None:
            reference.load_state_dict(ckpt["reference"])
        update, global_step = ckpt["update"], ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        run.truncate_metrics(global_step)

    t0, step0 = time.perf_counter(), global_step
    metrics: dict = {}
    while global_step < cfg.total_steps:
        lr = g.learning_rate * (1.0 - global_step / cfg.total_steps) if g.anneal_lr else g.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr

        # ------------------------------------------------------------ 1. rollout: G envs per seed
        first_group = update * g.groups_per_update
        seeds = [cfg.seed + first_group + k // G for k in range(N)]
        batch = rollout(policy, envs, seeds, g.max_episode_steps, device)
        global_step += int(batch.lengths.sum())
        T = batch.actions.shape[0]

        # ------------------------------------------------------------ 2. group-relative advantages
        returns = torch.as_tensor(batch.returns, dtype=torch.float32, device=device)
        advantages = group_advantages(returns, G, g.scale_rewards).expand(T, N)
        start = torch.zeros((T, N), dtype=torch.bool, device=device)
        start[0] = True
        initial = policy.initial_state(N, device)
        ref_logp = None
        if reference is not None:
            with torch.no_grad():
                out = reference.replay(batch.obs, initial, start)
                ref_logp, _ = reference.log_prob_entropy(out.params, batch.actions)

        # ------------------------------------------------------------ 3. update: whole-episode BPTT
        kls = []
        for epoch in range(g.update_epochs):
            for mb in env_minibatches(N, g.num_minibatches):
                mb = mb.to(device)
                out = policy.replay(index_envs(batch.obs, mb), index_state(initial, mb), start[:, mb])
                new_logp, entropy = policy.log_prob_entropy(out.params, batch.actions[:, mb])
                valid = batch.valid[:, mb]
                new_logp = new_logp[valid]  # [steps]: the mean below is over valid steps only
                no_value = torch.zeros_like(new_logp)
                loss, stats = ppo_loss(
                    new_logp, batch.logp[:, mb][valid], advantages[:, mb][valid], no_value, no_value, no_value,
                    entropy[valid], g.clip_coef, vf_coef=0.0, ent_coef=g.ent_coef, clip_vloss=False,
                )
                if ref_logp is not None:
                    # k3 estimator of KL(pi || ref) (Schulman's blog; DeepSeekMath, TRL): unbiased, >= 0.
                    log_r = ref_logp[:, mb][valid] - new_logp
                    kl = (log_r.exp() - log_r - 1).mean()
                    loss = loss + g.kl_coef * kl
                    kls.append(kl.detach())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), g.max_grad_norm)
                optimizer.step()
        update += 1

        # ------------------------------------------------------------ log, checkpoint
        grouped = batch.returns.reshape(-1, G)
        known = batch.success[~np.isnan(batch.success)]
        metrics = {
            "update": update,
            "step": global_step,
            "sps": (global_step - step0) / (time.perf_counter() - t0),
            "lr": lr,
            **{k: float(v) for k, v in stats.items() if k != "value_loss"},
            "episodes": N,
            "episode_return": float(batch.returns.mean()),
            "episode_length": float(batch.lengths.mean()),
            "group_return_std": float(grouped.std(axis=1, ddof=1).mean()),
            # Groups whose G returns are all equal teach nothing (advantage 0): a GRPO health signal.
            "zero_std_groups": float(np.mean(np.ptp(grouped, axis=1) == 0)),
        }
        if len(known):
            metrics["success"] = float(known.mean())
        if kls:
            metrics["kl"] = float(torch.stack(kls).mean())
        if end_update(
            run, metrics, step=global_step, updates_done=update, last=global_step >= cfg.total_steps,
            checkpoint_every=cfg.checkpoint_every, callback=callback, stop_after=stop_after,
            checkpoint=lambda: {
                "algo": "grpo",
                "policy": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "reference": reference.state_dict() if reference is not None else None,
            },
        ):
            break
    envs.close()
    if run is not None:
        run.close()
    return metrics
