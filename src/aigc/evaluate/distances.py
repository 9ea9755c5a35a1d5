"""Distances between two sets of feature vectors, ``(N, D)`` arrays, computed in float64.

* :func:`frechet_distance` -- Heusel et al. 2017: ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of
  Gaussians fitted to the two sets. The matrix square root is taken through symmetric eigendecompositions
  (``Tr((S_a S_b)^(1/2)) = Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))``), which is stable and needs no scipy.
* :func:`kid` -- Binkowski et al. 2018: the unbiased estimate of the squared MMD with the polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, averaged over random subsets drawn from an explicit seeded generator.
* :func:`precision_recall` -- Kynkäänniemi et al. 2019: each set's manifold is the union of balls reaching
  each sample's k-th nearest neighbour; precision is the share of generated samples inside the real
  manifold, recall the share of real samples inside the generated one.

From images: :func:`aigc.evaluate.fid`, :func:`aigc.evaluate.kid_images` (:mod:`aigc.evaluate.image`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> round(frechet_distance(rng.normal(size=(5000, 2)), rng.normal(size=(5000, 2)) + [3, 0]).score)
    9
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from aigc.errors import InvalidRequest
from aigc.evaluate._score import Score

if TYPE_CHECKING:
    import torch

__all__ = ["frechet_distance", "frechet_distance_from_stats", "kid", "precision_recall"]

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
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


def pair_features(features_a: Any, features_b: Any) -> tuple[F64, F64]:
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


def frechet_score(a: F64, b: F64, name: str, extra: dict[str, Any]) -> Score:
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
    a, b = pair_features(features_a, features_b)
    return frechet_score(a, b, "Frechet distance", {})


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


def check_kid_args(subsets: Any, subset_size: Any, degree: Any, seed: Any) -> None:
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
    check_kid_args(subsets, subset_size, degree, seed)
    a, b = pair_features(features_a, features_b)
    return kid_score(a, b, subsets, subset_size, degree, seed, {})


def kid_score(a: F64, b: F64, subsets: int, subset_size: int, degree: int, seed: int,
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
    a, b = pair_features(features_a, features_b)
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
