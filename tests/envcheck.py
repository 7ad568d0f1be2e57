"""Checks shared by the env tests: info-dict equality and exact get_state/set_state resumes."""

from __future__ import annotations

import json
from typing import Callable

import numpy as np


def assert_info_equal(a: dict, b: dict, path: str = "info") -> None:
    """Same keys, same dtypes, same values; object arrays compared element by element."""
    assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
    for key in a:
        va, vb = a[key], b[key]
        where = f"{path}[{key!r}]"
        if isinstance(va, dict):
            assert isinstance(vb, dict), where
            assert_info_equal(va, vb, where)
        elif va.dtype == object:
            assert vb.dtype == object, where
            for i, (ea, eb) in enumerate(zip(va, vb)):
                assert (ea is None) == (eb is None), f"{where}[{i}]"
                if ea is not None:
                    assert ea.dtype == eb.dtype and np.array_equal(ea, eb), f"{where}[{i}]"
        else:
            assert va.dtype == vb.dtype, f"{where}: {va.dtype} != {vb.dtype}"
            assert np.array_equal(va, vb), f"{where}: {va} != {vb}"


def assert_single_resume(env, make: Callable[[], object], actions: list[int]) -> None:
    """``env``'s state, saved through JSON (plain numbers only) and restored into a fresh,
    never-reset ``make()``, continues exactly like ``env`` under ``actions``."""
    saved = json.loads(json.dumps({k: v.tolist() for k, v in env.get_state().items()}))

    def continue_from(e):
        out = []
        for a in actions:
            obs, reward, terminated, truncated, info = e.step(a)
            out.append((obs.tolist(), reward, terminated, truncated, info))
            if terminated or truncated:
                e.reset()
        return out

    expected = continue_from(env)
    restored = make()  # never reset: set_state alone must suffice
    restored.set_state({k: np.asarray(v, dtype=np.uint64 if k == "rng" else None) for k, v in saved.items()})
    assert continue_from(restored) == expected


def assert_batched_resume(vec, make: Callable[[], object], actions: np.ndarray) -> None:
    """``vec``'s state restored into a fresh ``make()`` continues exactly under ``actions``."""
    saved = {k: v.copy() for k, v in vec.get_state().items()}
    expected = [vec.step(a) for a in actions]
    other = make()
    other.set_state(saved)
    for a, exp in zip(actions, expected):
        got = other.step(a)
        for x, y in zip(got[:4], exp[:4]):
            assert np.array_equal(x, y)
        assert_info_equal(got[4], exp[4])
