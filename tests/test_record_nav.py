"""`rlmem record` for modular navigation agents and SB3 runs, and the navigation frames.

Pure pieces (rlmem.nav_video): the path follows the cells it is given, coloured per subgoal;
a SemanticMap panel draws each instance marker in its colour at its cell and the agent at its
pose; a SpatialGraph panel draws its nodes (the current one highlighted) and edges; the
memoryless panel is blank. Rollouts (rlmem.algos.modular.nav_steps): recording plays exactly
the episode `play_episode` plays; the path on the map grows as the agent moves; goat-modular's
memory panel shows markers at the cells of real instances once it has seen them, smg's shows
nodes, the memoryless one never changes. CLI: `rlmem record` writes a video for goat-modular,
smg, memoryless, sb3-ppo and sb3-recurrentppo runs; a missing or corrupt checkpoint is one
line and exit 2. SB3: the memory panel is RecurrentPPO's actor LSTM state, threaded and reset.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import tomli_w
import torch
from minigrid.core.constants import COLORS

import rlmem.envs  # noqa: F401  (registers rlmem/ ids)
from rlmem import nav_video, video
from rlmem.algos import modular
from rlmem.cli import main
from rlmem.envs.goat_grid import FORWARD
from rlmem.envs.vector import make_env
from rlmem.errors import ConfigError
from rlmem.evaluate import EVAL_SEED_OFFSET
from rlmem.memory.semantic_map import FREE, UNKNOWN, WALL
from rlmem.runs import Run
from clitools import rlmem_cli as run_cli

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NAV_ENV = "rlmem/GoatGridSmall-v0"
TMAZE = "rlmem/EndlessTMaze-v0"
TMAZE_KWARGS = "n_corridors = 2, l_max = 4, l_min = 2"
PRESETS = {"semantic_map": "goat-modular", "spatial_graph": "smg", "memoryless": "nav-memoryless"}
MARKER_COLOURS = {tuple(int(v) for v in c) for c in COLORS.values()}


def colour_count(img: np.ndarray, colours) -> int:
    """Pixels of ``img`` whose colour is one of ``colours``."""
    flat = img.reshape(-1, 3)
    return int(sum(np.all(flat == np.array(c, np.uint8), axis=1).sum() for c in colours))


def crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    r, c, h, w = box
    return frame[r : r + h, c : c + w]


def boxes_of(step: nav_video.NavStep, extent=(11, 11)) -> dict:
    """Where nav_frame put the parts of ``step``'s frame."""
    panel = nav_video.memory_panel(step.memory, extent, step.tile)
    return nav_video.layout(step.view.shape, step.top.shape, panel.shape)


def pixel(panel: np.ndarray, cell, tile: int) -> tuple[int, ...]:
    """The colour at the centre of ``cell`` in a memory panel (cells start below the title)."""
    x, y = cell
    return tuple(int(v) for v in panel[nav_video.TITLE_HEIGHT + int((y + 0.5) * tile), int((x + 0.5) * tile)])


# --------------------------------------------------------------------------- pure pieces


def test_draw_path_follows_the_cells_coloured_per_subgoal():
    tile = 10
    blank = np.zeros((50, 50, 3), np.uint8)
    one = nav_video.draw_path(blank, [(1, 1)], tile)
    walked = nav_video.draw_path(blank, [(1, 1), (2, 1), (3, 1), (3, 2)], tile, [0, 0, 1, 1])
    first, second = nav_video.PATH_COLOURS[:2]
    assert tuple(walked[15, 20]) == first  # between (1, 1) and (2, 1): the first leg (subgoal 0)
    assert tuple(walked[20, 35]) == second  # between (3, 1) and (3, 2): walked under subgoal 1
    assert not walked[40:, :].any()  # nothing where the path never went
    assert colour_count(walked, [first, second]) > colour_count(one, [first, second]) > 0
    assert colour_count(one, [second]) == 0
    assert not blank.any()  # drawn on a copy
    with pytest.raises(ConfigError, match="subgoal"):
        nav_video.draw_path(blank, [(1, 1), (2, 1)], tile, [0])


def _map_snapshot(markers, pose=(2, 3, 0)):
    kind = np.full((6, 6), UNKNOWN, np.int8)
    kind[1:5, 1:5] = FREE
    kind[0, :5] = WALL
    return nav_video.MapSnapshot(
        kind=kind, code=np.zeros((6, 6), np.int16), closed=np.zeros((6, 6), bool),
        seen_now=np.zeros((6, 6), bool), markers=tuple(markers), pose=pose,
    )


def test_map_panel_puts_each_instance_at_its_cell_in_its_colour():
    tile, extent = 20, (6, 6)
    markers = [nav_video.Marker((1, 1), "ball", "red"), nav_video.Marker((3, 2), "box", "blue"),
               nav_video.Marker((4, 4), "key", "purple")]
    panel = nav_video.map_panel(_map_snapshot(markers), extent, tile)
    assert panel.dtype == np.uint8 and panel.shape == (6 * tile + 2 * nav_video.TITLE_HEIGHT, 6 * tile, 3)
    for m in markers:
        assert pixel(panel, m.cell, tile) == tuple(int(v) for v in COLORS[m.color]), m
    assert pixel(panel, (2, 3), tile) == nav_video.AGENT
    assert pixel(panel, (5, 5), tile) != pixel(panel, (2, 2), tile)  # unknown differs from floor
    bare = nav_video.map_panel(_map_snapshot([]), extent, tile)
    assert colour_count(bare, [COLORS["red"], COLORS["blue"], COLORS["purple"]]) == 0

    nothing = nav_video.memory_panel(None, extent, tile)
    assert nothing.shape == panel.shape
    assert colour_count(nothing, MARKER_COLOURS) == 0
    assert colour_count(nothing, [nav_video.AGENT]) == 0


def test_graph_panel_draws_nodes_edges_and_the_current_node():
    tile, extent = 20, (6, 6)
    cov = np.zeros((6, 6), bool)
    cov[1:5, 1:3] = True
    snap = nav_video.GraphSnapshot(
        coverage=cov, centers=((1, 1), (4, 1), (4, 4)), edges=((0, 1),), current=1,
        objects=((2, nav_video.Marker((3, 4), "ball", "green")),), pose=None,
    )
    panel = nav_video.graph_panel(snap, extent, tile)
    assert pixel(panel, (1, 1), tile) == nav_video.NODE
    assert pixel(panel, (4, 1), tile) == nav_video.CURRENT_NODE
    assert pixel(panel, (4, 4), tile) == nav_video.NODE
    assert pixel(panel, (2, 1), tile) == nav_video.EDGE  # the edge 0-1 passes through (2, 1)
    assert pixel(panel, (2, 4), tile) != nav_video.EDGE  # nodes 0 and 2 are not joined
    assert pixel(panel, (3, 4), tile) == tuple(int(v) for v in COLORS["green"])


def test_header_shows_the_goal_image_as_a_thumbnail():
    goal = np.zeros((56, 56, 3), np.uint8)
    goal[:, :28] = (10, 200, 30)
    with_image = nav_video.header(["episode 1/1", "goal: this view of a ball (image)"], 400, goal)
    without = nav_video.header(["episode 1/1", "goal: this view of a ball (image)"], 400)
    assert with_image.shape == without.shape == (nav_video.HEADER_HEIGHT, 400, 3)
    diff = np.nonzero((with_image != without).any(axis=2))
    assert diff[1].min() >= 400 - 56 - 4  # only the right end changed
    assert colour_count(with_image, [(10, 200, 30)]) == 56 * 28


def test_ppo_video_on_goatgrid_draws_the_path_and_the_first_person_view():
    from rlmem.agents.policy import ActorCritic
    from rlmem.config import PolicyConfig

    kwargs = {"subgoal_budget": 4, "min_subgoals": 2, "max_subgoals": 2}
    env = make_env(NAV_ENV, kwargs)
    torch.manual_seed(0)
    policy = ActorCritic(env.observation_space, env.action_space,
                         PolicyConfig(memory="gru", memory_kwargs={"hidden_size": 8}, encoder=[16]))
    with torch.no_grad():  # mostly FORWARD (p ~ 0.65), so the sampled agent walks a path
        policy.actor[-1].bias[FORWARD] = 2.0
    frames, _ = video.record_frames(policy, NAV_ENV, kwargs, episodes=1, seed=2, deterministic=False)
    assert 3 <= len(frames) <= 9  # at most two subgoals of four steps, and the final frame
    path = [colour_count(f, nav_video.PATH_COLOURS) for f in frames]
    assert path[-1] > path[0] > 0  # the start ring, then the walked path
    # frame 0 starts with the first-person view of the start pose, as high as the map
    env = make_env(NAV_ENV, kwargs, render_mode="rgb_array")
    env.reset(seed=2)
    view = video.upscale(env.unwrapped.egocentric_rgb(), video.upscale(env.render()).shape[0])
    np.testing.assert_array_equal(frames[0][: view.shape[0], : view.shape[1]], view)


def test_write_video_streams_frames_and_falls_back_to_gif(tmp_path, monkeypatch):
    frames = [np.full((16, 24, 3), 40 * i, np.uint8) for i in range(5)]
    calls = []

    def make():
        calls.append(1)
        return iter(frames)

    path = video.write_video(make, tmp_path, "clip", 4)
    assert path == tmp_path / "clip.mp4" and len(calls) == 1
    with imageio.get_reader(path, format="FFMPEG") as reader:
        assert len([f for f in reader]) == 5

    def broken(tmp, frames, fps):
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(video, "_write_mp4", broken)
    gif = video.write_video(make, tmp_path / "g", "clip", 4)
    assert gif == tmp_path / "g" / "clip.gif" and len(calls) == 3  # the stream is made again for the GIF
    assert len(imageio.mimread(gif)) == 5
    with pytest.raises(ConfigError, match="fps"):
        video.write_video(frames, tmp_path, "clip", 0)


# --------------------------------------------------------------------------- rollouts


TILE = nav_video.map_tile((11, 11))  # what `rlmem record` draws GoatGridSmall at (one tile cache)
SHORT = {"min_subgoals": 2, "max_subgoals": 2}  # two subgoals: short episodes keep the tests quick


@pytest.fixture(scope="module")
def episodes():
    """``memory -> (steps, frames, play_episode result, env)`` for one episode on one house."""
    out = {}
    for memory in modular.AGENTS:
        env = make_env(NAV_ENV, {**SHORT, "tile_size": TILE}, render_mode="rgb_array")
        steps = list(modular.nav_steps(modular.make_agent(memory), env, seed=5))
        played = modular.play_episode(modular.make_agent(memory), make_env(NAV_ENV, SHORT), seed=5)
        out[memory] = (steps, [nav_video.nav_frame(s) for s in steps], played, env)
    return out


@pytest.mark.parametrize("memory", list(modular.AGENTS))
def test_recording_plays_the_evaluated_episode_and_the_path_grows(memory, episodes):
    steps, frames, played, _ = episodes[memory]
    assert len(steps) == played.length + 1  # the same episode as rlmem eval plays
    assert len({f.shape for f in frames}) == 1 and frames[0].shape[0] % 2 == 0 and frames[0].shape[1] % 2 == 0
    assert steps[-1].lines[-1].startswith("end: success" if played.success else "end: failure")
    boxes = boxes_of(steps[0])
    path_pixels = [colour_count(crop(f, boxes["map"]), nav_video.PATH_COLOURS) for f in frames]
    moved = [t for t, s in enumerate(steps) if len(set(s.path)) >= 3]
    assert moved, "the agent never moved"
    assert path_pixels[moved[0]] > path_pixels[0]
    assert path_pixels[-1] > path_pixels[0]
    assert all(len(s.path) == t + 1 for t, s in enumerate(steps))


def test_goat_modular_memory_panel_shows_the_instances_it_has_seen(episodes):
    steps, frames, _, env = episodes["semantic_map"]
    truth = {(o.pos, o.category, o.color) for o in env.unwrapped.oracle.instances}
    assert steps[0].memory is not None
    with_markers = [t for t, s in enumerate(steps) if s.memory.markers]
    assert with_markers and len(steps[-1].memory.markers) >= len(steps[0].memory.markers)
    t = with_markers[-1]
    boxes = boxes_of(steps[t])
    panel = crop(frames[t], boxes["memory"])
    for m in steps[t].memory.markers:
        assert (m.cell, m.category, m.color) in truth  # the map holds what the house has
        assert pixel(panel, m.cell, TILE) == tuple(int(v) for v in COLORS[m.color]), m
    # The memory is the agent's, not the house: early on it has not seen everything.
    assert len(steps[0].memory.markers) < len(truth)


def test_memoryless_panel_is_blank_and_smg_panel_draws_its_graph(episodes):
    steps, frames, _, _ = episodes["memoryless"]
    assert all(s.memory is None for s in steps)
    boxes = boxes_of(steps[0])
    blank = nav_video.empty_panel((11, 11), TILE)
    for f in frames:
        np.testing.assert_array_equal(crop(f, boxes["memory"]), blank)
    assert colour_count(blank, MARKER_COLOURS) == 0

    steps, frames, _, _ = episodes["spatial_graph"]
    assert all(isinstance(s.memory, nav_video.GraphSnapshot) and len(s.memory.centers) >= 1 for s in steps)
    boxes = boxes_of(steps[0])
    for t in (0, len(steps) - 1):
        panel = crop(frames[t], boxes["memory"])
        assert colour_count(panel, [nav_video.NODE, nav_video.CURRENT_NODE]) > 0
    last = steps[-1].memory
    assert len(last.centers) >= 2 and last.edges  # nodes are joined as the agent walks between them
    assert {m for _, m in last.objects}  # and hold the objects seen from them


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def nav_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("nav_runs")
    for memory, preset in PRESETS.items():
        rc = main(["train", "--env", NAV_ENV, "--agent", str(ROOT / "agents" / f"{preset}.toml"),
                   "--env-kwargs", "min_subgoals = 2, max_subgoals = 2",
                   "--runs-dir", str(runs), "--run-name", memory, "--quiet"])
        assert rc == 0
    return runs


@pytest.mark.parametrize("memory", list(PRESETS))
def test_record_a_modular_run_through_the_cli(memory, nav_runs, tmp_path, capsys):
    # `rlmem record` in a subprocess once (the installed entry point); the other two agents go
    # through cli.main in this process -- the same code, without another interpreter and torch
    # start-up and MiniGrid's tile warm-up (seconds each on a shared 2-core machine).
    if memory == "semantic_map":
        proc = run_cli("record", nav_runs / memory, "--out", tmp_path, "--episodes", "1")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
    else:
        assert main(["record", str(nav_runs / memory), "--out", str(tmp_path), "--episodes", "1"]) == 0
        out = capsys.readouterr().out
    path = tmp_path / f"{memory}.mp4"
    assert path.stat().st_size > 1000 and out.strip() == f"wrote {path}"
    cfg = Run.open(nav_runs / memory).config
    played = modular.play_episode(modular.make_agent(memory), make_env(NAV_ENV, SHORT), cfg.seed + EVAL_SEED_OFFSET)
    assert played.modalities and len(played.modalities) == 2
    with imageio.get_reader(path, format="FFMPEG") as reader:
        assert sum(1 for _ in reader) == played.length + 1


def test_record_a_corrupt_or_missing_checkpoint_is_one_line(nav_runs, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(nav_runs / "semantic_map", broken)
    for ckpt in (broken / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(ckpt.read_bytes()[:100])
    # cli.main is what the `rlmem` script runs: one line on stderr, exit 2 (test_cli.py runs the
    # same check for PPO in a subprocess)
    assert main(["record", str(broken), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is corrupt" in err[0], err
    assert not (tmp_path / "v").exists()  # nothing was written

    for ckpt in (broken / "checkpoints").glob("*.pt"):
        ckpt.unlink()
    assert main(["record", str(broken), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no checkpoint" in err[0], err

    sb3_like = tmp_path / "foreign"  # a modular run folder holding another algorithm's checkpoint
    shutil.copytree(nav_runs / "semantic_map", sb3_like)
    for ckpt in (sb3_like / "checkpoints").glob("*.pt"):
        torch.save({"algo": "sb3-ppo", "policy": {"w": torch.zeros(2)}, "step": 0}, ckpt)
    assert main(["record", str(sb3_like), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a modular-agent checkpoint" in err[0], err


# --------------------------------------------------------------------------- SB3 runs

TINY_SB3 = {
    "sb3-ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
    "sb3-recurrentppo": {"n_steps": 16, "batch_size": 64, "n_epochs": 1,
                         "policy_kwargs": {"lstm_hidden_size": 16, "net_arch": [16]}},
}


@pytest.fixture(scope="module")
def sb3_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("sb3_runs")
    for name, sb3 in TINY_SB3.items():
        data = tomllib.loads((ROOT / "agents" / f"{name}.toml").read_text())
        data["sb3"] = {**data["sb3"], **sb3}
        preset = runs / f"{name}.toml"
        preset.write_text(tomli_w.dumps(data))
        rc = main(["train", "--env", TMAZE, "--agent", str(preset), "--steps", "256", "--num-envs", "4",
                   "--runs-dir", str(runs), "--run-name", name, "--threads", "1", "--quiet", "--env-kwargs", TMAZE_KWARGS])
        assert rc == 0
    return runs


@pytest.mark.parametrize("name", list(TINY_SB3))
def test_record_an_sb3_run(name, sb3_runs, tmp_path, capsys):
    assert main(["record", str(sb3_runs / name), "--out", str(tmp_path), "--episodes", "2"]) == 0
    path = tmp_path / f"{name}.mp4"
    assert path.stat().st_size > 1000 and capsys.readouterr().out.strip() == f"wrote {path}"

    from rlmem.algos.sb3 import load_model, sb3_actor

    run = Run.open(sb3_runs / name)
    model, venv = load_model(run)
    venv.close()
    recurrent = name == "sb3-recurrentppo"
    frames, returns = video.actor_frames(sb3_actor(model, recurrent), TMAZE, run.config.env_kwargs, episodes=1, seed=3)
    with imageio.get_reader(path, format="FFMPEG") as reader:
        assert frames[0].shape == next(iter(reader)).shape
    env = make_env(TMAZE, run.config.env_kwargs, render_mode="rgb_array")
    env.reset(seed=3)
    picture = video.upscale(env.render())
    if recurrent:  # the env picture, then the LSTM panel beside it
        assert frames[0].shape[1] >= picture.shape[1] + video.panel_width(48)
    else:  # no memory: the picture under the header, nothing beside it
        assert frames[0].shape[1] <= max(picture.shape[1], video.panel_width(48)) + 1


def test_sb3_actor_shows_the_actor_lstm_state_threaded_and_reset(sb3_runs):
    from rlmem.algos.sb3 import load_model, sb3_actor

    model, venv = load_model(Run.open(sb3_runs / "sb3-recurrentppo"))
    venv.close()
    env = make_env(TMAZE, {"n_corridors": 2, "l_max": 4, "l_min": 2})
    obs, info = env.reset(seed=0)
    act = sb3_actor(model, recurrent=True)
    _, first = act(obs, info, True)
    _, second = act(obs, info, False)  # same observation, but the state carries the first step
    _, again = act(obs, info, True)  # an episode start resets the state
    assert first.shape == (16,) and first.dtype == np.float32
    assert not np.allclose(first, second)
    np.testing.assert_allclose(again, first, rtol=1e-6, atol=1e-6)
    # h is what the policy's own LSTM computes from a zero state
    with torch.no_grad():
        feats = model.policy.extract_features(torch.as_tensor(obs)[None], model.policy.pi_features_extractor)
        h, _ = model.policy.lstm_actor(feats[None])
    np.testing.assert_allclose(first, h[0, 0].numpy(), rtol=1e-5, atol=1e-6)

    ff_model, ff_venv = load_model(Run.open(sb3_runs / "sb3-ppo"))
    ff_venv.close()
    action, none = sb3_actor(ff_model, recurrent=False)(obs, info, True)
    assert none.shape == (0,) and isinstance(action, int)
