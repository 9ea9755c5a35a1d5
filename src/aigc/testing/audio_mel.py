"""A tiny random speech model in the ``mel`` audio backend's format, for tests.

Example:
    >>> from aigc.testing.audio_mel import tiny_mel_speech
    >>> gen = aigc.load("audio", tiny_mel_speech(tmp_path / "m"))  # doctest: +SKIP
    >>> gen.generate("say two", voice="low", seed=0).waveform.shape  # doctest: +SKIP
    (1, 960)
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["TINY_VOICES", "TINY_WORDS", "tiny_mel_speech"]

TINY_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TINY_VOICES = ["low", "high", "fast"]


def tiny_mel_speech(path: str | os.PathLike[str], *, seed: int = 0, dtype: str = "float32") -> Path:
    """A random :class:`aigc.models.MelSpeechDecoder` (10 digits, 3 voices, 16 frames of 20 mels, 0.06 s at
    16 kHz) saved as ``config.json`` + ``model.safetensors`` to ``path``; returns the directory."""
    import torch

    from aigc.formats import mel_speaker
    from aigc.models.speech import MelSpeechConfig, MelSpeechDecoder

    cfg = MelSpeechConfig(num_words=len(TINY_WORDS), num_voices=len(TINY_VOICES), n_mels=20, frames=16,
                          n_fft=256, hop_length=64, embed_dim=8, hidden_dim=16, channels=16, base_frames=4,
                          mel_mean=-4.0, mel_std=2.0, griffin_lim_iters=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MelSpeechDecoder(cfg)
        with torch.no_grad():
            net.pos.normal_()  # the trained model's position signal is not zero; exercise it
    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    return mel_speaker.save(path, net, words=TINY_WORDS, voices=[{"name": v} for v in TINY_VOICES],
                            default_voice=TINY_VOICES[0], dtype=torch_dtype)
