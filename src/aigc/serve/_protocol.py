"""OpenAI request bodies -> aigc request parameters, checked field by field.

Every field the OpenAI API defines for an endpoint is either honoured, accepted at a value that changes nothing
(``logprobs: null``, ``presence_penalty: 0``, ``user``), or refused with a 400 that names it -- never silently
ignored. Fields OpenAI does not define are refused too, except aigc's documented extras (as vLLM takes them):
text ``top_k``, ``min_p``, ``repetition_penalty``, ``min_tokens``; images ``seed``, ``steps``, ``guidance``,
``negative_prompt``, ``scheduler``, ``truncation``, ``strength``, ``backend``; speech ``seed``, ``duration``,
``steps``, ``guidance``, ``negative_prompt``; video ``seed``, ``fps``, ``num_frames``, ``steps``, ``guidance``,
``negative_prompt``, ``truncation``, ``input_video`` (a clip to transform, e.g. by the ``cyclegan`` backend).
Size limits (:class:`~aigc.serve.ServeLimits`) apply here, before any work; uploads are decoded in ``_uploads``.

Multipart forms (image edits, video creation) carry every value as a string; :class:`Body` converts them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aigc.serve._config import ServeLimits
from aigc.serve._errors import APIError, invalid
from aigc.serve._uploads import decode_image, decode_video

__all__ = ["Body", "MediaCall", "TextCall", "parse_chat", "parse_completion", "parse_image", "parse_speech",
           "parse_video"]

#: aigc field -> OpenAI field, for the errors the request types and backends raise
TEXT_FIELDS = {"max_new_tokens": "max_tokens", "num_outputs": "n", "min_new_tokens": "min_tokens",
               "do_sample": "temperature"}
IMAGE_FIELDS = {"width": "size", "height": "size", "num_outputs": "n", "init_image": "image", "mask": "mask"}
AUDIO_FIELDS = {"prompt": "input", "duration_s": "duration", "num_outputs": "n"}
VIDEO_FIELDS = {"width": "size", "height": "size", "init_image": "input_reference", "num_outputs": "n",
                "init_video": "input_video"}

# Fields the official client may send that change nothing here (identification, storage, routing hints).
_HARMLESS = frozenset({"user", "safety_identifier", "metadata", "store", "service_tier", "prompt_cache_key",
                       "prompt_cache_retention"})


class Body:
    """A request body (JSON object or multipart form) read field by field, each check naming the field.

    Example:
        >>> Body({"n": "2"}, form=True).integer("n", low=1, high=4)
        2
    """

    def __init__(self, data: Mapping[str, Any], *, form: bool = False,
                 files: Mapping[str, list[bytes]] | None = None) -> None:
        if not isinstance(data, Mapping):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        self.data = dict(data)
        self.form = form
        self.files = dict(files or {})

    def check_known(self, known: frozenset[str] | set[str]) -> None:
        for name in [*self.data, *self.files]:
            if name not in known and name not in _HARMLESS:
                raise APIError(400, f"Unrecognized request argument supplied: {name}. Fix: leave it out; this "
                               f"endpoint takes {', '.join(sorted(known))}", param=name, code="unknown_parameter")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def text(self, name: str, *, max_chars: int | None = None, choices: tuple[str, ...] = (),
            required: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise invalid(name, None, "missing", f"pass {name}")
            return None
        if not isinstance(value, str):
            raise invalid(name, value, "must be a string", f'pass {name}="..."')
        if choices and value not in choices:
            raise invalid(name, value, "not a supported value", f"pass one of {', '.join(choices)}")
        if max_chars is not None and len(value) > max_chars:
            raise invalid(name, f"<{len(value)} characters>", f"longer than this server's limit of {max_chars} "
                          "characters", f"send at most {max_chars} characters")
        return value

    def integer(self, name: str, *, low: int, high: int) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise invalid(name, value, "must be an integer", f"pass {name}={low}") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(name, value, "must be an integer", f"pass {name}={low}")
        if not low <= value <= high:
            raise invalid(name, value, f"must be in [{low}, {high}] on this server", f"pass {name}={low}..{high}")
        return value

    def number(self, name: str, *, low: float | None = None, high: float | None = None) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise invalid(name, value, "must be a number", f"pass {name}=1.0") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise invalid(name, value, "must be a finite number", f"pass {name}=1.0")
        if (low is not None and value < low) or (high is not None and value > high):
            where = f"in [{low:g}, {high:g}]" if low is not None and high is not None else (
                f">= {low:g}" if low is not None else f"<= {high:g}")
            raise invalid(name, value, f"must be {where}", f"pass {name} {where}")
        return float(value)

    def flag(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if self.form and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise invalid(name, value, "must be true or false", f"pass {name}=true")
        return value

    def neutral(self, name: str, *neutral: Any, fix: str) -> None:
        """Accept ``name`` only at a value that changes nothing here (``None`` or one of ``neutral``)."""
        value = self.data.get(name)
        if value is None or any(value == n and type(value) is type(n) for n in neutral):
            return
        if self.form and isinstance(value, str) and value in [str(n) for n in neutral]:
            return
        raise invalid(name, value, "not supported by this server", fix)

    def seed(self) -> int | None:
        return self.integer("seed", low=0, high=2**63 - 1)


# -- text ------------------------------------------------------------------------------------------------
@dataclass
class TextCall:
    """A completions or chat request, read: the aigc ``TextRequest`` keywords and the response's options."""

    model: str | None
    prompt: Any
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    chat: bool
    max_tokens_field: str = "max_tokens"

    @property
    def rename(self) -> dict[str, str]:
        names = {**TEXT_FIELDS, "max_new_tokens": self.max_tokens_field}
        names["prompt"] = "messages" if self.chat else "prompt"
        return names


_TEXT_COMMON = frozenset({"model", "n", "seed", "max_tokens", "temperature", "top_p", "stop", "stream",
                          "stream_options", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
                          # aigc's extras, as vLLM takes them
                          "top_k", "min_p", "repetition_penalty", "min_tokens"})
_COMPLETION_FIELDS = _TEXT_COMMON | {"prompt", "echo", "best_of", "suffix"}
_CHAT_FIELDS = _TEXT_COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                               "tool_choice", "functions", "function_call", "parallel_tool_calls", "modalities",
                               "audio", "prediction", "reasoning_effort", "verbosity", "web_search_options"}


def _text_params(body: Body, limits: ServeLimits, *, chat: bool) -> tuple[dict[str, Any], bool, bool, str]:
    params: dict[str, Any] = {}
    n = body.integer("n", low=1, high=limits.max_n)
    if n is not None:
        params["num_outputs"] = n
    seed = body.seed()
    if seed is not None:
        params["seed"] = seed
    max_field = "max_tokens"
    if chat and body.has("max_completion_tokens"):
        if body.has("max_tokens"):
            raise invalid("max_tokens", body.raw("max_tokens"), "given together with max_completion_tokens",
                          "pass only max_completion_tokens")
        max_field = "max_completion_tokens"
    max_tokens = body.integer(max_field, low=1, high=limits.max_tokens)
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    min_tokens = body.integer("min_tokens", low=0, high=limits.max_tokens)
    if min_tokens is not None:
        params["min_new_tokens"] = min_tokens
    temperature = body.number("temperature", low=0.0)
    if temperature is not None:
        if temperature == 0.0:
            params["do_sample"] = False  # OpenAI's greedy decoding
        else:
            params["temperature"] = temperature
            params["do_sample"] = True
    top_p = body.number("top_p", low=0.0, high=1.0)
    if top_p is not None:
        if top_p == 0.0:
            raise invalid("top_p", top_p, "keeps no token", "pass top_p in (0, 1], or temperature=0 for greedy")
        params["top_p"] = top_p
    top_k = body.integer("top_k", low=-1, high=1 << 31)
    if top_k is not None:
        params["top_k"] = None if top_k <= 0 else top_k  # vLLM: -1 (or 0) turns top-k off
    min_p = body.number("min_p", low=0.0, high=1.0)
    if min_p is not None:
        params["min_p"] = min_p
    penalty = body.number("repetition_penalty")
    if penalty is not None:
        params["repetition_penalty"] = penalty
    stop = body.raw("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise invalid("stop", stop, "must be a string or a list of non-empty strings", 'pass stop=["\\n"]')
        if len(stops) > limits.max_stop:
            raise invalid("stop", stop, f"more than {limits.max_stop} stop sequences",
                          f"pass at most {limits.max_stop}")
        if any(len(s) > limits.max_stop_chars for s in stops):
            raise invalid("stop", stop, f"a stop sequence longer than {limits.max_stop_chars} characters",
                          "pass shorter stop sequences")
        params["stop"] = stops
    for name in ("presence_penalty", "frequency_penalty"):
        body.neutral(name, 0, 0.0, fix=f"leave {name} out (0); repetition_penalty (> 1) discourages repeats")
    body.neutral("logit_bias", {}, fix="leave logit_bias out")
    body.neutral("logprobs", False, 0, fix="leave logprobs out: this server returns no log probabilities")
    stream = bool(body.flag("stream"))
    options = body.raw("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("stream_options", options, "only allowed with stream=true", "drop stream_options")
        if not isinstance(options, Mapping) or set(options) - {"include_usage", "continuous_usage_stats",
                                                               "include_obfuscation"}:
            raise invalid("stream_options", options, "unknown options", 'pass {"include_usage": true}')
        include_usage = bool(options.get("include_usage"))
    return params, stream, include_usage, max_field


def parse_completion(data: Mapping[str, Any], limits: ServeLimits) -> TextCall:
    """``POST /v1/completions``: ``prompt`` is a string or a list of strings (token ids are refused)."""
    body = Body(data)
    body.check_known(_COMPLETION_FIELDS)
    prompt = body.raw("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        chars = sum(len(p) for p in prompt)
    elif isinstance(prompt, str):
        chars = len(prompt)
    else:
        raise invalid("prompt", prompt, "must be a string or a list of strings (token ids are not supported)",
                      'pass prompt="Once upon a time"')
    if chars > limits.max_prompt_chars:
        raise invalid("prompt", f"<{chars} characters>", f"longer than this server's limit of "
                      f"{limits.max_prompt_chars} characters", "send a shorter prompt")
    if isinstance(prompt, list) and len(prompt) > limits.max_n:
        raise invalid("prompt", f"<{len(prompt)} prompts>", f"more than {limits.max_n} prompts",
                      f"send at most {limits.max_n} prompts per request")
    body.neutral("echo", False, fix="leave echo out: the response holds only the generated text")
    body.neutral("suffix", "", fix="leave suffix out: insertion is not supported")
    params, stream, include_usage, max_field = _text_params(body, limits, chat=False)
    best_of = body.integer("best_of", low=1, high=limits.max_n)
    if best_of is not None and best_of != params.get("num_outputs", 1):
        raise invalid("best_of", best_of, "ranking samples by likelihood is not supported",
                      "leave best_of out, or equal to n")
    total = (len(prompt) if isinstance(prompt, list) else 1) * params.get("num_outputs", 1)
    if total > limits.max_n:
        raise invalid("n", params.get("num_outputs", 1), f"{total} samples in all, more than {limits.max_n}",
                      "send fewer prompts or a smaller n")
    return TextCall(model=body.text("model"), prompt=prompt, params=params, stream=stream,
                    include_usage=include_usage, chat=False, max_tokens_field=max_field)


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _message_text(i: int, content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"messages[{i}].content[{j}]", part, "only text parts are supported",
                              'send {"type": "text", "text": "..."}')
            parts.append(part["text"])
        return "".join(parts)
    raise invalid(f"messages[{i}].content", content, "must be a string or a list of text parts",
                  'send "content": "Hello"')


def parse_chat(data: Mapping[str, Any], limits: ServeLimits) -> TextCall:
    """``POST /v1/chat/completions``: ``messages`` go through the model's chat template."""
    body = Body(data)
    body.check_known(_CHAT_FIELDS)
    messages = body.raw("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", messages, "must be a non-empty list of messages",
                      'pass [{"role": "user", "content": "Hello"}]')
    if len(messages) > limits.max_messages:
        raise invalid("messages", f"<{len(messages)} messages>", f"more than {limits.max_messages} messages",
                      "send a shorter conversation")
    conversation = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in _ROLES:
            raise invalid(f"messages[{i}].role", m.get("role") if isinstance(m, Mapping) else m,
                          "must be system, developer, user or assistant (tools are not supported)",
                          'send {"role": "user", "content": "..."}')
        if m.get("tool_calls") or m.get("function_call") or m.get("audio"):
            raise invalid(f"messages[{i}]", "<tool call>", "tool calls and audio are not supported",
                          "send text messages only")
        conversation.append({"role": _ROLES[m["role"]], "content": _message_text(i, m.get("content"))})
    chars = sum(len(m["content"]) for m in conversation)
    if chars > limits.max_prompt_chars:
        raise invalid("messages", f"<{chars} characters>", f"longer than this server's limit of "
                      f"{limits.max_prompt_chars} characters", "send a shorter conversation")
    body.neutral("top_logprobs", 0, fix="leave top_logprobs out: this server returns no log probabilities")
    fmt = body.raw("response_format")
    if fmt is not None and not (isinstance(fmt, Mapping) and fmt.get("type") == "text"):
        raise invalid("response_format", fmt, "structured output is not supported", 'leave it out or {"type": "text"}')
    for name in ("tools", "functions"):
        body.neutral(name, [], fix=f"leave {name} out: tool calling is not supported")
    for name in ("tool_choice", "function_call"):
        body.neutral(name, "none", fix=f"leave {name} out: tool calling is not supported")
    body.neutral("parallel_tool_calls", True, False, fix="leave parallel_tool_calls out")
    body.neutral("modalities", ["text"], fix='leave modalities out, or ["text"]')
    for name in ("audio", "prediction", "web_search_options", "reasoning_effort", "verbosity"):
        body.neutral(name, fix=f"leave {name} out: not supported by this server")
    params, stream, include_usage, max_field = _text_params(body, limits, chat=True)
    return TextCall(model=body.text("model"), prompt=conversation, params=params, stream=stream,
                    include_usage=include_usage, chat=True, max_tokens_field=max_field)


# -- images, audio, video --------------------------------------------------------------------------------
@dataclass
class MediaCall:
    """An image, speech or video request, read: aigc request keywords plus how to answer."""

    model: str | None
    prompt: str
    params: dict[str, Any]
    backend: str | None = None
    response_format: str = "b64_json"
    output_format: str = "png"
    images: dict[str, Any] = field(default_factory=dict)  # decoded inputs (PIL images, frames), by aigc field name
    seconds: float | None = None


def _size(body: Body, limits: ServeLimits) -> dict[str, int]:
    size = body.text("size")
    if size is None or size == "auto":
        return {}
    w, sep, h = size.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise invalid("size", size, "must be WIDTHxHEIGHT", 'pass size="256x256" or "auto"')
    width, height = int(w), int(h)
    if not (1 <= width <= limits.max_image_side and 1 <= height <= limits.max_image_side):
        raise invalid("size", size, f"each side must be 1-{limits.max_image_side} pixels on this server",
                      f"pass at most {limits.max_image_side}x{limits.max_image_side}")
    return {"width": width, "height": height}


def _visual_extras(body: Body, limits: ServeLimits, params: dict[str, Any]) -> None:
    seed = body.seed()
    if seed is not None:
        params["seed"] = seed
    steps = body.integer("steps", low=1, high=limits.max_steps)
    if steps is not None:
        params["steps"] = steps
    guidance = body.number("guidance", low=0.0, high=100.0)
    if guidance is not None:
        params["guidance"] = guidance
    negative = body.text("negative_prompt", max_chars=limits.max_prompt_chars)
    if negative is not None:
        params["negative_prompt"] = negative


_IMAGE_FIELDS = frozenset({"model", "prompt", "n", "size", "response_format", "output_format", "quality", "style",
                           "background", "moderation", "output_compression", "partial_images", "stream",
                           # aigc's extras
                           "seed", "steps", "guidance", "negative_prompt", "scheduler", "truncation", "backend"})
_EDIT_FIELDS = (_IMAGE_FIELDS - {"style", "moderation"}) | {"image", "image[]", "mask", "strength", "input_fidelity"}


def parse_image(body: Body, limits: ServeLimits, *, edit: bool = False) -> MediaCall:
    """``POST /v1/images/generations`` (JSON) or ``/v1/images/edits`` (multipart, ``edit=True``)."""
    body.check_known(_EDIT_FIELDS if edit else _IMAGE_FIELDS)
    prompt = body.text("prompt", max_chars=limits.max_prompt_chars, required=True)
    assert prompt is not None
    params: dict[str, Any] = {**_size(body, limits)}
    n = body.integer("n", low=1, high=limits.max_n)
    if n is not None:
        params["num_outputs"] = n
    _visual_extras(body, limits, params)
    scheduler = body.text("scheduler", max_chars=64)
    if scheduler is not None:
        params["scheduler"] = scheduler
    truncation = body.number("truncation", low=0.0, high=2.0)
    if truncation is not None:
        params["truncation"] = truncation
    fmt = body.text("response_format", choices=("b64_json", "url")) or "b64_json"
    out = body.text("output_format", choices=("png", "webp", "jpeg")) or "png"
    body.neutral("quality", "auto", "standard", fix='leave quality out, or "auto"')
    body.neutral("style", "natural", "vivid", fix="leave style out")
    body.neutral("background", "auto", "opaque", fix='leave background out, or "auto"')
    body.neutral("moderation", "auto", "low", fix="leave moderation out")
    body.neutral("output_compression", 100, fix="leave output_compression out (outputs are lossless PNG/WebP)")
    body.neutral("partial_images", 0, fix="leave partial_images out")
    body.neutral("stream", False, fix="leave stream out: images come in one response")
    call = MediaCall(model=body.text("model"), prompt=prompt, params=params, backend=body.text("backend"),
                     response_format=fmt, output_format=out)
    if edit:
        images = body.files.get("image", []) + body.files.get("image[]", [])
        if len(images) != 1:
            raise invalid("image", f"<{len(images)} images>", "needs exactly one input image",
                          "upload one PNG, JPEG or WebP as image")
        call.images["init_image"] = decode_image("image", images[0], limits)
        masks = body.files.get("mask", [])
        if len(masks) > 1:
            raise invalid("mask", f"<{len(masks)} masks>", "at most one mask", "upload one mask")
        if masks:
            call.images["mask"] = decode_image("mask", masks[0], limits)
        strength = body.number("strength", low=0.0, high=1.0)
        if strength is not None:
            params["strength"] = strength
        body.neutral("input_fidelity", "low", "high", fix="leave input_fidelity out")
    return call


_SPEECH_FIELDS = frozenset({"model", "input", "voice", "response_format", "speed", "instructions", "stream_format",
                            # aigc's extras
                            "seed", "duration", "steps", "guidance", "negative_prompt"})
AUDIO_FORMATS = {"wav": ("audio/wav", ".wav"), "flac": ("audio/flac", ".flac"), "ogg": ("audio/ogg", ".ogg")}


def parse_speech(body: Body, limits: ServeLimits) -> MediaCall:
    """``POST /v1/audio/speech``: ``input`` is the prompt, ``voice`` a voice of the model."""
    body.check_known(_SPEECH_FIELDS)
    text = body.text("input", max_chars=limits.max_speech_chars, required=True)
    assert text is not None
    params: dict[str, Any] = {}
    voice = body.raw("voice")
    if isinstance(voice, Mapping) and set(voice) == {"id"}:
        voice = voice["id"]
    if voice is not None:
        if not isinstance(voice, str) or not voice:
            raise invalid("voice", voice, "must be a voice name", 'pass voice="us-female" (see GET /v1/models)')
        params["voice"] = int(voice) if voice.isdigit() else voice
    fmt = body.text("response_format") or "wav"
    if fmt not in AUDIO_FORMATS:
        raise invalid("response_format", fmt, "not a format this server writes", "pass wav, flac or ogg")
    speed = body.number("speed", low=0.25, high=4.0)
    if speed is not None and speed != 1.0:
        raise invalid("speed", speed, "the served speech models cannot change their speed", "leave speed out (1.0)")
    body.neutral("instructions", "", fix="leave instructions out: the served models take no style instructions")
    body.neutral("stream_format", "audio", fix='leave stream_format out, or "audio"')
    duration = body.number("duration", low=0.0, high=limits.max_audio_s)
    if duration is not None:
        if duration <= 0:
            raise invalid("duration", duration, "must be > 0", "pass duration=2.0")
        params["duration_s"] = duration
    _visual_extras(body, limits, params)
    return MediaCall(model=body.text("model"), prompt=text, params=params, output_format=fmt)


_VIDEO_FIELDS = frozenset({"model", "prompt", "seconds", "size", "input_reference",
                           # aigc's extras
                           "input_video", "seed", "fps", "num_frames", "steps", "guidance", "negative_prompt",
                           "truncation"})


def parse_video(body: Body, limits: ServeLimits) -> MediaCall:
    """``POST /v1/videos``: ``seconds`` with ``fps`` or ``num_frames`` sets the clip's length."""
    body.check_known(_VIDEO_FIELDS)
    prompt = body.text("prompt", max_chars=limits.max_prompt_chars, required=True)
    assert prompt is not None
    params: dict[str, Any] = {**_size(body, limits)}
    _visual_extras(body, limits, params)
    truncation = body.number("truncation", low=0.0, high=2.0)
    if truncation is not None:
        params["truncation"] = truncation
    fps = body.number("fps", low=0.1, high=240.0)
    frames = body.integer("num_frames", low=1, high=limits.max_video_frames)
    raw_seconds = body.raw("seconds")
    seconds = None
    if raw_seconds is not None:
        if isinstance(raw_seconds, str):
            body.data["seconds"] = raw_seconds
            body.form = True  # "4" is how the official client sends it
        seconds = body.number("seconds", low=0.0, high=limits.max_video_s)
        assert seconds is not None
        if seconds <= 0:
            raise invalid("seconds", raw_seconds, "must be > 0", 'pass seconds="4"')
        if frames is not None and fps is not None:
            if abs(frames / fps - seconds) > 0.5 / fps:
                raise invalid("seconds", raw_seconds, f"num_frames={frames} at fps={fps:g} is {frames / fps:g} s",
                              "pass two of seconds, fps and num_frames")
        elif frames is not None:
            fps = frames / seconds
        elif fps is not None:
            frames = round(seconds * fps)
        else:
            raise invalid("seconds", raw_seconds, "a clip's length needs its frame rate or frame count",
                          "pass fps or num_frames with seconds (seconds = num_frames / fps), or leave seconds out")
        if frames is not None and not 1 <= frames <= limits.max_video_frames:
            raise invalid("seconds", raw_seconds, f"{frames} frames, beyond this server's "
                          f"{limits.max_video_frames}", "pass fewer seconds or a lower fps")
    if fps is not None:
        params["fps"] = fps
    if frames is not None:
        params["num_frames"] = frames
    call = MediaCall(model=body.text("model"), prompt=prompt, params=params, seconds=seconds)
    refs = body.files.get("input_reference", [])
    if len(refs) > 1:
        raise invalid("input_reference", f"<{len(refs)} files>", "at most one reference image", "upload one image")
    if refs:
        call.images["init_image"] = decode_image("input_reference", refs[0], limits)
    elif body.has("input_reference"):
        raise invalid("input_reference", "<not a file>", "must be an uploaded image file",
                      "upload the image as multipart form data; URLs and file paths are never opened")
    clips = body.files.get("input_video", [])
    if len(clips) > 1:
        raise invalid("input_video", f"<{len(clips)} files>", "at most one input video", "upload one clip")
    if clips:  # a clip to transform frame by frame (e.g. the cyclegan backend's style transfer)
        call.images["init_video"], clip_fps = decode_video("input_video", clips[0], limits)
        if clip_fps is not None and "fps" not in params:
            params["fps"] = min(240.0, max(0.1, clip_fps))  # the clip's own rate, as for a file given by path
    elif body.has("input_video"):
        raise invalid("input_video", "<not a file>", "must be an uploaded video file (GIF, WebP or MP4)",
                      "upload the clip as multipart form data; URLs and file paths are never opened")
    return call
