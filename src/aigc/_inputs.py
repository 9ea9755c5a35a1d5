"""Checks of the media a request takes as input (``init_image``, ``mask``, ``init_video``), before any heavy work.

A file given by path must exist; it is stored in the request as an absolute path, so a provenance record can
replay it from another working directory. In-memory inputs are checked for type and shape only. Importing this
module imports no torch and no PIL.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.limits import exceeded

if TYPE_CHECKING:
    from aigc._types import Request

__all__ = ["check_image_path", "check_init_video"]


def _is_pil(value: Any) -> bool:
    return hasattr(value, "getbbox") and hasattr(value, "mode")


def _store_path(request: Request, name: str, value: str | os.PathLike[str], *, exists: Any, what: str,
                fix: str) -> None:
    """Check that the path ``value`` of field ``name`` passes ``exists`` and store it absolute in ``request``."""
    path = os.path.abspath(os.path.expanduser(os.fspath(value)))
    if not exists(path):
        raise InvalidRequest(name, os.fspath(value), f"no such {what}", fix)
    object.__setattr__(request, name, path)


def check_image_path(request: Request, name: str) -> None:
    """Field ``name`` of ``request`` is ``None``, a PIL image, or the path of an existing image file.

    Example:
        >>> from aigc import ImageRequest
        >>> ImageRequest(prompt="a cat", init_image="no-such.png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: init_image='no-such.png': no such image file...
    """
    value = getattr(request, name)
    if isinstance(value, (str, os.PathLike)):
        _store_path(request, name, value, exists=os.path.isfile, what="image file",
                    fix="pass an existing PNG/JPEG path")
    elif value is not None and not _is_pil(value):
        raise InvalidRequest(name, type(value).__name__, "must be a PIL image or a file path",
                             "pass PIL.Image.open(...) or a path")


def check_init_video(request: Request) -> None:
    """``request.init_video`` is ``None``, the path of a video file or frame folder, frames as a uint8 array
    (T, H, W) / (T, H, W, 3), or a non-empty list of PIL images; at most ``max_frames`` frames where countable.

    Example:
        >>> from aigc import VideoRequest
        >>> VideoRequest(prompt="a2b", init_video="no-such.mp4")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: init_video='no-such.mp4': no such video file or frame folder...
    """
    value = getattr(request, "init_video", None)
    if value is None:
        return
    if isinstance(value, (str, os.PathLike)):
        _store_path(request, "init_video", value, exists=os.path.exists, what="video file or frame folder",
                    fix="pass an existing .mp4/.gif/.webp file or a folder of frames")
        return
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        if str(value.dtype) != "uint8" or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] != 3) \
                or 0 in tuple(shape):
            raise InvalidRequest("init_video", f"array {tuple(shape)} {value.dtype}",
                                 "frames must be a uint8 array (T, H, W) or (T, H, W, 3) with at least one frame",
                                 "stack 8-bit frames along a new first axis")
        count = int(shape[0])
    elif isinstance(value, (list, tuple)) and value and all(_is_pil(v) for v in value):
        count = len(value)
    else:
        raise InvalidRequest("init_video", type(value).__name__, "must be a video path, a uint8 frame array or a "
                             "list of PIL images", "pass init_video='clip.mp4'")
    exceeded("init_video", f"<{count} frames>", count, "max_frames", "frames per clip")
