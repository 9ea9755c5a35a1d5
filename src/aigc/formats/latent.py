"""The GAN and VAE format (``aigc.gan``, ``aigc.vae``): what :func:`aigc.train.train_gan` / ``train_vae`` export
and the ``gan``, ``vae`` and ``walk`` backends load::

    model-dir/
        config.json         {"format": "aigc.gan" | "aigc.vae", "version": 1,
                             "config": {...StyleGANConfig or VAEConfig fields...},
                             "classes": [{"id": 0, "name": "t-shirt", "phrases": ["tee", ...]}, ...],
                             "defaults": {"truncation": 0.7}}
        model.safetensors   the generator's (or the VAE's) weights, float32 or float16

Example:
    >>> from aigc.models import StyleGANConfig, StyleGANGenerator
    >>> save(tmp / "gan", StyleGANGenerator(StyleGANConfig(resolution=8, widths=(16, 8))))  # doctest: +SKIP
    >>> detect(tmp / "gan"), load(tmp / "gan", "gan").resolution  # doctest: +SKIP
    ('gan', 8)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from aigc.errors import ModelNotFound
from aigc.formats import _folder
from aigc.formats.classes import ClassTable

if TYPE_CHECKING:
    from aigc.models import ConvVAE, StyleGANGenerator

__all__ = ["FORMATS", "VERSION", "LatentFile", "detect", "load", "save"]

Kind = Literal["gan", "vae"]
FORMATS: dict[Kind, str] = {"gan": "aigc.gan", "vae": "aigc.vae"}
VERSION = 1


@dataclass
class LatentFile(_folder.NetShape):
    """A loaded GAN generator or VAE.

    Attributes:
        kind: ``"gan"`` or ``"vae"``.
        net: the ``StyleGANGenerator`` or ``ConvVAE``, on its device, in eval mode, gradients off.
        table: the classes and their prompt phrases (``None`` for an unconditional model).
        defaults: request defaults from ``config.json`` (``truncation``).
        weights: the fingerprint of the weight file (for provenance).
    """

    kind: Kind
    net: Any
    table: ClassTable | None
    defaults: dict[str, Any] = field(default_factory=dict)
    weights: str = ""

    @property
    def z_dim(self) -> int:
        return int(self.net.cfg.z_dim if self.kind == "gan" else self.net.cfg.latent_dim)


def detect(path: Path) -> Kind | None:
    """``"gan"`` or ``"vae"`` when ``path/config.json`` declares one of these formats, else ``None``."""
    for kind, fmt in FORMATS.items():
        if _folder.read_config(path, fmt) is not None:
            return kind
    return None


def _kind_of(net: torch.nn.Module) -> Kind:
    from aigc.models import ConvVAE, StyleGANGenerator

    if isinstance(net, StyleGANGenerator):
        return "gan"
    if isinstance(net, ConvVAE):
        return "vae"
    raise TypeError(f"not a StyleGANGenerator or ConvVAE: {type(net).__name__}")


def save(out: str | os.PathLike[str], net: StyleGANGenerator | ConvVAE, *, classes: Sequence[Mapping[str, Any]] = (),
         defaults: Mapping[str, Any] | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``net`` (a ``StyleGANGenerator`` or ``ConvVAE``) as a model folder.

    Args:
        out: the folder (created when missing; other files in it are left alone).
        classes: one entry per class of ``net`` (:func:`aigc.formats.classes.entries`).
        defaults: request defaults (``truncation``).
        dtype: the stored weights' dtype (``torch.float16`` halves the file).
    """
    kind = _kind_of(net)
    config = {"format": FORMATS[kind], "version": VERSION, "config": net.cfg.to_dict(),
              "classes": [dict(c) for c in classes], "defaults": dict(defaults or {})}
    return _folder.write(out, config, net.state_dict(), dtype=dtype)


def load(path: str | os.PathLike[str], kind: Kind, *, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> LatentFile:
    """Load a ``kind`` model folder onto ``device`` in ``dtype``.

    Raises:
        ModelNotFound: not a ``kind`` folder (a folder of the other kind names the backend to use), or the config
            and weights do not fit. UnsafeModelFile: only pickle weights.
    """
    from aigc.models import ConvVAE, StyleGANConfig, StyleGANGenerator, VAEConfig

    found = detect(Path(path))
    if found is not None and found != kind:
        raise ModelNotFound(f"{path} is a {found} model. Fix: pass backend={found!r}")
    folder, data, state, weights = _folder.open_model(path, FORMATS[kind], f"{kind} model",
                                                      f"pass a directory written by aigc.train.train_{kind}")
    with _folder.parsing(folder, kind):
        if kind == "gan":
            cfg: Any = StyleGANConfig.from_dict(data["config"])
            net: Any = StyleGANGenerator(cfg)
        else:
            cfg = VAEConfig.from_dict(data["config"])
            net = ConvVAE(cfg)
        entries = data.get("classes") or []
        table = ClassTable.from_entries(entries) if entries else None
        defaults = dict(data.get("defaults") or {})
    if (table is not None and len(table.names) != cfg.num_classes) or (table is None and cfg.num_classes):
        raise ModelNotFound(f"{folder}: the network has {cfg.num_classes} classes, {_folder.CONFIG_FILE} names "
                            f"{len(table.names) if table else 0}. Fix: export the model and its classes together")
    _folder.load_state(net, state, folder, dtype)
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LatentFile(kind, net, table, defaults, weights)
