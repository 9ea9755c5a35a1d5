"""The command line's Ray parts: ``aigc batch`` and the ``--ray`` flags of ``aigc serve``.

``aigc._cli`` adds these to its parser and calls :func:`run_batch` and :func:`run_serve`; nothing here imports Ray
until a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from aigc.errors import InvalidRequest

__all__ = ["add_batch_parser", "add_ray_serve_flags", "run_batch", "run_serve"]

_RAY_SERVE_FLAGS = ("ray_address", "replicas", "max_ongoing_requests", "autoscaling", "adapter", "adapter_base",
                    "num_gpus", "num_cpus")


def add_batch_parser(subparsers: Any, param_flags: Sequence[tuple[str, str, Any, str]]) -> argparse.ArgumentParser:
    """Add the ``batch`` command; ``param_flags`` are the request flags ``aigc generate`` has (flag, dest, type,
    help), without ``--seed``.

    Example:
        >>> parser = argparse.ArgumentParser(prog="aigc")
        >>> add_batch_parser(parser.add_subparsers(dest="command"), [])  # doctest: +ELLIPSIS
        ArgumentParser(prog='aigc batch', ...)
    """
    bat: argparse.ArgumentParser = subparsers.add_parser(
        "batch", help="generate one output per row of a JSONL/Parquet/CSV file on Ray",
        description="Generate one file per row of INPUT (rows need a 'prompt'; optional 'id', 'seed' and request "
                    "fields as columns) with Ray Data. A row's seed is SEED + its index in the file (or derived "
                    "from its 'id'), whatever the partitioning; rows whose file exists are skipped, so a rerun "
                    "resumes. Needs pip install 'aigc[ray]'.")
    bat.add_argument("modality", choices=["text", "image", "audio", "video"])
    bat.add_argument("input", help="a .jsonl, .parquet or .csv file")
    bat.add_argument("-o", "--output", required=True, help="the folder for the outputs (<id>.<format>)")
    bat.add_argument("--model", "-m", help="model directory or built-in name (default: embedded model)")
    bat.add_argument("--backend", "-b", help="backend name (default: inferred)")
    bat.add_argument("--seed", type=int, required=True, help="the run's seed (a row's: SEED + its index, or its own)")
    for flag, dest, typ, help_text in param_flags:
        bat.add_argument(flag, dest=dest, type=typ, help=help_text)
    bat.add_argument("--stop", action="append", help="text: a stop sequence (repeatable)")
    bat.add_argument("--greedy", action="store_true", help="text: greedy decoding instead of sampling")
    bat.add_argument("--param", action="append", default=[], metavar="KEY=JSON", help="any other request field")
    bat.add_argument("--format", help="output format: json/txt, png/webp/jpg, wav/flac/ogg, mp4/gif/webp")
    bat.add_argument("--id-column", help="the key column (default: 'id' if there is one, else the row index)")
    bat.add_argument("--concurrency", type=int, default=1, help="actors, each loading the model once (default 1)")
    bat.add_argument("--batch-size", type=int, default=16, help="rows per actor call (default 16)")
    bat.add_argument("--num-blocks", type=int, help="blocks to split the file into (default: 4 per actor)")
    bat.add_argument("--num-gpus", type=float, help="GPUs per actor (0.5: two actors share one)")
    bat.add_argument("--num-cpus", type=float, help="CPUs per actor (default 1)")
    bat.add_argument("--batched", action="store_true",
                     help="batch rows with equal parameters through the model (faster on GPUs; equal to single "
                          "runs within tolerance instead of bit-identical)")
    bat.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    bat.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16 (default: auto)")
    bat.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="a backend load option, e.g. --option adapter=\"lora/\"")
    bat.add_argument("--address", help="the Ray cluster to join (default: $RAY_ADDRESS, else a local one)")
    bat.set_defaults(num_outputs=None)  # one sample per row; the shared request-flag reader looks for it
    return bat


def run_batch(args: argparse.Namespace, *, params: Mapping[str, Any], options: Mapping[str, Any]) -> int:
    """Run ``aigc batch`` (``params``: the request flags, read as ``aigc generate`` reads them, with the run's
    ``seed``; ``options``: the ``--option`` load options). Prints one line per failed row and a summary; returns
    1 if a row failed."""
    import aigc.ray

    params = dict(params)
    seed = params.pop("seed")
    result = aigc.ray.generate(args.input, args.modality, seed=seed, model=args.model, output=args.output,
                               format=args.format, id_column=args.id_column, backend=args.backend,
                               device=args.device, dtype=args.dtype, options=options, concurrency=args.concurrency,
                               batch_size=args.batch_size, num_gpus=args.num_gpus, num_cpus=args.num_cpus,
                               num_blocks=args.num_blocks, deterministic=not args.batched, address=args.address,
                               **params)
    key = args.id_column or "id"
    rows = result.select_columns([key, "status", "error"]).take_all()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("generated", "skipped", "failed")}
    for row in sorted((r for r in rows if r["status"] == "failed"), key=lambda r: str(r[key])):
        print(f"aigc: row {row[key]}: {row['error']}", file=sys.stderr)
    print(f"{len(rows)} rows: {counts['generated']} generated, {counts['skipped']} already there, "
          f"{counts['failed']} failed; outputs in {args.output}")
    return 1 if counts["failed"] else 0


def add_ray_serve_flags(serve_parser: argparse.ArgumentParser) -> None:
    """Add ``--ray`` and the Ray Serve settings to the ``serve`` command's parser."""
    ray = serve_parser.add_argument_group("Ray Serve (--ray; needs pip install 'aigc[ray]')")
    ray.add_argument("--ray", action="store_true", help="serve on Ray Serve: replicas, autoscaling, adapters")
    ray.add_argument("--ray-address", help="the Ray cluster to join (default: a local one)")
    ray.add_argument("--replicas", type=int, help="model replicas (default 1)")
    ray.add_argument("--max-ongoing-requests", type=int, help="requests a replica takes at once "
                     "(default: --max-concurrent)")
    ray.add_argument("--autoscaling", metavar="JSON", help="Ray Serve autoscaling settings, e.g. "
                     "'{\"min_replicas\": 1, \"max_replicas\": 4}'")
    ray.add_argument("--adapter", action="append", default=[], metavar="NAME=DIR",
                     help="serve a LoRA adapter as model NAME on the base model (repeatable)")
    ray.add_argument("--adapter-base", help="the served model the adapters apply to (default: the only one)")
    ray.add_argument("--max-adapters", type=int, default=4, help="adapters a replica keeps loaded (default 4)")
    ray.add_argument("--num-gpus", type=float, help="GPUs per replica")
    ray.add_argument("--num-cpus", type=float, help="CPUs per replica")


def run_serve(args: argparse.Namespace) -> int:
    """Run ``aigc serve``: on Ray Serve with ``--ray``, else the plain server (``aigc.serve.cli.run_serve``).

    Raises:
        InvalidRequest: a Ray Serve flag without ``--ray``; ``--threads`` with it; a malformed flag.
    """
    from aigc.serve.cli import run_serve as run_plain
    from aigc.serve.cli import serve_settings

    if not args.ray:
        for name in _RAY_SERVE_FLAGS:
            if getattr(args, name):
                raise InvalidRequest(f"--{name.replace('_', '-')}", getattr(args, name), "a Ray Serve setting",
                                     "add --ray, or leave it out")
        return run_plain(args)
    if args.threads is not None:
        raise InvalidRequest("--threads", args.threads, "a replica on Ray uses the CPUs Ray gives it",
                             "pass --num-cpus N instead")
    autoscaling = None
    if args.autoscaling:
        try:
            autoscaling = json.loads(args.autoscaling)
        except ValueError:
            autoscaling = None
        if not isinstance(autoscaling, dict):
            raise InvalidRequest("--autoscaling", args.autoscaling, "not a JSON object",
                                 'write e.g. --autoscaling \'{"min_replicas": 1, "max_replicas": 4}\'')
    adapters: dict[str, str] = {}
    for item in args.adapter:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise InvalidRequest("--adapter", item, "expected NAME=DIR", "write e.g. --adapter poet=loras/poet")
        adapters[name] = folder
    config, models = serve_settings(args)
    actor = {k: v for k, v in (("num_gpus", args.num_gpus), ("num_cpus", args.num_cpus)) if v is not None}
    logging.getLogger("aigc").setLevel(getattr(logging, str(args.log_level).upper()))
    import aigc.ray

    aigc.ray.run(models, config=config, address=args.ray_address, adapters=adapters or None,
                 base=args.adapter_base, max_adapters_per_replica=args.max_adapters, num_replicas=args.replicas,
                 max_ongoing_requests=args.max_ongoing_requests, autoscaling_config=autoscaling,
                 ray_actor_options=actor or None)
    return 0
