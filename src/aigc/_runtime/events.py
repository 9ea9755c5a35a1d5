"""Progress events, the optional tqdm bar, and cancellation for one generation run."""

from __future__ import annotations

import logging
import sys
from typing import Any

from aigc._events import Event, EventCallback, EventKind

__all__ = ["EventEmitter", "progress_default"]

logger = logging.getLogger(__name__)


def progress_default() -> bool:
    """Progress bars default to on in a terminal or a notebook, off otherwise (pipes, CI, servers)."""
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_bar_class() -> Any:
    """tqdm's notebook bar where it can draw (ipywidgets installed: ``pip install 'aigc[jupyter]'``), else its
    text bar -- never ``tqdm.auto``'s fallback with its ``TqdmWarning: IProgress not found``."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


class EventEmitter:
    """Sends :class:`~aigc.Event` objects to a callback, drives a progress bar, and carries cancellation.

    All events of one run share one cancel flag, so ``event.cancel()`` on any of them stops the run at the
    next step boundary; backends check :attr:`cancelled` between steps.
    """

    def __init__(
        self, callback: EventCallback | None, *, progress: bool | None, total: int | None, desc: str
    ) -> None:
        self._callback = callback
        self._flag = [False]
        self._bar: Any = None
        if progress is None:
            progress = progress_default()
        if progress:
            self._bar = progress_bar_class()(total=total, desc=desc, leave=False)

    def set_total(self, total: int | None) -> None:
        """Change the progress bar's total (e.g. steps x chunks, once a backend knows how it will batch)."""
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def describe(self, text: str) -> None:
        """Change the progress bar's label (e.g. while a one-time compilation runs)."""
        if self._bar is not None:
            self._bar.set_description(text)

    @property
    def has_callback(self) -> bool:
        """Whether anyone listens (backends skip optional work such as previews otherwise)."""
        return self._callback is not None

    @property
    def cancelled(self) -> bool:
        return self._flag[0]

    def cancel(self) -> None:
        self._flag[0] = True

    def emit(
        self,
        kind: EventKind,
        *,
        step: int = 0,
        total: int | None = None,
        text: str | None = None,
        sample: int | None = None,
        preview: Any = None,
        advance: int = 0,
    ) -> None:
        """Send one event; ``advance`` moves the progress bar by that many steps. A ``"start"`` event's total
        becomes the bar's when it had none (a backend's default step count, unknown before it ran)."""
        if kind == "start" and total is not None and self._bar is not None and self._bar.total is None:
            self.set_total(total)
        if self._bar is not None and advance:
            self._bar.update(advance)
        if self._callback is not None:
            self._callback(Event(kind, step, total, text, sample, preview, self._flag))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EventEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
