"""NEC (``algo = "nec"``): N-step targets, the DND read, tabular re-visits, resume, learning, CLI."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmem import cli
from rlmem.algos import nec
from rlmem.algos.nec import NECAgent, NECConfig, NStepWindow, check_config, discounted_suffix_sums
from rlmem.config import PolicyConfig, load_preset, make_run_config
from rlmem.errors import ConfigError
from rlmem.runs import Run

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "agents" / "nec.toml"


def config(env: str, steps: int, seed: int = 1, env_kwargs: dict | None = None, **nec_overrides):
    preset = load_preset(PRESET)
    preset["nec"] = {**preset["nec"], **nec_overrides}
    return make_run_config(preset, env=env, env_kwargs=env_kwargs, total_steps=steps, seed=seed, torch_threads=1)


# --------------------------------------------------------------------------- N-step targets
def reference_targets(r, term, trunc, v, v_final, n, gamma) -> dict[int, float]:
    """NEC's N-step target of every step t of one env's trajectory whose target is defined,
    written as the definition reads: walk up to N rewards; an episode end cuts the walk
    (terminated: nothing after; truncated: the final observation's value); else bootstrap
    from v[t + N], the value of the state observed N steps later."""
    T, out = len(r), {}
    for t in range(T):
        G = 0.0
        for k in range(n):
            if t + k >= T:
                break
            G += gamma**k * r[t + k]
            if term[t + k]:
                out[t] = G
                break
            if trunc[t + k]:
                out[t] = G + gamma ** (k + 1) * v_final[t + k]
                break
        else:
            if t + n < T:
                out[t] = G + gamma**n * v[t + n]
    return out


def test_discounted_suffix_sums_equal_a_reverse_loop():
    g = torch.Generator().manual_seed(0)
    r, boot, gamma = torch.randn(7, 3, generator=g), torch.randn(3, generator=g), 0.9
    want = torch.zeros(7, 3)
    acc = boot.clone()
    for j in reversed(range(7)):
        acc = r[j] + gamma * acc
        want[j] = acc
    torch.testing.assert_close(discounted_suffix_sums(r, boot, gamma), want)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_n_step_window_gives_the_reference_targets_with_episode_ends(n):
    """Drive the window as the training loop does, over B random trajectories with
    terminations and truncations: every defined target comes out once, with its value."""
    rng = np.random.default_rng(n)
    T, B, gamma = 40, 5, 0.9
    r = rng.normal(size=(T, B))
    end = rng.random((T, B)) < 0.15
    term = end & (rng.random((T, B)) < 0.5)
    trunc = end & ~term
    v, v_final = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    window = NStepWindow(n, B, key_dim=2, gamma=gamma)
    got: dict[int, float] = {}
    f32 = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731

    def collect(fin):
        for row, target, key, action in zip(fin.rows.tolist(), fin.targets.tolist(), fin.keys, fin.actions.tolist()):
            assert row not in got, "a transition was finished twice"
            got[row] = target
            t, b = divmod(row, B)
            assert key.tolist() == [t, b] and action == (t + b) % 3  # the payload rides with its target

    for t in range(T):
        collect(window.complete(f32(v[t])))
        rows = torch.arange(t * B, (t + 1) * B)
        keys = torch.stack([torch.full((B,), float(t)), torch.arange(B, dtype=torch.float32)], 1)
        window.push(rows, keys, (t + torch.arange(B)) % 3, f32(r[t]))
        collect(window.end(torch.as_tensor(end[t]), f32(np.where(trunc[t], v_final[t], 0.0))))

    want = {}
    for b in range(B):
        for t, target in reference_targets(r[:, b], term[:, b], trunc[:, b], v[:, b], v_final[:, b], n, gamma).items():
            want[t * B + b] = target
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- the DND read and write
def identity_agent(**nec_kwargs) -> NECAgent:
    """An agent on 2-D observations whose key is the observation itself (no hidden layer)."""
    space = gym.spaces.Box(-10, 10, (2,), np.float32)
    nec_cfg = NECConfig(key_dim=2, **nec_kwargs)
    agent = NECAgent(space, gym.spaces.Discrete(3), PolicyConfig(memory="none", encoder=()), nec_cfg)
    with torch.no_grad():
        agent.key.weight.copy_(torch.eye(2))
        agent.key.bias.zero_()
    return agent


def test_q_is_the_nec_kernel_read_of_each_actions_bank():
    agent = identity_agent(num_neighbors=2, delta=0.5)
    agent.banks[0].add(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0]]), q=torch.tensor([1.0, 2.0, 3.0]))
    agent.banks[1].add(torch.tensor([[1.0, 1.0]]), q=torch.tensor([5.0]))
    # bank 2 stays empty: Q = 0
    obs = torch.tensor([[[0.5, 0.0]]])  # [T=1, B=1, 2]
    out, _ = agent(obs, agent.initial_state(1), torch.ones(1, 1, dtype=torch.bool))
    k = 1 / (torch.tensor([0.25, 2.25]) + 0.5)  # the p = 2 nearest keys of bank 0
    q0 = (k * torch.tensor([1.0, 2.0])).sum() / k.sum()
    torch.testing.assert_close(out.params[0, 0], torch.stack([q0, torch.tensor(5.0), torch.tensor(0.0)]))
    assert out.value[0, 0] == 5.0 and out.features.shape == (1, 1, 2)
    action, _ = agent.sample(out.params[0], deterministic=True)
    assert action.tolist() == [1]
    # The read of the taken action is differentiable in the key (what the embedding learns from).
    h = torch.tensor([[0.5, 0.0], [0.0, 0.0]], requires_grad=True)
    q = agent.q_taken(h, torch.tensor([0, 2]))
    torch.testing.assert_close(q.detach(), torch.stack([q0, torch.tensor(0.0)]))
    q.sum().backward()
    assert h.grad[0].abs().sum() > 0 and h.grad[1].abs().sum() == 0


def test_a_revisited_key_gets_the_tabular_update():
    agent = identity_agent(alpha=0.25)
    key = torch.tensor([[1.0, 2.0]])
    agent.write(key, torch.tensor([0]), torch.tensor([10.0]))
    agent.write(key, torch.tensor([0]), torch.tensor([30.0]))
    agent.write(key, torch.tensor([1]), torch.tensor([7.0]))  # the same key under another action: its own bank
    bank = agent.banks[0]
    assert len(bank) == 1 and bank.visits.tolist() == [2]
    torch.testing.assert_close(bank.q, torch.tensor([10.0 + 0.25 * (30.0 - 10.0)]))
    assert len(agent.banks[1]) == 1 and agent.banks[1].q.tolist() == [7.0]


def test_training_revisits_update_rows_in_place(tmp_path):
    """FrozenLake has 16 states: with the embedding frozen (no gradient step yet) every
    re-visit of (state, action) hits its stored key exactly, so the banks never hold more than
    16 rows per action while every finished transition is folded into one of them."""
    run = Run.create(tmp_path / "lake", config("FrozenLake-v1", steps=1024, learning_starts=10**6, n_step=3))
    nec.train(run.config, run)
    assert run.metrics()[-1]["grad_steps"] == 0
    banks = run.load_checkpoint()["banks"]
    rows = sum(len(b["q"]) for b in banks)
    visits = sum(int(b["visits"].sum()) for b in banks)
    assert 4 <= rows <= 16 * 4
    assert 1024 - 16 * 3 <= visits <= 1024  # all but the (at most N per env) pending transitions


# --------------------------------------------------------------------------- config
def test_config_is_parsed_and_bad_values_are_one_clear_error():
    n = check_config(config("CartPole-v1", 100, n_step=7))
    assert isinstance(n, NECConfig) and n.n_step == 7 and n.num_neighbors == 50
    with pytest.raises(ConfigError, match="valid keys in nec: key_dim"):
        config("CartPole-v1", 100, neighbours=5)
    with pytest.raises(ConfigError, match="replay_size"):
        config("CartPole-v1", 100, replay_size=100, n_step=20)
    with pytest.raises(ConfigError, match="epsilon"):
        config("CartPole-v1", 100, epsilon_end=0.5, epsilon_start=0.1)
    with pytest.raises(ConfigError, match="index"):
        config("CartPole-v1", 100, index="annoy")
    preset = load_preset(PRESET)
    with pytest.raises(ConfigError, match="memory"):
        make_run_config({**preset, "policy": {"memory": "gru"}}, env="CartPole-v1")
    with pytest.raises(ConfigError, match=r"\[ppo\]"):
        make_run_config({**preset, "ppo": {"learning_rate": 1e-3}}, env="CartPole-v1")
    with pytest.raises(ConfigError, match=r"\[nec\] table is for algo nec"):
        make_run_config({**preset, "algo": "ppo"}, env="CartPole-v1")
    with pytest.raises(ConfigError, match="Discrete action space"):
        nec.train(config("Pendulum-v1", 100))


# --------------------------------------------------------------------------- resume
def test_stop_and_resume_equal_an_uninterrupted_run(tmp_path):
    """Same seed: identical runs; a --stop-after / --resume continues bit-exactly (weights,
    banks, replay, pending N-step window, env state)."""
    kw = dict(env="rlmem/TaskStreamNoDistractors-v0", steps=4 * 256, n_step=3, learning_starts=256)
    whole = Run.create(tmp_path / "whole", config(**kw))
    nec.train(whole.config, whole)
    split = Run.create(tmp_path / "split", config(**kw))
    assert nec.train(split.config, split, stop_after=512).get("paused")
    nec.train(split.config, split, resume=True)
    a, b = whole.load_checkpoint(), split.load_checkpoint()
    assert a["step"] == b["step"] == 1024
    for k in a["policy"]:
        assert torch.equal(a["policy"][k], b["policy"][k]), k
    for bank_a, bank_b in zip(a["banks"], b["banks"]):
        for k in bank_a:
            assert torch.equal(bank_a[k], bank_b[k]), k
    assert [r["loss"] for r in whole.metrics()] == [r["loss"] for r in split.metrics()]


# --------------------------------------------------------------------------- learning
def test_nec_learns_cartpole_in_a_few_thousand_steps(tmp_path):
    """NEC's selling point is sample efficiency: after 4k CartPole steps (the first 4k of the
    5k-step epsilon anneal) the greedy agent balances far longer than a random one (~22)."""
    run = Run.create(tmp_path / "cartpole", config("CartPole-v1", steps=4096, seed=3))
    nec.train(run.config, run)
    res = nec.evaluate_run(run, episodes=16, seed=1_000_003, num_envs=16)
    assert res.episodes == 16
    assert res.mean_return > 60, res


# --------------------------------------------------------------------------- CLI
def test_cli_train_eval_and_a_bad_key(tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = cli.main(["train", "--env", "CartPole-v1", "--agent", str(PRESET), "--steps", "2000",
                   "--runs-dir", str(runs), "--run-name", "nec", "--quiet"])
    assert rc == 0
    assert "done:" in capsys.readouterr().out
    rc = cli.main(["eval", str(runs / "nec"), "--episodes", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "episodes   8" in out and "return" in out

    bad = tmp_path / "bad.toml"
    bad.write_text(PRESET.read_text().replace("[nec]\n", "[nec]\nneighbours = 5\n"))
    rc = cli.main(["train", "--env", "CartPole-v1", "--agent", str(bad), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key nec.neighbours" in err and err.count("\n") == 1
    assert sorted(p.name for p in runs.iterdir()) == ["nec"]  # nothing created for the bad preset
