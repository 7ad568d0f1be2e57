"""Stable-Baselines3 PPO and sb3-contrib RecurrentPPO as rlmem algorithms (peer baselines).

``algo = "sb3-ppo"`` trains ``stable_baselines3.PPO`` (feed-forward ``MlpPolicy``) and
``algo = "sb3-recurrentppo"`` trains ``sb3_contrib.RecurrentPPO`` (``MlpLstmPolicy``) on
rlmem's own batched envs through :class:`rlmem.envs.sb3_vecenv.SB3VecEnv`, with SB3's own
``model.learn``. They run under ``rlmem train / eval / compare`` like any rlmem agent: same
run folder, same metric names, same evaluation (quotas, held-out seeds, Wilson interval).

Configuration. The ``[sb3]`` table holds the SB3 class's constructor keyword arguments
(``policy``, ``n_steps``, ``batch_size``, ``n_epochs``, ``learning_rate``, ``ent_coef``,
``policy_kwargs = {...}``, ...), checked against that class's ``__init__`` signature. rlmem
sets the rest: the env (``--env``), the number of envs (``[ppo] num_envs``, so
``--num-envs`` works), ``seed``, ``device``, ``verbose`` and logging. TOML holds only
strings, numbers, booleans, arrays and tables, so arguments that need a Python object
(schedules, ``rollout_buffer_class``, ``features_extractor_class``) are rejected; the two
class-valued policy arguments people do change take names: ``activation_fn`` ("tanh",
"relu", "elu", "leaky_relu", "gelu", "silu") and ``optimizer_class`` ("adam", "adamw",
"rmsprop", "sgd").

Training. Training runs ``floor(total_steps / (n_steps * num_envs))`` rollouts (at least
one), as rlmem's PPO. A :class:`BaseCallback` writes one metrics row per update (rollout +
SB3's training epochs): ``update``, ``step``, ``sps``, ``lr``, the losses SB3 records, mapped
to rlmem's names (``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clipfrac``,
``explained_variance``; SB3 extras ``loss``, ``clip_range``, ``std`` keep SB3's names), and
``episodes``, ``episode_return``, ``episode_length``, ``success`` over the last 100
episodes. ``value_loss`` is reported in rlmem's convention, ``0.5 * mean((V - R)^2)``:
SB3's own number has no 1/2 (its ``vf_coef`` therefore weighs the squared error twice as
much as the same ``vf_coef`` in rlmem's PPO).

Checkpoints are not SB3's zip files (those unpickle with cloudpickle, i.e. run arbitrary
code): they hold ``model.policy.state_dict()``, the optimiser state, ``num_timesteps``,
the torch / numpy / Python RNG states, the env state and the rollout loop state (last
observation, episode starts, RecurrentPPO's LSTM states), written by
:meth:`rlmem.runs.Run.save_checkpoint` and read with ``weights_only=True``; the model is
rebuilt from the run's config.toml. Checkpoints are written at update boundaries, so
``--stop-after`` / Ctrl-C followed by ``--resume`` continues **bit-exactly** (same weights and
metrics as an uninterrupted run, on CPU, same thread count) for envs with
``get_state``/``set_state`` (every rlmem env). Envs without them (e.g. MiniGrid through a
SyncVectorEnv) restart their episodes on resume with seed ``seed + 7919 * update`` and
zeroed LSTM states, as rlmem's PPO does: weights and optimiser still continue exactly, the
trajectories do not. Only constant learning rates and clip ranges exist (schedules are not
expressible in TOML), so SB3's progress-dependent schedules cannot drift across a resume.

Recording. :func:`record_run` (``rlmem record``) draws rlmem's generic video
(:func:`rlmem.video.actor_frames`) with ``model.predict``: RecurrentPPO's memory panel is the
actor LSTM's hidden state; feed-forward PPO's frames have no memory panel.
"""

from __future__ import annotations

import importlib
import inspect
import random
import time
import types
import typing
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rlmem.algos.common import RECENT, check_device, episode_row, recent_window, restore_rows  # the same window and metric keys as rlmem's PPO
from rlmem.config import RunConfig
from rlmem.envs.sb3_vecenv import SB3VecEnv, make_sb3_vec_env
from rlmem.errors import ConfigError, RunError
from rlmem.runs import Run, from_safe, to_safe

CLASSES = {
    # algo: (module, class, (default policy, default policy for Dict observations))
    "sb3-ppo": ("stable_baselines3", "PPO", ("MlpPolicy", "MultiInputPolicy")),
    "sb3-recurrentppo": ("sb3_contrib", "RecurrentPPO", ("MlpLstmPolicy", "MultiInputLstmPolicy")),
}

SET_BY_RLMEM = {
    "env": "the environment is the run's env (--env)",
    "seed": "the seed is the run's seed (--seed)",
    "device": "the device is the run's device (--device)",
    "verbose": "rlmem reports progress itself",
    "tensorboard_log": "rlmem writes TensorBoard events to the run folder",
    "_init_setup_model": "rlmem builds the model",
}
"""Constructor arguments the ``[sb3]`` table may not set, and why."""

POLICY_SET_BY_SB3 = ("observation_space", "action_space", "lr_schedule", "use_sde")
"""Policy constructor arguments the algorithm passes itself (``use_sde`` is an ``[sb3]`` key)."""

ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU", "gelu": "GELU", "silu": "SiLU"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "sgd": "SGD"}
NAMED_CLASSES = {"activation_fn": ("torch.nn", ACTIVATIONS), "optimizer_class": ("torch.optim", OPTIMIZERS)}
"""Class-valued policy arguments a preset gives by name."""

LOSSES = {  # SB3 logger key -> (rlmem metric, factor)
    "train/policy_gradient_loss": ("policy_loss", 1.0),
    "train/value_loss": ("value_loss", 0.5),  # rlmem's 0.5 * squared error
    "train/entropy_loss": ("entropy", -1.0),  # SB3 logs -entropy
    "train/approx_kl": ("approx_kl", 1.0),  # same (r - 1) - log r estimator as rlmem
    "train/clip_fraction": ("clipfrac", 1.0),
    "train/explained_variance": ("explained_variance", 1.0),
    "train/loss": ("loss", 1.0),
    "train/clip_range": ("clip_range", 1.0),
    "train/std": ("std", 1.0),
}


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SB3Config:
    """A validated ``[sb3]`` table with what rlmem adds to it."""

    algo: str
    """``sb3-ppo`` or ``sb3-recurrentppo``."""
    policy: str
    """SB3 policy name: MlpPolicy / CnnPolicy / MultiInputPolicy (PPO), MlpLstmPolicy /
    CnnLstmPolicy / MultiInputLstmPolicy (RecurrentPPO); empty (no ``policy`` key): chosen
    from the env's observation space when the model is built, MultiInput* for Dict
    observations and Mlp* otherwise."""
    kwargs: dict
    """The other constructor arguments, as the preset wrote them (TOML values)."""
    num_envs: int
    """Parallel envs N, from ``[ppo] num_envs`` (so ``--num-envs`` works for every preset)."""
    n_steps: int
    """Rollout length per env and update (``[sb3] n_steps`` or the class default)."""

    @property
    def rollout(self) -> int:
        """Env steps per update, all envs together."""
        return self.n_steps * self.num_envs


def algo_class(algo: str) -> type:
    """The SB3 class of ``algo`` (PPO or RecurrentPPO)."""
    if algo not in CLASSES:
        raise ConfigError(f"rlmem.algos.sb3 trains {', '.join(CLASSES)}, not {algo!r}")
    module, name, _ = CLASSES[algo]
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        raise ConfigError(f"algo {algo!r} needs the package {e.name!r}; see the README's install extras") from None


def parse_config(cfg: RunConfig) -> SB3Config:
    """Check ``cfg.sb3`` against the SB3 class's constructor; a ConfigError names the problem."""
    cls = algo_class(cfg.algo)
    params = inspect.signature(cls.__init__).parameters
    valid = [n for n in params if n != "self" and n not in SET_BY_RLMEM]
    table = dict(cfg.sb3)
    for key, value in table.items():
        if key in SET_BY_RLMEM:
            raise ConfigError(f"sb3.{key} cannot be set in a preset: {SET_BY_RLMEM[key]}")
        if key not in params or key == "self":
            raise ConfigError(f"unknown config key sb3.{key} for {cls.__name__}; valid keys in sb3: {', '.join(valid)}")
        _check_toml_value(f"sb3.{key}", value, params[key].annotation)
    policy = table.pop("policy", "")
    if policy and policy not in cls.policy_aliases:
        raise ConfigError(f"sb3.policy {policy!r} is not a {cls.__name__} policy; valid: {', '.join(cls.policy_aliases)}")
    # Mlp* and MultiInput* policies take the same arguments, so "auto" is checked against Mlp*.
    policy_params = inspect.signature(cls.policy_aliases[policy or CLASSES[cfg.algo][2][0]].__init__).parameters
    policy_valid = [n for n in policy_params if n != "self" and n not in POLICY_SET_BY_SB3]
    for key, value in table.get("policy_kwargs", {}).items():
        where = f"sb3.policy_kwargs.{key}"
        if key not in policy_valid:
            raise ConfigError(f"unknown config key {where} for {policy or cls.__name__}; valid keys in sb3.policy_kwargs: {', '.join(policy_valid)}")
        if key in NAMED_CLASSES:
            names = NAMED_CLASSES[key][1]
            if value not in names:
                raise ConfigError(f"{where} must be one of {', '.join(names)}, got {value!r}")
        else:
            _check_toml_value(where, value, policy_params[key].annotation)
    n_steps = table.get("n_steps", params["n_steps"].default)
    settings = SB3Config(cfg.algo, policy, table, cfg.ppo.num_envs, n_steps)
    _check_numbers(settings, cls)
    return settings


def check_config(cfg: RunConfig) -> None:
    """Reject a bad ``[sb3]`` table before anything is built (called by ``RunConfig.validate``)."""
    parse_config(cfg)


def _toml_kinds(annotation: Any) -> list[tuple[str, Callable[[Any], bool]]]:
    """The TOML value kinds an annotated argument accepts: (name, test) pairs."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = []
    for tp in typing.get_args(annotation) if union else (annotation,):
        origin = typing.get_origin(tp) or tp
        if tp is bool:
            kinds.append(("true or false", lambda v: isinstance(v, bool)))
        elif tp is int:
            kinds.append(("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)))
        elif tp is float:
            kinds.append(("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)))
        elif tp is str:
            kinds.append(("a string", lambda v: isinstance(v, str)))
        elif origin is dict:
            kinds.append(("a table", lambda v: isinstance(v, dict)))
        elif origin is list:
            item = (typing.get_args(tp) or (object,))[0]
            ok = (lambda v: isinstance(v, int) and not isinstance(v, bool)) if item is int else (lambda v: True)
            kinds.append(("an array" + (" of integers" if item is int else ""), lambda v, ok=ok: isinstance(v, list) and all(map(ok, v))))
    return kinds


def _check_toml_value(where: str, value: Any, annotation: Any) -> None:
    kinds = _toml_kinds(annotation)
    if not kinds:
        raise ConfigError(f"{where} needs a Python object ({annotation}), which a TOML preset cannot express")
    if not any(test(value) for _, test in kinds):
        raise ConfigError(f"{where} must be {' or '.join(name for name, _ in kinds)}, got {value!r}")


def _check_numbers(s: SB3Config, cls: type) -> None:
    """Impossible numbers, caught before a run folder exists (SB3 would assert later)."""
    kw = s.kwargs
    checks = [
        (s.n_steps > 0, f"sb3.n_steps must be positive, got {s.n_steps}"),
        (s.rollout > 1, f"sb3.n_steps * ppo.num_envs must be > 1, got {s.n_steps} * {s.num_envs}"),
        (kw.get("batch_size", 2) > 1, f"sb3.batch_size must be > 1, got {kw.get('batch_size')}"),
        (kw.get("n_epochs", 1) > 0, f"sb3.n_epochs must be positive, got {kw.get('n_epochs')}"),
        (kw.get("learning_rate", 1) > 0, f"sb3.learning_rate must be positive, got {kw.get('learning_rate')}"),
        (0 < kw.get("gamma", 1) <= 1, f"sb3.gamma must be in (0, 1], got {kw.get('gamma')}"),
        (0 <= kw.get("gae_lambda", 1) <= 1, f"sb3.gae_lambda must be in [0, 1], got {kw.get('gae_lambda')}"),
        (kw.get("clip_range", 1) > 0, f"sb3.clip_range must be positive, got {kw.get('clip_range')}"),
        (kw.get("clip_range_vf", 1) > 0, f"sb3.clip_range_vf must be positive, got {kw.get('clip_range_vf')}"),
        (kw.get("target_kl", 1) > 0, f"sb3.target_kl must be positive, got {kw.get('target_kl')}"),
        (kw.get("max_grad_norm", 1) > 0, f"sb3.max_grad_norm must be positive, got {kw.get('max_grad_norm')}"),
        (kw.get("stats_window_size", 1) > 0, f"sb3.stats_window_size must be positive, got {kw.get('stats_window_size')}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


def build_model(cfg: RunConfig, settings: SB3Config, venv: SB3VecEnv, *, seed: int | None, device: str):
    """The SB3 model of ``settings`` on ``venv`` (``seed`` None: no global RNG is touched)."""
    kwargs = dict(settings.kwargs)
    if "policy_kwargs" in kwargs:
        pk = dict(kwargs["policy_kwargs"])
        for key, (module, names) in NAMED_CLASSES.items():
            if key in pk:
                pk[key] = getattr(importlib.import_module(module), names[pk[key]])
        kwargs["policy_kwargs"] = pk
    cls = algo_class(settings.algo)
    flat, multi = CLASSES[settings.algo][2]
    policy = settings.policy or (multi if isinstance(venv.observation_space, gym.spaces.Dict) else flat)
    try:
        with warnings.catch_warnings():
            # SB3 warns when batch_size does not divide n_steps * n_envs (evaluation envs
            # differ from training's): harmless, and library code stays quiet.
            warnings.simplefilter("ignore", UserWarning)
            return cls(policy, venv, seed=seed, device=device, verbose=0, **kwargs)
    except (AssertionError, ValueError, TypeError, RuntimeError, NotImplementedError) as e:
        # SB3 checks its arguments with asserts and builds its networks here (a CNN too small
        # for the env's images fails in torch): one line, not a traceback.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot build {cls.__name__}({policy}) for {cfg.env} from the [sb3] table: {first}") from None


# --------------------------------------------------------------------------- train
class _Pause(Exception):
    """Raised by the callback at an update boundary: leaves ``model.learn`` with nothing half done."""


class MetricsCallback(BaseCallback):
    """Per update: rlmem metrics -> ``run.log``, the caller's callback, checkpoints, pauses.

    SB3's loop is ``collect_rollouts`` (``on_rollout_start``, ``on_step`` per env step,
    ``on_rollout_end``), then ``train()``. An update is complete at the next
    ``on_rollout_start`` (or at ``on_training_end`` after the last one); that is where
    its metrics are written and where a pause leaves ``learn`` before any env step.
    """

    def __init__(self, owner: "_Trainer"):
        super().__init__()
        self.owner = owner
        self.pending = False  # a rollout was collected; its update is not reported yet

    def _on_training_start(self) -> None:
        self.owner.t0, self.owner.step0 = time.perf_counter(), self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.pending:
            self.pending = False
            self.owner.end_update(last=False)

    def _on_step(self) -> bool:
        self.owner.observe(self.locals["rewards"], self.locals["dones"], self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        self.pending = True

    def _on_training_end(self) -> None:
        if self.pending:
            self.pending = False
            self.owner.end_update(last=True)


class _Trainer:
    """The state of one ``train`` call that the SB3 callback reads and writes."""

    def __init__(self, cfg, settings, run, model, venv, stop_after, callback):
        self.cfg, self.settings, self.run, self.model, self.venv = cfg, settings, run, model, venv
        self.stop_after, self.callback = stop_after, callback
        n = settings.num_envs
        self.update = 0
        self.ep_return, self.ep_length = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.recent: deque[tuple] = deque(maxlen=RECENT)  # episode_row tuples
        self.finished: list[tuple] = []  # episodes ended during this update
        self.metrics: dict = {}
        self.t0, self.step0 = time.perf_counter(), 0

    def observe(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict]) -> None:
        """One env step of the rollout: episode returns, lengths and successes."""
        self.ep_return += rewards
        self.ep_length += 1
        for i in np.flatnonzero(dones):
            info = infos[i]
            self.finished.append(episode_row(self.ep_return[i], self.ep_length[i], info.get("is_success"),
                                             info.get("subgoal_success_rate")))
            self.ep_return[i], self.ep_length[i] = 0.0, 0

    def end_update(self, *, last: bool) -> None:
        """Log the update that just finished; checkpoint; raise :class:`_Pause` if asked to."""
        model, cfg = self.model, self.cfg
        self.update += 1
        self.recent.extend(self.finished)
        sb3_values = model.logger.name_to_value  # what train() recorded for this update
        step = model.num_timesteps
        metrics = {
            "update": self.update,
            "step": step,
            "sps": (step - self.step0) / max(time.perf_counter() - self.t0, 1e-9),
            "lr": float(model.policy.optimizer.param_groups[0]["lr"]),
            **{name: factor * float(sb3_values[key]) for key, (name, factor) in LOSSES.items() if key in sb3_values},
            "episodes": len(self.finished),
            **recent_window(self.recent),
        }
        self.finished = []
        self.metrics = metrics
        if self.run is not None:
            self.run.log(step, metrics)
        asked = bool(self.callback(metrics)) if self.callback is not None else False
        pause = asked or (self.stop_after is not None and step >= self.stop_after)
        if self.run is not None and (last or pause or self.update % cfg.checkpoint_every == 0):
            self.run.save_checkpoint(step, self.checkpoint())
        if pause and not last:
            metrics["paused"] = True
            raise _Pause

    # ------------------------------------------------------------------ checkpoint
    def checkpoint(self) -> dict:
        model, env = self.model, self.venv.vector_env
        lstm = getattr(model, "_last_lstm_states", None)
        return {
            "version": 1,
            "algo": self.cfg.algo,
            "update": self.update,
            "step": model.num_timesteps,
            "n_updates": model._n_updates,  # SB3's count of training epochs
            "policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": to_safe(np.random.get_state(legacy=False)),  # SB3's minibatch shuffles
                "python": random.getstate(),
            },
            "env_state": to_safe(env.get_state()) if hasattr(env, "get_state") else None,
            "loop": {
                "obs": to_safe(model._last_obs),
                "episode_starts": torch.as_tensor(model._last_episode_starts),
                "lstm": None if lstm is None else {"pi": list(lstm.pi), "vf": list(lstm.vf)},
                "ep_return": torch.as_tensor(self.ep_return),
                "ep_length": torch.as_tensor(self.ep_length),
            },
            "recent": [list(r) for r in self.recent],
        }

    def restore(self, ckpt: dict) -> None:
        """Continue from ``ckpt`` (after the model was rebuilt: its seeding is overwritten here)."""
        model, env = self.model, self.venv.vector_env
        if ckpt.get("algo") != self.cfg.algo:
            raise RunError(f"checkpoint of {self.run.path} is not an {self.cfg.algo} checkpoint")
        try:
            model.policy.load_state_dict(ckpt["policy"])
            model.policy.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise RunError(f"checkpoint of {self.run.path} does not match its config.toml: {str(e).splitlines()[0]}") from None
        self.update, model.num_timesteps, model._n_updates = ckpt["update"], ckpt["step"], ckpt["n_updates"]
        loop = ckpt["loop"]
        if ckpt["env_state"] is not None and hasattr(env, "set_state"):
            env.set_state(from_safe(ckpt["env_state"]))
            model._last_obs = from_safe(loop["obs"])
            model._last_episode_starts = loop["episode_starts"].numpy()
            if loop["lstm"] is not None:
                from sb3_contrib.common.recurrent.type_aliases import RNNStates

                dev = model.device
                model._last_lstm_states = RNNStates(*(tuple(t.to(dev) for t in loop["lstm"][k]) for k in ("pi", "vf")))
            self.ep_return, self.ep_length = loop["ep_return"].numpy().copy(), loop["ep_length"].numpy().copy()
        else:  # no env state: learn() resets the envs with a fresh seed (documented: not bit-exact)
            self.venv.seed(self.cfg.seed + 7919 * self.update)
        self.recent.extend(restore_rows(ckpt["recent"]))
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(from_safe(rng["numpy"]))
        random.setstate(rng["python"])


def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], bool | None] | None = None,
) -> dict:
    """Train ``cfg`` with SB3's ``learn`` and return the last update's metrics.

    Args:
        run: where metrics and checkpoints go (``None``: nothing is written).
        resume: continue ``run`` from its newest checkpoint.
        stop_after: pause once this many env steps are done (checkpoint, then return with
            ``"paused": True``); ``rlmem train --resume`` continues from there.
        callback: called with the metrics dict after every update; True pauses the run.
    """
    settings = parse_config(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = str(check_device(cfg.device))
    updates = max(1, cfg.total_steps // settings.rollout)

    venv = make_sb3_vec_env(cfg.env, settings.num_envs, cfg.env_kwargs)
    # The constructor seeds Python, numpy and torch and stores the env seeds (sub-env i: seed + i)
    # for learn()'s first reset, as rlmem's PPO does with reset(seed=cfg.seed).
    model = build_model(cfg, settings, venv, seed=cfg.seed, device=device)
    trainer = _Trainer(cfg, settings, run, model, venv, stop_after, callback)
    if resume:
        if run is None:
            raise ValueError("resume needs a run")
        trainer.restore(run.load_checkpoint())
        run.truncate_metrics(model.num_timesteps)

    remaining = updates * settings.rollout - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,  # learn() adds num_timesteps when not resetting it
                callback=MetricsCallback(trainer),
                log_interval=None,  # SB3 prints nothing; its recorded values are read per update
                reset_num_timesteps=not resume,
            )
    except _Pause:
        pass
    finally:
        venv.close()
        if run is not None:
            run.close()
    return trainer.metrics


# --------------------------------------------------------------------------- eval
def evaluate_run(run: Run, *, episodes: int, seed: int, deterministic: bool = True,
                 env_kwargs: dict | None = None, num_envs: int = 32):
    """Evaluate the run's newest checkpoint with ``model.predict`` on the SB3 adapter.

    Same protocol as :func:`rlmem.evaluate.evaluate`: exactly ``episodes`` episodes, a fixed
    quota per sub-env (so short episodes are not over-counted), sub-env ``i`` seeded
    ``seed + i``; stochastic actions are drawn from torch seeded with ``seed`` inside a forked
    RNG (the caller's RNG is untouched). Runs on the CPU.
    """
    from rlmem.evaluate import EvalResult, wilson_interval

    num_envs = max(1, min(num_envs, episodes))
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    model, venv = load_model(run, num_envs, env_kwargs)

    returns, lengths, successes = [], [], []
    done_count = np.zeros(num_envs, dtype=np.int64)
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        venv.seed(seed)
        obs = venv.reset()
        state, episode_start = None, np.ones(num_envs, dtype=bool)
        while (done_count < quota).any():
            action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
            obs, reward, episode_start, infos = venv.step(action)
            ep_return += reward
            ep_length += 1
            for i in np.flatnonzero(episode_start):
                if done_count[i] < quota[i]:
                    returns.append(ep_return[i])
                    lengths.append(ep_length[i])
                    if "is_success" in infos[i]:
                        successes.append(infos[i]["is_success"])
                    done_count[i] += 1
                ep_return[i], ep_length[i] = 0.0, 0
    venv.close()
    n_succ = len(successes)
    return EvalResult(
        episodes=len(returns),
        success=float(np.mean(successes)) if n_succ else float("nan"),
        success_ci=wilson_interval(sum(successes), n_succ) if n_succ else (float("nan"), float("nan")),
        mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)),
        mean_length=float(np.mean(lengths)),
    )


def load_model(run: Run, num_envs: int = 1, env_kwargs: dict | None = None):
    """``(model, venv)``: the run's newest checkpoint in a CPU model on ``num_envs`` envs.

    A missing, corrupt or foreign checkpoint is a :class:`~rlmem.errors.RunError`, raised
    before any env is built."""
    cfg = run.config
    settings = parse_config(cfg)
    ckpt = run.load_checkpoint()
    if ckpt.get("algo", cfg.algo) != cfg.algo:
        raise RunError(f"checkpoint of {run.path} is not an {cfg.algo} checkpoint")
    venv = make_sb3_vec_env(cfg.env, num_envs, {**cfg.env_kwargs, **(env_kwargs or {})})
    try:
        model = build_model(cfg, settings, venv, seed=None, device="cpu")
        model.policy.load_state_dict(ckpt["policy"])
    except (RuntimeError, KeyError) as e:
        venv.close()
        raise RunError(f"checkpoint of {run.path} does not match its config.toml: {str(e).splitlines()[0]}") from None
    except BaseException:
        venv.close()
        raise
    return model, venv


# --------------------------------------------------------------------------- record
def record_run(run: Run, *, out, episodes: int, seed: int, fps: int):
    """An mp4 (gif fallback) of the newest checkpoint's policy acting deterministically
    (:func:`rlmem.video.actor_frames`): for RecurrentPPO the memory panel shows the actor
    LSTM's hidden state ``h`` (every layer); sb3-ppo has no memory, so its frames are the env
    picture under the header."""
    from rlmem.video import actor_frames, write_video

    cfg = run.config
    model, venv = load_model(run)
    venv.close()  # predict() needs only the policy; the video has its own rendering env
    recurrent = cfg.algo == "sb3-recurrentppo"
    frames, _ = actor_frames(sb3_actor(model, recurrent), cfg.env, cfg.env_kwargs, episodes, seed,
                             memory_name="actor LSTM h" if recurrent else "memory")
    return write_video(frames, out, run.path.name, fps)


def sb3_actor(model, recurrent: bool):
    """An :data:`rlmem.video.Actor` over ``model.predict`` (deterministic, one unbatched env).

    The LSTM states ``predict`` returns for the actor -- ``(h, c)``, each
    ``float32[n_layers, 1, hidden]`` -- are threaded from step to step and reset by
    ``episode_start``; the features shown are ``h`` flattened (``[n_layers * hidden]``), or
    nothing (``[0]``) for a feed-forward policy."""
    state = None

    def act(obs, info: dict, start: bool):
        nonlocal state
        action, state = model.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
        features = np.asarray(state[0], dtype=np.float32).reshape(-1) if recurrent else np.zeros(0, np.float32)
        a = np.asarray(action)
        return (a.item() if a.ndim == 0 else a), features

    return act
