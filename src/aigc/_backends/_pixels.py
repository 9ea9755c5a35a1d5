"""What the image and video backends share about pixels: output sizes reached by whole-factor upscaling, network
outputs in [-1, 1] turned into 8-bit RGB images, and a request's input images opened (:func:`open_image`).

Used by the ``diffusion``, ``gan``, ``vae``, ``sprites``, ``walk`` and ``cyclegan`` backends (and ``open_image`` by
the diffusers backends).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from aigc._generator import Generator, LoadOptions, ReqT, ResT
from aigc._options import BackendOptions, BatchOptions
from aigc.errors import InvalidRequest
from aigc.limits import check_pixels

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["UPSCALE_FILTERS", "UpscaleOptions", "UpscalingGenerator", "open_image", "to_images", "upscaled_size"]

#: The filters the load option ``upscale`` takes.
UPSCALE_FILTERS = ("bicubic", "nearest")


@dataclass(frozen=True, kw_only=True)
class UpscaleOptions(BatchOptions):
    """Load options of the backends that draw a fixed size and upscale (``diffusion``, ``gan``, ``vae``, ``walk``,
    ``sprites``).

    Attributes:
        upscale: the resampling filter, ``"bicubic"`` (smooth) or ``"nearest"`` (hard pixels); recorded, since it
            changes the pixels.
        max_batch_size: samples per network call.
    """

    upscale: str = "bicubic"

    def check(self) -> None:
        super().check()
        if self.upscale not in UPSCALE_FILTERS:
            raise InvalidRequest("upscale", self.upscale, "unknown upscaling filter",
                                 f"use one of: {', '.join(UPSCALE_FILTERS)}")


class UpscalingGenerator(Generator[ReqT, ResT]):
    """Base of aigc's own small-model backends (``diffusion``, ``gan``, ``vae``, ``walk``, ``sprites``): one device,
    options of type :class:`UpscaleOptions` (or a subclass), ``self.upscale`` and ``self.max_batch_size``."""

    options_type: ClassVar[type[BackendOptions] | None] = UpscaleOptions

    def __init__(self, *, model_id: str, options: LoadOptions, weights: str | None) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, weights=weights,
                         options=options.extra)  # recorded: upscale changes the pixels
        opts = self.upscale_options(options)
        self.upscale, self.max_batch_size = opts.upscale, opts.max_batch_size

    @classmethod
    def upscale_options(cls, options: LoadOptions) -> UpscaleOptions:
        """The typed options; with :meth:`check_load` before anything loads."""
        kind = cls.options_type if cls.options_type is not None else UpscaleOptions
        typed = kind.of(options)
        assert isinstance(typed, UpscaleOptions)
        return typed

    @classmethod
    def check_load(cls, options: LoadOptions) -> None:
        """Before anything loads: one device (no offload), and the typed options hold."""
        if options.offload != "none":
            raise InvalidRequest("offload", options.offload, f"the {cls.backend_name} backend keeps its small model "
                                 "on one device", "pass offload='none'")
        cls.upscale_options(options)


def upscaled_size(request: Any, size: int, what: str = "images") -> tuple[int, int]:
    """Output (width, height) of a model that draws ``size`` x ``size`` ``what`` and upscales by whole factors:
    the request's, one side standing in for a missing other, else ``size``.

    Raises:
        InvalidRequest: a side that is not a multiple of ``size``.
    """
    width = request.width or request.height or size
    height = request.height or request.width or size
    for field, value in (("width", width), ("height", height)):
        if value % size:
            # name the side the user set: with only height=33, width=33 is derived from it
            named = field if getattr(request, field) else ("height" if field == "width" else "width")
            raise InvalidRequest(named, value, f"the model draws {size}x{size} {what} and upscales by whole "
                                 "factors", f"pass a multiple of {size} (e.g. {size * 4})")
    check_pixels(width, height, field="width" if request.width else "height")
    return width, height


def to_images(x: torch.Tensor, size: tuple[int, int], upscale: str) -> list[Image.Image]:
    """(B, C, H, W) in [-1, 1], C = 1 or 3 -> RGB PIL images, resized to ``size`` (width, height) with the
    ``"bicubic"`` or ``"nearest"`` filter."""
    from PIL import Image

    pixels = ((x.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, C, H, W)
    resample = Image.Resampling.NEAREST if upscale == "nearest" else Image.Resampling.BICUBIC
    images = []
    for p in pixels.numpy():
        img = Image.fromarray(p[0]) if p.shape[0] == 1 else Image.fromarray(p.transpose(1, 2, 0)[..., :3])
        if img.size != size:
            img = img.resize(size, resample=resample)
        images.append(img.convert("RGB"))
    return images


def open_image(name: str, value: Any, mode: str) -> Any:
    """A request's image (``init_image``, ``mask``): a PIL image or a path, converted to ``mode``."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert(mode)
    if isinstance(value, (str, os.PathLike)):
        try:
            with Image.open(value) as img:
                return img.convert(mode)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise InvalidRequest(name, str(value), f"cannot read the image: {e}", "pass a PNG/JPEG path or a "
                                 "PIL image") from None
    raise InvalidRequest(name, type(value).__name__, "must be a PIL image or a file path", "pass Image.open(...)")
