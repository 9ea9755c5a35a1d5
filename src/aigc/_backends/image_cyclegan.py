"""Backend ``cyclegan`` (image and video): unpaired image-to-image translation with aigc's own CycleGAN.

A model directory is what :func:`aigc.train.train_cyclegan` exports, in the format :mod:`aigc.formats.cyclegan`
owns: two generators (A -> B and B -> A) and the names of the two domains. The built-in name ``"default"`` is the
model shipped in the package (``aigc/assets/cyclegan_default``): Fashion-MNIST sandals (A) <-> ankle boots (B),
32x32 grey.

The prompt says where to go: ``"a2b"``, ``"b2a"``, or a phrase naming the *target* domain (``"an ankle boot"``
translates a sandal into a boot; the phrases are in the model's ``config.json``). The input is not checked to
belong to the source domain.

Stages of one ``generate``:
    1. map every prompt to a direction, check the output size -- before anything is read;
    2. read the input (``init_image`` for images; ``init_video`` for video: a file, a frame folder, a uint8 array
       or a list of PIL images), convert it to the model's channels (grey or RGB) and resize each image or
       frame to the model's square size (bicubic) -- a non-square input is refused, not cropped;
    3. run the generator of each direction: per image (instance normalisation per image), or for a video with
       the load option ``temporal=True`` (the default) over the whole clip at once with one set of
       normalisation statistics per channel for all its frames, so the frames are translated alike and do not
       flicker; ``temporal=False`` translates each frame as the image backend would;
    4. turn [-1, 1] outputs into 8-bit RGB images, upscaled by whole factors to ``width`` x ``height`` (default:
       the model's size).

The translation is deterministic: seeds are recorded like every backend's, but every sample of a prompt is the
same image, and sample *i* of a batch equals a single run. Replay works from the record when the input was given
as a file path (a record cannot hold an image passed in memory).

Example:
    >>> res = aigc.generate("image", "an ankle boot", backend="cyclegan", init_image="sandal.png")  # doctest: +SKIP
    >>> res.save("boot.png")  # doctest: +SKIP
    >>> aigc.generate("video", "a2b", backend="cyclegan", init_video="sandals.gif").save("boots.gif")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from aigc._backends._pixels import UpscaleOptions, UpscalingGenerator, open_image, to_images, upscaled_size
from aigc._generator import LoadOptions, ReqT, ResT
from aigc._options import BackendOptions
from aigc._results import ImageResult, VideoResult
from aigc._runtime.assets import model_dir
from aigc._types import ImageRequest, Request, VideoRequest
from aigc.errors import InvalidRequest
from aigc.formats import cyclegan as cyclegan_format
from aigc.limits import exceeded

if TYPE_CHECKING:
    from PIL import Image

    from aigc._runtime.events import EventEmitter
    from aigc.formats.cyclegan import CycleGANFile
    from aigc.models.cyclegan import Direction

__all__ = ["CycleGANImageGenerator", "CycleGANOptions", "CycleGANVideoGenerator"]

_BUILTIN = {"default": "cyclegan_default"}
_DIRECTIONS: tuple[Direction, ...] = ("a2b", "b2a")
DEFAULT_FPS = 12.0


@dataclass(frozen=True, kw_only=True)
class CycleGANOptions(UpscaleOptions):
    """Load options of the ``cyclegan`` backends.

    Attributes:
        temporal: video only: normalise all frames of a clip with the same statistics (one mean and variance per
            channel over the clip), so they are translated alike; ``False`` translates each frame on its own,
            exactly as the image backend translates that frame. Recorded, since it changes the pixels.
        upscale, max_batch_size: as :class:`~aigc._backends._pixels.UpscaleOptions` (with ``temporal`` a clip is
            one network call whatever ``max_batch_size`` says).
    """

    temporal: bool = True

    def check(self) -> None:
        super().check()
        if not isinstance(self.temporal, bool):
            raise InvalidRequest("temporal", self.temporal, "must be True or False",
                                 "pass temporal=True (shared statistics across frames) or False (frame by frame)")


class _CycleGANGenerator(UpscalingGenerator[ReqT, ResT]):
    """What the image and the video ``cyclegan`` backends share: the loaded model, directions, inputs, the network."""

    backend_name = "cyclegan"
    builtin_models = frozenset(_BUILTIN)
    options_type: ClassVar[type[BackendOptions] | None] = CycleGANOptions

    def __init__(self, *, loaded: CycleGANFile, model_id: str, options: LoadOptions) -> None:
        super().__init__(model_id=model_id, options=options, weights=loaded.weights)
        self.cyclegan = loaded
        opts = CycleGANOptions.of(options)
        self.temporal = opts.temporal

    @classmethod
    def detect(cls, path: Path) -> bool:
        return cyclegan_format.detect(path)

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> Any:
        cls.check_load(options)
        folder = model_dir(model, _BUILTIN, marker="config.json", what="CycleGAN model",
                           fix="pass a directory written by aigc.train.train_cyclegan, or model='default'")
        loaded = cyclegan_format.load(folder, device=options.device, dtype=options.dtype)
        return cls(loaded=loaded, model_id=model, options=options)

    def _modules(self) -> list[torch.nn.Module]:
        return [self.cyclegan.net]

    def _to(self, device: torch.device) -> None:
        self.cyclegan.net.to(device)

    def _close(self) -> None:
        del self.cyclegan

    # 1. directions
    def _directions(self, request: Request) -> list[Direction]:
        """One direction per prompt, or InvalidRequest naming the domains and their phrases."""
        a, b = self.cyclegan.domains
        out: list[Direction] = []
        for prompt in request.prompts():
            key = prompt.strip().lower() if isinstance(prompt, str) else ""
            found = next((d for d in _DIRECTIONS if d == key), None) or (
                self.cyclegan.direction_to(prompt) if isinstance(prompt, str) else None)
            if found is None:
                raise InvalidRequest("prompt", prompt, f"names neither domain of this CycleGAN ({a.name!r} = A, "
                                     f"{b.name!r} = B)", f"pass 'a2b', 'b2a', or the target domain: one of "
                                     f"{list(b.phrases[:3])} (to B) or {list(a.phrases[:3])} (to A)")
            out.append(found)
        return out

    # 2. inputs
    def _pixels(self, field: str, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> (N, C, R, R) in [-1, 1] on the model's device: the model's channels, resized to R x R."""
        from PIL import Image as PILImage

        res, channels = self.cyclegan.resolution, self.cyclegan.channels
        mode = "L" if channels == 1 else "RGB"
        arrays = []
        for i, img in enumerate(images):
            if img.width != img.height:
                where = field if len(images) == 1 else f"{field}[{i}]"
                raise InvalidRequest(where, f"{img.width}x{img.height}", "the model translates square images",
                                     f"crop it to a square first (the model's size is {res}x{res}; other square "
                                     "sizes are resized to it)")
            img = img.convert(mode)
            if img.size != (res, res):
                img = img.resize((res, res), resample=PILImage.Resampling.BICUBIC)
            arrays.append(np.asarray(img, dtype=np.uint8).reshape(res, res, channels))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, C, R, R)
        return x.to(self.device, self.dtype)

    # 3. the network
    def _translate(self, x: torch.Tensor, direction: Direction, *, shared: bool, chunk: int) -> torch.Tensor:
        """(N, C, R, R) -> translated (N, C, R, R) float32 on the CPU; ``shared`` runs all N in one call."""
        net = self.cyclegan.net
        with torch.inference_mode():
            if shared:
                return net.translate(x, direction, shared_stats=True).float().cpu()
            return torch.cat([net.translate(x[i:i + chunk], direction).float().cpu()
                              for i in range(0, x.shape[0], chunk)])


    def _each_direction(self, x: torch.Tensor, directions: list[Direction], events: EventEmitter, *, shared: bool,
                        chunk: int, unit: str) -> dict[Direction, torch.Tensor]:
        """``x`` translated once per distinct direction (one progress step each), by direction."""
        distinct = list(dict.fromkeys(directions))
        done: dict[Direction, torch.Tensor] = {}
        for part in self._chunks(len(distinct), events, size=1, unit=unit):
            d = distinct[part.start]
            done[d] = self._translate(x, d, shared=shared, chunk=chunk)
        return done


class CycleGANImageGenerator(_CycleGANGenerator[ImageRequest, ImageResult]):
    """Image-to-image translation by a CycleGAN trained with :func:`aigc.train.train_cyclegan`;
    ``backend="cyclegan"``.

    Request fields: ``prompt`` (``"a2b"``, ``"b2a"`` or the target domain's name), ``init_image`` (required; a
    square PIL image or image file, resized to the model's size when it is another), ``width``/``height``
    (whole multiples of the model's size). Load options: ``upscale``, ``max_batch_size``.

    Example:
        >>> gen = aigc.load("image", "default", backend="cyclegan")  # doctest: +SKIP
        >>> gen.generate("an ankle boot", init_image="sandal.png", width=128).images[0]  # doctest: +SKIP
    """

    modality = "image"
    request_type = ImageRequest
    supported_params = frozenset({"init_image", "width", "height"})

    def _generate(self, request: ImageRequest, seeds: list[int], events: EventEmitter) -> ImageResult:
        # 1. Directions and size, before anything is read.
        directions = self._directions(request)
        size = upscaled_size(request, self.cyclegan.resolution)
        if request.init_image is None:
            raise InvalidRequest("init_image", None, "the cyclegan backend translates an image",
                                 "pass init_image= a PIL image or an image file")
        # 2. The input.
        x = self._pixels("init_image", [open_image("init_image", request.init_image, "RGB")])  # (1, C, R, R)
        # 3. One translation per distinct direction (deterministic: every sample of a prompt is the same image).
        done = self._each_direction(x, directions, events, shared=False, chunk=1, unit="batches")
        n = request.samples_per_prompt
        out = torch.cat([done[d] for d in directions for _ in range(n)])  # (P * n, C, R, R)
        # 4. Pixels.
        return ImageResult(images=to_images(out, size, self.upscale), seeds=seeds)


def _frames(value: Any) -> tuple[list[Image.Image], float | None]:
    """``init_video`` as PIL frames, and the clip's frame rate when a file says it."""
    from PIL import Image as PILImage

    from aigc._media.video import load_video

    if isinstance(value, (str, os.PathLike)):
        try:
            frames, fps = load_video(value)
        except (OSError, ValueError) as e:  # InvalidRequest (a suffix load_video cannot read) is a ValueError
            raise InvalidRequest("init_video", os.fspath(value), f"cannot read the clip: {e}",
                                 "pass an .mp4, .gif or .webp file, or a folder of frames") from None
        return [PILImage.fromarray(f) for f in frames], float(fps)
    if isinstance(value, np.ndarray):
        return [PILImage.fromarray(f) for f in value], None
    return list(value), None


class CycleGANVideoGenerator(_CycleGANGenerator[VideoRequest, VideoResult]):
    """Video-to-video translation by a CycleGAN, frame by frame; ``aigc.load("video", model, backend="cyclegan")``.

    Request fields: ``prompt`` (as the image backend), ``init_video`` (required; see
    :class:`~aigc.VideoRequest`), ``fps`` (default: the input file's, else 12), ``width``/``height``. Load
    options: ``temporal`` (default True: one set of normalisation statistics for the whole clip), ``upscale``,
    ``max_batch_size`` (frames per network call when ``temporal=False``).

    Example:
        >>> gen = aigc.load("video", "default", backend="cyclegan", temporal=True)  # doctest: +SKIP
        >>> gen.generate("an ankle boot", init_video="sandals.gif").save("boots.gif")  # doctest: +SKIP
    """

    modality = "video"
    request_type = VideoRequest
    supported_params = frozenset({"init_video", "fps", "width", "height"})

    def _generate(self, request: VideoRequest, seeds: list[int], events: EventEmitter) -> VideoResult:
        # 1. Directions and size, before anything is read.
        directions = self._directions(request)
        size = upscaled_size(request, self.cyclegan.resolution, "frames")
        if request.init_video is None:
            raise InvalidRequest("init_video", None, "the cyclegan video backend translates a clip",
                                 "pass init_video= a video file, a frame folder or a list of frames")
        # 2. The clip.
        images, file_fps = _frames(request.init_video)
        exceeded("init_video", f"<{len(images)} frames>", len(images), "max_frames", "frames per clip")
        x = self._pixels("init_video", images)  # (T, C, R, R)
        fps = float(request.fps or file_fps or DEFAULT_FPS)
        # 3. One translated clip per distinct direction.
        done = self._each_direction(x, directions, events, shared=self.temporal, chunk=self._chunk_size(request),
                                    unit="clips")
        # 4. Frames.
        clips = {d: np.stack([np.asarray(im) for im in to_images(t, size, self.upscale)]) for d, t in done.items()}
        n = request.samples_per_prompt
        return VideoResult(videos=[clips[d].copy() for d in directions for _ in range(n)], seeds=seeds, fps=fps)
