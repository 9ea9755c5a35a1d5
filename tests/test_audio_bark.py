"""Bark (``BarkModel``) in the transformers audio backend, on a tiny random Bark built in code and loaded for real:
detection, the contract suite, per-sample seeds, voice presets (BarkProcessor layout and .npz files, no pickle),
fields Bark cannot honour, prompt limits, generation-config checks and a WAV round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aigc
from aigc._media.audio import load_audio
from aigc._media.records import read_record
from aigc._results import Record
from aigc.errors import AigcError, GenerationCancelled, InvalidRequest, ModelNotFound
from aigc.testing import check_generator
from aigc.testing.audio_bark import VOICES, tiny_bark

AudioGen = aigc.Generator[aigc.AudioRequest, aigc.AudioResult]
SAMPLES = 9216  # 12 semantic tokens -> floor(12 * 75 / 49.9) = 18 coarse frames x 512 samples


@pytest.fixture(scope="module")
def bark_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bark(tmp_path_factory.mktemp("bark") / "bark")


def load(path: Path, **options: Any) -> AudioGen:
    return aigc.load("audio", path, device="cpu", **options)


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    n = min(a.shape[1], b.shape[1])
    return a.shape != b.shape or float(np.abs(a[:, :n] - b[:, :n]).max()) > 1e-3 * float(np.abs(a).max())


@pytest.mark.slow
def test_detected_loaded_and_contract(bark_dir: Path) -> None:
    from aigc._backends.audio_transformers import TransformersAudioGenerator

    assert TransformersAudioGenerator.detect(bark_dir)
    gen = load(bark_dir)
    assert isinstance(gen, TransformersAudioGenerator) and gen.info.backend == "transformers"
    assert (gen.info.weights or "").startswith("sha256:") and gen.info.parameters > 0
    assert type(aigc.load("audio", bark_dir, backend="transformers", device="cpu", cache=False)) is type(gen)
    done = check_generator(gen, prompt="hello world", atol=0.0)
    assert "batch == single" in done and "global RNG untouched" in done
    res = gen.generate("hello world", seed=0)
    assert res.sample_rate == 16000 and res.waveform.shape == (1, SAMPLES) and res.waveform.dtype == np.float32
    assert float(np.abs(res.waveform).max()) > 0


def test_seeds_batch_and_global_rng(bark_dir: Path) -> None:
    gen = load(bark_dir)
    torch.manual_seed(99)
    before = torch.random.get_rng_state()
    batch = gen.generate(["hello world", "say seven"], seed=7, num_outputs=2)
    assert torch.equal(before, torch.random.get_rng_state())
    assert batch.seeds == [7, 8, 9, 10]
    for i, (prompt, seed) in enumerate([("hello world", 7), ("hello world", 8), ("say seven", 9), ("say seven", 10)]):
        assert np.array_equal(batch.waveforms[i], gen.generate(prompt, seed=seed).waveform)
    assert differ(batch.waveforms[0], batch.waveforms[1])  # seeds differ
    assert differ(batch.waveforms[1], gen.generate("say seven", seed=8).waveform)  # prompts differ


def test_voice_presets(bark_dir: Path, tmp_path: Path) -> None:
    gen = load(bark_dir)
    plain = gen.generate("hello world", seed=1).waveform
    a, b = (gen.generate("hello world", seed=1, voice=v).waveform for v in VOICES)
    assert differ(a, b) and differ(a, plain)
    assert np.array_equal(a, gen.generate("hello world", seed=1, voice=VOICES[0]).waveform)
    # the same preset as one .npz file (what BarkProcessor takes as a path)
    arrays = {k: np.load(bark_dir / "speaker_embeddings" / f"{VOICES[0]}_{k}.npy")
              for k in ("semantic_prompt", "coarse_prompt", "fine_prompt")}
    np.savez(tmp_path / "mine.npz", **arrays)
    assert np.array_equal(gen.generate("hello world", seed=1, voice=str(tmp_path / "mine.npz")).waveform, a)
    # bad presets: unknown name, a number, wrong shape, out-of-range codes, a pickled (object) array
    np.savez(tmp_path / "shape.npz", **{**arrays, "coarse_prompt": arrays["coarse_prompt"][:1]})
    np.savez(tmp_path / "range.npz", **{**arrays, "fine_prompt": arrays["fine_prompt"] + 100})
    obj = np.empty(1, dtype=object)
    obj[0] = {"x": 1}
    np.savez(tmp_path / "pickled.npz", **{**arrays, "semantic_prompt": obj})
    np.savez(tmp_path / "missing.npz", semantic_prompt=arrays["semantic_prompt"])
    files = {"shape": "coarse_prompt", "range": "fine_prompt", "pickled": "cannot read", "missing": "coarse_prompt"}
    cases = [("nobody", "en_speaker_0, en_speaker_1"), (3, "not a number")]
    for bad, match in cases + [(str(tmp_path / f"{name}.npz"), m) for name, m in files.items()]:
        with pytest.raises(InvalidRequest, match=match) as e:
            gen.generate("hello world", seed=1, voice=bad)
        assert e.value.field == "voice"


def test_preset_paths_stay_inside_the_model(bark_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bark"
    shutil.copytree(bark_dir, copy)
    index = json.loads((copy / "speaker_embeddings_path.json").read_text())
    index["evil"] = {**index[VOICES[0]], "fine_prompt": "../outside.npy"}
    np.save(tmp_path / "outside.npy", np.zeros((4, 8), dtype=np.int64))
    (copy / "speaker_embeddings_path.json").write_text(json.dumps(index))
    with pytest.raises(InvalidRequest, match="fine_prompt"):
        load(copy).generate("hello", seed=0, voice="evil")


@pytest.mark.parametrize(("field", "value"), [("duration_s", 1.0), ("steps", 4), ("guidance", 2.0),
                                              ("negative_prompt", "noise")])
def test_rejects_fields_it_cannot_honour(bark_dir: Path, field: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as e:
        load(bark_dir).generate("hello", seed=1, **{field: value})
    assert e.value.field == field


def test_prompt_limits(bark_dir: Path) -> None:
    gen = load(bark_dir)
    for blank in ("   ", "你好"):
        with pytest.raises(InvalidRequest, match=r"prompt\[1\]"):
            gen.generate(["hello", blank], seed=1)
    with pytest.raises(InvalidRequest, match="at most 32") as e:  # refused, never silently cut
        gen.generate(["hi", "a long sentence (in characters) that is far too long"], seed=1)
    assert e.value.field == "prompt[1]"
    assert gen.generate("abcdefghijklmnop" * 2, seed=1).waveform.shape == (1, SAMPLES)  # exactly 32 tokens


def test_generation_config_must_hold_bark_settings(bark_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bark"
    shutil.copytree(bark_dir, copy)
    (copy / "generation_config.json").unlink()
    with pytest.raises(ModelNotFound, match="semantic_config"):
        load(copy)


@pytest.mark.slow
def test_lengths_vary_and_an_empty_utterance_is_an_error(bark_dir: Path) -> None:
    gen = load(bark_dir, cache=False)  # its weights are changed below
    head = gen.model.semantic.lm_head.weight  # type: ignore[attr-defined]
    with torch.no_grad():
        head[16, 0] = 0.0  # end-of-speech no longer pinned down: utterances end at random points
    res = gen.generate("hello", seed=0, num_outputs=12)
    assert len({w.shape for w in res.waveforms}) > 1
    for i in (0, 5, 11):
        assert np.array_equal(res.waveforms[i], gen.generate("hello", seed=i).waveform)
    with torch.no_grad():
        head[16, 0] = 50.0  # speech ends before it starts: nothing to decode
    with pytest.raises(AigcError, match="too little audio"):
        gen.generate("hello", seed=0)


def test_events_and_cancel(bark_dir: Path) -> None:
    gen = load(bark_dir)
    seen: list[Any] = []

    def stop(event: Any) -> None:
        seen.append(event)
        if event.kind == "step":
            event.cancel()

    with pytest.raises(GenerationCancelled):
        gen.generate("hello", seed=0, num_outputs=3, on_event=stop)
    assert [e.kind for e in seen] == ["start", "step"]
    assert np.array_equal(gen.generate("hello", seed=0).waveform, gen.generate("hello", seed=0).waveform)


def test_wav_round_trip_with_provenance(bark_dir: Path, tmp_path: Path) -> None:
    gen = load(bark_dir)
    res = gen.generate("hello world", seed=11, num_outputs=2, voice=VOICES[1])
    audio = [p for p in res.save(tmp_path / "speech.wav") if p.suffix == ".wav"]
    assert len(audio) == 2
    for i, path in enumerate(audio):
        wave, rate = load_audio(path)
        assert rate == 16000 and np.array_equal(wave, res.waveforms[i])
        record = Record.from_json(read_record(path))
        assert (record.backend, record.seeds, record.sample_index) == ("transformers", [11, 12], i)
        assert record.request["voice"] == VOICES[1]
        assert np.array_equal(gen.generate(record.to_request()).waveform, res.waveforms[i])
