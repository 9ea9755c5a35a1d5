"""Training recipes: pre-training aigc's GAN, VAE, diffusion and CycleGAN models; LoRA or full fine-tuning of
text models; LoRA for SD -- all run by one training loop, which a custom step function can use too.

    >>> from aigc.train import finetune_text
    >>> res = finetune_text("gpt2-dir", ["The quick brown fox."] * 16, out="runs/fox", steps=60)  # doctest: +SKIP
    >>> aigc.load("text", "gpt2-dir", adapter="runs/fox")  # doctest: +SKIP

Runs are reproducible (a fixed seed, no use of the global RNG), write checkpoints atomically (safetensors and
JSON, no pickle) and resume from them with the same losses and the same exported bytes as an uninterrupted
run. Arguments and data are checked before anything trains; a loss that becomes NaN or infinite raises
:class:`~aigc.errors.TrainingDiverged`. ``import aigc.train`` is light: torch, transformers, diffusers and peft
load when a recipe runs (``pip install 'aigc[train]'`` for peft).

Modules: :mod:`aigc.train._loop` (the loop), :mod:`aigc.train._run` (:class:`RunOptions`, seeds and
schedules), :mod:`aigc.train.text` and ``image`` (fine-tuning), :mod:`aigc.train.gan`, ``vae``, ``diffusion``,
``cyclegan`` and ``video`` (pre-training), :mod:`aigc.train.data` (image sets), :mod:`aigc.train.datasets` (the
data of aigc's embedded models), :mod:`aigc.train.sprites` (the embedded video model's procedural sprite clips).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aigc._runtime.lazy import lazy_attributes as _lazy_attributes

if TYPE_CHECKING:
    from aigc.train._checkpoints import checkpoint_state, latest_checkpoint
    from aigc.train._loop import EMA, LoopOutcome, StepContext, TrainState, train_loop
    from aigc.train._pretrain import ImageKeywords
    from aigc.train._result import FinetuneResult, PretrainResult
    from aigc.train._run import RunKeywords, RunOptions, TrainStep, derive_seed, lr_at
    from aigc.train.cyclegan import train_cyclegan
    from aigc.train.data import load_image_set
    from aigc.train.diffusion import train_diffusion
    from aigc.train.gan import train_gan
    from aigc.train.image import finetune_image
    from aigc.train.text import finetune_text
    from aigc.train.vae import train_vae
    from aigc.train.video import train_sprite_video

__all__ = [
    "EMA",
    "FinetuneResult",
    "ImageKeywords",
    "LoopOutcome",
    "PretrainResult",
    "RunKeywords",
    "RunOptions",
    "StepContext",
    "TrainState",
    "TrainStep",
    "checkpoint_state",
    "derive_seed",
    "finetune_image",
    "finetune_text",
    "latest_checkpoint",
    "load_image_set",
    "lr_at",
    "train_cyclegan",
    "train_diffusion",
    "train_gan",
    "train_loop",
    "train_sprite_video",
    "train_vae",
]

# Public name -> the submodule that defines it; imported on first access (PEP 562).
_LAZY = {
    **dict.fromkeys(("EMA", "LoopOutcome", "StepContext", "TrainState", "train_loop"), "_loop"),
    **dict.fromkeys(("RunKeywords", "RunOptions", "TrainStep", "derive_seed", "lr_at"), "_run"),
    "ImageKeywords": "_pretrain",
    **dict.fromkeys(("checkpoint_state", "latest_checkpoint"), "_checkpoints"),
    **dict.fromkeys(("FinetuneResult", "PretrainResult"), "_result"),
    "load_image_set": "data", "finetune_text": "text", "finetune_image": "image", "train_gan": "gan",
    "train_vae": "vae", "train_diffusion": "diffusion", "train_cyclegan": "cyclegan",
    "train_sprite_video": "video",
}


__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, __all__)
