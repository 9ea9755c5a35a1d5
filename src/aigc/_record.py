"""The provenance record: how a result was made, enough to make it again. No torch at import.

It sits below the result types (which carry one), the savers and the local record store, so each of them can use
it without importing the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from aigc._types import IN_MEMORY, MAX_SEED, MODALITIES, REQUEST_TYPES, Modality, Request, check_modality
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.limits import exceeded

__all__ = ["MAX_RECORD_DEPTH", "RECORD_FORMAT", "Record"]

RECORD_FORMAT = "aigc.record/1"

@dataclass(frozen=True, kw_only=True)
class Record:
    """Provenance of a result: enough to know how it was made, and to make it again.

    ``sample_index`` is set on the record embedded in one saved sample's file; :meth:`to_request`
    then rebuilds the request for just that sample. ``sampler`` is the version of aigc's sampling core that
    drew the random numbers (:func:`aigc.sampling.sampler_version`); ``None`` marks a record from before the field
    existed, made by version 1. ``postprocess`` lists the steps applied to the
    generated result before it was saved (e.g. ``{"op": "resample", "sample_rate": 44100}``), in order;
    :func:`aigc.replay` applies them again. ``watermarks`` has one entry per sample: the watermark it carries
    (``{"method": ..., "key": ...}``, the key indexing the local record store) or ``None``; an empty list marks
    a record from before the field existed (no watermark). ``flags`` has, per sample, what a safety checker
    reported (``["nsfw"]``); empty when none ran.

    Example:
        >>> rec = Record.from_json(result.record.to_json())  # doctest: +SKIP
    """

    modality: Modality
    backend: str
    model: str
    request: dict[str, Any]
    seeds: list[int]
    device: str
    dtype: str
    revision: str | None = None
    weights: str | None = None
    duration_s: float = 0.0
    created: str = ""
    aigc_version: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    sample_index: int | None = None
    postprocess: list[dict[str, Any]] = field(default_factory=list)
    sampler: int | None = None
    watermarks: list[dict[str, Any] | None] = field(default_factory=list)
    flags: list[list[str]] = field(default_factory=list)
    format: str = RECORD_FORMAT

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Record:
        """Parse a record written by :meth:`to_json`.

        A record is data from a stranger: every field's type is checked, and nesting deeper than
        :data:`MAX_RECORD_DEPTH` is refused, so a malformed record fails here with one error type.

        Raises:
            ProvenanceError: not JSON, not an aigc record, a missing field, a field of the wrong type, or too
                deeply nested.
        """
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as e:
            raise ProvenanceError(f"not an aigc record: {e}") from None
        except RecursionError:
            raise ProvenanceError(f"not an aigc record: JSON nested deeper than {MAX_RECORD_DEPTH} levels") from None
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            raise ProvenanceError(f"not an aigc record (format {RECORD_FORMAT!r} expected)")
        _check_depth(data)
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in known.items() if name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ProvenanceError(f"incomplete aigc record: no {', '.join(missing)}")
        fields = {k: v for k, v in data.items() if k in known}
        for name, value in fields.items():
            _check_record_field(name, value)
        return cls(**fields)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Record:
        """Read the record embedded in a saved file (PNG, WebP, JPEG, WAV, FLAC, MP4, GIF, JSON, ...).

        Raises:
            ProvenanceError: no such file, or it (and its ``.json`` sidecar) holds no aigc record.

        Example:
            >>> aigc.Record.from_file("boots-0.png").seeds  # doctest: +SKIP
            [7, 8, 9, 10]
        """
        from aigc._media.records import read_record

        try:
            return cls.from_json(read_record(path))
        except ProvenanceError as e:
            message = str(e)
            raise ProvenanceError(message if os.fspath(path) in message else f"{os.fspath(path)}: {message}") from None

    def for_sample(self, index: int) -> Record:
        return dataclasses.replace(self, sample_index=index)

    def watermark(self, index: int | None = None) -> dict[str, Any] | None:
        """The watermark of sample ``index`` (default: this record's ``sample_index``, else 0), or ``None``.

        Example:
            >>> aigc.Record.from_file("boot.png").watermark()  # doctest: +SKIP
            {'key': '1f2e3d4c', 'method': 'aigc.image.dct-qim/1'}
        """
        i = index if index is not None else (self.sample_index or 0)
        return self.watermarks[i] if 0 <= i < len(self.watermarks) else None

    def to_request(self) -> Request:
        """The request that made this result (or, with ``sample_index``, that one sample of it).

        The request is checked like any other, bounds (:mod:`aigc.limits`) included, before anything loads.

        Raises:
            ProvenanceError: the record's request cannot be rebuilt, or is above a bound.
        """
        try:
            request_type = REQUEST_TYPES[check_modality(self.modality)]
            exceeded("seeds", f"<{len(self.seeds)} seeds>", len(self.seeds), "max_samples", "samples in the record")
        except InvalidRequest as e:
            raise ProvenanceError(f"the record cannot be replayed: {e}") from None
        params = dict(self.request)
        for name, value in params.items():
            if isinstance(value, dict) and IN_MEMORY in value:
                raise ProvenanceError(f"the record's {name} was passed in memory ({value[IN_MEMORY]}), "
                                      f"which a record cannot hold. Fix: save it and pass {name}= the file's path")
        params = {k: v for k, v in params.items() if k in request_type.field_names()}
        # The watermark and the safety mode are output-defining: replay makes what the record says was made.
        # A record from before they existed had no watermark, and diffusers blanked flagged images.
        marks = self.watermarks if self.sample_index is None else [self.watermark()]
        params["watermark"] = any(m is not None for m in marks)
        if self.modality == "image" and "safety" not in self.request and self.backend == "diffusers":
            params["safety"] = "blank"
        try:
            full = request_type(**params)
        except (InvalidRequest, TypeError) as e:
            raise ProvenanceError(f"the record's request cannot be rebuilt: {e}") from None
        if self.sample_index is None:
            return full.replace(seed=list(self.seeds), num_outputs=full.samples_per_prompt)
        i = self.sample_index
        if not 0 <= i < len(self.seeds):
            raise ProvenanceError(f"sample_index {i} outside the record's {len(self.seeds)} seeds")
        prompt = full.prompts()[i // full.samples_per_prompt]
        return full.replace(prompt=prompt, seed=self.seeds[i], num_outputs=1)


#: Deepest nesting of lists and objects a record may have (a request holds chat messages: 4 levels).
MAX_RECORD_DEPTH = 32
_OPTIONAL_STR = ("revision", "weights")
_STR_FIELDS = ("backend", "model", "device", "dtype", "created", "aigc_version", "format")
_DICT_FIELDS = ("request", "versions", "options")
_MAX_FLAG_CHARS = 64


def _check_depth(data: Any) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > MAX_RECORD_DEPTH:
            raise ProvenanceError(f"not an aigc record: nested deeper than {MAX_RECORD_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_record_field(name: str, value: Any) -> None:
    """One field of a parsed record has the type :class:`Record` declares."""
    if name == "modality":
        ok = value in MODALITIES
    elif name in _STR_FIELDS:
        ok = isinstance(value, str)
    elif name in _OPTIONAL_STR:
        ok = value is None or isinstance(value, str)
    elif name in _DICT_FIELDS:
        ok = isinstance(value, dict)
    elif name == "seeds":
        ok = isinstance(value, list) and bool(value) and all(_is_int(s) and 0 <= s <= MAX_SEED for s in value)
    elif name == "duration_s":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif name == "sample_index":
        ok = value is None or (_is_int(value) and value >= 0)
    elif name == "sampler":
        ok = value is None or (_is_int(value) and value >= 1)
    elif name == "postprocess":
        ok = isinstance(value, list) and all(isinstance(step, dict) for step in value)
    elif name == "watermarks":
        ok = isinstance(value, list) and all(
            m is None or (isinstance(m, dict) and isinstance(m.get("method"), str) and isinstance(m.get("key"), str))
            for m in value)
    elif name == "flags":
        ok = isinstance(value, list) and all(
            isinstance(f, list) and all(isinstance(x, str) and len(x) <= _MAX_FLAG_CHARS for x in f) for f in value)
    else:
        ok = True
    if not ok:
        shown = repr(value)
        raise ProvenanceError(f"malformed aigc record: {name}={shown[:80] + ('...' if len(shown) > 80 else '')} "
                              f"is not what a record holds there")
