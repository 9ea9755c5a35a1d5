"""A StyleGAN2-style generator and discriminator, small enough to train on a CPU.

Follows Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (2020), with these
simplifications, each chosen for speed on small images: bilinear resampling instead of the FIR filters of
``upfirdn2d``; modulation applied to the activations rather than to a per-sample weight (the "non-fused"
path of the reference code, identical in exact arithmetic and a plain convolution on any device); no
path-length regularisation. Class conditioning follows StyleGAN2-ADA (an embedding concatenated to z in the
mapping network) and a projection discriminator (Miyato & Koyama 2018).

Shapes, for ``resolution=32``, ``widths=(128, 128, 64, 32)``, batch B::

    z (B, z_dim) --+-- normalise --+
    c (B,) -- embed -- normalise --+-- concat -- mapping MLP --> w (B, w_dim) -- repeat --> ws (B, 8, w_dim)
    const (1, 128, 4, 4) --> conv ws[0] --> (B, 128, 4, 4)                       toRGB ws[1] --> img 4x4
      up x2 --> conv ws[1] --> conv ws[2] --> (B, 128, 8, 8)   img up x2 +       toRGB ws[3] --> img 8x8
      up x2 --> conv ws[3] --> conv ws[4] --> (B, 64, 16, 16)  img up x2 +       toRGB ws[5] --> img 16x16
      up x2 --> conv ws[5] --> conv ws[6] --> (B, 32, 32, 32)  img up x2 +       toRGB ws[7] --> img 32x32

Each toRGB shares its w with the next block's first convolution, so there are ``2 * log2(resolution) - 2``
style inputs (``num_ws``). Style mixing takes ``ws[:, :mix_layer]`` from one latent and the rest from another.
The truncation trick moves w towards the average w of its class (``w_avg``, tracked during training):
``w = w_avg[c] + psi * (w - w_avg[c])``; ``psi=0`` gives the class's mean image whatever the seed.

Example:
    >>> cfg = StyleGANConfig(resolution=16, widths=(32, 32, 16), z_dim=16, w_dim=16, num_classes=3)
    >>> g = StyleGANGenerator(cfg)
    >>> g(torch.zeros(2, 16), torch.tensor([0, 2])).shape
    torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.errors import InvalidRequest
from aigc.models._common import ConfigDict

__all__ = ["StyleGANConfig", "StyleGANDiscriminator", "StyleGANGenerator"]


@dataclass(frozen=True, kw_only=True)
class StyleGANConfig(ConfigDict):
    """Hyper-parameters of a generator/discriminator pair.

    Attributes:
        resolution: output size, a power of two >= 4.
        channels: image channels (1 grayscale, 3 RGB).
        widths: feature maps per resolution, from 4x4 up to ``resolution`` (``log2(resolution) - 1`` numbers).
        z_dim: size of the input latent z.
        w_dim: size of the intermediate latent w.
        mapping_layers: depth of the mapping MLP.
        num_classes: 0 for an unconditional model, else the number of classes.
        mapping_lr_mul: learning-rate multiplier of the mapping network (0.01 in StyleGAN).
        d_widths: discriminator widths from ``resolution`` down to 4x4; ``None`` mirrors ``widths``.
        mbstd_group: group size of the minibatch standard-deviation layer.

    Example:
        >>> StyleGANConfig(resolution=32, widths=(64, 64, 32, 16)).num_ws
        8
    """

    resolution: int = 32
    channels: int = 1
    widths: tuple[int, ...] = (128, 128, 64, 32)
    z_dim: int = 64
    w_dim: int = 128
    mapping_layers: int = 4
    num_classes: int = 0
    mapping_lr_mul: float = 0.01
    d_widths: tuple[int, ...] | None = None
    mbstd_group: int = 4

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, problem: str, fix: str) -> InvalidRequest:
            return InvalidRequest(f"config.{name}", value, problem, fix)

        res = self.resolution
        if not isinstance(res, int) or res < 4 or res & (res - 1):
            raise bad("resolution", res, "must be a power of two >= 4", "use e.g. resolution=32")
        levels = int(math.log2(res)) - 1
        for name in ("widths", "d_widths"):
            widths = getattr(self, name)
            if widths is None and name == "d_widths":
                continue
            object.__setattr__(self, name, tuple(widths))
            if len(widths) != levels or not all(isinstance(w, int) and w > 0 for w in widths):
                raise bad(name, widths, f"needs {levels} positive ints for resolution {res} (4x4 up to {res}x{res})",
                          f"pass {name}=({', '.join(['64'] * levels)})")
        for name in ("channels", "z_dim", "w_dim", "mapping_layers", "mbstd_group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, value, "must be a positive int", f"pass {name}=1 or more")
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise bad("num_classes", self.num_classes, "must be an int >= 0", "pass 0 for an unconditional model")
        if not (isinstance(self.mapping_lr_mul, (int, float)) and 0 < self.mapping_lr_mul <= 1):
            raise bad("mapping_lr_mul", self.mapping_lr_mul, "must be in (0, 1]", "use 0.01")

    @property
    def num_ws(self) -> int:
        """How many style inputs the synthesis network takes (``2 * log2(resolution) - 2``)."""
        return 2 * int(math.log2(self.resolution)) - 2

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The block resolutions, 4 up to ``resolution``."""
        return tuple(2 ** i for i in range(2, int(math.log2(self.resolution)) + 1))


# -- layers with equalised learning rate (Karras et al. 2018, sec. 4.1) ------------------------------------
class EqualLinear(nn.Module):
    """A linear layer whose weights are stored N(0, 1) / lr_mul and scaled at run time by ``lr_mul / sqrt(fan_in)``."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)  # (B, out_dim)
        return F.leaky_relu(x, 0.2) * math.sqrt(2) if self.activation else x


class EqualConv(nn.Module):
    """A 2-D convolution with equalised learning rate and "same" padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


# -- generator ------------------------------------------------------------------------------------------
class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ class c (B,)] -> w (B, w_dim) through a ``mapping_layers``-deep leaky-ReLU MLP."""

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        self.embed = EqualLinear(cfg.num_classes, cfg.w_dim) if cfg.num_classes else None
        dims = [cfg.z_dim + (cfg.w_dim if cfg.num_classes else 0)] + [cfg.w_dim] * cfg.mapping_layers
        self.layers = nn.Sequential(*[EqualLinear(a, b, lr_mul=cfg.mapping_lr_mul, activation=True)
                                      for a, b in itertools.pairwise(dims)])
        self.num_classes = cfg.num_classes

    def forward(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x = _normalize(z)  # (B, z_dim), unit second moment
        if self.embed is not None:
            if c is None:
                raise InvalidRequest("c", None, "this model is class-conditional", "pass a class id per sample")
            one_hot = F.one_hot(c, self.num_classes).to(z.dtype)  # (B, num_classes)
            x = torch.cat([x, _normalize(self.embed(one_hot))], dim=1)  # (B, z_dim + w_dim)
        return self.layers(x)  # type: ignore[no-any-return]


def _normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class ModulatedConv(nn.Module):
    """A 3x3 (or 1x1) convolution whose input channels are scaled by a style from w, with weight demodulation.

    ``y = conv(x * s, W) * d`` with ``s = affine(w)`` (B, in) and ``d = 1 / sqrt(sum_{in,k} (W * s)^2)``
    (B, out): the output has unit variance whatever the style (StyleGAN2, eq. 3), without building a
    weight per sample.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, *, demodulate: bool = True) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.demodulate = demodulate
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # (B, in)
        weight = self.weight * self.scale  # (out, in, k, k)
        x = x * styles[:, :, None, None]
        x = F.conv2d(x, weight, padding=self.padding)  # (B, out, H, W)
        if self.demodulate:
            # sum over in and k of (W * s)^2 = (s^2) @ (sum_k W^2)^T: (B, in) @ (in, out) -> (B, out)
            d = (styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8).rsqrt()
            x = x * d[:, :, None, None]
        return x


class StyleLayer(nn.Module):
    """Modulated 3x3 conv, then per-pixel noise scaled by a learned strength, bias and leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3, w_dim)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.resolution = resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) + noise * self.noise_strength  # noise (B, 1, H, W)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation (StyleGAN2, fig. 7b)."""

    def __init__(self, in_ch: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]  # type: ignore[no-any-return]


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> image (B, channels, resolution, resolution), roughly in [-1, 1]."""

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.const = nn.Parameter(torch.randn(1, cfg.widths[0], 4, 4))
        layers: list[StyleLayer] = [StyleLayer(cfg.widths[0], cfg.widths[0], cfg.w_dim, 4)]
        to_rgb: list[ToRGB] = [ToRGB(cfg.widths[0], cfg.channels, cfg.w_dim)]
        for prev, width, res in zip(cfg.widths[:-1], cfg.widths[1:], cfg.resolutions[1:], strict=True):
            layers += [StyleLayer(prev, width, cfg.w_dim, res), StyleLayer(width, width, cfg.w_dim, res)]
            to_rgb.append(ToRGB(width, cfg.channels, cfg.w_dim))
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.ModuleList(to_rgb)
        # Fixed noise maps for inference (StyleGAN2-ADA's noise_mode="const"): drawn from a fixed seed, so they
        # are the same for every model with this config and need not be saved (persistent=False).
        g = torch.Generator("cpu").manual_seed(0)
        for i, layer in enumerate(layers):
            self.register_buffer(f"noise_const_{i}", torch.randn(1, 1, layer.resolution, layer.resolution,
                                                                 generator=g), persistent=False)

    def noise_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """The shape of each layer's noise input, in order: ``(batch, 1, res, res)``."""
        return [(batch, 1, int(layer.resolution), int(layer.resolution)) for layer in self.layers]  # type: ignore[arg-type]

    def const_noise(self, batch: int) -> list[torch.Tensor]:
        """The fixed noise maps, one (batch, 1, res, res) per layer."""
        return [getattr(self, f"noise_const_{i}").expand(batch, -1, -1, -1) for i in range(len(self.layers))]

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images from ws; ``noise`` is one map per layer (random during training), ``None`` the fixed maps."""
        if noise is None:
            noise = self.const_noise(ws.shape[0])
        if len(noise) != len(self.layers):
            raise InvalidRequest("noise", len(noise), f"needs one tensor per layer ({len(self.layers)})",
                                 "pass synthesis.noise_shapes(batch) tensors, or None for the fixed noise")
        x = self.const.expand(ws.shape[0], -1, -1, -1)  # (B, C4, 4, 4)
        x = self.layers[0](x, ws[:, 0], noise[0])
        img = self.to_rgb[0](x, ws[:, 1])  # (B, channels, 4, 4)
        for block in range(1, len(self.to_rgb)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # (B, C, 2H, 2W)
            for j in (2 * block - 1, 2 * block):
                x = self.layers[j](x, ws[:, j], noise[j])
            img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
            img = img + self.to_rgb[block](x, ws[:, 2 * block + 1])
        return img  # type: ignore[no-any-return]


class StyleGANGenerator(nn.Module):
    """Mapping + synthesis, with the truncation trick and style mixing.

    ``w_avg`` (num_classes or 1, w_dim) is a buffer: the running mean of w per class, updated by
    :meth:`update_w_avg` during training and saved with the weights.

    Example:
        >>> g = StyleGANGenerator(StyleGANConfig(resolution=8, widths=(16, 8)))
        >>> g(torch.randn(3, 64), truncation=0.5).shape
        torch.Size([3, 1, 8, 8])
    """

    w_avg: torch.Tensor

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(max(cfg.num_classes, 1), cfg.w_dim))

    def _class_index(self, c: torch.Tensor | None, batch: int) -> torch.Tensor:
        if self.cfg.num_classes == 0 or c is None:
            return torch.zeros(batch, dtype=torch.long, device=self.w_avg.device)
        return c

    def map(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation: float = 1.0) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated towards the class's average w."""
        w = self.mapping(z, c)  # (B, w_dim)
        if truncation != 1.0:
            avg = self.w_avg[self._class_index(c, z.shape[0])].to(w.dtype)  # (B, w_dim)
            w = avg + truncation * (w - avg)
        return w[:, None, :].expand(-1, self.cfg.num_ws, -1)  # type: ignore[no-any-return]

    @torch.no_grad()
    def update_w_avg(self, w: torch.Tensor, c: torch.Tensor | None, beta: float = 0.995) -> None:
        """Move the running mean of w towards this batch's mean, per class present in ``c``."""
        idx = self._class_index(c, w.shape[0])
        for k in torch.unique(idx).tolist():
            mean = w[idx == k].mean(dim=0).to(self.w_avg.dtype)
            self.w_avg[k].lerp_(mean, 1.0 - beta)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, *, truncation: float = 1.0,
                mix_z: torch.Tensor | None = None, mix_layer: int | None = None,
                noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images (B, channels, res, res) for latents z and classes c.

        Args:
            z: latents (B, z_dim).
            c: class ids (B,), for a conditional model.
            truncation: psi; 1 leaves w as it is, 0 gives the class's average w.
            mix_z: latents whose ws replace layers ``mix_layer`` onwards (style mixing), same classes.
            mix_layer: the first layer that takes its style from ``mix_z`` (1 .. num_ws - 1).
            noise: per-layer noise (see ``synthesis.noise_shapes``); ``None`` uses the fixed noise maps, so
                the image depends on z (and c) alone.
        """
        ws = self.map(z, c, truncation=truncation)
        if mix_z is not None:
            if mix_layer is None or not 0 <= mix_layer <= self.cfg.num_ws:
                raise InvalidRequest("mix_layer", mix_layer, f"must be in 0..{self.cfg.num_ws}",
                                     f"pass mix_layer between 1 and {self.cfg.num_ws - 1}")
            mixed = self.map(mix_z, c, truncation=truncation)
            ws = torch.cat([ws[:, :mix_layer], mixed[:, mix_layer:]], dim=1)
        return self.synthesis(ws, noise)  # type: ignore[no-any-return]


# -- discriminator --------------------------------------------------------------------------------------
class DiscriminatorBlock(nn.Module):
    """Two 3x3 convs and a 2x downsample, with a 1x1 residual path; the sum is scaled by 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv0 = EqualConv(in_ch, in_ch, 3)
        self.conv1 = EqualConv(in_ch, out_ch, 3)
        self.skip = EqualConv(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv0(x), 0.2) * math.sqrt(2)
        y = F.avg_pool2d(F.leaky_relu(self.conv1(y), 0.2) * math.sqrt(2), 2)  # (B, out, H/2, W/2)
        skip = self.skip(F.avg_pool2d(x, 2))
        return (y + skip) / math.sqrt(2)  # type: ignore[no-any-return]


class StyleGANDiscriminator(nn.Module):
    """Image (B, channels, res, res) [+ class c] -> realness logit (B,).

    fromRGB, residual blocks down to 4x4, minibatch standard deviation, a 3x3 conv, a linear layer to
    features h (B, C), then ``out(h) + <embed(c), h>`` (projection discriminator); a conditional model also
    has a linear auxiliary classifier on h (see :meth:`forward_with_classes`).
    """

    def __init__(self, cfg: StyleGANConfig) -> None:
        super().__init__()
        widths = cfg.d_widths or tuple(reversed(cfg.widths))  # from resolution down to 4
        self.cfg = cfg
        self.from_rgb = EqualConv(cfg.channels, widths[0], 1)
        self.blocks = nn.ModuleList(DiscriminatorBlock(a, b) for a, b in itertools.pairwise(widths))
        last = widths[-1]
        self.conv = EqualConv(last + 1, last, 3)
        self.fc = EqualLinear(last * 16, last, activation=True)
        self.out = EqualLinear(last, 1)
        self.embed = EqualLinear(cfg.num_classes, last) if cfg.num_classes else None
        self.classify = EqualLinear(last, cfg.num_classes) if cfg.num_classes else None  # auxiliary classifier

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Realness logits (B,)."""
        return self.forward_with_classes(img, c)[0]

    def forward_with_classes(self, img: torch.Tensor, c: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Realness logits (B,) and, for a conditional model, class logits (B, num_classes) from the same
        features (an auxiliary classifier, AC-GAN, Odena et al. 2017), else ``None``."""
        x = F.leaky_relu(self.from_rgb(img), 0.2) * math.sqrt(2)  # (B, C_res, res, res)
        for block in self.blocks:
            x = block(x)  # halves H and W
        x = _minibatch_std(x, self.cfg.mbstd_group)  # (B, C + 1, 4, 4)
        x = F.leaky_relu(self.conv(x), 0.2) * math.sqrt(2)
        h = self.fc(x.flatten(1))  # (B, C)
        logit = self.out(h).squeeze(1)  # (B,)
        if self.embed is not None and c is not None:
            proj = self.embed(F.one_hot(c, self.cfg.num_classes).to(h.dtype))  # (B, C)
            logit = logit + (proj * h).sum(dim=1) / math.sqrt(h.shape[1])
        classes = self.classify(h) if self.classify is not None else None
        return logit, classes


def _minibatch_std(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one channel holding the standard deviation across groups of ``group`` samples (ProGAN, sec. 3)."""
    b, c, h, w = x.shape
    g = math.gcd(min(group, b), b)
    y = x.reshape(g, -1, c, h, w)  # (G, B/G, C, H, W)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/G,)
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # (B, 1, H, W)
    return torch.cat([x, y], dim=1)
