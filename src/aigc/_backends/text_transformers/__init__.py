"""Text backend ``transformers``: causal, seq2seq and masked language models, sampled by aigc's own seeded loops.

The model runs through transformers (``AutoModelForCausalLM`` / ``AutoModelForSeq2SeqLM``, BERT2BERT's
``EncoderDecoderModel`` among them) with its KV cache; token choice, seeds, stop sequences and streaming are
aigc's (:mod:`aigc.sampling`), so every sample has its own seed and sample *i* of a batch equals a single run
with its seed. Masked language models (BERT, RoBERTa: ``AutoModelForMaskedLM``) fill ``[MASK]`` instead; their
generator is :class:`~aigc._backends.text_transformers._masked.TransformersMaskedLMGenerator`, which
:meth:`TransformersTextGenerator.load` returns for them (see :func:`model_kind`).

Stages of one ``generate``:
    1. tokenize the prompts (chat conversations through the tokenizer's chat template) and check lengths;
    2. build one row per sample, prompt-major, left-padded (right-padded encoder input for seq2seq);
    3. run the decode loop (prefill, then one token per step with the KV cache);
    4. detokenize incrementally per row, applying stop sequences; emit token events.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from aigc._backends._text_batching import ContinuousBatcher, supports_continuous_batching
from aigc._backends._transformers_common import TransformersGenerator
from aigc._backends.text_transformers._steppers import CausalStepper, Seq2SeqStepper, StaticStepper
from aigc._generator import LoadOptions
from aigc._options import BatchOptions
from aigc._results import FinishReason, TextResult
from aigc._runtime.assets import read_json_object
from aigc._runtime.events import EventEmitter
from aigc._types import TextRequest
from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound
from aigc.sampling.decode import DecodeLoop, TextAssembler
from aigc.sampling.processors import PAD
from aigc.sampling.sampler import make_sampler

__all__ = ["TransformersTextGenerator"]

logger = logging.getLogger(__name__)

_LM_ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSeq2SeqLM", "WithLMHead")
_MASKED_ARCH_SUFFIXES = ("ForMaskedLM",)
_PREFIX_TOKENS = 8  # prompt tokens decoded with the output, for correct spacing (see TextAssembler)
_SYNC_EVERY = 8  # decoding steps between two reads of the tokens on an accelerator, when nobody watches each one


COMPILE_BACKENDS = ("inductor", "cudagraphs", "eager", "aot_eager")


def _compile_backend(value: object, device: torch.device | None) -> Any:
    """The load option ``compile``: ``None`` (the default) compiles on CUDA only, ``True`` always (inductor),
    ``False`` never; a backend name or a backend callable is passed to ``torch.compile`` (``"eager"`` traces
    without generating code, which finds graph breaks quickly)."""
    if value is None:
        return "inductor" if device is not None and device.type == "cuda" else None
    if isinstance(value, bool):
        return "inductor" if value else None
    if (isinstance(value, str) and value in COMPILE_BACKENDS) or (callable(value) and not isinstance(value, type)):
        return value
    raise InvalidRequest("compile", value, "must be True, False, None, a torch.compile backend name or callable",
                         f"pass compile=True, or one of {', '.join(COMPILE_BACKENDS)}")


@dataclass(frozen=True, kw_only=True)
class TextOptions(BatchOptions):
    """Load options of the transformers text backend.

    Attributes:
        max_batch_size: rows decoded together, at most (default 64).
        adapter: a LoRA adapter folder (``finetune_text(method="lora")`` or peft's ``save_pretrained``), recorded
            as an absolute path.
        merge_adapter: merge the adapter into the weights at load (faster generation, same output).
        compile: the decode path: ``None`` compiles on CUDA only, ``True``/``False`` always/never, or a
            ``torch.compile`` backend name or callable (see :func:`_compile_backend`).
    """

    adapter: str | os.PathLike[str] | None = None
    merge_adapter: bool = False
    compile: Any = None

    def check(self) -> None:
        super().check()
        if not isinstance(self.merge_adapter, bool):
            raise InvalidRequest("merge_adapter", self.merge_adapter, "must be True or False",
                                 "pass merge_adapter=True")
        if self.adapter is None and self.merge_adapter:
            raise InvalidRequest("merge_adapter", True, "there is no adapter to merge", "pass adapter= too")
        if self.adapter is not None and not isinstance(self.adapter, (str, os.PathLike)):
            raise InvalidRequest("adapter", self.adapter, "must be a directory path", "pass adapter='path/to/lora-dir'")
        _compile_backend(self.compile, None)


def _check_adapter(options: LoadOptions) -> Path | None:
    """The LoRA adapter directory asked for (``adapter=``), checked before anything loads."""
    value = TextOptions.of(options).adapter
    if value is None:
        return None
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


class TransformersTextGenerator(TransformersGenerator[TextRequest, TextResult]):
    """Causal and seq2seq language models through ``transformers``.

    Loads any local directory or hub id that ``AutoModelForCausalLM`` or ``AutoModelForSeq2SeqLM`` loads,
    with safetensors only unless ``allow_pickle=True`` and ``trust_remote_code=False`` unless given. For a masked
    LM (``AutoModelForMaskedLM``), :meth:`load` and :meth:`wrap` return its subclass
    :class:`~aigc._backends.text_transformers._masked.TransformersMaskedLMGenerator`.

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
    options_type = TextOptions
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
        opts = TextOptions.of(options)
        self.max_batch_size = opts.max_batch_size
        #: torch.compile backend of the static-cache decode path, or None for the eager path (see _compile_backend)
        self.compile_backend = _compile_backend(opts.compile, options.device)
        self._static: dict[tuple[int, int], Any] = {}  # (batch, cache length) bucket -> reusable static cache
        self._compiled: Any = None
        gen_config = getattr(model, "generation_config", None)
        self.request_defaults = _request_defaults(gen_config)
        # BERT2BERT (transformers' EncoderDecoderModel, model_type "encoder-decoder") keeps its ids and sizes in
        # the encoder's and the decoder's own configs; a tokenizer without an end-of-sequence token (BERT's) ends
        # with [SEP] and starts with [CLS], the convention of transformers' documentation (Rothe et al. 2020).
        composite = getattr(model.config, "model_type", None) == "encoder-decoder"
        decoder_config = getattr(model.config, "decoder", None) if composite else None
        eos = getattr(gen_config, "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        if eos is None and composite:
            eos = _first_id(decoder_config, "eos_token_id", tokenizer.sep_token_id)
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
        if start is None and composite:
            start = _first_id(decoder_config, "decoder_start_token_id", _first_id(
                decoder_config, "bos_token_id", tokenizer.cls_token_id if tokenizer.cls_token_id is not None
                else tokenizer.bos_token_id))
        self.start_id: int = int(start if start is not None else self.pad_id)
        self.max_positions: int | None = _max_positions(model.config)
        #: encoder-decoder models: the longest prompt (encoder) and output (decoder) their position tables hold,
        #: where the config states them (BERT2BERT's absolute positions); None where positions are relative (T5)
        self.encoder_positions: int | None = _max_positions(model.config.encoder) if composite else None
        self.decoder_positions: int | None = _max_positions(decoder_config)

    @property
    def model(self) -> Any:
        """The transformers model itself (an escape hatch, as ``gen.pipe`` is for diffusers backends; the same
        object as ``gen.lm``). Changing its weights changes what the generator makes and what records claim."""
        return self.lm

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        data = read_json_object(path / "config.json")
        if data is None or (path / "model_index.json").exists():
            return False
        return model_kind(data) is not None

    @classmethod
    def wraps(cls, obj: Any) -> bool:
        config = getattr(obj, "config", None)
        if not type(obj).__module__.startswith(("transformers.", "peft.")) or config is None:
            return False
        return model_kind(config, architectures=[type(obj).__name__]) is not None

    @classmethod
    def wrap(cls, obj: Any, *, tokenizer: Any = None) -> TransformersTextGenerator:
        if tokenizer is None:
            raise InvalidRequest("tokenizer", None, "a transformers language model needs its tokenizer to read "
                                 "prompts", "pass tokenizer=AutoTokenizer.from_pretrained(...) (the model's own)")
        param = next(obj.parameters())
        options = LoadOptions(device=param.device, dtype=param.dtype)
        kind = model_kind(obj.config, architectures=[type(obj).__name__])
        return _generator_class(kind)(
            model=obj.eval(), tokenizer=tokenizer, model_id=str(getattr(obj, "name_or_path", "") or "wrapped"),
            options=options, weights=None, revision=getattr(obj.config, "_commit_hash", None))

    @classmethod
    def precheck(cls, model: str, request: Any) -> None:
        """A masked language model's prompts must hold a mask: checked on the folder's config and tokenizer
        files, before the weights load."""
        path = Path(_builtin_dir(model) if model in BUILTIN_MODELS and not os.path.isdir(model) else model)
        data = read_json_object(path / "config.json")
        if data is None or model_kind(data) != "masked" or not isinstance(request, TextRequest):
            return
        from aigc._backends.text_transformers._masked import check_has_mask, saved_mask_token

        mask = saved_mask_token(path)
        for i, prompt in enumerate(request.prompts()):
            if isinstance(prompt, str):
                check_has_mask(prompt, mask, field="prompt" if isinstance(request.prompt, str) else f"prompt[{i}]")


    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> TransformersTextGenerator:
        cls.refuse_offload(options, "pass offload='none' (or a smaller dtype such as 'bfloat16')")
        adapter = _check_adapter(options)  # and the other options: all checked before anything loads
        if adapter is not None:  # record the absolute path, so that replay works from any directory
            options = dataclasses.replace(options, extra={**options.extra, "adapter": str(adapter)},
                                          backend=dataclasses.replace(TextOptions.of(options), adapter=str(adapter)))
        model_id = model
        if model in BUILTIN_MODELS and not os.path.isdir(model):
            model = _builtin_dir(model)
        weights = None
        if os.path.isdir(model):
            _, weights = cls.local_weights([Path(model), *([adapter] if adapter is not None else [])], options)
        import transformers

        config = cls.load_config(model, options)
        kind = model_kind(config)
        auto = {"seq2seq": transformers.AutoModelForSeq2SeqLM,
                "masked": transformers.AutoModelForMaskedLM}.get(kind or "", transformers.AutoModelForCausalLM)
        common = cls.common_kwargs(options)
        with cls.loading_errors(model, options):
            lm = auto.from_pretrained(model, config=config, dtype=options.dtype,
                                      use_safetensors=cls.safetensors_only(options), **common)
            tokenizer = transformers.AutoTokenizer.from_pretrained(model, **common)
        if adapter is not None:
            lm = _apply_adapter(lm, adapter, merge=TextOptions.of(options).merge_adapter)
        cls.place([lm], options.device)
        return _generator_class(kind)(model=lm, tokenizer=tokenizer, model_id=model_id, options=options,
                                      weights=weights, revision=cls.revision_of(options, config))

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [self.lm]

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

    # -- serving -----------------------------------------------------------------------------------
    def continuous_batcher(self, *, max_rows: int | None = None) -> ContinuousBatcher | None:
        """A running batch that requests join and leave between decoding steps (``aigc serve``'s text engine).

        Each row keeps its own seed and settings, so a request gives the tokens it gives alone. Returns ``None``
        where the model cannot be batched that way (encoder-decoder models, sliding-window or other non-standard
        caches); serve those one request at a time. The batcher runs eagerly, whatever the ``compile`` option.

        Args:
            max_rows: the most rows decoding at once (default: the load option ``max_batch_size``).

        Example:
            >>> batcher = aigc.load("text").continuous_batcher(max_rows=16)  # doctest: +SKIP
        """
        self._check_open()
        if not supports_continuous_batching(self.lm):
            return None
        return ContinuousBatcher(self.lm, encode=self._rows, decode=self._decoder(), eos_token_ids=self.eos_ids,
                                 pad_token_id=self.pad_id, max_rows=max_rows or self.max_batch_size,
                                 make_record=self._record)

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
        longest = max(len(ids) for ids in encoded)
        if self.max_positions is not None and not self.is_seq2seq and (
                longest + request.max_new_tokens > self.max_positions):
            raise InvalidRequest(
                "max_new_tokens", request.max_new_tokens,
                f"the longest prompt has {longest} tokens and the model's context is {self.max_positions}",
                f"pass max_new_tokens <= {max(self.max_positions - longest, 0)} or a shorter prompt")
        if self.encoder_positions is not None and longest > self.encoder_positions:
            raise InvalidRequest("prompt", f"<{longest} tokens>", f"the model's encoder reads at most "
                                 f"{self.encoder_positions} tokens", "pass a shorter prompt")
        if self.decoder_positions is not None and request.max_new_tokens > self.decoder_positions:
            raise InvalidRequest("max_new_tokens", request.max_new_tokens, f"the model's decoder holds "
                                 f"{self.decoder_positions} positions (the start token and the tokens fed back)",
                                 f"pass max_new_tokens <= {self.decoder_positions}")
        n = request.samples_per_prompt
        rows = [ids for ids in encoded for _ in range(n)]
        return rows, [i for i in range(len(encoded)) for _ in range(n)]

    @property
    def _pads_left(self) -> bool:
        """Decoders pad on the left, so every row ends at the last column; encoders on the right."""
        return not self.is_seq2seq

    def _batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pad rows into (input_ids, attention_mask, context_ids with -1 at padding)."""
        width = max(len(r) for r in rows)
        left = self._pads_left
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
        chunk = self._chunk_size(request)
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
                stepper: Any = Seq2SeqStepper(self.lm, ids, mask, self.start_id)
                context = torch.full((len(part), 1), self.start_id, dtype=torch.long)
            elif self._uses_static_cache():
                if self._compiled is None:
                    events.describe(f"aigc {self.modality} (compiling the decode step, once per model)")
                stepper = StaticStepper(self, ids, mask, request.max_new_tokens)
            else:
                stepper = CausalStepper(self.lm, ids, mask, request.max_new_tokens)
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


def _first_id(config: Any, name: str, default: int | None) -> int | None:
    """``config.<name>`` where it is set (a sub-config of an encoder-decoder model), else ``default``."""
    value = getattr(config, name, None)
    return int(value) if isinstance(value, int) else default


def _max_positions(config: Any) -> int | None:
    """The longest sequence a config's position table holds (``max_position_embeddings`` / ``n_positions``)."""
    return next((getattr(config, k) for k in ("max_position_embeddings", "n_positions")
                 if isinstance(getattr(config, k, None), int)), None)


ModelKind = Literal["causal", "seq2seq", "masked"]


def model_kind(config: Any, *, architectures: list[str] | None = None) -> ModelKind | None:
    """What a transformers config (a ``config.json`` mapping or a config object) describes, for this backend:
    ``"seq2seq"`` (``is_encoder_decoder``: T5, BART, BERT2BERT's ``EncoderDecoderModel``), ``"causal"`` (an LM head
    that continues text), ``"masked"`` (a masked LM that fills ``[MASK]``: BERT, RoBERTa, ...), or ``None`` (not a
    language model this backend drives: an audio model, an encoder without an LM head).

    The architectures decide (``architectures`` if given, e.g. the class of an object in memory, else the
    config's); without them (or with ``...ForPreTraining``) its ``model_type``: a type with both kinds of head
    (``bert``, ``roberta``) is masked unless the config says ``is_decoder``, as ``BertLMHeadModel`` needs.

    Example:
        >>> model_kind({"model_type": "bert", "architectures": ["BertForMaskedLM"]})
        'masked'
        >>> model_kind({"model_type": "encoder-decoder", "is_encoder_decoder": True})
        'seq2seq'
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES,
        MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES,
    )

    def get(name: str) -> Any:
        return config.get(name) if isinstance(config, dict) else getattr(config, name, None)

    model_type = get("model_type")
    archs = [str(a) for a in (architectures or get("architectures") or [])]
    if model_type in MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES or (
            model_type in MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES):
        return None  # MusicGen, Bark, SpeechT5, ...: the audio backend's ("...ForConditionalGeneration" too)
    seq2seq = bool(get("is_encoder_decoder"))
    if any(a.endswith(_LM_ARCH_SUFFIXES) for a in archs):
        return "seq2seq" if seq2seq else "causal"
    if not seq2seq and any(a.endswith(_MASKED_ARCH_SUFFIXES) for a in archs):
        return "masked"
    if not model_type:
        return None
    if model_type in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES or (
            seq2seq and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return "seq2seq"
    pretraining = any(a.endswith("ForPreTraining") for a in archs)  # BERT's MLM head with another one
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and (not archs or pretraining) and not (
            get("is_decoder") and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return "masked"
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def _generator_class(kind: ModelKind | None) -> type[TransformersTextGenerator]:
    """The generator class of a model kind: masked LMs have their own."""
    if kind == "masked":
        from aigc._backends.text_transformers._masked import TransformersMaskedLMGenerator

        return TransformersMaskedLMGenerator
    return TransformersTextGenerator
