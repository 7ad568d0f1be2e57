"""What every training loop shares: the device check, the rolling episode statistics, the end of
an update (log, pause, checkpoint: :func:`end_update`) and ``init_from`` (:func:`init_weights`).

PPO, GRPO, NEC and the SB3 baselines log the same metric keys (``episode_return``,
``episode_length``, ``success`` over the last :data:`RECENT` episodes, and
``subgoal_success_rate`` for envs whose episodes hold several subgoals, e.g. GoatGrid, where
whole-episode success stays near 0 long after subgoals start to succeed), so their curves sit
on one plot in ``rlmem compare``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import numpy as np
import torch

from rlmem.errors import ConfigError

__all__ = ["RECENT", "check_device", "end_update", "episode_row", "episode_stats", "init_weights", "recent_window",
           "restore_rows"]

RECENT = 100
"""Episodes in the rolling success / return window."""


def check_device(name: str) -> torch.device:
    """The torch device ``name``, or a ConfigError if this machine cannot use it."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA device")
    return device


def end_update(run, metrics: dict, *, step: int, updates_done: int, last: bool, checkpoint_every: int,
               callback: Callable[[dict], Any] | None, stop_after: int | None,
               checkpoint: Callable[[], dict]) -> bool:
    """What every loop does after an update: log ``metrics`` to ``run``, show them to
    ``callback`` (a True return asks for a pause: the CLI's Ctrl-C), and write a checkpoint
    when it is due (the last update, a pause, or every ``checkpoint_every`` updates): the
    loop's own ``checkpoint()`` entries plus what every loop stores, ``version``, ``update``
    (= ``updates_done``), ``step`` and ``torch_rng``. Returns True when the loop must stop
    here to pause (``metrics["paused"]`` is then set)."""
    if run is not None:
        run.log(step, metrics)
    asked = bool(callback(metrics)) if callback is not None else False
    pause = asked or (stop_after is not None and step >= stop_after)
    if run is not None and (last or pause or updates_done % checkpoint_every == 0):
        common = {"version": 1, "update": updates_done, "step": step, "torch_rng": torch.get_rng_state()}
        run.save_checkpoint(step, {**common, **checkpoint()})
    if pause and not last:
        metrics["paused"] = True
        return True
    return False


def init_weights(policy: torch.nn.Module, run_dir: str) -> None:
    """Load the network of ``run_dir``'s newest checkpoint into ``policy`` (``init_from``); a
    RunError if that run's network is not this one (other ``[policy]``, other spaces)."""
    from rlmem.errors import RunError
    from rlmem.runs import Run

    ckpt = Run.open(run_dir).load_checkpoint()
    try:
        policy.load_state_dict(ckpt["policy"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise RunError(f"init_from {run_dir}: its network differs from this run's [policy] or spaces "
                       f"({str(e).splitlines()[0]})") from None


def episode_row(ep_return: float, ep_length: int, success=None, subgoal_rate=None) -> tuple:
    """One finished episode for the rolling window: ``(return, length, success,
    subgoal_success_rate)``, nan for what the env does not report."""
    nan = float("nan")
    return (float(ep_return), int(ep_length), nan if success is None else float(success),
            nan if subgoal_rate is None else float(subgoal_rate))


def episode_stats(info: dict, done: np.ndarray, ep_return: np.ndarray, ep_length: np.ndarray) -> list:
    """:func:`episode_row` of every env whose episode ended, from a vector env's SAME_STEP
    ``final_info`` (``success``, ``subgoal_success_rate`` where the env reports them)."""
    final = info.get("final_info", {})

    def reported(key: str, i: int):
        value, mask = final.get(key), final.get(f"_{key}")
        return value[i] if value is not None and mask is not None and mask[i] else None

    return [episode_row(ep_return[i], ep_length[i], reported("success", i), reported("subgoal_success_rate", i))
            for i in np.flatnonzero(done)]


def restore_rows(rows: list) -> list[tuple]:
    """A checkpoint's window rows as :func:`episode_row` tuples (rows saved before the subgoal
    column existed have three entries)."""
    return [tuple(r) + (float("nan"),) * (4 - len(r)) for r in rows]


def recent_window(recent: deque) -> dict:
    """Mean return and length of ``recent``'s :func:`episode_row` rows, and the mean success and
    subgoal success rate of the episodes that report them; empty before the first episode ends."""
    if not recent:
        return {}
    arr = np.asarray(recent, dtype=np.float64)
    out = {"episode_return": float(arr[:, 0].mean()), "episode_length": float(arr[:, 1].mean())}
    for column, key in ((2, "success"), (3, "subgoal_success_rate")):
        known = arr[:, column][~np.isnan(arr[:, column])]
        if len(known):
            out[key] = float(known.mean())
    return out
