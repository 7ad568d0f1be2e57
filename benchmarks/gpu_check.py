"""GPU checks that CPU CI cannot make: every memory on CUDA, PPO training on CUDA.

1. Every registered memory, built on the CPU and copied to CUDA: one call over T steps ==
   T one-step calls on CUDA (the cuDNN whole-sequence path included), CUDA == CPU outputs,
   and equal input gradients (max abs differences printed).
2. PPO training throughput of the presets on CUDA vs this machine's CPU (1 thread), at the
   preset's env count and at 256 envs: steps/s over a fixed wall time, as a ratio.
3. `--device cuda` end to end: train agents/gru.toml on rlmem/EndlessTMaze-v0 and evaluate it
   on held-out seeds.

Run: ``python benchmarks/gpu_check.py [--seconds 20] [--learn-steps 300000]`` (needs CUDA).
"""

from __future__ import annotations

import argparse
import time

import torch

from rlmem import memory as memories
from rlmem.algos.ppo import train
from rlmem.config import load_preset, make_run_config
from rlmem.evaluate import EVAL_SEED_OFFSET, evaluate

SMALL = {"none": dict(hidden_size=32), "gru": dict(hidden_size=32, num_layers=2), "lstm": dict(hidden_size=32, num_layers=2)}


def leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    parts = state.values() if isinstance(state, dict) else state
    return [leaf for part in parts for leaf in leaves(part)]


def max_diff(a, b) -> float:
    diffs = [(x.detach().float().cpu() - y.detach().float().cpu()).abs() for x, y in zip(leaves(a), leaves(b))]
    return max((d.max().item() for d in diffs if d.numel()), default=0.0)


DEV = "cuda"  # --dry-run on a CPU-only machine sets "cpu" to test this script


def check_memories(T: int = 32, B: int = 8, in_dim: int = 6) -> None:
    print(f"== memories on {DEV} (T={T}, B={B}): max |difference|")
    print(f"{'memory':<10} {'call-vs-steps':>14} {'cuda-vs-cpu':>12} {'grad call-vs-steps':>19}")
    g = torch.Generator().manual_seed(0)
    for name in memories.names():
        torch.manual_seed(0)
        cpu = memories.make(name, in_dim, **SMALL.get(name, {}))
        gpu = memories.make(name, in_dim, **SMALL.get(name, {})).to(DEV)
        gpu.load_state_dict(cpu.state_dict())
        x = torch.randn(T, B, in_dim, generator=g)
        start = torch.rand(T, B, generator=g) < 0.1
        start[0, 0] = True
        xc = x.to(DEV).requires_grad_(True)
        y_call, s_call = gpu(xc, gpu.initial_state(B), start.to(DEV))
        (g_call,) = torch.autograd.grad(y_call.square().sum(), xc)
        xs = x.to(DEV).requires_grad_(True)
        state, ys = gpu.initial_state(B), []
        for t in range(T):
            y, state = gpu(xs[t : t + 1], state, start[t : t + 1].to(DEV))
            ys.append(y)
        y_steps = torch.cat(ys)
        (g_steps,) = torch.autograd.grad(y_steps.square().sum(), xs)
        with torch.no_grad():
            y_cpu, _ = cpu(x, cpu.initial_state(B), start)
        d_steps = max(max_diff(y_call, y_steps), max_diff(s_call, state))
        print(f"{name:<10} {d_steps:>14.2e} {max_diff(y_call, y_cpu):>12.2e} {max_diff(g_call, g_steps):>19.2e}")


def sps(preset: str, device: str, num_envs: int | None, seconds: float) -> float:
    cfg = make_run_config(load_preset(preset), env="rlmem/EndlessTMaze-v0", total_steps=10**9, seed=1,
                          num_envs=num_envs, device=device, torch_threads=1)
    t0, seen = time.perf_counter(), {}

    def stop(m: dict) -> bool:
        if m["update"] == 2:  # skip warm-up (cuDNN autotuning, allocator)
            seen["t"], seen["step"] = time.perf_counter(), m["step"]
        return time.perf_counter() - t0 > seconds and m["update"] > 3

    last = train(cfg, None, callback=stop)
    return (last["step"] - seen["step"]) / (time.perf_counter() - seen["t"])


def throughput(seconds: float) -> None:
    print(f"\n== PPO training steps/s on rlmem/EndlessTMaze-v0 ({seconds:.0f} s each; CPU = this machine, 1 thread)")
    print(f"{'preset':<22} {'envs':>5} {'cpu':>8} {'cuda':>8} {'cuda/cpu':>9}")
    for preset in ["agents/gru.toml", "agents/lstm.toml", "agents/gtrxl.toml"]:
        try:
            load_preset(preset)
        except Exception as e:  # a preset this checkout does not have yet
            print(f"{preset:<22} skipped: {e}")
            continue
        for n in (None, 256):
            cpu, gpu = sps(preset, "cpu", n, seconds), sps(preset, DEV, n, seconds)
            print(f"{preset:<22} {n or 'preset':>5} {cpu:>8.0f} {gpu:>8.0f} {gpu / cpu:>8.2f}x", flush=True)


def learn(steps: int) -> None:
    print(f"\n== --device cuda end to end: agents/gru.toml on rlmem/EndlessTMaze-v0, {steps} steps, seed 1")
    cfg = make_run_config(load_preset("agents/gru.toml"), env="rlmem/EndlessTMaze-v0", total_steps=steps, seed=1,
                          device=DEV, torch_threads=1)
    t0 = time.perf_counter()
    policy_box: dict = {}
    _train_and_keep(cfg, policy_box)
    wall = time.perf_counter() - t0
    res = evaluate(policy_box["policy"], cfg.env, cfg.env_kwargs, 200, cfg.seed + EVAL_SEED_OFFSET, device=DEV)
    lo, hi = res.success_ci
    print(f"trained in {wall:.0f} s ({steps / wall:.0f} steps/s); greedy success {res.success:.3f} [95% CI {lo:.3f}, {hi:.3f}] over {res.episodes} episodes")


def _train_and_keep(cfg, box: dict) -> None:
    """Train with a throw-away run folder and load the final policy from its checkpoint."""
    import tempfile
    from pathlib import Path

    from rlmem.evaluate import load_policy
    from rlmem.runs import Run

    with tempfile.TemporaryDirectory() as d:
        run = Run.create(Path(d) / "gpu", cfg)
        train(cfg, run)
        policy, _ = load_policy(Run.open(run.path))
        box["policy"] = policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--learn-steps", type=int, default=300_000)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: memories,throughput,learn")
    ap.add_argument("--dry-run", action="store_true", help="run every part on the CPU (tests this script)")
    args = ap.parse_args()
    global DEV
    if args.dry_run:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    else:
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, cudnn {torch.backends.cudnn.version()}")
    skip = set(args.skip.split(","))
    if "memories" not in skip:
        check_memories()
    if "throughput" not in skip:
        throughput(args.seconds)
    if "learn" not in skip:
        learn(args.learn_steps)


if __name__ == "__main__":
    main()
