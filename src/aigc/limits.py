"""Bounds on the work one call may ask for: samples, prompt length, pixels, frames, steps, tokens, audio.

Every request -- typed, given as keywords, or rebuilt from a provenance record by :func:`aigc.replay` -- is
checked against these bounds in O(1) when it is built, before any seed list, tensor or model exists. A value
above a bound raises :class:`~aigc.errors.InvalidRequest` naming the field, the bound and how to raise it.
The defaults are generous for the models aigc runs and small enough that a careless call (or a file from a
stranger) cannot ask a process for 2**31 samples or a 10^9-pixel image.

=====================  ===============  ==============================================================
bound                  default          what it limits
=====================  ===============  ==============================================================
``max_samples``        256              samples per call: prompts x ``num_outputs``, seed-list length
``max_prompt_chars``   1,000,000        characters in one prompt (a chat: all its messages together)
``max_pixels``         16,777,216       width x height of one image or video frame (4096 x 4096)
``max_frames``         1,024            frames per video clip
``max_keyframes``      256              seeds one latent walk passes through
``max_steps``          1,000            denoising steps
``max_new_tokens``     65,536           tokens generated per text sample
``max_audio_s``        600.0            seconds of audio per sample
``max_audio_samples``  28,800,000       duration x sample rate per sample and channel (600 s at 48 kHz)
=====================  ===============  ==============================================================

Raise (or lower) them for the whole process with :func:`set`, or for one block of code in the current thread
(or asyncio task) with :func:`override`. Limits objects are frozen, so reading them from many threads is safe.

Example:
    >>> import aigc
    >>> aigc.limits.current().max_samples
    256
    >>> with aigc.limits.override(max_samples=1024):
    ...     aigc.ImageRequest(prompt="a boot", num_outputs=1000).total_samples
    1000
    >>> try:
    ...     aigc.ImageRequest(prompt="a boot", num_outputs=1000)
    ... except aigc.errors.InvalidRequest as e:
    ...     print(e.problem)
    1000 samples in one call is above aigc.limits max_samples=256
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aigc.errors import InvalidRequest

__all__ = ["Limits", "current", "override", "reset", "set"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """One set of bounds (see the module's table). Build a changed copy with :meth:`replace`.

    Example:
        >>> Limits().replace(max_pixels=2**26).max_pixels
        67108864
    """

    max_samples: int = 256  # prompts x num_outputs, and the length of a seed list
    max_prompt_chars: int = 1_000_000  # one prompt; a conversation counts all its messages
    max_pixels: int = 4096 * 4096  # width x height of one image or frame
    max_frames: int = 1024  # frames per clip
    max_keyframes: int = 256  # latent-walk keyframes
    max_steps: int = 1000  # denoising steps
    max_new_tokens: int = 65_536  # tokens per text sample
    max_audio_s: float = 600.0  # seconds per audio sample
    max_audio_samples: int = 600 * 48_000  # duration x sample rate, per sample and channel

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "max_audio_s":
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or value <= 0:
                raise InvalidRequest(f.name, value, "a limit must be a positive number",
                                     f"pass e.g. {f.name}={getattr(Limits, f.name)!r}")

    def replace(self, **changes: Any) -> Limits:
        """A copy with some bounds changed (validated); unknown names raise :class:`InvalidRequest`."""
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise InvalidRequest(name, value, "not a limit", f"use one of {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)


_lock = threading.Lock()
_process = Limits()
_scoped: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("aigc_limits", default=None)


def current() -> Limits:
    """The bounds in force here: an :func:`override` active in this thread/task, else the process's.

    Example:
        >>> current().max_steps
        1000
    """
    scoped = _scoped.get()
    return scoped if scoped is not None else _process


def set(**changes: Any) -> Limits:
    """Change bounds for the whole process (every thread); return the new limits.

    Example:
        >>> set(max_samples=512).max_samples
        512
        >>> reset()
    """
    global _process
    with _lock:
        _process = _process.replace(**changes)
        return _process


def reset() -> None:
    """Restore the process-wide defaults."""
    global _process
    with _lock:
        _process = Limits()


@contextlib.contextmanager
def override(**changes: Any) -> Iterator[Limits]:
    """Change bounds inside a ``with`` block, for the current thread (or asyncio task) only.

    Threads started inside the block do not inherit it; use :func:`set` for those.

    Example:
        >>> with override(max_pixels=8192 * 8192) as lim:
        ...     lim.max_pixels
        67108864
    """
    token = _scoped.set(current().replace(**changes))
    try:
        yield current()
    finally:
        _scoped.reset(token)


# -- checks the request types and backends share (O(1), before any allocation) ------------------------------
def exceeded(field: str, value: object, amount: float, bound: str, what: str) -> None:
    """Raise :class:`InvalidRequest` if ``amount`` is above the bound named ``bound``.

    Args:
        field: the request field to name (as the user spelt it).
        value: the offending value, for the message.
        amount: the quantity compared with the bound.
        bound: a :class:`Limits` field, e.g. ``"max_samples"``.
        what: the quantity in words, e.g. ``"samples in one call"``.
    """
    limit = getattr(current(), bound)
    if amount > limit:
        need = math.ceil(amount) if isinstance(limit, int) else float(amount)
        raise InvalidRequest(
            field, value, f"{_number(amount)} {what} is above aigc.limits {bound}={_number(limit)}",
            f"ask for fewer, or raise the bound: aigc.limits.set({bound}={need!r}), "
            f"or for one block `with aigc.limits.override({bound}={need!r}):`")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"


def check_pixels(width: int, height: int, *, field: str = "width") -> None:
    """One image or frame of ``width`` x ``height`` must fit ``max_pixels``."""
    exceeded(field, f"{width}x{height}", width * height, "max_pixels", "pixels per image")


def check_audio_samples(duration_s: float, sample_rate: int) -> None:
    """``duration_s`` seconds at ``sample_rate`` must fit ``max_audio_samples``."""
    exceeded("duration_s", duration_s, duration_s * sample_rate, "max_audio_samples",
             f"audio samples ({duration_s:g} s at {sample_rate} Hz)")
