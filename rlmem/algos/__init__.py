"""Training loops, one readable file per algorithm, sharing :mod:`rlmem.algos.functional`.

Every algorithm is a module named in :data:`ALGOS` that provides

- ``train(cfg, run, *, resume=False, stop_after=None, callback=None) -> dict``: train
  ``cfg`` (a :class:`rlmem.config.RunConfig`), write metrics and checkpoints to ``run``,
  return the last metrics (``{"paused": True}`` when it stopped early);
- ``evaluate_run(run, *, episodes, seed, deterministic=True, env_kwargs=None, num_envs=32)
  -> rlmem.evaluate.EvalResult``: evaluate the run's newest checkpoint;
- optionally ``check_config(cfg)``: reject a bad algorithm table (``[grpo]``, ``[sb3]``,
  ``[llm]``) with a :class:`rlmem.errors.ConfigError` before anything is built;
- optionally ``record_run(run, *, out, episodes, seed, fps) -> Path``: a rollout video.

``rlmem train`` / ``eval`` / ``record`` / ``compare`` dispatch on ``RunConfig.algo`` through
:func:`get`, so a new algorithm is one module plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rlmem.errors import ConfigError, UnknownNameError

ALGOS: dict[str, str] = {
    "ppo": "rlmem.algos.ppo",  # recurrent PPO with any rlmem Memory
    "grpo": "rlmem.algos.grpo",  # group-relative policy optimisation with any rlmem Memory
    "sb3-ppo": "rlmem.algos.sb3",  # Stable-Baselines3 PPO (feed-forward), a peer baseline
    "sb3-recurrentppo": "rlmem.algos.sb3",  # sb3-contrib RecurrentPPO (LSTM), a peer baseline
    "memalpha": "rlmem.algos.memalpha",  # Mem-α LLM writer: TRL SFT warm start, then GRPOTrainer
    "modular": "rlmem.algos.modular",  # navigation agents with a SemanticMap / SpatialGraph (no learning)
    "nec": "rlmem.algos.nec",  # Neural Episodic Control: a DND (CaseBank) per action, N-step Q targets
    "dagger": "rlmem.algos.dagger",  # imitation of a modular navigation teacher by any rlmem Memory (DAgger)
}


def get(name: str) -> ModuleType:
    """The module implementing algorithm ``name`` (an UnknownNameError lists the valid ones)."""
    if name not in ALGOS:
        raise UnknownNameError(f"unknown algo {name!r}; valid: {', '.join(ALGOS)}")
    try:
        return importlib.import_module(ALGOS[name])
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("rlmem"):
            raise ConfigError(f"algo {name!r} is not available in this version of rlmem") from None
        raise ConfigError(f"algo {name!r} needs the package {e.name!r}; see the README's install extras") from None
