"""A tiny random Bark model (``BarkModel``), saved to a directory, for tests that load it for real.

Built offline and deterministically (same ``seed``, same weights; the caller's global RNG is left alone): a
character-level ``BertTokenizer`` (Bark's tokenizer class), three 1-layer GPT-style stages and a small EnCodec
(16 kHz, 512 samples per frame, 4 codebooks of 16 codes); prompts of up to 32 characters. transformers 5
cannot save ``BarkGenerationConfig`` (``save_pretrained`` fails in ``validate``), so ``generation_config.json``
is written from its ``to_dict()``; transformers reloads it as a ``GenerationConfig`` holding the nested stage
settings, which ``BarkModel.generate`` reads. Two voice presets (``en_speaker_0``, ``en_speaker_1``) are saved
in BarkProcessor's layout (``speaker_embeddings_path.json`` + ``speaker_embeddings/*.npy``).

The semantic stage never ends early (its end-of-speech logit is pinned far down), so every utterance has
``semantic_tokens`` semantic tokens -> ``floor(semantic_tokens * 75 / 49.9)`` coarse frames -> 512 samples each.

Example:
    >>> from aigc.testing.audio_bark import tiny_bark
    >>> path = tiny_bark(tmp_path / "bark")  # doctest: +SKIP
    >>> aigc.load("audio", path).generate("hello", seed=0).waveform.shape  # doctest: +SKIP
    (1, 9216)
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import Any

from aigc.testing.factories import new_model_dir

__all__ = ["VOICES", "tiny_bark"]

VOICES = ("en_speaker_0", "en_speaker_1")
_SEMANTIC, _CODES, _COARSE, _FINE, _TEXT_LEN = 16, 16, 2, 4, 32  # vocab sizes / codebooks / prompt tokens


def tiny_bark(path: str | os.PathLike[str], *, seed: int = 0, semantic_tokens: int = 12) -> Path:
    """A random ``BarkModel`` with tokenizer, generation config and two voice presets, saved to ``path``.

    Args:
        seed: weights and presets are a function of it.
        semantic_tokens: semantic tokens per utterance (the model's ``max_new_tokens``; it never stops earlier).
    """
    import numpy as np
    import torch
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkModel,
        BarkSemanticConfig,
        BertTokenizer,
        EncodecConfig,
        GenerationConfig,
    )
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    out = new_model_dir(path)
    letters = string.ascii_lowercase
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *".,?!'-", *("##" + c for c in letters)]
    tokenizer: Any = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True,
                                   model_max_length=512)
    n_text = len(vocab)
    s, c = _SEMANTIC, _CODES
    offset = s + 4  # text ids are shifted past the semantic ids (and their pad / end tokens)
    small: dict[str, Any] = {"block_size": 128, "num_layers": 1, "num_heads": 2, "hidden_size": 16}
    semantic = BarkSemanticConfig(input_vocab_size=offset + n_text + 2, output_vocab_size=s + 4, **small)
    coarse = BarkCoarseConfig(input_vocab_size=s + _COARSE * c + 4, output_vocab_size=s + _COARSE * c + 4, **small)
    fine = BarkFineConfig(input_vocab_size=c + 1, output_vocab_size=c, n_codes_total=_FINE, n_codes_given=1, **small)
    codec = EncodecConfig(
        sampling_rate=16000, hidden_size=16, num_filters=4, num_residual_layers=1, upsampling_ratios=[8, 4, 4, 4],
        codebook_size=c, num_lstm_layers=1, target_bandwidths=[1.5], compress=2, kernel_size=3, last_kernel_size=3,
    )  # 1.5 kbps at 32 frames/s: 4 codebooks
    config = BarkConfig(semantic_config=semantic.to_dict(), coarse_acoustics_config=coarse.to_dict(),
                        fine_acoustics_config=fine.to_dict(), codec_config=codec.to_dict())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = BarkModel(config)
        with torch.no_grad():
            for layer in model.codec_model.quantizer.layers:  # codebooks start at zero: make codes audible
                layer.codebook.embed.normal_()
            for stage in (model.semantic, model.coarse_acoustics, model.fine_acoustics):  # init std 0.02 gives
                for param in stage.parameters():  # near-uniform logits, which would make the text not matter
                    if param.ndim == 2:
                        param.normal_(std=0.5)
            # the end-of-speech logit: one hidden unit pinned to 1 by the final layer norm, weighted -50 for it
            model.semantic.layernorm_final.weight[0] = 0.0
            model.semantic.layernorm_final.bias[0] = 1.0
            model.semantic.lm_head.weight[:, 0] = 0.0
            model.semantic.lm_head.weight[s, 0] = -50.0
    model.eval()
    gen_config: Any = BarkGenerationConfig(
        semantic_config={
            "eos_token_id": s, "max_new_tokens": semantic_tokens, "do_sample": True, "temperature": 0.7,
            "text_encoding_offset": offset, "text_pad_token": offset + n_text,
            "semantic_infer_token": offset + n_text + 1, "semantic_vocab_size": s,
            "max_input_semantic_length": _TEXT_LEN, "semantic_rate_hz": 49.9,
        },
        coarse_acoustics_config={
            "do_sample": True, "temperature": 0.7, "coarse_semantic_pad_token": s + _COARSE * c, "coarse_rate_hz": 75,
            "n_coarse_codebooks": _COARSE, "coarse_infer_token": s + _COARSE * c + 2,
            "max_coarse_input_length": _TEXT_LEN, "max_coarse_history": 60, "sliding_window_len": 8,
        },
        fine_acoustics_config={"temperature": 0.5, "max_fine_history_length": 16, "max_fine_input_length": 32,
                               "n_fine_codebooks": _FINE},
        sample_rate=16000, codebook_size=c,
    )
    model.generation_config = GenerationConfig()  # type: ignore[no-untyped-call]  # a plain one saves; overwritten below
    model.save_pretrained(os.fspath(out))
    (out / "generation_config.json").write_text(json.dumps(gen_config.to_dict(), indent=2), encoding="utf-8")
    tokenizer.save_pretrained(os.fspath(out))
    rng = np.random.default_rng(seed)
    (out / "speaker_embeddings").mkdir(exist_ok=True)
    index: dict[str, dict[str, str]] = {}
    for name in VOICES:
        frames = 8
        arrays = {"semantic_prompt": rng.integers(0, s, size=(frames,)),
                  "coarse_prompt": rng.integers(0, c, size=(_COARSE, frames)),
                  "fine_prompt": rng.integers(0, c, size=(_FINE, frames))}
        index[name] = {}
        for key, arr in arrays.items():
            rel = f"speaker_embeddings/{name}_{key}.npy"
            np.save(out / rel, arr.astype(np.int64), allow_pickle=False)
            index[name][key] = rel
    (out / "speaker_embeddings_path.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return out
