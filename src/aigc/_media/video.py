"""Video files with embedded provenance: MP4 (PyAV), animated GIF and WebP (Pillow), PNG frame folders.

Formats, chosen by suffix:

* ``.mp4``: H.264 (``libx264``, CRF 18, ``yuv420p``) through PyAV (``pip install 'aigc[video]'``).
  ``yuv420p`` needs an even width and height, so an odd-sized clip is padded by one row/column,
  repeating its edge pixels; it reads back with the padded size. The record is the container's
  ``comment`` tag.
* ``.gif``: palette frames (at most 256 colours each), looping forever. GIF counts time in
  hundredths of a second, so players see the frame duration rounded to 10 ms; the exact frame rate
  and frame count go in an ``AIGCCLIP1.0`` application extension (other readers skip it). The record
  is the GIF comment extension.
* ``.webp``: lossless animated WebP, looping forever (frames read back exactly). The record is EXIF
  ``UserComment``, as for still images; the frame rate and frame count go in XMP.
* no suffix (or an existing folder): ``frame-00000.png, frame-00001.png, ...`` with the frame rate in
  each PNG's ``aigc:fps`` text chunk, and the record in ``record.json``. The clip is built in a temporary
  folder and swapped with the old one in one step, so saving again over a folder replaces the whole clip
  (a reader, or a save killed midway, never mixes frames of two clips); a folder holding other files is
  refused rather than replaced.

GIF and WebP encoders merge identical consecutive frames into one longer frame; :func:`load_video`
splits them again using the stored frame rate (for GIF/WebP files from elsewhere, the shortest frame
duration stands in for it).

A record the file cannot hold, or that does not read back exactly, goes to a ``<file name>.json``
sidecar.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from aigc._checks import check_ndarray
from aigc._media.atomic import atomic_directory
from aigc._media.image import exif_record, exif_with_record
from aigc._media.provenance import save_with_record
from aigc.errors import BackendUnavailable, InvalidRequest

__all__ = ["load_video", "read_video_record", "save_video", "video_html"]

logger = logging.getLogger(__name__)

FPS_KEY = "aigc:fps"
RECORD_FILE = "record.json"
_FRAME_RE = re.compile(r"frame-(\d{5,})\.png")
_OLD_PART_RE = re.compile(r"\.(frame-\d{5,}\.png|record\.json)\.[0-9a-f]{12}\.part(\.png|\.json)")
_XMP_NS = "urn:aigc:ns:video:1"
_XMP_FPS = re.compile(rb'aigc:fps="([^"]+)"')
_XMP_FRAMES = re.compile(rb'aigc:frames="(\d+)"')
_GIF_APP_ID = b"AIGCCLIP1.0"  # application identifier (8 bytes) + authentication code (3 bytes)
_SUFFIXES = {".mp4": "mp4", ".gif": "gif", ".webp": "webp"}
_CRF = "18"
MIN_FPS, MAX_FPS = 0.01, 1000.0
_MIN_DISPLAY = 128


def _import_av(action: str) -> Any:
    try:
        import av
    except ImportError as e:
        raise BackendUnavailable(f"{action} MP4 needs PyAV", extra="video") from e
    return av


def _video_kind(path: Path) -> str:
    if path.is_dir() or (path.suffix == "" and not path.exists()):
        return "folder"
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InvalidRequest(
            "path",
            str(path),
            "unsupported video format",
            "use .mp4, .gif or .webp, or a name without a suffix for a folder of PNG frames",
        )
    return kind


def check_frames(frames: Any) -> np.ndarray[Any, Any]:
    """Validate a clip: a uint8 array ``(frames, height, width, 3)`` with at least one frame.

    Raises:
        InvalidRequest: anything else.
    """
    check_ndarray("frames", frames, fix="pass a uint8 array (frames, height, width, 3)")
    assert isinstance(frames, np.ndarray)
    if frames.dtype != np.uint8:
        raise InvalidRequest("frames", f"dtype {frames.dtype}", "video frames must be uint8",
                             "convert floats in [0, 1] with (frames * 255).round().astype(np.uint8)")
    if frames.ndim != 4 or frames.shape[3] != 3 or min(frames.shape[:3]) == 0:
        raise InvalidRequest("frames", f"shape {frames.shape}",
                             "expected (frames, height, width, 3) with at least one frame",
                             "stack RGB frames along a new first axis")
    return np.ascontiguousarray(frames)


def check_fps(fps: Any) -> float:
    """Validate a frame rate (a finite number in [0.01, 1000]) and return it as ``float``.

    GIF stores a frame's time in hundredths of a second in 16 bits, so a clip slower than about 0.0015 fps
    cannot be written; 0.01 fps (100 s per frame) leaves room, and 1000 fps is beyond any player.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise InvalidRequest("fps", fps, "not a number", "pass frames per second, e.g. 8")
    value = float(fps)
    if not math.isfinite(value) or not MIN_FPS <= value <= MAX_FPS:
        raise InvalidRequest("fps", fps, f"not a frame rate in [{MIN_FPS:g}, {MAX_FPS:g}]",
                             "pass frames per second, e.g. 8")
    return value


# ---------------------------------------------------------------------------------------------- MP4


def _pad_even(frames: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if not (pad_h or pad_w):
        return frames
    logger.info(
        "padding %dx%d frames to %dx%d for yuv420p (edge pixels repeated)", w, h, w + pad_w, h + pad_h
    )
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _h264_codec(av: Any) -> str:
    for name in ("libx264", "h264"):
        if name in av.codecs_available:
            return name
    raise BackendUnavailable(
        "this PyAV build has no H.264 encoder; install the PyAV wheel from PyPI", extra="video"
    )


def _encode_mp4(
    frames: np.ndarray[Any, Any], fps: float, target: str | io.BytesIO, record: str | None
) -> bool:
    """Encode an H.264 MP4 to ``target``; return whether ``record`` was embedded."""
    av = _import_av("saving")
    frames = _pad_even(frames)
    _, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(10_000)
    options = {"movflags": "+faststart"} if isinstance(target, str) else {}
    with av.open(target, mode="w", format="mp4", options=options) as container:
        if record is not None:
            container.metadata["comment"] = record
        stream = container.add_stream(_h264_codec(av), rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": _CRF}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))
    return record is not None


def _load_mp4(source: Path | io.BytesIO, *, max_frames: int | None = None,
              max_pixels: int | None = None) -> tuple[np.ndarray[Any, Any], float]:
    """Frames and frame rate of an MP4 (a file, or bytes in memory). With ``max_pixels`` / ``max_frames``, larger
    frames are refused before decoding (``InvalidRequest("max_pixels", ...)``) and decoding stops at the first
    frame past ``max_frames`` (``InvalidRequest("max_frames", ...)``)."""
    av = _import_av("loading")
    with av.open(str(source) if isinstance(source, Path) else source) as container:
        if not container.streams.video:
            raise InvalidRequest("path", str(source), "the file has no video stream", "pass a video file")
        stream = container.streams.video[0]
        if max_pixels is not None and stream.width * stream.height > max_pixels:
            raise InvalidRequest("max_pixels", f"{stream.width}x{stream.height}",
                                 f"frames of more than {max_pixels} pixels", "pass a smaller clip")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        frames: list[np.ndarray[Any, Any]] = []
        for frame in container.decode(stream):
            if max_frames is not None and len(frames) == max_frames:
                raise InvalidRequest("max_frames", len(frames) + 1, f"more than {max_frames} frames",
                                     "pass a shorter clip")
            frames.append(frame.to_ndarray(format="rgb24"))
        shape = (0, stream.height, stream.width, 3)
    fps = float(rate) if rate else 0.0
    return (np.stack(frames) if frames else np.zeros(shape, np.uint8)), fps


# --------------------------------------------------------------------------------------- GIF / WebP


def _xmp(fps: float, count: int) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:aigc="{_XMP_NS}" aigc:fps="{fps!r}" aigc:frames="{count}"/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def _xmp_clip_info(xmp: object) -> tuple[float, int] | None:
    if not isinstance(xmp, bytes):
        return None
    fps, count = _XMP_FPS.search(xmp), _XMP_FRAMES.search(xmp)
    if fps is None or count is None:
        return None
    return float(fps.group(1)), int(count.group(1))


def _gif_blocks_start(data: bytes) -> int:
    """Offset of the first block after a GIF's header, screen descriptor and global colour table."""
    flags = data[10]
    return 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)


def _add_gif_clip_info(data: bytes, fps: float, count: int) -> bytes:
    """Insert an application extension holding the exact frame rate and frame count."""
    payload = json.dumps({"fps": fps, "frames": count}).encode()
    at = _gif_blocks_start(data)
    block = b"!\xff\x0b" + _GIF_APP_ID + bytes([len(payload)]) + payload + b"\0"
    return data[:at] + block + data[at:]


def _gif_clip_info(data: bytes) -> tuple[float, int] | None:
    """Read the extension :func:`_add_gif_clip_info` wrote; ``None`` for other GIFs."""
    try:
        pos = _gif_blocks_start(data)
        while data[pos : pos + 1] == b"!":  # extensions come before the first image
            label, pos = data[pos + 1], pos + 2
            blocks = []
            while data[pos]:
                blocks.append(data[pos + 1 : pos + 1 + data[pos]])
                pos += 1 + data[pos]
            pos += 1
            if label == 0xFF and blocks and blocks[0] == _GIF_APP_ID and len(blocks) > 1:
                info = json.loads(blocks[1])
                return float(info["fps"]), int(info["frames"])
    except (IndexError, ValueError, KeyError, TypeError):
        logger.debug("unreadable aigc GIF extension", exc_info=True)
    return None


def _gif_duration_ms(fps: float) -> int:
    return max(10, round(100 / fps) * 10)


def _encode_animation(
    frames: np.ndarray[Any, Any], fps: float, target: Path | io.BytesIO, fmt: str, record: str | None
) -> bool:
    """Encode an animated GIF or WebP; return whether ``record`` was embedded."""
    images = [Image.fromarray(f) for f in frames]
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "loop": 0}
    if fmt == "GIF":
        options["duration"] = _gif_duration_ms(fps)
        if record is not None:
            options["comment"] = record.encode("utf-8")
        buf = io.BytesIO()
        images[0].save(buf, format="GIF", **options)
        data = _add_gif_clip_info(buf.getvalue(), fps, len(images))
        if isinstance(target, io.BytesIO):
            target.write(data)
        else:
            target.write_bytes(data)
        return record is not None
    options.update(duration=max(1, round(1000 / fps)), lossless=True, exact=True, xmp=_xmp(fps, len(images)))
    if record is not None:
        options["exif"] = exif_with_record(record).tobytes()
    images[0].save(target, format="WEBP", **options)
    return record is not None


def _load_animation(source: Path | io.BytesIO, *, max_frames: int | None = None) -> tuple[np.ndarray[Any, Any], float]:
    """Frames and frame rate of a GIF or WebP (a file, or bytes in memory), repeated frames unfolded; with
    ``max_frames``, a clip that would unfold to more frames raises ``InvalidRequest("max_frames", count, ...)``
    before the frames are repeated."""
    path = source if isinstance(source, Path) else "<in memory>"
    frames: list[np.ndarray[Any, Any]] = []
    durations: list[float] = []
    with Image.open(source) as im:
        is_gif = im.format == "GIF"
        xmp = im.info.get("xmp")
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(float(im.info.get("duration") or 0))
    data = source.read_bytes() if isinstance(source, Path) else source.getvalue()
    clip_info = _gif_clip_info(data) if is_gif else _xmp_clip_info(xmp)
    positive = [d for d in durations if d > 0]
    if clip_info is not None:
        fps = clip_info[0]
        base = float(_gif_duration_ms(fps)) if is_gif else 1000 / fps  # the duration as stored
    elif positive:
        base = min(positive)
        fps = 1000 / base
    else:
        logger.debug("%s has no frame durations; assuming 10 fps", path)
        base, fps = 100.0, 10.0
    # The encoders fold repeated frames into one frame lasting several frame times: unfold them.
    counts = [max(1, round(d / base)) if d > 0 else 1 for d in durations]
    if clip_info is not None and len(frames) == 1:
        # A still clip folds into one frame (which libwebp stores as a still image, without a duration).
        counts = [max(1, clip_info[1])]
    if max_frames is not None and sum(counts) > max_frames:
        raise InvalidRequest("max_frames", sum(counts), f"the clip unfolds to more than {max_frames} frames",
                             "pass a shorter clip")
    expanded = np.repeat(np.stack(frames), counts, axis=0)
    if clip_info is not None and clip_info[1] != len(expanded):
        logger.debug("%s: %d frames after unfolding, %d saved", path, len(expanded), clip_info[1])
    return expanded, fps


# -------------------------------------------------------------------------------------------- folder


def _frame_files(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for p in folder.iterdir():
        m = _FRAME_RE.fullmatch(p.name)
        if m is not None and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _save_folder(frames: np.ndarray[Any, Any], fps: float, folder: Path, record: str | None) -> list[Path]:
    """Build the whole clip (frames and ``record.json``) in a temporary folder, then swap it in: a reader sees
    the old clip or the new one, never frames of one under the record of the other."""
    if folder.is_dir():
        foreign = sorted(e.name for e in os.scandir(folder) if not _replaceable(e.name))
        if foreign:
            listing = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise InvalidRequest("path", str(folder), f"the folder holds files that are not part of a saved clip "
                                 f"({listing}), and saving a clip replaces the whole folder",
                                 "save into a new or empty folder, or into one holding only a saved clip")
    info = PngInfo()
    info.add_text(FPS_KEY, repr(fps))
    with atomic_directory(folder) as tmp:
        for i, array in enumerate(frames):
            Image.fromarray(array).save(tmp / f"frame-{i:05d}.png", format="PNG", pnginfo=info)
        if record is not None:
            (tmp / RECORD_FILE).write_text(record, encoding="utf-8")
    written = [folder / f"frame-{i:05d}.png" for i in range(len(frames))]
    return written + ([folder / RECORD_FILE] if record is not None else [])


def decode_mp4(data: bytes, *, max_frames: int | None = None,
               max_pixels: int | None = None) -> tuple[np.ndarray[Any, Any], float]:
    """An MP4 in memory as :func:`load_video` reads the file: uint8 ``(T, H, W, 3)`` frames and the frame rate (0
    where the stream names none).

    Raises:
        InvalidRequest: ``field == "max_pixels"`` for larger frames (before decoding), ``"max_frames"`` for a
            longer clip (decoding stops there).
        BackendUnavailable: PyAV is not installed.
    """
    return _load_mp4(io.BytesIO(data), max_frames=max_frames, max_pixels=max_pixels)


def decode_animation(data: bytes, *, max_frames: int | None = None) -> tuple[np.ndarray[Any, Any], float]:
    """A GIF or animated WebP in memory as :func:`load_video` reads the file: uint8 ``(T, H, W, 3)`` frames (repeated
    frames unfolded, aigc's own frame rate and count honoured) and the frame rate.

    Raises:
        InvalidRequest: ``field == "max_frames"`` when the clip would unfold to more than ``max_frames`` frames.
    """
    return _load_animation(io.BytesIO(data), max_frames=max_frames)


def is_saved_clip(folder: Path) -> bool:
    """Whether ``folder`` is a clip saved as a folder: ``frame-NNNNN.png`` files and its ``record.json``."""
    return folder.is_dir() and (folder / RECORD_FILE).is_file() and bool(_frame_files(folder))


def gif_bytes(frames: np.ndarray[Any, Any], fps: float) -> bytes:
    """``frames`` (T, H, W, 3) uint8 as an animated GIF at ``fps``, in memory, without a record -- encoded as
    :func:`save_video` encodes a ``.gif``."""
    buf = io.BytesIO()
    _encode_animation(check_frames(frames), check_fps(fps), buf, "GIF", None)
    return buf.getvalue()


def _replaceable(name: str) -> bool:
    """A file a saved clip folder may hold: frames, the record, and temporaries of earlier aigc versions."""
    return bool(_FRAME_RE.fullmatch(name)) or name == RECORD_FILE or bool(_OLD_PART_RE.fullmatch(name))


def _load_folder(folder: Path) -> tuple[np.ndarray[Any, Any], float]:
    files = _frame_files(folder)
    if not files:
        raise InvalidRequest(
            "path", str(folder), "the folder holds no frame-NNNNN.png files", "pass a saved clip"
        )
    frames = []
    fps_text = None
    for _, p in files:
        with Image.open(p) as im:
            if fps_text is None:
                fps_text = im.info.get(FPS_KEY)
            frames.append(np.asarray(im.convert("RGB")))
    if fps_text is None:
        raise InvalidRequest(
            "path",
            str(folder),
            f"the frames carry no {FPS_KEY} text chunk, so the frame rate is unknown",
            "load the PNG frames with Pillow and supply the frame rate yourself",
        )
    return np.stack(frames), float(fps_text)


# ---------------------------------------------------------------------------------------------- API


def _write_file(
    frames: np.ndarray[Any, Any], fps: float, kind: str, target: Path, record: str | None
) -> bool:
    if kind == "mp4":
        return _encode_mp4(frames, fps, str(target), record)
    return _encode_animation(frames, fps, target, "GIF" if kind == "gif" else "WEBP", record)


def save_video(
    frames: np.ndarray[Any, Any], fps: float, path: str | os.PathLike[str], record: str | None, *,
    finish: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Save a clip atomically with its provenance record; the format follows the suffix.

    Args:
        frames: uint8 RGB frames, ``(frames, height, width, 3)``.
        fps: frames per second.
        path: ``.mp4``, ``.gif``, ``.webp``, or a name without a suffix for a folder of PNG frames.
        record: the provenance record (JSON text), or ``None``.
        finish: called with the written temporary file before it replaces ``path`` (C2PA signing; not for folders).

    Returns:
        The paths written: the file and its ``.json`` sidecar if the record needed one; for a folder,
        every frame file and ``record.json``.

    Raises:
        InvalidRequest: unsupported suffix, bad frames or frame rate.
        BackendUnavailable: ``.mp4`` without PyAV installed.

    Example:
        >>> save_video(np.zeros((8, 32, 32, 3), np.uint8), 8, Path("clip.mp4"), None)  # doctest: +SKIP
        [PosixPath('clip.mp4')]
    """
    path = Path(path)
    kind = _video_kind(path)
    data = check_frames(frames)
    rate = check_fps(fps)
    if kind == "folder":
        return _save_folder(data, rate, path, record)
    if kind == "mp4":
        _import_av("saving")
    with save_with_record(path, record) as pending:
        pending.embedded = _write_file(data, rate, kind, pending.tmp, record)
        if pending.embedded and read_video_record(pending.tmp) != record:
            logger.info("the record did not read back from %s; moving it to a sidecar", path.name)
            pending.embedded = _write_file(data, rate, kind, pending.tmp, None)
        if finish is not None:
            finish(pending.tmp)
    return pending.written


def load_video(path: str | os.PathLike[str]) -> tuple[np.ndarray[Any, Any], float]:
    """Read a clip saved by :func:`save_video` as uint8 ``(frames, height, width, 3)`` and its frame rate.

    Raises:
        InvalidRequest: unsupported suffix, or a folder without frames.
        BackendUnavailable: ``.mp4`` without PyAV installed.
        OSError: the file is missing or cannot be decoded.

    Example:
        >>> frames, fps = load_video("clip.gif")  # doctest: +SKIP
    """
    p = Path(path)
    kind = _video_kind(p)
    if kind == "folder":
        if not p.is_dir():
            raise FileNotFoundError(f"{path}: no such folder")
        return _load_folder(p)
    if kind == "mp4":
        return _load_mp4(p)
    return _load_animation(p)


def read_video_record(path: str | os.PathLike[str]) -> str | None:
    """The record embedded in a video file (or a frame folder's ``record.json``), or ``None``.

    Sidecars are not consulted.

    Raises:
        InvalidRequest: unsupported suffix.
        BackendUnavailable: ``.mp4`` without PyAV installed.
        OSError: the file is missing or cannot be decoded.
    """
    p = Path(path)
    kind = _video_kind(p)
    if kind == "folder":
        record_file = p / RECORD_FILE
        return record_file.read_text(encoding="utf-8") if record_file.is_file() else None
    if kind == "mp4":
        av = _import_av("reading")
        with av.open(str(p)) as container:
            value = container.metadata.get("comment")
        return str(value) if value else None
    with Image.open(p) as im:
        if im.format == "GIF":
            comment = im.info.get("comment")
            if isinstance(comment, bytes):
                return comment.decode("utf-8", errors="replace") or None
            return str(comment) if comment else None
        return exif_record(im)


def _display_size(height: int, width: int) -> str:
    side = max(height, width)
    scale = 1 if side >= _MIN_DISPLAY else math.ceil(_MIN_DISPLAY / side)
    return f"width='{width * scale}' height='{height * scale}' style='image-rendering:pixelated'"


def video_html(frames: np.ndarray[Any, Any], fps: float) -> str:
    """An inline HTML player for a clip: a looping ``<video>`` (H.264 MP4), or an animated WebP without PyAV.

    Raises:
        InvalidRequest: bad frames or frame rate.

    Example:
        >>> video_html(np.zeros((8, 32, 32, 3), np.uint8), 8)[:6]  # doctest: +SKIP
        '<video'
    """
    data = check_frames(frames)
    rate = check_fps(fps)
    _, height, width, _ = data.shape
    buf = io.BytesIO()
    try:
        _encode_mp4(data, rate, buf, None)
    except BackendUnavailable:
        buf = io.BytesIO()
        _encode_animation(data, rate, buf, "WEBP", None)
        encoded = base64.b64encode(buf.getvalue()).decode("ascii")
        return f"<img src='data:image/webp;base64,{encoded}' {_display_size(height, width)} alt='video'>"
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    size = _display_size(height + height % 2, width + width % 2)  # the MP4 is padded to even sizes
    return (
        f"<video controls autoplay loop muted playsinline {size}"
        f" src='data:video/mp4;base64,{encoded}'></video>"
    )
