"""DAgger (Ross, Gordon & Bagnell 2011): a recurrent policy learns to act like a navigation teacher.

``algo = "dagger"``. The student is PPO's :class:`~rlmem.agents.policy.ActorCritic` (encoder ->
any :class:`rlmem.memory.Memory` -> heads), so ``rlmem eval`` / ``record`` and
``benchmarks/nav_agents.py --runs`` read its runs like PPO's. The teacher is one of the modular
navigation agents of :mod:`rlmem.algos.modular` (``goat-modular`` by default): it sees the same
observations plus odometry through :class:`~rlmem.agents.nav_agents.EnvView`, never the env's
privileged oracle, so everything it does is in principle learnable from the student's inputs
(with the env's ``gps`` on, the student gets the same odometry; without it, its memory has to
integrate the path). GoatGrid envs only.

One round, read top to bottom:

1. Rollout: ``T = num_steps`` steps in ``B = num_envs`` envs. Every step the teacher reads the
   observation and names its action (the label). The env executes the teacher's action with
   probability ``beta``, else the student's greedy action (the action ``rlmem eval`` takes), so
   the student is trained on the states its own mistakes lead to. ``beta`` falls linearly from
   ``beta_start`` to ``beta_end`` over the first ``beta_fraction`` of ``total_steps``.
2. Aggregate: the chunk (observations, labels, episode starts, the student's memory state at
   the chunk start) joins a buffer of the last ``buffer_rounds`` rounds (DAgger aggregates
   every round; the cap bounds memory: GoatGrid's goal image is 9 kB a step).
3. Update: ``update_epochs * num_minibatches`` gradient steps; each replays ``B /
   num_minibatches`` chunks of one round drawn uniformly from the buffer, from their stored
   states with their start masks, and minimises the cross-entropy to the teacher's labels.

Settings. ``[dagger]``: :class:`DaggerConfig`. ``[ppo]``: ``num_envs``, ``num_steps``,
``learning_rate``, ``anneal_lr``, ``num_minibatches``, ``update_epochs``, ``max_grad_norm``
(anything else there is rejected: it would be silently ignored). ``[policy]``: the student
network, as for PPO (its critic head is built and saved but not trained).

Determinism. Same seed and thread count give the same parameters on CPU. ``--resume`` continues
the weights, optimiser, schedules and RNG, but not the buffer (hundreds of MB) or the episodes
in flight: the envs restart with a seed derived from the update, so a resumed run is not
bit-identical to a straight one.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from rlmem.agents.nav_agents import EnvView
from rlmem.agents.obs import index_envs, obs_buffer, stack_final, store, to_tensor, unsqueeze
from rlmem.agents.policy import ActorCritic
from rlmem.algos.common import RECENT, check_device, end_update, episode_row, init_weights, recent_window, restore_rows
from rlmem.algos.functional import env_minibatches
from rlmem.algos.modular import AGENTS, make_agent, require_goat_grid
from rlmem.algos.ppo import evaluate_run, record_run  # the student is a PPO policy: same eval, same video
from rlmem.config import PPOConfig, RunConfig, from_dict
from rlmem.envs.vector import make_env
from rlmem.errors import ConfigError
from rlmem.memory import index_state, map_state
from rlmem.runs import Run

__all__ = ["DaggerConfig", "beta_at", "check_config", "evaluate_run", "record_run", "train"]

_PPO_READ = ("num_envs", "num_steps", "learning_rate", "anneal_lr", "num_minibatches", "update_epochs", "max_grad_norm")


@dataclass(frozen=True)
class DaggerConfig:
    """The ``[dagger]`` table."""

    teacher: str = "semantic_map"
    """The modular agent that labels: ``semantic_map`` (goat-modular), ``spatial_graph`` (smg)
    or ``memoryless`` (see :mod:`rlmem.algos.modular`)."""
    teacher_kwargs: dict = field(default_factory=dict)
    """Its settings (``memory_kwargs`` of the modular presets)."""
    beta_start: float = 1.0
    """Probability that the teacher's action is executed, at the start."""
    beta_end: float = 0.0
    """... and after ``beta_fraction`` of ``total_steps``."""
    beta_fraction: float = 0.5
    """Fraction of ``total_steps`` over which ``beta`` falls linearly."""
    buffer_rounds: int = 32
    """Rounds (chunks of ``num_steps x num_envs`` steps) kept in the aggregate buffer."""


def check_config(cfg: RunConfig) -> DaggerConfig:
    """Parse ``cfg.dagger``; a ConfigError names the bad key, value or unread ``[ppo]`` key."""
    d = from_dict(DaggerConfig, cfg.dagger, "dagger")
    if d.teacher not in AGENTS:
        raise ConfigError(f"dagger.teacher must be one of {', '.join(AGENTS)}, got {d.teacher!r}")
    make_agent(d.teacher, d.teacher_kwargs)  # unknown or bad teacher_kwargs fail here
    checks = [
        (0 <= d.beta_end <= 1 and 0 <= d.beta_start <= 1,
         f"dagger.beta_start and beta_end must be in [0, 1], got {d.beta_start} and {d.beta_end}"),
        (0 < d.beta_fraction <= 1, f"dagger.beta_fraction must be in (0, 1], got {d.beta_fraction}"),
        (d.buffer_rounds >= 1, f"dagger.buffer_rounds must be >= 1, got {d.buffer_rounds}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    unread = [f.name for f in dataclasses.fields(PPOConfig)
              if f.name not in _PPO_READ and getattr(cfg.ppo, f.name) != f.default]
    if unread:
        raise ConfigError(f"algo dagger does not read ppo.{', ppo.'.join(unread)}; it reads ppo.{', ppo.'.join(_PPO_READ)}")
    require_goat_grid(cfg)
    return d


def beta_at(step: int, total_steps: int, d: DaggerConfig) -> float:
    """The teacher's share of executed actions at env step ``step``."""
    frac = min(1.0, step / (d.beta_fraction * total_steps))
    return d.beta_start + frac * (d.beta_end - d.beta_start)


def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """Train the student of ``cfg`` by DAgger; arguments as :func:`rlmem.algos.ppo.train`."""
    d, p = check_config(cfg), cfg.ppo
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    device = check_device(cfg.device)
    T, B = p.num_steps, p.num_envs

    envs = [make_env(cfg.env, cfg.env_kwargs) for _ in range(B)]
    views = [EnvView(env) for env in envs]
    teachers = [make_agent(d.teacher, d.teacher_kwargs) for _ in range(B)]
    policy = ActorCritic(envs[0].observation_space, envs[0].action_space, cfg.policy).to(device)
    if cfg.init_from and not resume:  # e.g. PPO after DAgger; a resumed run has its own weights
        init_weights(policy, cfg.init_from)
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate, eps=1e-5)
    first_update, global_step = 0, 0
    recent: deque[tuple] = deque(maxlen=RECENT)
    if resume:
        if run is None:
            raise ValueError("resume needs a run")
        ckpt = run.load_checkpoint()
        policy.load_state_dict(ckpt["policy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        first_update, global_step = ckpt["update"], ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        recent.extend(restore_rows(ckpt["recent"]))
        run.truncate_metrics(global_step)
    coin = np.random.default_rng([cfg.seed, first_update])  # who acts: the beta coin flips
    pick = random.Random(f"{cfg.seed}/{first_update}")  # which buffered round each minibatch replays

    # ---------------------------------------------------------------- loop state
    def reset(i: int, seed: int | None) -> tuple[dict, dict]:
        teachers[i].reset()
        return envs[i].reset(seed=seed)

    first = [reset(i, cfg.seed + 7919 * first_update + i) for i in range(B)]
    obs, infos = [o for o, _ in first], [info for _, info in first]
    next_start = np.ones(B, dtype=bool)
    state = policy.initial_state(B, device)
    ep_return, ep_length = np.zeros(B), np.zeros(B, dtype=np.int64)
    buffer: deque[tuple] = deque(maxlen=d.buffer_rounds)  # (obs [T, B], labels [T, B], starts [T, B], state)

    t0, step0 = time.perf_counter(), global_step
    metrics: dict = {}
    for update in range(first_update, cfg.num_updates):
        lr = p.learning_rate * (1.0 - update / cfg.num_updates) if p.anneal_lr else p.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        beta = beta_at(global_step, cfg.total_steps, d)
        # The rollout runs in inference mode (as PPO's), so its states are inference tensors;
        # the update replays from this one with autograd: a copy.
        chunk_state, finished = map_state(torch.clone, state), []
        obs_buf, labels = obs_buffer(policy.obs_space, T, B, device), torch.zeros((T, B), dtype=torch.long)
        starts, agree, teacher_acts = torch.zeros((T, B), dtype=torch.bool), 0, 0

        # ------------------------------------------------------------ 1. rollout
        for t in range(T):
            obs_t = to_tensor(stack_final(obs, range(B)), device)
            start_t = torch.as_tensor(next_start, device=device)
            with torch.inference_mode():
                out, state = policy(unsqueeze(obs_t), state, start_t[None])
            student = out.params[0].argmax(-1).cpu().numpy()
            label = np.array([teachers[i].act(obs[i], infos[i], views[i]) for i in range(B)])
            by_teacher = coin.random(B) < beta
            action = np.where(by_teacher, label, student)
            agree += int((student == label).sum())
            teacher_acts += int(by_teacher.sum())
            store(obs_buf, t, obs_t)
            labels[t], starts[t] = torch.as_tensor(label), start_t.cpu()
            for i in range(B):
                obs[i], reward, terminated, truncated, infos[i] = envs[i].step(int(action[i]))
                ep_return[i] += reward
                ep_length[i] += 1
                next_start[i] = terminated or truncated
                if next_start[i]:
                    finished.append(episode_row(ep_return[i], ep_length[i], infos[i].get("success"),
                                                infos[i].get("subgoal_success_rate")))
                    ep_return[i], ep_length[i] = 0.0, 0
                    obs[i], infos[i] = reset(i, None)
            global_step += B

        # ------------------------------------------------------------ 2. aggregate
        buffer.append((obs_buf, labels.to(device), starts.to(device), chunk_state))

        # ------------------------------------------------------------ 3. update
        losses = []
        for _ in range(p.update_epochs):
            for mb in env_minibatches(B, p.num_minibatches):
                mb = mb.to(device)
                r_obs, r_labels, r_starts, r_state = buffer[pick.randrange(len(buffer))]
                out = policy.replay(index_envs(r_obs, mb), index_state(r_state, mb), r_starts[:, mb])
                loss = torch.nn.functional.cross_entropy(out.params.flatten(0, 1), r_labels[:, mb].flatten())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
                optimizer.step()
                losses.append(loss.item())

        # ------------------------------------------------------------ log, checkpoint
        recent.extend(finished)
        metrics = {
            "update": update + 1,
            "step": global_step,
            "sps": (global_step - step0) / (time.perf_counter() - t0),
            "lr": lr,
            "beta": beta,
            "teacher_share": teacher_acts / (T * B),
            "agreement": agree / (T * B),
            "imitation_loss": float(np.mean(losses)),
            "episodes": len(finished),
            **recent_window(recent),
        }
        if end_update(
            run, metrics, step=global_step, updates_done=update + 1, last=update + 1 == cfg.num_updates,
            checkpoint_every=cfg.checkpoint_every, callback=callback, stop_after=stop_after,
            checkpoint=lambda: {
                "policy": policy.state_dict(),
                "optimizer": optimizer.state_dict(),
                "recent": [list(r) for r in recent],
            },
        ):
            break
    for env in envs:
        env.close()
    if run is not None:
        run.close()
    return metrics
