"""The web application of a study (Starlette), and running it with uvicorn.

Routes::

    GET  /                      the page (static HTML; everything shown is set with textContent, never as HTML)
    GET  /static/{app.js,app.css}
    GET  /api/next?rater=NAME   the rater's next comparison and progress
    POST /api/vote              {"rater", "task", "choice", "elapsed_ms"} -> stored, then the next comparison
    POST /api/undo              {"rater"} -> the rater's newest vote deleted; that comparison is shown again
    GET  /media/{task}/{side}?rater=NAME
                                the file on that side for that rater; only files of the study's tasks, inside
                                the folders given, are ever served (a video saved as a folder of PNG frames
                                is sent as an animated GIF made from its frames)

The page never learns which system is which: it gets a task id, the prompt and two outputs by side. Defences, as
the server holds files and takes votes on a local port: a Content-Security-Policy allowing only its own scripts and
media, ``nosniff``, a Host check (no DNS rebinding), JSON-only POSTs (a foreign page cannot post one without a CORS
preflight, which is never granted).
"""

from __future__ import annotations

import functools
import logging
import mimetypes
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aigc.errors import AigcError, BackendUnavailable, InvalidRequest
from aigc.evaluate.human._items import read_text_output
from aigc.evaluate.human._study import Study, check_rater

__all__ = ["bind", "build_app", "serve_forever"]

logger = logging.getLogger("aigc.evaluate.human")

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_MEDIA_TYPES = {".flac": "audio/flac", ".wav": "audio/wav", ".ogg": "audio/ogg", ".webp": "image/webp",
                ".mp4": "video/mp4", ".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg",
                ".jpeg": "image/jpeg"}


def _static(name: str) -> str:
    return resources.files("aigc.evaluate.human").joinpath("static").joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=32)
def _frames_gif(folder: Path, mtime_ns: int) -> bytes:
    """An animated GIF of a saved clip folder's frames, at the frame rate stored with them (``mtime_ns`` keys the
    cache: saving a clip replaces its whole folder)."""
    from aigc._media.video import gif_bytes, load_video

    return gif_bytes(*load_video(folder))


def build_app(study: Study, *, host: str = "127.0.0.1") -> Any:
    """The Starlette application serving ``study``.

    Args:
        study: from :func:`aigc.evaluate.human.open_study`.
        host: the address served on; a loopback address also restricts the ``Host`` header to loopback names.

    Raises:
        BackendUnavailable: Starlette is not installed (``pip install 'aigc[serve]'``).

    Example:
        >>> from starlette.testclient import TestClient  # doctest: +SKIP
        >>> TestClient(build_app(study)).get("/api/next", params={"rater": "alice"}).json()  # doctest: +SKIP
    """
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise BackendUnavailable("aigc eval human needs starlette and uvicorn", extra="serve") from None

    pages = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
    texts = {name: _static(name) for name in pages}
    security = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store"}

    def error(e: InvalidRequest, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(e), "field": e.field}, status_code=status, headers=security)

    def next_payload(rater: str) -> dict[str, Any]:
        task_id, done, total = study.progress(rater)
        payload: dict[str, Any] = {"question": study.question, "rater": rater, "done": done, "total": total,
                                   "task": task_id}
        if task_id is None:
            return payload
        shown = study.shown(rater, task_id)
        payload["prompt"] = shown.task.prompt
        for side in ("left", "right"):
            kind = shown.kind(side)
            out: dict[str, Any] = {"kind": "image" if kind == "frames" else kind}  # frames: an animated GIF
            if kind == "text":
                out["text"] = read_text_output(study.media(rater, task_id, side))
            else:
                out["url"] = f"/media/{task_id}/{side}?rater={quote(rater, safe='')}"
            payload[side] = out
        return payload

    async def index(request: Request) -> Response:
        return Response(texts["index.html"], media_type="text/html; charset=utf-8", headers=security)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in pages or name == "index.html":
            return JSONResponse({"error": "not found"}, status_code=404, headers=security)
        return Response(texts[name], media_type=f"{pages[name]}; charset=utf-8", headers=security)

    def api_next(request: Request) -> Response:
        try:
            rater = check_rater(request.query_params.get("rater", ""))
            return JSONResponse(next_payload(rater), headers=security)
        except InvalidRequest as e:
            return error(e)

    async def json_object(request: Request) -> dict[str, Any] | Response:
        """The POST body as a JSON object, or the error response (JSON only: no CORS-free form posts)."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the body as application/json"}, status_code=415, headers=security)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400, headers=security)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body is not a JSON object"}, status_code=400, headers=security)
        return body

    def cast_vote(body: dict[str, Any]) -> dict[str, Any]:
        rater = check_rater(body.get("rater"))
        task = body.get("task")
        if isinstance(task, bool) or not isinstance(task, int):
            raise InvalidRequest("task", task, "not a comparison id", "reload the page")
        elapsed = body.get("elapsed_ms")
        elapsed_ms = int(elapsed) if isinstance(elapsed, (int, float)) and 0 <= elapsed < 2**31 else None
        choice = body.get("choice")
        if not isinstance(choice, str):
            raise InvalidRequest("choice", choice, "not a string", "pass left, right, tie or both_bad")
        study.vote(rater, task, choice, elapsed_ms)  # returns only once the vote is on disk
        return {**next_payload(rater), "recorded": True}

    def take_back(body: dict[str, Any]) -> dict[str, Any]:
        rater = check_rater(body.get("rater"))
        undone = study.undo(rater)  # durable when it returns
        return {**next_payload(rater), "undone": undone}

    def posting(action: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        """A POST route: the JSON body to ``action`` off the event loop (it waits on the database), its payload
        back, or the error naming the field."""
        async def route(request: Request) -> Response:
            body = await json_object(request)
            if isinstance(body, Response):
                return body
            from starlette.concurrency import run_in_threadpool

            try:
                return JSONResponse(await run_in_threadpool(action, body), headers=security)
            except InvalidRequest as e:
                return error(e)

        return route

    def media(request: Request) -> Response:
        try:
            rater = check_rater(request.query_params.get("rater", ""))
            task = request.path_params["task"]
            path = study.media(rater, task, request.path_params["side"])
        except InvalidRequest as e:
            return error(e, 404)
        if path.is_dir():  # a frame folder
            gif = _frames_gif(path, path.stat().st_mtime_ns)
            return Response(gif, media_type="image/gif", headers={**security, "Cache-Control": "private, max-age=3600"})
        kind = _MEDIA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {**security, "Cache-Control": "private, max-age=3600"}
        return FileResponse(path, media_type=kind, headers=headers)

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/next", api_next),
        Route("/api/vote", posting(cast_vote), methods=["POST"]),
        Route("/api/undo", posting(take_back), methods=["POST"]),
        Route("/media/{task:int}/{side}", media),
    ]
    allowed = [*_LOOPBACK, host] if host in _LOOPBACK else ["*"]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed)]
    return Starlette(routes=routes, middleware=middleware)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 picks a free port).

    Raises:
        InvalidRequest: the port is in use or cannot be bound, naming ``--port`` and the fix.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidRequest("--port", port, "not a port number", "pass 0 to 65535 (0 picks a free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InvalidRequest("--port", port, f"cannot listen on {host}:{port} ({e.strerror or e})",
                             "pick another --port (0 picks a free one) or stop what uses it") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve_forever(study: Study, sock: socket.socket, *, host: str, log_level: str = "warning") -> None:
    """Serve ``study`` on the bound socket until interrupted (Ctrl-C stops it and closes the database)."""
    try:
        import uvicorn
    except ImportError:
        raise BackendUnavailable("aigc eval human needs starlette and uvicorn", extra="serve") from None
    if host not in _LOOPBACK:
        logger.warning("serving on %s: anyone who can reach this address can see the outputs and vote", host)
    app = build_app(study, host=host)
    server = uvicorn.Server(uvicorn.Config(app, http="h11", ws="none", loop="asyncio", lifespan="off",
                                           access_log=False, log_config=None, log_level=log_level))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        study.store.close()
    if not server.started:
        raise AigcError("the human-evaluation server did not start. Fix: see the log above")
