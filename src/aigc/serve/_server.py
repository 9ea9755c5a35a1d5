"""Running the application with uvicorn: in the foreground (:func:`run`, the CLI) or on a background thread
(:func:`start`, for notebooks, tests and benchmarks)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aigc._generator import Generator
from aigc.errors import AigcError, BackendUnavailable
from aigc.serve._config import ModelSpec, ServeConfig

__all__ = ["RunningServer", "run", "start"]

logger = logging.getLogger("aigc.serve")

Models = Sequence[ModelSpec] | Mapping[str, Generator[Any, Any] | ModelSpec] | None


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise BackendUnavailable("aigc serve needs uvicorn and starlette", extra="serve") from None
    return uvicorn


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise AigcError(f"cannot listen on {host}:{port}: {e.strerror}. Fix: pick another --port (0 picks a free "
                        "one) or stop what uses it") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _warn_if_open(config: ServeConfig) -> None:
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        logger.warning("serving on %s without an API key: anyone who can reach this address can use the models. "
                       "Pass --api-key (or set AIGC_API_KEY)", config.host)


class RunningServer:
    """A server running on a background thread; :meth:`stop` (or leaving the ``with`` block) shuts it down.

    Attributes:
        url: the base URL, e.g. ``http://127.0.0.1:53127``; the OpenAI client's ``base_url`` is ``url + "/v1"``.
        app: the ASGI application.
    """

    def __init__(self, app: Any, server: Any, thread: threading.Thread, host: str, port: int) -> None:
        self.app = app
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"

    @property
    def base_url(self) -> str:
        """The URL to give the official client: ``openai.OpenAI(base_url=server.base_url, api_key=...)``."""
        return self.url + "/v1"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting requests, finish the shutdown (models closed) and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningServer {self.url}>"


def start(models: Models = None, *, config: ServeConfig | None = None, app: Any = None) -> RunningServer:
    """Serve on a background thread and return once the server accepts connections.

    Args:
        models: as :func:`aigc.serve.app` (ignored when ``app`` is given).
        config: host, port (0 picks a free port), limits, ...
        app: an application made by :func:`aigc.serve.app`, to serve instead of making one.

    Example:
        >>> with aigc.serve.start(config=aigc.serve.ServeConfig(port=0)) as server:  # doctest: +SKIP
        ...     client = openai.OpenAI(base_url=server.base_url, api_key="none")
    """
    uvicorn = _uvicorn()
    from aigc.serve import app as make_app

    config = config or ServeConfig()
    _warn_if_open(config)
    application = app if app is not None else make_app(models, config=config)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, http="h11", ws="none", loop="asyncio", lifespan="on",
                                           access_log=False, log_config=None, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"aigc-serve-http-{port}",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise AigcError(f"the server on {config.host}:{port} did not start. Fix: see the log above")
        time.sleep(0.01)
    return RunningServer(application, server, thread, config.host, port)


def run(models: Models = None, *, config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Serve in the foreground until interrupted (what ``aigc serve`` runs); Ctrl-C shuts down gracefully
    (requests in flight get ``timeout_graceful_shutdown`` = 10 s) and returns.

    Example:
        >>> aigc.serve.run([aigc.serve.ModelSpec(modality="text")])  # doctest: +SKIP
    """
    uvicorn = _uvicorn()
    from aigc.serve import app as make_app

    config = config or ServeConfig()
    _warn_if_open(config)
    application = make_app(models, config=config)
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    logger.info("aigc serve: http://%s:%d/v1 (%s)", host, port,
                ", ".join(f"{m.id}: {m.modality}/{m.generator.backend_name}"
                          for m in application.state.aigc.models.values()))
    server = uvicorn.Server(uvicorn.Config(application, http="h11", ws="none", loop="asyncio", lifespan="on",
                                           access_log=False, log_config=None, log_level=log_level,
                                           timeout_graceful_shutdown=10))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once the shutdown is complete
        logger.info("aigc serve: stopped")
    finally:
        sock.close()
