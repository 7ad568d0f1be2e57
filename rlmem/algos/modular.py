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
(:func:`nav_tables`).

Recording. :func:`record_run` (``rlmem record``) writes an mp4 (GIF fallback) of ``episodes``
episodes, episode ``i`` seeded ``seed + i``: per step the agent's first-person view, the
top-down map of the house with the path walked so far and the current goal's instances
framed, and the agent's memory drawn from its own data structures (SemanticMap, SpatialGraph,
or "no memory" for the memoryless control), under a header with the subgoal, modality, goal
text (or goal image) and the successes so far; the drawing is :mod:`rlmem.nav_video`.
:func:`nav_steps` yields the plain data of each frame and :func:`record_frames` the frames,
streamed (an episode has up to ``max_subgoals * subgoal_budget + 1`` of them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from rlmem.agents.nav_agents import EnvView, GoatAgentConfig, GoatModularAgent, MemorylessAgent, NavAgent
from rlmem.agents.smg_agent import SMGAgent, SMGAgentConfig
from rlmem.envs.goat_grid import ACTION_NAMES
from rlmem.config import PolicyConfig, RunConfig, from_dict
from rlmem.errors import ConfigError, RunError
from rlmem.evaluate import EvalResult, subgoal_tables, wilson_interval
from rlmem.runs import Run

if TYPE_CHECKING:  # rlmem.nav_video (Pillow, the video helpers) is imported only to record
    from rlmem.nav_video import NavStep

__all__ = [
    "AGENTS",
    "EpisodeResult",
    "check_config",
    "evaluate_agent",
    "evaluate_run",
    "make_agent",
    "nav_steps",
    "nav_tables",
    "play_episode",
    "record_frames",
    "record_run",
    "require_goat_grid",
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
    require_goat_grid(cfg)


def require_goat_grid(cfg: RunConfig) -> None:
    """Reject an env the modular agents cannot read: not GoatGrid, or not symbolic."""
    from rlmem.envs.vector import env_spec

    if env_spec(cfg.env).entry_point != GOAT_ENTRY_POINT:
        raise ConfigError(f"algo {cfg.algo} navigates GoatGrid houses (rlmem/GoatGrid-v0, rlmem/GoatGridSmall-v0), not {cfg.env}")
    if cfg.env_kwargs.get("obs_mode", "symbolic") != "symbolic":
        raise ConfigError(f"algo {cfg.algo} reads the symbolic view: env_kwargs.obs_mode must be 'symbolic'")


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
    agent = load_agent(run)
    cfg = run.config
    kwargs = {**cfg.env_kwargs, **(env_kwargs or {})}
    return summarize(evaluate_agent(agent, cfg.env, kwargs, episodes, seed))


def load_agent(run: Run) -> NavAgent:
    """The agent the newest checkpoint of ``run`` names (RunError if it is not a modular one)."""
    ckpt = run.load_checkpoint()
    policy = ckpt.get("policy")
    if ckpt.get("algo") != "modular" or not isinstance(policy, dict) or "memory" not in policy:
        raise RunError(f"checkpoint of {run.path} is not a modular-agent checkpoint")
    return make_agent(policy["memory"], policy.get("memory_kwargs"))


# --------------------------------------------------------------------------- record
def nav_steps(agent: NavAgent, env: Any, seed: int, title: str = "") -> Iterator[NavStep]:
    """The frames of one episode of ``agent`` in ``env`` as plain data, one :class:`NavStep` per frame.

    ``env`` is a GoatGrid (possibly wrapped) made with ``render_mode="rgb_array"``; it is reset
    with ``seed``. An episode of ``L`` steps gives ``L + 1`` steps of data: item ``t < L`` shows
    the state before step ``t`` -- observation, pose, path so far -- with the memory *after*
    the agent integrated that observation and the action it chose; the last shows the final
    pose and the episode's outcome (the memory as on the item before). Each is yielded before
    the env moves on, with its arrays copied. ``title`` starts the header's first line.
    """
    from rlmem.nav_video import NavStep, snapshot

    base = env.unwrapped
    obs, info = env.reset(seed=seed)
    agent.reset()
    view = EnvView(env)
    tile = int(base.tile_size)
    if base.render_mode != "rgb_array":
        raise ConfigError("nav_steps: make the env with render_mode='rgb_array' (the map is its render)")
    # The first-person view drawn at half the map's height and shown at 2x: MiniGrid draws
    # each new tile supersampled, and larger tiles add start-up time, not detail.
    view_tile = max(4, tile * base.height // 14)
    path: list[tuple[int, int]] = []
    subgoals: list[int] = []
    ended = succeeded = 0
    memory = None

    def frame(t: int, last_line: str) -> NavStep:
        goal = base.goal_spec()
        x, y, _ = base.agent_pose
        path.append((int(x), int(y)))
        subgoals.append(goal.subgoal_index)
        text = f"this view of a {goal.category} (image)" if goal.modality == "image" else goal.text
        return NavStep(
            view=base.egocentric_rgb(view_tile),
            top=base.render(),
            tile=tile,
            path=tuple(path),
            path_subgoals=tuple(subgoals),
            memory=memory,
            lines=(
                f"{title}   subgoal {goal.subgoal_index + 1}/{goal.n_subgoals}   {goal.modality}   step {t}   "
                f"successes {succeeded}/{ended}".strip(),
                f"goal: {text}",
                last_line,
            ),
            goal_image=goal.image,
        )

    t = 0
    while True:
        action = agent.act(obs, info, view)
        memory = snapshot(agent, view.agent_pose)
        yield frame(t, f"action {ACTION_NAMES[action]}   agent {agent.name}")
        obs, _, terminated, truncated, info = env.step(action)
        t += 1
        if "subgoal_success" in info:
            ended += 1
            succeeded += bool(info["subgoal_success"])
        if terminated or truncated:
            break
    outcome = "success" if info.get("success") else "failure"
    spl = info.get("spl_mean")
    yield frame(t, f"end: {outcome}" + (f"   mean SPL {spl:.2f}" if spl is not None else "") + f"   agent {agent.name}")


def record_frames(
    agent: NavAgent,
    env_id: str,
    env_kwargs: dict | None = None,
    episodes: int = 1,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """The video frames (``uint8[H, W, 3]``, one size, H and W even) of ``episodes`` episodes,
    episode ``i`` seeded ``seed + i``, made as they are consumed (:func:`nav_steps`,
    :func:`rlmem.nav_video.nav_frame`). The map is drawn about 288 px high."""
    from rlmem.envs.vector import make_env
    from rlmem.nav_video import map_tile, nav_frame

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
    probe = make_env(env_id, env_kwargs)  # the house's size picks the pixels per cell
    try:
        tile = map_tile((probe.unwrapped.width, probe.unwrapped.height))
    finally:
        probe.close()
    env = make_env(env_id, {**(env_kwargs or {}), "tile_size": tile}, render_mode="rgb_array")
    try:
        for i in range(episodes):
            for step in nav_steps(agent, env, seed + i, title=f"episode {i + 1}/{episodes}"):
                yield nav_frame(step)
    finally:
        env.close()


def record_run(run: Run, *, out, episodes: int, seed: int, fps: int) -> Path:
    """An mp4 (GIF fallback) of the run's agent: first-person view, map with path, memory."""
    from rlmem.video import write_video

    agent = load_agent(run)  # a missing or corrupt checkpoint fails here, before any file
    cfg = run.config
    return write_video(lambda: record_frames(agent, cfg.env, cfg.env_kwargs, episodes, seed), out, run.path.name, fps)
