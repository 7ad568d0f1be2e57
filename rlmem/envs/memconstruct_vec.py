"""Memory construction, vector version: a writer edits M external slots; a fixed answerer reads them.

After Mem-α (Wang et al. 2025, "Mem-α: Learning Memory Construction via Reinforcement
Learning", arXiv 2509.25911), reduced to vectors for small neural write policies: facts
``(key, value)`` arrive one per step, the agent owns ``n_slots`` slots and chooses per fact to
skip it, write it into slot ``i`` (overwriting what was there) or delete slot ``i``. When the
stream ends a fixed answerer asks the episode's queried keys and answers each from the slots
alone; the reward is its accuracy plus a small compression bonus (Mem-α's
``acc + beta * (1 - memory / chunks)``). The slots are part of the observation: the policy's
memory is external and edited by its own actions (DESIGN.md §2, the ``slots`` family).

Competencies (MemoryAgentBench's, as episode types; ``competency="mixed"`` draws one per
episode, ``info["competency"]`` names it at the episode end):

- ``retrieval`` (accurate retrieval, *capacity*): ``n_facts`` facts with distinct keys, more
  than there are slots; a visible topic flag marks the 1..``n_slots`` relevant ones, and only
  their keys are asked. A writer that stores whatever comes first runs out of slots.
- ``conflict`` (conflict resolution, *rewriting*): 1..``n_slots`` keys, every fact relevant,
  keys reappear with a new value (never the value they had just before); the latest value is
  asked. The writer must overwrite the slot that holds the key.

Left out: MemoryAgentBench's *test-time learning* (learn a mapping from in-context examples and
apply it to new inputs) and *long-range understanding* (summarise a long text). Both need an
answerer that generalises or aggregates; with an exact key-match answerer they reduce to one of
the two above, so they are not offered as separate episode types.

Two implementations with identical trajectories for identical seeds:

- :class:`MemoryConstructionVec` -- the single :class:`gymnasium.Env` (plain Python).
- :class:`MemoryConstructionVecBatched` -- the native batched :class:`gymnasium.vector.VectorEnv`,
  equal to ``SyncVectorEnv([MemoryConstructionVec] * N, autoreset_mode=SAME_STEP)`` step for step.

Both share :class:`MemoryConstructionVecConfig` and :func:`draw_episode`; the answerer is written
twice (a dict loop in the single env, whole-array numpy in the batched one) and the tests hold
them equal. Reference writers for tables and tests: :class:`RandomWriter`,
:class:`HeuristicWriter` (optimal from the observation alone) and :class:`StoreFirstWriter`
(fills free slots in arrival order, never overwrites: fails conflict resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlmem.envs._vec import SubEnvRNGs, add_final, check_state_keys, is_int, reset_plan
from rlmem.envs.tmaze import rng_from_array, rng_state_to_array
from rlmem.errors import ConfigError

__all__ = [
    "COMPETENCIES",
    "HeuristicWriter",
    "MemoryConstructionVec",
    "MemoryConstructionVecBatched",
    "MemoryConstructionVecConfig",
    "RandomWriter",
    "StoreFirstWriter",
    "draw_episode",
    "render_frame",
]

COMPETENCIES = ("retrieval", "conflict")
"""Episode types; ``competency="mixed"`` draws one uniformly per episode."""
RETRIEVAL, CONFLICT = 0, 1
EMPTY = -1
"""Key and value of an empty slot in the hidden state."""

METADATA = {
    "render_modes": ["rgb_array"],
    "render_fps": 2,
    "memory_types": ("capacity", "rewriting"),
    # rlmem.evaluate splits its results by these final_info keys and averages these metrics.
    "breakdown_keys": ("competency",),
    "breakdown_metrics": ("accuracy",),
}


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MemoryConstructionVecConfig:
    """Validated parameters (shared by the single and batched env)."""

    n_keys: int = 8
    """Distinct keys K (one-hot in the observation)."""
    n_values: int = 8
    """Distinct values V (one-hot in the observation); >= 2 so a conflict can change a value."""
    n_slots: int = 4
    """Memory slots M the writer owns; actions are ``1 + 2 * n_slots``."""
    n_facts: int = 8
    """Facts per episode F (= steps). ``retrieval`` needs ``n_facts <= n_keys`` (distinct keys)."""
    competency: str = "mixed"
    """``"retrieval"``, ``"conflict"`` or ``"mixed"`` (one of the two per episode, uniformly)."""
    beta: float = 0.05
    """Weight of the compression term ``beta * (1 - used_slots / n_slots)`` (Mem-α's beta)."""

    def __post_init__(self) -> None:
        for name, low in (("n_keys", 1), ("n_values", 2), ("n_slots", 1), ("n_facts", 2)):
            v = getattr(self, name)
            if not is_int(v) or v < low:
                raise ConfigError(f"MemoryConstructionVec: {name} must be an integer >= {low}, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.competency not in (*COMPETENCIES, "mixed"):
            raise ConfigError(
                f"MemoryConstructionVec: competency must be one of {(*COMPETENCIES, 'mixed')}, got {self.competency!r}"
            )
        if self.competency != "conflict" and self.n_facts > self.n_keys:
            raise ConfigError(
                f"MemoryConstructionVec: retrieval episodes need distinct keys, so n_facts <= n_keys; "
                f"got n_facts={self.n_facts}, n_keys={self.n_keys}"
            )
        b = self.beta
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, float, np.integer, np.floating)) or not (
            np.isfinite(b) and b >= 0
        ):
            raise ConfigError(f"MemoryConstructionVec: beta must be a finite number >= 0, got {b!r}")
        object.__setattr__(self, "beta", float(b))  # Python float: rewards batch to float64 as in SyncVectorEnv

    @property
    def n_actions(self) -> int:
        """0 = skip, 1..M = write slot a-1, M+1..2M = delete slot a-1-M."""
        return 1 + 2 * self.n_slots

    @property
    def slot_width(self) -> int:
        """Observation entries per slot: occupied flag, key one-hot, value one-hot."""
        return 1 + self.n_keys + self.n_values

    @property
    def slots_offset(self) -> int:
        """Index of the first slot entry: after fact key, fact value, flag, time, phase."""
        return self.n_keys + self.n_values + 3

    @property
    def obs_dim(self) -> int:
        return self.slots_offset + self.n_slots * self.slot_width


def draw_episode(
    rng: np.random.Generator, config: MemoryConstructionVecConfig
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """One episode's stream from ``rng``: ``(competency, keys int64[F], values int64[F], relevant bool[F])``.

    The stream does not depend on the writer's actions, so it is drawn whole at reset (the
    batched env then loops only over resetting sub-envs). The number of draw calls is fixed
    per competency, so equal generators give equal streams in both envs.
    """
    K, V, M, F = config.n_keys, config.n_values, config.n_slots, config.n_facts
    if config.competency == "mixed":
        competency = int(rng.integers(len(COMPETENCIES)))
    else:
        competency = COMPETENCIES.index(config.competency)
    if competency == RETRIEVAL:
        keys = rng.permutation(K)[:F]
        values = rng.integers(V, size=F)
        n_relevant = int(rng.integers(1, min(M, F) + 1))
        relevant = np.zeros(F, dtype=bool)
        relevant[rng.permutation(F)[:n_relevant]] = True
    else:
        hi = min(M, F - 1, K)  # F - 1: at least one key must come back
        n_keys = int(rng.integers(min(2, hi), hi + 1))
        chosen = rng.permutation(K)[:n_keys]
        # Every chosen key appears at least once; the rest of the stream repeats them.
        keys = rng.permutation(np.concatenate([chosen, rng.choice(chosen, F - n_keys)]))
        first, shift = rng.integers(V, size=F), rng.integers(1, V, size=F)
        values = np.empty(F, dtype=np.int64)
        last: dict[int, int] = {}
        for t, k in enumerate(keys.tolist()):
            # A repeated key gets a value different from its previous one: a real conflict.
            values[t] = (last[k] + shift[t]) % V if k in last else first[t]
            last[k] = int(values[t])
        relevant = np.ones(F, dtype=bool)
    return competency, keys.astype(np.int64), values.astype(np.int64), relevant


# --------------------------------------------------------------------------- picture

_BACKGROUND = (24, 24, 28)
_OFF = (60, 60, 68)
_KEY = (70, 140, 245)
_VALUE = (245, 150, 30)
_FLAG = (250, 220, 40)
_CELL, _PAD = 14, 6


def render_frame(
    config: MemoryConstructionVecConfig,
    fact: tuple[int, int, bool] | None,
    slot_key: np.ndarray,
    slot_value: np.ndarray,
    t: int,
) -> np.ndarray:
    """``uint8[H, W, 3]``: the current fact on top (key cells blue, value cells orange, a
    yellow flag cell when relevant, a progress bar of ``t / n_facts``), the slots below, one row
    each. ``fact`` is None after the last fact (the query phase)."""
    K, V, M = config.n_keys, config.n_values, config.n_slots
    cols = K + V + 3  # keys, gap, values, gap, flag
    img = np.empty((_PAD * 3 + (M + 2) * _CELL, 2 * _PAD + cols * _CELL, 3), dtype=np.uint8)
    img[:] = _BACKGROUND

    def cell(row: int, col: int, colour: tuple[int, int, int]) -> None:
        top = _PAD + row * _CELL + (_PAD if row >= 2 else 0)
        left = _PAD + col * _CELL
        img[top + 1 : top + _CELL - 1, left + 1 : left + _CELL - 1] = colour

    def entry(row: int, key: int, value: int) -> None:
        for k in range(K):
            cell(row, k, _KEY if k == key else _OFF)
        for v in range(V):
            cell(row, K + 1 + v, _VALUE if v == value else _OFF)

    if fact is None:
        entry(0, EMPTY, EMPTY)
    else:
        entry(0, fact[0], fact[1])
        cell(0, cols - 1, _FLAG if fact[2] else _OFF)
    bar = int(round((cols * _CELL) * t / config.n_facts))
    img[_PAD + _CELL + 2 : _PAD + _CELL + 5, _PAD : _PAD + bar] = _FLAG
    for i in range(M):
        entry(2 + i, int(slot_key[i]), int(slot_value[i]))
    return img


# --------------------------------------------------------------------------- single env


class MemoryConstructionVec(gym.Env[np.ndarray, np.int64]):
    """Memory construction with vectors: keep the facts the answerer will be asked about.

    ## Description

    The vector version of Mem-α's memory-construction task (Wang et al. 2025). ``n_facts``
    facts ``(key, value)`` arrive one per step. The agent owns ``n_slots`` slots, each empty or
    holding one ``(key, value)``, and edits them with its actions. After the last fact a fixed
    answerer is asked the episode's *queried keys* -- the keys of the facts flagged relevant --
    and answers each one from the slots alone: the lowest-index slot holding the key gives its
    value (a key in no slot is answered wrongly). The truth for a key is the value of its
    latest relevant fact. Episode types (``competency``): ``retrieval`` (distinct keys, only
    flagged facts asked, more facts than slots) and ``conflict`` (keys come back with new
    values; the latest is asked); ``mixed`` draws one per episode. See the module docstring.

    ## Action Space

    ``Discrete(1 + 2 * n_slots)``: ``0`` skip the fact; ``1 + i`` write it into slot ``i``
    (overwriting whatever was there); ``1 + n_slots + i`` delete slot ``i`` (a no-op on an
    empty slot). Every action is legal; nothing is penalised per step.

    ## Observation Space

    ``Box(0, 1, (K + V + 3 + M * (1 + K + V),), float32)``, in this order: the current fact's
    key one-hot (K) and value one-hot (V), its topic flag (1 = relevant, i.e. its key will be
    asked), the time ``t / n_facts`` of the current fact, the phase (1 after the last fact: the
    query phase of the terminal observation, whose fact entries are 0), then for each slot:
    occupied flag, key one-hot, value one-hot (all 0 when empty). ``info["cue"]`` (bool, every
    reset and step info) is the topic flag of the fact shown.

    ## Rewards

    0 on every step but the last. At the last fact: ``accuracy + beta * (1 - used_slots /
    n_slots)``, accuracy = correctly answered queried keys / queried keys, used_slots = occupied
    slots after the last action. Best return: ``1 + beta * (1 - n_queried / n_slots)`` (store
    exactly the queried keys' latest values).

    ## Starting State

    The whole stream, drawn at reset from ``self.np_random`` (:func:`draw_episode`); all slots
    empty; the first fact is shown.

    ## Episode End

    Termination after ``n_facts`` steps. The final info holds ``success`` (accuracy == 1),
    ``accuracy`` (float), ``used_slots`` (int) and ``competency`` (``numpy.str_``: "retrieval"
    or "conflict"). There is no truncation.

    ## Arguments

    ``n_keys`` (8), ``n_values`` (8), ``n_slots`` (4), ``n_facts`` (8), ``competency``
    ("mixed"), ``beta`` (0.05). Bad values raise :class:`rlmem.errors.ConfigError`.
    ``get_state()`` / ``set_state()`` expose the hidden state (stream, slots, RNG).
    """

    metadata = METADATA

    def __init__(
        self,
        n_keys: int = 8,
        n_values: int = 8,
        n_slots: int = 4,
        n_facts: int = 8,
        competency: str = "mixed",
        beta: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        self.config = cfg = MemoryConstructionVecConfig(
            n_keys=n_keys, n_values=n_values, n_slots=n_slots, n_facts=n_facts, competency=competency, beta=beta
        )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"MemoryConstructionVec: render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(cfg.n_actions)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(cfg.obs_dim,), dtype=np.float32)
        self._competency = 0
        self._keys = np.zeros(cfg.n_facts, dtype=np.int64)
        self._values = np.zeros(cfg.n_facts, dtype=np.int64)
        self._relevant = np.zeros(cfg.n_facts, dtype=bool)
        self._slot_key = np.full(cfg.n_slots, EMPTY, dtype=np.int64)
        self._slot_value = np.full(cfg.n_slots, EMPTY, dtype=np.int64)
        self._t = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._competency, self._keys, self._values, self._relevant = draw_episode(self.np_random, self.config)
        self._slot_key[:] = EMPTY
        self._slot_value[:] = EMPTY
        self._t = 0
        self._needs_reset = False
        return self._observe(), {"cue": bool(self._relevant[0])}

    def step(self, action):
        if self._needs_reset:
            raise ResetNeeded("MemoryConstructionVec: call reset() before step()")
        cfg, a = self.config, int(action)
        if not 0 <= a < cfg.n_actions:
            raise ValueError(f"MemoryConstructionVec: action must be in [0, {cfg.n_actions}), got {action!r}")
        M, t = cfg.n_slots, self._t
        if 1 <= a <= M:
            self._slot_key[a - 1], self._slot_value[a - 1] = self._keys[t], self._values[t]
        elif a > M:
            self._slot_key[a - 1 - M] = self._slot_value[a - 1 - M] = EMPTY
        self._t += 1
        if self._t < cfg.n_facts:
            return self._observe(), 0.0, False, False, {"cue": bool(self._relevant[self._t])}

        accuracy, used = self._answer()
        reward = accuracy + cfg.beta * (1.0 - used / M)
        info = {
            "cue": False,
            "success": accuracy == 1.0,
            "accuracy": accuracy,
            "used_slots": used,
            "competency": np.str_(COMPETENCIES[self._competency]),
        }
        self._needs_reset = True
        return self._observe(), reward, True, False, info

    def _answer(self) -> tuple[float, int]:
        """The fixed answerer: (accuracy over the queried keys, occupied slots)."""
        truth: dict[int, int] = {}
        for k, v, r in zip(self._keys.tolist(), self._values.tolist(), self._relevant.tolist()):
            if r:
                truth[k] = v  # a later relevant fact supersedes an earlier one
        slots = list(zip(self._slot_key.tolist(), self._slot_value.tolist()))
        correct = 0
        for key, value in truth.items():
            answer = next((sv for sk, sv in slots if sk == key), None)  # lowest-index match
            correct += answer == value
        used = sum(sk != EMPTY for sk, _ in slots)
        return correct / len(truth), used

    def _observe(self) -> np.ndarray:
        cfg = self.config
        K, V = cfg.n_keys, cfg.n_values
        obs = np.zeros(cfg.obs_dim, dtype=np.float32)
        if self._t < cfg.n_facts:
            obs[self._keys[self._t]] = 1.0
            obs[K + self._values[self._t]] = 1.0
            obs[K + V] = float(self._relevant[self._t])
        else:
            obs[K + V + 2] = 1.0  # the query phase
        obs[K + V + 1] = np.float32(self._t / cfg.n_facts)
        for i, (k, v) in enumerate(zip(self._slot_key.tolist(), self._slot_value.tolist())):
            if k != EMPTY:
                base = cfg.slots_offset + i * cfg.slot_width
                obs[base] = obs[base + 1 + k] = obs[base + 1 + K + v] = 1.0
        return obs

    def get_action_meanings(self) -> list[str]:
        """Action names (the video recorder labels actions with them)."""
        M = self.config.n_slots
        return ["SKIP"] + [f"WRITE_{i}" for i in range(M)] + [f"DELETE_{i}" for i in range(M)]

    def render(self) -> np.ndarray | None:
        """``uint8[H, W, 3]`` picture of the fact and the slots (see :func:`render_frame`)."""
        if self.render_mode is None:
            return None
        t = self._t
        fact = None if t >= self.config.n_facts else (int(self._keys[t]), int(self._values[t]), bool(self._relevant[t]))
        return render_frame(self.config, fact, self._slot_key, self._slot_value, t)

    def get_state(self) -> dict[str, np.ndarray]:
        """``competency`` (int64), ``keys``/``values`` (int64[F]), ``relevant`` (bool[F]),
        ``slot_key``/``slot_value`` (int64[M], -1 = empty), ``t`` (int64), ``needs_reset``
        (bool), ``rng`` (uint64[6])."""
        return {
            "competency": np.array(self._competency, dtype=np.int64),
            "keys": self._keys.copy(),
            "values": self._values.copy(),
            "relevant": self._relevant.copy(),
            "slot_key": self._slot_key.copy(),
            "slot_value": self._slot_value.copy(),
            "t": np.array(self._t, dtype=np.int64),
            "needs_reset": np.array(self._needs_reset),
            "rng": rng_state_to_array(self.np_random),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (RNG included)."""
        check_state_keys(state, _SINGLE_KEYS, "MemoryConstructionVec")
        cfg = self.config
        shapes = {"keys": (cfg.n_facts,), "values": (cfg.n_facts,), "relevant": (cfg.n_facts,),
                  "slot_key": (cfg.n_slots,), "slot_value": (cfg.n_slots,)}
        for k, shape in shapes.items():
            if np.shape(state[k]) != shape:
                raise ConfigError(
                    f"MemoryConstructionVec.set_state: {k!r} has shape {np.shape(state[k])}, expected {shape}"
                )
        self._competency, self._t = int(state["competency"]), int(state["t"])
        self._keys = np.asarray(state["keys"], dtype=np.int64).copy()
        self._values = np.asarray(state["values"], dtype=np.int64).copy()
        self._relevant = np.asarray(state["relevant"], dtype=bool).copy()
        self._slot_key = np.asarray(state["slot_key"], dtype=np.int64).copy()
        self._slot_value = np.asarray(state["slot_value"], dtype=np.int64).copy()
        self._needs_reset = bool(state["needs_reset"])
        self._np_random = rng_from_array(state["rng"])


_SINGLE_KEYS = ("competency", "keys", "values", "relevant", "slot_key", "slot_value", "t", "needs_reset", "rng")
_BATCH_KEYS = ("competency", "keys", "values", "relevant", "slot_key", "slot_value", "t")


# --------------------------------------------------------------------------- batched env


class MemoryConstructionVecBatched(SubEnvRNGs, VectorEnv):
    """Native batched :class:`MemoryConstructionVec`: ``num_envs`` copies in numpy.

    Equal to ``SyncVectorEnv([MemoryConstructionVec] * N, autoreset_mode=SAME_STEP)`` --
    observations, rewards, terminated, truncated and the info dict -- for the same seeds
    (sub-env ``i`` gets ``seed + i``; a list gives one seed each, so several sub-envs can
    replay one stream, as GRPO's groups do). SAME_STEP autoreset only: ``info["final_obs"]`` /
    ``info["final_info"]`` (``success``, ``accuracy``, ``used_slots``, ``cue``, and
    ``competency`` as an object array of ``numpy.str_``, None elsewhere) with their masks on
    steps where some sub-env finished.

    Shapes: observations ``float32[N, obs_dim]``, rewards ``float64[N]``, actions ``int[N]``.
    Slot edits, observations and the answerer are whole-array; each resetting sub-env draws
    its stream with :func:`draw_episode` on its own generator (the only per-sub-env loop).
    """

    metadata = {**METADATA, "render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        n_keys: int = 8,
        n_values: int = 8,
        n_slots: int = 4,
        n_facts: int = 8,
        competency: str = "mixed",
        beta: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        if not is_int(num_envs) or num_envs < 1:
            raise ConfigError(f"MemoryConstructionVecBatched: num_envs must be an integer >= 1, got {num_envs!r}")
        self.config = cfg = MemoryConstructionVecConfig(
            n_keys=n_keys, n_values=n_values, n_slots=n_slots, n_facts=n_facts, competency=competency, beta=beta
        )
        if render_mode is not None:  # videos are recorded from the single env
            raise ConfigError(
                "MemoryConstructionVecBatched: renders no frames (use MemoryConstructionVec), "
                f"got render_mode={render_mode!r}"
            )
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.metadata = dict(self.metadata)
        self.single_action_space = spaces.Discrete(cfg.n_actions)
        self.single_observation_space = spaces.Box(0.0, 1.0, shape=(cfg.obs_dim,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        F, M = cfg.n_facts, cfg.n_slots
        self._competency = np.zeros(n, dtype=np.int64)
        self._keys = np.zeros((n, F), dtype=np.int64)
        self._values = np.zeros((n, F), dtype=np.int64)
        self._relevant = np.zeros((n, F), dtype=bool)
        self._slot_key = np.full((n, M), EMPTY, dtype=np.int64)
        self._slot_value = np.full((n, M), EMPTY, dtype=np.int64)
        self._t = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        # Column of each slot's occupied flag; its key / value one-hots follow it.
        self._slot_base = cfg.slots_offset + np.arange(M) * cfg.slot_width
        self._names = np.array([np.str_(c) for c in COMPETENCIES], dtype=object)
        self._init_rngs(n)
        self._all_true = np.ones(n, dtype=bool)
        self._needs_reset = True

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Reset all sub-envs (or those in ``options["reset_mask"]``); info ``{"cue", "_cue"}``."""
        mask, seeds = reset_plan(self.num_envs, seed, options, "MemoryConstructionVecBatched")
        idx = np.flatnonzero(mask)
        self._seed_sub_envs(idx, seeds)
        self._restart(idx)
        self._needs_reset = False
        return self._observe(), {"cue": self._cue() & mask, "_cue": mask.copy()}

    def _restart(self, idx: np.ndarray) -> None:
        """New episodes for sub-envs ``idx``: one :func:`draw_episode` on each one's generator."""
        for i in idx.tolist():
            self._competency[i], self._keys[i], self._values[i], self._relevant[i] = draw_episode(
                self._rngs[i], self.config  # type: ignore[arg-type]
            )
        self._slot_key[idx] = EMPTY
        self._slot_value[idx] = EMPTY
        self._t[idx] = 0

    def _cue(self) -> np.ndarray:
        """bool[N]: the topic flag of the fact each sub-env shows (False in the query phase)."""
        F = self.config.n_facts
        return self._relevant[self._rows, np.minimum(self._t, F - 1)] & (self._t < F)

    def _observe(self) -> np.ndarray:
        """``float32[N, obs_dim]`` for the current state (a new array every call)."""
        cfg = self.config
        K, V, F = cfg.n_keys, cfg.n_values, cfg.n_facts
        obs = np.zeros((self.num_envs, cfg.obs_dim), dtype=np.float32)
        live = self._t < F
        rows = self._rows[live]
        t = self._t[live]
        obs[rows, self._keys[rows, t]] = 1.0
        obs[rows, K + self._values[rows, t]] = 1.0
        obs[rows, K + V] = self._relevant[rows, t]
        obs[:, K + V + 1] = (self._t / F).astype(np.float32)
        obs[:, K + V + 2] = ~live
        r, s = np.nonzero(self._slot_key != EMPTY)
        base = self._slot_base[s]
        obs[r, base] = 1.0
        obs[r, base + 1 + self._slot_key[r, s]] = 1.0
        obs[r, base + 1 + K + self._slot_value[r, s]] = 1.0
        return obs

    def _answer(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fixed answerer for sub-envs ``idx``: (accuracy float64[n], used_slots int64[n])."""
        cfg = self.config
        K = cfg.n_keys
        n = len(idx)
        queried = np.zeros((n, K), dtype=bool)
        truth = np.zeros((n, K), dtype=np.int64)
        rows = np.arange(n)
        for t in range(cfg.n_facts):  # in time order: a later relevant fact supersedes
            rel = self._relevant[idx, t]
            k = self._keys[idx, t]
            queried[rows[rel], k[rel]] = True
            truth[rows[rel], k[rel]] = self._values[idx, t][rel]
        slot_key, slot_value = self._slot_key[idx], self._slot_value[idx]
        match = slot_key[:, :, None] == np.arange(K)  # [n, M, K]
        first = match.argmax(axis=1)  # lowest-index slot holding each key
        answer = np.take_along_axis(slot_value, first, axis=1)
        correct = queried & match.any(axis=1) & (answer == truth)
        accuracy = correct.sum(axis=1) / queried.sum(axis=1)
        return accuracy, (slot_key != EMPTY).sum(axis=1)

    def step(self, actions):
        """One step of every sub-env; finished episodes restart in the same step (SAME_STEP)."""
        if self._needs_reset:
            raise ResetNeeded("MemoryConstructionVecBatched: call reset() before step()")
        cfg = self.config
        M = cfg.n_slots
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.min() < 0 or a.max() >= cfg.n_actions:
            raise ValueError(
                f"MemoryConstructionVecBatched: actions must be int[{self.num_envs}] in [0, {cfg.n_actions})"
            )
        w = np.flatnonzero((a >= 1) & (a <= M))
        t = self._t[w]
        self._slot_key[w, a[w] - 1] = self._keys[w, t]
        self._slot_value[w, a[w] - 1] = self._values[w, t]
        d = np.flatnonzero(a > M)
        self._slot_key[d, a[d] - 1 - M] = EMPTY
        self._slot_value[d, a[d] - 1 - M] = EMPTY
        self._t += 1

        terminated = self._t == cfg.n_facts
        reward = np.zeros(self.num_envs, dtype=np.float64)
        obs = self._observe()
        info: dict[str, Any] = {}
        done_idx = np.flatnonzero(terminated)
        if len(done_idx):
            accuracy, used = self._answer(done_idx)
            reward[done_idx] = accuracy + cfg.beta * (1.0 - used / M)  # same float ops as the single env
            acc_all = np.zeros(self.num_envs)
            used_all = np.zeros(self.num_envs, dtype=np.int64)
            acc_all[done_idx], used_all[done_idx] = accuracy, used
            add_final(info, obs, terminated, {
                "cue": np.zeros(self.num_envs, dtype=bool),
                "success": acc_all == 1.0,
                "accuracy": acc_all,
                "used_slots": used_all,
            })
            names = np.full(self.num_envs, None, dtype=object)
            names[done_idx] = self._names[self._competency[done_idx]]
            info["final_info"]["competency"], info["final_info"]["_competency"] = names, terminated.copy()
            self._restart(done_idx)
            obs = self._observe()
        info["cue"], info["_cue"] = self._cue(), self._all_true.copy()
        return obs, reward, terminated, np.zeros(self.num_envs, dtype=bool), info

    def get_state(self) -> dict[str, np.ndarray]:
        """``competency``, ``t`` (int64[N]), ``keys``/``values`` (int64[N, F]), ``relevant``
        (bool[N, F]), ``slot_key``/``slot_value`` (int64[N, M]), ``rng`` (uint64[N, 6])."""
        if self._needs_reset:
            raise ResetNeeded("MemoryConstructionVecBatched: call reset() before get_state()")
        state = {k: getattr(self, f"_{k}").copy() for k in _BATCH_KEYS}
        state["rng"] = self._rng_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` dict exactly (same ``num_envs`` required)."""
        check_state_keys(state, (*_BATCH_KEYS, "rng"), "MemoryConstructionVecBatched")
        n, F, M = self.num_envs, self.config.n_facts, self.config.n_slots
        shapes = {"competency": (n,), "t": (n,), "keys": (n, F), "values": (n, F), "relevant": (n, F),
                  "slot_key": (n, M), "slot_value": (n, M), "rng": (n, 6)}
        for k, shape in shapes.items():
            if np.shape(state[k]) != shape:
                raise ConfigError(
                    f"MemoryConstructionVecBatched.set_state: {k!r} has shape {np.shape(state[k])}, expected {shape}"
                )
        for k in _BATCH_KEYS:
            getattr(self, f"_{k}")[:] = state[k]
        self._set_rng_state(state["rng"])
        self._needs_reset = False


# --------------------------------------------------------------------------- reference writers


class _ObsReader:
    """Decodes batched observations ``float32[N, obs_dim]`` of a config into fact and slot fields."""

    def __init__(self, config: MemoryConstructionVecConfig) -> None:
        self.config = config

    def decode(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(fact_key int64[N], relevant bool[N], occupied bool[N, M], slot_key int64[N, M])``;
        keys are -1 where nothing is shown (query phase, empty slot)."""
        cfg = self.config
        K, V, M = cfg.n_keys, cfg.n_values, cfg.n_slots
        obs = np.asarray(obs).reshape(-1, cfg.obs_dim)
        fact = obs[:, :K]
        fact_key = np.where(fact.any(axis=1), fact.argmax(axis=1), EMPTY)
        relevant = obs[:, K + V] > 0.5
        slots = obs[:, cfg.slots_offset :].reshape(-1, M, cfg.slot_width)
        occupied = slots[:, :, 0] > 0.5
        slot_key = np.where(occupied, slots[:, :, 1 : 1 + K].argmax(axis=2), EMPTY)
        return fact_key, relevant, occupied, slot_key


class RandomWriter:
    """Uniformly random actions: ``writer(obs float32[N, D]) -> int64[N]`` (seeded)."""

    def __init__(self, config: MemoryConstructionVecConfig, seed: int = 0) -> None:
        self.config, self.rng = config, np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(self.config.n_actions, size=len(obs))


class HeuristicWriter(_ObsReader):
    """The optimal writer, reading only the observation: skip facts without the topic flag;
    overwrite the (first) slot already holding the fact's key; else write into the first free
    slot; skip when memory is full. ``writer(obs float32[N, D]) -> int64[N]``."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        fact_key, relevant, occupied, slot_key = self.decode(obs)
        same = slot_key == fact_key[:, None]
        free = ~occupied
        target = np.where(same.any(axis=1), same.argmax(axis=1), np.where(free.any(axis=1), free.argmax(axis=1), -1))
        return np.where(relevant & (fact_key != EMPTY) & (target >= 0), 1 + target, 0).astype(np.int64)


class StoreFirstWriter(_ObsReader):
    """A naive writer: every fact goes into the first free slot, nothing is ever overwritten
    (skips once memory is full). Fails conflict resolution and, with distractors, retrieval."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        fact_key, _, occupied, _ = self.decode(obs)
        free = ~occupied
        return np.where(free.any(axis=1) & (fact_key != EMPTY), 1 + free.argmax(axis=1), 0).astype(np.int64)
