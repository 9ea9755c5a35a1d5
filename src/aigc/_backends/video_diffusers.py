"""Video backend ``diffusers``: text-to-video and image-to-video through diffusers' video pipelines.

Any pipeline folder whose ``model_index.json`` names a video pipeline loads: the ModelScope UNet3D
``TextToVideoSDPipeline``, AnimateDiff (a motion adapter on a Stable Diffusion UNet; or any SD 1.x folder
with the load option ``motion_adapter=``), CogVideoX, LTX-Video, Wan, HunyuanVideo, Mochi, ... and the
image-to-video ones (Stable Video Diffusion, I2VGenXL, CogVideoX I2V, LTX I2V, Wan I2V), which take
``init_image``. A text-to-video model that diffusers pairs with an image-to-video form sharing its weights
(LTX-Video) switches to it when ``init_image`` is given.

Seeds: for the UNet families (UNet3D and AnimateDiff) the initial latents ``(B, C, T, H/f, W/f)`` come from
:func:`aigc.sampling.randn`, the scheduler's step noise from :func:`aigc.sampling.step_generators` (a stream
of its own, so it never repeats them), and samples run batched; every other pipeline runs one sample per call
with one CPU ``torch.Generator`` seeded with the sample's seed, from which it draws everything in turn. Sample
*i* of a batch equals a single run with seed ``s + i`` either way.

Stages of one ``generate``:
    1. plan: check the request against the model (frames, size, scheduler, image, prompt) before any
       denoising, filling in the model's defaults (e.g. 16 frames at 8 fps for ModelScope);
    2. pick the pipeline (text-to-video, or its image-to-video form) and the scheduler;
    3. per chunk of samples: seeded latents and generators, run the pipeline with a step callback that
       emits events and cancels;
    4. collect the frames as uint8 ``(T, H, W, 3)`` arrays.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from aigc._backends._diffusers_common import (
    SCHEDULERS,
    PipelineCancelled,
    PipelineGenerator,
    PipelineOptions,
    check_weights,
    is_video_pipeline,
    latent_preview,
    open_image,
    pipeline_class,
)
from aigc._generator import LoadOptions
from aigc._results import VideoResult
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import VideoRequest
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.limits import check_pixels
from aigc.sampling import generators, randn, step_generators

__all__ = ["DiffusersVideoGenerator"]

logger = logging.getLogger(__name__)

# Pipelines that need an image to animate (and cannot run from text alone).
_NEEDS_IMAGE = re.compile(r"ImageToVideo|Image2Video|I2V|StableVideoDiffusion")
# Default frame rates of the families whose __call__ has no frame-rate argument: what the model was trained at.
_DEFAULT_FPS = (("CogVideoX", 8.0), ("Wan", 16.0), ("HunyuanVideo", 15.0), ("Mochi", 30.0), ("Allegro", 15.0),
                ("SkyReels", 24.0), ("EasyAnimate", 8.0))
_FPS_ARGS = ("fps", "frame_rate", "target_fps")  # how pipelines that condition on the frame rate name it
# UNets whose latents are (B, C, T, H/f, W/f): we draw them ourselves from aigc.sampling.randn.
_UNET_VIDEO = ("UNet3DConditionModel", "UNetMotionModel")
# Schedulers whose step draws no noise (DDIM with eta=0, the default here): the UNet3D pipeline steps a
# (B*T, C, h, w) view of the latents, so one that does draw noise cannot take a generator per sample.
_NOISELESS = frozenset({"DDIMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler",
                        "UniPCMultistepScheduler", "DEISMultistepScheduler", "DPMSolverSinglestepScheduler",
                        "DPMSolverMultistepScheduler"})
_FIELD = {"num_inference_steps": "steps", "guidance_scale": "guidance", "image": "init_image"}


def _not_video(model: str, name: str | None) -> NoReturn:
    what = f"a {name}" if name else "no diffusers pipeline (no model_index.json)"
    raise ModelNotFound(f"model={model!r} is {what}, not a video pipeline. Fix: load an image model with "
                        "aigc.load('image', ...), or animate a Stable Diffusion 1.x model with the load option "
                        "motion_adapter=")


def _int_default(params: Any, name: str) -> int | None:
    param = params.get(name)
    default = getattr(param, "default", None)
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def _config(module: Any, name: str) -> Any:
    return getattr(getattr(module, "config", None), name, None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoPipelineOptions(PipelineOptions):
    """As :class:`PipelineOptions` (4 clips per call by default), plus:

    Attributes:
        scheduler: the default scheduler's short name (a request's ``scheduler`` wins).
        motion_adapter: an AnimateDiff motion adapter (a folder or a hub id) to put on a Stable Diffusion model.
    """

    max_batch_size: int = 4
    scheduler: str | None = None
    motion_adapter: Any = None

    def check(self) -> None:
        super().check()
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise InvalidRequest("scheduler", self.scheduler, "unknown scheduler name",
                                 f"use one of {', '.join(SCHEDULERS)}")
        if self.motion_adapter is not None and not isinstance(self.motion_adapter, (str, os.PathLike)):
            raise InvalidRequest("motion_adapter", self.motion_adapter, "must be a folder or a hub id",
                                 "pass motion_adapter='guoyww/animatediff-motion-adapter-v1-5-2'")


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What one request resolves to for this model (stage 1)."""

    mode: str  # "loaded" (the pipeline as loaded) or "image2video" (its image-to-video form)
    frames: int
    fps: float
    width: int | None
    height: int | None
    image: Any
    scheduler: str | None  # a short name from SCHEDULERS


class DiffusersVideoGenerator(PipelineGenerator[VideoRequest, VideoResult]):
    """Text-to-video and image-to-video with diffusers pipelines (ModelScope, AnimateDiff, CogVideoX, LTX, Wan, ...).

    Request fields: ``num_frames``, ``fps``, ``width``/``height``, ``steps``, ``guidance``, ``negative_prompt``,
    ``init_image`` (image-to-video models). Defaults come from the model. Load options: ``scheduler`` (a short
    name as in the image backend: ``"ddim"``, ``"euler"``, ``"dpm++"``, ...), ``motion_adapter`` (an
    AnimateDiff motion adapter folder or hub id, to animate a Stable Diffusion 1.x model),
    ``attention_slicing``, ``vae_tiling`` (bool) and ``max_batch_size`` (samples per pipeline call for the
    UNet families, default 4).

    Example:
        >>> gen = aigc.load("video", "path/to/text-to-video-ms-1.7b", device="auto")  # doctest: +SKIP
        >>> clip = gen.generate("a panda surfing", num_frames=16, steps=25, seed=3)  # doctest: +SKIP
        >>> clip.save("panda.mp4")  # doctest: +SKIP
    """

    modality = "video"
    backend_name = "diffusers"
    request_type = VideoRequest
    supported_params = frozenset({"negative_prompt", "width", "height", "steps", "guidance", "num_frames", "fps",
                                  "init_image", "scheduler"})
    options_type = VideoPipelineOptions
    # a motion adapter may be a hub id (a download the record's author would choose)
    unsafe_load_options = PipelineGenerator.unsafe_load_options | {"motion_adapter"}

    def __init__(self, *, pipe: Any, model_id: str, options: LoadOptions, weights: str | None) -> None:
        super().__init__(pipe=pipe, model_id=model_id, options=options, weights=weights, variant="loaded")

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        name = pipeline_class(path)
        return name is not None and cls.accepts_pipeline(name)

    @classmethod
    def accepts_pipeline(cls, class_name: str) -> bool:
        return is_video_pipeline(class_name)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> DiffusersVideoGenerator:
        cls.check_load_options(options)
        extra = options.extra
        adapter = VideoPipelineOptions.of(options).motion_adapter
        adapter_files: list[Path] = []
        if adapter is not None:
            local = os.path.expanduser(os.fspath(adapter))
            if os.path.isdir(local):  # record an absolute path, so that replay works from any directory
                adapter = os.path.abspath(local)
                adapter_files = weight_files(Path(adapter), allow_pickle=options.allow_pickle)
                options = dataclasses.replace(options, extra={**extra, "motion_adapter": adapter})
            elif os.path.exists(local) or os.fspath(adapter).startswith((".", "/", "~")):
                raise ModelNotFound(f"motion_adapter={os.fspath(adapter)!r}: no such folder. Fix: pass the folder "
                                    "MotionAdapter.save_pretrained() wrote, or a hub id")
        weights = None
        if os.path.isdir(model):
            if adapter is None and not cls.detect(Path(model)):  # say so before loading any weights
                _not_video(model, pipeline_class(Path(model)))
            weights = fingerprint_files(check_weights(Path(model), options.allow_pickle) + adapter_files)
        pipe = _from_pretrained(model, adapter, options)
        if not is_video_pipeline(type(pipe).__name__):
            _not_video(model, type(pipe).__name__)
        cls.place(pipe, options)
        gen = cls(pipe=pipe, model_id=model, options=options, weights=weights)
        scheduler = VideoPipelineOptions.of(options).scheduler
        if scheduler is not None:
            gen._check_scheduler(pipe, scheduler)
        return gen

    # -- what the model allows -------------------------------------------------------------------
    def _params(self, pipe: Any) -> Any:
        return inspect.signature(pipe.__call__).parameters

    def _frame_limits(self, pipe: Any) -> tuple[int, int | None, int]:
        """(default frames, most frames or None, temporal step k: frame counts must be k*n + 1 when k > 1)."""
        unet, transformer = getattr(pipe, "unet", None), getattr(pipe, "transformer", None)
        default = (_int_default(self._params(pipe), "num_frames") or _config(unet, "num_frames")
                   or _config(transformer, "sample_frames") or 16)
        most = _config(unet, "motion_max_seq_length")  # AnimateDiff: the motion modules' positional table
        step = getattr(pipe, "vae_scale_factor_temporal", None) or getattr(pipe, "vae_temporal_compression_ratio", 1)
        return int(default), (int(most) if isinstance(most, int) else None), int(step) if isinstance(step, int) else 1

    def _size_rule(self, pipe: Any) -> tuple[int, int | None, int | None]:
        """(size multiple, default width, default height)."""
        vae_f = next((v for v in (getattr(pipe, n, None) for n in ("vae_scale_factor_spatial",
                      "vae_spatial_compression_ratio", "vae_scale_factor")) if isinstance(v, int)), 8)
        transformer = getattr(pipe, "transformer", None)
        patch = _config(transformer, "patch_size")
        patch = patch[-1] if isinstance(patch, (list, tuple)) and patch else patch
        multiple = vae_f * (patch if isinstance(patch, int) and patch > 0 else 1)
        multiple = math.lcm(multiple, 8)  # every diffusers video pipeline checks sizes against 8 at least
        params = self._params(pipe)
        width, height = _int_default(params, "width"), _int_default(params, "height")
        unet_size = _config(getattr(pipe, "unet", None), "sample_size")
        if isinstance(unet_size, (list, tuple)):
            unet_size = unet_size[0]
        if isinstance(unet_size, int):
            width, height = width or unet_size * vae_f, height or unet_size * vae_f
        t_w, t_h = _config(transformer, "sample_width"), _config(transformer, "sample_height")
        if isinstance(t_w, int) and isinstance(t_h, int):
            width, height = width or t_w * vae_f, height or t_h * vae_f
        return multiple, width, height

    def _default_fps(self, pipe: Any) -> float:
        params = self._params(pipe)
        for name in _FPS_ARGS:
            value = _int_default(params, name)
            if value:
                return float(value)
        name = type(pipe).__name__
        return next((fps for prefix, fps in _DEFAULT_FPS if name.startswith(prefix)), 8.0)

    # -- generation ------------------------------------------------------------------------------
    def _plan(self, request: VideoRequest) -> _Plan:
        """1. Everything that can be wrong with the request for this model, before any denoising."""
        name = type(self.pipe).__name__
        image = None
        mode = "loaded"
        if request.init_image is not None:
            image = open_image("init_image", request.init_image, "RGB")
            if "image" not in self._params(self.pipe):
                mode = "image2video"
        elif _NEEDS_IMAGE.search(name):
            raise InvalidRequest("init_image", None, f"{name} makes video from an image",
                                 "pass init_image= a PIL image or an image file")
        pipe = self._pipeline(mode)
        params = self._params(pipe)
        if "prompt" not in params and any(request.prompts()):
            raise InvalidRequest("prompt", request.prompt, f"{type(pipe).__name__} takes no prompt: it animates "
                                 "init_image alone", 'pass prompt=""')
        default, most, step = self._frame_limits(pipe)
        frames = request.num_frames or default
        if most is not None and frames > most:
            raise InvalidRequest("num_frames", frames, f"this model's motion modules make at most {most} frames",
                                 f"pass num_frames <= {most} (the default is {default})")
        if step > 1 and (frames - 1) % step:
            down, up = (frames - 1) // step * step + 1, ((frames - 1) // step + 1) * step + 1
            fix = f"pass num_frames={down} or {up}" if down > 1 else f"pass num_frames={up}"
            raise InvalidRequest("num_frames", frames, f"this model needs {step}k + 1 frames (its VAE compresses "
                                 f"{step} frames into one)", fix)
        if request.num_frames is not None and "num_frames" not in params:
            raise InvalidRequest("num_frames", frames, f"{type(pipe).__name__} does not take it", "leave it out")
        multiple, width, height = self._size_rule(pipe)
        width, height = request.width or width, request.height or height
        for field, value in (("width", width), ("height", height)):
            if value is not None and value % multiple:
                down, up = value // multiple * multiple, (value // multiple + 1) * multiple
                raise InvalidRequest(field, value, f"this model needs sizes that are multiples of {multiple}",
                                     f"pass {field}={down or up}" + (f" or {up}" if down else ""))
        if width is not None and height is not None:
            check_pixels(width, height)
        scheduler = getattr(request, "scheduler", None) or self.options.get("scheduler")
        if scheduler is not None:
            self._check_scheduler(pipe, scheduler)
        fps = float(request.fps) if request.fps is not None else self._default_fps(pipe)
        return _Plan(mode=mode, frames=frames, fps=fps, width=width, height=height, image=image, scheduler=scheduler)

    @staticmethod
    def _check_scheduler(pipe: Any, name: str) -> None:
        if name not in SCHEDULERS:
            raise InvalidRequest("scheduler", name, "unknown scheduler name", f"use one of {', '.join(SCHEDULERS)}")
        if type(pipe.scheduler).__name__.startswith("FlowMatch"):
            raise InvalidRequest("scheduler", name, "this is a flow-matching model; it runs only with its own "
                                 "scheduler", "leave scheduler out")

    def _pipeline(self, mode: str) -> Any:
        """2. The pipeline for a mode; an image-to-video form is built once from the loaded one (shared weights)."""
        if mode not in self._variants:
            from diffusers.pipelines import auto_pipeline

            name = type(self.pipe).__name__
            family = next((k for k, v in auto_pipeline.AUTO_TEXT2VIDEO_PIPELINES_MAPPING.items()
                           if v.__name__ == name), None)
            target = auto_pipeline.AUTO_IMAGE2VIDEO_PIPELINES_MAPPING.get(family) if family else None
            if target is None:
                raise InvalidRequest("init_image", "<image>", f"{name} makes video from text only, and has no "
                                     "image-to-video form", "leave init_image out, or load an image-to-video model "
                                     "(Stable Video Diffusion, I2VGenXL, CogVideoX I2V, LTX-Video, Wan I2V)")
            pipe = target.from_pipe(self.pipe)
            pipe.set_progress_bar_config(disable=True)
            self._variants[mode] = pipe
        return self._variants[mode]

    def _generate(self, request: VideoRequest, seeds: list[int], events: EventEmitter) -> VideoResult:
        with self._lock:
            plan = self._plan(request)
            pipe = self._pipeline(plan.mode)
            original = pipe.scheduler
            if plan.scheduler is not None:
                import diffusers

                cls_name, extra = SCHEDULERS[plan.scheduler]
                pipe.scheduler = getattr(diffusers, cls_name).from_config(original.config, **extra)
            try:
                videos = self._run(pipe, plan, request, seeds, events)
            finally:
                pipe.scheduler = original
        return VideoResult(videos=videos, seeds=seeds, fps=plan.fps)

    def _call_kwargs(self, pipe: Any, plan: _Plan, request: VideoRequest) -> dict[str, Any]:
        params = self._params(pipe)
        kwargs: dict[str, Any] = {"output_type": "np"} if "output_type" in params else {}
        wanted: dict[str, Any] = {
            "num_inference_steps": request.steps, "guidance_scale": request.guidance,
            "negative_prompt": request.negative_prompt, "width": plan.width, "height": plan.height,
            "image": plan.image,
        }
        if "num_frames" in params:
            kwargs["num_frames"] = plan.frames
        fps_arg = next((n for n in _FPS_ARGS if n in params), None)
        if fps_arg is not None:
            kwargs[fps_arg] = plan.fps
        for name, value in wanted.items():
            if value is None:
                continue
            if name not in params:
                field = _FIELD.get(name, name)
                raise InvalidRequest(field, "<image>" if name == "image" else value,
                                     f"{type(pipe).__name__} does not take it", "leave it out")
            kwargs[name] = value
        return kwargs

    def _batching(self, pipe: Any, params: Any) -> tuple[bool, bool]:
        """(we draw the initial latents, several samples may share a pipeline call)."""
        unet_name = type(getattr(pipe, "unet", None)).__name__
        if unet_name not in _UNET_VIDEO or "latents" not in params:
            return False, False
        if unet_name == "UNetMotionModel":  # AnimateDiff steps the (B, C, T, h, w) latents: one generator a row
            return True, True
        scheduler = pipe.scheduler
        return True, type(scheduler).__name__ in _NOISELESS and "sde" not in str(
            getattr(scheduler.config, "algorithm_type", ""))

    def _run(self, pipe: Any, plan: _Plan, request: VideoRequest, seeds: list[int],
             events: EventEmitter) -> list[np.ndarray[Any, Any]]:
        """3-4. Run the samples in chunks; return one uint8 (T, H, W, 3) array per sample."""
        params = self._params(pipe)
        kwargs = self._call_kwargs(pipe, plan, request)
        default_steps = _int_default(params, "num_inference_steps")
        total = request.steps or default_steps
        prompts = [p for p in request.prompts() for _ in range(request.samples_per_prompt)]
        own_latents, batchable = self._batching(pipe, params)
        own_latents = own_latents and plan.width is not None and plan.height is not None
        chunk = self.max_batch_size if batchable and not request.deterministic else 1
        calls = -(-len(seeds) // chunk)
        if total is not None:
            events.set_total(total * calls)  # steps x pipeline calls
        events.emit("start", total=total)
        videos: list[np.ndarray[Any, Any]] = []
        for start in range(0, len(seeds), chunk):
            part = seeds[start:start + chunk]
            # With our own x_T, the step noise needs a stream of its own (a list of one acts as one generator)
            call = dict(kwargs, generator=step_generators(part) if own_latents else generators(part))
            if "prompt" in params:
                call["prompt"] = prompts[start:start + len(part)]
            if "negative_prompt" in call:
                call["negative_prompt"] = [request.negative_prompt] * len(part)
            if own_latents:
                f = int(getattr(pipe, "vae_scale_factor", 8))
                channels = int(pipe.unet.config.in_channels)
                shape = (channels, plan.frames, int(plan.height or 0) // f, int(plan.width or 0) // f)  # (C, T, h, w)
                call["latents"] = randn(shape, part, device=self.device, dtype=self.dtype)
            stepped = [0]
            self._add_callback(params, call, events, total, stepped, preview=own_latents)
            try:
                with torch.inference_mode():
                    out = pipe(**call)
            except PipelineCancelled:
                raise self._cancelled(start, len(seeds), "samples") from None
            except ValueError as e:
                if stepped[0]:
                    raise
                raise InvalidRequest("request", request.prompt, f"{type(pipe).__name__} rejected it: {e}",
                                     "change the value it names") from None
            videos += _to_uint8(out.frames if hasattr(out, "frames") else out[0], len(part))
        events.emit("end", total=total)
        return videos

    def _add_callback(self, params: Any, call: dict[str, Any], events: EventEmitter, total: int | None,
                      stepped: list[int], *, preview: bool) -> None:
        """Step events (with a first-frame preview for the UNet families' 4-channel latents) and cancellation."""

        def step(index: int, latents: Any) -> None:
            stepped[0] += 1
            image = None
            if preview and events.has_callback and isinstance(latents, torch.Tensor) and latents.ndim == 5 \
                    and latents.shape[1] == 4:
                image = latent_preview(latents[0, :, 0])  # (B, C, T, h, w) -> sample 0, frame 0
            events.emit("step", step=index + 1, total=total, sample=None, preview=image, advance=1)
            if events.cancelled:
                raise PipelineCancelled

        if "callback_on_step_end" in params:
            def on_step_end(pipe: Any, i: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                step(i, tensors.get("latents"))
                return {}

            call["callback_on_step_end"] = on_step_end
        elif "callback" in params:  # older pipelines (ModelScope's UNet3D) have only the legacy callback
            call["callback"] = lambda i, timestep, latents: step(i, latents)
            call["callback_steps"] = 1


def _to_uint8(frames: Any, count: int) -> list[np.ndarray[Any, Any]]:
    """A pipeline's ``frames`` (B, T, H, W, 3) floats in [0, 1] (array, tensor or nested lists) -> uint8 clips."""
    clips: list[np.ndarray[Any, Any]] = []
    for clip in list(frames)[:count]:
        if isinstance(clip, torch.Tensor):
            clip = clip.float().cpu().numpy()
        elif isinstance(clip, (list, tuple)):
            clip = np.stack([np.asarray(f) for f in clip])
        array = np.asarray(clip)
        if array.dtype != np.uint8:  # as diffusers' numpy_to_pil rounds
            array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)
        clips.append(np.ascontiguousarray(array))
    return clips


def _from_pretrained(model: str, adapter: Any, options: LoadOptions) -> Any:
    import diffusers

    kwargs = PipelineGenerator.pretrained_kwargs(options)
    with PipelineGenerator.loading_errors(model, options, "a video pipeline"):
        if adapter is not None:
            motion = diffusers.MotionAdapter.from_pretrained(
                os.fspath(adapter), dtype=options.dtype, use_safetensors=kwargs["use_safetensors"])
            pipe = diffusers.AnimateDiffPipeline.from_pretrained(model, motion_adapter=motion, **kwargs)
        else:
            pipe = diffusers.DiffusionPipeline.from_pretrained(model, **kwargs)
    return pipe
