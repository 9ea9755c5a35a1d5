"""Choosing the next token of every row on the model's device, from counter-based draws.

:class:`TokenSampler` is the sampler of the decode loop (sampler version 2, :data:`SAMPLER_VERSION`):

1. repetition penalty (CTRL, eq. 1) on the tokens each row has seen, kept as a ``(B, V)`` mask on the device;
2. end-of-sequence tokens banned for rows that have not reached their ``min_new_tokens``;
3. greedy rows take the argmax here (transformers' greedy decoding applies only 1-2 as well);
4. sampled rows: temperature, top-k, top-p, min-p (in transformers' order), each row with its own settings;
5. with ``watermark``, the text watermark's tournament reweights the sampled rows' surviving tokens
   (:mod:`aigc.sampling.watermark`: a function of the row's seed, its last few tokens and the candidates only);
6. one uniform draw per row and token position, ``u = draws.uniform(stream(seed, "tokens"), position)``,
   picks the token by inverse transform sampling over the surviving tokens *in vocabulary order*:
   the first token whose cumulative probability exceeds ``u``.

Why inverse transform sampling: it needs one draw per row and step (Gumbel-max needs one per vocabulary entry:
measured on one CPU thread, hashing 64 x 32,000 counters took 70 ms a step, against 4 ms for the top-k and
2 ms for the cumulative sums here), and its only reduction is a cumulative sum, so a row's token depends on
nothing but its own logits, settings, seed and position. The cumulative sum is taken in blocks of 128 in
float32 with the block totals in float64, which keeps the error of the inverse CDF near float64's.

When every sampled row has a top-k, the work after the top-k is done on the ``(B, k)`` candidates only
(sorting them back into vocabulary order for step 6), which makes the same choice as the full vocabulary
up to float rounding. Nothing here reads a value back to the host, and no shape depends on the data, so a
step can run inside a CUDA graph.

Example:
    >>> sampler = TokenSampler([SamplingParams(temperature=0.8, top_k=50)] * 2, seeds=[1, 2], eos_token_ids={0})
    >>> tokens = sampler(torch.randn(2, 100), torch.zeros(2, dtype=torch.long))   # (B,) on the logits' device
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from aigc._seeds import SAMPLER_VERSION
from aigc._types import TextRequest
from aigc.sampling import draws
from aigc.sampling import watermark as wm
from aigc.sampling.noise import generators as make_generators
from aigc.sampling.processors import (
    NEG_INF,
    build_processors,
    min_p_drop,
    repetition_penalty,
    seen_tokens,
    top_k_threshold,
    top_p_drop,
)

__all__ = ["SAMPLER_VERSION", "LegacySampler", "SamplingParams", "TokenSampler", "make_sampler", "text_watermark_on"]


_BLOCK = 128  # inverse-CDF block: float32 cumulative sums inside, float64 across


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """One row's token-choice settings (the fields of :class:`aigc.TextRequest` with the same names).

    ``top_k=0``, ``top_p=1``, ``min_p=0`` and ``repetition_penalty=1`` turn a step off.
    """

    do_sample: bool = True  # False: argmax after the penalty and the EOS ban (greedy)
    temperature: float = 1.0  # divides the logits
    top_k: int = 0  # keep the k most likely tokens
    top_p: float = 1.0  # keep the smallest set reaching this probability mass
    min_p: float = 0.0  # drop tokens below min_p x the top token's probability
    repetition_penalty: float = 1.0  # CTRL's penalty on tokens seen in the prompt or the output
    min_new_tokens: int = 0  # end-of-sequence tokens banned before this many new tokens

    @classmethod
    def from_request(cls, request: TextRequest) -> SamplingParams:
        return cls(do_sample=request.do_sample, temperature=float(request.temperature), top_k=int(request.top_k or 0),
                   top_p=float(request.top_p), min_p=float(request.min_p),
                   repetition_penalty=float(request.repetition_penalty), min_new_tokens=int(request.min_new_tokens))


class TokenSampler:
    """Choose each row's next token on the device (see the module docstring for the steps).

    Args:
        params: one :class:`SamplingParams` per row.
        seeds: one seed per row (ignored for greedy rows; ``None`` when every row is greedy).
        eos_token_ids: tokens banned while a row is below its ``min_new_tokens``.
        watermark: apply the text watermark (:mod:`aigc.sampling.watermark`) to the sampled rows: one flag for
            every row, or one per row (requests with and without it can share a batch).

    Call :meth:`prime` with the prompts' ids before the first step when a row uses a repetition penalty or the
    watermark (whose first tokens hash the prompt's last ones); each
    call then takes ``(logits (B, V), positions (B,))`` -- ``positions[b]`` is how many tokens row *b* has
    generated -- and returns the ``(B,)`` tokens, remembering them for the penalty.
    """

    version = SAMPLER_VERSION

    def __init__(self, params: Sequence[SamplingParams], seeds: Sequence[int] | None, *,
                 eos_token_ids: Collection[int] = (), watermark: bool | Sequence[bool] = False) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("a TokenSampler needs at least one row")
        sampled = [p for p in self.params if p.do_sample]
        if sampled and (seeds is None or len(seeds) != len(self.params)):
            raise ValueError(f"{0 if seeds is None else len(seeds)} seeds for {len(self.params)} rows")
        self.seeds = [int(s) for s in seeds] if seeds is not None else [0] * len(self.params)
        self.eos = sorted(set(eos_token_ids))
        # Which steps run at all is decided here, on the host, once: no step branches on device values.
        self.any_sample = bool(sampled)
        self.any_greedy = len(sampled) < len(self.params)
        self.penalize = any(p.repetition_penalty != 1.0 for p in self.params)
        self.ban_eos = bool(self.eos) and any(p.min_new_tokens > 0 for p in self.params)
        self.k_max = max((p.top_k for p in sampled), default=0)
        self.compress = bool(sampled) and all(p.top_k > 0 for p in sampled)  # work on (B, k_max) candidates
        self.uniform_k = all(p.top_k == self.k_max for p in sampled)  # then the top-k itself is the whole filter
        self.any_top_p = any(p.top_p < 1.0 for p in sampled)
        self.any_min_p = any(p.min_p > 0.0 for p in sampled)
        self.any_temperature = any(p.temperature != 1.0 for p in sampled)
        flags = [bool(watermark)] * len(self.params) if isinstance(watermark, bool) else [bool(w) for w in watermark]
        if len(flags) != len(self.params):
            raise ValueError(f"{len(flags)} watermark flags for {len(self.params)} rows")
        self.watermark_rows = [w and p.do_sample for w, p in zip(flags, self.params, strict=True)]
        self.watermark = any(self.watermark_rows)
        self.recent: torch.Tensor | None = None  # (B, CONTEXT) each row's last tokens (-1: none), with watermark
        self._device: torch.device | None = None
        self.seen: torch.Tensor | None = None  # (B, V) bool, tokens each row has seen (repetition penalty)
        self.table: torch.Tensor | None = None  # (B, horizon) uniforms of the coming positions, once primed

    # -- per-row settings as device tensors, built on first use ----------------------------------------
    def _setup(self, logits: torch.Tensor) -> None:
        device = logits.device
        self._device = device

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)[:, None]  # (B, 1)

        p = self.params
        self.keys = draws.stream_keys(self.seeds, "tokens", device=device)  # (B,)
        self.do_sample = torch.tensor([q.do_sample for q in p], dtype=torch.bool, device=device)
        self.temperature = column([q.temperature if q.do_sample else 1.0 for q in p])
        # Greedy rows borrow k_max so that compression never drops what a sampled row needs.
        self.top_k = torch.tensor([q.top_k if q.do_sample else self.k_max for q in p], dtype=torch.long,
                                  device=device)
        self.top_p = column([q.top_p if q.do_sample else 1.0 for q in p])
        self.min_p = column([q.min_p if q.do_sample else 0.0 for q in p])
        self.penalty = column([q.repetition_penalty for q in p])
        self.min_new = torch.tensor([q.min_new_tokens for q in p], dtype=torch.long, device=device)
        eos_mask = torch.zeros((1, logits.shape[-1]), dtype=torch.bool, device=device)
        eos_mask[0, [e for e in self.eos if e < logits.shape[-1]]] = True
        self.eos_mask = eos_mask  # (1, V)
        if self.watermark:
            self.wm_keys = wm.row_keys(self.seeds, device=device)  # (B,)
            self.wm_active = torch.tensor(self.watermark_rows, dtype=torch.bool, device=device)  # (B,)

    def prime(self, context_ids: torch.Tensor, vocab_size: int, horizon: int = 0) -> None:
        """Remember the prompt tokens (``(B, T)``, ``-1`` for padding) for the repetition penalty, and draw the
        uniforms of positions ``0 .. horizon - 1`` in one go (later calls must stay below ``horizon``)."""
        self.seen = seen_tokens(context_ids, vocab_size)  # kept for every row, so rows can join a penalized batch
        tail = context_ids[:, -wm.CONTEXT:].to(torch.int64)  # (B, <=CONTEXT): padding is -1 already
        self.recent = torch.nn.functional.pad(tail, (wm.CONTEXT - tail.shape[1], 0), value=-1)  # (B, CONTEXT)
        if horizon and self.any_sample:
            keys = draws.stream_keys(self.seeds, "tokens", device=context_ids.device)
            steps = torch.arange(horizon, device=context_ids.device).expand(len(self.params), horizon)
            self.table = draws.uniform_table(keys, steps)  # (B, horizon)

    # -- one step -----------------------------------------------------------------------------------
    def __call__(self, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self._device != logits.device:
            self._setup(logits)
        scores = logits.float()  # (B, V)
        if self.penalize:  # 1.
            if self.seen is None:
                raise ValueError("call prime() with the prompts first: the repetition penalty needs them")
            scores = repetition_penalty(scores, self.seen, self.penalty)
        if self.ban_eos:  # 2.
            scores = scores.masked_fill((positions < self.min_new)[:, None] & self.eos_mask, NEG_INF)
        greedy = scores.argmax(dim=-1) if self.any_greedy else None  # 3.
        if not self.any_sample:
            assert greedy is not None
            tokens = greedy
        else:
            sampled = self._sample(scores, positions)  # 4-5.
            tokens = sampled if greedy is None else torch.where(self.do_sample, sampled, greedy)
        if self.seen is not None:
            self.seen.scatter_(1, tokens[:, None], True)
        if self.recent is not None:
            self.recent = torch.cat([self.recent[:, 1:], tokens[:, None].to(self.recent.device)], dim=1)
        return tokens

    def _watermarked(self, logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """5. The tournament on ``(B, N)`` candidates (in vocabulary order) of the sampled rows."""
        if not self.watermark:
            return logits
        if self.recent is None:
            raise ValueError("call prime() with the prompts first: the watermark hashes each row's last tokens")
        ctx = wm.context_keys(self.wm_keys, self.recent.to(logits.device))  # (B,)
        return wm.tournament(logits, token_ids, ctx, self.wm_active)

    def _sample(self, scores: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            u = self.table.gather(1, positions[:, None])[:, 0]  # (B,)
        else:
            u = draws.uniform(self.keys, positions)
        if self.compress:
            # Temperature keeps the order, so the top-k of the raw scores are the candidates; scale only those.
            vals, idx = torch.topk(scores, min(self.k_max, scores.shape[-1]), dim=-1)  # (B, k), descending
            if self.any_temperature:
                vals = vals / self.temperature
            if not self.uniform_k:
                kth = vals.gather(-1, (self.top_k.clamp(min=1, max=vals.shape[-1]) - 1)[:, None])
                vals = vals.masked_fill(vals < kth, NEG_INF)
            if self.any_top_p:
                vals = vals.masked_fill(top_p_drop(vals, self.top_p), NEG_INF)
            if self.any_min_p:
                vals = vals.masked_fill(min_p_drop(vals, self.min_p), NEG_INF)
            idx, order = idx.sort(dim=-1)  # back into vocabulary order
            vals = self._watermarked(vals.gather(-1, order), idx)
            return idx.gather(-1, inverse_cdf(vals, u)[:, None])[:, 0]
        if self.any_temperature:
            scores = scores / self.temperature
        if self.k_max:
            scores = scores.masked_fill(scores < top_k_threshold(scores, self.top_k, self.k_max), NEG_INF)
        if self.any_top_p:
            sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
            drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, top_p_drop(sorted_scores, self.top_p))
            scores = scores.masked_fill(drop, NEG_INF)
        if self.any_min_p:
            scores = scores.masked_fill(min_p_drop(scores, self.min_p), NEG_INF)
        if self.watermark:
            scores = self._watermarked(scores, torch.arange(scores.shape[-1], device=scores.device).expand_as(scores))
        return inverse_cdf(scores, u)

    # -- rows joining and leaving (continuous batching) --------------------------------------------------
    def select(self, rows: Sequence[int]) -> TokenSampler:
        """A sampler for a subset of the rows (in the given order), keeping what they have seen.

        Draws are keyed by each row's seed and position, so the rows draw exactly what they would have drawn."""
        out = TokenSampler([self.params[r] for r in rows], [self.seeds[r] for r in rows], eos_token_ids=self.eos,
                           watermark=[self.watermark_rows[r] for r in rows])
        index = list(rows)
        if self.seen is not None:
            out.seen = self.seen[index]
        if self.recent is not None:
            out.recent = self.recent[index]
        if self.table is not None and out.any_sample:
            out.table = self.table[index]
        return out

    @staticmethod
    def join(parts: Sequence[TokenSampler]) -> TokenSampler:
        """One sampler for the rows of ``parts``, in order (rows joining a running batch); each part must have been
        primed (or have run) already. Callers pass each row's own position, so nothing else changes for a row."""
        if len({tuple(p.eos) for p in parts}) > 1:
            raise ValueError("samplers with different end-of-sequence tokens cannot share a batch")
        out = TokenSampler([q for p in parts for q in p.params], [s for p in parts for s in p.seeds],
                           eos_token_ids=parts[0].eos, watermark=[w for p in parts for w in p.watermark_rows])
        seen = [p.seen for p in parts]
        if any(x is None for x in seen):
            raise ValueError("prime() every part before joining samplers")
        out.seen = torch.cat([x for x in seen if x is not None])
        recent = [p.recent for p in parts]
        out.recent = torch.cat([x for x in recent if x is not None]) if all(x is not None for x in recent) else None
        tables = [p.table for p in parts if p.any_sample]
        known = [t for t in tables if t is not None]
        if known and len(known) == len(tables) and len({t.shape[1] for t in known}) == 1:
            # rows without sampling have no table: give them zeros (their draws are never used)
            out.table = torch.cat([p.table if p.table is not None else known[0].new_zeros(
                (len(p.params), known[0].shape[1])) for p in parts])
        return out


def inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(B,)`` index of the first entry of each row whose cumulative probability exceeds ``u`` (``(B,)``).

    Entries of probability 0 (-inf logits) are never chosen. The cumulative sums run in float32 within blocks of
    128 and in float64 (float32 where the device has none) across blocks.
    """
    probs = logits.float().softmax(dim=-1)  # (B, N)
    batch, n = probs.shape
    if n <= _BLOCK:  # one block: the general case below with block 0 and nothing before it
        cdf = probs.cumsum(dim=-1)  # (B, N)
        rest = (u * cdf[:, -1].to(u.dtype)).to(cdf.dtype)[:, None]  # (B, 1)
        choice = torch.searchsorted(cdf, rest, right=True).clamp(max=n - 1)[:, 0]
        ok = probs.gather(-1, choice[:, None])[:, 0] > 0
        return torch.where(ok, choice, probs.argmax(dim=-1))
    blocks = -(-n // _BLOCK)
    padded = torch.nn.functional.pad(probs, (0, blocks * _BLOCK - n)).reshape(batch, blocks, _BLOCK)
    inner = padded.cumsum(dim=-1)  # (B, nb, 128) float32
    totals = inner[..., -1].to(u.dtype).cumsum(dim=-1)  # (B, nb)
    target = u * totals[:, -1]  # (B,)
    block = torch.searchsorted(totals, target[:, None], right=True).clamp(max=blocks - 1)  # (B, 1)
    before = torch.where(block > 0, totals.gather(-1, (block - 1).clamp(min=0)), torch.zeros_like(target[:, None]))
    rest = (target[:, None] - before).to(inner.dtype)  # (B, 1): what is left inside the block
    row = inner.gather(1, block[:, :, None].expand(batch, 1, _BLOCK))[:, 0]  # (B, 128)
    within = torch.searchsorted(row, rest, right=True).clamp(max=_BLOCK - 1)  # (B, 1)
    choice = (block * _BLOCK + within).clamp(max=n - 1)[:, 0]  # (B,)
    # Rounding can push the target past the last nonzero entry: then take the most likely token instead.
    ok = probs.gather(-1, choice[:, None])[:, 0] > 0
    return torch.where(ok, choice, probs.argmax(dim=-1))


class LegacySampler:
    """Sampler version 1, kept so that records made with it replay to the same tokens: the request's
    processors over the whole history, then ``torch.multinomial`` on the CPU with one generator per row."""

    version = 1

    def __init__(self, request: TextRequest, seeds: Sequence[int] | None, *,
                 eos_token_ids: Collection[int] = ()) -> None:
        self.processors = build_processors(request)
        self.generators = make_generators(seeds) if request.do_sample and seeds is not None else None
        self.eos = sorted(set(eos_token_ids))
        self.min_new = int(request.min_new_tokens)
        self.history: torch.Tensor | None = None

    def prime(self, context_ids: torch.Tensor, vocab_size: int, horizon: int = 0) -> None:
        self.history = context_ids

    def __call__(self, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        assert self.history is not None, "call prime() first"
        history = self.history.to(logits.device)
        scores = logits.float()
        if self.eos and int(positions[0]) < self.min_new:  # version 1 stepped every row together
            scores = scores.clone()
            scores[:, self.eos] = NEG_INF
        for proc in self.processors:
            scores = proc(history, scores)
        if self.generators is None:
            tokens = scores.argmax(dim=-1)
        else:
            probs = scores.softmax(dim=-1).cpu()  # (B, V)
            tokens = torch.tensor([int(torch.multinomial(probs[i], 1, generator=g).item())
                                   for i, g in enumerate(self.generators)], device=logits.device)
        self.history = torch.cat([history, tokens[:, None]], dim=1)
        return tokens


def make_sampler(request: TextRequest, seeds: Sequence[int], *, eos_token_ids: Collection[int],
                 version: int = SAMPLER_VERSION) -> TokenSampler | LegacySampler:
    """The sampler for every row of ``request`` (one per seed), in the given sampler ``version``.

    The text watermark applies where the request asks for it (``watermark`` not ``False``) and samples
    (:func:`text_watermark_on`); sampler version 1 predates it."""
    if version == 1:
        return LegacySampler(request, seeds, eos_token_ids=eos_token_ids)
    params = SamplingParams.from_request(request)
    return TokenSampler([params] * len(seeds), seeds if request.do_sample else None, eos_token_ids=eos_token_ids,
                        watermark=text_watermark_on(request))


def text_watermark_on(request: TextRequest) -> bool:
    """Whether a text request's samples carry the watermark: on by default (``watermark=None``) where the
    tokens are sampled; greedy decoding draws nothing, so it cannot carry one.

    Example:
        >>> text_watermark_on(TextRequest(prompt="x")), text_watermark_on(TextRequest(prompt="x", watermark=False))
        (True, False)
    """
    return request.watermark is not False and request.do_sample

