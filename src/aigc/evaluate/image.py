"""Image metrics from images: FID and KID straight from image sets, with a pluggable feature extractor.

:func:`fid` and :func:`kid_images` take images (PIL images, files, or a directory) and a feature extractor:
``None`` for aigc's default offline extractor (a small CNN trained on 32x32 grayscale Fashion-MNIST and
MNIST, see :mod:`aigc.evaluate._classifier`), a callable mapping a list of PIL images to an ``(N, D)`` array,
a ``torch.nn.Module``, or the directory of a classifier saved with :func:`aigc.evaluate.save_classifier`.
Numbers from different extractors are not comparable; the default one is not Inception, so its FID is not
the FID of published papers. The distances themselves (:func:`frechet_distance`, :func:`kid`,
:func:`precision_recall`) live in :mod:`aigc.evaluate.distances` and take feature arrays; the CLIP score in
:mod:`aigc.evaluate.clip`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from aigc.errors import InvalidRequest
from aigc.evaluate._images import Images, check_batch_size, image_batches, image_items
from aigc.evaluate._score import Score
from aigc.evaluate.clip import clip_score
from aigc.evaluate.distances import (
    F64,
    check_kid_args,
    frechet_distance,
    frechet_distance_from_stats,
    frechet_score,
    kid,
    kid_score,
    pair_features,
    precision_recall,
)

if TYPE_CHECKING:
    import torch

__all__ = ["clip_score", "fid", "frechet_distance", "frechet_distance_from_stats", "image_features", "kid",
           "kid_images", "precision_recall"]

logger = logging.getLogger(__name__)

#: ``None`` (the default extractor), a callable ``list[PIL.Image] -> (N, D)``, a ``torch.nn.Module``, or a directory.
Extractor = Union[None, Callable[[list[Image.Image]], Any], "torch.nn.Module", str, "os.PathLike[str]"]




# -- images -> features ------------------------------------------------------------------------------
class _ModuleExtractor:
    """Runs a torch module on batches of images: ``module.preprocess`` when it has one, else RGB in [0, 1]."""

    def __init__(self, module: Any) -> None:
        self.module = module
        from aigc.evaluate._classifier import SmallCNN

        self.is_small_cnn = isinstance(module, SmallCNN)

    def __call__(self, images: list[Image.Image]) -> Any:
        import torch

        module = self.module
        params = list(module.parameters())
        device = params[0].device if params else torch.device("cpu")
        dtype = params[0].dtype if params and params[0].is_floating_point() else torch.float32
        preprocess = getattr(module, "preprocess", None)
        if callable(preprocess):
            x = preprocess(images)
        else:
            sizes = {im.size for im in images}
            if len(sizes) > 1:
                raise InvalidRequest("extractor", type(module).__name__, f"images of different sizes {sorted(sizes)} "
                                     "cannot be stacked for a torch module",
                                     "resize the images first, or give the module a preprocess(images) method")
            arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])  # (B, H, W, 3)
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W) in [0, 1]
        was_training = module.training
        module.eval()  # dropout and batch-norm statistics must not change the features
        try:
            with torch.inference_mode():
                x = x.to(device=device, dtype=dtype)
                out = module.features(x) if self.is_small_cnn else module(x)
        finally:
            module.train(was_training)
        if not isinstance(out, torch.Tensor):
            raise InvalidRequest("extractor", type(module).__name__, f"returned a {type(out).__name__}, not a tensor",
                                 "wrap the module so that it returns an (N, D) tensor")
        return out.reshape(out.shape[0], -1)  # (B, D): spatial feature maps are flattened


def _resolve_extractor(extractor: Any) -> tuple[Callable[[list[Image.Image]], Any], str]:
    """A callable ``list[PIL.Image] -> (N, D)`` and a name for the record."""
    if extractor is None:
        from aigc.evaluate._classifier import DEFAULT_CLASSIFIER_DIR, load_default_classifier

        return _ModuleExtractor(load_default_classifier()), f"aigc default ({DEFAULT_CLASSIFIER_DIR.name})"
    if isinstance(extractor, (str, os.PathLike)):
        from aigc.evaluate._classifier import load_classifier

        return _ModuleExtractor(load_classifier(extractor)), os.fspath(extractor)
    torch = sys.modules.get("torch")  # a torch module can only exist if torch is imported
    if torch is not None and isinstance(extractor, torch.nn.Module):
        return _ModuleExtractor(extractor), type(extractor).__name__
    if callable(extractor):
        return extractor, getattr(extractor, "__qualname__", type(extractor).__name__)
    raise InvalidRequest("extractor", type(extractor).__name__, "not a feature extractor",
                         "pass None (the default), a callable mapping a list of PIL images to an (N, D) array, "
                         "a torch.nn.Module, or a classifier directory")


def _extract(field: str, items: list[Image.Image | Path], fn: Callable[[list[Image.Image]], Any],
             batch_size: int) -> F64:
    rows: list[F64] = []
    for batch in image_batches(field, items, batch_size):
        out = fn(batch)
        if hasattr(out, "detach"):
            import torch

            out = out.detach().to("cpu", torch.float64).numpy()
        arr = np.asarray(out, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != len(batch):
            raise InvalidRequest("extractor", getattr(fn, "__qualname__", type(fn).__name__),
                                 f"returned shape {arr.shape} for {len(batch)} images",
                                 "return an (N, D) array: one row of features per image")
        rows.append(arr)
    feats = np.concatenate(rows)
    if not np.isfinite(feats).all():
        raise InvalidRequest("extractor", getattr(fn, "__qualname__", type(fn).__name__),
                             f"returned NaN or infinite features for {field}", "check the extractor and the images")
    return feats


def image_features(images: Images, *, extractor: Extractor = None, batch_size: int = 64) -> F64:
    """Features of ``images`` from ``extractor``, as a float64 (N, D) array (compute once, reuse for every metric).

    Args:
        images: a directory (its image files, sorted by name), an image file, or a list of PIL images / paths.
        extractor: ``None`` for aigc's default extractor, a callable ``list[PIL.Image] -> (N, D)``, a
            ``torch.nn.Module`` (given ``module.preprocess(images)`` when it has one, else an RGB float batch in
            [0, 1]; run in eval mode under ``inference_mode``; outputs flattened), or a classifier directory.
        batch_size: images per extractor call.

    Returns:
        The (N, D) float64 features, in the order of ``images``.

    Raises:
        InvalidRequest: no images, an unreadable image file, or an extractor with a bad output.
        ModelNotFound: ``extractor=None`` and this installation ships no default extractor.

    Example:
        >>> sizes = lambda ims: [[im.width, im.height] for im in ims]
        >>> image_features("samples/", extractor=sizes).shape  # doctest: +SKIP
        (64, 2)
    """
    check_batch_size(batch_size)
    items = image_items("images", images, min_count=1)
    fn, _ = _resolve_extractor(extractor)
    return _extract("images", items, fn, batch_size)


def _features_of_both(images_a: Any, images_b: Any, extractor: Any, batch_size: int) -> tuple[Any, Any, str]:
    """Features of both image sets with one extractor, checked as a pair; and the extractor's name."""
    items_a = image_items("images_a", images_a, min_count=2)
    items_b = image_items("images_b", images_b, min_count=2)
    fn, name = _resolve_extractor(extractor)
    a = _extract("images_a", items_a, fn, batch_size)
    b = _extract("images_b", items_b, fn, batch_size)
    a, b = pair_features(a, b)
    return a, b, name


def fid(images_a: Images, images_b: Images, *, extractor: Extractor = None, batch_size: int = 64) -> Score:
    """Frechet distance between the features of two image sets (FID when the extractor is Inception).

    Args:
        images_a: the reference images: a directory, an image file, or a list of PIL images / paths.
        images_b: the generated images, likewise.
        extractor: see :func:`image_features` (``None``: aigc's default offline extractor).
        batch_size: images per extractor call.

    Returns:
        A :class:`Score` named ``"FID"``; ``details`` records the extractor, sample counts and feature size.

    Raises:
        InvalidRequest: fewer than 2 images in a set, unreadable files, bad extractor output.
        ModelNotFound: ``extractor=None`` and this installation ships no default extractor.

    Example:
        >>> aigc.evaluate.fid("real/", "generated/").score  # doctest: +SKIP
        12.3
    """
    check_batch_size(batch_size)
    a, b, name = _features_of_both(images_a, images_b, extractor, batch_size)
    return frechet_score(a, b, "FID", {"extractor": name})


def kid_images(
    images_a: Images,
    images_b: Images,
    *,
    extractor: Extractor = None,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
    batch_size: int = 64,
) -> Score:
    """KID between the features of two image sets (see :func:`kid` and :func:`image_features`).

    Args:
        images_a: the reference images: a directory, an image file, or a list of PIL images / paths.
        images_b: the generated images, likewise.
        extractor: see :func:`image_features`.
        subsets, subset_size, degree, seed: as for :func:`kid`.
        batch_size: images per extractor call.

    Returns:
        A :class:`Score` named ``"KID"`` with ``details["std"]`` and the extractor.

    Raises:
        InvalidRequest: as for :func:`fid` and :func:`kid`.
        ModelNotFound: ``extractor=None`` and this installation ships no default extractor.

    Example:
        >>> aigc.evaluate.kid_images("real/", "generated/", subset_size=100).score  # doctest: +SKIP
        0.0021
    """
    check_batch_size(batch_size)
    check_kid_args(subsets, subset_size, degree, seed)
    a, b, name = _features_of_both(images_a, images_b, extractor, batch_size)
    return kid_score(a, b, subsets, subset_size, degree, seed, {"extractor": name})
