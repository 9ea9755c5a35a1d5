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


def test_usage_errors_suggest_the_closest_name_and_show_the_commands_own_usage() -> None:
    out = aigc_cli("generate", "text", "hi", "--seeed", "3")
    assert out.returncode == 2 and "--seeed: did you mean --seed?" in out.stderr
    assert out.stderr.startswith("usage: aigc generate ")  # the subcommand's usage, not the top level's
    out = aigc_cli("generate", "txet", "hi")
    assert out.returncode == 2 and "did you mean 'text'?" in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3
    out = aigc_cli("genrate", "text", "hi")
    assert out.returncode == 2 and "did you mean 'generate'?" in out.stderr


def test_the_output_is_checked_before_any_model_loads_and_errors_speak_cli(tmp_path: Path) -> None:
    # the model folder does not exist: an output check that ran after loading would report the folder instead
    out = aigc_cli("generate", "audio", "say one", "--model", str(tmp_path / "nothing"), "-o", str(tmp_path / "a.mp3"))
    assert out.returncode == 1 and "--output" in out.stderr and ".wav" in out.stderr, out.stderr
    out = aigc_cli("generate", "text", "hi", "--temperature", "0", "-v")  # -v after the subcommand is fine
    assert out.returncode == 1 and "--temperature 0" in out.stderr and "--greedy" in out.stderr, out.stderr
    assert "do_sample" not in out.stderr and "temperature=" not in out.stderr
    out = aigc_cli("generate", "image", "a boot", "--threads", "0", "-o", str(tmp_path / "b.png"))
    assert out.returncode == 1 and "--threads=0" in out.stderr and not (tmp_path / "b.png").exists()


def test_info_names_every_library_in_words() -> None:
    out = aigc_cli("info")
    assert out.returncode == 0, out.stderr
    for needle in ("diffusers", "torchaudio", "transformers", "device=auto", "model cache"):
        assert needle in out.stdout


def test_generate_takes_backend_load_options(tmp_path: Path) -> None:
    """``--option KEY=JSON`` reaches the backend's load options (here the CycleGAN's ``temporal``); a key with a
    flag of its own, or a misspelt one, is refused naming the fix."""
    import numpy as np
    from PIL import Image

    import aigc

    grid = Image.open(Path(__file__).parent / "data" / "sandals_boots.png").convert("L")
    frames = [grid.crop((32 * c, 0, 32 * c + 32, 32)) for c in range(4)]  # four different sandals
    clip = tmp_path / "sandals.gif"
    frames[0].save(clip, save_all=True, append_images=frames[1:], duration=125, loop=0)
    out = tmp_path / "boots.gif"
    done = aigc_cli("generate", "video", "an ankle boot", "--init-video", str(clip), "--backend", "cyclegan",
                    "--option", "temporal=false", "--option", "max_batch_size=2", "-o", str(out))
    assert done.returncode == 0, done.stderr
    gen = aigc.load("image", "default", backend="cyclegan")
    per_image = [np.asarray(gen.generate("an ankle boot", init_image=f).images[0].convert("L"), dtype=int)
                 for f in frames]
    with Image.open(out) as gif:
        got = []
        for i in range(gif.n_frames):
            gif.seek(i)
            got.append(np.asarray(gif.convert("L"), dtype=int))
    assert len(got) == 4 and all(np.abs(g - p).mean() < 2.0 for g, p in zip(got, per_image, strict=True))
    record = aigc.Record.from_file(out)
    assert record.options.get("temporal") is False
    for option, words in (("device=cpu", "--device"), ("temporall=false", "temporal")):
        bad = aigc_cli("generate", "video", "an ankle boot", "--init-video", str(clip), "--backend", "cyclegan",
                       "--option", option, "-o", str(tmp_path / "x.gif"))
        assert bad.returncode != 0 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
