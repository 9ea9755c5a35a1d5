"""Errors in the OpenAI API's shape: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status the
official client maps to its own exception types (400 ``BadRequestError``, 401 ``AuthenticationError``, 404
``NotFoundError``, 429 ``RateLimitError``, 5xx ``InternalServerError``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aigc.errors import AigcError, BackendUnavailable, InvalidRequest, ModelNotFound, OutOfMemory

__all__ = ["APIError", "from_aigc_error"]


class APIError(Exception):
    """An error answered to the client in OpenAI's error shape.

    Args:
        status: the HTTP status.
        message: what went wrong and how to fix it.
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``, ``rate_limit_error``,
            ``server_error``, ...).
        param: the request field at fault, when there is one.
        code: a machine-readable code (``model_not_found``, ``invalid_api_key``, ...).
        headers: extra response headers (``Retry-After``).

    Example:
        >>> APIError(400, "n=99: too many samples", param="n").body()["error"]["param"]
        'n'
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str, value: object, problem: str, fix: str) -> APIError:
    """A 400 naming ``param``, worded like :class:`aigc.errors.InvalidRequest`."""
    return from_aigc_error(InvalidRequest(param, value, problem, fix))


def from_aigc_error(error: AigcError, *, rename: Mapping[str, str] | None = None) -> APIError:
    """The answer to an :class:`~aigc.errors.AigcError` raised while serving a request.

    ``rename`` maps aigc's field names to the request's (``max_new_tokens`` -> ``max_tokens``); an indexed field
    (``prompt[0]``) is renamed by its base name.
    """
    if isinstance(error, InvalidRequest):
        base = re.sub(r"\[.*$", "", error.field)
        param = (rename or {}).get(base, error.field)
        message = str(error)
        if param != error.field:
            message = f"{param}: {message}"
        return APIError(400, message, param=param, code="invalid_value")
    if isinstance(error, ModelNotFound):
        return APIError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, BackendUnavailable):
        return APIError(501, str(error), type="server_error", code="not_installed")
    if isinstance(error, OutOfMemory):
        return APIError(503, str(error), type="server_error", code="out_of_memory", headers={"Retry-After": "5"})
    return APIError(500, f"{type(error).__name__}: {error}", type="server_error", code="generation_failed")
