"""The README's demo path, tiny: two agents train, evaluate, and a video is written."""

from pathlib import Path

from rlmem.demo import run_demo

AGENTS = Path(__file__).resolve().parents[1] / "agents"


def test_demo_runs_end_to_end(tmp_path):
    lines = []
    rows = run_demo(steps=2048, runs_dir=tmp_path / "runs", out=tmp_path / "videos", episodes=8,
                    agents_dir=AGENTS, echo=lines.append)
    assert [r["agent"] for r in rows] == ["gru", "none"]
    assert all(r["result"].episodes == 8 and r["steps"] == 2048 for r in rows)
    assert any(line.startswith("gru ") for line in lines) and any(line.startswith("none ") for line in lines)
    videos = list((tmp_path / "videos").iterdir())
    assert [v.stem for v in videos] == ["demo_gru"] and videos[0].stat().st_size > 1000
