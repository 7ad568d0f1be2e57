"""Environment throughput: rlmem's native batched envs vs. SyncVectorEnv, MiniGrid and POPGym.

Prints steps/s (environment steps summed over sub-envs), all measured in this run, with
random actions drawn before the clock starts and SAME_STEP autoreset everywhere, for

- every registered ``rlmem/`` id with a native batched env, at N = 1, 64, 1024, and the
  same id's single env under ``gymnasium.vector.SyncVectorEnv`` at N = 64;
- ``MiniGrid-MemoryS7-v0`` under ``SyncVectorEnv`` at N = 1, 16 (the usual memory-task peer);
- POPGym's RepeatPreviousEasy / CountRecallEasy under ``SyncVectorEnv`` and in a raw
  single-env step loop (their best case) when ``popgym`` is installed (skipped otherwise);

and the ratios that matter (native N = 1024 vs. MiniGrid, native vs. SyncVectorEnv at
N = 64). Ratios measured in one run are what to compare across machines; absolute numbers
move with the CPU and its load.

    python benchmarks/env_throughput.py [--seconds 2] [--only TMaze]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rlmem.envs as rlmem_envs  # noqa: E402

POPGYM_PEERS = ("popgym-RepeatPreviousEasy-v0", "popgym-CountRecallEasy-v0")


def steps_per_second(env, seconds: float, n_actions: int, seed: int = 0) -> float:
    """Step ``env`` (a VectorEnv) with pre-drawn random actions for about ``seconds``."""
    n = env.num_envs
    env.reset(seed=seed)
    # Enough pre-drawn actions for a few hundred steps; cycled if the env is faster.
    actions = np.random.default_rng(seed).integers(0, n_actions, size=(max(256, 200_000 // n), n))
    for a in actions[:10]:  # warm-up
        env.step(a)
    steps, row, start = 0, 0, time.perf_counter()
    while True:
        for a in actions[row : row + 64]:
            env.step(a)
        steps += 64
        row = (row + 64) % (len(actions) - 64)  # cycle through the pre-drawn actions
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * n / elapsed


class RawLoop:
    """One env stepped in a plain Python loop (reset on episode end): a peer's own best case,
    without any vector-env overhead. Looks like a 1-env VectorEnv to :func:`steps_per_second`."""

    num_envs = 1

    def __init__(self, env_id: str):
        self.env = gym.make(env_id, disable_env_checker=True).unwrapped

    def reset(self, seed=None):
        return self.env.reset(seed=seed)

    def step(self, actions):
        out = self.env.step(int(actions[0]))
        if out[2] or out[3]:
            self.env.reset()
        return out

    def close(self):
        self.env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    parser.add_argument("--only", default="", help="measure only rlmem ids containing this text")
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid-*)

    def sync(env_id: str, n: int) -> SyncVectorEnv:
        # no PassiveEnvChecker: it would slow the peers (and the rlmem single envs) for nothing
        make = lambda: gym.make(env_id, disable_env_checker=True)  # noqa: E731
        return SyncVectorEnv([make for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP)

    def actions_of(env_id: str) -> int:
        env = gym.make(env_id)
        n = int(env.action_space.n)
        env.close()
        return n

    ids = [i for i in rlmem_envs.rlmem_ids() if gym.spec(i).vector_entry_point and args.only in i]
    cases: list[tuple[str, str, int, Callable[[], object], int]] = []
    for env_id in ids:
        n_act = actions_of(env_id)
        for n in (1, 64, 1024):
            cases.append((env_id, "native batched", n, lambda env_id=env_id, n=n: gym.make_vec(env_id, num_envs=n), n_act))
        cases.append((env_id, "SyncVectorEnv", 64, lambda env_id=env_id: sync(env_id, 64), n_act))
    for n in (1, 16):
        cases.append(("MiniGrid-MemoryS7-v0", "SyncVectorEnv", n, lambda n=n: sync("MiniGrid-MemoryS7-v0", n), 7))
    try:
        import popgym  # noqa: F401
    except ImportError:
        print("popgym is not installed (pip install popgym): POPGym peers skipped")
    else:
        for peer in POPGYM_PEERS:
            cases.append((peer, "SyncVectorEnv", 1, lambda peer=peer: sync(peer, 1), actions_of(peer)))
            cases.append((peer, "raw step loop", 1, lambda peer=peer: RawLoop(peer), actions_of(peer)))

    print(f"{'env':<32} {'implementation':<16} {'N':>5} {'steps/s':>14}")
    results: dict[tuple[str, str, int], float] = {}
    for name, impl, n, make, n_actions in cases:
        env = make()
        sps = steps_per_second(env, args.seconds, n_actions)
        env.close()
        results[(name, impl, n)] = sps
        print(f"{name:<32} {impl:<16} {n:>5} {sps:>14,.0f}", flush=True)

    minigrid_best = max(v for (name, _, _), v in results.items() if name.startswith("MiniGrid"))
    popgym = [v for (name, _, _), v in results.items() if name.startswith("popgym")]
    print()
    print(f"{'env':<32} {'N=1024 / MiniGrid':>18} {'/ SyncVectorEnv @64':>20}" + (" / POPGym best" if popgym else ""))
    for env_id in ids:
        native = results[(env_id, "native batched", 1024)]
        line = f"{env_id:<32} {native / minigrid_best:>17.0f}x {results[(env_id, 'native batched', 64)] / results[(env_id, 'SyncVectorEnv', 64)]:>19.1f}x"
        if popgym:
            line += f" {native / max(popgym):>12.1f}x"
        print(line)


if __name__ == "__main__":
    main()
