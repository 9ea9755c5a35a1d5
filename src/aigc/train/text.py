"""Fine-tuning a causal language model on texts, prompt/completion pairs or chat conversations.

LoRA runs through ``peft`` and writes an adapter directory that ``aigc.load("text", BASE, adapter=OUT)``
loads (``merge=True`` also writes a standalone merged model to ``OUT/merged``); ``method="full"`` trains
every weight and writes a model directory that ``aigc.load("text", OUT)`` loads.

Stages of one run:
    1. check the arguments (before anything is read or loaded);
    2. read the data and check every example (a bad JSONL line is reported with its line number);
    3. load the tokenizer; tokenize every example with its loss mask; split off the held-out examples;
    4. load the model (and wrap it with LoRA); restore the checkpoint when resuming;
    5. train with the shared loop (:mod:`aigc.train._common`), writing checkpoints;
    6. write the adapter or the model, the merged model on request, and last ``training.json``.

The loss is the mean cross-entropy of the next token over the labelled tokens of a batch: every token of
a plain text (with an end-of-sequence token appended), the completion of a prompt/completion pair (and an
end-of-sequence token), the assistant turns of a conversation (as the model's chat template writes them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.train._common import (
    FinetuneResult,
    LoopSpec,
    Schedule,
    TrainStep,
    batch_indices,
    check_bool,
    check_choice,
    check_float,
    check_hooks,
    check_int,
    check_optimizer,
    check_out,
    check_seed,
    derive_seed,
    prepare_out,
    publish,
    resolve_resume,
    run_loop,
    seeded_rng,
    write_result,
)

if TYPE_CHECKING:
    import torch

__all__ = ["TextData", "TextExample", "finetune_text", "read_text_data"]

logger = logging.getLogger(__name__)

#: What ``finetune_text`` accepts as ``data``: a list of texts or example dicts, or a .txt/.jsonl file.
TextData = Sequence[str | Mapping[str, Any]] | str | os.PathLike[str]

Method = Literal["lora", "full"]
_METHODS: tuple[Method, ...] = ("lora", "full")
_IGNORE = -100  # label of a token that is not scored (the cross-entropy's ignore_index)
_DATA_FIX = ('pass a list of texts, a list of {"prompt", "completion"} or {"messages": [...]} dicts, '
             "or a path to a .txt or .jsonl file")


# -- 2. data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextExample:
    """One checked example: exactly one of ``text``, ``(prompt, completion)`` or ``messages`` is set.

    Attributes:
        where: where it came from, for error messages: ``"data[3]"`` or ``"file.jsonl:4"``.
        text: a plain text (every token scored).
        prompt, completion: a pair (only the completion scored).
        messages: ``(role, content)`` turns of a conversation (only assistant turns scored).
    """

    where: str
    text: str | None = None
    prompt: str | None = None
    completion: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None


def _check_example(item: Any, where: str) -> TextExample:
    if isinstance(item, str):
        if not item.strip():
            raise InvalidRequest("data", where, "an empty text", "remove it, or put some text in it")
        return TextExample(where, text=item)
    if not isinstance(item, Mapping):
        raise InvalidRequest("data", where, f"an example must be a text or a dict, not {type(item).__name__}",
                             _DATA_FIX)
    if "messages" in item:
        messages = item["messages"]
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("data", where, '"messages" must be a non-empty list', 'write "messages": '
                                 '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
        turns = []
        for j, m in enumerate(messages):
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise InvalidRequest("data", where, f"message {j} needs a string \"role\" and \"content\"",
                                     'write {"role": "user", "content": "..."}')
            turns.append((m["role"], m["content"]))
        if not any(role == "assistant" for role, _ in turns):
            raise InvalidRequest("data", where, "a conversation without an assistant turn has nothing to learn",
                                 'add a {"role": "assistant", ...} message')
        return TextExample(where, messages=tuple(turns))
    if "prompt" in item or "completion" in item:
        prompt, completion = item.get("prompt"), item.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise InvalidRequest("data", where, '"prompt" and "completion" must both be strings',
                                 'write {"prompt": "...", "completion": "..."}')
        if not completion.strip():
            raise InvalidRequest("data", where, "an empty completion has nothing to learn", "fill it in or remove it")
        return TextExample(where, prompt=prompt, completion=completion)
    if "text" in item:
        return _check_example(item["text"], where) if isinstance(item["text"], str) else _check_example(
            None, where)
    raise InvalidRequest("data", where, f"a dict with keys {sorted(item)!r}, none of which aigc knows",
                         'use {"text"}, {"prompt", "completion"} or {"messages"}')


def _read_txt(path: Path) -> list[TextExample]:
    content = path.read_text(encoding="utf-8").replace("\r\n", "\n").strip()
    if re.search(r"\n[ \t]*\n", content):  # blank-line separated blocks
        blocks = [b.strip("\n") for b in re.split(r"\n[ \t]*\n+", content)]
    else:  # one example per line
        blocks = content.split("\n")
    texts = [b for b in blocks if b.strip()]
    return [TextExample(f"{path.name}:{i + 1}", text=t) for i, t in enumerate(texts)]


def _read_jsonl(path: Path) -> list[TextExample]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                item = json.loads(line)
            except ValueError as e:
                raise InvalidRequest("data", where, f"line {lineno} is not valid JSON ({e})",
                                     "write one JSON object per line") from None
            if not isinstance(item, dict):
                raise InvalidRequest("data", where, f"line {lineno} is not a JSON object",
                                     'write {"prompt": ..., "completion": ...} or {"messages": [...]} per line')
            out.append(_check_example(item, where))
    return out


def read_text_data(data: TextData) -> list[TextExample]:
    """Read and check every example of ``data`` (see :func:`finetune_text`); nothing is tokenized yet.

    Raises:
        InvalidRequest: no examples, an unreadable file, a malformed JSONL line (with its line number),
            or an example of an unknown shape.

    Example:
        >>> len(read_text_data(["Hello.", {"prompt": "Q: 1+1?", "completion": " 2"}]))
        2
    """
    if isinstance(data, (str, os.PathLike)):
        path = Path(os.fspath(data))
        if not path.is_file():
            raise InvalidRequest("data", os.fspath(data), "no such file", _DATA_FIX)
        if path.suffix.lower() not in (".txt", ".jsonl"):
            raise InvalidRequest("data", os.fspath(data), f"unknown file type {path.suffix!r}",
                                 "pass a .txt (one example per line, or blank-line separated) or a .jsonl file")
        try:
            examples = _read_txt(path) if path.suffix.lower() == ".txt" else _read_jsonl(path)
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidRequest("data", os.fspath(data), f"cannot read the file ({e})",
                                 "pass a readable UTF-8 file") from None
        if not examples:
            raise InvalidRequest("data", os.fspath(data), "the file holds no examples", "put some examples in it")
        return examples
    if isinstance(data, Mapping) or not isinstance(data, Sequence):
        raise InvalidRequest("data", type(data).__name__, "not a list of examples or a file path", _DATA_FIX)
    if not data:
        raise InvalidRequest("data", [], "no examples", "pass at least one example")
    return [_check_example(item, f"data[{i}]") for i, item in enumerate(data)]


# -- 3. tokens -------------------------------------------------------------------------------------------
def _render(tokenizer: Any, where: str, turns: Sequence[tuple[str, str]], *, generation_prompt: bool) -> str:
    messages = [{"role": r, "content": c} for r, c in turns]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja errors of the model's own template (e.g. "roles must alternate")
        raise InvalidRequest("data", where, f"the model's chat template rejects this conversation ({e})",
                             "fix the conversation, or use prompt/completion pairs") from None
    return str(text)


def _chat_segments(tokenizer: Any, ex: TextExample) -> list[tuple[str, bool]]:
    """The conversation as (text, scored) pieces: each assistant turn's text is scored, the rest is not.

    Renders the template on growing prefixes of the conversation; the text an assistant turn adds after
    the generation prompt is that turn. Needs a template that renders prefixes as prefixes (most do).
    """
    turns = ex.messages or ()
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, (role, _) in enumerate(turns):
        if role == "assistant":
            head = _render(tokenizer, ex.where, turns[:i], generation_prompt=True)
            if not head.startswith(done):
                break
            pieces.append((head[len(done):], False))
            done = head
        full = _render(tokenizer, ex.where, turns[:i + 1], generation_prompt=False)
        if not full.startswith(done):
            break
        pieces.append((full[len(done):], role == "assistant"))
        done = full
    else:
        return [(text, scored) for text, scored in pieces if text]
    raise InvalidRequest("data", ex.where, "the model's chat template does not render a conversation prefix by "
                         "prefix, so its assistant turns cannot be located", "use prompt/completion pairs")


def _tokenize(tokenizer: Any, ex: TextExample, eos: int | None) -> tuple[list[int], list[int]]:
    """Token ids and labels (``-100`` where not scored) of one example, before truncation."""
    def encode(text: str, special: bool) -> list[int]:
        return [int(t) for t in tokenizer(text, add_special_tokens=special)["input_ids"]]

    tail = [] if eos is None else [eos]
    if ex.text is not None:
        ids = encode(ex.text, True) + tail
        return ids, list(ids)
    if ex.prompt is not None and ex.completion is not None:
        # Tokenized apart, as at generation time: the prompt alone, then the tokens that follow it.
        head = encode(ex.prompt, True)
        body = encode(ex.completion, False) + tail
        return head + body, [_IGNORE] * len(head) + body
    ids, labels = [], []
    for text, scored in _chat_segments(tokenizer, ex):
        part = encode(text, False)
        ids += part
        labels += part if scored else [_IGNORE] * len(part)
    return ids, labels


@dataclass
class _Tokens:
    ids: list[list[int]]
    labels: list[list[int]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for ids, labels in zip(self.ids, self.labels, strict=True):
            h.update(json.dumps([ids, labels]).encode("ascii"))
        return "sha256:" + h.hexdigest()[:32]


def _tokenize_all(tokenizer: Any, examples: Sequence[TextExample], max_length: int) -> _Tokens:
    if any(ex.messages is not None for ex in examples) and not getattr(tokenizer, "chat_template", None):
        raise InvalidRequest("data", next(ex.where for ex in examples if ex.messages is not None),
                             "chat examples need a chat template, and the model's tokenizer has none",
                             "use prompt/completion pairs, or a model with a chat template")
    eos = tokenizer.eos_token_id
    tokens = _Tokens([], [])
    dropped = []
    for ex in examples:
        ids, labels = _tokenize(tokenizer, ex, None if eos is None else int(eos))
        ids, labels = ids[:max_length], labels[:max_length]
        if sum(1 for t in labels[1:] if t != _IGNORE) == 0:  # the first token is never predicted
            dropped.append(ex.where)
            continue
        tokens.ids.append(ids)
        tokens.labels.append(labels)
    if dropped:
        logger.warning("%d example(s) have no scored token within max_length=%d and are left out (first: %s)",
                       len(dropped), max_length, dropped[0])
    if not tokens.ids:
        raise InvalidRequest("max_length", max_length, "no example keeps a scored token after truncation",
                             "pass a larger max_length, or shorter prompts")
    return tokens


def _split(count: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) example indices: ``floor(count * eval_fraction)`` held out, chosen by the seed."""
    import torch

    n_eval = int(count * eval_fraction)
    order = torch.randperm(count, generator=torch.Generator("cpu").manual_seed(derive_seed(seed, "split")))
    return sorted(order[n_eval:].tolist()), sorted(order[:n_eval].tolist())


def _collate(ids: Sequence[list[int]], labels: Sequence[list[int]], pad: int, device: torch.device,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, labels), each (B, T)."""
    import torch

    width = max(len(r) for r in ids)
    x = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    y = torch.full((len(ids), width), _IGNORE, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(ids, labels, strict=True)):
        x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
        y[i, :len(lab)] = torch.tensor(lab, dtype=torch.long)
    return x.to(device), mask.to(device), y.to(device)


def _token_losses(model: Any, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens: logits at t predict the label at t + 1."""
    import torch.nn.functional as F  # noqa: N812

    logits = model(input_ids=x, attention_mask=mask).logits  # (B, T, V)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), y[:, 1:].flatten(), ignore_index=_IGNORE,
                           reduction=reduction)


# -- 4. the model ----------------------------------------------------------------------------------------
def _check_model(model: Any) -> tuple[str, Any, str]:
    """(model id, its config, an identity for resume checks) -- before any weight is loaded."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise InvalidRequest("model", model, "must be a model directory or a hub id", "pass model='path/to/gpt2'")
    name = os.fspath(model)
    from aigc._backends.text_transformers import BUILTIN_MODELS, _builtin_dir

    if name in BUILTIN_MODELS and not os.path.isdir(name):  # "default": the embedded text model
        name = _builtin_dir(name)
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
    steps: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    schedule: Schedule = "linear",
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    target_modules: str | Sequence[str] | None = None,
    eval_fraction: float = 0.1,
    eval_every: int | None = None,
    seed: int | None = 0,
    checkpoint_every: int | None = None,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    merge: bool = False,
    mixed_precision: bool = False,
    progress: bool | None = None,
    on_step: Callable[[TrainStep], object] | None = None,
    device: str | torch.device = "auto",
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
        steps: optimizer steps; or give ``epochs`` (default: 3 epochs).
        epochs: passes over the training split (``ceil(train examples / batch_size)`` steps each).
        lr: peak learning rate of AdamW (default 2e-4 for LoRA, 2e-5 for full fine-tuning).
        batch_size: examples per step.
        max_length: tokens per example at most; longer ones are cut (default: the model's context, at most 1024).
        schedule: ``"linear"`` (decay to 0), ``"cosine"`` or ``"constant"``, after ``warmup_steps`` of
            linear warm-up.
        warmup_steps: steps of linear warm-up from 0.
        weight_decay: AdamW's decoupled weight decay.
        max_grad_norm: clip the gradient's norm to this (``None``: no clipping).
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (the update is scaled by ``lora_alpha / lora_r``).
        lora_dropout: dropout on the LoRA branch's input.
        target_modules: layers that get LoRA: names (``["q_proj", "v_proj"]``) or ``"all-linear"``; ``None``
            (the default) is ``"all-linear"``: every linear layer but the output layer, for any architecture.
        eval_fraction: share of the examples held out (``floor(n * eval_fraction)``; 0 to 0.5) to measure
            the held-out loss before training, every ``eval_every`` steps and at the end.
        eval_every: steps between held-out measurements (default: at each checkpoint, and at the end).
        seed: the run's seed (split, data order, dropout, LoRA initialisation); ``None`` draws one from the
            OS and records it in the result.
        checkpoint_every: write a checkpoint to ``OUT/checkpoints/step-NNNNNN`` every this many steps.
        resume: ``True`` continues from the latest checkpoint in ``out`` (starting afresh when there is
            none); a checkpoint directory continues from that one. The arguments must be those of the
            interrupted run (``checkpoint_every``, ``progress`` and ``device`` may differ).
        overwrite: start again in a non-empty ``out`` (its checkpoints are removed first).
        merge: LoRA only: also write the base model with the adapter merged in, and the tokenizer, to
            ``OUT/merged``.
        mixed_precision: run the training forward passes under bfloat16 autocast (``torch.autocast``), as
            the pre-training recipes do: about twice as fast on CPUs with AVX512-BF16 or AMX and on recent
            GPUs. The weights, their gradients and the optimizer stay in float32; the cross-entropy and the
            held-out loss are computed in float32.
        progress: show a progress bar (default: in a terminal or notebook).
        on_step: called with a :class:`TrainStep` after every step; an exception from it stops the run
            (the last checkpoint stays, to resume from).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. Training runs in float32.

    Returns:
        A :class:`FinetuneResult` (also written to ``OUT/training.json``).

    Raises:
        InvalidRequest: a bad argument or bad data, before anything is trained.
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
    if steps is not None and epochs is not None:
        raise InvalidRequest("epochs", epochs, "steps and epochs both say how long to train", "pass one of them")
    check_int("steps", steps, minimum=1, fix="pass steps=100 or more", allow_none=True)
    check_int("epochs", epochs, minimum=1, fix="pass epochs=1 or more", allow_none=True)
    if lr is None:
        lr = 2e-4 if method == "lora" else 2e-5
    check_float("lr", lr, low=0.0, low_open=True, fix="pass a small positive learning rate, e.g. lr=2e-4")
    check_int("batch_size", batch_size, minimum=1, fix="pass batch_size=8")
    check_int("max_length", max_length, minimum=2, fix="pass max_length=512", allow_none=True)
    check_optimizer(schedule, warmup_steps, weight_decay, max_grad_norm)
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
    check_int("eval_every", eval_every, minimum=1, fix="pass eval_every=100, or None", allow_none=True)
    run_seed = check_seed(seed)
    check_int("checkpoint_every", checkpoint_every, minimum=1, fix="pass checkpoint_every=100, or None",
              allow_none=True)
    check_bool("merge", merge)
    check_bool("mixed_precision", mixed_precision)
    if merge and method != "lora":
        raise InvalidRequest("merge", merge, "full fine-tuning already writes a standalone model",
                             "leave merge out with method='full'")
    check_hooks(progress, on_step)
    out_dir = check_out(out, resume=resume, overwrite=overwrite)
    from aigc._runtime.device import resolve_device

    dev = resolve_device(device)
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
    tokens = _tokenize_all(tokenizer, examples, max_length)
    train_idx, eval_idx = _split(len(tokens.ids), float(eval_fraction), run_seed)
    if eval_fraction and not eval_idx:
        logger.info("eval_fraction=%s of %d examples holds out none; no held-out loss is measured",
                    eval_fraction, len(tokens.ids))
    per_epoch = -(-len(train_idx) // batch_size)
    total = steps if steps is not None else per_epoch * (epochs or 3)
    resume_from = resolve_resume(out_dir, resume)
    targets = _lora_targets(target_modules)
    run_config: dict[str, Any] = {
        "recipe": "finetune_text", "model": identity, "method": method, "data": tokens.fingerprint(),
        "steps": total, "lr": lr, "batch_size": batch_size, "max_length": max_length, "schedule": schedule,
        "warmup_steps": warmup_steps, "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
        "eval_fraction": eval_fraction, "eval_every": eval_every, "seed": run_seed,
        **({"mixed_precision": True} if mixed_precision else {}),  # absent when off: older checkpoints resume
        **({"lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
            "target_modules": targets} if method == "lora" else {}),
    }

    # 4. The model, loaded and wrapped with the run's seed (LoRA's initialisation draws random numbers).
    with seeded_rng(derive_seed(run_seed, "init"), dev):
        lm = _load_model(name, config)
        if method == "lora":
            lm = _wrap_lora(lm, r=lora_r, alpha=lora_alpha, dropout=float(lora_dropout), targets=targets)
    lm.to(dev)
    lm.train()
    params = [(n, p) for n, p in lm.named_parameters() if p.requires_grad]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    epoch_order: dict[int, list[int]] = {}

    def step_loss(step: int) -> torch.Tensor:
        import torch

        rows = [train_idx[i] for i in batch_indices(step, count=len(train_idx), batch_size=batch_size,
                                                    seed=run_seed, cache=epoch_order)]
        x, mask, y = _collate([tokens.ids[i] for i in rows], [tokens.labels[i] for i in rows], pad, dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mixed_precision):
            return _token_losses(lm, x, mask, y, "mean")  # the cross-entropy itself runs on float32 logits

    def eval_loss() -> float:
        import torch

        lm.eval()
        total_loss, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(eval_idx), batch_size):
                rows = eval_idx[start:start + batch_size]
                x, mask, y = _collate([tokens.ids[i] for i in rows], [tokens.labels[i] for i in rows], pad, dev)
                total_loss += float(_token_losses(lm, x, mask, y, "sum"))
                count += int((y[:, 1:] != _IGNORE).sum())
        lm.train()
        return total_loss / count

    # 5. Train.
    prepare_out(out_dir, overwrite=overwrite)
    spec = LoopSpec(out=out_dir, total_steps=total, lr=float(lr), schedule=schedule, warmup_steps=warmup_steps,
                    weight_decay=float(weight_decay), max_grad_norm=max_grad_norm, seed=run_seed, device=dev,
                    checkpoint_every=checkpoint_every, eval_every=eval_every, config=run_config,
                    progress=progress, desc=f"finetune text ({method})")
    outcome = run_loop(spec, params, step_loss, eval_loss=eval_loss if eval_idx else None,
                       resume_from=resume_from, on_step=on_step)

    # 6. Write the output into a staging folder beside it, then move it in; training.json comes last.
    lm.eval()
    staging = Path(tempfile.mkdtemp(prefix=".output-", dir=out_dir))
    merged = None
    try:
        lm.save_pretrained(os.fspath(staging))
        if method == "full":
            tokenizer.save_pretrained(os.fspath(staging))
        elif merge:
            merged = out_dir / "merged"
            base = lm.merge_and_unload()
            base.save_pretrained(os.fspath(staging / "merged"))
            tokenizer.save_pretrained(os.fspath(staging / "merged"))
        publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = FinetuneResult(
        output=out_dir, method=method, steps=total, train_losses=outcome.train_losses,
        eval_losses=outcome.eval_losses, duration_s=round(outcome.duration_s, 3), seed=run_seed,
        train_examples=len(train_idx), eval_examples=len(eval_idx), resumed_from=outcome.resumed_from,
        merged=merged, checkpoints=outcome.checkpoints)
    write_result(out_dir, result, run_config)
    logger.info("finetune_text: %r", result)
    return result
