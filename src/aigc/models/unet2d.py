"""A class-conditional 2D UNet that reads and runs diffusers ``UNet2DModel`` checkpoints -- without diffusers.

The embedded image default and every model :func:`aigc.train.train_diffusion` writes are a diffusers
``UNet2DModel`` saved with ``save_pretrained``. Importing diffusers to run one costs seconds (its model zoo and
``torch._dynamo`` come along), so this file rebuilds the network from the same ``config.json`` and loads the same
``diffusion_pytorch_model.safetensors``: the parameter names are diffusers', so the state dict loads as is and the
noise prediction is the same up to float rounding.

It covers the configurations DDPM-style UNets use (Ho et al. 2020): blocks ``DownBlock2D``, ``AttnDownBlock2D``,
``UpBlock2D``, ``AttnUpBlock2D`` and the ``UNetMidBlock2D`` (with or without attention), sinusoidal time
embeddings, an optional class-embedding table, ``conv`` down/up-sampling, SiLU, the ``default`` time injection.
:meth:`UNet2DConfig.from_diffusers` returns ``None`` for anything else (Fourier time embeddings, skip blocks,
``scale_shift`` norms, ...), so a caller can fall back to diffusers for those.

Shapes: B batch, C channels, H x W the sample; ``E = 4 * block_out_channels[0]`` the embedding width.

Example:
    >>> cfg = UNet2DConfig(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4, num_class_embeds=3)
    >>> net = UNet2D(cfg).eval()
    >>> net(torch.zeros(2, 1, 8, 8), torch.tensor([10]), class_labels=torch.tensor([0, 2])).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["UNet2D", "UNet2DConfig"]

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")
# diffusers config keys that change nothing in inference here, and the value each must have to be supported.
_REQUIRED = {"time_embedding_type": "positional", "class_embed_type": None, "act_fn": "silu",
             "resnet_time_scale_shift": "default", "downsample_type": "conv", "upsample_type": "conv",
             "time_embedding_dim": None}
_IGNORED = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values", "dropout",
            "num_train_timesteps"}


@dataclass(frozen=True)
class UNet2DConfig:
    """The architecture, with diffusers ``UNet2DModel``'s field names and defaults (where they matter here)."""

    sample_size: int = 32  # H = W of the samples it was trained on
    in_channels: int = 1
    out_channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64)  # channels per level, finest first
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D")  # one per level, finest first
    up_block_types: tuple[str, ...] = ("UpBlock2D", "UpBlock2D")  # one per level, coarsest first
    layers_per_block: int = 1  # ResNet blocks per down level (up levels get one more)
    attention_head_dim: int | None = 8  # channels per head; None: one head
    norm_num_groups: int = 32  # group norm groups everywhere
    attn_norm_num_groups: int | None = None  # the mid attention's groups; None: norm_num_groups
    norm_eps: float = 1e-5
    num_class_embeds: int | None = None  # class-embedding rows (classes + the null class); None: unconditional
    add_attention: bool = True  # self-attention in the mid block
    mid_block_type: str | None = "UNetMidBlock2D"
    mid_block_scale_factor: float = 1.0  # the mid block divides its residual sums by this
    downsample_padding: int = 1
    flip_sin_to_cos: bool = True  # time embedding is [cos, sin] (True) or [sin, cos]
    freq_shift: float = 0.0  # the time embedding's frequencies are exp(-ln(10000) i / (E/2 - freq_shift))
    center_input_sample: bool = False  # map [0, 1] inputs to [-1, 1] first

    def __post_init__(self) -> None:
        levels = len(self.block_out_channels)
        if not levels or len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise ValueError(f"block_out_channels {self.block_out_channels}, down_block_types "
                             f"{self.down_block_types} and up_block_types {self.up_block_types} must have one entry "
                             "per level")
        bad = [b for b in self.down_block_types if b not in DOWN_BLOCKS] + [
            b for b in self.up_block_types if b not in UP_BLOCKS]
        if bad or self.mid_block_type not in ("UNetMidBlock2D", None):
            raise ValueError(f"unsupported blocks {bad or [self.mid_block_type]}: UNet2D has {DOWN_BLOCKS}, "
                             f"{UP_BLOCKS} and UNetMidBlock2D")

    @classmethod
    def from_diffusers(cls, config: dict[str, Any]) -> UNet2DConfig | None:
        """The config of a diffusers ``UNet2DModel`` ``config.json``, or ``None`` when it uses a feature this network
        lacks (then load it with diffusers).

        Example:
            >>> UNet2DConfig.from_diffusers({"_class_name": "UNet2DModel", "block_out_channels": [8, 8],
            ...                              "norm_num_groups": 4}).block_out_channels
            (8, 8)
            >>> UNet2DConfig.from_diffusers({"time_embedding_type": "fourier"}) is None
            True
        """
        if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
            return None
        if any(config.get(k, v) != v for k, v in _REQUIRED.items()):
            return None
        known = {f.name for f in fields(cls)}
        if set(config) - known - set(_REQUIRED) - _IGNORED:
            return None
        if config.get("sample_size") is not None and not isinstance(config["sample_size"], int):
            return None  # (H, W) sample sizes: diffusers only
        args: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known}
        if args.get("sample_size") is None:
            args.pop("sample_size", None)
        if "norm_num_groups" in args and args["norm_num_groups"] is None:
            return None
        try:
            return cls(**args)
        except (TypeError, ValueError):
            return None


def timestep_embedding(t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool, freq_shift: float) -> torch.Tensor:
    """Sinusoidal embeddings of integer timesteps (Vaswani et al. 2017, sec. 3.5; Ho et al. 2020, app. B):
    (B,) -> (B, dim), float32, computed exactly as diffusers' ``get_timestep_embedding`` does."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))  # (half,)
    args = t[:, None].float() * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on the sinusoidal embedding (diffusers' ``TimestepEmbedding``)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))  # type: ignore[no-any-return]


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> + time embedding -> GroupNorm -> SiLU -> conv, plus a (1x1-projected) skip;
    the sum is divided by ``scale`` (diffusers' ``ResnetBlock2D``, ``time_embedding_norm="default"``)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, *, groups: int, eps: float, scale: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None
        self.scale = scale

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip: torch.Tensor = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.scale


class SelfAttention(nn.Module):
    """Spatial self-attention with a residual (diffusers' ``Attention`` as UNet2DModel builds it): group norm, then
    multi-head scaled dot-product attention over the H*W positions (Vaswani et al. 2017, eq. 1)."""

    def __init__(self, ch: int, head_dim: int, *, groups: int, eps: float, scale: float = 1.0) -> None:
        super().__init__()
        self.heads = ch // head_dim
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_q = nn.Linear(ch, self.heads * head_dim)
        self.to_k = nn.Linear(ch, self.heads * head_dim)
        self.to_v = nn.Linear(ch, self.heads * head_dim)
        self.to_out = nn.ModuleList([nn.Linear(self.heads * head_dim, ch)])
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = x.view(b, c, hh * ww).transpose(1, 2)  # (B, HW, C)
        h = self.group_norm(h.transpose(1, 2)).transpose(1, 2)
        q, k, v = (proj(h).view(b, hh * ww, self.heads, -1).transpose(1, 2)  # (B, nh, HW, hd)
                   for proj in (self.to_q, self.to_k, self.to_v))
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, hh * ww, -1)  # (B, HW, C)
        out: torch.Tensor = self.to_out[0](h).transpose(-1, -2).reshape(b, c, hh, ww)
        return (out + x) / self.scale


class Downsample(nn.Module):
    """A stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)  # type: ignore[no-any-return]


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] >= 64:
            x = x.contiguous()
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # type: ignore[no-any-return]


class DownLevel(nn.Module):
    """``layers`` ResNet blocks (each followed by attention in an ``AttnDownBlock2D``), then a downsampler except on
    the coarsest level; returns the output and every intermediate for the skip connections."""

    def __init__(self, kind: str, in_ch: int, out_ch: int, emb_dim: int, *, layers: int, last: bool,
                 cfg: UNet2DConfig) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList(ResBlock(in_ch if i == 0 else out_ch, out_ch, emb_dim, groups=groups, eps=eps)
                                     for i in range(layers))
        if kind == "AttnDownBlock2D":
            head = cfg.attention_head_dim or out_ch
            self.attentions: nn.ModuleList | None = nn.ModuleList(
                SelfAttention(out_ch, head, groups=groups, eps=eps) for _ in range(layers))
        else:
            self.attentions = None
        self.downsamplers = None if last else nn.ModuleList([Downsample(out_ch, cfg.downsample_padding)])

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, emb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """ResNet, then (attention, ResNet) -- diffusers' ``UNetMidBlock2D`` with one layer."""

    def __init__(self, ch: int, emb_dim: int, cfg: UNet2DConfig) -> None:
        super().__init__()
        groups, eps, scale = cfg.norm_num_groups, cfg.norm_eps, cfg.mid_block_scale_factor
        self.resnets = nn.ModuleList(ResBlock(ch, ch, emb_dim, groups=groups, eps=eps, scale=scale) for _ in range(2))
        if cfg.add_attention:
            attn_groups = cfg.attn_norm_num_groups if cfg.attn_norm_num_groups is not None else groups
            self.attentions: nn.ModuleList | None = nn.ModuleList(
                [SelfAttention(ch, cfg.attention_head_dim or ch, groups=attn_groups, eps=eps, scale=scale)])
        else:
            self.attentions = None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, emb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x, emb)  # type: ignore[no-any-return]


class UpLevel(nn.Module):
    """``layers`` ResNet blocks, each on the concatenation with one skip (popped last-in first-out), each followed by
    attention in an ``AttnUpBlock2D``; then an upsampler except on the finest level."""

    def __init__(self, kind: str, in_ch: int, prev_ch: int, out_ch: int, emb_dim: int, *, layers: int, last: bool,
                 cfg: UNet2DConfig) -> None:
        super().__init__()
        groups, eps = cfg.norm_num_groups, cfg.norm_eps
        self.resnets = nn.ModuleList(
            ResBlock((prev_ch if i == 0 else out_ch) + (in_ch if i == layers - 1 else out_ch), out_ch, emb_dim,
                     groups=groups, eps=eps) for i in range(layers))
        if kind == "AttnUpBlock2D":
            head = cfg.attention_head_dim or out_ch
            self.attentions: nn.ModuleList | None = nn.ModuleList(
                SelfAttention(out_ch, head, groups=groups, eps=eps) for _ in range(layers))
        else:
            self.attentions = None
        self.upsamplers = None if last else nn.ModuleList([Upsample(out_ch)])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), emb)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNet2D(nn.Module):
    """The noise-prediction UNet: eps_theta(x_t, t, y) (Ho et al. 2020, eq. 11; class conditioning by adding a
    learned class embedding to the time embedding, as in Dhariwal & Nichol 2021).

    Parameter names follow diffusers' ``UNet2DModel``, so its ``state_dict`` loads with ``load_state_dict`` as is.

    Example:
        >>> net = UNet2D(UNet2DConfig(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4))
        >>> net(torch.zeros(1, 1, 8, 8), torch.tensor([3])).shape
        torch.Size([1, 1, 8, 8])
    """

    def __init__(self, config: UNet2DConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.block_out_channels
        emb_dim = 4 * widths[0]
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.time_embedding = TimestepMLP(widths[0], emb_dim)
        self.class_embedding = (nn.Embedding(config.num_class_embeds, emb_dim)
                                if config.num_class_embeds is not None else None)
        levels = len(widths)
        self.down_blocks = nn.ModuleList(
            DownLevel(kind, widths[max(i - 1, 0)], widths[i], emb_dim, layers=config.layers_per_block,
                      last=i == levels - 1, cfg=config) for i, kind in enumerate(config.down_block_types))
        self.mid_block = MidBlock(widths[-1], emb_dim, config) if config.mid_block_type is not None else None
        rev = list(reversed(widths))
        self.up_blocks = nn.ModuleList(
            UpLevel(kind, rev[min(i + 1, levels - 1)], rev[max(i - 1, 0)], rev[i], emb_dim,
                    layers=config.layers_per_block + 1, last=i == levels - 1, cfg=config)
            for i, kind in enumerate(config.up_block_types))
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, widths[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(widths[0], config.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in ``sample`` (B, C, H, W) at ``timestep`` (an int, or shape () / (1,) / (B,)) for the
        classes ``class_labels`` (B,); returns (B, out_channels, H, W)."""
        # 0. Inputs.
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0
        t = timestep if isinstance(timestep, torch.Tensor) else torch.tensor([timestep], device=sample.device)
        t = t.reshape(-1).to(sample.device)
        t = t * torch.ones(sample.shape[0], dtype=t.dtype, device=t.device)  # (B,)

        # 1. Embedding of t (and y): (B, E).
        width = self.config.block_out_channels[0]
        t_emb = timestep_embedding(t, width, flip_sin_to_cos=self.config.flip_sin_to_cos,
                                   freq_shift=self.config.freq_shift).to(self.dtype)
        emb = self.time_embedding(t_emb)
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels are required: this UNet is class-conditional")
            emb = emb + self.class_embedding(class_labels).to(self.dtype)
        elif class_labels is not None:
            raise ValueError("class_labels given to a UNet without class embeddings")

        # 2. Down, keeping every intermediate for the skips.
        x = self.conv_in(sample)
        skips = [x]
        for down in self.down_blocks:
            x, level_skips = down(x, emb)
            skips.extend(level_skips)

        # 3. Middle, 4. up (each level pops the skips it concatenates).
        if self.mid_block is not None:
            x = self.mid_block(x, emb)
        for up in self.up_blocks:
            x = up(x, skips, emb)

        # 5. Out.
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # type: ignore[no-any-return]
