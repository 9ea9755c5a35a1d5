"""The seeded sampling core, shared by every backend.

- Seeds: :func:`resolve_seeds` (``None`` -> a fresh OS seed; ``s`` -> ``s, s+1, ...``).
- Counter-based draws (:mod:`aigc.sampling.draws`): a draw is a pure function of (seed, purpose, position,
  index), computed on the model's device by integer hashing -- the same numbers on any device and in any
  batch, with no generator state and no host round trip.
- Initial noise: :func:`randn` / :func:`uniform` make per-sample noise on the CPU from one ``torch.Generator``
  per seed, then move it (the convention of diffusers' CPU generators, so ``seed=s`` gives the latents
  diffusers gives for ``torch.Generator("cpu").manual_seed(s)``); :func:`step_generators` seeds the
  generators for a scheduler's per-step noise from a separate stream.
- Token choice: :class:`TokenSampler` (per-row settings as device tensors: repetition penalty, EOS ban,
  temperature, top-k, top-p, min-p; one counter-based uniform per row and token); the logits processors
  :class:`Temperature`, :class:`TopK`, :class:`TopP`, :class:`MinP`, :class:`RepetitionPenalty`, each
  ``(input_ids, scores) -> scores``.
- The text decode loop: :class:`DecodeLoop` and :class:`TextAssembler`.
- Masked language models: :func:`top_fills` (the best tokens for one mask) and :class:`FillLoop` (several masks
  filled one at a time, greedy or seeded).

Nothing here touches the global torch RNG.

Example:
    >>> from aigc import sampling
    >>> sampling.resolve_seeds(42, 3)
    [42, 43, 44]
"""

from aigc._seeds import SAMPLER_VERSION, fresh_seed, resolve_seeds, sampler_version, use_sampler_version
from aigc.sampling import draws
from aigc.sampling.decode import DecodeLoop, Sampler, Stepper, TextAssembler
from aigc.sampling.infill import FillLoop, top_fills
from aigc.sampling.noise import generators, randn, step_generators, uniform
from aigc.sampling.processors import (
    LogitsProcessor,
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    build_processors,
)
from aigc.sampling.sampler import LegacySampler, SamplingParams, TokenSampler, make_sampler

__all__ = [
    "SAMPLER_VERSION",
    "DecodeLoop",
    "FillLoop",
    "LegacySampler",
    "LogitsProcessor",
    "MinP",
    "RepetitionPenalty",
    "Sampler",
    "SamplingParams",
    "Stepper",
    "Temperature",
    "TextAssembler",
    "TokenSampler",
    "TopK",
    "TopP",
    "build_processors",
    "draws",
    "fresh_seed",
    "generators",
    "make_sampler",
    "randn",
    "resolve_seeds",
    "sampler_version",
    "step_generators",
    "top_fills",
    "uniform",
    "use_sampler_version",
]
