"""Seed resolution and the sampler version (no torch).

Seeds: ``None`` -> a fresh OS seed; ``s`` -> ``s, s+1, ...``; a list -> as given.

Sampler versions: which sampler a generation uses -- today's, or an older one while replaying an older record.

A provenance record names the sampler version that made it (``Record.sampler``; records from before the
field existed were made by version 1). :func:`aigc.replay` runs the generation inside
:func:`use_sampler_version`, and the backends whose draws changed between versions ask
:func:`sampler_version`, so an old file replays the way it was made, never silently differently.

Version history:
    1. text: ``torch.multinomial`` per row from a CPU generator seeded with the row's seed; diffusers
       backends: the scheduler's step noise from generators seeded like the initial latents (so a stochastic
       scheduler's first step noise repeated x_T).
    2. text: :class:`~aigc.sampling.TokenSampler` (counter-based draws on the model's device); diffusers and
       aigc's own diffusion models: step noise from a stream of its own (:func:`~aigc.sampling.step_generators`).

Example:
    >>> from aigc.sampling import sampler_version, use_sampler_version
    >>> with use_sampler_version(1):
    ...     sampler_version()
    1
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
from collections.abc import Iterator, Sequence

from aigc._types import MAX_SEED
from aigc.errors import InvalidRequest, ProvenanceError
from aigc.limits import exceeded

__all__ = ["KNOWN_SAMPLER_VERSIONS", "SAMPLER_VERSION", "fresh_seed", "resolve_seeds", "sampler_version",
           "use_sampler_version"]

#: The sampler version of today; provenance records name the version that made them (``Record.sampler``).
SAMPLER_VERSION = 2
KNOWN_SAMPLER_VERSIONS = (1, 2)
_version: contextvars.ContextVar[int] = contextvars.ContextVar("aigc_sampler_version", default=SAMPLER_VERSION)


def fresh_seed() -> int:
    """A seed drawn from the operating system's randomness, never from the global torch RNG."""
    return secrets.randbits(63)


def resolve_seeds(seed: int | Sequence[int] | None, count: int) -> list[int]:
    """Per-sample seeds for ``count`` samples.

    Example:
        >>> resolve_seeds(42, 3)
        [42, 43, 44]
        >>> resolve_seeds([7, 1], 2)
        [7, 1]
    """
    if count < 1:
        raise InvalidRequest("num_outputs", count, "must be >= 1", "pass num_outputs=1 or more")
    exceeded("num_outputs", count, count, "max_samples", "samples in one call")  # O(1), before the list is built
    if seed is None:
        seed = fresh_seed() % (MAX_SEED - count + 1)
    if isinstance(seed, int) and not isinstance(seed, bool):
        if not 0 <= seed <= MAX_SEED - count + 1:
            raise InvalidRequest("seed", seed, f"seed + {count} samples overflows 2**63", "pass a smaller seed")
        return [seed + i for i in range(count)]
    if isinstance(seed, bool):
        raise InvalidRequest("seed", seed, "must be an int, a list of ints or None", "pass seed=42")
    if len(seed) != count:
        raise InvalidRequest("seed", f"<{len(seed)} seeds>", f"{len(seed)} seeds for {count} samples",
                             f"pass exactly {count} seeds, or one int")
    return [int(s) for s in seed]


def sampler_version() -> int:
    """The sampler version generations in this context use (today's unless inside :func:`use_sampler_version`)."""
    return _version.get()


@contextlib.contextmanager
def use_sampler_version(version: int) -> Iterator[None]:
    """Generate with sampler ``version`` inside the block (what :func:`aigc.replay` does for old records).

    Raises:
        ProvenanceError: a version this aigc does not know (a record from a newer aigc).
    """
    if version not in KNOWN_SAMPLER_VERSIONS:
        raise ProvenanceError(f"the record was made by sampler version {version!r}, which this aigc does not know "
                              f"(it knows {list(KNOWN_SAMPLER_VERSIONS)}). Fix: replay it with the aigc version "
                              "that made it (the record's aigc_version)")
    token = _version.set(version)
    try:
        yield
    finally:
        _version.reset(token)
