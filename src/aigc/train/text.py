"""Fine-tuning a causal language model on texts, prompt/completion pairs or chat conversations.

LoRA runs through ``peft`` and writes an adapter directory that ``aigc.load("text", BASE, adapter=OUT)``
loads (``merge=True`` also writes a standalone merged model to ``OUT/merged``); ``method="full"`` trains
every weight and writes a model directory that ``aigc.load("text", OUT)`` loads.

Stages of one run:
    1. check the arguments (before anything is read or loaded);
    2. read the data and check every example (a bad JSONL line is reported with its line number);
    3. load the tokenizer; tokenize every example with its loss mask; split off the held-out examples
       (:mod:`aigc.train.text_data`);
    4. load the model (and wrap it with LoRA); restore the checkpoint when resuming;
    5. train with the one training loop (:mod:`aigc.train._loop`), writing checkpoints;
    6. write the adapter or the model, the merged model on request, and last ``training.json``.

The loss is the mean cross-entropy of the next token over the labelled tokens of a batch: every token of
a plain text (with an end-of-sequence token appended), the completion of a prompt/completion pair (and an
end-of-sequence token), the assistant turns of a conversation (as the model's chat template writes them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.train._checks import check_bool, check_choice, check_float, check_int
from aigc.train._loop import StepContext, TrainState, train_loop
from aigc.train._result import FinetuneResult, write_result
from aigc.train._run import RunKeywords, changed_settings, forward_autocast, run_options
from aigc.train.text_data import (
    IGNORE,
    TextData,
    TextExample,
    collate,
    read_text_data,
    split_examples,
    token_losses,
    tokenize_all,
)

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

__all__ = ["TextData", "TextExample", "finetune_text", "read_text_data"]

logger = logging.getLogger(__name__)

Method = Literal["lora", "full"]
_METHODS: tuple[Method, ...] = ("lora", "full")
_RUN_DEFAULTS: dict[str, Any] = {"batch_size": 8, "schedule": "linear", "max_grad_norm": 1.0, "device": "auto"}


# -- 4. the model ----------------------------------------------------------------------------------------
def _check_model(model: Any) -> tuple[str, Any, str]:
    """(model id, its config, an identity for resume checks) -- before any weight is loaded."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise InvalidRequest("model", model, "must be a model directory or a hub id", "pass model='path/to/gpt2'")
    name = os.fspath(model)
    if name == "default" and not os.path.isdir(name):  # the embedded text model, as aigc.load("text") loads it
        from aigc._runtime.assets import asset_dir

        name = str(asset_dir("text_default", marker="config.json", what="the built-in text model 'default'"))
    identity = name
    if os.path.isdir(name):
        from aigc._runtime.weights import fingerprint_files, weight_files

        identity = fingerprint_files(weight_files(Path(name), allow_pickle=False))
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        where = "local directory" if os.path.isdir(name) else "local directory, and the hub could not provide it"
        raise ModelNotFound(f"model={name!r}: no usable {where}: {e}") from None
    if getattr(config, "is_encoder_decoder", False):
        raise InvalidRequest("model", name, "finetune_text trains decoder-only (causal) language models",
                             "pass a GPT-2, Llama, Qwen, ... directory")
    return name, config, identity


def _context_length(config: Any) -> int | None:
    return next((int(getattr(config, k)) for k in ("max_position_embeddings", "n_positions")
                 if isinstance(getattr(config, k, None), int)), None)


def _load_model(name: str, config: Any) -> Any:
    import torch
    import transformers

    try:
        return transformers.AutoModelForCausalLM.from_pretrained(name, config=config, dtype=torch.float32,
                                                                 use_safetensors=True)
    except ValueError as e:
        raise InvalidRequest("model", name, f"not a causal language model transformers can load ({e})",
                             "pass a causal LM directory (config.json + model.safetensors)") from None
    except OSError as e:
        if "safetensors" in str(e).lower():
            raise UnsafeModelFile(f"model={name!r} has no safetensors weights: {e}. Fix: convert the weights to "
                                  "safetensors") from None
        raise ModelNotFound(f"model={name!r}: {e}") from None


def _lora_targets(target_modules: str | Sequence[str] | None) -> str | list[str]:
    """Every linear layer but the output layer by default: LoRA on all of them is what matches full
    fine-tuning (Dettmers et al., QLoRA, 2023, sec. 4); the attention-only choice of the original LoRA
    paper learns much less (on the tests' tiny GPT-2 it cannot memorise one sentence)."""
    if target_modules is None:
        return "all-linear"
    return target_modules if isinstance(target_modules, str) else list(target_modules)


def _wrap_lora(lm: Any, *, r: int, alpha: int, dropout: float,
               targets: str | list[str]) -> Any:
    import peft
    from transformers.pytorch_utils import Conv1D

    # GPT-2 style Conv1D layers store their weight transposed; peft must know (else it warns and fixes it).
    conv1d = any(isinstance(m, Conv1D) for m in lm.modules())
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                          fan_in_fan_out=conv1d, task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(lm, cfg)
    except ValueError as e:
        raise InvalidRequest("target_modules", targets, f"peft cannot place LoRA layers there ({e})",
                             "pass names of linear layers of this model, e.g. ['q_proj', 'v_proj'], "
                             "or 'all-linear'") from None


# -- the recipe -----------------------------------------------------------------------------------------
def finetune_text(
    model: str | os.PathLike[str],
    data: TextData,
    *,
    out: str | os.PathLike[str],
    method: Method = "lora",
    epochs: int | None = None,
    max_length: int | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: str | Sequence[str] | None = None,
    eval_fraction: float = 0.1,
    merge: bool = False,
    mixed_precision: bool = False,
    **settings: Unpack[RunKeywords],
) -> FinetuneResult:
    """Fine-tune a causal language model with LoRA (through peft) or on all of its weights.

    The run is reproducible: the same arguments give the same losses and weights (bit for bit on one CPU
    with one thread count), whether it ran in one go or was resumed from a checkpoint; the caller's global
    torch RNG is untouched.

    Args:
        model: a model directory (safetensors weights), a hub id of a decoder-only language model, or
            ``"default"``, the embedded text model.
        data: a list of texts; a list of dicts: ``{"text"}``, ``{"prompt", "completion"}`` (only the
            completion is scored) or ``{"messages": [{"role", "content"}, ...]}`` (the model's chat template;
            only assistant turns are scored); or the path of a ``.txt`` file (one example per line, or
            blank-line separated blocks when it has blank lines) or of a ``.jsonl`` file of such dicts.
            An end-of-sequence token is appended to texts and completions.
        out: the output directory; it must not exist or be empty, unless ``resume`` or ``overwrite``.
        method: ``"lora"`` (an adapter) or ``"full"`` (all weights).
        epochs: passes over the training split (``ceil(train examples / batch_size)`` steps each), instead of
            ``steps`` (default: 3 epochs).
        max_length: tokens per example at most; longer ones are cut (default: the model's context, at most 1024).
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (the update is scaled by ``lora_alpha / lora_r``).
        lora_dropout: dropout on the LoRA branch's input.
        target_modules: layers that get LoRA: names (``["q_proj", "v_proj"]``) or ``"all-linear"``; ``None``
            (the default) is ``"all-linear"``: every linear layer but the output layer, for any architecture.
        eval_fraction: share of the examples held out (``floor(n * eval_fraction)``; 0 to 0.5) to measure
            the held-out loss before training, every ``eval_every`` steps and at the end.
        merge: LoRA only: also write the base model with the adapter merged in, and the tokenizer, to
            ``OUT/merged``.
        mixed_precision: run the training forward passes under bfloat16 autocast (``torch.autocast``), as
            the pre-training recipes do: about twice as fast on CPUs with AVX512-BF16 or AMX and on recent
            GPUs. The weights, their gradients and the optimizer stay in float32; the cross-entropy and the
            held-out loss are computed in float32.
        **settings: the run settings (:class:`~aigc.train.RunOptions`, the same for every recipe):

            * ``steps``: optimizer steps; or give ``epochs``.
            * ``lr``: peak learning rate of AdamW (default 2e-4 for LoRA, 2e-5 for full fine-tuning).
            * ``batch_size``: examples per step (default 8).
            * ``schedule``: ``"linear"`` (the default), ``"cosine"`` or ``"constant"``, after ``warmup_steps``
              (default 0) of linear warm-up; the decay ends at ``lr_floor * lr`` (default 0).
            * ``weight_decay``: AdamW's decoupled weight decay (default 0).
            * ``max_grad_norm``: clip the gradient's norm to this (default 1; ``None``: no clipping).
            * ``eval_every``: steps between held-out measurements (default: at each checkpoint, and at the end).
            * ``seed``: the run's seed (split, data order, dropout, LoRA initialisation; default 0); ``None``
              draws one from the OS and records it in the result.
            * ``checkpoint_every``: write a checkpoint to ``OUT/checkpoints/step-NNNNNN`` every this many steps.
            * ``resume``: ``True`` continues from the latest checkpoint in ``out`` (starting afresh when there
              is none); a checkpoint directory continues from that one. The arguments must be those of the
              interrupted run (``checkpoint_every``, ``progress``, ``on_step`` and ``device`` may differ).
            * ``overwrite``: start again in a non-empty ``out`` (its checkpoints are removed first).
            * ``progress``: show a progress bar (default: in a terminal or notebook).
            * ``on_step``: called with a :class:`TrainStep` after every step; an exception from it stops the
              run (the last checkpoint stays, to resume from).
            * ``device``: ``"auto"`` (the default), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. Training
              runs in float32.

    Returns:
        A :class:`FinetuneResult` (also written to ``OUT/training.json``).

    Raises:
        InvalidRequest: a bad argument or bad data, before anything is trained.
        TrainingDiverged: the loss became NaN or infinite.
        ModelNotFound: no model at ``model``.
        UnsafeModelFile: the model has pickle weights only.
        BackendUnavailable: peft is not installed (``pip install 'aigc[train]'``) for ``method="lora"``.

    Example:
        >>> from aigc.train import finetune_text
        >>> res = finetune_text("path/to/gpt2-dir", "data.jsonl", out="runs/lora", steps=200)  # doctest: +SKIP
        >>> gen = aigc.load("text", "path/to/gpt2-dir", adapter="runs/lora")  # doctest: +SKIP
    """
    # 1. Arguments, before anything is read or loaded.
    check_choice("method", method, _METHODS)
    if settings.get("steps") is not None and epochs is not None:
        raise InvalidRequest("epochs", epochs, "steps and epochs both say how long to train", "pass one of them")
    check_int("epochs", epochs, minimum=1, fix="pass epochs=1 or more", allow_none=True)
    options = run_options("finetune_text", settings, {**_RUN_DEFAULTS, "lr": 2e-4 if method == "lora" else 2e-5},
                          steps_required=False)
    batch_size = options.batch_size
    check_int("max_length", max_length, minimum=2, fix="pass max_length=512", allow_none=True)
    check_int("lora_r", lora_r, minimum=1, fix="pass lora_r=8 (a rank of 1 or more)")
    check_int("lora_alpha", lora_alpha, minimum=1, fix="pass lora_alpha=16 (often 2 * lora_r)")
    check_float("lora_dropout", lora_dropout, low=0.0, high=0.9, fix="pass lora_dropout=0.05")
    if target_modules is not None:
        if method != "lora":
            raise InvalidRequest("target_modules", target_modules, "only LoRA places layers on modules",
                                 "leave target_modules out with method='full'")
        if not (isinstance(target_modules, str) and target_modules) and not (
                isinstance(target_modules, Sequence) and target_modules
                and all(isinstance(t, str) and t for t in target_modules)):
            raise InvalidRequest("target_modules", target_modules, "must be a non-empty list of module names",
                                 "pass target_modules=['q_proj', 'v_proj'] or 'all-linear'")
    check_float("eval_fraction", eval_fraction, low=0.0, high=0.5, fix="pass eval_fraction=0.1 (0 to 0.5)")
    check_bool("merge", merge)
    check_bool("mixed_precision", mixed_precision)
    if merge and method != "lora":
        raise InvalidRequest("merge", merge, "full fine-tuning already writes a standalone model",
                             "leave merge out with method='full'")
    run = options.start(out)
    if method == "lora":
        try:
            import peft  # noqa: F401
        except ImportError:
            raise BackendUnavailable("LoRA fine-tuning needs peft", extra="train") from None

    # 2-3. Data, tokenizer, tokens and the split.
    examples = read_text_data(data)
    name, config, identity = _check_model(model)
    context = _context_length(config)
    if max_length is None:
        max_length = min(context or 1024, 1024)
    elif context is not None and max_length > context:
        raise InvalidRequest("max_length", max_length, f"the model's context is {context} tokens",
                             f"pass max_length <= {context}")
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ModelNotFound(f"model={name!r}: no tokenizer: {e}") from None
    tokens = tokenize_all(tokenizer, examples, max_length)
    train_idx, eval_idx = split_examples(len(tokens.ids), float(eval_fraction), run.seed)
    if eval_fraction and not eval_idx:
        logger.info("eval_fraction=%s of %d examples holds out none; no held-out loss is measured",
                    eval_fraction, len(tokens.ids))
    per_epoch = -(-len(train_idx) // batch_size)
    run = run.with_steps(options.steps if options.steps is not None else per_epoch * (epochs or 3))
    targets = _lora_targets(target_modules)
    run_config: dict[str, Any] = {
        "recipe": "finetune_text", "model": identity, "method": method, "data": tokens.fingerprint(),
        "steps": run.steps, "lr": options.lr, "batch_size": batch_size, "max_length": max_length,
        "schedule": options.schedule, "warmup_steps": options.warmup_steps, "weight_decay": options.weight_decay,
        "max_grad_norm": options.max_grad_norm, "eval_fraction": eval_fraction, "eval_every": options.eval_every,
        "seed": run.seed, **changed_settings(options, _RUN_DEFAULTS, ("lr_floor",)),
        **({"mixed_precision": True} if mixed_precision else {}),  # absent when off: older checkpoints resume
        **({"lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "target_modules": targets} if method == "lora" else {}),
    }

    # 4. The model, loaded and wrapped with the run's seed (LoRA's initialisation draws random numbers).
    with run.seeded("init"):
        lm = _load_model(name, config)
        if method == "lora":
            lm = _wrap_lora(lm, r=lora_r, alpha=lora_alpha, dropout=float(lora_dropout), targets=targets)
    lm.to(run.device)
    lm.train()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def step_fn(ctx: StepContext) -> torch.Tensor:
        rows = [train_idx[i] for i in ctx.epoch_batch(len(train_idx))]
        x, mask, y = collate([tokens.ids[i] for i in rows], [tokens.labels[i] for i in rows], pad, run.device)
        with forward_autocast(run.device, mixed_precision):
            return token_losses(lm, x, mask, y, "mean")  # the cross-entropy itself runs on float32 logits

    def eval_fn() -> float:
        import torch

        lm.eval()
        total_loss, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(eval_idx), batch_size):
                rows = eval_idx[start:start + batch_size]
                x, mask, y = collate([tokens.ids[i] for i in rows], [tokens.labels[i] for i in rows], pad,
                                     run.device)
                total_loss += float(token_losses(lm, x, mask, y, "sum"))
                count += int((y[:, 1:] != IGNORE).sum())
        lm.train()
        return total_loss / count

    # 5. Train.
    params = [(n, p) for n, p in lm.named_parameters() if p.requires_grad]
    outcome = train_loop(run, step_fn, TrainState(params=params), config=run_config,
                         eval_fn=eval_fn if eval_idx else None, desc=f"finetune text ({method})")

    # 6. Write the output into a staging folder beside it, then move it in; training.json comes last.
    from aigc.formats import staging_folder

    lm.eval()
    merged = None
    with staging_folder(run.out) as staging:
        lm.save_pretrained(os.fspath(staging))
        if method == "full":
            tokenizer.save_pretrained(os.fspath(staging))
        elif merge:
            merged = run.out / "merged"
            base = lm.merge_and_unload()
            base.save_pretrained(os.fspath(staging / "merged"))
            tokenizer.save_pretrained(os.fspath(staging / "merged"))
    result = FinetuneResult(
        output=run.out, method=method, steps=run.steps, train_losses=outcome.losses["loss"],
        eval_losses=outcome.eval_losses, duration_s=round(outcome.duration_s, 3), seed=run.seed,
        train_examples=len(train_idx), eval_examples=len(eval_idx), resumed_from=outcome.resumed_from,
        merged=merged, checkpoints=outcome.checkpoints)
    write_result(run.out, result, run_config)
    logger.info("finetune_text: %r", result)
    return result
