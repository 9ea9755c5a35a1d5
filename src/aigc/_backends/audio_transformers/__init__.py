"""Audio backend ``transformers``: text-to-speech and text-to-audio models that transformers loads.

Families, chosen by ``config.model_type``:

* ``vits`` -- VITS / MMS-TTS (``VitsModel``). ``voice`` is the speaker id of a multi-speaker model. The model
  draws its noise from torch's global RNG, so each sample runs on its own inside ``fork_rng`` seeded with the
  sample's seed: the caller's RNG is untouched and sample *i* of a batch equals a single run with its seed.
* ``speecht5`` -- ``SpeechT5ForTextToSpeech`` with a ``SpeechT5HifiGan`` vocoder (a ``vocoder/`` folder in the
  model directory, or the load option ``vocoder=``). ``voice`` is a speaker x-vector: a ``.npy`` /
  ``.safetensors`` file, or the name of one in the model's ``speakers/`` folder; without it, the model's
  ``speakers/default.*`` or else a zero vector. Its decoder pre-net keeps dropout on at inference, so samples
  run one by one with the global RNG isolated, as for VITS.
* ``musicgen`` -- ``MusicgenForConditionalGeneration``. ``duration_s`` sets the number of audio frames,
  ``guidance`` the classifier-free guidance scale. Token sampling is aigc's: a last logits processor draws
  each sample's codebook tokens from counter-based draws of that sample's seed on the model's device (the
  model's own top-k / temperature settings applied first by :mod:`aigc.sampling` processors), so batches run
  together and still match single runs.
* anything else ``AutoModelForTextToWaveform`` loads -- a generic path (forward ``waveform`` output or
  ``generate()``), one sample at a time with the global RNG isolated; the load option ``sample_rate=`` names
  the output rate when the config has none. Text-to-spectrogram models other than SpeechT5 are refused (aigc
  pairs no vocoder with them).

* ``bark`` -- ``BarkModel`` (text -> semantic tokens -> coarse / fine EnCodec codes -> waveform). Every stage
  samples from torch's global RNG, so samples run one by one with it isolated, as for VITS. The prompt is read
  as at most ``max_input_semantic_length`` tokens (256 for suno/bark; longer prompts are refused, not cut).
  ``voice`` is a voice preset: a name from the model's ``speaker_embeddings_path.json`` (BarkProcessor's
  layout, ``.npy`` files read with ``allow_pickle=False``) or a ``.npz`` file with ``semantic_prompt``,
  ``coarse_prompt`` and ``fine_prompt``. Bark decides its own length: ``duration_s`` is refused. The model's
  ``generation_config.json`` must hold Bark's nested stage settings (checked at load).

Stages of one ``generate``:
    1. check the request against the model family (fields it takes, voice, duration, prompt tokens);
    2. per sample (VITS, SpeechT5, generic) or per chunk (MusicGen): run with seeded randomness;
    3. collect float32 ``(channels, samples)`` waveforms at the model's sample rate.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc._backends._transformers_common import TransformersGenerator
from aigc._backends.audio_transformers._bark import Bark
from aigc._backends.audio_transformers._family import REQUEST_FIELDS, Family, positive
from aigc._backends.audio_transformers._generic import Generic
from aigc._backends.audio_transformers._musicgen import Musicgen
from aigc._backends.audio_transformers._speecht5 import SpeechT5
from aigc._backends.audio_transformers._vits import Vits
from aigc._generator import LoadOptions
from aigc._options import BatchOptions
from aigc._results import AudioResult
from aigc._runtime.assets import read_json_object
from aigc._runtime.events import EventEmitter
from aigc._types import AudioRequest
from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound

__all__ = ["AudioTransformersOptions", "TransformersAudioGenerator"]

_FAMILIES: dict[str, type[Family]] = {"vits": Vits, "speecht5": SpeechT5, "musicgen": Musicgen, "bark": Bark}
_UNSUPPORTED = {"musicgen_melody": "MusicGen Melody is not supported yet; use a plain MusicGen model"}


def _audio_model_types() -> tuple[set[str], set[str]]:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES,
        MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES,
    )

    return set(MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES), set(MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES)


@dataclass(frozen=True, kw_only=True)
class AudioTransformersOptions(BatchOptions):
    """Load options of the transformers audio backend.

    Attributes:
        max_batch_size: samples per call where a family batches (MusicGen), default 8.
        vocoder: SpeechT5's HiFi-GAN (a folder or a hub id); default the model's ``vocoder/`` folder.
        speaking_rate, noise_scale, noise_scale_duration: VITS settings.
        threshold, minlenratio, maxlenratio: SpeechT5's stopping settings.
        sample_rate: for models whose config names none.
    """

    max_batch_size: int = 8
    vocoder: str | os.PathLike[str] | None = None
    speaking_rate: float | None = None
    noise_scale: float | None = None
    noise_scale_duration: float | None = None
    threshold: float | None = None
    minlenratio: float | None = None
    maxlenratio: float | None = None
    sample_rate: int | None = None

    def check(self) -> None:
        super().check()
        for name in ("speaking_rate", "noise_scale", "noise_scale_duration", "maxlenratio", "threshold"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name), f"pass {name}=1.0")
        v = self.minlenratio
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise InvalidRequest("minlenratio", v, "must be a number >= 0", "pass minlenratio=0.0")
        rate = self.sample_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0):
            raise InvalidRequest("sample_rate", rate, "must be a positive int (samples per second)",
                                 "pass sample_rate=22050")
        if self.vocoder is not None and not isinstance(self.vocoder, (str, os.PathLike)):
            raise InvalidRequest("vocoder", self.vocoder, "must be a directory or a hub id",
                                 "pass vocoder='microsoft/speecht5_hifigan'")


class TransformersAudioGenerator(TransformersGenerator[AudioRequest, AudioResult]):
    """Text-to-speech and text-to-audio models through ``transformers``: VITS / MMS-TTS, SpeechT5 (+ HiFi-GAN),
    MusicGen, Bark, and others the text-to-waveform / text-to-spectrogram auto classes load.

    Loads a local directory or hub id, safetensors only unless ``allow_pickle=True``, ``trust_remote_code=False``
    unless given. Request fields a model family does not take are rejected by name: VITS and SpeechT5 take
    ``voice``; MusicGen takes ``duration_s`` and ``guidance``; Bark takes ``voice`` (a voice preset).

    Load options: ``vocoder`` (SpeechT5: a vocoder directory or hub id; default: the model's ``vocoder/``
    folder), ``speaking_rate``, ``noise_scale``, ``noise_scale_duration`` (VITS), ``threshold``,
    ``minlenratio``, ``maxlenratio`` (SpeechT5's stop rule and length limits, relative to the input tokens),
    ``max_batch_size`` (MusicGen samples per decoding batch, default 8), ``sample_rate`` (generic path only: the
    output rate of a model whose config names none, e.g. FastSpeech2's HiFi-GAN at 22050).

    Example:
        >>> gen = aigc.load("audio", "facebook/mms-tts-eng")  # doctest: +SKIP
        >>> res = gen.generate("hello world", seed=[1, 2])  # doctest: +SKIP
        >>> res.waveforms[0].shape, res.sample_rate  # doctest: +SKIP
        ((1, 21504), 16000)
    """

    modality = "audio"
    backend_name = "transformers"
    request_type = AudioRequest
    supported_params = frozenset({"duration_s", "voice", "guidance"})
    options_type = AudioTransformersOptions
    # the vocoder may be a hub id (a download); the others set how long the audio gets, without bound
    unsafe_load_options = frozenset({"vocoder", "speaking_rate", "noise_scale_duration", "minlenratio",
                                     "maxlenratio", "threshold", "max_batch_size"})

    def __init__(self, *, model: Any, tokenizer: Any, vocoder: Any, family: str, model_id: str,
                 model_dir: Path | None, options: LoadOptions, weights: str | None, revision: str | None) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, revision=revision,
                         weights=weights, options=options.extra)
        self.model = model
        self.tokenizer = tokenizer
        self.vocoder = vocoder
        self.model_dir = model_dir
        opts = AudioTransformersOptions.of(options)
        self.max_batch_size = opts.max_batch_size
        self.speech_options = {k: float(getattr(opts, k)) for k in ("threshold", "minlenratio", "maxlenratio")
                               if getattr(opts, k) is not None}
        self.family: Family = _FAMILIES.get(family, Generic)(self)
        self.sample_rate = self.family.sample_rate  # fails here, at load, when the model names none

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        data = read_json_object(path / "config.json")
        if data is None or (path / "model_index.json").exists():
            return False
        model_type = data.get("model_type")
        wave, spectrogram = _audio_model_types()
        if model_type == "speecht5":
            archs = data.get("architectures") or ["SpeechT5ForTextToSpeech"]
            return "SpeechT5ForTextToSpeech" in archs
        return model_type in wave or model_type in spectrogram

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> TransformersAudioGenerator:
        cls.refuse_offload(options)
        opts = AudioTransformersOptions.of(options)  # checked before anything loads
        extra = options.extra
        model_dir = Path(os.path.abspath(model)) if os.path.isdir(model) else None
        vocoder_src = opts.vocoder
        if vocoder_src is not None and os.path.isdir(vocoder_src):  # record the absolute path, for replay
            vocoder_src = os.path.abspath(os.fspath(vocoder_src))
            options = dataclasses.replace(options, extra={**extra, "vocoder": vocoder_src})
        elif vocoder_src is not None:
            vocoder_src = os.fspath(vocoder_src)
        folders = [model_dir] if model_dir is not None else []
        import transformers

        config = cls.load_config(model, options)
        model_type = str(getattr(config, "model_type", ""))
        if model_type in _UNSUPPORTED:
            raise ModelNotFound(f"model={model!r}: {_UNSUPPORTED[model_type]}. Fix: use a VITS, SpeechT5, MusicGen or "
                                "Bark model, or a diffusers audio pipeline")
        wave, spectrogram = _audio_model_types()
        if model_type not in wave and model_type not in spectrogram:
            raise ModelNotFound(f"model={model!r} (model_type {model_type!r}) is not a text-to-speech or "
                                "text-to-audio model. Fix: pass a VITS, SpeechT5, MusicGen or Bark model")
        if model_type in spectrogram and model_type not in _FAMILIES:
            raise ModelNotFound(f"model={model!r} ({model_type}) makes spectrograms, and aigc pairs only SpeechT5 "
                                "with a vocoder. Fix: use the model's with-vocoder checkpoint (e.g. "
                                "fastspeech2_conformer_with_hifigan)")
        if opts.sample_rate is not None and model_type in _FAMILIES:
            raise InvalidRequest("sample_rate", opts.sample_rate, f"{model_type} models name their own sample rate",
                                 "leave sample_rate out (it is for models whose config has none)")
        auto = (transformers.AutoModelForTextToWaveform if model_type in wave
                else transformers.AutoModelForTextToSpectrogram)
        if model_type == "speecht5":
            if vocoder_src is None and model_dir is not None and (model_dir / "vocoder").is_dir():
                vocoder_src = os.fspath(model_dir / "vocoder")
            if vocoder_src is None:
                raise ModelNotFound(f"model={model!r}: SpeechT5 makes spectrograms and needs a HiFi-GAN vocoder. Fix: "
                                    "pass vocoder='microsoft/speecht5_hifigan' (or a directory), or put one in the "
                                    "model's vocoder/ folder")
            if os.path.isdir(vocoder_src):
                folders.append(Path(vocoder_src))
        _, weights = cls.local_weights(folders, options)
        safe, common = cls.safetensors_only(options), cls.common_kwargs(options)
        with cls.loading_errors(model, options):
            net: Any = auto.from_pretrained(model, config=config, dtype=options.dtype, use_safetensors=safe, **common)
            tokenizer = transformers.AutoTokenizer.from_pretrained(model, **common)
            vocoder: Any = None
            if model_type == "speecht5":
                vocoder = transformers.SpeechT5HifiGan.from_pretrained(
                    vocoder_src, dtype=options.dtype, use_safetensors=safe, trust_remote_code=options.trust_remote_code)
        if getattr(tokenizer, "phonemize", False):
            import importlib.util

            if importlib.util.find_spec("phonemizer") is None:
                raise BackendUnavailable(f"model={model!r}: its VITS tokenizer phonemizes text, which needs the "
                                         "phonemizer package and espeak (pip install phonemizer)")
        if model_type == "vits":
            for key in ("speaking_rate", "noise_scale", "noise_scale_duration"):
                if getattr(opts, key) is not None:
                    setattr(net, key, float(getattr(opts, key)))
        cls.place([m for m in (net, vocoder) if m is not None], options.device)
        return cls(model=net, tokenizer=tokenizer, vocoder=vocoder, family=model_type, model_id=model,
                   model_dir=model_dir, options=options, weights=weights, revision=cls.revision_of(options, config))

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.model, self.vocoder) if m is not None]

    def _close(self) -> None:
        self.model = self.vocoder = self.tokenizer = None

    def _check_supported(self, req: Any) -> None:
        super()._check_supported(req)
        allowed = self.family.supported
        for name in REQUEST_FIELDS:
            value = getattr(req, name)
            if value is not None and name not in allowed:
                takes = ", ".join(sorted(allowed)) or "no audio-specific fields"
                raise InvalidRequest(name, value, f"{self.family.name} models ({self.model_id!r}) do not take it",
                                     f"leave it out; this model takes {takes}")

    # -- generation ------------------------------------------------------------------------------
    def _generate(self, request: AudioRequest, seeds: list[int], events: EventEmitter) -> AudioResult:
        for i, p in enumerate(request.prompts()):
            if not isinstance(p, str):
                raise InvalidRequest(f"prompt[{i}]", p, "must be a string", "pass the text to speak or describe")
            self.family.encode(p, i)  # prompts that give no known tokens fail here, before any work
        checked = self.family.check(request)
        prompts = [p for p in request.prompts() for _ in range(request.samples_per_prompt)]
        waves = self.family.run(request, prompts, seeds, checked, events)
        return AudioResult(waveforms=waves, sample_rate=self.sample_rate, seeds=seeds)
