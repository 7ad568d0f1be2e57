"""Memory construction (vector): random, store-first, heuristic and trained neural writers, per competency.

Every writer is scored by :func:`rlmem.evaluate.evaluate` on the same held-out episodes (same
seed, same number of sub-envs and quotas: the episode streams do not depend on the actions), so
the rows are comparable. Reference writers come from :mod:`rlmem.envs.memconstruct_vec`; trained
writers are run folders made by ``rlmem train`` (PPO or GRPO, any preset), evaluated greedily.

    python benchmarks/memconstruct_vec.py [--runs runs/ppo-writer runs/grpo-writer] [--episodes 2000]

Prints a Markdown table: accuracy (fraction of queried keys answered right) and success (every
key right) per competency -- accurate retrieval and conflict resolution separately -- and overall.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmem import algos  # noqa: E402
from rlmem.envs.memconstruct_vec import (  # noqa: E402
    COMPETENCIES,
    HeuristicWriter,
    RandomWriter,
    StoreFirstWriter,
)
from rlmem.envs.vector import make_vec_env  # noqa: E402
from rlmem.evaluate import EVAL_SEED_OFFSET, EvalResult, evaluate  # noqa: E402
from rlmem.runs import Run  # noqa: E402

ENV = "rlmem/MemoryConstructionVec-v0"


class WriterPolicy:
    """A numpy writer ``obs float32[N, D] -> int64[N]`` behind the few ActorCritic methods
    :func:`rlmem.evaluate.evaluate` calls, so reference writers are scored by the same loop."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def to(self, device) -> "WriterPolicy":
        return self

    def initial_state(self, batch_size: int, device=None) -> None:
        return None

    def __call__(self, obs: torch.Tensor, state, start: torch.Tensor):
        actions = torch.as_tensor(self.writer(obs[0].numpy()))
        return SimpleNamespace(params=actions[None]), state

    def sample(self, params: torch.Tensor, deterministic: bool = True):
        return params, None

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        return action.numpy()


def row(res: EvalResult) -> dict[str, float]:
    """Accuracy / success per competency and overall, from an EvalResult's breakdown."""
    table = res.breakdown["by competency"]
    out = {}
    for c in COMPETENCIES:
        out[f"{c} acc"], out[f"{c} success"] = table[c]["accuracy"], table[c]["success"]
    n = sum(table[c]["episodes"] for c in COMPETENCIES)
    out["all acc"] = sum(table[c]["accuracy"] * table[c]["episodes"] for c in COMPETENCIES) / n
    out["all success"] = res.success
    out["return"] = res.mean_return
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="Run folders of trained writers.")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1 + EVAL_SEED_OFFSET, help="Eval seed (default: `rlmem eval`'s for seed 1).")
    parser.add_argument("--num-envs", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = make_vec_env(ENV, 1).config
    kw = dict(episodes=args.episodes, seed=args.seed, num_envs=args.num_envs)
    rows: dict[str, dict[str, float]] = {}
    for name, writer in [("random", RandomWriter(config, seed=0)), ("store-first", StoreFirstWriter(config)),
                         ("heuristic", HeuristicWriter(config))]:
        rows[name] = row(evaluate(WriterPolicy(writer), ENV, {}, **kw))
    notes = []
    for path in args.runs:
        run = Run.open(path)
        cfg = run.config
        if cfg.env != ENV or cfg.env_kwargs:
            raise SystemExit(f"{path}: trained on {cfg.env} {cfg.env_kwargs}, not the default {ENV}")
        last = run.metrics()[-1]
        name = f"{cfg.algo}: {path.name} ({cfg.policy.memory}, {last['step'] / 1e3:.0f}k steps)"
        rows[name] = row(algos.get(cfg.algo).evaluate_run(run, **kw))
        notes.append(f"{name}: {path}, training sps {last['sps']:.0f}")

    columns = list(next(iter(rows.values())))
    print(f"{ENV}, {args.episodes} held-out episodes, seed {args.seed}, greedy neural writers\n")
    print("| writer | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[c]:.3f}" for c in columns) + " |")
    for note in notes:
        print(f"\n{note}", end="")
    print()


if __name__ == "__main__":
    main()
