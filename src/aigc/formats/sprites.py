"""The sprite-clip format (``aigc.sprite_video``): a :class:`aigc.models.sprite_video.SpriteVideoVAE` with what
can move and where, written by :func:`aigc.train.train_sprite_video` and ``aigc.testing.tiny_sprite_video``,
loaded by the ``sprites`` video backend::

    model-dir/
        config.json         {"format": "aigc.sprite_video", "version": 1,
                             "config": {...SpriteVideoConfig fields...},
                             "classes": [{"id": 0, "name": "digit 0", "phrases": [...]}, ...],
                             "directions": [{"id": 0, "name": "left", "phrases": [...]}, ...],
                             "defaults": {"fps": 8.0, "truncation": 0.8}}
        model.safetensors   the clip VAE's weights

Example:
    >>> save(tmp / "m", net, classes=[{"id": 0, "name": "digit 0"}])  # doctest: +SKIP
    >>> load(tmp / "m").classes.names  # doctest: +SKIP
    {0: 'digit 0'}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aigc.errors import ModelNotFound
from aigc.formats import _folder
from aigc.formats.classes import ClassTable

if TYPE_CHECKING:
    from aigc.models.sprite_video import SpriteVideoVAE

__all__ = ["DIRECTION_PHRASES", "FORMAT", "VERSION", "SpriteFile", "detect", "load", "save"]

FORMAT = "aigc.sprite_video"
VERSION = 1
#: direction name -> the phrases that name it, in id order (0 left, 1 right, 2 up, 3 down; y grows downwards)
DIRECTION_PHRASES = {
    "left": ["moving left", "left", "leftward", "leftwards", "to the left", "going left", "goes left", "moves left",
             "walking left", "right to left", "westward", "west"],
    "right": ["moving right", "right", "rightward", "rightwards", "to the right", "going right", "goes right",
              "moves right", "walking right", "left to right", "eastward", "east"],
    "up": ["moving up", "up", "upward", "upwards", "going up", "goes up", "moves up", "rising", "climbing",
           "northward", "north", "bottom to top"],
    "down": ["moving down", "down", "downward", "downwards", "going down", "goes down", "moves down", "falling",
             "sinking", "southward", "south", "top to bottom"],
}


@dataclass
class SpriteFile:
    """A loaded clip VAE with its prompt vocabulary and defaults.

    Attributes:
        net: the :class:`SpriteVideoVAE`, on its device, in eval mode, gradients off.
        classes: what can move (class id -> name, and the phrases naming each).
        directions: where it can go (direction id -> name, and phrases).
        defaults: request defaults (``fps``, ``truncation``).
        weights: the fingerprint of the weight file (for provenance).
    """

    net: Any
    classes: ClassTable
    directions: ClassTable
    defaults: dict[str, Any]
    weights: str


def detect(path: Path) -> bool:
    """Whether ``path/config.json`` declares the sprite-clip format."""
    return _folder.read_config(path, FORMAT) is not None


def save(out: str | os.PathLike[str], net: SpriteVideoVAE, *, classes: Sequence[Mapping[str, Any]],
         directions: Sequence[Mapping[str, Any]] | None = None, defaults: Mapping[str, Any] | None = None,
         dtype: torch.dtype = torch.float16) -> Path:
    """Write ``net`` as a model folder.

    Args:
        classes: ``[{"id": 0, "name": "digit 0", "phrases": [...]}, ...]``, one per class of ``net``.
        directions: as ``classes``, one per direction; default :data:`DIRECTION_PHRASES` (4 directions).
        defaults: request defaults (``fps``, ``truncation``).
        dtype: the stored weights' dtype (float16 halves the file).
    """
    if directions is None:
        directions = [{"id": i, "name": k, "phrases": v} for i, (k, v) in enumerate(DIRECTION_PHRASES.items())]
    config = {"format": FORMAT, "version": VERSION, "config": net.cfg.to_dict(),
              "classes": [dict(c) for c in classes], "directions": [dict(d) for d in directions],
              "defaults": dict(defaults or {})}
    return _folder.write(out, config, net.state_dict(), dtype=dtype)


def load(path: str | os.PathLike[str], *, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> SpriteFile:
    """Load a sprite-clip folder onto ``device`` in ``dtype``.

    Raises:
        ModelNotFound: not a sprite-clip folder, or the config and weights do not fit.
    """
    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE

    folder, data, state, weights = _folder.open_model(
        path, FORMAT, "sprite-video model", "pass a directory written by aigc.train.train_sprite_video, or another "
        "backend=")
    with _folder.parsing(folder, "sprite-video"):
        cfg = SpriteVideoConfig.from_dict(data["config"])
        classes = ClassTable.from_entries(data["classes"])
        directions = ClassTable.from_entries(data["directions"])
        stored = dict(data.get("defaults", {}))
        defaults = {**stored, "fps": float(stored.get("fps", 8.0)), "truncation": float(stored.get("truncation", 1.0))}
    if sorted(classes.names) != list(range(cfg.num_classes)) or \
            sorted(directions.names) != list(range(cfg.num_directions)):
        raise ModelNotFound(f"{folder}: the network has {cfg.num_classes} classes and {cfg.num_directions} "
                            f"directions, {_folder.CONFIG_FILE} names {len(classes.names)} and "
                            f"{len(directions.names)}. Fix: export the model and its config together")
    net = SpriteVideoVAE(cfg)
    _folder.load_state(net, state, folder, dtype)
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return SpriteFile(net, classes, directions, defaults, weights)
