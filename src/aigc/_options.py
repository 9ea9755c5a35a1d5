"""Typed backend load options: a frozen dataclass per backend, built and checked once by ``aigc.load``.

A backend declares ``options_type = MyOptions`` (a subclass of :class:`BackendOptions`); ``aigc.load(...,
**options)`` builds it from the keywords the user passed -- an unknown name gets a close-match suggestion, a bad
value an :class:`~aigc.errors.InvalidRequest` from the class's :meth:`~BackendOptions.check` -- before any model
file is touched, and the backend reads typed fields (``MyOptions.of(options).beam_width``) instead of
``options.extra.get("beam_width", 4)`` checked by hand. No torch at import.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aigc._checks import check_int
from aigc.errors import InvalidRequest

if TYPE_CHECKING:
    from aigc._generator import LoadOptions

__all__ = ["BackendOptions", "BatchOptions"]

OptionsT = TypeVar("OptionsT", bound="BackendOptions")

#: ``aigc.load``'s own keywords, suggested too when a backend option is misspelt
LOAD_KEYWORDS = ("backend", "device", "dtype", "revision", "offload", "allow_pickle", "trust_remote_code", "cache")


@dataclass(frozen=True, kw_only=True)
class BackendOptions:
    """Base class of a backend's load options: fields with defaults, checked by :meth:`check`.

    Example:
        >>> @dataclass(frozen=True, kw_only=True)
        ... class BeamOptions(BackendOptions):
        ...     beam_width: int = 4
        ...     def check(self) -> None:
        ...         check_int("beam_width", self.beam_width, minimum=1, fix="pass beam_width=4")
        >>> BeamOptions.build({"beam_width": 8}, owner="beam text").beam_width
        8
        >>> BeamOptions.build({"beam_widht": 8}, owner="beam text")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: beam_widht=8: unknown option for the beam text backend. Fix: did you mean ...
    """

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`~aigc.errors.InvalidRequest` naming a field with a bad value (subclasses extend it)."""

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names this class takes."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls: type[OptionsT], values: Mapping[str, Any], *, owner: str) -> OptionsT:
        """The options from keyword ``values``; unknown names are refused with the closest known name.

        Args:
            owner: ``"<backend> <modality>"``, for the message.
        """
        accepted = sorted(cls.names())
        for name, value in values.items():
            if name not in accepted:
                close = difflib.get_close_matches(name, [*accepted, *LOAD_KEYWORDS], n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"this backend's options are {accepted}" if accepted else "this backend takes no extra options")
                raise InvalidRequest(name, value, f"unknown option for the {owner} backend", hint)
        return cls(**values)

    @classmethod
    def of(cls: type[OptionsT], options: LoadOptions) -> OptionsT:
        """The typed options inside ``options`` (built from ``options.extra`` when a caller made ``LoadOptions``
        by hand rather than through ``aigc.load``)."""
        if isinstance(options.backend, cls):
            return options.backend
        return cls.build(options.extra, owner=cls.__name__)


@dataclass(frozen=True, kw_only=True)
class BatchOptions(BackendOptions):
    """Options of backends that run several samples per network call.

    Attributes:
        max_batch_size: samples per network call, at most (memory; not part of the output).
    """

    max_batch_size: int = 64

    def check(self) -> None:
        super().check()
        check_int("max_batch_size", self.max_batch_size, minimum=1, fix="pass max_batch_size=16")
