"""Dict observations end to end: the goal-conditioned encoder, the observation helpers, and
PPO / eval / record / resume on rlmem/GoatGridSmall-v0 (Dict observations, SyncVectorEnv)."""

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmem.agents.encoders import DictEncoder, ImageEncoder, TokenEncoder, make_encoder
from rlmem.agents.obs import index_envs, map_obs, obs_buffer, stack_final, store, to_numpy, to_tensor, unsqueeze
from rlmem.agents.policy import ActorCritic
from rlmem.algos import ppo
from rlmem.cli import main
from rlmem.config import load_preset, make_run_config
from rlmem.envs.vector import make_vec_env
from rlmem.evaluate import load_policy
from rlmem.errors import ConfigError
from rlmem.runs import Run

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
ENV = "rlmem/GoatGridSmall-v0"
# Two short subgoals per episode, so episodes (and the video) end within a tiny run.
ENV_KWARGS = {"min_subgoals": 2, "max_subgoals": 2, "subgoal_budget": 12}
TINY = {"ppo": {"num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 2},
        "policy": {"memory": "gru", "memory_kwargs": {"hidden_size": 32}, "encoder": [32], "activation": "relu"},
        "checkpoint_every": 100}

SPACE = gym.spaces.Dict({
    "view": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
    "goal_image": gym.spaces.Box(0, 255, (28, 28, 3), np.uint8),
    "text": gym.spaces.Box(0, 9, (5,), np.int64),
    "ids": gym.spaces.MultiDiscrete([4, 4, 4]),
    "category": gym.spaces.Discrete(3, start=1),
    "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    "nested": gym.spaces.Dict({"flag": gym.spaces.Discrete(2)}),
})


def _batch(space: gym.spaces.Dict, T: int, B: int, seed: int = 0) -> dict:
    """[T, B, ...] tensors of random observations of ``space``."""
    space.seed(seed)
    samples = [space.sample() for _ in range(T * B)]

    def stack(items):
        if isinstance(items[0], dict):
            return {k: stack([it[k] for it in items]) for k in items[0]}
        arr = np.stack(items)
        return torch.as_tensor(arr.reshape(T, B, *arr.shape[1:]))

    return stack(samples)


def _leaves(obs: dict, prefix=()):
    for k, v in obs.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _changed(space: gym.Space, x: torch.Tensor) -> torch.Tensor:
    """A different valid value for one observation ``x`` of ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return torch.as_tensor(space.start + (int(x) - space.start + 1) % space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return (x + 1) % torch.as_tensor(space.nvec)
    if np.issubdtype(space.dtype, np.integer):
        high = torch.as_tensor(space.high)
        return torch.where(x < high, x + 1, x - 1).to(x.dtype)
    return -x if x.abs().sum() > 0 else x + 0.5


# ----------------------------------------------------------------------------- encoder
def test_dict_encoder_shapes_and_branches():
    enc = make_encoder(SPACE, (16,), "tanh")
    assert isinstance(enc, DictEncoder) and enc.out_dim == 16
    y = enc(_batch(SPACE, 3, 2))
    assert y.shape == (3, 2, 16) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert isinstance(enc.branches["text"].inner, TokenEncoder)
    assert isinstance(enc.branches["ids"].inner, TokenEncoder)  # MultiDiscrete ids: embedded too
    assert isinstance(enc.branches["view"].inner, ImageEncoder)
    # a 28 px image is patchified (kernel = stride = 4) down to 7x7; a 7 px view is not
    big, small = enc.branches["goal_image"].inner.conv, enc.branches["view"].inner.conv
    assert big[0].kernel_size == (4, 4) and big[0].stride == (4, 4) and len(big) == len(small) + 2
    assert isinstance(small[0], torch.nn.Conv2d) and small[0].kernel_size == (3, 3)


def test_every_key_of_a_dict_observation_moves_the_output():
    torch.manual_seed(0)
    enc = make_encoder(SPACE, (16,), "tanh")
    obs = _batch(SPACE, 2, 3, seed=1)
    with torch.no_grad():
        base = enc(obs)
    subspaces = {("nested", "flag"): SPACE["nested"]["flag"], **{(k,): s for k, s in SPACE.spaces.items()}}
    for path, leaf in _leaves(obs):
        edited = {k: (dict(v) if isinstance(v, dict) else v.clone()) for k, v in obs.items()}
        target = edited
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = target[path[-1]].clone()
        target[path[-1]][1, 2] = _changed(subspaces[path], leaf[1, 2])
        with torch.no_grad():
            out = enc(edited)
        assert not torch.allclose(out[1, 2], base[1, 2]), f"key {path} has no influence"
        # per-step encoder: every other (t, b) entry is untouched
        mask = torch.ones(2, 3, dtype=torch.bool)
        mask[1, 2] = False
        assert torch.equal(out[mask], base[mask]), path


def test_token_order_matters():
    """'purple box ... yellow door' != 'yellow box ... purple door': no bag of words."""
    torch.manual_seed(0)
    enc = TokenEncoder(gym.spaces.Box(0, 9, (4,), np.int64), (8,), "tanh")
    a = torch.tensor([[[3, 5, 7, 0]]])
    b = torch.tensor([[[7, 5, 3, 0]]])
    with torch.no_grad():
        assert not torch.allclose(enc(a), enc(b))


def test_goal_gating_scales_the_view_feature_maps():
    """policy.goal_gating (gated attention): the goal_* branches set one gate per channel of
    the view's last feature maps. All gates open is the plain encoder; all shut, the view is gone."""
    torch.manual_seed(0)
    gated = make_encoder(SPACE, (16,), "tanh", goal_gating=True)
    assert gated.goal_keys == ["goal_image"] and list(gated.gates) == ["view"]  # a goal image gates, is not gated
    plain = make_encoder(SPACE, (16,), "tanh")
    assert set(plain.load_state_dict(gated.state_dict(), strict=False).unexpected_keys) == {
        "gates.view.weight", "gates.view.bias"}
    obs = _batch(SPACE, 2, 3)
    other_view = dict(obs, view=255 - obs["view"])
    with torch.no_grad():
        assert not torch.allclose(gated(obs), plain(obs))
        gated.gates["view"].weight.zero_()
        gated.gates["view"].bias.fill_(50.0)   # sigmoid(50) == 1 in float32
        assert torch.allclose(gated(obs), plain(obs), atol=1e-6)
        assert not torch.allclose(gated(other_view), gated(obs))
        gated.gates["view"].bias.fill_(-50.0)  # ~2e-22: the view's maps are scaled to ~0
        assert torch.allclose(gated(other_view), gated(obs), atol=1e-6)


def test_goal_gating_needs_goal_keys_and_a_view():
    with pytest.raises(ConfigError, match="goal_gating"):
        make_encoder(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), (8,), "relu", goal_gating=True)
    no_goal = gym.spaces.Dict({"view": SPACE["view"], "text": SPACE["text"]})
    with pytest.raises(ConfigError, match="goal_gating needs goal_\\* keys"):
        make_encoder(no_goal, (8,), "relu", goal_gating=True)


def test_unsupported_sub_space_names_its_key():
    space = gym.spaces.Dict({"ok": gym.spaces.Discrete(2), "mission": gym.spaces.Text(8)})
    with pytest.raises(ConfigError, match="'mission'"):
        make_encoder(space, (8,), "tanh")


def test_plain_spaces_keep_their_encoders():
    flat = make_encoder(gym.spaces.Box(0, 1, (3,)), (8,), "tanh")
    assert not isinstance(flat, DictEncoder) and flat.out_dim == 8
    image = make_encoder(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), (8,), "relu")
    assert isinstance(image, ImageEncoder) and len(image.conv) == 4  # two conv + ReLU pairs: no patchify layer


# ----------------------------------------------------------------------------- observation helpers
def test_obs_helpers_on_plain_and_dict_observations():
    plain = gym.spaces.Box(0, 1, (3,), np.float32)
    buf = obs_buffer(plain, 4, 2)
    assert isinstance(buf, torch.Tensor) and buf.shape == (4, 2, 3)
    x = np.ones((2, 3), np.float32)
    t = to_tensor(x)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and unsqueeze(t).shape == (1, 2, 3)
    store(buf, 1, t)
    assert buf[1].sum() == 6 and index_envs(buf, torch.tensor([1])).shape == (4, 1, 3)

    dbuf = obs_buffer(SPACE, 4, 2)
    assert dbuf["category"].shape == (4, 2) and dbuf["category"].dtype == torch.int64
    assert dbuf["view"].dtype == torch.uint8 and dbuf["nested"]["flag"].shape == (4, 2)
    obs = map_obs(lambda v: v[0], _batch(SPACE, 1, 2, seed=3))  # [B, ...] per leaf
    store(dbuf, 2, to_tensor(to_numpy(obs)))
    mb = index_envs(dbuf, torch.tensor([1]))
    assert torch.equal(mb["text"][2, 0], obs["text"][1]) and mb["view"].shape == (4, 1, 7, 7, 3)
    assert unsqueeze(to_tensor(obs), 2)["position"].shape == (1, 1, 2, 2)


def test_stack_final_reads_sync_vector_env_final_obs():
    """SyncVectorEnv (SAME_STEP) puts one unbatched dict per finished env in info["final_obs"]."""
    envs = make_vec_env(ENV, 3, {**ENV_KWARGS, "max_episode_steps": 3})
    envs.reset(seed=0)
    for _ in range(3):
        last = envs.step(np.zeros(3, dtype=np.int64))  # turn left: nothing ends a subgoal early
    _, _, terminated, truncated, info = last
    envs.close()
    assert truncated.all() and not terminated.any()
    assert isinstance(info["final_obs"][0], dict)
    final = stack_final(info["final_obs"], [0, 2])
    assert set(final) == set(envs.single_observation_space.spaces)
    assert final["image"].shape == (2, 7, 7, 3) and final["goal_category"].shape == (2,)
    np.testing.assert_array_equal(final["goal_text"][1], info["final_obs"][2]["goal_text"])
    plain = np.empty(2, dtype=object)
    plain[:] = [np.zeros(3), np.ones(3)]
    np.testing.assert_array_equal(stack_final(plain, [1]), np.ones((1, 3)))


# ----------------------------------------------------------------------------- PPO, eval, record, resume
def _params(run: Run) -> dict:
    return run.load_checkpoint()["policy"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def goat_run(tmp_path_factory):
    """Two PPO updates of 128 steps on GoatGridSmall (Dict observations)."""
    cfg = make_run_config(TINY, env=ENV, env_kwargs=ENV_KWARGS, total_steps=256, seed=2, torch_threads=1)
    run = Run.create(tmp_path_factory.mktemp("runs") / "goat", cfg)
    metrics = ppo.train(cfg, run)
    return run, metrics


def test_ppo_trains_on_dict_observations(goat_run):
    run, metrics = goat_run
    assert metrics["step"] == 256 and metrics["update"] == 2
    assert all(np.isfinite(metrics[k]) for k in ("policy_loss", "value_loss", "entropy"))
    assert metrics["episodes"] > 0 and "success" in metrics  # GoatGrid's info["success"] flows through
    ckpt = run.load_checkpoint()  # weights_only=True: the loop observation is a dict of tensors
    assert isinstance(ckpt["loop"]["obs"], dict) and ckpt["loop"]["obs"]["goal_image"].shape == (4, 56, 56, 3)
    assert any(k.startswith("pi_trunk.encoder.branches.goal_text") for k in ckpt["policy"])


def test_eval_and_record_on_the_dict_run(goat_run, tmp_path, capsys):
    run, _ = goat_run
    assert main(["eval", str(run.path), "--episodes", "4", "--num-envs", "4"]) == 0
    out = capsys.readouterr().out
    assert "episodes   4" in out and "success" in out
    # lifelong episodes: per-subgoal and per-modality tables (4 episodes x the run's subgoals each)
    assert "success/SPL by subgoal index" in out and "success/SPL by modality" in out
    name, count = out.split("success/SPL by modality")[1].splitlines()[-1].split()[:2]
    assert name == "all" and int(count) % 4 == 0 and int(count) >= 4
    assert main(["record", str(run.path), "--out", str(tmp_path), "--episodes", "1"]) == 0
    videos = list(tmp_path.glob("goat.*"))
    assert videos and videos[0].stat().st_size > 1000


def test_truncation_bootstraps_on_dict_observations(monkeypatch):
    """A TimeLimit truncates; V(final_obs) is read from the stacked dict of final observations."""
    seen = []
    real = ppo._final_values

    def spy(policy, info, truncated, state, device):
        v = real(policy, info, truncated, state, device)
        seen.append((truncated.copy(), v.clone()))
        return v

    monkeypatch.setattr(ppo, "_final_values", spy)
    cfg = make_run_config({**TINY, "ppo": {**TINY["ppo"], "num_steps": 16, "update_epochs": 1}}, env=ENV,
                          env_kwargs={**ENV_KWARGS, "max_episode_steps": 5}, total_steps=64, seed=0, torch_threads=1)
    ppo.train(cfg)
    assert seen, "no truncation happened"
    for truncated, values in seen:
        assert (values[torch.as_tensor(truncated)] != 0).all() and (values[torch.as_tensor(~truncated)] == 0).all()


def test_stop_and_resume_on_an_env_without_get_state(tmp_path):
    """SyncVectorEnv has no get_state: ppo.py promises a resume that restarts the episodes
    (reset with a seed derived from the update), with the checkpoint's weights, optimiser and
    RNG -- deterministic, but not the uninterrupted run's trajectory."""
    cfg = make_run_config(TINY, env=ENV, env_kwargs=ENV_KWARGS, total_steps=384, seed=4, torch_threads=1)
    assert not hasattr(make_vec_env(ENV, 1, ENV_KWARGS), "get_state")
    straight = Run.create(tmp_path / "straight", cfg)
    ppo.train(cfg, straight)

    paused = Run.create(tmp_path / "paused", cfg)
    first = ppo.train(cfg, paused, stop_after=128)
    assert first["paused"] and first["step"] == 128
    assert paused.load_checkpoint()["env_state"] is None
    # before the pause the two runs are the same run
    assert [m["value_loss"] for m in paused.metrics()] == [m["value_loss"] for m in straight.metrics()][:1]

    at_pause = _params(paused)
    shutil.copytree(paused.path, tmp_path / "paused_again")
    resumed = [Run.open(paused.path), Run.open(tmp_path / "paused_again")]
    for run in resumed:
        last = ppo.train(run.config, run, resume=True)
        assert last["step"] == 384 and last["update"] == 3 and "paused" not in last
    assert [m["step"] for m in resumed[0].metrics()] == [m["step"] for m in straight.metrics()]
    assert _same(_params(resumed[0]), _params(resumed[1]))  # a resume is reproducible
    assert not _same(_params(resumed[0]), at_pause)  # and it trained on from the checkpoint


def test_nav_preset_builds_a_goal_conditioned_gru_agent():
    cfg = make_run_config(load_preset(ROOT / "agents" / "gru-nav.toml"), env="rlmem/GoatGrid-v0")
    envs = make_vec_env(cfg.env, 1)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.policy)
    envs.close()
    assert isinstance(policy.pi_trunk.encoder, DictEncoder)
    assert 128 <= policy.pi_trunk.memory.out_dim <= 256 and 8 <= cfg.ppo.num_envs <= 16


def test_grpo_trains_on_dict_observations(tmp_path):
    from rlmem.algos import grpo

    preset = {"algo": "grpo", "policy": {"memory": "gru", "memory_kwargs": {"hidden_size": 16}, "encoder": [16]},
              "grpo": {"group_size": 2, "groups_per_update": 2, "update_epochs": 1, "num_minibatches": 1,
                       "max_episode_steps": 30}}
    cfg = make_run_config(preset, env="rlmem/GoatGridSmall-v0", env_kwargs={"subgoal_budget": 6}, total_steps=200,
                          seed=3)
    torch.manual_seed(0)
    before = ActorCritic(*_spaces(cfg), cfg.policy).state_dict()
    run = Run.create(tmp_path / "grpo", cfg)
    grpo.train(cfg, run)
    policy, _ = load_policy(Run.open(run.path))
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())  # it updated


def _spaces(cfg):
    envs = make_vec_env(cfg.env, 1, cfg.env_kwargs)
    spaces = envs.single_observation_space, envs.single_action_space
    envs.close()
    return spaces


def test_grids_of_codes_are_embedded_per_channel():
    from rlmem.agents.encoders import code_vocab
    from rlmem.envs.goat_grid import GoatGrid

    symbolic = GoatGrid(layout=(1, 1), n_objects=2, min_subgoals=1, max_subgoals=1).observation_space["image"]
    assert code_vocab(symbolic) == (11, 6, 3)  # MiniGrid object, colour, state codes
    assert code_vocab(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)) is None  # pixels
    assert code_vocab(gym.spaces.Box(0, 1, (7, 7, 3), np.float32)) is None
    uneven = np.full((7, 7, 3), 5, np.uint8)
    uneven[0, 0, 0] = 9
    assert code_vocab(gym.spaces.Box(0, uneven, (7, 7, 3), np.uint8)) is None
    enc = make_encoder(symbolic, (8,), "relu")
    assert isinstance(enc, ImageEncoder) and [e.num_embeddings for e in enc.codes] == [11, 6, 3]
    view = np.zeros((7, 7, 3), np.uint8)
    view[..., 0] = 1  # empty floor, colour 0, state 0 ...
    view[2, 3] = (7, 2, 0)  # ... and one box of colour 2
    enc(torch.as_tensor(view)[None, None]).sum().backward()
    used = [set(torch.nonzero(e.weight.grad.abs().sum(1)).flatten().tolist()) for e in enc.codes]
    assert used == [{1, 7}, {0, 2}, {0}]  # looked up by code, not read as intensities
