"""Evaluation metrics for generated text and images, typed and reproducible.

Text (BLEU, chrF, ROUGE computed by the reference libraries sacrebleu and rouge-score, so the numbers are
theirs to the last bit)::

    >>> from aigc import evaluate
    >>> round(evaluate.bleu(["The dog bit the man."], ["The dog bit the man."]).score, 2)
    100.0
    >>> evaluate.rouge(["今天天气很好"], ["今天天气不错"])["rouge1"].score  # doctest: +ELLIPSIS
    0.666...

perplexity of any transformers text Generator, diversity (distinct-n, self-BLEU); images: Frechet distance,
KID and precision/recall between feature sets, FID/KID straight from images with a pluggable feature
extractor, CLIP score with a local CLIP model. Every metric returns a :class:`Score` (value, details, the
library and version that computed it).

``import aigc.evaluate`` is light: numpy, torch, sacrebleu and rouge-score load when a metric needs them
(``pip install 'aigc[eval]'`` for sacrebleu and rouge-score).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigc._runtime.lazy import lazy_attributes as _lazy_attributes
from aigc.evaluate._score import Score

if TYPE_CHECKING:
    from aigc.evaluate._classifier import SmallCNN, SmallCNNConfig, load_classifier, save_classifier
    from aigc.evaluate.clip import clip_score
    from aigc.evaluate.distances import frechet_distance, frechet_distance_from_stats, kid, precision_recall
    from aigc.evaluate.image import fid, image_features, kid_images
    from aigc.evaluate.text import bleu, chrf, distinct_n, perplexity, rouge, self_bleu

__all__ = [
    "Score",
    "SmallCNN",
    "SmallCNNConfig",
    "bleu",
    "chrf",
    "clip_score",
    "distinct_n",
    "fid",
    "frechet_distance",
    "frechet_distance_from_stats",
    "image_features",
    "kid",
    "kid_images",
    "load_classifier",
    "perplexity",
    "precision_recall",
    "rouge",
    "save_classifier",
    "self_bleu",
]

# Public name -> the submodule that defines it; imported on first access (PEP 562).
_LAZY = {
    **dict.fromkeys(("bleu", "chrf", "distinct_n", "perplexity", "rouge", "self_bleu"), "text"),
    **dict.fromkeys(("fid", "image_features", "kid_images"), "image"),
    **dict.fromkeys(("frechet_distance", "frechet_distance_from_stats", "kid", "precision_recall"), "distances"),
    "clip_score": "clip",
    **dict.fromkeys(("SmallCNN", "SmallCNNConfig", "load_classifier", "save_classifier"), "_classifier"),
}


__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, __all__)
