"""Models shipped inside the package, under ``aigc/assets``."""

from __future__ import annotations

import importlib.resources
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aigc.errors import ModelNotFound

__all__ = ["asset_dir", "model_dir", "read_json_object"]


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


def model_dir(model: str, builtins: Mapping[str, str], *, marker: str, what: str, fix: str) -> Path:
    """A local model directory, or the asset folder of one of a backend's built-in names.

    Args:
        builtins: built-in name -> folder under ``aigc/assets``.
        marker, what: as in :func:`asset_dir`; ``what`` names the kind of model, e.g. ``"audio model"``.
        fix: the fix to suggest when ``model`` is neither.

    Raises:
        ModelNotFound: ``model`` is neither a directory nor a built-in name, or the built-in folder is missing.

    Example:
        >>> model_dir("default", {"default": "audio_default"}, marker="config.json", what="audio model",
        ...           fix="pass a model directory").name
        'audio_default'
    """
    if os.path.isdir(model):
        return Path(model)
    if model in builtins:
        return asset_dir(builtins[model], marker=marker, what=f"the built-in {what} {model!r}")
    raise ModelNotFound(f"model={model!r}: not a directory, nor a built-in {what} ({', '.join(builtins)}). "
                        f"Fix: {fix}")


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in a model folder's file (``config.json``, ``model_index.json``), or ``None`` when the file
    is missing, unreadable, or not a JSON object -- what backends' ``detect`` needs, without raising.

    Example:
        >>> read_json_object(Path("no/such/config.json")) is None
        True
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
