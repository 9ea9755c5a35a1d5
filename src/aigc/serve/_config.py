"""What the server serves and how: models (:class:`ModelSpec`), server settings (:class:`ServeConfig`) and the
request size limits (:class:`ServeLimits`), from keywords, the command line or a TOML file."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc._checks import check_number
from aigc._types import MODALITIES, Modality, check_modality
from aigc.errors import InvalidRequest

__all__ = ["ModelSpec", "ServeConfig", "ServeLimits", "load_config", "parse_model_spec"]


def _limit(default: float, help: str) -> Any:
    """A :class:`ServeLimits` field: its default and what it bounds (the ``aigc serve --help`` line)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class ServeLimits:
    """The largest request the server accepts; anything bigger gets a 400 naming the field.

    These are the server's own bounds (a request from the network is a stranger's): they apply before any model
    work, on top of the checks of :class:`aigc.TextRequest` and friends. Each field is also a ``[limits]`` key of
    the config file and a flag of ``aigc serve`` (``max_tokens``: ``--max-tokens``); what a field bounds is in its
    metadata (``dataclasses.fields(ServeLimits)[i].metadata["help"]``), which ``aigc serve --help`` prints.

    Example:
        >>> ServeLimits(max_tokens=1024).max_tokens
        1024
        >>> {f.name: f.metadata["help"] for f in dataclasses.fields(ServeLimits)}["max_n"]
        'samples per request (n), every modality'
    """

    max_body_bytes: int = _limit(16 * 1024 * 1024, "the whole request body (JSON or multipart, images included); "
                                 "bigger bodies get 413")
    max_prompt_chars: int = _limit(100_000, "characters of a prompt, or of all chat messages together")
    max_messages: int = _limit(512, "chat messages per request")
    max_tokens: int = _limit(4096, "max_tokens (max_completion_tokens) per sample")
    max_n: int = _limit(16, "samples per request (n), every modality")
    max_stop: int = _limit(4, "stop sequences per request (OpenAI allows 4)")
    max_stop_chars: int = _limit(256, "characters of one stop sequence")
    max_image_side: int = _limit(2048, "size: width and height in pixels (images and videos)")
    max_input_pixels: int = _limit(4096 * 4096, "pixels of an uploaded image or of one frame of an uploaded clip")
    max_steps: int = _limit(500, "denoising steps")
    max_speech_chars: int = _limit(4096, "characters of a speech input (OpenAI allows 4096)")
    max_audio_s: float = _limit(60.0, "duration of speech or music, seconds")
    max_video_s: float = _limit(60.0, "seconds of a video")
    max_video_frames: int = _limit(512, "num_frames of a video, or frames of an uploaded clip")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_number(f"limits.{f.name}", getattr(self, f.name), low=0, low_open=True,
                         fix=f"pass {f.name}={f.default!r} or another positive value")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model to serve.

    Attributes:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        model: a local directory, a hub id or a built-in name; ``None`` is the modality's embedded default.
        id: the name clients pass as ``model``; by default ``"<modality>-default"`` for an embedded model, else
            the directory's name (or the hub id).
        backend, device, dtype: as in :func:`aigc.load`.
        options: backend load options (as ``aigc.load``'s keywords).

    Example:
        >>> ModelSpec(modality="text", model="sshleifer/tiny-gpt2").served_id  # not a folder here: a hub id
        'sshleifer/tiny-gpt2'
        >>> ModelSpec(modality="image").served_id
        'image-default'
    """

    modality: Modality
    model: str | None = None
    id: str | None = None
    backend: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_modality(self.modality)
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise InvalidRequest("model", self.model, "must be a directory, a hub id or a built-in name",
                                 "pass model='path/to/model-dir', or None for the embedded default")
        if self.id is not None and (not isinstance(self.id, str) or not self.id.strip()):
            raise InvalidRequest("id", self.id, "must be a non-empty name", "pass id='my-model'")

    @property
    def served_id(self) -> str:
        if self.id:
            return self.id
        if self.model is None or self.model == "default":
            return f"{self.modality}-default"
        path = Path(os.path.expanduser(self.model))
        return path.resolve().name if path.is_dir() else self.model


def parse_model_spec(text: str, *, device: str = "auto", dtype: str = "auto") -> ModelSpec:
    """A model from the command line: ``MODALITY=MODEL[,key=value...]`` or a model directory alone (its modality
    found from its files).

    Keys: ``id``, ``backend``, ``device``, ``dtype``; any other key is a load option whose value is read as JSON
    when it parses (``max_batch_size=16``), else as a string.

    Example:
        >>> parse_model_spec("text=default,id=poet").id
        'poet'
        >>> parse_model_spec("image=/models/sd,backend=diffusers,max_batch_size=4").options
        {'max_batch_size': 4}
    """
    head, _, rest = text.partition(",")
    modality, sep, model = head.partition("=")
    if not sep:
        path = Path(os.path.expanduser(head))
        detected = _detect_modality(path) if path.is_dir() else None
        if detected is None:
            raise InvalidRequest("--model", text, "expected MODALITY=MODEL, or a model directory aigc recognises",
                                 "write e.g. --model text=path/to/gpt2 or --model image=default")
        modality, model = detected, head
    if modality not in MODALITIES:
        raise InvalidRequest("--model", text, f"unknown modality {modality!r}",
                             f"start with one of {', '.join(MODALITIES)}, e.g. text=path/to/model")
    values: dict[str, Any] = {"device": device, "dtype": dtype}
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequest("--model", text, f"{item!r} is not key=value", "write e.g. text=DIR,id=poet")
        if key in ("id", "backend", "device", "dtype"):
            values[key] = raw
        else:
            try:
                options[key] = json.loads(raw)
            except ValueError:
                options[key] = raw
    return ModelSpec(modality=modality, model=model or None, options=options, **values)


def _detect_modality(path: Path) -> Modality | None:
    from aigc._registry import _registry

    for modality in MODALITIES:
        if _registry.detect(modality, path) is not None:
            return modality
    return None


@dataclass(frozen=True, kw_only=True)
class ServeConfig:
    """How the server runs.

    Attributes:
        host: the address to bind; ``127.0.0.1`` (this machine only) unless told otherwise.
        port: the TCP port (0 picks a free one).
        api_key: clients must send ``Authorization: Bearer <api_key>``; ``None`` accepts every client (the
            command line reads ``AIGC_API_KEY`` when ``--api-key`` is not given).
        max_queue: requests waiting per model beyond those running; more get 429 with ``Retry-After``.
        max_concurrent: requests running at once per model (text: requests whose rows decode together;
            image/audio/video: requests batched into one call).
        max_batch_rows: text rows decoding at once per model (``None``: the model's ``max_batch_size``).
        timeout_s: the longest a request may take, queue included; then it is cancelled (504).
        batch_window_ms: image/audio/video: how long the first request of a batch waits for compatible ones.
        max_batch_samples: image/audio/video: samples per batched call at most.
        cors_origins: origins allowed by CORS (none by default: CORS off).
        video_retention_s: how long finished videos stay downloadable.
        limits: request size limits.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_queue: int = 64
    max_concurrent: int = 64
    max_batch_rows: int | None = None
    timeout_s: float = 600.0
    batch_window_ms: float = 10.0
    max_batch_samples: int = 16
    cors_origins: tuple[str, ...] = ()
    video_retention_s: float = 3600.0
    limits: ServeLimits = field(default_factory=ServeLimits)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise InvalidRequest("host", self.host, "must be an address", "pass host='127.0.0.1'")
        if not isinstance(self.port, int) or isinstance(self.port, bool) or not 0 <= self.port <= 65535:
            raise InvalidRequest("port", self.port, "must be a TCP port (0-65535)", "pass port=8000")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise InvalidRequest("api_key", "<hidden>", "must be a non-empty string", "pass api_key=None to turn "
                                 "authentication off, or a secret")
        for name in ("max_queue", "max_concurrent", "max_batch_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "max_queue" else 1):
                raise InvalidRequest(name, value, "must be a positive integer", f"pass {name}=16")
        if self.max_batch_rows is not None and (not isinstance(self.max_batch_rows, int) or self.max_batch_rows < 1):
            raise InvalidRequest("max_batch_rows", self.max_batch_rows, "must be an integer >= 1 or None",
                                 "pass max_batch_rows=64")
        for name in ("timeout_s", "video_retention_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise InvalidRequest(name, value, "must be a positive number of seconds", f"pass {name}=600")
        if not isinstance(self.batch_window_ms, (int, float)) or not 0 <= self.batch_window_ms <= 10_000:
            raise InvalidRequest("batch_window_ms", self.batch_window_ms, "must be in [0, 10000] ms",
                                 "pass batch_window_ms=10 (0 turns dynamic batching off)")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))


def load_config(path: str | os.PathLike[str]) -> tuple[ServeConfig, list[ModelSpec]]:
    """Read a TOML file: a ``[server]`` table (:class:`ServeConfig` fields), a ``[limits]`` table
    (:class:`ServeLimits` fields) and ``[[models]]`` entries (:class:`ModelSpec` fields).

    Example file::

        [server]
        port = 8080
        max_queue = 32

        [limits]
        max_tokens = 1024

        [[models]]
        modality = "text"
        model = "/models/gpt2"
        id = "gpt2"
        options = { max_batch_size = 32 }

    Raises:
        InvalidRequest: a file that is not TOML, an unknown key or a bad value (the message names it).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidRequest("--config", str(path), f"cannot read it ({e.strerror})", "pass an existing TOML file") \
            from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidRequest("--config", str(path), f"not valid TOML ({e})", "fix the file") from None
    unknown = set(data) - {"server", "limits", "models"}
    if unknown:
        raise InvalidRequest("--config", str(path), f"unknown table(s) {sorted(unknown)}",
                             "use [server], [limits] and [[models]]")
    server = _known(data.get("server", {}), ServeConfig, "server")
    limits = ServeLimits(**_known(data.get("limits", {}), ServeLimits, "limits"))
    if "cors_origins" in server:
        server["cors_origins"] = tuple(server["cors_origins"])
    config = ServeConfig(**server, limits=limits)
    models = [ModelSpec(**_known(m, ModelSpec, f"models[{i}]")) for i, m in enumerate(data.get("models", []))]
    return config, models


def _known(table: object, cls: type[Any], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise InvalidRequest(where, table, "must be a table", f"write [{where}] with key = value lines")
    names = {f.name for f in dataclasses.fields(cls)} - {"limits"}
    for key in table:
        if key not in names:
            raise InvalidRequest(f"{where}.{key}", table[key], "unknown setting", f"use one of {sorted(names)}")
    return dict(table)
