"""Image backend ``diffusion``: small class-conditional diffusion models, such as aigc's embedded default.

A model directory holds a diffusers ``UNet2DModel`` whose class embeddings are the model's classes (the last
id is the "null" class used for classifier-free guidance), a diffusers noise scheduler, and
``aigc_classes.json``, which names the classes and the prompt phrases that map to each::

    model-dir/
        aigc_classes.json     {"classes": [{"id": 9, "name": "ankle boot", "phrases": ["boot", ...]}, ...],
                               "null_class": 20, "image_size": 32, "default_steps": 50, "default_guidance": 2.5,
                               "default_scheduler": "ddpm"}
        unet/                 config.json + diffusion_pytorch_model.safetensors (save_pretrained)
        scheduler/            scheduler_config.json (the training schedule)

The built-in name ``"default"`` is the model shipped in the package (``aigc/assets/image_default``): 20
classes, the ten Fashion-MNIST garments and the digits 0-9, at 32x32 in grayscale.

Stages of one ``generate``:
    1. map every prompt to a class, and check steps, guidance, size and scheduler -- before any work;
    2. draw x_T for each sample from its own seed (:func:`aigc.sampling.randn`, on the CPU, then moved);
    3. denoise: at each step predict the noise with classifier-free guidance and let the scheduler step;
       stochastic schedulers draw their per-step noise from per-sample generators of the step-noise stream
       (:func:`aigc.sampling.step_generators`), never from x_T's;
    4. turn [-1, 1] samples into 8-bit RGB images, upscaled to the requested size.

Sample *i* of ``seed=s, num_outputs=n`` equals a single run with ``seed=s+i`` within rounding of the batched
convolutions (at most a few 1/255 steps); with ``deterministic=True`` the network sees one sample at a time
and the result is bit-identical.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aigc._backends._pixels import UpscalingGenerator, to_images, upscaled_size
from aigc._generator import LoadOptions
from aigc._results import ImageResult
from aigc._runtime.assets import model_dir, read_json_object
from aigc._runtime.events import EventEmitter
from aigc._types import ImageRequest
from aigc.errors import InvalidRequest
from aigc.formats import class_diffusion
from aigc.formats.classes import ClassTable
from aigc.sampling import generators, randn, sampler_version, step_generators

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ClassDiffusionGenerator"]

logger = logging.getLogger(__name__)

CLASSES_FILE = class_diffusion.CLASSES_FILE
BUILTIN_MODELS = {"default": "image_default"}  # built-in name -> folder under aigc/assets
# Scheduler short name -> diffusers class name; each is built from the model's training schedule.
SCHEDULERS = {
    "ddim": "DDIMScheduler",  # deterministic (eta = 0), Song et al. 2021
    "ddpm": "DDPMScheduler",  # ancestral sampling, Ho et al. 2020, eq. 11; draws noise every step
    "euler": "EulerDiscreteScheduler",  # Karras et al. 2022, Algorithm 1 without churn
    "dpm": "DPMSolverMultistepScheduler",  # DPM-Solver++(2M), Lu et al. 2022
}


def _model_dir(model: str) -> Path:
    """A local directory, or the folder of a built-in name inside the installed package."""
    return model_dir(model, BUILTIN_MODELS, marker=CLASSES_FILE, what="image model",
                     fix="pass a model directory holding aigc_classes.json and unet/")


class ClassDiffusionGenerator(UpscalingGenerator[ImageRequest, ImageResult]):
    """Class-conditional diffusion models: a prompt picks a class, the UNet draws it.

    Prompts are matched to the model's classes by phrase ("an ankle boot", "sneakers", "a handwritten 7",
    "the number seven"); a prompt that names no class raises :class:`~aigc.errors.InvalidRequest` listing
    them. Request fields: ``steps``, ``guidance`` (classifier-free guidance scale; 1 turns it off),
    ``width``/``height`` (multiples of the model's size, reached by upscaling) and ``scheduler``
    (``"ddpm"``, ``"ddim"``, ``"euler"``, ``"dpm"``). Defaults come from the model's ``aigc_classes.json``; the
    shipped model uses ancestral DDPM sampling, 50 steps, guidance 2.5: on such small, briefly trained
    networks the deterministic samplers (DDIM, Euler, DPM-Solver) leave visible artefacts that the fresh noise
    of each DDPM step washes out.

    Load options: ``upscale`` (``"bicubic"``, the default, or ``"nearest"``) and ``max_batch_size``
    (samples per network call, default 64).

    Example:
        >>> gen = aigc.load("image", "default", backend="diffusion")  # doctest: +SKIP
        >>> res = gen.generate("an ankle boot", seed=7, num_outputs=4, width=128, height=128)  # doctest: +SKIP
        >>> res.images[0].size  # doctest: +SKIP
        (128, 128)
    """

    modality = "image"
    backend_name = "diffusion"
    request_type = ImageRequest
    supported_params = frozenset({"steps", "guidance", "width", "height", "scheduler"})
    builtin_models = frozenset(BUILTIN_MODELS)

    def __init__(self, *, unet: Any, scheduler_config: dict[str, Any], table: ClassTable, settings: dict[str, Any],
                 model_id: str, options: LoadOptions, weights: str) -> None:
        super().__init__(model_id=model_id, options=options, weights=weights)
        self.unet = unet
        self.scheduler_config = scheduler_config
        self.table = table
        self.image_size = int(settings.get("image_size", unet.config.sample_size))
        self.channels = int(unet.config.in_channels)
        self.default_steps = int(settings.get("default_steps", 50))
        self.default_guidance = float(settings.get("default_guidance", 2.5))
        self.default_scheduler = str(settings.get("default_scheduler", "ddpm"))
        self.train_steps = int(scheduler_config.get("num_train_timesteps", 1000))

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        return class_diffusion.detect(path)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> ClassDiffusionGenerator:
        cls.check_load(options)
        loaded = class_diffusion.load(_model_dir(model), device=options.device, dtype=options.dtype,
                                      allow_pickle=options.allow_pickle)
        return cls(unet=loaded.unet, scheduler_config=loaded.scheduler_config, table=loaded.table,
                   settings=loaded.settings, model_id=model, options=options, weights=loaded.weights)

    @classmethod
    def precheck(cls, model: str, request: Any) -> None:
        """Classes, steps and size from ``aigc_classes.json`` and the schedule, before the UNet loads."""
        path = _model_dir(model)
        settings = read_json_object(path / CLASSES_FILE)
        if settings is None:
            return  # load says what is wrong with the folder
        ClassTable.from_json(settings).prompt_ids(request.prompts(), single=isinstance(request.prompt, str))
        schedule = read_json_object(path / "scheduler" / "scheduler_config.json") or {}
        train = int(schedule.get("num_train_timesteps", 1000))
        if request.steps is not None and request.steps > train:
            raise InvalidRequest("steps", request.steps, f"more than the {train} steps the model was trained with",
                                 f"pass steps <= {train} (50 is plenty)")
        upscaled_size(request, int(settings.get("image_size", 32)))

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [self.unet]

    def _to(self, device: torch.device) -> None:
        self.unet.to(device)

    def _close(self) -> None:
        self.unet = None

    # -- the stages ------------------------------------------------------------------------------
    def _classes(self, request: ImageRequest) -> list[int]:
        """1a. One class id per prompt, or InvalidRequest naming the prompt and the classes."""
        return self.table.prompt_ids(request.prompts(), single=isinstance(request.prompt, str), warn_ignored=True)

    def _settings(self, request: ImageRequest) -> tuple[int, float, str, tuple[int, int]]:
        """1b. Steps, guidance, scheduler name and output (width, height), with the model's defaults."""
        steps = request.steps if request.steps is not None else self.default_steps
        if steps > self.train_steps:
            raise InvalidRequest("steps", steps, f"more than the {self.train_steps} steps the model was trained with",
                                 f"pass steps <= {self.train_steps} (50 is plenty)")
        guidance = float(request.guidance if request.guidance is not None else self.default_guidance)
        name = (request.scheduler or self.default_scheduler).lower()
        if name not in SCHEDULERS:
            raise InvalidRequest("scheduler", request.scheduler, "unknown scheduler",
                                 f"use one of: {', '.join(SCHEDULERS)}")
        return steps, guidance, name, upscaled_size(request, self.image_size)

    def _scheduler(self, name: str, steps: int) -> Any:
        import diffusers

        scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(self.scheduler_config)
        scheduler.set_timesteps(steps)
        return scheduler

    def _eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float,
             chunk: int) -> torch.Tensor:
        """3a. Guided noise prediction eps_u + g (eps_c - eps_u)  (Ho & Salimans 2022, eq. 6), in float32.

        Rows go through the network ``chunk`` samples at a time (conditional and unconditional together),
        so a sample's result does not depend on the batch when ``chunk == 1``.
        """
        outs = []
        for start in range(0, x.shape[0], chunk):
            xc, yc = x[start:start + chunk], labels[start:start + chunk]  # (b, C, H, W), (b,)
            if guidance == 1.0:
                inp, ids = xc, yc
            else:
                inp, ids = torch.cat([xc, xc]), torch.cat([yc, torch.full_like(yc, self.table.null_class)])
            tt = t.expand(inp.shape[0]).to(self.device)
            pred = self.unet(inp.to(self.dtype), tt, class_labels=ids).sample.float()  # (b or 2b, C, H, W)
            if guidance != 1.0:
                cond, uncond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            outs.append(pred)
        return torch.cat(outs)

    def _to_images(self, x: torch.Tensor, size: tuple[int, int]) -> list[Image.Image]:
        """4. (B, C, H, W) in [-1, 1] -> RGB PIL images, upscaled to ``size`` (width, height)."""
        return to_images(x, size, self.upscale)

    def _generate(self, request: ImageRequest, seeds: list[int], events: EventEmitter) -> ImageResult:
        # 1. Validate everything before any tensor work.
        class_ids = self._classes(request)
        steps, guidance, name, size = self._settings(request)
        n = request.samples_per_prompt
        labels = torch.tensor([c for c in class_ids for _ in range(n)], device=self.device)  # (B,) prompt-major
        scheduler = self._scheduler(name, steps)

        # 2. x_T ~ N(0, I) per sample from its own seed, made on the CPU then moved; scaled for schedulers
        #    that work in sigma space (Euler). Per-step noise (DDPM) comes from each sample's step-noise stream.
        hw = self.image_size
        x = randn((self.channels, hw, hw), seeds, device=self.device) * scheduler.init_noise_sigma  # (B, C, H, W)
        step_kwargs: dict[str, Any] = {}
        if "generator" in inspect.signature(scheduler.step).parameters:
            if sampler_version() == 1:  # records from before sampler version 2: x_T's generators, advanced past it
                gens = generators(seeds)
                for g in gens:
                    torch.randn((self.channels, hw, hw), generator=g)
            else:
                gens = step_generators(seeds)
            step_kwargs["generator"] = gens  # diffusers draws row i from gens[i], on the CPU

        # 3. Denoise, one event per step; a cancelled run stops between steps.
        chunk = self._chunk_size(request)
        events.emit("start", total=steps)
        with torch.inference_mode():
            for i, t in enumerate(scheduler.timesteps):
                if events.cancelled:
                    raise self._cancelled(i, steps, "steps")
                model_in = scheduler.scale_model_input(x, t)
                eps = self._eps(model_in, t.reshape(1), labels, guidance, chunk)
                x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
                events.emit("step", step=i + 1, total=steps, advance=1)
            if events.cancelled:
                raise self._cancelled(steps, steps, "steps")

        # 4. Pixels.
        events.emit("end", step=steps, total=steps)
        return ImageResult(images=self._to_images(x, size), seeds=seeds)
