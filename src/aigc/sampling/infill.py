"""Filling the masked positions of a masked language model (BERT's ``[MASK]``), independent of any model library.

A masked LM predicts every position at once from both sides; it has no next token. Two ways to use it:

* :func:`top_fills`: the ``k`` most likely tokens for one position and their probabilities (what transformers'
  ``fill-mask`` pipeline returns: a softmax over the vocabulary, then the top ``k``);
* :class:`FillLoop`: fill several masks one at a time, left to right, each conditioned on the fills before it
  (sequential generation from a masked LM, Wang and Cho 2019, "BERT has a mouth, and it must speak", sec. 3).

Stages of one :class:`FillLoop` step:
    1. run the model on every row (its prompt, the masks filled so far holding their tokens): ``(B, T, V)``;
    2. take each row's logits at its leftmost mask still open: ``(B, V)``;
    3. choose a token per row: the argmax (greedy), or the :class:`~aigc.sampling.TokenSampler`, whose draw for a
       row is a pure function of the row's seed and ``t``, the number of masks the row has filled (so a row fills
       the same way alone or in any batch);
    4. write the token into the row and multiply the row's score by the token's probability under the model
       (softmax of the raw logits: temperature and filters change the choice, not the score).

A row's score is then the model's probability of its fill in that order, ``prod_j p(x_j | prompt, x_<j)``.

Example:
    >>> loop = FillLoop(forward, ids, attention, ids == mask_id, sampler=None)  # doctest: +SKIP
    >>> for step in loop: ...  # doctest: +SKIP
    >>> loop.tokens, loop.scores  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from aigc.sampling.decode import Sampler

__all__ = ["FillLoop", "top_fills"]

#: ``(input_ids (B, T), attention_mask (B, T)) -> logits (B, T, V)``: the model, as the fill loop sees it
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def top_fills(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most likely tokens of each row and their probabilities, most likely first.

    Args:
        logits: ``(B, V)``, one row per masked position.
        k: how many; at most ``V``.

    Returns:
        ``(probabilities (B, k) float32, token ids (B, k) long)``.

    Example:
        >>> probs, ids = top_fills(torch.tensor([[0.0, 2.0, 1.0]]), 2)
        >>> ids.tolist(), round(float(probs[0, 0]), 4)
        ([[1, 2]], 0.6652)
    """
    if not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k must be in [1, {logits.shape[-1]}], not {k}")
    probs = logits.float().softmax(dim=-1)  # (B, V)
    values, ids = probs.topk(k, dim=-1)  # (B, k)
    return values, ids


class FillLoop:
    """Iterate over fill steps; each step fills the leftmost open mask of every row that has one.

    Args:
        forward: the model (:data:`Forward`).
        input_ids: ``(B, T)`` rows, with the mask token at the positions to fill (on the model's device).
        attention_mask: ``(B, T)``, 1 for real tokens, 0 for padding.
        masked: ``(B, T)`` bool, the positions to fill (a row may have none).
        sampler: chooses each row's token from its ``(B, V)`` logits and ``(B,)`` fill counts
            (:class:`~aigc.sampling.TokenSampler`); ``None`` takes the argmax (greedy).

    After the loop: :attr:`tokens` (per row, the tokens chosen at its masks, left to right), :attr:`scores`
    (per row, the model's probability of its fill), :attr:`input_ids` (the filled rows). The consumer may stop
    iterating between steps (cancellation); rows then keep the masks they had not filled.
    """

    def __init__(self, forward: Forward, input_ids: torch.Tensor, attention_mask: torch.Tensor, masked: torch.Tensor,
                 *, sampler: Sampler | None) -> None:
        if input_ids.shape != masked.shape or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)}, attention_mask {tuple(attention_mask.shape)} and "
                             f"masked {tuple(masked.shape)} must have one shape")
        self.forward = forward
        self.input_ids = input_ids.clone()
        self.attention_mask = attention_mask
        self.open = masked.clone().bool()  # (B, T): masks not filled yet
        self.sampler = sampler
        counts = [int(c) for c in self.open.sum(dim=1).tolist()]
        #: fill steps the loop runs (the most masks of any row)
        self.total = max(counts, default=0)
        self.tokens: list[list[int]] = [[] for _ in counts]
        self.probabilities: list[list[float]] = [[] for _ in counts]

    @property
    def scores(self) -> list[float]:
        """Per row, the product of the probabilities of its fills (1.0 for a row without masks)."""
        out = []
        for probs in self.probabilities:
            score = 1.0
            for p in probs:
                score *= p
            out.append(score)
        return out

    def __iter__(self) -> Iterator[int]:
        rows = torch.arange(self.input_ids.shape[0], device=self.input_ids.device)
        for step in range(self.total):
            active = self.open.any(dim=1)  # (B,)
            # 1-2. the logits at each row's leftmost open mask (column 0 for rows without one; their choice is dropped)
            column = torch.where(active, self.open.long().argmax(dim=1), torch.zeros_like(rows))  # (B,)
            logits = self.forward(self.input_ids, self.attention_mask)[rows, column].float()  # (B, V)
            # 3.
            if self.sampler is None:
                chosen = logits.argmax(dim=-1)
            else:
                chosen = self.sampler(logits, torch.full_like(rows, step))  # every open row has filled `step` masks
            # 4.
            probs = logits.softmax(dim=-1).gather(1, chosen[:, None])[:, 0]  # (B,)
            self.input_ids[rows[active], column[active]] = chosen[active].to(self.input_ids.dtype)
            self.open[rows[active], column[active]] = False
            for b, (on, token, p) in enumerate(zip(active.tolist(), chosen.tolist(), probs.tolist(), strict=True)):
                if on:
                    self.tokens[b].append(int(token))
                    self.probabilities[b].append(float(p))
            yield step
