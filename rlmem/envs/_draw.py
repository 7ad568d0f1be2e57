"""A picture of what the agent sees, for envs without a spatial layout (videos only)."""

from __future__ import annotations

import numpy as np

_BACKGROUND = np.array([24, 24, 28], dtype=np.float32)
_ON = np.array([245, 190, 40], dtype=np.float32)  # a value of 1
_CELL, _PAD = 16, 4


def observation_strip(obs: np.ndarray, cues: np.ndarray | None = None) -> np.ndarray:
    """``uint8[H, W, 3]``: one square per observation entry, dark for 0, amber for 1
    (values are clipped to [0, 1]); a white bar under the entries in ``cues`` (bool mask),
    e.g. the one-hot block that carries the information to remember."""
    values = np.clip(np.asarray(obs, dtype=np.float32).reshape(-1), 0.0, 1.0)
    n = len(values)
    img = np.empty((_CELL + 3 * _PAD, n * _CELL + 2 * _PAD, 3), dtype=np.float32)
    img[:] = _BACKGROUND
    for i, v in enumerate(values):
        left = _PAD + i * _CELL
        img[_PAD : _PAD + _CELL - 2, left + 1 : left + _CELL - 1] = (1 - v) * 70 + v * _ON
        if cues is not None and cues[i]:
            img[_PAD + _CELL : _PAD + _CELL + 2, left + 1 : left + _CELL - 1] = 255
    return img.astype(np.uint8)
