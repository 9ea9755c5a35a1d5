"""The middleware every request passes: the body size limit (413), the API key (401, compared in constant time) and
one access-log line (with the metrics of finished requests), as one pure ASGI middleware so streaming is
untouched."""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aigc.serve._errors import APIError
from aigc.serve._metrics import Metrics

__all__ = ["LOG_KEY", "BodyTooLarge", "Guard", "error_response", "too_large"]

access_logger = logging.getLogger("aigc.serve.access")

LOG_KEY = "aigc.log"  # scope key: what a route tells the access log


class BodyTooLarge(Exception):
    pass


class Guard:
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
        scope[LOG_KEY] = log
        status = [0]

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            error = self._check(scope)
            if error is not None:
                await error_response(error)(scope, receive, logged_send)
                return
            seen = [0]

            async def limited_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        raise BodyTooLarge()
                return message

            try:
                await self.app(scope, limited_receive, logged_send)
            except BodyTooLarge:
                if status[0] == 0:
                    await error_response(too_large(self.max_body))(scope, receive, logged_send)
        finally:
            self._access(scope, status[0], time.monotonic() - started, log)

    def _check(self, scope: Scope) -> APIError | None:
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return too_large(self.max_body)
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


def too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than this server's limit of {limit} bytes. Fix: send "
                    "smaller images or prompts (limits.max_body_bytes)", code="request_too_large")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
