"""Where a result can be saved, checked before any work: the command line (and anyone else who knows the output
path up front) calls :func:`check_output` before loading a model, so a wrong suffix or a missing optional package
fails in a fraction of a second rather than after the generation."""

from __future__ import annotations

import os
from pathlib import Path

from aigc._media.atomic import check_save_path
from aigc._types import Modality
from aigc.errors import InvalidRequest

__all__ = ["check_output"]

_TEXT_SUFFIXES = (".txt", ".json")


def check_output(modality: Modality, path: str | os.PathLike[str], *, field: str = "path") -> Path:
    """``path`` can be written as a ``modality`` result (its format from the suffix) with what is installed.

    Raises:
        InvalidRequest: an unsupported suffix (naming ``field``), or a path that can name no file.
        BackendUnavailable: the format needs a package that is not installed (MP4 needs PyAV).

    Example:
        >>> check_output("image", "boot.png").name
        'boot.png'
        >>> check_output("audio", "song.mp3", field="--output")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        aigc.errors.InvalidRequest: --output='song.mp3': unsupported audio format. Fix: use .wav, .flac or .ogg...
    """
    try:
        if modality == "video":
            from aigc._media import video

            p = Path(path)
            kind = video._video_kind(p)
            check_save_path(p, folder=kind == "folder")
            if kind == "mp4":
                video._import_av("saving")
            return p
        p = check_save_path(path)
        if modality == "image":
            from aigc._media import image

            image.image_format(p)
        elif modality == "audio":
            from aigc._media import audio

            audio._audio_format(p)
        elif p.suffix.lower() not in _TEXT_SUFFIXES:
            raise InvalidRequest("path", str(path), "unsupported text format", "use a .txt or .json file name")
        return p
    except InvalidRequest as e:
        if field == "path":
            raise
        raise InvalidRequest(field, e.value, e.problem, e.fix) from None
