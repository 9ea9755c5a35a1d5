"""Uploaded files (multipart form data) -> decoded inputs, refusing unknown formats and sizes beyond the server's
limits before the pixels are decoded. URLs and file paths are never opened: only bytes the client sent.
"""

from __future__ import annotations

import io
from typing import Any

from aigc.serve._config import ServeLimits
from aigc.serve._errors import invalid

__all__ = ["decode_image", "decode_video"]


def decode_image(name: str, data: bytes, limits: ServeLimits) -> Any:
    """An uploaded PNG, JPEG or WebP as a PIL image (RGB or RGBA), refusing other formats and huge sizes before
    decoding the pixels."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        fmt = image.format
        width, height = image.size
    except Exception:
        raise invalid(name, f"<{len(data)} bytes>", "not a readable image", "upload a PNG, JPEG or WebP file") \
            from None
    if fmt not in ("PNG", "JPEG", "WEBP"):
        raise invalid(name, fmt, "unsupported image format", "upload a PNG, JPEG or WebP file")
    if width * height > limits.max_input_pixels:
        raise invalid(name, f"{width}x{height}", f"more than this server's {limits.max_input_pixels} pixels",
                      "upload a smaller image")
    try:
        image.load()
    except Exception:
        raise invalid(name, f"<{len(data)} bytes>", "a damaged image", "upload the file again") from None
    alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if alpha else "RGB")


def decode_video(name: str, data: bytes, limits: ServeLimits) -> tuple[Any, float | None]:
    """An uploaded GIF, animated WebP or MP4 as uint8 frames ``(T, H, W, 3)`` and its frame rate (``None`` where
    the file does not say), refusing other formats, clips longer than ``max_video_frames`` and frames larger than
    ``max_input_pixels`` before decoding them all."""
    import numpy as np

    def check_size(width: int, height: int) -> None:
        if width * height > limits.max_input_pixels:
            raise invalid(name, f"{width}x{height}", f"more than this server's {limits.max_input_pixels} pixels "
                          "per frame", "upload a smaller clip")

    def too_long(count: int) -> Exception:
        return invalid(name, f"<{count}+ frames>", f"more than this server's {limits.max_video_frames} frames",
                       "upload a shorter clip")

    frames: list[Any] = []
    fps: float | None = None
    if data[4:8] == b"ftyp":  # MP4 / MOV
        try:
            import av
        except ImportError:
            raise invalid(name, "mp4", "this server cannot read MP4 (PyAV is not installed)",
                          "upload a GIF or WebP, or install aigc[video] on the server") from None
        try:
            with av.open(io.BytesIO(data)) as container:
                if not container.streams.video:
                    raise invalid(name, "mp4", "the file has no video stream", "upload a video file")
                stream = container.streams.video[0]
                check_size(stream.width, stream.height)
                rate = stream.average_rate or stream.guessed_rate
                fps = float(rate) if rate else None
                for frame in container.decode(stream):
                    if len(frames) == limits.max_video_frames:
                        raise too_long(len(frames) + 1)
                    frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            raise invalid(name, f"<{len(data)} bytes>", "not a readable MP4", "upload the file again") from None
    else:
        from PIL import Image, ImageSequence

        try:
            clip = Image.open(io.BytesIO(data))
        except Exception:
            raise invalid(name, f"<{len(data)} bytes>", "not a readable video", "upload a GIF, WebP or MP4 file") \
                from None
        if clip.format not in ("GIF", "WEBP"):
            raise invalid(name, clip.format, "unsupported video format", "upload a GIF, WebP or MP4 file")
        check_size(*clip.size)
        count = int(getattr(clip, "n_frames", 1))
        if count > limits.max_video_frames:
            raise too_long(count)
        try:
            for frame in ImageSequence.Iterator(clip):
                frames.append(np.asarray(frame.convert("RGB")))
        except Exception:
            raise invalid(name, f"<{len(data)} bytes>", "a damaged video", "upload the file again") from None
        duration = clip.info.get("duration")
        fps = 1000.0 / duration if isinstance(duration, (int, float)) and duration > 0 else None
    if not frames:
        raise invalid(name, f"<{len(data)} bytes>", "the clip has no frames", "upload a clip with frames")
    return np.stack(frames), fps
