"""Recurrent PPO with any :class:`rlmem.memory.Memory` (truncated BPTT over whole chunks).

Reads top to bottom like the paper (Schulman et al. 2017) and CleanRL's ppo_atari_lstm:

1. Rollout: ``T = num_steps`` steps in ``B = num_envs`` batched envs. The memory state at
   the chunk start is stored; every step records ``start`` (an episode starts here).
   Truncated episodes bootstrap: ``gamma * V(final_obs)`` is added to their last reward.
2. Advantages: GAE over the chunk, cut at every episode end.
3. Update: ``update_epochs`` passes; minibatches split the *env* axis so each sequence is
   replayed whole from its stored state with its start mask.

Same seed and thread count give the same parameters on CPU, also across a stop and
``--resume`` (checkpoints hold the optimiser, RNG, env and memory state).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

import numpy as np
import torch

from rlmem.agents.obs import index_envs, obs_buffer, stack_final, store, to_numpy, to_tensor, torch_dtype, unsqueeze
from rlmem.agents.policy import ActorCritic
from rlmem.algos.common import RECENT, check_device, end_update, episode_stats, init_weights, recent_window, restore_rows
from rlmem.algos.functional import env_minibatches, explained_variance, gae, normalize, ppo_loss
from rlmem.config import RunConfig
from rlmem.envs.vector import make_vec_env
from rlmem.memory import index_state, map_state
from rlmem.runs import Run, from_safe, to_safe


def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``cfg`` and return the last update's metrics.

    Args:
        run: where metrics and checkpoints go (``None``: nothing is written).
        resume: continue ``run`` from its newest checkpoint.
        stop_after: pause once this many env steps are done (checkpoint, then return);
            ``rlmem train --resume`` continues exactly where it stopped.
        callback: called with the metrics dict after every update (progress bars); if it
            returns True the run pauses there as with ``stop_after`` (the CLI's Ctrl-C).
    """
    p = cfg.ppo
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    device = check_device(cfg.device)
    T, B = p.num_steps, p.num_envs

    envs = make_vec_env(cfg.env, B, cfg.env_kwargs)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.policy).to(device)
    if cfg.init_from and not resume:  # e.g. PPO after DAgger; a resumed run has its own weights
        init_weights(policy, cfg.init_from)
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate, eps=1e-5)

    # ---------------------------------------------------------------- rollout storage [T, B]
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    obs_buf = obs_buffer(obs_space, T, B, device)  # a tensor, or a dict of them for Dict spaces
    act_buf = torch.zeros((T, B, *act_space.shape), dtype=torch_dtype(act_space.dtype), device=device)
    logp_buf = torch.zeros((T, B), device=device)
    value_buf = torch.zeros((T, B), device=device)
    reward_buf = torch.zeros((T, B), device=device)
    start_buf = torch.zeros((T, B), dtype=torch.bool, device=device)
    end_buf = torch.zeros((T, B), dtype=torch.bool, device=device)

    # ---------------------------------------------------------------- loop state
    next_obs, _ = envs.reset(seed=cfg.seed)
    next_start = np.ones(B, dtype=bool)  # every env begins an episode
    state = policy.initial_state(B, device)
    ep_return, ep_length = np.zeros(B), np.zeros(B, dtype=np.int64)
    recent: deque[tuple] = deque(maxlen=RECENT)  # episode_row tuples
    first_update, global_step = 0, 0

    if resume:
        if run is None:
            raise ValueError("resume needs a run")
        ckpt = run.load_checkpoint()
        policy.load_state_dict(ckpt["policy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        first_update, global_step = ckpt["update"], ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        loop = ckpt["loop"]
        if ckpt["env_state"] is not None and hasattr(envs, "set_state"):
            envs.set_state(from_safe(ckpt["env_state"]))
            next_obs, next_start = to_numpy(loop["obs"]), loop["start"].numpy()
            state = map_state(lambda s: s.to(device), loop["state"])
            ep_return, ep_length = loop["ep_return"].numpy(), loop["ep_length"].numpy()
        else:  # envs without get_state restart their episodes (documented: not bit-exact)
            next_obs, _ = envs.reset(seed=cfg.seed + 7919 * first_update)
        recent.extend(restore_rows(ckpt["recent"]))
        run.truncate_metrics(global_step)

    t0, step0 = time.perf_counter(), global_step
    metrics: dict = {}
    for update in range(first_update, cfg.num_updates):
        lr = p.learning_rate * (1.0 - update / cfg.num_updates) if p.anneal_lr else p.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        # The memory state before step 0 of this chunk. The rollout runs in inference mode
        # (cheaper per op than no_grad: no version counters or view tracking), so its states
        # are inference tensors; the update replays from this one with autograd: a copy.
        chunk_state = map_state(torch.clone, state)
        finished: list[tuple] = []

        # ------------------------------------------------------------ 1. rollout
        for t in range(T):
            obs_t = to_tensor(next_obs, device)
            start_t = torch.as_tensor(next_start, device=device)
            with torch.inference_mode():
                out, state = policy(unsqueeze(obs_t), state, start_t[None])
                action, logp = policy.sample(out.params[0])
            next_obs, reward, terminated, truncated, info = envs.step(policy.env_action(action))
            global_step += B

            ep_return += reward
            ep_length += 1
            reward_t = torch.as_tensor(reward, dtype=torch.float32, device=device)
            if truncated.any():  # bootstrap: the episode was cut, not finished
                reward_t += p.gamma * _final_values(policy, info, truncated, state, device)
            done = terminated | truncated
            if done.any():
                finished += episode_stats(info, done, ep_return, ep_length)
                ep_return[done], ep_length[done] = 0.0, 0

            store(obs_buf, t, obs_t)
            act_buf[t], logp_buf[t] = action, logp
            value_buf[t], reward_buf[t] = out.value[0], reward_t
            start_buf[t], end_buf[t] = start_t, torch.as_tensor(done, device=device)
            next_start = done

        # ------------------------------------------------------------ 2. advantages
        with torch.inference_mode():
            out, _ = policy(
                unsqueeze(to_tensor(next_obs, device)), state, torch.as_tensor(next_start, device=device)[None]
            )
            advantages, returns = gae(reward_buf, value_buf, end_buf, out.value[0], p.gamma, p.gae_lambda)

        # ------------------------------------------------------------ 3. update
        for epoch in range(p.update_epochs):
            for mb in env_minibatches(B, p.num_minibatches):
                mb = mb.to(device)
                out = policy.replay(index_envs(obs_buf, mb), index_state(chunk_state, mb), start_buf[:, mb])
                new_logp, entropy = policy.log_prob_entropy(out.params, act_buf[:, mb])
                mb_adv = normalize(advantages[:, mb]) if p.norm_adv else advantages[:, mb]
                loss, stats = ppo_loss(
                    new_logp, logp_buf[:, mb], mb_adv, out.value, value_buf[:, mb], returns[:, mb], entropy,
                    p.clip_coef, p.vf_coef, p.ent_coef, p.clip_vloss,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
                optimizer.step()
            if p.target_kl and stats["approx_kl"] > p.target_kl:
                break

        # ------------------------------------------------------------ log, checkpoint
        recent.extend(finished)
        metrics = {
            "update": update + 1,
            "step": global_step,
            "sps": (global_step - step0) / (time.perf_counter() - t0),
            "lr": lr,
            **{k: float(v) for k, v in stats.items()},
            "explained_variance": explained_variance(value_buf, returns),
            "episodes": len(finished),
            **recent_window(recent),
        }
        if end_update(
            run, metrics, step=global_step, updates_done=update + 1, last=update + 1 == cfg.num_updates,
            checkpoint_every=cfg.checkpoint_every, callback=callback, stop_after=stop_after,
            checkpoint=lambda: {
                "policy": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "env_state": to_safe(envs.get_state()) if hasattr(envs, "get_state") else None,
                "loop": {
                    "obs": to_tensor(next_obs),
                    "start": torch.as_tensor(next_start),
                    "state": state,
                    "ep_return": torch.as_tensor(ep_return),
                    "ep_length": torch.as_tensor(ep_length),
                },
                "recent": [list(r) for r in recent],
            },
        ):
            break
    envs.close()
    if run is not None:
        run.close()
    return metrics


# --------------------------------------------------------------------------- eval / record
def evaluate_run(run: Run, *, episodes: int, seed: int, deterministic: bool = True,
                 env_kwargs: dict | None = None, num_envs: int = 32):
    """Evaluate the run's newest checkpoint (see :func:`rlmem.evaluate.evaluate`)."""
    from rlmem.evaluate import evaluate, load_policy

    policy, _ = load_policy(run)
    kwargs = {**run.config.env_kwargs, **(env_kwargs or {})}
    return evaluate(policy, run.config.env, kwargs, episodes, seed, deterministic=deterministic, num_envs=num_envs)


def record_run(run: Run, *, out, episodes: int, seed: int, fps: int):
    """An mp4 (gif fallback) of the newest checkpoint's policy with a memory panel."""
    from rlmem.evaluate import load_policy
    from rlmem.video import record

    policy, _ = load_policy(run)
    cfg = run.config
    return record(policy, cfg.env, cfg.env_kwargs, out=out, episodes=episodes, seed=seed, fps=fps, name=run.path.name)


# --------------------------------------------------------------------------- helpers
def _final_values(policy: ActorCritic, info: dict, truncated: np.ndarray, state, device) -> torch.Tensor:
    """V(final_obs) of the truncated envs (0 elsewhere), read with their pre-reset state."""
    idx = np.flatnonzero(truncated)
    final = stack_final(info["final_obs"], idx)
    idx_t = torch.as_tensor(idx, device=device)
    with torch.inference_mode():
        out, _ = policy(
            unsqueeze(to_tensor(final, device)),
            index_state(state, idx_t),
            torch.zeros((1, len(idx)), dtype=torch.bool, device=device),
        )
    values = torch.zeros(len(truncated), device=device)
    values[idx_t] = out.value[0]
    return values
