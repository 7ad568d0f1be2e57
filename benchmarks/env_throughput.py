"""Environment throughput: native batched Endless T-Maze vs. its SyncVectorEnv vs. MiniGrid.

Prints steps/s (environment steps summed over sub-envs) for

- the native batched ``EndlessTMazeVec`` at N = 1, 64, 1024;
- the single ``EndlessTMaze`` under ``gymnasium.vector.SyncVectorEnv`` at N = 1, 64;
- ``MiniGrid-MemoryS7-v0`` under ``SyncVectorEnv`` at N = 1, 16 (the usual memory-task peer);

all measured in this run, with random actions drawn before the clock starts, SAME_STEP
autoreset everywhere, and the ratios that matter (native N = 1024 vs. MiniGrid; native vs.
SyncVectorEnv at the same N). Ratios measured in one run are what to compare across
machines; absolute numbers move with the CPU and its load.

    python benchmarks/env_throughput.py [--seconds 3]
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

from rlmem.envs.tmaze import EndlessTMaze, EndlessTMazeVec  # noqa: E402

TMAZE_KWARGS = dict(n_corridors=3, length_mode="uniform", l_min=5, l_max=10)  # rlmem/EndlessTMaze-v0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid-*)

    def sync_tmaze(n: int) -> SyncVectorEnv:
        return SyncVectorEnv(
            [lambda: EndlessTMaze(**TMAZE_KWARGS) for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP
        )

    def sync_minigrid(n: int) -> SyncVectorEnv:
        return SyncVectorEnv(
            [lambda: gym.make("MiniGrid-MemoryS7-v0") for _ in range(n)], autoreset_mode=AutoresetMode.SAME_STEP
        )

    cases: list[tuple[str, str, int, Callable[[], object], int]] = [
        ("EndlessTMaze", "native batched", 1, lambda: EndlessTMazeVec(num_envs=1, **TMAZE_KWARGS), 3),
        ("EndlessTMaze", "native batched", 64, lambda: EndlessTMazeVec(num_envs=64, **TMAZE_KWARGS), 3),
        ("EndlessTMaze", "native batched", 1024, lambda: EndlessTMazeVec(num_envs=1024, **TMAZE_KWARGS), 3),
        ("EndlessTMaze", "SyncVectorEnv", 1, lambda: sync_tmaze(1), 3),
        ("EndlessTMaze", "SyncVectorEnv", 64, lambda: sync_tmaze(64), 3),
        ("MiniGrid-MemoryS7-v0", "SyncVectorEnv", 1, lambda: sync_minigrid(1), 7),
        ("MiniGrid-MemoryS7-v0", "SyncVectorEnv", 16, lambda: sync_minigrid(16), 7),
    ]
    print(f"{'env':<22} {'implementation':<16} {'N':>5} {'steps/s':>14}")
    results: dict[tuple[str, str, int], float] = {}
    for name, impl, n, make, n_actions in cases:
        env = make()
        sps = steps_per_second(env, args.seconds, n_actions)
        env.close()
        results[(name, impl, n)] = sps
        print(f"{name:<22} {impl:<16} {n:>5} {sps:>14,.0f}", flush=True)

    native_1024 = results[("EndlessTMaze", "native batched", 1024)]
    minigrid_best = max(v for (name, _, _), v in results.items() if name.startswith("MiniGrid"))
    print()
    print(f"native T-Maze N=1024 / best MiniGrid-MemoryS7 SyncVectorEnv: {native_1024 / minigrid_best:8.1f}x")
    for n in (1, 64):
        native = results[("EndlessTMaze", "native batched", n)]
        sync = results[("EndlessTMaze", "SyncVectorEnv", n)]
        print(f"native T-Maze / SyncVectorEnv(EndlessTMaze), N={n:<4}:           {native / sync:8.1f}x")


if __name__ == "__main__":
    main()
