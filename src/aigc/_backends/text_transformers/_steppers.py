"""The model side of the decode loop: a causal model over preallocated KV slots (eager), over transformers'
``StaticCache`` with a compiled step, or an encoder-decoder -- each a :class:`aigc.sampling.Stepper`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from aigc._backends._text_batching import forward_params

if TYPE_CHECKING:
    from aigc._backends.text_transformers import TransformersTextGenerator

__all__ = ["CausalStepper", "Seq2SeqStepper", "StaticStepper", "bucket", "slot_cache"]


def slot_cache(model: Any, capacity: int) -> Any:
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


class CausalStepper:
    """A decoder-only model with a KV cache (:func:`_slot_cache`); left padding handled with the mask and
    position ids."""

    def __init__(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> None:
        params = forward_params(model)
        self.model = model
        self.input_ids = input_ids
        self.mask = attention_mask  # (B, T), 1 for real tokens
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.cache = slot_cache(model, input_ids.shape[1] + max_new_tokens)
        self.use_positions = "position_ids" in params
        self.keep_kw = "logits_to_keep" in params
        self.positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        # Without padding the model's default positions (0..T-1) are the same thing; the mask is always passed
        # (a model that sees its pad token in the input without one warns that results may be wrong).
        self.padded = bool((attention_mask == 0).any())
        self.length = int(input_ids.shape[1])  # tokens in the cache after the next forward's input is added
        # the whole mask, allocated once: step t reads its first T + t + 1 columns
        self.full_mask = torch.cat([attention_mask, attention_mask.new_ones(
            (attention_mask.shape[0], max_new_tokens))], dim=1)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": ids, self.cache_kw: self.cache, "use_cache": True,
                                  "attention_mask": mask}
        if self.padded and self.use_positions:
            kwargs["position_ids"] = positions
        if self.keep_kw:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1, :]  # type: ignore[no-any-return]

    def prefill(self) -> torch.Tensor:
        return self._forward(self.input_ids, self.positions, self.mask)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.positions = self.positions[:, -1:] + 1  # (B, 1)
        self.length += 1
        return self._forward(tokens[:, None], self.positions, self.full_mask[:, :self.length])


def bucket(n: int, minimum: int) -> int:
    """The next power of two >= ``max(n, minimum)``: compiled shapes come from a small set, not every size."""
    return 1 << (max(n, minimum) - 1).bit_length()


class StaticStepper:
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
        batch = bucket(rows, 1)
        length = bucket(width + max_new_tokens, 256)
        extra = batch - rows
        if extra:  # padding rows: copies of row 0
            input_ids = torch.cat([input_ids, input_ids[:1].expand(extra, -1)])
            attention_mask = torch.cat([attention_mask, attention_mask[:1].expand(extra, -1)])
        self.gen = gen
        self.input_ids = input_ids
        self.mask = torch.cat([attention_mask, attention_mask.new_ones((batch, length - width))], dim=1)  # (Bb, L)
        self.positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (Bb, T)
        self.cache = gen._static_cache(batch, length)
        self.params = forward_params(gen.lm)

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


class Seq2SeqStepper:
    """An encoder-decoder model: the encoder runs once; the decoder steps with an EncoderDecoderCache."""

    def __init__(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, start_id: int) -> None:
        from transformers import DynamicCache, EncoderDecoderCache

        params = forward_params(model)
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
