"""The ASGI application: OpenAI-shaped routes over the model workers.

Stages of one request (see :mod:`aigc.serve._engine` for the model side):
    1. middleware: the body size limit (413), the API key (401, compared in constant time), the access log line;
    2. the route reads the body field by field (:mod:`aigc.serve._protocol`) and builds a typed aigc request with
       the model's defaults and the backend's checks -- every mistake is a 400 naming the field, before any work;
    3. seeds are resolved (``seed`` or fresh ones from the OS, recorded), the job is queued (429 when full);
    4. the route waits for the job's events while watching the connection: a client that leaves cancels the job,
       which stops at the model's next step; text streams as server-sent events;
    5. the response carries the provenance record: the ``aigc_record`` field of JSON responses (the last chunk of a
       stream), and inside every media file (PNG text chunk, WAV/FLAC/OGG comment, MP4 metadata).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import aigc
from aigc._generator import Generator
from aigc._results import Record, Result, VideoResult
from aigc._seeds import resolve_seeds
from aigc._types import Modality, Request
from aigc.errors import AigcError
from aigc.serve._config import ModelSpec, ServeConfig
from aigc.serve._engine import (
    Cancelled,
    Done,
    Failed,
    Finished,
    Job,
    JobEvent,
    Piece,
    Progress,
    Worker,
    batch_key,
    make_worker,
)
from aigc.serve._errors import APIError, from_aigc_error, invalid
from aigc.serve._metrics import Metrics
from aigc.serve._protocol import (
    AUDIO_FIELDS,
    AUDIO_FORMATS,
    IMAGE_FIELDS,
    VIDEO_FIELDS,
    Body,
    MediaCall,
    TextCall,
    parse_chat,
    parse_completion,
    parse_image,
    parse_speech,
    parse_video,
)

__all__ = ["ServedModel", "build_app"]

logger = logging.getLogger("aigc.serve")
access_logger = logging.getLogger("aigc.serve.access")

_LOG_KEY = "aigc.log"  # scope key: what a route tells the access log
_MAX_VIDEOS = 256  # finished videos kept in memory for download, at most


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


# -- middleware -------------------------------------------------------------------------------------------
class _BodyTooLarge(Exception):
    pass


class _Guard:
    """Body size limit, API key and access log, as one pure ASGI middleware (so streaming is untouched)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        log: dict[str, Any] = {}
        scope[_LOG_KEY] = log
        status = [0]

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            error = self._check(scope)
            if error is not None:
                await _error_response(error)(scope, receive, logged_send)
                return
            seen = [0]

            async def limited_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        raise _BodyTooLarge()
                return message

            try:
                await self.app(scope, limited_receive, logged_send)
            except _BodyTooLarge:
                if status[0] == 0:
                    await _error_response(_too_large(self.max_body))(scope, receive, logged_send)
        finally:
            self._access(scope, status[0], time.monotonic() - started, log)

    def _check(self, scope: Scope) -> APIError | None:
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return _too_large(self.max_body)
        if self.key is not None and path != "/health":
            auth = headers.get("authorization", b"")
            scheme, _, token = auth.partition(b" ")
            # constant time: the comparison does not stop at the first differing byte
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                return APIError(401, "Incorrect or missing API key. Fix: send the header 'Authorization: Bearer "
                                "<key>' with the key the server was started with (--api-key or AIGC_API_KEY)",
                                type="invalid_request_error", code="invalid_api_key")
        return None

    def _access(self, scope: Scope, status: int, seconds: float, log: dict[str, Any]) -> None:
        client = scope.get("client")
        who = f"{client[0]}:{client[1]}" if client else "-"
        extra = " ".join(f"{k}={v}" for k, v in log.items())
        access_logger.info('%s "%s %s" %d %.1fms%s', who, scope.get("method", "-"), scope.get("path", "-"),
                           status, seconds * 1000, f" {extra}" if extra else "")
        model = str(log.get("model", "-"))
        endpoint = str(log.get("endpoint", "-"))
        if endpoint not in ("health", "metrics"):
            self.metrics.inc("aigc_requests_total", model=model, endpoint=endpoint, status=str(status))
            if status == 200:
                self.metrics.observe("aigc_request_duration_seconds", seconds, model=model, endpoint=endpoint)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than this server's limit of {limit} bytes. Fix: send "
                    "smaller images or prompts (limits.max_body_bytes)", code="request_too_large")


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


# -- the application ----------------------------------------------------------------------------------------
class Server:
    """The routes, bound to the served models and the configuration."""

    def __init__(self, models: dict[str, ServedModel], config: ServeConfig, metrics: Metrics) -> None:
        self.models = models
        self.config = config
        self.limits = config.limits
        self.metrics = metrics
        self.videos: dict[str, VideoJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
        except _BodyTooLarge:
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
        log = request.scope.get(_LOG_KEY, {})
        log.update(endpoint=endpoint, model=served.id, id=job.id[:12], samples=job.total_samples)
        served.worker.submit(job)
        return job

    def note(self, request: HTTPRequest, job: Job, outcome: str) -> None:
        """Timings for the access log and the latency histograms."""
        log = request.scope.get(_LOG_KEY, {})
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
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            while True:
                first = await self.wait(request, job, watcher)
                if first is None:
                    self.note(request, job, "disconnected")
                    raise _Gone()
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

    # -- routes: metadata --------------------------------------------------------------------------------
    async def health(self, request: HTTPRequest) -> Response:
        models = {m.id: {"modality": m.modality, "backend": m.generator.backend_name, "batching": m.worker.kind,
                         "queue": m.worker.queue_depth, "running": len(m.worker.running)} for m in self.models.values()}
        return JSONResponse({"status": "ok", "models": models})

    async def metrics_text(self, request: HTTPRequest) -> Response:
        for m in self.models.values():
            self.metrics.set("aigc_queue_depth", m.worker.queue_depth, model=m.id)
            self.metrics.set("aigc_running_requests", len(m.worker.running), model=m.id)
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def list_models(self, request: HTTPRequest) -> Response:
        return JSONResponse({"object": "list", "data": [m.card() for m in self.models.values()]})

    async def get_model(self, request: HTTPRequest) -> Response:
        name = request.path_params["model_id"]
        served = self.models.get(name)
        if served is None:
            raise APIError(404, f"The model `{name}` does not exist. Fix: use one of {sorted(self.models)}",
                           param="model", code="model_not_found")
        return JSONResponse(served.card())

    # -- routes: text -----------------------------------------------------------------------------------
    async def completions(self, request: HTTPRequest) -> Response:
        return await self._text(request, parse_completion(await self.json_body(request), self.limits))

    async def chat_completions(self, request: HTTPRequest) -> Response:
        return await self._text(request, parse_chat(await self.json_body(request), self.limits))

    async def _text(self, request: HTTPRequest, call: TextCall) -> Response:
        served = self.model(call.model, "text")
        params = dict(call.params)
        if "max_new_tokens" not in params:  # the model's default, within this server's limit
            default = served.generator.request_defaults.get("max_new_tokens", 50)
            params["max_new_tokens"] = min(int(default), self.limits.max_tokens)
        req = served.request(call.prompt, params, call.rename)
        worker = served.worker
        max_rows = getattr(worker, "max_rows", None)
        if max_rows is not None and req.total_samples > max_rows:
            raise invalid("n", req.total_samples, f"more samples than the {max_rows} rows the model decodes at once",
                          f"pass n <= {max_rows}")
        endpoint = "chat.completions" if call.chat else "completions"
        job = self.submit(request, served, req, endpoint=endpoint, rename=call.rename)
        rid = ("chatcmpl-" if call.chat else "cmpl-") + job.id
        created = int(time.time())
        if call.stream:
            return await self._stream_text(request, job, call, served, rid, created)
        texts = [""] * job.total_samples
        reasons = ["length"] * job.total_samples

        def collect(event: JobEvent) -> None:
            if isinstance(event, Piece):
                texts[event.sample] += event.text
            elif isinstance(event, Finished):
                reasons[event.sample] = event.reason

        done = await self.until_done(request, job, collect)
        if call.chat:
            choices: list[dict[str, Any]] = [
                {"index": i, "message": {"role": "assistant", "content": t, "refusal": None}, "logprobs": None,
                 "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]
        else:
            choices = [{"text": t, "index": i, "logprobs": None, "finish_reason": r}
                       for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]
        return JSONResponse({"id": rid, "object": "chat.completion" if call.chat else "text_completion",
                             "created": created, "model": served.id, "system_fingerprint": _fingerprint(served),
                             "choices": choices, "usage": _usage(job), "aigc_record": _record(done.record)})

    async def _stream_text(self, request: HTTPRequest, job: Job, call: TextCall, served: ServedModel, rid: str,
                           created: int) -> Response:
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            first = await self.wait(request, job, watcher)  # errors before the first token are plain 4xx/5xx
        finally:
            watcher.cancel()
        if first is None:
            self.note(request, job, "disconnected")
            return Response(status_code=499)
        if isinstance(first, Failed):
            self.note(request, job, f"error:{first.error.code}")
            raise first.error
        kind = "chat.completion.chunk" if call.chat else "text_completion"
        fingerprint = _fingerprint(served)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": rid, "object": kind, "created": created, "model": served.id,
                    "system_fingerprint": fingerprint, "choices": choices}
            if call.include_usage:
                data["usage"] = None
            data.update(extra)
            return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

        def choice(i: int, text: str | None, reason: str | None, role: bool = False) -> dict[str, Any]:
            if call.chat:
                delta: dict[str, Any] = {}
                if role:
                    delta["role"] = "assistant"
                if text is not None:
                    delta["content"] = text
                return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}
            return {"text": text or "", "index": i, "logprobs": None, "finish_reason": reason}

        total = job.total_samples

        async def events() -> AsyncIterator[bytes]:
            finished = 0
            held: Finished | None = None  # the last sample's end waits for the record
            complete = False
            try:
                if call.chat:
                    yield chunk([choice(i, "", None, role=True) for i in range(total)])
                pending: list[JobEvent] = [first]
                while True:
                    out: list[bytes] = []
                    for event in pending:
                        if isinstance(event, Piece):
                            out.append(chunk([choice(event.sample, event.text, None)]))
                        elif isinstance(event, Finished):
                            finished += 1
                            if finished == total:
                                held = event
                            else:
                                out.append(chunk([choice(event.sample, None if call.chat else "", event.reason)]))
                        elif isinstance(event, Done):
                            record = _record(event.record)
                            if held is not None and not call.include_usage:
                                out.append(chunk([choice(held.sample, None if call.chat else "", held.reason)],
                                                 aigc_record=record))
                            else:
                                if held is not None:
                                    out.append(chunk([choice(held.sample, None if call.chat else "", held.reason)]))
                                out.append(chunk([], usage=_usage(job), aigc_record=record))
                            out.append(b"data: [DONE]\n\n")
                            complete = True
                            self.note(request, job, "ok")
                        elif isinstance(event, (Failed, Cancelled)):
                            error = event.error if isinstance(event, Failed) else APIError(
                                504 if event.reason == "timeout" else 503, f"the request was cancelled "
                                f"({event.reason})", type="server_error", code=event.reason)
                            out.append(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
                            complete = True
                            self.note(request, job, f"error:{error.code}")
                    if out:
                        yield b"".join(out)
                    if complete:
                        return
                    pending = [await job.next_event()]
                    pending += job.ready()  # everything else already there goes out in the same write
            finally:
                if not complete:  # the client left (Starlette cancelled this generator) or the loop stopped
                    job.cancel("disconnect")
                    self.note(request, job, "disconnected")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- routes: images --------------------------------------------------------------------------------
    async def image_generations(self, request: HTTPRequest) -> Response:
        return await self._images(request, parse_image(Body(await self.json_body(request)), self.limits))

    async def image_edits(self, request: HTTPRequest) -> Response:
        return await self._images(request, parse_image(await self.form_body(request), self.limits, edit=True),
                                  endpoint="images.edits")

    async def _images(self, request: HTTPRequest, call: MediaCall, endpoint: str = "images.generations") -> Response:
        served = self.model(call.model, "image", call.backend)
        req = served.request(call.prompt, {**call.params, **call.images}, IMAGE_FIELDS)
        suffix = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}[call.output_format]
        job = self.submit(request, served, req, endpoint=endpoint, rename=IMAGE_FIELDS,
                          encode=lambda result: _encode(result, suffix))
        done = await self.until_done(request, job)
        files: list[bytes] = done.payload
        mime = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}[call.output_format]
        data = []
        for blob in files:
            b64 = base64.b64encode(blob).decode("ascii")
            data.append({"b64_json": b64} if call.response_format == "b64_json" else
                        {"url": f"data:{mime};base64,{b64}"})
        size = _image_size(files[0]) if files else None
        return JSONResponse({"created": int(time.time()), "data": data, "output_format": call.output_format,
                             "size": size, "aigc_record": _record(done.record)})

    # -- routes: speech ----------------------------------------------------------------------------------
    async def speech(self, request: HTTPRequest) -> Response:
        call = parse_speech(Body(await self.json_body(request)), self.limits)
        served = self.model(call.model, "audio")
        req = served.request(call.prompt, call.params, AUDIO_FIELDS)
        mime, suffix = AUDIO_FORMATS[call.output_format]
        job = self.submit(request, served, req, endpoint="audio.speech", rename=AUDIO_FIELDS,
                          encode=lambda result: _encode(result, suffix))
        done = await self.until_done(request, job)
        return Response(content=done.payload[0], media_type=mime,
                        headers={"X-Aigc-Seed": str(job.seeds[0]), "X-Aigc-Model": served.id})

    # -- routes: video -----------------------------------------------------------------------------------
    async def create_video(self, request: HTTPRequest) -> Response:
        ctype = request.headers.get("content-type", "")
        body = await self.form_body(request) if ctype.startswith("multipart/") else Body(await self.json_body(request))
        call = parse_video(body, self.limits)
        served = self.model(call.model, "video")
        req = served.request(call.prompt, {**call.params, **call.images}, VIDEO_FIELDS)
        self._expire_videos()
        job = self.submit(request, served, req, endpoint="videos", rename=VIDEO_FIELDS, encode=_encode_video)
        video = VideoJob(id=f"video_{job.id}", job=job, model=served.id, prompt=call.prompt,
                         size=f"{req.width}x{req.height}" if getattr(req, "width", None) else "auto",  # type: ignore[attr-defined]
                         seconds=call.seconds)
        self.videos[video.id] = video
        task = asyncio.ensure_future(self._follow(video))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return JSONResponse(video.card())

    async def _follow(self, video: VideoJob) -> None:
        """Consume a video job's events (nobody waits on the connection: clients poll)."""
        while True:
            event = await video.job.next_event()
            if isinstance(event, Progress):
                video.status = "in_progress"
                video.progress = min(99, int(100 * event.step / max(event.total, 1)))
            elif isinstance(event, Done):
                video.status, video.progress = "completed", 100
                video.completed_at = int(time.time())
                video.content = event.payload["files"][0]
                video.size, video.seconds = event.payload["size"], event.payload["seconds"]
                video.record = event.record
                return
            elif isinstance(event, Failed):
                video.status = "failed"
                video.error = {"code": event.error.code or "failed", "message": event.error.message,
                               "param": event.error.param, "type": event.error.type}
                video.completed_at = int(time.time())
                return
            elif isinstance(event, Cancelled):
                video.status = "failed"
                video.error = {"code": event.reason, "message": f"cancelled ({event.reason})"}
                video.completed_at = int(time.time())
                return

    def _video(self, request: HTTPRequest) -> VideoJob:
        video_id = request.path_params["video_id"]
        video = self.videos.get(video_id)
        if video is None:
            raise APIError(404, f"no video {video_id!r} on this server (finished videos are kept "
                           f"{self.config.video_retention_s:g} s)", param="video_id", code="not_found")
        return video

    def _expire_videos(self) -> None:
        """Forget finished videos older than the retention time, and all but the newest ``_MAX_VIDEOS``."""
        now = time.time()
        finished = [v for v in self.videos.values() if v.completed_at is not None]
        finished.sort(key=lambda v: v.completed_at or 0)
        for i, video in enumerate(finished):
            if now - (video.completed_at or now) > self.config.video_retention_s or i < len(finished) - _MAX_VIDEOS:
                del self.videos[video.id]

    async def get_video(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        if video.status in ("queued",) and video.job.started is not None:
            video.status = "in_progress"
        return JSONResponse(video.card(self.config.video_retention_s))

    async def list_videos(self, request: HTTPRequest) -> Response:
        self._expire_videos()
        data = [v.card(self.config.video_retention_s) for v in self.videos.values()]
        return JSONResponse({"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    async def video_content(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        variant = request.query_params.get("variant", "video")
        if variant != "video":
            raise invalid("variant", variant, "only the video itself is available", "leave variant out")
        if video.status != "completed" or video.content is None:
            raise APIError(409 if video.status != "failed" else 400, f"video {video.id} is {video.status}; its "
                           "content is there once it is completed", param="video_id", code="not_ready")
        return Response(content=video.content, media_type="video/mp4")

    async def delete_video(self, request: HTTPRequest) -> Response:
        video = self._video(request)
        video.job.cancel("deleted")
        del self.videos[video.id]
        return JSONResponse({"id": video.id, "object": "video.deleted", "deleted": True})


class _Gone(Exception):
    """The client disconnected; nobody reads the answer."""


async def _disconnected(request: HTTPRequest) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@dataclass
class VideoJob:
    """A video being made or kept for download (OpenAI's videos API: create, then poll and download)."""

    id: str
    job: Job
    model: str
    prompt: str
    size: str
    seconds: float | None
    status: str = "queued"
    progress: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    content: bytes | None = None
    record: Record | None = None
    error: dict[str, Any] | None = None

    def card(self, retention_s: float = 3600.0) -> dict[str, Any]:
        seconds = self.seconds
        if self.record is not None:
            meta = self.record.request
            frames, fps = meta.get("num_frames"), meta.get("fps")
            if seconds is None and isinstance(frames, int) and isinstance(fps, (int, float)) and fps:
                seconds = frames / fps
        return {"id": self.id, "object": "video", "created_at": self.created_at, "completed_at": self.completed_at,
                "expires_at": None if self.completed_at is None else int(self.completed_at + retention_s),
                "status": self.status, "model": self.model, "progress": self.progress, "prompt": self.prompt,
                "seconds": "auto" if seconds is None else f"{seconds:g}", "size": self.size, "error": self.error,
                "remixed_from_video_id": None, "aigc_record": _record(self.record)}


# -- encoding and response pieces ---------------------------------------------------------------------------
def _encode(result: Result, suffix: str) -> list[bytes]:
    """Each sample as a file's bytes, written by the result's own ``save`` (so the record is embedded exactly as in a
    file saved locally), through a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aigc-serve-") as tmp:
        paths = result.save(Path(tmp) / f"out{suffix}")
        return [p.read_bytes() for p in paths if p.suffix == suffix]


def _image_size(png: bytes) -> str | None:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return f"{image.width}x{image.height}"


def _encode_video(result: Result) -> dict[str, Any]:
    """MP4 files, and the clip's size and length (the video object's ``size`` and ``seconds``)."""
    assert isinstance(result, VideoResult)
    frames = result.videos[0]
    return {"files": _encode(result, ".mp4"), "size": f"{frames.shape[2]}x{frames.shape[1]}",
            "seconds": frames.shape[0] / result.fps}


def _record(record: Record | None) -> dict[str, Any] | None:
    return None if record is None else dataclasses.asdict(record)


def _usage(job: Job) -> dict[str, int]:
    prompt = sum(job.prompt_token_counts)
    completion = sum(job.tokens.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _fingerprint(served: ServedModel) -> str:
    weights = served.generator.weights or served.generator.model_id
    return f"aigc-{aigc.__version__}-{str(weights).removeprefix('sha256:')[:12]}"


# -- building it ------------------------------------------------------------------------------------------
def _load(specs: Sequence[ModelSpec] | Mapping[str, Generator[Any, Any] | ModelSpec] | None,
          ) -> list[tuple[str, Generator[Any, Any], bool]]:
    if specs is None:
        specs = [ModelSpec(modality=m) for m in ("text", "image", "audio", "video")]
    items: list[tuple[str | None, Generator[Any, Any] | ModelSpec]]
    items = list(specs.items()) if isinstance(specs, Mapping) else [(None, s) for s in specs]
    loaded: list[tuple[str, Generator[Any, Any], bool]] = []
    seen: set[str] = set()
    try:
        for name, item in items:
            if isinstance(item, Generator):
                model_id, gen, owned = name or f"{item.modality}-{Path(item.model_id).name}", item, False
            elif isinstance(item, ModelSpec):
                spec = dataclasses.replace(item, id=name or item.id)
                model_id = spec.served_id
                logger.info("loading %s model %r as %r", spec.modality, spec.model or "default", model_id)
                gen = aigc.load(spec.modality, spec.model, backend=spec.backend, device=spec.device,
                                dtype=spec.dtype, cache=False, **dict(spec.options))
                owned = True
            else:
                raise AigcError(f"models: {item!r} is neither a ModelSpec nor a Generator. Fix: pass "
                                "ModelSpec(modality=..., model=...) or a loaded generator")
            if model_id in seen:
                if owned:
                    gen.close()
                raise AigcError(f"two served models are named {model_id!r}. Fix: give one an id (--model "
                                f"text=DIR,id=NAME)")
            seen.add(model_id)
            loaded.append((model_id, gen, owned))
    except BaseException:
        for _, gen, owned in loaded:
            if owned:
                gen.close()
        raise
    return loaded


def build_app(models: Sequence[ModelSpec] | Mapping[str, Generator[Any, Any] | ModelSpec] | None = None, *,
              config: ServeConfig | None = None) -> Starlette:
    """See :func:`aigc.serve.app`."""
    config = config or ServeConfig()
    metrics = Metrics()
    served: dict[str, ServedModel] = {}
    for model_id, gen, owned in _load(models):
        worker = make_worker(model_id, gen, metrics=metrics, max_queue=config.max_queue,
                             max_concurrent=config.max_concurrent, max_batch_rows=config.max_batch_rows,
                             window_s=config.batch_window_ms / 1000.0, max_samples=config.max_batch_samples)
        served[model_id] = ServedModel(id=model_id, generator=gen, worker=worker, owned=owned)
    server = Server(served, config, metrics)

    def route(path: str, handler: Callable[[HTTPRequest], Awaitable[Response]], method: str, name: str) -> Route:
        async def endpoint(request: HTTPRequest) -> Response:
            request.scope.setdefault(_LOG_KEY, {})["endpoint"] = name
            try:
                return await handler(request)
            except APIError as e:
                return _error_response(e)
            except _Gone:
                return Response(status_code=499)
            except _BodyTooLarge:
                return _error_response(_too_large(config.limits.max_body_bytes))
            except AigcError as e:  # a check the routes did not anticipate: still the client's mistake or ours
                return _error_response(from_aigc_error(e))
            except Exception as e:
                logger.exception("%s %s failed", request.method, request.url.path)
                return _error_response(APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error",
                                                code="internal_error"))

        return Route(path, endpoint, methods=[method])

    routes = [
        route("/health", server.health, "GET", "health"),
        route("/metrics", server.metrics_text, "GET", "metrics"),
        route("/v1/models", server.list_models, "GET", "models"),
        route("/v1/models/{model_id:path}", server.get_model, "GET", "models"),
        route("/v1/completions", server.completions, "POST", "completions"),
        route("/v1/chat/completions", server.chat_completions, "POST", "chat.completions"),
        route("/v1/images/generations", server.image_generations, "POST", "images.generations"),
        route("/v1/images/edits", server.image_edits, "POST", "images.edits"),
        route("/v1/audio/speech", server.speech, "POST", "audio.speech"),
        route("/v1/videos", server.create_video, "POST", "videos"),
        route("/v1/videos", server.list_videos, "GET", "videos"),
        route("/v1/videos/{video_id}", server.get_video, "GET", "videos"),
        route("/v1/videos/{video_id}", server.delete_video, "DELETE", "videos"),
        route("/v1/videos/{video_id}/content", server.video_content, "GET", "videos.content"),
    ]

    def close() -> None:
        for m in served.values():
            m.worker.stop()
        for m in served.values():
            if m.owned:
                m.generator.close()

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.get_running_loop().run_in_executor(None, close)

    async def not_found(request: HTTPRequest, exc: Exception) -> Response:
        return _error_response(APIError(404, f"no route {request.method} {request.url.path} on this server. Fix: "
                                        "see docs/serve.md for the endpoints", code="not_found"))

    async def wrong_method(request: HTTPRequest, exc: Exception) -> Response:
        return _error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}",
                                        code="method_not_allowed"))

    application = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found,
                                                                                   405: wrong_method})
    application.add_middleware(_Guard, api_key=config.api_key, max_body=config.limits.max_body_bytes,
                               metrics=metrics)
    if config.cors_origins:  # outside the guard: preflight requests carry no API key
        from starlette.middleware.cors import CORSMiddleware

        application.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                                   allow_methods=["GET", "POST", "DELETE"],
                                   allow_headers=["Authorization", "Content-Type"])
    application.state.aigc = server
    application.state.close = close
    for m in served.values():
        m.worker.start()
    return application
