"""The model side of the server: one thread per model, a bounded queue in front of it, and jobs that carry each
request's output back to the event loop.

Stages of one request:
    1. the HTTP handler builds a typed request, resolves its seeds and submits a :class:`Job` to the model's
       :class:`Worker`; a full queue answers 429 with ``Retry-After`` at once;
    2. the model thread takes jobs from the queue as capacity frees up (``max_concurrent`` requests, and for text
       the batcher's free rows):
       - text, continuous batching (:class:`TextWorker`): the job's rows join the running batch at the next step
         and leave when they end; every step checks each job's cancellation (client gone, time out);
       - text without a batcher (seq2seq, plugins): one request at a time through ``generate``, cancelled between
         steps through its event callback;
       - image/audio/video (:class:`MediaWorker`): the first job waits up to ``batch_window_ms`` for compatible jobs
         (same settings except prompt and seeds), which then run as one ``generate`` call and are split again;
    3. output travels back as events on the job's asyncio queue (text pieces, ended samples, the encoded media,
       the provenance record, or an error), which the handler turns into the OpenAI response.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import threading
import time
from typing import Any

from aigc._generator import Generator
from aigc._results import Result, TextResult
from aigc._types import Event as AigcEvent
from aigc._types import Request
from aigc.errors import GenerationCancelled, InvalidRequest
from aigc.serve._errors import APIError
from aigc.serve._jobs import (
    Finished,
    Job,
    batched_events,
)
from aigc.serve._metrics import Metrics

__all__ = ["MediaWorker", "TextWorker", "Worker", "batch_key", "make_worker"]

logger = logging.getLogger("aigc.serve")


# -- workers ----------------------------------------------------------------------------------------------
class Worker:
    """A model, its thread and the bounded queue in front of it.

    Args:
        model_id: the served name (metric label).
        generator: the loaded model; only this worker's thread uses it.
        max_queue: jobs waiting beyond those running; more are refused with 429.
        max_concurrent: jobs running at once.
    """

    kind = "worker"

    def __init__(self, model_id: str, generator: Generator[Any, Any], *, metrics: Metrics, max_queue: int,
                 max_concurrent: int) -> None:
        self.model_id = model_id
        self.generator = generator
        self.metrics = metrics
        self.max_queue = max_queue
        self.max_concurrent = max_concurrent
        self.cond = threading.Condition()
        self.waiting: collections.deque[Job] = collections.deque()
        self.running: list[Job] = []
        self._stop = False
        self._broken: str | None = None  # why the model thread stopped, if it failed
        self._service_s = 1.0  # moving average of a job's running time, for Retry-After
        self._thread = threading.Thread(target=self._main, name=f"aigc-serve-{model_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self._stop = True
            for job in self.waiting:
                job.cancel("shutdown")
            self.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free (1-60)."""
        wait = self._service_s * (len(self.waiting) + 1) / max(self.max_concurrent, 1)
        return int(min(max(math.ceil(wait), 1), 60))

    def submit(self, job: Job) -> None:
        """Queue ``job``; raise a 429 :class:`APIError` when the queue is full."""
        with self.cond:
            if self._broken is not None:
                raise APIError(503, f"model {self.model_id!r} stopped after an error ({self._broken}). Fix: restart "
                               "the server; the log has the details", type="server_error", code="model_failed")
            if self._stop:
                raise APIError(503, "the server is shutting down", type="server_error", code="shutting_down")
            if len(self.waiting) >= self.max_queue:
                self.metrics.inc("aigc_rejected_total", model=self.model_id, reason="queue_full")
                retry = self.retry_after()
                raise APIError(429, f"model {self.model_id!r} has {len(self.waiting)} requests waiting (the server's "
                               f"max_queue); retry after {retry} s", type="rate_limit_error", code="queue_full",
                               headers={"Retry-After": str(retry)})
            self.waiting.append(job)
            self._gauges()
            self.cond.notify_all()

    def _gauges(self) -> None:
        self.metrics.set("aigc_queue_depth", len(self.waiting), model=self.model_id)
        self.metrics.set("aigc_running_requests", len(self.running), model=self.model_id)

    def _started(self, job: Job) -> None:
        job.mark_started(self._completed)
        self.running.append(job)
        self.metrics.observe("aigc_queue_wait_seconds", (job.started or 0.0) - job.created, model=self.model_id)

    def _completed(self, job: Job) -> None:
        """Called on the model thread when every sample of a text job has ended."""
        self._finish(job)

    def _finish(self, job: Job) -> None:
        if job in self.running:
            self.running.remove(job)
        if job.started is not None:
            self._service_s = 0.8 * self._service_s + 0.2 * (time.monotonic() - job.started)

    def _drop(self, job: Job) -> None:
        self.metrics.inc("aigc_cancelled_total", model=self.model_id, reason=job.cancel_reason or "cancelled")
        if job in self.running:
            self.running.remove(job)
        job.drop()

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # the thread must not die silently: fail what is left
            logger.exception("the model thread of %r stopped", self.model_id)
            with self.cond:
                jobs = [*self.running, *self.waiting]
                self.running.clear()
                self.waiting.clear()
                self._broken = f"{type(e).__name__}: {e}"
                self._stop = True
            for job in jobs:
                job.fail(e if isinstance(e, Exception) else RuntimeError("model thread stopped"))

    def _loop(self) -> None:
        raise NotImplementedError


class TextWorker(Worker):
    """Text with continuous batching: jobs' rows join the running batch between steps and leave when done."""

    kind = "continuous"

    def __init__(self, model_id: str, generator: Generator[Any, Any], *, batcher: Any, metrics: Metrics,
                 max_queue: int, max_concurrent: int) -> None:
        super().__init__(model_id, generator, metrics=metrics, max_queue=max_queue, max_concurrent=max_concurrent)
        self.batcher = batcher
        self.max_rows = int(batcher.max_rows)

    def _admit(self) -> list[Job]:
        """Jobs to join the batch now, in arrival order, while requests and rows are free (under ``cond``)."""
        admitted: list[Job] = []
        rows = self.batcher.free_rows
        while self.waiting:
            job = self.waiting[0]
            if job.cancelled():
                self.waiting.popleft()
                self._drop(job)
                continue
            if len(self.running) + len(admitted) >= self.max_concurrent or job.total_samples > rows:
                break
            rows -= job.total_samples
            admitted.append(self.waiting.popleft())
        return admitted

    def _completed(self, job: Job) -> None:
        self._finish(job)
        record = self.batcher.record(job.request, job.seeds, time.monotonic() - (job.started or job.created))
        job.complete(record)

    def _loop(self) -> None:
        steps_before, tokens_before = self.batcher.steps, self.batcher.tokens
        while True:
            with self.cond:
                while not self._stop and not self.waiting and not self.batcher.active:
                    self.cond.wait()
                if self._stop:
                    break
                admitted = self._admit()
                self._gauges()
                if not admitted and not self.batcher.active:  # nothing fits now (cannot last): do not spin
                    self.cond.wait(0.05)
                    continue
            for job in admitted:
                self._started(job)
                self.batcher.add(job.request, job.seeds, job)
            try:
                with batched_events():
                    self.batcher.step()
            except Exception as e:  # the batch's state is unknown now: fail its jobs, start a new batch
                logger.exception("decoding step failed on %r", self.model_id)
                failed = list(self.running)
                self.running.clear()
                self.batcher = self.generator.continuous_batcher(max_rows=self.max_rows)  # type: ignore[attr-defined]
                for job in failed:
                    job.fail(e)
            for job in list(self.running):
                if job.cancelled():
                    self._drop(job)
                elif job.ended is not None:  # failed while tokenizing
                    self._finish(job)
            steps, tokens = self.batcher.steps, self.batcher.tokens
            if steps != steps_before:
                self.metrics.inc("aigc_decode_steps_total", steps - steps_before, model=self.model_id)
                self.metrics.observe("aigc_batch_size", self.batcher.last_batch_rows, model=self.model_id)
                self.metrics.set("aigc_batch_rows", self.batcher.last_batch_rows, model=self.model_id)
            if tokens != tokens_before:
                self.metrics.inc("aigc_tokens_generated_total", tokens - tokens_before, model=self.model_id)
                self.metrics.rate_add("aigc_tokens_per_second", tokens - tokens_before, model=self.model_id)
            steps_before, tokens_before = steps, tokens
            if not self.batcher.active:
                self.metrics.set("aigc_batch_rows", 0, model=self.model_id)


class SequentialTextWorker(Worker):
    """Text one request at a time through ``generate`` (models the continuous batcher cannot run)."""

    kind = "sequential"

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self._stop and not self.waiting:
                    self.cond.wait()
                if self._stop:
                    break
                job = self.waiting.popleft()
                self._gauges()
            if job.cancelled():
                self._drop(job)
                continue
            self._started(job)
            self._run(job)
            self._gauges()

    def _run(self, job: Job) -> None:
        emitted: dict[int, str] = collections.defaultdict(str)
        steps = 0

        def on_event(event: AigcEvent) -> None:
            nonlocal steps
            if event.kind == "token" and event.text and event.sample is not None:
                emitted[event.sample] += event.text
                job.piece(event.sample, event.text)
            elif event.kind == "step":
                steps += 1
                self.metrics.inc("aigc_decode_steps_total", model=self.model_id)
            if job.cancelled():
                event.cancel()

        try:
            result = self.generator.generate(job.request, on_event=on_event, progress=False)
        except Exception as e:
            self._finish(job)
            job.fail(e)
            return
        assert isinstance(result, TextResult)
        if job.cancelled() or "cancelled" in result.finish_reasons:
            self._drop(job)
            return
        tokens = sum(result.num_tokens)
        self.metrics.inc("aigc_tokens_generated_total", tokens, model=self.model_id)
        self.metrics.rate_add("aigc_tokens_per_second", tokens, model=self.model_id)
        self.metrics.observe("aigc_batch_size", len(result.texts), model=self.model_id)
        for i, text in enumerate(result.texts):
            done = emitted[i]
            if text.startswith(done) and len(text) > len(done):  # the end the events did not carry
                job.piece(i, text[len(done):])
            job.tokens[i] = len(result.token_ids[i]) if result.token_ids else 0
        job.prompt_token_counts = _prompt_token_counts(self.generator, job.request)
        for i, reason in enumerate(result.finish_reasons or ["length"] * len(result.texts)):
            job._post(Finished(i, reason, job.tokens[i]))
        self._finish(job)
        job.complete(result.record)


def _prompt_token_counts(generator: Generator[Any, Any], request: Request) -> list[int]:
    tokenizer = getattr(generator, "tokenizer", None)
    if tokenizer is None:
        return [0] * len(request.prompts())
    counts = []
    for prompt in request.prompts():
        try:
            text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True)
            counts.append(len(tokenizer(text)["input_ids"]))
        except Exception:  # counting is best effort: usage is informative
            counts.append(0)
    return counts


class MediaWorker(Worker):
    """Images, audio and video: dynamic batching of compatible requests within a short window."""

    kind = "dynamic"

    def __init__(self, model_id: str, generator: Generator[Any, Any], *, metrics: Metrics, max_queue: int,
                 max_concurrent: int, window_s: float, max_samples: int) -> None:
        super().__init__(model_id, generator, metrics=metrics, max_queue=max_queue, max_concurrent=max_concurrent)
        self.window_s = window_s
        self.max_samples = max_samples

    def _next_batch(self) -> list[Job] | None:
        with self.cond:
            while True:
                while not self._stop and not self.waiting:
                    self.cond.wait()
                if self._stop:
                    return None
                first = self.waiting.popleft()
                if first.cancelled():
                    self._drop(first)
                    continue
                break
            batch, samples = [first], first.total_samples
            closes = time.monotonic() + self.window_s
            while first.batch_key is not None and len(batch) < self.max_concurrent and samples < self.max_samples:
                match = next((j for j in self.waiting if j.batch_key == first.batch_key
                              and samples + j.total_samples <= self.max_samples), None)
                if match is not None:
                    self.waiting.remove(match)
                    if match.cancelled():
                        self._drop(match)
                        continue
                    batch.append(match)
                    samples += match.total_samples
                    continue
                remaining = closes - time.monotonic()
                if remaining <= 0 or self._stop:
                    break
                self.cond.wait(remaining)
            self._gauges()
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            for job in batch:
                self._started(job)
            self._gauges()
            self._run(batch)
            self._gauges()

    def _run(self, batch: list[Job]) -> None:
        request = batch[0].request if len(batch) == 1 else _combined(batch)

        def on_event(event: AigcEvent) -> None:
            if event.kind == "step" and event.total:
                for job in batch:
                    job.progress(event.step, event.total)
            if all(job.cancelled() for job in batch):
                event.cancel()

        try:
            result = self.generator.generate(request, on_event=on_event, progress=False)
        except GenerationCancelled:
            for job in batch:
                self._drop(job)
            return
        except InvalidRequest as e:
            if len(batch) > 1:  # one job's settings do not suit the model: run each alone, so only it fails
                for job in batch:
                    self._run([job])
                return
            self._finish(batch[0])
            batch[0].fail(e)
            return
        except Exception as e:
            for job in batch:
                self._finish(job)
                job.fail(e)
            return
        self.metrics.observe("aigc_batch_size", len(result), model=self.model_id)
        self.metrics.inc("aigc_samples_generated_total", len(result), model=self.model_id)
        self.metrics.rate_add("aigc_samples_per_second", len(result), model=self.model_id)
        start = 0
        for job in batch:
            part = _slice(result, start, start + job.total_samples)
            start += job.total_samples
            if len(batch) > 1 and part.record is not None:  # each job's record holds its own request
                part.record = dataclasses.replace(part.record, request=job.request.to_dict(), seeds=list(job.seeds))
            if job.cancelled():
                self._drop(job)
                continue
            try:
                payload = job.encode(part) if job.encode is not None else part
            except Exception as e:
                self._finish(job)
                job.fail(e)
                continue
            self._finish(job)
            job.complete(part.record, payload)


def _combined(batch: list[Job]) -> Request:
    """One request for every sample of ``batch`` (same settings): each sample's prompt repeated, one seed each."""
    prompts: list[Any] = []
    for job in batch:
        per = job.request.samples_per_prompt
        prompts += [p for p in job.request.prompts() for _ in range(per)]
    seeds = [s for job in batch for s in job.seeds]
    return batch[0].request.replace(prompt=prompts, seed=seeds, num_outputs=1)


def _slice(result: Result, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of ``result`` (every per-sample list field is cut)."""
    n = len(result.seeds)
    changes = {f.name: getattr(result, f.name)[start:stop] for f in dataclasses.fields(result)
               if isinstance(getattr(result, f.name), list) and len(getattr(result, f.name)) == n}
    return dataclasses.replace(result, **changes)


def batch_key(request: Request) -> str | None:
    """Requests with the same key may share one ``generate`` call: every field equal except prompt and seeds.
    Requests with input images or videos never share."""
    fields = request.to_dict()
    if any(fields.get(name) is not None for name in ("init_image", "mask", "init_video")):
        return None
    fields = {k: v for k, v in fields.items() if k not in ("prompt", "seed", "num_outputs")}
    return f"{type(request).__name__}:{json.dumps(fields, sort_keys=True, default=repr)}"


def make_worker(model_id: str, generator: Generator[Any, Any], *, metrics: Metrics, max_queue: int,
                max_concurrent: int, max_batch_rows: int | None, window_s: float, max_samples: int) -> Worker:
    """The worker that suits ``generator``: continuous batching for text models that allow it."""
    if generator.modality == "text":
        make = getattr(generator, "continuous_batcher", None)
        batcher = make(max_rows=max_batch_rows) if callable(make) else None
        if batcher is not None:
            return TextWorker(model_id, generator, batcher=batcher, metrics=metrics, max_queue=max_queue,
                              max_concurrent=max_concurrent)
        return SequentialTextWorker(model_id, generator, metrics=metrics, max_queue=max_queue, max_concurrent=1)
    return MediaWorker(model_id, generator, metrics=metrics, max_queue=max_queue, max_concurrent=max_concurrent,
                       window_s=window_s, max_samples=max_samples)

