"""What the ``gan``, ``vae`` and ``walk`` backends share: a loaded GAN or VAE (:class:`LatentModel`, read through
:mod:`aigc.formats.latent`) with the sampling steps they all use, and their generator base with the load options
``upscale`` and ``max_batch_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc._backends._pixels import UpscalingGenerator, upscaled_size
from aigc._generator import LoadOptions, ReqT, ResT
from aigc._runtime.assets import model_dir
from aigc._types import ImageRequest, Request
from aigc.formats import latent as latent_format
from aigc.formats.classes import ClassTable
from aigc.sampling import randn

__all__ = ["BUILTIN_MODELS", "LatentGenerator", "LatentModel", "load_latent_model",
           "read_format"]

CONFIG_FILE = "config.json"
BUILTIN_MODELS = {"gan": {"default": "image_gan"}, "vae": {"default": "image_vae"}}


@dataclass
class LatentModel:
    """A loaded GAN generator or VAE with what a backend needs to sample it.

    Attributes:
        kind: ``"gan"`` or ``"vae"``.
        net: the ``StyleGANGenerator`` or ``ConvVAE``, on its device, in eval mode.
        table: the classes and their prompt phrases (``None`` for an unconditional model).
        default_truncation: from ``config.json``'s ``defaults``.
        resolution, channels, z_dim: the sample geometry.
        weights: the fingerprint of the weight file (for provenance).
    """

    kind: str
    net: Any
    table: ClassTable | None
    default_truncation: float
    resolution: int
    channels: int
    z_dim: int
    weights: str

    @property
    def num_ws(self) -> int:
        return int(self.net.cfg.num_ws) if self.kind == "gan" else 0

    def classes(self, request: Request) -> list[int | None]:
        """One class id per prompt (``None`` for an unconditional model), or InvalidRequest naming the classes."""
        if self.table is None:
            return [None] * len(request.prompts())
        return list(self.table.prompt_ids(request.prompts(), single=isinstance(request.prompt, str),
                                          warn_ignored=True))

    def draw(self, seeds: list[int], device: torch.device) -> torch.Tensor:
        """z (B, z_dim): row i is the first ``z_dim`` normals of ``seeds[i]``'s own CPU generator."""
        return randn((self.z_dim,), seeds, device=device)

    def render_z(self, z: torch.Tensor, labels: torch.Tensor | None, truncation: float,
                 mix_z: torch.Tensor | None = None, mix_layer: int | None = None) -> torch.Tensor:
        """Images (B, C, R, R) in about [-1, 1] from latents z (GAN or VAE)."""
        if self.kind == "vae":
            return self.net.decode(z * truncation, labels)  # type: ignore[no-any-return]
        ws = self.net.map(z, labels, truncation=truncation)
        if mix_z is not None:
            ws = torch.cat([ws[:, :mix_layer], self.net.map(mix_z, labels, truncation=truncation)[:, mix_layer:]], 1)
        return self.render_ws(ws)

    def render_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """A GAN's images from ws (B, num_ws, w_dim), with the model's fixed noise maps."""
        return self.net.synthesis(ws)  # type: ignore[no-any-return]

    def check_size(self, request: ImageRequest | Any) -> tuple[int, int]:
        """Output (width, height): whole multiples of the model's resolution (upscaled)."""
        return upscaled_size(request, self.resolution)


def _model_dir(model: str, kind: str) -> Path:
    return model_dir(model, BUILTIN_MODELS[kind], marker=CONFIG_FILE, what=f"{kind} model",
                     fix=f"pass a directory written by aigc.train.train_{kind}")


def read_format(path: Path) -> str | None:
    """``"gan"`` or ``"vae"`` when ``path`` is one of aigc's latent-model folders, else ``None``."""
    return latent_format.detect(path)


def load_latent_model(model: str, kind: str, options: LoadOptions) -> LatentModel:
    """Load a ``gan`` or ``vae`` model directory (or the built-in ``"default"``) onto ``options.device``."""
    loaded = latent_format.load(_model_dir(model, kind), "gan" if kind == "gan" else "vae", device=options.device,
                                dtype=options.dtype)
    truncation = float(loaded.defaults.get("truncation", 1.0))
    return LatentModel(loaded.kind, loaded.net, loaded.table, truncation, loaded.resolution, loaded.channels,
                       loaded.z_dim, loaded.weights)


class LatentGenerator(UpscalingGenerator[ReqT, ResT]):
    """What the ``gan``, ``vae`` and ``walk`` backends share: a loaded :class:`LatentModel` and the load options
    ``upscale`` and ``max_batch_size``."""

    def __init__(self, *, latent: LatentModel, model_id: str, options: LoadOptions) -> None:
        super().__init__(model_id=model_id, options=options, weights=latent.weights)
        self.latent = latent

    def _modules(self) -> list[torch.nn.Module]:
        return [self.latent.net]

    def _to(self, device: torch.device) -> None:
        self.latent.net.to(device)

    def _close(self) -> None:
        self.latent.net = None
