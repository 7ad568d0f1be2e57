"""GAE, the clipped loss and the env-axis minibatcher against plain reference loops."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.algos.functional import env_minibatches, gae, normalize, ppo_loss


def gae_reference(rewards, values, ends, last_value, gamma, lam):
    """Textbook per-env, per-step GAE: delta_t = r_t + gamma V_{t+1} (1 - end_t) - V_t."""
    T, B = rewards.shape
    adv = np.zeros((T, B))
    for b in range(B):
        running = 0.0
        for t in reversed(range(T)):
            next_v = last_value[b] if t == T - 1 else values[t + 1, b]
            nonterminal = 0.0 if ends[t, b] else 1.0
            delta = rewards[t, b] + gamma * next_v * nonterminal - values[t, b]
            running = delta + gamma * lam * nonterminal * running
            adv[t, b] = running
    return adv


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 20),
    B=st.integers(1, 5),
    gamma=st.floats(0.5, 1.0),
    lam=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_gae_equals_reference_loop(T, B, gamma, lam, seed):
    rng = np.random.default_rng(seed)
    rewards, values = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    ends, last = rng.random((T, B)) < 0.2, rng.normal(size=B)
    adv, ret = gae(
        torch.tensor(rewards), torch.tensor(values), torch.tensor(ends), torch.tensor(last), gamma, lam
    )
    expected = gae_reference(rewards, values, ends, last, gamma, lam)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10, atol=1e-10)


def test_gae_lambda_one_is_discounted_return_within_episode():
    # one env, an episode ending at t=2, a second one cut at the chunk end
    r = torch.tensor([[1.0], [0.0], [2.0], [1.0]])
    v = torch.zeros(4, 1)
    end = torch.tensor([[False], [False], [True], [False]])
    adv, _ = gae(r, v, end, torch.tensor([10.0]), gamma=0.5, lam=1.0)
    assert adv[:, 0].tolist() == pytest.approx([1 + 0.25 * 2, 0.5 * 2, 2.0, 1 + 0.5 * 10])


def test_ppo_loss_matches_hand_computation():
    new = torch.log(torch.tensor([0.5, 0.9, 0.1]))
    old = torch.log(torch.tensor([0.4, 0.5, 0.2]))
    adv = torch.tensor([1.0, 1.0, -1.0])
    ratio = (new - old).exp()  # 1.25, 1.8, 0.5
    clipped = ratio.clamp(0.8, 1.2)
    expected_pg = torch.max(-adv * ratio, -adv * clipped).mean()  # [-1.2, -1.2, 0.8]
    v_new, v_old, ret = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 0.0, 0.0]), torch.tensor([2.0, 1.0, 0.0])
    ent = torch.tensor([0.3, 0.3, 0.3])
    loss, stats = ppo_loss(new, old, adv, v_new, v_old, ret, ent, 0.2, vf_coef=0.5, ent_coef=0.01, clip_vloss=False)
    expected_v = 0.5 * ((v_new - ret) ** 2).mean()
    assert stats["policy_loss"].item() == pytest.approx(expected_pg.item())
    assert stats["policy_loss"].item() == pytest.approx((-1.2 - 1.2 + 0.8) / 3)
    assert loss.item() == pytest.approx(expected_pg.item() + 0.5 * expected_v.item() - 0.01 * 0.3)
    assert stats["clipfrac"].item() == pytest.approx(1.0)  # every ratio is outside [0.8, 1.2]


def test_ppo_value_clipping_limits_the_value_update():
    # The clipped value is old + clamp(new - old): the loss takes the larger of the two errors.
    z = torch.zeros(1)
    _, stats = ppo_loss(z, z, z, torch.tensor([3.0]), torch.tensor([0.0]), torch.tensor([3.0]), z, 0.2, 0.5, 0.0, True)
    assert stats["value_loss"].item() == pytest.approx(0.5 * (0.2 - 3.0) ** 2)


def test_gradient_is_zero_where_ratio_is_clipped_in_the_favourable_direction():
    new = torch.tensor([0.5], requires_grad=True)  # ratio e^0.5 > 1 + clip with positive advantage
    loss, _ = ppo_loss(new, torch.zeros(1), torch.ones(1), torch.zeros(1), torch.zeros(1), torch.zeros(1),
                       torch.zeros(1), 0.2, 0.0, 0.0, False)
    loss.backward()
    assert new.grad.item() == 0.0


def test_env_minibatches_partition_the_env_axis():
    g = torch.Generator().manual_seed(0)
    mbs = env_minibatches(12, 3, g)
    assert [len(m) for m in mbs] == [4, 4, 4]
    assert sorted(torch.cat(mbs).tolist()) == list(range(12))
    with pytest.raises(ValueError):
        env_minibatches(10, 3)


def test_normalize():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    y = normalize(x)
    assert y.mean().abs().item() < 1e-6 and y.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- GRPO group advantages


def group_advantages_reference(returns, group_size, scale_rewards="group", eps=1e-4):
    """Per-group loop with the DeepSeekMath / TRL convention: unbiased sample std, eps on the std."""
    out = np.zeros(len(returns))
    batch_std = np.std(returns, ddof=1) if len(returns) > 1 else 0.0
    for start in range(0, len(returns), group_size):
        group = np.asarray(returns[start : start + group_size], dtype=np.float64)
        mean = sum(group) / group_size
        if group_size == 1 or scale_rewards == "none":
            scale = 1.0
        elif scale_rewards == "group":
            scale = (sum((r - mean) ** 2 for r in group) / (group_size - 1)) ** 0.5 + eps
        else:
            scale = batch_std + eps
        for j, r in enumerate(group):
            out[start + j] = (r - mean) / scale
    return out


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 6),
    group_size=st.integers(1, 8),
    scale=st.sampled_from(["group", "batch", "none"]),
    binary=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_group_advantages_equal_reference_loop(groups, group_size, scale, binary, seed):
    from rlmem.algos.functional import group_advantages

    rng = np.random.default_rng(seed)
    # binary 0/1 returns (success rewards) produce constant groups often: the eps case
    returns = rng.integers(0, 2, groups * group_size).astype(float) if binary else rng.normal(size=groups * group_size)
    got = group_advantages(torch.tensor(returns), group_size, scale)
    assert got.dtype == torch.float64 and got.shape == (groups * group_size,)
    np.testing.assert_allclose(got.numpy(), group_advantages_reference(returns, group_size, scale), rtol=1e-10, atol=1e-12)


def test_group_advantages_by_hand():
    from rlmem.algos.functional import group_advantages

    adv = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0]), 4)
    std = (0.75 / 3) ** 0.5  # unbiased: sum of squares 0.75 over n - 1 = 3
    assert adv[:4].tolist() == pytest.approx([0.75 / (std + 1e-4), -0.25 / (std + 1e-4), -0.25 / (std + 1e-4), -0.25 / (std + 1e-4)])
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # a constant group teaches nothing
    assert group_advantages(torch.tensor([3.0, 1.0]), 2, "none").tolist() == [1.0, -1.0]
    for bad in [dict(group_size=3), dict(group_size=0), dict(group_size=2, scale_rewards="std")]:
        with pytest.raises(ValueError):
            group_advantages(torch.zeros(4), **bad)
