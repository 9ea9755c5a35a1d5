"""A request on its way through the server: :class:`Job`, and the events the model thread sends back to the
handler on the job's asyncio queue (text pieces, ended samples, progress, the result, an error, a cancel)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aigc._results import Record, Result
from aigc._types import Request
from aigc.errors import AigcError
from aigc.serve._errors import APIError, from_aigc_error

__all__ = ["Cancelled", "Done", "Failed", "Finished", "Job", "JobEvent", "Piece", "Progress", "batched_events",
           "deliver"]

logger = logging.getLogger("aigc.serve")


# -- events from the model thread to the handler -------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """New final text of one sample."""

    sample: int
    text: str


@dataclass(frozen=True)
class Finished:
    """One sample ended."""

    sample: int
    reason: str
    tokens: int


@dataclass(frozen=True)
class Progress:
    """A denoising (or other) step of a media job."""

    step: int
    total: int


@dataclass(frozen=True)
class Done:
    """The job is complete: its record and, for media, the encoded output."""

    record: Record | None
    payload: Any = None


@dataclass(frozen=True)
class Failed:
    error: APIError


@dataclass(frozen=True)
class Cancelled:
    reason: str


JobEvent = Piece | Finished | Progress | Done | Failed | Cancelled


class Job:
    """One request's work, shared by the event loop (the handler) and a model thread.

    The model thread reports through the :class:`~aigc._backends._text_batching.RowSink` methods (``piece``,
    ``finish``, ``fail``) and :meth:`complete`; the handler reads :meth:`next_event` and calls :meth:`cancel`.

    Args:
        request: the typed request, with explicit seeds.
        seeds: one per sample.
        deadline: ``time.monotonic()`` after which the job counts as cancelled (its timeout).
        batch_key: media jobs with equal keys may share one ``generate`` call (``None``: never).
        encode: media: turns the job's result into what the handler sends (run on the model thread).
        rename: aigc field names -> the request's own (``max_new_tokens`` -> ``max_tokens``), for errors.
    """

    def __init__(self, *, request: Request, seeds: list[int], deadline: float, loop: asyncio.AbstractEventLoop,
                 batch_key: str | None = None, encode: Callable[[Result], Any] | None = None,
                 rename: Mapping[str, str] | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.request = request
        self.seeds = seeds
        self.deadline = deadline
        self.batch_key = batch_key
        self.encode = encode
        self.rename = dict(rename or {})  # aigc field -> the request's field, for errors raised while running
        self.created = time.monotonic()
        self.started: float | None = None
        self.first_output: float | None = None
        self.ended: float | None = None
        self.prompt_token_counts: list[int] = []
        self.tokens: dict[int, int] = {}  # sample -> generated tokens, once ended
        self.cancel_reason: str | None = None
        self._loop = loop
        self._events: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._cancel = threading.Event()
        self._on_complete: Callable[[Job], None] | None = None

    @property
    def total_samples(self) -> int:
        return len(self.seeds)

    # -- the handler's side ------------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        """Stop the job at the next step (``reason``: ``"disconnect"``, ``"timeout"``, ``"deleted"``)."""
        if not self._cancel.is_set():
            self.cancel_reason = reason
            self._cancel.set()

    async def next_event(self) -> JobEvent:
        """The next event; on the deadline the job is cancelled and a 504 ``Failed`` event comes back."""
        remaining = self.deadline - time.monotonic()
        try:
            return await asyncio.wait_for(self._events.get(), timeout=max(remaining, 0.0))
        except asyncio.TimeoutError:
            self.cancel("timeout")
            return Failed(APIError(504, "the request took longer than the server's timeout; it was cancelled",
                                   type="server_error", code="timeout"))

    def ready(self) -> list[JobEvent]:
        """The events already waiting, without waiting for more."""
        out: list[JobEvent] = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except asyncio.QueueEmpty:
                return out

    # -- the model thread's side -------------------------------------------------------------------
    def _post(self, event: JobEvent) -> None:
        box: list[tuple[Job, JobEvent]] | None = getattr(_outbox, "events", None)
        if box is not None:  # a model step is running: send its events together when it ends
            box.append((self, event))
            return
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self._cancel.set()

    def _put(self, event: JobEvent) -> None:
        self._events.put_nowait(event)

    def cancelled(self) -> bool:
        if not self._cancel.is_set() and time.monotonic() > self.deadline:
            self.cancel("timeout")
        return self._cancel.is_set()

    def mark_started(self, on_complete: Callable[[Job], None] | None = None) -> None:
        self.started = time.monotonic()
        self._on_complete = on_complete

    def prompt_tokens(self, counts: list[int]) -> None:
        self.prompt_token_counts = list(counts)

    def piece(self, sample: int, text: str) -> None:
        if self.first_output is None:
            self.first_output = time.monotonic()
        self._post(Piece(sample, text))

    def finish(self, sample: int, reason: str, token_ids: list[int]) -> None:
        if self.first_output is None:
            self.first_output = time.monotonic()
        self.tokens[sample] = len(token_ids)
        self._post(Finished(sample, reason, len(token_ids)))
        if len(self.tokens) == self.total_samples and self._on_complete is not None:
            self._on_complete(self)

    def progress(self, step: int, total: int) -> None:
        self._post(Progress(step, total))

    def fail(self, error: Exception) -> None:
        self.ended = time.monotonic()
        if isinstance(error, APIError):
            api = error
        elif isinstance(error, AigcError):
            api = from_aigc_error(error, rename=self.rename)
        else:
            logger.exception("request %s failed", self.id, exc_info=error)
            api = APIError(500, f"the model failed: {type(error).__name__}: {error}", type="server_error",
                           code="generation_failed")
        self._post(Failed(api))

    def complete(self, record: Record | None, payload: Any = None) -> None:
        self.ended = time.monotonic()
        if self.first_output is None:
            self.first_output = self.ended
        self._post(Done(record, payload))

    def drop(self) -> None:
        """The model thread let go of a cancelled job."""
        self.ended = time.monotonic()
        self._post(Cancelled(self.cancel_reason or "cancelled"))


_outbox = threading.local()


@contextlib.contextmanager
def batched_events() -> Iterator[None]:
    """Hold the events jobs post on this thread, then hand them to each event loop in one call: one wake-up of
    the loop per decoding step instead of one per row and token."""
    if getattr(_outbox, "events", None) is not None:  # already batching
        yield
        return
    _outbox.events = []
    try:
        yield
    finally:
        events: list[tuple[Job, JobEvent]] = _outbox.events
        _outbox.events = None
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, JobEvent]]] = {}
        for job, event in events:
            by_loop.setdefault(job._loop, []).append((job, event))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(deliver, items)
            except RuntimeError:  # the event loop is closed: the server is shutting down
                for job, _ in items:
                    job._cancel.set()


def deliver(items: list[tuple[Job, JobEvent]]) -> None:
    for job, event in items:
        job._put(event)


