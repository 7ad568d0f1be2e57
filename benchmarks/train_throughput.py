"""Training throughput: rlmem PPO vs. sb3-contrib RecurrentPPO, and vs. the bare compute limit.

Measures steady-state training steps/s (environment steps summed over envs, rollout and
update together) on ``CartPole-v1`` and ``rlmem/EndlessTMaze-v0``, all in one run, on one
machine, with one torch thread count (``--threads``, set before anything else):

1. **Matched** -- sb3-contrib ``RecurrentPPO("MlpLstmPolicy")`` with its defaults (separate
   actor and critic LSTM-256, heads [64, 64] tanh, 128 steps x 8 envs, batch 128, 10
   epochs) on SB3's ``make_vec_env`` (DummyVecEnv) vs. rlmem PPO configured the same
   (``MATCHED`` below). Same network, same work per update: the ratio isolates
   implementation efficiency (rollout loop, batched env, recurrent update). rlmem steps
   its own batched envs: the native T-Maze, and for CartPole ``rlmem/envs/cartpole.py``,
   Gymnasium's CartPole physics in numpy, equal to the single env step for step (tested).
2. **rlmem defaults** -- the presets ``agents/gru.toml``, ``agents/gtrxl.toml`` (Gated
   Transformer-XL) and ``agents/lstm.toml`` as they are (16 envs), and the same presets at
   8 envs (minibatches stay 2).
3. **SB3 PPO-MLP** -- ``PPO("MlpPolicy")`` with its defaults on CartPole at 8 envs: the usual
   feed-forward reference point.

How each number is measured (nothing is hard-coded; every number comes from this run):

- *SPS*: every run is timed at update boundaries (rlmem: ``train(callback=...)``; SB3: a
  callback at each rollout start). The first updates, until ``warm-up`` seconds have passed
  (at least one update), are warm-up; then whole updates are timed until ``--seconds`` have
  passed (at least one). SPS = steps of the timed updates / their wall time.
- ``--repeats N``: each rlmem config's training and limit are measured N times,
  alternately, so both see the same drift of a shared machine; the table shows the medians
  and "of limit" the median of the N ratios. Peers (SB3) are measured once.
- *Limit*: a bare forward + ``ppo_loss`` + backward + grad clip + Adam loop of the same
  ``ActorCritic`` and minibatch shapes, with random observations and actions, no env, no
  rollout and no bookkeeping, and a start mask that is false except at t = 0 (no resets
  inside a sequence: the fastest recurrent path). One "update" is ``update_epochs *
  num_minibatches`` such iterations; limit SPS = T * B / time per update. RecurrentPPO's
  limit is that of rlmem's matched network: same layers and shapes as its ``model.policy``.
  "of limit" = training SPS / limit SPS. It can exceed 100%: with few envs per minibatch
  (the matched config has one) and short episodes, rlmem replays the segments between
  resets side by side as one batch (``rlmem/memory/recurrent.py``, paths 3 and 3'): fewer
  sequential steps than one reset-free sequence (LSTM-256, one env, T = 128, a reset
  every 25 steps: ~7 ms vs ~13 ms forward+backward here).

Absolute numbers move with the CPU and its load; ratios measured in one run are what to
compare across machines. Run: ``python benchmarks/train_throughput.py [--seconds 20]``
(about 30 measurements of that length; ``--quick`` for a smoke test).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

warnings.filterwarnings("ignore")  # SB3 / gymnasium version chatter must not bury the table

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    import rlmem  # noqa: F401  (registers rlmem/ ids)
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
    import rlmem  # noqa: F401

from rlmem.agents.policy import ActorCritic  # noqa: E402
from rlmem.algos import ppo  # noqa: E402
from rlmem.algos.functional import normalize, ppo_loss  # noqa: E402
from rlmem.config import RunConfig, load_preset, make_run_config  # noqa: E402
from rlmem.envs.vector import make_env  # noqa: E402

ENVS = ("CartPole-v1", "rlmem/EndlessTMaze-v0")
PRESETS = ("gru", "gtrxl", "lstm")  # agents/<name>.toml, measured as they are and at PEER_ENVS envs
PEER_ENVS = 8  # envs of every peer comparison (RecurrentPPO, PPO-MLP, presets "@8")
SEED = 1
NEVER = 10**9  # total steps of every run: runs end when their timed window is full

# rlmem PPO set up like RecurrentPPO("MlpLstmPolicy") with sb3-contrib's defaults. Its batch
# of 128 out of 8 x 128 samples is 8 minibatches; rlmem cuts them along the env axis, so
# each holds one env's whole 128-step sequence. SB3 has a constant learning rate and no
# value clipping (clip_range_vf=None).
MATCHED = {
    "algo": "ppo",
    "policy": {
        "memory": "lstm",
        "memory_kwargs": {"hidden_size": 256},
        "encoder": [],
        "head": [64, 64],
        "separate_critic": True,
        "activation": "tanh",
    },
    "ppo": {
        "num_envs": PEER_ENVS,
        "num_steps": 128,
        "update_epochs": 10,
        "num_minibatches": 8,
        "learning_rate": 3e-4,
        "anneal_lr": False,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_coef": 0.2,
        "clip_vloss": False,
        "norm_adv": True,
        "max_grad_norm": 0.5,
    },
}


@dataclass
class Row:
    config: str
    env: str
    envs: int
    sps: float
    limit_sps: float | None = None
    of_limit: float | None = None
    vs_recurrent_ppo: float | None = None


# --------------------------------------------------------------------------- timing
class UpdateClock:
    """Steady-state steps/s from timestamps taken at update boundaries.

    Warm-up: the updates until ``warmup`` seconds have passed since the clock was made
    (at least one, since the first tick comes after the first update). Timed window: the
    whole updates after the warm-up until ``seconds`` more have passed (at least one).
    """

    def __init__(self, seconds: float, warmup: float):
        self.seconds, self.warmup = seconds, warmup
        self.t0 = time.perf_counter()
        self.mark: tuple[int, float] | None = None  # (step, time) at the end of warm-up
        self.last: tuple[int, float] | None = None  # (step, time) at the latest boundary

    def tick(self, step: int) -> bool:
        """Record an update boundary at env step ``step``; true once the window is full."""
        now = time.perf_counter()
        if self.mark is None:
            if now - self.t0 >= self.warmup:
                self.mark = (step, now)
            return False
        self.last = (step, now)
        return now - self.mark[1] >= self.seconds

    def sps(self) -> float:
        (s0, t0), (s1, t1) = self.mark, self.last
        return (s1 - s0) / (t1 - t0)


class _WindowFull(Exception):
    """Raised from rlmem's per-update callback to end a run once it has been timed."""


# --------------------------------------------------------------------------- measurements
def rlmem_sps(cfg: RunConfig, seconds: float, warmup: float) -> float:
    """Steady-state SPS of ``rlmem.algos.ppo.train(cfg)`` (env, rollout and update)."""
    clock = UpdateClock(seconds, warmup)

    def on_update(metrics: dict) -> None:
        if clock.tick(metrics["step"]):
            raise _WindowFull

    try:
        ppo.train(cfg, callback=on_update)
    except _WindowFull:
        return clock.sps()
    raise RuntimeError(f"{cfg.env}: the run ended before its timed window was full")


def sb3_sps(make_model: Callable[[], object], seconds: float, warmup: float) -> float:
    """Steady-state SPS of an SB3 on-policy ``model.learn`` (env, rollout and update)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.clock = UpdateClock(seconds, warmup)
            self.full = False

        def _on_rollout_start(self) -> None:
            # A rollout starts right after the previous update's training: an update boundary.
            if self.model.num_timesteps > 0:
                self.full = self.clock.tick(self.model.num_timesteps)

        def _on_step(self) -> bool:
            return not self.full  # False stops learn() at the first step of the next rollout

    model = make_model()
    cb = Clock()
    model.learn(total_timesteps=NEVER, callback=cb)
    return cb.clock.sps()


def limit_sps(cfg: RunConfig, seconds: float, warmup: float) -> float:
    """SPS of the bare forward+backward loop of ``cfg``'s network at its minibatch shapes."""
    p = cfg.ppo
    T, b = p.num_steps, p.num_envs // p.num_minibatches
    env = make_env(cfg.env, cfg.env_kwargs)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    obs_space.seed(SEED)
    act_space.seed(SEED)
    torch.manual_seed(SEED)
    policy = ActorCritic(obs_space, act_space, cfg.policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate, eps=1e-5)

    obs = torch.as_tensor(np.stack([obs_space.sample() for _ in range(T * b)])).view(T, b, *obs_space.shape)
    actions = torch.as_tensor(np.stack([act_space.sample() for _ in range(T * b)])).view(T, b, *act_space.shape)
    start = torch.zeros((T, b), dtype=torch.bool)
    start[0] = True  # a fresh episode at t = 0 and no reset inside: the fastest path
    state = policy.initial_state(b)
    old_logp, old_value = -torch.rand(T, b), torch.randn(T, b)
    advantages, returns = torch.randn(T, b), torch.randn(T, b)

    def update() -> None:
        for _ in range(p.update_epochs * p.num_minibatches):
            out = policy.replay(obs, state, start)  # what the PPO update calls
            new_logp, entropy = policy.log_prob_entropy(out.params, actions)
            loss, _ = ppo_loss(
                new_logp, old_logp, normalize(advantages), out.value, old_value, returns, entropy,
                p.clip_coef, p.vf_coef, p.ent_coef, p.clip_vloss,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
            optimizer.step()

    clock = UpdateClock(seconds, warmup)
    updates = 0
    while True:
        update()
        updates += 1
        if clock.tick(updates * T * p.num_envs):
            return clock.sps()


# --------------------------------------------------------------------------- configurations
def rlmem_configs(env: str, threads: int) -> list[tuple[str, RunConfig]]:
    common = dict(env=env, total_steps=NEVER, seed=SEED, torch_threads=threads)
    out = [("rlmem matched", make_run_config(MATCHED, **common))]
    for name in PRESETS:
        preset = load_preset(ROOT / "agents" / f"{name}.toml")
        out.append((f"rlmem {name}.toml", make_run_config(preset, **common)))
        out.append((f"rlmem {name}.toml @{PEER_ENVS}", make_run_config(preset, num_envs=PEER_ENVS, **common)))
    return out


def recurrent_ppo(env: str) -> Callable[[], object]:
    def make():
        from sb3_contrib import RecurrentPPO
        from stable_baselines3.common.env_util import make_vec_env

        vec = make_vec_env(env, n_envs=PEER_ENVS, seed=SEED)
        return RecurrentPPO(
            "MlpLstmPolicy", vec, n_steps=128, batch_size=128, n_epochs=10, seed=SEED, device="cpu"
        )

    return make


def ppo_mlp(env: str) -> Callable[[], object]:
    def make():
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env

        return PPO("MlpPolicy", make_vec_env(env, n_envs=PEER_ENVS, seed=SEED), seed=SEED, device="cpu")

    return make


# --------------------------------------------------------------------------- report
def fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:{spec}}{suffix}"


def print_row(r: Row) -> None:
    print(
        f"{r.config:<22} {r.env:<22} {r.envs:>4} {fmt(r.sps, ',.0f'):>9} {fmt(r.limit_sps, ',.0f'):>9} "
        f"{fmt(r.of_limit, '.0%'):>8} {fmt(r.vs_recurrent_ppo, '.2f', 'x'):>9}",
        flush=True,
    )


def key_ratios(rows: list[Row]) -> dict[str, float]:
    def sps(config: str, env: str) -> float | None:
        return next((r.sps for r in rows if r.config == config and r.env == env), None)

    ratios = {}
    for env in ENVS:
        peer = sps("sb3 RecurrentPPO", env)
        for config in ("rlmem matched", *(f"rlmem {name}.toml" for name in PRESETS)):
            mine = sps(config, env)
            if peer and mine:
                ratios[f"{config} / sb3 RecurrentPPO, {env}"] = mine / peer
    mlp = sps("sb3 PPO-MLP", "CartPole-v1")
    for config in (f"rlmem {name}.toml" for name in PRESETS):
        mine = sps(config, "CartPole-v1")
        if mlp and mine:
            ratios[f"{config} / sb3 PPO-MLP, CartPole-v1"] = mine / mlp
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="timed part of each measurement (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for everything (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="rlmem configs: measure training and its limit this "
                        "many times, alternately, and report medians (the ratio: the median of the pairs' ratios)")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement: a smoke test, noisy numbers")
    parser.add_argument("--only", default="", help="run only configs whose 'config env' contains one of these "
                        "comma-separated substrings (case-insensitive), e.g. 'matched,RecurrentPPO'")
    parser.add_argument("--json", type=Path, help="also write the table and ratios to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # before any network is built or any run starts
    seconds = 3.0 if args.quick else args.seconds
    warmup = seconds / 4  # plus whatever is left of the update that crosses it
    wanted = [s.strip().lower() for s in args.only.split(",") if s.strip()]

    def selected(config: str, env: str) -> bool:
        return not wanted or any(w in f"{config} {env}".lower() for w in wanted)

    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, threads {args.threads}, {seconds:g} s timed per measurement "
          f"after {warmup:g} s (at least one update) of warm-up; 1-min load average {load:.2f} at start")
    if load > 0.5:
        # Seen here (a niced run beside other work): RecurrentPPO, thousands of tiny
        # multi-threaded ops per update, fell ~10x, rlmem's few large ops far less.
        print("WARNING: the machine is busy; SPS (RecurrentPPO's above all) will be unreliable")
    print("matched = rlmem PPO with RecurrentPPO's network and hyperparameters: the ratio isolates "
          "implementation efficiency")
    print("limit = bare forward+backward of the same network and minibatch shapes (RecurrentPPO: "
          f"rlmem's matched network, same shapes)\n")
    print(f"{'config':<22} {'env':<22} {'envs':>4} {'SPS':>9} {'limit SPS':>9} {'of limit':>8} {'vs RecPPO':>9}")

    rows: list[Row] = []
    limits: dict[tuple[str, str], float] = {}  # (config, env) -> limit SPS, measured once

    def limit_of(name: str, cfg: RunConfig) -> float:
        if (name, cfg.env) not in limits:
            limits[(name, cfg.env)] = limit_sps(cfg, seconds, warmup)
        return limits[(name, cfg.env)]

    def add(row: Row, peer: Row | None) -> None:
        if row.limit_sps and row.of_limit is None:
            row.of_limit = row.sps / row.limit_sps
        if peer is not None:
            row.vs_recurrent_ppo = row.sps / peer.sps
        rows.append(row)
        print_row(row)

    for env in ENVS:
        configs = rlmem_configs(env, args.threads)
        matched = configs[0][1]
        peer = None
        if selected("sb3 RecurrentPPO", env):
            peer = Row("sb3 RecurrentPPO", env, PEER_ENVS, sb3_sps(recurrent_ppo(env), seconds, warmup))
            peer.limit_sps = limit_of("rlmem matched", matched)
            add(peer, peer)
        for name, cfg in configs:
            if selected(name, env):
                # Alternate training and limit so that both see the same drift of the machine.
                pairs = [(rlmem_sps(cfg, seconds, warmup), limit_sps(cfg, seconds, warmup)) for _ in range(args.repeats)]
                sps, lim = (statistics.median(p[i] for p in pairs) for i in (0, 1))
                limits.setdefault((name, env), lim)
                row = Row(name, env, cfg.ppo.num_envs, sps, lim, statistics.median(a / b for a, b in pairs))
                add(row, peer)
    if selected("sb3 PPO-MLP", "CartPole-v1"):
        peer = next((r for r in rows if r.config == "sb3 RecurrentPPO" and r.env == "CartPole-v1"), None)
        add(Row("sb3 PPO-MLP", "CartPole-v1", PEER_ENVS, sb3_sps(ppo_mlp("CartPole-v1"), seconds, warmup)), peer)

    ratios = key_ratios(rows)
    print()
    for label, value in ratios.items():
        print(f"{label:<58} {value:8.2f}x")
    if any(r.of_limit and r.of_limit > 1 for r in rows):
        print("(of limit > 100%: short episodes let the update replay their segments side by side; see the docstring)")
    print("(matched: same network and work per update; presets: rlmem's own, smaller networks -- "
          "what a user gets, not like for like)")
    if args.json:
        meta = {"torch": torch.__version__, "threads": args.threads, "load_at_start": load,
                "seconds": seconds, "warmup_seconds": warmup}
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
