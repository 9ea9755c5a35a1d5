"""The top-level functions: ``load``, ``generate``, ``replay``."""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from aigc._generator import OFFLOAD_MODES, Generator, LoadOptions, Offload
from aigc._registry import DEFAULT_BACKENDS, _registry
from aigc._results import AudioResult, ImageResult, Record, Result, TextResult, VideoResult
from aigc._runtime.device import check_device_spec, check_dtype_spec, dtype_name, resolve_device, resolve_dtype
from aigc._types import AudioRequest, EventCallback, ImageRequest, Modality, TextRequest, VideoRequest, check_modality
from aigc.errors import InvalidRequest, ModelNotFound

if TYPE_CHECKING:
    import torch

__all__ = ["generate", "load", "replay"]

#: Embedded default models, by modality (built-in names a backend knows how to load offline).
EMBEDDED_DEFAULTS: dict[Modality, tuple[str, str]] = {
    "text": ("default", "transformers"),  # character-level GPT-2 on Shakespeare + Tang poems (assets/text_default)
    "image": ("default", "diffusion"),  # class-conditional diffusion on Fashion-MNIST + digits (assets/image_default)
    "audio": ("default", "mel"),  # words (digits, commands) in 8 voices, trained on espeak-ng (assets/audio_default)
    "video": ("default", "sprites"),  # a clip VAE of digits moving on a canvas (assets/video_default)
}

_detected: dict[tuple[str, str], str] = {}
_detected_lock = threading.Lock()


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1 or os.path.isabs(model)


def _resolve_model(
    modality: Modality, model: str | os.PathLike[str] | None, backend: str | None
) -> tuple[str, str | None]:
    """Return (model id, backend) with local directories made absolute and defaults filled in."""
    if model is None:
        if modality not in EMBEDDED_DEFAULTS:
            raise ModelNotFound(
                f"aigc has no embedded default {modality} model yet. Fix: pass model= a local directory or a hub id"
            )
        name, default_backend = EMBEDDED_DEFAULTS[modality]
        return name, backend or default_backend
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model", model, "must be a directory, a hub id or a built-in name",
                             "pass model='path/to/model-dir'")
    expanded = os.path.expanduser(model)
    if os.path.isdir(expanded):
        return os.path.abspath(expanded), backend
    if backend is None and modality in EMBEDDED_DEFAULTS and model == EMBEDDED_DEFAULTS[modality][0]:
        return model, EMBEDDED_DEFAULTS[modality][1]  # load(m, "default") is load(m): never a hub lookup
    if os.path.exists(expanded):
        raise ModelNotFound(f"model={model!r} is a file; aigc loads model directories. Fix: pass its folder")
    if _looks_like_path(model):
        raise ModelNotFound(f"model={model!r}: no such directory. Fix: check the path")
    return model, backend


def _pick_backend(modality: Modality, model: str, backend: str | None) -> type[Generator[Any, Any]]:
    if backend is not None:
        if not isinstance(backend, str):
            raise InvalidRequest("backend", backend, "must be a backend name", "see aigc.backends()")
        return _registry.get(modality, backend)
    if os.path.isdir(model):
        with _detected_lock:
            name = _detected.get((modality, model))
        if name is not None:
            return _registry.get(modality, name)
        cls = _registry.detect(modality, Path(model))
        if cls is None:
            names = [b.name for b in _registry.infos(modality)]
            raise ModelNotFound(
                f"no {modality} backend recognises the files in {model!r} (tried {names}). "
                "Fix: check the directory, or pass backend= explicitly"
            )
        with _detected_lock:
            _detected[(modality, model)] = cls.backend_name
        return cls
    return _registry.get(modality, DEFAULT_BACKENDS[modality])


def _hashable(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return cast(Hashable, value)


@overload
def load(modality: Literal["text"], model: str | os.PathLike[str] | None = ..., *, backend: str | None = ...,
         device: str | torch.device = ..., dtype: str | torch.dtype = ..., revision: str | None = ...,
         offload: Offload = ..., allow_pickle: bool = ..., trust_remote_code: bool = ..., cache: bool = ...,
         **options: Any) -> Generator[TextRequest, TextResult]: ...
@overload
def load(modality: Literal["image"], model: str | os.PathLike[str] | None = ..., *, backend: str | None = ...,
         device: str | torch.device = ..., dtype: str | torch.dtype = ..., revision: str | None = ...,
         offload: Offload = ..., allow_pickle: bool = ..., trust_remote_code: bool = ..., cache: bool = ...,
         **options: Any) -> Generator[ImageRequest, ImageResult]: ...
@overload
def load(modality: Literal["audio"], model: str | os.PathLike[str] | None = ..., *, backend: str | None = ...,
         device: str | torch.device = ..., dtype: str | torch.dtype = ..., revision: str | None = ...,
         offload: Offload = ..., allow_pickle: bool = ..., trust_remote_code: bool = ..., cache: bool = ...,
         **options: Any) -> Generator[AudioRequest, AudioResult]: ...
@overload
def load(modality: Literal["video"], model: str | os.PathLike[str] | None = ..., *, backend: str | None = ...,
         device: str | torch.device = ..., dtype: str | torch.dtype = ..., revision: str | None = ...,
         offload: Offload = ..., allow_pickle: bool = ..., trust_remote_code: bool = ..., cache: bool = ...,
         **options: Any) -> Generator[VideoRequest, VideoResult]: ...
@overload
def load(modality: Modality, model: str | os.PathLike[str] | None = ..., *, backend: str | None = ...,
         device: str | torch.device = ..., dtype: str | torch.dtype = ..., revision: str | None = ...,
         offload: Offload = ..., allow_pickle: bool = ..., trust_remote_code: bool = ..., cache: bool = ...,
         **options: Any) -> Generator[Any, Any]: ...


def load(
    modality: Modality,
    model: str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    revision: str | None = None,
    offload: Offload = "none",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    cache: bool = True,
    **options: Any,
) -> Generator[Any, Any]:
    """Load a model as a :class:`~aigc.Generator`.

    Args:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        model: a local directory, a hub id (where the network allows), or ``None`` for the modality's
            embedded default model.
        backend: a backend name (see :func:`aigc.backends`); by default inferred from the directory's files.
        device: ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda:1"``, ... or a ``torch.device``.
        dtype: ``"auto"`` (bf16/fp16 on accelerators, float32 on CPU), ``"float32"``, ``"float16"``, ``"bfloat16"``.
        revision: hub revision (branch, tag or commit).
        offload: ``"none"``, ``"model"`` or ``"sequential"`` CPU offload, where the backend supports it.
        allow_pickle: allow pickle weight files (``.bin``/``.pt``), which can run code when loaded.
        trust_remote_code: allow Python code shipped with a hub model to run.
        cache: share the loaded model through ``aigc.cache`` (loading it again returns the same object).
        **options: backend-specific options (each backend documents its own; unknown names are rejected).

    Returns:
        A generator; ``aigc.load("text", ...)`` is typed ``Generator[TextRequest, TextResult]``.

    Raises:
        InvalidRequest: a bad option value. ModelNotFound: no such model. BackendNotFound: no such backend.
        UnsafeModelFile: only pickle weights and ``allow_pickle`` is false.

    Example:
        >>> gen = aigc.load("text", "path/to/gpt2-dir", device="auto", dtype="auto")  # doctest: +SKIP
        >>> gen.info.backend  # doctest: +SKIP
        'transformers'
    """
    # 1. Cheap validation of everything, before importing torch or touching model files.
    modality = check_modality(modality)
    check_device_spec(device)
    check_dtype_spec(dtype)
    if offload not in OFFLOAD_MODES:
        raise InvalidRequest("offload", offload, "unknown offload mode", f"use one of {', '.join(OFFLOAD_MODES)}")
    for name, flag in (("allow_pickle", allow_pickle), ("trust_remote_code", trust_remote_code), ("cache", cache)):
        if not isinstance(flag, bool):
            raise InvalidRequest(name, flag, "must be True or False", f"pass {name}=True or {name}=False")
    if revision is not None and not isinstance(revision, str):
        raise InvalidRequest("revision", revision, "must be a string", "pass a branch, tag or commit hash")
    model_id, backend = _resolve_model(modality, model, backend)

    # 2. Which backend, and does it take these options?
    cls = _pick_backend(modality, model_id, backend)
    _check_options(cls, options)

    # 3. Resolve device and dtype (imports torch), then load or hit the cache.
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    load_options = LoadOptions(device=dev, dtype=dt, revision=revision, allow_pickle=allow_pickle,
                               trust_remote_code=trust_remote_code, offload=offload, extra=dict(options))

    def do_load() -> Generator[Any, Any]:
        return cls.load(model_id, options=load_options)

    if not cache:
        return do_load()
    from aigc._runtime.cache import CacheKey, model_cache

    key = CacheKey(
        modality=modality, backend=cls.backend_name, model=model_id, revision=revision, device=str(dev),
        dtype=dtype_name(dt),
        options=(("allow_pickle", allow_pickle), ("offload", offload), ("trust_remote_code", trust_remote_code),
                 *sorted((k, _hashable(v)) for k, v in options.items())),
    )
    return model_cache.get_or_load(key, do_load)


def _check_options(cls: type[Generator[Any, Any]], options: Mapping[str, Any]) -> None:
    import difflib

    for name, value in options.items():
        if name not in cls.load_options:
            accepted = sorted(cls.load_options)
            close = difflib.get_close_matches(name, [*accepted, "backend", "device", "dtype", "revision"], n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"this backend's options are {accepted}" if accepted else "this backend takes no extra options")
            raise InvalidRequest(name, value, f"unknown option for the {cls.backend_name} {cls.modality} backend", hint)


def generate(
    modality: Modality,
    prompt: Any = None,
    *,
    model: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    on_event: EventCallback | None = None,
    progress: bool | None = None,
    **params: Any,
) -> Any:
    """Load a model (cached) and generate in one call.

    Args:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        prompt: the prompt, or a typed request (``aigc.ImageRequest(...)``).
        model: as in :func:`load`; ``None`` uses the embedded default model.
        backend, device, dtype: as in :func:`load`.
        on_event, progress: as in :meth:`Generator.generate`.
        **params: request parameters (``seed``, ``num_outputs``, ``steps``, ...), validated before loading.

    Returns:
        The modality's result (``TextResult``, ``ImageResult``, ...).

    Example:
        >>> out = aigc.generate("image", "an ankle boot", seed=7, num_outputs=4)  # doctest: +SKIP
        >>> out.save("boots.png")  # doctest: +SKIP
    """
    from aigc._types import REQUEST_TYPES, Request

    modality = check_modality(modality)
    # Validate the request before loading anything.
    if not isinstance(prompt, Request):
        REQUEST_TYPES[modality].from_params(prompt, **params)
    gen = load(modality, model, backend=backend, device=device, dtype=dtype)
    return gen.generate(prompt, on_event=on_event, progress=progress, **params)


def replay(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    model: str | os.PathLike[str] | None = None,
) -> Result:
    """Regenerate a saved output from the provenance record embedded in its file.

    Args:
        path: a file written by ``Result.save`` (PNG, WAV, MP4, JSON, ...).
        device, dtype: where to run; by default those the record names (same device and dtype give the
            same output).
        model: load this model instead of the one the record names (e.g. the same weights moved elsewhere).

    Returns:
        A result holding the regenerated sample(s).

    Raises:
        ProvenanceError: the file has no aigc record. ModelNotFound: the model is no longer available.

    Example:
        >>> again = aigc.replay("boots-0.png")  # doctest: +SKIP
    """
    record = Record.from_file(path)
    request = record.to_request()
    try:
        gen = load(record.modality, model if model is not None else record.model, backend=record.backend,
                   device=device if device is not None else record.device,
                   dtype=dtype if dtype is not None else record.dtype, revision=record.revision,
                   **record.options)
    except ModelNotFound as e:
        raise ModelNotFound(f"{path}: the model that made it is not available: {e}. "
                            "Fix: pass model= the directory holding it") from None
    from aigc._seeds import use_sampler_version

    with use_sampler_version(1 if record.sampler is None else record.sampler):  # draw as the record was drawn
        result = gen.generate(request)
    return result.apply_postprocess(record.postprocess)  # type: ignore[no-any-return]
