"""What every training loop shares: the device check and the rolling episode statistics.

PPO, GRPO, NEC and the SB3 baselines log the same metric keys (``episode_return``,
``episode_length``, ``success`` over the last :data:`RECENT` episodes), so their curves sit
on one plot in ``rlmem compare``.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from rlmem.errors import ConfigError

__all__ = ["RECENT", "check_device", "episode_stats", "recent_window"]

RECENT = 100
"""Episodes in the rolling success / return window."""


def check_device(name: str) -> torch.device:
    """The torch device ``name``, or a ConfigError if this machine cannot use it."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA device")
    return device


def episode_stats(info: dict, done: np.ndarray, ep_return: np.ndarray, ep_length: np.ndarray) -> list:
    """(return, length, success) of every env whose episode ended; success nan if unknown."""
    final = info.get("final_info", {})
    success = final.get("success")
    mask = final.get("_success")
    out = []
    for i in np.flatnonzero(done):
        s = float(success[i]) if success is not None and mask is not None and mask[i] else float("nan")
        out.append((float(ep_return[i]), int(ep_length[i]), s))
    return out


def recent_window(recent: deque) -> dict:
    """Mean return, length and success (episodes that report one) of ``recent``'s
    ``(return, length, success)`` rows; empty before the first episode ends."""
    if not recent:
        return {}
    arr = np.asarray(recent, dtype=np.float64)
    out = {"episode_return": float(arr[:, 0].mean()), "episode_length": float(arr[:, 1].mean())}
    succ = arr[:, 2][~np.isnan(arr[:, 2])]
    if len(succ):
        out["success"] = float(succ.mean())
    return out
