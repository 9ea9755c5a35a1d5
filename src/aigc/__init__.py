"""aigc: one typed API for multimodal generation -- text, image, audio and video, offline first.

Example:
    >>> import aigc
    >>> gen = aigc.load("text", "path/to/gpt2-dir")                      # doctest: +SKIP
    >>> gen.generate("Once upon a time", max_new_tokens=20, seed=1).text  # doctest: +SKIP

``import aigc`` imports no torch, transformers or diffusers; they load when a generator is created.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aigc import errors, limits
from aigc._api import generate, load, replay, wrap
from aigc._generator import Generator, GeneratorInfo, LoadOptions
from aigc._options import BackendOptions
from aigc._registry import BackendInfo, backends, register_backend
from aigc._results import (
    AudioResult,
    Fill,
    FinishReason,
    ImageResult,
    Record,
    Result,
    SavedPaths,
    TextResult,
    VideoResult,
)
from aigc._runtime.cache import model_cache as cache
from aigc._runtime.events import EventEmitter
from aigc._runtime.quiet import set_verbosity
from aigc._types import (
    AudioRequest,
    Event,
    ImageRequest,
    Message,
    Modality,
    Request,
    TextRequest,
    VideoRequest,
)
from aigc._version import __version__ as __version__

if TYPE_CHECKING:
    from aigc import evaluate, formats, models, provenance, ray, sampling, serve, testing, train, watermark
    from aigc.provenance.verify import verify

__all__ = [
    "AudioRequest",
    "AudioResult",
    "BackendInfo",
    "BackendOptions",
    "Event",
    "EventEmitter",
    "Fill",
    "FinishReason",
    "Generator",
    "GeneratorInfo",
    "ImageRequest",
    "ImageResult",
    "LoadOptions",
    "Message",
    "Modality",
    "Record",
    "Request",
    "Result",
    "SavedPaths",
    "TextRequest",
    "TextResult",
    "VideoRequest",
    "VideoResult",
    "backends",
    "cache",
    "errors",
    "evaluate",
    "formats",
    "generate",
    "limits",
    "load",
    "models",
    "provenance",
    "ray",
    "register_backend",
    "replay",
    "sampling",
    "serve",
    "set_verbosity",
    "testing",
    "train",
    "verify",
    "watermark",
    "wrap",
]

# Submodules that import torch load on first attribute access.
_LAZY_SUBMODULES = frozenset(
    {"evaluate", "formats", "models", "provenance", "ray", "sampling", "serve", "testing", "train", "watermark"}
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"aigc.{name}")
    if name == "verify":  # its detectors import numpy: loaded on first use, then an attribute like any other
        value = importlib.import_module("aigc.provenance.verify").verify
        globals()["verify"] = value
        return value
    raise AttributeError(f"module 'aigc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
