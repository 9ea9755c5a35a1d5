"""The audio watermark: dither modulation of band energies, analysed at a fixed 16 kHz.

Spread-spectrum noise at an inaudible level is drowned by the host signal in a clip of a few seconds, so here
the host does not interfere: each payload bit is a dither-modulated (QIM) projection of band energies, as for
images (:mod:`aigc.watermark._payload`). Everything is measured on the clip resampled to 16 kHz (mono), so the
watermark survives resampling, and in the speech band, which Vorbis and MP3 keep:

1. STFT (512-point Hann window, hop 256) of the 16 kHz mix; the energies of 12 bands between 300 Hz and
   3.4 kHz (geometric edges) summed over tiles of 2 frames (32 ms); features ``F = 10 log10(E + floor)`` in dB,
   where ``floor`` is 1 % of the mean tile energy (quiet tiles stay at the floor, where a codec's noise cannot
   move them);
2. a fixed permutation deals the tiles to the 48 bits (tile *j* to bit ``perm[j] mod 48``) with fixed signs;
   each bit's projection is ``sum(sign * F) / sqrt(count)``, modulated with step :data:`DELTA` dB;
3. the change is made by gains on the original clip's STFT (same tiles, in seconds and Hz), spread over a bit's
   tiles in proportion to their loudness (quiet tiles cannot carry it), at most :data:`MAX_GAIN_DB` a tile, and
   repeated :data:`ITERATIONS` times because overlap-add and clipping move the energies a little.

The change is a gain modulation of about 1 dB on loud tiles (SNR about 16-19 dB, though a gain change of
that size is much less audible than noise of the same power). It needs a few seconds: :data:`ROBUST_S`.

Example:
    >>> t = np.arange(48000) / 16000
    >>> tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)[None]
    >>> detect(embed(tone, 16000, "0badc0de"), 16000).key
    '0badc0de'
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from aigc.watermark._payload import BITS, Detection, decode, key_bits

__all__ = ["DELTA", "METHOD", "MIN_S", "ROBUST_S", "detect", "embed"]

METHOD = "aigc.audio.band-qim/1"
RATE = 16_000
#: Clips at least this long carry the watermark by default: it survives resampling and Ogg Vorbis.
ROBUST_S = 2.0
#: The shortest clip ``watermark=True`` accepts (and the least a clip needs for the detector to run).
MIN_S = 1.0
#: The dither-modulation step of a projection, in dB.
DELTA = 5.0
MAX_GAIN_DB = 3.0
ITERATIONS = 6
_N_FFT, _HOP, _TILE = 512, 256, 2
_LOW_HZ, _HIGH_HZ, _BANDS = 300.0, 3400.0, 12
_FLOOR = 1e-2
_EDGES = np.geomspace(_LOW_HZ, _HIGH_HZ, _BANDS + 1)
_DITHER = np.random.default_rng(0xA0D10).random(BITS)  # a constant: every detector uses the same


def _bands(freqs: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The band of each frequency bin, -1 outside 300 Hz - 3.4 kHz."""
    band = np.full(len(freqs), -1)
    for b in range(_BANDS):
        band[(freqs >= _EDGES[b]) & (freqs < _EDGES[b + 1])] = b
    return band


_BAND_OF = _bands(np.arange(_N_FFT // 2 + 1) * RATE / _N_FFT)


@functools.lru_cache(maxsize=32)
def _layout(tiles: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Bit of each tile (flattened band-major), its sign, and 1/sqrt(tiles of its bit); a constant of ``tiles``
    (kept, read-only: an embedding asks for it twice an iteration)."""
    n = _BANDS * tiles
    bit = np.random.default_rng(0xA0D11).permutation(max(n, BITS))[:n] % BITS
    sign = np.random.default_rng(0xA0D12).choice([-1.0, 1.0], size=n)
    count = np.bincount(bit, minlength=BITS)
    layout = bit, sign, 1.0 / np.sqrt(np.maximum(count[bit], 1))
    for array in layout:
        array.flags.writeable = False
    return layout


def _to_rate(mono: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    import torch
    import torchaudio.functional as taf

    if rate == RATE:
        return mono
    return taf.resample(torch.from_numpy(mono), rate, RATE).numpy()  # type: ignore[no-any-return]


def _stft(x: np.ndarray[Any, Any], n_fft: int, hop: int) -> Any:
    import torch

    window = torch.hann_window(n_fft, dtype=torch.float64)
    return torch.stft(torch.from_numpy(np.ascontiguousarray(x)), n_fft, hop, window=window, return_complex=True,
                      center=True)


def _features(waveform: np.ndarray[Any, Any], rate: int, spec: Any = None) -> tuple[np.ndarray[Any, Any],
                                                                                   np.ndarray[Any, Any]]:
    """1. ``(bands, tiles)`` features in dB and the tiles' energies, of a ``(channels, samples)`` clip.

    ``spec``: the clip's own 16 kHz STFT where the caller has it (a mono 16 kHz clip: the mix is the clip)."""
    if spec is None:
        mono = _to_rate(waveform.astype(np.float64).mean(axis=0), rate)
        spec = _stft(mono, _N_FFT, _HOP)
    power = (spec.abs() ** 2).numpy()  # (F, frames)
    tiles = power.shape[1] // _TILE
    energy = np.zeros((_BANDS, tiles))
    for b in range(_BANDS):
        energy[b] = power[b == _BAND_OF][:, : tiles * _TILE].sum(axis=0).reshape(tiles, _TILE).sum(axis=1)
    floor = _FLOOR * energy.mean() + 1e-12
    return 10 * np.log10(energy + floor), energy


def _projections(features: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """2. The ``(BITS,)`` projections."""
    bit, sign, scale = _layout(features.shape[1])
    return np.bincount(bit, weights=features.reshape(-1) * sign * scale, minlength=BITS)


def _check(waveform: np.ndarray[Any, Any], rate: int) -> None:
    seconds = waveform.shape[-1] / rate
    if seconds < MIN_S:
        raise ValueError(f"a {seconds:.2f} s clip is too short for the audio watermark (at least {MIN_S:g} s)")
    if rate < 2 * _HIGH_HZ:
        raise ValueError(f"{rate} Hz audio has no content up to {_HIGH_HZ:g} Hz, where the watermark lives")


def embed(waveform: np.ndarray[Any, Any], sample_rate: int, key: str) -> np.ndarray[Any, Any]:
    """``(channels, samples)`` float32 audio with the watermark of ``key`` (8 hex digits).

    Raises:
        ValueError: shorter than 1 s, a sample rate below 6.8 kHz, or a key that is not 8 hex digits.
    """
    _check(waveform, sample_rate)
    bits = key_bits(key)
    out = waveform.astype(np.float64)
    n_fft = round(_N_FFT * sample_rate / RATE)
    hop = round(_HOP * sample_rate / RATE)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    band_of = _bands(freqs)
    offset = _DITHER * DELTA + bits * DELTA / 2
    target: np.ndarray[Any, Any] | None = None
    import torch

    window = torch.hann_window(n_fft, dtype=torch.float64)
    # A mono 16 kHz clip is its own analysis signal: one STFT an iteration serves the features and the gains.
    own = sample_rate == RATE and out.shape[0] == 1
    for _ in range(ITERATIONS):
        spec = torch.stft(torch.from_numpy(out), n_fft, hop, window=window, return_complex=True, center=True)
        features, energy = _features(out, sample_rate, spec[0] if own else None)
        tiles = features.shape[1]
        s = _projections(features)
        if target is None:
            target = np.round((s - offset) / DELTA) * DELTA + offset
        bit, sign, scale = _layout(tiles)
        # d F_j / d gain_j (dB) is E_j / (E_j + floor): loud tiles move, quiet ones barely (3.)
        floor = _FLOOR * energy.mean() + 1e-12
        weight = (energy / (energy + floor)).reshape(-1) * sign * scale
        norm = np.bincount(bit, weights=weight * weight, minlength=BITS) + 1e-3
        gain = np.clip((target - s)[bit] * weight / norm[bit], -MAX_GAIN_DB, MAX_GAIN_DB).reshape(_BANDS, tiles)
        frames = spec.shape[-1]
        tile_of = np.minimum((np.arange(frames) * hop / sample_rate * RATE / _HOP) // _TILE, tiles - 1).astype(int)
        valid = (np.arange(frames) * hop / sample_rate * RATE / _HOP) < tiles * _TILE
        # The amplitude factor of each band and tile, spread over the band's bins; 1 elsewhere (10 ** 0).
        factor = np.where(valid, (10 ** (gain / 20))[:, tile_of], 1.0)  # (bands, frames)
        scale_of_bin = np.ones((len(freqs), frames))
        for b in range(_BANDS):
            scale_of_bin[band_of == b] = factor[b][None, :]
        spec = spec * torch.from_numpy(scale_of_bin)
        out = torch.istft(spec, n_fft, hop, window=window, center=True, length=out.shape[-1]).numpy()
    return np.ascontiguousarray(out, dtype=np.float32)


def detect(waveform: np.ndarray[Any, Any], sample_rate: int) -> Detection:
    """Read the watermark of ``(channels, samples)`` audio at any sample rate (resampled or re-encoded copies
    included).

    Raises:
        ValueError: shorter than 1 s, or a sample rate below 6.8 kHz.
    """
    _check(waveform, sample_rate)
    s = _projections(_features(waveform, sample_rate)[0])
    return decode(np.cos(2 * np.pi * (s - _DITHER * DELTA) / DELTA), METHOD)
