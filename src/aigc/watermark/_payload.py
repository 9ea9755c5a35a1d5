"""The payload every signal watermark carries, its soft decoding, and the statistics that decide "present".

Payload: a 32-bit key (8 hex digits, :func:`sample_key`) and its CRC-16 (CCITT), 48 bits. The embedders
(:mod:`aigc.watermark.image`, :mod:`aigc.watermark.audio`) hide each bit by dither modulation (QIM): a projection
``s`` of some host features is moved to the nearest point of the lattice ``d + b * delta / 2 + k * delta`` of the
bit's value ``b``. A detector turns each projection into a soft bit ``y = cos(2 pi (s - d) / delta)`` in [-1, 1]:
near +1 for a 0, near -1 for a 1.

Deciding "present" needs no key: without a watermark ``(s - d) / delta`` is uniform modulo 1, so each ``|y|`` has
mean ``2 / pi`` and variance ``1/2 - 4 / pi^2``, and the mean of 48 of them is about normal; a watermarked signal
has ``|y|`` near 1. :data:`PRESENT_AT` is 3.7 standard deviations above the null mean (a false-positive rate of
about 1e-4 by the normal approximation; the tests measure it on unmarked content). The key is read from the hard
bits when the CRC matches; where noise flipped a bit, :func:`match` scores a known key (from a record, or the
local store) against the soft bits. That is also a detector of its own, for a signal too damaged for the key-free
test: the match of a wrong key is about normal with standard deviation ``sqrt(1/2 / 48) = 0.10``, so
:data:`MATCH_AT` (0.5) is 4.9 standard deviations: about 5e-7 false positives per known key tried.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BITS", "KEY_BITS", "MATCH_AT", "PRESENT_AT", "Detection", "decode", "key_bits", "match", "sample_key"]

KEY_BITS = 32
BITS = KEY_BITS + 16
_NULL_MEAN = 2 / math.pi
_NULL_STD = math.sqrt((0.5 - 4 / math.pi**2) / BITS)
#: The mean |soft bit| from which a watermark counts as present (null mean + 3.7 standard deviations).
PRESENT_AT = _NULL_MEAN + 3.7 * _NULL_STD
#: The least :func:`match` score at which a known key counts as the one embedded (4.9 null standard deviations).
MATCH_AT = 0.5


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_bits(key: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The 48 payload bits (0.0 or 1.0) of an 8-hex-digit key: the key's 32 bits, then its CRC-16.

    Example:
        >>> key_bits("00000001")[:32].sum(), len(key_bits("00000001"))
        (np.float64(1.0), 48)
    """
    if not isinstance(key, str) or len(key) != KEY_BITS // 4 or any(c not in "0123456789abcdefABCDEF" for c in key):
        raise ValueError(f"a watermark key is {KEY_BITS // 4} hex digits, not {key!r}")
    value = int(key, 16)
    crc = _crc16(value.to_bytes(4, "big"))
    word = (value << 16) | crc
    return np.array([(word >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.float64)


def sample_key(identity: dict[str, Any]) -> str:
    """The 32-bit key of one sample: the first 8 hex digits of the SHA-256 of its identity (canonical JSON).

    Example:
        >>> sample_key({"modality": "image", "seed": 7})
        '437eec1b'
    """
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[: KEY_BITS // 4]


@dataclass(frozen=True)
class Detection:
    """What a detector read from a signal.

    Attributes:
        method: the watermark's name (``"aigc.image.dct-qim/1"``, ...).
        present: whether the watermark is there (``score >= PRESENT_AT``).
        score: the mean |soft bit|: about 0.64 without a watermark, near 1 with one.
        key: the key read from the bits, when their CRC matches; ``None`` otherwise.
        soft: the 48 soft bits, for :meth:`match`.
    """

    method: str
    present: bool
    score: float
    key: str | None
    soft: tuple[float, ...]

    def match(self, key: str) -> float:
        """How well ``key`` agrees with the soft bits, in [-1, 1] (about 0 for a wrong key; see :func:`match`)."""
        return match(self.soft, key)

    def matches(self, key: str) -> bool:
        """Whether ``key`` is the one embedded: read exactly, or agreeing with the soft bits at :data:`MATCH_AT`."""
        return self.present and (self.key == key or self.match(key) >= MATCH_AT)


def match(soft: Sequence[float], key: str) -> float:
    """Mean agreement of the soft bits with ``key``'s payload: 1 for a perfect match, about 0 (standard deviation
    0.1) for a signal without a watermark or with another key."""
    y = np.asarray(soft, dtype=np.float64)
    return float(np.mean(y * (1.0 - 2.0 * key_bits(key))))


def decode(soft: np.ndarray[Any, Any], method: str) -> Detection:
    """A :class:`Detection` from 48 soft bits."""
    y = np.clip(np.asarray(soft, dtype=np.float64), -1.0, 1.0)
    score = float(np.abs(y).mean())
    bits = (y < 0).astype(np.int64)
    word = 0
    for b in bits:
        word = (word << 1) | int(b)
    value, crc = word >> 16, word & 0xFFFF
    key = f"{value:08x}" if _crc16(value.to_bytes(4, "big")) == crc else None
    present = score >= PRESENT_AT
    return Detection(method=method, present=present, score=score, key=key if present else None,
                     soft=tuple(float(v) for v in y))
