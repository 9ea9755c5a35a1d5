"""Training recipes: pre-training aigc's GAN and VAE; LoRA or full fine-tuning of text models; LoRA for SD.

    >>> from aigc.train import finetune_text
    >>> res = finetune_text("gpt2-dir", ["The quick brown fox."] * 16, out="runs/fox", steps=60)  # doctest: +SKIP
    >>> aigc.load("text", "gpt2-dir", adapter="runs/fox")  # doctest: +SKIP

Runs are reproducible (a fixed seed, no use of the global RNG), write checkpoints atomically and resume
from them with the same losses as an uninterrupted run. Arguments and data are checked before anything
trains. ``import aigc.train`` is light: torch, transformers, diffusers and peft load when a recipe runs
(``pip install 'aigc[train]'`` for peft).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aigc.train._common import FinetuneResult, TrainStep, latest_checkpoint

if TYPE_CHECKING:
    from aigc.train.image import finetune_image
    from aigc.train.pretrain import PretrainResult, load_image_set, train_diffusion, train_gan, train_vae
    from aigc.train.text import finetune_text

__all__ = [
    "FinetuneResult",
    "PretrainResult",
    "TrainStep",
    "finetune_image",
    "finetune_text",
    "latest_checkpoint",
    "load_image_set",
    "train_diffusion",
    "train_gan",
    "train_vae",
]

# Public name -> the submodule that defines it; imported on first access (PEP 562).
_LAZY = {"finetune_text": "text", "finetune_image": "image", "train_gan": "pretrain", "train_vae": "pretrain",
         "train_diffusion": "pretrain",
         "PretrainResult": "pretrain", "load_image_set": "pretrain"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aigc.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"aigc.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
