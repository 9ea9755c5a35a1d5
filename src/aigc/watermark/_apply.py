"""Which samples get a watermark, with which key, and putting it there (called by ``Generator.generate``).

Policy (``Request.watermark``):

* ``None`` (the default): where it is cheap and survives sharing. Sampled text (greedy text draws nothing to
  bias); images and video frames at least :data:`~aigc.watermark.image.ROBUST_SIDE` (64) pixels a side, where it
  survives JPEG quality 75 after halving (the embedded 32x32 models are below that, so their output is left as
  it is); audio of at least :data:`~aigc.watermark.audio.ROBUST_S` (2) seconds.
* ``True``: wherever it fits at all (images from 32 pixels a side, audio from 1 s); smaller raises.
* ``False``: never.

The key of a sample is a hash of what makes it (:func:`identity`): the backend, the model and its weights, and
the sample's own request (its prompt and seed, without ``num_outputs``). So sample *i* of a batch and a single
run with its seed get the same key and the same watermark, and :func:`aigc.replay` remakes a file to the byte.
"""

from __future__ import annotations

from typing import Any

from aigc._results import AudioResult, ImageResult, Record, Result, TextResult, VideoResult
from aigc._types import Request, TextRequest
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.watermark._payload import sample_key

__all__ = ["apply", "identity", "sample_key_of", "text_marks"]

_NOT_IDENTITY = ("watermark", "deterministic", "num_outputs")


def identity(record: Record, index: int) -> dict[str, Any]:
    """What makes sample ``index`` of ``record``: the JSON its watermark key hashes."""
    try:
        request = record.for_sample(index).to_request().to_dict()
    except ProvenanceError:  # a request that cannot be rebuilt (an image passed in memory): the recorded one
        request = dict(record.request, seed=record.seeds[index], prompt_index=index)
    for name in _NOT_IDENTITY:
        request.pop(name, None)
    return {"modality": record.modality, "backend": record.backend, "model": record.model,
            "weights": record.weights, "revision": record.revision, "request": request}


def sample_key_of(record: Record, index: int) -> str:
    """The 8-hex-digit key of sample ``index``."""
    return sample_key(identity(record, index))


def _wanted(flag: bool | None, fits: bool, robust: bool, what: str, fix: str) -> bool:
    if flag is False:
        return False
    if flag is None:
        return robust
    if not fits:
        raise InvalidRequest("watermark", True, f"{what} cannot carry the watermark", fix)
    return True


def text_marks(request: Request, seeds: list[int], *, supported: bool) -> list[dict[str, Any] | None]:
    """The ``record.watermarks`` of a text request: the sampling core marked every sampled row where the request
    asks for it and the backend samples through :class:`~aigc.sampling.TokenSampler` (``supported``); the key
    is the row's seed's (:func:`aigc.sampling.watermark.key_hex`). Empty when no row is marked."""
    from aigc.sampling.sampler import text_watermark_on
    from aigc.sampling.watermark import METHOD, key_hex

    if not (supported and isinstance(request, TextRequest) and text_watermark_on(request)):
        return []
    return [{"method": METHOD, "key": key_hex(s)} for s in seeds]


def apply(result: Result, request: Request, record: Record) -> Result:
    """Watermark ``result``'s images, audio or video as the policy says; return it with ``record.watermarks``
    filled in. Text is marked while it is sampled, and its record says so already (:func:`text_marks`).

    Raises:
        InvalidRequest: ``watermark=True`` for samples too small to carry it.
    """
    from aigc.watermark import audio, image

    flag = request.watermark
    if isinstance(result, TextResult):
        return result

    def mark(samples: list[Any], method: str, check: Any, embed: Any) -> list[Any]:
        """Each sample embedded with its key where ``check(sample)`` -> (fits, robust, what, fix) says so."""
        out = []
        for i, sample in enumerate(samples):
            if _wanted(flag, *check(sample)):
                key = sample_key_of(record, i)
                out.append(embed(sample, key))
                marks.append({"method": method, "key": key})
            else:
                out.append(sample)
                marks.append(None)
        return out

    marks: list[dict[str, Any] | None] = []
    side_fix = f"of at least {image.ROBUST_SIDE} pixels, or pass watermark=False"
    if isinstance(result, ImageResult):
        result.images = mark(list(result.images), image.METHOD, lambda im: (
            min(im.size) >= image.MIN_SIDE, min(im.size) >= image.ROBUST_SIDE, f"a {im.width}x{im.height} image",
            f"generate images {side_fix}"), image.embed)
    elif isinstance(result, VideoResult):
        result.videos = mark(list(result.videos), image.METHOD, lambda clip: (
            min(clip.shape[1:3]) >= image.MIN_SIDE, min(clip.shape[1:3]) >= image.ROBUST_SIDE,
            f"{clip.shape[2]}x{clip.shape[1]} frames", f"generate frames {side_fix}"), image.embed_frames)
    elif isinstance(result, AudioResult):
        rate = result.sample_rate

        def audio_check(wave: Any) -> tuple[bool, bool, str, str]:
            seconds = wave.shape[-1] / rate
            fits = seconds >= audio.MIN_S and rate >= 2 * 3400
            return (fits, fits and seconds >= audio.ROBUST_S, f"a {seconds:.2f} s clip at {rate} Hz",
                    f"generate at least {audio.ROBUST_S:g} s (at 8 kHz or more), or pass watermark=False")

        result.waveforms = mark(list(result.waveforms), audio.METHOD, audio_check,
                                lambda wave, key: audio.embed(wave, rate, key))
    if any(m is not None for m in marks):
        import dataclasses

        result.record = dataclasses.replace(record, watermarks=marks)
    return result
