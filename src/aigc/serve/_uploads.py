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
    the file does not say), decoded as :func:`aigc._media.video.load_video` reads a file, refusing other formats,
    clips longer than ``max_video_frames`` and frames larger than ``max_input_pixels`` before decoding them all."""
    from aigc._media.video import decode_animation, decode_mp4
    from aigc.errors import BackendUnavailable, InvalidRequest

    def too_big(size: object) -> Exception:
        return invalid(name, size, f"more than this server's {limits.max_input_pixels} pixels per frame",
                       "upload a smaller clip")

    def too_long(count: object) -> Exception:
        return invalid(name, f"<{count}+ frames>", f"more than this server's {limits.max_video_frames} frames",
                       "upload a shorter clip")

    if data[4:8] == b"ftyp":  # MP4 / MOV
        try:
            frames, fps = decode_mp4(data, max_frames=limits.max_video_frames, max_pixels=limits.max_input_pixels)
        except BackendUnavailable:
            raise invalid(name, "mp4", "this server cannot read MP4 (PyAV is not installed)",
                          "upload a GIF or WebP, or install aigc[video] on the server") from None
        except InvalidRequest as e:
            if e.field == "max_pixels":
                raise too_big(e.value) from None
            if e.field == "max_frames":
                raise too_long(e.value) from None
            raise invalid(name, "mp4", "the file has no video stream", "upload a video file") from None
        except Exception:  # PyAV's errors: not an MP4 it can decode
            raise invalid(name, f"<{len(data)} bytes>", "not a readable MP4", "upload the file again") from None
        if not len(frames):
            raise invalid(name, f"<{len(data)} bytes>", "the clip has no frames", "upload a clip with frames")
        return frames, (fps or None)
    from PIL import Image

    try:
        clip = Image.open(io.BytesIO(data))
    except Exception:
        raise invalid(name, f"<{len(data)} bytes>", "not a readable video", "upload a GIF, WebP or MP4 file") \
            from None
    if clip.format not in ("GIF", "WEBP"):
        raise invalid(name, clip.format, "unsupported video format", "upload a GIF, WebP or MP4 file")
    width, height = clip.size
    if width * height > limits.max_input_pixels:
        raise too_big(f"{width}x{height}")
    count = int(getattr(clip, "n_frames", 1))
    if count > limits.max_video_frames:
        raise too_long(count)
    try:  # repeated frames unfolded, the frame rate from the durations or aigc's own clip info
        return decode_animation(data, max_frames=limits.max_video_frames)
    except InvalidRequest as e:
        raise too_long(e.value) from None
    except Exception:
        raise invalid(name, f"<{len(data)} bytes>", "a damaged video", "upload the file again") from None
