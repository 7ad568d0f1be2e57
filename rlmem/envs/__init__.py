"""Environments that demand memory, registered with Gymnasium under the ``rlmem/`` namespace.

Importing this package only registers ids (entry points are strings, so no environment
module is imported until an env is made). Every id has an ``entry_point`` (the single env,
for ``gymnasium.make``) and, for hot envs, a ``vector_entry_point`` (the native batched env,
which ``gymnasium.make_vec(id, num_envs=N)`` returns). No ``TimeLimit`` is added: each env
enforces its own time limit and reports ``truncated``.

Registered ids
--------------
Endless T-Maze (rewriting suite; Shchendrigin et al., AAMAS 2026, :mod:`rlmem.envs.tmaze`):

==================================  ===  ===========  =========  ====================================
id                                  n    length mode  lengths    purpose
==================================  ===  ===========  =========  ====================================
``rlmem/EndlessTMaze-v0``           3    uniform      5..10      the demo setting (rewriting)
``rlmem/EndlessTMazeRetention-v0``  1    uniform      5..10      retention-only control (classic T-Maze)
``rlmem/EndlessTMazeFixed-v0``      3    fixed        10         rewriting, predictable junctions
``rlmem/EndlessTMazeLong-v0``       5    uniform      10..20     rewriting over long horizons
==================================  ===  ===========  =========  ====================================

Any id accepts the env's keyword arguments (``gym.make("rlmem/EndlessTMaze-v0",
n_corridors=5, l_min=1)``); the authors' own configurations (n = 3 fixed 5 for GTrXL;
n = 5 uniform 1..10 for FFM/SHM) are entries of ``envs/rewriting.toml``.

Helpers: :func:`rlmem_ids` lists the ids, :func:`memory_types` reads an id's
``metadata["memory_types"]`` tags from its entry point class without building the env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from rlmem.errors import UnknownNameError

__all__ = ["NAMESPACE", "memory_types", "register", "rlmem_ids"]

NAMESPACE = "rlmem"


def register(env_id: str, entry_point: str, vector_entry_point: str | None = None, **kwargs: Any) -> None:
    """Register ``env_id`` once (a second call, e.g. on re-import, is a no-op)."""
    if env_id in gym.registry:
        return
    gym.register(
        id=env_id,
        entry_point=entry_point,
        vector_entry_point=vector_entry_point,
        max_episode_steps=None,  # the envs truncate themselves; the batched env must match
        kwargs=kwargs,
    )


def rlmem_ids() -> list[str]:
    """All registered ids in the ``rlmem/`` namespace, sorted."""
    return sorted(env_id for env_id in gym.registry if env_id.startswith(f"{NAMESPACE}/"))


def memory_types(env_id: str) -> tuple[str, ...]:
    """The ``metadata["memory_types"]`` tags of ``env_id``'s entry point class (no env is built).

    Raises :class:`rlmem.errors.UnknownNameError` (listing the rlmem ids) for an unknown id.
    """
    spec = gym.registry.get(env_id)
    if spec is None:
        raise UnknownNameError(f"unknown environment id {env_id!r}; rlmem ids: {', '.join(rlmem_ids())}")
    entry = spec.entry_point or spec.vector_entry_point
    creator = load_env_creator(entry) if isinstance(entry, str) else entry
    metadata = getattr(creator, "metadata", None) or {}
    return tuple(metadata.get("memory_types", ()))


# --------------------------------------------------------------------------- Endless T-Maze

_TMAZE = "rlmem.envs.tmaze:EndlessTMaze"
_TMAZE_VEC = "rlmem.envs.tmaze:EndlessTMazeVec"

register(
    "rlmem/EndlessTMaze-v0", _TMAZE, _TMAZE_VEC, n_corridors=3, length_mode="uniform", l_min=5, l_max=10
)
register(
    "rlmem/EndlessTMazeRetention-v0", _TMAZE, _TMAZE_VEC, n_corridors=1, length_mode="uniform", l_min=5, l_max=10
)
register(
    "rlmem/EndlessTMazeFixed-v0", _TMAZE, _TMAZE_VEC, n_corridors=3, length_mode="fixed", l_min=10, l_max=10
)
register(
    "rlmem/EndlessTMazeLong-v0", _TMAZE, _TMAZE_VEC, n_corridors=5, length_mode="uniform", l_min=10, l_max=20
)

# --------------------------------------------------------------------------- Color-Cubes
# (rewriting suite; Shchendrigin et al., AAMAS 2026, :mod:`rlmem.envs.colorcubes`; no public
# code, levels are our documented choices: trivial N=K=1, G=5, no teleports; medium N=5, K=4,
# G=7, p_teleport=0.05; extreme = medium with colours hidden on teleport updates.)

_CUBES = "rlmem.envs.colorcubes:ColorCubes"
_CUBES_VEC = "rlmem.envs.colorcubes:ColorCubesVec"

register("rlmem/ColorCubes-v0", _CUBES, _CUBES_VEC, level="medium")
register("rlmem/ColorCubesTrivial-v0", _CUBES, _CUBES_VEC, level="trivial")
register("rlmem/ColorCubesMedium-v0", _CUBES, _CUBES_VEC, level="medium")
register("rlmem/ColorCubesExtreme-v0", _CUBES, _CUBES_VEC, level="extreme")


# --------------------------------------------------------------------------- Retention controls
# Retention-only controls (nothing to overwrite): Passive T-Maze (one cue, a blank delay, a
# query), POPGym-style Repeat Previous (a sliding window of k symbols) and Count Recall (one
# count per card value). Modules rlmem.envs.passive_tmaze / repeat_previous / count_recall;
# suite file envs/retention.toml.

_PASSIVE = "rlmem.envs.passive_tmaze:PassiveTMaze"
_PASSIVE_VEC = "rlmem.envs.passive_tmaze:PassiveTMazeVec"
register("rlmem/PassiveTMaze-v0", _PASSIVE, _PASSIVE_VEC, n_cues=2, delay=10)
register("rlmem/PassiveTMazeLong-v0", _PASSIVE, _PASSIVE_VEC, n_cues=2, delay=50)

_REPEAT = "rlmem.envs.repeat_previous:RepeatPrevious"
_REPEAT_VEC = "rlmem.envs.repeat_previous:RepeatPreviousVec"
register("rlmem/RepeatPrevious-v0", _REPEAT, _REPEAT_VEC, n_symbols=4, k=4, length=52)  # POPGym Easy
register("rlmem/RepeatPreviousHard-v0", _REPEAT, _REPEAT_VEC, n_symbols=4, k=32, length=104)  # POPGym Medium

_COUNT = "rlmem.envs.count_recall:CountRecall"
_COUNT_VEC = "rlmem.envs.count_recall:CountRecallVec"
register("rlmem/CountRecall-v0", _COUNT, _COUNT_VEC, n_values=4, length=32, max_count=15)
register("rlmem/CountRecallHard-v0", _COUNT, _COUNT_VEC, n_values=13, length=104, max_count=15)


# --------------------------------------------------------------------------- Memory construction (vector)
# Mem-α's memory-construction task for small neural write policies (:mod:`rlmem.envs.memconstruct_vec`):
# facts (key, value, topic flag) arrive one per step; the agent skips / writes / deletes M visible
# slots; a fixed answerer scores the slots at the end. Competencies: retrieval, conflict, mixed.

_MEMCON_VEC = "rlmem.envs.memconstruct_vec:MemoryConstructionVec"
_MEMCON_VEC_BATCHED = "rlmem.envs.memconstruct_vec:MemoryConstructionVecBatched"
register(
    "rlmem/MemoryConstructionVec-v0", _MEMCON_VEC, _MEMCON_VEC_BATCHED,
    n_keys=8, n_values=8, n_slots=4, n_facts=8, competency="mixed", beta=0.05,
)

# --------------------------------------------------------------------------- GOAT navigation
# GoatGrid (after GOAT / GOAT-Bench; :mod:`rlmem.envs.goat_grid`): lifelong multimodal object
# navigation on the real MiniGrid engine, 5-10 subgoals per episode (category / language /
# image goals), stop near and facing the target, success and SPL per subgoal in info.
# Dict observations, no native batched env (SyncVectorEnv); memory_types ("spatial", "object").

_GOAT = "rlmem.envs.goat_grid:GoatGrid"
register("rlmem/GoatGrid-v0", _GOAT, layout=(3, 2), room_size=5, n_objects=12, subgoal_budget=150)
register(
    "rlmem/GoatGridSmall-v0",
    _GOAT,
    layout=(2, 2),
    room_size=4,
    n_objects=8,
    min_subgoals=5,
    max_subgoals=5,
    subgoal_budget=80,
)


# --------------------------------------------------------------------------- Memory construction (text, Mem-α)
# Mem-α's memory construction for LLM and scripted writers (:mod:`rlmem.envs.memalpha`): text
# chunks arrive one per step; the writer edits a core / semantic / episodic memory with
# <tool_call> blocks; a fixed answerer (BM25 by default) answers questions from the memory;
# reward = accuracy + 0.05 * compression + tool success + 0.1 * content validity.
# Synthetic episodes of four competencies (train / held-out vocabularies) or a JSONL dataset.

register("rlmem/MemoryConstruction-v0", "rlmem.envs.memalpha.env:MemoryConstructionEnv")


# --------------------------------------------------------------------------- Task streams
# Episodic case banks (MemRL, Memento; :mod:`rlmem.envs.task_stream`): one task per episode,
# families of tasks whose plans transfer, near-duplicate distractors that need other plans.
# The agents that keep a case bank across episodes are in rlmem.agents.case_agents.

_STREAM = "rlmem.envs.task_stream:TaskStream"
_STREAM_VEC = "rlmem.envs.task_stream:TaskStreamVec"
register("rlmem/TaskStream-v0", _STREAM, _STREAM_VEC, distractor_rate=0.3)
register("rlmem/TaskStreamNoDistractors-v0", _STREAM, _STREAM_VEC, distractor_rate=0.0)


# --------------------------------------------------------------------------- GOAT navigation, 3D backends
# GoatWorld (:mod:`rlmem.envs.goat_world`): the GoatGrid task in a first-person MiniWorld house (RGB
# 60x80, image goals rendered from a viewpoint; `pip install rlmem[nav3d]`; headless through EGL;
# miniworld and pyglet are imported only when an env is built). HabitatGoatEnv
# (:mod:`rlmem.envs.habitat`): the same spaces on a habitat-sim scene with habitat's ObjectNav /
# InstanceImageNav episode files (kwargs scene=PATH.glb, episodes=PATH.json.gz); habitat-sim installs
# with conda, and making the env without it is a ConfigError that says how.

register("rlmem/GoatWorld-v0", "rlmem.envs.goat_world:GoatWorld", layout=(3, 2), room_size=4.0, n_objects=12,
         subgoal_budget=250)
register("rlmem/GoatHabitat-v0", "rlmem.envs.habitat:HabitatGoatEnv", scene=None, episodes=None)
