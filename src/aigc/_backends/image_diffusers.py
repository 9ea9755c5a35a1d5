"""Image backend ``diffusers``: Stable Diffusion and every pipeline the diffusers auto classes know.

Text-to-image, image-to-image (``init_image``, ``strength``) and inpainting (``mask``) run through one
``ImageRequest``. The image-to-image and inpainting pipelines are made from the loaded one with
``from_pipe``, so they share its weights. Noise comes from the sampling core, so sample *i* of a batch equals
a single run with its seed: for UNet text-to-image the initial latents from :func:`aigc.sampling.randn` (the
latents diffusers makes from ``torch.Generator("cpu").manual_seed(seed)``) and the scheduler's step noise from
:func:`aigc.sampling.step_generators`, a stream of its own that never repeats them; otherwise one CPU
``torch.Generator`` per sample, from which the pipeline draws everything in turn.

Stages of one ``generate``:
    1. check the request against the model (size, scheduler name, images) before any denoising;
    2. pick the pipeline (text-to-image, image-to-image or inpainting) and the scheduler;
    3. per chunk of samples: seeded latents and generators, run the pipeline with a step callback that
       emits events and cancels;
    4. collect the PIL images;
    5. the pipeline's safety checker, if it has one, as ``request.safety`` says (:func:`_safety_check`).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc._backends._diffusers_common import (
    SCHEDULERS,
    PipelineCancelled,
    PipelineGenerator,
    PipelineOptions,
    check_weights,
    is_audio_pipeline,
    is_video_pipeline,
    latent_preview,
    open_image,
    pipeline_class,
)
from aigc._generator import LoadOptions
from aigc._results import ImageResult
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import ImageRequest
from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound
from aigc.limits import check_pixels
from aigc.sampling import generators, randn, step_generators

__all__ = ["DiffusersImageGenerator"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class ImagePipelineOptions(PipelineOptions):
    """As :class:`PipelineOptions`, plus LoRAs.

    Attributes:
        lora: a LoRA directory, or a list of them (``finetune_image`` or diffusers' ``save_lora_weights``).
        lora_scale: a weight, or one per LoRA (default 1.0).
    """

    lora: Any = None
    lora_scale: Any = None

    def check(self) -> None:
        super().check()
        if self.lora is None and self.lora_scale is not None:
            raise InvalidRequest("lora_scale", self.lora_scale, "there is no LoRA to scale", "pass lora= too")


def _check_loras(options: LoadOptions) -> tuple[list[Path], list[float]]:
    """The LoRA directories and their weights (``lora=``, ``lora_scale=``), checked before anything loads."""
    opts = ImagePipelineOptions.of(options)
    value, scale = opts.lora, 1.0 if opts.lora_scale is None else opts.lora_scale
    if value is None:
        return [], []
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, (str, os.PathLike)) for v in items):
        raise InvalidRequest("lora", value, "must be a directory or a list of directories",
                             "pass lora='path/to/lora' or lora=['a', 'b']")
    scales = [scale] * len(items) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else scale
    if not isinstance(scales, (list, tuple)) or len(scales) != len(items) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in scales):
        raise InvalidRequest("lora_scale", scale, f"needs one number, or one per LoRA ({len(items)})",
                             "pass lora_scale=0.8 or lora_scale=[1.0, 0.5]")
    paths = []
    for item in items:
        path = Path(os.path.abspath(os.path.expanduser(os.fspath(item))))
        if not path.is_dir():
            raise ModelNotFound(f"lora={os.fspath(item)!r}: no such directory. Fix: pass the folder "
                                "finetune_image() or save_lora_weights() wrote")
        weight_files(path, allow_pickle=options.allow_pickle)
        paths.append(path)
    return paths, [float(s) for s in scales]


def _apply_loras(pipe: Any, loras: list[Path], scales: list[float]) -> None:
    try:
        import peft  # noqa: F401  (diffusers' LoRA loading runs through peft)
    except ImportError:
        raise BackendUnavailable("loading a LoRA needs peft", extra="train") from None
    names = [f"lora{i}" for i in range(len(loras))]
    for name, path in zip(names, loras, strict=True):
        pipe.load_lora_weights(os.fspath(path), adapter_name=name)
    pipe.set_adapters(names, adapter_weights=scales)


class DiffusersImageGenerator(PipelineGenerator[ImageRequest, ImageResult]):
    """Stable Diffusion 1.x/2.x, SDXL, SD3, Flux and other diffusers pipelines.

    Load options: ``attention_slicing`` (bool), ``vae_tiling`` (bool), ``max_batch_size`` (int, default 8),
    ``lora`` (a LoRA directory, or a list of them, as ``finetune_image`` or diffusers' ``save_lora_weights``
    writes) and ``lora_scale`` (a weight, or one per LoRA; default 1.0).

    Example:
        >>> gen = aigc.load("image", "path/to/sd-dir", device="auto")  # doctest: +SKIP
        >>> req = aigc.ImageRequest(prompt="a cat", width=512, height=512, steps=20, guidance=7.5, seed=[1, 2])
        >>> gen.generate(req).images  # doctest: +SKIP
    """

    modality = "image"
    backend_name = "diffusers"
    request_type = ImageRequest
    supported_params = frozenset(
        {"negative_prompt", "width", "height", "steps", "guidance", "init_image", "strength", "mask", "scheduler",
         "safety"}
    )
    options_type = ImagePipelineOptions

    def __init__(self, *, pipe: Any, model_id: str, options: LoadOptions, weights: str | None) -> None:
        super().__init__(pipe=pipe, model_id=model_id, options=options, weights=weights, variant="text2image")
        self.vae_scale_factor = int(getattr(pipe, "vae_scale_factor", 8))
        unet = getattr(pipe, "unet", None)
        default = getattr(pipe, "default_sample_size", None) or getattr(getattr(unet, "config", None),
                                                                        "sample_size", None) or 64
        self.default_size = int(default if isinstance(default, int) else default[0]) * self.vae_scale_factor
        # Stable Diffusion pipelines check sizes against 8 whatever the VAE; transformer pipelines (SD3) against
        # the VAE factor times the patch size.
        patch = int(getattr(getattr(getattr(pipe, "transformer", None), "config", None), "patch_size", 1) or 1)
        self.size_multiple = math.lcm(self.vae_scale_factor, 8, self.vae_scale_factor * patch)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        name = pipeline_class(path)  # a pipeline folder, and not one of the audio or video backends' kinds
        return name is not None and cls.accepts_pipeline(name)

    @classmethod
    def accepts_pipeline(cls, class_name: str) -> bool:
        return not is_video_pipeline(class_name) and not is_audio_pipeline(class_name)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> DiffusersImageGenerator:
        cls.check_load_options(options)
        loras, scales = _check_loras(options)
        if loras:  # record absolute paths, so that replay works from any directory
            options = dataclasses.replace(options, extra={**options.extra, "lora": [str(p) for p in loras],
                                                          "lora_scale": scales})
        weights = None
        if os.path.isdir(model):
            files = check_weights(Path(model), options.allow_pickle)
            for lora in loras:
                files += weight_files(lora, allow_pickle=options.allow_pickle)
            weights = fingerprint_files(files)
        import diffusers

        with cls.loading_errors(model, options, "a text-to-image pipeline"):
            pipe = diffusers.AutoPipelineForText2Image.from_pretrained(model, **cls.pretrained_kwargs(options))
        if loras:
            _apply_loras(pipe, loras, scales)
        cls.place(pipe, options)
        return cls(pipe=pipe, model_id=model, options=options, weights=weights)

    # -- generation ------------------------------------------------------------------------------
    def _check(self, request: ImageRequest) -> tuple[str, Any, Any, int, int]:
        """1. Everything that can be wrong with the request for this model, before any denoising."""
        init = mask = None
        if request.init_image is not None:
            init = open_image("init_image", request.init_image, "RGB")
        if request.mask is not None:
            mask = open_image("mask", request.mask, "L")
        width = request.width or (init.width if init is not None else self.default_size)
        height = request.height or (init.height if init is not None else self.default_size)
        f = self.size_multiple
        for name, value in (("width", width), ("height", height)):
            if value % f:
                down, up = value // f * f, (value // f + 1) * f
                raise InvalidRequest(name, value, f"this model needs sizes that are multiples of {f} (its VAE "
                                     f"scale factor and patch size; diffusers' pipelines ask for multiples of 8)",
                                     f"pass {name}={down or up} or {up}")
        check_pixels(width, height)
        if init is not None and init.size != (width, height):
            init = init.resize((width, height), resample=3)  # bicubic
        if mask is not None and mask.size != (width, height):
            mask = mask.resize((width, height), resample=0)  # nearest keeps the mask binary
        if request.scheduler is not None:
            if request.scheduler not in SCHEDULERS:
                raise InvalidRequest("scheduler", request.scheduler, "unknown scheduler name",
                                     f"use one of {', '.join(SCHEDULERS)}")
            if type(self.pipe.scheduler).__name__.startswith("FlowMatch"):
                raise InvalidRequest("scheduler", request.scheduler, "this is a flow-matching model; it runs only "
                                     "with its own scheduler", "leave scheduler out")
        mode = "inpaint" if mask is not None else ("image2image" if init is not None else "text2image")
        if mode != "text2image":  # diffusers denoises int(steps * strength) steps: none would fail mid-pipeline
            default = inspect.signature(self.pipe.__call__).parameters.get("num_inference_steps")
            steps = request.steps or (default.default if default is not None and isinstance(default.default, int)
                                      else 50)
            if int(steps * request.strength) < 1:
                fix = (f"pass strength >= {1 / steps:.3g} with {steps} steps, or more steps" if request.strength > 0
                       else "pass strength > 0 (strength=0 would return init_image unchanged)")
                raise InvalidRequest("strength", request.strength, f"{steps} step(s) x strength {request.strength:g} "
                                     "leaves no denoising step", fix)
        return mode, init, mask, width, height

    def _pipeline(self, mode: str) -> Any:
        """2. The pipeline for a mode, built once from the loaded one (shared weights)."""
        if mode not in self._variants:
            import diffusers

            auto = (diffusers.AutoPipelineForInpainting if mode == "inpaint"
                    else diffusers.AutoPipelineForImage2Image)
            try:
                pipe = auto.from_pipe(self.pipe)
            except ValueError as e:
                field = "mask" if mode == "inpaint" else "init_image"
                raise InvalidRequest(field, "<image>", f"this model has no {mode} pipeline: {e}",
                                     "use a model that supports it") from None
            pipe.set_progress_bar_config(disable=True)
            self._variants[mode] = pipe
        return self._variants[mode]

    def _generate(self, request: ImageRequest, seeds: list[int], events: EventEmitter) -> ImageResult:
        mode, init, mask, width, height = self._check(request)
        with self._lock:
            pipe = self._pipeline(mode)
            original = pipe.scheduler
            if request.scheduler is not None:
                import diffusers

                cls_name, extra = SCHEDULERS[request.scheduler]
                pipe.scheduler = getattr(diffusers, cls_name).from_config(original.config, **extra)
            checker = getattr(pipe, "safety_checker", None)
            if checker is not None:  # 5. the pipeline would blank flagged images: aigc runs the checker itself
                pipe.safety_checker = None
            try:
                images = self._run(pipe, mode, request, seeds, events, init, mask, width, height)
            finally:
                pipe.scheduler = original
                if checker is not None:
                    pipe.safety_checker = checker
            images, flags = _safety_check(pipe, checker, images, request.safety)
        return ImageResult(images=images, seeds=seeds, flags=flags)

    def _call_kwargs(self, pipe: Any, mode: str, request: ImageRequest, init: Any, mask: Any, width: int,
                     height: int) -> dict[str, Any]:
        params = inspect.signature(pipe.__call__).parameters
        kwargs: dict[str, Any] = {"output_type": "pil", "num_images_per_prompt": 1}
        wanted: dict[str, Any] = {
            "num_inference_steps": request.steps, "guidance_scale": request.guidance,
            "negative_prompt": request.negative_prompt,
        }
        if mode == "text2image" or mode == "inpaint":
            wanted |= {"width": width, "height": height}
        if mode != "text2image":
            wanted |= {"image": init, "strength": request.strength}
        if mode == "inpaint":
            wanted["mask_image"] = mask
        for name, value in wanted.items():
            if value is None:
                continue
            if name not in params:
                field = {"num_inference_steps": "steps", "guidance_scale": "guidance"}.get(name, name)
                raise InvalidRequest(field, value, f"{type(pipe).__name__} does not take it", "leave it out")
            kwargs[name] = value
        return kwargs

    def _run(self, pipe: Any, mode: str, request: ImageRequest, seeds: list[int], events: EventEmitter,
             init: Any, mask: Any, width: int, height: int) -> list[Any]:
        """3-4. Run the samples in chunks (one by one with ``deterministic``); return the images."""
        kwargs = self._call_kwargs(pipe, mode, request, init, mask, width, height)
        params = inspect.signature(pipe.__call__).parameters
        default_steps = params["num_inference_steps"].default if "num_inference_steps" in params else None
        total = request.steps or (default_steps if isinstance(default_steps, int) else None)
        prompts = [p for p in request.prompts() for _ in range(request.samples_per_prompt)]
        unet = getattr(pipe, "unet", None)
        own_latents = mode == "text2image" and unet is not None and "latents" in params
        chunk = self._chunk_size(request)
        images: list[Any] = []
        if total is not None:
            events.set_total(total * -(-len(seeds) // chunk))  # steps x pipeline calls
        events.emit("start", total=total)
        for start in range(0, len(seeds), chunk):
            part = seeds[start:start + chunk]
            # Our own x_T (text-to-image) comes from `randn`; the scheduler's step noise then needs a stream of its own
            # (a generator seeded like x_T would repeat it at the first stochastic step). Without our latents the
            # pipeline draws everything from one generator in sequence, which never repeats.
            gens = step_generators(part) if own_latents else generators(part)
            call = dict(kwargs, prompt=prompts[start:start + len(part)], generator=gens)
            if "negative_prompt" in call:
                call["negative_prompt"] = [request.negative_prompt] * len(part)
            for name in ("image", "mask_image"):  # one copy per sample: each is VAE-encoded with its own generator
                if name in call:
                    call[name] = [call[name]] * len(part)
            if own_latents:
                channels = int(pipe.unet.config.in_channels)
                shape = (channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
                call["latents"] = randn(shape, part, device=self.device, dtype=self.dtype)
            if "callback_on_step_end" in params:
                call["callback_on_step_end"] = self._callback(events, total, start)
            try:
                with torch.inference_mode():
                    out = pipe(**call)
            except PipelineCancelled:
                raise self._cancelled(start, len(seeds), "samples") from None
            images += list(out.images)
        events.emit("end", total=total)
        return images

    def _callback(self, events: EventEmitter, total: int | None, first: int) -> Callable[..., dict[str, Any]]:
        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            preview = None
            latents = tensors.get("latents")
            if events.has_callback and isinstance(latents, torch.Tensor) and latents.ndim == 4 \
                    and latents.shape[1] == 4:
                preview = latent_preview(latents[0])
            events.emit("step", step=step + 1, total=total, sample=None, preview=preview, advance=1)
            if events.cancelled:
                raise PipelineCancelled
            return {}

        return on_step_end


# -- 5. safety flags instead of black images (diffusers #845, #3422) ------------------------------------------
def _safety_check(pipe: Any, checker: Any, images: list[Any], mode: str) -> tuple[list[Any], list[list[str]]]:
    """Run Stable Diffusion's safety checker on the images: ``"flag"`` keeps them and returns ``["nsfw"]`` for each
    flagged one (``[]`` for the others), ``"blank"`` also blacks flagged ones out (what diffusers does), ``"off"``
    (or a pipeline without a checker) returns them unchecked with no flags."""
    extractor = getattr(pipe, "feature_extractor", None)
    if checker is None or mode == "off":
        return images, []
    if extractor is None:
        logger.warning("the pipeline has a safety checker but no feature extractor; images are not checked")
        return images, []
    import numpy as np
    from PIL import Image

    dtype = next(checker.parameters()).dtype
    device = next(checker.parameters()).device
    clip_input = extractor(images, return_tensors="pt").pixel_values.to(device=device, dtype=dtype)
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
    import sys

    # The checker announces "a black image will be returned", which is aigc's decision here, not the checker's.
    found = getattr(sys.modules.get(type(checker).__module__), "logger", None)
    quiet = found if isinstance(found, logging.Logger) and not found.disabled else None
    if quiet is not None:
        quiet.disabled = True
    try:
        with torch.inference_mode():
            _, nsfw = checker(images=arrays, clip_input=clip_input)
    finally:
        if quiet is not None:
            quiet.disabled = False
    flags = [["nsfw"] if bool(f) else [] for f in nsfw]
    if any(flags):
        logger.info("the safety checker flagged %d of %d image(s) (safety=%r)", sum(map(bool, flags)), len(flags), mode)
    if mode == "blank":
        images = [Image.new(im.mode, im.size) if f else im for im, f in zip(images, flags, strict=True)]
    return images, flags

