"""Evaluate a trained policy: success rate with a 95% interval, returns, lengths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlmem.agents.obs import to_tensor, unsqueeze
from rlmem.agents.policy import ActorCritic
from rlmem.envs.vector import make_vec_env
from rlmem.errors import RunError
from rlmem.runs import Run

EVAL_SEED_OFFSET = 1_000_003  # evaluation episodes use seeds training never saw


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    success: float
    """Fraction of successful episodes (nan if the env reports no ``success``)."""
    success_ci: tuple[float, float]
    """95% Wilson score interval of the success rate."""
    mean_return: float
    std_return: float
    mean_length: float
    breakdown: dict = field(default_factory=dict)
    """Optional tables ``{title: {row: {column: value}}}``, e.g. success per competency
    (Mem-α) or per subgoal index (navigation); ``rlmem eval`` prints each one."""


def load_policy(run: Run, checkpoint: str | None = None) -> tuple[ActorCritic, dict[str, Any]]:
    """The run's policy with the newest (or given) checkpoint's weights, in eval mode."""
    cfg = run.config
    ckpt = run.load_checkpoint(checkpoint)
    envs = make_vec_env(cfg.env, 1, cfg.env_kwargs)
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space, cfg.policy)
    envs.close()
    try:
        policy.load_state_dict(ckpt["policy"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"checkpoint of {run.path} does not match its config.toml: {str(e).splitlines()[0]}") from None
    return policy.eval(), ckpt


def evaluate(
    policy: ActorCritic,
    env_id: str,
    env_kwargs: dict | None = None,
    episodes: int = 100,
    seed: int = 0,
    deterministic: bool = True,
    num_envs: int = 32,
    device: str = "cpu",
) -> EvalResult:
    """Run exactly ``episodes`` episodes in a batched env.

    Each sub-env runs a fixed quota of episodes, so short episodes are not over-counted
    (taking the first N to finish would bias toward them).
    """
    num_envs = max(1, min(num_envs, episodes))
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    envs = make_vec_env(env_id, num_envs, env_kwargs)
    policy = policy.to(device)
    obs, _ = envs.reset(seed=seed)
    start = np.ones(num_envs, dtype=bool)
    state = policy.initial_state(num_envs, device)
    done_count = np.zeros(num_envs, dtype=np.int64)
    ep_return, ep_length = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    returns, lengths, successes = [], [], []
    split_by = _BreakdownCollector(envs.metadata)
    while (done_count < quota).any():
        with torch.no_grad():
            out, state = policy(
                unsqueeze(to_tensor(obs, device)), state, torch.as_tensor(start, device=device)[None]
            )
            action, _ = policy.sample(out.params[0], deterministic=deterministic)
        obs, reward, terminated, truncated, info = envs.step(policy.env_action(action))
        ep_return += reward
        ep_length += 1
        start = terminated | truncated
        final = info.get("final_info", {})
        for i in np.flatnonzero(start):
            if done_count[i] < quota[i]:
                returns.append(ep_return[i])
                lengths.append(ep_length[i])
                if "success" in final and final["_success"][i]:
                    successes.append(bool(final["success"][i]))
                split_by.add(final, i, ep_return[i])
                done_count[i] += 1
            ep_return[i], ep_length[i] = 0.0, 0
    envs.close()
    n_succ = len(successes)
    rate = float(np.mean(successes)) if n_succ else float("nan")
    return EvalResult(
        episodes=len(returns),
        success=rate,
        success_ci=wilson_interval(sum(successes), n_succ) if n_succ else (float("nan"), float("nan")),
        mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)),
        mean_length=float(np.mean(lengths)),
        breakdown=split_by.tables(),
    )


class _BreakdownCollector:
    """Success / return (and the env's listed metrics) per value of a final_info key.

    The keys are ``metadata["breakdown_keys"]``, by default ``("competency",)`` (Mem-α's
    episode types); ``metadata["breakdown_metrics"]`` optionally names numeric final_info
    entries averaged per row (e.g. ``("accuracy",)``). An env whose final_info carries none
    of the keys gets no breakdown.
    """

    def __init__(self, metadata: dict) -> None:
        self.keys = tuple(metadata.get("breakdown_keys", ("competency",)))
        self.metrics = tuple(metadata.get("breakdown_metrics", ()))
        self.rows: dict[str, dict[str, list]] = {k: {} for k in self.keys}
        self.subgoals: list[tuple] = []  # (successes, spls, modalities) per episode

    def add(self, final: dict, i: int, episode_return: float) -> None:
        if "subgoal_successes" in final and final["_subgoal_successes"][i]:  # lifelong envs (GoatGrid)
            self.subgoals.append(tuple(final[k][i] for k in ("subgoal_successes", "subgoal_spls", "subgoal_modalities")))
        for key in self.keys:
            if key not in final or not final[f"_{key}"][i]:
                continue
            row = self.rows[key].setdefault(str(final[key][i]), {"return": [], "success": []})
            row["return"].append(float(episode_return))
            if "success" in final and final["_success"][i]:
                row["success"].append(float(final["success"][i]))
            for m in self.metrics:
                if m in final and final[f"_{m}"][i]:
                    row.setdefault(m, []).append(float(final[m][i]))

    def tables(self) -> dict:
        """``{"by <key>": {value: {"episodes", "success", "return", *metrics}}}``, rows sorted."""
        out = {}
        for key, rows in self.rows.items():
            if rows:
                out[f"by {key}"] = {
                    value: {
                        "episodes": len(row["return"]),
                        "success": float(np.mean(row["success"])) if row["success"] else float("nan"),
                        "return": float(np.mean(row["return"])),
                        **{m: float(np.mean(row[m])) for m in self.metrics if row.get(m)},
                    }
                    for value, row in sorted(rows.items())
                }
        if self.subgoals:
            out.update(subgoal_tables(self.subgoals))
        return out


def subgoal_tables(episodes) -> dict:
    """Success and SPL per subgoal index and per goal modality of lifelong episodes.

    ``episodes``: ``(successes, spls, modalities)`` per episode, one entry per subgoal (GoatGrid's
    ``final_info``). Returns ``{"success/SPL by subgoal index": {index: {subgoals, success, spl}},
    "success/SPL by modality": {modality or "all": {...}}}``, the tables ``rlmem eval`` prints.
    """
    by_index: dict[int, list] = {}
    by_modality: dict[str, list] = {}
    for successes, spls, modalities in episodes:
        for k, (ok, spl, modality) in enumerate(zip(successes, spls, modalities)):
            by_index.setdefault(k, []).append((ok, spl))
            by_modality.setdefault(str(modality), []).append((ok, spl))
            by_modality.setdefault("all", []).append((ok, spl))

    def table(groups: dict) -> dict:
        return {str(key): {"subgoals": len(rows), "success": float(np.mean([ok for ok, _ in rows])),
                           "spl": float(np.mean([spl for _, spl in rows]))} for key, rows in groups.items()}

    order = sorted(by_modality, key=lambda m: (m == "all", m))
    return {"success/SPL by subgoal index": table(dict(sorted(by_index.items()))),
            "success/SPL by modality": table({m: by_modality[m] for m in order})}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (sane at 0 and 1, unlike Wald)."""
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
