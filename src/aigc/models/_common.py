"""Pieces every architecture file shares: JSON round trips of the configs, and the conv block of the VAEs."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from aigc.errors import InvalidRequest

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ConfigDict", "conv_block"]


class ConfigDict:
    """``to_dict``/``from_dict`` for an architecture config (a frozen dataclass); tuple fields are JSON lists.

    Example:
        >>> VAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # doctest: +SKIP
        True
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` reverses it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from ``to_dict`` output; unknown keys raise ``InvalidRequest``."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest("config", unknown, f"has keys {cls.__name__} does not know",
                                 f"use only {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def conv_block(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """3x3 convolution (``stride`` 2 halves the size), group norm, SiLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1), nn.GroupNorm(min(8, out_ch), out_ch),
                         nn.SiLU())
