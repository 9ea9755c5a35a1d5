"""The ``mel`` audio backend: aigc's own small speech model (architecture, vocoder, backend, shipped default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import aigc
from aigc._backends.audio_mel import MelSpeechGenerator, parse_word
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound
from aigc.models.speech import GriffinLimVocoder, MelSpeechConfig, MelSpeechDecoder, log_mel_spectrogram
from aigc.testing import check_generator
from aigc.testing.audio_mel import TINY_VOICES, TINY_WORDS, tiny_mel_speech

DEFAULT_ASSET = Path(aigc.__file__).parent / "assets" / "audio_default" / "config.json"
needs_default = pytest.mark.skipif(not DEFAULT_ASSET.is_file(), reason="the shipped audio model is not installed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mel_speech(tmp_path_factory.mktemp("mel") / "m")


@pytest.fixture(scope="module")
def tiny(model_dir: Path) -> MelSpeechGenerator:
    gen = aigc.load("audio", str(model_dir), backend="mel")
    assert isinstance(gen, MelSpeechGenerator)
    return gen


# -- architecture and vocoder --------------------------------------------------------------------------------
def test_config_checks_and_round_trip() -> None:
    cfg = MelSpeechConfig(num_words=3, num_voices=2, frames=32, base_frames=4)
    assert MelSpeechConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"frames": 48}, {"frames": 8, "base_frames": 8}, {"channels": 0}, {"hop_length": 1024},
                {"f_max": 9000.0}, {"mel_std": 0.0}, {"num_words": True}):
        with pytest.raises(InvalidRequest):
            MelSpeechConfig(**bad)


def test_decoder_shapes_and_conditioning() -> None:
    cfg = MelSpeechConfig(num_words=3, num_voices=2, n_mels=20, frames=16, base_frames=4, channels=16,
                          embed_dim=8, hidden_dim=16)
    net = MelSpeechDecoder(cfg)
    with torch.no_grad():
        net.pos.normal_()
        out = net(torch.tensor([0, 1, 0, 0]), torch.tensor([0, 0, 1, 0]), torch.tensor([[0.0, 0.0]] * 3 + [[1, -1]]))
    assert out.shape == (4, 20, 16)
    # each condition changes the output: word (0 vs 1), voice (0 vs 2), prosody (0 vs 3)
    for other in (1, 2, 3):
        assert not torch.allclose(out[0], out[other])


def test_vocoder_inverts_the_front_end() -> None:
    """A chirp's log-mel, vocoded, has about the same log-mel again (Griffin-Lim recovers a consistent phase)."""
    cfg = MelSpeechConfig(griffin_lim_iters=32)
    t = torch.arange(cfg.samples) / cfg.sample_rate
    chirp = 0.5 * torch.sin(2 * torch.pi * (200 + 600 * t) * t)[None]  # (1, samples)
    target = log_mel_spectrogram(chirp, cfg)  # (1, 80, 64)
    vocoder = GriffinLimVocoder(cfg)
    wave = vocoder(target)
    assert wave.shape == (1, cfg.samples)
    assert torch.equal(wave, vocoder(target))  # deterministic: zero-phase start, no RNG
    loud = target > target.max() - 6  # the bins within ~26 dB of the peak
    err = (log_mel_spectrogram(wave, cfg) - target)[loud].abs().mean()
    assert err < 0.5, err
    assert (log_mel_spectrogram(torch.zeros_like(chirp), cfg) - target)[loud].abs().mean() > 5  # the scale


# -- the backend on a tiny random model ----------------------------------------------------------------------
def test_contract(tiny: MelSpeechGenerator) -> None:
    done = check_generator(tiny, prompt="say two", voice="high")
    assert "batch == single" in done and "global RNG untouched" in done


def test_detect_and_load_by_directory(model_dir: Path) -> None:
    gen = aigc.load("audio", str(model_dir))
    assert gen.info.backend == "mel" and gen.info.parameters > 0
    assert gen.voices == TINY_VOICES and gen.words == TINY_WORDS  # type: ignore[attr-defined]


def test_result_shape_and_level(tiny: MelSpeechGenerator) -> None:
    res = tiny.generate("say seven", seed=0, num_outputs=3)
    assert res.sample_rate == 16000 and res.seeds == [0, 1, 2]
    samples = tiny.speech.clip_samples
    for w in res.waveforms:
        assert w.dtype == np.float32 and w.shape == (1, samples)
        assert np.abs(w).max() == pytest.approx(0.9, abs=1e-4)  # peak-normalised
    assert not np.array_equal(res.waveforms[0], res.waveforms[1])  # the seed draws the prosody


def test_batch_equals_single_bit_for_bit(tiny: MelSpeechGenerator) -> None:
    batch = tiny.generate(["say one", "say nine"], seed=10, num_outputs=2)
    assert len(batch) == 4
    for i, (prompt, seed) in enumerate([("say one", 10), ("say one", 11), ("say nine", 12), ("say nine", 13)]):
        assert np.array_equal(batch.waveforms[i], tiny.generate(prompt, seed=seed).waveform)


@pytest.mark.parametrize("prompt", ["say seven", "seven", "7", "Say 7!", "  SEVEN. ", "please say the number 7"])
def test_prompt_forms_name_the_same_word(tiny: MelSpeechGenerator, prompt: str) -> None:
    assert np.array_equal(tiny.generate(prompt, seed=3).waveform, tiny.generate("say seven", seed=3).waveform)


def test_parse_word() -> None:
    assert parse_word("Say 0?", TINY_WORDS) == 0 and parse_word("eight eight", TINY_WORDS) == 8
    assert isinstance(parse_word("say 17", TINY_WORDS), str)
    assert isinstance(parse_word("", TINY_WORDS), str)
    assert "'and'" in str(parse_word("say one and two", TINY_WORDS))  # not a filler word
    assert "2 words" in str(parse_word("one two", TINY_WORDS))


def test_words_differ(tiny: MelSpeechGenerator) -> None:
    a, b = tiny.generate("say one", seed=0).waveform, tiny.generate("say two", seed=0).waveform
    assert not np.array_equal(a, b)


def test_prompt_errors_name_the_field_and_the_words(tiny: MelSpeechGenerator) -> None:
    with pytest.raises(InvalidRequest, match="prompt") as e:
        tiny.generate("say hello", seed=0)
    assert "seven" in str(e.value) and "hello" in str(e.value)
    with pytest.raises(InvalidRequest, match=r"prompt\[1\]"):
        tiny.generate(["say one", "say twelve"], seed=0)
    with pytest.raises(InvalidRequest, match="prompt"):
        tiny.generate("one two", seed=0)


def test_voices_by_name_or_index(tiny: MelSpeechGenerator) -> None:
    by_name = tiny.generate("say four", seed=5, voice="high").waveform
    assert np.array_equal(by_name, tiny.generate("say four", seed=5, voice=1).waveform)
    assert np.array_equal(by_name, tiny.generate("say four", seed=5, voice=" HIGH ").waveform)
    assert np.array_equal(tiny.generate("say four", seed=5).waveform,
                          tiny.generate("say four", seed=5, voice="low").waveform)  # the model's default voice
    assert not np.array_equal(by_name, tiny.generate("say four", seed=5, voice="fast").waveform)


@pytest.mark.parametrize("voice", ["robot", 3, -1, True, 1.5])
def test_bad_voice_lists_the_voices(tiny: MelSpeechGenerator, voice: object) -> None:
    with pytest.raises(InvalidRequest, match="voice") as e:
        tiny.generate("say four", seed=0, voice=voice)
    assert "low" in str(e.value) and "fast" in str(e.value)


def test_duration_pads_with_silence_or_refuses(tiny: MelSpeechGenerator) -> None:
    clip = tiny.generate("say five", seed=2).waveform
    padded = tiny.generate("say five", seed=2, duration_s=0.25).waveform
    assert padded.shape == (1, 4000)
    assert np.array_equal(padded[:, : clip.shape[1]], clip) and not padded[:, clip.shape[1]:].any()
    with pytest.raises(InvalidRequest, match="duration_s") as e:
        tiny.generate("say five", seed=2, duration_s=0.01)
    assert f"{tiny.clip_seconds:.3f}" in str(e.value)


def test_unsupported_parameters_are_refused(tiny: MelSpeechGenerator) -> None:
    for bad in ({"steps": 10}, {"guidance": 2.0}, {"negative_prompt": "noise"}):
        with pytest.raises(InvalidRequest):
            tiny.generate("say one", seed=0, **bad)


def test_global_rng_untouched(tiny: MelSpeechGenerator) -> None:
    state = torch.random.get_rng_state()
    tiny.generate(["one", "two"], seed=None, num_outputs=2)
    assert torch.equal(state, torch.random.get_rng_state())


def test_cancel_between_batches(model_dir: Path) -> None:
    gen = aigc.load("audio", str(model_dir), backend="mel", max_batch_size=1)
    seen: list[int] = []

    def stop_at_two(event: aigc.Event) -> None:
        if event.kind == "step":
            seen.append(event.step)
            if event.step == 2:
                event.cancel()

    with pytest.raises(GenerationCancelled):
        gen.generate("say three", seed=0, num_outputs=4, on_event=stop_at_two)
    assert seen == [1, 2]
    with pytest.raises(InvalidRequest, match="max_batch_size"):
        aigc.load("audio", str(model_dir), backend="mel", max_batch_size=0)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_round_trip(tiny: MelSpeechGenerator, tmp_path: Path, suffix: str) -> None:
    res = tiny.generate("say six", seed=4)
    (path,) = [p for p in res.save(tmp_path / f"six{suffix}") if p.suffix == suffix]
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 16000 and data.shape == (res.waveform.shape[1], 1)
    assert np.abs(data[:, 0] - res.waveform[0]).max() < 1e-3  # 16-bit PCM at least


def test_float16_weights_and_bad_folders(tmp_path: Path) -> None:
    half = tiny_mel_speech(tmp_path / "half", dtype="float16")
    full = tiny_mel_speech(tmp_path / "full")
    a = aigc.load("audio", str(half), backend="mel").generate("one", seed=0).waveform
    b = aigc.load("audio", str(full), backend="mel").generate("one", seed=0).waveform
    assert a.shape == b.shape and np.corrcoef(a[0], b[0])[0, 1] > 0.99
    gone = tiny_mel_speech(tmp_path / "gone")  # (a fresh folder: aigc.load caches loaded models)
    (gone / "model.safetensors").unlink()
    with pytest.raises(ModelNotFound, match=r"model\.safetensors"):
        aigc.load("audio", str(gone), backend="mel")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "aigc.gan"}')
    with pytest.raises(ModelNotFound, match="speech model"):
        aigc.load("audio", str(tmp_path / "other"), backend="mel")
    with pytest.raises(ModelNotFound, match="built-in"):
        aigc.load("audio", "no-such-model", backend="mel")


# -- the shipped default -------------------------------------------------------------------------------------
@needs_default
def test_shipped_default_says_words_in_several_voices() -> None:
    gen = aigc.load("audio", "default", backend="mel")
    assert gen.words[:10] == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]  # type: ignore[attr-defined]
    assert {"yes", "no", "stop", "go"} <= set(gen.words)  # type: ignore[attr-defined]
    assert len(gen.voices) >= 6  # type: ignore[attr-defined]
    res = gen.generate("say seven", seed=0)
    wave = res.waveform
    assert res.sample_rate == 16000 and wave.shape[0] == 1 and 0.9 < wave.shape[1] / 16000 < 1.2
    rms = float(np.sqrt((wave ** 2).mean()))
    assert rms > 0.02  # not silent
    # a spoken word: loud in the middle, quiet at the end (the clip leaves room after the word)
    assert np.abs(wave[0, -1600:]).max() < 0.5 * np.abs(wave).max()
    assert np.array_equal(wave, gen.generate("7", seed=0).waveform)
    voices = gen.voices  # type: ignore[attr-defined]
    other = gen.generate("say seven", seed=0, voice=voices[1]).waveform
    assert not np.allclose(wave, other, atol=0.05)
    assert gen.info.parameters < 2_000_000
    size = (DEFAULT_ASSET.parent / "model.safetensors").stat().st_size
    assert size < 3.5e6


@needs_default
def test_shipped_default_passes_the_contract() -> None:
    gen = aigc.load("audio", "default", backend="mel")
    check_generator(gen, prompt="say three", voice=2)
