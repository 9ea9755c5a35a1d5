"""Models shipped inside the package, under ``aigc/assets``."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aigc.errors import ModelNotFound

__all__ = ["asset_dir"]


def asset_dir(folder: str, *, marker: str, what: str) -> Path:
    """The installed folder ``aigc/assets/<folder>``; ``ModelNotFound`` when its ``marker`` file is missing.

    Example:
        >>> asset_dir("image_default", marker="aigc_classes.json", what="the built-in image model 'default'").name
        'image_default'
    """
    path = Path(str(importlib.resources.files("aigc") / "assets" / folder))
    if not (path / marker).is_file():
        raise ModelNotFound(f"{what} is missing from {path}. "
                            "Fix: reinstall aigc (the wheel ships it under aigc/assets)")
    return path
