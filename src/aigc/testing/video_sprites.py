"""A tiny random model for the ``sprites`` video backend, to test the real loading path offline.

Example:
    >>> from aigc.testing.video_sprites import tiny_sprite_video
    >>> gen = aigc.load("video", tiny_sprite_video(tmp_path / "m"))  # doctest: +SKIP
    >>> gen.generate("a circle moving left", seed=0).frames.shape  # doctest: +SKIP
    (4, 16, 16, 3)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TINY_SPRITE_CLASSES", "tiny_sprite_video"]

#: what the tiny model draws (random weights: the names are only prompt vocabulary)
TINY_SPRITE_CLASSES = ("circle", "square", "cross")


def tiny_sprite_video(path: str | os.PathLike[str], *, seed: int = 0, frames: int = 4, resolution: int = 16) -> Path:
    """A random :class:`~aigc.models.sprite_video.SpriteVideoVAE` in the ``sprites`` backend's format, saved to
    ``path`` (float32): classes ``"circle"``, ``"square"``, ``"cross"``; directions left, right, up, down;
    ``frames`` frames of ``resolution`` pixels; defaults fps 8 and truncation 1.

    The weights come from ``seed`` alone (the global RNG is forked and restored).
    """
    import torch

    from aigc.formats import sprites
    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE

    cfg = SpriteVideoConfig(frames=frames, resolution=resolution, widths=(8, 16), latent_dim=8,
                            num_classes=len(TINY_SPRITE_CLASSES), embed_dim=4, hidden=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SpriteVideoVAE(cfg).eval()
    classes = [{"id": i, "name": name, "phrases": [f"a {name}", f"{name}s"]} for i, name in
               enumerate(TINY_SPRITE_CLASSES)]
    return sprites.save(path, net, classes=classes, defaults={"fps": 8.0, "truncation": 1.0}, dtype=torch.float32)
