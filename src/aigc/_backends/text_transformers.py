"""Text backend ``transformers``: causal and seq2seq language models, decoded by aigc's own seeded loop.

The model runs through transformers (``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM``) with its KV
cache; token choice, seeds, stop sequences and streaming are aigc's (:mod:`aigc.sampling`), so every
sample has its own ``torch.Generator`` and sample *i* of a batch equals a single run with its seed.

Stages of one ``generate``:
    1. tokenize the prompts (chat conversations through the tokenizer's chat template) and check lengths;
    2. build one row per sample, prompt-major, left-padded (right-padded encoder input for seq2seq);
    3. run the decode loop (prefill, then one token per step with the KV cache);
    4. detokenize incrementally per row, applying stop sequences; emit token events.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aigc._generator import Generator, LoadOptions
from aigc._results import FinishReason, TextResult
from aigc._runtime.assets import read_json_object
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import TextRequest
from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.sampling.decode import DecodeLoop, TextAssembler
from aigc.sampling.processors import PAD
from aigc.sampling.sampler import make_sampler

__all__ = ["TransformersTextGenerator"]

logger = logging.getLogger(__name__)

_LM_ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM", "WithLMHead")
_PREFIX_TOKENS = 8  # prompt tokens decoded with the output, for correct spacing (see TextAssembler)
_SYNC_EVERY = 8  # decoding steps between two reads of the tokens on an accelerator, when nobody watches each one


def _slot_cache(model: Any, capacity: int) -> Any:
    """A ``DynamicCache`` whose full-attention layers write into buffers allocated once for ``capacity``
    tokens (the prompt plus ``max_new_tokens``), instead of concatenating a new tensor at every step.

    transformers' ``DynamicLayer`` copies the whole key/value history at each step (``torch.cat``): for 64 rows
    of a 6-layer model that is more than 100 MB a step. Here each step writes one slot and returns a view.
    Sliding-window and other layer kinds keep transformers' own implementation.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):  # type: ignore[no-untyped-call]  # transformers' classes are untyped
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.length = 0

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            self.device = key_states.device
            b, h, _, dk = key_states.shape
            self.key_slots = key_states.new_empty((b, h, capacity, dk))
            self.value_slots = value_states.new_empty((b, h, capacity, value_states.shape[-1]))
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.key_slots.shape[-2]:  # more than planned (never in aigc's own loop): grow
                grow = end - self.key_slots.shape[-2] + capacity
                self.key_slots = torch.cat([self.key_slots, self.key_slots.new_empty(
                    (*self.key_slots.shape[:2], grow, self.key_slots.shape[-1]))], dim=-2)
                self.value_slots = torch.cat([self.value_slots, self.value_slots.new_empty(
                    (*self.value_slots.shape[:2], grow, self.value_slots.shape[-1]))], dim=-2)
            self.key_slots[:, :, self.length:end] = key_states
            self.value_slots[:, :, self.length:end] = value_states
            self.length = end
            self.keys, self.values = self.key_slots[:, :, :end], self.value_slots[:, :, :end]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

    cache = DynamicCache(config=model.config)
    cache.layers = [SlotLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


class _CausalStepper:
    """A decoder-only model with a KV cache (:func:`_slot_cache`); left padding handled with the mask and
    position ids."""

    def __init__(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> None:
        params = inspect.signature(model.forward).parameters
        self.model = model
        self.input_ids = input_ids
        self.mask = attention_mask  # (B, T), 1 for real tokens
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.cache = _slot_cache(model, input_ids.shape[1] + max_new_tokens)
        self.use_positions = "position_ids" in params
        self.keep_kw = "logits_to_keep" in params
        self.positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        # Without padding the model's own defaults (a full mask, positions 0..T-1) are the same thing;
        # leaving them out saves a mask concatenation and the model's mask checks at every step.
        self.padded = bool((attention_mask == 0).any())
        self.length = int(input_ids.shape[1])  # tokens in the cache after the next forward's input is added
        if self.padded:  # the whole mask, allocated once: step t reads its first T + t + 1 columns
            self.full_mask = torch.cat([attention_mask, attention_mask.new_ones(
                (attention_mask.shape[0], max_new_tokens))], dim=1)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": ids, self.cache_kw: self.cache, "use_cache": True}
        if mask is not None:
            kwargs["attention_mask"] = mask
            if self.use_positions:
                kwargs["position_ids"] = positions
        if self.keep_kw:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1, :]  # type: ignore[no-any-return]

    def prefill(self) -> torch.Tensor:
        return self._forward(self.input_ids, self.positions, self.mask if self.padded else None)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions = self.positions[:, -1:] + 1  # (B, 1)
        self.length += 1
        return self._forward(tokens[:, None], self.positions, self.full_mask[:, :self.length] if self.padded else None)


def _bucket(n: int, minimum: int) -> int:
    """The next power of two >= ``max(n, minimum)``: compiled shapes come from a small set, not every size."""
    return 1 << (max(n, minimum) - 1).bit_length()


class _StaticStepper:
    """A decoder-only model with transformers' ``StaticCache``, its decode step compiled.

    Shapes are bucketed so that a new prompt length, ``max_new_tokens`` or batch size rarely means a new
    compilation: rows are padded to a power of two (the padding rows repeat row 0; their tokens are dropped)
    and the cache holds a power-of-two number of tokens (>= 256). The attention mask is built once per batch
    at its full length -- the prompt's padding, then ones: the causal mask hides the slots not written yet --
    so each step's inputs keep their shapes and live on the device, as CUDA graphs need. The prompt runs
    eagerly (its length varies); each step after it runs the compiled forward.
    """

    def __init__(self, gen: TransformersTextGenerator, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 max_new_tokens: int) -> None:
        rows, width = input_ids.shape
        self.rows = rows
        batch = _bucket(rows, 1)
        length = _bucket(width + max_new_tokens, 256)
        extra = batch - rows
        if extra:  # padding rows: copies of row 0
            input_ids = torch.cat([input_ids, input_ids[:1].expand(extra, -1)])
            attention_mask = torch.cat([attention_mask, attention_mask[:1].expand(extra, -1)])
        self.gen = gen
        self.input_ids = input_ids
        self.mask = torch.cat([attention_mask, attention_mask.new_ones((batch, length - width))], dim=1)  # (Bb, L)
        self.positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (Bb, T)
        self.cache = gen._static_cache(batch, length)
        self.params = inspect.signature(gen.lm.forward).parameters

    def _kwargs(self, ids: torch.Tensor, positions: torch.Tensor) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": self.mask, "use_cache": True,
                                  ("cache" if "cache" in self.params else "past_key_values"): self.cache}
        if "position_ids" in self.params:
            kwargs["position_ids"] = positions
        if "logits_to_keep" in self.params:
            kwargs["logits_to_keep"] = 1
        return kwargs

    def prefill(self) -> torch.Tensor:
        out = self.gen.lm(**self._kwargs(self.input_ids, self.positions))
        return out.logits[: self.rows, -1, :]  # type: ignore[no-any-return]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions = self.positions[:, -1:] + 1  # (Bb, 1)
        extra = self.input_ids.shape[0] - self.rows
        ids = torch.cat([tokens, tokens[:1].expand(extra)]) if extra else tokens
        logits: torch.Tensor = self.gen._compiled_forward()(**self._kwargs(ids[:, None], self.positions)).logits
        return logits[: self.rows, -1, :].clone()  # a CUDA graph's output is overwritten by its next replay


class _Seq2SeqStepper:
    """An encoder-decoder model: the encoder runs once; the decoder steps with an EncoderDecoderCache."""

    def __init__(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, start_id: int) -> None:
        from transformers import DynamicCache, EncoderDecoderCache

        params = inspect.signature(model.forward).parameters
        self.model = model
        self.mask = attention_mask
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        self.encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        self.start = torch.full((input_ids.shape[0], 1), start_id, dtype=torch.long, device=input_ids.device)

    def _forward(self, decoder_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(encoder_outputs=self.encoded, attention_mask=self.mask, decoder_input_ids=decoder_ids,
                         use_cache=True, **{self.cache_kw: self.cache})
        return out.logits[:, -1, :]  # type: ignore[no-any-return]

    def prefill(self) -> torch.Tensor:
        return self._forward(self.start)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._forward(tokens[:, None])


COMPILE_BACKENDS = ("inductor", "cudagraphs", "eager", "aot_eager")


def _compile_backend(value: object, device: torch.device) -> Any:
    """The load option ``compile``: ``None`` (the default) compiles on CUDA only, ``True`` always (inductor),
    ``False`` never; a backend name or a backend callable is passed to ``torch.compile`` (``"eager"`` traces
    without generating code, which finds graph breaks quickly)."""
    if value is None:
        return "inductor" if device.type == "cuda" else None
    if isinstance(value, bool):
        return "inductor" if value else None
    if (isinstance(value, str) and value in COMPILE_BACKENDS) or (callable(value) and not isinstance(value, type)):
        return value
    raise InvalidRequest("compile", value, "must be True, False, None, a torch.compile backend name or callable",
                         f"pass compile=True, or one of {', '.join(COMPILE_BACKENDS)}")


def _check_adapter(options: LoadOptions) -> Path | None:
    """The LoRA adapter directory asked for (``adapter=``), checked before anything loads."""
    value = options.extra.get("adapter")
    merge = options.extra.get("merge_adapter", False)
    if not isinstance(merge, bool):
        raise InvalidRequest("merge_adapter", merge, "must be True or False", "pass merge_adapter=True")
    if value is None:
        if merge:
            raise InvalidRequest("merge_adapter", merge, "there is no adapter to merge", "pass adapter= too")
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidRequest("adapter", value, "must be a directory path", "pass adapter='path/to/lora-dir'")
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(value))))
    if not (path / "adapter_config.json").is_file():
        raise ModelNotFound(f"adapter={os.fspath(value)!r}: no adapter_config.json there. Fix: pass the directory "
                            "that finetune_text(method='lora') or peft's save_pretrained wrote")
    return path


def _apply_adapter(lm: Any, adapter: Path, *, merge: bool) -> Any:
    try:
        import peft
    except ImportError:
        raise BackendUnavailable("loading a LoRA adapter needs peft", extra="train") from None
    model = peft.PeftModel.from_pretrained(lm, os.fspath(adapter))
    return model.merge_and_unload() if merge else model


@dataclass
class _Run:
    """The state of one batch while it decodes (filled in by ``_decode``)."""

    assemblers: list[TextAssembler] = field(default_factory=list)
    reasons: list[FinishReason] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)


# generation_config.json key -> TextRequest field, for the settings a model's authors recommend.
_GENERATION_DEFAULTS = ("max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
                        "repetition_penalty")


def _request_defaults(gen_config: Any) -> dict[str, Any]:
    """The sampling settings written in the model's generation config (only those set explicitly, as
    ``to_diff_dict`` reports them); they fill in the keywords a call leaves out."""
    if gen_config is None or not hasattr(gen_config, "to_diff_dict"):
        return {}
    explicit = gen_config.to_diff_dict()
    return {k: explicit[k] for k in _GENERATION_DEFAULTS if explicit.get(k) is not None}


BUILTIN_MODELS = {"default": "text_default"}  # built-in name -> folder under aigc/assets


def _builtin_dir(name: str) -> str:
    """The folder of a model shipped in the package (``"default"``: the embedded character-level GPT-2)."""
    from aigc._runtime.assets import asset_dir

    return str(asset_dir(BUILTIN_MODELS[name], marker="config.json", what=f"the built-in text model {name!r}"))


class TransformersTextGenerator(Generator[TextRequest, TextResult]):
    """Causal and seq2seq language models through ``transformers``.

    Loads any local directory or hub id that ``AutoModelForCausalLM`` or ``AutoModelForSeq2SeqLM`` loads,
    with safetensors only unless ``allow_pickle=True`` and ``trust_remote_code=False`` unless given.

    Example:
        >>> gen = aigc.load("text", "path/to/gpt2-dir")  # doctest: +SKIP
        >>> gen.generate("今天天气真好，", max_new_tokens=50, num_outputs=5, seed=42).texts  # doctest: +SKIP
    """

    modality = "text"
    backend_name = "transformers"
    request_type = TextRequest
    supported_params = frozenset(
        {"max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
         "repetition_penalty", "stop", "watermark"}  # watermark: make_sampler applies it
    )
    load_options = frozenset({"max_batch_size", "adapter", "merge_adapter", "compile"})
    builtin_models = frozenset(BUILTIN_MODELS)

    def __init__(self, *, model: Any, tokenizer: Any, model_id: str, options: LoadOptions, weights: str | None,
                 revision: str | None) -> None:
        # `compile` is a speed setting, not part of how a result was made: records leave it out.
        recorded = {k: v for k, v in options.extra.items() if k != "compile"}
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, revision=revision,
                         weights=weights, options=recorded)
        self.lm = model
        self.tokenizer = tokenizer
        self.is_seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
        self.max_batch_size = int(options.extra.get("max_batch_size", 64))
        #: torch.compile backend of the static-cache decode path, or None for the eager path (see _compile_backend)
        self.compile_backend = _compile_backend(options.extra.get("compile"), options.device)
        self._static: dict[tuple[int, int], Any] = {}  # (batch, cache length) bucket -> reusable static cache
        self._compiled: Any = None
        gen_config = getattr(model, "generation_config", None)
        self.request_defaults = _request_defaults(gen_config)
        eos = getattr(gen_config, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = getattr(gen_config, "pad_token_id", None)
        if pad is None:
            pad = next(iter(sorted(self.eos_ids)), 0)
        self.pad_id: int = int(pad)
        start = getattr(gen_config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(model.config, "decoder_start_token_id", None)
        self.start_id: int = int(start if start is not None else self.pad_id)
        self.max_positions: int | None = next(
            (getattr(model.config, k) for k in ("max_position_embeddings", "n_positions")
             if isinstance(getattr(model.config, k, None), int)), None)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        data = read_json_object(path / "config.json")
        if data is None or (path / "model_index.json").exists():
            return False
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES,
            MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES,
        )

        model_type = data.get("model_type")
        if model_type in MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES or (
                model_type in MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES):
            return False  # MusicGen, Bark, SpeechT5, ...: the audio backend's ("...ForConditionalGeneration" too)
        archs = data.get("architectures") or []
        if any(str(a).endswith(_LM_ARCH_SUFFIXES) for a in archs):
            return True
        if not model_type:
            return False
        return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (
            model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> TransformersTextGenerator:
        if options.offload != "none":
            raise InvalidRequest("offload", options.offload, "the transformers text backend keeps the model on one "
                                 "device", "pass offload='none' (or a smaller dtype such as 'bfloat16')")
        mbs = options.extra.get("max_batch_size", 64)
        if not isinstance(mbs, int) or isinstance(mbs, bool) or mbs < 1:
            raise InvalidRequest("max_batch_size", mbs, "must be an int >= 1", "pass max_batch_size=16")
        _compile_backend(options.extra.get("compile"), options.device)  # checked before anything loads
        adapter = _check_adapter(options)
        if adapter is not None:  # record the absolute path, so that replay works from any directory
            options = dataclasses.replace(options, extra={**options.extra, "adapter": str(adapter)})
        model_id = model
        if model in BUILTIN_MODELS and not os.path.isdir(model):
            model = _builtin_dir(model)
        local = os.path.isdir(model)
        weights = None
        if local:
            files = weight_files(Path(model), allow_pickle=options.allow_pickle)
            if adapter is not None:
                files += weight_files(adapter, allow_pickle=options.allow_pickle)
            weights = fingerprint_files(files)
        import transformers

        common: dict[str, Any] = {"revision": options.revision, "trust_remote_code": options.trust_remote_code}
        try:
            config = transformers.AutoConfig.from_pretrained(model, **common)
        except (OSError, ValueError) as e:
            where = "local directory" if local else "local directory, and the hub could not provide it"
            raise ModelNotFound(f"model={model!r}: no usable {where}: {e}") from None
        auto = (transformers.AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False)
                else transformers.AutoModelForCausalLM)
        try:
            lm = auto.from_pretrained(model, config=config, dtype=options.dtype,
                                      use_safetensors=None if options.allow_pickle else True, **common)
            tokenizer = transformers.AutoTokenizer.from_pretrained(model, **common)
        except OSError as e:
            if "safetensors" in str(e).lower() and not options.allow_pickle:
                raise UnsafeModelFile(f"model={model!r} has no safetensors weights: {e}. Fix: pass allow_pickle=True "
                                      "if you trust the source") from None
            raise ModelNotFound(f"model={model!r}: {e}") from None
        if adapter is not None:
            lm = _apply_adapter(lm, adapter, merge=bool(options.extra.get("merge_adapter", False)))
        lm.to(options.device)  # type: ignore[arg-type]  # transformers' stubs type .to() oddly
        lm.eval()
        revision = options.revision or getattr(config, "_commit_hash", None)
        return cls(model=lm, tokenizer=tokenizer, model_id=model_id, options=options, weights=weights,
                   revision=revision)

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [self.lm]

    def _to(self, device: torch.device) -> None:
        self.lm.to(device)

    def _close(self) -> None:
        self.lm = None
        self.tokenizer = None
        self._static.clear()
        self._compiled = None

    # -- the compiled decode path ----------------------------------------------------------------------
    _STATIC_CACHES = 4  # static caches kept for reuse (a new cache object would mean a new compilation)

    def _static_cache(self, batch: int, length: int) -> Any:
        """A ``StaticCache`` for (batch, length), reused across calls (reset, not reallocated)."""
        from transformers import StaticCache

        key = (batch, length)
        cache = self._static.pop(key, None)
        if cache is None:
            cache = StaticCache(config=self.lm.config, max_cache_len=length)
        else:
            with torch.inference_mode():  # its tensors were made in inference mode, by the first prefill
                cache.reset()
        self._static[key] = cache  # most recently used last
        while len(self._static) > self._STATIC_CACHES:
            self._static.pop(next(iter(self._static)))
        return cache

    def _compiled_forward(self) -> Any:
        """The model's forward under ``torch.compile`` (CUDA graphs on CUDA with inductor), made once."""
        if self._compiled is None:
            assert self.compile_backend is not None
            mode = "reduce-overhead" if self.device.type == "cuda" and self.compile_backend == "inductor" else None
            compiled: Any = torch.compile(self.lm.__call__, backend=self.compile_backend, mode=mode, fullgraph=False)
            if self.device.type == "cuda":
                def call(**kwargs: Any) -> Any:
                    torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
                    return compiled(**kwargs)

                self._compiled = call
            else:
                self._compiled = compiled
        return self._compiled

    def _uses_static_cache(self) -> bool:
        return self.compile_backend is not None and not self.is_seq2seq

    def _generate(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> TextResult:
        rows, prompt_index = self._rows(request)
        run = _Run()
        for _ in self._decode(request, rows, seeds, events, run):
            pass
        return TextResult(texts=[a.text for a in run.assemblers], seeds=seeds, finish_reasons=run.reasons,
                          token_ids=run.tokens, prompt_index=prompt_index)

    def _stream(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> Iterator[str]:
        rows, _ = self._rows(request)
        run = _Run()
        for _, piece in self._decode(request, rows, seeds, events, run, streaming=True):
            if piece:
                yield piece
        tail = run.assemblers[0].flush()
        if tail:
            yield tail

    # -- the stages ------------------------------------------------------------------------------
    def _encode(self, prompt: str | list[dict[str, str]], index: int) -> list[int]:
        tok = self.tokenizer
        if isinstance(prompt, list):
            if not getattr(tok, "chat_template", None):
                raise InvalidRequest("prompt", prompt, f"{self.model_id!r} has no chat template",
                                     "pass a plain string prompt, or use a chat model")
            text = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(tok(prompt)["input_ids"])
        if not ids and not self.is_seq2seq:
            start = tok.bos_token_id if tok.bos_token_id is not None else next(iter(sorted(self.eos_ids)), None)
            if start is None:
                raise InvalidRequest(f"prompt[{index}]", prompt, "empty, and the model has no start token",
                                     "pass some text to continue")
            ids = [start]
        return ids

    def _rows(self, request: TextRequest) -> tuple[list[list[int]], list[int]]:
        """1-2. Token ids for each sample (prompt-major) and the prompt each continues."""
        encoded = [self._encode(p, i) for i, p in enumerate(request.prompts())]
        if self.max_positions is not None and not self.is_seq2seq:
            longest = max(len(ids) for ids in encoded)
            if longest + request.max_new_tokens > self.max_positions:
                raise InvalidRequest(
                    "max_new_tokens", request.max_new_tokens,
                    f"the longest prompt has {longest} tokens and the model's context is {self.max_positions}",
                    f"pass max_new_tokens <= {max(self.max_positions - longest, 0)} or a shorter prompt")
        n = request.samples_per_prompt
        rows = [ids for ids in encoded for _ in range(n)]
        return rows, [i for i in range(len(encoded)) for _ in range(n)]

    def _batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pad rows into (input_ids, attention_mask, context_ids with -1 at padding)."""
        width = max(len(r) for r in rows)
        left = not self.is_seq2seq  # decoders pad on the left so every row ends at the last column
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            span = slice(width - len(r), width) if left else slice(0, len(r))
            ids[i, span] = torch.tensor(r, dtype=torch.long)
            mask[i, span] = 1
        context = ids.masked_fill(mask == 0, PAD)
        return ids.to(self.device), mask.to(self.device), context

    def _decode(self, request: TextRequest, rows: list[list[int]], seeds: list[int], events: EventEmitter,
                run: _Run, *, streaming: bool = False) -> Iterator[tuple[int, str]]:
        """3-4. Decode all rows in chunks; yield (sample index, new text) as text becomes final."""
        from aigc._seeds import sampler_version

        decode_fn = self._decoder()
        version = sampler_version()
        chunk = 1 if request.deterministic else self.max_batch_size
        # The host reads the tokens every step where someone watches them (streaming, an event callback, stop
        # sequences decided early) or where reading is free (the CPU); otherwise every few steps.
        per_step = streaming or events.has_callback or self.device.type == "cpu" or version == 1
        sync_every = 1 if per_step else _SYNC_EVERY
        events.set_total(request.max_new_tokens * -(-len(rows) // chunk))  # steps x chunks
        events.emit("start", total=request.max_new_tokens)
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            ids, mask, context = self._batch(part)
            if self.is_seq2seq:
                stepper: Any = _Seq2SeqStepper(self.lm, ids, mask, self.start_id)
                context = torch.full((len(part), 1), self.start_id, dtype=torch.long)
            elif self._uses_static_cache():
                if self._compiled is None:
                    events.describe(f"aigc {self.modality} (compiling the decode step, once per model)")
                stepper = _StaticStepper(self, ids, mask, request.max_new_tokens)
            else:
                stepper = _CausalStepper(self.lm, ids, mask, request.max_new_tokens)
            asms = [TextAssembler(decode_fn, stop=request.stop,
                                  prefix_ids=[] if self.is_seq2seq else r[-_PREFIX_TOKENS:]) for r in part]
            run.assemblers += asms
            sampler = make_sampler(request, seeds[start:start + chunk], eos_token_ids=self.eos_ids, version=version)
            loop = DecodeLoop(stepper, sampler=sampler, context_ids=context, eos_token_ids=self.eos_ids,
                              max_new_tokens=request.max_new_tokens, pad_token_id=self.pad_id, sync_every=sync_every)
            with torch.inference_mode():
                for step, chosen in loop:
                    for j, tok in enumerate(chosen):
                        if tok is None or tok in self.eos_ids:
                            continue
                        piece, stopped = asms[j].add(tok)
                        if stopped:
                            loop.finish(j, "stop")
                        events.emit("token", step=step + 1, total=request.max_new_tokens, text=piece,
                                    sample=start + j)
                        if piece:
                            yield start + j, piece
                    events.emit("step", step=step + 1, total=request.max_new_tokens, advance=1)
                    if events.cancelled:
                        loop.cancel()
            run.reasons += [r or "length" for r in loop.reasons]
            run.tokens += loop.tokens
            if events.cancelled:  # samples not started yet are cancelled too
                for _ in rows[start + len(part):]:
                    run.assemblers.append(TextAssembler(decode_fn))
                    run.reasons.append("cancelled")
                    run.tokens.append([])
                break
        events.emit("end", total=request.max_new_tokens)

    def _decoder(self) -> Any:
        tok = self.tokenizer

        def decode(ids: list[int]) -> str:
            return str(tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

        return decode
