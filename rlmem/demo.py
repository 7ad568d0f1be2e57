"""The README's first command: GRU vs the memoryless control on a rewriting T-Maze.

Trains ``agents/gru.toml`` and ``agents/none.toml`` on ``rlmem/EndlessTMaze-v0``
(3 corridors, lengths uniform in 5..10: the agent must overwrite its memory of the cue
at every corridor), evaluates each on held-out seeds, prints a table and records a video
of the GRU agent with its memory panel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from rlmem.config import load_preset, make_run_config
from rlmem.evaluate import EVAL_SEED_OFFSET, evaluate
from rlmem.runs import Run

DEMO_ENV = "rlmem/EndlessTMaze-v0"
DEMO_STEPS = 300_000
DEMO_AGENTS = ("gru", "none")


def run_demo(
    steps: int | None = None,
    runs_dir: Path = Path("runs/demo"),
    out: Path = Path("videos"),
    episodes: int = 200,
    agents_dir: Path = Path("agents"),
    progress: Callable | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """Train, evaluate and record; returns one row per agent."""
    from rlmem.algos.ppo import train
    from rlmem.evaluate import load_policy
    from rlmem.video import record

    steps = steps or DEMO_STEPS
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name in DEMO_AGENTS:
        cfg = make_run_config(load_preset(agents_dir / f"{name}.toml"), env=DEMO_ENV, total_steps=steps)
        run = Run.create(runs_dir / f"{name}-{stamp}", cfg)
        echo(f"training {name} on {DEMO_ENV} for {cfg.num_updates * cfg.batch_size} steps -> {run.path}")
        bar = progress(cfg.num_updates * cfg.batch_size) if progress else None

        def on_update(m: dict, bar=bar) -> None:
            if bar is not None:
                bar.n = m["step"]
                bar.set_postfix_str(f"sps={m['sps']:.0f} success={m.get('success', float('nan')):.2f}", refresh=True)

        t0 = time.perf_counter()
        last = train(cfg, run, callback=on_update)
        wall = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        policy, _ = load_policy(run)
        res = evaluate(policy, cfg.env, cfg.env_kwargs, episodes, cfg.seed + EVAL_SEED_OFFSET)
        sampled = evaluate(policy, cfg.env, cfg.env_kwargs, episodes, cfg.seed + EVAL_SEED_OFFSET, deterministic=False)
        rows.append({"agent": name, "result": res, "sampled": sampled, "steps": last["step"], "wall": wall,
                     "run": run, "sps": last["sps"]})

    echo("")
    echo(f"{'agent':<6} {'success':>8} {'95% CI':>14} {'return':>7} {'sampled':>8} {'steps':>8} {'wall':>6} {'SPS':>6}")
    for r in rows:
        res = r["result"]
        lo, hi = res.success_ci
        echo(f"{r['agent']:<6} {res.success:>8.3f} {f'[{lo:.2f}, {hi:.2f}]':>14} {res.mean_return:>7.2f} "
             f"{r['sampled'].success:>8.3f} {r['steps']:>8} {r['wall']:>5.0f}s {r['sps']:>6.0f}")
    echo(f"success: greedy actions over {episodes} held-out episodes (95% Wilson interval); sampled: the same "
         f"episodes with sampled actions. A memoryless agent can do no better than chance, 0.5^3 = 0.125.")

    best = rows[0]
    policy, _ = load_policy(best["run"])
    path = record(policy, DEMO_ENV, best["run"].config.env_kwargs, out=out, episodes=2,
                  seed=best["run"].config.seed + EVAL_SEED_OFFSET, name=f"demo_{best['agent']}")
    echo(f"video: {path}")
    return rows
