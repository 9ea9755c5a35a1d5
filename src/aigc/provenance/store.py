"""The local record store: where a watermark's key leads back to the record of the file that carries it.

A watermark carries a short key, not the record (which is far too long to hide in pixels or samples). Each time
``save`` writes a watermarked sample, its record goes into this store under the key, so that :func:`aigc.verify`
can find the record of a copy that lost its metadata (a screenshot, a re-encode, a platform that strips tags).

Layout: ``<store>/<key>/<sha256 of the record>.json``, one small JSON file per record, written atomically; a key
may lead to several records (the same request run twice, or two text samples from the same seed). The store is
``$AIGC_RECORD_STORE`` if set (``off`` turns it off), else ``$XDG_DATA_HOME/aigc/records`` (by default
``~/.local/share/aigc/records``). Nothing leaves the machine.

Example:
    >>> store = RecordStore("records")  # doctest: +SKIP
    >>> [r.seeds for r in store.find("1f2e3d4c")]  # doctest: +SKIP
    [[7]]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aigc._record import Record
from aigc.errors import ProvenanceError

__all__ = ["RecordStore", "StoredRecord", "default_store"]

logger = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{8,16}")
_ENV = "AIGC_RECORD_STORE"


@dataclass(frozen=True)
class StoredRecord:
    """One entry: the record of one saved sample, and the SHA-256 of the text it made (text samples)."""

    key: str
    record: Record
    text_sha256: str | None = None


class RecordStore:
    """A folder of records indexed by watermark key (module docstring).

    Args:
        root: the folder (made on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"RecordStore({os.fspath(self.root)!r})"

    def add(self, key: str, record: Record, *, text: str | None = None) -> Path:
        """Remember ``record`` (one sample's) under ``key``; return the file written. Idempotent.

        Raises:
            ValueError: ``key`` is not 8-16 lowercase hex digits.
        """
        from aigc._media.atomic import atomic_write_text

        if not _KEY.fullmatch(key):
            raise ValueError(f"not a watermark key: {key!r}")
        body = {"key": key, "record": json.loads(record.to_json())}
        if text is not None:
            body["text_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        data = json.dumps(body, ensure_ascii=False, sort_keys=True)
        target = self.root / key / f"{hashlib.sha256(data.encode('utf-8')).hexdigest()[:32]}.json"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(target, data)
        return target

    def find(self, key: str) -> list[StoredRecord]:
        """The records stored under ``key`` (unreadable entries are skipped with a log line)."""
        if not _KEY.fullmatch(key):
            return []
        folder = self.root / key
        return list(self._read(folder)) if folder.is_dir() else []

    def keys(self, *, length: int | None = None) -> list[str]:
        """Every key in the store (only those of ``length`` hex digits, if given: 8 signal keys, 16 text keys)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _KEY.fullmatch(p.name)
                      and (length is None or len(p.name) == length))

    def _read(self, folder: Path) -> Iterator[StoredRecord]:
        for entry in sorted(folder.glob("*.json")):
            try:
                body = json.loads(entry.read_text(encoding="utf-8"))
                record = Record.from_json(json.dumps(body["record"]))
                yield StoredRecord(key=folder.name, record=record, text_sha256=body.get("text_sha256"))
            except (OSError, ValueError, KeyError, TypeError, ProvenanceError) as e:
                logger.warning("skipping unreadable record store entry %s: %s", entry, e)


def default_store() -> RecordStore | None:
    """The store ``save`` writes to and :func:`aigc.verify` reads: ``$AIGC_RECORD_STORE`` (``off``: none), else
    ``$XDG_DATA_HOME/aigc/records``."""
    value = os.environ.get(_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else RecordStore(value)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return RecordStore(os.path.join(base, "aigc", "records"))
