"""Rollout videos: the memory panel's pixels, frame assembly, mp4 / gif writing."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from rlmem import video
from rlmem.agents.policy import ActorCritic
from rlmem.config import PolicyConfig
from rlmem.envs.vector import make_env
from rlmem.errors import ConfigError

ENV = "rlmem/EndlessTMaze-v0"
# One short corridor and a time limit of 18 steps: a few dozen frames at most.
SMALL = {"n_corridors": 1, "length_mode": "fixed", "l_min": 2, "l_max": 2}
# Two corridors, time limit 48 steps: the cue changes within an episode.
MEDIUM = {"n_corridors": 2, "length_mode": "fixed", "l_min": 3, "l_max": 3}
HEIGHT, WINDOW = 200, 48
WIDTH = video.panel_width(WINDOW)


def make_policy(env_id: str = ENV, env_kwargs: dict | None = None, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    env = make_env(env_id, env_kwargs)
    cfg = PolicyConfig(memory="gru", memory_kwargs={"hidden_size": 16})
    policy = ActorCritic(env.observation_space, env.action_space, cfg)
    env.close()
    return policy


def reference_episodes(policy, env_id, env_kwargs, episodes, seed):
    """Lengths and returns of a plain greedy rollout, threaded like the training loop."""
    env = make_env(env_id, env_kwargs)
    state = policy.initial_state(1)
    lengths, returns = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, t, total = False, 0, 0.0
        while not done:
            with torch.no_grad():
                out, state = policy(torch.as_tensor(obs)[None, None], state, torch.tensor([[t == 0]]))
            action = int(out.params[0, 0].argmax())
            obs, reward, terminated, truncated, _ = env.step(action)
            total, t, done = total + reward, t + 1, terminated or truncated
        lengths.append(t)
        returns.append(total)
    env.close()
    return lengths, returns


def panel(features, cue, **kw):
    features, cue = np.asarray(features, np.float32), np.asarray(cue, bool)
    return video.memory_panel(features, cue, HEIGHT, WIDTH, window=WINDOW, **kw)


def changed(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels where two images differ."""
    return np.nonzero((a != b).any(axis=2))


# --------------------------------------------------------------------------- memory panel


def test_memory_panel_shape_and_dtype():
    rng = np.random.default_rng(0)
    for steps, units in [(0, 16), (5, 16), (WINDOW + 20, 16), (10, 256), (3, 1)]:
        img = panel(rng.standard_normal((steps, units)), rng.random(steps) < 0.3)
        assert img.shape == (HEIGHT, WIDTH, 3)
        assert img.dtype == np.uint8


def test_cue_steps_are_marked_above_the_heatmap_in_their_own_column():
    features = np.zeros((6, 8))
    no_cue = panel(features, np.zeros(6, bool))
    marked = {}
    for j in (2, 5):
        cue = np.zeros(6, bool)
        cue[j] = True
        rows, cols = changed(no_cue, panel(features, cue))
        assert rows.size, f"a cue at step {j} changed no pixel"
        marked[j] = (rows, cols)

    # The marker sits above the heatmap: above every row a feature value can change.
    other = features.copy()
    other[:, :] = 1.0
    heat_rows, _ = changed(no_cue, panel(other, np.zeros(6, bool)))
    for rows, _ in marked.values():
        assert rows.max() < heat_rows.min()
    # Each step's marker lies in its own column range, in time order, the newest at the right edge.
    assert marked[2][1].max() < marked[5][1].min()
    assert WIDTH - marked[5][1].max() <= 10

    # In a marker row, the cue column's colour differs from a non-cue column's.
    cue = np.zeros(6, bool)
    cue[5] = True
    img = panel(features, cue)
    r = marked[5][0][0]
    assert not np.array_equal(img[r, marked[5][1][0]], img[r, marked[2][1][0]])


def test_negative_and_positive_values_get_different_colours():
    def pixel(value: float, scale: float = 1.0) -> np.ndarray:
        """Colour of the newest step's heatmap cell for a 1-unit memory at ``value``."""
        base = panel([[0.0], [0.0]], [False, False], scale=scale)
        img = panel([[0.0], [value]], [False, False], scale=scale)
        rows, cols = changed(base, img)
        assert rows.size, f"value {value} looks like 0"
        return img[rows[0], cols[0]].astype(int)

    neg, pos = pixel(-1.0), pixel(1.0)
    assert not np.array_equal(neg, pos)
    assert neg[2] > neg[0] and pos[0] > pos[2]  # diverging map: blue below zero, red above
    np.testing.assert_array_equal(pixel(5.0), pos)  # clipped at the scale
    np.testing.assert_array_equal(pixel(0.5, scale=0.5), pos)  # scale sets saturation


def test_wide_memory_shows_first_and_last_unit_in_legible_rows():
    low = np.full((4, 256), -1.0)
    base = panel(low, np.zeros(4, bool))
    for unit in (0, 255):
        features = low.copy()
        features[:, unit] = 1.0
        rows, _ = changed(base, panel(features, np.zeros(4, bool)))
        assert rows.size, f"unit {unit} is not shown"
        assert rows.max() - rows.min() + 1 >= 3  # a row of at least 3 px


def test_memory_panel_rejects_a_window_wider_than_the_panel():
    with pytest.raises(ConfigError):
        video.memory_panel(np.zeros((3, 4)), np.zeros(3, bool), HEIGHT, 40, window=48)


# --------------------------------------------------------------------------- frame assembly


def test_upscale_keeps_square_pixels_and_aspect():
    small = np.random.default_rng(0).integers(0, 256, (85, 239, 3), dtype=np.uint8)
    big = video.upscale(small, 256)
    assert big.shape == (255, 717, 3)  # integer factor 3: every source pixel a 3x3 square
    np.testing.assert_array_equal(big[::3, ::3], small)
    tall = video.upscale(np.zeros((400, 600, 3), np.uint8), 256)
    assert tall.shape == (256, 384, 3)


def test_compose_places_both_and_makes_even_sizes():
    frame = np.full((255, 717, 3), 7, np.uint8)
    side = np.full((221, 101, 3), 9, np.uint8)
    out = video.compose(frame, side)
    assert out.dtype == np.uint8 and out.shape[0] % 2 == 0 and out.shape[1] % 2 == 0
    assert out.shape[0] >= 255 and out.shape[1] >= 717 + 101
    np.testing.assert_array_equal(out[:255, :717], frame)
    assert (out[:221, -102:] == 9).any(axis=2).any()


# --------------------------------------------------------------------------- recording


def test_record_writes_an_mp4_with_one_frame_per_step_plus_one_per_episode(tmp_path):
    policy = make_policy(env_kwargs=MEDIUM)
    path = video.record(policy, ENV, MEDIUM, out=tmp_path / "videos", episodes=2, seed=3, name="demo")
    assert path == tmp_path / "videos" / "demo.mp4"
    assert path.stat().st_size > 0

    lengths, returns = reference_episodes(policy, ENV, MEDIUM, episodes=2, seed=3)
    frames, rec_returns = video.record_frames(policy, ENV, MEDIUM, episodes=2, seed=3)
    np.testing.assert_allclose(rec_returns, returns)
    assert len(frames) == sum(n + 1 for n in lengths)

    with imageio.get_reader(path, format="FFMPEG") as reader:
        decoded = [f for f in reader]
    assert len(decoded) == len(frames)
    h, w = decoded[0].shape[:2]
    assert h % 2 == 0 and w % 2 == 0
    assert decoded[0].shape == frames[0].shape  # not rescaled to a multiple of 16
    # Lossy, but the same picture.
    assert np.abs(decoded[0].astype(int) - frames[0].astype(int)).mean() < 8


def test_gif_fallback_when_mp4_writing_fails(tmp_path, monkeypatch):
    def broken_mp4(path, frames, fps):
        path.write_bytes(b"half a video")  # a partial file must not survive
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(video, "_write_mp4", broken_mp4)
    policy = make_policy(env_kwargs=SMALL)
    path = video.record(policy, ENV, SMALL, out=tmp_path, episodes=1, name="clip")
    assert path == tmp_path / "clip.gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif"]

    frames, _ = video.record_frames(policy, ENV, SMALL, episodes=1)
    gif = imageio.mimread(path)
    assert len(gif) == len(frames)
    assert gif[0].shape[:2] == frames[0].shape[:2]


def test_interrupted_write_leaves_the_previous_video_intact(tmp_path, monkeypatch):
    policy = make_policy(env_kwargs=SMALL)
    path = video.record(policy, ENV, SMALL, out=tmp_path, name="clip")
    before = path.read_bytes()

    def interrupted(tmp, frames, fps):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(video, "_write_mp4", interrupted)
    with pytest.raises(KeyboardInterrupt):
        video.record(policy, ENV, SMALL, out=tmp_path, name="clip", seed=1)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_sampled_recording_is_reproducible_and_leaves_the_global_rng_alone():
    policy = make_policy(env_kwargs=SMALL)
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    a, ret_a = video.record_frames(policy, ENV, SMALL, episodes=2, seed=5, deterministic=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b, ret_b = video.record_frames(policy, ENV, SMALL, episodes=2, seed=5, deterministic=False)
    assert ret_a == ret_b and len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bad_arguments_are_config_errors(tmp_path):
    policy = make_policy(env_kwargs=SMALL)
    with pytest.raises(ConfigError):
        video.record(policy, ENV, SMALL, out=tmp_path, episodes=0)
    with pytest.raises(ConfigError):
        video.record(policy, ENV, SMALL, out=tmp_path, name="../escape")
    with pytest.raises(ConfigError, match="shape"):
        video.record_frames(make_policy("CartPole-v1"), ENV, SMALL)
    assert list(tmp_path.iterdir()) == []
