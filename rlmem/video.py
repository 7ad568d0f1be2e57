"""Rollout videos with a memory panel: what the agent saw beside what its memory held.

Every frame puts the environment's picture next to a heatmap of the policy's memory
output (``PolicyOut.features``) over the last ``window`` steps::

    +------------------------+---------------------------------------------+
    |                        | episode 1/2   step 7   return +1.00         |  header
    |                        | action 0   memory 16 units                  |
    |   env.render(),        | cue [##      ##                       ]     |  cue bar
    |   nearest-neighbour    |   0 [.......................... heatmap]   |  one row per unit,
    |   upscaled to about    |     [...........................        ]   |  one column per step,
    |   256 px high          |  15 [...........................        ]   |  newest at the right
    |                        |     t-47     -0.9 [colourbar] +0.9      t  |  time axis
    +------------------------+---------------------------------------------+

Frame convention: an episode of ``L`` steps gives ``L + 1`` frames. Frame ``t < L`` shows
observation ``t`` (the one the policy reads at step ``t``), the memory up to and
including the features computed from it, and the action chosen from it. The last frame
shows the final observation (which the policy never reads: the memory panel is the
same as on the frame before) with the episode's return and outcome. Yellow cells in
the cue bar mark the steps whose observation showed a cue (``info["cue"]``). Colours
span +-max|feature| over the whole recording (the colour bar's labels), so a colour
means the same value in every frame.

Grid navigation envs (GoatGrid: ``render()`` is already the top-down map of the house, the
current goal's instances framed in cyan) get two more things on the left of the memory
panel: the agent's first-person view (its partial view as RGB) and, drawn on the map, the
path it has walked so far, one colour per subgoal (:func:`rlmem.nav_video.draw_path`).

Any agent can be recorded through an :data:`Actor` (``act(obs, info, start) -> (action,
features)``, :func:`actor_frames`): :mod:`rlmem.algos.sb3` shows RecurrentPPO's LSTM state
that way; an actor with no features (a feed-forward policy) gets the env picture under the
header, without a memory panel. :func:`write_video` writes any frames (or a frame stream)
as mp4 with a GIF fallback, atomically.

The pure pieces -- :func:`memory_panel`, :func:`compose`, :func:`upscale`, :func:`draw_labels`
-- and :func:`record_frames` are public so that tests and notebooks can check frames without
decoding a video.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from rlmem.agents.obs import to_tensor, unsqueeze
from rlmem.envs.vector import make_env
from rlmem.errors import ConfigError, RlmemError

__all__ = [
    "Actor",
    "actor_frames",
    "compose",
    "draw_labels",
    "memory_panel",
    "panel_width",
    "policy_actor",
    "record",
    "record_frames",
    "upscale",
    "write_video",
]

logger = logging.getLogger(__name__)

TARGET_HEIGHT = 256
"""Environment pictures are scaled (nearest neighbour) to about this many pixels high."""
HEADER_HEIGHT = 34
"""Height of the two text lines above the memory panel."""
MAX_UNIT_ROWS = 64
"""Wider memories show this many evenly spaced units, so each row stays >= 3 px high."""

# Colours (RGB). The dark background keeps the diverging heatmap's pale centre visible.
_BACKGROUND = (24, 24, 28)
_EMPTY = (46, 46, 52)  # heatmap/cue-bar cells of steps not taken yet (episode younger than window)
_TRACK = (72, 72, 80)  # cue bar at steps without a cue
_CUE = (255, 210, 0)  # cue bar at steps where info["cue"] was true
_TEXT = (235, 235, 235)
_DIM_TEXT = (150, 150, 160)

# Memory-panel geometry (pixels).
_LEFT, _RIGHT = 30, 8  # margins: unit labels on the left
_CUE_TOP, _CUE_HEIGHT, _GAP = 4, 8, 4  # cue bar above the heatmap
_AXIS_HEIGHT = 18  # time-axis labels and colour bar below the heatmap
_SEPARATOR = 4  # background between the env picture and the panel

# matplotlib's "coolwarm" (Moreland's diverging map) sampled at 17 points; matplotlib is
# not a dependency of rlmem, and linear interpolation between these anchors is within a
# few levels of the original. Blue = negative, pale grey = 0, red = positive.
_COOLWARM_ANCHORS = np.array(
    [
        [59, 76, 192], [78, 104, 216], [98, 130, 234], [119, 154, 247], [141, 176, 254],
        [163, 194, 254], [185, 208, 249], [204, 217, 237], [221, 220, 220], [236, 211, 197],
        [245, 196, 172], [247, 176, 147], [244, 152, 122], [235, 125, 98], [221, 95, 75],
        [202, 59, 55], [180, 4, 38],
    ],
    dtype=np.float64,
)  # fmt: skip


def _make_lut(anchors: np.ndarray, n: int = 256) -> np.ndarray:
    """``uint8[n, 3]`` colour look-up table interpolated linearly between ``anchors``."""
    x = np.linspace(0.0, 1.0, len(anchors))
    xi = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(xi, x, anchors[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


_LUT = _make_lut(_COOLWARM_ANCHORS)


# --------------------------------------------------------------------------- pure frame pieces


def panel_width(window: int) -> int:
    """Pixel width of a memory panel showing ``window`` steps (about 290 px of heatmap)."""
    column = int(np.clip(288 // max(window, 1), 1, 12))
    return _LEFT + column * window + _RIGHT


def memory_panel(
    features: np.ndarray,
    cue: np.ndarray,
    height: int,
    width: int,
    *,
    window: int | None = None,
    scale: float = 1.0,
    max_rows: int = MAX_UNIT_ROWS,
) -> np.ndarray:
    """Heatmap of the memory over recent steps, with cue steps marked.

    Args:
        features: ``float[W, H]`` memory output of the last ``W`` steps (oldest first),
            ``H`` units. If ``W > window`` only the last ``window`` steps are shown.
        cue: ``bool[W]``, true where a cue was visible in the observation of that step.
        height, width: size of the returned panel in pixels. ``width`` must leave at
            least one pixel per step of ``window`` (see :func:`panel_width`).
        window: number of time columns (default ``W``). Columns are right-aligned, so the
            newest step is always at the right edge and steps not taken yet are blank.
        scale: feature value drawn fully saturated; values are clipped to ``[-scale, scale]``
            (blue = ``-scale``, pale grey = 0, red = ``+scale``).
        max_rows: at most this many units are drawn; wider memories show evenly spaced
            units (a fixed choice, so a unit keeps its row from frame to frame).

    Returns:
        ``uint8[height, width, 3]``: a cue bar on top (yellow where ``cue``), the heatmap
        (x = time, y = unit), and a time axis with a colour bar at the bottom.
    """
    features = np.asarray(features, dtype=np.float32)
    cue = np.asarray(cue, dtype=bool)
    if features.ndim != 2 or cue.shape != features.shape[:1]:
        raise ConfigError(f"memory_panel: need features [W, H] and cue [W], got {features.shape} and {cue.shape}")
    if not scale > 0:
        raise ConfigError(f"memory_panel: scale must be positive, got {scale}")
    window = int(window or max(len(features), 1))
    keep = min(len(features), window)
    features, cue = features[len(features) - keep :], cue[len(cue) - keep :]
    steps = len(features)

    # Everything but the data is the same on every frame of a video: draw it (text
    # included) once per layout and copy it.
    template, g = _panel_template(height, width, window, float(scale), features.shape[1], max_rows)
    img = template.copy()
    if steps:
        x0 = g.right - steps * g.column
        if len(g.shown):
            colours = _LUT[_lut_index(features[:, g.shown], scale)]  # [W, R, 3]
            img[g.heat_top : g.heat_bottom, x0 : g.right] = _blow_up(colours.transpose(1, 0, 2), g.row, g.column)
        bar = np.where(cue[:, None], np.array(_CUE, np.uint8), np.array(_TRACK, np.uint8))  # [W, 3]
        img[_CUE_TOP : _CUE_TOP + _CUE_HEIGHT, x0 : g.right] = bar.repeat(g.column, axis=0)[None]
    return img


@dataclass(frozen=True)
class _Geometry:
    """Where a memory panel's parts lie (pixels)."""

    left: int  # first heatmap column of the oldest step in the window
    right: int  # one past the newest step's last column
    column: int  # pixels per step
    heat_top: int
    heat_bottom: int
    row: int  # pixels per unit row
    shown: np.ndarray  # indices of the units drawn, top to bottom


@lru_cache(maxsize=8)
def _panel_template(
    height: int, width: int, window: int, scale: float, n_units: int, max_rows: int
) -> tuple[np.ndarray, _Geometry]:
    """The data-free part of a memory panel (read-only) and its geometry."""
    column = (width - _LEFT - _RIGHT) // window
    heat_top = _CUE_TOP + _CUE_HEIGHT + _GAP
    heat_avail = height - heat_top - _AXIS_HEIGHT
    if column < 1 or heat_avail < 3:
        raise ConfigError(
            f"memory_panel: {height}x{width} px is too small for a window of {window} steps "
            f"(need width >= {_LEFT + _RIGHT + window}, height >= {heat_top + _AXIS_HEIGHT + 3})"
        )
    right = width - _RIGHT
    left = right - column * window
    # At least 3 px per unit row, or neighbouring units blur together.
    n_rows = max(1, min(n_units, max_rows, heat_avail // 3))
    row = heat_avail // n_rows
    heat_bottom = heat_top + n_rows * row
    g = _Geometry(left, right, column, heat_top, heat_bottom, row, _pick_units(n_units, n_rows))

    img = _filled(height, width, _BACKGROUND)
    img[heat_top:heat_bottom, left:right] = _EMPTY
    img[_CUE_TOP : _CUE_TOP + _CUE_HEIGHT, left:right] = _EMPTY
    # A tick under the newest column: "now" is the right edge.
    img[heat_bottom + 1 : heat_bottom + 4, right - column : right] = _TEXT
    # Colour bar centred under the heatmap, labelled with the saturation value.
    bar_w = min(64, (right - left) // 3)
    bar_x = (left + right - bar_w) // 2
    img[heat_bottom + 7 : heat_bottom + 13, bar_x : bar_x + bar_w] = _LUT[
        np.linspace(0, 255, bar_w).round().astype(int)
    ][None]

    text_y = heat_bottom + 4
    labels: list[tuple[tuple[int, int], str, tuple[int, int, int], str]] = [
        ((2, _CUE_TOP - 3), "cue", _CUE, "la"),
        ((left, text_y), f"t-{window - 1}", _DIM_TEXT, "la"),
        ((right, text_y), "t", _TEXT, "ra"),
        ((bar_x - 3, text_y), f"-{scale:.2g}", _DIM_TEXT, "ra"),
        ((bar_x + bar_w + 3, text_y), f"+{scale:.2g}", _DIM_TEXT, "la"),
    ]
    if len(g.shown):  # indices of the top and bottom unit rows
        labels.append(((_LEFT - 4, heat_top - 1), str(g.shown[0]), _DIM_TEXT, "ra"))
        if len(g.shown) > 1:
            labels.append(((_LEFT - 4, heat_bottom - 11), str(g.shown[-1]), _DIM_TEXT, "ra"))
    img = draw_labels(img, labels)
    img.flags.writeable = False
    return img, g


def compose(frame: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """Put ``frame`` (the env picture) left of ``panel``: ``uint8[H, W, 3]``, H and W even.

    Both inputs are ``uint8[h, w, 3]`` (an RGBA or grey frame is converted). The shorter
    one is padded at the bottom with the background colour; one pixel of padding makes
    odd sizes even, which H.264 (yuv420p) requires.
    """
    frame, panel = _as_rgb(frame), _as_rgb(panel)
    height = max(frame.shape[0], panel.shape[0])
    width = frame.shape[1] + _SEPARATOR + panel.shape[1]
    out = _filled(height + height % 2, width + width % 2, _BACKGROUND)
    out[: frame.shape[0], : frame.shape[1]] = frame
    out[: panel.shape[0], frame.shape[1] + _SEPARATOR : width] = panel
    return out


def upscale(frame: np.ndarray, target_height: int = TARGET_HEIGHT) -> np.ndarray:
    """Nearest-neighbour resize of ``uint8[h, w, 3]`` to about ``target_height`` rows.

    Small pictures grow by the largest integer factor that stays within the target, so
    every source pixel becomes an equal square (grid worlds stay crisp); pictures taller
    than the target shrink to exactly ``target_height`` rows. The aspect ratio is kept.
    """
    frame = _as_rgb(frame)
    h, w = frame.shape[:2]
    if h <= target_height:
        k = max(1, target_height // h)
        return _blow_up(frame, k, k)
    new_w = max(1, round(w * target_height / h))
    rows = (np.arange(target_height) * h / target_height).astype(np.intp)
    cols = (np.arange(new_w) * w / new_w).astype(np.intp)
    return frame[rows[:, None], cols[None, :]]


def _filled(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """``uint8[height, width, 3]`` of one colour."""
    # Broadcasting a whole row is ~30x faster than broadcasting a 3-vector over every pixel.
    row = np.empty((width, 3), dtype=np.uint8)
    row[:] = colour
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = row
    return out


def _blow_up(img: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """Repeat every pixel of ``[h, w, C]`` into a ``ky x kx`` block: ``[h * ky, w * kx, C]``."""
    h, w, c = img.shape
    return np.broadcast_to(img[:, None, :, None, :], (h, ky, w, kx, c)).reshape(h * ky, w * kx, c)


def _pick_units(n_units: int, n_rows: int) -> np.ndarray:
    """``n_rows`` evenly spaced unit indices out of ``n_units`` (first and last included)."""
    if n_units == 0:
        return np.zeros(0, dtype=np.intp)
    # Spacing (n_units - 1) / (n_rows - 1) >= 1, so the rounded indices are distinct.
    return np.linspace(0, n_units - 1, min(n_rows, n_units)).round().astype(np.intp)


def _lut_index(values: np.ndarray, scale: float) -> np.ndarray:
    """Map values in ``[-scale, scale]`` (clipped; NaN -> 0) to LUT rows 0..255."""
    v = np.nan_to_num(values / scale, nan=0.0, posinf=1.0, neginf=-1.0)
    return ((np.clip(v, -1.0, 1.0) + 1.0) * 127.5).round().astype(np.intp)


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ConfigError(f"expected an image uint8[h, w, 3], got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3], dtype=np.uint8)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 (FreeType): a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw_labels(
    img: np.ndarray, labels: Sequence[tuple[tuple[int, int], str, Any, str]], size: int = 11
) -> np.ndarray:
    """Draw short text labels ``((x, y), text, colour, anchor)`` onto a copy of ``img``.

    ``img`` is ``uint8[h, w, 3]``; ``anchor`` is Pillow's two-letter text anchor (``"la"``: left,
    ascender at ``y``). Returns a new ``uint8[h, w, 3]`` array."""
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    for xy, text, colour, anchor in labels:
        try:
            draw.text(xy, text, fill=colour, font=font, anchor=anchor)
        except ValueError:  # bitmap fonts do not support anchors
            draw.text(xy, text, fill=colour, font=font)
    return np.asarray(pil)


def _header(lines: Sequence[str], width: int, height: int = HEADER_HEIGHT) -> np.ndarray:
    """``uint8[height, width, 3]`` strip with up to two lines of text."""
    img = _filled(height, width, _BACKGROUND)
    labels = [((6, 3 + 15 * i), text, _TEXT if i == 0 else _DIM_TEXT, "la") for i, text in enumerate(lines)]
    return draw_labels(img, labels, size=12)


# --------------------------------------------------------------------------- rollout

Actor = Callable[[Any, dict, bool], tuple[Any, np.ndarray]]
"""``act(obs, info, start) -> (env_action, features)``: one step of an agent.

``obs`` and ``info`` are what the env returned (unbatched); ``start`` is true on the first
step of an episode (the actor resets its memory there). ``features`` is ``float32[H]``, the
memory the heatmap shows for this step (``H = 0``: the agent has none, no panel is drawn).
An actor keeps its own recurrent state between calls.
"""


@dataclass
class _Episode:
    """What one recorded episode of ``L`` steps produced."""

    renders: list[np.ndarray]
    """``L + 1`` pictures: before each step, and the final one."""
    features: np.ndarray
    """``float32[L, H]`` memory output at each step."""
    cue: np.ndarray
    """``bool[L]``: a cue was visible in the observation read at each step."""
    actions: list[str]
    """The action taken at each step, formatted for the header."""
    rewards: np.ndarray
    """``float64[L]``."""
    outcome: str
    """``success`` / ``failure`` / ``truncated`` / ``terminated`` / ``stopped``."""
    nav: _NavTrace | None = None
    """Grid navigation envs only: the agent's path and first-person views."""


@dataclass
class _NavTrace:
    """Per picture (``L + 1``) of a grid navigation env (GoatGrid): where the agent was."""

    cells: list[tuple[int, int]]
    subgoals: list[int]
    views: list[np.ndarray]
    """``uint8[7t, 7t, 3]`` first-person views (the agent's partial view as RGB)."""
    tile: int
    """Pixels per grid cell of ``renders``."""


def _nav_probe(env: Any) -> Callable[[], tuple[tuple[int, int], int, np.ndarray]] | None:
    """For a grid navigation env (GoatGrid: ``agent_pose``, ``goal_spec``, ``egocentric_rgb`` and
    a render ``tile_size``): a function returning ``(cell, subgoal index, first-person view)``.
    None for every other env (no path is drawn)."""
    base = env.unwrapped
    if not all(hasattr(base, n) for n in ("agent_pose", "goal_spec", "egocentric_rgb")):
        return None
    if not isinstance(getattr(base, "tile_size", None), int):
        return None  # not a grid (GoatWorld's top view has no fixed cell size)

    def probe() -> tuple[tuple[int, int], int, np.ndarray]:
        x, y = base.agent_pose[:2]
        return (int(x), int(y)), int(base.goal_spec().subgoal_index), np.asarray(base.egocentric_rgb())

    return probe


def _rollout(
    act: Actor,
    env: Any,
    seed: int,
    max_steps: int,
    action_names: Sequence[str] | None,
) -> _Episode:
    """One episode of ``act`` in ``env`` reset with ``seed`` (T = B = 1, as in training)."""
    obs, info = env.reset(seed=seed)
    probe = _nav_probe(env)
    trace = _NavTrace([], [], [], int(env.unwrapped.tile_size)) if probe is not None else None

    def look() -> None:
        if trace is not None:
            cell, subgoal, view = probe()
            trace.cells.append(cell)
            trace.subgoals.append(subgoal)
            trace.views.append(view)

    renders, features, cues, actions, rewards = [_render(env)], [], [], [], []
    look()
    outcome = "stopped"
    for t in range(max_steps):
        env_action, feature = act(obs, info, t == 0)
        features.append(np.asarray(feature, dtype=np.float32).reshape(-1))
        cues.append(bool(info.get("cue", False)))
        actions.append(_format_action(env_action, action_names))
        obs, reward, terminated, truncated, info = env.step(env_action)
        rewards.append(float(reward))
        renders.append(_render(env))
        look()
        if terminated or truncated:
            if "success" in info:
                outcome = "success" if info["success"] else "failure"
            else:
                outcome = "terminated" if terminated else "truncated"
            break
    width = features[0].shape[0] if features else 0
    return _Episode(
        renders=renders,
        features=np.asarray(features, dtype=np.float32).reshape(len(features), width),
        cue=np.asarray(cues, dtype=bool),
        actions=actions,
        rewards=np.asarray(rewards, dtype=np.float64),
        outcome=outcome,
        nav=trace,
    )


def policy_actor(policy: torch.nn.Module, deterministic: bool = True) -> Actor:
    """An :data:`Actor` stepping an rlmem policy with T = B = 1 exactly as the training loop does.

    The memory state is threaded from call to call; the ``start`` flag (not a fresh state)
    resets it at an episode's first step, as in training. Sampling (``deterministic=False``)
    draws from torch's global RNG.
    """
    device = next(policy.parameters()).device
    state = policy.initial_state(1, device)

    def act(obs: Any, info: dict, start: bool) -> tuple[Any, np.ndarray]:
        nonlocal state
        with torch.no_grad():
            out, state = policy(unsqueeze(to_tensor(obs, device), 2), state, torch.tensor([[start]], device=device))
            action, _ = policy.sample(out.params[0], deterministic=deterministic)
        return policy.env_action(action)[0], out.features[0, 0].float().cpu().numpy()

    return act


def _render(env: Any) -> np.ndarray:
    img = env.render()
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ConfigError(f"environment {env.spec.id if env.spec else env} does not render rgb_array frames")
    return img


def _format_action(action: Any, names: Sequence[str] | None) -> str:
    a = np.asarray(action)
    if a.ndim == 0 and np.issubdtype(a.dtype, np.integer):
        i = int(a)
        return f"{i} ({names[i]})" if names is not None and 0 <= i < len(names) else str(i)
    flat = a.reshape(-1)
    text = ", ".join(f"{v:+.2f}" for v in flat[:4])
    return f"[{text}{', ...' if flat.size > 4 else ''}]"


def _action_names(env: Any) -> Sequence[str] | None:
    # The ALE convention (get_action_meanings); envs without it show action numbers.
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    try:
        return list(meanings()) if callable(meanings) else None
    except Exception:  # noqa: BLE001  (a label is never worth failing a recording)
        return None


def _check_counts(episodes: int, window: int, max_steps: int) -> None:
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window must be a positive integer, got {window!r}")
    if max_steps < 1:
        raise ConfigError(f"max_steps must be positive, got {max_steps}")


def record_frames(
    policy: torch.nn.Module,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 1,
    seed: int = 0,
    deterministic: bool = True,
    window: int = 48,
    max_steps: int = 10_000,
) -> tuple[list[np.ndarray], list[float]]:
    """Roll out ``episodes`` episodes and draw every frame of the video.

    Episode ``k`` resets the env with seed ``seed + k``. With ``deterministic=False``,
    actions are sampled from a torch RNG seeded with ``seed`` (the global RNG state is
    restored afterwards), so the same call gives the same video. ``max_steps`` stops an
    episode of an env without a time limit.

    Returns:
        ``frames``: ``uint8[H, W, 3]`` arrays, all the same size with H and W even; an
        episode of ``L`` steps gives ``L + 1`` frames (see the module docstring).
        ``returns``: the undiscounted return of each episode.
    """
    _check_counts(episodes, window, max_steps)
    env = make_env(env_id, env_kwargs, render_mode="rgb_array")
    try:
        _check_spaces(policy, env, env_id)
        device = next(policy.parameters()).device
        # Sampling draws from torch's global RNG: fork it so a recording is reproducible
        # and leaves the caller's RNG untouched.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            act = policy_actor(policy, deterministic)
            recorded = _record_episodes(act, env, episodes, seed, max_steps)
    finally:
        env.close()
    return _draw_episodes(recorded, window, "memory"), [float(e.rewards.sum()) for e in recorded]


def actor_frames(
    act: Actor,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 1,
    seed: int = 0,
    window: int = 48,
    max_steps: int = 10_000,
    memory_name: str = "memory",
) -> tuple[list[np.ndarray], list[float]]:
    """:func:`record_frames` for any :data:`Actor` (e.g. a Stable-Baselines3 model).

    The heatmap shows the actor's ``features`` (labelled ``memory_name`` in the header); an
    actor whose features are empty (``H = 0``) gets no memory panel: each frame is the env
    picture under the header. Same frames and returns convention as :func:`record_frames`;
    the actor draws its own random numbers, if any.
    """
    _check_counts(episodes, window, max_steps)
    env = make_env(env_id, env_kwargs, render_mode="rgb_array")
    try:
        recorded = _record_episodes(act, env, episodes, seed, max_steps)
    finally:
        env.close()
    return _draw_episodes(recorded, window, memory_name), [float(e.rewards.sum()) for e in recorded]


def _record_episodes(act: Actor, env: Any, episodes: int, seed: int, max_steps: int) -> list[_Episode]:
    names = _action_names(env)
    return [_rollout(act, env, seed + k, max_steps, names) for k in range(episodes)]


def _draw_episodes(recorded: list[_Episode], window: int, memory_name: str) -> list[np.ndarray]:
    # One colour scale for the whole video, so a colour means the same value in every frame.
    peak = max((float(np.abs(e.features).max()) for e in recorded if e.features.size), default=0.0)
    scale = peak if math.isfinite(peak) and peak > 1e-6 else 1.0
    frames = []
    for k, episode in enumerate(recorded):
        frames += _episode_frames(episode, f"episode {k + 1}/{len(recorded)}", window, scale, memory_name)
    return frames


def _episode_frames(ep: _Episode, title: str, window: int, scale: float, memory_name: str = "memory") -> list[np.ndarray]:
    """The ``L + 1`` frames of one recorded episode (see the module docstring)."""
    n_steps, n_units = len(ep.rewards), ep.features.shape[1]
    width = panel_width(window)
    frames = []
    for t in range(n_steps + 1):
        picture = _picture(ep, t)
        returned = ep.rewards[:t].sum()  # rewards of the steps before this observation
        status = f"action {ep.actions[t]}" if t < n_steps else f"end: {ep.outcome}"
        if n_units == 0:  # nothing to show of the memory: the header over the picture
            header = _header([f"{title}   step {t}   return {returned:+.2f}", status], max(picture.shape[1], width))
            frames.append(_stack(header, picture))
            continue
        height = max(picture.shape[0] - HEADER_HEIGHT, 128)
        n_shown = len(_panel_template(height, width, window, scale, n_units, MAX_UNIT_ROWS)[1].shown)
        units = f"{memory_name} {n_units} units" + (f" ({n_shown} shown)" if n_shown < n_units else "")
        seen = min(t + 1, n_steps)  # steps whose features exist on this frame
        header = _header([f"{title}   step {t}   return {returned:+.2f}", f"{status}   {units}"], width)
        memory = memory_panel(
            ep.features[max(0, seen - window) : seen],
            ep.cue[max(0, seen - window) : seen],
            height,
            width,
            window=window,
            scale=scale,
        )
        frames.append(compose(picture, np.concatenate([header, memory], axis=0)))
    return frames


def _picture(ep: _Episode, t: int) -> np.ndarray:
    """The env picture of frame ``t``, upscaled; for grid navigation envs with the agent's
    path so far drawn on it and its first-person view on the left."""
    picture = upscale(ep.renders[t])
    if ep.nav is None:
        return picture
    from rlmem.nav_video import draw_path  # nav_video builds on this module

    cell_px = ep.nav.tile * picture.shape[0] / _as_rgb(ep.renders[t]).shape[0]
    picture = draw_path(picture, ep.nav.cells[: t + 1], cell_px, ep.nav.subgoals[: t + 1])
    view = upscale(ep.nav.views[t], picture.shape[0])
    return compose(view, picture)


def _stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """``top`` above ``bottom``, left-aligned, padded with the background colour to even sizes."""
    width, height = max(top.shape[1], bottom.shape[1]), top.shape[0] + bottom.shape[0]
    out = _filled(height + height % 2, width + width % 2, _BACKGROUND)
    out[: top.shape[0], : top.shape[1]] = top
    out[top.shape[0] :, : bottom.shape[1]] = bottom
    return out


def _check_spaces(policy: torch.nn.Module, env: Any, env_id: str) -> None:
    """A policy built for another env fails inside torch with an obscure shape error."""
    space = getattr(policy, "obs_space", None)
    if space is not None and space.shape != env.observation_space.shape:
        raise ConfigError(
            f"the policy expects observations of shape {space.shape}, {env_id} gives {env.observation_space.shape}"
        )


# --------------------------------------------------------------------------- writing


def record(
    policy: torch.nn.Module,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    out: str | Path = Path("videos"),
    episodes: int = 1,
    seed: int = 0,
    deterministic: bool = True,
    fps: float = 8,
    name: str = "rollout",
    window: int = 48,
) -> Path:
    """Record ``episodes`` episodes of ``policy`` on ``env_id`` to ``out/<name>.mp4``.

    H.264 through imageio-ffmpeg's bundled ffmpeg; if that fails (no ffmpeg), an animated
    ``out/<name>.gif`` instead. ``out`` is created if needed. A file of the same name is
    replaced, atomically: the video is written under a temporary name in ``out`` and
    renamed, so an interrupted run leaves no broken file. Frames: see :func:`record_frames`.

    Returns the path written.
    """
    _check_video_args(fps, name)
    frames, _ = record_frames(policy, env_id, env_kwargs, episodes, seed, deterministic, window)
    return write_video(frames, out, name, fps)


def _check_video_args(fps: float, name: str) -> None:
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
        raise ConfigError(f"fps must be a positive number, got {fps!r}")
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise ConfigError(f"video name must be a plain file name without folders, got {name!r}")


def write_video(
    frames: Sequence[np.ndarray] | Callable[[], Iterable[np.ndarray]],
    out: str | Path,
    name: str,
    fps: float,
) -> Path:
    """Write ``out/<name>.mp4`` (H.264), or ``out/<name>.gif`` if that fails; returns the path.

    ``frames`` are ``uint8[H, W, 3]`` arrays of one size with H and W even (see :func:`compose`),
    or a function returning a fresh iterable of them each time it is called: the mp4 is then
    written as the frames are made, never holding a long video in memory (the GIF fallback,
    called again, collects them). ``out`` is created if needed; the file appears atomically
    (written under a temporary name beside it, then renamed), so an interrupted recording
    leaves any previous video of that name intact and no partial file.
    """
    _check_video_args(fps, name)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RlmemError(f"cannot create the video folder {out}: {e}") from None
    make = frames if callable(frames) else (lambda: frames)

    mp4 = out / f"{name}.mp4"
    try:
        _write_atomic(mp4, lambda tmp: _write_mp4(tmp, make(), fps))
        return mp4
    except (ImportError, RuntimeError, OSError, ValueError) as e:
        if isinstance(e, RlmemError):
            raise  # the frames could not be made: not a writer problem
        logger.info("writing %s failed (%s: %s); writing a GIF instead", mp4, type(e).__name__, e)

    gif = out / f"{name}.gif"
    try:
        _write_atomic(gif, lambda tmp: _write_gif(tmp, list(make()), fps))
    except (ImportError, RuntimeError, OSError, ValueError) as e:
        if isinstance(e, RlmemError):
            raise
        raise RlmemError(f"could not write a video to {out}: neither mp4 nor gif worked ({e})") from None
    return gif


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    # Same folder, so the rename is atomic; same suffix, so writers pick the right format.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a video is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_mp4(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """H.264 (libx264, yuv420p). Frames are already even-sized, so macro_block_size=2
    stops imageio from rescaling them to multiples of 16; quality 8 (crf 10) keeps
    pixel-art edges and small text sharp."""
    import imageio.v2 as imageio

    writer = imageio.get_writer(
        path,
        format="FFMPEG",
        mode="I",
        fps=fps,
        codec="libx264",
        pixelformat="yuv420p",
        quality=8,
        macro_block_size=2,
        ffmpeg_log_level="error",
    )
    with writer:
        for frame in frames:
            writer.append_data(frame)


def _write_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """Looping GIF through imageio's Pillow plugin (durations in milliseconds)."""
    import imageio.v3 as iio

    iio.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
