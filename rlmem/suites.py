"""Benchmark suites (``envs/*.toml``): which env ids, kwargs, step budgets, thresholds.

A suite file is a list of ``[[env]]`` tables::

    [[env]]
    name = "tmaze-n3-uniform"          # short name used in tables and run folders
    id = "rlmem/EndlessTMaze-v0"       # Gymnasium id
    kwargs = { n_corridors = 3 }       # env kwargs (optional)
    steps = 400_000                    # training budget per run (optional)
    success_threshold = 0.95           # what counts as solved (optional)
    # held-out evaluation splits (optional): name -> env kwargs applied on top of kwargs
    eval_splits = { extrapolate = { l_min = 11, l_max = 20 } }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlmem.config import read_toml
from rlmem.errors import ConfigError


@dataclass(frozen=True)
class SuiteEntry:
    name: str
    env: str
    env_kwargs: dict = field(default_factory=dict)
    steps: int | None = None
    success_threshold: float | None = None
    eval_splits: dict = field(default_factory=dict)
    """Held-out evaluation splits, ``{split name: env kwargs applied on top of env_kwargs}``
    (interpolation / extrapolation over corridor lengths, say); the run is trained once."""


_KEYS = {"name", "id", "kwargs", "steps", "success_threshold", "eval_splits"}


def load_suite(path: str | Path) -> list[SuiteEntry]:
    """Parse and check a suite file; unknown ids and keys are ConfigErrors."""
    from rlmem.envs.vector import env_spec

    data = read_toml(path)
    extra = sorted(set(data) - {"env", "description"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {extra[0]!r}; a suite has [[env]] tables and a description")
    entries = data.get("env")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: a suite needs at least one [[env]] table")
    out = []
    for i, e in enumerate(entries):
        where = f"{path}: env #{i + 1}"
        if not isinstance(e, dict):
            raise ConfigError(f"{where} must be a table")
        unknown = sorted(set(e) - _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(sorted(_KEYS))}")
        if not isinstance(e.get("id"), str) or not isinstance(e.get("name", ""), str):
            raise ConfigError(f"{where}: needs a string id (and name)")
        steps = e.get("steps")
        if steps is not None and (not isinstance(steps, int) or steps <= 0):
            raise ConfigError(f"{where}: steps must be a positive integer")
        splits = e.get("eval_splits", {})
        if not isinstance(e.get("kwargs", {}), dict) or not isinstance(splits, dict) or not all(
            isinstance(v, dict) for v in splits.values()
        ):
            raise ConfigError(f"{where}: kwargs must be a table and eval_splits a table of tables")
        env_spec(e["id"])
        out.append(SuiteEntry(e.get("name", e["id"]), e["id"], dict(e.get("kwargs", {})), steps,
                              e.get("success_threshold"), {k: dict(v) for k, v in splits.items()}))
    return out
