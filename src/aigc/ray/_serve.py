"""``aigc serve`` on Ray Serve: a router deployment in front of a model deployment.

Stages of one request:
    1. the router (the HTTP ingress, light: no model) reads the body, up to the server's size limit, and finds the
       model it names (the JSON ``model`` field, a multipart form's ``model`` field, or ``/v1/models/{id}``);
    2. it calls the model deployment through a streaming handle; for an adapter's name, with that name as the
       multiplexed model id, so Ray Serve sends it to a replica that has the adapter loaded when there is one;
    3. the model replica runs the request through the same ASGI application ``aigc serve`` runs (the base models;
       or, for an adapter, an application serving the base model with the adapter, built on first use and dropped
       when least recently used), and streams the ASGI messages back: status and headers, then the body in pieces
       (server-sent events stay streamed);
    4. a client that leaves cancels the call; the replica's application sees the disconnect and cancels the job.

The router answers ``GET /v1/models`` with the base models (from a replica) and the adapters.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ray import serve

import aigc
from aigc.errors import AigcError, InvalidRequest
from aigc.serve import ModelSpec, ServeConfig

__all__ = ["build_deployment", "run"]

logger = logging.getLogger("aigc.ray")

#: The load option that takes an adapter folder, per modality (the text backend's ``adapter``, diffusers' ``lora``).
ADAPTER_OPTIONS = {"text": "adapter", "image": "lora"}
_SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "root_path", "query_string",
               "headers", "client", "server")
Message = dict[str, Any]


def build_deployment(models: Sequence[ModelSpec] | None, *, config: ServeConfig | None,
                     adapters: Mapping[str, str] | None, base: str | None, adapter_option: str | None,
                     max_adapters_per_replica: int, num_replicas: int | str | None, max_ongoing_requests: int | None,
                     autoscaling_config: Mapping[str, Any] | None, ray_actor_options: Mapping[str, Any] | None,
                     router_replicas: int) -> serve.Application:
    """See :func:`aigc.ray.deployment`."""
    config = config or ServeConfig()
    if not isinstance(config, ServeConfig):
        raise InvalidRequest("config", config, "must be an aigc.serve.ServeConfig", "pass ServeConfig(...)")
    specs = list(models) if models is not None else [ModelSpec(modality=m) for m in ("text", "image", "audio",
                                                                                       "video")]
    ids: dict[str, ModelSpec] = {}
    for i, spec in enumerate(specs):
        if not isinstance(spec, ModelSpec):
            raise InvalidRequest(f"models[{i}]", spec, "must be an aigc.serve.ModelSpec (a replica loads the model "
                                 "itself; a loaded generator cannot travel)", "pass ModelSpec(modality=..., model=...)")
        if spec.served_id in ids:
            raise InvalidRequest(f"models[{i}]", spec.served_id, "two models have this name", "give one an id=")
        ids[spec.served_id] = spec
    adapter_specs, cards = _adapter_specs(ids, dict(adapters or {}), base, adapter_option)
    for name, value in (("max_adapters_per_replica", max_adapters_per_replica), ("router_replicas", router_replicas)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(name, value, "must be an integer >= 1", f"pass {name}=2")
    if max_ongoing_requests is not None and (not isinstance(max_ongoing_requests, int) or max_ongoing_requests < 1):
        raise InvalidRequest("max_ongoing_requests", max_ongoing_requests, "must be an integer >= 1",
                             "pass max_ongoing_requests=32")
    if num_replicas is not None and autoscaling_config is not None:
        raise InvalidRequest("num_replicas", num_replicas, "Ray Serve sets the replicas from autoscaling_config",
                             "pass min_replicas/max_replicas in autoscaling_config and leave num_replicas out")

    options: dict[str, Any] = {"max_ongoing_requests": max_ongoing_requests or config.max_concurrent}
    if autoscaling_config is not None:
        options["autoscaling_config"] = dict(autoscaling_config)
    else:
        options["num_replicas"] = 1 if num_replicas is None else num_replicas
    if ray_actor_options is not None:
        options["ray_actor_options"] = dict(ray_actor_options)
    model_class = serve.deployment(name="AigcModels")(_models_class(max_adapters_per_replica))
    model_app = model_class.options(**options).bind(specs, config, adapter_specs)
    router = serve.deployment(name="AigcRouter", num_replicas=router_replicas, max_ongoing_requests=1024,
                              ray_actor_options={"num_cpus": 0})(AigcRouter)
    return router.bind(model_app, cards, config.limits.max_body_bytes)


def _adapter_specs(ids: dict[str, ModelSpec], adapters: dict[str, str], base: str | None,
                   option: str | None) -> tuple[dict[str, ModelSpec], list[dict[str, Any]]]:
    """Served name -> the base model's spec with the adapter as a load option; and the adapters' model cards."""
    if not adapters:
        return {}, []
    if base is None:
        if len(ids) != 1:
            raise InvalidRequest("base", None, f"there are {len(ids)} models; which one do the adapters apply to?",
                                 f"pass base= one of {sorted(ids)}")
        base = next(iter(ids))
    if base not in ids:
        raise InvalidRequest("base", base, "no such served model", f"pass one of {sorted(ids)}")
    spec = ids[base]
    option = option or ADAPTER_OPTIONS.get(spec.modality)
    if option is None:
        raise InvalidRequest("adapter_option", None, f"aigc knows no adapter option for {spec.modality} models",
                             "pass adapter_option= the backend's load option that takes the folder")
    out: dict[str, ModelSpec] = {}
    cards: list[dict[str, Any]] = []
    for name, folder in adapters.items():
        if not isinstance(name, str) or not name or name in ids:
            raise InvalidRequest("adapters", name, "an adapter needs a name of its own (not a served model's)",
                                 "pass adapters={'poet': 'path/to/lora'}")
        if not isinstance(folder, (str, os.PathLike)):
            raise InvalidRequest(f"adapters[{name!r}]", folder, "must be a folder", "pass a path")
        path = os.path.abspath(os.path.expanduser(os.fspath(folder)))  # the same path on every node (shared storage)
        out[name] = dataclasses.replace(spec, id=name, options={**spec.options, option: path})
        cards.append({"id": name, "object": "model", "created": int(time.time()), "owned_by": "aigc",
                      "modality": spec.modality, "base": base, "adapter": path})
    return out, cards


# -- the model replicas ---------------------------------------------------------------------------------------
class _Loaded:
    """An adapter's application in a replica; Ray Serve's multiplexer calls ``__del__`` when it drops it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._closed = False

    def __del__(self) -> None:
        if not self._closed:
            self._closed = True
            self.app.state.close()


def _models_class(max_adapters: int) -> type:
    """The model deployment's class (made here: the multiplexer's size is fixed when a method is decorated)."""

    class AigcModels:
        """One replica: the base models, and adapters loaded on demand."""

        def __init__(self, specs: list[ModelSpec], config: ServeConfig, adapters: dict[str, ModelSpec]) -> None:
            self._config = config
            self._adapters = adapters
            self._base = aigc.serve.app(specs, config=config)  # models load, workers start

        @serve.multiplexed(max_num_models_per_replica=max_adapters)  # type: ignore[untyped-decorator]
        async def adapter(self, name: str) -> _Loaded:
            spec = self._adapters[name]
            logger.info("loading adapter %r (%s)", name, spec.options)
            app = await asyncio.to_thread(aigc.serve.app, [spec], config=self._config)
            return _Loaded(app)

        async def forward(self, scope: dict[str, Any], body: bytes) -> AsyncIterator[Message]:
            """Run one HTTP request through the application it is for; yield its ASGI messages."""
            name = serve.get_multiplexed_model_id()
            if name:
                try:
                    application = (await self.adapter(name)).app
                except AigcError as e:
                    for message in _json_messages(503, _error(f"the adapter {name!r} cannot be loaded: {e}",
                                                              "server_error", "adapter_unavailable")):
                        yield message
                    return
            else:
                application = self._base
            async for message in _run_asgi(application, scope, body):
                yield message

        def __del__(self) -> None:
            base = self.__dict__.pop("_base", None)  # once, whoever calls first (Ray Serve, or the collector)
            if base is not None:
                base.state.close()

    return AigcModels


async def _run_asgi(application: Any, scope: dict[str, Any], body: bytes) -> AsyncIterator[Message]:
    """Call an ASGI application with a body already read; yield what it sends. When the caller stops reading (the
    client left), the application's next ``receive()`` says ``http.disconnect``."""
    queue: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await queue.put(message)

    task = asyncio.ensure_future(application(dict(scope), receive, send))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (message := await queue.get()) is not None:
            yield message
        task.result()
    finally:
        gone.set()
        if not task.done():
            try:
                await asyncio.wait_for(task, timeout=10)
            except (asyncio.TimeoutError, Exception):
                task.cancel()


# -- the router -----------------------------------------------------------------------------------------------
@serve.ingress()
class AigcRouter:
    """The HTTP ingress: reads a request, finds the model it names, forwards it to a model replica."""

    def __init__(self, models: Any, adapter_cards: list[dict[str, Any]], max_body: int) -> None:
        self._models = models
        self._cards = adapter_cards
        self._adapters = {card["id"] for card in adapter_cards}
        self._max_body = max_body

    def __serve_build_asgi_app__(self) -> Any:
        return _ASGI(self)

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        # 1. The body, within the server's limit.
        body = await _read_body(receive, self._max_body)
        if body is None:
            for message in _json_messages(413, _error(f"the request body is larger than this server's limit of "
                                                      f"{self._max_body} bytes", "invalid_request_error",
                                                      "request_too_large")):
                await send(message)
            return
        name = await self._adapter_name(scope, body)
        forwarded = {k: scope[k] for k in _SCOPE_KEYS if k in scope}
        # 2. The model replica, through a streaming handle (multiplexed for an adapter).
        handle = self._models.options(stream=True, **({"multiplexed_model_id": name} if name else {}))
        stream = handle.forward.remote(forwarded, body)
        listing = scope["method"] == "GET" and scope["path"].rstrip("/") == "/v1/models" and bool(self._cards)
        watcher = asyncio.ensure_future(_disconnected(receive))
        watcher.add_done_callback(lambda w: None if w.cancelled() else stream.cancel())
        try:
            if listing:
                messages = [message async for message in stream]
                for message in self._with_adapters(messages):
                    await send(message)
            else:
                async for message in stream:
                    await send(message)
        except asyncio.CancelledError:
            if not watcher.done():
                raise
        finally:
            watcher.cancel()

    async def _adapter_name(self, scope: dict[str, Any], body: bytes) -> str | None:
        """The adapter a request names, if it names one."""
        if not self._adapters:
            return None
        path: str = scope["path"]
        name: Any = None
        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/"):]
        else:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            kind = headers.get("content-type", "")
            if kind.startswith("multipart/form-data"):
                name = await _form_field(scope, body, "model")
            elif body[:1] == b"{":
                try:
                    name = json.loads(body).get("model")
                except (ValueError, AttributeError):
                    name = None
        return name if isinstance(name, str) and name in self._adapters else None

    def _with_adapters(self, messages: list[Message]) -> list[Message]:
        """``GET /v1/models``: the replica's answer, with the adapters appended when it is a 200."""
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is None or start["status"] != 200:
            return messages
        raw = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        data = json.loads(raw)
        data["data"] = [*data["data"], *self._cards]
        return _json_messages(200, data)


class _ASGI:
    """The router as an ASGI application object (uvicorn takes a bound method for an ASGI 2 application)."""

    def __init__(self, router: AigcRouter) -> None:
        self.router = router

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.router.asgi(scope, receive, send)


def _error(message: str, kind: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _json_messages(status: int, data: Any) -> list[Message]:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body, "more_body": False}]


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, or ``None`` once it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _disconnected(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _form_field(scope: dict[str, Any], body: bytes, field: str) -> Any:
    """One field of a multipart form (the images edits endpoint names its model there)."""
    from starlette.requests import Request

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request({**scope, "type": "http"}, receive).form(max_files=4, max_fields=64)
    except Exception:  # a malformed form: the replica's application answers it properly
        return None
    value = form.get(field)
    await form.close()
    return value


def run(models: Sequence[ModelSpec] | None = None, *, config: ServeConfig | None = None, address: str | None = None,
        name: str = "aigc", **deployment_options: Any) -> None:
    """See :func:`aigc.ray.run`."""
    import difflib

    import ray

    for key, value in deployment_options.items():
        if key not in _DEPLOYMENT_DEFAULTS:
            close = difflib.get_close_matches(key, list(_DEPLOYMENT_DEFAULTS), n=1)
            raise InvalidRequest(key, value, "not an option of aigc.ray.deployment",
                                 f"did you mean {close[0]!r}?" if close else f"use {sorted(_DEPLOYMENT_DEFAULTS)}")
    config = config or ServeConfig()
    application = build_deployment(models, config=config, **{**_DEPLOYMENT_DEFAULTS, **deployment_options})
    ray.init(address=address, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(application, name=name, route_prefix="/")
        logger.warning("aigc serve on Ray: http://%s:%d/v1 (Ctrl-C stops it)", config.host, config.port)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.warning("aigc serve on Ray: stopping")
    finally:
        serve.delete(name)
        ray.shutdown()


_DEPLOYMENT_DEFAULTS: dict[str, Any] = {"adapters": None, "base": None, "adapter_option": None,
                                        "max_adapters_per_replica": 4, "num_replicas": None,
                                        "max_ongoing_requests": None, "autoscaling_config": None,
                                        "ray_actor_options": None, "router_replicas": 1}
