"""Modular navigation agents on held-out GoatGrid houses: success and SPL per subgoal and modality.

Plays the same episodes (fixed seeds ``--seed + i``, by default rlmem's evaluation seeds, which
training never uses) with

- ``goat-modular``: GOAT's agent on a :class:`~rlmem.memory.semantic_map.SemanticMap`;
- ``smg``: MG-Nav's agent on a :class:`~rlmem.memory.spatial_graph.SpatialGraph`;
- ``memoryless``: GOAT's agent with its map wiped at every subgoal start (the control);
- ``oracle`` (reference): shortest plans from the env's privileged state, SPL 1 by construction;

and prints, per ``subgoal_budget`` setting, success and SPL by subgoal index and by modality,
then checks GOAT's lifelong claim (Chang et al. 2023: 60% first-goal success -> 90% later):
a memory agent's success on later subgoals (index >= 1, pooled) must exceed its first-subgoal
success, and the memoryless agent's must not rise. The difference is printed with a 95%
interval (normal approximation, subgoals treated as independent), so a "rise" inside the noise
is visible as such. Subgoal 0 starts with an empty memory for every agent, so goat-modular and
memoryless play it identically.

    python benchmarks/nav_agents.py [--episodes 30] [--env rlmem/GoatGrid-v0] [--settings "subgoal_budget = 40" ...]

Each ``--settings`` entry is a TOML inline-table body of env kwargs. The defaults: the env as
registered (150 steps per subgoal, which exploring the 3x2-room house from scratch rarely
needs, so success saturates and only SPL can show memory); 40 steps per subgoal (above the
longest shortest path of these episodes, 37, so an agent that knows the house always has
time; one that must explore often does not); and 40 steps with every door open
(``closed_door_prob = 0``), which removes the one thing the *world* remembers between
subgoals: doors the agent opened stay open, so later subgoals are easier even for an agent
without memory. Add ``new_room_goals = true`` to a setting to take away the other thing a
memoryless agent gains from: a later subgoal starting beside its goal (``envs/navigation.toml``,
``goat-newroom``).

Learned agents join the same table with ``--runs NAME=RUN_DIR`` (PPO / GRPO / DAgger run
folders, e.g. from ``rlmem train --env rlmem/GoatGridSmall-v0 --agent
agents/gru-nav-dagger.toml``): the newest checkpoint plays the same seeds greedily, one episode
at a time, in the env as the run trained on it with the setting's kwargs on top, and is held to
the memory agents' claim (later > first); a learned run with ``memory = "none"`` is a
memoryless control, held to "must not rise".

A learned agent's later subgoals differ from its first in more than memory: they start where
the last one ended (facing an object, inside a room), which a learned policy may find easier
(its memoryless control rises too). ``--wipe`` separates the two: every learned run with a
memory is also played as ``NAME-wiped``, the same weights with the memory state reset at each
subgoal start as at an episode start, and the two are compared on later subgoals ("memory
across subgoals"). Subgoal 0 is played identically by both. The wiped agent still sees the
true ``subgoal_index``, which with a fresh state it never met in training.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmem.algos.modular import EpisodeResult, evaluate_agent, make_agent  # noqa: E402
from rlmem.config import parse_inline_table  # noqa: E402
from rlmem.envs.goat_grid import MODALITIES, OracleAgent  # noqa: E402
from rlmem.envs.vector import make_env  # noqa: E402
from rlmem.evaluate import EVAL_SEED_OFFSET, load_policy  # noqa: E402
from rlmem.runs import Run  # noqa: E402
from rlmem.video import policy_actor  # noqa: E402

AGENTS = {"goat-modular": "semantic_map", "smg": "spatial_graph", "memoryless": "memoryless"}
DEFAULT_SETTINGS = ["", "subgoal_budget = 40", "subgoal_budget = 40, closed_door_prob = 0.0"]
MEMORY_AGENTS = ("goat-modular", "smg")


def play_oracle(env_id: str, env_kwargs: dict, episodes: int, seed: int) -> list[EpisodeResult]:
    """The privileged reference: OracleAgent on the same seeds (SPL 1 by construction)."""
    env, oracle, out = make_env(env_id, env_kwargs), OracleAgent(), []
    for i in range(episodes):
        env.reset(seed=seed + i)
        total, steps = 0.0, 0
        while True:
            _, r, term, _, info = env.step(oracle.act(env))
            total, steps = total + r, steps + 1
            if term:
                break
        out.append(EpisodeResult(seed + i, info["success"], total, steps, info["subgoal_successes"],
                                 info["subgoal_spls"], info["subgoal_modalities"]))
    env.close()
    return out


def play_learned(run_dir: str, env_id: str, env_kwargs: dict, episodes: int, seed: int,
                 wipe: bool = False) -> list[EpisodeResult]:
    """A trained PPO/GRPO/DAgger run's newest checkpoint, greedy, on the same seeds as the other
    agents: the env as the run trained on it (its observation keys, e.g. ``gps``), with the
    setting's kwargs on top. ``wipe``: reset the memory state at every subgoal start, as at an
    episode start (the learned counterpart of ``memoryless``)."""
    run = Run.open(run_dir)
    policy, _ = load_policy(run)
    act = policy_actor(policy, deterministic=True)  # steps it as training does (T = B = 1)
    env, out = make_env(env_id, {**run.config.env_kwargs, **env_kwargs}), []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, steps, subgoal = 0.0, 0, 0
        while True:
            start = steps == 0 or (wipe and int(obs["subgoal_index"]) != subgoal)
            subgoal = int(obs["subgoal_index"])
            action, _ = act(obs, info, start)
            obs, r, term, trunc, info = env.step(action)
            total, steps = total + r, steps + 1
            if term or trunc:
                break
        out.append(EpisodeResult(seed + i, info["success"], total, steps, info["subgoal_successes"],
                                 info["subgoal_spls"], info["subgoal_modalities"]))
    env.close()
    return out


def _values(r: EpisodeResult, what: str) -> list:
    """An episode's per-subgoal success flags or SPLs."""
    return r.successes if what == "success" else r.spls


def per_index(results: list[EpisodeResult], what: str) -> dict[int, list[float]]:
    rows: dict[int, list[float]] = {}
    for r in results:
        for k, v in enumerate(_values(r, what)):
            rows.setdefault(k, []).append(float(v))
    return rows


def per_modality(results: list[EpisodeResult], what: str) -> dict[str, list[float]]:
    rows: dict[str, list[float]] = {}
    for r in results:
        for m, v in zip(r.modalities, _values(r, what)):
            rows.setdefault(m, []).append(float(v))
    return rows


def _later(results: list[EpisodeResult], what: str) -> np.ndarray:
    """Success or SPL of every subgoal after the first, pooled over episodes."""
    return np.array([float(s) for r in results for s in _values(r, what)[1:]])


def _compare(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(mean of x, mean of y, y - x, half-width of its 95% interval; normal approximation)."""
    se = math.sqrt(x.var() / len(x) + y.var() / len(y))
    return float(x.mean()), float(y.mean()), float(y.mean() - x.mean()), 1.96 * se


def first_vs_later(results: list[EpisodeResult], what: str = "success") -> tuple[float, float, float, float]:
    """(first-subgoal mean, later mean, difference, half-width of its 95% interval) of success or SPL."""
    first = np.array([float(_values(r, what)[0]) for r in results])
    return _compare(first, _later(results, what))


def later_vs_later(a: list[EpisodeResult], b: list[EpisodeResult], what: str = "success") -> tuple[float, float, float, float]:
    """(a's later-subgoal mean, b's, difference, half-width of its 95% interval): one agent
    with and without its memory across subgoals."""
    wiped, kept, diff, half = _compare(_later(b, what), _later(a, what))  # diff = kept - wiped
    return kept, wiped, diff, half


def table(title: str, rows: dict, names: list[str], counts: dict) -> str:
    width = max(14, *(len(n) + 2 for n in names))
    lines = [title, f"{'':<10}{'n':>5}" + "".join(f"{n:>{width}}" for n in names)]
    for key in rows[names[0]]:
        cells = "".join(f"{np.mean(rows[n][key]):>{width}.3f}" for n in names)
        lines.append(f"{str(key):<10}{counts[key]:>5}" + cells)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="rlmem/GoatGrid-v0")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=EVAL_SEED_OFFSET, help="episode i is reset with seed + i")
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="env kwargs per setting (TOML inline body)")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=RUN_DIR",
                        help="learned agents: trained PPO/GRPO/DAgger run folders, played on the same seeds")
    parser.add_argument("--wipe", action="store_true",
                        help="also play every learned run with memory as NAME-wiped: its state reset at each subgoal start")
    args = parser.parse_args()
    runs = dict(r.split("=", 1) for r in args.runs)
    learned_controls = {name for name, run_dir in runs.items() if Run.open(run_dir).config.policy.memory == "none"}
    torch.set_num_threads(1)

    for setting in args.settings:
        kwargs = parse_inline_table(setting, "--settings") if setting.strip() else {}
        print(f"\n=== {args.env} {kwargs or '(registered kwargs)'}: {args.episodes} held-out episodes "
              f"(seeds {args.seed}..{args.seed + args.episodes - 1}) ===")
        results: dict[str, list[EpisodeResult]] = {}
        for name in args.agents:
            t0 = time.perf_counter()
            results[name] = evaluate_agent(make_agent(AGENTS[name]), args.env, kwargs, args.episodes, args.seed)
            stats: dict[str, float] = {}
            for r in results[name]:
                for k, v in r.stats.items():
                    stats[k] = stats.get(k, 0) + v
            extra = ""
            if stats.get("relocalizations"):
                extra = (f", visual re-localisation at the odometry node {stats['relocalized_at_own_node'] / stats['relocalizations']:.0%}"
                         f" of {stats['relocalizations']}, odometry fallbacks {stats['odometry_fallback']},"
                         f" global-map steps {stats['global_fallback']}")
            print(f"{name}: {time.perf_counter() - t0:.0f}s, {stats.get('steps', 0)} steps{extra}")
        for name, run_dir in runs.items():
            t0 = time.perf_counter()
            results[name] = play_learned(run_dir, args.env, kwargs, args.episodes, args.seed)
            print(f"{name}: {time.perf_counter() - t0:.0f}s, {sum(r.length for r in results[name])} steps (learned, {run_dir})")
            if args.wipe and name not in learned_controls:
                results[f"{name}-wiped"] = play_learned(run_dir, args.env, kwargs, args.episodes, args.seed, wipe=True)
        results["oracle"] = play_oracle(args.env, kwargs, args.episodes, args.seed)
        names = list(results)
        idx_counts = {k: len(v) for k, v in per_index(results[names[0]], "success").items()}
        mod_counts = {k: len(v) for k, v in per_modality(results[names[0]], "success").items()}
        for what in ("success", "spl"):
            rows = {n: per_index(results[n], what) for n in names}
            print("\n" + table(f"{what} by subgoal index", rows, names, idx_counts))
        for what in ("success", "spl"):
            rows = {n: {m: per_modality(results[n], what)[m] for m in MODALITIES if m in mod_counts} for n in names}
            print("\n" + table(f"{what} by modality", rows, names, mod_counts))
        for what in ("success", "spl"):
            print(f"\nfirst subgoal vs later subgoals ({what}):")
            for name in [*args.agents, *runs]:
                p1, p2, diff, half = first_vs_later(results[name], what)
                if name in MEMORY_AGENTS or (name in runs and name not in learned_controls):
                    verdict = "later <= first: claim FAILS" if diff <= 0 else (
                        "later > first, within noise" if diff - half <= 0 else "later > first: claim holds")
                else:
                    verdict = "does not rise" if diff <= 0 else (
                        "rises, within noise" if diff - half <= 0 else "rises beyond noise: claim FAILS")
                print(f"  {name:<16} first {p1:.3f}  later {p2:.3f}  diff {diff:+.3f} (95% +-{half:.3f})  {verdict}")
            wiped = [n for n in runs if f"{n}-wiped" in results]
            if wiped:
                print(f"memory across subgoals ({what} on later subgoals; the same weights, state wiped at each subgoal start):")
            for name in wiped:
                kept, lost, diff, half = later_vs_later(results[name], results[f"{name}-wiped"], what)
                verdict = "memory does not pay" if diff <= 0 else (
                    "memory pays, within noise" if diff - half <= 0 else "memory pays beyond noise")
                print(f"  {name:<16} kept {kept:.3f}  wiped {lost:.3f}  diff {diff:+.3f} (95% +-{half:.3f})  {verdict}")


if __name__ == "__main__":
    main()
