"""The top-level functions: ``load``, ``generate``, ``replay``."""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from aigc._generator import OFFLOAD_MODES, Generator, LoadOptions, Offload, is_out_of_memory
from aigc._options import BackendOptions
from aigc._registry import DEFAULT_BACKENDS, _registry
from aigc._results import RESULT_TYPES, AudioResult, ImageResult, Record, Result, TextResult, VideoResult
from aigc._runtime.device import check_device_spec, check_dtype_spec, dtype_name, resolve_device, resolve_dtype
from aigc._runtime.hub import HUB_ARGS, RECORDED_HUB_ARGS, hub_args
from aigc._runtime.quiet import quiet
from aigc._seeds import use_sampler_version
from aigc._types import (
    MODALITIES,
    AudioRequest,
    EventCallback,
    ImageRequest,
    Modality,
    TextRequest,
    VideoRequest,
    check_modality,
)
from aigc.errors import AigcError, InvalidRequest, ModelNotFound, OutOfMemory, ProvenanceError, ProvenanceWarning

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

#: One model loads at a time in a process. transformers and diffusers change process-wide state while they
#: load (meta-device parameter registration, skipped weight init, the default dtype), so two loads at once --
#: even of different models -- corrupt each other ("Cannot copy out of meta tensor"). Reentrant, so a backend
#: may load a component through aigc.load. Generation does not take it.
LOAD_LOCK = threading.RLock()


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
        **options: backend-specific options (each backend documents its own; unknown names are rejected), and
            for Hugging Face models the download keywords of ``from_pretrained``: ``token``, ``cache_dir``,
            ``local_files_only`` and ``variant`` (a record keeps only ``variant``; a token is never saved).

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
    hub = hub_args(options)
    options = {k: v for k, v in options.items() if k not in HUB_ARGS}
    model_id, backend = _resolve_model(modality, model, backend)

    # 2. Which backend, and does it take these options?
    cls = _pick_backend(modality, model_id, backend)
    if hub and not cls.hub_models:
        name = next(iter(hub))
        raise InvalidRequest(name, "<hidden>" if name == "token" else hub[name],
                             f"the {cls.backend_name} {cls.modality} backend loads aigc's own model files, not Hugging "
                             "Face models", "leave it out")
    typed = _check_options(cls, options)

    # 3. Resolve device and dtype (imports torch), then load or hit the cache.
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    load_options = LoadOptions(device=dev, dtype=dt, revision=revision, allow_pickle=allow_pickle,
                               trust_remote_code=trust_remote_code, offload=offload,
                               extra={**options, **{k: v for k, v in hub.items() if k in RECORDED_HUB_ARGS}},
                               backend=typed, hub=hub)

    def do_load() -> Generator[Any, Any]:
        with LOAD_LOCK, quiet():
            try:
                return cls.load(model_id, options=load_options)
            except (MemoryError, RuntimeError, OSError) as e:
                if isinstance(e, AigcError) or not is_out_of_memory(e):
                    raise
                raise OutOfMemory(f"out of memory while loading {model_id!r} on {dev} ({str(e).strip()[:200]})",
                                  suggestion="free memory (aigc.cache.clear(), or a smaller cache budget), "
                                  "dtype='bfloat16' or 'float16', offload='model' where the backend supports "
                                  "it, or a smaller model") from e

    if not cache:
        return do_load()
    from aigc._runtime.cache import CacheKey, model_cache

    key = CacheKey(
        modality=modality, backend=cls.backend_name, model=model_id, revision=revision, device=str(dev),
        dtype=dtype_name(dt),
        options=(("allow_pickle", allow_pickle), ("offload", offload), ("trust_remote_code", trust_remote_code),
                 *sorted((k, _hashable(v)) for k, v in options.items()),
                 *sorted((k, _hashable(v)) for k, v in hub.items() if k != "token")),  # a token: where from
    )
    return model_cache.get_or_load(key, do_load)


def _check_options(cls: type[Generator[Any, Any]], options: Mapping[str, Any]) -> BackendOptions | None:
    """The backend's typed options (its ``options_type``), or for a backend that declares only names, ``None``
    once every name is known."""
    import difflib

    if cls.options_type is not None:
        return cls.options_type.build(options, owner=f"{cls.backend_name} {cls.modality}")
    for name, value in options.items():
        if name not in cls.load_options:
            accepted = sorted(cls.load_options)
            close = difflib.get_close_matches(name, [*accepted, "backend", "device", "dtype", "revision"], n=1)
            hint = f"did you mean {close[0]!r}?" if close else (
                f"this backend's options are {accepted}" if accepted else "this backend takes no extra options")
            raise InvalidRequest(name, value, f"unknown option for the {cls.backend_name} {cls.modality} backend", hint)
    return None


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
    # Validate the request before loading anything: its values, then what the model's own files allow.
    request = prompt if isinstance(prompt, Request) else REQUEST_TYPES[modality].from_params(prompt, **params)
    precheck(modality, model, request, backend=backend)
    gen = load(modality, model, backend=backend, device=device, dtype=dtype)
    return gen.generate(prompt, on_event=on_event, progress=progress, **params)


def wrap(obj: Any, tokenizer: Any = None, *, modality: Modality | None = None) -> Generator[Any, Any]:
    """Make a :class:`~aigc.Generator` of a model object you already have: a transformers causal, seq2seq or
    masked language model (with its tokenizer), or a diffusers pipeline (text-to-image, audio, video).

    The object is used as it is (its device and dtype; nothing is copied or moved) and is not put in
    ``aigc.cache``. Results get aigc's seeds, events, saving and records; a record names the object's
    ``name_or_path``, so :func:`aigc.replay` reloads it from there. Backends (plugins too) take part by
    overriding :meth:`Generator.wraps` and :meth:`Generator.wrap`.

    Args:
        obj: the model or pipeline.
        tokenizer: the language model's tokenizer (required for one; refused for a pipeline, which has its own).
        modality: only ask this modality's backends (by default, all).

    Raises:
        InvalidRequest: no backend can wrap ``obj``, or the tokenizer is missing.

    Example:
        >>> lm = transformers.AutoModelForCausalLM.from_pretrained("gpt2")  # doctest: +SKIP
        >>> tok = transformers.AutoTokenizer.from_pretrained("gpt2")  # doctest: +SKIP
        >>> gen = aigc.wrap(lm, tok)  # doctest: +SKIP
        >>> gen.generate("Hello", seed=0, max_new_tokens=5).text  # doctest: +SKIP
    """
    modalities = [check_modality(modality)] if modality is not None else list(MODALITIES)
    for mod in modalities:
        for info in _registry.infos(mod):
            if info.status == "error":
                continue
            cls = _registry.get(mod, info.name)
            if cls.wraps(obj):
                return cls.wrap(obj, tokenizer=tokenizer)
    raise InvalidRequest("obj", f"<{type(obj).__module__}.{type(obj).__name__}>", "no backend can wrap this object",
                         "pass a transformers causal, seq2seq or masked language model (with tokenizer=), or a "
                         "diffusers text-to-image, audio or video pipeline; or load a folder with aigc.load")


def precheck(modality: Modality, model: str | os.PathLike[str] | None, request: Any, *,
             backend: str | None = None) -> None:
    """Check ``request`` against what the model's files say (class names, step limits, sizes) before any weights
    load: the backend's :meth:`Generator.precheck` on the model's folder. A model that is not a local folder or a
    built-in name is checked after it loads, as before.

    Example:
        >>> precheck("image", "default", aigc.ImageRequest(prompt="a car"))  # doctest: +SKIP
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: prompt='a car': names none of the 20 classes this model draws ...
    """
    model_id, backend = _resolve_model(modality, model, backend)
    cls = _pick_backend(modality, model_id, backend)
    if os.path.isdir(model_id) or model_id in cls.builtin_models:
        cls.precheck(model_id, request)


#: Load arguments replay never takes from a record, whatever the backend: they decide what code runs, which
#: files may be unpickled, and the memory and devices the load uses. The caller passes them.
UNSAFE_LOAD_ARGS: dict[str, str] = {
    "trust_remote_code": "--trust-remote-code",
    "allow_pickle": "--allow-pickle",
    "offload": "--offload",
    "cache": "--no-cache",
}
#: ``load``'s own parameters, which a record keeps in fields of its own, never among its ``options``.
_NOT_OPTIONS = frozenset({"modality", "model", "backend", "device", "dtype", "revision", "options"})


def replay(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    model: str | os.PathLike[str] | None = None,
    trust_remote_code: bool | None = None,
    allow_pickle: bool | None = None,
    offload: Offload | None = None,
    cache: bool | None = None,
    strict: bool = True,
    **options: Any,
) -> Result:
    """Regenerate a saved output from the provenance record embedded in its file.

    A record is data from a stranger (see ``docs/concepts/provenance.md``). Replay takes the request, the seeds,
    the model and the options that define the output from it, after checking them like a request of your own
    (:mod:`aigc.limits` included) and before anything loads. It never takes an option that decides what code
    runs or what resources a load uses: a record that sets ``trust_remote_code``, ``allow_pickle``,
    ``offload``, ``cache``, a non-CPU device, or a backend's unsafe option (e.g. ``max_batch_size``) makes
    replay raise :class:`~aigc.errors.ProvenanceError` naming the argument to pass -- unless you passed it.
    A recorded model that is neither a local directory nor a built-in name (so loading it could download it)
    needs ``model=``. After loading, the weights fingerprint is compared with the recorded one.

    Args:
        path: a file written by ``Result.save`` (PNG, WAV, MP4, JSON, ...).
        device: where to run. By default the CPU for a record made on the CPU; a record made on an accelerator
            needs ``device=`` (the same device and dtype give the same output).
        dtype: by default the recorded one.
        model: load this model instead of the one the record names (the same weights moved elsewhere, or a hub
            id you allow to be downloaded).
        trust_remote_code, allow_pickle, offload, cache: as in :func:`aigc.load`; never taken from the record.
        strict: raise :class:`~aigc.errors.ProvenanceError` when the loaded weights are not those that made the
            file; ``False`` warns with :class:`~aigc.errors.ProvenanceWarning` and replays anyway.
        **options: backend load options; they override the record's, and allow its unsafe ones.

    Returns:
        A result holding the regenerated sample(s).

    Raises:
        ProvenanceError: the file has no aigc record, a malformed one, one that asks for an option replay does
            not take from a file, or one made with other weights. ModelNotFound: the model is no longer there.

    Example:
        >>> again = aigc.replay("boots-0.png")  # doctest: +SKIP
        >>> again = aigc.replay("story.txt", device="cuda", max_batch_size=8)  # doctest: +SKIP
    """
    # 1. Read and check the record, before touching any model: its request against the bounds, its steps.
    record = Record.from_file(path)
    request = record.to_request()
    RESULT_TYPES[record.modality].check_postprocess(record.postprocess)

    # 2. Decide how to load: the output-defining parts from the record, the trust-relevant ones from the caller.
    explicit = {"trust_remote_code": trust_remote_code, "allow_pickle": allow_pickle, "offload": offload,
                "cache": cache}
    given = {name: value for name, value in explicit.items() if value is not None}
    cls = _registry.get(record.modality, record.backend)
    load_options = _replay_options(path, record, cls, given, options)
    if model is None:
        _check_recorded_model(path, record, cls)
    if device is None:
        device = _recorded_device(path, record)
    if dtype is None:
        try:
            check_dtype_spec(record.dtype)
        except InvalidRequest as e:
            raise ProvenanceError(f"{path}: the record's dtype cannot be used: {e}") from None
        dtype = record.dtype

    # 3. Load, then check that these are the weights that made the file.
    try:
        gen = load(record.modality, model if model is not None else record.model, backend=record.backend,
                   device=device, dtype=dtype, revision=record.revision, trust_remote_code=bool(trust_remote_code),
                   allow_pickle=bool(allow_pickle), offload=offload or "none", cache=cache is not False,
                   **load_options)
    except ModelNotFound as e:
        raise ModelNotFound(f"{path}: the model that made it is not available: {e}. "
                            "Fix: pass model= the directory holding it") from None
    except InvalidRequest as e:
        if e.field in record.options and e.field not in options:
            raise ProvenanceError(f"{path}: the record's load option cannot be used: {e}") from None
        raise
    _check_weights(path, record, gen, strict=strict)

    # 4. Generate with the sampler version that made the record, and redo the recorded post-processing.
    with use_sampler_version(1 if record.sampler is None else record.sampler):
        result: Result = gen.generate(request)
    return result.apply_postprocess(record.postprocess)


def _replay_options(path: str | os.PathLike[str], record: Record, cls: type[Generator[Any, Any]],
                    given: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The backend options to load with: the record's safe ones, overridden by the caller's."""
    for name, value in options.items():
        if name in _NOT_OPTIONS:
            raise InvalidRequest(name, value, "not an option of replay", "replay takes the model, backend and "
                                 "revision from the record; pass model= to load another model")
    unsafe = {*UNSAFE_LOAD_ARGS, *cls.unsafe_load_options}
    for name, value in record.options.items():
        if name in _NOT_OPTIONS:
            raise ProvenanceError(f"{path}: malformed record: its options set {name}={value!r}, which a record keeps "
                                  f"in a field of its own")
        recorded_hub = cls.hub_models and name in RECORDED_HUB_ARGS  # e.g. variant: which weights made it
        if name not in UNSAFE_LOAD_ARGS and name not in cls.load_options and not recorded_hub:
            raise ProvenanceError(f"{path}: the record's options name {name!r}, which the {cls.backend_name} "
                                  f"{cls.modality} backend does not take")
        if name in unsafe and name not in given and name not in options:
            flag = UNSAFE_LOAD_ARGS.get(name, f"--option {name}=JSON")
            raise ProvenanceError(
                f"{path}: the record asks to load with {name}={value!r}, and replay never takes {name} from a file "
                f"(it decides what code runs or what resources the load uses). Fix: if you trust the file, pass "
                f"{name}={value!r} to aigc.replay yourself (CLI: {flag}), or pass the value you want")
    merged = {k: v for k, v in record.options.items() if k not in unsafe}
    merged.update(options)
    return merged


def _check_recorded_model(path: str | os.PathLike[str], record: Record, cls: type[Generator[Any, Any]]) -> None:
    """A recorded model loads only from a local directory or as a built-in name: anything else could be a download
    from the model hub that the file's author chose."""
    if os.path.isdir(os.path.expanduser(record.model)) or record.model in cls.builtin_models:
        return
    if _looks_like_path(record.model):
        raise ModelNotFound(f"{path}: the model that made it is not available: {record.model!r} is not a directory "
                            "here. Fix: pass model= the directory holding it")
    raise ProvenanceError(
        f"{path}: the record names the model {record.model!r}, which is neither a local directory nor a built-in "
        f"{cls.backend_name} model, so loading it could download it from the model hub. Fix: if you want that, "
        f"pass model={record.model!r} to aigc.replay (CLI: --model), or model= a local copy")


def _recorded_device(path: str | os.PathLike[str], record: Record) -> str:
    """The CPU, where the record was made on the CPU; a record made elsewhere needs the caller's device=."""
    if record.device in ("cpu", "cpu:0"):
        return "cpu"
    try:
        check_device_spec(record.device)
        fix = f"pass device={record.device!r} to run where it was made (CLI: --device {record.device}), or device='cpu'"
    except InvalidRequest:
        fix = "pass device= where to run, e.g. device='cpu'"
    raise ProvenanceError(f"{path}: the record was made on device {record.device!r}, and replay does not choose a "
                          f"device from a file. Fix: {fix}")


def _check_weights(path: str | os.PathLike[str], record: Record, gen: Generator[Any, Any], *, strict: bool) -> None:
    """The loaded weights are those that made the file (where both fingerprints are known)."""
    import warnings

    if record.weights is None:
        return
    if gen.weights is None:
        warnings.warn(ProvenanceWarning(f"{path}: the record names weights {record.weights}, but the "
                                        f"{gen.backend_name} backend cannot fingerprint {gen.model_id!r}, so replay "
                                        "cannot check them"), stacklevel=3)
        return
    if gen.weights == record.weights:
        return
    message = (f"{path}: the loaded weights ({gen.weights}) are not those that made the file ({record.weights}), so "
               f"the output will differ")
    if strict:
        raise ProvenanceError(f"{message}. Fix: pass model= the directory holding the original weights, or "
                              "strict=False to replay with these (CLI: --no-strict)")
    warnings.warn(ProvenanceWarning(message), stacklevel=3)
