"""The image and video-frame watermark: dither modulation of low-frequency DCT projections at a fixed scale.

Why not ``invisible-watermark``'s DWT-DCT (what diffusers' SDXL pipelines use): it embeds one bit per 4x4 block
of the image's wavelet band at the image's own size, so a 0.5x resize moves every block and the bits are lost
(``benchmarks/watermark.py`` measures it). Here every step happens on a *canonical* 32x32 luma grid, which any
image of at least 32 pixels a side can be resampled to, before and after a resize:

1. luma ``Y`` (BT.601) of the image, resampled to 32x32 (Pillow's antialiased bicubic: two such resizes in a
   row, 96 -> 48 -> 32, land where one does; a box filter does not, at ratios like 1.5); its 2-D DCT (orthonormal,
   type II);
2. the 114 coefficients with ``3 <= u + v <= 14`` (low frequencies: they survive JPEG quantisation and halving)
   are shuffled into 48 groups by a fixed permutation; each group's projection ``s`` on a fixed +-1 direction
   carries one payload bit by dither modulation with step :data:`DELTA` (:mod:`aigc.watermark._payload`);
3. the change of the projections, as a 32x32 luma pattern (inverse DCT), is resampled (bicubic) to the image's
   size and added to R, G and B alike; rounding and clipping move the projections a little, so steps 1-3 run
   :data:`ITERATIONS` times.

The change is a smooth pattern of at most about 14 cycles across the image; PSNR about 39 dB. The detector
repeats step 1-2 and reads 48 soft bits. Frames of a clip carry the same key; the detector takes each bit's
circular mean phase over the frames. Images that are nearly flat (or clipped at black or white) cannot carry it.

Example:
    >>> from PIL import Image
    >>> marked = embed(Image.new("RGB", (64, 64), (90, 120, 150)), "0badc0de")
    >>> detect(marked).key
    '0badc0de'
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from aigc.watermark._payload import BITS, Detection, decode, key_bits

__all__ = ["DELTA", "METHOD", "MIN_SIDE", "ROBUST_SIDE", "detect", "detect_frames", "embed", "embed_frames"]

METHOD = "aigc.image.dct-qim/1"
#: The canonical grid (pixels a side) the watermark lives on; images must have at least this many.
GRID = 32
#: Images at least this large carry the watermark by default: it survives JPEG quality 75 after a 0.5x resize.
ROBUST_SIDE = 64
#: The smallest side ``watermark=True`` accepts.
MIN_SIDE = GRID
#: The dither-modulation step of a projection, in 8-bit luma units of the orthonormal 32x32 DCT.
DELTA = 45.0
ITERATIONS = 3
_LOW, _HIGH = 3, 14  # the band of DCT coefficients used: LOW <= u + v <= HIGH
_RGB_TO_Y = np.array([0.299, 0.587, 0.114])


def _dct_matrix(n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m  # type: ignore[no-any-return]


def _layout() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The fixed (public) layout: coefficient groups (BITS, n, 2), directions (BITS, n), dithers (BITS,)."""
    rng = np.random.default_rng(0xA16C)  # a constant: detectors everywhere must use the same layout
    band = [(u, v) for u in range(GRID) for v in range(GRID) if _LOW <= u + v <= _HIGH]
    order = rng.permutation(len(band))
    per_bit = len(band) // BITS
    groups = np.array([band[j] for j in order[: per_bit * BITS]]).reshape(BITS, per_bit, 2)
    directions = rng.choice([-1.0, 1.0], size=(BITS, per_bit)) / np.sqrt(per_bit)
    return groups, directions, rng.random(BITS), _dct_matrix(GRID)


_GROUPS, _DIRECTIONS, _DITHER, _DCT = _layout()


def _luma_grid(rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """1. ``(H, W, 3)`` float RGB -> the 32x32 DCT of its resampled luma."""
    y = (rgb @ _RGB_TO_Y).astype(np.float32)
    small = np.asarray(Image.fromarray(y, "F").resize((GRID, GRID), Image.Resampling.BICUBIC), dtype=np.float64)
    return _DCT @ small @ _DCT.T  # type: ignore[no-any-return]


def _projections(rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """2. The ``(BITS,)`` projections of an image."""
    coefficients = _luma_grid(rgb)[_GROUPS[..., 0], _GROUPS[..., 1]]  # (BITS, n)
    return (coefficients * _DIRECTIONS).sum(axis=1)  # type: ignore[no-any-return]


def _phases(rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each projection's phase on its bit's lattice, in radians: 0 on a 0-bit point, pi on a 1-bit point."""
    return 2 * np.pi * (_projections(rgb) - _DITHER * DELTA) / DELTA


def _soft(rgb: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return np.cos(_phases(rgb))  # type: ignore[no-any-return]


def _embed_rgb(rgb: np.ndarray[Any, Any], bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Embed ``bits`` into ``(H, W, 3)`` uint8 RGB; return uint8 RGB."""
    h, w = rgb.shape[:2]
    out = rgb.astype(np.float64)
    offset = _DITHER * DELTA + bits * DELTA / 2
    target = np.round((_projections(out) - offset) / DELTA) * DELTA + offset  # the nearest lattice point of each bit
    for _ in range(ITERATIONS):
        change = target - _projections(out)  # (BITS,)
        grid = np.zeros((GRID, GRID))
        np.add.at(grid, (_GROUPS[..., 0], _GROUPS[..., 1]), change[:, None] * _DIRECTIONS)
        pattern = (_DCT.T @ grid @ _DCT).astype(np.float32)  # 3. the luma change on the grid
        full = np.asarray(Image.fromarray(pattern, "F").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float64)
        out = np.clip(np.round(out + full[..., None]), 0, 255)
    return out.astype(np.uint8)


def _check_size(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"a {width}x{height} image is too small for the watermark (at least {MIN_SIDE} pixels a side)")


def embed(image: Image.Image, key: str) -> Image.Image:
    """``image`` with the watermark of ``key`` (8 hex digits); the mode is kept (alpha untouched).

    Raises:
        ValueError: the image is smaller than 32 pixels a side, or the key is not 8 hex digits.
    """
    _check_size(*image.size)
    bits = key_bits(key)
    if image.mode in ("L", "LA"):
        gray = np.asarray(image.getchannel("L"))
        marked = _embed_rgb(np.repeat(gray[..., None], 3, axis=2), bits)[..., 0]
        out = Image.fromarray(marked, "L")
        if image.mode == "LA":
            out = Image.merge("LA", (out, image.getchannel("A")))
        return out
    alpha = image.getchannel("A") if image.mode in ("RGBA", "PA", "RGBa") or "transparency" in image.info else None
    rgb = np.asarray(image.convert("RGB"))
    out = Image.fromarray(_embed_rgb(rgb, bits), "RGB")
    if alpha is not None:
        out.putalpha(alpha if alpha.mode == "L" else alpha.convert("L"))
    return out


def detect(image: Image.Image) -> Detection:
    """Read the watermark of an image (any size from 32 pixels a side; resized or re-encoded copies included).

    Raises:
        ValueError: the image is smaller than 32 pixels a side.
    """
    _check_size(*image.size)
    return decode(_soft(np.asarray(image.convert("RGB"), dtype=np.float64)), METHOD)


def embed_frames(frames: np.ndarray[Any, Any], key: str) -> np.ndarray[Any, Any]:
    """A clip ``(T, H, W, 3)`` uint8 with every frame watermarked with ``key``."""
    _check_size(frames.shape[2], frames.shape[1])
    bits = key_bits(key)
    return np.stack([_embed_rgb(frame, bits) for frame in frames])


def detect_frames(frames: np.ndarray[Any, Any]) -> Detection:
    """Read the watermark of a clip ``(T, H, W, 3)``: each bit's soft value is the cosine of the circular mean of
    its phase over the frames.

    Every frame carries the same bits, so after re-encoding (H.264 quantises each frame differently) the phases
    scatter around the same lattice point and their circular mean lies near it. Averaging the cosines instead
    would shrink every soft bit towards 0 with the scatter, below the key-free threshold, which is set for one
    image. Without a watermark the mean phase is uniform, like one image's, so the same threshold holds.
    """
    _check_size(frames.shape[2], frames.shape[1])
    phases = np.stack([_phases(frame.astype(np.float64)) for frame in frames])  # (T, BITS)
    mean = np.angle(np.exp(1j * phases).mean(axis=0))  # (BITS,) circular mean
    return decode(np.cos(mean), METHOD)
