"""Content and attacks for testing watermarks: natural-looking images and sounds made in code, and the
re-encodings a shared file goes through (JPEG, resizing, H.264, resampling, Ogg Vorbis, MP3).

The images follow the two classic models of natural-image statistics: "dead leaves" (occluding discs whose radii
follow a power law; Lee, Mumford and Huang 2001) and 1/f noise (power spectrum falling as 1/f^2, like photographs).

Example:
    >>> from aigc.testing.watermark import dead_leaves, jpeg
    >>> jpeg(dead_leaves(64, seed=0), quality=75).size
    (64, 64)
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["dead_leaves", "drifting_clip", "h264", "jpeg", "natural_images", "pink_noise", "reencode_audio",
           "resample_audio", "shrink", "speechlike"]


def dead_leaves(size: int, *, seed: int, discs: int = 200) -> Image.Image:
    """A ``size`` x ``size`` RGB "dead leaves" image with a little sensor noise."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(discs):
        radius = size * 0.5 * rng.random() ** 3 + 1
        x, y = rng.random(2) * size
        draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                     fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(im, dtype=np.float64) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def pink_noise(size: int, *, seed: int, contrast: float = 40.0) -> Image.Image:
    """A ``size`` x ``size`` RGB image of 1/f noise (each channel's power spectrum ~ 1/f^2)."""
    rng = np.random.default_rng(seed)
    f2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    f2[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / np.sqrt(f2)
        x = np.real(np.fft.ifft2(spectrum))
        channels.append((x - x.mean()) / (x.std() + 1e-12) * contrast + 128)
    return Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))


def natural_images(count: int, size: int, *, seed: int = 0) -> list[Image.Image]:
    """``count`` images, alternately dead leaves and 1/f noise."""
    return [dead_leaves(size, seed=seed + i) if i % 2 else pink_noise(size, seed=seed + i) for i in range(count)]


def jpeg(image: Image.Image, *, quality: int) -> Image.Image:
    """``image`` after a JPEG round trip at ``quality`` (Pillow's encoder, 4:2:0 chroma)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")  # type: ignore[no-any-return]


def shrink(image: Image.Image, factor: float = 0.5) -> Image.Image:
    """``image`` resized by ``factor`` (bicubic, as most platforms scale)."""
    w, h = image.size
    return image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BICUBIC)


def drifting_clip(image: Image.Image, *, frames: int = 8, step: int = 2, seed: int = 0) -> np.ndarray[Any, Any]:
    """A ``(frames, H, W, 3)`` uint8 clip: ``image`` drifting right by ``step`` pixels a frame, with a little noise."""
    rng = np.random.default_rng(seed)
    base = np.asarray(image.convert("RGB"))
    clip = np.stack([np.roll(base, step * t, axis=1) for t in range(frames)])  # (T, H, W, 3)
    clip = clip + rng.integers(0, 3, clip.shape)
    return clip.clip(0, 255).astype(np.uint8)


def h264(frames: np.ndarray[Any, Any], *, crf: int = 23, scale: float = 1.0, fps: int = 8) -> np.ndarray[Any, Any]:
    """``(T, H, W, 3)`` uint8 frames after what a platform does to a shared clip: resized by ``scale`` (bicubic),
    encoded with H.264 (libx264, 4:2:0) at ``crf`` (ffmpeg's default is 23; larger is worse) and decoded. Needs
    PyAV (the ``video`` extra).

    Example:
        >>> h264(np.zeros((4, 64, 64, 3), np.uint8), scale=0.5).shape  # doctest: +SKIP
        (4, 32, 32, 3)
    """
    import av as _av

    av: Any = _av  # PyAV's annotations are partial
    height, width = frames.shape[1:3]
    w, h = round(width * scale) // 2 * 2, round(height * scale) // 2 * 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            im = Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(im), format="rgb24")))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as inp:
        return np.stack([f.to_ndarray(format="rgb24") for f in inp.decode(video=0)])


def speechlike(seconds: float, rate: int, *, seed: int) -> np.ndarray[Any, Any]:
    """``(1, samples)`` float32: syllables of harmonic tones with formant-like envelopes and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = np.zeros(n)
    start = 0.0
    while start < seconds:
        length = rng.uniform(0.12, 0.35)
        f0 = rng.uniform(90, 220)
        mask = (t >= start) & (t < start + length)
        env = np.sin(np.pi * (t[mask] - start) / length) ** 2
        voice = sum(np.sin(2 * np.pi * f0 * k * t[mask]) * np.exp(-((f0 * k - rng.uniform(400, 2500)) / 600) ** 2)
                    for k in range(1, 25))
        out[mask] += env * voice
        start += length + rng.uniform(0.02, 0.15)
    out += rng.normal(0, 0.002, n)
    return (0.3 * out / (np.abs(out).max() + 1e-9))[None].astype(np.float32)  # type: ignore[no-any-return]


def resample_audio(waveform: np.ndarray[Any, Any], rate: int, target: int) -> np.ndarray[Any, Any]:
    """``(channels, samples)`` audio resampled to ``target`` Hz (torchaudio's sinc interpolation)."""
    from aigc._media.audio import resample

    return resample(waveform, rate, target)


def reencode_audio(waveform: np.ndarray[Any, Any], rate: int, *, fmt: str = "OGG") -> tuple[np.ndarray[Any, Any], int]:
    """``(channels, samples)`` audio after a lossy round trip through libsndfile: ``"OGG"`` (Vorbis, default
    quality) or ``"MP3"``; returns the decoded audio and its rate."""
    import soundfile as sf

    subtype = {"OGG": "VORBIS", "MP3": "MPEG_LAYER_III"}[fmt]
    buf = io.BytesIO()
    sf.write(buf, np.clip(waveform, -1, 1).T, rate, format=fmt, subtype=subtype)
    buf.seek(0)
    data, out_rate = sf.read(buf, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(out_rate)
