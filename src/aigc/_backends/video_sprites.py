"""Video backend ``sprites``: aigc's own clip VAE of a sprite moving across a canvas -- the embedded default.

The prompt says what moves and where it goes ("a 3 moving left", "digit seven moving up"); the model
(:class:`aigc.models.sprite_video.SpriteVideoVAE`) draws every frame of a clip from one latent z, the content
class, the direction and the frame index. A model directory is what ``scripts/train_video_default.py`` exports::

    model-dir/
        config.json         {"format": "aigc.sprite_video", "version": 1,
                             "config": {...SpriteVideoConfig fields...},
                             "classes": [{"id": 3, "name": "digit 3", "phrases": ["3", "three", ...]}, ...],
                             "directions": [{"id": 0, "name": "left", "phrases": ["moving left", ...]}, ...],
                             "defaults": {"fps": 8.0, "truncation": 0.8}}
        model.safetensors   the VAE's weights, float32 or float16

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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc._backends.image_diffusion import ClassTable, to_images, upscaled_size
from aigc._backends.image_latent import check_load_options
from aigc._generator import Generator, LoadOptions
from aigc._results import VideoResult
from aigc._runtime.assets import model_dir, read_json_object
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import VideoRequest
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound
from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
from aigc.sampling import randn

__all__ = ["DIRECTION_PHRASES", "FORMAT", "SpriteVideoGenerator", "SpriteVideoModel", "load_sprite_video",
           "read_format", "save_sprite_video"]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMAT = "aigc.sprite_video"
BUILTIN_MODELS = {"default": "video_default"}  # built-in name -> folder under aigc/assets
#: direction name -> the phrases that name it, in id order (0 left, 1 right, 2 up, 3 down; y grows downwards)
DIRECTION_PHRASES = {
    "left": ["moving left", "left", "leftward", "leftwards", "to the left", "going left", "goes left", "moves left",
             "walking left", "right to left", "westward", "west"],
    "right": ["moving right", "right", "rightward", "rightwards", "to the right", "going right", "goes right",
              "moves right", "walking right", "left to right", "eastward", "east"],
    "up": ["moving up", "up", "upward", "upwards", "going up", "goes up", "moves up", "rising", "climbing",
           "northward", "north", "bottom to top"],
    "down": ["moving down", "down", "downward", "downwards", "going down", "goes down", "moves down", "falling",
             "sinking", "southward", "south", "top to bottom"],
}


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
        class_ids, direction_ids = [], []
        for i, prompt in enumerate(request.prompts()):
            field = "prompt" if isinstance(request.prompt, str) else f"prompt[{i}]"
            cid = self.classes.match(prompt)
            if cid is None:
                raise InvalidRequest(field, prompt, f"names none of the {len(self.classes.names)} things this model "
                                     "draws moving (or more than one)",
                                     f"name one of: {self.classes.listing()}, e.g. 'a 3 moving left'")
            did = self.directions.match(prompt)
            if did is None:
                raise InvalidRequest(field, prompt, "names no direction of motion this model knows (or more than one)",
                                     f"add one of: {self.directions.listing()}, e.g. 'a 3 moving left'")
            class_ids.append(cid)
            direction_ids.append(did)
        return class_ids, direction_ids

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


def read_format(path: Path) -> bool:
    """Whether ``path/config.json`` is an ``aigc.sprite_video`` config."""
    data = read_json_object(path / CONFIG_FILE)
    return data is not None and data.get("format") == FORMAT


def save_sprite_video(path: str | os.PathLike[str], net: SpriteVideoVAE, *, classes: list[dict[str, Any]],
                      directions: list[dict[str, Any]] | None = None, defaults: dict[str, Any] | None = None,
                      dtype: torch.dtype = torch.float16) -> Path:
    """Write ``net`` as a model directory this backend loads: ``config.json`` + ``model.safetensors``.

    Args:
        path: the directory (created when missing).
        net: the trained (or random) network.
        classes: ``[{"id": 0, "name": "digit 0", "phrases": [...]}, ...]``, one per class of ``net``.
        directions: as ``classes``, one per direction; default :data:`DIRECTION_PHRASES` (4 directions).
        defaults: request defaults (``fps``, ``truncation``).
        dtype: dtype of the stored weights (float16 halves the file).

    Example:
        >>> save_sprite_video(tmp / "m", net, classes=[{"id": 0, "name": "digit 0"}])  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if directions is None:
        directions = [{"id": i, "name": k, "phrases": v} for i, (k, v) in enumerate(DIRECTION_PHRASES.items())]
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    config = {"format": FORMAT, "version": 1, "config": net.cfg.to_dict(), "classes": classes,
              "directions": directions, "defaults": dict(defaults or {})}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def _model_dir(model: str) -> Path:
    return model_dir(model, BUILTIN_MODELS, marker=CONFIG_FILE, what="video model",
                     fix="pass a directory written by scripts/train_video_default.py")


def load_sprite_video(model: str, options: LoadOptions) -> SpriteVideoModel:
    """Load a sprite-video model directory (or the built-in ``"default"``) onto ``options.device``.

    Example:
        >>> m = load_sprite_video("default", LoadOptions(device=torch.device("cpu"), dtype=torch.float32))
        >>> m.cfg.frames
        16
    """
    from safetensors.torch import load_file

    path = _model_dir(model)
    if not read_format(path):
        raise ModelNotFound(f"{path} is not an aigc sprite-video model (no {CONFIG_FILE} with format {FORMAT!r}). "
                            "Fix: pass a directory written by scripts/train_video_default.py, or another backend=")
    weight_files(path, allow_pickle=False)  # refuses pickle-only folders with UnsafeModelFile
    if not (path / WEIGHTS_FILE).is_file():
        raise ModelNotFound(f"{path} has no {WEIGHTS_FILE}. Fix: export the model again")
    data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    try:
        cfg = SpriteVideoConfig.from_dict(data["config"])
        classes = ClassTable.from_json({"classes": data["classes"]})
        directions = ClassTable.from_json({"classes": data["directions"]})
        defaults = dict(data.get("defaults", {}))
        fps, truncation = float(defaults.get("fps", 8.0)), float(defaults.get("truncation", 1.0))
    except (KeyError, TypeError, ValueError, InvalidRequest) as e:
        raise ModelNotFound(f"{path / CONFIG_FILE} is not a valid sprite-video config: {e}. Fix: export it again"
                            ) from None
    if sorted(classes.names) != list(range(cfg.num_classes)) or \
            sorted(directions.names) != list(range(cfg.num_directions)):
        raise ModelNotFound(f"{path}: the network has {cfg.num_classes} classes and {cfg.num_directions} directions, "
                            f"{CONFIG_FILE} names {len(classes.names)} and {len(directions.names)}. "
                            "Fix: export the model and its config together")
    net = SpriteVideoVAE(cfg)
    state = load_file(path / WEIGHTS_FILE)
    try:
        net.load_state_dict({k: v.to(options.dtype) if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise ModelNotFound(f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: {str(e).splitlines()[0]}. "
                            "Fix: export the weights and config together") from None
    net.to(device=options.device, dtype=options.dtype).eval().requires_grad_(False)
    return SpriteVideoModel(net, classes, directions, fps, truncation, fingerprint_files([path / WEIGHTS_FILE]))


class SpriteVideoGenerator(Generator[VideoRequest, VideoResult]):
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
    load_options = frozenset({"upscale", "max_batch_size"})
    builtin_models = frozenset(BUILTIN_MODELS)

    def __init__(self, *, sprite: SpriteVideoModel, model_id: str, options: LoadOptions) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, weights=sprite.weights,
                         options=options.extra)  # recorded: upscale changes the pixels
        self.sprite: SpriteVideoModel | None = sprite
        self.upscale = str(options.extra.get("upscale", "bicubic"))
        self.max_batch_size = int(options.extra.get("max_batch_size", 16))

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: Path) -> bool:
        return read_format(path)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> SpriteVideoGenerator:
        check_load_options(options, "sprites")
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
        chunk = 1 if request.deterministic else self.max_batch_size
        total = -(-len(seeds) // chunk)
        events.emit("start", total=total)
        videos: list[np.ndarray[Any, Any]] = []
        with torch.inference_mode():
            for i, start in enumerate(range(0, len(seeds), chunk)):
                if events.cancelled:
                    raise GenerationCancelled(f"cancelled after {i} of {total} batches. Fix: run generate() again")
                sl = slice(start, start + chunk)
                clips = sprite.net.decode(z[sl].to(self.dtype), c[sl], d[sl]).float()  # (b, T, C, H, W)
                # 4. Pixels: 8-bit RGB frames (T, H', W', 3), upscaled.
                for clip in clips:
                    videos.append(np.stack([np.asarray(im) for im in to_images(clip, size, self.upscale)]))
                events.emit("step", step=i + 1, total=total, advance=1)
        events.emit("end", step=total, total=total)
        return VideoResult(videos=videos, seeds=seeds, fps=fps)
