"""Fake backends for testing code that uses aigc, without models, downloads or heavy compute.

They follow every contract of a real backend (seeds, batch == single, events, provenance), so code
written against them works unchanged with a real model.

Example:
    >>> from aigc.testing import FakeTextGenerator, registered
    >>> with registered(FakeTextGenerator):
    ...     res = aigc.load("text", "anything", backend="fake").generate("Hi", seed=1, max_new_tokens=3)
    >>> len(res.texts[0].split())
    3
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aigc._generator import Generator, LoadOptions
from aigc._registry import _registry
from aigc._results import ImageResult, TextResult
from aigc._runtime.events import EventEmitter
from aigc._types import ImageRequest, TextRequest

__all__ = ["FakeImageGenerator", "FakeTextGenerator", "registered"]

WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu")


class FakeTextGenerator(Generator[TextRequest, TextResult]):
    """Text backend ``fake``: each token is a word drawn with the sample's own seeded generator."""

    modality = "text"
    backend_name = "fake"
    request_type = TextRequest
    supported_params = frozenset({"max_new_tokens", "do_sample", "temperature", "stop"})

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> FakeTextGenerator:
        return cls(model=model, device=options.device, dtype=options.dtype)

    def _words(self, request: TextRequest, seed: int, events: EventEmitter, sample: int) -> Iterator[str]:
        import torch

        gen = torch.Generator("cpu").manual_seed(seed)
        for step in range(request.max_new_tokens):
            if events.cancelled:
                return
            k = int(torch.randint(len(WORDS), (1,), generator=gen).item()) if request.do_sample else step
            piece = ("" if step == 0 else " ") + WORDS[k % len(WORDS)]
            events.emit("token", step=step + 1, total=request.max_new_tokens, text=piece, sample=sample)
            yield piece

    def _generate(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> TextResult:
        texts, reasons = [], []
        for i, seed in enumerate(seeds):
            text = "".join(self._words(request, seed, events, i))
            cut = min((text.find(s) for s in request.stop if s in text), default=-1)
            texts.append(text[:cut] if cut >= 0 else text)
            reasons.append("cancelled" if events.cancelled else ("stop" if cut >= 0 else "length"))
        n = request.samples_per_prompt
        return TextResult(texts=texts, seeds=seeds, finish_reasons=reasons,  # type: ignore[arg-type]
                          token_ids=[[] for _ in seeds], prompt_index=[i // n for i in range(len(seeds))])

    def _stream(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> Iterator[str]:
        yield from self._words(request, seeds[0], events, 0)

    def _to(self, device: Any) -> None:
        """Nothing to move."""


class FakeImageGenerator(Generator[ImageRequest, ImageResult]):
    """Image backend ``fake``: seeded noise images from :func:`aigc.sampling.randn` (64x64 by default)."""

    modality = "image"
    backend_name = "fake"
    request_type = ImageRequest
    supported_params = frozenset({"width", "height", "steps"})

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> FakeImageGenerator:
        return cls(model=model, device=options.device, dtype=options.dtype)

    def _generate(self, request: ImageRequest, seeds: list[int], events: EventEmitter) -> ImageResult:
        import torch
        from PIL import Image

        from aigc.sampling import randn

        w, h, steps = request.width or 64, request.height or 64, request.steps or 1
        noise = randn((h, w, 3), seeds)  # (B, H, W, 3)
        for step in range(steps):
            events.emit("step", step=step + 1, total=steps, advance=1)
        pixels = ((noise.clamp(-2, 2) + 2) * 63.75).round().to(torch.uint8).numpy()
        return ImageResult(images=[Image.fromarray(p) for p in pixels], seeds=seeds)

    def _to(self, device: Any) -> None:
        """Nothing to move."""


@contextlib.contextmanager
def registered(*classes: type[Generator[Any, Any]]) -> Iterator[None]:
    """Register backends for the duration of a ``with`` block (for tests).

    Example:
        >>> with registered(FakeImageGenerator):
        ...     aigc.load("image", "x", backend="fake").generate("a cat", seed=0).images[0].size
        (64, 64)
    """
    done: list[type[Generator[Any, Any]]] = []
    try:
        for cls in classes:
            _registry.register(cls)
            done.append(cls)
        yield
    finally:
        from aigc._runtime.cache import model_cache

        for cls in done:
            _registry.unregister(cls.modality, cls.backend_name)
            for entry in model_cache.entries():
                if isinstance(entry.generator, cls):
                    model_cache.discard(entry.generator)
