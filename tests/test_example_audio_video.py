"""examples/audio_video.py runs as users run it, on the embedded audio and video models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_audio_video_example_runs(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "audio_video.py"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("at 44100 Hz, -23.0 LUFS") == 4  # three voices and the replay
    moves = dict(re.findall(r"moving (\w+): centroid moved (dx=\S+ px, dy=\S+) px", done.stdout))
    dx, dy = ({d: float(re.findall(rf"{axis}=(\S+) px", moves[d] + " px")[0]) for d in moves} for axis in ("dx", "dy"))
    assert dx["left"] < -3 and dx["right"] > 3 and dy["up"] < -3 and dy["down"] > 3
    assert sorted(p.name for p in (tmp_path / "out" / "audio_video").iterdir()) == sorted(
        [f"seven-{v}.flac" for v in ("us-male", "uk-female", "deep-male")]
        + [f"three-{d}.gif" for d in ("left", "right", "up", "down")])
