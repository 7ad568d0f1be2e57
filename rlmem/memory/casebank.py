"""``casebank``: Q-valued episodic case banks (NEC's DND, MemRL, Memento).

Two things live here:

* :class:`CaseBank`, a standalone store of cases for agents that remember across
  episodes and tasks. A row is a key [d], a payload (an action, a plan id, an embedding),
  a value ``q``, a visit count and a ``last_used`` stamp. Reads are exact kNN in torch or,
  for large banks, through a faiss flat index with the same results; the NEC read
  (inverse-distance kernel over the p nearest keys), the MemRL two-phase retrieval
  (similarity filter, then a z(sim) + z(Q) rerank), the tabular Q update and the NEC write
  (update an existing key, else add) are methods. Full banks evict the least recently
  used row or the row of lowest Q. Saved atomically, tensors only.

* :class:`CaseBankMemory`, registered as ``"casebank"``: a per-episode DND inside the
  recurrent state, so PPO can train it like any other :class:`~rlmem.memory.base.Memory`.
  Each step embeds ``x_t`` into a key, reads the bank with the NEC kernel, outputs an MLP
  of ``[proj(x_t), read]`` and then writes ``(key_t, value(x_t))`` into the oldest slot.

Formulas (see REFERENCES.md, "Episodic case banks"):

* NEC read: ``k_i = 1 / (||h - h_i||^2 + delta)`` over the p nearest keys,
  ``w_i = k_i / sum_j k_j``, ``value = sum_i w_i v_i``.
* Tabular update: ``Q <- Q + alpha (target - Q)``.
* MemRL: candidates = the top ``k1`` with ``sim >= threshold``; score =
  ``w_sim z(sim) + w_q clip(z(Q), -z_clip, z_clip)``, z-scored per query over its
  candidates; keep the top ``k2``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rlmem.errors import ConfigError, RunError
from rlmem.memory.base import Memory, State, register

METRICS = ("l2", "cosine")
EVICTIONS = ("lru", "utility")
INDEXES = ("exact", "faiss")
_FORMAT = 1  # version of the saved file layout


def _import_faiss():
    try:
        import faiss  # noqa: PLC0415  (optional dependency, imported only when asked for)
    except ImportError:
        raise ConfigError("index='faiss' needs faiss: pip install rlmem[faiss]") from None
    return faiss


def _choice(what: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ConfigError(f"CaseBank: unknown {what} {value!r}; valid: {', '.join(valid)}")
    return value


def _occurrence_rank(ids: Tensor) -> Tensor:
    """For each entry of ``ids`` [N], how many earlier entries hold the same id."""
    n = ids.numel()
    sorted_ids, order = ids.sort(stable=True)
    pos = torch.arange(n, device=ids.device)
    new_group = torch.ones(n, dtype=torch.bool, device=ids.device)
    new_group[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_start = torch.where(new_group, pos, 0).cummax(0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - group_start
    return rank


# =========================================================================== the store
class CaseBank:
    """A Q-valued episodic store.

    Rows: key [d] float32, payload [*payload_shape] (payload_dtype), q float32,
    visits int64, last_used int64 (a step counter the bank advances on every read/write
    call; a call stamps the rows it returns or writes).

    A row's id is its row index, stable for as long as the row lives; an evicted row's
    id is reused by the case that replaces it. Rows ``0 .. len(bank) - 1`` are filled.

    Args:
        key_dim: d, the width of keys.
        capacity: the most rows; adding to a full bank evicts.
        payload_shape: shape of one payload (``()``: a scalar per row).
        payload_dtype: dtype of the payloads.
        metric: ``"l2"`` (NEC; ``search`` sims are minus the squared distance) or
            ``"cosine"`` (MemRL / Memento; sims are cosines).
        eviction: ``"lru"`` (oldest ``last_used``, ties: lowest id) or ``"utility"``
            (lowest q, ties: oldest ``last_used``, then lowest id).
        index: ``"exact"`` (blocked matmul + topk in torch) or ``"faiss"`` (an
            ``IndexIDMap2`` over ``IndexFlatL2`` / ``IndexFlatIP`` of unit keys: the same
            ids and sims up to float rounding, on faiss's CPU kernels). The faiss index is
            kept in sync on every add; an add that evicts costs one ``remove_ids`` (O(len)
            memmove and id-map rebuild) on top of the add, so evict in batches.
        device: where the torch tensors live (faiss always searches on the CPU).
        search_block_rows: exact search scans the bank in blocks of this many rows, so
            its memory is O(M * block) rather than O(M * len).
    """

    def __init__(
        self,
        key_dim: int,
        capacity: int,
        *,
        payload_shape: Sequence[int] = (),
        payload_dtype: torch.dtype = torch.float32,
        metric: str = "l2",
        eviction: str = "lru",
        index: str = "exact",
        device: torch.device | str = "cpu",
        search_block_rows: int = 65536,
    ):
        if int(key_dim) < 1 or int(capacity) < 1 or int(search_block_rows) < 1:
            raise ConfigError(
                f"CaseBank: need key_dim, capacity, search_block_rows >= 1; got key_dim={key_dim}, "
                f"capacity={capacity}, search_block_rows={search_block_rows}"
            )
        if not isinstance(payload_dtype, torch.dtype):
            raise ConfigError(f"CaseBank: payload_dtype must be a torch.dtype, not {payload_dtype!r}")
        self.key_dim = int(key_dim)
        self.capacity = int(capacity)
        self.payload_shape = tuple(int(s) for s in payload_shape)
        if any(s < 0 for s in self.payload_shape):
            raise ConfigError(f"CaseBank: payload_shape must be non-negative, got {self.payload_shape}")
        self.payload_dtype = payload_dtype
        self.metric = _choice("metric", metric, METRICS)
        self.eviction = _choice("eviction", eviction, EVICTIONS)
        self.index = _choice("index", index, INDEXES)
        self.device = torch.device(device)
        self.search_block_rows = int(search_block_rows)
        self._size = 0
        self._clock = 0
        self._alloc(min(self.capacity, 1024))
        self._faiss = self._new_faiss_index() if self.index == "faiss" else None

    # ------------------------------------------------------------------ storage
    def _alloc(self, rows: int) -> None:
        """(Re)allocate storage for ``rows`` rows, keeping the filled ones. Storage grows
        by doubling up to ``capacity``, so a large empty bank costs nothing up front."""
        old = getattr(self, "_keys", None)
        n = self._size
        dev = self.device

        def grow(t: Tensor | None, shape, dtype) -> Tensor:
            new = torch.zeros(rows, *shape, dtype=dtype, device=dev)
            if t is not None and n:
                new[:n] = t[:n]
            return new

        self._keys = grow(old, (self.key_dim,), torch.float32)
        self._payloads = grow(getattr(self, "_payloads", None), self.payload_shape, self.payload_dtype)
        self._q = grow(getattr(self, "_q", None), (), torch.float32)
        self._visits = grow(getattr(self, "_visits", None), (), torch.int64)
        self._last_used = grow(getattr(self, "_last_used", None), (), torch.int64)
        # The search space: unit keys for cosine, the keys and their squared norms for l2.
        if self.metric == "cosine":
            self._space = grow(getattr(self, "_space", None), (self.key_dim,), torch.float32)
        else:
            self._space = self._keys
        self._sqnorm = grow(getattr(self, "_sqnorm", None), (), torch.float32)

    def _reserve(self, rows: int) -> None:
        if rows > self._keys.shape[0]:
            self._alloc(min(self.capacity, max(rows, 2 * self._keys.shape[0])))

    def _new_faiss_index(self):
        faiss = _import_faiss()
        flat = faiss.IndexFlatL2(self.key_dim) if self.metric == "l2" else faiss.IndexFlatIP(self.key_dim)
        return faiss.IndexIDMap2(flat)

    def _to_space(self, keys: Tensor) -> Tensor:
        """Keys as the index sees them: unit vectors for cosine (zero stays zero)."""
        if self.metric == "cosine":
            return keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return keys

    def __len__(self) -> int:
        return self._size

    # Read-only views of the filled rows (views, not copies: do not write through them;
    # update_q / write keep the faiss index and the stamps consistent).
    @property
    def keys(self) -> Tensor:
        """[len, d] float32."""
        return self._keys[: self._size]

    @property
    def payloads(self) -> Tensor:
        """[len, *payload_shape] payload_dtype."""
        return self._payloads[: self._size]

    @property
    def q(self) -> Tensor:
        """[len] float32."""
        return self._q[: self._size]

    @property
    def visits(self) -> Tensor:
        """[len] int64: how many targets were folded into q (update_q / write)."""
        return self._visits[: self._size]

    @property
    def last_used(self) -> Tensor:
        """[len] int64: the clock of the last call that returned or wrote the row."""
        return self._last_used[: self._size]

    @property
    def clock(self) -> int:
        """The step counter: the number of read/write calls so far."""
        return self._clock

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _stamp(self, ids: Tensor) -> None:
        ids = ids[ids >= 0]
        if ids.numel():
            self._last_used[ids] = self._clock

    # ------------------------------------------------------------------ input checks
    def _check_keys(self, keys: Tensor, what: str = "keys") -> Tensor:
        if not isinstance(keys, Tensor) or keys.dim() != 2 or keys.shape[1] != self.key_dim:
            shape = tuple(keys.shape) if isinstance(keys, Tensor) else type(keys).__name__
            raise ConfigError(f"CaseBank: {what} must be a tensor [N, {self.key_dim}], got {shape}")
        if not keys.is_floating_point():
            raise ConfigError(f"CaseBank: {what} must be floating point, got {keys.dtype}")
        return keys.to(self.device)

    def _check_rows(self, values, n: int, what: str, dtype: torch.dtype) -> Tensor:
        if isinstance(values, Tensor):
            values = values.to(self.device, dtype)
            if values.dim() == 0:
                values = values.expand(n)
        else:
            values = torch.full((n,), float(values), dtype=dtype, device=self.device)
        if values.shape != (n,):
            raise ConfigError(f"CaseBank: {what} must be a number or a tensor [{n}], got {tuple(values.shape)}")
        return values

    def _check_payloads(self, payloads, n: int) -> Tensor:
        if payloads is None:
            return torch.zeros(n, *self.payload_shape, dtype=self.payload_dtype, device=self.device)
        payloads = torch.as_tensor(payloads, device=self.device).to(self.payload_dtype)
        if tuple(payloads.shape) != (n, *self.payload_shape):
            raise ConfigError(
                f"CaseBank: payloads must be [{n}, {', '.join(map(str, self.payload_shape))}]"
                f", got {tuple(payloads.shape)}"
            )
        return payloads

    def _check_ids(self, ids: Tensor) -> Tensor:
        ids = torch.as_tensor(ids, device=self.device)
        if ids.dim() != 1 or ids.dtype != torch.int64:
            raise ConfigError(f"CaseBank: ids must be an int64 tensor [N], got {ids.dtype} {tuple(ids.shape)}")
        bad = (ids < -1) | (ids >= self._size)
        if bool(bad.any()):
            raise ConfigError(f"CaseBank: ids must be -1 or in [0, {self._size}), got {ids[bad][:5].tolist()}")
        return ids

    @staticmethod
    def _check_alpha(alpha: float) -> float:
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"CaseBank: alpha must be in [0, 1], got {alpha}")
        return float(alpha)

    @staticmethod
    def _check_k(name: str, k: int) -> int:
        if int(k) < 1:
            raise ConfigError(f"CaseBank: {name} must be >= 1, got {k}")
        return int(k)

    # ------------------------------------------------------------------ add / evict
    def add(self, keys: Tensor, payloads: Tensor | None = None, q: Tensor | float = 0.0) -> Tensor:
        """Append cases, evicting when the bank is full.

        Args:
            keys: [N, d] float.
            payloads: [N, *payload_shape] (cast to payload_dtype); None: zeros.
            q: [N] float, or one number for all.

        Returns: ids [N] int64, the rows now holding the cases (visits 0, last_used = now).
        Raises ConfigError when N > capacity.
        """
        keys = self._check_keys(keys)
        self._tick()
        n = len(keys)
        return self._add(keys, self._check_payloads(payloads, n), self._check_rows(q, n, "q", torch.float32))

    def _add(self, keys: Tensor, payloads: Tensor, q: Tensor, visits: int = 0, protect: Tensor | None = None) -> Tensor:
        n = keys.shape[0]
        if n > self.capacity:
            raise ConfigError(f"CaseBank: cannot add {n} cases to a bank of capacity {self.capacity}")
        if n == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        n_free = min(n, self.capacity - self._size)
        fresh = torch.arange(self._size, self._size + n_free, device=self.device)
        victims = self._victims(n - n_free, protect)
        ids = torch.cat([fresh, victims])
        self._reserve(self._size + n_free)
        self._size += n_free
        # The store holds data, not graphs: a key computed with grad is stored detached.
        keys, payloads, q = keys.detach().to(torch.float32), payloads.detach(), q.detach()
        self._keys[ids] = keys
        self._payloads[ids] = payloads
        self._q[ids] = q
        self._visits[ids] = visits
        self._last_used[ids] = self._clock
        space = self._to_space(keys)
        if self.metric == "cosine":
            self._space[ids] = space
        self._sqnorm[ids] = space.pow(2).sum(-1)
        if self._faiss is not None:
            if victims.numel():
                self._faiss.remove_ids(victims.cpu().numpy().astype(np.int64))
            self._faiss.add_with_ids(
                np.ascontiguousarray(space.detach().cpu().numpy(), dtype=np.float32), ids.cpu().numpy().astype(np.int64)
            )
        return ids

    def _victims(self, n: int, protect: Tensor | None = None) -> Tensor:
        """The ``n`` filled rows to evict, in eviction order; ``protect``ed rows go last."""
        if n == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        order = torch.arange(self._size, device=self.device)
        # Stable sorts from the least to the most significant key: (protected, q, last_used, id).
        order = order[self.last_used[order].sort(stable=True).indices]
        if self.eviction == "utility":
            order = order[self.q[order].sort(stable=True).indices]
        if protect is not None and protect.numel():
            flag = torch.zeros(self._size, dtype=torch.int64, device=self.device)
            flag[protect[protect >= 0]] = 1
            order = order[flag[order].sort(stable=True).indices]
        return order[:n]

    # ------------------------------------------------------------------ search
    def search(self, queries: Tensor, k: int, *, touch: bool = True) -> tuple[Tensor, Tensor]:
        """The k best rows per query under the bank's metric.

        Args:
            queries: [M, d] float.
            k: neighbours per query.
            touch: stamp the returned rows' ``last_used`` (LRU); False leaves them.

        Returns: sims [M, k] float32 (l2: minus the squared distance; cosine: the cosine),
        best first, ``-inf`` where fewer than k rows; ids [M, k] int64, -1 there.
        """
        queries = self._check_keys(queries, "queries")
        k = self._check_k("k", k)
        self._tick()
        sims, ids = self._search(queries.detach(), k)
        if touch:
            self._stamp(ids.flatten())
        return sims, ids

    def _search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if self._faiss is not None:
            return self._search_faiss(queries, k)
        return self._search_exact(self._to_space(queries.to(torch.float32)), k)

    def _search_exact(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Exact search of ``q`` [M, d] (already in the search space)."""
        m, n = q.shape[0], self._size
        sims = torch.full((m, k), float("-inf"), device=self.device)
        ids = torch.full((m, k), -1, dtype=torch.int64, device=self.device)
        if n == 0 or m == 0:
            return sims, ids
        l2 = self.metric == "l2"
        best_s, best_i = self._topk_blocks(q, self._space[:n], self._sqnorm[:n] if l2 else None, min(k, n))
        if l2:  # -||q - k||^2 = (2 q.k - |k|^2) - |q|^2; rounding can push it above 0
            best_s = (best_s - q.pow(2).sum(-1, keepdim=True)).clamp_max(0.0)
        kk = best_s.shape[1]
        sims[:, :kk], ids[:, :kk] = best_s, best_i
        return sims, ids

    def _topk_blocks(self, q: Tensor, rows: Tensor, sqnorm: Tensor | None, k: int) -> tuple[Tensor, Tensor]:
        """The k largest scores of ``q`` [M, d] against ``rows`` [n, d], scanned in blocks of
        ``search_block_rows`` so memory stays O(M * block): score = q.r, or, given the rows'
        squared norms, 2 q.r - |r|^2 (the squared distance up to the per-query |q|^2)."""
        n = rows.shape[0]
        best_s = best_i = None
        for a in range(0, n, self.search_block_rows):
            b = min(n, a + self.search_block_rows)
            if sqnorm is None:
                s = q @ rows[a:b].T                                                     # [M, block]
            else:  # one fused addmm per block
                s = torch.addmm(sqnorm[a:b], q, rows[a:b].T, beta=-1, alpha=2)
            top_s, top_i = s.topk(min(k, b - a), dim=1)
            top_i = top_i + a
            if best_s is not None:  # merge with the best so far
                top_s, pick = torch.cat([best_s, top_s], 1).topk(min(k, best_s.shape[1] + top_s.shape[1]), dim=1)
                top_i = torch.cat([best_i, top_i], 1).gather(1, pick)
            best_s, best_i = top_s, top_i
        return best_s, best_i

    def _search_faiss(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        q = self._to_space(queries.to(torch.float32)).cpu().numpy()
        dist, ids = self._faiss.search(np.ascontiguousarray(q, dtype=np.float32), k)
        ids = torch.from_numpy(ids).to(self.device)
        sims = torch.from_numpy(dist).to(self.device)
        if self.metric == "l2":
            sims = -sims
        sims = torch.where(ids >= 0, sims, float("-inf"))
        return sims, ids

    # ------------------------------------------------------------------ NEC read
    def read_dnd(self, queries: Tensor, p: int = 50, delta: float = 1e-3, *, touch: bool = True):
        """NEC's differentiable neighbourhood read.

        Over the p nearest rows (the bank's metric), ``k_i = 1 / (||h - h_i||^2 + delta)``
        with h and h_i in the search space (unit vectors for cosine), ``w = k / sum k`` and
        ``value = sum_i w_i q_i``. Differentiable in ``queries`` (the neighbour set is not).

        Args:
            queries: [M, d] float (may require grad).
            p: neighbours; delta: the kernel's floor (NEC: 1e-3).

        Returns: values [M] float32 (0 for an empty bank), ids [M, p] int64 (-1 pad),
        weights [M, p] float32 (0 at padding, each row sums to 1 unless the bank is empty).
        """
        queries = self._check_keys(queries, "queries")
        p = self._check_k("p", p)
        if not float(delta) > 0:
            raise ConfigError(f"CaseBank: delta must be > 0, got {delta}")
        self._tick()
        with torch.no_grad():
            _, ids = self._search(queries.detach(), p)
        valid = ids >= 0
        safe = ids.clamp_min(0)
        h = self._to_space(queries.to(torch.float32))
        # Distances recomputed directly (not by the |a|^2 + |b|^2 - 2ab expansion) so an
        # exact match gets its full 1 / delta weight.
        d2 = (h.unsqueeze(1) - self._space[safe]).pow(2).sum(-1)        # [M, p]
        kern = torch.where(valid, 1.0 / (torch.where(valid, d2, 0.0) + delta), 0.0)
        weights = kern / kern.sum(1, keepdim=True).clamp_min(1e-30)
        values = (weights * torch.where(valid, self._q[safe], 0.0)).sum(1)
        if touch:
            self._stamp(ids.flatten())
        return values, ids, weights

    # ------------------------------------------------------------------ MemRL retrieval
    def retrieve(
        self,
        queries: Tensor,
        *,
        threshold: float = 0.0,
        k1: int = 10,
        k2: int = 5,
        w_sim: float = 0.5,
        w_q: float = 0.5,
        z_clip: float = 3.0,
        touch: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """MemRL's two-phase retrieval.

        Phase A: the top ``k1`` rows by similarity with ``sim >= threshold`` (threshold in
        :meth:`search`'s units: a cosine for ``metric="cosine"``, minus a squared distance
        for ``"l2"``). Phase B: per query, z-score the candidates' sims and Qs (population
        std; z = 0 where the std is 0), clip z(Q) to ``[-z_clip, z_clip]``, score =
        ``w_sim z(sim) + w_q z(Q)``, keep the top ``k2``. (MemRL then picks among them
        epsilon-greedily; that is the caller's policy.)

        Returns: ids [M, k2] int64, best first (-1 pad), scores [M, k2] float32 (-inf pad).
        """
        queries = self._check_keys(queries, "queries")
        k1, k2 = self._check_k("k1", k1), self._check_k("k2", k2)
        if not float(z_clip) > 0:
            raise ConfigError(f"CaseBank: z_clip must be > 0, got {z_clip}")
        self._tick()
        m = queries.shape[0]
        with torch.no_grad():
            sims, ids = self._search(queries.detach(), k1)
            cand = (ids >= 0) & (sims >= threshold)                      # [M, k1]
            n = cand.sum(1, keepdim=True).clamp_min(1)

            def zscore(x: Tensor) -> Tensor:
                x = torch.where(cand, x, 0.0)
                mean = x.sum(1, keepdim=True) / n
                std = (torch.where(cand, x - mean, 0.0).pow(2).sum(1, keepdim=True) / n).sqrt()
                # std below float rounding means the candidates are tied: no information.
                flat = std <= 1e-6 * mean.abs().clamp_min(1.0)
                return torch.where(flat, 0.0, (x - mean) / torch.where(flat, 1.0, std))

            zq = zscore(self._q[ids.clamp_min(0)]).clamp(-z_clip, z_clip)
            score = torch.where(cand, w_sim * zscore(sims) + w_q * zq, float("-inf"))
            top, pick = score.topk(min(k1, k2), dim=1)
            out_ids = torch.where(torch.isfinite(top), ids.gather(1, pick), -1)
            out_ids = torch.cat([out_ids, out_ids.new_full((m, k2 - out_ids.shape[1]), -1)], 1)
            top = torch.cat([top, top.new_full((m, k2 - top.shape[1]), float("-inf"))], 1)
        if touch:
            self._stamp(out_ids.flatten())
        return out_ids, top

    # ------------------------------------------------------------------ Q updates
    def update_q(self, ids: Tensor, targets: Tensor, alpha: float) -> None:
        """``Q <- Q + alpha (target - Q)``, visits += 1, last_used = now, for each id.

        ``ids`` [N] int64 (-1 entries are ignored), ``targets`` [N] float. An id listed
        several times gets its updates one after another, in order (as a loop would).
        """
        ids = self._check_ids(ids)
        targets = self._check_rows(targets, ids.numel(), "targets", torch.float32)
        alpha = self._check_alpha(alpha)
        self._tick()
        self._update_q(ids, targets, alpha)

    def _update_q(self, ids: Tensor, targets: Tensor, alpha: float) -> None:
        keep = ids >= 0
        ids, targets = ids[keep], targets[keep]
        if ids.numel() == 0:
            return
        rank = _occurrence_rank(ids)
        for r in range(int(rank.max()) + 1):  # one round per repeat of the most repeated id
            sel = rank == r
            i = ids[sel]
            self._q[i] += alpha * (targets[sel] - self._q[i])
        self._visits.index_add_(0, ids, torch.ones_like(ids))
        self._last_used[ids] = self._clock

    def write(
        self, keys: Tensor, payloads: Tensor | None, targets: Tensor, alpha: float, match_tol: float = 0.0
    ) -> Tensor:
        """NEC's write: a key within ``match_tol`` (Euclidean, on the raw keys; 0 = exact
        match) of a stored key gets the tabular update of that row's Q toward its target;
        any other key is added with ``q = target`` and ``visits = 1``.

        The call behaves like writing the keys one by one: a key that matches an earlier
        new key of the same call updates that new row (with ``match_tol > 0``, a key that
        matches a stored row updates it even if a key added earlier in the call is nearer).
        Rows matched in this call are evicted last by its adds (so never, while
        N <= capacity).

        Args:
            keys: [N, d] float; payloads: [N, *payload_shape] or None (zeros; matched rows
            keep their payload); targets: [N] float (e.g. N-step returns); alpha: in [0, 1].

        Returns: ids [N] int64, the row each key was written to.
        """
        keys = self._check_keys(keys)
        n = keys.shape[0]
        payloads = self._check_payloads(payloads, n)
        targets = self._check_rows(targets, n, "targets", torch.float32)
        alpha = self._check_alpha(alpha)
        if not float(match_tol) >= 0:
            raise ConfigError(f"CaseBank: match_tol must be >= 0, got {match_tol}")
        self._tick()
        keys = keys.to(torch.float32)
        tol2 = float(match_tol) ** 2
        rows = torch.full((n,), -1, dtype=torch.int64, device=self.device)
        if self._size and n:
            rows = self._match(keys, tol2)
        # Keys that match no stored row are added, except one within match_tol of a key
        # added earlier in this call: as in a loop, it updates that (nearest) new row.
        new = (rows < 0).nonzero().squeeze(1)
        leader = self._group_new_keys(keys[new], tol2)        # [len(new)] position in new
        is_leader = torch.zeros(n, dtype=torch.bool, device=self.device)
        is_leader[new[leader == torch.arange(len(new), device=self.device)]] = True
        lead = is_leader.nonzero().squeeze(1)
        rows[lead] = self._add(keys[lead], payloads[lead], targets[lead], visits=1, protect=rows)
        rows[new] = rows[new[leader]]
        update = ~is_leader
        self._update_q(rows[update], targets[update], alpha)
        return rows

    def _match(self, keys: Tensor, tol2: float) -> Tensor:
        """The row of the nearest stored raw key within sqrt(tol2) of each key, else -1."""
        # A few candidates by the fast expansion, then exact distances among them: an
        # identical key has distance exactly 0 there, which the expansion may not give.
        raw = self.keys
        sqnorm = self._sqnorm[: self._size] if self.metric == "l2" else raw.pow(2).sum(-1)
        _, cand = self._topk_blocks(keys, raw, sqnorm, min(4, self._size))
        d2 = (keys.unsqueeze(1) - self._keys[cand]).pow(2).sum(-1)      # [N, k] exact
        d2min, j = d2.min(1)
        nearest = cand.gather(1, j.unsqueeze(1)).squeeze(1)
        return torch.where(d2min <= tol2, nearest, -1)

    @staticmethod
    def _group_new_keys(keys: Tensor, tol2: float) -> Tensor:
        """For keys [n, d] written in order, the position of the key whose row each one
        lands in: itself when no earlier *added* key is within sqrt(tol2), else the
        nearest such key (a greedy pass, as sequential writes would do)."""
        n = keys.shape[0]
        own = torch.arange(n, device=keys.device)
        if n < 2:
            return own
        d2 = torch.cdist(keys, keys, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        close = (d2 <= tol2) & ~torch.eye(n, dtype=torch.bool, device=keys.device)
        if not bool(close.any()):  # the common case: all keys are new and distinct
            return own
        d2, close = d2.tolist(), close.tolist()
        leaders: list[int] = []
        out = list(range(n))
        for j in range(n):
            hits = [i for i in leaders if close[j][i]]
            if hits:
                out[j] = min(hits, key=lambda i: d2[j][i])
            else:
                leaders.append(j)
        return torch.tensor(out, dtype=torch.int64, device=keys.device)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the bank to ``path`` atomically (a temporary file, then ``os.replace``).

        The file holds tensors only (config as an int64 tensor), loadable with
        ``torch.load(weights_only=True)``.
        """
        path = Path(path)
        n = self._size
        blob = {
            "config": torch.tensor(
                [_FORMAT, self.key_dim, self.capacity, METRICS.index(self.metric), EVICTIONS.index(self.eviction),
                 INDEXES.index(self.index), self._clock],
                dtype=torch.int64,
            ),
            "keys": self._keys[:n].cpu().clone(),
            "payloads": self._payloads[:n].cpu().clone(),
            "q": self._q[:n].cpu().clone(),
            "visits": self._visits[:n].cpu().clone(),
            "last_used": self._last_used[:n].cpu().clone(),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(blob, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, device: torch.device | str = "cpu", index: str | None = None
    ) -> "CaseBank":
        """Read a bank written by :meth:`save` (``torch.load(weights_only=True)``).

        ``index`` overrides the saved index kind (e.g. load a saved exact bank into faiss).
        Raises :class:`RunError` for a missing, unreadable or inconsistent file.
        """
        path = Path(path)
        if not path.is_file():
            raise RunError(f"case bank file not found: {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, not a torch file, pickled objects ...
            raise RunError(f"case bank file {path} is corrupt: {type(e).__name__}: {e}") from None
        names = ("config", "keys", "payloads", "q", "visits", "last_used")
        if not isinstance(blob, dict) or any(not isinstance(blob.get(k), Tensor) for k in names):
            raise RunError(f"case bank file {path} is corrupt: expected tensors {', '.join(names)}")
        cfg = blob["config"]
        if cfg.dtype != torch.int64 or cfg.shape != (7,) or int(cfg[0]) != _FORMAT:
            raise RunError(f"case bank file {path} is corrupt or of another format version")
        _, key_dim, capacity, metric, eviction, saved_index, clock = (int(v) for v in cfg)
        keys = blob["keys"]
        n = keys.shape[0] if keys.dim() == 2 else -1
        ok = (
            keys.dim() == 2 and keys.shape[1] == key_dim and keys.dtype == torch.float32 and 0 <= n <= capacity
            and blob["payloads"].dim() >= 1 and blob["payloads"].shape[0] == n
            and all(blob[k].shape == (n,) for k in ("q", "visits", "last_used"))
            and blob["q"].dtype == torch.float32 and blob["visits"].dtype == torch.int64
            and blob["last_used"].dtype == torch.int64
            and 0 <= metric < len(METRICS) and 0 <= eviction < len(EVICTIONS) and 0 <= saved_index < len(INDEXES)
        )
        if not ok:
            raise RunError(f"case bank file {path} is corrupt: inconsistent shapes, dtypes or config")
        bank = cls(
            key_dim, capacity, payload_shape=tuple(blob["payloads"].shape[1:]), payload_dtype=blob["payloads"].dtype,
            metric=METRICS[metric], eviction=EVICTIONS[eviction], index=index or INDEXES[saved_index], device=device,
        )
        bank._add(keys.to(bank.device), blob["payloads"].to(bank.device), blob["q"].to(bank.device))
        bank._visits[:n] = blob["visits"].to(bank.device)
        bank._last_used[:n] = blob["last_used"].to(bank.device)
        bank._clock = clock
        return bank


# =========================================================================== the memory
@register("casebank")
class CaseBankMemory(Memory):
    """A per-episode DND in the recurrent state (NEC's read, written every step).

    State (a dict, batch first), reset to zeros at episode starts:
        keys   [B, C, key_dim]   float32
        values [B, C, value_dim] float32
        filled [B, C]            bool: the slot holds an entry of this episode
        age    [B, C]            int64: steps since the entry was written (0 = last step)

    Step t: ``h = key(x_t)``; ``read = sum_i w_i v_i`` over the ``num_neighbors`` nearest
    filled slots with NEC weights ``w ∝ 1 / (||h - h_i||^2 + delta)`` (zeros while the bank
    is empty); ``y_t = tanh(out([tanh(proj(x_t)), read]))``; then ``(h, value(x_t))`` is
    written into the oldest slot (a ring: the bank holds the last C steps of the episode).
    The read is differentiable in the query and in every stored key and value that the
    state carries; callers cut that history between chunks with ``detach_state``.

    No loop over T: the bank seen at step t is exactly the entries of the last C steps
    since the episode start, so a chunk reads, in one masked top-p over [C carried slots +
    T chunk steps], what a step loop reads, and the final bank is one scatter of the
    chunk's last writes into their ring slots over the carried slots that survive.

    Args:
        in_dim: features per step.
        hidden_size: output width (``out_dim``).
        key_dim / value_dim: widths of the stored keys and values.
        capacity: C, slots per env.
        num_neighbors: p <= C, neighbours per read.
        delta: the kernel's floor (NEC: 1e-3).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_size: int = 128,
        key_dim: int = 32,
        value_dim: int = 32,
        capacity: int = 64,
        num_neighbors: int = 16,
        delta: float = 1e-3,
    ):
        super().__init__()
        if min(in_dim, hidden_size, key_dim, value_dim, capacity, num_neighbors) < 1:
            raise ConfigError(
                "casebank: need in_dim, hidden_size, key_dim, value_dim, capacity, num_neighbors >= 1; got "
                f"{in_dim}, {hidden_size}, {key_dim}, {value_dim}, {capacity}, {num_neighbors}"
            )
        if num_neighbors > capacity:
            raise ConfigError(f"casebank: num_neighbors ({num_neighbors}) must be <= capacity ({capacity})")
        if not delta > 0:
            raise ConfigError(f"casebank: delta must be > 0, got {delta}")
        self.in_dim, self.out_dim = in_dim, hidden_size
        self.hidden_size, self.key_dim, self.value_dim = hidden_size, key_dim, value_dim
        self.capacity, self.num_neighbors, self.delta = capacity, num_neighbors, float(delta)
        self.key = nn.Linear(in_dim, key_dim)
        self.value = nn.Linear(in_dim, value_dim)
        self.proj = nn.Linear(in_dim, hidden_size)
        self.out = nn.Linear(hidden_size + value_dim, hidden_size)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """An empty bank per env (see the class doc for the layout)."""
        w = self.key.weight
        device = w.device if device is None else device
        B, C = batch_size, self.capacity
        return {
            "keys": torch.zeros(B, C, self.key_dim, device=device, dtype=w.dtype),
            "values": torch.zeros(B, C, self.value_dim, device=device, dtype=w.dtype),
            "filled": torch.zeros(B, C, dtype=torch.bool, device=device),
            "age": torch.zeros(B, C, dtype=torch.int64, device=device),
        }

    def forward(self, x: Tensor, state: State, start: Tensor) -> tuple[Tensor, State]:
        """Read ``x`` [T, B, in_dim] float32; reset where ``start`` [T, B] bool.

        Returns ``y`` [T, B, hidden_size] float32 and the bank after step T-1.
        """
        T, B = start.shape
        C = self.capacity
        keys0, vals0, filled0, age0 = state["keys"], state["values"], state["filled"], state["age"]
        h = self.key(x)                                         # [T, B, dk] queries = new keys
        v = self.value(x)                                       # [T, B, dv]
        t = torch.arange(T, device=x.device)
        # seg[t, b]: env b's last episode start at or before t (-1: none in this chunk).
        seg = torch.where(start, t.unsqueeze(1), -1).cummax(0).values

        # What the bank holds when step t reads (before its own write): the last C writes
        # of the episode. Chunk step s is there iff seg <= s < t and t - s <= C; a carried
        # slot iff no start so far, it is filled, and fewer than C writes came after it.
        s = t.view(1, 1, T)
        tt = t.view(T, 1, 1)
        see_chunk = (s < tt) & (s >= seg.unsqueeze(-1)) & (tt - s <= C)                # [T, B, T]
        see_carried = (seg < 0).unsqueeze(-1) & filled0.unsqueeze(0) & (age0.unsqueeze(0) + tt < C)  # [T, B, C]
        visible = torch.cat([see_carried, see_chunk], -1)                                # [T, B, C+T]
        cand_k = torch.cat([keys0, h.transpose(0, 1)], 1)                                # [B, C+T, dk]
        cand_v = torch.cat([vals0, v.transpose(0, 1)], 1)                                # [B, C+T, dv]

        d2 = (
            h.pow(2).sum(-1, keepdim=True) + cand_k.pow(2).sum(-1).unsqueeze(0)
            - 2 * torch.einsum("tbd,bnd->tbn", h, cand_k)
        ).clamp_min(0.0)                                                                 # [T, B, C+T]
        top, idx = torch.where(visible, -d2, float("-inf")).topk(self.num_neighbors, dim=-1)
        ok = torch.isfinite(top)                                                         # [T, B, p]
        kern = torch.where(ok, 1.0 / (torch.where(ok, -top, 0.0) + self.delta), 0.0)
        w = kern / kern.sum(-1, keepdim=True).clamp_min(1e-30)
        nb = cand_v[torch.arange(B, device=x.device).view(1, B, 1), idx]               # [T, B, p, dv]
        read = (w.unsqueeze(-1) * nb).sum(-2)                                           # [T, B, dv]
        y = torch.tanh(self.out(torch.cat([torch.tanh(self.proj(x)), read], -1)))

        # The bank after step T-1. Writes go round a ring: the n-th write of an episode
        # (n from 0) lands in slot n % C. For an env without a start in the chunk the next
        # slot of the carried bank is its fill count, or its oldest slot once full.
        last = seg[-1]                                                                   # [B]
        n0 = filled0.sum(1)
        next0 = torch.where(n0 < C, n0, age0.argmax(1))
        tb = t.unsqueeze(1)
        slot = torch.where(last >= 0, (tb - last) % C, (next0 + tb) % C)               # [T, B]
        survives = (tb >= last.clamp_min(0)) & (tb >= T - C)   # the last <= C writes of the episode
        src = torch.full((B, C + 1), -1, dtype=torch.int64, device=x.device)
        src.scatter_(1, torch.where(survives, slot, C).t(), t.expand(B, T).contiguous())  # slot C: discarded
        src = src[:, :C]                                                                 # chunk step per slot
        written = src >= 0
        keep = (last < 0).unsqueeze(1) & filled0 & ~written
        rows = torch.arange(B, device=x.device).unsqueeze(1)
        s_safe = src.clamp_min(0)

        def merge(new: Tensor, old: Tensor) -> Tensor:
            kept = torch.where(keep.unsqueeze(-1), old, 0.0)
            return torch.where(written.unsqueeze(-1), new.transpose(0, 1)[rows, s_safe], kept)

        new_state = {
            "keys": merge(h, keys0),
            "values": merge(v, vals0),
            "filled": written | keep,
            "age": torch.where(written, T - 1 - src, torch.where(keep, age0 + T, 0)),
        }
        return y, new_state
