"""Config parsing: typed, strict, with clear errors."""

import pytest

from rlmem.config import PolicyConfig, RunConfig, from_dict, load_preset, make_run_config, parse_inline_table
from rlmem.errors import ConfigError


def test_presets_load_and_validate():
    for name in ("gru", "lstm", "none"):
        cfg = make_run_config(load_preset(f"agents/{name}.toml"), env="rlmem/EndlessTMaze-v0")
        assert cfg.policy.memory == name
        assert cfg.batch_size == cfg.ppo.num_envs * cfg.ppo.num_steps


def test_overrides_reach_the_right_table():
    cfg = make_run_config({}, env="x", total_steps=1000, num_envs=4, seed=None)
    assert cfg.total_steps == 1000 and cfg.ppo.num_envs == 4 and cfg.seed == RunConfig.seed


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown config key ppo.lr; valid keys in ppo: num_envs"):
        from_dict(RunConfig, {"env": "x", "ppo": {"lr": 1e-3}})


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigError, match="ppo.num_envs must be an integer"):
        make_run_config({"ppo": {"num_envs": "8"}}, env="x")
    with pytest.raises(ConfigError, match="policy.encoder\\[0\\] must be an integer"):
        from_dict(RunConfig, {"env": "x", "policy": {"encoder": [1.5]}})
    with pytest.raises(ConfigError, match="must be true or false"):
        from_dict(PolicyConfig, {"separate_critic": 1})


@pytest.mark.parametrize(
    "override, message",
    [
        ({"total_steps": -5}, "total_steps must be positive"),
        ({"num_envs": 6}, "divisible by ppo.num_minibatches"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_impossible_numbers(override, message):
    with pytest.raises(ConfigError, match=message):
        make_run_config({"ppo": {"num_minibatches": 4}}, env="x", **override)


def test_malformed_toml_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy\nmemory = 'gru'")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_preset(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_preset(tmp_path / "missing.toml")
    stray = tmp_path / "stray.toml"
    stray.write_text("learning_rate = 1.0\n")
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        load_preset(stray)


def test_inline_table():
    assert parse_inline_table('n_corridors = 5, length_mode = "fixed"') == {"n_corridors": 5, "length_mode": "fixed"}
    with pytest.raises(ConfigError, match="malformed --env-kwargs"):
        parse_inline_table("n_corridors 5", "--env-kwargs")
