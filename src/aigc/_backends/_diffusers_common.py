"""What kind of diffusers pipeline a model folder holds, read from its ``model_index.json`` without loading it.

The image, audio and video ``diffusers`` backends all load pipeline folders; each claims only its own kind, so
``aigc.load("image", video_dir)`` fails at detection with a clear message instead of deep inside loading.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["is_audio_pipeline", "is_video_pipeline", "pipeline_class"]

# Pipeline class names that make video. Most say so ("...VideoPipeline", "...ImageToVideo..."); the rest by family.
_VIDEO_CLASS = re.compile(r"Video|I2V|^AnimateDiff|^PIA|^Wan|^LTX(?!LatentUpsample)|^Mochi|^Latte|^Allegro|"
                          r"^SkyReels|^EasyAnimate|^ConsisID")
# Pipeline class names that make audio.
_AUDIO_CLASS = re.compile(r"Audio|MusicLDM|^Dance")


def pipeline_class(path: Path) -> str | None:
    """The pipeline class a folder's ``model_index.json`` names, or ``None`` (no file, or not one).

    Example:
        >>> pipeline_class(Path("sd-turbo"))  # doctest: +SKIP
        'StableDiffusionPipeline'
    """
    try:
        name = json.loads((path / "model_index.json").read_text(encoding="utf-8"))["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def is_video_pipeline(class_name: str) -> bool:
    """Whether a diffusers pipeline class name (``model_index.json``'s ``_class_name``) is a video pipeline.

    Example:
        >>> is_video_pipeline("TextToVideoSDPipeline"), is_video_pipeline("StableDiffusionPipeline")
        (True, False)
    """
    return bool(_VIDEO_CLASS.search(class_name))


def is_audio_pipeline(class_name: str) -> bool:
    """Whether a diffusers pipeline class name is an audio pipeline (AudioLDM 1/2, MusicLDM, Stable Audio, ...).

    Example:
        >>> is_audio_pipeline("AudioLDM2Pipeline"), is_audio_pipeline("StableDiffusionPipeline")
        (True, False)
    """
    return bool(_AUDIO_CLASS.search(class_name))
