"""Progress events passed to ``on_event`` callbacks, with cancellation. No torch at import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Event", "EventCallback", "EventKind"]

EventKind = Literal["start", "token", "step", "end"]


@dataclass
class Event:
    """A progress event passed to the ``on_event`` callback of ``generate``.

    Attributes:
        kind: ``"start"``, ``"token"`` (text), ``"step"`` (denoising and other iterative steps) or ``"end"``.
        step: 1-based index of the step or token just finished (0 for ``"start"``).
        total: the number of steps expected, when known.
        text: for ``"token"`` events, the text newly decoded for ``sample`` (may be empty).
        sample: the sample index the event is about, or ``None`` when it is about the whole batch.
        preview: an optional low-resolution preview (a PIL image for image backends).

    Call :meth:`cancel` to stop the generation at the next step boundary.

    Example:
        >>> def stop_after_ten(event):
        ...     if event.kind == "token" and event.step >= 10:
        ...         event.cancel()
    """

    kind: EventKind
    step: int = 0
    total: int | None = None
    text: str | None = None
    sample: int | None = None
    preview: Any = None
    _flag: list[bool] = field(default_factory=lambda: [False], repr=False, compare=False)

    def cancel(self) -> None:
        """Ask the running generation to stop at the next step boundary."""
        self._flag[0] = True

    @property
    def cancelled(self) -> bool:
        return self._flag[0]


EventCallback = Callable[[Event], object]
