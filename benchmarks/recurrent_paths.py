"""Forward + backward of one training replay through each CPU path of rlmem/memory/recurrent.py.

For a chunk of T steps x B envs with episode starts inside (each step starts an episode with
probability 1 / mean episode length), times ``memory.replay(x, state, start)`` followed by
``backward()``, the median of ``--repeats`` runs, through

- ``padded``: path 3' (the S segments between starts side by side, padded to the longest);
- ``flush``: path 4 (each env's chunk one row, a flush step before each start);
- ``no starts``: the same chunk without starts inside (what the throughput benchmark's
  limit runs);

and prints which of the first two the memory's cost model (``_flush_is_cheaper``) picks.

    python benchmarks/recurrent_paths.py [--threads 1] [--repeats 9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmem.memory import make  # noqa: E402

IN_DIM = 64
CASES = [  # (memory, hidden, T, B): the presets' minibatches (T 64, 8 envs), bigger, and tiny
    ("lstm", 128, 64, 4), ("lstm", 128, 64, 8), ("lstm", 128, 64, 16), ("lstm", 128, 128, 32), ("lstm", 256, 128, 1),
    ("gru", 128, 64, 4), ("gru", 128, 64, 8), ("gru", 128, 64, 16), ("gru", 128, 128, 32), ("gru", 128, 128, 2),
]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--episode", type=float, default=25.0, help="mean episode length (default 25)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"forward+backward of one replay, ms (median of {args.repeats}), episodes ~{args.episode:g} steps, "
          f"{args.threads} thread(s)")
    print(f"{'memory':<10}{'T':>5}{'B':>4}{'padded':>9}{'flush':>9}{'no starts':>11}  model picks")
    for name, hidden, T, B in CASES:
        torch.manual_seed(0)
        mem = make(name, IN_DIM, hidden_size=hidden)
        x = torch.randn(T, B, IN_DIM, requires_grad=True)
        state = mem.initial_state(B)
        start = torch.rand(T, B, generator=torch.Generator().manual_seed(1)) < 1 / args.episode
        start[0] = True
        no_starts = torch.zeros_like(start)
        picks = "flush" if mem._flush_is_cheaper(start) else "padded"
        parts = mem._parts(state)
        padded = median_ms(lambda: mem._padded_outputs(x, parts, start)[0].sum().backward(), args.repeats)
        flush = median_ms(lambda: mem._flush_outputs(x, parts, start).sum().backward(), args.repeats)
        free = median_ms(lambda: mem.replay(x, state, no_starts).sum().backward(), args.repeats)
        print(f"{name}-{hidden:<6}{T:>5}{B:>4}{padded:>9.2f}{flush:>9.2f}{free:>11.2f}  {picks}")


if __name__ == "__main__":
    main()
