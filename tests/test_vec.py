"""rlmem.envs._vec.RawWords: buffered raw words equal direct draws, and sync gives them back."""

from __future__ import annotations

import numpy as np

from rlmem.envs._vec import RawWords
from rlmem.envs.tmaze import rng_state_to_array


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


def test_ensure_buffers_enough_words_and_synced_states_match_sync():
    """A caller that reads ``buf[i, pos[i]:]`` itself (the compiled Color-Cubes step) after
    ``ensure`` sees each stream in order across refills; ``synced_states`` reports what ``sync``
    would leave without emptying the buffer."""
    rngs, direct = generators(3), generators(3)
    words, plan, reserve = RawWords(3, block=8), np.random.default_rng(1), 5
    for t in range(60):
        idx = np.flatnonzero(plan.random(3) < 0.6) if t % 3 else None  # some calls ask for a subset
        words.ensure(rngs, reserve, idx)
        for i in range(3) if idx is None else idx.tolist():
            assert words.block - words.pos[i] >= reserve
            count = int(plan.integers(0, reserve + 1))
            got = words.buf[i, words.pos[i] : words.pos[i] + count].tolist()
            assert got == direct[i].bit_generator.random_raw(count).tolist()
            words.pos[i] += count
        if t % 7 == 0:
            states = words.synced_states(rngs)
            assert all(np.array_equal(states[i], rng_state_to_array(d)) for i, d in enumerate(direct))
    words.sync(rngs)
    for r, d in zip(rngs, direct):
        assert r.bit_generator.state == d.bit_generator.state
