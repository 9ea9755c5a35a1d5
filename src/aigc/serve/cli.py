"""The ``aigc serve`` command.

    aigc serve                                  # the embedded default model of every modality
    aigc serve --model text=path/to/gpt2 --model image=default --port 8080
    aigc serve path/to/gpt2-dir                 # a directory alone: its modality is found from its files
    aigc serve --config serve.toml              # [server], [limits], [[models]] (see aigc.serve.load_config)

Flags given on the command line override the config file. The API key comes from ``--api-key`` or the
``AIGC_API_KEY`` environment variable; without one every client is accepted (the server binds 127.0.0.1 unless
``--host`` says otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any

from aigc.errors import InvalidRequest

__all__ = ["add_serve_parser", "run_serve"]

# flag -> (ServeConfig field, type, help)
_SERVER_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--host", "host", str, "address to bind (default 127.0.0.1: this machine only)"),
    ("--port", "port", int, "TCP port (default 8000; 0 picks a free one)"),
    ("--max-queue", "max_queue", int, "requests waiting per model before 429 (default 64)"),
    ("--max-concurrent", "max_concurrent", int, "requests running at once per model (default 64)"),
    ("--max-batch-rows", "max_batch_rows", int, "text rows decoding at once per model (default: the model's "
     "max_batch_size)"),
    ("--timeout", "timeout_s", float, "seconds a request may take, queue included (default 600)"),
    ("--batch-window-ms", "batch_window_ms", float, "image/audio/video: how long a request waits for others to "
     "batch with (default 10; 0 turns it off)"),
    ("--max-batch-samples", "max_batch_samples", int, "image/audio/video: samples per batched call (default 16)"),
    ("--video-retention", "video_retention_s", float, "seconds finished videos stay downloadable (default 3600)"),
]


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` command to an ``add_subparsers()`` object.

    Example:
        >>> parser = argparse.ArgumentParser(prog="aigc")
        >>> add_serve_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
        ArgumentParser(prog='aigc serve', ...)
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="an OpenAI-compatible HTTP server for every modality",
        description="Serve models over the OpenAI API (chat, completions, images, speech, videos). "
                    "Needs pip install 'aigc[serve]'.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="MODALITY=MODEL[,id=NAME,backend=B,device=D,dtype=T,OPTION=VALUE...] or a model directory; "
                        "none: the embedded default model of every modality")
    p.add_argument("--model", "-m", action="append", default=[], dest="model_flags", metavar="SPEC",
                   help="as MODEL (repeatable)")
    p.add_argument("--config", help="a TOML file with [server], [limits] and [[models]] tables")
    p.add_argument("--device", default=None, help="device for models that name none (default auto)")
    p.add_argument("--dtype", default=None, help="dtype for models that name none (default auto)")
    p.add_argument("--api-key", default=None, help="clients must send 'Authorization: Bearer KEY' (default: "
                   "$AIGC_API_KEY; none: no authentication)")
    p.add_argument("--cors-origin", action="append", default=None, dest="cors_origins", metavar="ORIGIN",
                   help="allow browser requests from ORIGIN (repeatable; default: CORS off)")
    for flag, dest, typ, help_text in _SERVER_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_text)
    for f in _limit_fields():
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default), default=None, metavar="N",
                       help=f"{f.metadata['help']} (default {f.default})")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice; 1 is often fastest on a busy machine)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="log level (access lines are info)")
    return p


def _limit_fields() -> tuple[dataclasses.Field[Any], ...]:
    from aigc.serve._config import ServeLimits  # every limit is a flag: --max-tokens sets max_tokens

    return dataclasses.fields(ServeLimits)


def serve_settings(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The :class:`~aigc.serve.ServeConfig` and model specs the arguments describe (config file first, then
    flags)."""
    from aigc._types import MODALITIES
    from aigc.serve import ModelSpec, ServeConfig, load_config, parse_model_spec

    config, models = load_config(args.config) if args.config else (ServeConfig(), [])
    server = {dest: getattr(args, dest) for _, dest, _, _ in _SERVER_FLAGS if getattr(args, dest) is not None}
    limits = {f.name: getattr(args, f.name) for f in _limit_fields() if getattr(args, f.name) is not None}
    key = args.api_key if args.api_key is not None else os.environ.get("AIGC_API_KEY") or None
    if key is not None:
        server["api_key"] = key
    if args.cors_origins:
        server["cors_origins"] = tuple(args.cors_origins)
    if limits:
        server["limits"] = dataclasses.replace(config.limits, **limits)
    config = dataclasses.replace(config, **server)
    device, dtype = args.device or "auto", args.dtype or "auto"
    specs = [parse_model_spec(text, device=device, dtype=dtype) for text in [*args.models, *args.model_flags]]
    if specs:  # the command line's models replace the file's
        models = specs
    elif not models:
        models = [ModelSpec(modality=m, device=device, dtype=dtype) for m in MODALITIES]
    elif args.device or args.dtype:
        models = [dataclasses.replace(m, device=args.device or m.device, dtype=args.dtype or m.dtype)
                  for m in models]
    return config, models


def run_serve(args: argparse.Namespace) -> int:
    """Run the ``serve`` command (blocks until interrupted)."""
    from aigc.serve import run

    config, models = serve_settings(args)
    level = getattr(logging, str(args.log_level).upper())
    logging.getLogger("aigc").setLevel(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("aigc.serve", "aigc.serve.access"):
        logging.getLogger(name).setLevel(level)
    if args.port is not None and not 0 <= args.port <= 65535:
        raise InvalidRequest("--port", args.port, "not a TCP port", "pass --port 8000")
    if args.threads is not None:
        if args.threads < 1:
            raise InvalidRequest("--threads", args.threads, "must be >= 1", "pass --threads 1")
        import torch

        torch.set_num_threads(args.threads)
    run(models, config=config, log_level=args.log_level)
    return 0
