"""Case-bank retrieval on a task stream: similarity-only vs MemRL two-phase vs Memento's learned
selector vs no memory, with and without near-duplicate distractors.

Every agent plays the same 2000 tasks of ``rlmem/TaskStream`` (10 families, plans of 5 steps
over 6 actions) for each of 3 seeds (seed s: families of ``world_seed = s``, stream and agent
seeded with s), keeping its case bank from task to task. Printed per setting:

- success (every plan step right) vs tasks seen, in bins of 200 tasks, mean over seeds;
- over the last 500 tasks: success on all tasks and on family (non-distractor) tasks, with
  95% Student-t intervals over the seeds, the mean return (fraction of steps right), and how
  often a family task reused a case stored for a distractor ("fooled").

Distractor tasks have a plan of their own that never recurs, so no agent can solve them from
memory: with 30% distractors the ceiling on all-task success is about 0.7.
Also run: the selector trained on the episode return (a soft label) instead of binary success.

    python benchmarks/casebank_stream.py        (about 4-5 minutes on one quiet core)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

try:
    import rlmem  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmem.agents.case_agents import CaseAgentConfig  # noqa: E402
from rlmem.casebank_stream import final_window, run_stream, success_curve  # noqa: E402
from rlmem.envs.task_stream import TaskStreamConfig  # noqa: E402

N_TASKS, SEEDS, BIN, WINDOW = 2000, (0, 1, 2), 200, 500
AGENTS = {  # row label -> (kind, agent config)
    "none": ("none", CaseAgentConfig()),
    "similarity": ("similarity", CaseAgentConfig()),
    "two_phase": ("two_phase", CaseAgentConfig()),
    "selector": ("selector", CaseAgentConfig()),
    "selector(return labels)": ("selector", CaseAgentConfig(selector_target="return")),
}
SETTINGS = {"distractors 30%": {"distractor_rate": 0.3}, "no distractors": {"distractor_rate": 0.0}}


def fmt(mean: float, half: float) -> str:
    return f"{mean:.3f} ± {half:.3f}"


def main() -> None:
    torch.set_num_threads(1)
    env = TaskStreamConfig()
    print(
        f"TaskStream: {env.n_families} families, D={env.feature_dim}, L={env.plan_length}, A={env.n_actions}, "
        f"family_spread={env.family_spread}, distractor_spread={env.distractor_spread}; "
        f"{N_TASKS} tasks x seeds {list(SEEDS)}; agents: {CaseAgentConfig()}"
    )
    width = max(len(a) for a in AGENTS)
    for setting, env_kwargs in SETTINGS.items():
        start = time.perf_counter()
        runs = {}
        for label, (kind, cfg) in AGENTS.items():
            runs[label] = [run_stream(kind, N_TASKS, s, env_kwargs, cfg) for s in SEEDS]
        print(f"\n=== {setting} ({time.perf_counter() - start:.0f} s)")
        ends = success_curve(runs["none"], BIN)[0]
        print("success vs tasks seen (mean over seeds)")
        print(f"{'tasks seen':<{width}} " + " ".join(f"{e:>6d}" for e in ends))
        for label, r in runs.items():
            print(f"{label:<{width}} " + " ".join(f"{v:6.3f}" for v in success_curve(r, BIN)[1]))
        print(f"last {WINDOW} tasks (mean ± 95% CI over {len(SEEDS)} seeds)")
        print(f"{'':<{width}} {'success':>15} {'family success':>15} {'return':>7} {'fooled':>7}")
        for label, r in runs.items():
            print(
                f"{label:<{width}} {fmt(*final_window(r, WINDOW)):>15} "
                f"{fmt(*final_window(r, WINDOW, family_only=True)):>15} "
                f"{final_window(r, WINDOW, 'returns')[0]:7.3f} "
                f"{final_window(r, WINDOW, 'fooled', family_only=True)[0]:7.3f}"
            )
        seeds = {label: [f"{x.success[-WINDOW:].mean():.3f}" for x in r] for label, r in runs.items()}
        print("per-seed last-window success: " + "; ".join(f"{k} {' '.join(v)}" for k, v in seeds.items()))


if __name__ == "__main__":
    main()
