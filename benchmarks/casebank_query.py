"""Case-bank query latency: CaseBank's exact torch search vs. faiss, by bank size.

One batch of M = 256 queries, d = 64, k = 32 nearest (squared L2), against banks of
1k / 100k / 1M random Gaussian keys, all measured in this run:

- ``torch exact``: ``CaseBank(index="exact").search`` (blocked matmul + topk);
- ``faiss Flat``:  ``CaseBank(index="faiss").search`` (IndexIDMap2 over IndexFlatL2): exact,
  same ids as torch (the table checks it);
- ``faiss IVF``:   a bare ``IndexIVFFlat`` (nlist = min(1024, N / 39), nprobe = nlist / 8),
  APPROXIMATE: shown with its recall@k against the exact ids. Gaussian keys have no
  cluster structure, the worst case for an inverted file; real embeddings do better.

Latency = median of the timed calls after one warm-up call (a single call when it takes
over 2 s). Ratios are against torch exact
in the same run; absolute numbers move with the CPU and its load. Both libraries get
the same thread count (default 1).

    python benchmarks/casebank_query.py [--sizes 1000 100000 1000000] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmem.memory.casebank import CaseBank  # noqa: E402


def latency_ms(fn, min_calls: int = 3, min_seconds: float = 0.5, max_calls: int = 50):
    """(median wall time of ``fn()`` in ms, its result). A first call over 2 s is the
    measurement itself (a warm-up is noise at that scale and would double the run);
    otherwise it is a warm-up, then calls until ``min_seconds`` (at least ``min_calls``)."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    if first > 2.0:
        return 1e3 * first, out
    times: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while len(times) < min_calls or (time.perf_counter() < t_end and len(times) < max_calls):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), out


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids that the approximate top-k holds."""
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)]
    return sum(hits) / exact.size


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    try:
        import faiss
    except ImportError:
        sys.exit("this benchmark compares against faiss: pip install rlmem[faiss]")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    queries = torch.randn(args.queries, args.dim, generator=g)
    q_np = queries.numpy()
    print(
        f"M = {args.queries} queries, d = {args.dim}, k = {args.k}, metric l2, {args.threads} thread(s); "
        f"torch {torch.__version__}, faiss {faiss.__version__}"
    )

    header = (f"{'bank N':>9} | {'torch exact ms':>14} | {'faiss Flat ms':>13} | {'Flat/exact':>10} | "
              f"{'same ids':>8} | {'faiss IVF ms (approx)':>21} | {'IVF/exact':>9} | {'recall@k':>8} | IVF setup")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        keys = torch.randn(n, args.dim, generator=g)
        exact = CaseBank(args.dim, n, index="exact")
        exact.add(keys)
        flat = CaseBank(args.dim, n, index="faiss")
        flat.add(keys)
        ms_exact, (_, ids_exact) = latency_ms(lambda: exact.search(queries, args.k, touch=False))
        ms_flat, (_, ids_flat) = latency_ms(lambda: flat.search(queries, args.k, touch=False))
        same = (ids_exact == ids_flat).float().mean().item()

        nlist = max(1, min(1024, n // 39))     # faiss wants >= 39 training points per list
        nprobe = max(1, nlist // 8)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(args.dim), args.dim, nlist)
        keys_np = keys.numpy()
        train = keys_np[np.random.default_rng(args.seed).choice(n, min(n, 40 * nlist), replace=False)]
        t0 = time.perf_counter()
        ivf.train(train)
        ivf.add(keys_np)
        build_s = time.perf_counter() - t0
        ivf.nprobe = nprobe
        ms_ivf, (_, ids_ivf) = latency_ms(lambda: ivf.search(q_np, args.k))
        rec = recall(ids_ivf, ids_exact.numpy())
        print(
            f"{n:>9,} | {ms_exact:>14.2f} | {ms_flat:>13.2f} | {ms_flat / ms_exact:>9.2f}x | {same:>8.3f} | "
            f"{ms_ivf:>21.2f} | {ms_ivf / ms_exact:>8.3f}x | {rec:>8.3f} | nlist {nlist}, nprobe {nprobe}, "
            f"build {build_s:.1f} s"
        )


if __name__ == "__main__":
    main()
