"""The ``rlmem`` command: envs, train, eval, record, demo.

Library code raises :class:`rlmem.errors.RlmemError`; this module is the only place that
prints, and it turns every such error (and every usage error) into one line on stderr
with exit code 2.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from rlmem.errors import ConfigError, RlmemError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="rlmem: memory in reinforcement-learning agents.",
)


def _err(msg: str) -> None:
    print(f"rlmem: error: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- envs
@app.command("envs")
def envs_cmd(
    suite: Optional[Path] = typer.Option(None, help="A suite TOML (envs/*.toml): list only its environments."),
) -> None:
    """List rlmem's environments with their memory-type tags."""
    from rlmem.envs import memory_types, rlmem_ids
    from rlmem.suites import load_suite

    if suite is not None:
        for entry in load_suite(suite):
            tags = ",".join(memory_types(entry.env))
            kw = ", ".join(f"{k}={v}" for k, v in entry.env_kwargs.items())
            print(f"{entry.name:<28} {entry.env:<34} [{tags}] {kw}")
            for split, extra in entry.eval_splits.items():
                print(f"{'':<28}   eval split {split}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        return
    for env_id in rlmem_ids():
        print(f"{env_id:<40} [{','.join(memory_types(env_id))}]")


# --------------------------------------------------------------------------- train
@app.command("train")
def train_cmd(
    env: Optional[str] = typer.Option(None, help="Gymnasium id, e.g. rlmem/EndlessTMaze-v0."),
    agent: Optional[Path] = typer.Option(None, help="Agent preset TOML, e.g. agents/gru.toml."),
    steps: Optional[int] = typer.Option(None, help="Total environment steps."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    num_envs: Optional[int] = typer.Option(None, help="Parallel environments."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    threads: Optional[int] = typer.Option(None, help="Torch threads (0: torch default)."),
    env_kwargs: Optional[str] = typer.Option(None, help='Env kwargs as TOML, e.g. \'n_corridors = 5, length_mode = "fixed"\'.'),
    run_name: Optional[str] = typer.Option(None, help="Run folder name under --runs-dir."),
    runs_dir: Path = typer.Option(Path("runs"), help="Where run folders go."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder from its newest checkpoint."),
    init_from: Optional[Path] = typer.Option(None, help="Start the network from this run's newest checkpoint (ppo, dagger)."),
    stop_after: Optional[int] = typer.Option(None, help="Pause after this many steps (checkpoint; continue with --resume)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Train an agent; writes runs/<name>/ (config, metrics, TensorBoard, checkpoints)."""
    from rlmem import algos
    from rlmem.algos.common import check_device
    from rlmem.config import load_preset, make_run_config, parse_inline_table
    from rlmem.envs.vector import make_vec_env
    from rlmem.runs import Run, default_run_name

    if stop_after is not None and stop_after <= 0:
        raise ConfigError(f"--stop-after must be positive, got {stop_after}")
    if resume is not None:
        given = [n for n, v in [("--env", env), ("--agent", agent), ("--steps", steps), ("--seed", seed),
                                ("--num-envs", num_envs), ("--env-kwargs", env_kwargs), ("--run-name", run_name),
                                ("--init-from", init_from)] if v is not None]
        if given:
            raise ConfigError(f"--resume continues a run with its own config; drop {', '.join(given)}")
        run = Run.open(resume)
        cfg = run.config
        run.load_checkpoint()  # missing or corrupt: fail now, with one line
    else:
        if env is None or agent is None:
            raise ConfigError("train needs --env ID and --agent PRESET.toml (or --resume RUN_DIR)")
        preset = load_preset(agent)
        kwargs = parse_inline_table(env_kwargs, "--env-kwargs") if env_kwargs else None
        if kwargs is not None:
            kwargs = {**preset.get("env_kwargs", {}), **kwargs}
        cfg = make_run_config(preset, env=env, env_kwargs=kwargs, total_steps=steps, seed=seed,
                              num_envs=num_envs, device=device, torch_threads=threads,
                              init_from=None if init_from is None else str(init_from))
        if cfg.init_from:
            Run.open(cfg.init_from).load_checkpoint()  # missing or corrupt: fail before creating a folder
        make_vec_env(cfg.env, 1, cfg.env_kwargs).close()  # bad id, kwargs or device: fail before creating a folder
        check_device(cfg.device)
        run = Run.create(runs_dir / (run_name or default_run_name(cfg)), cfg)

    bar = None
    interrupted = False

    def on_update(m: dict) -> bool:
        nonlocal bar
        if not quiet:
            if bar is None:  # created at the first update, so an early error prints one clean line
                # PPO and DAgger do whole updates of num_envs x num_steps; other algorithms count their own steps
                bar = _progress(cfg.num_updates * cfg.batch_size if cfg.algo in ("ppo", "dagger") else cfg.total_steps)
            bar.n = m["step"]
            bar.set_postfix_str(_postfix(m), refresh=False)
            bar.refresh()
        return interrupted  # True: checkpoint now and pause

    def on_sigint(signum, frame) -> None:
        nonlocal interrupted
        if interrupted:  # a second Ctrl-C: stop at once (the newest checkpoint is kept)
            raise KeyboardInterrupt
        interrupted = True
        print("\nrlmem: finishing this update, then checkpointing (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)

    t0 = time.perf_counter()
    try:
        result = algos.get(cfg.algo).train(cfg, run, resume=resume is not None, stop_after=stop_after, callback=on_update)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        _err(f"interrupted; the newest checkpoint is kept: continue with `rlmem train --resume {run.path}`")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGINT, previous)
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    verb = "paused" if result.get("paused") else "done"
    print(f"{verb}: {run.path}  steps={result.get('step', 0)}  wall={wall:.0f}s  {_postfix(result)}")
    if result.get("paused"):
        print(f"continue with: rlmem train --resume {run.path}")
    if interrupted:
        raise typer.Exit(130)


# --------------------------------------------------------------------------- eval
@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder."),
    episodes: int = typer.Option(100, help="Episodes to run."),
    seed: Optional[int] = typer.Option(None, help="Eval seed (default: the run's seed + 1000003, unseen in training)."),
    stochastic: bool = typer.Option(False, help="Sample actions instead of taking the most likely one."),
    env_kwargs: Optional[str] = typer.Option(None, help="Override env kwargs (TOML), e.g. to test extrapolation."),
    num_envs: int = typer.Option(32, help="Parallel environments."),
) -> None:
    """Success rate (95% Wilson interval), return and length over N episodes."""
    from rlmem import algos
    from rlmem.config import parse_inline_table
    from rlmem.evaluate import EVAL_SEED_OFFSET
    from rlmem.runs import Run

    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    run = Run.open(run_dir)
    cfg = run.config
    step = run.load_checkpoint()["step"]  # missing or corrupt: one line, before any work
    extra = parse_inline_table(env_kwargs, "--env-kwargs") if env_kwargs else {}
    kwargs = {**cfg.env_kwargs, **extra}
    res = algos.get(cfg.algo).evaluate_run(
        run, episodes=episodes, seed=seed if seed is not None else cfg.seed + EVAL_SEED_OFFSET,
        deterministic=not stochastic, env_kwargs=extra, num_envs=num_envs,
    )
    lo, hi = res.success_ci
    print(f"run        {run.path}  (checkpoint step {step})")
    print(f"env        {cfg.env} {kwargs if kwargs else ''}")
    print(f"episodes   {res.episodes}")
    print(f"success    {res.success:.3f}  [95% CI {lo:.3f}, {hi:.3f}]")
    print(f"return     {res.mean_return:.3f} +- {res.std_return:.3f}")
    print(f"length     {res.mean_length:.1f}")
    for title, table in res.breakdown.items():
        print(f"\n{title}")
        print(_table(table))


# --------------------------------------------------------------------------- record
@app.command("record")
def record_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder."),
    out: Path = typer.Option(Path("videos"), help="Output folder."),
    episodes: int = typer.Option(2, help="Episodes in the video."),
    seed: Optional[int] = typer.Option(None, help="Episode seed (default: an eval seed)."),
    fps: int = typer.Option(8, help="Frames per second."),
) -> None:
    """Write an mp4 (gif without ffmpeg) of the policy with a memory panel."""
    from rlmem import algos
    from rlmem.evaluate import EVAL_SEED_OFFSET
    from rlmem.runs import Run

    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    run = Run.open(run_dir)
    cfg = run.config
    record_run = getattr(algos.get(cfg.algo), "record_run", None)
    if record_run is None:
        raise ConfigError(f"rlmem record does not support algo {cfg.algo!r} yet")
    path = record_run(run, out=out, episodes=episodes, seed=seed if seed is not None else cfg.seed + EVAL_SEED_OFFSET, fps=fps)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- compare
@app.command("compare")
def compare_cmd(
    recipe: Path = typer.Argument(..., help="A recipe TOML, e.g. train/rewriting.toml."),
    backend: Optional[str] = typer.Option(None, help="local (process pool, the default) or ray."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (implies --backend ray); default: a local Ray."),
    workers: Optional[int] = typer.Option(None, help="Runs at the same time (default: the recipe's, else all cores)."),
    steps_scale: Optional[float] = typer.Option(None, help="Multiply every suite entry's step budget."),
    runs_dir: Optional[Path] = typer.Option(None, help="Where runs and the report go (default: runs/compare/<recipe>)."),
    quiet: bool = typer.Option(False, help="No line per finished run."),
) -> None:
    """Train and evaluate a recipe's agents x envs x seeds (skipping complete runs); write a report."""
    from rlmem.compare import compare

    def on_result(r, finished: int, total: int) -> None:
        if quiet:
            return
        name = Path(r.run_dir).name
        if r.status == "done":
            print(f"compare: [{finished}/{total}] {name}: success={r.success:.2f} return={r.return_:.2f} "
                  f"steps={r.steps} {r.wall_s:.0f}s", file=sys.stderr)
        else:
            print(f"compare: [{finished}/{total}] {name}: FAILED {r.error}", file=sys.stderr)

    def on_sigterm(signum, frame) -> None:  # a scheduler's SIGTERM stops the runs as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = compare(recipe, backend=backend, address=address, workers=workers, steps_scale=steps_scale,
                          runs_dir=runs_dir, on_result=on_result)
    except KeyboardInterrupt:
        _err("interrupted; finished runs are kept and the others continue from their newest checkpoint: "
             "run the same command again")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.line())
    if summary.n_failed:
        for r in summary.failed:
            _err(f"{r.run_dir}: {r.error}")
        raise typer.Exit(1)  # 1, not 2: the recipe was fine, some runs failed (the next call retries them)


# --------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    steps: int = typer.Option(0, help="Steps per agent (0: the demo's default)."),
    runs_dir: Path = typer.Option(Path("runs/demo"), help="Where the demo's runs go."),
    out: Path = typer.Option(Path("videos"), help="Where the video goes."),
    episodes: int = typer.Option(200, help="Evaluation episodes per agent."),
) -> None:
    """Train gru and none on a rewriting T-Maze, print a table, record a video."""
    from rlmem.demo import run_demo

    run_demo(steps=steps or None, runs_dir=runs_dir, out=out, episodes=episodes, progress=_progress, echo=print)


# --------------------------------------------------------------------------- helpers
def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="step", unit_scale=True, dynamic_ncols=True, file=sys.stderr, mininterval=0.5)


def _table(rows: dict) -> str:
    """``{row: {column: value}}`` as aligned text (floats with 3 decimals)."""
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    width = max([len(str(r)) for r in rows] + [4])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [" " * width + "".join(f"  {c:>10}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{str(name):<{width}}" + "".join(f"  {fmt(row.get(c, '')):>10}" for c in columns))
    return "\n".join(lines)


def _postfix(m: dict) -> str:
    parts = [f"sps={m['sps']:.0f}"] if "sps" in m else []
    if "success" in m:
        parts.append(f"success={m['success']:.2f}")
    if "episode_return" in m:
        parts.append(f"return={m['episode_return']:.2f}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rlmem`` script: one clear line and exit 2 on bad input."""
    try:
        rc = app(args=argv, prog_name="rlmem", standalone_mode=False)
    except RlmemError as e:
        _err(str(e))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as e:
        # Usage errors of typer's click (vendored in new typer releases, a dependency in
        # older ones) carry exit_code and format_message(); matched by shape, not by class.
        if type(e).__name__ == "NoArgsIsHelpError":
            ctx = getattr(e, "ctx", None)
            print(ctx.get_help() if ctx else "")
            return 0
        if hasattr(e, "exit_code") and hasattr(e, "format_message"):
            _err(e.format_message())
            return 2
        if type(e).__name__ == "Exit" and hasattr(e, "exit_code"):
            return int(e.exit_code)
        if type(e).__name__ == "Abort":
            _err("aborted")
            return 130
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
