"""Continuous batching for decoder-only language models: requests join and leave a running batch between steps.

This is the text engine of ``aigc serve`` (iteration-level scheduling, as in Orca, Yu et al. OSDI 2022). A text
backend builds a :class:`ContinuousBatcher` around its model (``TransformersTextGenerator.continuous_batcher()``);
the server only calls :meth:`~ContinuousBatcher.add`, :meth:`~ContinuousBatcher.step` and reads a few counters.

One :meth:`~ContinuousBatcher.step`:
    1. drop the rows whose request was cancelled (the client left, or its time ran out);
    2. admit the rows added since the last step: tokenize, run their prompts as one left-padded batch (prefill)
       into a fresh KV cache, choose their first tokens, then merge their cache into the running one -- both
       left-padded to a common length, so every row's last token stays in the last column;
    3. one decoding step for every running row: feed each row its last token at its own position (``position_ids``
       per row; padding hidden by the attention mask) and choose the next tokens;
    4. detokenize each row incrementally (:class:`~aigc.sampling.TextAssembler`, stop sequences), hand the new text
       to the row's sink, and remove the rows that ended (end of sequence, a stop sequence, ``max_new_tokens``);
       columns that only padding still uses are trimmed from the left of the cache.

Why a row's output does not depend on its neighbours: token choice is :class:`~aigc.sampling.TokenSampler`, whose
draw for a row is a pure function of the row's seed and its own position, and whose per-row settings travel with
the row when samplers are joined or split. What the neighbours change is only the padding and the shapes of the
matrix products, so logits agree to float rounding; the tokens are the same unless a draw falls within rounding
distance of a boundary between two tokens (the tests compare served outputs with the same requests run alone).

The KV cache is a ``DynamicCache`` whose full-attention layers keep preallocated buffers (``(B, heads, capacity,
head_dim)``, grown by half when full) so that a step writes one slot instead of concatenating the history; joining
and leaving copy the buffers once. Models with other cache layers (sliding windows, linear attention) or without
``position_ids`` are not batched continuously: :func:`supports_continuous_batching` says so, and the server then
runs their requests one after another.

Example:
    >>> batcher = gen.continuous_batcher()                          # doctest: +SKIP
    >>> batcher.add(aigc.TextRequest(prompt="Hi", seed=1), [1], sink)  # doctest: +SKIP
    >>> while batcher.active:                                        # doctest: +SKIP
    ...     batcher.step()
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from aigc._types import TextRequest
from aigc.errors import AigcError
from aigc.sampling.decode import TextAssembler
from aigc.sampling.sampler import SamplingParams, TokenSampler, text_watermark_on

__all__ = ["ContinuousBatcher", "RowSink", "supports_continuous_batching"]

logger = logging.getLogger(__name__)

_HEADROOM = 64  # cache slots allocated beyond what is needed now, so most steps write into free slots
_PREFIX_TOKENS = 8  # prompt tokens decoded with the output, for correct spacing (as the text backend does)


def forward_params(model: Any) -> Mapping[str, inspect.Parameter]:
    """The keyword parameters of the model's own ``forward`` (through a PEFT wrapper, whose ``forward`` takes
    ``**kwargs``): which cache keyword (``cache``, or the older ``past_key_values``), positions, logits_to_keep."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inspect.signature(base.forward).parameters


class RowSink(Protocol):
    """Where the rows of one request send their output (the server's job object).

    ``sample`` is the sample index within the request (prompt-major, as in :class:`aigc.TextResult`). Methods are
    called from the thread that calls :meth:`ContinuousBatcher.step`.
    """

    def cancelled(self) -> bool:
        """Whether the request's rows should stop (checked once per step)."""
        ...

    def prompt_tokens(self, counts: list[int]) -> None:
        """The number of prompt tokens of each prompt, once the request is tokenized."""
        ...

    def piece(self, sample: int, text: str) -> None:
        """New final text of one sample (pieces join to exactly the sample's text)."""
        ...

    def finish(self, sample: int, reason: str, token_ids: list[int]) -> None:
        """A sample ended: ``reason`` is ``"stop"`` or ``"length"``; ``token_ids`` are its generated tokens."""
        ...

    def fail(self, error: Exception) -> None:
        """The request cannot run (a bad prompt found while tokenizing, a model error); no other call follows."""
        ...


def supports_continuous_batching(model: Any) -> bool:
    """Whether ``model`` (a transformers causal LM) can join and leave rows: every cache layer is a plain
    full-attention ``DynamicLayer`` and its forward takes ``position_ids``."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if bool(getattr(model.config, "is_encoder_decoder", False)):
        return False
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return False
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # a config transformers cannot describe: do not guess
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def _batch_layer_class() -> type[Any]:
    """The cache layer class (made on first use: transformers is imported lazily)."""
    global _LAYER
    if _LAYER is not None:
        return _LAYER
    from transformers.cache_utils import DynamicLayer

    class BatchLayer(DynamicLayer):  # transformers' classes are untyped
        """A full-attention layer over preallocated buffers that rows can leave (:meth:`select`), that can be
        trimmed from the left (:meth:`trim`) and that two batches can share (:meth:`merge`)."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.length = 0

        def _adopt(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
            self.key_slots, self.value_slots, self.length = keys, values, length
            self.keys, self.values = keys[:, :, :length], values[:, :, :length]
            self.device = keys.device
            self.is_initialized = True

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            b, h, t, dk = key_states.shape
            self._adopt(key_states.new_zeros((b, h, t + _HEADROOM, dk)),
                        value_states.new_zeros((b, h, t + _HEADROOM, value_states.shape[-1])), 0)

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            capacity = self.key_slots.shape[-2]
            if end > capacity:  # grow by half (at least the headroom): amortized O(1) copies per step
                grow = max(end - capacity, capacity // 2, _HEADROOM)
                self.key_slots = torch.cat([self.key_slots, self.key_slots.new_zeros(
                    (*self.key_slots.shape[:2], grow, self.key_slots.shape[-1]))], dim=-2)
                self.value_slots = torch.cat([self.value_slots, self.value_slots.new_zeros(
                    (*self.value_slots.shape[:2], grow, self.value_slots.shape[-1]))], dim=-2)
            self.key_slots[:, :, self.length:end] = key_states
            self.value_slots[:, :, self.length:end] = value_states
            self._adopt(self.key_slots, self.value_slots, end)
            return self.key_slots[:, :, :end], self.value_slots[:, :, :end]

        def get_seq_length(self) -> int:
            return self.length

        def select(self, index: torch.Tensor) -> None:
            self._adopt(self.key_slots[index], self.value_slots[index], self.length)

        def trim(self, columns: int) -> None:
            self._adopt(self.key_slots[:, :, columns:], self.value_slots[:, :, columns:], self.length - columns)

        def merge(self, other: Any) -> None:
            """Rows of ``other`` after this layer's rows, both right-aligned at the longer length."""
            length = max(self.length, other.length)
            b1, b2 = self.key_slots.shape[0], other.key_slots.shape[0]
            h, dk, dv = self.key_slots.shape[1], self.key_slots.shape[-1], self.value_slots.shape[-1]
            keys = self.key_slots.new_zeros((b1 + b2, h, length + _HEADROOM, dk))
            values = self.value_slots.new_zeros((b1 + b2, h, length + _HEADROOM, dv))
            for rows, layer in ((slice(0, b1), self), (slice(b1, b1 + b2), other)):
                start = length - layer.length
                keys[rows, :, start:length] = layer.key_slots[:, :, :layer.length]
                values[rows, :, start:length] = layer.value_slots[:, :, :layer.length]
            self._adopt(keys, values, length)

    _LAYER = BatchLayer
    return BatchLayer


_LAYER: type[Any] | None = None


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    layer = _batch_layer_class()
    cache.layers = [layer() for _ in cache.layers]
    return cache


@dataclass
class _Row:
    """One sample of one request while it decodes."""

    sink: RowSink
    sample: int
    max_new_tokens: int
    assembler: TextAssembler
    tokens: list[int] = field(default_factory=list)


@dataclass
class _Batch:
    """Rows decoding together: their KV cache and, per row, the attention mask, the next position id, the token to
    feed next and the number of tokens generated (the sampler's position)."""

    rows: list[_Row]
    cache: Any
    mask: torch.Tensor  # (B, L) long, 1 for real tokens; L = the cache's length
    positions: torch.Tensor  # (B,) position id of the token fed next
    fed: torch.Tensor  # (B,) token fed at the next step
    generated: torch.Tensor  # (B,) tokens generated so far
    sampler: TokenSampler


class ContinuousBatcher:
    """A running batch of a decoder-only model; requests join it and leave it between steps.

    Args:
        model: a transformers causal LM (see :func:`supports_continuous_batching`).
        encode: ``request -> (token ids per sample, prompt index per sample)`` with the backend's checks
            (chat template, context length); raises :class:`~aigc.errors.InvalidRequest`.
        decode: token ids -> text (special tokens skipped).
        eos_token_ids: the tokens that end a row.
        pad_token_id: fed for nothing (rows never feed padding here), used to pad prompts.
        max_rows: the most rows decoding at once.
        make_record: ``(request, seeds, duration_s) -> Record``, the backend's provenance record.

    Only one thread may call :meth:`add` and :meth:`step` (the server's model thread).
    """

    def __init__(self, model: Any, *, encode: Callable[[TextRequest], tuple[list[list[int]], list[int]]],
                 decode: Callable[[list[int]], str], eos_token_ids: Collection[int], pad_token_id: int,
                 max_rows: int, make_record: Callable[[TextRequest, list[int], float], Any]) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, not {max_rows}")
        params = forward_params(model)
        self.model = model
        self.encode = encode
        self.decode = decode
        self.eos = frozenset(int(e) for e in eos_token_ids)
        self.pad = int(pad_token_id)
        self.max_rows = int(max_rows)
        self.make_record = make_record
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = "logits_to_keep" in params
        self._joining: list[tuple[TextRequest, list[int], RowSink]] = []
        self._batch: _Batch | None = None
        #: decoding steps run (prefills not counted) and tokens generated, since creation
        self.steps = 0
        self.tokens = 0
        #: rows in the last decoding step
        self.last_batch_rows = 0

    # -- what the server reads --------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows decoding now, plus rows added and not admitted yet."""
        running = len(self._batch.rows) if self._batch is not None else 0
        return running + sum(r.total_samples for r, _, _ in self._joining)

    @property
    def free_rows(self) -> int:
        return self.max_rows - self.rows

    @property
    def active(self) -> bool:
        return self._batch is not None or bool(self._joining)

    # -- joining ------------------------------------------------------------------------------------
    def add(self, request: TextRequest, seeds: Sequence[int], sink: RowSink) -> None:
        """Queue ``request`` (one row per sample, ``seeds`` one per sample) to join at the next step."""
        if len(seeds) != request.total_samples:
            raise ValueError(f"{len(seeds)} seeds for {request.total_samples} samples")
        if request.total_samples > self.max_rows:
            raise ValueError(f"{request.total_samples} samples do not fit in {self.max_rows} rows")
        self._joining.append((request, list(seeds), sink))

    def _prefill(self, joining: list[tuple[TextRequest, list[int], RowSink]]) -> _Batch | None:
        """2. Tokenize and prefill the newcomers as one batch; choose their first tokens."""
        rows: list[_Row] = []
        ids: list[list[int]] = []
        samplers: list[TokenSampler] = []
        device = next(self.model.parameters()).device
        for request, seeds, sink in joining:
            if sink.cancelled():
                continue
            try:
                encoded, prompt_index = self.encode(request)
            except AigcError as e:  # a bad prompt (too long, no chat template): only this request fails
                sink.fail(e)
                continue
            counts: dict[int, int] = {}
            for row_ids, p in zip(encoded, prompt_index, strict=True):
                counts[p] = len(row_ids)
            sink.prompt_tokens([counts[p] for p in sorted(counts)])
            params = SamplingParams.from_request(request)
            for sample, (row_ids, seed) in enumerate(zip(encoded, seeds, strict=True)):
                rows.append(_Row(sink=sink, sample=sample, max_new_tokens=request.max_new_tokens,
                                 assembler=TextAssembler(self.decode, stop=request.stop,
                                                         prefix_ids=row_ids[-_PREFIX_TOKENS:])))
                ids.append(row_ids)
                # One sampler per row, primed with the row's own prompt (no padding), then joined: exactly the
                # state the row has when it runs alone.
                sampler = TokenSampler([params], [seed] if params.do_sample else None, eos_token_ids=self.eos,
                                       watermark=text_watermark_on(request))
                samplers.append(sampler)
        if not rows:
            return None
        width = max(len(r) for r in ids)
        input_ids = torch.full((len(ids), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(ids):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (b, T)
        cache = _new_cache(self.model)
        logits = self._forward(input_ids, positions, mask, cache)  # (b, V)
        for sampler, r in zip(samplers, ids, strict=True):
            sampler.prime(torch.tensor([r], dtype=torch.long, device=device), int(logits.shape[-1]))
        sampler = samplers[0] if len(samplers) == 1 else TokenSampler.join(samplers)
        zeros = torch.zeros(len(rows), dtype=torch.long, device=device)
        first = sampler(logits, zeros)  # (b,) position 0 of every newcomer
        batch = _Batch(rows=rows, cache=cache, mask=mask, positions=mask.sum(-1), fed=first,
                       generated=zeros + 1, sampler=sampler)
        self._deliver(batch, first.tolist())
        return batch

    def _merge(self, new: _Batch) -> None:
        old = self._batch
        if old is None:
            self._batch = new
            return
        length = max(old.mask.shape[1], new.mask.shape[1])

        def pad_left(mask: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(mask, (length - mask.shape[1], 0))

        for mine, theirs in zip(old.cache.layers, new.cache.layers, strict=True):
            mine.merge(theirs)
        self._batch = _Batch(rows=old.rows + new.rows, cache=old.cache,
                             mask=torch.cat([pad_left(old.mask), pad_left(new.mask)]),
                             positions=torch.cat([old.positions, new.positions]), fed=torch.cat([old.fed, new.fed]),
                             generated=torch.cat([old.generated, new.generated]),
                             sampler=TokenSampler.join([old.sampler, new.sampler]))

    # -- one step -------------------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                  self._cache_kw: cache, "use_cache": True}
        if self._keep_kw:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1, :]  # type: ignore[no-any-return]

    def step(self) -> int:
        """Drop cancelled rows, admit new ones, decode one token for every row; return the rows still running."""
        with torch.inference_mode():
            batch = self._batch
            if batch is not None:  # 1.
                self._keep(batch, [i for i, row in enumerate(batch.rows) if not row.sink.cancelled()])
            joining, self._joining = self._joining, []
            if joining:  # 2.
                new = self._prefill(joining)
                if new is not None:
                    self._keep(new, [i for i, row in enumerate(new.rows) if row.tokens and not self._ended(row)])
                    if new.rows:
                        self._merge(new)
            batch = self._batch
            if batch is None:
                return 0
            # 3. one token for every running row, each at its own position
            mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
            logits = self._forward(batch.fed[:, None], batch.positions[:, None], mask, batch.cache)
            tokens = batch.sampler(logits, batch.generated)
            batch.mask, batch.fed = mask, tokens
            batch.positions += 1
            batch.generated += 1
            self.steps += 1
            self.last_batch_rows = len(batch.rows)
            self._deliver(batch, tokens.tolist())  # 4.
            self._keep(batch, [i for i, row in enumerate(batch.rows) if not self._ended(row)])
            return len(self._batch.rows) if self._batch is not None else 0

    def _ended(self, row: _Row) -> bool:
        return row.assembler.stopped or len(row.tokens) >= row.max_new_tokens or bool(
            row.tokens and row.tokens[-1] in self.eos)

    def _deliver(self, batch: _Batch, tokens: list[int]) -> None:
        """4. Detokenize each row's new token; tell the sink about text and ended rows."""
        self.tokens += len(tokens)
        for row, token in zip(batch.rows, tokens, strict=True):
            row.tokens.append(token)
            reason: str | None = None
            if token in self.eos:
                reason = "stop"
            else:
                piece, stopped = row.assembler.add(token)
                if piece:
                    row.sink.piece(row.sample, piece)
                if stopped:
                    reason = "stop"
            if reason is None and len(row.tokens) >= row.max_new_tokens:
                reason = "length"
            if reason is not None:
                tail = row.assembler.flush()
                if tail:
                    row.sink.piece(row.sample, tail)
                row.sink.finish(row.sample, reason, list(row.tokens))

    def _keep(self, batch: _Batch, keep: list[int]) -> None:
        """Keep only the rows ``keep`` of ``batch`` (the running batch or newcomers), trimming unused columns."""
        if len(keep) == len(batch.rows):
            return
        if not keep:
            if batch is self._batch:
                self._batch = None
            batch.rows = []
            return
        index = torch.tensor(keep, dtype=torch.long, device=batch.mask.device)
        for layer in batch.cache.layers:
            layer.select(index)
        batch.rows = [batch.rows[i] for i in keep]
        batch.mask, batch.positions = batch.mask[index], batch.positions[index]
        batch.fed, batch.generated = batch.fed[index], batch.generated[index]
        batch.sampler = batch.sampler.select(keep)
        unused = int(batch.mask.any(dim=0).long().argmax())  # leading columns that are padding in every row
        if unused:
            for layer in batch.cache.layers:
                layer.trim(unused)
            batch.mask = batch.mask[:, unused:]

    def record(self, request: TextRequest, seeds: list[int], duration_s: float) -> Any:
        """The provenance record of a finished request (the backend's own record, as ``generate`` makes it)."""
        return self.make_record(request, seeds, duration_s)

