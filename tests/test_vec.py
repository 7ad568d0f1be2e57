"""rlmem.envs._vec.RawWords: buffered raw words equal direct draws, and sync gives them back."""

from __future__ import annotations

import numpy as np

from rlmem.envs._vec import RawWords


def generators(n: int) -> list[np.random.Generator]:
    return [np.random.Generator(np.random.PCG64(100 + i)) for i in range(n)]


def test_buffered_words_equal_direct_draws_and_sync_rewinds_exactly():
    rngs, direct = generators(3), generators(3)
    words = RawWords(3, block=8)
    plan = np.random.default_rng(0)
    for _ in range(50):  # variable counts, including refills across the block end
        idx = np.flatnonzero(plan.random(3) < 0.7)
        counts = plan.integers(0, 6, len(idx))
        got = words.take(rngs, idx, counts)
        for row, i, c in zip(got, idx, counts):
            assert row[:c].tolist() == direct[i].bit_generator.random_raw(c).tolist()
            assert not row[c:].any()
    words.sync(rngs)
    for r, d in zip(rngs, direct):
        assert r.bit_generator.state == d.bit_generator.state


def test_drop_forgets_words_of_replaced_generators():
    rngs = generators(2)
    words = RawWords(2, block=4)
    words.take(rngs, np.array([0, 1]), 1)
    fresh = generators(2)
    words.drop()
    expected = generators(2)[0].bit_generator.random_raw(2).tolist()
    assert words.take(fresh, np.array([0]), 2)[0].tolist() == expected
