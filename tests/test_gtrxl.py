"""GTrXL specifics (rlmem/memory/transformer.py) beyond the contract in test_memory.py:
gates, the sliding window, the episode mask, windows shorter than a chunk, long episodes
across calls, one attention pass per layer, and config validation."""

from __future__ import annotations

import pytest
import torch

from rlmem.errors import ConfigError
from rlmem.memory import make
from rlmem.memory.transformer import GTrXL

torch.set_num_threads(1)

IN_DIM = 3
TOL = dict(atol=1e-5, rtol=1e-5)


def gtrxl(**kwargs) -> GTrXL:
    torch.manual_seed(0)
    cfg = dict(hidden_size=8, num_layers=2, num_heads=2, memory_length=4, ff_mult=2)
    return make("gtrxl", IN_DIM, **{**cfg, **kwargs})


def no_starts(T: int, B: int) -> torch.Tensor:
    return torch.zeros(T, B, dtype=torch.bool)


def run(mem, x, start, state=None):
    state = mem.initial_state(x.shape[1]) if state is None else state
    with torch.no_grad():
        return mem(x, state, start)


def test_large_gate_bias_starts_at_the_identity():
    """z = s(... - b_g) ~ 0: every gate passes its residual input, so y = input projection."""
    x = torch.randn(10, 2, IN_DIM)
    mem = gtrxl(gate_bias=30.0)
    y, _ = run(mem, x, no_starts(10, 2))
    with torch.no_grad():
        torch.testing.assert_close(y, mem.embed(x), atol=1e-6, rtol=0)
    # Without the bias the blocks do change the stream (the check above can fail).
    y0, _ = run(gtrxl(gate_bias=0.0), x, no_starts(10, 2))
    assert (y0 - y).abs().max() > 1e-2


def test_window_holds_exactly_the_last_memory_length_steps():
    L, T, B = 5, 12, 2
    mem = gtrxl(memory_length=L)
    x = torch.randn(T, B, IN_DIM)
    block0_out = []
    handle = mem.blocks[0].register_forward_hook(lambda m, i, out: block0_out.append(out))
    try:
        _, s = run(mem, x, no_starts(T, B))
    finally:
        handle.remove()
    assert s["memory"].shape == (B, L, 2, 8) and s["valid"].all()
    with torch.no_grad():
        layer0 = mem.embed(x[-L:]).transpose(0, 1)          # [B, L, H]
    torch.testing.assert_close(s["memory"][:, :, 0], layer0, **TOL)
    torch.testing.assert_close(s["memory"][:, :, 1], block0_out[0][:, -L:], **TOL)

    # A short first chunk fills only the newest slots; the rest stay empty.
    _, s = run(mem, x[:3], no_starts(3, B))
    assert s["valid"].tolist() == [[False, False, True, True, True]] * B
    assert not s["memory"][:, :2].any()
    with torch.no_grad():
        torch.testing.assert_close(s["memory"][:, 2:, 0], mem.embed(x[:3]).transpose(0, 1), **TOL)

    # A start inside the chunk: only the steps of the new episode remain valid.
    start = no_starts(T, B)
    start[9, 0] = True
    _, s = run(mem, x, start)
    assert s["valid"][0].tolist() == [False, False, True, True, True]
    assert s["valid"][1].all()
    assert not s["memory"][0, :2].any()


def test_a_start_inside_a_chunk_hides_everything_before_it():
    """The window (16) is longer than the chunk, so only the episode mask can hide t < 6."""
    T, B = 12, 2
    mem = gtrxl(memory_length=16)
    x = torch.randn(T, B, IN_DIM)
    start = no_starts(T, B)
    start[6, 0] = True                                        # env 0 only
    x_alt = x.clone()
    x_alt[:6] = torch.randn(6, B, IN_DIM)
    state = run(mem, torch.randn(8, B, IN_DIM), no_starts(8, B))[1]  # a non-empty window
    y, s = run(mem, x, start, state)
    y2, s2 = run(mem, x_alt, start, state)
    torch.testing.assert_close(y2[6:, 0], y[6:, 0], **TOL)
    torch.testing.assert_close(s2["memory"][0], s["memory"][0], **TOL)
    assert not torch.allclose(y2[:6, 0], y[:6, 0])
    assert not torch.allclose(y2[6:, 1], y[6:, 1])           # env 1's episode goes on


def test_window_shorter_than_the_chunk():
    """L = 3 < T = 20: one call equals the step loop, and y[t] depends on x[s] exactly for
    0 <= t - s <= num_layers * L (each layer looks L steps further back)."""
    L, T, layers = 3, 20, 2
    mem = gtrxl(memory_length=L, num_layers=layers)
    x = torch.randn(T, 1, IN_DIM)
    start = no_starts(T, 1)
    y, s = run(mem, x, start)
    ys, state = [], mem.initial_state(1)
    with torch.no_grad():
        for t in range(T):
            y_t, state = mem(x[t : t + 1], state, start[t : t + 1])
            ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys), y, **TOL)
    torch.testing.assert_close(state["memory"], s["memory"], **TOL)

    x = x.requires_grad_(True)
    y, _ = mem(x, mem.initial_state(1), start)
    for t in (7, 15, 19):
        (grad,) = torch.autograd.grad(y[t].sum(), x, retain_graph=True)
        reached = grad.abs().sum(dim=(1, 2)) > 0              # [T]
        lag = t - torch.arange(T)
        assert reached.tolist() == ((lag >= 0) & (lag <= layers * L)).tolist(), t


def test_long_episode_carries_across_calls():
    """An episode of 60 steps in chunks of 7 with L = 8: chunked == one call, and a change
    at step 20 reaches the next chunks' outputs exactly up to step 20 + num_layers * L."""
    L, T = 8, 60
    mem = gtrxl(memory_length=L)
    x = torch.randn(T, 2, IN_DIM)
    start = no_starts(T, 2)
    start[0] = True

    def chunked(x):
        ys, state = [], mem.initial_state(2)
        with torch.no_grad():
            for a in range(0, T, 7):
                y, state = mem(x[a : a + 7], state, start[a : a + 7])
                ys.append(y)
        return torch.cat(ys), state

    y_one, s_one = run(mem, x, start)
    y, s = chunked(x)
    torch.testing.assert_close(y, y_one, **TOL)
    torch.testing.assert_close(s["memory"], s_one["memory"], **TOL)
    assert torch.equal(s["valid"], s_one["valid"])

    x_alt = x.clone()
    x_alt[20] += 1.0
    y2, _ = chunked(x_alt)
    changed = (y2 - y).abs().amax(dim=(1, 2)) > 1e-6          # [T]
    assert changed[20 : 20 + 2 * L + 1].all()                 # crosses chunk boundaries at 21, 28, 35
    assert not changed[:20].any() and not changed[20 + 2 * L + 1 :].any()


def test_one_attention_pass_per_layer():
    """No loop over time: each layer's attention runs once per call, starts or not."""
    mem = gtrxl(num_layers=3, memory_length=4)
    calls = []
    handles = [b.attn.register_forward_hook(lambda *_: calls.append(1)) for b in mem.blocks]
    try:
        start = no_starts(16, 3)
        start[[0, 3, 9, 15], [1, 0, 2, 2]] = True
        run(mem, torch.randn(16, 3, IN_DIM), start)
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == 3


def test_state_layout():
    mem = make("gtrxl", 5, hidden_size=12, num_layers=3, num_heads=3, memory_length=7)
    assert mem.out_dim == 12
    s = mem.initial_state(4)
    assert set(s) == {"memory", "valid"}
    assert s["memory"].shape == (4, 7, 3, 12) and s["memory"].dtype == torch.float32
    assert s["valid"].shape == (4, 7) and s["valid"].dtype == torch.bool
    assert not s["memory"].any() and not s["valid"].any()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hidden_size=10, num_heads=4),      # not divisible
        dict(memory_length=0),
        dict(num_layers=0),
        dict(num_heads=0),
        dict(hidden_size=-8),
        dict(ff_mult=0),
        dict(memory_length=2.5),
        dict(gate_bias=float("nan")),
        dict(gate_bias="2"),
        dict(window=8),                         # unknown keyword
    ],
)
def test_bad_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        make("gtrxl", 4, **kwargs)
