"""Statistics of pairwise human judgements: Wilson intervals, Bradley-Terry scores with bootstrap intervals,
and rater agreement (Cohen's and Fleiss' kappa). Pure functions; numpy only for the bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from aigc.errors import InvalidRequest

__all__ = ["bradley_terry", "bradley_terry_bootstrap", "cohen_kappa", "fleiss_kappa", "wilson_interval"]

#: the normal quantile of a two-sided 95% interval
Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (Wilson 1927).

    ``(p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = successes / trials``; ``(0, 1)``
    when there are no trials.

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise InvalidRequest("successes", (successes, trials), "needs 0 <= successes <= trials",
                             "pass counts of one binomial sample")
    if trials == 0:
        return 0.0, 1.0
    n = float(trials)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _strongly_connected(wins: Sequence[Sequence[float]]) -> bool:
    """Whether every system reaches every other through "beat" edges (the condition for a finite BT fit)."""
    k = len(wins)
    for start in range(k):
        seen = {start}
        stack = [start]
        while stack:
            i = stack.pop()
            for j in range(k):
                if j not in seen and wins[i][j] > 0:
                    seen.add(j)
                    stack.append(j)
        if len(seen) != k:
            return False
    return True


def _fit(wins: list[list[float]], *, max_iter: int = 10_000, tol: float = 1e-10) -> list[float]:
    """Maximum-likelihood BT log-strengths (mean 0) by the MM algorithm of Hunter (2004), eq. (3):
    ``p_i <- W_i / sum_j n_ij / (p_i + p_j)``."""
    k = len(wins)
    total = [[wins[i][j] + wins[j][i] for j in range(k)] for i in range(k)]
    won = [sum(row) for row in wins]
    p = [1.0] * k
    for _ in range(max_iter):
        new = []
        for i in range(k):
            denom = sum(total[i][j] / (p[i] + p[j]) for j in range(k) if j != i and total[i][j] > 0)
            new.append(won[i] / denom if denom > 0 else p[i])
        g = math.exp(sum(math.log(x) for x in new) / k)  # geometric mean 1: the scale is not identified
        new = [x / g for x in new]
        change = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, p, strict=True))
        p = new
        if change < tol:
            break
    return [math.log(x) for x in p]


def bradley_terry(wins: Sequence[Sequence[float]], *, prior: float = 0.5) -> tuple[list[float], bool]:
    """Bradley-Terry log-strengths from a matrix of wins (``wins[i][j]``: times system i beat system j).

    ``P(i beats j) = 1 / (1 + exp(theta_j - theta_i))``; the scores are the maximum-likelihood ``theta`` with mean
    0. The maximum exists only when every system can be reached from every other through wins (a system that never
    lost would get +inf): then ``prior`` virtual wins are added both ways on every pair that was compared, and the
    second value returned is ``True`` (regularised).

    Returns:
        (scores, regularised).

    Raises:
        InvalidRequest: not a square matrix of non-negative counts, or two groups of systems never compared.

    Example:
        >>> scores, _ = bradley_terry([[0, 3], [1, 0]])
        >>> round(scores[0] - scores[1], 6) == round(math.log(3), 6)
        True
    """
    k = len(wins)
    if k < 2 or any(len(row) != k for row in wins) or any(x < 0 for row in wins for x in row):
        raise InvalidRequest("wins", wins, "needs a square matrix (two or more systems) of non-negative counts",
                             "pass wins[i][j] = times system i beat system j")
    w = [[float(wins[i][j]) if i != j else 0.0 for j in range(k)] for i in range(k)]
    compared = [[1.0 if w[i][j] + w[j][i] > 0 else 0.0 for j in range(k)] for i in range(k)]
    if not _strongly_connected(compared):
        raise InvalidRequest("wins", wins, "some systems were never compared, directly or through others",
                             "collect votes that link every system to the others")
    if _strongly_connected(w):
        return _fit(w), False
    w = [[w[i][j] + prior * compared[i][j] for j in range(k)] for i in range(k)]
    return _fit(w), True


def bradley_terry_bootstrap(pairs: Sequence[tuple[int, int]], num_systems: int, *, resamples: int = 1000,
                            seed: int = 0, level: float = 0.95, prior: float = 0.5) -> list[tuple[float, float]]:
    """Percentile bootstrap intervals of the Bradley-Terry scores: the decisive votes ``(winner, loser)`` resampled
    with replacement ``resamples`` times (a ``numpy.random.Generator`` seeded with ``seed``), each refitted with
    :func:`bradley_terry` (with its ``prior`` where a resample needs it).

    Example:
        >>> ci = bradley_terry_bootstrap([(0, 1)] * 6 + [(1, 0)] * 2, 2, resamples=200)
        >>> ci[0][0] < 0 < ci[0][1] or ci[0][0] > 0
        True
    """
    import numpy as np

    if not pairs:
        raise InvalidRequest("pairs", [], "no decisive votes", "collect some votes that are not ties")
    if not 0 < level < 1:
        raise InvalidRequest("level", level, "needs 0 < level < 1", "pass e.g. 0.95")
    rng = np.random.default_rng(seed)
    arr = np.asarray(pairs, dtype=np.int64)  # (V, 2): winner, loser
    draws = rng.integers(0, len(arr), size=(resamples, len(arr)))  # (R, V)
    samples = []
    for row in draws:
        picked = arr[row]
        counts = np.bincount(picked[:, 0] * num_systems + picked[:, 1], minlength=num_systems * num_systems)
        wins = counts.reshape(num_systems, num_systems).tolist()
        try:
            samples.append(bradley_terry(wins, prior=prior)[0])
        except InvalidRequest:  # a resample that lost every comparison linking two groups: no scores
            continue
    if not samples:
        raise InvalidRequest("pairs", f"<{len(pairs)} votes>", "no resample links every system to the others",
                             "collect more votes")
    scores = np.asarray(samples)  # (R', K)
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return [(float(np.percentile(scores[:, i], lo)), float(np.percentile(scores[:, i], hi)))
            for i in range(num_systems)]


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items: ``(p_o - p_e) / (1 - p_e)``, ``p_o`` the observed
    agreement and ``p_e`` the agreement expected from each rater's label frequencies (Cohen 1960). ``nan`` when
    ``p_e`` is 1 (both raters always gave one and the same label).

    Example:
        >>> round(cohen_kappa(["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15,
        ...                   ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15), 4)
        0.4
    """
    if len(first) != len(second) or not first:
        raise InvalidRequest("second", len(second), f"needs as many labels as first ({len(first)}), at least one",
                             "pass both raters' labels of the same items, in the same order")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    labels = set(first) | set(second)
    expected = sum((first.count(c) / n) * (second.count(c) / n) for c in labels)
    if expected == 1:
        return math.nan
    return (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa (Fleiss 1971) from ``counts[i][j]``, the number of raters who put item i in category j.

    Items may have different numbers of raters (two or more each): ``P_i = sum_j n_ij (n_ij - 1) / (n_i (n_i -
    1))``, ``p_j = sum_i n_ij / sum_i n_i``, ``kappa = (mean(P_i) - sum_j p_j^2) / (1 - sum_j p_j^2)``; with the
    same number of raters on every item this is Fleiss' formula exactly. ``nan`` when every rating is in one
    category.

    Example:
        >>> round(fleiss_kappa([[3, 0], [0, 3], [2, 1]]), 4)
        0.55
    """
    if not counts or any(sum(row) < 2 for row in counts):
        raise InvalidRequest("counts", counts, "needs at least one item, and two or more ratings on every item",
                             "pass only items rated by two or more raters")
    k = len(counts[0])
    if any(len(row) != k for row in counts):
        raise InvalidRequest("counts", counts, "rows of different lengths", "give every item one count per category")
    total = sum(sum(row) for row in counts)
    p_j = [sum(row[j] for row in counts) / total for j in range(k)]
    p_i = [sum(x * (x - 1) for x in row) / (sum(row) * (sum(row) - 1)) for row in counts]
    p_bar = sum(p_i) / len(p_i)
    p_e = sum(p * p for p in p_j)
    if p_e == 1:
        return math.nan
    return (p_bar - p_e) / (1 - p_e)
