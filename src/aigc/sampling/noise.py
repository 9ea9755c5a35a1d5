"""Seeded noise: one ``torch.Generator`` per sample, on the CPU, then moved.

Making noise on the CPU from a per-sample generator means sample *i* gets the same noise whatever the
device, the dtype or the batch it is in. Library code never touches the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["generators", "randn", "uniform"]


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per seed.

    Example:
        >>> [g.initial_seed() for g in generators([1, 2])]
        [1, 2]
    """
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def randn(
    shape: Sequence[int],
    seeds: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of shape ``(len(seeds), *shape)``; row *i* depends only on ``seeds[i]``.

    Example:
        >>> a = randn((4,), [7, 8]); b = randn((4,), [8])
        >>> torch.equal(a[1], b[0])
        True
    """
    rows = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in generators(seeds)]
    return torch.stack(rows).to(device=device, dtype=dtype)


def uniform(
    shape: Sequence[int],
    seeds: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform [0, 1) noise of shape ``(len(seeds), *shape)``, one generator per row like :func:`randn`."""
    rows = [torch.rand(tuple(shape), generator=g, dtype=torch.float32) for g in generators(seeds)]
    return torch.stack(rows).to(device=device, dtype=dtype)
