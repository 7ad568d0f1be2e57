"""Typed, frozen run configuration, read from agent presets (TOML) and CLI overrides.

A run is fully described by a :class:`RunConfig`: the environment, the policy
(:class:`PolicyConfig`) and the algorithm (:class:`PPOConfig`). Agent presets in
``agents/*.toml`` hold the ``[policy]`` and ``[ppo]`` tables; ``rlmem train`` adds the
environment, seed, device and overrides, and writes the resolved config to the run
folder as ``config.toml``. Unknown keys and mistyped values are rejected with a
:class:`rlmem.errors.ConfigError` naming the valid keys.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from rlmem.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    """Encoder -> Memory -> actor/critic heads."""

    memory: str = "gru"
    """Memory controller name (``rlmem.memory.names()``): none, gru, lstm, ..."""
    memory_kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the memory, e.g. ``{hidden_size = 128}``."""
    encoder: tuple[int, ...] = (64,)
    """Hidden sizes of the per-step MLP encoder in front of the memory (empty: raw observation)."""
    head: tuple[int, ...] = ()
    """Hidden sizes of the MLPs between the memory and the actor / critic outputs."""
    separate_critic: bool = False
    """Give the critic its own encoder and memory (sb3-contrib RecurrentPPO's default)."""
    activation: str = "tanh"
    """Activation of encoder and head MLPs: tanh or relu."""
    goal_gating: bool = False
    """Dict observations with ``goal_*`` keys: the goal gates the view's convolutional feature
    channels (gated attention, Chaplot et al. 2018), see :class:`rlmem.agents.encoders.DictEncoder`."""


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO hyperparameters (CleanRL ppo_atari_lstm names)."""

    num_envs: int = 16
    """Parallel environments B (one native batched env)."""
    num_steps: int = 128
    """Rollout length T per env per update; also the truncated-BPTT chunk length."""
    learning_rate: float = 2.5e-4
    """Adam learning rate at the start of training."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Minibatches per epoch; they split the env axis so sequences stay whole."""
    update_epochs: int = 4
    """Passes over each rollout."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clip."""
    clip_vloss: bool = True
    """Clip the value loss around the old values."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float = 0.0
    """Stop the epochs of an update early once the approximate KL exceeds this (0: never)."""


ALGO_TABLES = {"grpo": ("grpo",), "sb3": ("sb3-ppo", "sb3-recurrentppo"), "llm": ("memalpha",), "nec": ("nec",), "dagger": ("dagger",)}
"""The free-form algorithm tables of a RunConfig and the algos that read each."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a training run."""

    env: str
    """Gymnasium id, e.g. ``rlmem/EndlessTMaze-v0``."""
    env_kwargs: dict = field(default_factory=dict)
    """Keyword arguments passed to the environment."""
    total_steps: int = 200_000
    """Environment steps to train for (all envs together)."""
    seed: int = 1
    """Seeds torch and the environments (sub-env i gets seed + i)."""
    device: str = "cpu"
    """Torch device: cpu or cuda."""
    torch_threads: int = 1
    """Torch intra-op threads (0: torch's default). Small recurrent nets on CPU train fastest
    on one thread (per-step ops are too small to split, and extra threads spin-wait badly on a
    busy machine); raise it for big networks. Same seed + threads: same result."""
    checkpoint_every: int = 50
    """Write a checkpoint every this many updates (and always at the end)."""
    init_from: str = ""
    """A run folder whose newest checkpoint's network starts this run (``ppo`` and ``dagger``,
    e.g. PPO after DAgger); ``[policy]`` and the env's spaces must match. "" = fresh weights."""
    algo: str = "ppo"
    """Training algorithm, a name of :data:`rlmem.algos.ALGOS`: ppo, grpo, sb3-ppo,
    sb3-recurrentppo, memalpha, modular, nec, dagger."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Network architecture (rlmem's own algorithms)."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO hyperparameters."""
    grpo: dict = field(default_factory=dict)
    """GRPO hyperparameters (``algo = "grpo"``), checked by :mod:`rlmem.algos.grpo`."""
    sb3: dict = field(default_factory=dict)
    """Stable-Baselines3 constructor arguments (``algo = "sb3-..."``), checked by :mod:`rlmem.algos.sb3`."""
    llm: dict = field(default_factory=dict)
    """LLM writer settings (``algo = "memalpha"``), checked by :mod:`rlmem.algos.memalpha`."""
    nec: dict = field(default_factory=dict)
    """Neural Episodic Control hyperparameters (``algo = "nec"``), checked by :mod:`rlmem.algos.nec`."""
    dagger: dict = field(default_factory=dict)
    """DAgger settings (``algo = "dagger"``), checked by :mod:`rlmem.algos.dagger`."""

    # ------------------------------------------------------------------ derived values
    @property
    def batch_size(self) -> int:
        return self.ppo.num_envs * self.ppo.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_steps // self.batch_size)

    def validate(self) -> "RunConfig":
        """Reject impossible numbers with one clear message."""
        p = self.ppo
        checks = [
            (self.total_steps > 0, f"total_steps must be positive, got {self.total_steps}"),
            (p.num_envs > 0, f"ppo.num_envs must be positive, got {p.num_envs}"),
            (p.num_steps > 0, f"ppo.num_steps must be positive, got {p.num_steps}"),
            (p.num_minibatches > 0, f"ppo.num_minibatches must be positive, got {p.num_minibatches}"),
            (
                p.num_envs % p.num_minibatches == 0,
                f"ppo.num_envs ({p.num_envs}) must be divisible by ppo.num_minibatches "
                f"({p.num_minibatches}): minibatches split the env axis",
            ),
            (p.update_epochs > 0, f"ppo.update_epochs must be positive, got {p.update_epochs}"),
            (p.learning_rate > 0, f"ppo.learning_rate must be positive, got {p.learning_rate}"),
            (0 < p.gamma <= 1, f"ppo.gamma must be in (0, 1], got {p.gamma}"),
            (0 <= p.gae_lambda <= 1, f"ppo.gae_lambda must be in [0, 1], got {p.gae_lambda}"),
            (self.checkpoint_every > 0, f"checkpoint_every must be positive, got {self.checkpoint_every}"),
            (self.torch_threads >= 0, f"torch_threads must be >= 0, got {self.torch_threads}"),
            (self.device.split(":")[0] in ("cpu", "cuda", "mps"), f"unknown device {self.device!r}; valid: cpu, cuda, mps"),
            (self.policy.activation in ("tanh", "relu"), f"policy.activation must be tanh or relu, got {self.policy.activation!r}"),
            (not self.init_from or self.algo in ("ppo", "dagger"),
             f"init_from starts an ActorCritic network (algo ppo or dagger), not algo {self.algo!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        from rlmem import algos  # here, not at the top: the algorithm modules import this one

        module = algos.get(self.algo)  # an unknown algo: one line listing the valid ones
        for table, owners in ALGO_TABLES.items():
            if getattr(self, table) and self.algo not in owners:
                raise ConfigError(f"the [{table}] table is for algo {' or '.join(owners)}; this config has algo = {self.algo!r}")
        check = getattr(module, "check_config", None)
        if check is not None:
            check(self)
        return self


# --------------------------------------------------------------------------- (de)serialisation
def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotated type ``tp`` (the few types configs use)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"config field {where}: union types are not supported")
    raise TypeError(f"config field {where}: unsupported type {tp!r}")


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{' in ' + where if where else ''}: "
            f"{', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing config key {key}")
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    """A TOML-ready dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing file or a syntax error is a ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: malformed TOML: {e}") from None


def write_toml(path: str | Path, data: dict) -> None:
    Path(path).write_text(tomli_w.dumps(data))


def parse_inline_table(text: str, what: str = "value") -> dict:
    """Parse ``'n_corridors = 5, length_mode = "fixed"'`` (a TOML inline table's body)."""
    try:
        return tomllib.loads(f"x = {{ {text} }}")["x"]
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"malformed {what} {text!r} (expected key = value, ...): {e}") from None


def load_preset(path: str | Path) -> dict:
    """Read an agent preset (``agents/*.toml``): the tables ``[policy]`` and ``[ppo]``
    and the optional top-level ``algo`` / run keys; returns a dict for :func:`make_run_config`."""
    data = read_toml(path)
    allowed = {f.name for f in dataclasses.fields(RunConfig)} - {"env"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(allowed))}")
    return data


def make_run_config(preset: dict, **overrides: Any) -> RunConfig:
    """Merge a preset with CLI overrides (``None`` = not given) into a validated RunConfig.

    Overrides may name run fields (``env``, ``total_steps``, ``seed``...) or PPO fields
    (``num_envs``).
    """
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in preset.items()}
    ppo_fields = {f.name for f in dataclasses.fields(PPOConfig)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ppo_fields:
            data.setdefault("ppo", {})[key] = value
        else:
            data[key] = value
    return from_dict(RunConfig, data).validate()
