"""Find the aigc provenance record of a saved file, whatever its format: embedded in the file's metadata, in a
frame folder's ``record.json``, or in its ``<file name>.json`` sidecar.

This module sits above the savers (image, audio, video), which sit above :mod:`aigc._media.provenance`
(sidecars): the reader imports the savers, never the other way round.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from aigc._media.provenance import SIDECAR_FORMAT, read_sidecar, sidecar_path
from aigc.errors import ProvenanceError

__all__ = ["read_own_record", "read_record"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = frozenset({".png", ".webp", ".jpg", ".jpeg"})
_AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
_VIDEO_SUFFIXES = frozenset({".mp4", ".gif", ".webp"})
# Errors a decoder raises on a damaged or foreign file: PIL (OSError, SyntaxError), soundfile
# (RuntimeError), PyAV (OSError, ValueError).
_DECODE_ERRORS = (OSError, ValueError, RuntimeError, SyntaxError)


def _json_record(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT and path.name.endswith(".json"):
        return read_sidecar(path.with_name(path.name[: -len(".json")]))  # a sidecar, read for its file
    if isinstance(data, dict) and "aigc" in data:
        value = data["aigc"]
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text


def _readers(suffix: str) -> list[Callable[[Path], str | None]]:
    # Imported here: reading a PNG record must not import PyAV (video) or soundfile (audio).
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


def _c2pa_record(path: Path) -> str | None:
    """The record in a file's C2PA manifest (assertion ``org.aigc.record``), when c2pa-python is installed and
    the manifest validates; ``None`` otherwise."""
    from aigc.provenance.c2pa import MIME_TYPES, read_manifest

    if path.suffix.lower() not in MIME_TYPES:
        return None
    try:
        manifest = read_manifest(path)
    except ImportError:  # BackendUnavailable: no c2pa-python, so no manifest to read
        return None
    if manifest is None or manifest.record is None:
        return None
    if not manifest.valid:
        logger.warning("%s: its C2PA manifest does not validate (%s); not using its record", path,
                       ", ".join(manifest.failures))
        return None
    return manifest.record


def read_record(path: str | os.PathLike[str]) -> str:
    """Return the aigc provenance record (JSON text) of a file saved by aigc: :func:`read_own_record`, else the
    record in the file's C2PA manifest (if c2pa-python is installed and the manifest validates).

    Raises:
        ProvenanceError: the file does not exist, or neither it, a sidecar nor a C2PA manifest holds a record.

    Example:
        >>> read_record("boot.png")  # doctest: +SKIP
        '{"aigc_version": "0.1.0", ...}'
    """
    try:
        return read_own_record(path)
    except ProvenanceError:
        p = Path(path)
        manifest = _c2pa_record(p) if p.is_file() else None
        if manifest is not None:
            return manifest
        raise


def read_own_record(path: str | os.PathLike[str]) -> str:
    """Return the aigc provenance record (JSON text) of a file saved by aigc.

    The reader is chosen by suffix: PNG/WebP/JPEG images, WAV/FLAC/OGG audio, MP4/GIF/WebP video,
    a ``.json`` text result (its ``"aigc"`` entry), a ``.txt`` text result (its sidecar) or a folder of
    video frames (its ``record.json``). When the file holds no record, its ``<file name>.json``
    sidecar is used. :func:`read_record` also looks in the file's C2PA manifest.

    Args:
        path: the saved file or frame folder.

    Returns:
        The record as JSON text; parse it with ``aigc.Record.from_json``.

    Raises:
        ProvenanceError: the file does not exist, or neither it nor a sidecar holds a record.

    Example:
        >>> read_own_record("boot.png")  # doctest: +SKIP
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
