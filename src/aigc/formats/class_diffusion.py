"""The class-conditional diffusion format (``aigc.classes/1``): a diffusers ``UNet2DModel`` whose class embeddings
are the model's classes, its training noise schedule, and the class table -- written by
:func:`aigc.train.train_diffusion` and ``scripts/train_image_default.py``, loaded by the ``diffusion`` backend::

    model-dir/
        aigc_classes.json     {"format": "aigc.classes/1", "classes": [{"id": 9, "name": "ankle boot",
                               "phrases": ["boot", ...]}, ...], "null_class": 20, "image_size": 32, "channels": 1,
                               "default_steps": 50, "default_guidance": 2.5, "default_scheduler": "ddpm"}
        unet/                 config.json + diffusion_pytorch_model.safetensors (save_pretrained)
        scheduler/            scheduler_config.json (the training schedule)

The last class id (``null_class``) is the "no class" used for classifier-free guidance.

Example:
    >>> detect(Path("path/to/image_default"))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc._runtime.weights import fingerprint_files, weight_files
from aigc.errors import ModelNotFound
from aigc.formats import _folder
from aigc.formats.classes import ClassTable

__all__ = ["CLASSES_FILE", "FORMAT", "ClassDiffusionFile", "detect", "load", "save"]

FORMAT = "aigc.classes/1"
CLASSES_FILE = "aigc_classes.json"


@dataclass
class ClassDiffusionFile:
    """A loaded class-conditional diffusion model.

    Attributes:
        unet: the diffusers ``UNet2DModel``, on its device, in eval mode, gradients off.
        scheduler_config: the training noise schedule (a diffusers scheduler config).
        table: the classes, their phrases and the null class.
        settings: the rest of ``aigc_classes.json`` (``image_size``, ``channels``, ``default_steps``, ...).
        weights: the fingerprint of the UNet's weight files (for provenance).
    """

    unet: Any
    scheduler_config: dict[str, Any]
    table: ClassTable
    settings: dict[str, Any]
    weights: str


def detect(path: Path) -> bool:
    """Whether ``path`` holds ``aigc_classes.json`` and a ``unet/`` folder."""
    return (path / CLASSES_FILE).is_file() and (path / "unet").is_dir()


def save(out: str | os.PathLike[str], unet: torch.nn.Module, scheduler: Any, *,
         classes: Sequence[Mapping[str, Any]], image_size: int, channels: int, default_steps: int = 50,
         default_guidance: float = 2.5, default_scheduler: str = "ddpm", dtype: torch.dtype = torch.float16) -> Path:
    """Write a UNet (a diffusers ``UNet2DModel``), its scheduler and the class table (one entry per class; the null
    class is the next id) as a model folder; ``unet/``, ``scheduler/`` and the table each land with one rename."""
    from diffusers.utils import logging as diffusers_logging

    table = {"format": FORMAT, "image_size": int(image_size), "channels": int(channels), "null_class": len(classes),
             "default_steps": int(default_steps), "default_guidance": float(default_guidance),
             "default_scheduler": default_scheduler, "classes": [dict(c) for c in classes]}
    with _folder.staging_folder(out) as staging:
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # its "modules to keep in float32: []" note says nothing here
        try:
            unet.to("cpu", dtype).save_pretrained(staging / "unet", safe_serialization=True)  # type: ignore[operator]
        finally:
            diffusers_logging.set_verbosity(verbosity)
        scheduler.save_pretrained(staging / "scheduler")
        _folder.write_json(staging / CLASSES_FILE, table)
    return Path(out)


def load(path: str | os.PathLike[str], *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
         allow_pickle: bool = False) -> ClassDiffusionFile:
    """Load a class-diffusion folder onto ``device`` in ``dtype``.

    Raises:
        ModelNotFound: not such a folder, or its table and UNet disagree. UnsafeModelFile: only pickle weights
            (and ``allow_pickle`` is false).
    """
    folder = Path(path)
    if not detect(folder):
        raise ModelNotFound(f"{folder} is not a class-diffusion model (it needs {CLASSES_FILE} and unet/). "
                            "Fix: pass a directory written by aigc.train.train_diffusion, or another backend=")
    files = weight_files(folder / "unet", allow_pickle=allow_pickle)
    try:
        settings = json.loads((folder / CLASSES_FILE).read_text(encoding="utf-8"))
        table = ClassTable.from_json(settings)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelNotFound(f"{folder / CLASSES_FILE} is not a valid class table: {e}. Fix: regenerate it") from None
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler_config = json.loads(scheduler_file.read_text(encoding="utf-8")) if scheduler_file.is_file() else {}

    from diffusers import UNet2DModel

    # fp16 weights on disk; the UNet is cast to the requested dtype (float32 on CPU) as it loads.
    unet = UNet2DModel.from_pretrained(folder / "unet", dtype=dtype, use_safetensors=files[0].suffix == ".safetensors")
    n_embeds = unet.config.num_class_embeds
    if n_embeds is None or table.null_class >= n_embeds or max(table.names) >= n_embeds:
        raise ModelNotFound(f"{folder}: the UNet has {n_embeds} class embeddings but {CLASSES_FILE} uses ids up to "
                            f"{max(table.null_class, *table.names)}. Fix: export the model and table together")
    unet.to(device).eval().requires_grad_(False)
    return ClassDiffusionFile(unet, scheduler_config, table, settings, fingerprint_files(files))
