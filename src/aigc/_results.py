"""Result types, one per modality, each carrying its provenance record (:mod:`aigc._record`). No torch at import."""

from __future__ import annotations

import dataclasses
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from aigc._media.atomic import atomic_write_text, check_save_path, numbered_paths
from aigc._record import Record
from aigc._types import Modality
from aigc.errors import InvalidRequest, ProvenanceError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "AudioResult", "Fill", "FinishReason", "ImageResult", "Record", "Result", "SavedPaths", "TextResult", "VideoResult",
]

FinishReason = Literal["stop", "length", "cancelled"]

#: Signs a file written to a temporary path before a save commits it (a C2PA manifest).
Finish = Callable[[Path], None]


class SavedPaths(list[Path]):
    """What ``Result.save`` returns: the saved files, one per sample in sample order (``paths[i]`` is sample
    ``i``'s; for a clip saved as PNG frames, its folder), and in ``sidecars`` the ``.json`` provenance files
    written beside those formats that cannot hold the record themselves (``.txt``, and images or videos whose
    metadata did not keep it).

    Example:
        >>> paths = aigc.TextResult(texts=["a", "b"], seeds=[1, 2]).save("story.txt")  # doctest: +SKIP
        >>> [p.name for p in paths], [p.name for p in paths.sidecars]  # doctest: +SKIP
        (['story-0.txt', 'story-1.txt'], ['story-0.txt.json', 'story-1.txt.json'])
    """

    def __init__(self, files: list[Path], *, sidecars: list[Path] | None = None) -> None:
        super().__init__(files)
        self.sidecars: list[Path] = list(sidecars or [])

    @property
    def all(self) -> list[Path]:
        """Every path written: the files, then the sidecars."""
        return [*self, *self.sidecars]


@dataclass(kw_only=True)
class Result:
    """Fields and behaviour every result shares.

    Attributes:
        seeds: the seed of each sample.
        record: the provenance record.
        flags: per sample, what a safety checker reported (``["nsfw"]``; ``[]`` when it found nothing); an empty
            list when no checker ran (see ``ImageRequest.safety``).
    """

    modality: ClassVar[Modality]
    #: the attribute holding the samples (``texts``, ``images``, ``waveforms``, ``videos``)
    samples_field: ClassVar[str]

    seeds: list[int]
    record: Record | None = None
    flags: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seeds)

    def _check_samples(self) -> list[Any]:
        """The samples, when they are a list with one seed each (a result built by hand may be anything)."""
        samples = getattr(self, self.samples_field)
        if not isinstance(samples, list) or not isinstance(self.seeds, list) or len(samples) != len(self.seeds):
            count = len(samples) if isinstance(samples, list) else type(samples).__name__
            raise InvalidRequest("seeds", self.seeds, f"a {type(self).__name__} needs one seed per sample ({count} "
                                 f"{self.samples_field})", f"pass {self.samples_field} and seeds as equal-length lists")
        return samples

    def _save_each(
        self, path: str | os.PathLike[str], write: Callable[[int, Path, str | None, Finish | None], list[Path]],
        *, credentials: Any = None, remember: bool = True,
    ) -> SavedPaths:
        """Call ``write(sample index, file name, that sample's record as JSON, finish)`` per sample (it returns the
        file, then any sidecar it wrote); the files in sample order, the sidecars apart.

        ``finish`` (``None`` when not signing) signs a written temporary file with a C2PA manifest before the save
        commits it. Each watermarked sample's record then goes into the local record store (``remember``).
        """
        from aigc.provenance.c2pa import resolve_credentials, sign_file

        self._check_samples()
        if not isinstance(remember, bool):
            raise InvalidRequest("remember", remember, "must be True or False", "pass remember=False to skip the store")
        targets = numbered_paths(check_save_path(path, folder=True), len(self))  # the name; then each target
        signing = [resolve_credentials(credentials, target) for target in targets]  # checked before writing
        for target in targets:
            check_save_path(target, folder=self._saves_folders(target))
        files: list[Path] = []
        sidecars: list[Path] = []
        for i, target in enumerate(targets):
            record = self.record.for_sample(i).to_json() if self.record else None
            creds = signing[i]
            finish = None if creds is None else (
                lambda tmp, record=record, creds=creds, name=target.name: sign_file(tmp, record=record,
                                                                                     credentials=creds, title=name))
            written = write(i, target, record, finish)
            if self._saves_folders(target):  # a folder of frames with its record.json: the folder is the sample
                files.append(target)
            else:
                files.append(written[0])
                sidecars += written[1:]
        if remember:
            self._remember()
        return SavedPaths(files, sidecars=sidecars)

    def _remember(self) -> None:
        """Put each watermarked sample's record into the local record store (:mod:`aigc.provenance.store`)."""
        if self.record is None or not any(m is not None for m in self.record.watermarks):
            return
        from aigc.provenance.store import default_store

        store = default_store()
        if store is None:
            return
        for i in range(len(self)):
            mark = self.record.watermark(i)
            if mark is not None:
                try:
                    store.add(mark["key"], self.record.for_sample(i), text=self._sample_text(i))
                except OSError as e:  # the file is saved; a store that cannot be written only costs the lookup
                    import logging

                    logging.getLogger(__name__).warning("could not add a record to %s: %s", store, e)

    def _sample_text(self, index: int) -> str | None:
        return None

    def save(self, path: str | os.PathLike[str], *, credentials: Any = None, remember: bool = True) -> SavedPaths:
        """Save every sample (one file each) with its provenance; return the files, ``paths[i]`` being sample
        ``i``'s (sidecars, where a format needed one, in ``paths.sidecars``).

        Args:
            path: the file name; several samples get ``name-0.ext``, ``name-1.ext``, ...
            credentials: sign the files with a C2PA manifest (PNG, JPEG, WebP, WAV, MP4):
                :class:`aigc.provenance.Credentials` or a folder made by ``aigc credentials init``; ``None`` uses
                the default (:func:`aigc.provenance.set_default_credentials`), ``False`` never signs.
            remember: add the records of watermarked samples to the local record store, so that
                :func:`aigc.verify` finds the record of a copy stripped of its metadata.
        """
        raise NotImplementedError

    def _saves_folders(self, target: Path) -> bool:
        """Whether saving to ``target`` writes a folder (a video's PNG frames) rather than a file."""
        return False

    def _with_step(self, step: dict[str, Any], **changes: Any) -> Any:
        """A copy with ``changes`` applied and ``step`` appended to the record's ``postprocess``."""
        record = self.record
        if record is not None:
            record = dataclasses.replace(record, postprocess=[*record.postprocess, step])
        return dataclasses.replace(self, record=record, **changes)

    def _apply_step(self, step: dict[str, Any]) -> Result:
        """Redo one recorded post-processing step (for :func:`aigc.replay`)."""
        raise ProvenanceError(f"a {self.modality} result has no post-processing step {step!r}")

    #: post-processing operations this result type can redo: op name -> the numeric arguments it takes
    postprocess_ops: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def check_postprocess(cls, steps: list[dict[str, Any]]) -> None:
        """Check recorded post-processing steps before anything runs: known operations, with their arguments.

        Raises:
            ProvenanceError: an unknown operation, a missing or extra argument, or one that is not a number.
        """
        for step in steps:
            op = step.get("op") if isinstance(step, dict) else None
            if op not in cls.postprocess_ops:
                raise ProvenanceError(f"a {cls.modality} result has no post-processing step {step!r}")
            names = set(step) - {"op"}
            wanted = set(cls.postprocess_ops[op])
            if names != wanted or not all(isinstance(step[n], (int, float)) and not isinstance(step[n], bool)
                                          for n in wanted):
                raise ProvenanceError(f"malformed post-processing step {step!r}: {op!r} takes the numbers "
                                      f"{', '.join(sorted(wanted))}")

    def apply_postprocess(self, steps: list[dict[str, Any]]) -> Result:
        """Apply recorded post-processing steps in order (what :func:`aigc.replay` does after generating).

        Raises:
            ProvenanceError: a step this result type does not know, or whose arguments it cannot use.

        Example:
            >>> again = gen.generate(record.to_request()).apply_postprocess(record.postprocess)  # doctest: +SKIP
        """
        self.check_postprocess(steps)
        result: Result = self
        for step in steps:
            try:
                result = result._apply_step(step)
            except InvalidRequest as e:
                raise ProvenanceError(f"the post-processing step {step!r} cannot be redone: {e}") from None
        return result


@dataclass(frozen=True)
class Fill:
    """One candidate for the mask of a masked language model's prompt (``TextResult.fills``).

    Attributes:
        text: the prompt with the mask replaced by this token.
        token: the token as text (``tokenizer.decode([token_id])``, as the ``fill-mask`` pipeline's ``token_str``).
        token_id: the token's id.
        score: its probability under the model (softmax over the vocabulary at the mask).

    Example:
        >>> res = aigc.generate("text", "今天天气真[MASK]。", model=bert_dir, num_fills=3)  # doctest: +SKIP
        >>> [(f.token, round(f.score, 3)) for f in res.fills[0]]  # doctest: +SKIP
        [('好', 0.412), ('冷', 0.103), ('热', 0.087)]
    """

    text: str
    token: str
    token_id: int
    score: float


@dataclass(kw_only=True)
class TextResult(Result):
    """Generated texts.

    Attributes:
        texts: one string per sample (prompt-major: all samples of prompt 0 first).
        seeds: the seed of each sample.
        finish_reasons: ``"stop"`` (end of sequence or a stop sequence), ``"length"`` (``max_new_tokens``)
            or ``"cancelled"``.
        token_ids: the generated token ids of each sample.
        prompt_index: which prompt each sample continues.
        scores: masked language models: per sample, the model's probability of its fill (the product over its
            masks, each conditioned on the fills before it); empty for other models.
        fills: masked language models without sampling: per sample, the ``num_fills`` most likely fills of the
            prompt's one mask, most likely first (:class:`Fill`; ``texts[i]`` is ``fills[i][0].text``); empty
            otherwise.

    Example:
        >>> res = gen.generate("Hello", seed=42, num_outputs=2)  # doctest: +SKIP
        >>> res.texts, res.seeds  # doctest: +SKIP
        (['...', '...'], [42, 43])
    """

    modality: ClassVar[Modality] = "text"
    samples_field: ClassVar[str] = "texts"

    texts: list[str]
    finish_reasons: list[FinishReason] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    prompt_index: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    fills: list[list[Fill]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The first sample's text."""
        return self.texts[0]

    @property
    def num_tokens(self) -> list[int]:
        """Generated tokens per sample."""
        return [len(t) for t in self.token_ids]

    def _sample_text(self, index: int) -> str | None:
        return self.texts[index]

    def save(self, path: str | os.PathLike[str], *, credentials: Any = None, remember: bool = True) -> SavedPaths:
        """Save each sample as ``.txt`` (with a ``.txt.json`` provenance sidecar) or ``.json``.

        C2PA does not cover plain text here: ``credentials`` must be ``None`` or ``False``. ``remember`` as in
        :meth:`Result.save`.

        Example:
            >>> res.save("story.txt")  # doctest: +SKIP
            [PosixPath('story.txt')]
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in (".txt", ".json"):
            raise InvalidRequest("path", str(path), "unsupported text format", "use a .txt or .json file name")

        def write(i: int, target: Path, record: str | None, finish: Finish | None) -> list[Path]:
            if not isinstance(self.texts[i], str):
                raise InvalidRequest(f"texts[{i}]", self.texts[i], "not a string", "pass texts as a list of str")
            if suffix == ".txt":  # the text and its sidecar, all-or-nothing (see aigc._media.provenance)
                from aigc._media.provenance import save_with_record

                with save_with_record(target, record) as pending:
                    pending.tmp.write_bytes(self.texts[i].encode("utf-8"))
                return pending.written
            for name in ("finish_reasons", "token_ids", "scores", "fills"):
                value = getattr(self, name)
                if value and (not isinstance(value, list) or len(value) != len(self.texts)):
                    raise InvalidRequest(name, value, "needs one entry per text, or none", f"pass {name}=[]")
            doc: dict[str, Any] = {
                "text": self.texts[i],
                "seed": self.seeds[i],
                "finish_reason": self.finish_reasons[i] if self.finish_reasons else None,
                "token_ids": self.token_ids[i] if self.token_ids else None,
            }
            if self.scores:  # masked LMs only: other results keep the format they always had
                doc["score"] = self.scores[i]
            if self.fills:
                doc["fills"] = [dataclasses.asdict(f) if isinstance(f, Fill) else f for f in self.fills[i]]
            doc["aigc"] = json.loads(record) if record else None
            try:
                text = json.dumps(doc, ensure_ascii=False, indent=2)
            except (TypeError, ValueError) as e:
                raise InvalidRequest("token_ids", doc["token_ids"], f"cannot be written as JSON: {e}",
                                     "pass lists of ints") from None
            return [atomic_write_text(target, text)]

        return self._save_each(p, write, credentials=credentials, remember=remember)

    def __str__(self) -> str:
        return "\n---\n".join(self.texts)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='text-align:right;vertical-align:top'>seed {s}</td>"
            f"<td style='white-space:pre-wrap;text-align:left'>{html.escape(t)}</td></tr>"
            for s, t in zip(self.seeds, self.texts, strict=True)
        )
        return f"<table>{rows}</table>"


@dataclass(kw_only=True)
class ImageResult(Result):
    """Generated images.

    Attributes:
        images: one ``PIL.Image.Image`` per sample.

    ``save("x.png")`` writes one file per sample (``x.png`` alone, ``x-0.png, x-1.png, ...`` for several),
    each with its provenance record (PNG text chunk, WebP/JPEG EXIF, else a ``.json`` sidecar).
    In Jupyter the result renders as a grid captioned with the prompt and seeds.

    Example:
        >>> out = aigc.generate("image", "an ankle boot", seed=7, num_outputs=4)  # doctest: +SKIP
        >>> out.images[0].size  # doctest: +SKIP
        (32, 32)
    """

    modality: ClassVar[Modality] = "image"
    samples_field: ClassVar[str] = "images"

    images: list[Image.Image]

    @property
    def image(self) -> Image.Image:
        """The first sample's image."""
        return self.images[0]

    def save(self, path: str | os.PathLike[str], *, credentials: Any = None, remember: bool = True) -> SavedPaths:
        """Save each image as PNG, WebP or JPEG (by suffix) with its record; see :meth:`Result.save`.

        Example:
            >>> out.save("boots.png", credentials="my-credentials")  # doctest: +SKIP
            [PosixPath('boots-0.png'), PosixPath('boots-1.png')]
        """
        from aigc._media import image as media

        return self._save_each(path, lambda i, target, record, finish: media.save_image(
            self.images[i], target, record, finish=finish), credentials=credentials, remember=remember)

    def _captions(self) -> list[str]:
        return [f"seed {s}" for s in self.seeds]

    def _repr_png_(self) -> bytes:
        from aigc._media import image as media

        return media.grid_png(self.images)

    def _repr_html_(self) -> str:
        from aigc._media import image as media

        title = str(self.record.request.get("prompt", "")) if self.record else ""
        return media.grid_html(self.images, self._captions(), title=title)


@dataclass(kw_only=True)
class AudioResult(Result):
    """Generated audio.

    Attributes:
        waveforms: one float32 array of shape ``(channels, samples)`` per sample, in [-1, 1].
        sample_rate: samples per second.

    ``save`` writes WAV, FLAC or OGG (chosen by the suffix) with the provenance record in the comment field.

    Example:
        >>> res = aigc.generate("audio", "say seven", seed=1)  # doctest: +SKIP
        >>> res.waveform.shape, res.sample_rate  # doctest: +SKIP
        ((1, 16000), 16000)
    """

    modality: ClassVar[Modality] = "audio"
    samples_field: ClassVar[str] = "waveforms"
    postprocess_ops: ClassVar[dict[str, tuple[str, ...]]] = {"resample": ("sample_rate",),
                                                              "normalize": ("lufs", "max_peak_db")}

    waveforms: list[np.ndarray[Any, Any]]
    sample_rate: int

    @property
    def waveform(self) -> np.ndarray[Any, Any]:
        """The first sample's waveform, ``(channels, samples)``."""
        return self.waveforms[0]

    @property
    def durations_s(self) -> list[float]:
        return [w.shape[-1] / self.sample_rate for w in self.waveforms]

    def save(self, path: str | os.PathLike[str], *, credentials: Any = None, remember: bool = True) -> SavedPaths:
        """Save each clip as WAV, FLAC or OGG (by suffix) with its record; C2PA signs WAV. See :meth:`Result.save`.

        Example:
            >>> res.save("speech.wav")  # doctest: +SKIP
            [PosixPath('speech.wav')]
        """
        from aigc._media import audio as media

        return self._save_each(path, lambda i, target, record, finish: media.save_audio(
            self.waveforms[i], self.sample_rate, target, record, finish=finish), credentials=credentials,
            remember=remember)

    def resample(self, sample_rate: int) -> AudioResult:
        """A copy at another sample rate (torchaudio's band-limited sinc resampling); the step is recorded.

        Raises:
            InvalidRequest: ``sample_rate`` is not a positive integer.

        Example:
            >>> res.resample(44100).sample_rate  # doctest: +SKIP
            44100
        """
        from aigc._media import audio as media

        waves = [media.resample(w, self.sample_rate, sample_rate) for w in self._check_samples()]
        rate = int(sample_rate)
        return self._with_step({"op": "resample", "sample_rate": rate}, waveforms=waves,  # type: ignore[no-any-return]
                               sample_rate=rate)

    def loudness(self) -> list[float]:
        """Integrated loudness of each sample in LUFS (ITU-R BS.1770-4); ``-inf`` for silence.

        Raises:
            InvalidRequest: a sample shorter than 0.4 s or with more than 5 channels.

        Example:
            >>> res.normalize(-16.0).loudness()  # doctest: +SKIP
            [-16.0]
        """
        from aigc._media import audio as media

        return [media.measure_loudness(w, self.sample_rate) for w in self._check_samples()]

    def normalize(self, lufs: float = -23.0, *, max_peak_db: float = -1.0) -> AudioResult:
        """A copy with every sample scaled to ``lufs`` integrated loudness (one gain per sample).

        -23 LUFS is the EBU R 128 broadcast level; streaming services use about -14 to -16. The step is
        recorded in the provenance, so a saved file replays to the same samples.

        Args:
            lufs: target loudness, between -70 and 0.
            max_peak_db: the highest sample peak allowed after scaling, in dBFS (at most 0).

        Raises:
            InvalidRequest: a bad target, a silent or too short sample, or a target that would push a sample's
                peak above ``max_peak_db`` (the error says the loudest target that fits).

        Example:
            >>> res.normalize(-16.0).save("speech.wav")  # doctest: +SKIP
        """
        from aigc._checks import check_number
        from aigc._media import audio as media

        check_number("lufs", lufs, low=-70.0, high=0.0, fix="pass a loudness in LUFS, e.g. lufs=-23.0")
        check_number("max_peak_db", max_peak_db, low=-70.0, high=0.0, fix="pass a peak ceiling in dBFS, e.g. -1.0")
        waves = [media.normalize_loudness(w, self.sample_rate, float(lufs), float(max_peak_db))[0]
                 for w in self._check_samples()]
        step = {"op": "normalize", "lufs": float(lufs), "max_peak_db": float(max_peak_db)}
        return self._with_step(step, waveforms=waves)  # type: ignore[no-any-return]

    def _apply_step(self, step: dict[str, Any]) -> Result:
        if step.get("op") == "resample":
            return self.resample(step["sample_rate"])
        if step.get("op") == "normalize":
            return self.normalize(step["lufs"], max_peak_db=step["max_peak_db"])
        return super()._apply_step(step)

    def _repr_html_(self) -> str:
        from aigc._media import audio as media

        return "".join(
            f"<div>seed {s}<br>{media.audio_html(w, self.sample_rate)}</div>"
            for s, w in zip(self.seeds, self.waveforms, strict=True)
        )


@dataclass(kw_only=True)
class VideoResult(Result):
    """Generated video clips.

    Attributes:
        videos: one uint8 array of shape ``(frames, height, width, 3)`` per sample.
        fps: frames per second.

    ``save`` writes MP4 (H.264 through PyAV, ``pip install 'aigc[video]'``), GIF or animated WebP, or a
    folder of PNG frames when the path has no suffix; provenance goes into the file's metadata or a sidecar.

    Example:
        >>> clip = aigc.generate("video", "a 3 moving left", seed=0)  # doctest: +SKIP
        >>> clip.frames.shape  # doctest: +SKIP
        (16, 32, 32, 3)
    """

    modality: ClassVar[Modality] = "video"
    samples_field: ClassVar[str] = "videos"

    videos: list[np.ndarray[Any, Any]]
    fps: float

    @property
    def frames(self) -> np.ndarray[Any, Any]:
        """The first sample's frames, ``(T, H, W, 3)`` uint8."""
        return self.videos[0]

    def _saves_folders(self, target: Path) -> bool:
        return target.suffix == "" or target.is_dir()

    def save(self, path: str | os.PathLike[str], *, credentials: Any = None, remember: bool = True) -> SavedPaths:
        """Save each clip as MP4, GIF, WebP or a PNG frame folder with its record; C2PA signs MP4. See
        :meth:`Result.save`.

        Example:
            >>> clip.save("clip.mp4")  # doctest: +SKIP
            [PosixPath('clip.mp4')]
        """
        from aigc._media import video as media

        return self._save_each(path, lambda i, target, record, finish: media.save_video(
            self.videos[i], self.fps, target, record, finish=finish), credentials=credentials, remember=remember)

    def _repr_html_(self) -> str:
        from aigc._media import video as media

        return "".join(
            f"<div>seed {s}<br>{media.video_html(v, self.fps)}</div>"
            for s, v in zip(self.seeds, self.videos, strict=True)
        )


RESULT_TYPES: dict[Modality, type[Result]] = {
    "text": TextResult,
    "image": ImageResult,
    "audio": AudioResult,
    "video": VideoResult,
}

