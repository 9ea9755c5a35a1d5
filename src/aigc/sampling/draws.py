"""Counter-based random draws: a draw is a pure function of (seed, purpose, position, index).

No generator object holds state. The bits of one draw are an integer hash of four counters, computed with
64-bit integer arithmetic on whatever device the tensors live on:

    stream   = mix64(seed + GOLDEN * (purpose + 1))          one per row (its seed) and purpose
    row key  = mix64(stream + GOLDEN * (position + 1))       one per row and position (token index, step)
    bits     = mix64(row key + GOLDEN * (index + 1))         one per element of the draw

``mix64`` is SplitMix64's finaliser (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the constants are Stafford's "Mix13"), a bijection of 64-bit integers whose
output bits each depend on every input bit. The arithmetic wraps modulo 2**64 and the right shifts are
logical, so the same counters give the same bits on the CPU, CUDA or any other device, in any batch, and in
a CUDA graph (no host round trip, no data-dependent shape). A pure-Python reference, :func:`reference_bits`,
defines the expected values; the tests compare the tensor version with it bit for bit.

Purposes (:data:`PURPOSES`) keep streams apart: the token draws of a text row never repeat the step noise
of a diffusion sample made from the same seed, whatever the positions.

Conversions:
    * :func:`uniform`: the top 53 bits as a float64 in [0, 1) (exact; top 24 bits as float32 on devices
      without float64, such as MPS);
    * :func:`normal`: Box-Muller on two uniforms (indices ``2i`` and ``2i + 1``), computed in float64. The
      uniforms are bit-identical on every device; the logarithm and cosine may differ in the last bit.

Example:
    >>> import torch
    >>> keys = stream_keys([7, 8], "tokens")
    >>> u = uniform(keys, torch.tensor([0, 0]))          # (2,): one draw per row at position 0
    >>> bool(u[1] == uniform(stream_keys([8], "tokens"), torch.tensor([0]))[0])   # row 1 alone: the same
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "PURPOSES",
    "mix64",
    "normal",
    "reference_bits",
    "reference_uniform",
    "row_keys",
    "stream_keys",
    "stream_seed",
    "uniform",
    "uniform_table",
]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, SplitMix64's increment
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB

#: Stream ids: one per use of randomness, so no use ever repeats another's numbers.
PURPOSES: dict[str, int] = {
    "tokens": 1,  # text token draws (one uniform per row and generated token, or per masked-LM fill; index =
    # codebook for MusicGen)
    "step-noise": 2,  # noise a diffusion scheduler adds at each denoising step
    "latents": 3,  # initial latents, where a backend draws them counter-based
    "prosody": 4,  # speaker/prosody variation in audio models
    "watermark": 5,  # the text watermark's g-values (aigc.sampling.watermark): a key, never a draw
}


def _signed(value: int) -> int:
    """A 64-bit pattern as the signed int64 that holds it."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_S_GOLDEN, _S_M1, _S_M2 = _signed(_GOLDEN), _signed(_M1), _signed(_M2)


def _purpose_id(purpose: str | int) -> int:
    if isinstance(purpose, str):
        if purpose not in PURPOSES:
            raise ValueError(f"unknown draw purpose {purpose!r}; known: {sorted(PURPOSES)}")
        return PURPOSES[purpose]
    if isinstance(purpose, bool) or not isinstance(purpose, int):
        raise ValueError(f"a draw purpose is a name or an int, not {purpose!r}")
    return purpose


# -- the pure-Python reference -----------------------------------------------------------------------
def _mix64_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


def stream_seed(seed: int, purpose: str | int) -> int:
    """The 64-bit stream of ``seed`` for ``purpose``, as a non-negative int below 2**63.

    Also a seed for a CPU ``torch.Generator`` where a library only takes generators (diffusers'
    schedulers): such a generator's numbers never repeat the ones drawn from ``seed`` itself.

    Example:
        >>> stream_seed(0, "tokens") == stream_seed(0, "step-noise")
        False
    """
    return _mix64_int(int(seed) + _GOLDEN * (_purpose_id(purpose) + 1)) >> 1


def reference_bits(seed: int, purpose: str | int, position: int, index: int = 0) -> int:
    """The 64 bits of one draw, computed with Python integers (the definition the tensor code must match).

    Example:
        >>> reference_bits(42, "tokens", 0) == reference_bits(42, "tokens", 1)
        False
    """
    stream = _mix64_int(int(seed) + _GOLDEN * (_purpose_id(purpose) + 1))
    row = _mix64_int(stream + _GOLDEN * (position + 1))
    return _mix64_int(row + _GOLDEN * (index + 1))


def reference_uniform(seed: int, purpose: str | int, position: int, index: int = 0) -> float:
    """:func:`reference_bits` as a float64 in [0, 1) (its top 53 bits)."""
    return (reference_bits(seed, purpose, position, index) >> 11) * 2.0**-53


# -- tensors -------------------------------------------------------------------------------------------
def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic on signed integers)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors; multiplication wraps modulo 2**64 on every device.

    Example:
        >>> int(mix64(torch.tensor([1]))) == _signed(_mix64_int(1))
        True
    """
    z = (z ^ _lsr(z, 30)) * _S_M1
    z = (z ^ _lsr(z, 27)) * _S_M2
    return z ^ _lsr(z, 31)


def stream_keys(
    seeds: Sequence[int], purpose: str | int, *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """One int64 stream key per seed, ``(B,)``, computed on the host and moved to ``device`` once.

    Example:
        >>> stream_keys([1, 2], "tokens").shape
        torch.Size([2])
    """
    pid = _purpose_id(purpose)
    values = [_signed(_mix64_int(int(s) + _GOLDEN * (pid + 1))) for s in seeds]
    return torch.tensor(values, dtype=torch.int64, device=device)


def row_keys(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Keys for each row at its own position (a row's token index, a step number): ``keys`` ``(B,)`` and
    ``positions`` ``(B,)``, or ``(B, P)`` for P positions per row."""
    if positions.dim() == 2:
        keys = keys[:, None]
    return mix64(keys + (positions.to(torch.int64) + 1) * _S_GOLDEN)


def _bits(keys: torch.Tensor, positions: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``(B, *shape)`` int64 bit patterns: element ``index`` (row-major over ``shape``) of each row's draw."""
    rows = row_keys(keys, positions)  # (B,)
    count = math.prod(shape)
    index = torch.arange(1, count + 1, dtype=torch.int64, device=keys.device) * _S_GOLDEN  # (N,)
    return mix64(rows[:, None] + index[None, :]).reshape(len(keys), *shape)


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _to_uniform(bits: torch.Tensor) -> torch.Tensor:
    dtype = _float_dtype(bits.device)
    if dtype == torch.float64:
        return _lsr(bits, 11).to(torch.float64) * 2.0**-53
    return _lsr(bits, 40).to(torch.float32) * 2.0**-24


def uniform(keys: torch.Tensor, positions: torch.Tensor, shape: Sequence[int] = ()) -> torch.Tensor:
    """Uniform [0, 1) draws, ``(B, *shape)``: row *b* is draw ``(keys[b], positions[b], index)``.

    float64 from the top 53 bits (float32 from the top 24 on MPS, which has no float64).

    Example:
        >>> keys = stream_keys([3], "tokens")
        >>> float(uniform(keys, torch.tensor([5]))[0]) == reference_uniform(3, "tokens", 5)
        True
    """
    return _to_uniform(_bits(keys, positions, shape))


def uniform_table(keys: torch.Tensor, positions: torch.Tensor, shape: Sequence[int] = ()) -> torch.Tensor:
    """Draws of every row at several positions at once: ``positions`` ``(B, P)`` -> ``(B, P, *shape)``, equal
    to :func:`uniform` at each position (a decode loop computes its whole horizon in one call instead of a
    dozen small tensor operations a step). With ``shape=()`` (the default) each position gives index 0.

    Example:
        >>> keys = stream_keys([3, 4], "tokens")
        >>> table = uniform_table(keys, torch.arange(6).expand(2, 6))
        >>> bool(table[1, 5] == uniform(keys, torch.tensor([5, 5]))[1])
        True
        >>> codebooks = uniform_table(keys, torch.arange(6).expand(2, 6), (4,))   # (2, 6, 4)
        >>> bool((codebooks[:, 5] == uniform(keys, torch.tensor([5, 5]), (4,))).all())
        True
    """
    rows = row_keys(keys, positions)  # (B, P)
    if not shape:
        return _to_uniform(mix64(rows + _S_GOLDEN))
    count = math.prod(shape)
    index = torch.arange(1, count + 1, dtype=torch.int64, device=keys.device) * _S_GOLDEN  # (N,)
    bits = mix64(rows[:, :, None] + index[None, None, :])  # (B, P, N)
    return _to_uniform(bits).reshape(*rows.shape, *shape)


def normal(
    keys: torch.Tensor, positions: torch.Tensor, shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal draws, ``(B, *shape)``, by Box-Muller (Box and Muller 1958) on uniform pairs.

    Example:
        >>> x = normal(stream_keys([0], "step-noise"), torch.tensor([0]), (10_000,))
        >>> abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
        True
    """
    count = math.prod(shape)
    u = uniform(keys, positions, (count, 2))  # (B, N, 2)
    radius = torch.sqrt(-2.0 * torch.log1p(-u[..., 0]))  # 1 - u in (0, 1]: log never sees 0
    z = radius * torch.cos((2.0 * math.pi) * u[..., 1])
    return z.reshape(len(keys), *shape).to(dtype)
