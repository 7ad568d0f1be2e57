"""The `rlmem` command through a subprocess: it works, and bad input is one line + exit 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clitools import assert_clean_error, rlmem_cli as rlmem

ROOT = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--steps", "256", "--num-envs", "4", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny real run shared by the eval/record/resume tests."""
    tiny = tmp_path_factory.mktemp("presets") / "tiny.toml"
    tiny.write_text('[policy]\nmemory = "gru"\nmemory_kwargs = { hidden_size = 16 }\nencoder = [16]\n'
                    '[ppo]\nnum_envs = 4\nnum_steps = 32\nnum_minibatches = 2\n')
    runs = tmp_path_factory.mktemp("runs")
    proc = rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", tiny, *TINY_ARGS,
                 "--runs-dir", runs, "--run-name", "tiny", "--env-kwargs", "n_corridors = 2, l_max = 4, l_min = 2")
    assert proc.returncode == 0, proc.stderr
    return runs / "tiny", tiny


def test_envs_lists_ids_with_tags():
    proc = rlmem("envs")
    assert proc.returncode == 0
    assert "rlmem/EndlessTMaze-v0" in proc.stdout and "rewriting" in proc.stdout
    suite = rlmem("envs", "--suite", "envs/rewriting.toml")
    assert suite.returncode == 0 and "rlmem/EndlessTMazeRetention-v0" in suite.stdout


def test_train_writes_a_run_folder(trained_run):
    run_dir, _ = trained_run
    assert (run_dir / "config.toml").is_file()
    assert (run_dir / "metrics.jsonl").read_text().count("\n") == 2  # 256 steps / (4 envs * 32 steps)
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    assert list(run_dir.glob("events.out.tfevents*"))
    assert 'n_corridors = 2' in (run_dir / "config.toml").read_text()


def test_eval_prints_success_with_interval(trained_run):
    run_dir, _ = trained_run
    proc = rlmem("eval", run_dir, "--episodes", "20")
    assert proc.returncode == 0, proc.stderr
    assert "success" in proc.stdout and "95% CI" in proc.stdout and "episodes   20" in proc.stdout
    extra = rlmem("eval", run_dir, "--episodes", "8", "--env-kwargs", "l_max = 8, l_min = 6")
    assert extra.returncode == 0 and "'l_max': 8" in extra.stdout


def test_record_writes_a_video(trained_run, tmp_path):
    run_dir, _ = trained_run
    proc = rlmem("record", run_dir, "--out", tmp_path, "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    videos = list(tmp_path.glob("tiny.*"))
    assert videos and videos[0].stat().st_size > 1000


def test_resume_continues_a_paused_run(tmp_path):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('[policy]\nmemory = "lstm"\nmemory_kwargs = { hidden_size = 8 }\n'
                    '[ppo]\nnum_envs = 4\nnum_steps = 16\nnum_minibatches = 2\n')
    proc = rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", tiny, *TINY_ARGS, "--runs-dir", tmp_path,
                 "--run-name", "r", "--stop-after", "128")
    assert proc.returncode == 0, proc.stderr
    assert "paused" in proc.stdout and "--resume" in proc.stdout
    again = rlmem("train", "--resume", tmp_path / "r", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "steps=256" in again.stdout


# ----------------------------------------------------------------------------- bad input
def test_unknown_env_id():
    assert_clean_error(rlmem("train", "--env", "rlmem/NoSuchEnv-v0", "--agent", "agents/gru.toml"), "unknown environment id")


def test_unknown_memory_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nmemory = "hopfield"\n')
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", bad, *TINY_ARGS,
                             "--runs-dir", tmp_path), "unknown memory 'hopfield'; valid: ")


def test_malformed_and_mistyped_toml(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[ppo\nnum_envs = 4\n")
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", broken), "malformed TOML")
    mistyped = tmp_path / "mistyped.toml"
    mistyped.write_text('[ppo]\nnum_envs = "eight"\n')
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", mistyped), "ppo.num_envs must be an integer")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[ppo]\nlearning_rat = 0.1\n")
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", unknown), "unknown config key ppo.learning_rat")


def test_negative_steps_and_bad_env_kwargs(tmp_path):
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", "agents/gru.toml", "--steps", "-5"),
                       "total_steps must be positive")
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", "agents/gru.toml",
                             "--env-kwargs", "n_corridors = 0", "--runs-dir", tmp_path), "n_corridors")
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", "agents/gru.toml",
                             "--env-kwargs", "corridors = 3", "--runs-dir", tmp_path), "bad env_kwargs")
    assert not any(tmp_path.iterdir())  # nothing was created for a run that could not start


def test_missing_and_corrupt_runs(tmp_path, trained_run):
    assert_clean_error(rlmem("eval", tmp_path / "nope"), "no run folder")
    (tmp_path / "empty").mkdir()
    assert_clean_error(rlmem("eval", tmp_path / "empty"), "not a run folder")

    # a copy of the real run whose checkpoint is truncated garbage
    import shutil

    run_dir, _ = trained_run
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for ckpt in (broken / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert_clean_error(rlmem("eval", broken), "is corrupt")
    assert_clean_error(rlmem("record", broken, "--out", tmp_path / "v"), "is corrupt")
    assert_clean_error(rlmem("train", "--resume", broken), "is corrupt")

    # a checkpoint that would run code when unpickled is refused by weights_only
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    for ckpt in (broken / "checkpoints").glob("*.pt"):
        torch.save({"policy": Evil()}, ckpt)
    assert_clean_error(rlmem("eval", broken), "is corrupt")
    assert not (tmp_path / "pwned").exists()

    # corrupt config.toml
    (broken / "config.toml").write_text("env = 3\n")
    assert_clean_error(rlmem("eval", broken), "config.toml is corrupt")


def test_existing_run_is_never_overwritten(trained_run):
    run_dir, tiny = trained_run
    before = sorted((p.name, p.stat().st_size) for p in run_dir.rglob("*"))
    proc = rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", tiny, *TINY_ARGS,
                 "--runs-dir", run_dir.parent, "--run-name", run_dir.name)
    assert_clean_error(proc, "already exists")
    assert sorted((p.name, p.stat().st_size) for p in run_dir.rglob("*")) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clean_error(tmp_path):
    assert_clean_error(rlmem("train", "--env", "rlmem/EndlessTMaze-v0", "--agent", "agents/gru.toml",
                             "--device", "cuda", "--quiet", "--runs-dir", tmp_path), "sees no CUDA device")
    assert not any(tmp_path.iterdir())


def test_usage_errors_are_one_line():
    assert_clean_error(rlmem("train", "--bogus-flag"), "No such option")
    assert_clean_error(rlmem("eval", "x", "--episodes", "0"), "--episodes must be positive")
    assert_clean_error(rlmem("train", "--resume", "x", "--env", "y"), "--resume continues a run")


def test_ctrl_c_checkpoints_the_current_update_and_resumes(tmp_path):
    """First Ctrl-C: finish the update, checkpoint, exit 130; nothing since is lost."""
    import json
    import signal
    import time

    tiny = tmp_path / "tiny.toml"
    tiny.write_text('[policy]\nmemory = "gru"\nmemory_kwargs = { hidden_size = 8 }\n'
                    '[ppo]\nnum_envs = 4\nnum_steps = 16\nnum_minibatches = 2\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rlmem", "train", "--env", "rlmem/EndlessTMaze-v0", "--agent",
                             str(tiny), "--steps", "10000000", "--threads", "1", "--quiet", "--runs-dir", str(tmp_path),
                             "--run-name", "r"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in out
    last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
    ckpts = sorted((tmp_path / "r" / "checkpoints").glob("step_*.pt"))
    assert ckpts and int(ckpts[-1].stem.split("_")[1]) == last_logged  # the last update is saved
