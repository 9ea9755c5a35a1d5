"""Find the aigc provenance record of a saved file, and manage ``<file name>.json`` sidecars.

Every saver embeds the record in the file's own metadata when the format can hold it, and otherwise
writes a sidecar next to it named after the whole file name (``a.jpg`` -> ``a.jpg.json``).
:func:`read_record` reads either, so callers never need to know which one a format uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from aigc._media.atomic import atomic_write_text
from aigc.errors import ProvenanceError

__all__ = ["read_record", "read_sidecar", "sidecar_path", "store_sidecar"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = frozenset({".png", ".webp", ".jpg", ".jpeg"})
_AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
_VIDEO_SUFFIXES = frozenset({".mp4", ".gif", ".webp"})
# Errors a decoder raises on a damaged or foreign file: PIL (OSError, SyntaxError), soundfile
# (RuntimeError), PyAV (OSError, ValueError).
_DECODE_ERRORS = (OSError, ValueError, RuntimeError, SyntaxError)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The sidecar file that holds ``path``'s record when its format cannot.

    Example:
        >>> sidecar_path("out/a.jpg").as_posix()
        'out/a.jpg.json'
    """
    p = Path(path)
    return p.with_name(p.name + ".json")


def store_sidecar(path: Path, record: str | None, *, embedded: bool) -> list[Path]:
    """Finish a save: write the sidecar when a record exists but was not embedded.

    A sidecar left over from an earlier save under the same name is removed otherwise, so it
    cannot be mistaken for the new file's provenance.

    Args:
        path: the media file just written.
        record: its record (JSON text), or ``None``.
        embedded: whether the file itself holds the record.

    Returns:
        ``[path]``, plus the sidecar's path when one was written.
    """
    sidecar = sidecar_path(path)
    if record is not None and not embedded:
        logger.info("%s cannot hold the provenance record; writing %s", path.name, sidecar.name)
        return [path, atomic_write_text(sidecar, record)]
    if sidecar.is_file():
        logger.info("removing stale provenance sidecar %s", sidecar)
        with contextlib.suppress(FileNotFoundError):
            sidecar.unlink()
    return [path]


def read_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The text of ``path``'s sidecar, or ``None`` when there is none."""
    sidecar = sidecar_path(path)
    return sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None


def _json_record(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and "aigc" in data:
        value = data["aigc"]
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text


def _readers(suffix: str) -> list[Callable[[Path], str | None]]:
    # Imported here: reading a PNG record must not import PyAV, and these modules import this one.
    from aigc._media import audio, image, video

    readers: list[Callable[[Path], str | None]] = []
    if suffix in _IMAGE_SUFFIXES:
        readers.append(image.read_image_record)
    if suffix in _AUDIO_SUFFIXES:
        readers.append(audio.read_audio_record)
    if suffix in _VIDEO_SUFFIXES:
        readers.append(video.read_video_record)
    if suffix == ".json":
        readers.append(_json_record)
    return readers


def read_record(path: str | os.PathLike[str]) -> str:
    """Return the aigc provenance record (JSON text) of a file saved by aigc.

    The reader is chosen by suffix: PNG/WebP/JPEG images, WAV/FLAC/OGG audio, MP4/GIF/WebP video,
    a ``.json`` text result (its ``"aigc"`` entry), a ``.txt`` text result (its sidecar) or a folder of
    video frames (its ``record.json``). When the file holds no record, its ``<file name>.json``
    sidecar is used.

    Args:
        path: the saved file or frame folder.

    Returns:
        The record as JSON text; parse it with ``aigc.Record.from_json``.

    Raises:
        ProvenanceError: the file does not exist, or neither it nor a sidecar holds a record.

    Example:
        >>> read_record("boot.png")  # doctest: +SKIP
        '{"aigc_version": "0.1.0", ...}'
    """
    p = Path(path)
    if not p.exists():
        raise ProvenanceError(f"{path}: no such file")
    if p.is_dir():
        record_file = p / "record.json"
        if record_file.is_file():
            return record_file.read_text(encoding="utf-8")
        raise ProvenanceError(f"{path}: the folder has no record.json, so it carries no aigc record")
    problem: Exception | None = None
    for reader in _readers(p.suffix.lower()):
        try:
            record = reader(p)
        except _DECODE_ERRORS as e:
            logger.debug("reading the record embedded in %s failed: %s", p, e)
            problem = e
            continue
        if record is not None:
            return record
    sidecar = read_sidecar(p)
    if sidecar is not None:
        return sidecar
    detail = f" (the file could not be read: {problem})" if problem is not None else ""
    raise ProvenanceError(
        f"{path}: no aigc record in the file and no {sidecar_path(p).name} sidecar beside it{detail}"
    )
