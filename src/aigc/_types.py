"""Typed requests, chat messages and progress events. Importing this module imports no torch."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypedDict, TypeVar, get_args

from aigc._aliases import translate
from aigc._checks import check_int, check_number, check_optional_int
from aigc._checks import is_int as _is_int
from aigc._events import Event, EventCallback
from aigc._inputs import check_image_path, check_init_video
from aigc.errors import InvalidRequest
from aigc.limits import check_pixels, exceeded

__all__ = [
    "MODALITIES",
    "AudioRequest",
    "Event",
    "EventCallback",
    "ImageRequest",
    "Message",
    "Modality",
    "Request",
    "TextRequest",
    "VideoRequest",
]

Modality = Literal["text", "image", "audio", "video"]
MODALITIES: tuple[Modality, ...] = get_args(Modality)

#: Largest seed accepted: seeds are stored in a signed 64-bit integer.
MAX_SEED = 2**63 - 1
#: Smallest sampling temperature and repetition penalty (and, for the penalty, the largest): beyond them the
#: logits divided by the value overflow in half precision, and sampling is greedy decoding in all but name.
MIN_TEMPERATURE = 1e-2
PENALTY_RANGE = (1e-2, 1e2)
#: What ``ImageRequest.safety`` may be: keep and report, blank flagged images, or do not check.
SAFETY_MODES = ("flag", "blank", "off")
#: Frame rates a clip may have: a GIF stores frame times in 10 ms units (at most 655.35 s per frame).
FPS_RANGE = (1e-2, 240.0)


class Message(TypedDict):
    """One chat message, as chat templates expect it: ``{"role": "user", "content": "Hi"}``."""

    role: str
    content: str


Conversation = Sequence[Message]
TextPrompt = str | Sequence[str] | Conversation | Sequence[Conversation]

R = TypeVar("R", bound="Request")


def check_modality(modality: object) -> Modality:
    """Return ``modality`` if it is one of :data:`MODALITIES`, else raise :class:`InvalidRequest`."""
    if modality not in MODALITIES:
        raise InvalidRequest("modality", modality, "unknown modality", f"use one of {', '.join(MODALITIES)}")
    return modality


def _is_message(value: object) -> bool:
    return isinstance(value, Mapping) and "role" in value and "content" in value


def _check_conversation(value: Sequence[Any]) -> None:
    chars = 0
    for i, message in enumerate(value):
        if not _is_message(message):
            raise InvalidRequest(
                f"prompt[{i}]", message, "a chat message must be a mapping with 'role' and 'content'",
                'pass messages like {"role": "user", "content": "Hello"}',
            )
        if not isinstance(message["content"], str) or not isinstance(message["role"], str):
            raise InvalidRequest(
                f"prompt[{i}]", message, "'role' and 'content' must be strings", "pass text content"
            )
        chars += len(message["role"]) + len(message["content"]) + 1  # the role and a separator count too
        _check_prompt_length("prompt", chars)


@dataclass(frozen=True, kw_only=True)
class Request:
    """Fields every request shares. Subclasses add the modality's own parameters.

    Args:
        prompt: what to generate from; a string, or a list of strings for a batch of prompts.
        seed: ``None`` draws a fresh seed from the OS (and records it); an int ``s`` gives samples the seeds
            ``s, s+1, ...``; a list gives one seed per sample.
        num_outputs: samples per prompt. ``None`` means 1, or ``len(seed) / len(prompts)`` for a seed list.
        deterministic: run every sample on its own, so that sample *i* of a batch is bit-identical to a
            single run with its seed (slower than batching; batching is equal within a stated tolerance).
        watermark: mark the output with aigc's invisible watermark, which carries a key to the output's record
            (see ``docs/concepts/provenance.md``). ``None`` (the default) marks it where that is cheap and robust:
            sampled text, images and video frames of at least 64 pixels a side, audio of at least 1 s;
            ``True`` marks it wherever it fits at all (and raises where it cannot); ``False`` never.
    """

    modality: ClassVar[Modality]

    prompt: Any
    seed: int | Sequence[int] | None = None
    num_outputs: int | None = None
    deterministic: bool = False
    watermark: bool | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_params(cls: type[R], prompt: Any = None, /, **params: Any) -> R:
        """Build a request from keyword parameters, rejecting unknown names with a suggestion. Hugging Face's names
        are understood (``num_inference_steps`` for ``steps``, ...; see :mod:`aigc._aliases`).

        Example:
            >>> TextRequest.from_params("Hi", max_new_tokens=5).max_new_tokens
            5
        """
        params = translate(params, cls.field_names())
        cls.check_param_names(params)
        if prompt is not None:
            if "prompt" in params:
                raise InvalidRequest("prompt", params["prompt"], "given twice", "pass the prompt once")
            params["prompt"] = prompt
        if "prompt" not in params:
            raise InvalidRequest("prompt", None, "missing", "pass a prompt")
        return cls(**params)

    @classmethod
    def check_param_names(cls, params: Mapping[str, Any]) -> None:
        names = cls.field_names()
        for name in params:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"valid names: {', '.join(names)}"
                raise InvalidRequest(name, params[name], f"unknown parameter for {cls.__name__}", hint)

    def replace(self: R, **changes: Any) -> R:
        """Return a copy with some fields changed (validated again)."""
        changes = translate(changes, self.field_names())
        self.check_param_names(changes)
        return dataclasses.replace(self, **changes)

    # -- validation -----------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self._check_prompt()
        check_optional_int("num_outputs", self.num_outputs, minimum=1)
        if self.num_outputs is not None:  # O(1), before anything is built per sample (aigc.limits)
            exceeded("num_outputs", self.num_outputs, len(self.prompts()) * self.num_outputs, "max_samples",
                     "samples in one call")
        if not isinstance(self.deterministic, bool):
            raise InvalidRequest("deterministic", self.deterministic, "must be True or False", "pass a bool")
        if self.watermark is not None and not isinstance(self.watermark, bool):
            raise InvalidRequest("watermark", self.watermark, "must be True, False or None",
                                 "pass watermark=False to turn it off, or leave it out")
        seed = self.seed
        if seed is None:
            pass
        elif _is_int(seed):
            _check_seed("seed", seed)
        elif isinstance(seed, Sequence) and not isinstance(seed, (str, bytes)):
            if len(seed) == 0:
                raise InvalidRequest("seed", seed, "an empty seed list", "pass one seed per sample, or an int")
            exceeded("seed", f"<{len(seed)} seeds>", len(seed), "max_samples", "seeds (samples) in one call")
            for i, s in enumerate(seed):
                _check_seed(f"seed[{i}]", s)
            object.__setattr__(self, "seed", [int(s) for s in seed])
            n_prompts = len(self.prompts())
            expected = n_prompts * (self.num_outputs or 1)
            if self.num_outputs is None and len(seed) % n_prompts == 0:
                expected = len(seed)
            if len(seed) != expected:
                raise InvalidRequest(
                    "seed", seed,
                    f"{len(seed)} seeds for {n_prompts} prompt(s) x num_outputs={self.num_outputs}",
                    f"pass exactly {expected} seeds, or one int seed",
                )
        else:
            raise InvalidRequest("seed", seed, "must be an int, a list of ints or None", "pass seed=42")
        self._check()

    def _check_prompt(self) -> None:
        prompt = self.prompt
        if isinstance(prompt, str):
            _check_prompt_length("prompt", len(prompt))
            return
        if isinstance(prompt, Sequence) and not isinstance(prompt, bytes):
            if len(prompt) == 0:
                raise InvalidRequest("prompt", prompt, "an empty prompt list", "pass at least one prompt")
            exceeded("prompt", f"<{len(prompt)} prompts>", len(prompt), "max_samples", "prompts in one call")
            for i, p in enumerate(prompt):
                if not isinstance(p, str):
                    raise InvalidRequest(f"prompt[{i}]", p, "must be a string", "pass a list of strings")
                _check_prompt_length(f"prompt[{i}]", len(p))
            object.__setattr__(self, "prompt", list(prompt))
            return
        raise InvalidRequest("prompt", prompt, "must be a string or a list of strings", 'pass prompt="a cat"')

    def _check(self) -> None:
        """Modality-specific checks; subclasses override."""

    # -- derived -----------------------------------------------------------------------------
    def prompts(self) -> list[Any]:
        """The prompts of this request as a list (one element for a single prompt)."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def samples_per_prompt(self) -> int:
        if self.num_outputs is not None:
            return self.num_outputs
        if isinstance(self.seed, list):
            return len(self.seed) // len(self.prompts())
        return 1

    @property
    def total_samples(self) -> int:
        return len(self.prompts()) * self.samples_per_prompt

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the fields (for provenance records)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _check_prompt_length(field: str, chars: int) -> None:
    exceeded(field, f"<{chars} characters>", chars, "max_prompt_chars", "characters in one prompt")


def _check_seed(name: str, seed: object) -> None:
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:  # type: ignore[operator]
        raise InvalidRequest(name, seed, "a seed must be an integer in [0, 2**63 - 1]", "pass seed=42")


#: The key under which a provenance record marks an image that was passed in memory (not replayable).
IN_MEMORY = "in-memory image"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.path.abspath(os.fspath(value))
    if hasattr(value, "getbbox") and hasattr(value, "mode"):  # a PIL image: record what it was, not its pixels
        return {IN_MEMORY: f"{value.mode} {value.width}x{value.height}"}
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # frames as an array: their shape, not their pixels
        return {IN_MEMORY: f"array {tuple(value.shape)} {value.dtype}"}
    if isinstance(value, (list, tuple)) and value and all(hasattr(v, "getbbox") for v in value):  # PIL frames
        return {IN_MEMORY: f"{len(value)} images {value[0].mode} {value[0].width}x{value[0].height}"}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclass(frozen=True, kw_only=True)
class TextRequest(Request):
    """A text-generation request.

    Args:
        prompt: a string, a list of strings (a batch), a chat conversation (a list of
            :class:`Message`), or a list of conversations. Conversations go through the tokenizer's
            chat template.
        max_new_tokens: tokens to generate per sample, at most.
        min_new_tokens: the end-of-sequence token is not chosen before this many new tokens (stop
            sequences still apply; at or above ``max_new_tokens`` it is never chosen, as in transformers).
        do_sample: sample (``True``) or decode greedily (``False``, which ignores the sampling knobs).
        temperature: divides the logits; must be > 0 when sampling.
        top_k: keep the k most likely tokens (``None`` or 0: off).
        top_p: nucleus sampling; keep the smallest set of tokens whose probability reaches ``top_p``.
        min_p: drop tokens less likely than ``min_p`` times the most likely one (0: off).
        repetition_penalty: > 1 discourages tokens already in the prompt or the output (CTRL, eq. 1).
        stop: stop sequences; generation of a sample stops *before* the first one it produces.
        num_fills: masked language models (BERT) without sampling: how many of the most likely fills of the
            prompt's one mask each sample lists in ``TextResult.fills`` (``None``: 5, as transformers'
            ``fill-mask`` pipeline). Other models take no such field.

    Example:
        >>> req = TextRequest(prompt="Once upon a time", max_new_tokens=20, seed=1, num_outputs=2)
        >>> req.total_samples
        2
    """

    modality: ClassVar[Modality] = "text"

    prompt: TextPrompt
    max_new_tokens: int = 50
    min_new_tokens: int = 0
    do_sample: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: Sequence[str] = ()
    num_fills: int | None = None

    def _check_prompt(self) -> None:
        prompt: Any = self.prompt
        if isinstance(prompt, Sequence) and not isinstance(prompt, (str, bytes)) and prompt:
            if all(_is_message(m) for m in prompt):  # one conversation
                _check_conversation(prompt)
                object.__setattr__(self, "prompt", [dict(m) for m in prompt])
                return
            if all(isinstance(c, Sequence) and not isinstance(c, str) for c in prompt):  # conversations
                exceeded("prompt", f"<{len(prompt)} conversations>", len(prompt), "max_samples",
                         "prompts in one call")
                for conv in prompt:
                    if not conv:
                        raise InvalidRequest("prompt", prompt, "an empty conversation", "give each one a message")
                    _check_conversation(conv)
                object.__setattr__(self, "prompt", [[dict(m) for m in conv] for conv in prompt])
                return
        super()._check_prompt()

    def prompts(self) -> list[Any]:
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and _is_message(prompt[0]):
            return [prompt]
        return list(prompt)

    def _check(self) -> None:
        check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        exceeded("max_new_tokens", self.max_new_tokens, self.max_new_tokens, "max_new_tokens", "new tokens per sample")
        check_int("min_new_tokens", self.min_new_tokens, minimum=0)
        if not isinstance(self.do_sample, bool):
            raise InvalidRequest("do_sample", self.do_sample, "must be True or False", "pass a bool")
        if self.watermark is True and not self.do_sample:
            raise InvalidRequest("watermark", True, "greedy decoding (do_sample=False) draws nothing, so it cannot "
                                 "carry the text watermark", "sample (do_sample=True), or leave watermark out")
        if self.do_sample:
            check_number("temperature", self.temperature, low=MIN_TEMPERATURE,
                         fix=f"pass a temperature >= {MIN_TEMPERATURE:g} (smaller values overflow the logits), or "
                         "do_sample=False for greedy decoding")
        check_optional_int("top_k", self.top_k, minimum=0)
        check_number("top_p", self.top_p, low=0.0, high=1.0, low_open=True, fix="pass top_p in (0, 1]; 1 turns it off")
        check_number("min_p", self.min_p, low=0.0, high=1.0, fix="pass min_p in [0, 1]; 0 turns it off")
        low, high = PENALTY_RANGE
        check_number("repetition_penalty", self.repetition_penalty, low=low, high=high,
                     fix=f"pass a penalty in [{low:g}, {high:g}]; 1 turns it off, 1.1-1.3 is typical")
        stop = self.stop
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) and s for s in stop):
            raise InvalidRequest("stop", self.stop, "must be a list of non-empty strings", 'pass stop=["\\n\\n"]')
        object.__setattr__(self, "stop", list(stop))
        check_optional_int("num_fills", self.num_fills, minimum=1)
        if self.num_fills is not None:
            exceeded("num_fills", self.num_fills, self.num_fills, "max_samples", "fills listed per sample")


@dataclass(frozen=True, kw_only=True)
class _VisualRequest(Request):
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None

    def _check(self) -> None:
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise InvalidRequest("negative_prompt", self.negative_prompt, "must be a string", "pass text or None")
        for name in ("width", "height", "steps"):
            check_optional_int(name, getattr(self, name), minimum=1)
        # O(1) bounds (aigc.limits); a side given alone is checked by the backend, which knows the other
        if self.width is not None and self.height is not None:
            check_pixels(self.width, self.height)
        for name in ("width", "height"):
            if getattr(self, name) is not None:
                exceeded(name, getattr(self, name), getattr(self, name), "max_pixels", "pixels per image")
        if self.steps is not None:
            exceeded("steps", self.steps, self.steps, "max_steps", "denoising steps")
        if self.guidance is not None:
            check_number("guidance", self.guidance, low=0.0, fix="pass guidance >= 0 (1 turns guidance off)")
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            raise InvalidRequest("scheduler", self.scheduler, "must be a scheduler name", 'pass scheduler="ddim"')


def _check_truncation(value: object) -> None:
    if value is not None:
        check_number("truncation", value, low=0.0, high=2.0,
                     fix="pass truncation in [0, 1] (0.7 is typical; values up to 2 extrapolate)")


@dataclass(frozen=True, kw_only=True)
class ImageRequest(_VisualRequest):
    """An image-generation request (text-to-image, image-to-image, inpainting).

    Args:
        width, height: output size in pixels; ``None`` is the model's default.
        steps: denoising steps; ``None`` is the backend's default.
        guidance: classifier-free guidance scale; ``None`` is the backend's default.
        init_image: a PIL image or a path, for image-to-image.
        strength: how much to change ``init_image`` (0 keeps it, 1 ignores it).
        mask: a PIL image or a path (white = repaint), for inpainting; needs ``init_image``.
        scheduler: a scheduler's short name (``"ddim"``, ``"euler"``, ...), where the backend has several.
        truncation: for GANs and VAEs, how far the latent may stray from the average (1 leaves it, 0 gives
            the average image for every seed); ``None`` is the model's default.
        mix_seed, mix_layer: GAN style mixing: layers ``mix_layer`` onwards take their style from the latent
            of ``mix_seed`` (the same for every sample).
        safety: what to do with a pipeline's safety checker (Stable Diffusion's): ``"flag"`` (the default) keeps
            every image and reports the checker's verdict in ``result.flags`` and the record; ``"blank"`` also
            replaces flagged images with black ones (diffusers' behaviour); ``"off"`` does not run the checker.

    Example:
        >>> ImageRequest(prompt="a cat", width=512, height=512, seed=[1, 2]).total_samples
        2
    """

    modality: ClassVar[Modality] = "image"

    prompt: str | Sequence[str]
    init_image: Any = None
    strength: float = 0.8
    mask: Any = None
    truncation: float | None = None
    mix_seed: int | None = None
    mix_layer: int | None = None
    safety: str = "flag"

    def _check(self) -> None:
        super()._check()
        if self.safety not in SAFETY_MODES:
            raise InvalidRequest("safety", self.safety, "unknown safety mode",
                                 'pass "flag" (keep images, report verdicts), "blank" or "off"')
        check_number("strength", self.strength, low=0.0, high=1.0, fix="pass strength in [0, 1]")
        _check_truncation(self.truncation)
        check_optional_int("mix_seed", self.mix_seed, minimum=0)
        check_optional_int("mix_layer", self.mix_layer, minimum=1)
        if self.mix_layer is not None and self.mix_seed is None:
            raise InvalidRequest("mix_layer", self.mix_layer, "style mixing needs a second latent",
                                 "pass mix_seed= too, or drop mix_layer")
        if self.mask is not None and self.init_image is None:
            raise InvalidRequest("mask", "<mask>", "inpainting needs an init_image", "pass init_image= too")
        check_image_path(self, "init_image")
        check_image_path(self, "mask")


@dataclass(frozen=True, kw_only=True)
class AudioRequest(Request):
    """An audio-generation request (speech or music).

    Args:
        duration_s: length in seconds, where the model lets it be chosen.
        voice: a voice or speaker name / index, where the model has several.
        steps, guidance, negative_prompt: for diffusion audio models.

    Example:
        >>> AudioRequest(prompt="say seven", seed=3).seed
        3
    """

    modality: ClassVar[Modality] = "audio"

    prompt: str | Sequence[str]
    duration_s: float | None = None
    voice: str | int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None

    def _check(self) -> None:
        if self.duration_s is not None:
            check_number("duration_s", self.duration_s, low=0.0, low_open=True,
                         fix="pass a duration in seconds, e.g. duration_s=5.0")
            exceeded("duration_s", self.duration_s, self.duration_s, "max_audio_s", "seconds of audio")
        check_optional_int("steps", self.steps, minimum=1)
        if self.steps is not None:
            exceeded("steps", self.steps, self.steps, "max_steps", "denoising steps")
        if self.guidance is not None:
            check_number("guidance", self.guidance, low=0.0, fix="pass guidance >= 0")


@dataclass(frozen=True, kw_only=True)
class VideoRequest(_VisualRequest):
    """A video-generation request.

    Args:
        num_frames: frames per clip; ``None`` is the model's default.
        fps: frames per second of the result.
        init_image: a PIL image or path, for image-to-video.
        init_video: an input clip, for video-to-video (``backend="cyclegan"``): a video file or frame folder
            (``.mp4``, ``.gif``, ``.webp``, a folder of frames -- what ``VideoResult.save`` writes), a uint8 array
            (frames, height, width) or (frames, height, width, 3), or a list of PIL images.
        scheduler: a scheduler's short name (``"ddim"``, ``"euler"``, ...), where the backend has several.
        keyframes: latent walks: how many seeds the walk passes through (``seed``, ``seed + 1``, ...).
        interpolation: latent walks: ``"z"`` (spherical, in the input latent) or ``"w"`` (linear, in a GAN's
            intermediate latent).
        truncation: latent walks: as :class:`ImageRequest`.

    Example:
        >>> VideoRequest(prompt="a 3 moving left", num_frames=16, fps=8).num_frames
        16
    """

    modality: ClassVar[Modality] = "video"

    prompt: str | Sequence[str]
    num_frames: int | None = None
    fps: float | None = None
    init_image: Any = None
    init_video: Any = None
    keyframes: int | None = None
    interpolation: str | None = None
    truncation: float | None = None

    def _check(self) -> None:
        super()._check()
        check_optional_int("num_frames", self.num_frames, minimum=1)
        if self.num_frames is not None:
            exceeded("num_frames", self.num_frames, self.num_frames, "max_frames", "frames per clip")
        check_optional_int("keyframes", self.keyframes, minimum=2)
        if self.keyframes is not None:
            exceeded("keyframes", self.keyframes, self.keyframes, "max_keyframes", "keyframes per walk")
        if self.interpolation is not None and self.interpolation not in ("z", "w"):
            raise InvalidRequest("interpolation", self.interpolation, "unknown latent interpolation",
                                 'pass "z" (spherical in z) or "w" (linear in w)')
        _check_truncation(self.truncation)
        check_image_path(self, "init_image")
        check_init_video(self)
        if self.fps is not None:
            check_number("fps", self.fps, low=FPS_RANGE[0], high=FPS_RANGE[1],
                         fix=f"pass fps between {FPS_RANGE[0]:g} and {FPS_RANGE[1]:g}, e.g. fps=8")


def _friendly_init(cls: type[R]) -> type[R]:
    """Make ``cls(...)`` reject misspelt keywords with a suggestion, like ``from_params`` does."""
    init = cls.__init__

    @functools.wraps(init)
    def checked_init(self: Request, *args: Any, **kwargs: Any) -> None:
        kwargs = translate(kwargs, type(self).field_names())
        type(self).check_param_names(kwargs)
        init(self, *args, **kwargs)

    cls.__init__ = checked_init  # type: ignore[method-assign]
    return cls


for _cls in (TextRequest, ImageRequest, AudioRequest, VideoRequest):
    _friendly_init(_cls)

REQUEST_TYPES: dict[Modality, type[Request]] = {
    "text": TextRequest,
    "image": ImageRequest,
    "audio": AudioRequest,
    "video": VideoRequest,
}
