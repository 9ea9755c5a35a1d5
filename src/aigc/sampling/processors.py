"""Logits processors: small objects with one signature, ``(input_ids, scores) -> scores``.

``input_ids`` is ``(B, T)`` int64 -- the prompt and the tokens generated so far, with ``-1`` marking left
padding -- and ``scores`` is ``(B, V)`` float logits for the next token. Each processor validates its
arguments in its constructor and says how to fix a bad value, and none of them uses randomness.
"""

from __future__ import annotations

from typing import Protocol

import torch

from aigc._types import TextRequest, check_int, check_number

__all__ = [
    "LogitsProcessor",
    "MinP",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "build_processors",
]

PAD = -1  # the value marking left padding in ``input_ids``


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


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
        k = min(self.k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, float("-inf"))


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
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the mass *before* it already reaches p
        drop_sorted = (cum - sorted_scores.softmax(dim=-1)) >= self.p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return scores.masked_fill(drop, float("-inf"))


class MinP:
    """Min-p sampling (Nguyen et al. 2024): drop tokens whose probability is below ``p`` times the top one's.

    Example:
        >>> MinP(0.5)(torch.zeros(1, 1, dtype=torch.long), torch.log(torch.tensor([[0.6, 0.3, 0.1]])))
        tensor([[-0.5108, -1.2040,    -inf]])
    """

    def __init__(self, p: float) -> None:
        check_number("min_p", p, low=0.0, high=1.0, low_open=True, fix="pass min_p in (0, 1]; 0 turns it off")
        self.p = float(p)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = scores.softmax(dim=-1)
        threshold = probs.max(dim=-1, keepdim=True).values * self.p  # (B, 1)
        return scores.masked_fill(probs < threshold, float("-inf"))


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
        valid = input_ids != PAD  # (B, T)
        counts = torch.zeros(scores.shape, dtype=torch.int32, device=scores.device)
        counts.scatter_add_(-1, input_ids.clamp(min=0), valid.to(torch.int32))
        seen = counts > 0  # (B, V)
        penalized = torch.where(scores > 0, scores / self.penalty, scores * self.penalty)
        return torch.where(seen, penalized, scores)


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
