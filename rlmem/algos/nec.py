"""Neural Episodic Control (Pritzel et al. 2017): one differentiable neural dictionary per action.

Reads top to bottom like the paper:

1. Embed: ``h = key(encoder(s))``, the encoder chosen from the observation space
   (:func:`rlmem.agents.encoders.make_encoder`, ``[policy] encoder`` sizes) and a linear
   layer to ``key_dim``.
2. Q: ``Q(s, a)`` = the NEC read of action ``a``'s :class:`~rlmem.memory.casebank.CaseBank`
   (a DND): over the p nearest keys, ``k_i = 1 / (||h - h_i||^2 + delta)``,
   ``w = k / sum k``, ``Q = sum_i w_i v_i`` (:meth:`CaseBank.read_dnd`).
3. Act epsilon-greedily in ``B = [ppo] num_envs`` batched envs (epsilon annealed linearly).
4. N-step targets: ``Q^N(s_t, a_t) = sum_{k<N} gamma^k r_{t+k} + gamma^N max_a Q(s_{t+N}, a)``
   as soon as step ``t + N`` is observed; an episode that ends first cuts the sum there
   (terminated: no bootstrap; truncated: ``max_a Q`` of the final observation)
   (:class:`NStepWindow`).
5. Write ``(h_t, Q^N)`` into ``a_t``'s bank (:meth:`CaseBank.write`): a key already stored
   (exact match) gets the tabular update ``Q <- Q + alpha (Q^N - Q)``, a new key is appended,
   a full bank overwrites its least recently used row.
6. Learn: ``(s_t, a_t, Q^N)`` goes to a replay buffer; every ``replay_period`` transitions one
   minibatch step of Adam on ``(Q(s, a) - Q^N)^2``.

One difference from the paper: gradients train the embedding only. NEC also moves the keys
and values of the rows a minibatch read; :class:`CaseBank` stores its rows as data (no key
update that keeps its search structures consistent), so here stored keys stay as written and
values change only by the tabular rule.

The agent (:class:`NECAgent`) has the policy interface of
:class:`rlmem.agents.policy.ActorCritic` (``forward``, ``sample``, ``initial_state``,
``env_action``; ``params`` are the Q-values), so :func:`rlmem.evaluate.evaluate` and
:func:`rlmem.video.record` drive it unchanged. Evaluation reads the banks without writing.
Same seed and thread count give the same result on CPU, also across ``--stop-after`` and
``--resume`` for envs with ``get_state`` (checkpoints hold the banks, the replay buffer, the
pending N-step window, the optimiser and the RNG); other envs restart their episodes.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlmem.agents.encoders import make_encoder
from rlmem.agents.obs import Obs, index_envs, map_obs, obs_buffer, stack_final, to_numpy, to_tensor, unsqueeze
from rlmem.agents.policy import PolicyOut
from rlmem.algos.common import RECENT, check_device, end_update, episode_stats, recent_window, restore_rows
from rlmem.config import PolicyConfig, PPOConfig, RunConfig, from_dict
from rlmem.envs.vector import make_vec_env
from rlmem.errors import ConfigError, RunError
from rlmem.memory.casebank import INDEXES, CaseBank
from rlmem.runs import Run, from_safe, to_safe

__all__ = ["NECAgent", "NECConfig", "NStepWindow", "check_config", "discounted_suffix_sums", "evaluate_run",
           "load_agent", "record_run", "train"]


@dataclass(frozen=True)
class NECConfig:
    """NEC hyperparameters: the ``[nec]`` table of an agent preset (paper values in brackets)."""

    key_dim: int = 64
    """Width of the embedding = of the DND keys [128]."""
    capacity: int = 50_000
    """Rows per action's bank; a full bank overwrites its least recently used row [500k]."""
    num_neighbors: int = 50
    """p, the nearest keys a Q read averages [50]."""
    delta: float = 1e-3
    """Floor of the kernel ``1 / (d^2 + delta)`` [1e-3]."""
    alpha: float = 0.1
    """Tabular learning rate of a re-visited key: ``Q <- Q + alpha (target - Q)`` [0.1]."""
    n_step: int = 100
    """N of the N-step Q targets [100]."""
    gamma: float = 0.99
    """Discount factor [0.99]."""
    learning_rate: float = 1e-3
    """Adam learning rate of the embedding (the paper's RMSProp 7.92e-6 is for Atari's conv net)."""
    batch_size: int = 32
    """Replayed transitions per gradient step [32]."""
    replay_size: int = 100_000
    """Transitions the replay buffer keeps [100k]; at least ``(n_step + 1) * num_envs``."""
    replay_period: int = 16
    """One gradient step every this many transitions, all envs counted [16]."""
    learning_starts: int = 1_000
    """Transitions before the first gradient step."""
    epsilon_start: float = 1.0
    """Exploration rate at step 0."""
    epsilon_end: float = 0.01
    """Exploration rate after ``epsilon_steps`` (also used by ``rlmem eval --stochastic``)."""
    epsilon_steps: int = 5_000
    """Transitions (all envs) over which epsilon falls linearly; 0: ``epsilon_end`` from the start."""
    index: str = "exact"
    """Bank search: ``exact`` (torch) or ``faiss`` (same neighbours, for banks of ~1e5+ rows)."""


def check_config(cfg: RunConfig) -> NECConfig:
    """Parse and validate ``cfg.nec``; a ConfigError names the bad key (or the valid ones)."""
    n = from_dict(NECConfig, cfg.nec, "nec")
    B = cfg.ppo.num_envs
    # [ppo] num_envs (--num-envs) and num_steps (steps per env between metric rows) are read;
    # anything else there, or a memory in [policy], would be silently ignored.
    ppo_rest = dataclasses.replace(cfg.ppo, num_envs=PPOConfig.num_envs, num_steps=PPOConfig.num_steps)
    pol_rest = dataclasses.replace(cfg.policy, encoder=PolicyConfig.encoder, activation=PolicyConfig.activation,
                                   memory="none")
    checks = [
        (min(n.key_dim, n.capacity, n.num_neighbors, n.n_step, n.batch_size, n.replay_period) >= 1,
         "nec.key_dim, capacity, num_neighbors, n_step, batch_size and replay_period must be >= 1"),
        (n.delta > 0, f"nec.delta must be > 0, got {n.delta}"),
        (0 <= n.alpha <= 1, f"nec.alpha must be in [0, 1], got {n.alpha}"),
        (0 < n.gamma <= 1, f"nec.gamma must be in (0, 1], got {n.gamma}"),
        (n.learning_rate > 0, f"nec.learning_rate must be positive, got {n.learning_rate}"),
        (n.replay_size >= (n.n_step + 1) * B,
         f"nec.replay_size ({n.replay_size}) must be >= (n_step + 1) * num_envs = {(n.n_step + 1) * B}: "
         "transitions waiting for their N-step target must stay in the buffer"),
        (n.learning_starts >= 0 and n.epsilon_steps >= 0, "nec.learning_starts and epsilon_steps must be >= 0"),
        (0 <= n.epsilon_end <= n.epsilon_start <= 1,
         f"nec needs 0 <= epsilon_end <= epsilon_start <= 1, got {n.epsilon_end} and {n.epsilon_start}"),
        (n.index in INDEXES, f"nec.index must be one of {', '.join(INDEXES)}, got {n.index!r}"),
        (cfg.policy.memory == "none", f"algo nec embeds each observation with a feed-forward encoder: set [policy] "
                                      f"memory = \"none\" (got {cfg.policy.memory!r})"),
        (pol_rest == dataclasses.replace(PolicyConfig(), memory="none"),
         "algo nec reads only encoder and activation from [policy] (drop memory_kwargs, head, separate_critic)"),
        (ppo_rest == PPOConfig(), "algo nec reads only num_envs and num_steps from [ppo]; its settings are in [nec]"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    return n


# --------------------------------------------------------------------------- the agent
class NECAgent(nn.Module):
    """Embedding network + one :class:`CaseBank` per action, with ActorCritic's policy interface.

    ``forward(obs [T, B, *obs_shape], state, start) -> (PolicyOut, state)`` with ``params`` =
    Q-values [T, B, A], ``value`` = max_a Q [T, B] and ``features`` = the keys h [T, B, key_dim].
    NEC is feed-forward: the state is an empty [B, 0] tensor passed through unchanged.
    """

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, policy: PolicyConfig, nec: NECConfig,
                 device: torch.device | str = "cpu"):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ConfigError(f"algo nec needs a Discrete action space (one DND per action), got {action_space}")
        self.obs_space, self.action_space, self.nec = obs_space, action_space, nec
        self.num_actions = int(action_space.n)
        self.encoder = make_encoder(obs_space, tuple(policy.encoder), policy.activation, goal_gating=policy.goal_gating)
        self.key = nn.Linear(self.encoder.out_dim, nec.key_dim)
        self.banks = [CaseBank(nec.key_dim, nec.capacity, metric="l2", eviction="lru", index=nec.index, device=device)
                      for _ in range(self.num_actions)]
        self.epsilon = 0.0
        """Exploration rate of ``sample(..., deterministic=False)``."""

    def embed(self, obs: Obs) -> Tensor:
        """Keys h [T, B, key_dim] of observations [T, B, *obs_shape]."""
        return self.key(self.encoder(obs))

    def q_values(self, h: Tensor, touch: bool = True) -> Tensor:
        """Q [M, A] of keys h [M, key_dim]: the NEC read of every action's bank (differentiable in h)."""
        n = self.nec
        return torch.stack([bank.read_dnd(h, n.num_neighbors, n.delta, touch=touch)[0] for bank in self.banks], -1)

    def q_taken(self, h: Tensor, actions: Tensor) -> Tensor:
        """Q [M] of keys h [M, key_dim] for ``actions`` [M] int64 (each read from its own bank only)."""
        q = h.new_zeros(len(actions))
        for a, bank in enumerate(self.banks):
            rows = (actions == a).nonzero().squeeze(1)
            if rows.numel():  # training reads do not count as use: LRU follows acting and writing
                q = q.index_put((rows,), bank.read_dnd(h[rows], self.nec.num_neighbors, self.nec.delta, touch=False)[0])
        return q

    def write(self, keys: Tensor, actions: Tensor, targets: Tensor) -> None:
        """NEC's write of keys [M, key_dim] with N-step targets [M] into their actions' banks."""
        for a, bank in enumerate(self.banks):
            rows = (actions == a).nonzero().squeeze(1)
            if rows.numel():
                bank.write(keys[rows], None, targets[rows], self.nec.alpha)

    # ------------------------------------------------------------------ policy interface
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        return torch.zeros(batch_size, 0, device=device)

    def forward(self, obs: Obs, state: Tensor, start: Tensor) -> tuple[PolicyOut, Tensor]:
        h = self.embed(obs)
        q = self.q_values(h.flatten(0, 1)).view(*h.shape[:2], self.num_actions)
        return PolicyOut(q, q.max(-1).values, h), state

    def sample(self, params: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Greedy actions of Q-values [..., A], or epsilon-greedy; returns (actions, zeros)."""
        action = params.argmax(-1)
        if not deterministic and self.epsilon > 0:
            explore = torch.rand(action.shape, device=params.device) < self.epsilon
            action = torch.where(explore, torch.randint_like(action, self.num_actions), action)
        return action, torch.zeros(action.shape, device=params.device)

    def env_action(self, action: Tensor) -> np.ndarray:
        return action.cpu().numpy()

    # ------------------------------------------------------------------ banks as tensors
    def bank_tensors(self) -> list[dict[str, Tensor]]:
        """Every bank in CaseBank's own saved layout, as dicts of tensors (checkpoint-safe).

        CaseBank saves to and loads from paths only, so this goes through a temporary file:
        its own format and its own validation on load, no reach into its private fields.
        """
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bank.pt"
            for bank in self.banks:
                bank.save(path)
                out.append(torch.load(path, weights_only=True))
        return out

    def load_banks(self, blobs: list[dict[str, Tensor]]) -> None:
        """Replace the banks by :meth:`bank_tensors` output (RunError if it does not fit)."""
        if not isinstance(blobs, list) or len(blobs) != self.num_actions:
            raise RunError(f"checkpoint holds no {self.num_actions} NEC banks (one per action)")
        device, banks = self.banks[0].device, []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bank.pt"
            for blob in blobs:
                torch.save(blob, path)
                banks.append(CaseBank.load(path, device=device, index=self.nec.index))
        if any(b.key_dim != self.nec.key_dim or b.capacity != self.nec.capacity for b in banks):
            raise RunError("checkpoint banks do not match the run's [nec] key_dim / capacity")
        self.banks = banks


# --------------------------------------------------------------------------- N-step targets
def discounted_suffix_sums(rewards: Tensor, bootstrap: Tensor, gamma: float) -> Tensor:
    """``G_j = sum_{k=j}^{L-1} gamma^(k-j) r_k + gamma^(L-j) bootstrap`` for every j.

    rewards [L, M] float32 (time first), bootstrap [M] float32 -> G [L, M] float32.
    """
    L = rewards.shape[0]
    j = torch.arange(L, device=rewards.device)
    power = (j.view(1, L) - j.view(L, 1)).to(rewards.dtype)                       # [j, k] = k - j
    discount = torch.where(power >= 0, gamma ** power.clamp_min(0), 0.0)          # upper triangle
    return discount @ rewards + (gamma ** (L - j).to(rewards.dtype)).unsqueeze(1) * bootstrap.unsqueeze(0)


class Finished(NamedTuple):
    """Transitions whose N-step target is known (M of them)."""

    rows: Tensor     # [M] int64 replay rows
    keys: Tensor     # [M, key_dim] float32 keys at acting time
    actions: Tensor  # [M] int64
    targets: Tensor  # [M] float32


class NStepWindow:
    """The last N transitions of each of B envs, waiting for their N-step targets.

    Slots [N, B], oldest first, newest at N - 1; a slot with ``rows == -1`` is empty (an
    episode younger than N steps fills only the last slots). Per env step:
    :meth:`complete` with ``max_a Q`` of the new observation finishes the oldest transition
    of every full window; :meth:`push` appends the step; :meth:`end` finishes every
    transition of the envs whose episode just ended and empties their windows.
    """

    def __init__(self, n: int, num_envs: int, key_dim: int, gamma: float, device: torch.device | str = "cpu"):
        self.n, self.gamma = n, gamma
        self.rows = torch.full((n, num_envs), -1, dtype=torch.int64, device=device)
        self.rewards = torch.zeros(n, num_envs, device=device)
        self.keys = torch.zeros(n, num_envs, key_dim, device=device)
        self.actions = torch.zeros(n, num_envs, dtype=torch.int64, device=device)

    def complete(self, bootstrap: Tensor) -> Finished:
        """Finish the oldest transition of full windows with ``bootstrap`` [B] = max_a Q(s_{t+N})."""
        env = (self.rows[0] >= 0).nonzero().squeeze(1)
        target = discounted_suffix_sums(self.rewards[:, env], bootstrap[env], self.gamma)[0]
        out = Finished(self.rows[0, env], self.keys[0, env], self.actions[0, env], target)
        self.rows[0, env] = -1
        return out

    def push(self, rows: Tensor, keys: Tensor, actions: Tensor, rewards: Tensor) -> None:
        """Append one step of every env: rows [B] int64, keys [B, d], actions [B], rewards [B]."""
        if bool((self.rows[0] >= 0).any()):
            raise RuntimeError("NStepWindow.push: complete() the full windows first")
        for buf, new in ((self.rows, rows), (self.rewards, rewards), (self.keys, keys), (self.actions, actions)):
            buf[:-1] = buf[1:].clone()
            buf[-1] = new

    def end(self, done: Tensor, bootstrap: Tensor) -> Finished:
        """Finish every transition of the envs with ``done`` [B] bool; ``bootstrap`` [B] is 0 for a
        terminated episode and max_a Q(final observation) for a truncated one."""
        env = done.nonzero().squeeze(1)
        G = discounted_suffix_sums(self.rewards[:, env], bootstrap[env], self.gamma)    # [N, m]
        valid = self.rows[:, env] >= 0
        t = lambda x: x[:, env][valid]  # noqa: E731  (slot-major, then env: the order they happened per env)
        out = Finished(t(self.rows), t(self.keys), t(self.actions), G[valid])
        self.rows[:, env], self.rewards[:, env] = -1, 0.0
        return out

    def state(self) -> dict[str, Tensor]:
        return {"rows": self.rows, "rewards": self.rewards, "keys": self.keys, "actions": self.actions}

    def load_state(self, s: dict[str, Tensor]) -> None:
        for k, v in s.items():
            getattr(self, k).copy_(v)


def _cat(parts: list[Finished]) -> Finished:
    return Finished(*(torch.cat(field) for field in zip(*parts)))


# --------------------------------------------------------------------------- replay
class Replay:
    """A ring of R transitions (obs, action, N-step target); a row is sampled once its target is ``ready``.

    obs: ``[1, R, *obs_shape]`` per leaf (so a sample is already a [T=1, B] batch for the encoder);
    action [R] int64; target [R] float32; ready [R] bool.
    """

    def __init__(self, space: gym.Space, size: int, device: torch.device | str = "cpu"):
        self.obs = obs_buffer(space, 1, size, device)
        self.action = torch.zeros(size, dtype=torch.int64, device=device)
        self.target = torch.zeros(size, device=device)
        self.ready = torch.zeros(size, dtype=torch.bool, device=device)
        self.pos = 0

    def add(self, obs: Obs, action: Tensor) -> Tensor:
        """Store B new transitions (target pending); returns their rows [B] int64."""
        size = self.action.shape[0]
        rows = (self.pos + torch.arange(len(action), device=action.device)) % size
        map_obs(lambda buf, o: buf[0].index_copy_(0, rows, o.to(buf.dtype)), self.obs, obs)
        self.action[rows], self.ready[rows] = action, False
        self.pos = int(rows[-1] + 1) % size
        return rows

    def set_targets(self, rows: Tensor, targets: Tensor) -> None:
        self.target[rows], self.ready[rows] = targets, True

    def sample(self, batch_size: int) -> Tensor:
        """Rows [batch_size] int64, uniform (with replacement) over the ready ones."""
        ready = self.ready.nonzero().squeeze(1)
        return ready[torch.randint(len(ready), (batch_size,), device=ready.device)]

    def state(self) -> dict:
        return {"obs": self.obs, "action": self.action, "target": self.target, "ready": self.ready, "pos": self.pos}

    def load_state(self, s: dict) -> None:
        map_obs(lambda buf, o: buf.copy_(o), self.obs, s["obs"])
        for k in ("action", "target", "ready"):
            getattr(self, k).copy_(s[k])
        self.pos = int(s["pos"])


# --------------------------------------------------------------------------- training
def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``cfg`` with NEC and return the last update's metrics (see :func:`rlmem.algos.ppo.train`).

    An *update* here is ``[ppo] num_steps`` steps of every env (one metrics row, one
    callback, the unit of ``checkpoint_every``); gradient steps run inside it, one every
    ``replay_period`` transitions.
    """
    n = check_config(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    device = check_device(cfg.device)
    T, B = cfg.ppo.num_steps, cfg.ppo.num_envs

    envs = make_vec_env(cfg.env, B, cfg.env_kwargs)
    agent = NECAgent(envs.single_observation_space, envs.single_action_space, cfg.policy, n, device).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=n.learning_rate)
    replay = Replay(envs.single_observation_space, n.replay_size, device)
    window = NStepWindow(n.n_step, B, n.key_dim, n.gamma, device)

    next_obs, _ = envs.reset(seed=cfg.seed)
    ep_return, ep_length = np.zeros(B), np.zeros(B, dtype=np.int64)
    recent: deque[tuple] = deque(maxlen=RECENT)  # episode_row tuples
    first_update, global_step, grad_due = 0, 0, 0

    if resume:
        if run is None:
            raise ValueError("resume needs a run")
        ckpt = run.load_checkpoint()
        agent.load_state_dict(ckpt["policy"])
        agent.load_banks(ckpt["banks"])
        optimizer.load_state_dict(ckpt["optimizer"])
        replay.load_state(ckpt["replay"])
        first_update, global_step = ckpt["update"], ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        loop = ckpt["loop"]
        grad_due = loop["grad_due"]
        if ckpt["env_state"] is not None and hasattr(envs, "set_state"):
            envs.set_state(from_safe(ckpt["env_state"]))
            next_obs = to_numpy(loop["obs"])
            ep_return, ep_length = loop["ep_return"].numpy(), loop["ep_length"].numpy()
            window.load_state(ckpt["window"])
        else:  # envs without get_state restart their episodes; the cut transitions get no target
            next_obs, _ = envs.reset(seed=cfg.seed + 7919 * first_update)
        recent.extend(restore_rows(ckpt["recent"]))
        run.truncate_metrics(global_step)

    t0, step0 = time.perf_counter(), global_step
    metrics: dict = {}
    for update in range(first_update, cfg.num_updates):
        finished: list[tuple] = []
        losses: list[float] = []
        written: list[Tensor] = []
        for _ in range(T):
            # ------------------------------------------------ act (epsilon-greedy on the DND reads)
            agent.epsilon = _epsilon(n, global_step)
            obs_t = to_tensor(next_obs, device)
            with torch.no_grad():
                out, _ = agent(unsqueeze(obs_t), None, None)
                action, _ = agent.sample(out.params[0])
            targets_now = [window.complete(out.value[0])]  # s_t bootstraps step t - N
            rows = replay.add(obs_t, action)
            next_obs, reward, terminated, truncated, info = envs.step(agent.env_action(action))
            global_step += B

            # ------------------------------------------------ N-step targets, writes
            window.push(rows, out.features[0], action, torch.as_tensor(reward, dtype=torch.float32, device=device))
            ep_return += reward
            ep_length += 1
            done = terminated | truncated
            if done.any():
                bootstrap = torch.zeros(B, device=device)
                if truncated.any():  # cut, not finished: bootstrap from the final observation
                    idx = np.flatnonzero(truncated)
                    with torch.no_grad():
                        final, _ = agent(unsqueeze(to_tensor(stack_final(info["final_obs"], idx), device)), None, None)
                    bootstrap[torch.as_tensor(idx, device=device)] = final.value[0]
                targets_now.append(window.end(torch.as_tensor(done, device=device), bootstrap))
                finished += episode_stats(info, done, ep_return, ep_length)
                ep_return[done], ep_length[done] = 0.0, 0
            new = _cat(targets_now)
            agent.write(new.keys, new.actions, new.targets)
            replay.set_targets(new.rows, new.targets)
            written.append(new.targets)

            # ------------------------------------------------ learn the embedding
            grad_due += B
            while grad_due >= n.replay_period:
                grad_due -= n.replay_period
                if global_step >= n.learning_starts and int(replay.ready.sum()) >= n.batch_size:
                    losses.append(_grad_step(agent, optimizer, replay, n.batch_size))

        # ---------------------------------------------------- log, checkpoint
        recent.extend(finished)
        targets = torch.cat(written)
        sizes = [len(bank) for bank in agent.banks]
        metrics = {
            "update": update + 1,
            "step": global_step,
            "sps": (global_step - step0) / (time.perf_counter() - t0),
            "epsilon": agent.epsilon,
            **({"loss": float(np.mean(losses))} if losses else {}),
            "grad_steps": len(losses),
            **({"target_mean": float(targets.mean())} if targets.numel() else {}),
            "bank_size": sum(sizes),
            "bank_size_min": min(sizes),
            "episodes": len(finished),
            **recent_window(recent),
        }
        if end_update(
            run, metrics, step=global_step, updates_done=update + 1, last=update + 1 == cfg.num_updates,
            checkpoint_every=cfg.checkpoint_every, callback=callback, stop_after=stop_after,
            checkpoint=lambda: {
                "policy": agent.state_dict(),
                "banks": agent.bank_tensors(),
                "optimizer": optimizer.state_dict(),
                "replay": replay.state(),
                "window": window.state(),
                "env_state": to_safe(envs.get_state()) if hasattr(envs, "get_state") else None,
                "loop": {"obs": to_tensor(next_obs), "ep_return": torch.as_tensor(ep_return),
                         "ep_length": torch.as_tensor(ep_length), "grad_due": grad_due},
                "recent": [list(r) for r in recent],
            },
        ):
            break
    envs.close()
    if run is not None:
        run.close()
    return metrics


def _epsilon(n: NECConfig, step: int) -> float:
    """Linear anneal from epsilon_start to epsilon_end over epsilon_steps transitions."""
    frac = min(1.0, step / n.epsilon_steps) if n.epsilon_steps else 1.0
    return n.epsilon_start + frac * (n.epsilon_end - n.epsilon_start)


def _grad_step(agent: NECAgent, optimizer: torch.optim.Optimizer, replay: Replay, batch_size: int) -> float:
    """One Adam step on the mean of (Q(s, a) - Q^N)^2 over a replayed minibatch; returns the loss."""
    rows = replay.sample(batch_size)
    h = agent.embed(index_envs(replay.obs, rows))[0]                    # [batch, key_dim]
    loss = (agent.q_taken(h, replay.action[rows]) - replay.target[rows]).pow(2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


# --------------------------------------------------------------------------- eval / record
def load_agent(run: Run, checkpoint: str | None = None) -> tuple[NECAgent, dict]:
    """The run's agent (embedding + banks) from its newest (or given) checkpoint, in eval mode."""
    cfg = run.config
    n = check_config(cfg)
    ckpt = run.load_checkpoint(checkpoint)
    envs = make_vec_env(cfg.env, 1, cfg.env_kwargs)
    agent = NECAgent(envs.single_observation_space, envs.single_action_space, cfg.policy, n)
    envs.close()
    try:
        agent.load_state_dict(ckpt["policy"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"checkpoint of {run.path} does not match its config.toml: {str(e).splitlines()[0]}") from None
    agent.load_banks(ckpt.get("banks"))
    agent.epsilon = n.epsilon_end
    return agent.eval(), ckpt


def evaluate_run(run: Run, *, episodes: int, seed: int, deterministic: bool = True,
                 env_kwargs: dict | None = None, num_envs: int = 32):
    """Greedy (or ``epsilon_end``-greedy) play of the newest checkpoint with frozen banks
    (:func:`rlmem.evaluate.evaluate`: per-env quotas, held-out seeds, Wilson interval)."""
    from rlmem.evaluate import evaluate

    agent, _ = load_agent(run)
    kwargs = {**run.config.env_kwargs, **(env_kwargs or {})}
    return evaluate(agent, run.config.env, kwargs, episodes, seed, deterministic=deterministic, num_envs=num_envs)


def record_run(run: Run, *, out, episodes: int, seed: int, fps: int):
    """An mp4 (gif fallback) of the greedy agent; the memory panel shows the key h."""
    from rlmem.video import record

    agent, _ = load_agent(run)
    cfg = run.config
    return record(agent, cfg.env, cfg.env_kwargs, out=out, episodes=episodes, seed=seed, fps=fps, name=run.path.name)
