"""Image metrics: Frechet distance (FID), KID, precision/recall and CLIP score.

The distribution metrics compare two sets of feature vectors, ``(N, D)`` arrays, in float64:

* :func:`frechet_distance` -- Heusel et al. 2017: ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of
  Gaussians fitted to the two sets. The matrix square root is taken through symmetric eigendecompositions
  (``Tr((S_a S_b)^(1/2)) = Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))``), which is stable and needs no scipy.
* :func:`kid` -- Binkowski et al. 2018: the unbiased estimate of the squared MMD with the polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, averaged over random subsets drawn from an explicit seeded generator.
* :func:`precision_recall` -- Kynkäänniemi et al. 2019: each set's manifold is the union of balls reaching
  each sample's k-th nearest neighbour; precision is the share of generated samples inside the real
  manifold, recall the share of real samples inside the generated one.

:func:`fid` and :func:`kid_images` take images (PIL images, files, or a directory) and a feature extractor:
``None`` for aigc's default offline extractor (a small CNN trained on 32x32 grayscale Fashion-MNIST and
MNIST, see :mod:`aigc.evaluate._classifier`), a callable mapping a list of PIL images to an ``(N, D)`` array,
a ``torch.nn.Module``, or the directory of a classifier saved with :func:`aigc.evaluate.save_classifier`.
Numbers from different extractors are not comparable; the default one is not Inception, so its FID is not
the FID of published papers.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt
from PIL import Image

from aigc.errors import InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.evaluate._score import Score

if TYPE_CHECKING:
    import torch

__all__ = ["clip_score", "fid", "frechet_distance", "frechet_distance_from_stats", "image_features", "kid",
           "kid_images", "precision_recall"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
#: A directory or file path, or a list of PIL images and/or image paths.
Images = Union[str, "os.PathLike[str]", Sequence[Union[Image.Image, str, "os.PathLike[str]"]]]
#: ``None`` (the default extractor), a callable ``list[PIL.Image] -> (N, D)``, a ``torch.nn.Module``, or a directory.
Extractor = Union[None, Callable[[list[Image.Image]], Any], "torch.nn.Module", str, "os.PathLike[str]"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_CHUNK = 256  # rows of a pairwise-distance block: 256 x N float64 (100 MB for N = 50,000)


# -- feature arrays ----------------------------------------------------------------------------------
def _as_features(field: str, value: Any) -> F64:
    """A finite float64 (N, D) array with N >= 2, or an InvalidRequest naming ``field``."""
    if hasattr(value, "detach"):  # a torch tensor (any dtype, any device)
        import torch

        value = value.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidRequest(field, type(value).__name__, f"not a numeric array ({e})",
                             "pass an (N, D) numpy array or torch tensor of features") from None
    if arr.ndim != 2:
        raise InvalidRequest(field, f"array of shape {arr.shape}", "must be 2-D: (N samples, D features)",
                             "reshape it, e.g. features.reshape(len(features), -1)")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise InvalidRequest(field, f"array of shape {arr.shape}", "needs at least 2 samples of at least 1 feature",
                             "pass more samples (FID needs many more samples than features to be reliable)")
    if not np.isfinite(arr).all():
        raise InvalidRequest(field, f"array of shape {arr.shape}", "contains NaN or infinity",
                             "check the feature extractor's output")
    return arr


def _pair(features_a: Any, features_b: Any) -> tuple[F64, F64]:
    a = _as_features("features_a", features_a)
    b = _as_features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise InvalidRequest("features_b", f"array of shape {b.shape}",
                             f"has {b.shape[1]} features per sample but features_a has {a.shape[1]}",
                             "extract both sets with the same extractor")
    return a, b


def _sqrtm_psd(matrix: F64) -> F64:
    """The square root of a symmetric positive semi-definite matrix, through ``eigh`` (negative rounding clipped)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # type: ignore[no-any-return]


def frechet_distance_from_stats(mu_a: npt.ArrayLike, sigma_a: npt.ArrayLike, mu_b: npt.ArrayLike,
                                sigma_b: npt.ArrayLike) -> float:
    """The Frechet (2-Wasserstein) distance between N(mu_a, sigma_a) and N(mu_b, sigma_b), in closed form.

    ``d^2 = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))`` (Dowson and Landau
    1982; Heusel et al. 2017, eq. 6), computed in float64 with symmetric eigendecompositions.

    Args:
        mu_a, mu_b: mean vectors, shape (D,).
        sigma_a, sigma_b: covariance matrices, shape (D, D), symmetric positive semi-definite.

    Returns:
        The squared distance ``d^2`` (what "FID" reports), >= 0.

    Raises:
        InvalidRequest: shapes that do not agree, or non-finite values.

    Example:
        >>> frechet_distance_from_stats([0, 0], [[1, 0], [0, 4]], [1, 0], [[4, 0], [0, 1]])  # 1 + 1 + 1
        3.0
    """
    named = {"mu_a": mu_a, "sigma_a": sigma_a, "mu_b": mu_b, "sigma_b": sigma_b}
    arrays: dict[str, F64] = {}
    for name, value in named.items():
        try:
            arrays[name] = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InvalidRequest(name, type(value).__name__, f"not numeric ({e})", "pass numbers") from None
        if not np.isfinite(arrays[name]).all():
            raise InvalidRequest(name, arrays[name].shape, "contains NaN or infinity", "pass finite statistics")
    m1, s1, m2, s2 = arrays["mu_a"], arrays["sigma_a"], arrays["mu_b"], arrays["sigma_b"]
    d = m1.shape[0] if m1.ndim == 1 else -1
    for name, arr, shape in (("mu_a", m1, (d,)), ("sigma_a", s1, (d, d)), ("mu_b", m2, (d,)), ("sigma_b", s2, (d, d))):
        if d < 1 or arr.shape != shape:
            raise InvalidRequest(name, f"shape {arr.shape}", f"expected shape {shape} (D = len(mu_a))",
                                 "pass means of shape (D,) and covariances of shape (D, D)")
    # 1. squared distance of the means
    diff = m1 - m2
    # 2. Tr((S_a S_b)^(1/2)) = Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): a symmetric PSD matrix, so its square root's
    #    trace is the sum of the square roots of its eigenvalues (eigvalsh: real, stable, no complex parts).
    root_a = _sqrtm_psd(s1)
    middle = root_a @ s2 @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    # 3. d^2 = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)); rounding can make it -1e-13
    value = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_covmean
    return max(value, 0.0)


def _frechet_score(a: F64, b: F64, name: str, extra: dict[str, Any]) -> Score:
    if min(len(a), len(b)) <= a.shape[1]:
        logger.warning("%s: %d and %d samples for %d features: the covariances are singular and the estimate is "
                       "strongly biased; use more samples than features", name, len(a), len(b), a.shape[1])
    # Sample covariances with N - 1 in the denominator, as in the reference FID implementations.
    value = frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1]),
                                        b.mean(0), np.cov(b, rowvar=False).reshape(b.shape[1], b.shape[1]))
    details = {"summary": f"{name} = {value:.4f} ({len(a)} vs {len(b)} samples, {a.shape[1]} features)",
               "n_a": len(a), "n_b": len(b), "dim": a.shape[1], **extra}
    return Score(name, value, details)


def frechet_distance(features_a: npt.ArrayLike | torch.Tensor, features_b: npt.ArrayLike | torch.Tensor) -> Score:
    """The Frechet distance between Gaussians fitted to two sets of features (the formula behind FID).

    Args:
        features_a: (N_a, D) features of one set (numpy array or torch tensor; computed in float64).
        features_b: (N_b, D) features of the other set.

    Returns:
        A :class:`Score` named ``"Frechet distance"`` (>= 0; 0 for identical sets), with the sample counts.

    Raises:
        InvalidRequest: not 2-D, fewer than 2 samples, non-finite values, or different feature sizes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(5000, 2)), rng.normal(size=(5000, 2)) + [3, 0]
        >>> round(frechet_distance(a, b).score)  # ||mu_a - mu_b||^2 = 9
        9
    """
    a, b = _pair(features_a, features_b)
    return _frechet_score(a, b, "Frechet distance", {})


def _kid_value(a: F64, b: F64, subsets: int, subset_size: int, degree: int, seed: int) -> tuple[F64, int]:
    m = min(subset_size, len(a), len(b))
    if m < subset_size:
        logger.info("kid: subset_size=%d is larger than a set (%d, %d); using %d", subset_size, len(a), len(b), m)
    dim = a.shape[1]
    rng = np.random.default_rng(seed)  # explicit generator: the same seed gives the same subsets
    values = np.empty(subsets, dtype=np.float64)
    for s in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]  # (m, D)
        y = b[rng.choice(len(b), m, replace=False)]  # (m, D)
        k_xx = (x @ x.T / dim + 1.0) ** degree  # (m, m) polynomial kernel
        k_yy = (y @ y.T / dim + 1.0) ** degree
        k_xy = (x @ y.T / dim + 1.0) ** degree
        # Unbiased MMD^2 (Binkowski et al. 2018, eq. 4; Gretton et al. 2012): same-set terms skip the diagonal.
        values[s] = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1)) + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
                     - 2.0 * k_xy.sum() / (m * m))
    return values, m


def _check_kid_args(subsets: Any, subset_size: Any, degree: Any, seed: Any) -> None:
    for name, value, minimum in (("subsets", subsets, 1), ("subset_size", subset_size, 2), ("degree", degree, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise InvalidRequest(name, value, f"must be an int >= {minimum}", f"pass {name}={max(minimum, 3)} or more")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidRequest("seed", seed, "must be an int >= 0", "pass seed=0")


def kid(
    features_a: npt.ArrayLike | torch.Tensor,
    features_b: npt.ArrayLike | torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> Score:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel.

    ``subsets`` pairs of ``subset_size`` samples (without replacement, capped at the smaller set's size) are
    drawn with ``numpy.random.default_rng(seed)``; the score is the mean of their MMD^2 estimates. Being
    unbiased, it is about 0 (and may be slightly negative) when both sets come from one distribution.

    Args:
        features_a: (N_a, D) features of one set.
        features_b: (N_b, D) features of the other set.
        subsets: how many subset pairs to average (100 as in the paper's code).
        subset_size: samples per subset (1000 as in the paper's code).
        degree: the polynomial kernel's degree (3).
        seed: seed of the subset sampling; the same seed gives the same score.

    Returns:
        A :class:`Score` named ``"KID"``; ``details["std"]`` is the standard deviation over subsets.

    Raises:
        InvalidRequest: bad features (as for :func:`frechet_distance`) or bad subset parameters.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> abs(kid(rng.normal(size=(500, 8)), rng.normal(size=(500, 8)), subset_size=200).score) < 0.01
        True
    """
    _check_kid_args(subsets, subset_size, degree, seed)
    a, b = _pair(features_a, features_b)
    return _kid_score(a, b, subsets, subset_size, degree, seed, {})


def _kid_score(a: F64, b: F64, subsets: int, subset_size: int, degree: int, seed: int,
               extra: dict[str, Any]) -> Score:
    values, m = _kid_value(a, b, subsets, subset_size, degree, seed)
    mean, std = float(values.mean()), float(values.std())
    details = {"summary": f"KID = {mean:.6f} ± {std:.6f} ({subsets} subsets of {m})", "std": std,
               "subsets": subsets, "subset_size": m, "degree": degree, "seed": seed, "n_a": len(a), "n_b": len(b),
               **extra}
    return Score("KID", mean, details)


def _sq_dists(x: F64, y: F64) -> F64:
    """Squared Euclidean distances (len(x), len(y)), clipped at 0."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)  # type: ignore[no-any-return]


def _kth_radii(x: F64, k: int) -> F64:
    """Squared distance from each sample to its k-th nearest neighbour in ``x`` (itself excluded)."""
    radii = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), _CHUNK):
        d = _sq_dists(x[start:start + _CHUNK], x)
        radii[start:start + _CHUNK] = np.partition(d, k, axis=1)[:, k]  # column 0 is the sample itself
    return radii


def _coverage(points: F64, centres: F64, radii: F64) -> float:
    """The share of ``points`` inside at least one ball (centre, radius) -- distances compared squared."""
    inside = 0
    for start in range(0, len(points), _CHUNK):
        d = _sq_dists(points[start:start + _CHUNK], centres)
        inside += int((d <= radii[None, :]).any(axis=1).sum())
    return inside / len(points)


def precision_recall(
    features_a: npt.ArrayLike | torch.Tensor,
    features_b: npt.ArrayLike | torch.Tensor,
    *,
    k: int = 3,
) -> dict[str, Score]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of generated features against real ones.

    Args:
        features_a: (N_a, D) features of the *real* (reference) set.
        features_b: (N_b, D) features of the *generated* set.
        k: the neighbourhood size defining each ball's radius (3 in the paper).

    Returns:
        ``{"precision": Score, "recall": Score}``, both in [0, 1]: precision is the share of generated samples
        inside the real manifold (fidelity), recall the share of real samples inside the generated one
        (coverage). Both are 1 for identical sets.

    Raises:
        InvalidRequest: bad features, or ``k`` not smaller than both set sizes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 4))
        >>> precision_recall(x, x)["precision"].score
        1.0
    """
    a, b = _pair(features_a, features_b)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k < min(len(a), len(b)):
        raise InvalidRequest("k", k, f"must be an int in [1, {min(len(a), len(b)) - 1}] (smaller than each set)",
                             "pass k=3 with at least 4 samples per set")
    radii_a, radii_b = _kth_radii(a, k), _kth_radii(b, k)
    precision = _coverage(b, a, radii_a)
    recall = _coverage(a, b, radii_b)
    common = {"k": k, "n_a": len(a), "n_b": len(b)}
    return {
        "precision": Score("precision", precision, {"summary": f"precision = {precision:.4f} (k={k})", **common}),
        "recall": Score("recall", recall, {"summary": f"recall = {recall:.4f} (k={k})", **common}),
    }


# -- images -> features ------------------------------------------------------------------------------
def _image_items(field: str, images: Any, *, min_count: int) -> list[Image.Image | Path]:
    """PIL images and file paths (not opened yet) from a directory, a file, or a list."""
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            items: list[Image.Image | Path] = [
                p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if not items:
                raise InvalidRequest(field, os.fspath(path), "no image files in this directory",
                                     f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it, or pass a list of "
                                     "PIL images")
        elif path.is_file():
            items = [path]
        else:
            raise InvalidRequest(field, os.fspath(path), "no such file or directory",
                                 "pass an existing directory of images, or a list of PIL images")
    elif isinstance(images, Image.Image):
        items = [images]
    else:
        try:
            raw = list(images)
        except TypeError:
            raise InvalidRequest(field, type(images).__name__, "not images",
                                 "pass a directory, or a list of PIL images or image paths") from None
        items = []
        for i, item in enumerate(raw):
            if isinstance(item, Image.Image):
                items.append(item)
            elif isinstance(item, (str, os.PathLike)):
                items.append(Path(item))
            else:
                raise InvalidRequest(f"{field}[{i}]", type(item).__name__, "not a PIL image or a path",
                                     "pass PIL.Image.Image objects or image file paths")
    if len(items) < min_count:
        what = "empty" if not items else f"{len(items)} image(s); at least {min_count} are needed"
        raise InvalidRequest(field, f"{len(items)} image(s)", what, f"pass at least {min_count} images")
    return items


def _open(field: str, index: int, item: Image.Image | Path) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    try:
        with Image.open(item) as im:
            im.load()
            copy: Image.Image = im.copy()
            return copy
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidRequest(f"{field}[{index}]", os.fspath(item), f"cannot read this image ({e})",
                             "remove the file or replace it with a readable PNG, JPEG or WebP") from None


def _batches(field: str, items: list[Image.Image | Path], batch_size: int) -> Iterator[list[Image.Image]]:
    for start in range(0, len(items), batch_size):
        yield [_open(field, start + i, it) for i, it in enumerate(items[start:start + batch_size])]


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
    for batch in _batches(field, items, batch_size):
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


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidRequest("batch_size", batch_size, "must be an int >= 1", "pass batch_size=64")


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
    _check_batch_size(batch_size)
    items = _image_items("images", images, min_count=1)
    fn, _ = _resolve_extractor(extractor)
    return _extract("images", items, fn, batch_size)


def _features_of_both(images_a: Any, images_b: Any, extractor: Any, batch_size: int) -> tuple[Any, Any, str]:
    """Features of both image sets with one extractor, checked as a pair; and the extractor's name."""
    items_a = _image_items("images_a", images_a, min_count=2)
    items_b = _image_items("images_b", images_b, min_count=2)
    fn, name = _resolve_extractor(extractor)
    a = _extract("images_a", items_a, fn, batch_size)
    b = _extract("images_b", items_b, fn, batch_size)
    a, b = _pair(a, b)
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
    _check_batch_size(batch_size)
    a, b, name = _features_of_both(images_a, images_b, extractor, batch_size)
    return _frechet_score(a, b, "FID", {"extractor": name})


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
    _check_batch_size(batch_size)
    _check_kid_args(subsets, subset_size, degree, seed)
    a, b, name = _features_of_both(images_a, images_b, extractor, batch_size)
    return _kid_score(a, b, subsets, subset_size, degree, seed, {"extractor": name})


# -- CLIP score --------------------------------------------------------------------------------------
def clip_score(
    images: Images,
    prompts: Sequence[str],
    *,
    model: str | os.PathLike[str],
    batch_size: int = 32,
    device: str = "cpu",
) -> Score:
    """CLIP score: how well each image matches its prompt, ``100 * max(cos(E_image, E_text), 0)``, averaged.

    The scale is torchmetrics' ``CLIPScore`` (0-100); Hessel et al. 2021's CLIP-S uses ``2.5 * max(cos, 0)``
    (multiply by 0.025 to convert). Prompts longer than the model's context are truncated.

    Args:
        images: one image per prompt: a directory (sorted by name), or a list of PIL images / paths.
        prompts: the prompts, in the same order.
        model: a local directory with a transformers CLIP model (``CLIPModel``; safetensors weights) and its
            processor (tokenizer and image processor files), as written by ``save_pretrained``.
        batch_size: pairs per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``.

    Returns:
        A :class:`Score` named ``"CLIP score"`` in [0, 100]; ``details["per_sample"]`` holds each pair's score.

    Raises:
        InvalidRequest: no images, a different number of prompts and images, unreadable images.
        ModelNotFound: ``model`` is not a directory holding a CLIP model.
        UnsafeModelFile: the model has only pickle weights.

    Example:
        >>> clip_score(["cat.png"], ["a photo of a cat"], model="path/to/clip-vit-base-patch32").score  # doctest: +SKIP
        31.2
    """
    _check_batch_size(batch_size)
    items = _image_items("images", images, min_count=1)
    texts = list(prompts) if not isinstance(prompts, str) else [prompts]
    if not texts or any(not isinstance(p, str) for p in texts):
        raise InvalidRequest("prompts", prompts, "must be a non-empty list of strings", "pass one prompt per image")
    if len(texts) != len(items):
        raise InvalidRequest("prompts", f"{len(texts)} prompt(s)", f"there are {len(items)} image(s)",
                             "pass exactly one prompt per image, in the same order")
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"model={os.fspath(model)!r}: not a directory with a CLIP model's config.json. Fix: "
                            "pass a local directory written by CLIPModel/CLIPProcessor.save_pretrained")

    import torch
    from transformers import CLIPModel, CLIPProcessor

    from aigc._runtime.device import resolve_device

    dev = resolve_device(device)
    try:
        clip = CLIPModel.from_pretrained(os.fspath(path), use_safetensors=True)
        processor = CLIPProcessor.from_pretrained(os.fspath(path))
    except OSError as e:
        if "safetensors" in str(e).lower():
            raise UnsafeModelFile(f"model={os.fspath(model)!r} has no safetensors weights: {e}") from None
        raise ModelNotFound(f"model={os.fspath(model)!r}: {e}") from None
    clip.to(dev).eval()  # type: ignore[arg-type]
    max_tokens = min(int(getattr(clip.config.text_config, "max_position_embeddings", 77)),
                     int(getattr(processor.tokenizer, "model_max_length", 77) or 77))
    per_sample: list[float] = []
    with torch.inference_mode():
        for start, batch in zip(range(0, len(items), batch_size), _batches("images", items, batch_size), strict=True):
            tokens = processor.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                         max_length=max_tokens, return_tensors="pt").to(dev)
            pixels = processor.image_processor([im.convert("RGB") for im in batch], return_tensors="pt")
            text_emb = _embedding(clip.get_text_features(**tokens)).double()  # (B, P)
            image_emb = _embedding(clip.get_image_features(pixel_values=pixels["pixel_values"].to(dev))).double()
            cos = torch.nn.functional.cosine_similarity(image_emb, text_emb, dim=-1)  # (B,)
            per_sample += (100.0 * cos.clamp(min=0.0)).cpu().tolist()
    mean = math.fsum(per_sample) / len(per_sample)
    details = {"summary": f"CLIP score = {mean:.4f} ({len(per_sample)} pairs)", "per_sample": per_sample,
               "model": os.fspath(model), "scale": 100.0}
    return Score("CLIP score", mean, details)


def _embedding(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output  # type: ignore[no-any-return]
