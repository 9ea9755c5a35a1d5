"""What the image, audio and video ``diffusers`` backends share.

* What kind of pipeline a model folder holds, read from its ``model_index.json`` without loading it. Each
  backend claims only its own kind, so ``aigc.load("image", video_dir)`` fails at detection with a clear message
  instead of deep inside loading.
* :class:`PipelineGenerator`, their base: the load-option checks, the weights check, ``from_pretrained`` with
  aigc's safety options and its errors turned into aigc's, device placement and offload, and the Generator
  hooks over the pipeline's modules.
* The scheduler short names (:data:`SCHEDULERS`), a request's images (:func:`open_image`) and cheap previews of
  Stable Diffusion latents (:func:`latent_preview`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from typing_extensions import Self

from aigc._backends._pixels import open_image
from aigc._generator import Generator, LoadOptions, ReqT, ResT
from aigc._options import BackendOptions, BatchOptions
from aigc._runtime.assets import read_json_object
from aigc._runtime.hub import check_available
from aigc._runtime.weights import pretrained_errors, weight_files
from aigc.errors import InvalidRequest

__all__ = ["SCHEDULERS", "PipelineCancelled", "PipelineGenerator", "PipelineOptions", "check_weights",
           "is_audio_pipeline", "is_video_pipeline", "latent_preview", "open_image", "pipeline_class"]

# Pipeline class names that make video. Most say so ("...VideoPipeline", "...ImageToVideo..."); the rest by family.
_VIDEO_CLASS = re.compile(r"Video|I2V|^AnimateDiff|^PIA|^Wan|^LTX(?!LatentUpsample)|^Mochi|^Latte|^Allegro|"
                          r"^SkyReels|^EasyAnimate|^ConsisID")
# Pipeline class names that make audio.
_AUDIO_CLASS = re.compile(r"Audio|MusicLDM|^Dance")


def pipeline_class(path: Path) -> str | None:
    """The pipeline class a folder's ``model_index.json`` names, or ``None`` (no file, or not one).

    Example:
        >>> pipeline_class(Path("sd-turbo"))  # doctest: +SKIP
        'StableDiffusionPipeline'
    """
    name = (read_json_object(path / "model_index.json") or {}).get("_class_name")
    return name if isinstance(name, str) else None


def is_video_pipeline(class_name: str) -> bool:
    """Whether a diffusers pipeline class name (``model_index.json``'s ``_class_name``) is a video pipeline.

    Example:
        >>> is_video_pipeline("TextToVideoSDPipeline"), is_video_pipeline("StableDiffusionPipeline")
        (True, False)
    """
    return bool(_VIDEO_CLASS.search(class_name))


def is_audio_pipeline(class_name: str) -> bool:
    """Whether a diffusers pipeline class name is an audio pipeline (AudioLDM 1/2, MusicLDM, Stable Audio, ...).

    Example:
        >>> is_audio_pipeline("AudioLDM2Pipeline"), is_audio_pipeline("StableDiffusionPipeline")
        (True, False)
    """
    return bool(_AUDIO_CLASS.search(class_name))


class PipelineCancelled(Exception):
    """Raised inside a pipeline's step callback to leave the pipeline at once."""


def check_weights(path: Path, allow_pickle: bool) -> list[Path]:
    """Weight files of every component folder of a pipeline; a folder with only pickle weights is refused."""
    files: list[Path] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        files += weight_files(sub, allow_pickle=allow_pickle, required=False)
    return files


@dataclass(frozen=True, kw_only=True)
class PipelineOptions(BatchOptions):
    """Load options every diffusers backend takes.

    Attributes:
        max_batch_size: samples per pipeline call (default 8).
        attention_slicing: compute attention in slices (less memory, a little slower).
        vae_tiling: decode the VAE in tiles (large images with less memory).
    """

    max_batch_size: int = 8
    attention_slicing: bool = False
    vae_tiling: bool = False

    def check(self) -> None:
        super().check()
        for flag in ("attention_slicing", "vae_tiling"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidRequest(flag, getattr(self, flag), "must be True or False", f"pass {flag}=True")


class PipelineGenerator(Generator[ReqT, ResT]):
    """Base of the ``diffusers`` backends: one loaded pipeline, ``self.pipe``.

    ``self._variants`` holds the pipelines made from it with ``from_pipe`` (e.g. image-to-image), keyed by a
    subclass's own names; ``self._lock`` serialises calls, since a pipeline holds per-call state.
    """

    options_type: ClassVar[type[BackendOptions] | None] = PipelineOptions
    hub_models = True
    #: memory-saving switches and the batch size decide resources, not the output: never taken from a record
    unsafe_load_options = frozenset({"attention_slicing", "vae_tiling", "max_batch_size"})

    def __init__(self, *, pipe: Any, model_id: str, options: LoadOptions, weights: str | None, variant: str) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, revision=options.revision,
                         weights=weights, options=options.extra)
        self.pipe = pipe
        self.offload = options.offload
        self.max_batch_size = self._options(options).max_batch_size
        self._variants: dict[str, Any] = {variant: pipe}
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def _options(cls, options: LoadOptions) -> BatchOptions:
        kind = cls.options_type or PipelineOptions
        typed = kind.of(options)
        assert isinstance(typed, BatchOptions)
        return typed

    @classmethod
    def precheck(cls, model: str, request: Any) -> None:
        """``steps`` against the number of steps of the model's noise schedule, read from its scheduler config."""
        steps = getattr(request, "steps", None)
        config = read_json_object(Path(model) / "scheduler" / "scheduler_config.json")
        train = config.get("num_train_timesteps") if config is not None else None
        if isinstance(steps, int) and isinstance(train, int) and steps > train:
            raise InvalidRequest("steps", steps, f"more than the {train} steps of the model's noise schedule",
                                 f"pass steps <= {train} (20 to 50 is typical)")

    @classmethod
    def check_load_options(cls, options: LoadOptions) -> None:
        """The backend's typed options and ``offload``, before anything loads."""
        cls._options(options)
        if options.offload != "none" and options.device.type == "cpu":
            raise InvalidRequest("offload", options.offload, "offload moves weights between the CPU and an "
                                 "accelerator, and this generator runs on the CPU", "pass offload='none' on CPU")

    @staticmethod
    def pretrained_kwargs(options: LoadOptions) -> dict[str, Any]:
        """``from_pretrained`` keywords: dtype, revision, safetensors only unless ``allow_pickle``, remote code."""
        return {"dtype": options.dtype, "revision": options.revision,
                "use_safetensors": None if options.allow_pickle else True,
                "trust_remote_code": options.trust_remote_code, **options.hub}

    @staticmethod
    def loading_errors(model: str, options: LoadOptions, kind: str) -> contextlib.AbstractContextManager[None]:
        """Turn what ``from_pretrained`` raises into aigc's errors; ``kind`` says what was expected, e.g.
        ``"a video pipeline"``. A hub id that is neither cached nor reachable fails here, at once."""
        check_available(model, "model_index.json", options.hub, options.revision)
        return pretrained_errors(model, allow_pickle=options.allow_pickle, what="a loadable diffusers pipeline",
                                 value_error=kind)

    @classmethod
    def accepts_pipeline(cls, class_name: str) -> bool:
        """Whether this backend drives a pipeline of this class (``detect`` and ``wraps`` ask)."""
        return False

    @classmethod
    def wraps(cls, obj: Any) -> bool:
        return (type(obj).__module__.startswith("diffusers.") and hasattr(obj, "components")
                and cls.accepts_pipeline(type(obj).__name__))

    @classmethod
    def wrap(cls, obj: Any, *, tokenizer: Any = None) -> Self:
        """The pipeline as it is (its device, dtype and components); its own progress bar is turned off, since
        aigc's reports the steps."""
        if tokenizer is not None:
            raise InvalidRequest("tokenizer", type(tokenizer).__name__, "a diffusers pipeline brings its own "
                                 "tokenizer", "leave tokenizer out")
        options = LoadOptions(device=obj.device, dtype=obj.dtype)
        name = getattr(obj, "name_or_path", None) or getattr(obj.config, "_name_or_path", None) or "wrapped"
        obj.set_progress_bar_config(disable=True)
        return cls(pipe=obj, model_id=str(name), options=options, weights=None)  # type: ignore[call-arg]

    @classmethod
    def place(cls, pipe: Any, options: LoadOptions) -> None:
        """Put the pipeline on its device (or set up offload), apply attention slicing / VAE tiling if asked,
        and silence diffusers' own progress bar (aigc's events and progress bar report the steps)."""
        if options.offload == "model":
            pipe.enable_model_cpu_offload(device=options.device)
        elif options.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=options.device)
        else:
            pipe.to(options.device)
        opts = cls._options(options)
        if getattr(opts, "attention_slicing", False) and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        if getattr(opts, "vae_tiling", False) and hasattr(getattr(pipe, "vae", None), "enable_tiling"):
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)

    # -- Generator hooks -------------------------------------------------------------------------
    def _modules(self) -> list[torch.nn.Module]:
        return [m for m in self.pipe.components.values() if isinstance(m, torch.nn.Module)]

    def _to(self, device: torch.device) -> None:
        if self.offload != "none":
            raise InvalidRequest("device", str(device), "an offloaded pipeline manages its own devices",
                                 "load it again with the device you want")
        self.pipe.to(device)

    def _close(self) -> None:
        self._variants.clear()
        self.pipe = None


#: Scheduler short names -> (diffusers class, extra config).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "unipc": ("UniPCMultistepScheduler", {}),
}

# An approximate linear map from SD's 4 latent channels to RGB, for cheap step previews.
_LATENT_RGB = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173],
                            [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]])


def latent_preview(latent: torch.Tensor) -> Any:
    """A rough RGB preview of one latent (4, h, w), at latent resolution."""
    from PIL import Image

    rgb = torch.einsum("chw,cr->hwr", latent.float().cpu(), _LATENT_RGB)  # (h, w, 3)
    return Image.fromarray(((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy())
