"""Find the aigc provenance record of a saved file, and manage ``<file name>.json`` sidecars.

Every saver embeds the record in the file's own metadata when the format can hold it, and otherwise
writes a sidecar next to it named after the whole file name (``a.jpg`` -> ``a.jpg.json``).
:func:`read_record` reads either, so callers never need to know which one a format uses.

A file and its sidecar are two files, so no single rename replaces both. The sidecar therefore names the file
content each record belongs to (its SHA-256), and a save runs in three steps: (1) the sidecar gains the new
record beside the old one, (2) the new file replaces the old one, (3) the old record is dropped. A reader picks
the record whose digest matches the file, so a save killed at any point leaves the old file with its record or
the new file with its record, never one file with the other's record::

    {"format": "aigc.sidecar/1", "records": [{"sha256": "...", "record": "<the record's JSON text>"}]}

A sidecar that is a bare record (written by aigc before 0.2) is read as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aigc._media.atomic import atomic_write_text, commit, temporary_sibling
from aigc.errors import ProvenanceError

__all__ = ["PendingSave", "read_own_record", "read_record", "read_sidecar", "save_with_record", "sidecar_path"]

SIDECAR_FORMAT = "aigc.sidecar/1"

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def _sidecar_entries(sidecar: Path) -> list[dict[str, str]] | None:
    """The records of an ``aigc.sidecar/1`` file, or ``None`` when it is not one (a bare record, or garbage)."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or not isinstance(data.get("records"),
                                                                                             list):
        return None
    return [e for e in data["records"] if isinstance(e, dict) and isinstance(e.get("sha256"), str)
            and isinstance(e.get("record"), str)]


def _write_sidecar(sidecar: Path, entries: list[dict[str, str]]) -> None:
    atomic_write_text(sidecar, json.dumps({"format": SIDECAR_FORMAT, "records": entries}, ensure_ascii=False))


@dataclass
class PendingSave:
    """A save in progress (see :func:`save_with_record`).

    Attributes:
        tmp: write the file here.
        embedded: set it to ``True`` when the file itself holds the record.
        written: after the ``with`` block, the paths written (the file, and its sidecar if it needed one).
    """

    tmp: Path
    embedded: bool = False
    written: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def save_with_record(path: str | os.PathLike[str], record: str | None) -> Iterator[PendingSave]:
    """Write a file and its record all-or-nothing: the record embedded, or in a sidecar bound to the content.

    Write the file to ``pending.tmp`` inside the block and set ``pending.embedded``; on leaving the block the
    file replaces ``path`` and the sidecar is written, updated or removed in the crash-safe order described
    in this module's docstring. If the block raises, nothing changes.

    Example:
        >>> with save_with_record("a.txt", record) as pending:  # doctest: +SKIP
        ...     pending.tmp.write_text("Once upon a time")
        >>> pending.written  # doctest: +SKIP
        [PosixPath('a.txt'), PosixPath('a.txt.json')]
    """
    final = Path(path)
    sidecar = sidecar_path(final)
    with temporary_sibling(final) as tmp:
        pending = PendingSave(tmp)
        yield pending
        if record is None or pending.embedded:
            commit(tmp, final)  # the file carries its own record (or none): an old sidecar must not describe it
            if sidecar.is_file():
                logger.info("removing stale provenance sidecar %s", sidecar)
                with contextlib.suppress(FileNotFoundError):
                    sidecar.unlink()
            pending.written = [final]
            return
        logger.info("%s cannot hold the provenance record; writing %s", final.name, sidecar.name)
        new = {"sha256": _sha256(tmp), "record": record}
        old = _current_entry(final, sidecar)
        keep = [old] if old is not None and old["sha256"] != new["sha256"] else []
        _write_sidecar(sidecar, [new, *keep])  # 1. both records: the old file still finds its own
        commit(tmp, final)  # 2. the new file, which finds the new record
        if keep:
            _write_sidecar(sidecar, [new])  # 3. only the new record
        pending.written = [final, sidecar]


def _current_entry(final: Path, sidecar: Path) -> dict[str, str] | None:
    """The record the existing ``final`` has in its sidecar (to keep it readable during a save), if any."""
    if not final.is_file() or not sidecar.is_file():
        return None
    entries = _sidecar_entries(sidecar)
    digest = _sha256(final)
    if entries is None:  # a bare record from an older aigc: it belongs to the file as it is
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return {"sha256": digest, "record": sidecar.read_text(encoding="utf-8")}
        return None
    return next((e for e in entries if e["sha256"] == digest), None)


def read_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The record in ``path``'s sidecar that belongs to ``path`` as it is now, or ``None`` when there is none.

    Raises:
        ProvenanceError: the sidecar holds records of other versions of the file only (it changed after it
            was saved).
    """
    p = Path(path)
    sidecar = sidecar_path(p)
    if not sidecar.is_file():
        return None
    entries = _sidecar_entries(sidecar)
    if entries is None:
        return sidecar.read_text(encoding="utf-8")
    if not p.is_file():
        raise ProvenanceError(f"{p}: no such file (its sidecar {sidecar.name} is there)")
    digest = _sha256(p)
    for entry in entries:
        if entry["sha256"] == digest:
            return entry["record"]
    raise ProvenanceError(f"{p}: its sidecar {sidecar.name} holds the record of another version of the file (the "
                          "file changed after aigc saved it), so it has no record")


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
