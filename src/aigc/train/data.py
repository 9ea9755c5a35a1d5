"""Training images for the image recipes (:func:`aigc.train.train_gan`, ``train_vae``, ``train_diffusion``):
reading and checking them (:func:`load_image_set`), and drawing batches.

``data`` is a folder of images (one sub-folder per class, or images directly in it for an unconditional
model) or an array of images (N, H, W) / (N, H, W, C), uint8 or floats in [0, 1], with ``labels=`` for a
class-conditional model. Images are square with a power-of-two side; pixels become floats in [-1, 1].

Example:
    >>> import numpy as np
    >>> s = load_image_set(np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1])
    >>> s.pixels.shape, s.class_names
    (torch.Size([4, 1, 8, 8]), ('0', '1'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.formats.classes import entries as class_entries

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["ImageSet", "class_table", "draw_indices", "fingerprint", "load_image_set", "rows_by_class"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_DATA_FIX = ("pass a folder of images (one sub-folder per class), or an array (N, H, W) or (N, H, W, C) "
             "with labels=")


@dataclass(frozen=True)
class ImageSet:
    """Training images as one tensor, with their classes.

    Attributes:
        pixels: (N, C, R, R) float32 in [-1, 1].
        labels: (N,) int64 class ids, or ``None`` for an unlabelled set.
        class_names: the name of each class id (empty when unlabelled).
    """

    pixels: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_folder(folder: Path, channels: int | None) -> tuple[np.ndarray, list[int] | None, list[str]]:
    import numpy as np
    from PIL import Image

    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, _folder_images(d)) for d in subdirs if _folder_images(d)]
    flat = _folder_images(folder)
    if groups and flat:
        raise InvalidRequest("data", os.fspath(folder), "holds both images and class sub-folders",
                             "put every image in a class sub-folder, or use no sub-folders at all")
    files: list[tuple[int | None, Path]] = (
        [(None, p) for p in flat] if not groups else [(i, p) for i, (_, ps) in enumerate(groups) for p in ps])
    if not files:
        raise InvalidRequest("data", os.fspath(folder), "the folder holds no images",
                             f"put images ({', '.join(_IMAGE_SUFFIXES)}) in it, one sub-folder per class")
    arrays, size = [], None
    for _cls, path in files:
        try:
            with Image.open(path) as img:
                mode = "L" if (channels or (1 if img.mode in ("L", "1", "I", "I;16") else 3)) == 1 else "RGB"
                channels = 1 if mode == "L" else 3
                arr = np.asarray(img.convert(mode), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise InvalidRequest("data", os.fspath(path), f"cannot read the image ({e})",
                                 "remove or replace the file") from None
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise InvalidRequest("data", os.fspath(path), f"is {arr.shape[1]}x{arr.shape[0]}, the first image "
                                 f"{size[1]}x{size[0]}", "resize all images to one square size")
        arrays.append(arr)
    labels = [int(i or 0) for i, _ in files] if groups else None
    return np.stack(arrays), labels, [name for name, _ in groups]


def load_image_set(data: Any, *, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                   resolution: int | None = None) -> ImageSet:
    """Read and check a training set (see the module docstring); nothing is trained.

    Raises:
        InvalidRequest: an empty or unreadable set, mixed sizes, a size that is not ``resolution`` or a power
            of two, labels of the wrong length or out of range, or class names that do not match the labels.

    Example:
        >>> import numpy as np
        >>> s = load_image_set(np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1])
        >>> s.pixels.shape, s.class_names
        (torch.Size([4, 1, 8, 8]), ('0', '1'))
    """
    import numpy as np
    import torch

    names: list[str]
    if isinstance(data, (str, os.PathLike)):
        folder = Path(os.fspath(data))
        if not folder.is_dir():
            raise InvalidRequest("data", os.fspath(data), "no such directory", _DATA_FIX)
        if labels is not None:
            raise InvalidRequest("labels", "...", "a folder's classes come from its sub-folders",
                                 "drop labels=, or pass the images as an array")
        array, folder_labels, names = _read_folder(folder, None)
        labels = folder_labels
        if class_names is not None:
            raise InvalidRequest("class_names", list(class_names), "a folder's classes are its sub-folder names",
                                 "rename the sub-folders, or pass the images as an array")
    else:
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        if not isinstance(data, np.ndarray):
            raise InvalidRequest("data", type(data).__name__, "is not a folder or an array of images", _DATA_FIX)
        array = data
        names = []
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[0] == 0 or array.shape[-1] not in (1, 3):
        raise InvalidRequest("data", f"array of shape {tuple(array.shape)}",
                             "must hold one or more images, (N, H, W) or (N, H, W, C) with C = 1 or 3", _DATA_FIX)
    n, h, w, _channels = array.shape
    if h != w or h & (h - 1) or h < 4:
        raise InvalidRequest("data", f"{w}x{h} images", "must be square with a power-of-two side >= 4",
                             "pad or resize the images, e.g. 28x28 -> 32x32 with np.pad")
    if resolution is not None and h != resolution:
        raise InvalidRequest("data", f"{w}x{h} images", f"the model's config wants {resolution}x{resolution}",
                             f"resize the images to {resolution}x{resolution}, or pass a config with resolution={h}")
    if array.dtype == np.uint8:
        pixels = torch.from_numpy(np.ascontiguousarray(array)).float() / 127.5 - 1
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise InvalidRequest("data", f"{array.dtype} array", "float pixels must be finite and in [0, 1]",
                                 "scale the images to [0, 1], or pass uint8")
        pixels = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) * 2 - 1
    else:
        raise InvalidRequest("data", f"{array.dtype} array", "pixels must be uint8 or floats", _DATA_FIX)
    pixels = pixels.permute(0, 3, 1, 2).contiguous()  # (N, C, R, R)

    label_tensor = None
    if labels is not None:
        label_list = list(labels)
        if len(label_list) != n:
            raise InvalidRequest("labels", f"{len(label_list)} labels", f"the data has {n} images",
                                 "pass one class id per image")
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0 for x in label_list):
            raise InvalidRequest("labels", "...", "every label must be an int >= 0", "pass class ids 0, 1, 2, ...")
        label_tensor = torch.tensor([int(x) for x in label_list], dtype=torch.long)
        count = int(label_tensor.max()) + 1
        if class_names is not None:
            names = [str(x) for x in class_names]
            if len(names) < count or len(set(names)) != len(names):
                raise InvalidRequest("class_names", names, f"needs {count} distinct names (labels go up to "
                                     f"{count - 1})", "pass one distinct name per class id")
        elif not names:
            names = [str(i) for i in range(count)]
        missing = sorted(set(range(len(names))) - set(label_tensor.tolist()))
        if missing:
            raise InvalidRequest("labels", f"classes {missing[:5]}", "have no images",
                                 "give every class at least one image, or renumber the classes")
    elif class_names is not None:
        raise InvalidRequest("class_names", list(class_names), "needs labels=", "pass labels= with the class names")
    return ImageSet(pixels, label_tensor, tuple(names))


def rows_by_class(data: ImageSet) -> list[torch.Tensor] | None:
    """The row indices of each class (``None`` for an unlabelled set), for :func:`draw_indices`."""
    import torch

    if data.labels is None:
        return None
    return [torch.nonzero(data.labels == k).squeeze(1) for k in range(data.num_classes)]


def draw_indices(gen: torch.Generator, data: ImageSet, batch: int, balance: bool,
                 by_class: list[torch.Tensor] | None) -> torch.Tensor:
    """``batch`` random image indices drawn from ``gen``: uniform over the images, or (``balance``) a uniform
    class, then a uniform image of it -- so a class of 500 images weighs as much as one of 6,000."""
    import torch

    if balance and by_class is not None:
        classes = torch.randint(len(by_class), (batch,), generator=gen)
        picks = torch.rand(batch, generator=gen)
        return torch.stack([by_class[k][int(p * len(by_class[k]))] for k, p in zip(classes.tolist(), picks.tolist(),
                                                                                  strict=True)])
    return torch.randint(data.pixels.shape[0], (batch,), generator=gen)


def class_table(names: Sequence[str], phrases: Mapping[str, Sequence[str]] | None) -> list[dict[str, Any]]:
    """The stored class table (:func:`aigc.formats.classes.entries`) of ``names`` with their extra prompt
    ``phrases``; InvalidRequest when ``phrases`` names a class the data does not have."""
    unknown = sorted(set(phrases or {}) - set(names))
    if unknown:
        raise InvalidRequest("class_phrases", unknown, "names classes the data does not have",
                             f"use the class names {list(names)[:8]}")
    return class_entries(names, phrases)


def fingerprint(data: ImageSet) -> str:
    """A short hash of the pixels and labels, so a checkpoint is only resumed on the same data."""
    import hashlib

    import numpy as np

    h = hashlib.sha256(np.ascontiguousarray(data.pixels.numpy()).tobytes())
    if data.labels is not None:
        h.update(data.labels.numpy().tobytes())
    h.update(repr(data.class_names).encode())
    return h.hexdigest()[:16]
