"""SpeechT5 (``SpeechT5ForTextToSpeech`` + a HiFi-GAN vocoder); ``voice`` is a speaker x-vector."""

from __future__ import annotations

import os
from pathlib import Path
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


class SpeechT5(Family):
    name = "speecht5"
    supported = frozenset({"voice"})

    @property
    def sample_rate(self) -> int:
        return int(self.gen.vocoder.config.sampling_rate)

    def _speaker_file(self, voice: str) -> Path | None:
        path = Path(os.path.expanduser(voice))
        if path.suffix in (".npy", ".safetensors") and path.is_file():
            return path
        folder = self.gen.model_dir / "speakers" if self.gen.model_dir is not None else None
        if folder is not None:
            for suffix in (".npy", ".safetensors"):
                if (folder / f"{voice}{suffix}").is_file():
                    return folder / f"{voice}{suffix}"
        return None

    def voices(self) -> list[str]:
        folder = self.gen.model_dir / "speakers" if self.gen.model_dir is not None else None
        if folder is None or not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir() if p.suffix in (".npy", ".safetensors"))

    def check(self, request: AudioRequest) -> torch.Tensor:
        dim = int(self.gen.model.config.speaker_embedding_dim)
        voice = request.voice
        if voice is None:
            default = self._speaker_file("default")
            if default is None:
                return torch.zeros((1, dim))
            voice = str(default)
        if not isinstance(voice, str):
            raise InvalidRequest("voice", voice, "SpeechT5 takes a speaker x-vector file, not a number",
                                 "pass voice='path/to/xvector.npy'" + self._known())
        path = self._speaker_file(voice)
        if path is None:
            raise InvalidRequest("voice", voice, "no such speaker embedding (.npy or .safetensors file, or name in "
                                 "the model's speakers/ folder)", "pass a path to an x-vector file" + self._known())
        try:
            if path.suffix == ".npy":
                vec = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                from safetensors.torch import load_file

                tensors = load_file(os.fspath(path))
                found = tensors.get("speaker_embeddings", next(iter(tensors.values())) if len(tensors) == 1 else None)
                if found is None:
                    raise ValueError(f"expected one tensor or 'speaker_embeddings', found {sorted(tensors)}")
                vec = found
        except (OSError, ValueError) as e:
            raise InvalidRequest("voice", voice, f"cannot read the speaker embedding: {e}",
                                 "pass a .npy file holding one float vector") from None
        vec = vec.float().reshape(-1)
        if vec.numel() != dim:
            raise InvalidRequest("voice", voice, f"a speaker embedding of {vec.numel()} values; this model takes "
                                 f"{dim}", f"pass an x-vector of size {dim}")
        return vec[None, :]  # (1, dim)

    def _known(self) -> str:
        names = self.voices()
        return f", or one of {', '.join(names)}" if names else ""

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model, vocoder, opts = self.gen.model, self.gen.vocoder, self.gen.speech_options
        speaker = checked.to(self.gen.device, self.gen.dtype)

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            wave = model.generate_speech(inputs["input_ids"], speaker, attention_mask=inputs.get("attention_mask"),
                                         vocoder=vocoder, **opts)
            return to_waveform(wave)  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


