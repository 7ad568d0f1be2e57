"""Evaluate a memory writer on held-out memory-construction episodes (library: returns numbers).

:func:`evaluate_writer` plays ``episodes`` episodes, spread evenly over the competencies
(round robin), with seeds ``seed, seed + 1, ...`` per competency, and returns per-competency
means. It is what ``rlmem eval`` prints for a memory-construction writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rlmem.envs.memalpha.data import COMPETENCIES, check_competencies
from rlmem.errors import ConfigError

__all__ = ["EVAL_SEED", "METRIC_KEYS", "evaluate_writer", "run_episode"]

EVAL_SEED = 1_000_003
"""Default first seed of evaluation episodes (an offset training seeds do not reach)."""
METRIC_KEYS = ("reward", "accuracy", "success", "compression", "tool_success_rate", "validity", "memory_tokens")
"""The per-competency means :func:`evaluate_writer` reports (plus ``episodes``)."""


def run_episode(env: Any, writer: Callable[[str], str], seed: int | None = None) -> dict[str, Any]:
    """Play one episode of ``env`` with ``writer`` (its ``reset()`` is called first, when it
    has one); returns the final info with ``reward`` (the return) and ``steps`` added."""
    obs, _ = env.reset(seed=seed)
    if hasattr(writer, "reset"):
        writer.reset()
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(writer(obs))
        total += reward
        steps += 1
        if terminated or truncated:
            return {**info, "reward": total, "steps": steps}


def evaluate_writer(
    writer: Callable[[str], str] | str,
    episodes: int = 200,
    split: str = "heldout",
    competencies: Sequence[str] | None = None,
    seed: int = EVAL_SEED,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean reward, QA accuracy and the other terms per competency.

    Args:
        writer: a callable ``observation -> action`` (with an optional ``reset()``), or a
            name of :mod:`rlmem.agents.heuristic_writers` (``"heuristic"``...).
        episodes: total episodes, spread round robin over ``competencies`` (>= 1).
        split: ``"heldout"`` (default) or ``"train"``.
        competencies: subset to evaluate (default: all four).
        seed: first seed; competency ``c``'s j-th episode uses ``seed + j``.
        env_kwargs: more :class:`~rlmem.envs.memalpha.env.MemoryConstructionEnv` kwargs
            (sizes, beta, answerer...); ``split`` and ``competencies`` are set here.

    Returns:
        ``{competency: {"episodes", "reward", "accuracy", "success", "compression",
        "tool_success_rate", "validity", "memory_tokens"}}`` (floats; ``episodes`` an int),
        plus ``"all"``: the same means over every episode.
    """
    from rlmem.envs.memalpha.env import MemoryConstructionEnv

    if isinstance(writer, str):
        from rlmem.agents.heuristic_writers import make_writer

        writer = make_writer(writer)
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ConfigError(f"evaluate_writer: episodes must be a positive integer, got {episodes!r}")
    names = check_competencies(competencies if competencies is not None else COMPETENCIES)
    kwargs = dict(env_kwargs or {})
    clash = sorted({"split", "competencies", "dataset"} & set(kwargs))
    if clash:
        raise ConfigError(f"evaluate_writer: pass {clash} as arguments, not in env_kwargs")
    counts = [episodes // len(names) + (i < episodes % len(names)) for i in range(len(names))]
    per: dict[str, list[dict[str, Any]]] = {}
    for name, count in zip(names, counts):
        if count == 0:
            continue
        env = MemoryConstructionEnv(split=split, competencies=(name,), **kwargs)
        per[name] = [run_episode(env, writer, seed + j) for j in range(count)]
        env.close()

    def summarise(results: list[dict[str, Any]]) -> dict[str, float]:
        out: dict[str, float] = {"episodes": len(results)}
        for key in METRIC_KEYS:
            out[key] = float(np.mean([float(r[key]) for r in results]))
        return out

    table = {name: summarise(results) for name, results in per.items()}
    table["all"] = summarise([r for results in per.values() for r in results])
    return table
