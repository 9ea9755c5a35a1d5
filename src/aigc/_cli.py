"""The ``aigc`` command line: a thin layer over the public API.

    aigc generate text "Once upon a time" --model DIR --seed 1 -n 2 --max-new-tokens 40
    aigc generate image "an ankle boot" --seed 7 -o boot.png
    aigc backends
    aigc info
    aigc replay boot.png -o again.png
    aigc verify boot-shared.jpg
    aigc credentials init my-credentials
    aigc eval bleu --hyp hyp.txt --ref ref.txt
    aigc train finetune-text MODEL DATA -o OUT
    aigc train finetune-image MODEL DATA -o OUT
    aigc serve --model text=DIR --port 8000
    aigc serve --ray --model text=DIR --adapter poet=LORA_DIR --replicas 2
    aigc batch image prompts.jsonl -o out/ --seed 0 --concurrency 2 --steps 20

Errors print one line (``aigc: error: ...``) and exit with status 1; bad usage exits with 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import aigc
from aigc.errors import AigcError, InvalidRequest

__all__ = ["main"]



class _Parser(argparse.ArgumentParser):
    """argparse with the fixes a first-time user needs: an unknown option gets its closest match and the usage
    of the command it was given to (not the top-level one), a bad choice its closest match."""

    def error(self, message: str) -> NoReturn:
        match = re.match(r"argument (\S+): invalid choice: '([^']*)'", message)
        if match:
            choices = re.findall(r"'([^']*)'", message.split("choose from", 1)[-1])
            close = difflib.get_close_matches(match.group(2), choices, n=1)
            if close:
                message = f"argument {match.group(1)}: invalid choice: {match.group(2)!r} (did you mean {close[0]!r}?)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unknown(self, extras: list[str]) -> NoReturn:
        """Refuse options this command does not take, naming the closest one it does."""
        known = sorted({o for a in self._actions for o in a.option_strings if o.startswith("--")})
        hints = []
        for item in extras:
            name = item.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=1) if name.startswith("-") else []
            hints += [f"{name}: did you mean {close[0]}?"] if close else []
        self.error(f"unrecognized arguments: {' '.join(extras)}" + ("" if not hints else f" ({'; '.join(hints)})"))


def _subparser(args: argparse.Namespace, parser: argparse.ArgumentParser) -> _Parser:
    """The parser of the command ``args`` ran (for its usage and options)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(getattr(args, "command", None) or "")
            if isinstance(found, _Parser):
                sub = getattr(args, "train_command", None) or getattr(args, "eval_command", None)
                for inner in found._actions:
                    if isinstance(inner, argparse._SubParsersAction) and sub in inner.choices:
                        nested = inner.choices[sub]
                        return nested if isinstance(nested, _Parser) else found
                return found
    assert isinstance(parser, _Parser)
    return parser

# CLI flag -> request field; a flag left out is not sent, so each backend keeps its own defaults.
_PARAM_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--seed", "seed", int, "seed of the first sample (the others get seed+1, seed+2, ...)"),
    ("--max-new-tokens", "max_new_tokens", int, "text: tokens to generate at most"),
    ("--temperature", "temperature", float, "text: sampling temperature"),
    ("--top-k", "top_k", int, "text: keep the k most likely tokens"),
    ("--top-p", "top_p", float, "text: nucleus sampling mass"),
    ("--min-p", "min_p", float, "text: min-p sampling threshold"),
    ("--repetition-penalty", "repetition_penalty", float, "text: > 1 discourages repeats"),
    ("--num-fills", "num_fills", int, "text: masked LMs (BERT), the best fills of the [MASK] to list (default 5)"),
    ("--steps", "steps", int, "image/audio/video: denoising steps"),
    ("--guidance", "guidance", float, "image/audio/video: guidance scale"),
    ("--width", "width", int, "image/video: width in pixels"),
    ("--height", "height", int, "image/video: height in pixels"),
    ("--negative-prompt", "negative_prompt", str, "image/audio/video: what to avoid"),
    ("--scheduler", "scheduler", str, "image: scheduler short name (ddim, euler, ...)"),
    ("--duration", "duration_s", float, "audio: length in seconds"),
    ("--voice", "voice", lambda v: int(v) if v.isdigit() else v, "audio: a voice name, or a speaker index"),
    ("--num-frames", "num_frames", int, "video: frames per clip"),
    ("--fps", "fps", float, "video: frames per second"),
    ("--truncation", "truncation", float, "gan/vae/walk: truncation psi (0 = the class's average)"),
    ("--mix-seed", "mix_seed", int, "gan: style-mixing donor seed"),
    ("--mix-layer", "mix_layer", int, "gan: first layer styled by the donor"),
    ("--keyframes", "keyframes", int, "walk: seeds the latent walk passes through"),
    ("--interpolation", "interpolation", str, "walk: z (spherical) or w (linear, GAN)"),
    ("--init-image", "init_image", str, "image/video: an input image file (image-to-image; cyclegan translates it)"),
    ("--init-video", "init_video", str, "video: an input clip (.mp4/.gif/.webp or a frame folder) that cyclegan "
     "translates frame by frame"),
]


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="aigc", description="Multimodal generation, offline first.")
    parser.add_argument("--version", action="version", version=f"aigc {aigc.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    gen = sub.add_parser("generate", help="generate text, images, audio or video",
                         usage="aigc generate {text,image,audio,video} PROMPT [options]  (see aigc generate -h)")
    gen.add_argument("modality", choices=["text", "image", "audio", "video"])
    gen.add_argument("prompt", help="the prompt")
    gen.add_argument("--model", "-m", help="model directory, hub id or built-in name (default: embedded model)")
    gen.add_argument("--backend", "-b", help="backend name (default: inferred)")
    gen.add_argument("-n", "--num-outputs", dest="num_outputs", type=int, help="samples to generate")
    for flag, dest, typ, help_text in _PARAM_FLAGS:
        gen.add_argument(flag, dest=dest, type=typ, help=help_text)
    gen.add_argument("--stop", action="append", help="text: a stop sequence (repeatable)")
    gen.add_argument("--greedy", action="store_true", help="text: greedy decoding instead of sampling")
    gen.add_argument("--param", action="append", default=[], metavar="KEY=JSON",
                     help="any other request field, e.g. --param strength=0.6")
    gen.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="a backend load option, e.g. --option temporal=false (cyclegan video) or "
                          "--option max_batch_size=8")
    gen.add_argument("--stream", action="store_true", help="text: print tokens as they are generated")
    gen.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    gen.add_argument("--threads", type=int, help=_THREADS_HELP)
    gen.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16 (default: auto)")
    gen.add_argument("-o", "--output", help="where to save (one file per sample); required except for text")
    gen.add_argument("--sample-rate", dest="sample_rate", type=int,
                     help="audio: resample the result to this rate (Hz) before saving")
    gen.add_argument("--loudness", type=float, metavar="LUFS",
                     help="audio: normalise each sample to this integrated loudness, e.g. -23 (EBU R 128)")
    gen.add_argument("--watermark", dest="watermark", action="store_true", default=None,
                     help="watermark wherever it fits (default: where cheap and robust)")
    gen.add_argument("--no-watermark", dest="watermark", action="store_false", help="no invisible watermark")
    gen.add_argument("--credentials", metavar="DIR",
                     help="sign the saved files with a C2PA manifest (a folder made by `aigc credentials init`)")

    ver = sub.add_parser("verify", help="check a file's provenance: metadata record, C2PA manifest, watermark",
                         description="Check a file's provenance. Exit status 0 when aigc's record, a valid C2PA "
                         "manifest or an aigc watermark was found, 3 when none was.")
    ver.add_argument("file")
    ver.add_argument("--json", action="store_true", help="print the result as JSON")
    ver.add_argument("--store", help="the record store to look watermark keys up in (default: $AIGC_RECORD_STORE "
                     "or ~/.local/share/aigc/records)")

    cred = sub.add_parser("credentials", help="C2PA signing credentials")
    cred_sub = cred.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = cred_sub.add_parser("init", help="make a self-signed development key and certificate (not trusted by "
                               "C2PA readers: for trying signing out)")
    init.add_argument("folder")
    init.add_argument("--name", default="aigc development signer", help="the certificate's common name")
    init.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    init.add_argument("--force", action="store_true", help="replace credentials already in the folder")

    sub.add_parser("backends", help="list registered backends").add_argument(
        "--json", action="store_true")
    sub.add_parser("info", help="versions, devices and the model cache").add_argument(
        "--json", action="store_true")

    rep = sub.add_parser("replay", help="regenerate a saved output from its embedded provenance",
                         description="Regenerate a saved output. The file's record is data from a stranger: it "
                         "chooses the request and the model, never how the model loads; the flags below do.")
    rep.add_argument("file")
    rep.add_argument("-o", "--output", help="where to save the regenerated output")
    rep.add_argument("--device", help="where to run (default: the CPU; a file made elsewhere needs it)")
    rep.add_argument("--dtype", help="override the recorded dtype")
    rep.add_argument("--threads", type=int, help=_THREADS_HELP)
    rep.add_argument("--model", help="load this model instead of the recorded one (needed for a hub id)")
    rep.add_argument("--trust-remote-code", action="store_true", default=None,
                     help="let the model's own Python code run (only for a model you trust)")
    rep.add_argument("--allow-pickle", action="store_true", default=None,
                     help="allow pickle weight files, which can run code when loaded")
    rep.add_argument("--offload", choices=["none", "model", "sequential"], help="CPU offload, where supported")
    rep.add_argument("--no-cache", dest="cache", action="store_false", default=None,
                     help="do not keep the model in aigc's model cache")
    rep.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                     help="a backend load option, e.g. --option max_batch_size=8 (allows the record's own)")
    rep.add_argument("--no-strict", dest="strict", action="store_false",
                     help="replay even if the weights are not those that made the file (warns)")

    from aigc.evaluate.cli import add_eval_parser

    add_eval_parser(sub)

    from aigc.train.cli import add_train_parser

    add_train_parser(sub)

    from aigc.ray.cli import add_batch_parser, add_ray_serve_flags
    from aigc.serve.cli import add_serve_parser

    add_ray_serve_flags(add_serve_parser(sub))
    add_batch_parser(sub, _PARAM_FLAGS[1:])  # --seed is the run's there, and required
    _add_verbose(parser)
    return parser


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """Give every command and subcommand ``-v`` (those defined in other modules too), so it works before or after
    the command; a parser that does not see it leaves the other's value (``SUPPRESS``)."""
    if not any("--verbose" in a.option_strings for a in parser._actions):
        parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                            help="log progress and the libraries' own messages")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _add_verbose(child)


def _batch(args: argparse.Namespace) -> int:
    from aigc.ray.cli import run_batch

    return run_batch(args, params=_params(args), options=_key_values("--option", args.option, "adapter=lora/"))


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for _, dest, _, _ in _PARAM_FLAGS:
        value = getattr(args, dest)
        if value is not None:
            params[dest] = value
    if args.num_outputs is not None:
        params["num_outputs"] = args.num_outputs
    if args.stop:
        params["stop"] = args.stop
    if args.greedy:
        params["do_sample"] = False
    if getattr(args, "watermark", None) is not None:  # generate's flag (aigc batch has none)
        params["watermark"] = args.watermark
    params.update(_key_values("--param", args.param, "strength=0.6"))
    return params


def _generate(args: argparse.Namespace) -> int:
    params = _params(args)
    if args.modality != "text" and not args.output:
        raise InvalidRequest("--output", None, f"{args.modality} needs a file to write",
                             f"add -o out{ {'image': '.png', 'audio': '.wav', 'video': '.mp4'}[args.modality]}")
    from aigc._types import REQUEST_TYPES

    request = REQUEST_TYPES[args.modality].from_params(args.prompt, **params)  # bad values fail before loading
    options = _key_values("--option", args.option, "max_batch_size=8", own_flags=("backend", "device", "dtype"))
    _check_audio_flags(args)
    if args.output:
        from aigc._media.outputs import check_output

        check_output(args.modality, args.output, field="--output")  # the format and its package, before any work
    from aigc._api import precheck

    precheck(args.modality, args.model, request, backend=args.backend)
    _cpu_threads(args.threads, args.model, args.device)
    gen = aigc.load(args.modality, args.model, backend=args.backend, device=args.device, dtype=args.dtype,
                    **options)
    defaults = {k: v for k, v in gen.request_defaults.items() if k not in params}  # the model's, for flags left out
    if defaults:
        request = request.replace(**defaults)
    if args.stream:
        for piece in gen.stream(request):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    result = gen.generate(request)
    if isinstance(result, aigc.AudioResult):
        if args.sample_rate is not None:
            result = result.resample(args.sample_rate)
        if args.loudness is not None:
            result = result.normalize(args.loudness)
    if args.output:
        saved = result.save(args.output, credentials=args.credentials)
        for path in saved.all:
            print(path)
    elif isinstance(result, aigc.TextResult):
        for i, (seed, text) in enumerate(zip(result.seeds, result.texts, strict=True)):
            if len(result) > 1:
                print(f"--- sample {i} (seed {seed}) ---")
            fills = result.fills[i] if result.fills else []
            if fills:  # a masked LM's best fills, with their probabilities
                for fill in fills:
                    print(f"{fill.score:.4f}\t{fill.text}")
            else:
                print(text)
    return 0


def _check_audio_flags(args: argparse.Namespace) -> None:
    """--sample-rate and --loudness: audio only, and checked before the model loads."""
    for flag, value in (("--sample-rate", args.sample_rate), ("--loudness", args.loudness)):
        if value is not None and args.modality != "audio":
            raise InvalidRequest(flag, value, f"post-processes audio, not {args.modality}", f"drop {flag}")
    if args.sample_rate is not None and not 0 < args.sample_rate <= 768_000:
        raise InvalidRequest("--sample-rate", args.sample_rate, "not a sample rate", "pass e.g. 44100")
    if args.loudness is not None and not -70.0 <= args.loudness <= 0.0:
        raise InvalidRequest("--loudness", args.loudness, "outside -70..0 LUFS", "pass e.g. -23 or -16")


def _backends(args: argparse.Namespace) -> int:
    infos = aigc.backends()
    if args.json:
        print(json.dumps([b.__dict__ for b in infos], indent=2))
        return 0
    for b in infos:
        line = f"{b.modality:<6} {b.name:<14} {b.source:<16} {b.status}"
        print(line + (f"  ({b.error})" if b.error else ""))
    return 0


_INFO_PACKAGES = ("torch", "torchaudio", "transformers", "diffusers", "accelerate", "safetensors", "tokenizers",
                  "huggingface-hub", "numpy", "pillow", "soundfile", "av", "peft", "starlette", "uvicorn", "ray")


def _info(args: argparse.Namespace) -> int:
    import importlib.metadata
    import platform

    import torch

    from aigc._runtime.device import dtype_name, resolve_device, resolve_dtype

    versions: dict[str, str | None] = {}
    for name in _INFO_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    device = resolve_device("auto")
    # The JSON keeps its machine-readable shape (numbers in bytes, the keys of earlier versions); the text view
    # below is for people.
    info: dict[str, Any] = {
        "aigc": aigc.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "auto_device": str(device),
        "auto_dtype": dtype_name(resolve_dtype("auto", device)),
        "torch_threads": torch.get_num_threads(),
        "cache": {"budget_bytes": aigc.cache.budget_bytes, "used_bytes": aigc.cache.used_bytes,
                  "models": [e.key.model for e in aigc.cache.entries()]},
        "backends": [f"{b.modality}.{b.name}" + ("" if b.status == "available" else f" ({b.status})")
                     for b in aigc.backends()],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"aigc {info['aigc']} on Python {info['python']} ({info['platform']})")
    print("\npackages")
    for name, version in versions.items():
        print(f"  {name:<16} {version or 'not installed'}")
    print("\ndevices")
    print(f"  {'cuda':<16} {', '.join(info['cuda']) or 'none'}")
    print(f"  {'mps':<16} {'available' if info['mps'] else 'none'}")
    print(f"  {'device=auto':<16} {info['auto_device']} ({info['auto_dtype']})")
    print(f"  {'torch threads':<16} {info['torch_threads']}")
    cache = info["cache"]
    print(f"\nmodel cache\n  {'budget':<16} {cache['budget_bytes'] / 2**30:.1f} GiB"
          f"\n  {'used':<16} {cache['used_bytes'] / 2**20:.1f} MiB\n  {'models':<16} {len(cache['models'])}")
    print(f"\nbackends ({len(info['backends'])}; `aigc backends` for details)")
    print("  " + ", ".join(info["backends"]))
    return 0


def _key_values(flag: str, items: list[str], example: str, *, own_flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """``KEY=JSON`` items (a bare string where the value is not JSON); a key in ``own_flags`` has a flag of its
    own (``--device``), which is named in the error."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(flag, item, "expected KEY=VALUE", f"write e.g. {flag} {example}")
        if key in own_flags:
            dashed = "--" + key.replace("_", "-")
            raise InvalidRequest(flag, item, f"{key} has a flag of its own", f"pass {dashed} instead")
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw  # a bare string
    return values


_THREADS_HELP = ("torch's CPU threads (default: 1 for the small embedded models on a CPU, where more threads only "
                 "wait for each other, unless OMP_NUM_THREADS is set; torch's own default otherwise)")


def _cpu_threads(threads: int | None, model: str | None, device: str) -> None:
    """Set torch's CPU thread count: ``--threads``, or 1 for an embedded default model on the CPU when the
    environment does not say (``OMP_NUM_THREADS``). The command line owns its process, so it may; the library
    never changes this process-wide setting."""
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise InvalidRequest("--threads", threads, "must be at least 1", "pass --threads 1 or more")
    if threads is None:
        if "OMP_NUM_THREADS" in os.environ or model not in (None, "default"):
            return
        from aigc._runtime.device import resolve_device

        if resolve_device(device).type != "cpu":
            return
        threads = 1
    import torch

    torch.set_num_threads(threads)


def _verify(args: argparse.Namespace) -> int:
    from aigc.provenance.store import RecordStore

    report = aigc.verify(args.file, store=RecordStore(args.store) if args.store else None)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report)
    found = report.metadata is not None or (report.c2pa is not None and report.c2pa.valid) or (
        report.watermark is not None and report.watermark.present)
    return 0 if found else 3


def _credentials(args: argparse.Namespace) -> int:
    from aigc.provenance.c2pa import init_credentials

    init_credentials(args.folder, name=args.name, days=args.days, overwrite=args.force)
    print(f"wrote {args.folder}/chain.pem, key.pem (keep it private) and ca.pem: a development signer under a "
          "throw-away CA, which C2PA readers report as untrusted. Sign with: aigc generate ... --credentials "
          f"{args.folder}, or result.save(path, credentials={args.folder!r})")
    return 0


def _replay(args: argparse.Namespace) -> int:
    if args.threads is not None or "OMP_NUM_THREADS" not in os.environ:
        recorded = args.model
        if recorded is None:
            try:
                recorded = aigc.Record.from_file(args.file).model
            except AigcError:
                recorded = "?"  # replay below says what is wrong with the file
        _cpu_threads(args.threads, recorded, args.device or "cpu")
    result = aigc.replay(args.file, device=args.device, dtype=args.dtype, model=args.model,
                         trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
                         offload=args.offload, cache=args.cache, strict=args.strict,
                         **_key_values("--option", args.option, "max_batch_size=8",
                                       own_flags=("device", "dtype", "model", "trust_remote_code", "allow_pickle",
                                                  "offload", "cache", "strict")))
    if args.output:
        saved = result.save(args.output)
        for path in saved.all:
            print(path)
    elif isinstance(result, aigc.TextResult):
        print(result.text)
    else:
        print(f"regenerated {len(result)} {result.modality} sample(s); pass -o FILE to save them")
    return 0


_FLAG_OF = {dest: flag for flag, dest, _, _ in _PARAM_FLAGS} | {"num_outputs": "-n", "stop": "--stop"}


def _cli_words(error: AigcError) -> str:
    """An error from the Python API said in the command line's words: ``temperature=0`` -> ``--temperature 0``,
    ``do_sample=False`` -> ``--greedy``.

    Example:
        >>> _cli_words(InvalidRequest("temperature", 0, "too small", "pass temperature=0.7, or do_sample=False"))
        '--temperature 0: too small. Fix: pass --temperature 0.7, or --greedy'
    """
    if isinstance(error, InvalidRequest) and error.field in _FLAG_OF:
        text = f"{_FLAG_OF[error.field]} {error.value}: {error.problem}. Fix: {error.fix}"
    else:
        text = str(error)
    text = text.replace("do_sample=False", "--greedy")

    def flag(match: re.Match[str]) -> str:
        return f"{_FLAG_OF[match.group(1)]} {match.group(2)}"

    names = "|".join(map(re.escape, _FLAG_OF))
    text = re.sub(r"\b(" + names + r")=([^\s,;)]+)", flag, text)
    return re.sub(r"\bpass (" + names + r")\b", lambda m: f"pass {_FLAG_OF[m.group(1)]}", text)


def _configure_logging(verbose: bool) -> None:
    """aigc's own messages through one handler on the ``aigc`` logger (not the root logger, so other libraries'
    handlers do not print them twice); with ``-v`` also the libraries' own progress and messages."""
    logger = logging.getLogger("aigc")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    aigc.set_verbosity("info" if verbose else "warning")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status.

    Example:
        >>> main(["backends"])  # doctest: +SKIP
    """
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _subparser(args, parser).unknown(extras)
    verbose = bool(getattr(args, "verbose", False))
    _configure_logging(verbose)
    from aigc.evaluate.cli import run_eval
    from aigc.ray.cli import run_serve  # --ray: on Ray Serve; else aigc.serve.cli.run_serve
    from aigc.train.cli import run_train

    handlers = {"generate": _generate, "backends": _backends, "info": _info, "replay": _replay, "eval": run_eval,
                "train": run_train, "serve": run_serve, "batch": _batch, "verify": _verify,
                "credentials": _credentials}
    try:
        return handlers[args.command](args)
    except AigcError as e:
        print(f"aigc: error: {_cli_words(e) if args.command == 'generate' else e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aigc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
