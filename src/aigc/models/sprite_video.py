"""A clip VAE for sprites moving on a canvas, conditioned on what moves and where it goes.

A conditional VAE (Kingma & Welling 2014; Sohn et al. 2015) whose data point is a whole clip of ``frames``
frames. The encoder sees the clip at once, its frames stacked as channels; the decoder draws one frame at a time
from the clip's latent z, the content class c, the direction d and the frame index t. Every frame of a clip shares
z, so the sprite keeps its look from frame to frame, and where it stands in frame t is the decoder's function of
(z, d, t): z carries the start position, the speed and the style, d the way it goes.

Shapes, for ``resolution=32``, ``frames=16``, ``widths=(32, 64, 128)``, ``latent_dim=32``, batch B, K frames::

    encoder: clip (B, T*C, 32, 32) -- conv s2 --> (B, 32, 16, 16) -- conv s2 --> (B, 64, 8, 8)
             -- conv s2 --> (B, 128, 4, 4) -- flatten + emb(c) + emb(d) --> mu, logvar (B, 32) each
    decoder: [z, emb(c), emb(d), emb(t)] (B*K, 32 + 3 * 16) -- MLP --> (B*K, 128, 4, 4)
             -- up x2, conv --> (B*K, 64, 8, 8) -- up x2, conv --> (B*K, 32, 16, 16)
             -- up x2, conv --> (B*K, 32, 32, 32) -- conv --> logits (B*K, C, 32, 32) -> (B, K, C, 32, 32)

Pixels are Bernoulli-like targets in [0, 1] (binary cross-entropy on the logits); :meth:`SpriteVideoVAE.decode`
returns frames in [-1, 1] like aigc's image models. Training may decode a random subset of K frames of each
clip (the loss is rescaled to the whole clip), which makes a step about T/K times cheaper.

Example:
    >>> cfg = SpriteVideoConfig(frames=4, resolution=16, widths=(8, 16), latent_dim=4, num_classes=2)
    >>> net = SpriteVideoVAE(cfg)
    >>> net.decode(torch.zeros(3, 4), torch.tensor([0, 1, 1]), torch.tensor([0, 2, 3])).shape
    torch.Size([3, 4, 1, 16, 16])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.errors import InvalidRequest
from aigc.models._common import ConfigDict, conv_block

__all__ = ["DIRECTIONS", "SpriteVideoConfig", "SpriteVideoVAE"]

#: direction ids of the shipped model and of the training script, in image coordinates (y grows downwards)
DIRECTIONS = ("left", "right", "up", "down")


@dataclass(frozen=True, kw_only=True)
class SpriteVideoConfig(ConfigDict):
    """Hyper-parameters of a :class:`SpriteVideoVAE`.

    Attributes:
        frames: frames per clip (T).
        resolution: frame size, a power of two, at least ``2 ** len(widths) * 2``.
        channels: frame channels (1: grayscale).
        widths: encoder feature maps after each stride-2 stage (the decoder mirrors them).
        latent_dim: size of z, one per clip.
        num_classes: content classes (what moves).
        num_directions: directions of motion (where it goes).
        embed_dim: size of each of the class, direction and frame-index embeddings.
        hidden: width of the decoder's MLP from the conditions to the bottleneck feature map.

    Example:
        >>> SpriteVideoConfig(resolution=32, widths=(32, 64, 128)).bottom
        4
    """

    frames: int = 16  # T, fixed: the frame index is a learned embedding
    resolution: int = 32
    channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    latent_dim: int = 32
    num_classes: int = 10
    num_directions: int = 4
    embed_dim: int = 16
    hidden: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in self.widths):
            raise InvalidRequest("config.widths", self.widths, "must be one or more positive ints",
                                 "pass e.g. widths=(32, 64, 128)")
        res = self.resolution
        least = 2 ** (len(self.widths) + 1)
        if not isinstance(res, int) or isinstance(res, bool) or res < least or res & (res - 1):
            raise InvalidRequest("config.resolution", res,
                                 f"must be a power of two >= {least} for {len(self.widths)} stages",
                                 "use e.g. resolution=32 with three widths")
        for name in ("frames", "channels", "latent_dim", "num_classes", "num_directions", "embed_dim", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"config.{name}", value, "must be a positive int", f"pass {name}=1 or more")

    @property
    def bottom(self) -> int:
        """Spatial size at the bottleneck."""
        return int(self.resolution // 2 ** len(self.widths))


class SpriteVideoVAE(nn.Module):
    """Clip encoder, reparameterisation and frame decoder; see the module docstring for the shapes."""

    def __init__(self, cfg: SpriteVideoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths, bottom, e = cfg.widths, cfg.bottom, cfg.embed_dim
        self.class_embed = nn.Embedding(cfg.num_classes, e)
        self.direction_embed = nn.Embedding(cfg.num_directions, e)
        self.time_embed = nn.Embedding(cfg.frames, e)
        chans = [cfg.frames * cfg.channels, *widths]
        self.encoder = nn.Sequential(*[conv_block(a, b, 2) for a, b in itertools.pairwise(chans)])
        flat = widths[-1] * bottom * bottom
        self.to_stats = nn.Linear(flat + 2 * e, 2 * cfg.latent_dim)  # -> mu, logvar
        self.from_latent = nn.Sequential(nn.Linear(cfg.latent_dim + 3 * e, cfg.hidden), nn.SiLU(),
                                         nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, flat))
        ups = [*reversed(widths), widths[0]]
        self.decoder = nn.ModuleList(conv_block(a, b, 1) for a, b in itertools.pairwise(ups))
        self.to_frame = nn.Conv2d(widths[0], cfg.channels, 3, padding=1)

    def _check_ids(self, name: str, ids: torch.Tensor, size: int) -> None:
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
            raise InvalidRequest(name, ids.tolist(), f"ids must lie in [0, {size})", f"pass ids below {size}")

    def encode(self, clip: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips in [-1, 1] (B, T, C, H, W), classes (B,), directions (B,) -> (mu, logvar), each (B, latent_dim)."""
        b = clip.shape[0]
        h = self.encoder(clip.reshape(b, -1, *clip.shape[-2:])).flatten(1)  # (B, widths[-1] * bottom^2)
        h = torch.cat([h, self.class_embed(c), self.direction_embed(d)], dim=1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
                      t: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, latent_dim), classes (B,), directions (B,), frame indices t (B, K) or ``None`` for all T frames
        -> pixel logits (B, K, C, H, W); ``sigmoid`` gives pixels in [0, 1]."""
        cfg = self.cfg
        self._check_ids("c", c, cfg.num_classes)
        self._check_ids("d", d, cfg.num_directions)
        b = z.shape[0]
        if t is None:
            t = torch.arange(cfg.frames, device=z.device).expand(b, -1)  # (B, T)
        self._check_ids("t", t, cfg.frames)
        k = t.shape[1]
        per_clip = torch.cat([z, self.class_embed(c).to(z.dtype), self.direction_embed(d).to(z.dtype)], dim=1)
        per_frame = torch.cat([per_clip[:, None].expand(-1, k, -1), self.time_embed(t).to(z.dtype)], dim=2)
        w, s = cfg.widths[-1], cfg.bottom
        x = self.from_latent(per_frame.reshape(b * k, -1)).reshape(b * k, w, s, s)  # (B*K, widths[-1], s, s)
        for block in self.decoder:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"))  # doubles H and W
        logits = self.to_frame(x)  # (B*K, C, H, W)
        return logits.reshape(b, k, *logits.shape[1:])  # type: ignore[no-any-return]

    def decode(self, z: torch.Tensor, c: torch.Tensor, d: torch.Tensor, t: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Like :meth:`decode_logits`, but frames in [-1, 1] (B, K, C, H, W)."""
        return torch.sigmoid(self.decode_logits(z, c, d, t)) * 2 - 1

    def loss(self, clip: torch.Tensor, c: torch.Tensor, d: torch.Tensor, eps: torch.Tensor,
             t: torch.Tensor | None = None, *, beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The negative ELBO per clip (nats), with its reconstruction and KL parts, averaged over the batch.

        ``clip`` (B, T, C, H, W) in [-1, 1]; ``eps`` (B, latent_dim) is the reparameterisation's standard normal
        noise, drawn by the caller from an explicit generator; ``t`` (B, K) picks the frames to reconstruct (all
        when ``None``), their loss scaled by T / K. ``beta`` weighs the KL term (Higgins et al. 2017).
        """
        mu, logvar = self.encode(clip, c, d)
        z = mu + (0.5 * logvar).exp() * eps
        if t is None:
            t = torch.arange(self.cfg.frames, device=clip.device).expand(clip.shape[0], -1)
        logits = self.decode_logits(z, c, d, t)  # (B, K, C, H, W)
        target = (torch.gather(clip, 1, t[:, :, None, None, None].expand(-1, -1, *clip.shape[2:])) + 1) / 2
        rec = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1).mean()
        rec = rec * (self.cfg.frames / t.shape[1])
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
        return rec + beta * kl, rec, kl
