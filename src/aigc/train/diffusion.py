"""Pre-training a small class-conditional DDPM for the ``diffusion`` image backend: the recipe of aigc's
embedded default image model (``scripts/train_image_default.py`` calls :func:`train_diffusion`).

    >>> from aigc.train import train_diffusion
    >>> res = train_diffusion(images, out="runs/ddpm", labels=labels, steps=3000)  # doctest: +SKIP
    >>> aigc.generate("image", "a circle", model="runs/ddpm", backend="diffusion", seed=0)  # doctest: +SKIP

The output directory is what the ``diffusion`` backend loads (:mod:`aigc.formats.class_diffusion`), beside
``training.json`` and ``checkpoints/``; the run is reproducible and resumes exactly (:mod:`aigc.train._loop`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.train._checks import check_float, check_int
from aigc.train._loop import EMA, StepContext, TrainState, train_loop
from aigc.train._pretrain import ImageKeywords, image_options, pretrain_result
from aigc.train._result import PretrainResult, write_result
from aigc.train._run import changed_settings
from aigc.train.data import draw_indices, fingerprint, rows_by_class

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

__all__ = ["build_unet", "noise_schedule", "train_diffusion"]

_RUN_DEFAULTS: dict[str, Any] = {"steps": 3_000, "batch_size": 64, "lr": 1e-3, "schedule": "cosine",
                                 "warmup_steps": 200, "max_grad_norm": 1.0, "checkpoint_every": 500}


def build_unet(*, resolution: int, channels: int, widths: Sequence[int], num_classes: int) -> torch.nn.Module:
    """The recipe's diffusers ``UNet2DModel``: ``widths`` channels per level, one ResNet block per level,
    self-attention at the lowest level only, one class embedding per class plus the null class.

    Example:
        >>> sum(p.numel() for p in build_unet(resolution=32, channels=1, widths=(32, 64, 64),
        ...                                   num_classes=20).parameters())
        1115489
    """
    from diffusers import UNet2DModel

    levels = len(widths)
    return UNet2DModel(  # type: ignore[no-any-return]
        sample_size=resolution, in_channels=channels, out_channels=channels, block_out_channels=tuple(widths),
        layers_per_block=1, down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        num_class_embeds=num_classes + 1, norm_num_groups=8, attention_head_dim=min(32, widths[-1]))


def noise_schedule() -> Any:
    """The training noise schedule: DDPM over 1000 steps, cosine betas (Nichol & Dhariwal 2021, eq. 17),
    epsilon prediction."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=True)


def train_diffusion(
    data: Any,
    out: str | os.PathLike[str],
    *,
    widths: Sequence[int] = (32, 64, 64),
    label_dropout: float = 0.12,
    ema_decay: float = 0.998,
    guidance: float = 2.5,
    sample_steps: int = 50,
    **settings: Unpack[ImageKeywords],
) -> PretrainResult:
    """Train a small class-conditional DDPM and export it for the ``diffusion`` image backend.

    A diffusers ``UNet2DModel`` (:func:`build_unet`) learns the epsilon-prediction loss (Ho et al. 2020,
    eq. 14) over a 1000-step cosine schedule (:func:`noise_schedule`); labels drop to the null class with
    probability ``label_dropout`` so the model also predicts unconditionally, for classifier-free guidance.
    AdamW with warm-up and cosine decay (to ``lr_floor * lr``), gradient clipping at 1, and an EMA of the
    weights (exported).

    Args:
        data, out: as :func:`aigc.train.train_gan`; the model is conditional, so the data needs classes.
        widths: UNet channels per resolution level (the image side must be divisible by 2 ** (levels - 1)).
        label_dropout: share of labels replaced by the null class.
        ema_decay: EMA decay (warmed up as ``min(decay, (1 + s) / (10 + s))``).
        guidance, sample_steps: the sampling defaults written for the backend.
        **settings: ``labels``, ``class_names``, ``class_phrases``, ``balance_classes``, ``mixed_precision``,
            ``export_dtype`` (as :func:`aigc.train.train_gan`), and the run settings
            (:class:`~aigc.train.RunOptions`): ``steps`` (default 3,000), ``batch_size``
            (64), ``lr`` (1e-3), ``schedule`` (``"cosine"``), ``warmup_steps`` (200), ``lr_floor`` (0: the
            decay ends at 0; the embedded model decays to 0.1, 10% of ``lr``), ``weight_decay`` (0),
            ``max_grad_norm`` (1), ``seed`` (0), ``device`` (``"cpu"``), ``checkpoint_every`` (500), ``resume``,
            ``overwrite``, ``progress``, ``on_step``.

    Returns:
        A :class:`PretrainResult` (``train_losses``: the noise-prediction MSE of each step).

    Example:
        >>> res = train_diffusion(images, out="runs/ddpm", labels=labels, steps=3000)  # doctest: +SKIP
        >>> aigc.generate("image", "a circle", model="runs/ddpm", backend="diffusion", seed=0)  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    # 1. Arguments, then the data, before anything trains.
    options = image_options("train_diffusion", settings, _RUN_DEFAULTS,
                            unsupported={"eval_every": "measures no held-out loss"})
    batch_size = options.run.batch_size
    check_float("label_dropout", label_dropout, low=0.0, high=1.0, low_open=True, fix="pass label_dropout=0.12")
    check_float("ema_decay", ema_decay, low=0.0, high=1.0, fix="pass ema_decay=0.998")
    check_float("guidance", guidance, low=0.0, fix="pass guidance=2.5")
    check_int("sample_steps", sample_steps, minimum=1, fix="pass sample_steps=50")
    widths = tuple(widths) if isinstance(widths, (list, tuple)) else widths
    if not (isinstance(widths, tuple) and widths and all(isinstance(w, int) and w >= 8 and w % 8 == 0
                                                            for w in widths)):
        raise InvalidRequest("widths", widths, "must be one or more channel counts, multiples of 8",
                             "pass widths=(32, 64, 64)")
    run = options.run.start(out)
    dataset, classes = options.load(data)
    if dataset.labels is None:
        raise InvalidRequest("labels", None, "the diffusion backend draws classes named by prompts",
                             "pass labels= (or a folder with one sub-folder per class)")
    res, channels = dataset.pixels.shape[-1], dataset.pixels.shape[1]
    if res % 2 ** (len(widths) - 1) or res >> (len(widths) - 1) < 4:
        raise InvalidRequest("widths", widths, f"{len(widths)} levels halve {res}x{res} images below 4x4",
                             "pass fewer widths, or larger images")
    num_classes = dataset.num_classes
    run_config = {
        "recipe": "diffusion", "widths": list(widths), "data": fingerprint(dataset), "steps": run.steps,
        "batch_size": batch_size, "lr": options.run.lr, "warmup_steps": options.run.warmup_steps,
        "label_dropout": label_dropout, "ema_decay": ema_decay, "balance_classes": options.balance_classes,
        "seed": run.seed, "mixed_precision": options.image["mixed_precision"],
        **changed_settings(options.run, _RUN_DEFAULTS, ("schedule", "lr_floor", "weight_decay", "max_grad_norm")),
    }

    # 2. The UNet (initial weights from the run's seed), its average, the noise schedule.
    with run.seeded("init"):
        unet = build_unet(resolution=res, channels=channels, widths=widths, num_classes=num_classes)
    scheduler = noise_schedule()
    ema = EMA(unet, decay_at=lambda step: min(ema_decay, (1 + step) / (10 + step)))
    dev = run.device
    unet, ema.model = unet.to(dev).train(), ema.model.to(dev)
    pixels, labels_t = dataset.pixels.to(dev), dataset.labels.to(dev)
    by_class = rows_by_class(dataset)
    alphas = scheduler.alphas_cumprod.to(dev)  # (1000,)
    autocast = options.autocast(dev)

    # 3. One step: noise a batch to random timesteps, predict the noise.
    def step_fn(ctx: StepContext) -> torch.Tensor:
        gen = ctx.generator()
        idx = draw_indices(gen, dataset, batch_size, options.balance_classes, by_class).to(dev)
        x0, c = pixels[idx], labels_t[idx]
        drop = (torch.rand(batch_size, generator=gen) < label_dropout).to(dev)
        c = torch.where(drop, torch.full_like(c, num_classes), c)  # the null class, for classifier-free guidance
        t = torch.randint(0, 1000, (batch_size,), generator=gen).to(dev)
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # q(x_t | x_0), Ho et al. 2020, eq. 4
        with autocast:
            pred = unet(xt, t, class_labels=c).sample
        return F.mse_loss(pred.float(), noise)  # eq. 14

    # 4. Train, then export the average and write training.json last.
    state = TrainState(params=list(unet.named_parameters()), modules={"unet": unet, "ema": ema.model}, ema=ema)
    outcome = train_loop(run, step_fn, state, config=run_config, desc="train diffusion")
    from aigc.formats import class_diffusion

    class_diffusion.save(run.out, ema.model, scheduler, classes=classes, image_size=res, channels=channels,
                         default_steps=sample_steps, default_guidance=guidance, default_scheduler="ddpm",
                         dtype=options.dtype)
    result = pretrain_result(run, "diffusion", outcome, main="loss", train_examples=dataset.pixels.shape[0])
    write_result(run.out, result, run_config)
    return result
