"""Pre-training recipes for aigc's own image models: a StyleGAN2-style GAN, a convolutional VAE, a small DDPM.

    >>> from aigc.train import train_gan
    >>> res = train_gan("data/shapes", out="runs/gan", steps=2000)  # doctest: +SKIP
    >>> aigc.generate("image", "a circle", model="runs/gan", backend="gan", seed=1)  # doctest: +SKIP

``data`` is a folder of images (one sub-folder per class, or images directly in it for an unconditional
model) or an array of images (N, H, W) / (N, H, W, C), uint8 or floats in [0, 1], with ``labels=`` for a
class-conditional model. The output directory is what the ``gan`` and ``vae`` image backends load::

    out/
        config.json         {"format": "aigc.gan" | "aigc.vae", "version": 1, "config": {...},
                             "classes": [{"id": 0, "name": "circle", "phrases": [...]}, ...], "defaults": {...}}
        model.safetensors   the weights (the generator's EMA for a GAN), float32 or float16
        training.json       how the run went (losses, seed, time); its presence marks a finished run
        checkpoints/        step-NNNNNN/ folders written atomically during the run

Reproducibility follows the fine-tuning recipes (see ``aigc.train._common``): every random draw of step
``s`` (the batch, latents, noise, style-mixing cut) comes from a generator seeded with
``derive_seed(seed, "step", s)``, so resuming from a checkpoint gives the same losses as an uninterrupted run.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import InvalidRequest
from aigc.formats.classes import entries as class_entries
from aigc.train._common import (
    FinetuneResult,
    LoopSpec,
    TrainStep,
    _checkpoints,
    _write_json,
    check_bool,
    check_float,
    check_hooks,
    check_int,
    check_out,
    check_run_config,
    check_seed,
    derive_seed,
    load_optimizer,
    prepare_out,
    progress_bar,
    resolve_resume,
    run_loop,
    save_optimizer,
    write_checkpoint_dir,
    write_result,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from aigc.models.stylegan import StyleGANConfig
    from aigc.models.vae import VAEConfig

__all__ = ["ImageSet", "PretrainResult", "load_image_set", "train_diffusion", "train_gan", "train_vae"]

logger = logging.getLogger(__name__)

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_DATA_FIX = ("pass a folder of images (one sub-folder per class), or an array (N, H, W) or (N, H, W, C) "
             "with labels=")
ExportDtype = Literal["float32", "float16"]


def _export_dtype(name: ExportDtype) -> torch.dtype:
    import torch

    return torch.float16 if name == "float16" else torch.float32


@dataclass(repr=False)
class PretrainResult(FinetuneResult):
    """What a pre-training run produced: a :class:`FinetuneResult` with every loss series by name.

    ``method`` is ``"gan"`` or ``"vae"``; ``train_losses`` is the generator's loss (GAN) or the negative
    ELBO per image in nats (VAE); ``losses`` holds all series (``d_loss``, ``g_loss``, ``r1`` every
    ``r1_every`` steps; ``loss``, ``reconstruction``, ``kl``).

    Example:
        >>> res = train_gan(images, out="runs/gan", labels=labels, steps=100)  # doctest: +SKIP
        >>> len(res.losses["d_loss"])  # doctest: +SKIP
        100
    """

    losses: dict[str, list[float]] = field(default_factory=dict)


# -- data ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSet:
    """Training images as one tensor, with their classes.

    Attributes:
        pixels: (N, C, R, R) float32 in [-1, 1].
        labels: (N,) int64 class ids, or ``None`` for an unlabelled set.
        class_names: the name of each class id (empty when unlabelled).
    """

    pixels: torch.Tensor
    labels: torch.Tensor | None
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_folder(folder: Path, channels: int | None) -> tuple[np.ndarray, list[int] | None, list[str]]:
    import numpy as np
    from PIL import Image

    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, _folder_images(d)) for d in subdirs if _folder_images(d)]
    flat = _folder_images(folder)
    if groups and flat:
        raise InvalidRequest("data", os.fspath(folder), "holds both images and class sub-folders",
                             "put every image in a class sub-folder, or use no sub-folders at all")
    files: list[tuple[int | None, Path]] = (
        [(None, p) for p in flat] if not groups else [(i, p) for i, (_, ps) in enumerate(groups) for p in ps])
    if not files:
        raise InvalidRequest("data", os.fspath(folder), "the folder holds no images",
                             f"put images ({', '.join(_IMAGE_SUFFIXES)}) in it, one sub-folder per class")
    arrays, size = [], None
    for _cls, path in files:
        try:
            with Image.open(path) as img:
                mode = "L" if (channels or (1 if img.mode in ("L", "1", "I", "I;16") else 3)) == 1 else "RGB"
                channels = 1 if mode == "L" else 3
                arr = np.asarray(img.convert(mode), dtype=np.uint8)
        except (OSError, ValueError) as e:
            raise InvalidRequest("data", os.fspath(path), f"cannot read the image ({e})",
                                 "remove or replace the file") from None
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise InvalidRequest("data", os.fspath(path), f"is {arr.shape[1]}x{arr.shape[0]}, the first image "
                                 f"{size[1]}x{size[0]}", "resize all images to one square size")
        arrays.append(arr)
    labels = [int(i or 0) for i, _ in files] if groups else None
    return np.stack(arrays), labels, [name for name, _ in groups]


def load_image_set(data: Any, *, labels: Sequence[int] | None = None, class_names: Sequence[str] | None = None,
                   resolution: int | None = None) -> ImageSet:
    """Read and check a training set (see the module docstring); nothing is trained.

    Raises:
        InvalidRequest: an empty or unreadable set, mixed sizes, a size that is not ``resolution`` or a power
            of two, labels of the wrong length or out of range, or class names that do not match the labels.

    Example:
        >>> import numpy as np
        >>> s = load_image_set(np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1])
        >>> s.pixels.shape, s.class_names
        (torch.Size([4, 1, 8, 8]), ('0', '1'))
    """
    import numpy as np
    import torch

    names: list[str]
    if isinstance(data, (str, os.PathLike)):
        folder = Path(os.fspath(data))
        if not folder.is_dir():
            raise InvalidRequest("data", os.fspath(data), "no such directory", _DATA_FIX)
        if labels is not None:
            raise InvalidRequest("labels", "...", "a folder's classes come from its sub-folders",
                                 "drop labels=, or pass the images as an array")
        array, folder_labels, names = _read_folder(folder, None)
        labels = folder_labels
        if class_names is not None:
            raise InvalidRequest("class_names", list(class_names), "a folder's classes are its sub-folder names",
                                 "rename the sub-folders, or pass the images as an array")
    else:
        if isinstance(data, torch.Tensor):
            data = data.detach().cpu().numpy()
        if not isinstance(data, np.ndarray):
            raise InvalidRequest("data", type(data).__name__, "is not a folder or an array of images", _DATA_FIX)
        array = data
        names = []
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[0] == 0 or array.shape[-1] not in (1, 3):
        raise InvalidRequest("data", f"array of shape {tuple(array.shape)}",
                             "must hold one or more images, (N, H, W) or (N, H, W, C) with C = 1 or 3", _DATA_FIX)
    n, h, w, _channels = array.shape
    if h != w or h & (h - 1) or h < 4:
        raise InvalidRequest("data", f"{w}x{h} images", "must be square with a power-of-two side >= 4",
                             "pad or resize the images, e.g. 28x28 -> 32x32 with np.pad")
    if resolution is not None and h != resolution:
        raise InvalidRequest("data", f"{w}x{h} images", f"the model's config wants {resolution}x{resolution}",
                             f"resize the images to {resolution}x{resolution}, or pass a config with resolution={h}")
    if array.dtype == np.uint8:
        pixels = torch.from_numpy(np.ascontiguousarray(array)).float() / 127.5 - 1
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise InvalidRequest("data", f"{array.dtype} array", "float pixels must be finite and in [0, 1]",
                                 "scale the images to [0, 1], or pass uint8")
        pixels = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) * 2 - 1
    else:
        raise InvalidRequest("data", f"{array.dtype} array", "pixels must be uint8 or floats", _DATA_FIX)
    pixels = pixels.permute(0, 3, 1, 2).contiguous()  # (N, C, R, R)

    label_tensor = None
    if labels is not None:
        label_list = list(labels)
        if len(label_list) != n:
            raise InvalidRequest("labels", f"{len(label_list)} labels", f"the data has {n} images",
                                 "pass one class id per image")
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0 for x in label_list):
            raise InvalidRequest("labels", "...", "every label must be an int >= 0", "pass class ids 0, 1, 2, ...")
        label_tensor = torch.tensor([int(x) for x in label_list], dtype=torch.long)
        count = int(label_tensor.max()) + 1
        if class_names is not None:
            names = [str(x) for x in class_names]
            if len(names) < count or len(set(names)) != len(names):
                raise InvalidRequest("class_names", names, f"needs {count} distinct names (labels go up to "
                                     f"{count - 1})", "pass one distinct name per class id")
        elif not names:
            names = [str(i) for i in range(count)]
        missing = sorted(set(range(len(names))) - set(label_tensor.tolist()))
        if missing:
            raise InvalidRequest("labels", f"classes {missing[:5]}", "have no images",
                                 "give every class at least one image, or renumber the classes")
    elif class_names is not None:
        raise InvalidRequest("class_names", list(class_names), "needs labels=", "pass labels= with the class names")
    return ImageSet(pixels, label_tensor, tuple(names))


def _draw_indices(gen: torch.Generator, data: ImageSet, batch: int, balance: bool,
                  by_class: list[torch.Tensor] | None) -> torch.Tensor:
    """``batch`` random image indices: uniform over images, or a uniform class then an image of it."""
    import torch

    if balance and by_class is not None:
        classes = torch.randint(len(by_class), (batch,), generator=gen)
        picks = torch.rand(batch, generator=gen)
        return torch.stack([by_class[k][int(p * len(by_class[k]))] for k, p in zip(classes.tolist(), picks.tolist(),
                                                                                  strict=True)])
    return torch.randint(data.pixels.shape[0], (batch,), generator=gen)


def _classes_json(names: Sequence[str], phrases: Mapping[str, Sequence[str]] | None) -> list[dict[str, Any]]:
    unknown = sorted(set(phrases or {}) - set(names))
    if unknown:
        raise InvalidRequest("class_phrases", unknown, "names classes the data does not have",
                             f"use the class names {list(names)[:8]}")
    return class_entries(names, phrases)


# -- shared checks ----------------------------------------------------------------------------------------
def _check_common(steps: Any, batch_size: Any, lr: Any, checkpoint_every: Any, progress: Any, on_step: Any,
                  export_dtype: Any, balance_classes: Any, mixed_precision: Any) -> None:
    check_int("steps", steps, minimum=1, fix="pass steps=1000 or more")
    check_int("batch_size", batch_size, minimum=2, fix="pass batch_size=32")
    check_float("lr", lr, low=0.0, low_open=True, high=1.0, fix="pass lr=0.002")
    check_int("checkpoint_every", checkpoint_every, minimum=1, fix="pass checkpoint_every=500 or None",
              allow_none=True)
    check_hooks(progress, on_step)
    if export_dtype not in ("float32", "float16"):
        raise InvalidRequest("export_dtype", export_dtype, "unknown dtype", "pass 'float32' or 'float16'")
    check_bool("balance_classes", balance_classes)
    check_bool("mixed_precision", mixed_precision)


def _device(device: Any) -> torch.device:
    from aigc._runtime.device import check_device_spec, resolve_device

    check_device_spec(device)
    return resolve_device(device)


def _check_fit(config: StyleGANConfig | VAEConfig, data: ImageSet, balance_classes: bool) -> None:
    """The model's channels and classes match the data's; class balancing needs classes."""
    channels = data.pixels.shape[1]
    if config.channels != channels or config.num_classes != data.num_classes:
        raise InvalidRequest("config", f"channels={config.channels}, num_classes={config.num_classes}",
                             f"the data has {channels} channel(s) and {data.num_classes} class(es)",
                             f"pass config with channels={channels}, num_classes={data.num_classes}")
    if balance_classes and data.labels is None:
        raise InvalidRequest("balance_classes", True, "the data has no classes", "pass labels=, or drop it")


# -- checkpoints of several networks and optimizers (GAN, diffusion) -----------------------------------
@dataclass
class _ModuleRun:
    """The checkpointed state of a run that trains several networks with their own optimizers.

    A checkpoint holds every module's state dict (``modules.safetensors``, keys prefixed by the module's name),
    each optimizer (``NAME.safetensors`` + ``NAME.json``) and ``state.json`` (step, loss history, seconds
    trained, the run configuration), written with :func:`write_checkpoint_dir`.
    """

    out: Path
    steps: int
    config: Mapping[str, Any]
    modules: Mapping[str, torch.nn.Module]
    optimizers: Mapping[str, torch.optim.Optimizer]
    checkpoint_every: int | None
    start: int = 0
    previous_s: float = 0.0
    began: float = field(default_factory=time.perf_counter)

    @property
    def duration_s(self) -> float:
        """Seconds spent training, summed over resumed sessions."""
        return self.previous_s + time.perf_counter() - self.began

    def resume(self, path: Path | None, losses: dict[str, list[float]]) -> dict[str, list[float]]:
        """Restore the checkpoint at ``path`` (none: start afresh) and return the loss history to continue."""
        if path is None:
            return losses
        from safetensors.torch import load_file

        state: dict[str, Any] = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if not (path / "modules.safetensors").is_file():
            raise InvalidRequest("resume", str(path), "is not a checkpoint of this recipe (no modules.safetensors)",
                                 "resume from a checkpoint the same recipe wrote")
        check_run_config(path, state.get("config", {}), self.config)
        tensors = load_file(path / "modules.safetensors")
        for name, module in self.modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in self.optimizers.items():
            load_optimizer(opt, path, name)
        self.start, self.previous_s = int(state["step"]), float(state["duration_s"])
        if self.start >= self.steps:
            raise InvalidRequest("resume", str(path), f"the checkpoint is at step {self.start}, the end of the run",
                                 "pass more steps for a new run, or resume=False")
        self.began = time.perf_counter()
        return {k: [float(x) for x in v] for k, v in state["losses"].items()}

    def step_done(self, done: int, losses: Mapping[str, list[float]]) -> None:
        """After step ``done`` (1-based): write a checkpoint when one is due (never after the last step)."""
        if not (self.checkpoint_every and done % self.checkpoint_every == 0 and done < self.steps):
            return
        from safetensors.torch import save_file

        state = {"step": done, "losses": dict(losses), "duration_s": self.duration_s, "config": dict(self.config)}

        def write(tmp: Path) -> None:
            save_file({f"{name}.{k}": v.detach().to("cpu").contiguous()
                       for name, m in self.modules.items() for k, v in m.state_dict().items()},
                      tmp / "modules.safetensors")
            for name, opt in self.optimizers.items():
                save_optimizer(opt, tmp, name)
            _write_json(tmp / "state.json", state)

        logger.info("step %d: checkpoint %s", done, write_checkpoint_dir(self.out, done, write))


def train_gan(
    data: Any,
    out: str | os.PathLike[str],
    *,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    class_phrases: Mapping[str, Sequence[str]] | None = None,
    config: StyleGANConfig | None = None,
    steps: int = 10_000,
    batch_size: int = 32,
    lr: float = 0.002,
    r1_gamma: float = 0.1,
    r1_every: int = 16,
    style_mixing_prob: float = 0.9,
    class_loss_weight: float = 1.0,
    ema_kimg: float = 10.0,
    ema_rampup: float | None = 0.05,
    balance_classes: bool = False,
    truncation: float = 0.7,
    seed: int | None = 0,
    checkpoint_every: int | None = 500,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    mixed_precision: bool = False,
    export_dtype: ExportDtype = "float32",
    device: str = "cpu",
    progress: bool | None = None,
    on_step: Callable[[TrainStep], object] | None = None,
) -> PretrainResult:
    """Train a StyleGAN2-style GAN (:mod:`aigc.models.stylegan`) and export it for the ``gan`` image backend.

    Each step: one discriminator update on a real batch and as many fakes (non-saturating logistic loss,
    with the R1 gradient penalty on reals every ``r1_every`` steps, lazily scaled as in StyleGAN2), then one
    generator update; the exported generator is an exponential moving average of the trained one
    (half-life ``ema_kimg`` thousand images, ramped up over the first steps), and ``w_avg`` (the mean w per
    class, used by truncation) is tracked on it. Adam with betas (0, 0.99), as StyleGAN2.

    Args:
        data: a folder (one sub-folder per class) or an array; see the module docstring.
        out: the output directory (checkpoints go to ``out/checkpoints``).
        labels, class_names: class ids per image and their names, for an array.
        class_phrases: extra prompt phrases per class name (``{"sneaker": ["trainer", "running shoe"]}``).
        config: the architecture; by default one sized for ``data`` (width 128 down to 32).
        steps, batch_size, lr: the schedule (constant learning rate).
        r1_gamma, r1_every: R1 weight and interval; ``r1_gamma=0`` turns it off.
        style_mixing_prob: share of batches trained with two latents (style mixing regularisation).
        class_loss_weight: for a conditional model, the weight of the auxiliary classifier's cross-entropy:
            D learns to classify real images, G to make fakes that D classifies as the class asked for
            (AC-GAN, Odena et al. 2017, with the classifier trained on real images only). It makes class
            fidelity arrive far sooner; 0 leaves the projection discriminator alone.
        ema_kimg, ema_rampup: EMA half-life in thousands of images, and its ramp-up fraction (None: none).
        balance_classes: draw a class uniformly, then an image of it (for unbalanced sets).
        truncation: the default truncation written to ``config.json`` for the backend.
        seed: the run's seed; ``None`` draws one from the OS.
        checkpoint_every, resume, overwrite: checkpoints (see :func:`aigc.train.finetune_text`).
        mixed_precision: bfloat16 autocast for the forward passes (faster on recent CPUs and GPUs).
        export_dtype: ``"float16"`` halves the file.
        device: where to train.
        progress, on_step: a tqdm bar; a callback after each step.

    Returns:
        A :class:`PretrainResult`; ``output`` is ``out``.

    Raises:
        InvalidRequest: bad data or hyper-parameters, before anything trains.

    Example:
        >>> res = train_gan("data/shapes", out="runs/gan", steps=2000, seed=0)  # doctest: +SKIP
        >>> aigc.load("image", "runs/gan", backend="gan")  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from aigc.models.stylegan import StyleGANConfig, StyleGANDiscriminator, StyleGANGenerator

    _check_common(steps, batch_size, lr, checkpoint_every, progress, on_step, export_dtype, balance_classes,
                  mixed_precision)
    check_float("r1_gamma", r1_gamma, low=0.0, fix="pass r1_gamma=0.1 (or 0 to turn R1 off)")
    check_int("r1_every", r1_every, minimum=1, fix="pass r1_every=16")
    check_float("style_mixing_prob", style_mixing_prob, low=0.0, high=1.0, fix="pass style_mixing_prob=0.9")
    check_float("class_loss_weight", class_loss_weight, low=0.0, fix="pass class_loss_weight=1.0 (0 turns it off)")
    check_float("ema_kimg", ema_kimg, low=0.0, fix="pass ema_kimg=10")
    check_float("ema_rampup", ema_rampup, low=0.0, low_open=True, high=1.0, fix="pass ema_rampup=0.05 or None",
                allow_none=True)
    check_float("truncation", truncation, low=0.0, high=1.0, fix="pass truncation=0.7")
    if config is not None and not isinstance(config, StyleGANConfig):
        raise InvalidRequest("config", type(config).__name__, "must be a StyleGANConfig",
                             "pass aigc.models.StyleGANConfig(...) or None")
    run_seed = check_seed(seed)
    out_path = check_out(out, resume=resume, overwrite=overwrite)
    dev = _device(device)
    dataset = load_image_set(data, labels=labels, class_names=class_names,
                             resolution=config.resolution if config is not None else None)
    classes = _classes_json(dataset.class_names, class_phrases)
    res, channels = dataset.pixels.shape[-1], dataset.pixels.shape[1]
    if config is None:
        levels = int(math.log2(res)) - 1
        widths = tuple(max(32, 128 // 2 ** max(0, i - 1)) for i in range(levels))
        config = StyleGANConfig(resolution=res, channels=channels, widths=widths, num_classes=dataset.num_classes)
    _check_fit(config, dataset, balance_classes)

    run_config = {
        "recipe": "gan", "model": config.to_dict(), "data": _fingerprint(dataset), "steps": steps,
        "batch_size": batch_size, "lr": lr, "r1_gamma": r1_gamma, "r1_every": r1_every,
        "style_mixing_prob": style_mixing_prob, "class_loss_weight": class_loss_weight, "ema_kimg": ema_kimg,
        "ema_rampup": ema_rampup,
        "balance_classes": balance_classes, "seed": run_seed, "mixed_precision": mixed_precision,
    }
    resume_from = resolve_resume(out_path, resume)
    prepare_out(out_path, overwrite=overwrite)

    with torch.random.fork_rng(devices=[]):  # initial weights: from the run's seed, not the caller's RNG
        torch.manual_seed(derive_seed(run_seed, "init"))
        g_net, d_net = StyleGANGenerator(config), StyleGANDiscriminator(config)
    g_ema = copy.deepcopy(g_net).eval().requires_grad_(False)
    g_net, d_net, g_ema = g_net.to(dev), d_net.to(dev), g_ema.to(dev)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    r1_mb = r1_every / (r1_every + 1)  # lazy regularisation: adjust D's Adam (StyleGAN2, appendix B)
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr * r1_mb, betas=(0.0, 0.99 ** r1_mb), eps=1e-8)
    run = _ModuleRun(out_path, steps, run_config, {"G": g_net, "D": d_net, "G_ema": g_ema},
                     {"opt_g": opt_g, "opt_d": opt_d}, checkpoint_every)
    losses = run.resume(resume_from, {"d_loss": [], "g_loss": [], "r1": [], "d_class": [], "g_class": []})
    use_classes = class_loss_weight > 0 and dataset.labels is not None

    pixels = dataset.pixels.to(dev)
    labels_t = dataset.labels.to(dev) if dataset.labels is not None else None
    by_class = ([torch.nonzero(dataset.labels == k).squeeze(1) for k in range(dataset.num_classes)]
                if dataset.labels is not None else None)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mixed_precision)
    num_ws = config.num_ws

    def latents(gen: torch.Generator, c: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = torch.randn(batch_size, config.z_dim, generator=gen).to(dev)
        ws = g_net.map(z, c)
        if torch.rand((), generator=gen) < style_mixing_prob:
            cut = int(torch.randint(1, num_ws, (), generator=gen))
            z2 = torch.randn(batch_size, config.z_dim, generator=gen).to(dev)
            ws = torch.cat([ws[:, :cut], g_net.map(z2, c)[:, cut:]], dim=1)
        noise = [torch.randn(s, generator=gen).to(dev) for s in g_net.synthesis.noise_shapes(batch_size)]
        return ws, noise

    bar = progress_bar(progress, total=steps, initial=run.start, desc="train gan")
    run.began = time.perf_counter()  # training time starts here, not at set-up
    g_net.train(), d_net.train()
    try:
        for step in range(run.start, steps):
            gen = torch.Generator("cpu").manual_seed(derive_seed(run_seed, "step", step))
            idx = _draw_indices(gen, dataset, batch_size, balance_classes, by_class).to(dev)
            real = pixels[idx]
            c = labels_t[idx] if labels_t is not None else None

            # 1. discriminator: real -> 1, fake -> 0 (softplus form of the logistic loss)
            g_net.requires_grad_(False), d_net.requires_grad_(True)
            with torch.no_grad(), autocast:
                ws, noise = latents(gen, c)
                fake = g_net.synthesis(ws, noise)
            with autocast:
                real_logit, real_classes = d_net.forward_with_classes(real, c)
                d_loss = F.softplus(d_net(fake.float(), c)).mean() + F.softplus(-real_logit).mean()
                if use_classes and real_classes is not None and c is not None:
                    d_class = F.cross_entropy(real_classes.float(), c)
                    losses["d_class"].append(float(d_class.detach()))
                    d_loss = d_loss + class_loss_weight * d_class
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()  # type: ignore[no-untyped-call]
            r1_value = None
            if r1_gamma > 0 and step % r1_every == 0:  # R1 on reals, float32 (double backward)
                real_r1 = real.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(d_net(real_r1, c).sum(), real_r1, create_graph=True)
                penalty = grad.square().sum(dim=(1, 2, 3)).mean()
                (penalty * (r1_gamma / 2) * r1_every).backward()  # type: ignore[no-untyped-call]
                r1_value = float(penalty.detach())
            opt_d.step()

            # 2. generator: make D call fakes real (non-saturating loss)
            g_net.requires_grad_(True), d_net.requires_grad_(False)
            with autocast:
                ws, noise = latents(gen, c)
                fake_logit, fake_classes = d_net.forward_with_classes(g_net.synthesis(ws, noise).float(), c)
                g_loss = F.softplus(-fake_logit).mean()
                if use_classes and fake_classes is not None and c is not None:
                    g_class = F.cross_entropy(fake_classes.float(), c)
                    losses["g_class"].append(float(g_class.detach()))
                    g_loss = g_loss + class_loss_weight * g_class
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()  # type: ignore[no-untyped-call]
            opt_g.step()

            # 3. EMA of the generator and the running mean of w per class
            done = step + 1
            ema_nimg = ema_kimg * 1000
            if ema_rampup is not None:
                ema_nimg = min(ema_nimg, done * batch_size * ema_rampup)
            beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
            with torch.no_grad():
                for p_ema, p in zip(g_ema.parameters(), g_net.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - beta)
                z_avg = torch.randn(batch_size, config.z_dim, generator=gen).to(dev)
                g_ema.update_w_avg(g_ema.mapping(z_avg, c), c)

            values = (float(d_loss.detach()), float(g_loss.detach()))
            if not all(math.isfinite(v) for v in values):
                raise InvalidRequest("lr", lr, f"the losses became {values} at step {done}",
                                     "lower lr, raise r1_gamma, or resume from an earlier checkpoint")
            losses["d_loss"].append(values[0])
            losses["g_loss"].append(values[1])
            if r1_value is not None:
                losses["r1"].append(r1_value)
            run.step_done(done, losses)
            if bar is not None:
                bar.set_postfix(d=f"{values[0]:.3f}", g=f"{values[1]:.3f}", refresh=False)
                bar.update(1)
            if on_step is not None:
                on_step(TrainStep(done, steps, values[1], lr, None))
    finally:
        if bar is not None:
            bar.close()

    from aigc.formats import latent as latent_format

    latent_format.save(out_path, g_ema, classes=classes, defaults={"truncation": truncation},
                       dtype=_export_dtype(export_dtype))
    result = PretrainResult(
        output=out_path, method="gan", steps=steps, train_losses=losses["g_loss"], eval_losses={},
        duration_s=run.duration_s, seed=run_seed, train_examples=dataset.pixels.shape[0],
        eval_examples=0, resumed_from=run.start, checkpoints=_checkpoints(out_path), losses=losses)
    write_result(out_path, result, run_config)
    return result


# -- VAE ------------------------------------------------------------------------------------------------
def train_vae(
    data: Any,
    out: str | os.PathLike[str],
    *,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    class_phrases: Mapping[str, Sequence[str]] | None = None,
    config: VAEConfig | None = None,
    steps: int = 5_000,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float = 1.0,
    eval_fraction: float = 0.05,
    balance_classes: bool = False,
    truncation: float = 1.0,
    seed: int | None = 0,
    checkpoint_every: int | None = 500,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    mixed_precision: bool = False,
    export_dtype: ExportDtype = "float32",
    device: str = "cpu",
    progress: bool | None = None,
    on_step: Callable[[TrainStep], object] | None = None,
) -> PretrainResult:
    """Train a convolutional VAE (:mod:`aigc.models.vae`) and export it for the ``vae`` image backend.

    Minimises the negative ELBO (binary cross-entropy reconstruction + ``beta`` x KL) with AdamW and a cosine
    learning-rate schedule; ``eval_fraction`` of the images (a seeded split) is held out and its negative
    ELBO, with fixed noise, is the eval loss measured at each checkpoint and at the end.

    Args:
        data, labels, class_names, class_phrases: as :func:`train_gan`.
        config: the architecture; by default one sized for ``data``.
        beta: weight of the KL term.
        eval_fraction: share of images held out (0 for none; at least one image is kept for training).
        truncation: the default latent scale written to ``config.json`` for the backend.
        Others: as :func:`train_gan`.

    Returns:
        A :class:`PretrainResult`.

    Example:
        >>> res = train_vae(images, out="runs/vae", labels=labels, steps=3000)  # doctest: +SKIP
        >>> aigc.generate("image", "digit 3", model="runs/vae", backend="vae", seed=0)  # doctest: +SKIP
    """
    import torch

    from aigc.models.vae import ConvVAE, VAEConfig

    _check_common(steps, batch_size, lr, checkpoint_every, progress, on_step, export_dtype, balance_classes,
                  mixed_precision)
    check_float("beta", beta, low=0.0, fix="pass beta=1.0")
    check_float("eval_fraction", eval_fraction, low=0.0, high=0.5, fix="pass eval_fraction=0.05 (or 0)")
    check_float("truncation", truncation, low=0.0, high=2.0, fix="pass truncation=1.0")
    if config is not None and not isinstance(config, VAEConfig):
        raise InvalidRequest("config", type(config).__name__, "must be a VAEConfig",
                             "pass aigc.models.VAEConfig(...) or None")
    run_seed = check_seed(seed)
    out_path = check_out(out, resume=resume, overwrite=overwrite)
    dev = _device(device)
    dataset = load_image_set(data, labels=labels, class_names=class_names,
                             resolution=config.resolution if config is not None else None)
    classes = _classes_json(dataset.class_names, class_phrases)
    res, channels = dataset.pixels.shape[-1], dataset.pixels.shape[1]
    if config is None:
        stages = min(3, int(math.log2(res)) - 1)
        config = VAEConfig(resolution=res, channels=channels, widths=tuple(32 * 2 ** i for i in range(stages)),
                           num_classes=dataset.num_classes)
    _check_fit(config, dataset, balance_classes)

    n = dataset.pixels.shape[0]
    n_eval = min(n - 1, round(n * eval_fraction))
    order = torch.randperm(n, generator=torch.Generator("cpu").manual_seed(derive_seed(run_seed, "split")))
    eval_idx, train_idx = order[:n_eval].sort().values, order[n_eval:].sort().values
    train_set = ImageSet(dataset.pixels[train_idx], dataset.labels[train_idx] if dataset.labels is not None else None,
                         dataset.class_names)
    by_class = ([torch.nonzero(train_set.labels == k).squeeze(1) for k in range(dataset.num_classes)]
                if train_set.labels is not None else None)
    if by_class is not None and balance_classes and any(len(b) == 0 for b in by_class):
        raise InvalidRequest("eval_fraction", eval_fraction, "left a class with no training image",
                             "lower eval_fraction, or add images")

    run_config = {
        "recipe": "vae", "model": config.to_dict(), "data": _fingerprint(dataset), "steps": steps,
        "batch_size": batch_size, "lr": lr, "beta": beta, "eval_fraction": eval_fraction,
        "balance_classes": balance_classes, "seed": run_seed, "mixed_precision": mixed_precision,
    }
    resume_from = resolve_resume(out_path, resume)
    prepare_out(out_path, overwrite=overwrite)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(run_seed, "init"))
        model = ConvVAE(config)
    model = model.to(dev).train()
    params = [(name, p) for name, p in model.named_parameters()]
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mixed_precision)
    parts: dict[str, list[float]] = {"reconstruction": [], "kl": []}
    pixels = train_set.pixels.to(dev)
    labels_t = train_set.labels.to(dev) if train_set.labels is not None else None

    def step_loss(step: int) -> torch.Tensor:
        gen = torch.Generator("cpu").manual_seed(derive_seed(run_seed, "step", step))
        idx = _draw_indices(gen, train_set, batch_size, balance_classes, by_class).to(dev)
        eps = torch.randn(batch_size, config.latent_dim, generator=gen).to(dev)
        with autocast:
            loss, rec, kl = model.loss(pixels[idx], labels_t[idx] if labels_t is not None else None, eps, beta=beta)
        parts["reconstruction"].append(float(rec.detach()))
        parts["kl"].append(float(kl.detach()))
        return loss.float()

    eval_fn = None
    if n_eval:
        eval_pixels = dataset.pixels[eval_idx].to(dev)
        eval_labels = dataset.labels[eval_idx].to(dev) if dataset.labels is not None else None
        eval_eps = torch.randn(n_eval, config.latent_dim,
                               generator=torch.Generator("cpu").manual_seed(derive_seed(run_seed, "eval"))).to(dev)

        def eval_fn() -> float:
            model.eval()
            total = 0.0
            with torch.no_grad():
                for i in range(0, n_eval, 256):
                    c = eval_labels[i:i + 256] if eval_labels is not None else None
                    loss, _, _ = model.loss(eval_pixels[i:i + 256], c, eval_eps[i:i + 256], beta=beta)
                    total += float(loss) * eval_pixels[i:i + 256].shape[0]
            model.train()
            return total / n_eval

    spec = LoopSpec(out=out_path, total_steps=steps, lr=lr, schedule="cosine", warmup_steps=min(100, steps // 10),
                    weight_decay=0.0, max_grad_norm=None, seed=run_seed, device=dev,
                    checkpoint_every=checkpoint_every, eval_every=None, config=run_config, progress=progress,
                    desc="train vae")
    outcome = run_loop(spec, params, step_loss, eval_loss=eval_fn, resume_from=resume_from, on_step=on_step)
    from aigc.formats import latent as latent_format

    latent_format.save(out_path, model, classes=classes, defaults={"truncation": truncation},
                       dtype=_export_dtype(export_dtype))
    losses = {"loss": outcome.train_losses, **parts}  # parts: this session's steps only after a resume
    result = PretrainResult(
        output=out_path, method="vae", steps=steps, train_losses=outcome.train_losses, eval_losses=outcome.eval_losses,
        duration_s=outcome.duration_s, seed=run_seed, train_examples=int(train_idx.numel()), eval_examples=n_eval,
        resumed_from=outcome.resumed_from, checkpoints=outcome.checkpoints, losses=losses)
    write_result(out_path, result, run_config)
    return result


# -- diffusion ------------------------------------------------------------------------------------------
def train_diffusion(
    data: Any,
    out: str | os.PathLike[str],
    *,
    labels: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    class_phrases: Mapping[str, Sequence[str]] | None = None,
    widths: Sequence[int] = (32, 64, 64),
    steps: int = 3_000,
    batch_size: int = 64,
    lr: float = 1e-3,
    warmup_steps: int = 200,
    label_dropout: float = 0.12,
    ema_decay: float = 0.998,
    guidance: float = 2.5,
    sample_steps: int = 50,
    balance_classes: bool = False,
    seed: int | None = 0,
    checkpoint_every: int | None = 500,
    resume: bool | str | os.PathLike[str] = False,
    overwrite: bool = False,
    mixed_precision: bool = False,
    export_dtype: ExportDtype = "float32",
    device: str = "cpu",
    progress: bool | None = None,
    on_step: Callable[[TrainStep], object] | None = None,
) -> PretrainResult:
    """Train a small class-conditional DDPM and export it for the ``diffusion`` image backend.

    The recipe of the embedded default (``scripts/train_image_default.py``) as a library function: a diffusers
    ``UNet2DModel`` (``widths`` per level, self-attention at the lowest; one class embedding per class plus a
    null class) learns the epsilon-prediction loss (Ho et al. 2020, eq. 14) over a 1000-step cosine schedule
    (Nichol & Dhariwal 2021); labels drop to the null class with probability ``label_dropout`` so the model
    also predicts unconditionally, for classifier-free guidance. AdamW with warm-up and cosine decay, gradient
    clipping at 1, and an EMA of the weights (exported).

    Args:
        data, labels, class_names, class_phrases: as :func:`train_gan`; a conditional model needs classes.
        widths: UNet channels per resolution level (the image side must be divisible by 2 ** (levels - 1)).
        label_dropout: share of labels replaced by the null class.
        ema_decay: EMA decay (warmed up as ``min(decay, (1 + s) / (10 + s))``).
        guidance, sample_steps: the sampling defaults written for the backend.
        Others: as :func:`train_gan`.

    Returns:
        A :class:`PretrainResult` (``train_losses``: the noise-prediction MSE of each step).

    Example:
        >>> res = train_diffusion(images, out="runs/ddpm", labels=labels, steps=3000)  # doctest: +SKIP
        >>> aigc.generate("image", "a circle", model="runs/ddpm", backend="diffusion", seed=0)  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from aigc.train._common import lr_at

    _check_common(steps, batch_size, lr, checkpoint_every, progress, on_step, export_dtype, balance_classes,
                  mixed_precision)
    check_int("warmup_steps", warmup_steps, minimum=0, fix="pass warmup_steps=200")
    check_float("label_dropout", label_dropout, low=0.0, high=1.0, low_open=True, fix="pass label_dropout=0.12")
    check_float("ema_decay", ema_decay, low=0.0, high=1.0, fix="pass ema_decay=0.998")
    check_float("guidance", guidance, low=0.0, fix="pass guidance=2.5")
    check_int("sample_steps", sample_steps, minimum=1, fix="pass sample_steps=50")
    widths = tuple(widths) if isinstance(widths, (list, tuple)) else widths
    if not (isinstance(widths, tuple) and widths and all(isinstance(w, int) and w >= 8 and w % 8 == 0
                                                            for w in widths)):
        raise InvalidRequest("widths", widths, "must be one or more channel counts, multiples of 8",
                             "pass widths=(32, 64, 64)")
    run_seed = check_seed(seed)
    out_path = check_out(out, resume=resume, overwrite=overwrite)
    dev = _device(device)
    dataset = load_image_set(data, labels=labels, class_names=class_names)
    if dataset.labels is None:
        raise InvalidRequest("labels", None, "the diffusion backend draws classes named by prompts",
                             "pass labels= (or a folder with one sub-folder per class)")
    classes = _classes_json(dataset.class_names, class_phrases)
    res, channels = dataset.pixels.shape[-1], dataset.pixels.shape[1]
    if res % 2 ** (len(widths) - 1) or res >> (len(widths) - 1) < 4:
        raise InvalidRequest("widths", widths, f"{len(widths)} levels halve {res}x{res} images below 4x4",
                             "pass fewer widths, or larger images")
    num_classes = dataset.num_classes
    run_config = {
        "recipe": "diffusion", "widths": list(widths), "data": _fingerprint(dataset), "steps": steps,
        "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "label_dropout": label_dropout,
        "ema_decay": ema_decay, "balance_classes": balance_classes, "seed": run_seed,
        "mixed_precision": mixed_precision,
    }
    resume_from = resolve_resume(out_path, resume)
    prepare_out(out_path, overwrite=overwrite)

    from diffusers import DDPMScheduler, UNet2DModel

    levels = len(widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(run_seed, "init"))
        unet = UNet2DModel(
            sample_size=res, in_channels=channels, out_channels=channels, block_out_channels=widths,
            layers_per_block=1, down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            num_class_embeds=num_classes + 1, norm_num_groups=8, attention_head_dim=min(32, widths[-1]))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="epsilon", clip_sample=True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    unet, ema = unet.to(dev).train(), ema.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    run = _ModuleRun(out_path, steps, run_config, {"unet": unet, "ema": ema}, {"opt": opt}, checkpoint_every)
    losses = run.resume(resume_from, {"loss": []})
    pixels, labels_t = dataset.pixels.to(dev), dataset.labels.to(dev)
    by_class = [torch.nonzero(dataset.labels == k).squeeze(1) for k in range(num_classes)]
    alphas = scheduler.alphas_cumprod.to(dev)  # (1000,)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=mixed_precision)

    bar = progress_bar(progress, total=steps, initial=run.start, desc="train diffusion")
    run.began = time.perf_counter()  # training time starts here, not at set-up
    try:
        for step in range(run.start, steps):
            gen = torch.Generator("cpu").manual_seed(derive_seed(run_seed, "step", step))
            idx = _draw_indices(gen, dataset, batch_size, balance_classes, by_class).to(dev)
            x0, c = pixels[idx], labels_t[idx]
            drop = (torch.rand(batch_size, generator=gen) < label_dropout).to(dev)
            c = torch.where(drop, torch.full_like(c, num_classes), c)
            t = torch.randint(0, 1000, (batch_size,), generator=gen).to(dev)
            noise = torch.randn(x0.shape, generator=gen).to(dev)
            a = alphas[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. 2020, eq. 4
            rate = lr_at(step, total=steps, lr=lr, schedule="cosine", warmup=warmup_steps)
            for group in opt.param_groups:
                group["lr"] = rate
            with autocast:
                pred = unet(xt, t, class_labels=c).sample
            loss = F.mse_loss(pred.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), unet.parameters(), strict=True):
                    pe.lerp_(pm, 1 - decay)
            value, done = float(loss.detach()), step + 1
            if not math.isfinite(value):
                raise InvalidRequest("lr", lr, f"the loss became {value} at step {done}",
                                     "lower lr, or resume from an earlier checkpoint")
            losses["loss"].append(value)
            run.step_done(done, losses)
            if bar is not None:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                bar.update(1)
            if on_step is not None:
                on_step(TrainStep(done, steps, value, rate, None))
    finally:
        if bar is not None:
            bar.close()

    from aigc.formats import class_diffusion

    class_diffusion.save(out_path, ema, scheduler, classes=classes, image_size=res, channels=channels,
                         default_steps=sample_steps, default_guidance=guidance, default_scheduler="ddpm",
                         dtype=_export_dtype(export_dtype))
    result = PretrainResult(
        output=out_path, method="diffusion", steps=steps, train_losses=losses["loss"], eval_losses={},
        duration_s=run.duration_s, seed=run_seed, train_examples=dataset.pixels.shape[0],
        eval_examples=0, resumed_from=run.start, checkpoints=_checkpoints(out_path), losses=losses)
    write_result(out_path, result, run_config)
    return result


def _fingerprint(data: ImageSet) -> str:
    """A short hash of the pixels and labels, so a checkpoint is only resumed on the same data."""
    import hashlib

    import numpy as np

    h = hashlib.sha256(np.ascontiguousarray(data.pixels.numpy()).tobytes())
    if data.labels is not None:
        h.update(data.labels.numpy().tobytes())
    h.update(repr(data.class_names).encode())
    return h.hexdigest()[:16]
