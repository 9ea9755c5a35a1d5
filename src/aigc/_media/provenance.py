"""Provenance sidecars: ``<file name>.json`` beside a file whose format cannot hold the record.

Every saver embeds the record in the file's own metadata when the format can hold it, and otherwise
writes a sidecar next to it named after the whole file name (``a.jpg`` -> ``a.jpg.json``).
:func:`aigc._media.records.read_record` reads either, so callers never need to know which one a format uses.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aigc._media.atomic import atomic_write_text, commit, temporary_sibling
from aigc.errors import ProvenanceError

__all__ = ["SIDECAR_FORMAT", "PendingSave", "read_sidecar", "save_with_record", "sidecar_path"]

SIDECAR_FORMAT = "aigc.sidecar/1"

logger = logging.getLogger(__name__)



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
