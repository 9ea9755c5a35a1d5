"""``aigc.verify(path)``: what a file says about where it came from, and what it can prove.

Three independent witnesses, each checked on its own:

1. **metadata**: the aigc record in the file's own metadata (PNG text chunk, EXIF, WAV/FLAC comment, MP4 tag) or
   its ``.json`` sidecar -- lost when a platform strips metadata;
2. **C2PA**: the signed manifest, validated by ``c2pa-python`` (signature, hashes of the content, trust) -- any
   C2PA tool reads it, and any edit of the content invalidates it;
3. **watermark**: read from the content itself (pixels, samples, tokens), so it survives re-encoding, resizing and
   metadata stripping; its key finds the record in the local record store (:mod:`aigc.provenance.store`).

The record returned is the first found of: metadata, C2PA manifest, record store (through the watermark's key).

Example:
    >>> report = aigc.verify("boot-shared.jpg")  # doctest: +SKIP
    >>> report.watermark.present, report.record_source  # doctest: +SKIP
    (True, 'store')
    >>> print(report)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc._results import Record
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.watermark._payload import MATCH_AT, PRESENT_AT

if TYPE_CHECKING:
    from aigc.provenance.c2pa import Manifest
    from aigc.provenance.store import RecordStore

__all__ = ["Verification", "WatermarkCheck", "verify"]

logger = logging.getLogger(__name__)

_IMAGE = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
_AUDIO = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"})
_VIDEO = frozenset({".mp4", ".mov", ".m4v", ".gif"})
_TEXT = frozenset({".txt", ".md", ".json"})
_MAX_FRAMES = 32  # frames of a clip the detector reads (evenly spaced)
#: The text detector's false-positive rate, over all the keys it tries (Bonferroni).
TEXT_ALPHA = 1e-3

Source = Literal["metadata", "c2pa", "store"]


@dataclass(frozen=True)
class WatermarkCheck:
    """What the watermark detector found.

    Attributes:
        method: the watermark's name.
        present: whether an aigc watermark is in the content.
        score: images/audio/video: the mean |soft bit| (about 0.64 without a watermark, near 1 with one); text:
            the detector's z-value.
        key: the key it carries (read from the content, or -- text -- the key that scored).
        detail: how the decision was made, in words.
    """

    method: str
    present: bool
    score: float
    key: str | None
    detail: str


@dataclass(frozen=True)
class Verification:
    """The result of :func:`verify`.

    Attributes:
        path: the file.
        metadata: the record in the file's metadata or sidecar, or ``None``.
        c2pa: its C2PA manifest (validated), or ``None``.
        watermark: the watermark check, or ``None`` where it could not run (a format aigc does not read, text
            with no candidate key).
        record: the best record found (see the module docstring), or ``None``.
        record_source: ``"metadata"``, ``"c2pa"``, ``"store"`` or ``None``.
        candidates: every record the store holds for the watermark's key (several where one seed made several
            texts, or one request was run twice).
        notes: anything worth knowing (a record whose watermark key differs from the content's, c2pa-python
            missing, ...).
    """

    path: Path
    metadata: Record | None
    c2pa: Manifest | None
    watermark: WatermarkCheck | None
    record: Record | None
    record_source: Source | None
    candidates: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ai_generated(self) -> bool:
        """Whether any witness says a model made the content."""
        return bool(self.metadata or (self.c2pa and self.c2pa.valid and self.c2pa.ai_generated)
                    or (self.watermark and self.watermark.present))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (what ``aigc verify --json`` prints)."""
        c2pa = None if self.c2pa is None else {
            "state": self.c2pa.state, "valid": self.c2pa.valid, "trusted": self.c2pa.trusted,
            "failures": list(self.c2pa.failures), "generator": self.c2pa.generator, "signer": self.c2pa.signer,
            "ai_generated": self.c2pa.ai_generated, "has_record": self.c2pa.record is not None}
        mark = None if self.watermark is None else {
            "method": self.watermark.method, "present": self.watermark.present, "score": self.watermark.score,
            "key": self.watermark.key, "detail": self.watermark.detail}
        return {"path": str(self.path), "ai_generated": self.ai_generated, "metadata": self.metadata is not None,
                "c2pa": c2pa, "watermark": mark, "record_source": self.record_source,
                "record": json.loads(self.record.to_json()) if self.record else None,
                "candidates": len(self.candidates), "notes": list(self.notes)}

    def __str__(self) -> str:
        lines = [f"{self.path}"]
        lines.append(f"  metadata record: {'present' if self.metadata else 'none'}")
        if self.c2pa is None:
            lines.append("  C2PA manifest:   none")
        else:
            state = f"{self.c2pa.state} ({'signature and hashes check out' if self.c2pa.valid else 'does not validate'}"
            state += ", signer trusted)" if self.c2pa.trusted else ", signer not on a trust list)"
            lines.append(f"  C2PA manifest:   {state}; by {self.c2pa.generator}; signed by {self.c2pa.signer}")
            if self.c2pa.failures:
                lines.append(f"                   failures: {', '.join(self.c2pa.failures)}")
        if self.watermark is None:
            lines.append("  watermark:       not checked")
        else:
            w = self.watermark
            lines.append(f"  watermark:       {'present' if w.present else 'absent'} ({w.detail})")
        if self.record is not None:
            r = self.record
            lines.append(f"  record ({self.record_source}): {r.modality} by {r.backend} {r.model!r}, seeds {r.seeds}, "
                         f"made {r.created or 'at an unknown time'}")
            if len(self.candidates) > 1:
                lines.append(f"                   ({len(self.candidates)} records in the store share this key)")
        else:
            lines.append("  record:          not found")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if path.is_dir():
        return "video"
    if suffix in (".gif", ".webp"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                return "video" if getattr(im, "n_frames", 1) > 1 else "image"
        except (OSError, ValueError):
            return None
    if suffix in _IMAGE:
        return "image"
    if suffix in _AUDIO:
        return "audio"
    if suffix in _VIDEO:
        return "video"
    if suffix in _TEXT:
        return "text"
    return None


def _signal_check(path: Path, kind: str) -> tuple[Any, list[str]]:
    """The :class:`~aigc.watermark._payload.Detection` of an image, audio or video file, or ``None``."""
    import numpy as np

    notes: list[str] = []
    try:
        if kind == "image":
            from PIL import Image

            from aigc.watermark import image

            with Image.open(path) as im:
                im.load()
                if min(im.size) < image.MIN_SIDE:
                    notes.append(f"a {im.width}x{im.height} image is too small to carry the watermark")
                    return None, notes
                return image.detect(im), notes
        if kind == "audio":
            from aigc._media.audio import load_audio
            from aigc.watermark import audio

            wave, rate = load_audio(path)
            if wave.shape[-1] / rate < audio.MIN_S:
                notes.append(f"a {wave.shape[-1] / rate:.2f} s clip is too short to carry the watermark")
                return None, notes
            return audio.detect(wave, rate), notes
        from aigc._media.video import _load_animation, _load_mp4, load_video
        from aigc.watermark import image

        suffix = path.suffix.lower()
        if path.is_dir() or suffix in (".gif", ".webp"):
            frames, _ = load_video(path) if path.is_dir() else _load_animation(path)
        else:
            frames, _ = _load_mp4(path)
        if len(frames) > _MAX_FRAMES:
            frames = frames[np.linspace(0, len(frames) - 1, _MAX_FRAMES).round().astype(int)]
        if len(frames) == 0 or min(frames.shape[1:3]) < image.MIN_SIDE:
            notes.append("the frames are too small (or too few) to carry the watermark")
            return None, notes
        return image.detect_frames(frames), notes
    except (OSError, ValueError, RuntimeError, InvalidRequest) as e:
        notes.append(f"the content could not be read for the watermark: {e}")
        return None, notes


def _text_tokens(path: Path) -> tuple[str, list[int] | None]:
    """The text of a text file, and its token ids when the file holds them (an aigc ``.json`` result)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw)
        except ValueError:
            return raw, None
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            ids = data.get("token_ids")
            ok = isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids)
            return data["text"], ids if ok else None
    return raw, None


def _tokenizer(record: Record, cache: dict[str, Any]) -> Any:
    """The tokenizer of the model that made a text record (no weights loaded), or ``None``."""
    if record.modality != "text" or record.backend != "transformers":
        return None
    model = record.model
    if model not in cache:
        from aigc._runtime.assets import model_dir

        try:
            import transformers

            folder = model_dir(model, {"default": "text_default"}, marker="config.json", what="text model",
                               fix="pass a local model directory")
            cache[model] = transformers.AutoTokenizer.from_pretrained(os.fspath(folder))
        except (OSError, ValueError, ImportError) as e:
            logger.info("no tokenizer for %s: %s", model, e)
            cache[model] = None
    return cache[model]


def _text_check(text: str, token_ids: list[int] | None, candidates: list[Record]) -> tuple[WatermarkCheck | None,
                                                                                       list[Record]]:
    """Score the text against the watermark key of each candidate record (their models' tokenizers)."""
    from aigc.sampling.watermark import METHOD, Z_THRESHOLD, score

    tried: list[tuple[float, str, Record]] = []
    tokenizers: dict[str, Any] = {}
    scores: dict[tuple[str, str], float] = {}
    for record in candidates:
        mark = record.watermark()
        if mark is None or mark.get("method") != METHOD:
            continue
        ids = token_ids
        if ids is None:
            tok = _tokenizer(record, tokenizers)
            if tok is None:
                continue
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
        cache_key = (record.model, mark["key"])
        if cache_key not in scores:
            scores[cache_key] = score(ids, mark["key"]).z
        tried.append((scores[cache_key], mark["key"], record))
    if not tried:
        return None, []
    keys = {k for _, k, _ in tried}
    # Bonferroni over the keys tried: the chance that any of them scores this high on text without it
    from statistics import NormalDist

    threshold = max(Z_THRESHOLD, NormalDist().inv_cdf(1 - TEXT_ALPHA / len(keys)))
    best_z, best_key, _ = max(tried, key=lambda t: t[0])
    present = best_z >= threshold
    matching = [r for z, k, r in tried if k == best_key] if present else []
    detail = (f"z = {best_z:.2f} for key {best_key} (threshold {threshold:.2f} for {len(keys)} key(s) tried, "
              f"{TEXT_ALPHA:.1%} false positives)")
    return WatermarkCheck(method=METHOD, present=present, score=best_z, key=best_key if present else None,
                          detail=detail), matching


def verify(path: str | os.PathLike[str], *, store: RecordStore | Literal[False] | None = None) -> Verification:
    """Check a file's provenance: its metadata record, its C2PA manifest and its watermark (module docstring).

    Args:
        path: an image, audio, video or text file (or a folder of video frames), saved by aigc or not.
        store: the record store to look watermark keys up in; ``None`` is the default one
            (:func:`aigc.provenance.default_store`), ``False`` none.

    Returns:
        A :class:`Verification`; ``print`` it for a summary.

    Raises:
        ProvenanceError: no such file.

    Example:
        >>> aigc.verify("boot.png").record.seeds  # doctest: +SKIP
        [7]
    """
    from aigc._media.records import read_own_record
    from aigc.provenance.store import default_store

    p = Path(path)
    if not p.exists():
        raise ProvenanceError(f"{path}: no such file")
    records = default_store() if store is None else (store or None)
    notes: list[str] = []
    kind = _kind(p)

    # 1. the record in the file's metadata or sidecar
    metadata: Record | None = None
    try:
        metadata = Record.from_json(read_own_record(p))
    except ProvenanceError as e:
        logger.debug("%s: no metadata record: %s", p, e)

    # 2. the C2PA manifest
    manifest = None
    if p.is_file():
        from aigc.provenance.c2pa import default_credentials, read_manifest

        try:
            creds = default_credentials()
            manifest = read_manifest(p, trust=creds.trust_anchors if creds else None)
        except ImportError:
            notes.append("c2pa-python is not installed, so a C2PA manifest was not looked for "
                         "(pip install 'aigc[c2pa]')")
        except InvalidRequest as e:
            notes.append(f"the default credentials could not be read: {e}")
    c2pa_record = None
    if manifest is not None and manifest.record is not None:
        try:
            c2pa_record = Record.from_json(manifest.record)
        except ProvenanceError as e:
            notes.append(f"the C2PA manifest's aigc record is malformed: {e}")

    # 3. the watermark
    record: Record | None = metadata if metadata is not None else (c2pa_record if manifest and manifest.valid else None)
    source: Source | None = "metadata" if metadata is not None else ("c2pa" if record is not None else None)
    check: WatermarkCheck | None = None
    candidates: list[Record] = []
    if kind == "text":
        text, ids = _text_tokens(p)
        pool = [record] if record is not None else []
        if not pool and records is not None:
            pool = [e.record for key in records.keys(length=16) for e in records.find(key)]
        check, candidates = _text_check(text, ids, pool)
        if check is None:
            notes.append("no text watermark key to test: the text's record is not in its metadata nor in the store")
        elif check.present and record is None:
            import hashlib

            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            stored = [e for key in ([check.key] if check.key else []) for e in (records.find(key) if records else [])]
            exact = [e.record for e in stored if e.text_sha256 == digest]
            found = exact or candidates
            if found:
                record, source = found[0], "store"
    elif kind is not None:
        detection, more = _signal_check(p, kind)
        notes += more
        if detection is not None:
            key, present = detection.key, detection.present
            detail = f"score {detection.score:.3f}, threshold {PRESENT_AT:.2f}"
            if key is None:  # bits damaged (or faint): the known key the soft bits agree with best
                known = [own["key"]] if record is not None and (own := record.watermark()) else []
                known += records.keys(length=8) if records is not None else []
                best = max(((detection.match(k), k) for k in known), default=(0.0, None))
                if best[1] is not None and best[0] >= MATCH_AT:
                    key, present = best[1], True
                    detail += f"; key {key} agrees with the soft bits at {best[0]:.2f} (>= {MATCH_AT} among " \
                              f"{len(known)} known key(s))"
            elif present:
                detail += f", key {key}"
            if present and key is None:
                detail += ", key unreadable"
            check = WatermarkCheck(method=detection.method, present=present, score=detection.score, key=key,
                                   detail=detail)
            if present and key is not None and records is not None:
                candidates = [e.record for e in records.find(key)]
                if record is None and candidates:
                    record, source = candidates[0], "store"
    else:
        notes.append(f"aigc does not read the content of {p.suffix or 'this'} files for a watermark")

    if check is not None and check.present and record is not None and source != "store":
        own = record.watermark()
        if own is not None and check.key is not None and own.get("key") != check.key:
            notes.append(f"the record says watermark key {own.get('key')}, the content carries {check.key}: the "
                         "record may belong to another file")
    if record is None and check is not None and check.present and check.key is not None:
        notes.append(f"watermark key {check.key} is not in the record store"
                     + (f" ({records.root})" if records is not None else " (no store)"))
    return Verification(path=p, metadata=metadata, c2pa=manifest, watermark=check, record=record,
                        record_source=source, candidates=candidates, notes=notes)
