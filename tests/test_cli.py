"""The command line, run as users run it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def aigc_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aigc", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_generate_text_prints_samples_and_replays(gpt2_dir: Path, tmp_path: Path) -> None:
    out = aigc_cli("generate", "text", "Hello", "--model", str(gpt2_dir), "--seed", "4", "-n", "2",
                   "--max-new-tokens", "6", "--top-k", "10")
    assert out.returncode == 0, out.stderr
    assert "--- sample 1 (seed 5) ---" in out.stdout
    saved = aigc_cli("generate", "text", "Hello", "--model", str(gpt2_dir), "--seed", "4", "--max-new-tokens", "6",
                     "--top-k", "10", "-o", str(tmp_path / "s.json"))
    assert saved.returncode == 0, saved.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["seed"] == 4
    text = doc["text"].replace("\r\n", "\n").replace("\r", "\n")  # stdout is read with universal newlines
    assert text in out.stdout
    replayed = aigc_cli("replay", str(tmp_path / "s.json"))
    assert replayed.returncode == 0 and replayed.stdout.rstrip("\n") == text


@pytest.mark.slow
def test_stream_flag(gpt2_dir: Path) -> None:
    full = aigc_cli("generate", "text", "Hi", "--model", str(gpt2_dir), "--seed", "1", "--max-new-tokens", "8")
    streamed = aigc_cli("generate", "text", "Hi", "--model", str(gpt2_dir), "--seed", "1", "--max-new-tokens",
                        "8", "--stream")
    assert streamed.returncode == 0
    assert streamed.stdout == full.stdout


@pytest.mark.slow
def test_errors_are_one_line_without_traceback(gpt2_dir: Path, tmp_path: Path) -> None:
    cases = [
        (["generate", "text", "hi", "--model", str(tmp_path / "missing" / "dir")], "no such directory"),
        (["generate", "text", "hi", "--model", str(gpt2_dir), "--top-p", "2"], "--top-p 2.0"),
        (["generate", "text", "hi", "--model", str(gpt2_dir), "--param", "bogus=1"], "unknown parameter"),
        (["generate", "image", "a cat", "--model", str(gpt2_dir)], "-o"),
        (["generate", "text", "hi", "--model", str(gpt2_dir), "--device", "gpu"], "device='gpu'"),
        (["replay", str(tmp_path / "nothing.png")], "no such file"),
    ]
    for args, needle in cases:
        out = aigc_cli(*args)
        assert out.returncode == 1, (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("aigc: error:") and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_backends_and_info() -> None:
    out = aigc_cli("backends", "--json")
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert any((r["modality"], r["name"], r["source"]) == ("text", "transformers", "aigc") for r in rows)
    info = aigc_cli("info", "--json")
    data = json.loads(info.stdout)
    assert data["auto_device"] in ("cpu", "cuda", "mps") and "torch" in data["versions"]
    assert aigc_cli("--version").stdout.startswith("aigc ")
    assert aigc_cli("generate").returncode == 2  # usage error


@pytest.mark.slow
def test_generate_audio_resamples_normalises_and_replays(tmp_path: Path) -> None:
    out = aigc_cli("generate", "audio", "say three", "--seed", "2", "--voice", "1", "--sample-rate", "22050",
                   "--loudness", "-23", "-o", str(tmp_path / "three.wav"))
    assert out.returncode == 0, out.stderr
    import aigc
    from aigc._media.audio import load_audio, measure_loudness

    wav, rate = load_audio(tmp_path / "three.wav")
    assert rate == 22050 and abs(measure_loudness(wav, rate) + 23.0) < 0.05
    record = aigc.Record.from_file(tmp_path / "three.wav")
    assert record.request["voice"] == 1 and [s["op"] for s in record.postprocess] == ["resample", "normalize"]
    again = aigc_cli("replay", str(tmp_path / "three.wav"), "-o", str(tmp_path / "again.wav"))
    assert again.returncode == 0, again.stderr
    assert (load_audio(tmp_path / "again.wav")[0] == wav).all()
    for args, needle in ((["--sample-rate", "0"], "--sample-rate=0"), (["--loudness", "3"], "--loudness=3.0")):
        bad = aigc_cli("generate", "audio", "say three", *args, "-o", str(tmp_path / "x.wav"))
        assert bad.returncode == 1 and needle in bad.stderr, bad.stderr
    wrong = aigc_cli("generate", "image", "a sneaker", "--loudness", "-23", "-o", str(tmp_path / "x.png"))
    assert wrong.returncode == 1 and "post-processes audio" in wrong.stderr
