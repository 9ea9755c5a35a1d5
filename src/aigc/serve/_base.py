"""What every route shares: the served models, the body readers, submitting a job and waiting for its end while
watching the connection (a client that leaves cancels its job)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request as HTTPRequest

from aigc._generator import Generator
from aigc._results import Result
from aigc._seeds import resolve_seeds
from aigc._types import Modality, Request
from aigc.errors import AigcError
from aigc.serve._config import ServeConfig
from aigc.serve._engine import Worker, batch_key
from aigc.serve._errors import APIError, from_aigc_error, invalid
from aigc.serve._guard import LOG_KEY, BodyTooLarge
from aigc.serve._jobs import Cancelled, Done, Failed, Job, JobEvent
from aigc.serve._metrics import Metrics
from aigc.serve._protocol import Body

__all__ = ["Gone", "ServedModel", "ServerBase", "disconnected"]


@dataclass
class ServedModel:
    """One model behind the server."""

    id: str
    generator: Generator[Any, Any]
    worker: Worker
    owned: bool  # loaded by the server (closed at shutdown)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def modality(self) -> Modality:
        return self.generator.modality

    def card(self) -> dict[str, Any]:
        """The ``GET /v1/models`` entry: OpenAI's fields, then aigc's."""
        info = self.generator.info
        card: dict[str, Any] = {"id": self.id, "object": "model", "created": self.created, "owned_by": "aigc",
                                "modality": info.modality, "backend": info.backend, "model": info.model,
                                "device": info.device, "dtype": info.dtype, "batching": self.worker.kind}
        voices = getattr(self.generator, "voices", None)
        if isinstance(voices, list):
            card["voices"] = voices
        return card

    def request(self, prompt: Any, params: dict[str, Any], rename: Mapping[str, str]) -> Request:
        """The typed request with the model's defaults, checked against the backend (400 naming the field)."""
        try:
            request: Request = self.generator._build_request(prompt, params)
            return request
        except AigcError as e:
            raise from_aigc_error(e, rename=rename) from None


class Gone(Exception):
    """The client disconnected; nobody reads the answer."""


async def disconnected(request: HTTPRequest) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class ServerBase:
    """The served models, the configuration, and the helpers the routes share."""

    def __init__(self, models: dict[str, ServedModel], config: ServeConfig, metrics: Metrics) -> None:
        self.models = models
        self.config = config
        self.limits = config.limits
        self.metrics = metrics

    # -- helpers --------------------------------------------------------------------------------------
    def model(self, name: str | None, modality: Modality, backend: str | None = None) -> ServedModel:
        """The served model ``name`` (a served id, or a modality for its first model) for ``modality``."""
        candidates = [m for m in self.models.values() if m.modality == modality
                      and (backend is None or m.generator.backend_name == backend)]
        if name is None or name == modality:
            if not candidates:
                raise APIError(404, f"this server has no {modality} model"
                               f"{f' with backend {backend!r}' if backend else ''}. Fix: start it with --model "
                               f"{modality}=DIR", param="model", code="model_not_found")
            return candidates[0]
        served = self.models.get(name)
        if served is None:
            raise APIError(404, f"The model `{name}` does not exist. Fix: use one of {sorted(self.models)} (GET "
                           "/v1/models)", param="model", code="model_not_found")
        if served.modality != modality:
            raise invalid("model", name, f"a {served.modality} model; this endpoint needs a {modality} model",
                          f"use one of {[m.id for m in candidates]}")
        if backend is not None and served.generator.backend_name != backend:
            raise invalid("backend", backend, f"model {name!r} runs on the {served.generator.backend_name} backend",
                          f"leave backend out, or pass {served.generator.backend_name!r}")
        return served

    async def json_body(self, request: HTTPRequest) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError:
            raise APIError(400, "the request body is not valid JSON. Fix: send a JSON object", code="invalid_json") \
                from None
        if not isinstance(data, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        return data

    async def form_body(self, request: HTTPRequest) -> Body:
        try:
            form = await request.form(max_files=4, max_fields=64, max_part_size=self.limits.max_body_bytes)
        except BodyTooLarge:
            raise
        except Exception as e:
            raise APIError(400, f"the multipart form cannot be read: {e}", code="invalid_form") from None
        data: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.setdefault(key, []).append(await value.read())
            else:
                data[key] = value
        await form.close()
        return Body(data, form=True, files=files)

    def submit(self, request: HTTPRequest, served: ServedModel, req: Request, *, endpoint: str,
               rename: Mapping[str, str], encode: Callable[[Result], Any] | None = None) -> Job:
        seeds = resolve_seeds(req.seed, req.total_samples)
        if not isinstance(req.seed, list):
            req = req.replace(seed=seeds)
        job = Job(request=req, seeds=seeds, deadline=time.monotonic() + self.config.timeout_s,
                  loop=asyncio.get_running_loop(), batch_key=None if req.modality == "text" else batch_key(req),
                  encode=encode, rename=rename)
        log = request.scope.get(LOG_KEY, {})
        log.update(endpoint=endpoint, model=served.id, id=job.id[:12], samples=job.total_samples)
        served.worker.submit(job)
        return job

    def note(self, request: HTTPRequest, job: Job, outcome: str) -> None:
        """Timings for the access log and the latency histograms."""
        log = request.scope.get(LOG_KEY, {})
        log["outcome"] = outcome
        model = str(log.get("model", "-"))
        if job.started is not None:
            log["queue_ms"] = round((job.started - job.created) * 1000, 1)
        if job.first_output is not None:
            ttft = job.first_output - job.created
            log["first_ms"] = round(ttft * 1000, 1)
            if job.request.modality == "text":
                self.metrics.observe("aigc_time_to_first_token_seconds", ttft, model=model)
        if job.tokens:
            log["tokens"] = sum(job.tokens.values())

    async def wait(self, request: HTTPRequest, job: Job, watcher: asyncio.Future[None]) -> JobEvent | None:
        """The job's next event, or ``None`` when the client disconnected first (the job is then cancelled)."""
        getter = asyncio.ensure_future(job.next_event())
        waiting: set[asyncio.Future[Any]] = {getter, watcher}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        job.cancel("disconnect")
        return None

    async def until_done(self, request: HTTPRequest, job: Job, collect: Callable[[JobEvent], None] | None = None,
                         ) -> Done:
        """Wait for the job's end, watching the connection; raise the job's error as an :class:`APIError`."""
        watcher = asyncio.ensure_future(disconnected(request))
        try:
            while True:
                first = await self.wait(request, job, watcher)
                if first is None:
                    self.note(request, job, "disconnected")
                    raise Gone()
                for event in [first, *job.ready()]:  # what else is there already, without another wait
                    if isinstance(event, Done):
                        self.note(request, job, "ok")
                        return event
                    if isinstance(event, Failed):
                        self.note(request, job, f"error:{event.error.code}")
                        raise event.error
                    if isinstance(event, Cancelled):
                        self.note(request, job, event.reason)
                        raise APIError(504 if event.reason == "timeout" else 503, f"the request was cancelled "
                                       f"({event.reason})", type="server_error", code=event.reason)
                    if collect is not None:
                        collect(event)
        finally:
            watcher.cancel()
