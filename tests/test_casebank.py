"""CaseBank (the standalone Q-valued store) and the ``casebank`` memory.

The memory contract (step loop, chunking, resets, gradients) is checked for every
registered memory in test_memory.py; here the casebank memory is compared with an
independent per-step reference (a Python list per env), and the store with hand
computations and with faiss.
"""

from __future__ import annotations

import math
import os
import statistics
import sys

import pytest
import torch

from rlmem.errors import ConfigError, RunError
from rlmem.memory import make
from rlmem.memory.casebank import CaseBank

torch.set_num_threads(1)
faiss = pytest.importorskip("faiss")
faiss.omp_set_num_threads(1)


def bank_with(keys, q=None, **kwargs) -> CaseBank:
    keys = torch.as_tensor(keys, dtype=torch.float32)
    bank = CaseBank(keys.shape[1], kwargs.pop("capacity", 16), **kwargs)
    bank.add(keys, None, 0.0 if q is None else torch.as_tensor(q, dtype=torch.float32))
    return bank


# --------------------------------------------------------------------------- search
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_and_faiss_agree_through_adds_and_evictions(metric):
    g = torch.Generator().manual_seed(0)
    d = 16
    exact = CaseBank(d, 300, metric=metric, index="exact", search_block_rows=64)  # several blocks
    flat = CaseBank(d, 300, metric=metric, index="faiss")
    for _ in range(5):  # 500 rows into 300: the last two adds evict (faiss must follow)
        keys = torch.randn(100, d, generator=g)
        q = torch.randn(100, generator=g)
        assert torch.equal(exact.add(keys, None, q), flat.add(keys, None, q))
        # 40 queries take faiss's BLAS path, 7 its direct path
        for m in (40, 7):
            queries = torch.randn(m, d, generator=g)
            s1, i1 = exact.search(queries, 10)
            s2, i2 = flat.search(queries, 10)
            assert torch.equal(i1, i2)
            torch.testing.assert_close(s1, s2, atol=1e-4, rtol=1e-5)
    assert len(exact) == len(flat) == 300 == flat._faiss.ntotal
    # read_dnd and retrieve go through the same search
    queries = torch.randn(20, d, generator=g)
    v1, n1, w1 = exact.read_dnd(queries, p=8)
    v2, n2, w2 = flat.read_dnd(queries, p=8)
    assert torch.equal(n1, n2)
    torch.testing.assert_close(v1, v2)
    thr = 0.1 if metric == "cosine" else -40.0
    r1 = exact.retrieve(queries, threshold=thr, k1=10, k2=4)
    r2 = flat.retrieve(queries, threshold=thr, k1=10, k2=4)
    assert torch.equal(r1[0], r2[0])


@pytest.mark.parametrize("index", ["exact", "faiss"])
def test_search_by_hand_with_padding(index):
    keys = [[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]
    bank = bank_with(keys, index=index)
    sims, ids = bank.search(torch.tensor([[1.0, 1.0]]), 5)
    assert ids.tolist() == [[1, 0, 2, -1, -1]]
    torch.testing.assert_close(sims[0, :3], torch.tensor([-1.0, -2.0, -5.0]))
    assert torch.isinf(sims[0, 3:]).all() and (sims[0, 3:] < 0).all()

    cos = bank_with([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]], metric="cosine", index=index)
    sims, ids = cos.search(torch.tensor([[3.0, 0.0]]), 2)
    assert ids.tolist() == [[0, 1]]
    torch.testing.assert_close(sims, torch.tensor([[1.0, 1 / math.sqrt(2)]]))

    empty = CaseBank(2, 4, index=index)
    sims, ids = empty.search(torch.zeros(3, 2), 2)
    assert (ids == -1).all() and torch.isinf(sims).all()


# --------------------------------------------------------------------------- eviction
def test_lru_evicts_the_least_recently_used_rows():
    bank = CaseBank(1, 3, payload_shape=(2,), payload_dtype=torch.int64)
    bank.add(torch.tensor([[0.0], [10.0], [20.0]]), torch.tensor([[0, 0], [1, 1], [2, 2]]))   # clock 1
    bank.search(torch.tensor([[0.1]]), 1)                    # clock 2: touches row 0
    bank.update_q(torch.tensor([2]), torch.tensor([1.0]), 0.5)  # clock 3: touches row 2
    ids = bank.add(torch.tensor([[30.0]]), torch.tensor([[3, 3]]))  # evicts row 1 (last used at 1)
    assert ids.tolist() == [1]
    assert bank.keys.flatten().tolist() == [0.0, 30.0, 20.0]
    assert bank.payloads.tolist() == [[0, 0], [3, 3], [2, 2]]
    assert bank.last_used.tolist() == [2, 4, 3] and bank.visits.tolist() == [0, 0, 1]
    # two more: rows 0 (used at 2) then 2 (at 3); the ids come back in eviction order
    ids = bank.add(torch.tensor([[40.0], [50.0]]), torch.tensor([[4, 4], [5, 5]]))
    assert ids.tolist() == [0, 2]
    assert bank.keys.flatten().tolist() == [40.0, 30.0, 50.0]


def test_utility_evicts_lowest_q_then_oldest():
    bank = CaseBank(1, 4, eviction="utility")
    bank.add(torch.tensor([[0.0], [1.0]]), None, torch.tensor([0.5, -1.0]))   # clock 1
    bank.add(torch.tensor([[2.0], [3.0]]), None, torch.tensor([2.0, -1.0]))   # clock 2
    bank.search(torch.tensor([[1.0]]), 1)  # clock 3: row 1 is now the more recent of the q = -1 pair
    ids = bank.add(torch.tensor([[7.0]]), None, 9.0)
    assert ids.tolist() == [3]                   # q = -1, last used at 2 (row 1: at 3)
    ids = bank.add(torch.tensor([[8.0], [9.0]]), None, 0.0)
    assert ids.tolist() == [1, 0]                # then q = -1 (row 1), then q = 0.5 (row 0)
    assert bank.keys.flatten().tolist() == [9.0, 8.0, 2.0, 7.0]
    assert bank.q.tolist() == [0.0, 0.0, 2.0, 9.0]


def test_add_more_than_capacity_and_bad_input_are_config_errors():
    bank = CaseBank(2, 3)
    with pytest.raises(ConfigError, match="capacity"):
        bank.add(torch.zeros(4, 2))
    with pytest.raises(ConfigError, match=r"\[N, 2\]"):
        bank.add(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="metric"):
        CaseBank(2, 3, metric="dot")
    with pytest.raises(ConfigError, match="eviction"):
        CaseBank(2, 3, eviction="fifo")
    bank.add(torch.zeros(2, 2))
    with pytest.raises(ConfigError, match="ids"):
        bank.update_q(torch.tensor([2]), torch.tensor([1.0]), 0.1)
    with pytest.raises(ConfigError, match="alpha"):
        bank.update_q(torch.tensor([0]), torch.tensor([1.0]), 1.5)


def test_stored_keys_are_data_not_graphs():
    keys = torch.randn(3, 2, requires_grad=True)
    bank = CaseBank(2, 4)
    bank.add(keys * 2, None, (keys * 3).sum(1))
    assert not bank.keys.requires_grad and not bank.q.requires_grad
    torch.testing.assert_close(bank.keys, 2 * keys.detach())


def test_faiss_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install rlmem\[faiss\]"):
        CaseBank(4, 8, index="faiss")


# --------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("index", ["exact", "faiss"])
def test_save_load_round_trip(tmp_path, index):
    g = torch.Generator().manual_seed(1)
    bank = CaseBank(8, 50, payload_shape=(3,), payload_dtype=torch.int16, metric="cosine",
                    eviction="utility", index=index)
    bank.add(torch.randn(50, 8, generator=g), torch.randint(0, 9, (50, 3), generator=g), torch.randn(50, generator=g))
    bank.write(torch.randn(10, 8, generator=g), None, torch.randn(10, generator=g), 0.3)  # evicts 10
    bank.update_q(torch.tensor([3, 3, 7]), torch.tensor([1.0, 2.0, 3.0]), 0.5)
    path = tmp_path / "bank.pt"
    bank.save(path)
    assert os.listdir(tmp_path) == ["bank.pt"]  # the temporary file is gone
    back = CaseBank.load(path)
    assert (back.key_dim, back.capacity, back.payload_shape, back.payload_dtype) == (8, 50, (3,), torch.int16)
    assert (back.metric, back.eviction, back.index) == ("cosine", "utility", index)
    assert (back.clock, len(back)) == (bank.clock, 50)
    for name in ("keys", "payloads", "q", "visits", "last_used"):
        assert torch.equal(getattr(back, name), getattr(bank, name)), name
    queries = torch.randn(5, 8, generator=g)
    assert torch.equal(back.search(queries, 4)[1], bank.search(queries, 4)[1])
    # the same eviction decision after the round trip
    new = torch.randn(3, 8, generator=g)
    assert torch.equal(back.add(new), bank.add(new))
    # a file holds tensors only: loadable with weights_only=True
    blob = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in blob.values())


def test_load_missing_or_corrupt_file_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="not found"):
        CaseBank.load(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(RunError, match="corrupt"):
        CaseBank.load(garbage)
    good = tmp_path / "good.pt"
    bank_with([[1.0, 2.0], [3.0, 4.0]]).save(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(RunError, match="corrupt"):
        CaseBank.load(truncated)
    wrong = tmp_path / "wrong.pt"
    blob = torch.load(good, weights_only=True)
    blob["q"] = blob["q"][:1]  # inconsistent row counts
    torch.save(blob, wrong)
    with pytest.raises(RunError, match="corrupt"):
        CaseBank.load(wrong)


def test_save_does_not_clobber_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "bank.pt"
    bank_with([[1.0]]).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        bank_with([[2.0]]).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["bank.pt"]


# --------------------------------------------------------------------------- NEC read
def test_read_dnd_matches_a_hand_computation():
    delta = 1e-3
    bank = bank_with([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], q=[1.0, 2.0, 3.0])
    query = torch.tensor([[0.4, 0.0]], requires_grad=True)
    values, ids, weights = bank.read_dnd(query, p=2, delta=delta)
    assert ids.tolist() == [[0, 1]]                          # d^2 = 0.16, 0.36 (4.16 left out)
    k = [1 / (0.16 + delta), 1 / (0.36 + delta)]
    w = [k[0] / sum(k), k[1] / sum(k)]
    torch.testing.assert_close(weights, torch.tensor([w]))
    torch.testing.assert_close(values, torch.tensor([w[0] * 1.0 + w[1] * 2.0]))
    # differentiable in the query: compare with a central finite difference
    values.sum().backward()
    eps = 1e-3
    fd = []
    for j in range(2):
        e = torch.zeros(1, 2)
        e[0, j] = eps
        hi = bank.read_dnd(query.detach() + e, p=2, delta=delta)[0]
        lo = bank.read_dnd(query.detach() - e, p=2, delta=delta)[0]
        fd.append(float(hi - lo) / (2 * eps))
    torch.testing.assert_close(query.grad, torch.tensor([fd]), atol=2e-3, rtol=2e-2)
    # more neighbours than rows: padding has weight 0; an exact match dominates
    values, ids, weights = bank.read_dnd(torch.tensor([[0.0, 2.0]]), p=5, delta=delta)
    assert ids[0, 3:].tolist() == [-1, -1] and weights[0, 3:].tolist() == [0.0, 0.0]
    assert weights[0, 0] > 0.99 and ids[0, 0] == 2
    torch.testing.assert_close(weights.sum(1), torch.ones(1))
    # an empty bank reads 0
    values, ids, weights = CaseBank(2, 4).read_dnd(torch.ones(3, 2), p=2)
    assert values.tolist() == [0.0] * 3 and (ids == -1).all() and not weights.any()


# --------------------------------------------------------------------------- MemRL retrieval
def z(xs):
    mean, std = statistics.fmean(xs), statistics.pstdev(xs)
    return [(x - mean) / std for x in xs]


def test_retrieve_threshold_filter_and_rerank_flip():
    # Unit keys at known cosines to the query e0: A 0.95, B 0.9, C 0.5, D 0.1 (below 0.3).
    cosines = [0.95, 0.9, 0.5, 0.1]
    keys = [[c, math.sqrt(1 - c * c)] for c in cosines]
    q = [0.0, 1.0, 0.5, 100.0]      # A: high sim, low Q; B: lower sim, high Q; D: huge Q
    bank = bank_with(keys, q=q, metric="cosine")
    query = torch.tensor([[1.0, 0.0]])
    # similarity alone puts A first
    assert bank.search(query, 1)[1].tolist() == [[0]]
    ids, scores = bank.retrieve(query, threshold=0.3, k1=10, k2=3)
    # D is filtered out (and does not enter the z statistics); B overtakes A
    zs, zq = z(cosines[:3]), z(q[:3])
    expected = [0.5 * a + 0.5 * b for a, b in zip(zs, zq)]
    order = sorted(range(3), key=lambda i: -expected[i])
    assert order == [1, 0, 2] and ids.tolist() == [order]
    torch.testing.assert_close(scores, torch.tensor([[expected[i] for i in order]]))
    # weights decide: similarity only keeps the similarity order
    ids, _ = bank.retrieve(query, threshold=0.3, k1=10, k2=3, w_sim=1.0, w_q=0.0)
    assert ids.tolist() == [[0, 1, 2]]
    # k2 larger than the candidates: -1 / -inf padding
    ids, scores = bank.retrieve(query, threshold=0.92, k1=10, k2=3)
    assert ids.tolist() == [[0, -1, -1]] and scores[0, 0] == 0.0 and torch.isinf(scores[0, 1:]).all()
    # k1 limits phase A to the most similar rows
    ids, _ = bank.retrieve(query, threshold=-1.0, k1=2, k2=2)
    assert sorted(ids[0].tolist()) == [0, 1]


def test_retrieve_clips_the_q_zscore():
    # 20 candidates, one with a Q outlier: its raw z(Q) = sqrt(19) ~ 4.36 is clipped to 3.
    n = 20
    cosines = [0.99 - 0.01 * i for i in range(n)]
    keys = [[c, math.sqrt(1 - c * c)] for c in cosines]
    q = [0.0] * n
    q[n - 1] = 50.0  # the least similar one
    bank = bank_with(keys, q=q, metric="cosine", capacity=n)
    query = torch.tensor([[1.0, 0.0]])
    assert math.isclose(z(q)[n - 1], math.sqrt(n - 1))
    ids, scores = bank.retrieve(query, threshold=0.0, k1=n, k2=n, z_clip=3.0)
    zs = z(cosines)
    zq = [max(-3.0, min(3.0, v)) for v in z(q)]
    expected = [0.5 * a + 0.5 * b for a, b in zip(zs, zq)]
    got = dict(zip(ids[0].tolist(), scores[0].tolist()))
    for i in range(n):
        assert math.isclose(got[i], expected[i], rel_tol=1e-4, abs_tol=1e-5), i
    # without the clip the outlier would come first; clipped it ranks below the top row
    unclipped = 0.5 * zs[n - 1] + 0.5 * math.sqrt(n - 1)
    assert unclipped > expected[0] > expected[n - 1]
    assert ids[0, 0] == 0
    ids, _ = bank.retrieve(query, threshold=0.0, k1=n, k2=1, z_clip=10.0)
    assert ids.tolist() == [[n - 1]]


# --------------------------------------------------------------------------- Q updates
def test_update_q_arithmetic():
    bank = bank_with([[0.0], [1.0], [2.0]], q=[0.0, 10.0, -4.0])
    clock = bank.clock
    bank.update_q(torch.tensor([0, -1, 2, 0]), torch.tensor([1.0, 99.0, 0.0, 1.0]), 0.5)
    # row 0 twice, in order: 0 -> 0.5 -> 0.75; row 2: -4 -> -2; -1 ignored; row 1 untouched
    assert bank.q.tolist() == [0.75, 10.0, -2.0]
    assert bank.visits.tolist() == [2, 0, 1]
    assert bank.last_used.tolist() == [clock + 1, clock, clock + 1]
    bank.update_q(torch.tensor([1]), torch.tensor([0.0]), 0.1)
    assert math.isclose(bank.q[1].item(), 9.0, rel_tol=1e-6)


def test_write_updates_an_exact_match_else_adds():
    bank = CaseBank(2, 8, payload_shape=(), payload_dtype=torch.int64)
    ids = bank.write(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([5, 6]), torch.tensor([2.0, 4.0]), 0.5)
    assert ids.tolist() == [0, 1] and bank.q.tolist() == [2.0, 4.0] and bank.visits.tolist() == [1, 1]
    # an exact match gets Q <- Q + alpha (G - Q) and keeps its payload; a near key is new;
    # a key repeated inside the call is added once, then updated in order
    keys = torch.tensor([[1.0, 0.0], [1.0, 1e-3], [3.0, 3.0], [3.0, 3.0]])
    ids = bank.write(keys, torch.tensor([7, 8, 9, 10]), torch.tensor([4.0, 1.0, 6.0, 2.0]), 0.5)
    assert ids.tolist() == [0, 2, 3, 3]
    assert bank.q.tolist() == [3.0, 4.0, 1.0, 4.0]       # row 3: 6, then 6 + 0.5 (2 - 6)
    assert bank.visits.tolist() == [2, 1, 1, 2]
    assert bank.payloads.tolist() == [5, 6, 8, 9]
    # a tolerance turns the near key into a match of row 2 (its nearest)
    ids = bank.write(torch.tensor([[1.0, 2e-3]]), None, torch.tensor([3.0]), 0.5, match_tol=1e-2)
    assert ids.tolist() == [2] and bank.q[2].item() == 2.0 and len(bank) == 4


def test_write_never_evicts_the_rows_it_matches():
    bank = CaseBank(1, 3, eviction="utility")
    bank.write(torch.tensor([[0.0], [1.0], [2.0]]), None, torch.tensor([-5.0, 1.0, 2.0]), 0.5)
    # row 0 has the lowest Q, but this call matches it: row 1 goes instead
    ids = bank.write(torch.tensor([[0.0], [9.0]]), None, torch.tensor([-5.0, 0.0]), 0.5)
    assert ids.tolist() == [0, 1]
    assert bank.keys.flatten().tolist() == [0.0, 9.0, 2.0]


# --------------------------------------------------------------------------- the memory
def reference_memory(mem, x, start, C, p):
    """A per-step loop over a Python list per env (the last C entries of the episode)."""
    T, B, _ = x.shape
    banks = [[] for _ in range(B)]
    ys = torch.zeros(T, B, mem.out_dim)
    with torch.no_grad():
        for t in range(T):
            for b in range(B):
                if start[t, b]:
                    banks[b] = []
                h = mem.key(x[t, b])
                read = torch.zeros(mem.value_dim)
                if banks[b]:
                    d2 = torch.stack([(h - k).pow(2).sum() for k, _ in banks[b]])
                    near = d2.argsort()[:p]
                    kern = 1 / (d2[near] + mem.delta)
                    w = kern / kern.sum()
                    read = sum(wi * banks[b][i][1] for wi, i in zip(w, near.tolist()))
                ys[t, b] = torch.tanh(mem.out(torch.cat([torch.tanh(mem.proj(x[t, b])), read])))
                banks[b] = (banks[b] + [(h, mem.value(x[t, b]))])[-C:]
    return ys


@pytest.mark.parametrize("C, p", [(3, 2), (5, 5), (8, 3)])
def test_memory_equals_a_per_step_reference(C, p):
    torch.manual_seed(0)
    mem = make("casebank", 3, hidden_size=6, key_dim=4, value_dim=3, capacity=C, num_neighbors=p)
    g = torch.Generator().manual_seed(C)
    T, B = 20, 4
    x = torch.randn(T, B, 3, generator=g)
    start = torch.rand(T, B, generator=g) < 0.15
    start[0] = True  # the reference starts from empty banks
    with torch.no_grad():
        y, state = mem(x, mem.initial_state(B), start)
    torch.testing.assert_close(y, reference_memory(mem, x, start, C, p), atol=1e-5, rtol=1e-5)
    # the state: every env holds min(C, steps since its last start) entries, ages distinct
    since = T - torch.where(start, torch.arange(T).unsqueeze(1), 0).amax(0)
    assert state["filled"].sum(1).tolist() == torch.clamp(since, max=C).tolist()
    ages = torch.where(state["filled"], state["age"], -1)
    for b in range(B):
        assert sorted(a for a in ages[b].tolist() if a >= 0) == list(range(min(C, int(since[b]))))


def read_of(mem, x, start, state=None):
    """The read vector the memory feeds its output layer, [T, B, value_dim]."""
    seen = []
    handle = mem.out.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    try:
        with torch.no_grad():
            mem(x, mem.initial_state(x.shape[1]) if state is None else state, start)
    finally:
        handle.remove()
    return seen[0][..., mem.hidden_size:]


def recall_memory(capacity: int):
    """Keys = inputs, values = 10 x inputs, one neighbour: the read is the stored value of
    the nearest earlier input."""
    mem = make("casebank", 2, hidden_size=4, key_dim=2, value_dim=2, capacity=capacity, num_neighbors=1)
    with torch.no_grad():
        mem.key.weight.copy_(torch.eye(2))
        mem.key.bias.zero_()
        mem.value.weight.copy_(10 * torch.eye(2))
        mem.value.bias.zero_()
    return mem


def test_memory_read_returns_the_value_of_the_nearest_stored_key():
    mem = recall_memory(capacity=4)
    seq = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.9, 0.1]]).unsqueeze(1)  # [T, 1, 2]
    start = torch.zeros(4, 1, dtype=torch.bool)
    start[0] = True
    read = read_of(mem, seq, start)[:, 0]
    assert read[0].tolist() == [0.0, 0.0]                    # empty bank
    torch.testing.assert_close(read[1], torch.tensor([10.0, 0.0]))   # only [1, 0] stored
    torch.testing.assert_close(read[3], torch.tensor([10.0, 0.0]))   # [0.9, 0.1] is nearest [1, 0]
    # with capacity 2, [1, 0] has been overwritten by step 3: the nearest left is [0, 1]
    read = read_of(recall_memory(capacity=2), seq, start)[:, 0]
    torch.testing.assert_close(read[3], torch.tensor([0.0, 10.0]))
    # a start at step 3 empties the bank
    start[3] = True
    assert read_of(mem, seq, start)[3, 0].tolist() == [0.0, 0.0]


def test_memory_recalls_across_chunks():
    """The bank carried in the state serves reads in the next call."""
    mem = recall_memory(capacity=4)
    first = torch.tensor([[[0.0, -2.0]], [[3.0, 3.0]]])
    start = torch.tensor([[True], [False]])
    with torch.no_grad():
        _, state = mem(first, mem.initial_state(1), start)
    read = read_of(mem, torch.tensor([[[0.1, -1.9]]]), torch.tensor([[False]]), state)
    torch.testing.assert_close(read[0, 0], torch.tensor([0.0, -20.0]))


def test_memory_bad_kwargs():
    with pytest.raises(ConfigError, match="num_neighbors"):
        make("casebank", 3, capacity=4, num_neighbors=5)
    with pytest.raises(ConfigError):
        make("casebank", 3, capacity=0)
