"""The process-wide model cache: loaded generators keyed by what they are, under a memory budget.

Loading the same (backend, model, revision, device, dtype, options) twice returns the cached generator
without touching the disk. When the cached models together exceed the budget, the least recently used
ones are dropped from the cache (a generator the caller still holds keeps working; its memory is freed
when the last reference goes). All operations are thread-safe, and two threads asking for the same
model at once load it once.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from aigc.errors import InvalidRequest

__all__ = ["CacheEntry", "CacheKey", "CachedModel", "ModelCache", "model_cache"]

logger = logging.getLogger(__name__)


class CachedModel(Protocol):
    """What the cache needs of a loaded model (an :class:`aigc.Generator`): its size. The cache sits below the
    generator layer and does not import it."""

    def memory_bytes(self) -> int: ...


M = TypeVar("M", bound=CachedModel)


@dataclass(frozen=True)
class CacheKey:
    """What identifies a loaded model."""

    modality: str
    backend: str
    model: str
    revision: str | None
    device: str
    dtype: str
    options: tuple[tuple[str, Hashable], ...] = ()


@dataclass(frozen=True)
class CacheEntry:
    """A read-only view of one cached model (see :attr:`aigc.cache`)."""

    key: CacheKey
    nbytes: int
    last_used: float
    generator: CachedModel


def _default_budget() -> int:
    env = os.environ.get("AIGC_CACHE_BYTES")
    if env:
        try:
            return int(float(env))
        except ValueError:
            logger.warning("ignoring AIGC_CACHE_BYTES=%r: not a number of bytes", env)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return int(total * 0.5)


class ModelCache:
    """An LRU cache of loaded generators with a memory budget in bytes.

    The process-wide instance is ``aigc.cache``.

    Example:
        >>> import aigc
        >>> aigc.cache.budget_bytes = 4 * 2**30   # keep at most 4 GiB of models loaded
        >>> [e.key.model for e in aigc.cache.entries()]  # doctest: +SKIP
        ['/models/gpt2']
        >>> aigc.cache.clear()
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        self._lock = threading.RLock()
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self._budget = _default_budget() if budget_bytes is None else budget_bytes

    # -- budget ----------------------------------------------------------------------------------
    @property
    def budget_bytes(self) -> int:
        """The most bytes of model weights kept loaded (default: half the machine's memory)."""
        return self._budget

    @budget_bytes.setter
    def budget_bytes(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest("budget_bytes", value, "must be an int >= 0", "pass e.g. 8 * 2**30 for 8 GiB")
        with self._lock:
            self._budget = value
            self._evict()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    # -- inspection ------------------------------------------------------------------------------
    def entries(self) -> list[CacheEntry]:
        """Cached models, least recently used first."""
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def __repr__(self) -> str:
        return f"ModelCache({len(self)} models, {self.used_bytes / 2**20:.1f} MiB of {self._budget / 2**20:.0f} MiB)"

    # -- mutation --------------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every cached model (and collect their memory, when there were any)."""
        with self._lock:
            had = bool(self._entries)
            self._entries.clear()
        if had:
            _free_memory()

    def discard(self, generator: CachedModel) -> None:
        """Drop ``generator`` from the cache if it is there."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry.generator is generator:
                    del self._entries[key]

    def get_or_load(self, key: CacheKey, load: Callable[[], M]) -> M:
        """Return the cached generator for ``key``, or call ``load()`` once and cache what it returns."""
        with self._lock:
            hit = self._touch(key)
            if hit is not None:
                return hit  # type: ignore[return-value]  # the entry under this key came from the same loader
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one loader per key; others wait, then hit the cache
            with self._lock:
                hit = self._touch(key)
                if hit is not None:
                    return hit  # type: ignore[return-value]
            try:
                generator = load()
                nbytes = generator.memory_bytes()
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self._entries[key] = CacheEntry(key, nbytes, time.monotonic(), generator)
                self._loading.pop(key, None)  # only now: a newcomer must see the entry, not a fresh lock
                self._evict(keep=key)
            return generator

    def _touch(self, key: CacheKey) -> CachedModel | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries[key] = CacheEntry(key, entry.nbytes, time.monotonic(), entry.generator)
        self._entries.move_to_end(key)
        return entry.generator

    def _evict(self, keep: CacheKey | None = None) -> None:
        evicted = False
        while self.used_bytes > self._budget:
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                logger.warning(
                    "model %s alone (%.1f MiB) exceeds the cache budget (%.1f MiB); keeping it",
                    keep.model if keep else "?", self.used_bytes / 2**20, self._budget / 2**20,
                )
                break
            logger.info("evicting %s from the model cache", victim.model)
            del self._entries[victim]
            evicted = True
        if evicted:
            _free_memory()


def _free_memory() -> None:
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


model_cache = ModelCache()
