"""The transformers and diffusers audio backends on tiny random models built in code and loaded for real:
VITS (multi-speaker), SpeechT5 + HiFi-GAN, MusicGen, FastSpeech2 (generic path), AudioLDM, AudioLDM 2 and
Stable Audio."""

from __future__ import annotations

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
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound
from aigc.testing import check_generator
from aigc.testing.audio_models import (
    tiny_audioldm,
    tiny_audioldm2,
    tiny_fastspeech2,
    tiny_musicgen,
    tiny_speecht5,
    tiny_stable_audio,
    tiny_vits,
)

AudioGen = aigc.Generator[aigc.AudioRequest, aigc.AudioResult]
TOL = 1e-5  # batch == single tolerance, in waveform units


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio_models")


@pytest.fixture(scope="module")
def vits_dir(audio_dir: Path) -> Path:
    return tiny_vits(audio_dir / "vits", speakers=2)


@pytest.fixture(scope="module")
def speecht5_dir(audio_dir: Path) -> Path:
    return tiny_speecht5(audio_dir / "speecht5")


@pytest.fixture(scope="module")
def musicgen_dir(audio_dir: Path) -> Path:
    return tiny_musicgen(audio_dir / "musicgen")


@pytest.fixture(scope="module")
def audioldm_dir(audio_dir: Path) -> Path:
    return tiny_audioldm(audio_dir / "audioldm")


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two waveforms differ clearly (tiny random models make very quiet audio, so relative)."""
    n = min(a.shape[1], b.shape[1])
    return a.shape != b.shape or float(np.abs(a[:, :n] - b[:, :n]).max()) > 1e-3 * float(np.abs(a).max())


@pytest.fixture(scope="module")
def audioldm2_dir(audio_dir: Path) -> Path:
    return tiny_audioldm2(audio_dir / "audioldm2")


@pytest.fixture(scope="module")
def stable_audio_dir(audio_dir: Path) -> Path:
    return tiny_stable_audio(audio_dir / "stable_audio")


@pytest.fixture(scope="module")
def fastspeech2_dir(audio_dir: Path) -> Path:
    return tiny_fastspeech2(audio_dir / "fastspeech2")


def load(path: Path, **options: Any) -> AudioGen:
    return aigc.load("audio", path, device="cpu", **options)


# -- every family: detection, explicit backend, the contract suite -------------------------------------------

FAMILIES = {
    # fixture, backend, load options, request parameters that keep runs short
    "vits": ("vits_dir", "transformers", {}, {}),
    "speecht5": ("speecht5_dir", "transformers", {"maxlenratio": 2.0}, {"voice": "a"}),
    "musicgen": ("musicgen_dir", "transformers", {}, {"duration_s": 0.1}),
    "audioldm": ("audioldm_dir", "diffusers", {}, {"steps": 2, "duration_s": 0.03}),
    "audioldm2": ("audioldm2_dir", "diffusers", {}, {"steps": 2, "duration_s": 0.03}),
    "stable_audio": ("stable_audio_dir", "diffusers", {}, {"steps": 2, "duration_s": 0.05}),
    "generic": ("fastspeech2_dir", "transformers", {"sample_rate": 16000}, {}),  # FastSpeech2 + HiFi-GAN
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_detected_and_contract(family: str, request: pytest.FixtureRequest) -> None:
    fixture, backend, options, params = FAMILIES[family]
    path = request.getfixturevalue(fixture)
    gen = load(path, **options)
    assert gen.info.backend == backend and gen.info.modality == "audio"
    assert (gen.info.weights or "").startswith("sha256:") and gen.info.parameters > 0
    explicit = aigc.load("audio", path, backend=backend, device="cpu", cache=False, **options)
    assert type(explicit) is type(gen)
    done = check_generator(gen, prompt="hello world", atol=TOL, **params)
    assert "batch == single" in done and "global RNG untouched" in done
    res = gen.generate(["hello world", "say seven"], seed=3, **params)
    assert all(w.dtype == np.float32 and w.ndim == 2 and w.shape[1] > 0 for w in res.waveforms)
    assert differ(res.waveforms[0], res.waveforms[1])  # prompts (and seeds) differ


def test_other_models_are_not_detected(vits_dir: Path, audioldm_dir: Path, tmp_path: Path) -> None:
    from aigc._backends.audio_diffusers import DiffusersAudioGenerator
    from aigc._backends.audio_transformers import TransformersAudioGenerator
    from aigc.testing import tiny_gpt2

    gpt2 = tiny_gpt2(tmp_path / "gpt2")
    assert TransformersAudioGenerator.detect(vits_dir) and not TransformersAudioGenerator.detect(gpt2)
    assert not TransformersAudioGenerator.detect(audioldm_dir)
    assert DiffusersAudioGenerator.detect(audioldm_dir) and not DiffusersAudioGenerator.detect(vits_dir)
    with pytest.raises(ModelNotFound, match="not a text-to-speech"):
        aigc.load("audio", gpt2, backend="transformers", device="cpu")


def test_generic_path_needs_a_sample_rate(fastspeech2_dir: Path, vits_dir: Path) -> None:
    with pytest.raises(ModelNotFound, match="sample_rate="):
        load(fastspeech2_dir)
    assert load(fastspeech2_dir, sample_rate=22050).generate("hi", seed=0).sample_rate == 22050
    with pytest.raises(InvalidRequest, match="sample_rate"):
        load(vits_dir, sample_rate=8000)  # VITS names its own
    with pytest.raises(InvalidRequest, match="sample_rate"):
        load(fastspeech2_dir, sample_rate=0)


# -- VITS ------------------------------------------------------------------------------------------------------


def test_vits_speakers_and_seeds(vits_dir: Path) -> None:
    gen = load(vits_dir)
    a, b = (gen.generate("hello world", seed=5, voice=v).waveform for v in (0, 1))
    assert differ(a, b)
    assert np.array_equal(gen.generate("hello world", seed=5, voice="1").waveform, b)  # digits name a speaker
    assert gen.generate("hello world", seed=5).sample_rate == 16000
    for bad in (2, -1, "alice", True):
        with pytest.raises(InvalidRequest, match="voice"):
            gen.generate("hello world", seed=5, voice=bad)


@pytest.mark.parametrize(("field", "value"), [("duration_s", 1.0), ("steps", 4), ("guidance", 2.0),
                                              ("negative_prompt", "noise")])
def test_vits_rejects_fields_it_cannot_honour(vits_dir: Path, field: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as e:
        load(vits_dir).generate("hello", seed=1, **{field: value})
    assert e.value.field == field


def test_vits_speaking_rate_option_and_empty_prompt(vits_dir: Path) -> None:
    normal = load(vits_dir).generate("hello world", seed=2).waveform
    fast = load(vits_dir, speaking_rate=3.0, cache=False).generate("hello world", seed=2).waveform
    assert fast.shape[1] < normal.shape[1]
    with pytest.raises(InvalidRequest, match="speaking_rate"):
        load(vits_dir, speaking_rate=0)
    for blank in ("   ", "你好"):  # nothing, or only characters outside the model's vocabulary
        with pytest.raises(InvalidRequest, match="prompt"):
            load(vits_dir).generate(["hello", blank], seed=1)


# -- SpeechT5 --------------------------------------------------------------------------------------------------


def test_speecht5_voices(speecht5_dir: Path, tmp_path: Path) -> None:
    gen = load(speecht5_dir, maxlenratio=2.0)
    a, b, default = (gen.generate("hello world", seed=1, voice=v).waveform for v in ("a", "b", None))
    assert a.shape == b.shape == default.shape == (1, 12 * 2 * 16)  # 12 tokens x ratio 2 / 2 steps x 2 frames x 16
    assert differ(a, b) and differ(a, default)
    by_path = gen.generate("hello world", seed=1, voice=str(speecht5_dir / "speakers" / "a.npy")).waveform
    assert np.array_equal(by_path, a)
    np.save(tmp_path / "short.npy", np.zeros(3, dtype=np.float32))
    for bad, match in ((str(tmp_path / "short.npy"), "size 16"), ("nobody", "one of a, b"), (3, "x-vector")):
        with pytest.raises(InvalidRequest, match=match):
            gen.generate("hello world", seed=1, voice=bad)
    with pytest.raises(InvalidRequest, match="duration_s"):
        gen.generate("hello world", seed=1, duration_s=2.0)
    with pytest.raises(InvalidRequest, match=r"prompt\[0\]"):
        gen.generate("你好", seed=1)  # only unknown tokens


def test_speecht5_needs_a_vocoder(speecht5_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(speecht5_dir, bare, ignore=shutil.ignore_patterns("vocoder"))
    with pytest.raises(ModelNotFound, match="vocoder"):
        load(bare)
    gen = load(bare, vocoder=speecht5_dir / "vocoder", maxlenratio=2.0)
    assert gen.options["vocoder"] == str((speecht5_dir / "vocoder").resolve())  # recorded absolute, for replay
    assert gen.generate("hi", seed=0).sample_rate == 16000


# -- MusicGen --------------------------------------------------------------------------------------------------


def test_musicgen_duration_guidance_and_limits(musicgen_dir: Path) -> None:
    gen = load(musicgen_dir)
    res = gen.generate("a calm piano", seed=1, duration_s=0.3)
    assert res.waveform.shape == (1, round(0.3 * 16000))  # frames of 512 samples, cut to the asked length
    default = gen.generate("a calm piano", seed=1)
    assert default.waveform.shape == (1, (8 - 1) * 512)  # generation_config: 8 tokens, 1 lost to the delay pattern
    guided = gen.generate("a calm piano", seed=1, duration_s=0.3, guidance=1.0).waveform
    assert differ(guided, res.waveform)
    with pytest.raises(InvalidRequest, match="at most"):
        gen.generate("a calm piano", seed=1, duration_s=10.0)
    with pytest.raises(InvalidRequest, match="voice"):
        gen.generate("a calm piano", seed=1, voice=0)


def test_musicgen_batches_of_different_prompts_equal_singles(musicgen_dir: Path) -> None:
    gen = load(musicgen_dir)
    rng = torch.random.get_rng_state()
    batch = gen.generate(["a calm piano", "rain falling on a tin roof, then thunder"], seed=[7, 8], duration_s=0.2)
    assert torch.equal(rng, torch.random.get_rng_state())
    single = gen.generate("rain falling on a tin roof, then thunder", seed=8, duration_s=0.2)
    assert np.allclose(batch.waveforms[1], single.waveform, atol=TOL)


def test_musicgen_sampler_draws_the_counter_based_uniform_of_each_step_and_codebook() -> None:
    """Each row's token is the inverse-CDF choice of the uniform (seed, "tokens", step, codebook), the same at
    every step, with the whole horizon drawn at once and past it (a step beyond ``total``)."""
    from aigc._backends.audio_transformers._musicgen import _SeededSampler
    from aigc._runtime.events import EventEmitter
    from aigc.sampling import draws
    from aigc.sampling.processors import TopK
    from aigc.sampling.sampler import inverse_cdf

    seeds, codebooks, total, vocab = [7, 8], 2, 5, 300
    sampler = _SeededSampler(seeds, codebooks, [TopK(250)], EventEmitter(None, progress=False, total=total, desc=""),
                             total, 0)
    logits = torch.randn(total + 2, len(seeds) * codebooks, vocab, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(len(seeds) * codebooks, 1, dtype=torch.long)
    for step, scores in enumerate(logits):
        out = sampler(ids, scores)
        chosen = out.argmax(dim=-1)
        assert torch.equal(out.isfinite().sum(dim=-1), torch.ones(4, dtype=torch.long))  # one token a row
        u = torch.tensor([draws.reference_uniform(s, "tokens", step, c) for s in seeds for c in range(codebooks)],
                         dtype=torch.float64)
        assert torch.equal(chosen, inverse_cdf(TopK(250)(ids, scores), u))
        assert (scores.argsort(dim=-1, descending=True)[:, :250] == chosen[:, None]).any(dim=-1).all()


def test_musicgen_step_events_and_cancel(musicgen_dir: Path) -> None:
    gen = load(musicgen_dir)
    steps: list[int] = []
    gen.generate("a calm piano", seed=1, on_event=lambda e: steps.append(e.step) if e.kind == "step" else None)
    assert steps == list(range(1, 9))

    def stop(event: Any) -> None:
        if event.kind == "step" and event.step == 2:
            event.cancel()

    with pytest.raises(GenerationCancelled):
        gen.generate("a calm piano", seed=1, on_event=stop)
    assert gen.generate("a calm piano", seed=1).waveform.shape == (1, 7 * 512)  # still usable


# -- AudioLDM --------------------------------------------------------------------------------------------------


def test_audioldm_duration_negative_prompt_and_limits(audioldm_dir: Path) -> None:
    gen = load(audioldm_dir)
    res = gen.generate("rain", seed=1, steps=2, duration_s=0.05)
    assert res.waveform.shape == (1, 800) and res.sample_rate == 16000
    assert gen.generate("rain", seed=1, steps=2).waveform.shape == (1, 256)  # unet sample_size 8 x 2 x 16
    neg = gen.generate("rain", seed=1, steps=2, duration_s=0.05, negative_prompt="thunder", guidance=3.0)
    assert differ(neg.waveform, gen.generate("rain", seed=1, steps=2, duration_s=0.05, guidance=3.0).waveform)
    with pytest.raises(InvalidRequest, match="at least"):
        gen.generate("rain", seed=1, steps=2, duration_s=0.001)
    with pytest.raises(InvalidRequest, match="guidance > 1"):
        gen.generate("rain", seed=1, steps=2, negative_prompt="thunder", guidance=1.0)
    with pytest.raises(InvalidRequest, match="voice"):
        gen.generate("rain", seed=1, voice="a")


def test_audioldm_step_events_and_cancel(audioldm_dir: Path) -> None:
    gen = load(audioldm_dir)
    kinds: list[str] = []
    gen.generate("rain", seed=1, steps=3, on_event=lambda e: kinds.append(e.kind))
    assert kinds == ["start", "step", "step", "step", "end"]

    def stop(event: Any) -> None:
        if event.kind == "step":
            event.cancel()

    with pytest.raises(GenerationCancelled):
        gen.generate("rain", seed=1, steps=3, on_event=stop)


# -- Stable Audio ----------------------------------------------------------------------------------------------


def test_stable_audio_stereo_duration_and_limits(stable_audio_dir: Path) -> None:
    gen = load(stable_audio_dir)
    res = gen.generate("rain", seed=1, steps=2, duration_s=0.05)
    assert res.waveform.shape == (2, int(0.05 * 1024)) and res.sample_rate == 1024  # stereo, cut to the duration
    assert gen.generate("rain", seed=1, steps=2).waveform.shape == (2, 128)  # the model's longest: 16 frames x 8
    for bad in (0.2, 2.0):
        with pytest.raises(InvalidRequest, match=r"0\.125"):
            gen.generate("rain", seed=1, steps=2, duration_s=bad)


# -- files -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_file_round_trip_with_provenance(vits_dir: Path, tmp_path: Path, suffix: str) -> None:
    gen = load(vits_dir)
    res = gen.generate("hello world", seed=11, num_outputs=2, voice=1)
    paths = res.save(tmp_path / f"speech{suffix}")
    audio_paths = [p for p in paths if p.suffix == suffix]
    assert len(audio_paths) == 2
    for i, path in enumerate(audio_paths):
        wave, rate = load_audio(path)
        assert wave.shape == res.waveforms[i].shape and rate == res.sample_rate
        if suffix == ".wav":
            assert np.array_equal(wave, res.waveforms[i])  # float WAV is lossless
        record = Record.from_json(read_record(path))
        assert (record.backend, record.model, record.seeds, record.sample_index) == (
            "transformers", str(vits_dir), [11, 12], i)
        assert record.request["voice"] == 1
        replayed = gen.generate(record.to_request())
        assert np.allclose(replayed.waveform, res.waveforms[i], atol=TOL)
