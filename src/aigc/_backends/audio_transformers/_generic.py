"""Any other text-to-waveform model transformers loads, one sample at a time."""

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
from aigc.errors import AigcError, ModelNotFound


class Generic(Family):
    """Other text-to-waveform / text-to-spectrogram models: a waveform from ``forward`` or ``generate``."""

    name = "generic"

    @property
    def sample_rate(self) -> int:
        if "sample_rate" in self.gen.options:
            return int(self.gen.options["sample_rate"])
        config = self.gen.model.config
        owners = (config, *(getattr(config, k, None) for k in ("vocoder_config", "audio_encoder", "codec_config")))
        for owner in owners:
            for key in ("sampling_rate", "sample_rate"):
                value = getattr(owner, key, None)
                if isinstance(value, int) and value > 0:
                    return value
        raise ModelNotFound(f"model={self.gen.model_id!r}: its config names no sampling rate. Fix: pass the load "
                            "option sample_rate= (e.g. 22050), as the model card gives it")

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            try:
                out: Any = model(**inputs) if "generate" not in type(model).__dict__ else None
                if getattr(out, "waveform", None) is None:
                    out = model.generate(**inputs)
            except (TypeError, ValueError, AttributeError) as e:
                raise AigcError(f"{type(model).__name__} did not run from a text prompt alone ({e}). Fix: use a "
                                "model family this backend supports (vits, speecht5, musicgen)") from None
            for key in ("waveform", "audio_values", "sequences"):
                if isinstance(getattr(out, key, None), torch.Tensor):
                    out = getattr(out, key)
                    break
            if not isinstance(out, torch.Tensor) or out.ndim not in (2, 3) or not out.is_floating_point():
                raise AigcError(f"{type(model).__name__} gave no waveform the generic path understands. Fix: use a "
                                "model family this backend supports (vits, speecht5, musicgen)")
            return to_waveform(out[0])

        return self.per_sample(prompts, seeds, events, one)


