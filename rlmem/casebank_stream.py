"""Play a task stream with the case-bank retrieval agents and summarise success vs tasks seen.

The comparison behind ``benchmarks/casebank_stream.py``: every agent kind of
:mod:`rlmem.agents.case_agents` plays the same stream of :class:`rlmem.envs.task_stream.TaskStream`
tasks (same ``world_seed``, same reset seed: task draws never depend on actions) with the
same agent seed, one task per episode, its bank carried from task to task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rlmem.agents.case_agents import KINDS, CaseAgentConfig, make_case_agent
from rlmem.envs.task_stream import TaskStream
from rlmem.errors import ConfigError

__all__ = ["StreamRun", "compare", "final_window", "run_stream", "success_curve"]


@dataclass(frozen=True)
class StreamRun:
    """One agent on one stream: per-task records, all arrays of length ``n_tasks``."""

    kind: str
    seed: int
    env_kwargs: dict[str, Any]
    success: np.ndarray
    """bool: every plan step right."""
    returns: np.ndarray
    """float64: fraction of plan steps right."""
    distractor: np.ndarray
    """bool: the task was a distractor."""
    reused: np.ndarray
    """bool: the agent reused a stored case (else it played a random plan)."""
    fooled: np.ndarray
    """bool: the reused case had been stored for a distractor task."""


def run_stream(
    kind: str,
    n_tasks: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    agent_config: CaseAgentConfig | None = None,
) -> StreamRun:
    """Play ``n_tasks`` tasks of ``TaskStream(world_seed=seed, **env_kwargs)`` (first reset
    with ``seed``) with a fresh agent of ``kind`` seeded with ``seed``."""
    if not isinstance(n_tasks, int) or n_tasks < 1:
        raise ConfigError(f"run_stream: n_tasks must be an integer >= 1, got {n_tasks!r}")
    env_kwargs = dict(env_kwargs or {})
    env = TaskStream(**{"world_seed": seed, **env_kwargs})
    cfg = env.config
    agent = make_case_agent(kind, cfg.feature_dim, cfg.plan_length, cfg.n_actions, agent_config, seed)
    success = np.zeros(n_tasks, dtype=bool)
    returns = np.zeros(n_tasks)
    distractor = np.zeros(n_tasks, dtype=bool)
    reused = np.zeros(n_tasks, dtype=bool)
    fooled = np.zeros(n_tasks, dtype=bool)
    case_is_distractor: dict[int, bool] = {}  # bank row -> its task was a distractor
    obs, info = env.reset(seed=seed)
    for i in range(n_tasks):
        plan = agent.act(obs[: cfg.feature_dim])
        correct = np.zeros(cfg.plan_length, dtype=bool)
        for t, action in enumerate(plan):
            obs, reward, terminated, _, step_info = env.step(int(action))
            correct[t] = reward > 0
        assert terminated  # an episode is exactly one plan long
        distractor[i], success[i], returns[i] = info["distractor"], step_info["success"], correct.mean()
        reused[i] = agent.parent_id >= 0
        fooled[i] = reused[i] and case_is_distractor[agent.parent_id]
        case_id = agent.learn(correct)
        if case_id >= 0:
            case_is_distractor[case_id] = bool(distractor[i])
        obs, info = env.reset()
    return StreamRun(kind, seed, env_kwargs, success, returns, distractor, reused, fooled)


def compare(
    n_tasks: int,
    seeds: Sequence[int],
    kinds: Sequence[str] = KINDS,
    env_kwargs: dict[str, Any] | None = None,
    agent_config: CaseAgentConfig | None = None,
) -> dict[str, list[StreamRun]]:
    """:func:`run_stream` for every kind and seed: ``{kind: [run per seed]}``."""
    return {k: [run_stream(k, n_tasks, s, env_kwargs, agent_config) for s in seeds] for k in kinds}


def success_curve(runs: Sequence[StreamRun], bin_size: int, family_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Success rate per bin of ``bin_size`` consecutive tasks, averaged over ``runs``.

    Returns ``(tasks seen at the end of each bin int64[B], success float64[B])``; a last,
    partial bin is dropped. ``family_only`` counts only non-distractor tasks.
    """
    n = min(len(r.success) for r in runs)
    n_bins = n // bin_size
    if n_bins < 1:
        raise ConfigError(f"success_curve: bin_size {bin_size} is longer than the runs ({n} tasks)")
    per_run = []
    for r in runs:
        keep = ~r.distractor[: n_bins * bin_size] if family_only else np.ones(n_bins * bin_size, dtype=bool)
        s = r.success[: n_bins * bin_size].reshape(n_bins, bin_size)
        k = keep.reshape(n_bins, bin_size)
        per_run.append((s & k).sum(1) / np.maximum(k.sum(1), 1))
    return np.arange(1, n_bins + 1) * bin_size, np.mean(per_run, axis=0)


# Two-sided 95% Student-t quantiles for 1..10 degrees of freedom (no scipy dependency).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def final_window(
    runs: Sequence[StreamRun], window: int, what: str = "success", family_only: bool = False
) -> tuple[float, float]:
    """Mean over seeds of the last ``window`` tasks' ``what`` (a :class:`StreamRun` field:
    success, returns, fooled, reused), with the half-width of a 95% Student-t interval over
    seeds (seeds are the independent replicates; nan for a single run)."""
    values = []
    for r in runs:
        x = np.asarray(getattr(r, what)[-window:], dtype=np.float64)
        keep = ~r.distractor[-window:] if family_only else np.ones(len(x), dtype=bool)
        values.append(x[keep].mean() if keep.any() else np.nan)
    v = np.asarray(values)
    if len(v) < 2:
        return float(v.mean()), math.nan
    df = len(v) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / math.sqrt(len(v)))
