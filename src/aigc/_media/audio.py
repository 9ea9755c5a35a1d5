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
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from aigc._media.atomic import atomic_path
from aigc._media.provenance import store_sidecar
from aigc.errors import InvalidRequest

__all__ = ["audio_html", "load_audio", "read_audio_record", "save_audio"]

logger = logging.getLogger(__name__)

_FORMATS = {".wav": ("WAV", "FLOAT"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}
_MAX_CHANNELS = {"WAV": 64, "FLAC": 8, "OGG": 64}


def check_waveform(waveform: Any) -> np.ndarray[Any, Any]:
    """Validate a waveform and return it as float32 ``(channels, samples)``.

    Raises:
        InvalidRequest: not a 1-D or 2-D floating-point array of finite values with at least one sample.
    """
    if not isinstance(waveform, np.ndarray):
        raise InvalidRequest(
            "waveform",
            type(waveform).__name__,
            "not a numpy array",
            "pass a float32 array (channels, samples)",
        )
    if waveform.dtype.kind != "f":
        raise InvalidRequest(
            "waveform",
            f"dtype {waveform.dtype}",
            "audio must be floating point in [-1, 1]",
            "convert it, e.g. pcm.astype(np.float32) / 32768 for int16 samples",
        )
    if waveform.ndim == 1:
        waveform = waveform[None, :]
    if waveform.ndim != 2 or waveform.shape[1] == 0 or waveform.shape[0] == 0:
        raise InvalidRequest(
            "waveform",
            f"shape {waveform.shape}",
            "expected (samples,) or (channels, samples) with samples",
            "pass a 1-D or 2-D array",
        )
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
    waveform: np.ndarray[Any, Any], sample_rate: int, path: str | os.PathLike[str], record: str | None
) -> list[Path]:
    """Save a waveform atomically with its provenance record; the format follows the suffix.

    Args:
        waveform: float samples, ``(channels, samples)`` or ``(samples,)`` for mono, nominally in [-1, 1].
        sample_rate: samples per second.
        path: a ``.wav`` (32-bit float), ``.flac`` (16-bit) or ``.ogg`` (Vorbis) file name.
        record: the provenance record (JSON text), or ``None``.

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
    with atomic_path(path) as tmp:
        embedded = _write_audio(data, rate, tmp, fmt, record, name=path)
        if embedded and read_audio_record(tmp) != record:
            logger.info("the record did not fit in %s's comment; moving it to a sidecar", path.name)
            embedded = _write_audio(data, rate, tmp, fmt, None, name=path)
    return store_sidecar(path, record, embedded=embedded)


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
