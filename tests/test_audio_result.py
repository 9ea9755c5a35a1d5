"""AudioResult post-processing: resampling and loudness normalisation, recorded in the provenance and replayed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import aigc
from aigc._media.audio import load_audio, measure_loudness
from aigc.errors import InvalidRequest, ProvenanceError


def _tone(seconds: float = 1.0, rate: int = 16000, freq: float = 997.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t))[None].astype(np.float32)


def _result(*waves: np.ndarray, rate: int = 16000) -> aigc.AudioResult:
    record = aigc.Record(modality="audio", backend="x", model="m", request={"prompt": "p"},
                         seeds=list(range(len(waves))), device="cpu", dtype="float32")
    return aigc.AudioResult(waveforms=list(waves), sample_rate=rate, seeds=list(range(len(waves))), record=record)


def test_loudness_of_a_reference_tone() -> None:
    # BS.1770 (filters defined at 48 kHz): a full-scale 997 Hz sine in one channel reads -3.01 LUFS
    assert measure_loudness(_tone(amp=1.0, rate=48000), 48000) == pytest.approx(-3.01, abs=0.05)
    assert measure_loudness(_tone(amp=0.1, rate=48000), 48000) == pytest.approx(-23.01, abs=0.05)
    assert measure_loudness(np.zeros((1, 16000), np.float32), 16000) == float("-inf")


def test_normalize_reaches_the_target_per_sample_and_records_the_step() -> None:
    res = _result(_tone(amp=0.02), _tone(amp=0.2, freq=440.0))
    out = res.normalize(-16.0)
    assert out.loudness() == pytest.approx([-16.0, -16.0], abs=0.05)
    assert res.loudness()[0] != pytest.approx(-16.0, abs=1.0)  # the original is untouched
    ratio = out.waveforms[0] / np.where(res.waveforms[0] == 0, 1, res.waveforms[0])
    assert np.allclose(ratio[res.waveforms[0] != 0], ratio[0, 10])  # one constant gain, no compression
    assert out.record is not None and out.record.postprocess == [{"op": "normalize", "lufs": -16.0,
                                                                  "max_peak_db": -1.0}]
    assert res.record is not None and res.record.postprocess == []
    assert out.waveforms[0].dtype == np.float32


def test_normalize_refuses_to_clip_silence_and_short_clips() -> None:
    with pytest.raises(InvalidRequest, match=r"lufs.*max_peak_db.*lufs=-"):
        _result(_tone(amp=0.5)).normalize(-3.0)  # would need a peak above -1 dBFS
    assert _result(_tone(amp=0.5)).normalize(-4.0, max_peak_db=0.0).loudness()[0] == pytest.approx(-4.0, abs=0.05)
    with pytest.raises(InvalidRequest, match="silent"):
        _result(np.zeros((1, 16000), np.float32)).normalize()
    with pytest.raises(InvalidRequest, match=r"0\.4 s"):
        _result(_tone(seconds=0.2)).normalize()
    with pytest.raises(InvalidRequest, match="5 channels"):
        _result(np.repeat(_tone(), 6, axis=0)).loudness()
    for bad in (5.0, float("nan"), "loud"):
        with pytest.raises(InvalidRequest, match="lufs"):
            _result(_tone()).normalize(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="max_peak_db"):
        _result(_tone()).normalize(max_peak_db=3.0)


def test_resample_keeps_pitch_and_duration() -> None:
    res = _result(_tone(freq=440.0, amp=0.5), rate=16000)
    up = res.resample(44100)
    assert up.sample_rate == 44100 and up.waveform.shape == (1, 44100) and up.waveform.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up.waveform[0]))
    assert np.argmax(spectrum) * 44100 / up.waveform.shape[1] == pytest.approx(440.0, abs=2.0)
    assert up.durations_s == pytest.approx(res.durations_s)
    assert up.record is not None and up.record.postprocess == [{"op": "resample", "sample_rate": 44100}]
    assert np.array_equal(res.resample(16000).waveform, res.waveform)
    for bad in (0, -8000, 16000.5, True, 10**7):
        with pytest.raises(InvalidRequest, match="sample_rate"):
            res.resample(bad)  # type: ignore[arg-type]


def test_saved_file_carries_the_steps_and_apply_postprocess_redoes_them(tmp_path: Path) -> None:
    res = _result(_tone(amp=0.05))
    done = res.resample(22050).normalize(-20.0)
    (path,) = done.save(tmp_path / "a.wav")
    record = aigc.Record.from_file(path)
    assert [s["op"] for s in record.postprocess] == ["resample", "normalize"]
    wav, rate = load_audio(path)
    assert rate == 22050 and np.array_equal(wav, done.waveform)
    again = res.apply_postprocess(record.postprocess)
    assert isinstance(again, aigc.AudioResult) and np.array_equal(again.waveform, wav)
    with pytest.raises(ProvenanceError, match="no post-processing step"):
        res.apply_postprocess([{"op": "reverse"}])
    no_record = dataclasses.replace(res, record=None)
    assert no_record.resample(8000).record is None
