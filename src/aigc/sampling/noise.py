"""Seeded noise: one ``torch.Generator`` per sample, on the CPU, then moved.

Making noise on the CPU from a per-sample generator means sample *i* gets the same noise whatever the
device, the dtype or the batch it is in. Library code never touches the global RNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["generators", "randn", "step_generators", "uniform"]


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


def step_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per seed for the noise a scheduler draws at each denoising step.

    Seeded from the seed's ``"step-noise"`` stream (:func:`aigc.sampling.draws.stream_seed`), never from the
    seed itself, so step noise never repeats the initial latents that :func:`randn` draws from the same seed.
    Each generator is consumed step by step, so the noise of step *t* is a function of (seed, t). Inside
    ``use_sampler_version(1)`` (replaying an older record) they are seeded as before: with the seed itself.

    Example:
        >>> g = step_generators([7])[0]
        >>> torch.equal(torch.randn(3, generator=g), randn((3,), [7])[0])
        False
    """
    from aigc._seeds import sampler_version
    from aigc.sampling.draws import stream_seed

    if sampler_version() == 1:
        return generators(seeds)
    return [torch.Generator("cpu").manual_seed(stream_seed(s, "step-noise")) for s in seeds]
