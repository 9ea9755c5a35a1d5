"""CycleGAN-style unpaired image-to-image translation (Zhu, Park, Isola & Efros 2017, "Unpaired Image-to-Image
Translation using Cycle-Consistent Adversarial Networks").

Two generators translate between domains A and B (``G_ab``: A -> B, ``G_ba``: B -> A); two PatchGAN
discriminators (``D_a``, ``D_b``) score overlapping patches of an image as real or translated. The losses
(:func:`cyclegan_losses`), with least-squares GAN terms as in the paper (section 4, "Training details"):

    adversarial   L_gan(G, D) = mean((D(G(x)) - 1)^2)                           (eq. 1, least-squares form)
    cycle         L_cyc = |G_ba(G_ab(a)) - a|_1 + |G_ab(G_ba(b)) - b|_1          (eq. 2)
    identity      L_idt = |G_ba(a) - a|_1 + |G_ab(b) - b|_1                      (section 5.2, Taigman et al.)
    self-reg.     L_self = |P(G_ab(a)) - P(a)|_1 + |P(G_ba(b)) - P(b)|_1    (Shrivastava et al. 2017's
                  self-regularisation; P is the identity, or with ``self_reg_pool=k`` a k x k average pooling
                  (the coarse layout and brightness are kept, texture inside a cell may change) or max pooling
                  (``self_reg_pooling="max"``: the outline is kept, holes inside it may be filled or cut))
    generators    L_gan(G_ab, D_b) + L_gan(G_ba, D_a) + lambda_cyc L_cyc + lambda_idt L_idt + lambda_self L_self
                  (eq. 3 of the paper, which has no L_self: it keeps a translation close to its own input)
    discriminator (mean((D(real) - 1)^2) + mean(D(pooled fake)^2)) / 2

The discriminators see translated images drawn from an :class:`ImagePool` of earlier ones (Shrivastava et al.
2017), whose random choices come from an explicit ``torch.Generator``.

Generator shapes, for ``resolution=32``, ``ngf=16``, ``n_down=2``, batch B::

    (B, C, 32, 32) -- reflect-pad 3, conv 7x7, norm, ReLU --> (B, 16, 32, 32)
    -- conv 3x3 s2, norm, ReLU --> (B, 32, 16, 16) -- conv 3x3 s2, norm, ReLU --> (B, 64, 8, 8)
    -- n_blocks x residual (reflect-pad, conv 3x3, norm, ReLU, reflect-pad, conv 3x3, norm, + skip) --> (B, 64, 8, 8)
    -- up x2, conv 3x3, norm, ReLU --> (B, 32, 16, 16) -- up x2, conv 3x3, norm, ReLU --> (B, 16, 32, 32)
    -- reflect-pad 3, conv 7x7 [+ skip * input], tanh --> (B, C, 32, 32) in [-1, 1]

Normalisation is instance normalisation (Ulyanov et al. 2016): each image is normalised with its own mean and
variance per channel, so sample *i* of a batch equals a single run on it. For the frames of a video,
``shared_stats=True`` computes one mean and variance per channel over all frames of the batch (the clip as one
instance), so frames are normalised alike and the translation does not flicker when a frame's content shifts.
Upsampling is nearest-neighbour then a 3x3 convolution (no checkerboard artefacts; Odena et al. 2016), where the
paper uses transposed convolutions.

Example:
    >>> pair = CycleGANGenerators(CycleGANConfig(resolution=16, ngf=4, n_blocks=1))
    >>> pair.translate(torch.zeros(2, 1, 16, 16), "a2b").shape
    torch.Size([2, 1, 16, 16])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from aigc.errors import InvalidRequest
from aigc.models._common import ConfigDict

__all__ = ["CycleGANConfig", "CycleGANGenerators", "Direction", "ImagePool", "PatchDiscriminator", "ResnetGenerator",
           "cyclegan_losses", "discriminator_loss"]

Direction = Literal["a2b", "b2a"]
_DIRECTIONS: tuple[Direction, ...] = ("a2b", "b2a")


def _positive(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidRequest(f"config.{name}", value, f"must be an int >= {minimum}", f"pass {name}={max(minimum, 2)}")


@dataclass(frozen=True, kw_only=True)
class CycleGANConfig(ConfigDict):
    """Hyper-parameters of a :class:`CycleGANGenerators` pair and its :class:`PatchDiscriminator` s.

    Attributes:
        resolution: image side; a multiple of ``2 ** n_down`` and at least ``4 * 2 ** n_down``.
        channels: image channels (1 grey, 3 RGB), the same in both domains.
        ngf: generator width at full resolution (doubles at each downsampling).
        n_down: stride-2 downsamplings of the generator (the paper: 2).
        n_blocks: residual blocks at the bottom (the paper: 6 at 128x128, 9 at 256x256).
        ndf: discriminator width of the first layer.
        d_layers: stride-2 layers of the discriminator (the paper's 70x70 PatchGAN has 3).
        input_skip: add the input, times a learned scalar (1 at the start), to the generator's output before the
            tanh, so a generator starts near the identity and only has to learn what changes (default False, as
            the paper; with strong identity and self-regularisation losses a generator may then never leave the
            identity).

    Example:
        >>> CycleGANConfig(resolution=32, ngf=16, n_blocks=4).bottom
        8
    """

    resolution: int = 32
    channels: int = 1
    ngf: int = 16
    n_down: int = 2
    n_blocks: int = 4
    ndf: int = 32
    d_layers: int = 2
    input_skip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.input_skip, bool):
            raise InvalidRequest("config.input_skip", self.input_skip, "must be True or False", "pass input_skip=True")
        for name in ("channels", "ngf", "ndf", "n_blocks", "n_down", "d_layers"):
            _positive(name, getattr(self, name))
        res, least = self.resolution, 4 * 2 ** self.n_down
        if not isinstance(res, int) or isinstance(res, bool) or res < least or res % 2 ** self.n_down:
            raise InvalidRequest("config.resolution", res,
                                 f"must be a multiple of {2 ** self.n_down} and >= {least} for n_down={self.n_down}",
                                 "pass e.g. resolution=32 with n_down=2")

    @property
    def bottom(self) -> int:
        """Spatial size at the generator's residual blocks."""
        return int(self.resolution // 2 ** self.n_down)


class _Norm(nn.Module):
    """Instance normalisation with a learned per-channel scale and shift; ``shared`` pools the statistics over
    the whole batch (the frames of one clip) instead of each image."""

    def __init__(self, ch: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.eps = eps

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        if not shared:  # (B, C, H, W): mean and variance per image and channel
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        # the clip as one instance: (B, C, H, W) -> (1, C, B, H, W), mean and variance per channel over B, H, W
        y = F.instance_norm(x.transpose(0, 1).unsqueeze(0), weight=self.weight, bias=self.bias, eps=self.eps)
        return y.squeeze(0).transpose(0, 1)


class _ConvNormReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, up: bool = False) -> None:
        super().__init__()
        self.pad, self.up = kernel // 2, up
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride)
        self.norm = _Norm(out_ch)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")  # doubles H and W
        x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        return F.relu(self.norm(x, shared))


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(ch, ch, 3), _Norm(ch)
        self.conv2, self.norm2 = nn.Conv2d(ch, ch, 3), _Norm(ch)

    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(F.pad(x, (1,) * 4, mode="reflect")), shared))
        out: torch.Tensor = x + self.norm2(self.conv2(F.pad(h, (1,) * 4, mode="reflect")), shared)
        return out


class ResnetGenerator(nn.Module):
    """One direction: the ResNet generator of Johnson et al. 2016 as CycleGAN uses it (shapes in the module
    docstring). Images in [-1, 1] (B, C, R, R) -> translated images in [-1, 1], same shape."""

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = [cfg.ngf * 2 ** i for i in range(cfg.n_down + 1)]  # e.g. 16, 32, 64
        self.stem = _ConvNormReLU(cfg.channels, widths[0], 7)
        self.down = nn.ModuleList(_ConvNormReLU(widths[i], widths[i + 1], 3, stride=2) for i in range(cfg.n_down))
        self.blocks = nn.ModuleList(_ResBlock(widths[-1]) for _ in range(cfg.n_blocks))
        self.up = nn.ModuleList(_ConvNormReLU(widths[i + 1], widths[i], 3, up=True)
                                for i in reversed(range(cfg.n_down)))
        self.head = nn.Conv2d(widths[0], cfg.channels, 7)
        self.skip = nn.Parameter(torch.ones(())) if cfg.input_skip else None  # weight of the input at the output

    def forward(self, x: torch.Tensor, shared_stats: bool = False) -> torch.Tensor:
        h = self.stem(x, shared_stats)
        for layer in self.down:  # reflect-pad 1, 3x3 stride 2: halves an even side exactly
            h = layer(h, shared_stats)
        for block in self.blocks:
            h = block(h, shared_stats)
        for layer in self.up:
            h = layer(h, shared_stats)
        out = self.head(F.pad(h, (3,) * 4, mode="reflect"))  # (B, C, R, R) before the tanh
        if self.skip is not None:
            out = out + self.skip * x
        return torch.tanh(out)


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): a grid of real/fake scores, one per overlapping patch.

    ``d_layers`` stride-2 4x4 convolutions (width ``ndf`` doubling), one stride-1 4x4 convolution and a 4x4
    convolution to one channel; at ``resolution=32``, ``d_layers=2``: (B, C, 32, 32) -> (B, 1, 6, 6), each
    score seeing a 22x22 patch. LeakyReLU 0.2, instance norm after all but the first layer.
    """

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, cfg.ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = cfg.ndf
        for i in range(1, cfg.d_layers + 1):
            nxt = cfg.ndf * 2 ** min(i, 3)
            stride = 2 if i < cfg.d_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride=stride, padding=1), nn.InstanceNorm2d(nxt, affine=True),
                       nn.LeakyReLU(0.2)]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]  # (B, 1, P, P) patch scores


class CycleGANGenerators(nn.Module):
    """The two generators of a CycleGAN: what the ``cyclegan`` backend runs and :mod:`aigc.formats.cyclegan`
    stores. ``g_ab`` translates domain A to B, ``g_ba`` B to A."""

    def __init__(self, cfg: CycleGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_ab = ResnetGenerator(cfg)
        self.g_ba = ResnetGenerator(cfg)

    def generator(self, direction: Direction) -> ResnetGenerator:
        """The generator of ``direction`` (``"a2b"`` or ``"b2a"``)."""
        if direction not in _DIRECTIONS:
            raise InvalidRequest("direction", direction, "unknown direction", "pass 'a2b' or 'b2a'")
        return self.g_ab if direction == "a2b" else self.g_ba

    def translate(self, x: torch.Tensor, direction: Direction, *, shared_stats: bool = False) -> torch.Tensor:
        """Images in [-1, 1] (B, C, R, R) of the source domain -> the other domain, same shape.

        ``shared_stats`` normalises with statistics pooled over the batch (the frames of one video).
        """
        out: torch.Tensor = self.generator(direction)(x, shared_stats)
        return out


class ImagePool(nn.Module):
    """A buffer of up to ``size`` earlier translated images (Shrivastava et al. 2017, as CycleGAN uses it).

    :meth:`query` returns, for each new image, the image itself while the pool fills; once full, with
    probability 1/2 a stored image chosen at random (the new one taking its place), else the new image. The
    choices come from the ``generator`` passed in; the stored images are buffers, so the pool goes into a
    training checkpoint with the networks and a resumed run draws the same images.

    Example:
        >>> pool = ImagePool(4, (1, 8, 8))
        >>> pool.query(torch.zeros(2, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """

    images: torch.Tensor
    filled: torch.Tensor

    def __init__(self, size: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequest("pool_size", size, "must be an int >= 0", "pass pool_size=50 (0 turns the pool off)")
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images (B, C, H, W) for the discriminator (detached), drawn as the class docstring says."""
        if self.size == 0:
            return images.detach()
        out = []
        for img in images.detach():
            n = int(self.filled)
            if n < self.size:
                self.images[n] = img
                self.filled += 1
                out.append(img)
                continue
            if float(torch.rand((), generator=generator)) < 0.5:
                k = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[k].clone())
                self.images[k] = img
            else:
                out.append(img)
        return torch.stack(out)


def _lsgan(scores: torch.Tensor, target: float) -> torch.Tensor:
    return (scores - target).square().mean()


def cyclegan_losses(gens: CycleGANGenerators, real_a: torch.Tensor, real_b: torch.Tensor, d_a: PatchDiscriminator,
                    d_b: PatchDiscriminator, *, lambda_cycle: float, lambda_identity: float,
                    lambda_self: float = 0.0, self_reg_pool: int = 1,
                    self_reg_pooling: Literal["average", "max"] = "average",
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """The generators' losses of one batch (eq. 3 of the paper; see the module docstring).

    ``self_reg_pool`` (k >= 1, dividing the image side) compares a translation with its input after a k x k
    pooling (``self_reg_pooling``: ``"average"`` or ``"max"``) in the self-regularisation term (1: pixel by pixel).

    Returns:
        (the terms by name -- ``"g_loss"`` the total, ``"gan"``, ``"cycle"``, ``"identity"``, ``"self_reg"``; the
        translated
        batches ``fake_b`` and ``fake_a`` for the discriminators).
    """
    fake_b = gens.g_ab(real_a)  # A -> B
    fake_a = gens.g_ba(real_b)  # B -> A
    gan = _lsgan(d_b(fake_b), 1.0) + _lsgan(d_a(fake_a), 1.0)
    cycle = F.l1_loss(gens.g_ba(fake_b), real_a) + F.l1_loss(gens.g_ab(fake_a), real_b)  # eq. 2
    total = gan + lambda_cycle * cycle
    identity = torch.zeros((), device=real_a.device)
    if lambda_identity > 0:
        identity = F.l1_loss(gens.g_ba(real_a), real_a) + F.l1_loss(gens.g_ab(real_b), real_b)
        total = total + lambda_identity * identity
    if self_reg_pool == 1:
        self_reg = F.l1_loss(fake_b, real_a) + F.l1_loss(fake_a, real_b)
    else:
        k = self_reg_pool
        pool = F.max_pool2d if self_reg_pooling == "max" else F.avg_pool2d
        self_reg = F.l1_loss(pool(fake_b, k), pool(real_a, k)) + F.l1_loss(pool(fake_a, k), pool(real_b, k))
    if lambda_self > 0:
        total = total + lambda_self * self_reg
    return {"g_loss": total, "gan": gan, "cycle": cycle, "identity": identity, "self_reg": self_reg}, fake_a, fake_b


def discriminator_loss(d: PatchDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares loss of one discriminator: real patches -> 1, (pooled) translated ones -> 0, halved as in
    the paper so D learns at half G's rate."""
    return 0.5 * (_lsgan(d(real), 1.0) + _lsgan(d(fake.detach()), 0.0))
