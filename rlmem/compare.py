"""Fair comparisons of memory architectures: a recipe's agents x suite entries x seeds.

A recipe (``train/*.toml``, schema in :class:`Recipe` and ``train/README.md``) names a
suite (``envs/*.toml``), agent presets (``agents/*.toml``) and seeds. :func:`compare`

1. plans one run per (suite entry, agent preset, seed), each built exactly as
   ``rlmem train`` builds it (:func:`rlmem.config.load_preset` + :func:`make_run_config`),
   in its own folder ``<runs_dir>/<entry>__<agent stem>__s<seed>``;
2. runs the runs not yet complete, each in a fresh process: a local process pool
   (``spawn``, one task per child) or Ray tasks (``ray.remote(num_cpus=1)``), both calling
   :func:`run_one`;
3. writes ``results.csv``, ``report.md`` (success per agent x entry with a 95% bootstrap
   interval over seeds, steps, wall time) and one learning-curve PNG per suite entry.

Resumable: :data:`RESULT_FILE`, written last and atomically, marks a run complete, so a
second call skips it; an interrupted run continues from its newest checkpoint; a failed
run leaves :data:`ERROR_FILE` and is retried by the next call. A failing run never stops
the others. Library code never prints: :func:`compare` returns a :class:`CompareSummary`
and reports progress through a callback.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from rlmem.config import RunConfig, from_dict, load_preset, make_run_config, read_toml, to_dict, write_toml
from rlmem.errors import ConfigError, RunError, UnknownNameError
from rlmem.suites import SuiteEntry, load_suite

RESULT_FILE = "result.json"  # written last, atomically: its presence marks a run complete
ERROR_FILE = "error.txt"  # the traceback of a failed attempt (removed when the run is retried)
BACKENDS = ("local", "ray")
CSV_COLUMNS = ("agent", "entry", "env", "seed", "success", "success_ci_lo", "success_ci_hi", "return", "steps",
               "wall_s", "status", "train_s", "eval_s", "resumed_from", "run_dir", "error")


# --------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class Recipe:
    """An experiment recipe (``train/*.toml``). Paths are relative to the working directory,
    like the CLI's."""

    suite: str
    """Suite file, e.g. ``envs/rewriting.toml``: the env ids, kwargs and step budgets."""
    agents: tuple[str, ...]
    """Agent preset files, e.g. ``["agents/none.toml", "agents/gru.toml"]``; their stems name the agents."""
    seeds: tuple[int, ...]
    """Training seeds; every agent trains once per seed on every suite entry."""
    steps_scale: float = 1.0
    """Multiplies each suite entry's ``steps`` (0.05: a quick look at a twentieth of the budget)."""
    eval_episodes: int = 100
    """Greedy evaluation episodes per run, on held-out seeds (run seed + EVAL_SEED_OFFSET)."""
    runs_dir: str = ""
    """Where the run folders and the report go (empty: ``runs/compare/<recipe stem>``)."""
    backend: str = "local"
    """``local`` (a process pool on this machine) or ``ray`` (one Ray task per run)."""
    workers: int = 0
    """Runs at the same time (0: ``os.cpu_count()``). Each run uses its preset's torch_threads."""
    retries: int = 1
    """Extra attempts, within one call, for a run whose process crashed or raised an unexpected
    error (config errors such as a bad env kwarg are not retried: they would fail again)."""
    description: str = ""
    """Free text shown in the report."""

    def validate(self, where: str = "recipe") -> "Recipe":
        checks = [
            (len(self.agents) > 0, "agents must name at least one preset"),
            (len(self.seeds) > 0, "seeds must hold at least one seed"),
            (all(s >= 0 for s in self.seeds), f"seeds must be non-negative, got {list(self.seeds)}"),
            (len(set(self.seeds)) == len(self.seeds), f"seeds repeat: {list(self.seeds)}"),
            (math.isfinite(self.steps_scale) and self.steps_scale > 0, f"steps_scale must be positive, got {self.steps_scale}"),
            (self.eval_episodes > 0, f"eval_episodes must be positive, got {self.eval_episodes}"),
            (self.backend in BACKENDS, f"unknown backend {self.backend!r}; valid: {', '.join(BACKENDS)}"),
            (self.workers >= 0, f"workers must be >= 0 (0: all cores), got {self.workers}"),
            (self.retries >= 0, f"retries must be >= 0, got {self.retries}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"{where}: {msg}")
        stems = [Path(a).stem for a in self.agents]
        if len(set(stems)) != len(stems):
            raise ConfigError(f"{where}: two agent presets share a file name {stems}; run folders are named by it")
        return self


def load_recipe(path: str | Path, **overrides: Any) -> Recipe:
    """Parse and check a recipe; ``overrides`` (``None`` = not given) replace its keys."""
    path = Path(path)
    try:
        recipe = from_dict(Recipe, read_toml(path))
    except ConfigError as e:
        raise ConfigError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        fields = {f.name for f in dataclasses.fields(Recipe)}
        unknown = sorted(set(given) - fields)
        if unknown:
            raise ConfigError(f"unknown recipe override {unknown[0]!r}; valid: {', '.join(sorted(fields))}")
        recipe = dataclasses.replace(recipe, **{k: (str(v) if isinstance(v, Path) else v) for k, v in given.items()})
    if not recipe.runs_dir:
        recipe = dataclasses.replace(recipe, runs_dir=str(Path("runs") / "compare" / path.stem))
    return recipe.validate(str(path))


# --------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: everything a worker process needs (picklable, no open files)."""

    agent: str
    """Agent name (the preset file's stem)."""
    preset: dict
    """The parsed preset (rlmem.config.load_preset); sent as data so a Ray node needs no copy of the file."""
    entry: SuiteEntry
    seed: int
    total_steps: int
    eval_episodes: int
    run_dir: str
    """Absolute path of the run folder."""

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    def run_config(self) -> RunConfig:
        """The RunConfig, merged exactly as ``rlmem train --env --env-kwargs --steps --seed`` merges it."""
        kwargs = {**self.preset.get("env_kwargs", {}), **self.entry.env_kwargs}
        return make_run_config(self.preset, env=self.entry.env, env_kwargs=kwargs, total_steps=self.total_steps,
                               seed=self.seed)


def plan(recipe: Recipe) -> tuple[list[SuiteEntry], list[RunSpec]]:
    """The suite entries and one RunSpec per (entry, agent, seed), every config validated.

    A run folder that already holds a checkpoint or a result of a *different* config (the
    recipe changed, e.g. another steps_scale) is a ConfigError: mixing them would make the
    comparison unfair, and resuming would continue the wrong run.
    """
    if not Path(recipe.suite).is_file():
        raise ConfigError(f"recipe suite {recipe.suite!r}: no such file")
    entries = load_suite(recipe.suite)
    names = [_slug(e.name) for e in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"{recipe.suite}: two entries share a name {names}; run folders are named by it")
    presets = {}
    for agent in recipe.agents:
        if not Path(agent).is_file():
            raise ConfigError(f"recipe agent preset {agent!r}: no such file")
        presets[Path(agent).stem] = load_preset(agent)
    root = Path(recipe.runs_dir).resolve()
    specs = []
    for entry, name in zip(entries, names):
        for agent, preset in presets.items():
            base = entry.steps if entry.steps is not None else preset.get("total_steps", RunConfig.total_steps)
            for seed in recipe.seeds:
                spec = RunSpec(agent, preset, entry, seed, max(1, round(base * recipe.steps_scale)),
                               recipe.eval_episodes, str(root / f"{name}__{agent}__s{seed}"))
                try:
                    cfg = spec.run_config()
                except ConfigError as e:
                    raise ConfigError(f"agent {agent} on {entry.name}: {e}") from None
                _check_same_config(Path(spec.run_dir), cfg)
                specs.append(spec)
    return entries, specs


def _check_same_config(run_dir: Path, cfg: RunConfig) -> None:
    if not (run_dir / "config.toml").is_file():
        return
    has_work = (run_dir / RESULT_FILE).is_file() or any((run_dir / "checkpoints").glob("step_*.pt"))
    if not has_work:
        return  # nothing to resume: the worker starts this folder afresh
    try:
        old = from_dict(RunConfig, read_toml(run_dir / "config.toml"))
    except ConfigError:
        return  # a corrupt config.toml fails that one run, with the reason in its error.txt
    if old != cfg:
        a, b = to_dict(old), to_dict(cfg)
        key = next(k for k in b if a.get(k) != b.get(k))
        raise ConfigError(f"{run_dir} was trained with another config ({key} = {a.get(key)!r}, the recipe now "
                          f"gives {b.get(key)!r}); use another runs_dir or delete that folder")


def _slug(name: str) -> str:
    """A suite entry name safe in a folder name (an entry without a name is named by its env id)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "env"


# --------------------------------------------------------------------------- the worker
def run_one(spec: RunSpec) -> dict:
    """Train and evaluate one run in this process; returns its result dict (never raises).

    Writes ``result.json`` last (atomically) on success, ``error.txt`` on failure. Runs in a
    fresh process (pool child or Ray worker), so it imports torch here.
    """
    run_dir = Path(spec.run_dir)
    t0 = time.perf_counter()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        return _train_and_evaluate(spec, run_dir)
    except Exception as e:
        try:
            _atomic_write(run_dir / ERROR_FILE, traceback.format_exc())
        except OSError:
            pass  # the folder itself is unwritable; the error still reaches the summary
        # config errors are deterministic: retrying them would only fail again
        retryable = not isinstance(e, (ConfigError, UnknownNameError, RunError))
        return _failed(spec, _one_line(e), retryable, time.perf_counter() - t0)


def _train_and_evaluate(spec: RunSpec, run_dir: Path) -> dict:
    import torch

    from rlmem import algos
    from rlmem.envs.vector import make_vec_env
    from rlmem.evaluate import EVAL_SEED_OFFSET
    from rlmem.runs import CHECKPOINT_RE, Run

    cfg = spec.run_config()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)  # train() sets it too; evaluation needs it as well
    module = algos.get(cfg.algo)
    resumed_from = None
    if (run_dir / "config.toml").is_file() and any((run_dir / "checkpoints").glob("step_*.pt")):
        run = Run.open(run_dir)
        if run.config != cfg:
            raise RunError(f"{run_dir} holds a run of another config; delete it to start over")
        resumed_from = int(CHECKPOINT_RE.search(run.checkpoints()[-1].name).group(1))
    else:
        make_vec_env(cfg.env, 1, cfg.env_kwargs).close()  # a bad id or kwarg fails before any file is written
        _clear_unfinished(run_dir)
        run = Run.create(run_dir, cfg)

    t0 = time.perf_counter()
    last = module.train(cfg, run, resume=resumed_from is not None)
    train_s = time.perf_counter() - t0
    logged = run.metrics()
    steps = int(last.get("step") or (logged[-1]["step"] if logged else resumed_from or 0))

    t0 = time.perf_counter()
    res = module.evaluate_run(run, episodes=spec.eval_episodes, seed=cfg.seed + EVAL_SEED_OFFSET)
    splits = {}  # the suite entry's held-out splits: same run, other env kwargs
    for split, extra in spec.entry.eval_splits.items():
        r = module.evaluate_run(run, episodes=spec.eval_episodes, seed=cfg.seed + EVAL_SEED_OFFSET, env_kwargs=extra)
        splits[split] = {"success": _num(r.success), "return": _num(r.mean_return), "env_kwargs": extra}
    eval_s = time.perf_counter() - t0
    result = {
        "agent": spec.agent, "entry": spec.entry.name, "env": cfg.env, "env_kwargs": cfg.env_kwargs,
        "seed": cfg.seed, "algo": cfg.algo, "status": "done",
        "success": _num(res.success), "success_ci_lo": _num(res.success_ci[0]), "success_ci_hi": _num(res.success_ci[1]),
        "return": _num(res.mean_return), "return_std": _num(res.std_return), "length": _num(res.mean_length),
        "eval_episodes": res.episodes, "eval_seed": cfg.seed + EVAL_SEED_OFFSET,
        "steps": steps, "total_steps": cfg.total_steps, "train_s": round(train_s, 3), "eval_s": round(eval_s, 3),
        "wall_s": round(train_s + eval_s, 3), "resumed_from": resumed_from, "run_dir": str(run_dir), "error": "",
        "splits": splits,
    }
    _atomic_write(run_dir / RESULT_FILE, json.dumps(result, indent=1) + "\n")
    return result


def _clear_unfinished(run_dir: Path) -> None:
    """Remove what a run that died before its first checkpoint left behind, so it can restart.

    Only the files a run writes are removed; anything else keeps Run.create refusing the folder.
    """
    for pattern in ("config.toml", "metrics.jsonl", "events.out.tfevents*", ".tmp_*"):
        for p in run_dir.glob(pattern):
            p.unlink()
    ckpt = run_dir / "checkpoints"
    if ckpt.is_dir() and all(p.name.startswith(".tmp_") for p in ckpt.iterdir()):
        shutil.rmtree(ckpt)


def _failed(spec: RunSpec, error: str, retryable: bool, wall_s: float) -> dict:
    return {"agent": spec.agent, "entry": spec.entry.name, "env": spec.entry.env, "seed": spec.seed,
            "status": "failed", "error": error, "retryable": retryable, "wall_s": round(wall_s, 3),
            "run_dir": spec.run_dir}


def _read_result(run_dir: Path) -> dict | None:
    """The run's result if it is complete (a readable result.json with status done), else None."""
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") == "done" else None


# --------------------------------------------------------------------------- backends
def _run_local(specs: list[RunSpec], workers: int) -> Iterator[tuple[RunSpec, dict]]:
    """Each run in a fresh spawned process (no state leaks between runs: torch threads, RNGs,
    memory); yields (spec, result) as runs finish."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    slots = min(workers, len(specs))
    pool = ProcessPoolExecutor(max_workers=slots, mp_context=multiprocessing.get_context("spawn"),
                               max_tasks_per_child=1)
    queue, running = list(specs), {}
    try:
        while queue or running:
            # Only as many runs are submitted as there are workers: nothing waits in the pool's
            # queue, so an interrupted call strands no run (CPython 3.11-3.13 can strand queued
            # work when max_tasks_per_child workers exit during a shutdown, gh-119592).
            while queue and len(running) < slots:
                spec = queue.pop(0)
                running[pool.submit(run_one, spec)] = spec
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = running.pop(fut)
                try:
                    result = fut.result()
                except Exception as e:  # the child died (killed, out of memory): BrokenProcessPool
                    result = _crashed(spec, e)
                yield spec, result
    except BaseException:
        # Ctrl-C (or an error in the caller): stop the running runs now; each resumes from its
        # newest checkpoint (written atomically) on the next call.
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_ray(specs: list[RunSpec], workers: int, address: str | None) -> Iterator[tuple[RunSpec, dict]]:
    """Each run a Ray task (num_cpus=1, a fresh worker process per task). Uses the Ray this
    process is already connected to, else connects to ``address``, else starts a local Ray
    with ``workers`` CPUs (and shuts it down afterwards). Run folders must be on a filesystem
    every node sees."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install rlmem[ray]") from None
    import logging

    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level=logging.ERROR)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"cannot start or reach Ray{' at ' + address if address else ''}: {_one_line(e)}") from None
        started = True
    try:
        task = ray.remote(num_cpus=1, max_calls=1, max_retries=0)(run_one)
        pending = {task.remote(s): s for s in specs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the worker died: WorkerCrashedError, OutOfMemoryError...
                    result = _crashed(spec, e)
                yield spec, result
        pending = {}
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _crashed(spec: RunSpec, e: BaseException) -> dict:
    error = f"worker process died: {_one_line(e)}"
    try:
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        _atomic_write(Path(spec.run_dir) / ERROR_FILE, error + "\n")
    except OSError:
        pass
    return _failed(spec, error, retryable=True, wall_s=float("nan"))


# --------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class RunResult:
    """One row of results.csv."""

    agent: str
    entry: str
    env: str
    seed: int
    status: str
    """done or failed."""
    success: float = float("nan")
    """Greedy success rate over the eval episodes (nan: the env reports none)."""
    success_ci_lo: float = float("nan")
    success_ci_hi: float = float("nan")
    """95% Wilson interval of that rate over episodes."""
    return_: float = float("nan")
    steps: int = 0
    """Environment steps trained."""
    wall_s: float = float("nan")
    """Seconds of training + evaluation in the attempt that completed the run."""
    train_s: float = float("nan")
    eval_s: float = float("nan")
    resumed_from: int | None = None
    """Checkpoint step the run continued from (None: trained from scratch)."""
    run_dir: str = ""
    error: str = ""
    splits: dict = field(default_factory=dict)
    """``{split: {"success", "return", "env_kwargs"}}`` for the suite entry's eval_splits."""

    @classmethod
    def from_result(cls, r: dict) -> "RunResult":
        f = lambda k: float("nan") if r.get(k) is None else float(r[k])  # noqa: E731
        return cls(agent=r["agent"], entry=r["entry"], env=r["env"], seed=int(r["seed"]), status=r["status"],
                   success=f("success"), success_ci_lo=f("success_ci_lo"), success_ci_hi=f("success_ci_hi"),
                   return_=f("return"), steps=int(r.get("steps") or 0), wall_s=f("wall_s"), train_s=f("train_s"),
                   eval_s=f("eval_s"), resumed_from=r.get("resumed_from"), run_dir=r.get("run_dir", ""),
                   error=r.get("error", ""), splits=r.get("splits") or {})


@dataclass(frozen=True)
class CompareSummary:
    """What :func:`compare` did and wrote."""

    runs_dir: Path
    report: Path
    results_csv: Path
    plots: tuple[Path, ...]
    results: tuple[RunResult, ...]
    """One per planned run, in plan order (entry, agent, seed)."""
    skipped: int
    """Runs already complete before this call (not run again)."""
    ran: int
    """Runs attempted in this call (retries not counted twice)."""
    wall_s: float
    best: dict = field(default_factory=dict)
    """``{entry: (agent, value, metric)}``: the agent with the highest mean success (return if
    the env reports no success)."""

    @property
    def n_runs(self) -> int:
        return len(self.results)

    @property
    def n_done(self) -> int:
        return sum(r.status == "done" for r in self.results)

    @property
    def n_failed(self) -> int:
        return sum(r.status != "done" for r in self.results)

    @property
    def failed(self) -> tuple[RunResult, ...]:
        return tuple(r for r in self.results if r.status != "done")

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        best = ", ".join(f"{e} {a} {v:.2f}" + ("" if m == "success" else f" ({m})") for e, (a, v, m) in self.best.items())
        return (f"compare: {self.n_runs} runs ({self.n_done} done, {self.n_failed} failed, {self.skipped} already "
                f"complete) in {self.wall_s:.0f}s -> {self.report}; best per env: {best or 'none'}")


def compare(
    recipe: str | Path,
    *,
    backend: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    steps_scale: float | None = None,
    runs_dir: str | Path | None = None,
    on_result: Callable[[RunResult, int, int], None] | None = None,
) -> CompareSummary:
    """Run a recipe's grid (skipping complete runs) and write the report.

    Arguments other than ``recipe`` override the recipe's keys (``None``: keep them).
    ``address`` (a Ray cluster) implies the ray backend. ``on_result(result, finished, total)``
    is called in this process whenever a run finishes (progress displays).
    """
    if address and backend == "local":
        raise ConfigError("--address is for the ray backend")
    if address and backend is None:
        backend = "ray"
    rec = load_recipe(recipe, backend=backend, workers=workers, steps_scale=steps_scale, runs_dir=runs_dir)
    entries, specs = plan(rec)
    root = Path(rec.runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    write_toml(root / "recipe.toml", {"source": str(recipe), **to_dict(rec)})
    t_start = time.perf_counter()

    outcomes: dict[str, dict] = {}
    for spec in specs:
        done = _read_result(Path(spec.run_dir))
        if done is not None:
            outcomes[spec.run_dir] = done
    skipped = len(outcomes)
    todo = [s for s in specs if s.run_dir not in outcomes]
    n_workers = rec.workers or os.cpu_count() or 1
    finished = 0
    for attempt in range(rec.retries + 1):
        if not todo:
            break
        runner = _run_local(todo, n_workers) if rec.backend == "local" else _run_ray(todo, n_workers, address)
        retry = []
        with contextlib.closing(runner):  # an exception here (Ctrl-C) stops the backend's runs too
            for spec, result in runner:
                outcomes[spec.run_dir] = result
                if result["status"] != "done" and result.get("retryable") and attempt < rec.retries:
                    retry.append(spec)
                    continue
                finished += 1
                if on_result is not None:
                    on_result(RunResult.from_result(result), finished, len(specs) - skipped)
        todo = retry

    results = tuple(RunResult.from_result(outcomes[s.run_dir]) for s in specs)
    return write_report(rec, recipe, entries, results, skipped=skipped, ran=len(specs) - skipped,
                        wall_s=time.perf_counter() - t_start)


# --------------------------------------------------------------------------- statistics
def bootstrap_ci(values, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D, NaNs dropped).

    Resamples ``len(values)`` values with replacement ``resamples`` times with a seeded
    generator, so the same data always give the same interval. One value: ``(v, v)`` (no
    spread to estimate); none: ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- report
def write_report(rec: Recipe, source: str | Path, entries: list[SuiteEntry], results: tuple[RunResult, ...], *,
                 skipped: int, ran: int, wall_s: float) -> CompareSummary:
    """Write results.csv, the learning-curve PNGs and report.md into ``rec.runs_dir``."""
    root = Path(rec.runs_dir)
    csv_path = root / "results.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in results:
            w.writerow([r.agent, r.entry, r.env, r.seed, _fmt(r.success), _fmt(r.success_ci_lo), _fmt(r.success_ci_hi),
                        _fmt(r.return_), r.steps, _fmt(r.wall_s, 2), r.status, _fmt(r.train_s, 2), _fmt(r.eval_s, 2),
                        "" if r.resumed_from is None else r.resumed_from, r.run_dir, r.error])

    agents = list(dict.fromkeys(r.agent for r in results))
    cells: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        cells.setdefault((r.agent, r.entry), []).append(r)
    metric = {e.name: ("success" if any(math.isfinite(r.success) for r in results if r.entry == e.name) else "return")
              for e in entries}
    best = {}
    for e in entries:
        scores = {a: _mean([_value(r, metric[e.name]) for r in cells.get((a, e.name), []) if r.status == "done"])
                  for a in agents}
        scores = {a: v for a, v in scores.items() if math.isfinite(v)}
        if scores:
            a = max(scores, key=scores.get)
            best[e.name] = (a, scores[a], metric[e.name])

    plots = tuple(_plot_curves(root, e, agents, [r for r in results if r.entry == e.name and r.status == "done"])
                  for e in entries)
    plots = tuple(p for p in plots if p is not None)
    report = root / "report.md"
    report.write_text(_markdown(rec, source, entries, agents, cells, metric, results, plots, skipped, ran, wall_s))
    return CompareSummary(runs_dir=root, report=report, results_csv=csv_path, plots=plots, results=results,
                          skipped=skipped, ran=ran, wall_s=wall_s, best=best)


def _markdown(rec, source, entries, agents, cells, metric, results, plots, skipped, ran, wall_s) -> str:
    n_seeds = len(rec.seeds)
    lines = [f"# rlmem compare: {Path(source).stem}", ""]
    if rec.description:
        lines += [rec.description, ""]
    lines += [
        f"Recipe `{source}`: suite `{rec.suite}`, agents {', '.join(f'`{a}`' for a in rec.agents)}, "
        f"seeds {', '.join(map(str, rec.seeds))}, steps x {rec.steps_scale:g}, backend {rec.backend}.",
        f"{len(results)} runs: {sum(r.status == 'done' for r in results)} done, "
        f"{sum(r.status != 'done' for r in results)} failed ({skipped} were complete before this call, "
        f"{ran} ran in it, {wall_s:.0f} s).",
        "",
        "## Success",
        "",
        f"Greedy success over {rec.eval_episodes} held-out episodes per run, mean over seeds with a 95% "
        + ("bootstrap interval over seeds (10,000 seeded resamples)." if n_seeds > 1 else
           "interval: **one seed only, so no interval over seeds** (the per-run Wilson interval over episodes "
           "is in results.csv).")
        + " **Bold**: at or above the entry's success_threshold. Entries whose env reports no success show "
        "the mean return instead.",
        "",
    ]
    lines += _table(entries, agents, lambda a, e: _success_cell(cells.get((a, e.name), []), metric[e.name], e, n_seeds))
    lines += ["", "## Return", "", "Mean episode return over the same episodes, mean over seeds [95% bootstrap interval "
              "over seeds]: it separates agents that all fail (e.g. reaching further before a wrong turn).", ""]
    lines += _table(entries, agents, lambda a, e: _return_cell(cells.get((a, e.name), [])))
    lines += ["", "## Steps and wall time", "",
              "Environment steps trained and wall-clock seconds (training + evaluation) per run, mean over seeds.", ""]
    lines += _table(entries, agents, lambda a, e: _cost_cell(cells.get((a, e.name), [])))
    split_cols = [(e, split) for e in entries for split in e.eval_splits]
    if split_cols:
        lines += ["", "## Held-out splits", "",
                  "The same runs evaluated with other env kwargs (the suite's eval_splits: interpolation, "
                  "extrapolation...): greedy success, mean over seeds [95% bootstrap interval over seeds].", "",
                  "| agent | " + " | ".join(f"{e.name} / {split}" for e, split in split_cols) + " |",
                  "|---|" + "---|" * len(split_cols)]
        lines += [f"| {a} | " + " | ".join(_split_cell(cells.get((a, e.name), []), split) for e, split in split_cols)
                  + " |" for a in agents]
    resumed = [r for r in results if r.resumed_from is not None]
    if resumed:
        lines += ["", f"{len(resumed)} run(s) continued from a checkpoint; their wall time counts only the last attempt: "
                  + ", ".join(Path(r.run_dir).name for r in resumed) + "."]
    failed = [r for r in results if r.status != "done"]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- `{Path(r.run_dir).name}`: {r.error} (see `{Path(r.run_dir).name}/{ERROR_FILE}`)" for r in failed]
    if plots:
        lines += ["", "## Learning curves", "",
                  "Training success (or return) of the last 100 episodes vs environment steps; line: mean over seeds, "
                  "band: min to max over seeds.", ""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _table(entries, agents, cell) -> list[str]:
    head = "| agent | " + " | ".join(e.name for e in entries) + " |"
    rule = "|---|" + "---|" * len(entries)
    return [head, rule] + [f"| {a} | " + " | ".join(cell(a, e) for e in entries) + " |" for a in agents]


def _success_cell(runs: list[RunResult], metric: str, entry: SuiteEntry, n_seeds: int) -> str:
    done = [r for r in runs if r.status == "done"]
    if not done:
        return "failed" if runs else ""
    values = [_value(r, metric) for r in done]
    mean = _mean(values)
    text = f"{mean:.2f}"
    if len(done) > 1:
        lo, hi = bootstrap_ci(values)
        text += f" [{lo:.2f}, {hi:.2f}]"
    if metric == "success" and entry.success_threshold is not None and mean >= entry.success_threshold:
        text = f"**{text}**"
    if metric != "success":
        text += " (return)"
    if len(done) < n_seeds:
        text += f" ({len(done)}/{n_seeds} seeds)"
    return text


def _split_cell(runs: list[RunResult], split: str) -> str:
    values = [r.splits[split]["success"] for r in runs if r.status == "done" and split in r.splits]
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    lo, hi = bootstrap_ci(values)
    return f"{_mean(values):.2f} [{lo:.2f}, {hi:.2f}]"


def _return_cell(runs: list[RunResult]) -> str:
    done = [r for r in runs if r.status == "done"]
    if not done:
        return "failed" if runs else ""
    values = [r.return_ for r in done]
    if len(done) == 1:
        return f"{_mean(values):.2f}"
    lo, hi = bootstrap_ci(values)
    return f"{_mean(values):.2f} [{lo:.2f}, {hi:.2f}]"


def _cost_cell(runs: list[RunResult]) -> str:
    done = [r for r in runs if r.status == "done"]
    if not done:
        return "failed" if runs else ""
    return f"{_mean([r.steps for r in done]):,.0f} steps, {_mean([r.wall_s for r in done]):.0f} s"


def _plot_curves(root: Path, entry: SuiteEntry, agents: list[str], runs: list[RunResult]) -> Path | None:
    """One PNG per suite entry: mean over seeds per agent of the training success (or return)."""
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    key = "success"
    series = {r.run_dir: _read_metrics(Path(r.run_dir)) for r in runs}
    if not any("success" in m for rows in series.values() for m in rows):
        key = "episode_return"
    for r in runs:
        pts = [(m["step"], m[key]) for m in series[r.run_dir] if isinstance(m.get(key), (int, float))]
        if pts:
            curves.setdefault(r.agent, []).append(tuple(np.asarray(c, dtype=np.float64) for c in zip(*pts)))
    if not curves:
        return None
    # The Figure API draws without pyplot's global state, so no backend is switched in the
    # caller's process (a notebook keeps its own); savefig renders with Agg.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.subplots()
    for agent in agents:
        if agent not in curves:
            continue
        seeds = curves[agent]
        # seeds of one agent log at the same steps; interpolation only guards against ragged ends
        end = min(steps[-1] for steps, _ in seeds)
        grid = np.unique(np.concatenate([steps[steps <= end] for steps, _ in seeds]))
        ys = np.stack([np.interp(grid, steps, y) for steps, y in seeds])
        (line,) = ax.plot(grid, ys.mean(axis=0), label=f"{agent} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
        if len(seeds) > 1:
            ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.2, linewidth=0)
    if key == "success" and entry.success_threshold is not None:
        ax.axhline(entry.success_threshold, color="grey", linestyle=":", linewidth=1, label="success threshold")
    if key == "success":
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{entry.name} ({entry.env})", fontsize=10)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training success (last 100 episodes)" if key == "success" else "training return (last 100 episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = root / f"curves_{_slug(entry.name)}.png"
    fig.savefig(path)
    return path


def _read_metrics(run_dir: Path) -> list[dict]:
    try:
        text = (run_dir / "metrics.jsonl").read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return rows


# --------------------------------------------------------------------------- helpers
def _value(r: RunResult, metric: str) -> float:
    return r.success if metric == "success" else r.return_


def _mean(values) -> float:
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def _num(x: float) -> float | None:
    """JSON has no NaN: a missing number is null."""
    return None if x is None or not math.isfinite(x) else float(x)


def _fmt(x: float, digits: int = 4) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
