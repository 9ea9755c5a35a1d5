"""Provenance that survives sharing: C2PA content credentials, the local record store, and :func:`verify`.

- :mod:`aigc.provenance.c2pa`: sign saved files with a C2PA manifest (:class:`Credentials`,
  :func:`init_credentials`, :func:`set_default_credentials`) and read any file's manifest (:func:`read_manifest`);
- :mod:`aigc.provenance.store`: the records of watermarked samples, by watermark key (:class:`RecordStore`);
- :func:`verify` (also ``aigc.verify``): metadata, C2PA and watermark of one file.

The watermarks themselves are in :mod:`aigc.watermark` (images, audio, video) and :mod:`aigc.sampling.watermark`
(text).

Example:
    >>> from aigc import provenance
    >>> provenance.RecordStore("records").keys()
    []
"""

from aigc.provenance.c2pa import (
    Credentials,
    Manifest,
    default_credentials,
    init_credentials,
    read_manifest,
    set_default_credentials,
)
from aigc.provenance.store import RecordStore, StoredRecord, default_store
from aigc.provenance.verify import Verification, WatermarkCheck, verify

__all__ = [
    "Credentials",
    "Manifest",
    "RecordStore",
    "StoredRecord",
    "Verification",
    "WatermarkCheck",
    "default_credentials",
    "default_store",
    "init_credentials",
    "read_manifest",
    "set_default_credentials",
    "verify",
]
