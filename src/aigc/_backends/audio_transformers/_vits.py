"""VITS / MMS-TTS (``VitsModel``): one sample at a time with the global RNG isolated and seeded."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from aigc._backends.audio_transformers._family import (
    Family,
    to_waveform,
)
from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import InvalidRequest


class Vits(Family):
    name = "vits"
    supported = frozenset({"voice"})

    @property
    def sample_rate(self) -> int:
        return int(self.gen.model.config.sampling_rate)

    def check(self, request: AudioRequest) -> int | None:
        speakers = int(getattr(self.gen.model.config, "num_speakers", 1) or 1)
        voice = request.voice
        if voice is None:
            return None
        if speakers <= 1:
            raise InvalidRequest("voice", voice, "this VITS model has a single speaker", "leave voice out")
        if isinstance(voice, str) and voice.strip().isdigit():
            voice = int(voice)
        if isinstance(voice, bool) or not isinstance(voice, int) or not 0 <= voice < speakers:
            raise InvalidRequest("voice", request.voice, f"this VITS model has speakers 0 .. {speakers - 1}",
                                 f"pass voice=0 .. {speakers - 1}")
        return voice

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            out = model(**inputs, speaker_id=checked)
            length = int(out.sequence_lengths[0])
            return to_waveform(out.waveform[0, :length])  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


