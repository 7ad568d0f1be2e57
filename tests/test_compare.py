"""`rlmem compare`: recipe checks, the bootstrap interval, a tiny grid on the local pool and on Ray.

The grids train the real presets (agents/none.toml, agents/gru.toml) for 1-2 PPO updates on a
short retention T-Maze: the point is the bookkeeping (one folder per run, skip / resume /
retry, the csv, the table, the plots), not learning.
"""

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmem.algos.ppo import train
from rlmem.cli import main
from rlmem.compare import RESULT_FILE, bootstrap_ci, compare, load_recipe, plan
from rlmem.errors import ConfigError
from rlmem.runs import Run

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def entry(name: str, kwargs: str = "l_min = 2, l_max = 3", steps: int = 2048) -> str:
    return (f'[[env]]\nname = "{name}"\nid = "rlmem/EndlessTMazeRetention-v0"\nkwargs = {{ {kwargs} }}\n'
            f"steps = {steps}\nsuccess_threshold = 0.9\n")


def write_recipe(tmp_path: Path, name: str, suite: str, agents=("none", "gru"), seeds=(1, 2), extra: str = "") -> Path:
    (tmp_path / f"{name}_suite.toml").write_text(suite)
    text = (f'suite = "{tmp_path / f"{name}_suite.toml"}"\n'
            f"agents = [{', '.join(repr(str(ROOT / 'agents' / f'{a}.toml')) for a in agents)}]\n"
            f"seeds = {list(seeds)}\neval_episodes = 16\nworkers = 2\n"
            f'runs_dir = "{tmp_path / name}"\n{extra}')
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("'", '"'))
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- recipe checks
BAD_RECIPES = [
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1]\nseed = 1\n', "unknown config key seed"),
    ('agents = ["{none}"]\nseeds = [1]\n', "missing config key suite"),
    ('suite = "{tmp}/nope.toml"\nagents = ["{none}"]\nseeds = [1]\n', "nope.toml"),
    ('suite = "{suite}"\nagents = ["{tmp}/gtrxl_missing.toml"]\nseeds = [1]\n', "gtrxl_missing.toml': no such file"),
    ('suite = "{suite}"\nagents = []\nseeds = [1]\n', "at least one preset"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = []\n', "at least one seed"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1, 1]\n', "seeds repeat"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [-1]\n', "non-negative"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = ["a"]\n', "must be an integer"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1]\nsteps_scale = 0\n', "steps_scale must be positive"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1]\neval_episodes = 0\n', "eval_episodes must be positive"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1]\nbackend = "slurm"\n', "unknown backend 'slurm'"),
    ('suite = "{suite}"\nagents = ["{none}"]\nseeds = [1]\nworkers = -1\n', "workers must be >= 0"),
    ('suite = "{suite}"\nagents = ["{none}", "{none}"]\nseeds = [1]\n', "share a file name"),
    ('suite = "{suite}"\nagents = ["{badpreset}"]\nseeds = [1]\n', "unknown key 'bogus'"),
    ('suite = "{suite}"\nagents = ["{none}"\n', "malformed TOML"),
]


@pytest.mark.parametrize("text,fragment", BAD_RECIPES)
def test_bad_recipes_are_one_line_config_errors(tmp_path, text, fragment):
    (tmp_path / "suite.toml").write_text(entry("tm"))
    (tmp_path / "bad_preset.toml").write_text('algo = "ppo"\nbogus = 1\n')
    path = tmp_path / "recipe.toml"
    path.write_text(text.format(suite=tmp_path / "suite.toml", none=ROOT / "agents/none.toml", tmp=tmp_path,
                                badpreset=tmp_path / "bad_preset.toml"))
    with pytest.raises(ConfigError) as info:
        plan(load_recipe(path))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_cli_turns_a_bad_recipe_into_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "recipe.toml"
    path.write_text(f'suite = "{tmp_path}/nope.toml"\nagents = ["agents/none.toml"]\nseeds = [1]\n')
    assert main(["compare", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlmem: error:") and "nope.toml" in err[0]


def test_recipe_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "suite.toml").write_text(entry("tm") + entry("tm2", steps=1000))
    path = tmp_path / "mine.toml"
    path.write_text(f'suite = "{tmp_path}/suite.toml"\nagents = ["agents/none.toml", "agents/lstm.toml"]\n'
                    "seeds = [4, 5]\nsteps_scale = 0.5\n")
    recipe = load_recipe(path)
    assert recipe.runs_dir == "runs/compare/mine" and recipe.backend == "local" and recipe.eval_episodes == 100
    entries, specs = plan(recipe)
    assert [e.name for e in entries] == ["tm", "tm2"]
    assert [s.name for s in specs][:4] == ["tm__none__s4", "tm__none__s5", "tm__lstm__s4", "tm__lstm__s5"]
    assert all(Path(s.run_dir).parent == ROOT / "runs/compare/mine" for s in specs)
    cfg = specs[-1].run_config()  # built as `rlmem train` builds it, with the scaled budget
    assert (cfg.env, cfg.seed, cfg.total_steps, cfg.policy.memory) == ("rlmem/EndlessTMazeRetention-v0", 5, 500, "lstm")
    assert cfg.env_kwargs == {"l_min": 2, "l_max": 3}
    assert load_recipe(path, steps_scale=2.0, backend="ray").steps_scale == 2.0


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    recipe = write_recipe(tmp_path, "noray", entry("tm"), agents=("none",), seeds=(1,))
    with pytest.raises(ConfigError, match=r"pip install rlmem\[ray\]"):
        compare(recipe, backend="ray")


# --------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_on_known_data():
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)  # no spread, no interval
    assert bootstrap_ci([0.4]) == (0.4, 0.4)  # one seed: nothing to resample
    assert all(math.isnan(v) for v in bootstrap_ci([float("nan")]))
    # two values {0, 1}: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # [0, 0, 0, 1]: the mean of a resample is k/4 with k ~ Binomial(4, 1/4); P(k <= 2) = 0.949 and
    # P(k <= 3) = 0.996, so the 97.5% quantile is 3/4 and the 2.5% quantile is 0
    assert bootstrap_ci([0.0, 0.0, 0.0, 1.0]) == (0.0, 0.75)
    # large normal sample: close to mean +- 1.96 sd / sqrt(n)
    x = np.random.default_rng(0).normal(2.0, 1.0, size=400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half) and hi == pytest.approx(x.mean() + half, abs=0.1 * half)
    assert bootstrap_ci(x) == (lo, hi)  # seeded: the same data give the same interval
    assert bootstrap_ci(x, seed=1) != (lo, hi)


# --------------------------------------------------------------------------- local backend
def test_local_grid_report_skip_resume_and_rerun(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "grid", entry("tm"))
    root = tmp_path / "grid"
    _, specs = plan(load_recipe(recipe))
    assert [s.name for s in specs] == ["tm__none__s1", "tm__none__s2", "tm__gru__s1", "tm__gru__s2"]

    # an earlier call was interrupted half way through tm__gru__s1: it must continue, not restart
    cfg = specs[2].run_config()
    assert train(cfg, Run.create(specs[2].run_dir, cfg), stop_after=1024)["paused"]

    seen = []
    summary = compare(recipe, on_result=lambda r, i, n: seen.append((r.agent, r.seed, i, n)))
    assert (summary.n_runs, summary.n_done, summary.n_failed, summary.skipped, summary.ran) == (4, 4, 0, 0, 4)
    assert sorted(i for *_, i, _n in seen) == [1, 2, 3, 4] and {n for *_, n in seen} == {4}

    rows = read_csv(summary.results_csv)
    assert [(r["agent"], r["entry"], r["seed"], r["status"]) for r in rows] == [
        ("none", "tm", "1", "done"), ("none", "tm", "2", "done"), ("gru", "tm", "1", "done"), ("gru", "tm", "2", "done")]
    for r in rows:
        assert 0.0 <= float(r["success_ci_lo"]) <= float(r["success"]) <= float(r["success_ci_hi"]) <= 1.0
        assert r["steps"] == "2048" and float(r["wall_s"]) > 0 and r["env"] == "rlmem/EndlessTMazeRetention-v0"
    assert [r["resumed_from"] for r in rows] == ["", "", "1024", ""]
    resumed = Run.open(root / "tm__gru__s1")
    assert [m["step"] for m in resumed.metrics()] == [1024, 2048]  # continued: one row per update, no repeats

    # the report's table holds the runs' numbers: mean over seeds with a bootstrap interval
    report = summary.report.read_text()
    assert "| agent | tm |" in report
    for agent in ("none", "gru"):
        succ = [float(r["success"]) for r in rows if r["agent"] == agent]
        lo, hi = bootstrap_ci(succ)
        assert f"| {agent} | {np.mean(succ):.2f} [{lo:.2f}, {hi:.2f}]" in report
        assert f"| {agent} | 2,048 steps, " in report
        ret = [float(r["return"]) for r in rows if r["agent"] == agent]
        lo, hi = bootstrap_ci(ret)
        assert f"| {agent} | {np.mean(ret):.2f} [{lo:.2f}, {hi:.2f}] |" in report
    assert summary.plots == (root / "curves_tm.png",) and summary.plots[0].read_bytes()[:4] == b"\x89PNG"
    assert "![curves_tm](curves_tm.png)" in report
    assert set(summary.best) == {"tm"}

    # a second call through the CLI runs nothing and prints one line
    results = {p: (p.stat().st_mtime_ns, json.loads(p.read_text())) for p in root.glob(f"*/{RESULT_FILE}")}
    assert len(results) == 4
    capsys.readouterr()
    assert main(["compare", str(recipe), "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("compare: 4 runs (4 done, 0 failed, 4 already complete)"), out
    assert all(p.stat().st_mtime_ns == t for p, (t, _) in results.items())

    # delete one result: only that run is done again (from its final checkpoint: re-evaluated)
    gone = root / "tm__none__s2" / RESULT_FILE
    gone.unlink()
    summary = compare(recipe)
    assert (summary.n_done, summary.skipped, summary.ran) == (4, 3, 1)
    assert all(p.stat().st_mtime_ns == t for p, (t, _) in results.items() if p != gone)
    again = json.loads(gone.read_text())
    before = results[gone][1]
    assert again["resumed_from"] == 2048 and again["steps"] == 2048
    assert (again["success"], again["return"]) == (before["success"], before["return"])  # same checkpoint, same eval

    # a changed budget would mix two experiments in one folder: refused before anything runs
    with pytest.raises(ConfigError, match="trained with another config"):
        compare(recipe, steps_scale=2.0)


def test_eval_splits_evaluate_the_same_run_with_other_kwargs(tmp_path):
    suite = entry("tm", steps=1024) + "eval_splits = { long = { l_min = 11, l_max = 12 } }\n"
    summary = compare(write_recipe(tmp_path, "splits", suite, agents=("none",), seeds=(1,)))
    (result,) = summary.results
    assert set(result.splits) == {"long"} and result.splits["long"]["env_kwargs"] == {"l_min": 11, "l_max": 12}
    assert 0.0 <= result.splits["long"]["success"] <= 1.0
    report = summary.report.read_text()
    assert "## Held-out splits" in report and "| agent | tm / long |" in report
    assert f"| none | {result.splits['long']['success']:.2f} |" in report


def test_a_failing_run_is_recorded_and_retried_by_the_next_call(tmp_path, capsys):
    suite = entry("tm", steps=1024) + entry("broken", kwargs="no_such_kwarg = 1", steps=1024)
    recipe = write_recipe(tmp_path, "fail", suite, agents=("none",), seeds=(3,))
    root = tmp_path / "fail"
    assert main(["compare", str(recipe)]) == 1  # the recipe is fine, a run failed: exit 1, not 2
    out, err = capsys.readouterr()
    assert "compare: 2 runs (1 done, 1 failed" in out
    assert "broken__none__s3" in err and "no_such_kwarg" in err and "Traceback" not in err

    assert (root / "tm__none__s3" / RESULT_FILE).is_file()  # the other run was not stopped
    broken = root / "broken__none__s3"
    assert "no_such_kwarg" in (broken / "error.txt").read_text() and not (broken / RESULT_FILE).exists()
    rows = {r["entry"]: r for r in read_csv(root / "results.csv")}
    assert rows["tm"]["status"] == "done" and rows["broken"]["status"] == "failed"
    assert "no_such_kwarg" in rows["broken"]["error"]
    report = (root / "report.md").read_text()
    assert "## Failed runs" in report and "| none | " in report and "failed" in report

    # fix the suite entry: the next call retries the failed run and skips the finished one
    (tmp_path / "fail_suite.toml").write_text(entry("tm", steps=1024) + entry("broken", steps=1024))
    summary = compare(recipe)
    assert (summary.n_done, summary.n_failed, summary.skipped, summary.ran) == (2, 0, 1, 1)
    assert (broken / RESULT_FILE).is_file() and not (broken / "error.txt").exists()


# --------------------------------------------------------------------------- ray backend
@pytest.mark.slow
def test_ray_backend_runs_the_grid_on_a_local_ray(tmp_path):
    ray = pytest.importorskip("ray")
    recipe = write_recipe(tmp_path, "ray", entry("tm"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = compare(recipe, backend="ray")
    finally:
        ray.shutdown()
    assert (summary.n_runs, summary.n_done, summary.n_failed) == (4, 4, 0)
    rows = read_csv(summary.results_csv)
    assert sorted((r["agent"], r["seed"]) for r in rows) == [("gru", "1"), ("gru", "2"), ("none", "1"), ("none", "2")]
    assert all(r["status"] == "done" and r["steps"] == "2048" for r in rows)
    assert (tmp_path / "ray" / "curves_tm.png").is_file() and "| gru |" in summary.report.read_text()


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "train").glob("*.toml")))
def test_every_shipped_recipe_plans(recipe, tmp_path, monkeypatch):
    # Its suite and every agent preset exist, and every (env, agent, seed) config validates.
    monkeypatch.chdir(ROOT)  # recipes name their suite and presets relative to the checkout
    rec = load_recipe(ROOT / "train" / recipe, runs_dir=tmp_path)
    entries, specs = plan(rec)
    assert len(specs) == len(entries) * len(rec.agents) * len(rec.seeds) > 0
