"""``aigc serve``: an OpenAI-compatible HTTP server for every modality (``pip install 'aigc[serve]'``).

The official ``openai`` client works unchanged against it:

- ``GET /v1/models``; ``POST /v1/completions`` and ``/v1/chat/completions`` (streaming too) with continuous
  batching -- requests join the running batch between decoding steps and leave when done, each with its own
  seed, so a request's output does not depend on what runs beside it;
- ``POST /v1/images/generations`` and ``/v1/images/edits``, ``POST /v1/audio/speech``, and the videos API
  (``POST /v1/videos``, then ``GET /v1/videos/{id}`` and ``/content``), batched dynamically within
  ``batch_window_ms``;
- a bounded queue per model (429 with ``Retry-After``), timeouts, cancellation when the client disconnects,
  an API key compared in constant time, request size limits, ``/health``, ``/metrics`` (Prometheus) and one
  access-log line per request;
- every response carries its provenance record (the ``aigc_record`` field, and inside every media file), so a
  served output replays locally with :func:`aigc.replay`.

Importing this module imports neither Starlette nor uvicorn; :func:`app`, :func:`start` and :func:`run` do.

Example:
    >>> import aigc, openai
    >>> with aigc.serve.start(config=aigc.serve.ServeConfig(port=0)) as server:     # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    ...     client.chat.completions.create(model="text-default", seed=1,
    ...                                    messages=[{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aigc._generator import Generator
from aigc.errors import BackendUnavailable
from aigc.serve._config import ModelSpec, ServeConfig, ServeLimits, load_config, parse_model_spec
from aigc.serve._server import RunningServer, run, start

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ModelSpec", "RunningServer", "ServeConfig", "ServeLimits", "app", "load_config", "parse_model_spec",
           "run", "start"]


def app(models: Sequence[ModelSpec] | Mapping[str, Generator[Any, Any] | ModelSpec] | None = None, *,
        config: ServeConfig | None = None) -> Starlette:
    """The ASGI application (Starlette) serving ``models``; run it with any ASGI server.

    Args:
        models: what to serve: ``None`` for the embedded default model of every modality (served as
            ``text-default``, ``image-default``, ``audio-default``, ``video-default``); a list of
            :class:`ModelSpec`; or a mapping from served name to a :class:`ModelSpec` or an already loaded
            :class:`aigc.Generator` (which the server uses but does not close).
        config: the server's settings and limits (:class:`ServeConfig`).

    Returns:
        The application; its model threads are running. ``app.state.close()`` stops them (the ASGI lifespan
        shutdown does it too).

    Raises:
        BackendUnavailable: Starlette or uvicorn are not installed (``pip install 'aigc[serve]'``).
        ModelNotFound, InvalidRequest: a model that cannot be loaded, a bad setting.

    Example:
        >>> spec = aigc.serve.ModelSpec(modality="text", model="path/to/gpt2")
        >>> application = aigc.serve.app([spec])  # doctest: +SKIP
        >>> uvicorn.run(application, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    try:
        from aigc.serve._app import build_app
    except ImportError as e:
        raise BackendUnavailable(f"aigc serve needs starlette and uvicorn ({e.name} is missing)", extra="serve") \
            from None
    return build_app(models, config=config)
