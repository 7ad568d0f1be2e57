"""Benchmark suites (``envs/*.toml``): which env ids, kwargs, step budgets, thresholds.

A suite file is a list of ``[[env]]`` tables::

    [[env]]
    name = "tmaze-n3-uniform"          # short name used in tables and run folders
    id = "rlmem/EndlessTMaze-v0"       # Gymnasium id
    kwargs = { n_corridors = 3 }       # env kwargs (optional)
    steps = 400_000                    # training budget per run (optional)
    success_threshold = 0.95           # what counts as solved (optional)
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


_KEYS = {"name", "id", "kwargs", "steps", "success_threshold"}


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
        env_spec(e["id"])
        out.append(SuiteEntry(e.get("name", e["id"]), e["id"], dict(e.get("kwargs", {})), steps, e.get("success_threshold")))
    return out
