"""What the three image pre-training recipes (GAN, VAE, diffusion) share besides the loop: the keywords about
their data and output (:class:`ImageKeywords`), checked once (:func:`image_options`), and their result."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aigc.errors import InvalidRequest
from aigc.train._checks import check_bool, check_export_dtype, check_float, check_int, export_torch_dtype
from aigc.train._result import PretrainResult
from aigc.train._run import RunKeywords, RunOptions, forward_autocast, run_options
from aigc.train.data import ImageSet, class_table, load_image_set

if TYPE_CHECKING:
    import torch

    from aigc.models.stylegan import StyleGANConfig
    from aigc.models.vae import VAEConfig
    from aigc.train._loop import LoopOutcome
    from aigc.train._run import Run

__all__ = ["ExportDtype", "ImageKeywords", "ImageOptions", "image_options", "latent_setup", "pretrain_result"]

ExportDtype = Literal["float32", "float16"]
C = TypeVar("C", "StyleGANConfig", "VAEConfig")


class ImageKeywords(RunKeywords, total=False):
    """The keywords of :func:`aigc.train.train_gan`, ``train_vae`` and ``train_diffusion`` besides each one's
    own: the run settings (:class:`~aigc.train.RunKeywords`) and these.

    Attributes:
        labels: the class id of each image, for an array (a folder's classes are its sub-folders).
        class_names: the name of each class id, for an array (default ``"0"``, ``"1"``, ...).
        class_phrases: extra prompt phrases per class name (``{"sneaker": ["trainer", "running shoe"]}``).
        balance_classes: draw a class uniformly, then an image of it (default False; for unbalanced sets).
        mixed_precision: bfloat16 autocast for the forward passes (default False; faster on recent CPUs and
            GPUs; the weights, the optimizer and the average stay float32).
        export_dtype: ``"float32"`` (the default) or ``"float16"``, which halves the file.
    """

    labels: Sequence[int] | None
    class_names: Sequence[str] | None
    class_phrases: Mapping[str, Sequence[str]] | None
    balance_classes: bool
    mixed_precision: bool
    export_dtype: ExportDtype


_IMAGE_DEFAULTS: ImageKeywords = {"labels": None, "class_names": None, "class_phrases": None,
                                   "balance_classes": False, "mixed_precision": False, "export_dtype": "float32"}


@dataclass(frozen=True)
class ImageOptions:
    """The checked keywords of one call of an image recipe: its :class:`RunOptions` and the image keywords
    (every key of :class:`ImageKeywords` but the run settings, defaults filled in)."""

    run: RunOptions
    image: ImageKeywords

    @property
    def balance_classes(self) -> bool:
        return bool(self.image["balance_classes"])

    @property
    def dtype(self) -> torch.dtype:
        """The exported weights' dtype."""
        return export_torch_dtype(self.image["export_dtype"])

    def autocast(self, device: torch.device) -> Any:
        """The forward passes' autocast context (bfloat16 with ``mixed_precision``, else a no-op)."""
        return forward_autocast(device, self.image["mixed_precision"])

    def load(self, data: Any, *, resolution: int | None = None) -> tuple[ImageSet, list[dict[str, Any]]]:
        """Read and check ``data`` (:func:`aigc.train.load_image_set`); return it with its class table."""
        dataset = load_image_set(data, labels=self.image["labels"], class_names=self.image["class_names"],
                                 resolution=resolution)
        return dataset, class_table(dataset.class_names, self.image["class_phrases"])


def image_options(recipe: str, settings: Mapping[str, Any], defaults: Mapping[str, Any], *,
                  unsupported: Mapping[str, str] | None = None) -> ImageOptions:
    """Check the keywords of an image recipe: the run settings over the recipe's ``defaults``
    (:func:`~aigc.train._run.run_options`), two images per batch at least, a learning rate of at most 1,
    and the image keywords."""
    image: Any = {**_IMAGE_DEFAULTS, **{k: v for k, v in settings.items() if k in _IMAGE_DEFAULTS}}
    given = {k: v for k, v in settings.items() if k not in _IMAGE_DEFAULTS}
    batch_size, lr = given.get("batch_size", defaults["batch_size"]), given.get("lr")
    lr = defaults["lr"] if lr is None else lr
    check_int("batch_size", batch_size, minimum=2, fix=f"pass batch_size={defaults['batch_size']}")
    check_float("lr", lr, low=0.0, low_open=True, high=1.0, fix=f"pass lr={defaults['lr']}")
    check_export_dtype(image["export_dtype"])
    check_bool("balance_classes", image["balance_classes"])
    check_bool("mixed_precision", image["mixed_precision"])
    return ImageOptions(run_options(recipe, given, defaults, unsupported=unsupported), image)


def latent_setup(options: ImageOptions, out: str | os.PathLike[str], data: Any, config: C | None,
                 config_type: type[C], sized: Callable[[int, int, int], C],
                 ) -> tuple[Run, ImageSet, list[dict[str, Any]], C]:
    """The set-up the GAN and the VAE share, after their own checks: ``config``'s type, the run's start
    (:meth:`RunOptions.start`), the data read at the config's resolution with its class table, a default config
    sized for the data (``sized(resolution, channels, classes)``), and the fit of the two.

    Returns:
        The run, the data, the class table and the config.
    """
    if config is not None and not isinstance(config, config_type):
        raise InvalidRequest("config", type(config).__name__, f"must be a {config_type.__name__}",
                             f"pass aigc.models.{config_type.__name__}(...) or None")
    run = options.run.start(out)
    dataset, classes = options.load(data, resolution=config.resolution if config is not None else None)
    channels = dataset.pixels.shape[1]
    if config is None:
        config = sized(dataset.pixels.shape[-1], channels, dataset.num_classes)
    if config.channels != channels or config.num_classes != dataset.num_classes:
        raise InvalidRequest("config", f"channels={config.channels}, num_classes={config.num_classes}",
                             f"the data has {channels} channel(s) and {dataset.num_classes} class(es)",
                             f"pass config with channels={channels}, num_classes={dataset.num_classes}")
    if options.balance_classes and dataset.labels is None:
        raise InvalidRequest("balance_classes", True, "the data has no classes", "pass labels=, or drop it")
    return run, dataset, classes, config


def pretrain_result(run: Run, method: str, outcome: LoopOutcome, *, main: str, train_examples: int,
                    eval_examples: int = 0) -> PretrainResult:
    """The :class:`PretrainResult` of a finished run (``train_losses`` is the ``main`` series)."""
    return PretrainResult(
        output=run.out, method=method, steps=run.steps, train_losses=outcome.losses[main],
        eval_losses=outcome.eval_losses, duration_s=outcome.duration_s, seed=run.seed, train_examples=train_examples,
        eval_examples=eval_examples, resumed_from=outcome.resumed_from, checkpoints=outcome.checkpoints,
        losses=outcome.losses)
