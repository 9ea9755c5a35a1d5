"""A convolutional variational autoencoder (Kingma & Welling 2014), optionally class-conditional (Sohn et al. 2015).

Shapes, for ``resolution=32``, ``widths=(32, 64, 128)``, ``latent_dim=32``, batch B::

    encoder: img (B, C, 32, 32) -- conv s2 --> (B, 32, 16, 16) -- conv s2 --> (B, 64, 8, 8)
             -- conv s2 --> (B, 128, 4, 4) -- flatten [+ class embedding] --> mu, logvar (B, 32) each
    sample:  z = mu + exp(logvar / 2) * eps,  eps ~ N(0, I)            (the reparameterisation trick)
    decoder: z [+ class embedding] -- linear --> (B, 128, 4, 4) -- up x2, conv --> (B, 64, 8, 8)
             -- up x2, conv --> (B, 32, 16, 16) -- up x2, conv --> (B, 32, 32, 32) -- conv --> logits (B, C, 32, 32)

Pixels are modelled as Bernoulli-like targets in [0, 1] (binary cross-entropy on the logits), which suits the
mostly black-and-white images it is meant for; :meth:`ConvVAE.decode` returns images in [-1, 1] like the
other image models. Sampling draws z ~ N(0, I); ``truncation`` scales z (a temperature below 1 gives more
typical images; 0 gives the decoder's image of the prior's mean for every seed).

Example:
    >>> vae = ConvVAE(VAEConfig(resolution=16, widths=(8, 16), latent_dim=4, num_classes=2))
    >>> vae.decode(torch.zeros(3, 4), torch.tensor([0, 1, 1])).shape
    torch.Size([3, 1, 16, 16])
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.errors import InvalidRequest
from aigc.models._common import ConfigDict, conv_block

__all__ = ["ConvVAE", "VAEConfig"]


@dataclass(frozen=True, kw_only=True)
class VAEConfig(ConfigDict):
    """Hyper-parameters of a :class:`ConvVAE`.

    Attributes:
        resolution: image size, a power of two, at least ``2 ** len(widths) * 2``.
        channels: image channels.
        widths: encoder feature maps after each stride-2 stage (the decoder mirrors them).
        latent_dim: size of z.
        num_classes: 0 for an unconditional model.
        class_dim: size of the class embedding given to the encoder and the decoder.

    Example:
        >>> VAEConfig(resolution=32, widths=(32, 64, 128)).bottom
        4
    """

    resolution: int = 32
    channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    latent_dim: int = 32
    num_classes: int = 0
    class_dim: int = 16

    def __post_init__(self) -> None:
        res = self.resolution
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in self.widths):
            raise InvalidRequest("config.widths", self.widths, "must be one or more positive ints",
                                 "pass e.g. widths=(32, 64, 128)")
        if not isinstance(res, int) or res & (res - 1) or res < 2 ** (len(self.widths) + 1):
            least = 2 ** (len(self.widths) + 1)
            raise InvalidRequest("config.resolution", res,
                                 f"must be a power of two >= {least} for {len(self.widths)} stages",
                                 "use e.g. resolution=32 with three widths")
        for name in ("channels", "latent_dim", "class_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"config.{name}", value, "must be a positive int", f"pass {name}=1 or more")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise InvalidRequest("config.num_classes", self.num_classes, "must be an int >= 0",
                                 "pass 0 for an unconditional model")

    @property
    def bottom(self) -> int:
        """Spatial size at the bottleneck."""
        return int(self.resolution // 2 ** len(self.widths))


class ConvVAE(nn.Module):
    """Encoder, reparameterisation and decoder; see the module docstring for the shapes."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths, bottom = cfg.widths, cfg.bottom
        cond = cfg.class_dim if cfg.num_classes else 0
        self.embed = nn.Embedding(cfg.num_classes, cfg.class_dim) if cfg.num_classes else None
        chans = [cfg.channels, *widths]
        self.encoder = nn.Sequential(*[conv_block(a, b, 2) for a, b in itertools.pairwise(chans)])
        flat = widths[-1] * bottom * bottom
        self.to_stats = nn.Linear(flat + cond, 2 * cfg.latent_dim)  # -> mu, logvar
        self.from_latent = nn.Linear(cfg.latent_dim + cond, flat)
        ups = [*reversed(widths), widths[0]]
        self.decoder = nn.ModuleList(conv_block(a, b, 1) for a, b in itertools.pairwise(ups))
        self.to_image = nn.Conv2d(widths[0], cfg.channels, 3, padding=1)

    def _cond(self, c: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.embed is None:
            return None
        if c is None:
            raise InvalidRequest("c", None, "this model is class-conditional", "pass a class id per sample")
        return self.embed(c)  # type: ignore[no-any-return]  # (B, class_dim)

    def encode(self, img: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] (B, C, H, W) -> (mu, logvar), each (B, latent_dim)."""
        h = self.encoder(img).flatten(1)  # (B, widths[-1] * bottom^2)
        cond = self._cond(c, img.shape[0])
        if cond is not None:
            h = torch.cat([h, cond], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> pixel logits (B, C, H, W); ``sigmoid`` gives pixels in [0, 1]."""
        cond = self._cond(c, z.shape[0])
        if cond is not None:
            z = torch.cat([z, cond], dim=1)
        w, b = self.cfg.widths[-1], self.cfg.bottom
        x = self.from_latent(z).reshape(-1, w, b, b)  # (B, widths[-1], bottom, bottom)
        for block in self.decoder:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))  # doubles H and W
        return self.to_image(x)  # type: ignore[no-any-return]

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim) -> images in [-1, 1] (B, C, H, W)."""
        return torch.sigmoid(self.decode_logits(z, c)) * 2 - 1

    def loss(self, img: torch.Tensor, c: torch.Tensor | None, eps: torch.Tensor, *, beta: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The negative ELBO per image (nats), with its reconstruction and KL parts, averaged over the batch.

        ``eps`` (B, latent_dim) is the standard normal noise of the reparameterisation, drawn by the caller
        from an explicit generator. ``beta`` weighs the KL term (beta-VAE, Higgins et al. 2017).
        """
        mu, logvar = self.encode(img, c)
        z = mu + (0.5 * logvar).exp() * eps
        logits = self.decode_logits(z, c)
        target = (img + 1) / 2
        rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
        return rec + beta * kl, rec, kl

    @property
    def bits_scale(self) -> float:
        """Multiply a per-image loss in nats by this to get bits per pixel."""
        return 1 / (math.log(2) * self.cfg.channels * self.cfg.resolution ** 2)
