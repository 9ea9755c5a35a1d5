"""The seeded sampling core, shared by every backend.

- Seeds: :func:`resolve_seeds` (``None`` -> a fresh OS seed; ``s`` -> ``s, s+1, ...``).
- Noise: :func:`randn` / :func:`uniform` make per-sample noise on the CPU from one ``torch.Generator``
  per seed, then move it, so sample *i* is the same on any device and in any batch.
- Logits processors: :class:`Temperature`, :class:`TopK`, :class:`TopP`, :class:`MinP`,
  :class:`RepetitionPenalty`, each ``(input_ids, scores) -> scores``.
- The text decode loop: :class:`DecodeLoop` and :class:`TextAssembler`.

Nothing here touches the global torch RNG.

Example:
    >>> from aigc import sampling
    >>> sampling.resolve_seeds(42, 3)
    [42, 43, 44]
"""

from aigc._seeds import fresh_seed, resolve_seeds
from aigc.sampling.decode import DecodeLoop, Stepper, TextAssembler
from aigc.sampling.noise import generators, randn, uniform
from aigc.sampling.processors import (
    LogitsProcessor,
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    build_processors,
)

__all__ = [
    "DecodeLoop",
    "LogitsProcessor",
    "MinP",
    "RepetitionPenalty",
    "Stepper",
    "Temperature",
    "TextAssembler",
    "TopK",
    "TopP",
    "build_processors",
    "fresh_seed",
    "generators",
    "randn",
    "resolve_seeds",
    "uniform",
]
