"""Image sets as the metrics take them: a directory, files, or PIL images, read in batches. Shared by
:mod:`aigc.evaluate.image` and :mod:`aigc.evaluate.clip`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from PIL import Image

from aigc.errors import InvalidRequest

__all__ = ["IMAGE_SUFFIXES", "Images", "check_batch_size", "image_batches", "image_items"]

#: A directory or file path, or a list of PIL images and/or image paths.
Images = Union[str, "os.PathLike[str]", Sequence[Union[Image.Image, str, "os.PathLike[str]"]]]
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


def image_items(field: str, images: Any, *, min_count: int) -> list[Image.Image | Path]:
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


def image_batches(field: str, items: list[Image.Image | Path], batch_size: int) -> Iterator[list[Image.Image]]:
    for start in range(0, len(items), batch_size):
        yield [_open(field, start + i, it) for i, it in enumerate(items[start:start + batch_size])]


def check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidRequest("batch_size", batch_size, "must be an int >= 1", "pass batch_size=64")
