"""The small CNN whose penultimate features are aigc's default, offline extractor for FID, KID and precision/recall.

The default extractor is a classifier trained on 32x32 grayscale Fashion-MNIST and MNIST (20 classes: 10
garments, then the digits 0-9), the domain of aigc's embedded image model; its weights ship in the wheel at
``aigc/assets/fid_classifier/{config.json,model.safetensors}`` (written by :func:`save_classifier`). It is
not Inception: scores computed with it are comparable with each other, not with published FID numbers.

The architecture, top to bottom (default config)::

    (B, 1, 32, 32) in [-1, 1]
    stage 1: conv3x3 1->32, BatchNorm, ReLU, max-pool 2     (B, 32, 16, 16)
    stage 2: conv3x3 32->64, BatchNorm, ReLU, max-pool 2    (B, 64, 8, 8)
    neck:    flatten, dropout, linear 4096->128, ReLU       (B, 128)   <- the features
    head:    linear 128->20                                 (B, 20)    logits, for training only

Parameter names follow ``scripts/eval_image_default.py``'s ``SmallCNN`` (``body.*``, ``neck.2.*``, ``head.*``),
so ``SmallCNNConfig(stages=((32,), (64,), (128, 128)))`` loads that script's state dict as is.

Example:
    >>> from aigc.evaluate import SmallCNN, SmallCNNConfig, save_classifier, load_classifier
    >>> model = SmallCNN(SmallCNNConfig())                     # train it, then:
    >>> save_classifier(model, "src/aigc/assets/fid_classifier")  # doctest: +SKIP
    >>> load_classifier("src/aigc/assets/fid_classifier").features  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from aigc.errors import InvalidRequest, ModelNotFound

__all__ = ["DEFAULT_CLASSIFIER_DIR", "SmallCNN", "SmallCNNConfig", "load_classifier", "load_default_classifier",
           "save_classifier"]

logger = logging.getLogger(__name__)

#: Where the default extractor's weights ship inside the package.
DEFAULT_CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "assets" / "fid_classifier"
_ARCHITECTURE = "SmallCNN"
_FORMAT = 1


@dataclass(frozen=True)
class SmallCNNConfig:
    """Hyper-parameters of :class:`SmallCNN`; saved as ``config.json`` next to the weights.

    Example:
        >>> SmallCNNConfig().feature_dim
        128
    """

    in_channels: int = 1  # 1: images are converted to grayscale ("L"); 3: to RGB
    image_size: int = 32  # images are resized to image_size x image_size (bilinear) when they differ
    stages: tuple[tuple[int, ...], ...] = ((32,), (64,))  # conv3x3 widths per stage; each stage ends in a max-pool 2
    feature_dim: int = 128  # width of the penultimate layer: the features FID/KID/precision-recall compare
    num_classes: int = 20  # 10 Fashion-MNIST classes, then the digits 0-9
    batch_norm: bool = True  # BatchNorm after every conv (uses running statistics at evaluation)
    dropout: float = 0.3  # before the feature layer; active in training only

    def __post_init__(self) -> None:
        for name in ("in_channels", "image_size", "feature_dim", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(name, value, "must be an int >= 1", f"pass {name}={getattr(SmallCNNConfig, name)}")
        if self.in_channels not in (1, 3):
            raise InvalidRequest("in_channels", self.in_channels, "must be 1 (grayscale) or 3 (RGB)",
                                 "pass in_channels=1")
        stages = tuple(tuple(int(w) for w in s) for s in self.stages)
        if not stages or any(not s or min(s) < 1 for s in stages):
            raise InvalidRequest("stages", self.stages, "needs at least one stage of positive conv widths",
                                 "pass stages=((32,), (64,))")
        object.__setattr__(self, "stages", stages)  # lists from JSON become tuples
        if self.image_size % 2 ** len(stages):
            raise InvalidRequest("image_size", self.image_size, f"must be divisible by 2**{len(stages)} (one max-pool "
                                 "per stage)", f"pass image_size={2 ** len(stages) * 8}")
        if not 0 <= self.dropout < 1:
            raise InvalidRequest("dropout", self.dropout, "must be in [0, 1)", "pass dropout=0.3")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [list(s) for s in self.stages]
        return {"architecture": _ARCHITECTURE, "format": _FORMAT, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmallCNNConfig:
        data = dict(data)
        arch = data.pop("architecture", _ARCHITECTURE)
        data.pop("format", None)
        if arch != _ARCHITECTURE:
            raise InvalidRequest("architecture", arch, f"this config is not a {_ARCHITECTURE}",
                                 "point to a directory written by aigc.evaluate.save_classifier")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest("config", unknown, "unknown SmallCNN config keys",
                                 f"keep only {', '.join(sorted(known))}")
        return cls(**data)


class SmallCNN(nn.Module):
    """A small convolutional classifier; :meth:`features` gives the penultimate layer (see the module docs).

    Example:
        >>> model = SmallCNN().eval()
        >>> model.features(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 128])
    """

    def __init__(self, config: SmallCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SmallCNNConfig()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for stage in config.stages:
            for width in stage:
                layers.append(nn.Conv2d(channels, width, 3, padding=1))
                if config.batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
            layers.append(nn.MaxPool2d(2))  # halves the side
        self.body = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(config.stages)
        self.neck = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout),
                                  nn.Linear(channels * side * side, config.feature_dim), nn.ReLU())
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [-1, 1] -> (B, feature_dim) penultimate features."""
        return self.neck(self.body(x))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [-1, 1] -> (B, num_classes) logits."""
        return self.head(self.features(x))  # type: ignore[no-any-return]

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> (B, C, S, S) float32 in [-1, 1]: grayscale or RGB, resized to ``image_size``."""
        mode = "L" if self.config.in_channels == 1 else "RGB"
        size = (self.config.image_size, self.config.image_size)
        arrays = []
        for im in images:
            im = im.convert(mode)
            if im.size != size:
                im = im.resize(size, Image.Resampling.BILINEAR)
            arrays.append(np.asarray(im, dtype=np.uint8).reshape(size[1], size[0], -1))  # (S, S, C)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (B, C, S, S) uint8
        return batch.float() / 127.5 - 1.0


def save_classifier(model: SmallCNN, path: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` to the directory ``path``.

    Args:
        model: the trained classifier.
        path: a directory (created when missing).

    Returns:
        The directory.

    Raises:
        InvalidRequest: ``model`` is not a :class:`SmallCNN`.

    Example:
        >>> save_classifier(model, "src/aigc/assets/fid_classifier")  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    if not isinstance(model, SmallCNN):
        raise InvalidRequest("model", type(model).__name__, "not a SmallCNN", "pass an aigc.evaluate.SmallCNN")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def load_classifier(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> SmallCNN:
    """Load a classifier written by :func:`save_classifier`, in evaluation mode.

    Args:
        path: the directory holding ``config.json`` and ``model.safetensors``.
        device: where to put it.

    Returns:
        The :class:`SmallCNN`, in ``eval()`` mode.

    Raises:
        ModelNotFound: either file is missing.
        InvalidRequest: the config or the weights do not describe a SmallCNN.

    Example:
        >>> model = load_classifier("my-classifier")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    root = Path(path)
    config_file, weights_file = root / "config.json", root / "model.safetensors"
    missing = [p.name for p in (config_file, weights_file) if not p.is_file()]
    if missing:
        raise ModelNotFound(f"extractor={os.fspath(path)!r}: no {' or '.join(missing)} there. Fix: pass a directory "
                            "written by aigc.evaluate.save_classifier")
    try:
        config = SmallCNNConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as e:
        if isinstance(e, InvalidRequest):
            raise
        raise InvalidRequest("extractor", os.fspath(config_file), f"unreadable classifier config ({e})",
                             "write it again with aigc.evaluate.save_classifier") from None
    model = SmallCNN(config)
    try:
        model.load_state_dict(load_file(os.fspath(weights_file)))
    except (OSError, RuntimeError) as e:
        raise InvalidRequest("extractor", os.fspath(weights_file), f"weights do not fit the config ({e})",
                             "save the model and its config together with aigc.evaluate.save_classifier") from None
    return model.to(device).eval()


@functools.lru_cache(maxsize=1)
def load_default_classifier() -> SmallCNN:
    """The default feature extractor shipped with aigc (loaded once per process, on the CPU).

    Raises:
        ModelNotFound: this installation ships no default classifier weights.
    """
    if not (DEFAULT_CLASSIFIER_DIR / "model.safetensors").is_file():
        raise ModelNotFound(
            f"the default image feature extractor is not installed (no config.json and model.safetensors in "
            f"{DEFAULT_CLASSIFIER_DIR}). Fix: pass extractor= (a callable mapping a list of PIL images to an "
            "(N, D) array, a torch.nn.Module, or a directory written by aigc.evaluate.save_classifier)")
    logger.info("loading the default image feature extractor from %s", DEFAULT_CLASSIFIER_DIR)
    return load_classifier(DEFAULT_CLASSIFIER_DIR)
