"""The base of the audio model families (:class:`Family`) and the helpers they share."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import InvalidRequest

if TYPE_CHECKING:
    from aigc._backends.audio_transformers import TransformersAudioGenerator

__all__ = ["REQUEST_FIELDS", "Cancelled", "Family", "isolated_rng", "positive", "to_waveform"]

logger = logging.getLogger(__name__)

REQUEST_FIELDS = ("duration_s", "voice", "negative_prompt", "steps", "guidance")


class Cancelled(Exception):
    """Raised inside a sampling step to leave ``generate`` at once."""


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG (CPU and ``device``) seeded with ``seed``, then restore the caller's
    state. For models that draw noise internally (``torch.randn``, dropout) and take no generator."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    elif device.type == "cuda":  # fork and seed only the model's GPU
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.default_generator.manual_seed(seed)
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    else:  # mps and others: one device; fork all of that type
        with torch.random.fork_rng(device_type=device.type):
            torch.manual_seed(seed)
            yield


def to_waveform(x: torch.Tensor) -> np.ndarray[Any, Any]:
    """A (samples,) or (channels, samples) tensor as float32 numpy (channels, samples)."""
    arr = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(arr[None, :] if arr.ndim == 1 else arr, dtype=np.float32)


def positive(name: str, value: Any, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidRequest(name, value, "must be a number > 0", fix)
    return float(value)


class Family:
    """One way to run a kind of model. ``supported`` lists the request fields it honours."""

    name: ClassVar[str]
    supported: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, gen: TransformersAudioGenerator) -> None:
        self.gen = gen

    @property
    def sample_rate(self) -> int:
        raise NotImplementedError

    def check(self, request: AudioRequest) -> Any:
        """Everything about the request this family can check before running; returns what ``run`` needs."""
        return None

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        raise NotImplementedError

    # shared helpers
    def encode(self, prompt: str, index: int) -> dict[str, torch.Tensor]:
        tok = self.gen.tokenizer
        enc = tok(prompt, return_tensors="pt")
        special = set(getattr(tok, "all_special_ids", []) or [])
        known = [t for t in enc["input_ids"].reshape(-1).tolist() if t not in special]  # unknown/pad/eos don't count
        if not known or not prompt.strip():
            raise InvalidRequest(f"prompt[{index}]", prompt, "gives no tokens this model knows",
                                 "pass some text in the model's language and script")
        return {k: v.to(self.gen.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def per_sample(self, prompts: list[str], seeds: list[int], events: EventEmitter,
                   one: Any) -> list[np.ndarray[Any, Any]]:
        """Run ``one(inputs)`` per sample with the global RNG seeded with the sample's seed and isolated."""
        encoded: dict[str, dict[str, torch.Tensor]] = {}
        for i, p in enumerate(prompts):
            if p not in encoded:
                encoded[p] = self.encode(p, i)  # already checked in _generate; this only tokenizes
        total = len(seeds)
        events.set_total(total)
        events.emit("start", total=total)
        out: list[np.ndarray[Any, Any]] = []
        for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
            with isolated_rng(seed, self.gen.device), torch.inference_mode():
                out.append(one(encoded[prompt]))
            events.emit("step", step=i + 1, total=total, sample=i, advance=1)
            if events.cancelled and i + 1 < total:
                raise self.gen._cancelled(i + 1, total, "samples")
        events.emit("end", total=total)
        return out


