"""What the three image pre-training recipes (GAN, VAE, diffusion) share besides the loop: their extra checks,
their result, and the export dtype."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import InvalidRequest
from aigc.train._checks import check_bool, check_float, check_int
from aigc.train._loop import RunOptions, Schedule, TrainStep
from aigc.train._result import PretrainResult
from aigc.train.data import ImageSet

if TYPE_CHECKING:
    import torch

    from aigc.models.stylegan import StyleGANConfig
    from aigc.models.vae import VAEConfig
    from aigc.train._loop import LoopOutcome, Run

__all__ = ["ExportDtype", "check_fit", "image_run", "pretrain_result", "torch_dtype"]

ExportDtype = Literal["float32", "float16"]


def torch_dtype(name: ExportDtype) -> torch.dtype:
    """The torch dtype of an ``export_dtype`` name."""
    import torch

    return torch.float16 if name == "float16" else torch.float32


def image_run(*, steps: Any, batch_size: Any, lr: Any, seed: Any, device: Any, checkpoint_every: Any, resume: Any,
              overwrite: Any, progress: Any, on_step: Callable[[TrainStep], object] | None, export: Any,
              balance_classes: Any, mixed_precision: Any, schedule: Schedule = "constant", warmup_steps: int = 0,
              lr_floor: Any = 0.0, max_grad_norm: float | None = None) -> RunOptions:
    """The checked :class:`RunOptions` of an image recipe, after the checks the three add: two images per batch
    at least, a learning rate of at most 1, and their own flags."""
    check_int("batch_size", batch_size, minimum=2, fix="pass batch_size=32")
    check_float("lr", lr, low=0.0, low_open=True, high=1.0, fix="pass lr=0.002")
    if export not in ("float32", "float16"):
        raise InvalidRequest("export_dtype", export, "unknown dtype", "pass 'float32' or 'float16'")
    check_bool("balance_classes", balance_classes)
    check_bool("mixed_precision", mixed_precision)
    return RunOptions(steps=steps, batch_size=batch_size, lr=lr, schedule=schedule, warmup_steps=warmup_steps,
                      lr_floor=lr_floor, max_grad_norm=max_grad_norm, seed=seed, device=device,
                      checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=progress,
                      on_step=on_step)


def check_fit(config: StyleGANConfig | VAEConfig, data: ImageSet, balance_classes: bool) -> None:
    """The model's channels and classes match the data's; class balancing needs classes."""
    channels = data.pixels.shape[1]
    if config.channels != channels or config.num_classes != data.num_classes:
        raise InvalidRequest("config", f"channels={config.channels}, num_classes={config.num_classes}",
                             f"the data has {channels} channel(s) and {data.num_classes} class(es)",
                             f"pass config with channels={channels}, num_classes={data.num_classes}")
    if balance_classes and data.labels is None:
        raise InvalidRequest("balance_classes", True, "the data has no classes", "pass labels=, or drop it")


def pretrain_result(run: Run, method: str, outcome: LoopOutcome, *, main: str, train_examples: int,
                    eval_examples: int = 0) -> PretrainResult:
    """The :class:`PretrainResult` of a finished run (``train_losses`` is the ``main`` series)."""
    return PretrainResult(
        output=run.out, method=method, steps=run.steps, train_losses=outcome.losses[main],
        eval_losses=outcome.eval_losses, duration_s=outcome.duration_s, seed=run.seed, train_examples=train_examples,
        eval_examples=eval_examples, resumed_from=outcome.resumed_from, checkpoints=outcome.checkpoints,
        losses=outcome.losses)

