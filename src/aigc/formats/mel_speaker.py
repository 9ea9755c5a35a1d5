"""The word-speaker format (``aigc.mel_speech``): a :class:`aigc.models.MelSpeechDecoder` and its vocabulary,
written by ``scripts/train_audio_default.py`` and ``aigc.testing.tiny_mel_speech``, loaded by the ``mel`` backend::

    model-dir/
        config.json         {"format": "aigc.mel_speech", "version": 1,
                             "config": {...MelSpeechConfig fields...},
                             "words": ["zero", "one", ...],
                             "voices": [{"name": "us-male", ...}, ...],     extra keys per voice are kept
                             "defaults": {"voice": "us-male"},
                             "training": {...}}                             optional, how it was made
        model.safetensors   the decoder's weights

Example:
    >>> save(tmp / "m", net, words=["yes", "no"], voices=[{"name": "low"}])  # doctest: +SKIP
    >>> load(tmp / "m").words  # doctest: +SKIP
    ['yes', 'no']
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

if TYPE_CHECKING:
    from aigc.models.speech import MelSpeechDecoder

__all__ = ["FORMAT", "VERSION", "SpeakerFile", "detect", "load", "save"]

FORMAT = "aigc.mel_speech"
VERSION = 1
_FIX = "pass a directory written by scripts/train_audio_default.py"


@dataclass
class SpeakerFile:
    """A loaded word speaker.

    Attributes:
        net: the :class:`aigc.models.MelSpeechDecoder`, on its device, in eval mode, gradients off.
        words: the words it says, by class id.
        voices: the voice names, by speaker id.
        default_voice: the voice used when a request names none (an index into ``voices``).
        weights: the fingerprint of the weight file (for provenance).
    """

    net: Any
    words: list[str]
    voices: list[str]
    default_voice: int
    weights: str

    @property
    def sample_rate(self) -> int:
        """Samples per second of the clips."""
        return int(self.net.cfg.sample_rate)

    @property
    def clip_samples(self) -> int:
        """Waveform samples of one clip (before any padding)."""
        return int(self.net.cfg.samples)


def detect(path: Path) -> bool:
    """Whether ``path/config.json`` declares the word-speaker format."""
    return _folder.read_config(path, FORMAT) is not None


def save(out: str | os.PathLike[str], net: MelSpeechDecoder, *, words: Sequence[str],
         voices: Sequence[Mapping[str, Any]], default_voice: str | None = None,
         training: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``net`` (a ``MelSpeechDecoder``) with its words and voices (``[{"name": ...}, ...]``) as a model folder.

    Args:
        default_voice: the name of the voice used when a request names none (default: the first).
        training: how the model was made (kept in ``config.json``).
        dtype: the stored weights' dtype.
    """
    cfg = net.cfg
    names = [str(v["name"]) for v in voices]
    if len(words) != cfg.num_words or len(names) != cfg.num_voices:
        raise ValueError(f"the network has {cfg.num_words} words and {cfg.num_voices} voices, not {len(words)} "
                         f"and {len(names)}")
    config: dict[str, Any] = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(),
                              "words": [str(w) for w in words], "voices": [dict(v) for v in voices],
                              "defaults": {"voice": default_voice or names[0]}}
    if training is not None:
        config["training"] = dict(training)
    return _folder.write(out, config, net.state_dict(), dtype=dtype)


def load(path: str | os.PathLike[str], *, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> SpeakerFile:
    """Load a word-speaker folder onto ``device`` in ``dtype``.

    Raises:
        ModelNotFound: not a word-speaker folder, or the config and weights do not fit.
    """
    from aigc.models.speech import MelSpeechConfig, MelSpeechDecoder

    folder, data, state, weights = _folder.open_model(path, FORMAT, "speech model", _FIX)
    with _folder.parsing(folder, "speech model"):
        cfg = MelSpeechConfig.from_dict(data["config"])
        words = [str(w) for w in data["words"]]
        voices = [str(v["name"]) for v in data["voices"]]
        default_voice = voices.index(data.get("defaults", {}).get("voice", voices[0]))
    if len(words) != cfg.num_words or len(voices) != cfg.num_voices:
        raise ModelNotFound(f"{folder}: the network has {cfg.num_words} words and {cfg.num_voices} voices, "
                            f"{_folder.CONFIG_FILE} names {len(words)} and {len(voices)}. Fix: export them together")
    net = MelSpeechDecoder(cfg)
    _folder.load_state(net, state, folder, torch.float32)
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return SpeakerFile(net, words, voices, default_voice, weights)
