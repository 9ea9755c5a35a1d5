"""Bark: text -> semantic tokens -> coarse / fine codes -> waveform, one sample at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigc._backends.audio_transformers._family import (
    Family,
    to_waveform,
)
from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import AigcError, InvalidRequest, ModelNotFound

if TYPE_CHECKING:
    from aigc._backends.audio_transformers import TransformersAudioGenerator


class Bark(Family):
    """Bark (``BarkModel``): text -> semantic tokens -> coarse codes -> fine codes -> EnCodec, all sampled from the
    global RNG, so samples run one by one with it isolated. ``voice`` is a voice preset (speaker prompt)."""

    name = "bark"
    supported = frozenset({"voice"})
    _STAGES = ("semantic_config", "coarse_acoustics_config", "fine_acoustics_config")

    def __init__(self, gen: TransformersAudioGenerator) -> None:
        super().__init__(gen)
        gen_config = gen.model.generation_config
        stages: dict[str, Any] = {k: getattr(gen_config, k, None) for k in self._STAGES}
        missing = [k for k, v in stages.items() if not isinstance(v, dict)]
        if missing or not isinstance(getattr(gen_config, "codebook_size", None), int):
            raise ModelNotFound(f"model={gen.model_id!r}: its generation_config.json lacks Bark's settings "
                                f"({', '.join(missing) or 'codebook_size'}). Fix: use a Bark checkpoint whose "
                                "generation_config.json holds semantic_config, coarse_acoustics_config, "
                                "fine_acoustics_config and codebook_size (as suno/bark does)")
        self.semantic: dict[str, Any] = stages["semantic_config"]
        self.coarse: dict[str, Any] = stages["coarse_acoustics_config"]
        self.fine: dict[str, Any] = stages["fine_acoustics_config"]
        self.codebook_size = int(gen_config.codebook_size)
        self.max_tokens = int(self.semantic.get("max_input_semantic_length", 256))
        self.semantic_vocab = int(self.semantic.get("semantic_vocab_size", 10_000))
        self.n_coarse = int(self.coarse.get("n_coarse_codebooks", 2))
        self.n_fine = int(self.fine.get("n_fine_codebooks", 8))

    @property
    def sample_rate(self) -> int:
        return int(self.gen.model.config.codec_config.sampling_rate)

    def encode(self, prompt: str, index: int) -> dict[str, torch.Tensor]:
        """Bark reads exactly ``max_input_semantic_length`` text tokens (no special tokens), padded on the right
        and masked; longer prompts are refused rather than cut."""
        tok = self.gen.tokenizer
        ids: list[int] = tok(prompt, add_special_tokens=False)["input_ids"]
        special = set(getattr(tok, "all_special_ids", []) or [])
        if not prompt.strip() or not [t for t in ids if t not in special]:
            raise InvalidRequest(f"prompt[{index}]", prompt, "gives no tokens this model knows",
                                 "pass some text in the model's language and script")
        if len(ids) > self.max_tokens:
            raise InvalidRequest(f"prompt[{index}]", prompt, f"is {len(ids)} tokens; this Bark model reads at most "
                                 f"{self.max_tokens}", "shorten the text, or split it and generate each part")
        pad = int(tok.pad_token_id or 0)
        input_ids = torch.tensor([ids + [pad] * (self.max_tokens - len(ids))])  # (1, max_tokens)
        mask = torch.zeros_like(input_ids)
        mask[0, :len(ids)] = 1
        return {"input_ids": input_ids.to(self.gen.device), "attention_mask": mask.to(self.gen.device)}

    # -- voice presets -------------------------------------------------------------------------
    def _presets(self) -> dict[str, Any]:
        """The model's voice presets: ``speaker_embeddings_path.json`` (BarkProcessor's layout), name -> paths."""
        folder = self.gen.model_dir
        index = folder / "speaker_embeddings_path.json" if folder is not None else None
        if index is None or not index.is_file():
            return {}
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def voices(self) -> list[str]:
        return sorted(self._presets())

    def _read_preset(self, voice: str) -> dict[str, np.ndarray[Any, Any]]:
        presets = self._presets()
        keys = ("semantic_prompt", "coarse_prompt", "fine_prompt")
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        if voice in presets and self.gen.model_dir is not None:  # presets come only from a local directory
            root = self.gen.model_dir.resolve()
            for key in keys:
                rel = presets[voice].get(key)
                path = (root / str(rel)).resolve() if isinstance(rel, str) else None
                if path is None or root not in path.parents or path.suffix != ".npy":
                    raise InvalidRequest("voice", voice, f"the model's preset has no usable {key} (.npy inside the "
                                         "model directory)", "pick another voice" + self._known())
                arrays[key] = np.load(path, allow_pickle=False)
            return arrays
        path = Path(os.path.expanduser(voice))
        if path.suffix != ".npz" or not path.is_file():
            raise InvalidRequest("voice", voice, "no such voice preset (a name the model lists, or a .npz file with "
                                 "semantic_prompt, coarse_prompt and fine_prompt)",
                                 "pass a preset name or a .npz path" + self._known())
        with np.load(path, allow_pickle=False) as npz:
            for key in keys:
                if key not in npz.files:
                    raise ValueError(f"no {key!r} array (found {sorted(npz.files)})")
                arrays[key] = npz[key]
        return arrays

    def _known(self) -> str:
        names = self.voices()
        return f"; this model has {', '.join(names)}" if names else "; this model ships no presets"

    def check(self, request: AudioRequest) -> dict[str, torch.Tensor] | None:
        voice = request.voice
        if voice is None:
            return None
        if not isinstance(voice, str):
            raise InvalidRequest("voice", voice, "Bark takes a voice preset name or .npz file, not a number",
                                 "pass voice='<preset>'" + self._known())
        try:
            arrays = self._read_preset(voice)
        except InvalidRequest:
            raise
        except (OSError, ValueError) as e:  # unreadable, or an object (pickled) array
            raise InvalidRequest("voice", voice, f"cannot read the voice preset: {e}",
                                 "pass a .npz / .npy preset of integer arrays" + self._known()) from None
        shapes = {"semantic_prompt": (1, None, self.semantic_vocab), "coarse_prompt": (2, self.n_coarse,
                  self.codebook_size), "fine_prompt": (2, self.n_fine, self.codebook_size)}
        out: dict[str, torch.Tensor] = {}
        for key, (ndim, rows, limit) in shapes.items():
            arr = arrays[key]
            ok = arr.ndim == ndim and (rows is None or arr.shape[0] == rows) and arr.shape[-1] > 0
            ok = ok and np.issubdtype(arr.dtype, np.integer) and int(arr.min()) >= 0 and int(arr.max()) < limit
            if not ok:
                want = f"({rows}, frames)" if rows is not None else "(tokens,)"
                raise InvalidRequest("voice", voice, f"{key} is {arr.dtype} {arr.shape}; this model takes integers "
                                     f"in [0, {limit}) of shape {want}", "pass a preset made for this model")
            out[key] = torch.from_numpy(arr.astype(np.int64)).to(self.gen.device)
        return out

    def run(self, request: AudioRequest, prompts: list[str], seeds: list[int], checked: Any,
            events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        model = self.gen.model

        def one(inputs: dict[str, torch.Tensor]) -> np.ndarray[Any, Any]:
            history = {k: v.clone() for k, v in checked.items()} if checked is not None else None
            try:
                audio = model.generate(**inputs, history_prompt=history)  # (1, samples)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as e:  # EnCodec cannot decode a few frames (an early end of speech)
                raise AigcError(f"Bark made too little audio to decode for this prompt and seed ({e}). Fix: use "
                                "a longer prompt or another seed") from None
            return to_waveform(audio[0])  # (1, samples)

        return self.per_sample(prompts, seeds, events, one)


