"""Logits processors: small objects with one signature, ``(input_ids, scores) -> scores``, and the
vectorised kernels behind them.

``input_ids`` is ``(B, T)`` int64 -- the prompt and the tokens generated so far, with ``-1`` marking left
padding -- and ``scores`` is ``(B, V)`` float logits for the next token. Each processor validates its
arguments in its constructor and says how to fix a bad value, and none of them uses randomness.

The kernels (:func:`repetition_penalty`, :func:`top_k_threshold`, :func:`top_p_drop`, :func:`min_p_drop`)
take one parameter per row as a ``(B, 1)`` tensor, so rows with different settings share a batch and a
kernel launch: :class:`aigc.sampling.TokenSampler` calls them directly, the classes below call them with
one value broadcast to every row. Each is equal to transformers' processor of the same name (the tests
compare them).
"""

from __future__ import annotations

from typing import Protocol

import torch

from aigc._checks import check_int, check_number
from aigc._types import TextRequest

__all__ = [
    "LogitsProcessor",
    "MinP",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "build_processors",
    "min_p_drop",
    "repetition_penalty",
    "seen_tokens",
    "top_k_threshold",
    "top_p_drop",
]

PAD = -1  # the value marking left padding in ``input_ids``
NEG_INF = float("-inf")


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


# -- kernels: per-row parameters as (B, 1) tensors ----------------------------------------------------
def seen_tokens(input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``(B, V)`` bool: which tokens occur in each row of ``input_ids`` (``-1`` padding ignored).

    Example:
        >>> seen_tokens(torch.tensor([[-1, 0, 2]]), 4)
        tensor([[ True, False,  True, False]])
    """
    ids = torch.where(input_ids == PAD, vocab_size, input_ids)  # padding -> one column past the vocabulary
    seen = torch.zeros((input_ids.shape[0], vocab_size + 1), dtype=torch.bool, device=input_ids.device)
    return seen.scatter_(-1, ids, True)[:, :vocab_size]


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor | float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019, eq. 1) on the logits of ``seen`` tokens: divided by ``penalty``
    when positive, multiplied when negative. ``penalty``: a float or ``(B, 1)`` (1 leaves a row as it is)."""
    penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
    return torch.where(seen, penalized, scores)


def top_k_threshold(scores: torch.Tensor, k: torch.Tensor, k_max: int) -> torch.Tensor:
    """``(B, 1)``: the ``k``-th largest logit of each row (``k``: ``(B,)`` ints; 0 turns a row off, giving
    -inf). ``k_max`` is ``k.max()`` known on the host, so no value is read back from the device."""
    top = torch.topk(scores, min(k_max, scores.shape[-1]), dim=-1).values  # (B, k_max), descending
    kth = top.gather(-1, (k.clamp(min=1, max=top.shape[-1]) - 1)[:, None])  # (B, 1)
    return torch.where(k[:, None] > 0, kth, torch.full_like(kth, NEG_INF))


def top_p_drop(sorted_desc: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020, sec. 3.1) on logits sorted in descending order: ``(B, N)``
    bool, true for tokens outside the smallest set whose probability mass reaches ``p``; the top token is
    always kept. ``p``: a float or ``(B, 1)``; rows with ``p >= 1`` drop nothing."""
    probs = sorted_desc.softmax(dim=-1)
    drop = (probs.cumsum(dim=-1) - probs) >= p  # the mass *before* a token already reaches p
    drop[..., 0] = False
    off = p >= 1.0 if isinstance(p, torch.Tensor) else torch.tensor(p >= 1.0, device=drop.device)
    return drop & ~off


def min_p_drop(scores: torch.Tensor, p: torch.Tensor | float) -> torch.Tensor:
    """Min-p sampling (Nguyen et al. 2024): ``(B, N)`` bool, true for tokens less likely than ``p`` times
    the most likely one. ``p``: a float or ``(B, 1)``; 0 drops nothing."""
    probs = scores.softmax(dim=-1)
    return probs < probs.max(dim=-1, keepdim=True).values * p


# -- processors: one setting for every row ------------------------------------------------------------
class Temperature:
    """Divide the logits by ``temperature`` (< 1 sharpens, > 1 flattens).

    Example:
        >>> Temperature(0.5)(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[1.0, 2.0]]))
        tensor([[2., 4.]])
    """

    def __init__(self, temperature: float) -> None:
        check_number("temperature", temperature, low=0.0, low_open=True,
                     fix="pass a temperature > 0, or decode greedily with do_sample=False")
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopK:
    """Keep the ``k`` highest logits of each row; set the others to -inf.

    Example:
        >>> TopK(1)(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([[-inf, 3., -inf]])
    """

    def __init__(self, k: int) -> None:
        check_int("top_k", k, minimum=1, fix="pass top_k >= 1, or None to turn it off")
        self.k = int(k)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # One k for every row: the k-th largest logit directly (what top_k_threshold gives with k broadcast, in
        # three tensor operations instead of eight: this runs once a step). k >= V keeps every token.
        if self.k >= scores.shape[-1]:
            return scores
        kth = torch.topk(scores, self.k, dim=-1).values[..., -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Nucleus sampling (Holtzman et al. 2020, sec. 3.1): keep the smallest set of tokens whose
    probability mass reaches ``p``; the most likely token is always kept.

    Example:
        >>> TopP(0.5)(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[0.0, 2.0, 1.0]]))
        tensor([[-inf, 2., -inf]])
    """

    def __init__(self, p: float) -> None:
        check_number("top_p", p, low=0.0, high=1.0, low_open=True, fix="pass top_p in (0, 1]; 1 turns it off")
        self.p = float(p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)  # (B, V)
        drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, top_p_drop(sorted_scores, self.p))
        return scores.masked_fill(drop, NEG_INF)


class MinP:
    """Min-p sampling (Nguyen et al. 2024): drop tokens whose probability is below ``p`` times the top one's.

    Example:
        >>> MinP(0.4)(torch.zeros(1, 1, dtype=torch.long), torch.log(torch.tensor([[0.6, 0.3, 0.1]])))
        tensor([[-0.5108, -1.2040,    -inf]])
    """

    def __init__(self, p: float) -> None:
        check_number("min_p", p, low=0.0, high=1.0, low_open=True, fix="pass min_p in (0, 1]; 0 turns it off")
        self.p = float(p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(min_p_drop(scores, self.p), NEG_INF)


class RepetitionPenalty:
    """CTRL's repetition penalty (Keskar et al. 2019, eq. 1): logits of tokens already present in the
    prompt or the output are divided by ``penalty`` when positive and multiplied by it when negative.
    Padding (``-1``) is ignored, so a row's result does not depend on the batch it is in.

    Example:
        >>> RepetitionPenalty(2.0)(torch.tensor([[0]]), torch.tensor([[2.0, 2.0]]))
        tensor([[1., 2.]])
    """

    def __init__(self, penalty: float) -> None:
        check_number("repetition_penalty", penalty, low=0.0, low_open=True,
                     fix="pass a penalty > 0; 1 turns it off, 1.1-1.3 is typical")
        self.penalty = float(penalty)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return repetition_penalty(scores, seen_tokens(input_ids, scores.shape[-1]), self.penalty)


def build_processors(request: TextRequest) -> list[LogitsProcessor]:
    """The processors a request asks for, in the order they apply.

    Greedy decoding (``do_sample=False``) applies only the repetition penalty, as transformers does.

    Example:
        >>> [type(p).__name__ for p in build_processors(TextRequest(prompt="x", temperature=0.7, top_k=40))]
        ['Temperature', 'TopK']
    """
    procs: list[LogitsProcessor] = []
    if request.repetition_penalty != 1.0:
        procs.append(RepetitionPenalty(request.repetition_penalty))
    if not request.do_sample:
        return procs
    if request.temperature != 1.0:
        procs.append(Temperature(request.temperature))
    if request.top_k:
        procs.append(TopK(request.top_k))
    if request.top_p < 1.0:
        procs.append(TopP(request.top_p))
    if request.min_p > 0.0:
        procs.append(MinP(request.min_p))
    return procs
