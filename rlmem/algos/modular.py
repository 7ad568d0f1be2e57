"""Modular navigation agents as an rlmem algorithm (``algo = "modular"``): nothing to learn.

GOAT's and MG-Nav's agents (:mod:`rlmem.agents.nav_agents`, :mod:`rlmem.agents.smg_agent`)
run under ``rlmem train / eval`` like any other agent, on GoatGrid envs (``rlmem/GoatGrid-v0``,
``rlmem/GoatGridSmall-v0``, symbolic observations).

Configuration. The preset's ``[policy]`` table picks the agent:

==================  ==================================  ===========================================
``memory``          agent                               ``memory_kwargs`` (all optional)
==================  ==================================  ===========================================
``semantic_map``    :class:`GoatModularAgent`           :class:`GoatAgentConfig` fields:
                    (``goat-modular``)                  ``language_threshold``, ``image_threshold``,
                                                        ``image_min_overlap``, ``max_views``
``spatial_graph``   :class:`SMGAgent` (``smg``)         :class:`SMGAgentConfig` fields:
                                                        ``min_node_distance``, ``keyframes_per_node``,
                                                        ``top_k``, ``global_weight``,
                                                        ``relocalize_every``, ``language_threshold``,
                                                        ``image_threshold``, ``image_min_overlap``
``memoryless``      :class:`MemorylessAgent`            as ``semantic_map``
==================  ==================================  ===========================================

:func:`check_config` rejects another ``memory`` name, unknown or mistyped ``memory_kwargs``
(the :class:`~rlmem.errors.ConfigError` names the valid ones), impossible values, the network
fields of ``[policy]`` (``encoder``, ``head``, ``separate_critic``, ``activation``: there is no
network), and envs that are not GoatGrid with symbolic observations. ``[ppo]`` is ignored.

Training. :func:`train` has nothing to optimise: it logs one metrics row (``update`` 0,
``step`` 0) and writes a checkpoint holding the agent's name and settings, so ``rlmem eval``
works on the run folder.

Evaluation. :func:`evaluate_run` plays ``episodes`` episodes, episode ``i`` reset with seed
``seed + i`` (deterministic agents: ``deterministic`` and ``num_envs`` change nothing), and
returns an :class:`~rlmem.evaluate.EvalResult` whose ``success`` is the fraction of episodes
with every subgoal done (what :mod:`rlmem.evaluate` counts for GoatGrid) and whose
``breakdown`` holds the tables "success/SPL by subgoal index" and "success/SPL by modality"
(:func:`nav_tables`). ``rlmem record`` is not supported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from rlmem.agents.nav_agents import EnvView, GoatAgentConfig, GoatModularAgent, MemorylessAgent, NavAgent
from rlmem.agents.smg_agent import SMGAgent, SMGAgentConfig
from rlmem.config import PolicyConfig, RunConfig, from_dict
from rlmem.errors import ConfigError, RunError
from rlmem.evaluate import EvalResult, subgoal_tables, wilson_interval
from rlmem.runs import Run

__all__ = [
    "AGENTS",
    "EpisodeResult",
    "check_config",
    "evaluate_agent",
    "evaluate_run",
    "make_agent",
    "nav_tables",
    "play_episode",
    "train",
]

AGENTS: dict[str, tuple[type[NavAgent], type]] = {
    "semantic_map": (GoatModularAgent, GoatAgentConfig),
    "spatial_graph": (SMGAgent, SMGAgentConfig),
    "memoryless": (MemorylessAgent, GoatAgentConfig),
}
"""``[policy] memory`` -> (agent class, settings dataclass read from ``memory_kwargs``)."""

GOAT_ENTRY_POINT = "rlmem.envs.goat_grid:GoatGrid"
_NETWORK_FIELDS = ("encoder", "head", "separate_critic", "activation")


# --------------------------------------------------------------------------- config
def make_agent(memory: str, memory_kwargs: dict | None = None) -> NavAgent:
    """The agent ``memory`` names, with its settings checked (ConfigError naming valid keys)."""
    if memory not in AGENTS:
        raise ConfigError(f"algo modular: unknown policy.memory {memory!r}; valid: {', '.join(AGENTS)}")
    cls, settings = AGENTS[memory]
    return cls(from_dict(settings, dict(memory_kwargs or {}), "policy.memory_kwargs"))


def check_config(cfg: RunConfig) -> None:
    """Reject a bad ``[policy]`` table or a non-GoatGrid env (called by ``RunConfig.validate``)."""
    default = PolicyConfig()
    for name in _NETWORK_FIELDS:
        if getattr(cfg.policy, name) != getattr(default, name):
            raise ConfigError(f"algo modular has no network: remove policy.{name} (valid keys: memory, memory_kwargs)")
    make_agent(cfg.policy.memory, cfg.policy.memory_kwargs)
    from rlmem.envs.vector import env_spec

    if env_spec(cfg.env).entry_point != GOAT_ENTRY_POINT:
        raise ConfigError(f"algo modular navigates GoatGrid houses (rlmem/GoatGrid-v0, rlmem/GoatGridSmall-v0), not {cfg.env}")
    if cfg.env_kwargs.get("obs_mode", "symbolic") != "symbolic":
        raise ConfigError("algo modular reads the symbolic view: env_kwargs.obs_mode must be 'symbolic'")


# --------------------------------------------------------------------------- train
def train(
    cfg: RunConfig,
    run: Run | None = None,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict], Any] | None = None,
) -> dict:
    """Nothing to learn: log one row and write the checkpoint ``rlmem eval`` reads."""
    make_agent(cfg.policy.memory, cfg.policy.memory_kwargs)
    metrics = {"update": 0, "step": 0, "sps": 0.0}
    if run is not None and not (resume and run.checkpoints()):
        run.log(0, metrics)
        run.save_checkpoint(0, {
            "version": 1,
            "algo": "modular",
            "step": 0,
            "update": 0,
            "policy": {"memory": cfg.policy.memory, "memory_kwargs": dict(cfg.policy.memory_kwargs)},
        })
        run.close()
    if callback is not None:
        callback(metrics)  # nothing to pause: the run is complete either way
    return metrics


# --------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EpisodeResult:
    """One GoatGrid episode as the env's last ``info`` reports it."""

    seed: int
    success: bool
    """Every subgoal succeeded."""
    episode_return: float
    length: int
    successes: tuple[bool, ...]
    """Per subgoal, in order."""
    spls: tuple[float, ...]
    modalities: tuple[str, ...]
    stats: dict = dataclasses.field(default_factory=dict)
    """The agent's ``stats`` after the episode."""


def play_episode(agent: NavAgent, env: Any, seed: int) -> EpisodeResult:
    """One episode of ``agent`` in ``env`` (a GoatGrid, possibly wrapped) reset with ``seed``."""
    obs, info = env.reset(seed=seed)
    agent.reset()
    view = EnvView(env)
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(agent.act(obs, info, view))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            break
    if "subgoal_successes" not in info:
        raise RunError(f"episode with seed {seed} ended without GoatGrid's per-subgoal results")
    return EpisodeResult(
        seed, bool(info["success"]), total, steps, tuple(info["subgoal_successes"]), tuple(info["subgoal_spls"]),
        tuple(info["subgoal_modalities"]), dict(getattr(agent, "stats", {})),
    )


def evaluate_agent(
    agent: NavAgent,
    env_id: str,
    env_kwargs: dict | None = None,
    episodes: int = 30,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> list[EpisodeResult]:
    """``episodes`` episodes of ``agent``, episode ``i`` seeded ``seed + i``."""
    from rlmem.envs.vector import make_env

    if episodes < 1:
        raise ConfigError(f"episodes must be positive, got {episodes}")
    env = make_env(env_id, env_kwargs)
    try:
        out = []
        for i in range(episodes):
            out.append(play_episode(agent, env, seed + i))
            if progress is not None:
                progress(i + 1)
        return out
    finally:
        env.close()


def nav_tables(results: Iterable[EpisodeResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Success and SPL by subgoal index and by modality (:func:`rlmem.evaluate.subgoal_tables`)."""
    return subgoal_tables((r.successes, r.spls, r.modalities) for r in results)


def summarize(results: list[EpisodeResult]) -> EvalResult:
    """An :class:`EvalResult` of episodes (success = every subgoal done; breakdown: :func:`nav_tables`)."""
    ok = [r.success for r in results]
    returns = np.array([r.episode_return for r in results])
    return EvalResult(
        episodes=len(results),
        success=float(np.mean(ok)),
        success_ci=wilson_interval(sum(ok), len(ok)),
        mean_return=float(returns.mean()),
        std_return=float(returns.std()),
        mean_length=float(np.mean([r.length for r in results])),
        breakdown=nav_tables(results),
    )


def evaluate_run(run: Run, *, episodes: int, seed: int, deterministic: bool = True,
                 env_kwargs: dict | None = None, num_envs: int = 32) -> EvalResult:
    """Play ``episodes`` held-out episodes with the run's agent (see the module docstring)."""
    ckpt = run.load_checkpoint()
    if ckpt.get("algo") != "modular":
        raise RunError(f"checkpoint of {run.path} is not a modular-agent checkpoint")
    cfg = run.config
    agent = make_agent(ckpt["policy"]["memory"], ckpt["policy"]["memory_kwargs"])
    kwargs = {**cfg.env_kwargs, **(env_kwargs or {})}
    return summarize(evaluate_agent(agent, cfg.env, kwargs, episodes, seed))
