"""Video backend ``sprites``: aigc's own clip VAE of a sprite moving across a canvas -- the embedded default.

The prompt says what moves and where it goes ("a 3 moving left", "digit seven moving up"); the model
(:class:`aigc.models.sprite_video.SpriteVideoVAE`) draws every frame of a clip from one latent z, the content
class, the direction and the frame index. A model directory is what :func:`aigc.train.train_sprite_video` exports,
in the format :mod:`aigc.formats.sprites` owns (``config.json`` with the classes and directions, and
``model.safetensors``).

The built-in name ``"default"`` is the model shipped in the package (``aigc/assets/video_default``): the digits
0-9 moving left, right, up or down, 16 frames of 32x32 grayscale (returned as RGB).

Stages of one ``generate``:
    1. find one class and one direction in every prompt, check frames, size and truncation -- before any work;
    2. draw z for each sample from its own seed (a CPU generator, then moved) and scale it by ``truncation``;
    3. decode all frames of ``max_batch_size`` clips per network call (one clip at a time with ``deterministic``);
    4. turn [-1, 1] frames into 8-bit RGB, upscaled to the requested size.

Sample *i* of ``seed=s`` equals a single run with ``seed=s+i`` (bit-identical with ``deterministic=True``).

Example:
    >>> clip = aigc.generate("video", "a 3 moving left", backend="sprites", seed=0)  # doctest: +SKIP
    >>> clip.frames.shape  # doctest: +SKIP
    (16, 32, 32, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc._backends._pixels import UpscaleOptions, UpscalingGenerator, to_images, upscaled_size
from aigc._generator import LoadOptions
from aigc._results import VideoResult
from aigc._runtime.assets import model_dir
from aigc._runtime.events import EventEmitter
from aigc._types import VideoRequest
from aigc.errors import InvalidRequest
from aigc.formats import sprites
from aigc.formats.classes import ClassTable
from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
from aigc.sampling import randn

__all__ = ["SpriteVideoGenerator", "SpriteVideoModel", "load_sprite_video"]

CONFIG_FILE = "config.json"
BUILTIN_MODELS = {"default": "video_default"}  # built-in name -> folder under aigc/assets


@dataclass(frozen=True, kw_only=True)
class SpriteOptions(UpscaleOptions):
    """As :class:`UpscaleOptions`, 16 clips per network call by default."""

    max_batch_size: int = 16


@dataclass
class SpriteVideoModel:
    """A loaded clip VAE with its prompt vocabulary and defaults.

    Attributes:
        net: the :class:`SpriteVideoVAE`, on its device, in eval mode.
        classes: what can move (class id -> name, and the phrases naming each).
        directions: where it can go (direction id -> name, and phrases).
        default_fps, default_truncation: from ``config.json``'s ``defaults``.
        weights: the fingerprint of the weight file (for provenance).
    """

    net: SpriteVideoVAE
    classes: ClassTable
    directions: ClassTable
    default_fps: float
    default_truncation: float
    weights: str

    @property
    def cfg(self) -> SpriteVideoConfig:
        return self.net.cfg

    def parse(self, request: VideoRequest) -> tuple[list[int], list[int]]:
        """1a. A class id and a direction id per prompt, or InvalidRequest naming the prompt and the options."""
        prompts, single = request.prompts(), isinstance(request.prompt, str)
        return (self.classes.prompt_ids(prompts, single=single, what="things this model draws moving",
                                        example="a 3 moving left"),
                self.directions.prompt_ids(prompts, single=single, what="directions of motion this model knows",
                                           example="a 3 moving left"))

    def plan(self, request: VideoRequest) -> tuple[tuple[int, int], float, float]:
        """1b. Output (width, height), fps and truncation, with the model's defaults, checked."""
        cfg = self.cfg
        if request.num_frames is not None and request.num_frames != cfg.frames:
            raise InvalidRequest("num_frames", request.num_frames, f"this model draws clips of exactly {cfg.frames} "
                                 "frames", f"pass num_frames={cfg.frames} or leave it out")
        size = upscaled_size(request, cfg.resolution, "frames")
        fps = float(request.fps if request.fps is not None else self.default_fps)
        truncation = float(request.truncation if request.truncation is not None else self.default_truncation)
        return size, fps, truncation


def _model_dir(model: str) -> Path:
    return model_dir(model, BUILTIN_MODELS, marker=CONFIG_FILE, what="video model",
                     fix="pass a directory written by aigc.train.train_sprite_video")


def load_sprite_video(model: str, options: LoadOptions) -> SpriteVideoModel:
    """Load a sprite-video model directory (or the built-in ``"default"``) onto ``options.device``.

    Example:
        >>> m = load_sprite_video("default", LoadOptions(device=torch.device("cpu"), dtype=torch.float32))
        >>> m.cfg.frames
        16
    """
    loaded = sprites.load(_model_dir(model), device=options.device, dtype=options.dtype)
    return SpriteVideoModel(loaded.net, loaded.classes, loaded.directions, float(loaded.defaults["fps"]),
                            float(loaded.defaults["truncation"]), loaded.weights)


class SpriteVideoGenerator(UpscalingGenerator[VideoRequest, VideoResult]):
    """Clips of a sprite moving across a canvas; ``aigc.load("video", "default", backend="sprites")``.

    The prompt names what moves and the direction ("a 3 moving left", "the number seven moving up",
    "digit 0 falling"); a prompt without exactly one of each raises :class:`~aigc.errors.InvalidRequest`
    listing the options. Request fields: ``num_frames`` (the model's clip length, 16 for the shipped model),
    ``fps`` (default 8), ``width``/``height`` (whole multiples of the model's 32, upscaled) and ``truncation``
    (scales z ~ N(0, I): below 1 gives more typical, tidier sprites; default 0.8). Load options: ``upscale``
    (``"bicubic"`` or ``"nearest"``) and ``max_batch_size`` (clips per network call, default 16).

    Example:
        >>> gen = aigc.load("video", "default", backend="sprites")  # doctest: +SKIP
        >>> res = gen.generate("a 3 moving left", seed=0, num_outputs=2, width=128, height=128)  # doctest: +SKIP
        >>> res.save("threes.mp4")  # doctest: +SKIP
    """

    modality = "video"
    backend_name = "sprites"
    request_type = VideoRequest
    supported_params = frozenset({"num_frames", "fps", "width", "height", "truncation"})
    options_type = SpriteOptions
    builtin_models = frozenset(BUILTIN_MODELS)

    def __init__(self, *, sprite: SpriteVideoModel, model_id: str, options: LoadOptions) -> None:
        super().__init__(model_id=model_id, options=options, weights=sprite.weights)
        self.sprite: SpriteVideoModel | None = sprite

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        return sprites.detect(path)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> SpriteVideoGenerator:
        cls.check_load(options)
        return cls(sprite=load_sprite_video(model, options), model_id=model, options=options)

    # -- Generator hooks -------------------------------------------------------------------------
    def _model(self) -> SpriteVideoModel:
        if self.sprite is None:  # pragma: no cover - the base class refuses a closed generator first
            raise InvalidRequest("generator", "closed", "this generator was closed", "load the model again")
        return self.sprite

    def _modules(self) -> list[torch.nn.Module]:
        return [self._model().net]

    def _to(self, device: torch.device) -> None:
        self._model().net.to(device)

    def _close(self) -> None:
        self.sprite = None

    # -- the stages ------------------------------------------------------------------------------
    def _generate(self, request: VideoRequest, seeds: list[int], events: EventEmitter) -> VideoResult:
        # 1. Validate everything before any tensor work.
        sprite = self._model()
        class_ids, direction_ids = sprite.parse(request)
        size, fps, truncation = sprite.plan(request)
        n = request.samples_per_prompt
        c = torch.tensor([cid for cid in class_ids for _ in range(n)], device=self.device)  # (B,) prompt-major
        d = torch.tensor([did for did in direction_ids for _ in range(n)], device=self.device)  # (B,)

        # 2. z ~ N(0, I) per sample from its own seed (CPU, then moved), scaled by the truncation.
        z = randn((sprite.cfg.latent_dim,), seeds, device=self.device) * truncation  # (B, latent_dim)

        # 3. All T frames of ``chunk`` clips per call (1 with deterministic=True: a clip never sees its batch).
        videos: list[np.ndarray[Any, Any]] = []
        with torch.inference_mode():
            for sl in self._chunks(len(seeds), events, size=self._chunk_size(request)):
                clips = sprite.net.decode(z[sl].to(self.dtype), c[sl], d[sl]).float()  # (b, T, C, H, W)
                # 4. Pixels: 8-bit RGB frames (T, H', W', 3), upscaled.
                for clip in clips:
                    videos.append(np.stack([np.asarray(im) for im in to_images(clip, size, self.upscale)]))
        return VideoResult(videos=videos, seeds=seeds, fps=fps)
