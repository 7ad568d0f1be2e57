"""The memory contract (DESIGN.md §2), checked for every registered memory.

Every test that takes ``name`` is parametrised over :func:`rlmem.memory.names`, so a
memory registered later is held to the same contract without editing this file.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.errors import ConfigError, UnknownNameError
from rlmem.memory import Memory, detach_state, make, map_state, names

IN_DIM = 3
TOL = dict(atol=1e-5, rtol=1e-5)
HYPOTHESIS = settings(max_examples=30, deadline=None)

# Small configurations keep the file fast. A memory missing here is tested with its
# defaults; add an entry when registering a memory whose defaults are heavy.
SMALL = {
    "none": dict(hidden_size=8),
    "gru": dict(hidden_size=8, num_layers=2),
    "lstm": dict(hidden_size=8, num_layers=2),
    "casebank": dict(hidden_size=8, key_dim=4, value_dim=3, capacity=4, num_neighbors=2),
    "gtrxl": dict(hidden_size=8, num_layers=2, num_heads=2, memory_length=4, ff_mult=2),
}


@functools.lru_cache(maxsize=None)
def built(name: str) -> Memory:
    """One seeded instance per memory, shared by the tests (they never train it)."""
    torch.manual_seed(0)
    return make(name, IN_DIM, **SMALL.get(name, {}))


# --------------------------------------------------------------------------- helpers
def leaves(state) -> list[torch.Tensor]:
    """The tensors of a state tree, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    parts = state.values() if isinstance(state, dict) else state
    return [leaf for part in parts for leaf in leaves(part)]


def assert_state_close(a, b, rows=None) -> None:
    """Leaf-wise equality of two states (only batch ``rows`` if given)."""
    for x, y in zip(leaves(a), leaves(b), strict=True):
        if rows is not None:
            x, y = x[rows], y[rows]
        torch.testing.assert_close(x, y, **TOL)


def warm_state(mem: Memory, B: int, g: torch.Generator):
    """A non-trivial state: the result of a previous call from the initial state."""
    x = torch.randn(5, B, IN_DIM, generator=g)
    start = torch.zeros(5, B, dtype=torch.bool)
    with torch.no_grad():
        return detach_state(mem(x, mem.initial_state(B), start)[1])


def step_loop(mem: Memory, x, state, start):
    """The reference: T one-step calls threading the state."""
    ys = []
    for t in range(x.shape[0]):
        y, state = mem(x[t : t + 1], state, start[t : t + 1])
        ys.append(y)
    return torch.cat(ys), state


@st.composite
def chunks(draw):
    """(T, B, start [T, B] bool, generator) with start densities from none to every step."""
    T = draw(st.integers(1, 24))
    B = draw(st.integers(1, 5))
    density = draw(st.sampled_from([0.0, 0.05, 0.15, 0.4, 1.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    start = torch.rand(T, B, generator=g) < density
    return T, B, start, g


def case(mem, T, B, start, g):
    x = torch.randn(T, B, IN_DIM, generator=g)
    return x, warm_state(mem, B, g)


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("name", names())
@HYPOTHESIS
@given(c=chunks())
def test_sequence_equals_step_loop(name, c):
    T, B, start, g = c
    mem = built(name)
    x, s0 = case(mem, T, B, start, g)
    with torch.no_grad():
        y, s = mem(x, s0, start)
        y_ref, s_ref = step_loop(mem, x, s0, start)
    torch.testing.assert_close(y, y_ref, **TOL)
    assert_state_close(s, s_ref)


@pytest.mark.parametrize("name", names())
@HYPOTHESIS
@given(c=chunks())
def test_replay_equals_forward_output(name, c):
    """``replay`` (training passes that discard the final state) gives forward's ``y``
    and the same gradients, through whichever path the chunk takes."""
    T, B, start, g = c
    mem = built(name)
    x, s0 = case(mem, T, B, start, g)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = mem(xa, s0, start)[0]
    y_replay = mem.replay(xb, s0, start)
    torch.testing.assert_close(y_replay, y, **TOL)
    w = torch.randn(y.shape, generator=g)
    (y * w).sum().backward()
    (y_replay * w).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", names())
@HYPOTHESIS
@given(c=chunks(), data=st.data())
def test_chunked_equals_unchunked(name, c, data):
    T, B, start, g = c
    mem = built(name)
    x, s0 = case(mem, T, B, start, g)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=T)) if T > 1 else set())
    with torch.no_grad():
        y, s = mem(x, s0, start)
        ys, state = [], s0
        for a, b in zip([0, *cuts], [*cuts, T]):
            y_part, state = mem(x[a:b], state, start[a:b])
            ys.append(y_part)
    torch.testing.assert_close(y, torch.cat(ys), **TOL)
    assert_state_close(s, state)


@pytest.mark.parametrize("name", names())
@HYPOTHESIS
@given(c=chunks())
def test_nothing_crosses_an_episode_start(name, c):
    """Replace everything before each env's last start (inputs, and the incoming state of
    every env): outputs from that start on, and the final state, must not change."""
    T, B, start, g = c
    mem = built(name)
    x, s0 = case(mem, T, B, start, g)
    t = torch.arange(T).unsqueeze(1)
    last = torch.where(start, t, -1).amax(0)               # [B] last start, -1 if none
    before = t < last                                       # [T, B] steps before it
    x_alt = torch.where(before.unsqueeze(-1), torch.randn(T, B, IN_DIM, generator=g), x)
    s_alt = warm_state(mem, B, g)                           # another valid history
    with torch.no_grad():
        y, s = mem(x, s0, start)
        y2, s2 = mem(x_alt, s_alt, start)
    after = (t >= last) & (last >= 0)
    torch.testing.assert_close(y2[after], y[after], **TOL)
    assert_state_close(s2, s, rows=last >= 0)
    if before.any():  # the perturbation did reach the outputs it is allowed to change
        assert not torch.allclose(y2[before], y[before])


def loss_and_grads(mem: Memory, x, s0, start, run):
    """Gradients of a fixed random function of (y, final state) w.r.t. x, params, s0."""
    x = x.clone().requires_grad_(True)
    s0 = map_state(lambda s: s.clone().requires_grad_(s.is_floating_point()), s0)
    y, s = run(mem, x, s0, start)
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g)).sum()
    for leaf in leaves(s):
        if leaf.is_floating_point():
            loss = loss + (leaf * torch.randn(leaf.shape, generator=g)).sum()
    wrt = [x, *mem.parameters(), *(s for s in leaves(s0) if s.requires_grad)]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [torch.zeros_like(w) if gr is None else gr for w, gr in zip(wrt, grads)], s0


def one_call(mem, x, s0, start):
    return mem(x, s0, start)


@pytest.mark.parametrize("name", names())
@settings(max_examples=15, deadline=None)
@given(c=chunks())
def test_gradients_equal_step_loop(name, c):
    T, B, start, g = c
    mem = built(name)
    x, s0 = case(mem, T, B, start, g)
    fast, s0_in = loss_and_grads(mem, x, s0, start, one_call)
    ref, _ = loss_and_grads(mem, x, s0, start, step_loop)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # An env that starts an episode at t = 0 ignores its incoming state entirely.
    n_x_params = 1 + len(list(mem.parameters()))
    for grad in fast[n_x_params:]:
        assert not grad[start[0]].any()


# Start patterns that exercise each path of the recurrent memories (see recurrent.py).
PATTERNS = {
    "act (T=1)": (1, []),
    "no start": (16, []),
    "starts at t=0 only": (16, [(0, 0), (0, 2)]),
    "starts inside": (16, [(0, 1), (3, 0), (4, 0), (9, 2), (15, 1), (15, 2)]),
    "every step": (16, [(t, b) for t in range(16) for b in range(3)]),
}


def pattern(key):
    T, ones = PATTERNS[key]
    start = torch.zeros(T, 3, dtype=torch.bool)
    for t, b in ones:
        start[t, b] = True
    return start


@pytest.mark.parametrize("key", list(PATTERNS))
@pytest.mark.parametrize("name", names())
def test_each_path_equals_step_loop_with_gradients(name, key):
    start = pattern(key)
    mem = built(name)
    g = torch.Generator().manual_seed(3)
    x, s0 = case(mem, start.shape[0], 3, start, g)
    with torch.no_grad():
        y, s = mem(x, s0, start)
        y_ref, s_ref = step_loop(mem, x, s0, start)
    torch.testing.assert_close(y, y_ref, **TOL)
    assert_state_close(s, s_ref)
    fast, _ = loss_and_grads(mem, x, s0, start, one_call)
    ref, _ = loss_and_grads(mem, x, s0, start, step_loop)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- recurrent
@pytest.mark.parametrize("name", ["gru", "lstm"])
@pytest.mark.parametrize("key", list(PATTERNS))
def test_recurrent_calls_the_rnn_once(name, key):
    """No time loop: paths 2-3 are one call of nn.GRU / nn.LSTM (path 3' is tested below);
    path 1 (T = 1) calls the fused cell functions on the module's weights instead."""
    mem = packed(name)
    calls = []
    handle = mem.rnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        start = pattern(key)
        mem(torch.randn(start.shape[0], 3, IN_DIM), mem.initial_state(3), start)
    finally:
        handle.remove()
    assert len(calls) == (0 if start.shape[0] == 1 else 1)


@functools.lru_cache(maxsize=None)
def packed(name: str) -> Memory:
    """A recurrent memory that takes the packed path 3 (the CPU default is path 3')."""
    torch.manual_seed(0)
    mem = make(name, IN_DIM, **SMALL[name])
    mem.cpu_padded = False
    return mem


@functools.lru_cache(maxsize=None)
def blocked(name: str) -> Memory:
    """A recurrent memory that runs path 3 in CPU blocks of 8 steps even for tiny batches."""
    torch.manual_seed(0)
    mem = make(name, IN_DIM, **SMALL[name])
    mem.cpu_block_rows = 1  # blocks of max(8, 1 // B) = 8 steps
    mem.cpu_padded = False
    return mem


@pytest.mark.parametrize("name", ["gru", "lstm"])
@settings(max_examples=30, deadline=None)
@given(c=chunks())
def test_packed_path_equals_step_loop(name, c):
    """Path 3 (the CPU default is path 3'; path 3 is what a GPU runs)."""
    T, B, start, g = c
    mem = packed(name)
    x, s0 = case(mem, T, B, start, g)
    fast, _ = loss_and_grads(mem, x, s0, start, one_call)
    ref, _ = loss_and_grads(mem, x, s0, start, step_loop)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_lstm_padded_path_calls_once_per_distinct_last_start():
    """Path 3': one padded call for the outputs, one per distinct start of the last segments."""
    mem = built("lstm")
    assert mem.cpu_padded
    calls = []
    handle = mem.rnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        start = pattern("starts inside")  # last segments start at t = 15 (envs 1, 2) and 4 (env 0)
        mem(torch.randn(16, 3, IN_DIM), mem.initial_state(3), start)
    finally:
        handle.remove()
    assert len(calls) == 1 + 2
    torch.manual_seed(0)
    mem = make("lstm", IN_DIM, **SMALL["lstm"])
    mem.cpu_flush = False  # replays take path 3' too (the padded call alone)
    calls.clear()
    handle = mem.rnn.register_forward_hook(lambda *_: calls.append(1))
    try:  # a training replay needs no final state: the padded call alone
        mem.replay(torch.randn(16, 3, IN_DIM), mem.initial_state(3), start)
    finally:
        handle.remove()
    assert len(calls) == 1


def replay_only(mem, x, s0, start):
    return mem.replay(x, s0, start), ()


def step_loop_outputs(mem, x, s0, start):
    return step_loop(mem, x, s0, start)[0], ()


@pytest.mark.parametrize("name", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
@settings(max_examples=25, deadline=None)
@given(c=chunks())
def test_recurrent_flush_replay_equals_step_loop_with_gradients(name, layers, c):
    """Path 4 (CPU replays with flush steps, module doc of recurrent.py): outputs and the
    gradients w.r.t. inputs, every parameter and the incoming state equal the step loop's."""
    T, B, start, g = c
    torch.manual_seed(0)
    mem = make(name, IN_DIM, **{**SMALL[name], "num_layers": layers})
    mem._flush_is_cheaper = lambda start: True  # path 4 for every chunk with a start inside
    x, s0 = case(mem, T, B, start, g)
    with torch.no_grad():
        torch.testing.assert_close(mem.replay(x, s0, start), step_loop(mem, x, s0, start)[0], **TOL)
    fast, _ = loss_and_grads(mem, x, s0, start, replay_only)
    ref, _ = loss_and_grads(mem, x, s0, start, step_loop_outputs)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_recurrent_replays_take_the_cheaper_of_flush_and_padded():
    """The cost model picks path 4 where rows are many (a preset's minibatch: 8 envs x 64
    steps, ~25-step episodes) and path 3' where one env's short episodes can run side by
    side; torch's GRU step loop weighs steps more than oneDNN's LSTM does (measured)."""
    def chunk(T, B, mean_episode):
        start = torch.rand(T, B, generator=torch.Generator().manual_seed(0)) < 1 / mean_episode
        start[0] = True
        return start

    lstm, gru = make("lstm", IN_DIM, hidden_size=8), make("gru", IN_DIM, hidden_size=8)
    assert lstm._flush_is_cheaper(chunk(64, 8, 25)) and gru._flush_is_cheaper(chunk(64, 16, 25))
    assert not lstm._flush_is_cheaper(chunk(128, 1, 12)) and not gru._flush_is_cheaper(chunk(128, 2, 12))


@pytest.mark.parametrize("name", ["gru", "lstm"])
@settings(max_examples=20, deadline=None)
@given(c=chunks())
def test_recurrent_cpu_blocks_equal_step_loop(name, c):
    """The CPU time blocks (module doc of recurrent.py) are exact, gradients included."""
    T, B, start, g = c
    mem = blocked(name)
    x, s0 = case(mem, T, B, start, g)
    fast, _ = loss_and_grads(mem, x, s0, start, one_call)
    ref, _ = loss_and_grads(mem, x, s0, start, step_loop)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        y, s = mem(x, s0, start)
        y_ref, s_ref = step_loop(mem, x, s0, start)
    torch.testing.assert_close(y, y_ref, **TOL)
    assert_state_close(s, s_ref)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_recurrent_cpu_blocks_split_only_chunks_with_starts_inside(name):
    mem = blocked(name)
    calls = []
    handle = mem.rnn.register_forward_hook(lambda *_: calls.append(1))
    try:
        for key, expected in [("no start", 1), ("starts at t=0 only", 1), ("starts inside", 2)]:
            calls.clear()
            start = pattern(key)
            mem(torch.randn(16, 3, IN_DIM), mem.initial_state(3), start)
            assert len(calls) == expected, key
    finally:
        handle.remove()


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_recurrent_state_gradient_reaches_continuing_envs(name):
    """Envs 0 and 2 continue their state into the chunk (even with starts later in it):
    their incoming state gets a gradient; env 1 (start at t = 0) gets none."""
    start = pattern("starts inside")  # env 1 starts at t=0; envs 0 and 2 start later
    mem = built(name)
    x, s0 = case(mem, 16, 3, start, torch.Generator().manual_seed(4))
    grads, _ = loss_and_grads(mem, x, s0, start, one_call)
    for grad in grads[1 + len(list(mem.parameters())) :]:  # [B, layers, H] per part
        assert grad[0].abs().sum() > 0 and grad[2].abs().sum() > 0
        assert not grad[1].any()


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_recurrent_state_layout(name):
    mem = make(name, 4, hidden_size=6, num_layers=3)
    state = mem.initial_state(5)
    parts = state if name == "lstm" else (state,)
    assert isinstance(state, tuple) == (name == "lstm")
    for p in parts:
        assert p.shape == (5, 3, 6) and p.dtype == torch.float32 and not p.any()


def test_none_is_an_mlp_or_the_identity():
    mlp = make("none", 4, hidden_size=6, num_layers=2)
    assert mlp.out_dim == 6
    ident = make("none", 4, num_layers=0)
    x = torch.randn(7, 2, 4)
    y, state = ident(x, ident.initial_state(2), torch.ones(7, 2, dtype=torch.bool))
    assert ident.out_dim == 4 and torch.equal(y, x) and state.shape == (2, 0)


# --------------------------------------------------------------------------- shapes, registry
@pytest.mark.parametrize("name", names())
def test_shapes_and_dtypes(name):
    mem = built(name)
    T, B = 6, 4
    start = torch.zeros(T, B, dtype=torch.bool)
    start[2, 1] = True
    s0 = mem.initial_state(B)
    y, s = mem(torch.randn(T, B, IN_DIM), s0, start)
    assert y.shape == (T, B, mem.out_dim) and y.dtype == torch.float32
    assert mem.in_dim == IN_DIM
    for leaf in leaves(s0) + leaves(s):
        assert leaf.shape[0] == B
    map_state(lambda a, b: None, s0, s)  # same tree structure before and after


def test_registry_lists_the_core_memories():
    assert {"none", "gru", "lstm"} <= set(names())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        make("nope", 4)
    for name in names():
        assert name in str(err.value)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("gru", dict(hiden_size=8)),
        ("lstm", dict(hidden_size=0)),
        ("gru", dict(num_layers=0)),
        ("none", dict(num_layers=-1)),
        ("none", dict(depth=2)),
    ],
)
def test_bad_kwargs_are_config_errors(name, kwargs):
    with pytest.raises(ConfigError):
        make(name, 4, **kwargs)
