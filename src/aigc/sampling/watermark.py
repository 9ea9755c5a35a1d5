"""The text watermark: tournament sampling (SynthID-Text) keyed by counter-based hashes, and its detector.

Embedding (Dathathri et al., "Scalable watermarking for identifying large language model outputs", Nature 634,
2024, sec. "Tournament sampling"): each candidate token *x* gets ``DEPTH`` pseudo-random bits
``g_1(x), ..., g_m(x)`` from a hash of the row's key, the ``CONTEXT`` previous tokens and *x*. A tournament of
two candidates per match, one layer per bit, makes tokens with more 1-bits more likely; its output distribution
has a closed form (the paper's vectorised tournament with two candidates per match):

    p_0 = p                                              the distribution after temperature, top-k, top-p, min-p
    p_l(x) = p_{l-1}(x) * (1 + g_l(x) - E_{p_{l-1}}[g_l])   for l = 1 .. m

and the row's one uniform draw then picks from ``p_m`` as usual (:class:`~aigc.sampling.TokenSampler`). Over a large
vocabulary it runs on each row's :data:`CANDIDATES` most likely tokens (their total probability kept). Averaged
over keys the tournament leaves ``p`` unchanged (each ``g`` is a fair coin), so the text is as likely as without it;
for one key it leans towards tokens whose ``g`` are 1, which the detector counts.

Keys. A row's key is ``stream(seed, "watermark")`` (:mod:`aigc.sampling.draws`), so a row depends on nothing but
its own seed, prompt and tokens: sample *i* of a batch equals a single run with its seed, with or without the
watermark, and the same seed gives the same text on every run. The g-values of candidate *x* after the context
``c_1 .. c_H`` are the bits of::

    h = stream;  h = mix64(h + (c_j + 2) * GOLDEN) for each context token (-1 for none: the prompt was shorter)
    g_l(x) = bit l of mix64(h + (x + 1) * GOLDEN)

one 64-bit hash per candidate gives every layer's bit (``DEPTH`` <= 64).

Detection needs no training: the weighted mean of the g-values of a text's tokens (each (context, token) pair
counted once, as repeated n-grams are not independent), with layer weights ``DEPTH, DEPTH - 1, ..., 1`` (the first
layers carry the most signal). Without the watermark each g is a fair coin, independent across distinct pairs
and layers, so the score's z-value is standard normal (:func:`score`): a threshold of ``z >= 3.09`` has a
false-positive rate of 0.1 % per key tested. Greedy rows carry no watermark (nothing is drawn).

Example:
    >>> keys = row_keys([7, 8])
    >>> recent = torch.full((2, CONTEXT), -1)
    >>> logits = tournament(torch.zeros(2, 5), torch.arange(5).expand(2, 5), context_keys(keys, recent),
    ...                     torch.tensor([True, False]))
    >>> bool((logits[1] == 0).all()), round(float(logits[0].exp().sum()), 4)   # row 1 untouched; row 0 sums to 1
    (True, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aigc.sampling import draws

__all__ = ["CANDIDATES", "CONTEXT", "DEPTH", "METHOD", "Z_THRESHOLD", "TextScore", "context_keys", "key_hex",
           "row_keys", "score", "tournament"]

#: Previous tokens hashed with each candidate (SynthID's ``ngram_len`` 5 is these 4 and the candidate).
CONTEXT = 4
#: Tournament layers, one g-value bit each (SynthID uses 30).
DEPTH = 30
#: The most candidates the tournament runs on (each row's most likely tokens); the rest keep their probability.
CANDIDATES = 256
#: The name records give this watermark (``Record.watermarks``).
METHOD = "aigc.text.tournament/1"
#: The detector's threshold: z >= 3.09 is a one-sided false-positive rate of 0.1 % per key tested.
Z_THRESHOLD = 3.09

_S_GOLDEN = draws._S_GOLDEN
_WEIGHTS = [float(DEPTH - layer) for layer in range(DEPTH)]


def row_keys(seeds: Sequence[int], *, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B,)`` int64 watermark keys, one per row, from its seed."""
    return draws.stream_keys(seeds, "watermark", device=device)


def key_hex(seed: int) -> str:
    """A row's watermark key as 16 hex digits (what a record stores in ``watermarks[i]["key"]``).

    Example:
        >>> len(key_hex(42))
        16
    """
    return f"{draws._mix64_int(int(seed) + draws._GOLDEN * (draws.PURPOSES['watermark'] + 1)):016x}"


def context_keys(keys: torch.Tensor, recent: torch.Tensor) -> torch.Tensor:
    """``(B,)`` hashes of each row's key and its ``CONTEXT`` previous tokens ``recent`` ``(B, H)`` (-1: none)."""
    h = keys
    for j in range(recent.shape[1]):
        h = draws.mix64(h + (recent[:, j].to(torch.int64) + 2) * _S_GOLDEN)
    return h


def _g_hash(ctx: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` int64 hashes whose bit ``l`` is layer ``l``'s g-value of each candidate."""
    return draws.mix64(ctx[:, None] + (token_ids.to(torch.int64) + 1) * _S_GOLDEN)


def tournament(logits: torch.Tensor, token_ids: torch.Tensor, ctx: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Reweight each active row's distribution by the tournament (module docstring); return log-probabilities.

    Over more than :data:`CANDIDATES` tokens, the tournament runs on each row's ``CANDIDATES`` most likely ones
    and keeps their total probability (the rest of the vocabulary keeps its own, unwatermarked): a fixed shape,
    so the cost does not grow with the vocabulary, and the detector loses only the rare draws from the tail.

    Args:
        logits: ``(B, N)`` scores of the candidates (``-inf`` for tokens already filtered out).
        token_ids: ``(B, N)`` the candidates' token ids.
        ctx: ``(B,)`` :func:`context_keys` of each row.
        active: ``(B,)`` bool, the rows that carry the watermark; the others are returned as they came.
    """
    scores = logits.float()
    p = scores.softmax(dim=-1)  # (B, N)
    top = None
    mass = None
    if scores.shape[-1] > CANDIDATES:
        top = scores.topk(CANDIDATES, dim=-1).indices  # (B, K)
        p, token_ids = p.gather(-1, top), token_ids.gather(-1, top)
        mass = p.sum(dim=-1, keepdim=True)  # (B, 1)
        p = p / mass  # the tournament works on a distribution
    h = _g_hash(ctx, token_ids)  # (B, K)
    shifts = torch.arange(DEPTH, device=h.device)[:, None, None]
    g = ((h[None] >> shifts) & 1).to(p.dtype)  # (DEPTH, B, K): layer l's g-values are bit l of the hash
    for g_layer in g.unbind(0):  # one view per layer up front: 30 fewer indexing calls a step
        # p <- p * (1 + g - E_p[g]); the total probability of the candidates is unchanged
        p = torch.addcmul(p, p, g_layer - torch.linalg.vecdot(p, g_layer)[:, None])
    if mass is not None:
        p = p * mass
    marked = torch.log(p.clamp(min=0.0))  # p >= 0 in exact arithmetic; rounding may leave -0.0
    if top is not None:
        marked = scores.log_softmax(dim=-1).scatter(-1, top, marked)
    return torch.where(active[:, None], marked, scores)


@dataclass(frozen=True)
class TextScore:
    """What :func:`score` found in one text for one key.

    Attributes:
        tokens: the tokens scored (distinct (context, token) pairs after the first ``CONTEXT`` tokens).
        mean: the plain mean g-value (0.5 expected without the watermark).
        weighted: the weighted mean g-value (layer weights ``DEPTH .. 1``).
        z: the weighted mean's z-value under "no watermark" (standard normal there).
        p_value: the one-sided p-value of ``z``: the chance that text without this watermark scores as high.
    """

    tokens: int
    mean: float
    weighted: float
    z: float
    p_value: float

    def detected(self, threshold: float = Z_THRESHOLD) -> bool:
        """Whether ``z`` reaches the threshold (the default: 0.1 % false positives per key)."""
        return self.z >= threshold


def score(token_ids: Sequence[int], key: int | str) -> TextScore:
    """Score a text's tokens for the watermark of one key (:func:`key_hex` of the seed that made it).

    The first ``CONTEXT`` tokens are skipped (their context was in the prompt); each (context, token) pair
    counts once. Runs on the CPU.

    Example:
        >>> s = score(list(range(300)), key_hex(1))
        >>> s.tokens, abs(s.z) < 4
        (296, True)
    """
    value = int(key, 16) if isinstance(key, str) else int(key)
    ids = [int(t) for t in token_ids]
    seen: set[tuple[int, ...]] = set()
    rows: list[list[int]] = []
    for t in range(CONTEXT, len(ids)):
        gram = tuple(ids[t - CONTEXT:t + 1])
        if gram not in seen:
            seen.add(gram)
            rows.append(list(gram))
    if not rows:
        return TextScore(tokens=0, mean=0.5, weighted=0.5, z=0.0, p_value=1.0)
    grams = torch.tensor(rows, dtype=torch.int64)  # (N, CONTEXT + 1)
    keys = torch.tensor([draws._signed(value)], dtype=torch.int64).expand(len(rows))
    ctx = context_keys(keys, grams[:, :CONTEXT])  # (N,)
    h = _g_hash(ctx, grams[:, CONTEXT:])[:, 0]  # (N,)
    g = torch.stack([(h >> layer) & 1 for layer in range(DEPTH)], dim=1).to(torch.float64)  # (N, DEPTH)
    w = torch.tensor(_WEIGHTS, dtype=torch.float64)
    n = len(rows)
    weighted = float((g * w).sum() / (n * w.sum()))
    # Under "no watermark" each g is Bernoulli(1/2): the weighted sum has variance n * sum(w^2) / 4.
    z = float(((g - 0.5) * w).sum() / (0.5 * math.sqrt(n * float((w * w).sum()))))
    return TextScore(tokens=n, mean=float(g.mean()), weighted=weighted, z=z, p_value=0.5 * math.erfc(z / math.sqrt(2)))
