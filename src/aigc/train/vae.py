"""Pre-training a convolutional VAE (:mod:`aigc.models.vae`) for the ``vae`` image backend.

    >>> from aigc.train import train_vae
    >>> res = train_vae(images, out="runs/vae", labels=labels, steps=3000)  # doctest: +SKIP
    >>> aigc.generate("image", "digit 3", model="runs/vae", backend="vae", seed=0)  # doctest: +SKIP

The output directory is what the ``vae`` backend loads (:mod:`aigc.formats.latent`), beside ``training.json``
and ``checkpoints/``; the run is reproducible and resumes exactly (:mod:`aigc.train._loop`).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.train._checks import check_float
from aigc.train._loop import StepContext, TrainState, train_loop
from aigc.train._pretrain import ImageKeywords, image_options, latent_setup, pretrain_result
from aigc.train._result import PretrainResult, write_result
from aigc.train._run import changed_settings
from aigc.train.data import ImageSet, draw_indices, fingerprint, rows_by_class

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from aigc.models.vae import VAEConfig

__all__ = ["train_vae"]

_RUN_DEFAULTS: dict[str, Any] = {"steps": 5_000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                                 "checkpoint_every": 500}


def train_vae(
    data: Any,
    out: str | os.PathLike[str],
    *,
    config: VAEConfig | None = None,
    beta: float = 1.0,
    eval_fraction: float = 0.05,
    truncation: float = 1.0,
    **settings: Unpack[ImageKeywords],
) -> PretrainResult:
    """Train a convolutional VAE (:mod:`aigc.models.vae`) and export it for the ``vae`` image backend.

    Minimises the negative ELBO (binary cross-entropy reconstruction + ``beta`` x KL) with AdamW and a cosine
    learning-rate schedule (warm-up over the first tenth of the steps, at most 100); ``eval_fraction`` of the
    images (a seeded split) is held out and its negative ELBO, with fixed noise, is the eval loss measured at
    each checkpoint and at the end.

    Args:
        data, out: as :func:`aigc.train.train_gan`.
        config: the architecture; by default one sized for ``data``.
        beta: weight of the KL term.
        eval_fraction: share of images held out (0 for none; at least one image is kept for training).
        truncation: the default latent scale written to ``config.json`` for the backend.
        **settings: ``labels``, ``class_names``, ``class_phrases``, ``balance_classes``, ``mixed_precision``,
            ``export_dtype`` (as :func:`aigc.train.train_gan`), and the run settings
            (:class:`~aigc.train.RunOptions`): ``steps`` (default 5,000), ``batch_size``
            (64), ``lr`` (1e-3), ``schedule`` (``"cosine"``), ``warmup_steps`` (a tenth of the steps, at most
            100), ``lr_floor`` (0), ``weight_decay`` (0), ``max_grad_norm`` (none), ``eval_every`` (at each
            checkpoint), ``seed`` (0), ``device`` (``"cpu"``), ``checkpoint_every`` (500), ``resume``,
            ``overwrite``, ``progress``, ``on_step``.

    Returns:
        A :class:`PretrainResult`: ``train_losses`` is the negative ELBO per image in nats; ``losses`` also holds
        its ``reconstruction`` and ``kl`` terms.

    Example:
        >>> res = train_vae(images, out="runs/vae", labels=labels, steps=3000)  # doctest: +SKIP
        >>> aigc.generate("image", "digit 3", model="runs/vae", backend="vae", seed=0)  # doctest: +SKIP
    """
    import torch

    from aigc.models.vae import ConvVAE, VAEConfig

    # 1. Arguments, then the data and the held-out split, before anything trains.
    steps = settings.get("steps", _RUN_DEFAULTS["steps"])
    defaults = {**_RUN_DEFAULTS, "warmup_steps": min(100, steps // 10) if isinstance(steps, int) else 0}
    options = image_options("train_vae", settings, defaults)
    batch_size, balance_classes = options.run.batch_size, options.balance_classes
    check_float("beta", beta, low=0.0, fix="pass beta=1.0")
    check_float("eval_fraction", eval_fraction, low=0.0, high=0.5, fix="pass eval_fraction=0.05 (or 0)")
    check_float("truncation", truncation, low=0.0, high=2.0, fix="pass truncation=1.0")

    def sized(res: int, channels: int, classes: int) -> VAEConfig:  # widths 32, 64, 128 (fewer for small images)
        widths = tuple(32 * 2 ** i for i in range(min(3, int(math.log2(res)) - 1)))
        return VAEConfig(resolution=res, channels=channels, widths=widths, num_classes=classes)

    run, dataset, classes, config = latent_setup(options, out, data, config, VAEConfig, sized)
    n = dataset.pixels.shape[0]
    n_eval = min(n - 1, round(n * eval_fraction))
    order = torch.randperm(n, generator=run.generator("split"))
    eval_idx, train_idx = order[:n_eval].sort().values, order[n_eval:].sort().values
    train_set = ImageSet(dataset.pixels[train_idx], dataset.labels[train_idx] if dataset.labels is not None else None,
                         dataset.class_names)
    by_class = rows_by_class(train_set)
    if by_class is not None and balance_classes and any(len(b) == 0 for b in by_class):
        raise InvalidRequest("eval_fraction", eval_fraction, "left a class with no training image",
                             "lower eval_fraction, or add images")
    run_config = {
        "recipe": "vae", "model": config.to_dict(), "data": fingerprint(dataset), "steps": run.steps,
        "batch_size": batch_size, "lr": options.run.lr, "beta": beta, "eval_fraction": eval_fraction,
        "balance_classes": balance_classes, "seed": run.seed, "mixed_precision": options.image["mixed_precision"],
        **changed_settings(options.run, defaults, ("schedule", "warmup_steps", "lr_floor", "weight_decay",
                                               "max_grad_norm", "eval_every")),
    }

    # 2. The network, initialised from the run's seed.
    with run.seeded("init"):
        model = ConvVAE(config)
    dev = run.device
    model = model.to(dev).train()
    autocast = options.autocast(dev)
    pixels = train_set.pixels.to(dev)
    labels_t = train_set.labels.to(dev) if train_set.labels is not None else None
    latent_dim = config.latent_dim

    # 3. One step: the negative ELBO of a batch (reparameterised with noise from the step's generator).
    def step_fn(ctx: StepContext) -> dict[str, torch.Tensor]:
        gen = ctx.generator()
        idx = draw_indices(gen, train_set, batch_size, balance_classes, by_class).to(dev)
        eps = torch.randn(batch_size, latent_dim, generator=gen).to(dev)
        with autocast:
            loss, rec, kl = model.loss(pixels[idx], labels_t[idx] if labels_t is not None else None, eps, beta=beta)
        return {"loss": loss.float(), "reconstruction": rec, "kl": kl}

    eval_fn = None
    if n_eval:
        eval_pixels = dataset.pixels[eval_idx].to(dev)
        eval_labels = dataset.labels[eval_idx].to(dev) if dataset.labels is not None else None
        eval_eps = torch.randn(n_eval, latent_dim, generator=run.generator("eval")).to(dev)

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

    # 4. Train, then export and write training.json last.
    outcome = train_loop(run, step_fn, TrainState(params=list(model.named_parameters()), modules={"model": model}),
                         config=run_config, eval_fn=eval_fn, series=("loss", "reconstruction", "kl"), desc="train vae")
    from aigc.formats import latent

    latent.save(run.out, model, classes=classes, defaults={"truncation": truncation}, dtype=options.dtype)
    result = pretrain_result(run, "vae", outcome, main="loss", train_examples=int(train_idx.numel()),
                             eval_examples=n_eval)
    write_result(run.out, result, run_config)
    return result
