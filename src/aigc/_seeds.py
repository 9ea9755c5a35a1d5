"""Seed resolution (no torch): ``None`` -> a fresh OS seed; ``s`` -> ``s, s+1, ...``; a list -> as given."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from aigc._types import MAX_SEED
from aigc.errors import InvalidRequest
from aigc.limits import exceeded

__all__ = ["fresh_seed", "resolve_seeds"]


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
