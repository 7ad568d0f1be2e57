"""Navigation env throughput: GoatGrid and GoatWorld vs. MiniGrid and MiniWorld peers, in one run.

Prints steps/s of single envs stepped in a plain Python loop (reset at episode end, resets
included in the time), random actions drawn before the clock starts, for

- ``rlmem/GoatGrid-v0`` and ``rlmem/GoatGridSmall-v0`` with symbolic and RGB observations,
  under uniform random actions (the frequent ``stop`` ends subgoals fast, so episodes are
  short and house generation weighs in) and without ``stop`` (subgoals run their whole
  budget: the per-step cost);
- ``MiniGrid-MultiRoom-N6-v0`` and ``MiniGrid-FourRooms-v0`` (symbolic; MultiRoom also with
  ``RGBImgPartialObsWrapper``, MiniGrid's RGB egocentric view, at the same 8-pixel tiles);

- ``rlmem/GoatWorld-v0`` (the same task in a 3D MiniWorld house, first-person RGB 60x80,
  observation mode ``rgb-3d``) with and without ``stop``, and its peer
  ``MiniWorld-Hallway-v0`` (MiniWorld's simplest env: one room, one box, the same 60x80 view);

then ``SyncVectorEnv`` at N = 8 for GoatGrid and MultiRoom, and the ratios to the peer in the
same observation mode (MultiRoom-N6 for MiniGrid views, Hallway for 3D views). Ratios
measured in one run are what to compare across machines; absolute numbers move with the CPU
and its load. The 3D envs render through Mesa's software OpenGL (EGL, headless) unless a GPU
driver is present; MiniWorld's meshes and textures are loaded before the clock starts (a
one-time cost per process).

    python benchmarks/nav_throughput.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
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

import rlmem.envs  # noqa: E402,F401  (registers rlmem/ ids)


class RawLoop:
    """One env stepped in a plain loop (reset at episode end); looks like a 1-env VectorEnv."""

    num_envs = 1

    def __init__(self, make: Callable[[], gym.Env]):
        self.env = make()

    def reset(self, seed=None):
        return self.env.reset(seed=seed)

    def step(self, actions):
        out = self.env.step(int(actions[0]))
        if out[2] or out[3]:
            self.env.reset()
        return out

    def close(self):
        self.env.close()


def steps_per_second(env, seconds: float, actions_allowed: int, seed: int = 0) -> float:
    """Step ``env`` (a VectorEnv or :class:`RawLoop`) with pre-drawn random actions in
    ``range(actions_allowed)`` for about ``seconds``; environment steps summed over sub-envs."""
    n = env.num_envs
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, actions_allowed, size=(4096, n))
    for a in actions[:10]:  # warm-up (tile caches, first reset)
        env.step(a)
    steps, row, start = 0, 0, time.perf_counter()
    while True:
        for a in actions[row : row + 32]:
            env.step(a)
        steps += 32
        row = (row + 32) % (len(actions) - 32)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid-*)
    from minigrid.wrappers import RGBImgPartialObsWrapper

    import pyglet

    pyglet.options["headless"] = True  # before miniworld creates a window: EGL, no display
    import miniworld  # noqa: F401  (registers MiniWorld-*)
    from miniworld.objmesh import ObjMesh
    from miniworld.opengl import Texture

    def make(env_id: str, rgb_wrapper: bool = False, **kwargs) -> Callable[[], gym.Env]:
        def thunk() -> gym.Env:
            with contextlib.redirect_stdout(io.StringIO()):  # MiniWorld prints frame-buffer fallbacks
                env = gym.make(env_id, disable_env_checker=True, **kwargs)
            return RGBImgPartialObsWrapper(env, tile_size=8) if rgb_wrapper else env

        return thunk

    # MiniWorld parses each mesh and texture the first time an env uses it (seconds each in
    # pyglet's pure-Python image conversion): do it once, before any clock starts.
    warm = make("MiniWorld-Hallway-v0")()
    for name in ("concrete", "floor_tiles_bw", "concrete_tiles"):
        Texture.get(name)
    for color in ("red", "green", "blue", "purple", "yellow", "grey"):
        ObjMesh.get(f"ball_{color}")
        ObjMesh.get(f"key_{color}")
    warm.close()

    # (name, obs mode, implementation, N, env factory, actions drawn from range(k))
    cases = []
    for goat in ("rlmem/GoatGrid-v0", "rlmem/GoatGridSmall-v0"):
        for mode in ("symbolic", "rgb"):
            cases.append((goat, mode, "raw loop", 1, make(goat, obs_mode=mode), 5))
            cases.append((goat + " no-stop", mode, "raw loop", 1, make(goat, obs_mode=mode), 4))
    cases.append(("MiniGrid-MultiRoom-N6-v0", "symbolic", "raw loop", 1, make("MiniGrid-MultiRoom-N6-v0"), 7))
    cases.append(("MiniGrid-MultiRoom-N6-v0", "rgb", "raw loop", 1, make("MiniGrid-MultiRoom-N6-v0", True), 7))
    cases.append(("MiniGrid-FourRooms-v0", "symbolic", "raw loop", 1, make("MiniGrid-FourRooms-v0"), 7))
    cases.append(("rlmem/GoatWorld-v0", "rgb-3d", "raw loop", 1, make("rlmem/GoatWorld-v0"), 5))
    cases.append(("rlmem/GoatWorld-v0 no-stop", "rgb-3d", "raw loop", 1, make("rlmem/GoatWorld-v0"), 4))
    cases.append(("MiniWorld-Hallway-v0", "rgb-3d", "raw loop", 1, make("MiniWorld-Hallway-v0"), 3))
    for name, factory, n_act in (
        ("rlmem/GoatGrid-v0", make("rlmem/GoatGrid-v0"), 5),
        ("MiniGrid-MultiRoom-N6-v0", make("MiniGrid-MultiRoom-N6-v0"), 7),
    ):
        cases.append((name, "symbolic", "SyncVectorEnv", 8, factory, n_act))

    print(f"{'env':<34} {'obs':<9} {'implementation':<14} {'N':>3} {'steps/s':>10}")
    results = {}
    for name, mode, impl, n, factory, n_act in cases:
        if impl == "raw loop":
            env = RawLoop(factory)
        else:
            env = SyncVectorEnv([factory] * n, autoreset_mode=AutoresetMode.SAME_STEP)
        sps = steps_per_second(env, args.seconds, n_act)
        env.close()
        results[(name, mode, impl)] = sps
        print(f"{name:<34} {mode:<9} {impl:<14} {n:>3} {sps:>10,.0f}", flush=True)

    print("\nratio to the peer of the same observation mode and implementation")
    for (name, mode, impl), sps in results.items():
        peer_name = "MiniWorld-Hallway-v0" if mode == "rgb-3d" else "MiniGrid-MultiRoom-N6-v0"
        peer = results.get((peer_name, mode, impl))
        if peer and name != peer_name:
            print(f"{name:<34} {mode:<9} {impl:<14} {sps / peer:>8.2f}x  vs {peer_name}")


if __name__ == "__main__":
    main()
