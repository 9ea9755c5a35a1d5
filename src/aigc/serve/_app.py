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
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import aigc
from aigc._generator import Generator
from aigc.errors import AigcError
from aigc.serve._base import Gone, ServedModel, disconnected
from aigc.serve._config import ModelSpec, ServeConfig
from aigc.serve._encoding import encode, fingerprint, image_size, record_json, usage
from aigc.serve._engine import make_worker
from aigc.serve._errors import APIError, from_aigc_error, invalid
from aigc.serve._guard import LOG_KEY, BodyTooLarge, Guard, error_response, too_large
from aigc.serve._jobs import Cancelled, Done, Failed, Finished, Job, JobEvent, Piece
from aigc.serve._metrics import Metrics
from aigc.serve._protocol import (
    AUDIO_FIELDS,
    AUDIO_FORMATS,
    IMAGE_FIELDS,
    Body,
    MediaCall,
    TextCall,
    parse_chat,
    parse_completion,
    parse_image,
    parse_speech,
)
from aigc.serve._videos import VideoRoutes

__all__ = ["ServedModel", "build_app"]

logger = logging.getLogger("aigc.serve")



class Server(VideoRoutes):
    """The routes, bound to the served models and the configuration."""

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
                             "created": created, "model": served.id, "system_fingerprint": fingerprint(served),
                             "choices": choices, "usage": usage(job), "aigc_record": record_json(done.record)})

    async def _stream_text(self, request: HTTPRequest, job: Job, call: TextCall, served: ServedModel, rid: str,
                           created: int) -> Response:
        watcher = asyncio.ensure_future(disconnected(request))
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
        system_fingerprint = fingerprint(served)

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": rid, "object": kind, "created": created, "model": served.id,
                    "system_fingerprint": system_fingerprint, "choices": choices}
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
                            record = record_json(event.record)
                            if held is not None and not call.include_usage:
                                out.append(chunk([choice(held.sample, None if call.chat else "", held.reason)],
                                                 aigc_record=record))
                            else:
                                if held is not None:
                                    out.append(chunk([choice(held.sample, None if call.chat else "", held.reason)]))
                                out.append(chunk([], usage=usage(job), aigc_record=record))
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
                          encode=lambda result: encode(result, suffix))
        done = await self.until_done(request, job)
        files: list[bytes] = done.payload
        mime = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}[call.output_format]
        data = []
        for blob in files:
            b64 = base64.b64encode(blob).decode("ascii")
            data.append({"b64_json": b64} if call.response_format == "b64_json" else
                        {"url": f"data:{mime};base64,{b64}"})
        size = image_size(files[0]) if files else None
        return JSONResponse({"created": int(time.time()), "data": data, "output_format": call.output_format,
                             "size": size, "aigc_record": record_json(done.record)})

    # -- routes: speech ----------------------------------------------------------------------------------
    async def speech(self, request: HTTPRequest) -> Response:
        call = parse_speech(Body(await self.json_body(request)), self.limits)
        served = self.model(call.model, "audio")
        req = served.request(call.prompt, call.params, AUDIO_FIELDS)
        mime, suffix = AUDIO_FORMATS[call.output_format]
        job = self.submit(request, served, req, endpoint="audio.speech", rename=AUDIO_FIELDS,
                          encode=lambda result: encode(result, suffix))
        done = await self.until_done(request, job)
        return Response(content=done.payload[0], media_type=mime,
                        headers={"X-Aigc-Seed": str(job.seeds[0]), "X-Aigc-Model": served.id})


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
            request.scope.setdefault(LOG_KEY, {})["endpoint"] = name
            try:
                return await handler(request)
            except APIError as e:
                return error_response(e)
            except Gone:
                return Response(status_code=499)
            except BodyTooLarge:
                return error_response(too_large(config.limits.max_body_bytes))
            except AigcError as e:  # a check the routes did not anticipate: still the client's mistake or ours
                return error_response(from_aigc_error(e))
            except Exception as e:
                logger.exception("%s %s failed", request.method, request.url.path)
                return error_response(APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error",
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
        return error_response(APIError(404, f"no route {request.method} {request.url.path} on this server. Fix: "
                                        "see docs/serve.md for the endpoints", code="not_found"))

    async def wrong_method(request: HTTPRequest, exc: Exception) -> Response:
        return error_response(APIError(405, f"{request.method} is not allowed on {request.url.path}",
                                        code="method_not_allowed"))

    application = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found,
                                                                                   405: wrong_method})
    application.add_middleware(Guard, api_key=config.api_key, max_body=config.limits.max_body_bytes,
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
