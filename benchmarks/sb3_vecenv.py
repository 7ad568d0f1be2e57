"""SB3 on rlmem's native batched envs: SB3VecEnv vs. SB3's DummyVecEnv, as ratios.

Two measurements on ``rlmem/EndlessTMaze-v0``, both sides in the same run on one machine:

1. **Raw step rate**: env steps/s (summed over envs) of ``VecEnv.step`` with pre-drawn
   random actions -- ``DummyVecEnv`` over N single envs vs. ``SB3VecEnv`` over the native
   batched env (``rlmem.envs.sb3_vecenv``). No policy, no monitor.
   Rounds alternate between the two; the best round of each counts.
2. **Training**: SPS of sb3-contrib ``RecurrentPPO("MlpLstmPolicy")`` with its defaults
   (128 steps x 8 envs per update, batch 128, 10 epochs) on each VecEnv, both wrapped the way
   SB3 users record episodes (``Monitor`` per env / ``VecMonitor``). After one warm-up update
   each, the two models train one update in turn, ``--updates`` times; the median counts.

Absolute numbers move with the CPU and its load; the ratio measured in one run is what to
read. Run: ``python benchmarks/sb3_vecenv.py [--updates 2] [--steps 2000] [--repeats 5]``
(a few minutes: RecurrentPPO trains at ~100 steps/s on one core).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")  # SB3 / gymnasium version chatter must not bury the table

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
try:
    import rlmem  # noqa: F401  (registers rlmem/ ids)
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))
    import rlmem  # noqa: F401

import gymnasium as gym  # noqa: E402
from sb3_contrib import RecurrentPPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

from rlmem.envs.sb3_vecenv import make_sb3_vec_env  # noqa: E402

ENV = "rlmem/EndlessTMaze-v0"
SEED = 1


def step_rates(venvs: list, steps: int, repeats: int) -> list[float]:
    """Env steps/s of ``venv.step`` for each of ``venvs``: ``repeats`` rounds of ``steps`` pre-drawn
    random actions, the venvs taking turns within each round; the best round of each counts
    (the one a busy machine disturbed least)."""
    n = venvs[0].num_envs
    actions = np.random.default_rng(SEED).integers(0, 3, size=(steps, n))
    for venv in venvs:
        venv.seed(SEED)
        venv.reset()
        for a in actions[:100]:  # warm-up
            venv.step(a)
    best = [0.0] * len(venvs)
    for _ in range(repeats):
        for k, venv in enumerate(venvs):
            t0 = time.perf_counter()
            for a in actions:
                venv.step(a)
            best[k] = max(best[k], steps * n / (time.perf_counter() - t0))
    for venv in venvs:
        venv.close()
    return best


def train_sps(venvs: list, updates: int) -> list[float]:
    """RecurrentPPO (sb3-contrib defaults) training SPS on each of ``venvs``.

    One warm-up update each, then ``updates`` rounds in which every model trains one whole
    update (``learn`` of one rollout, continuing its run) in turn; SPS = rollout size / the
    median update time, so load drift hits both sides alike.
    """
    models = [RecurrentPPO("MlpLstmPolicy", venv, seed=SEED, device="cpu", verbose=0) for venv in venvs]
    times: list[list[float]] = [[] for _ in models]
    for r in range(updates + 1):
        for k, model in enumerate(models):
            t0 = time.perf_counter()
            model.learn(total_timesteps=model.n_steps * model.n_envs, reset_num_timesteps=(r == 0))
            if r > 0:  # round 0 is warm-up
                times[k].append(time.perf_counter() - t0)
    for venv in venvs:
        venv.close()
    return [m.n_steps * m.n_envs / float(np.median(t)) for m, t in zip(models, times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=8, help="Parallel envs N.")
    parser.add_argument("--steps", type=int, default=2000, help="VecEnv.step calls per raw round.")
    parser.add_argument("--repeats", type=int, default=5, help="Rounds of the raw step-rate measurement (best counts).")
    parser.add_argument("--updates", type=int, default=2, help="Timed RecurrentPPO updates per VecEnv (median counts).")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.envs

    print(f"{ENV}, N = {n} envs, torch threads = {args.threads}")
    print(f"{'measurement':<46} {'DummyVecEnv':>12} {'SB3VecEnv':>12} {'ratio':>7}")
    for envs in (n, 8 * n):
        dummy, ours = step_rates(
            [DummyVecEnv([lambda: gym.make(ENV) for _ in range(envs)]), make_sb3_vec_env(ENV, envs)], args.steps, args.repeats
        )
        print(f"{f'raw step rate, random actions, N = {envs} (steps/s)':<46} {dummy:>12.0f} {ours:>12.0f} {ours / dummy:>6.2f}x")

    # Monitor + DummyVecEnv (SB3's make_vec_env) vs VecMonitor(SB3VecEnv): how SB3 users record episodes
    dummy, ours = train_sps([sb3_make_vec_env(ENV, n_envs=n, seed=SEED), VecMonitor(make_sb3_vec_env(ENV, n))], args.updates)
    print(f"{f'RecurrentPPO training, N = {n} (steps/s)':<46} {dummy:>12.0f} {ours:>12.0f} {ours / dummy:>6.2f}x")


if __name__ == "__main__":
    main()
