"""The Generator interface every backend implements, built-in or plugin."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime
import errno
import importlib.metadata
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from aigc._options import BackendOptions
from aigc._results import Record, Result
from aigc._runtime.events import EventEmitter
from aigc._runtime.quiet import quiet
from aigc._runtime.weights import fingerprint_files
from aigc._seeds import resolve_seeds
from aigc._types import EventCallback, Modality, Request, _jsonable
from aigc._version import __version__
from aigc.errors import AigcError, GenerationCancelled, InvalidRequest, OutOfMemory

if TYPE_CHECKING:
    import torch
    from typing_extensions import Self

__all__ = ["Generator", "GeneratorInfo", "LoadOptions", "Offload", "fingerprint_files"]

ReqT = TypeVar("ReqT", bound=Request)
ResT = TypeVar("ResT", bound=Result)
Offload = Literal["none", "model", "sequential"]
OFFLOAD_MODES: tuple[Offload, ...] = ("none", "model", "sequential")
_BASE_FIELDS = frozenset({"prompt", "seed", "num_outputs", "deterministic"})


@dataclass(frozen=True, kw_only=True)
class LoadOptions:
    """What ``aigc.load`` passes to a backend's :meth:`Generator.load`.

    Attributes:
        device, dtype: already resolved to torch objects.
        revision: a hub revision (branch, tag or commit), or ``None``.
        allow_pickle: allow pickle-based weight files (unsafe: they can run code).
        trust_remote_code: allow model code from the model's repository to run.
        offload: ``"none"``, ``"model"`` or ``"sequential"`` CPU offload, where the backend supports it.
        extra: the backend-specific options as the user passed them (what a record stores).
        backend: the same, typed and checked: an instance of the backend's ``options_type``
            (``MyOptions.of(options)`` returns it), or ``None`` for a backend that declares only names.
        hub: Hugging Face's download keywords the caller passed (``token``, ``cache_dir``, ``local_files_only``,
            ``variant``; see :mod:`aigc._runtime.hub`), for ``from_pretrained``.
    """

    device: torch.device
    dtype: torch.dtype
    revision: str | None = None
    allow_pickle: bool = False
    trust_remote_code: bool = False
    offload: Offload = "none"
    extra: Mapping[str, Any] = field(default_factory=dict)
    backend: BackendOptions | None = None
    hub: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator is: backend, model and where it runs.

    Example:
        >>> gen.info.parameters  # doctest: +SKIP
        124439808
    """

    backend: str
    modality: Modality
    model: str
    revision: str | None
    device: str
    dtype: str
    parameters: int
    weights: str | None


class Generator(abc.ABC, Generic[ReqT, ResT]):
    """One loaded model that generates one modality. Backends subclass it.

    A backend sets the class attributes, implements :meth:`load` and :meth:`_generate`, and may override
    :meth:`detect` (to be chosen automatically for a model directory), :meth:`_stream`, :meth:`_to` and
    :meth:`_close`. Everything shared -- request building and validation, seeds, events, provenance --
    happens here, so every backend behaves the same.

    Class attributes:
        modality: ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        backend_name: the name users pass as ``backend=``; the entry point is ``"<modality>.<backend_name>"``.
        request_type: the request class (``aigc.TextRequest`` for text, ...).
        supported_params: request fields this backend honours beyond prompt, seed, num_outputs and
            deterministic. Any other field set to a non-default value is rejected with a clear error.
        options_type: the backend's typed load options (a :class:`~aigc.BackendOptions` subclass): ``aigc.load``
            builds and checks them before loading; ``load_options`` is then its field names.
        load_options: names of backend-specific keyword options ``aigc.load`` accepts (for a backend without
            ``options_type``, which then checks the values itself).
        unsafe_load_options: those of ``load_options`` that :func:`aigc.replay` never takes from a provenance
            record (a record is data from a stranger): options that can run code, reach the network, read a file
            the record points to without the safetensors rule, or change the resources a load uses (memory,
            batch sizes). Replay raises :class:`~aigc.errors.ProvenanceError` for a record that sets one,
            unless the caller passes it. Options that define the output (a LoRA directory, a scale) are safe.
        builtin_models: model names the backend loads from inside the package (``"default"``); replay loads a
            recorded name only if it is one of these or a local directory (anything else could be a download).
        hub_models: whether the backend loads Hugging Face models through ``from_pretrained`` (and so takes the
            download keywords ``token``, ``cache_dir``, ``local_files_only``, ``variant``).

    Example:
        >>> gen = aigc.load("text", "path/to/gpt2-dir")  # doctest: +SKIP
        >>> gen.generate("Hello", max_new_tokens=5, seed=0).text  # doctest: +SKIP
    """

    modality: ClassVar[Modality]
    backend_name: ClassVar[str]
    request_type: ClassVar[type[Request]]
    supported_params: ClassVar[frozenset[str]] = frozenset()
    load_options: ClassVar[frozenset[str]] = frozenset()
    options_type: ClassVar[type[BackendOptions] | None] = None
    unsafe_load_options: ClassVar[frozenset[str]] = frozenset({"max_batch_size"})  # memory, not the output
    builtin_models: ClassVar[frozenset[str]] = frozenset()
    hub_models: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "options_type" in cls.__dict__ and cls.options_type is not None:
            cls.load_options = cls.options_type.names()

    def __init__(
        self,
        *,
        model: str,
        device: torch.device,
        dtype: torch.dtype,
        revision: str | None = None,
        weights: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.model_id = model
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self.weights = weights
        #: backend-specific load options (recorded, so that replay loads the model the same way)
        self.options = dict(options or {})
        #: the model's recommended request settings (e.g. from a text model's generation_config.json); they
        #: fill in keywords a ``generate``/``stream`` call leaves out, and never override a typed request
        self.request_defaults: dict[str, Any] = {}
        self._closed = False

    # -- what a backend implements ---------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        """Whether this backend can load the model directory ``path`` (cheap: look at file names/config)."""
        return False

    @classmethod
    def wraps(cls, obj: Any) -> bool:
        """Whether :meth:`wrap` can make a generator of ``obj``, an object the user already has (a transformers
        model, a diffusers pipeline, ...). Cheap; must not import anything ``obj``'s own library did not."""
        return False

    @classmethod
    def wrap(cls, obj: Any, *, tokenizer: Any = None) -> Self:
        """A generator around ``obj`` (see :func:`aigc.wrap`); backends that can wrap objects override it."""
        raise NotImplementedError(f"the {cls.backend_name} {cls.modality} backend cannot wrap objects")

    @classmethod
    def precheck(cls, model: str, request: Any) -> None:
        """Check ``request`` against the model's files before its weights load (``model``: a local folder or one of
        ``builtin_models``); cheap -- read a config, never weights. Default: nothing to check."""

    @classmethod
    @abc.abstractmethod
    def load(cls, model: str, *, options: LoadOptions) -> Self:
        """Load ``model`` (a local directory, a hub id or a built-in name)."""

    @abc.abstractmethod
    def _generate(self, request: ReqT, seeds: list[int], events: EventEmitter) -> ResT:
        """Run one validated request with one seed per sample; the base class adds the record."""

    def _stream(self, request: ReqT, seeds: list[int], events: EventEmitter) -> Iterator[str]:
        raise InvalidRequest(
            "stream", self.backend_name, f"the {self.backend_name} {self.modality} backend cannot stream",
            "call generate() and follow progress with on_event=",
        )

    def _to(self, device: torch.device) -> None:
        """Move the model's weights to ``device``."""
        raise InvalidRequest("device", str(device), f"the {self.backend_name} backend cannot move devices",
                             "load the model again with device=")

    def _close(self) -> None:
        """Release resources; called once by :meth:`close`."""

    def _modules(self) -> list[torch.nn.Module]:
        """The torch modules that hold the model's weights, which :meth:`parameters_count` and
        :meth:`memory_bytes` count; a backend whose weights are not torch modules overrides those two instead."""
        return []

    def parameters_count(self) -> int:
        """Number of model parameters (0 when unknown)."""
        return sum(p.numel() for m in self._modules() for p in m.parameters())

    def memory_bytes(self) -> int:
        """Bytes of weights and buffers held, for the model cache's budget (0 when unknown)."""
        return sum(t.numel() * t.element_size() for m in self._modules() for t in [*m.parameters(), *m.buffers()])

    # -- the public interface --------------------------------------------------------------------
    def generate(
        self,
        request: ReqT | Any = None,
        /,
        *,
        on_event: EventCallback | None = None,
        progress: bool | None = None,
        **params: Any,
    ) -> ResT:
        """Generate from a typed request, or from a prompt and keyword parameters.

        Args:
            request: an ``aigc.*Request``, or the prompt.
            on_event: called with an :class:`aigc.Event` at start, for each step/token and at the end;
                ``event.cancel()`` stops the run at the next step.
            progress: show a progress bar (default: on in a terminal or notebook).
            **params: request fields (``seed``, ``num_outputs``, ``max_new_tokens``, ...). Unknown names
                raise :class:`~aigc.errors.InvalidRequest`.

        Returns:
            The modality's result type, with per-sample seeds and a provenance ``record``.

        Example:
            >>> res = gen.generate("今天天气真好，", max_new_tokens=50, num_outputs=5, seed=42)  # doctest: +SKIP
            >>> res.seeds  # doctest: +SKIP
            [42, 43, 44, 45, 46]
        """
        req = self._build_request(request, params)
        seeds = resolve_seeds(req.seed, req.total_samples)
        started = time.perf_counter()
        with self._emitter(on_event, progress, req) as events, self._out_of_memory(req), quiet():
            result = self._generate(req, seeds, events)
        result.record = self._record(req, seeds, time.perf_counter() - started, flags=result.flags)
        return self._watermark(result, req)  # type: ignore[return-value]

    def stream(
        self,
        request: ReqT | Any = None,
        /,
        *,
        on_event: EventCallback | None = None,
        **params: Any,
    ) -> Iterator[str]:
        """Yield the output as it is produced (text pieces, for text backends).

        One sample only (one prompt, ``num_outputs=1``). Joining the pieces gives exactly the text
        ``generate`` returns for the same request.

        Example:
            >>> for piece in gen.stream("Once upon a time", max_new_tokens=50, seed=1):  # doctest: +SKIP
            ...     print(piece, end="")
        """
        req = self._build_request(request, params)
        if req.total_samples != 1:
            raise InvalidRequest("num_outputs", req.total_samples, "stream() makes one sample",
                                 "pass one prompt with num_outputs=1, or use generate()")
        seeds = resolve_seeds(req.seed, 1)

        def pieces() -> Iterator[str]:
            with self._emitter(on_event, False, req) as events, self._out_of_memory(req), quiet():
                yield from self._stream(req, seeds, events)

        return pieces()

    def to(self, device: str | torch.device) -> Self:
        """Move the generator to another device and return it.

        Example:
            >>> gen.to("cpu")  # doctest: +SKIP
        """
        from aigc._runtime.cache import model_cache
        from aigc._runtime.device import resolve_device

        self._check_open()
        target = resolve_device(device)
        if target != self.device:
            self._to(target)
            model_cache.discard(self)  # its cache key names the old device
            self.device = target
        return self

    def close(self) -> None:
        """Release the model; the generator cannot be used afterwards."""
        from aigc._runtime.cache import model_cache

        if not self._closed:
            self._closed = True
            model_cache.discard(self)
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def info(self) -> GeneratorInfo:
        """Backend, model, revision, device, dtype and parameter count."""
        from aigc._runtime.device import dtype_name

        return GeneratorInfo(
            backend=self.backend_name, modality=self.modality, model=self.model_id, revision=self.revision,
            device=str(self.device), dtype=dtype_name(self.dtype), parameters=self.parameters_count(),
            weights=self.weights,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.modality}/{self.backend_name} {self.model_id!r} on {self.device}>"

    # -- shared machinery ------------------------------------------------------------------------
    def _chunk_size(self, request: Request) -> int:
        """Samples per network call: 1 with ``deterministic=True`` (a sample never sees its batch), else the load
        option ``max_batch_size`` (64 where a backend has none)."""
        return 1 if request.deterministic else int(getattr(self, "max_batch_size", 64))

    def _cancelled(self, done: int, total: int, unit: str) -> GenerationCancelled:
        """The one error every backend raises when an event callback cancelled a run without a partial result."""
        return GenerationCancelled(f"cancelled by an event callback after {done} of {total} {unit}; the generator is "
                                   "still usable. Fix: call generate() again to start over")

    def _chunks(self, count: int, events: EventEmitter, *, size: int, unit: str = "batches") -> Iterator[slice]:
        """Run ``count`` samples ``size`` at a time: yields each chunk's slice, emitting ``"start"``, one ``"step"``
        per chunk and ``"end"``, and raising :meth:`_cancelled` between chunks once a callback cancelled.

        Example:
            >>> for part in self._chunks(len(seeds), events, size=self._chunk_size(request)):  # doctest: +SKIP
            ...     outs.append(net(z[part]))
        """
        total = -(-count // size)
        events.emit("start", total=total)
        for i, start in enumerate(range(0, count, size)):
            if events.cancelled:
                raise self._cancelled(i, total, unit)
            yield slice(start, min(start + size, count))
            events.emit("step", step=i + 1, total=total, advance=1)
        events.emit("end", step=total, total=total)

    def _check_open(self) -> None:
        if self._closed:
            raise AigcError(f"{self!r} is closed. Fix: load the model again with aigc.load()")

    def _build_request(self, request: Any, params: dict[str, Any]) -> ReqT:
        self._check_open()
        rtype = self.request_type
        if isinstance(request, Request):
            if not isinstance(request, rtype):
                raise InvalidRequest("request", type(request).__name__, f"a {self.modality} generator needs a "
                                     f"{rtype.__name__}", f"pass aigc.{rtype.__name__}(...)")
            req = request.replace(**params) if params else request
        else:
            defaults = {k: v for k, v in self.request_defaults.items() if k not in params}
            req = rtype.from_params(request, **defaults, **params)
        self._check_supported(req)
        return req  # type: ignore[return-value]

    @contextlib.contextmanager
    def _out_of_memory(self, req: Request) -> Iterator[None]:
        """Turn any allocator failure into :class:`~aigc.errors.OutOfMemory` with what would help."""
        try:
            yield
        except (MemoryError, RuntimeError, OSError) as e:
            if isinstance(e, AigcError) or not is_out_of_memory(e):
                raise
            where = "host memory" if isinstance(e, MemoryError) or self.device.type == "cpu" else str(self.device)
            raise OutOfMemory(f"out of {where} while generating {req.total_samples} sample(s) with "
                              f"{self.model_id!r} ({str(e).strip()[:200]})", suggestion=self._memory_hint(req)) from e

    def _memory_hint(self, req: Request) -> str:
        hints = []
        if req.total_samples > 1:
            hints.append("fewer samples per call (num_outputs, or the load option max_batch_size)")
        if self.device.type != "cpu":
            if str(self.dtype) == "torch.float32":
                hints.append("dtype='bfloat16' or 'float16'")
            hints.append("offload='model' where the backend supports it")
        hints.append("a smaller model")
        return "try " + ", or ".join(hints)

    def _check_supported(self, req: Request) -> None:
        supported = _BASE_FIELDS | self.supported_params
        if self.modality != "text":
            supported |= {"watermark"}  # the core watermarks images, audio and video after any backend
        for f in dataclasses.fields(req):
            if f.name in supported:
                continue
            value = getattr(req, f.name)
            if f.name == "watermark" and value is not True:
                continue  # not watermarking is what a backend without the text watermark does anyway
            default = f.default if f.default is not dataclasses.MISSING else None
            if value != default and not (value == [] and default == ()):
                raise InvalidRequest(
                    f.name, value, f"not supported by the {self.backend_name} {self.modality} backend",
                    f"leave it out; this backend takes {', '.join(sorted(supported))}",
                )

    def _emitter(self, on_event: EventCallback | None, progress: bool | None, req: Request) -> EventEmitter:
        total = getattr(req, "max_new_tokens", None) or getattr(req, "steps", None)
        return EventEmitter(on_event, progress=progress, total=total, desc=f"aigc {self.modality}")

    def _watermark(self, result: Result, req: Request) -> Result:
        """Watermark the samples where the request's ``watermark`` policy says so (:mod:`aigc.watermark`)."""
        from aigc.watermark._apply import apply

        assert result.record is not None
        return apply(result, req, result.record)

    def _record(self, req: Request, seeds: list[int], duration: float, *,
                flags: list[list[str]] | None = None) -> Record:
        """The provenance record of a finished request; for text, with the watermarks its sampler applied."""
        from aigc._runtime.device import dtype_name
        from aigc._seeds import sampler_version
        from aigc.watermark._apply import text_marks

        marks = text_marks(req, seeds, supported="watermark" in self.supported_params) if self.modality == "text" \
            else []
        return Record(
            flags=[list(f) for f in flags or []], watermarks=marks,
            modality=self.modality, backend=self.backend_name, model=self.model_id, request=req.to_dict(),
            seeds=list(seeds), device=str(self.device), dtype=dtype_name(self.dtype), revision=self.revision,
            weights=self.weights, duration_s=round(duration, 6), options=_jsonable(self.options),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            aigc_version=__version__, versions=library_versions(), sampler=sampler_version(),
        )


# What allocators say when they fail: torch's CUDA/MPS "out of memory", its CPU allocator ("DefaultCPUAllocator:
# can't allocate memory" / "not enough memory"), C++'s std::bad_alloc, and the OS (ENOMEM, "Cannot allocate memory").
_ALLOCATOR_FAILURES = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
                       "bad_alloc", "failed to allocate")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator failure (host or device), whatever type the library raised it as.

    Example:
        >>> is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 TB"))
        True
        >>> is_out_of_memory(RuntimeError("shape mismatch"))
        False
    """
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(error, oom):
        return True
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return True
    if isinstance(error, (RuntimeError, OSError)):
        text = str(error).lower()
        return any(marker in text for marker in _ALLOCATOR_FAILURES)
    return False


_VERSIONS: dict[str, str | None] = {}


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a result may depend on (those imported; looked up once)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "diffusers", "torchaudio", "peft"):
        if name in sys.modules:
            if name not in _VERSIONS:
                try:
                    _VERSIONS[name] = importlib.metadata.version(name)
                except importlib.metadata.PackageNotFoundError:
                    _VERSIONS[name] = None
            if _VERSIONS[name]:
                versions[name] = _VERSIONS[name]  # type: ignore[assignment]
    return versions
