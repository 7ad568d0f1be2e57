"""Run folders: resolved config, metrics, TensorBoard events, atomic checkpoints.

Layout of ``runs/<name>/``::

    config.toml          the resolved RunConfig (what `rlmem train --resume` reads)
    metrics.jsonl        one JSON object per update: {"step": ..., "update": ..., ...}
    events.out.tfevents* TensorBoard scalars (same numbers)
    checkpoints/         step_000123456.pt, written to a temp file then renamed

Checkpoints hold only tensors, numbers, strings and containers of them, so they load
with ``torch.load(weights_only=True)``; a corrupt or foreign file is a
:class:`rlmem.errors.RunError`, never a traceback and never executed code.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmem.config import RunConfig, from_dict, read_toml, to_dict, write_toml
from rlmem.errors import ConfigError, RunError

CHECKPOINT_RE = re.compile(r"step_(\d+)\.pt$")
KEEP_CHECKPOINTS = 3


def default_run_name(cfg: RunConfig) -> str:
    env = cfg.env.split("/")[-1].split(":")[-1]
    # rlmem's own loops name the memory; algorithms with their own networks name themselves
    own_network = cfg.algo.startswith("sb3") or cfg.algo in ("memalpha", "nec")
    agent = cfg.algo if own_network else cfg.policy.memory if cfg.algo == "ppo" else f"{cfg.algo}-{cfg.policy.memory}"
    return f"{env}__{agent}__s{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


class Run:
    """A run folder. Create with :meth:`create` (refuses to overwrite) or :meth:`open`."""

    def __init__(self, path: Path, config: RunConfig):
        self.path = Path(path)
        self.config = config
        self._writer = None

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, config: RunConfig) -> "Run":
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise RunError(f"run folder {path} already exists; pick another --run-name or use --resume {path}")
        path.mkdir(parents=True, exist_ok=True)
        (path / "checkpoints").mkdir(exist_ok=True)
        _atomic_write_text(path / "config.toml", _toml_text(config))
        return cls(path, config)

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"no run folder at {path}")
        cfg_file = path / "config.toml"
        if not cfg_file.is_file():
            raise RunError(f"{path} is not a run folder (no config.toml)")
        try:
            config = from_dict(RunConfig, read_toml(cfg_file)).validate()
        except ConfigError as e:
            raise RunError(f"{cfg_file} is corrupt: {e}") from None
        return cls(path, config)

    # ------------------------------------------------------------------ metrics
    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one line to metrics.jsonl and the same scalars to TensorBoard."""
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with (self.path / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        writer = self._tb()
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                writer.add_scalar(k, v, step)

    def metrics(self) -> list[dict]:
        f = self.path / "metrics.jsonl"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop metrics logged after ``step`` (a resume replays from the checkpoint)."""
        rows = [r for r in self.metrics() if r["step"] <= step]
        _atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def _tb(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            last = self.metrics()
            # purge_step drops events a crashed run wrote after its last checkpoint
            self._writer = SummaryWriter(str(self.path), purge_step=last[-1]["step"] + 1 if last else None)
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        folder = self.path / "checkpoints"
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.search(p.name))]
        return [p for _, p in sorted(found)]

    def save_checkpoint(self, step: int, payload: dict[str, Any]) -> Path:
        """Write ``checkpoints/step_<step>.pt`` atomically; keep the newest few."""
        folder = self.path / "checkpoints"
        folder.mkdir(exist_ok=True)
        target = folder / f"step_{step:012d}.pt"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        return target

    def load_checkpoint(self, path: str | Path | None = None) -> dict[str, Any]:
        """Load the newest checkpoint (or ``path``) with ``weights_only=True``."""
        if path is None:
            found = self.checkpoints()
            if not found:
                raise RunError(f"{self.path} has no checkpoint")
            path = found[-1]
        return load_checkpoint_file(path)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"no checkpoint at {path}") from None
    except Exception as e:  # truncated zip, foreign pickle, disallowed global...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"checkpoint {path} is corrupt or not an rlmem checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or "policy" not in payload:
        raise RunError(f"checkpoint {path} is not an rlmem checkpoint")
    return payload


# --------------------------------------------------------------------------- helpers
def to_safe(obj: Any) -> Any:
    """numpy arrays/scalars -> tensors/numbers, recursively (for weights_only checkpoints)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`: tensors -> numpy arrays, recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _toml_text(config: RunConfig) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(config))


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


__all__ = ["Run", "default_run_name", "load_checkpoint_file", "to_safe", "from_safe", "write_toml"]
