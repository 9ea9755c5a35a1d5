"""Audio files with embedded provenance, through ``soundfile`` (libsndfile).

Formats, chosen by suffix:

* ``.wav``: 32-bit float samples (subtype ``FLOAT``), so a saved waveform reads back bit for bit,
  values outside [-1, 1] included. Every current browser and audio tool plays float WAV.
* ``.flac``: 16-bit PCM (lossless at that depth; samples are clipped to [-1, 1] first).
* ``.ogg``: Ogg Vorbis (lossy).

The record goes into the file's ``comment`` tag (WAV ``LIST/INFO/ICMT``, a Vorbis comment for FLAC
and OGG) and is read back before the file is committed. libsndfile keeps at most about 2 KB of WAV
comment, so a longer record moves to a ``<file name>.json`` sidecar.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from aigc._checks import check_ndarray
from aigc._media.provenance import save_with_record
from aigc.errors import InvalidRequest
from aigc.limits import exceeded

__all__ = ["audio_html", "load_audio", "measure_loudness", "normalize_loudness", "read_audio_record", "resample",
           "save_audio"]

logger = logging.getLogger(__name__)

_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
_MAX_CHANNELS = {"WAV": 64, "FLAC": 8, "OGG": 64}


def check_waveform(waveform: Any) -> np.ndarray[Any, Any]:
    """Validate a waveform and return it as float32 ``(channels, samples)``.

    Raises:
        InvalidRequest: not a 1-D or 2-D floating-point array of finite values with at least one sample.
    """
    check_ndarray("waveform", waveform, fix="pass a float32 array (channels, samples)")
    assert isinstance(waveform, np.ndarray)
    if waveform.dtype.kind != "f":
        raise InvalidRequest("waveform", f"dtype {waveform.dtype}", "audio must be floating point in [-1, 1]",
                             "convert it, e.g. pcm.astype(np.float32) / 32768 for int16 samples")
    if waveform.ndim == 1:
        waveform = waveform[None, :]
    if waveform.ndim != 2 or waveform.shape[1] == 0 or waveform.shape[0] == 0:
        raise InvalidRequest("waveform", f"shape {waveform.shape}",
                             "expected (samples,) or (channels, samples) with samples", "pass a 1-D or 2-D array")
    if waveform.shape[0] > max(_MAX_CHANNELS.values()):
        raise InvalidRequest(
            "waveform",
            f"shape {waveform.shape}",
            f"{waveform.shape[0]} channels",
            "pass (channels, samples); transpose a (samples, channels) array with waveform.T",
        )
    if not np.isfinite(waveform).all():
        raise InvalidRequest(
            "waveform", "NaN or inf samples", "not finite", "replace them, e.g. np.nan_to_num"
        )
    return np.ascontiguousarray(waveform, dtype=np.float32)


def check_sample_rate(sample_rate: Any) -> int:
    """Validate a sample rate (a positive integer) and return it as ``int``."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InvalidRequest("sample_rate", sample_rate, "not a positive integer", "pass e.g. 16000")
    return int(sample_rate)


#: ITU-R BS.1770 loudness is measured over 400 ms blocks, for at most 5 channels (torchaudio's limits).
MIN_LOUDNESS_S, MAX_LOUDNESS_CHANNELS = 0.4, 5


def resample(waveform: np.ndarray[Any, Any], sample_rate: int, target_rate: Any) -> np.ndarray[Any, Any]:
    """Resample ``(channels, samples)`` float32 audio with torchaudio's band-limited sinc interpolation.

    Raises:
        InvalidRequest: ``target_rate`` is not a positive integer (or above 768 kHz).

    Example:
        >>> resample(np.zeros((1, 16000), np.float32), 16000, 44100).shape  # doctest: +SKIP
        (1, 44100)
    """
    target = check_sample_rate(target_rate)
    if target > 768_000:
        raise InvalidRequest("sample_rate", target, "above 768 kHz", "pass a rate such as 16000, 44100 or 48000")
    exceeded("sample_rate", target, waveform.shape[-1] * target / sample_rate, "max_audio_samples",
             "audio samples after resampling")
    if target == sample_rate:
        return np.array(waveform, dtype=np.float32)
    import torch
    import torchaudio.functional as taf

    out = taf.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), sample_rate, target)
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


def _check_loudness_input(waveform: np.ndarray[Any, Any], sample_rate: int) -> None:
    seconds = waveform.shape[-1] / sample_rate
    if seconds < MIN_LOUDNESS_S:
        raise InvalidRequest("waveform", f"{seconds:.3f} s", f"loudness (ITU-R BS.1770) needs at least "
                             f"{MIN_LOUDNESS_S} s of audio", "pad the clip with silence, or generate a longer one")
    if waveform.shape[0] > MAX_LOUDNESS_CHANNELS:
        raise InvalidRequest("waveform", f"{waveform.shape[0]} channels", f"loudness is defined for at most "
                             f"{MAX_LOUDNESS_CHANNELS} channels", "mix down to stereo first")


def _k_weighting(rate: int) -> list[tuple[list[float], list[float]]]:
    """The two BS.1770 K-weighting biquads (high shelf, then high pass) as (b, a), derived for ``rate``.

    The standard tabulates coefficients at 48 kHz only; these are libebur128's analogue prototypes behind
    them (corner, Q, gain) mapped through the bilinear transform, so they equal the standard's table at
    48 kHz and keep the same response at other rates.
    """
    k = np.tan(np.pi * 1681.974450955533 / rate)  # stage 1: high shelf, +4 dB above ~1.7 kHz
    q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = ([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
             [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    k = np.tan(np.pi * 38.13547087602444 / rate)  # stage 2: high pass at ~38 Hz
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    highpass = ([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [([float(v) for v in b], [float(v) for v in a]) for b, a in (shelf, highpass)]


def measure_loudness(waveform: np.ndarray[Any, Any], sample_rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4: K-weighted, gated) of ``(channels, samples)`` audio.

    Channels 0-2 weigh 1.0 and channels 3-4 (the surrounds of a 5.0 layout) 1.41, as the standard says.
    Silence (everything below the -70 LUFS absolute gate) measures ``-inf``. The filters run through
    ``torchaudio.functional.lfilter`` in float64; torchaudio's own ``loudness`` approximates the K-weighting
    and reads a 997 Hz full-scale sine about 0.3 dB low, so it is not used.

    Raises:
        InvalidRequest: shorter than 0.4 s, or more than 5 channels.

    Example:
        >>> t = np.arange(48000) / 48000
        >>> round(measure_loudness(np.sin(2 * np.pi * 997 * t)[None].astype(np.float32), 48000), 2)
        -3.01
    """
    import torch
    import torchaudio.functional as taf

    data = check_waveform(waveform)
    _check_loudness_input(data, sample_rate)
    x = torch.from_numpy(data.astype(np.float64))
    for b, a in _k_weighting(sample_rate):
        x = taf.lfilter(x, torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), clamp=False)
    block, step = round(0.4 * sample_rate), round(0.1 * sample_rate)  # 400 ms blocks, 75 % overlap
    power = (x**2).unfold(-1, block, step).mean(-1)  # (channels, blocks): mean square per block
    weights = torch.tensor([1.0, 1.0, 1.0, 1.41, 1.41], dtype=torch.float64)[: x.shape[0], None]
    z = (weights * power).sum(0)  # (blocks,)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(z.numpy())
    gated = block_lufs > -70.0
    if not gated.any():
        return float("-inf")
    relative = -0.691 + 10 * np.log10(z.numpy()[gated].mean()) - 10.0
    keep = gated & (block_lufs > relative)
    return float(-0.691 + 10 * np.log10(z.numpy()[keep].mean()))


def normalize_loudness(
    waveform: np.ndarray[Any, Any], sample_rate: int, lufs: float, max_peak_db: float
) -> tuple[np.ndarray[Any, Any], float]:
    """Scale audio to ``lufs`` integrated loudness; return it and the gain applied, in dB.

    The gain is one constant (no compression). Where reaching ``lufs`` would put the sample peak above
    ``max_peak_db`` dBFS, the caller gets :class:`~aigc.errors.InvalidRequest` rather than clipped or
    quieter-than-asked audio.

    Raises:
        InvalidRequest: silent audio (nothing to scale), too short or too many channels to measure, or a
            target that would clip.
    """
    loudness = measure_loudness(waveform, sample_rate)
    if not np.isfinite(loudness):
        raise InvalidRequest("waveform", "silence", "silent audio has no loudness to scale",
                             "skip normalisation for silent clips")
    gain_db = lufs - loudness
    peak = float(np.abs(waveform).max())
    peak_db = 20 * np.log10(peak) + gain_db
    if peak_db > max_peak_db + 1e-6:
        raise InvalidRequest("lufs", lufs, f"reaching it needs {gain_db:+.1f} dB of gain, which puts the peak at "
                             f"{peak_db:+.1f} dBFS, above max_peak_db={max_peak_db}",
                             f"pass a lower target, e.g. lufs={lufs - (peak_db - max_peak_db):.1f}, "
                             "or raise max_peak_db (at most 0)")
    scaled = waveform.astype(np.float32) * np.float32(10 ** (gain_db / 20))
    return np.ascontiguousarray(scaled, dtype=np.float32), float(gain_db)


def _audio_format(path: Path) -> tuple[str, str]:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidRequest("path", str(path), "unsupported audio format", "use .wav, .flac or .ogg")
    return fmt


def _write_audio(
    data: np.ndarray[Any, Any],
    sample_rate: int,
    target: Path,
    fmt: tuple[str, str],
    record: str | None,
    *,
    name: Path,
) -> bool:
    """Encode ``data`` (channels, samples) to ``target`` (a temporary file for ``name``).

    Returns whether ``record`` was embedded.
    """
    container, subtype = fmt
    try:
        with sf.SoundFile(
            str(target),
            "w",
            samplerate=sample_rate,
            channels=data.shape[0],
            format=container,
            subtype=subtype,
        ) as f:
            if record is not None:
                f.comment = record
            f.write(data.T)
    except sf.LibsndfileError as e:
        raise InvalidRequest(
            "path", str(name), f"{container} cannot store this audio ({e})", "save it as .wav instead"
        ) from e
    return record is not None


def save_audio(
    waveform: np.ndarray[Any, Any], sample_rate: int, path: str | os.PathLike[str], record: str | None, *,
    finish: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Save a waveform atomically with its provenance record; the format follows the suffix.

    Args:
        waveform: float samples, ``(channels, samples)`` or ``(samples,)`` for mono, nominally in [-1, 1].
        sample_rate: samples per second.
        path: a ``.wav`` (32-bit float), ``.flac`` (16-bit) or ``.ogg`` (Vorbis) file name.
        record: the provenance record (JSON text), or ``None``.
        finish: called with the written temporary file before it replaces ``path`` (C2PA signing).

    Returns:
        The paths written: the audio file, then its ``.json`` sidecar if the record needed one.

    Raises:
        InvalidRequest: unsupported suffix, a bad waveform or sample rate, or audio the format cannot store
            (e.g. more than 8 channels in FLAC).

    Example:
        >>> save_audio(np.zeros((1, 16000), np.float32), 16000, Path("a.wav"), None)  # doctest: +SKIP
        [PosixPath('a.wav')]
    """
    path = Path(path)
    fmt = _audio_format(path)
    data = check_waveform(waveform)
    rate = check_sample_rate(sample_rate)
    if data.shape[0] > _MAX_CHANNELS[fmt[0]]:
        raise InvalidRequest(
            "waveform",
            f"shape {data.shape}",
            f"{fmt[0]} holds at most {_MAX_CHANNELS[fmt[0]]} channels",
            "save it as .wav, or pass (channels, samples) if the axes are swapped",
        )
    if fmt[1].startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with save_with_record(path, record) as pending:
        pending.embedded = _write_audio(data, rate, pending.tmp, fmt, record, name=path)
        if pending.embedded and read_audio_record(pending.tmp) != record:
            logger.info("the record did not fit in %s's comment; moving it to a sidecar", path.name)
            pending.embedded = _write_audio(data, rate, pending.tmp, fmt, None, name=path)
        if finish is not None:
            finish(pending.tmp)
    return pending.written


def load_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray[Any, Any], int]:
    """Read an audio file as float32 ``(channels, samples)`` and its sample rate.

    Raises:
        soundfile.LibsndfileError: the file is missing or not audio libsndfile can read.

    Example:
        >>> wav, sr = load_audio("a.wav")  # doctest: +SKIP
        >>> wav.shape, sr  # doctest: +SKIP
        ((1, 16000), 16000)
    """
    data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sample_rate)


def read_audio_record(path: str | os.PathLike[str]) -> str | None:
    """The record in an audio file's comment tag, or ``None`` (sidecars are not consulted).

    Raises:
        soundfile.LibsndfileError: the file is missing or not audio libsndfile can read.
    """
    with sf.SoundFile(str(path)) as f:
        comment = f.comment
    return str(comment) if comment else None


def audio_html(waveform: np.ndarray[Any, Any], sample_rate: int) -> str:
    """An HTML ``<audio>`` player with the waveform inline as a 16-bit WAV.

    Raises:
        InvalidRequest: a bad waveform or sample rate.

    Example:
        >>> audio_html(np.zeros((1, 800), np.float32), 8000)[:40]  # doctest: +SKIP
        '<audio controls src="data:audio/wav;base6'
    """
    data = np.clip(check_waveform(waveform), -1.0, 1.0)
    rate = check_sample_rate(sample_rate)
    buf = io.BytesIO()
    sf.write(buf, data.T, rate, format="WAV", subtype="PCM_16")
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<audio controls src="data:audio/wav;base64,{encoded}"></audio>'
