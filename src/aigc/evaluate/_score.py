"""The typed result every metric returns, and helpers shared by the text and image metrics (no heavy imports)."""

from __future__ import annotations

import importlib
import importlib.metadata
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aigc._version import __version__ as _aigc_version
from aigc.errors import BackendUnavailable

__all__ = ["Score"]


@dataclass(frozen=True)
class Score:
    """One metric's value, with what is needed to reproduce and report it.

    Scales are those of the library that computed the score, so a number here equals the one that library
    prints: BLEU, chrF and self-BLEU are 0-100 (sacrebleu), ROUGE, distinct-n and precision/recall are 0-1,
    CLIP score is 0-100, perplexity is >= 1, Frechet distance and KID are >= 0 (KID's unbiased estimate
    can dip slightly below 0 when the two sets come from the same distribution).

    Attributes:
        name: the metric as it is usually written (``"BLEU"``, ``"chrF2"``, ``"ROUGE-L"``, ``"FID"``, ...).
        score: the value, a Python float at full precision.
        details: everything else the metric reports (precisions, brevity penalty, counts, per-segment
            scores, the reproducibility signature, ...); JSON-serialisable.
        library: the library that computed it (``"sacrebleu"``, ``"rouge-score"``, ``"aigc"``).
        version: that library's version.

    Example:
        >>> s = Score("BLEU", 48.53, {"signature": "nrefs:2|tok:13a"}, "sacrebleu", "2.6.0")
        >>> float(s)
        48.53
        >>> print(s)
        BLEU = 48.5300 (sacrebleu 2.6.0; nrefs:2|tok:13a)
    """

    name: str
    score: float
    details: Mapping[str, Any] = field(default_factory=dict)
    library: str = "aigc"
    version: str = _aigc_version

    def __float__(self) -> float:
        return float(self.score)

    def __str__(self) -> str:
        summary = self.details.get("summary")
        if not isinstance(summary, str):
            summary = f"{self.name} = {_format(self.score)}"
        where = f"{self.library} {self.version}"
        signature = self.details.get("signature")
        if isinstance(signature, str) and signature:
            where += f"; {signature}"
        return f"{summary} ({where})"

    def to_dict(self) -> dict[str, Any]:
        """The score as plain JSON-serialisable data (``json.dumps(score.to_dict())``)."""
        return {"name": self.name, "score": self.score, "details": dict(self.details), "library": self.library,
                "version": self.version}


def _format(value: float) -> str:
    if math.isfinite(value) and (abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3)):
        return f"{value:.4e}"
    return f"{value:.4f}"


def import_optional(module: str, distribution: str, metric: str) -> Any:
    """Import ``module`` or raise :class:`BackendUnavailable` naming the ``eval`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BackendUnavailable(f"{metric} needs the {distribution!r} package, which is not installed",
                                 extra="eval") from None


def version_of(distribution: str) -> str:
    """The installed version of ``distribution`` ("unknown" when metadata is missing)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
