"""The ``aigc train`` command: pre-training and fine-tuning from the command line.

    aigc train finetune-text MODEL DATA -o OUT [--method lora|full] [--steps N | --epochs N] [--lr LR]
        [--batch-size N] [--max-length N] [--lora-r R] [--lora-alpha A] [--target-modules M ...]
        [--eval-fraction F] [--seed S] [--checkpoint-every N] [--resume [CHECKPOINT]] [--overwrite] [--merge]
    aigc train finetune-image MODEL DATA -o OUT [--steps N] [--lr LR] [--batch-size N] [--resolution PX]
        [--lora-r R] [--train-text-encoder] [--seed S] [--checkpoint-every N] [--resume [CHECKPOINT]]

    aigc train gan DATA -o OUT [--steps N] [--lr LR] [--batch-size N] [--truncation PSI] [--balance-classes]
        [--mixed-precision] [--fp16] [--seed S] [--checkpoint-every N] [--resume [CHECKPOINT]] [--overwrite]
    aigc train vae DATA -o OUT  (the same options, and --beta B, --eval-fraction F)
    aigc train diffusion DATA -o OUT  (the same options but --truncation)

DATA for ``gan``/``vae`` is a folder of images (one sub-folder per class) or a ``.npz`` file holding ``images``
(N, H, W[, C]) and optionally ``labels`` (N,) and ``class_names``.

All print the output directory and a summary of the losses (or the whole result as JSON with ``--json``).
Errors print one line (``aigc: error: ...``) and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aigc.errors import AigcError

__all__ = ["add_train_parser", "run_train"]


def _common(p: argparse.ArgumentParser, *, data_help: str) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory or hub id")
    p.add_argument("data", metavar="DATA", help=data_help)
    p.add_argument("-o", "--out", required=True, help="output directory (new or empty, unless --resume/--overwrite)")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="examples per step")
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"], help="learning-rate schedule")
    p.add_argument("--warmup-steps", type=int, help="steps of linear warm-up")
    p.add_argument("--lora-r", type=int, help="LoRA rank")
    p.add_argument("--lora-alpha", type=int, help="LoRA scale numerator (the update is scaled by alpha / r)")
    _run_flags(p, device="auto")


def _run_flags(p: argparse.ArgumentParser, *, device: str) -> None:
    """The flags every recipe has: seed, checkpoints and resume, device, progress bar, JSON output."""
    p.add_argument("--seed", type=int, help="the run's seed (default 0)")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="write a checkpoint every N steps")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in OUT from its latest checkpoint, or from CHECKPOINT")
    p.add_argument("--overwrite", action="store_true", help="start again in a non-empty OUT")
    p.add_argument("--device", default=device, help=f"auto, cpu, cuda, cuda:1, mps (default: {device})")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                   help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` command and its recipes to an ``add_subparsers()`` object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``train`` parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="aigc")
        >>> add_train_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
        ArgumentParser(prog='aigc train', ...)
    """
    train: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="pre-train a GAN or VAE; fine-tune a text model (LoRA or full) or a Stable Diffusion LoRA",
        description="Train models. Runs are reproducible, checkpointed and resumable.")
    recipes = train.add_subparsers(dest="recipe", required=True, metavar="RECIPE")

    p = recipes.add_parser("finetune-text", help="fine-tune a causal language model",
                           description="Fine-tune a causal language model with LoRA or on all weights.")
    _common(p, data_help="a .txt (one example per line, or blank-line separated) or .jsonl file "
                         '({"text"}, {"prompt", "completion"} or {"messages"} per line)')
    p.add_argument("--method", choices=["lora", "full"], default="lora", help="lora (default) or full")
    p.add_argument("--epochs", type=int, help="passes over the data (instead of --steps; default 3)")
    p.add_argument("--max-length", type=int, help="tokens per example at most")
    p.add_argument("--lora-dropout", type=float, help="dropout on the LoRA branch")
    p.add_argument("--target-modules", nargs="+", metavar="NAME",
                   help="layers that get LoRA (default: all-linear)")
    p.add_argument("--eval-fraction", type=float, help="share of the examples held out (default 0.1)")
    p.add_argument("--eval-every", type=int, metavar="N", help="measure the held-out loss every N steps")
    p.add_argument("--merge", action="store_true", help="LoRA: also write OUT/merged, a standalone model")

    p = recipes.add_parser("finetune-image", help="train a LoRA for a Stable Diffusion pipeline",
                           description="Train a LoRA for a Stable Diffusion 1.x/2.x pipeline on captioned images.")
    _common(p, data_help="a folder of images with same-name .txt captions (or a metadata.jsonl)")
    p.add_argument("--resolution", type=int, help="training size in pixels (default: the model's)")
    p.add_argument("--train-text-encoder", action="store_true", help="also train a LoRA for the text encoder")
    p.add_argument("--random-flip", action="store_true", help="flip images horizontally at random")

    for name, what in (("gan", "a StyleGAN2-style GAN"), ("vae", "a convolutional VAE"),
                       ("diffusion", "a small class-conditional DDPM")):
        p = recipes.add_parser(name, help=f"pre-train {what} on a folder of images or an .npz array",
                               description=f"Pre-train {what}; the output loads with backend='{name}'.")
        p.add_argument("data", metavar="DATA", help="a folder of images (one sub-folder per class) "
                                                    "or an .npz with images[, labels, class_names]")
        p.add_argument("-o", "--out", required=True, help="output directory")
        p.add_argument("--steps", type=int, help="optimizer steps")
        p.add_argument("--lr", type=float, help="learning rate")
        p.add_argument("--batch-size", type=int, help="images per step")
        if name != "diffusion":
            p.add_argument("--truncation", type=float, help="default truncation written for the backend")
        else:
            p.add_argument("--widths", type=int, nargs="+", help="UNet channels per level (default 32 64 64)")
        p.add_argument("--balance-classes", action="store_true", help="draw classes uniformly")
        p.add_argument("--mixed-precision", action="store_true", help="bfloat16 autocast")
        p.add_argument("--fp16", dest="export_dtype", action="store_const", const="float16",
                       help="write the weights in float16")
        if name == "vae":
            p.add_argument("--beta", type=float, help="weight of the KL term (default 1)")
            p.add_argument("--eval-fraction", type=float, help="share of images held out (default 0.05)")
        _run_flags(p, device="cpu")
    return train


# CLI dest -> keyword of the recipe; a flag left out is not passed, so the recipe keeps its default.
_TEXT_KEYS = ("steps", "epochs", "lr", "batch_size", "max_length", "schedule", "warmup_steps", "lora_r",
              "lora_alpha", "lora_dropout", "target_modules", "eval_fraction", "eval_every", "seed",
              "checkpoint_every")
_IMAGE_KEYS = ("steps", "lr", "batch_size", "resolution", "schedule", "warmup_steps", "lora_r", "lora_alpha",
               "seed", "checkpoint_every")
_PRETRAIN_KEYS = ("steps", "lr", "batch_size", "truncation", "export_dtype", "beta", "eval_fraction", "widths",
                  "seed", "checkpoint_every")


def _pretrain_data(path: str) -> tuple[Any, dict[str, Any]]:
    """A folder as it is, or an .npz file's arrays with its labels and class names as keywords."""
    from aigc.errors import InvalidRequest

    if not path.endswith(".npz"):
        return path, {}
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise InvalidRequest("data", path, f"cannot read the .npz file ({e})",
                             "write it with np.savez(path, images=..., labels=...)") from None
    if "images" not in arrays:
        raise InvalidRequest("data", path, f"has no 'images' array (it has {sorted(arrays)})",
                             "write it with np.savez(path, images=..., labels=...)")
    extra: dict[str, Any] = {}
    if "labels" in arrays:
        extra["labels"] = arrays["labels"].tolist()
    if "class_names" in arrays:
        extra["class_names"] = [str(x) for x in arrays["class_names"].tolist()]
    return arrays["images"], extra


def _run(args: argparse.Namespace) -> int:
    common: dict[str, Any] = {"out": args.out, "resume": args.resume, "overwrite": args.overwrite,
                              "device": args.device, "progress": args.progress}
    result: Any
    if args.recipe in ("gan", "vae", "diffusion"):
        from aigc.train import train_diffusion, train_gan, train_vae

        data, extra = _pretrain_data(args.data)
        kwargs = {k: getattr(args, k) for k in _PRETRAIN_KEYS if getattr(args, k, None) is not None}
        recipe: Any = {"gan": train_gan, "vae": train_vae, "diffusion": train_diffusion}[args.recipe]
        result = recipe(data, balance_classes=args.balance_classes, mixed_precision=args.mixed_precision,
                        **common, **extra, **kwargs)
    elif args.recipe == "finetune-text":
        from aigc.train.text import finetune_text

        kwargs = {k: getattr(args, k) for k in _TEXT_KEYS if getattr(args, k) is not None}
        result = finetune_text(args.model, args.data, method=args.method, merge=args.merge, **common, **kwargs)
    else:
        from aigc.train.image import finetune_image

        kwargs = {k: getattr(args, k) for k in _IMAGE_KEYS if getattr(args, k) is not None}
        result = finetune_image(args.model, args.data, train_text_encoder=args.train_text_encoder,
                                random_flip=args.random_flip, **common, **kwargs)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(result.output)
    losses = result.train_losses
    print(f"steps {result.steps}  loss {losses[0]:.4f} -> {losses[-1]:.4f}  ({result.duration_s:.1f}s)")
    if result.eval_losses:
        first, last = min(result.eval_losses), max(result.eval_losses)
        print(f"eval loss {result.eval_losses[first]:.4f} (step {first}) -> {result.eval_losses[last]:.4f} "
              f"(step {last})")
    if result.merged is not None:
        print(f"merged model: {result.merged}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Run the ``train`` subcommand parsed by :func:`add_train_parser`; return the exit status.

    Args:
        args: the parsed arguments (``args.recipe`` names the recipe).

    Returns:
        0 on success; 1 after printing ``aigc: error: ...`` to stderr for an aigc error (bad arguments or
        data, missing model or package).

    Example:
        >>> args = parser.parse_args(["train", "finetune-text", "gpt2", "data.jsonl", "-o", "out"])  # doctest: +SKIP
        >>> run_train(args)  # doctest: +SKIP
        0
    """
    try:
        return _run(args)
    except AigcError as e:
        print(f"aigc: error: {e}", file=sys.stderr)
        return 1
