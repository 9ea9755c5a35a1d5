"""Audio backend ``diffusers``: AudioLDM, AudioLDM 2, MusicLDM and Stable Audio pipelines.

Noise comes from the sampling core: the initial latents from :func:`aigc.sampling.randn` (one row per sample,
shaped as the pipeline's ``prepare_latents`` would make them) and any noise the scheduler adds from one CPU
``torch.Generator`` per sample seeded from its own stream (:func:`aigc.sampling.step_generators`), which never
repeats the latents; sample *i* of a batch equals a single run with its seed.

Request fields: ``duration_s`` (``audio_length_in_s``; ``audio_end_in_s`` for Stable Audio), ``steps``,
``guidance``, ``negative_prompt``.

Stages of one ``generate``:
    1. check the request against the pipeline (duration limits) before any denoising;
    2. per chunk of samples: seeded latents and generators, run the pipeline with a step callback that emits
       events and cancels;
    3. collect float32 ``(channels, samples)`` waveforms.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc._backends._diffusers_common import PipelineCancelled, PipelineGenerator, check_weights, pipeline_class
from aigc._generator import LoadOptions
from aigc._options import BatchOptions
from aigc._results import AudioResult
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files
from aigc._types import AudioRequest
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.limits import check_audio_samples
from aigc.sampling import randn, step_generators

__all__ = ["AUDIO_PIPELINES", "DiffusersAudioGenerator"]

logger = logging.getLogger(__name__)

#: Pipelines this backend runs -> how their length is set: "mel" (a spectrogram latent decoded by a vocoder:
#: AudioLDM family) or "waveform" (a waveform-VAE latent: Stable Audio).
AUDIO_PIPELINES: dict[str, str] = {
    "AudioLDMPipeline": "mel",
    "AudioLDM2Pipeline": "mel",
    "MusicLDMPipeline": "mel",
    "StableAudioPipeline": "waveform",
}


@dataclass(frozen=True, kw_only=True)
class AudioPipelineOptions(BatchOptions):
    """Load option: ``max_batch_size``, clips per pipeline call (default 8)."""

    max_batch_size: int = 8


class DiffusersAudioGenerator(PipelineGenerator[AudioRequest, AudioResult]):
    """AudioLDM, AudioLDM 2, MusicLDM and Stable Audio through ``diffusers``.

    Load options: ``max_batch_size`` (samples per pipeline call, default 8).

    Example:
        >>> gen = aigc.load("audio", "cvssp/audioldm-s-full-v2")  # doctest: +SKIP
        >>> res = gen.generate("rain on a tin roof", duration_s=5.0, steps=20, seed=[1, 2])  # doctest: +SKIP
        >>> res.waveforms[0].shape, res.sample_rate  # doctest: +SKIP
        ((1, 80000), 16000)
    """

    modality = "audio"
    backend_name = "diffusers"
    request_type = AudioRequest
    supported_params = frozenset({"duration_s", "negative_prompt", "steps", "guidance"})
    options_type = AudioPipelineOptions
    unsafe_load_options = frozenset({"max_batch_size"})

    def __init__(self, *, pipe: Any, model_id: str, options: LoadOptions, weights: str | None) -> None:
        super().__init__(pipe=pipe, model_id=model_id, options=options, weights=weights, variant="loaded")
        self.kind = AUDIO_PIPELINES[type(pipe).__name__]
        self.params = inspect.signature(pipe.__call__).parameters

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        return pipeline_class(path) in AUDIO_PIPELINES

    @classmethod
    def accepts_pipeline(cls, class_name: str) -> bool:
        return class_name in AUDIO_PIPELINES

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> DiffusersAudioGenerator:
        cls.check_load_options(options)
        weights = None
        if os.path.isdir(model):
            name = pipeline_class(Path(model))
            if name not in AUDIO_PIPELINES:
                raise ModelNotFound(f"model={model!r}: model_index.json names {name!r}, not an audio pipeline. Fix: "
                                    f"use one of {', '.join(AUDIO_PIPELINES)}")
            weights = fingerprint_files(check_weights(Path(model), options.allow_pickle))
        import diffusers

        with cls.loading_errors(model, options, "an audio pipeline"):
            pipe = diffusers.DiffusionPipeline.from_pretrained(model, **cls.pretrained_kwargs(options))
        if type(pipe).__name__ not in AUDIO_PIPELINES:
            raise ModelNotFound(f"model={model!r} is a {type(pipe).__name__}, not an audio pipeline. Fix: use one of "
                                f"{', '.join(AUDIO_PIPELINES)}")
        if type(getattr(pipe, "text_encoder_2", None)).__name__ == "VitsModel":
            raise ModelNotFound(f"model={model!r} is an AudioLDM 2 speech (TTS) checkpoint, which needs a "
                                "transcription as well as a prompt; aigc does not support it yet. Fix: use a "
                                "text-to-audio or music checkpoint, or the transformers backend with a TTS model")
        cls.place(pipe, options)
        return cls(pipe=pipe, model_id=model, options=options, weights=weights)

    # -- the pipeline's geometry -----------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        if self.kind == "mel":
            return int(self.pipe.vocoder.config.sampling_rate)
        return int(self.pipe.vae.config.sampling_rate)

    def _mel_geometry(self) -> tuple[float, int, int]:
        """(seconds per mel frame, VAE scale factor, mel bins) of an AudioLDM-family pipeline."""
        vocoder = self.pipe.vocoder.config
        seconds_per_frame = float(np.prod(vocoder.upsample_rates)) / float(vocoder.sampling_rate)
        return seconds_per_frame, int(self.pipe.vae_scale_factor), int(vocoder.model_in_dim)

    def _check(self, request: AudioRequest) -> tuple[float | None, tuple[int, ...]]:
        """1. The duration to ask for (None: the model's default) and the latent shape of one sample."""
        duration = request.duration_s
        if request.negative_prompt is not None and request.guidance is not None and request.guidance <= 1.0:
            raise InvalidRequest("negative_prompt", request.negative_prompt, f"has no effect with guidance="
                                 f"{request.guidance} (classifier-free guidance is off at guidance <= 1)",
                                 "pass guidance > 1, or leave negative_prompt out")
        if self.kind == "mel":
            per_frame, scale, bins = self._mel_geometry()
            shortest = per_frame * scale
            if duration is None:
                length = float(self.pipe.unet.config.sample_size) * scale * per_frame
            elif duration < shortest:
                raise InvalidRequest("duration_s", duration, f"this model makes at least {shortest:g} s (one latent "
                                     "row)", f"pass duration_s >= {shortest:g}")
            else:
                check_audio_samples(duration, self.sample_rate)  # aigc.limits, before the latents exist
                length = duration
            height = int(length / per_frame)
            if height % scale:
                height = math.ceil(height / scale) * scale  # as the pipeline does; the audio is cut back after
            channels = int(self.pipe.unet.config.in_channels)
            return duration, (channels, height // scale, bins // scale)
        transformer, vae = self.pipe.transformer.config, self.pipe.vae
        longest = float(transformer.sample_size) * vae.hop_length / float(vae.config.sampling_rate)
        projection = self.pipe.projection_model.config
        low, high = float(projection.min_value), min(float(projection.max_value), longest)
        if duration is not None and not low <= duration <= high:
            raise InvalidRequest("duration_s", duration, f"this model makes {low:g} to {high:g} s",
                                 f"pass duration_s between {low:g} and {high:g}")
        return duration, (int(transformer.in_channels), int(transformer.sample_size))

    def _call_kwargs(self, request: AudioRequest, duration: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"output_type": "np"}
        length_name = "audio_end_in_s" if self.kind == "waveform" else "audio_length_in_s"
        wanted = {length_name: duration, "num_inference_steps": request.steps, "guidance_scale": request.guidance}
        for name, value in wanted.items():
            if value is not None:
                kwargs[name] = value
        if "num_waveforms_per_prompt" in self.params:
            kwargs["num_waveforms_per_prompt"] = 1
        return kwargs

    # -- generation ------------------------------------------------------------------------------
    def _generate(self, request: AudioRequest, seeds: list[int], events: EventEmitter) -> AudioResult:
        duration, latent_shape = self._check(request)
        prompts = [p for p in request.prompts() for _ in range(request.samples_per_prompt)]
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise InvalidRequest(f"prompt[{i}]", p, "must be a string", "pass a text description")
        kwargs = self._call_kwargs(request, duration)
        default_steps = self.params["num_inference_steps"].default
        total = request.steps or (default_steps if isinstance(default_steps, int) else None)
        chunk = self._chunk_size(request)
        if total is not None:
            events.set_total(total * -(-len(seeds) // chunk))  # steps x pipeline calls
        events.emit("start", total=total)
        waves: list[np.ndarray[Any, Any]] = []
        latent_dtype = self._latent_dtype()
        with self._lock:
            for start in range(0, len(seeds), chunk):
                part = seeds[start:start + chunk]
                # x_T comes from `randn`; the step noise from a stream of its own, so it never repeats x_T
                call = dict(kwargs, prompt=prompts[start:start + len(part)], generator=step_generators(part))
                if request.negative_prompt is not None:
                    call["negative_prompt"] = [request.negative_prompt] * len(part)
                call["latents"] = randn(latent_shape, part, device=self.device, dtype=latent_dtype)
                call.update(self._callback(events, total))
                try:
                    with torch.inference_mode():
                        out = self.pipe(**call)
                except PipelineCancelled:
                    raise self._cancelled(start, len(seeds), "samples") from None
                audios = out.audios
                audios = audios.detach().float().cpu().numpy() if isinstance(audios, torch.Tensor) else audios
                for row in np.asarray(audios):  # (samples,) or (channels, samples)
                    waves.append(np.ascontiguousarray(row[None, :] if row.ndim == 1 else row, dtype=np.float32))
        events.emit("end", total=total)
        return AudioResult(waveforms=waves, sample_rate=self.sample_rate, seeds=seeds)

    def _latent_dtype(self) -> torch.dtype:
        owner = self.pipe.unet if self.kind == "mel" else self.pipe.transformer
        return owner.dtype  # type: ignore[no-any-return]

    def _callback(self, events: EventEmitter, total: int | None) -> dict[str, Any]:
        """The step callback, in whichever form the pipeline takes (``callback_on_step_end`` or ``callback``)."""

        def step(index: int) -> None:
            events.emit("step", step=index + 1, total=total, sample=None, advance=1)
            if events.cancelled:
                raise PipelineCancelled

        if "callback_on_step_end" in self.params:
            def on_step_end(pipe: Any, i: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                step(i)
                return {}

            return {"callback_on_step_end": on_step_end}
        if "callback" in self.params:
            def callback(i: int, timestep: Any, latents: Any) -> None:
                step(i)

            hook: Callable[[int, Any, Any], None] = callback
            return {"callback": hook, "callback_steps": 1}
        return {}
