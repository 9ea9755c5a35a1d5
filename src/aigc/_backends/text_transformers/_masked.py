"""Masked language models (BERT, RoBERTa, ...: ``AutoModelForMaskedLM``) in the transformers text backend.

A masked LM does not continue a prompt: it fills the prompt's mask tokens (``今天天气真[MASK]。``). The literal
``[MASK]`` works with any such model; so does the tokenizer's own mask token (``<mask>`` for RoBERTa).

Stages of one ``generate``:
    1. tokenize each prompt (``[MASK]`` written as the tokenizer's mask token) and find its masks; a prompt
       without one is an :class:`~aigc.errors.InvalidRequest`;
    2. without sampling (``do_sample=False``, the default of keyword calls), a prompt with one mask runs once and
       lists its ``num_fills`` most likely fills (:func:`aigc.sampling.top_fills`, what transformers' ``fill-mask``
       pipeline returns); a prompt with several masks is filled greedily, one mask at a time, left to right;
    3. with sampling, each sample fills its masks one at a time, left to right, each token drawn by the seeded
       :class:`~aigc.sampling.TokenSampler` (temperature, top-k, top-p, min-p) from the sample's own seed and
       the number of masks it has filled (:class:`aigc.sampling.FillLoop`): the same seed gives the same fill
       alone or in any batch;
    4. write each fill into the prompt text where its mask was (the rest of the prompt is kept as written).

There is no continuation, so ``max_new_tokens``, ``min_new_tokens``, ``repetition_penalty`` and ``stop`` do not
apply and are refused, as is ``stream()``; the text watermark (made while sampling a continuation) does not
apply either. The model runs eagerly, one forward pass per fill step over the whole sequence (a bidirectional
model has no KV cache to reuse).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from aigc._backends.text_transformers import TransformersTextGenerator
from aigc._generator import LoadOptions
from aigc._results import Fill, FinishReason, TextResult
from aigc._runtime.events import EventEmitter
from aigc._types import TextRequest
from aigc.errors import InvalidRequest
from aigc.sampling.infill import FillLoop, top_fills
from aigc.sampling.sampler import SamplingParams, TokenSampler

__all__ = ["MASK", "TransformersMaskedLMGenerator", "check_has_mask", "saved_mask_token"]

#: The mask as a prompt may always write it, whatever the tokenizer's own mask token is.
MASK = "[MASK]"
#: Fills listed per sample when ``num_fills`` is not given (transformers' ``fill-mask`` pipeline's ``top_k``).
DEFAULT_NUM_FILLS = 5

# request field -> why a masked LM refuses it (it fills masks in place; nothing follows the prompt)
_NO_CONTINUATION = {
    "max_new_tokens": "a masked language model adds no tokens: it fills the prompt's masks, one token each",
    "min_new_tokens": "a masked language model adds no tokens: it fills the prompt's masks, one token each",
    "repetition_penalty": "a masked language model fills masks in place; there is no continuation to penalize",
    "stop": "a masked language model fills masks in place; there is no continuation to stop",
    "watermark": "the text watermark is made while sampling a continuation; masked-LM fills carry none",
}


def check_has_mask(prompt: str, mask_token: str | None, *, field: str) -> None:
    """Raise :class:`InvalidRequest` for a prompt with no mask (neither ``[MASK]`` nor ``mask_token``)."""
    if MASK in prompt or (mask_token and mask_token in prompt):
        return
    own = f" (or {mask_token!r}, this tokenizer's own)" if mask_token and mask_token != MASK else ""
    raise InvalidRequest(field, prompt, "has no mask token: a masked language model (BERT) fills masks, it does "
                         "not continue text", f"write {MASK}{own} where a token is missing, e.g. '今天天气真{MASK}。'")


def saved_mask_token(path: Path) -> str | None:
    """The mask token a saved tokenizer names (``tokenizer_config.json`` or ``special_tokens_map.json``), or
    ``None`` where neither says (cheap: read before the weights load)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        value = data.get("mask_token") if isinstance(data, dict) else None
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value:
            return value
    return None


class TransformersMaskedLMGenerator(TransformersTextGenerator):
    """A masked language model (``AutoModelForMaskedLM``): fills ``[MASK]`` with its most likely tokens, or samples
    the masks one at a time with aigc's seeds.

    :meth:`TransformersTextGenerator.load` returns one for a model whose config describes a masked LM (see
    :func:`~aigc._backends.text_transformers.model_kind`). Keyword calls default to ``do_sample=False``.

    Example:
        >>> gen = aigc.load("text", "path/to/bert-base-chinese")  # doctest: +SKIP
        >>> res = gen.generate("今天天气真[MASK]。", num_fills=3)  # doctest: +SKIP
        >>> [(f.token, round(f.score, 2)) for f in res.fills[0]]  # doctest: +SKIP
        [('好', 0.41), ('冷', 0.1), ('热', 0.09)]
        >>> gen.generate("[MASK][MASK]真好。", do_sample=True, seed=1, num_outputs=3).texts  # doctest: +SKIP
    """

    supported_params = frozenset({"do_sample", "temperature", "top_k", "top_p", "min_p", "num_fills"})

    def __init__(self, *, model: Any, tokenizer: Any, model_id: str, options: LoadOptions, weights: str | None,
                 revision: str | None) -> None:
        super().__init__(model=model, tokenizer=tokenizer, model_id=model_id, options=options, weights=weights,
                         revision=revision)
        if tokenizer.mask_token_id is None:
            raise InvalidRequest("model", model_id, "a masked language model whose tokenizer has no mask token",
                                 "load the model with its own tokenizer (its tokenizer_config.json names mask_token)")
        self.mask_id = int(tokenizer.mask_token_id)
        self.mask_token = str(tokenizer.mask_token)
        self.vocab_size = int(model.config.vocab_size)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        prefix = getattr(getattr(backend, "model", None), "continuing_subword_prefix", None)
        #: WordPiece's "##": a fill that continues a word is written without it
        self.subword_prefix: str | None = prefix if isinstance(prefix, str) and prefix else None
        # The model's best fills unless a call asks to sample (a typed request says what it says).
        self.request_defaults = {"do_sample": False}
        self._mask_pattern = re.compile("|".join(re.escape(m) for m in sorted({MASK, self.mask_token}, key=len,
                                                                               reverse=True)))

    # -- Generator hooks -------------------------------------------------------------------------
    def _check_supported(self, req: Any) -> None:
        try:
            super()._check_supported(req)
        except InvalidRequest as e:
            if e.field in _NO_CONTINUATION:
                raise InvalidRequest(e.field, e.value, _NO_CONTINUATION[e.field], "leave it out") from None
            raise

    def _stream(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> Iterator[str]:
        raise InvalidRequest("stream", self.model_id, "a masked language model fills its masks in place; there is "
                             "no continuation to stream", "call generate() (the filled text comes whole)")

    def continuous_batcher(self, *, max_rows: int | None = None) -> None:
        """``None``: masked LMs are served one request at a time (they have no decoding steps to join)."""
        self._check_open()

    # -- the stages ------------------------------------------------------------------------------
    def _encode_masked(self, prompt: Any, field: str) -> list[int]:
        """1. The prompt's token ids (``[MASK]`` as the tokenizer's mask token), checked for masks and length."""
        if not isinstance(prompt, str):
            raise InvalidRequest(field, prompt, "a masked language model fills a plain text with masks; chat "
                                 "messages have no place for one", f"pass a string such as '今天天气真{MASK}。'")
        check_has_mask(prompt, self.mask_token, field=field)
        text = prompt.replace(MASK, self.mask_token) if self.mask_token != MASK else prompt
        ids = [int(i) for i in self.tokenizer(text)["input_ids"]]
        if self.mask_id not in ids:  # the tokenizer did not read the mask as its token (e.g. glued to a word)
            raise InvalidRequest(field, prompt, f"the tokenizer does not read a {MASK} in it as its mask token",
                                 f"write {MASK} as a word of its own, e.g. '今天天气真{MASK}。'")
        if self.max_positions is not None and len(ids) > self.max_positions:
            raise InvalidRequest(field, f"<{len(ids)} tokens>", f"the model reads at most {self.max_positions} "
                                 "tokens", "pass a shorter prompt")
        return ids

    def _check_mode(self, request: TextRequest, masks: list[int]) -> None:
        """The fields that only make sense in one mode, checked before the model runs."""
        if request.do_sample:
            if request.num_fills is not None:
                raise InvalidRequest("num_fills", request.num_fills, "lists the most likely fills, which sampling "
                                     "does not compute", "pass do_sample=False, or num_outputs= for several samples")
            return
        if request.top_k:  # transformers' fill-mask pipeline calls the number of fills top_k
            raise InvalidRequest("top_k", request.top_k, "without sampling nothing is filtered; the number of fills "
                                 "listed is num_fills", f"pass num_fills={request.top_k}")
        if request.num_fills is not None:
            if 1 not in masks:
                counts = ", ".join(str(m) for m in sorted(set(masks)))
                raise InvalidRequest("num_fills", request.num_fills, f"lists the fills of a prompt with one mask, and "
                                     f"the prompts have {counts}", "write one mask, or leave num_fills out")
            if request.num_fills > self.vocab_size:
                raise InvalidRequest("num_fills", request.num_fills, f"the model knows {self.vocab_size} tokens",
                                     f"pass num_fills <= {self.vocab_size}")

    @property
    def _pads_left(self) -> bool:
        return False  # an encoder: rows start at position 0, padding after them

    def _masked_batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ``(input_ids, attention_mask, masked)``, on the model's device."""
        ids, attention, _ = self._batch(rows)
        return ids, attention, (ids == self.mask_id) & (attention == 1)

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids, attention_mask=attention).logits  # type: ignore[no-any-return]  # (B, T, V)

    def _generate(self, request: TextRequest, seeds: list[int], events: EventEmitter) -> TextResult:
        prompts = request.prompts()
        whole = isinstance(request.prompt, str) or not isinstance(prompts[0], str)  # a string, or a conversation
        encoded = [self._encode_masked(p, "prompt" if whole else f"prompt[{i}]") for i, p in enumerate(prompts)]
        masks = [ids.count(self.mask_id) for ids in encoded]
        self._check_mode(request, masks)
        n = request.samples_per_prompt
        chunk = self._chunk_size(request)
        k = min(request.num_fills or DEFAULT_NUM_FILLS, self.vocab_size)
        # Without sampling every sample of a prompt is the same: each prompt runs once (2.); sampled rows are
        # one per sample (3.).
        if request.do_sample:
            listed: list[int] = []
            looped = list(range(len(seeds)))  # rows = samples
            row_ids = [encoded[i // n] for i in looped]
        else:
            listed = [p for p, m in enumerate(masks) if m == 1]
            looped = [p for p, m in enumerate(masks) if m != 1]  # rows = prompts
            row_ids = encoded
        parts = [(True, listed[s:s + chunk]) for s in range(0, len(listed), chunk)] + [
            (False, looped[s:s + chunk]) for s in range(0, len(looped), chunk)]
        total = sum(1 if top else max(masks[r // n if request.do_sample else r] for r in rows) for top, rows in parts)
        events.set_total(total)
        events.emit("start", total=total)
        tokens: dict[int, list[int]] = {}
        scores: dict[int, float] = {}
        fills: dict[int, list[Fill]] = {}
        done = 0
        with torch.inference_mode():
            for top, rows in parts:
                ids, attention, masked = self._masked_batch([row_ids[r] for r in rows])
                if top:  # 2. one forward; the fills of the one mask
                    column = masked.long().argmax(dim=1)  # (B,)
                    logits = self._forward(ids, attention)[torch.arange(len(rows), device=ids.device), column]
                    probs, best = top_fills(logits, k)  # (B, k)
                    for j, r in enumerate(rows):
                        fills[r] = [self._fill(prompts[r], [int(t)], encoded[r], float(p))
                                    for p, t in zip(probs[j].tolist(), best[j].tolist(), strict=True)]
                        tokens[r], scores[r] = [fills[r][0].token_id], fills[r][0].score
                    done += 1
                    events.emit("step", step=done, total=total, advance=1)
                else:  # 2-3. one mask at a time
                    sampler = TokenSampler([SamplingParams.from_request(request)] * len(rows),
                                           [seeds[r] for r in rows]) if request.do_sample else None
                    loop = FillLoop(self._forward, ids, attention, masked, sampler=sampler)
                    for _ in loop:
                        done += 1
                        events.emit("step", step=done, total=total, advance=1)
                        if events.cancelled:
                            raise self._cancelled(done, total, "fill steps")
                    for j, r in enumerate(rows):
                        tokens[r], scores[r] = loop.tokens[j], loop.scores[j]
                if events.cancelled:
                    raise self._cancelled(done, total, "fill steps")
        events.emit("end", step=total, total=total)
        # 4. per sample
        source = list(range(len(seeds))) if request.do_sample else [i // n for i in range(len(seeds))]
        prompt_of = [i // n for i in range(len(seeds))]
        texts = [fills[s][0].text if s in fills else self._text(prompts[p], tokens[s], encoded[p])
                 for s, p in zip(source, prompt_of, strict=True)]
        reasons: list[FinishReason] = ["stop"] * len(seeds)
        return TextResult(texts=texts, seeds=seeds, finish_reasons=reasons, token_ids=[list(tokens[s]) for s in source],
                          prompt_index=prompt_of, scores=[scores[s] for s in source],
                          fills=[list(fills.get(s, [])) for s in source] if fills else [])

    # -- 4. text -----------------------------------------------------------------------------------
    def _piece(self, token_id: int) -> str:
        """A fill as it is written into the prompt (WordPiece's ``##`` dropped: the piece continues a word)."""
        piece = str(self.tokenizer.decode([token_id]))
        if self.subword_prefix and piece.startswith(self.subword_prefix) and len(piece) > len(self.subword_prefix):
            return piece[len(self.subword_prefix):]
        return piece

    def _text(self, prompt: str, fill_ids: list[int], ids: list[int]) -> str:
        """The prompt with its masks, left to right, replaced by ``fill_ids``; where the prompt's masks as written
        do not match the tokens (an unusual tokenizer), the decoded filled ids."""
        spans = list(self._mask_pattern.finditer(prompt))
        if len(spans) == ids.count(self.mask_id) == len(fill_ids):
            out, last = [], 0
            for span, token in zip(spans, fill_ids, strict=True):
                out += [prompt[last:span.start()], self._piece(token)]
                last = span.end()
            return "".join([*out, prompt[last:]])
        filled = list(ids)
        positions = [i for i, t in enumerate(ids) if t == self.mask_id]
        for pos, token in zip(positions, fill_ids, strict=False):
            filled[pos] = token
        return str(self.tokenizer.decode(filled, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _fill(self, prompt: str, fill_ids: list[int], ids: list[int], score: float) -> Fill:
        token = fill_ids[0]
        return Fill(text=self._text(prompt, fill_ids, ids), token=str(self.tokenizer.decode([token])), token_id=token,
                    score=score)
