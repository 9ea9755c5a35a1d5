"""Pre-training a StyleGAN2-style GAN (:mod:`aigc.models.stylegan`) for the ``gan`` image backend.

    >>> from aigc.train import train_gan
    >>> res = train_gan("data/shapes", out="runs/gan", steps=2000)  # doctest: +SKIP
    >>> aigc.generate("image", "a circle", model="runs/gan", backend="gan", seed=1)  # doctest: +SKIP

The output directory is what the ``gan`` backend loads (:mod:`aigc.formats.latent`), beside ``training.json``
(how the run went; its presence marks a finished run) and ``checkpoints/``. Every random draw of step ``s``
(the batch, latents, noise, the style-mixing cut) comes from the loop's generator seeded with
``derive_seed(seed, "step", s)`` (:mod:`aigc.train._loop`), so a resumed run gives the same losses and the same
exported bytes as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from aigc.train._checks import check_float, check_int
from aigc.train._loop import EMA, StepContext, TrainState, train_loop
from aigc.train._pretrain import ImageKeywords, image_options, latent_setup, pretrain_result
from aigc.train._result import PretrainResult, write_result
from aigc.train._run import changed_settings
from aigc.train.data import draw_indices, fingerprint, rows_by_class

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from aigc.models.stylegan import StyleGANConfig

__all__ = ["train_gan"]

_RUN_DEFAULTS: dict[str, Any] = {"steps": 10_000, "batch_size": 32, "lr": 0.002, "checkpoint_every": 500}
_UNSUPPORTED = {"weight_decay": "trains with Adam (0, 0.99) and no weight decay, as StyleGAN2",
                "eval_every": "measures no held-out loss"}


def train_gan(
    data: Any,
    out: str | os.PathLike[str],
    *,
    config: StyleGANConfig | None = None,
    r1_gamma: float = 0.1,
    r1_every: int = 16,
    style_mixing_prob: float = 0.9,
    class_loss_weight: float = 1.0,
    ema_kimg: float = 10.0,
    ema_rampup: float | None = 0.05,
    truncation: float = 0.7,
    **settings: Unpack[ImageKeywords],
) -> PretrainResult:
    """Train a StyleGAN2-style GAN (:mod:`aigc.models.stylegan`) and export it for the ``gan`` image backend.

    Each step: one discriminator update on a real batch and as many fakes (non-saturating logistic loss,
    with the R1 gradient penalty on reals every ``r1_every`` steps, lazily scaled as in StyleGAN2), then one
    generator update; the exported generator is an exponential moving average of the trained one
    (half-life ``ema_kimg`` thousand images, ramped up over the first steps), and ``w_avg`` (the mean w per
    class, used by truncation) is tracked on it. Adam with betas (0, 0.99), as StyleGAN2.

    Args:
        data: a folder (one sub-folder per class) or an array; see :mod:`aigc.train.data`.
        out: the output directory (checkpoints go to ``out/checkpoints``).
        config: the architecture; by default one sized for ``data`` (width 128 down to 32).
        r1_gamma, r1_every: R1 weight and interval; ``r1_gamma=0`` turns it off.
        style_mixing_prob: share of batches trained with two latents (style mixing regularisation).
        class_loss_weight: for a conditional model, the weight of the auxiliary classifier's cross-entropy:
            D learns to classify real images, G to make fakes that D classifies as the class asked for
            (AC-GAN, Odena et al. 2017, with the classifier trained on real images only). It makes class
            fidelity arrive far sooner; 0 leaves the projection discriminator alone.
        ema_kimg, ema_rampup: EMA half-life in thousands of images, and its ramp-up fraction (None: none).
        truncation: the default truncation written to ``config.json`` for the backend.
        **settings: ``labels``, ``class_names`` (class ids per image and their names, for an array),
            ``class_phrases``, ``balance_classes``, ``mixed_precision``, ``export_dtype``
            (:class:`~aigc.train.ImageKeywords`), and the run settings
            (:class:`~aigc.train.RunOptions`): ``steps`` (default 10,000), ``batch_size``
            (32), ``lr`` (0.002, constant; ``schedule``, ``warmup_steps``, ``lr_floor`` change it for both
            players), ``max_grad_norm`` (none; clips each player's gradient), ``seed`` (0; ``None`` draws one
            from the OS), ``device`` (``"cpu"``), ``checkpoint_every`` (500), ``resume``, ``overwrite`` (see
            :func:`aigc.train.finetune_text`), ``progress`` (a tqdm bar) and ``on_step`` (a callback after each
            step, whose ``loss`` is the generator's).

    Returns:
        A :class:`PretrainResult`; ``output`` is ``out``.

    Raises:
        InvalidRequest: bad data or hyper-parameters, before anything trains.
        TrainingDiverged: a loss became NaN or infinite.

    Example:
        >>> res = train_gan("data/shapes", out="runs/gan", steps=2000, seed=0)  # doctest: +SKIP
        >>> aigc.load("image", "runs/gan", backend="gan")  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from aigc.models.stylegan import StyleGANConfig, StyleGANDiscriminator, StyleGANGenerator

    # 1. Arguments, then the data, before anything trains.
    options = image_options("train_gan", settings, _RUN_DEFAULTS, unsupported=_UNSUPPORTED)
    steps, batch_size, lr = options.run.steps, options.run.batch_size, options.run.lr
    check_float("r1_gamma", r1_gamma, low=0.0, fix="pass r1_gamma=0.1 (or 0 to turn R1 off)")
    check_int("r1_every", r1_every, minimum=1, fix="pass r1_every=16")
    check_float("style_mixing_prob", style_mixing_prob, low=0.0, high=1.0, fix="pass style_mixing_prob=0.9")
    check_float("class_loss_weight", class_loss_weight, low=0.0, fix="pass class_loss_weight=1.0 (0 turns it off)")
    check_float("ema_kimg", ema_kimg, low=0.0, fix="pass ema_kimg=10")
    check_float("ema_rampup", ema_rampup, low=0.0, low_open=True, high=1.0, fix="pass ema_rampup=0.05 or None",
                allow_none=True)
    check_float("truncation", truncation, low=0.0, high=1.0, fix="pass truncation=0.7")

    def sized(res: int, channels: int, classes: int) -> StyleGANConfig:  # widths 128 at 4x4 down to 32
        widths = tuple(max(32, 128 // 2 ** max(0, i - 1)) for i in range(int(math.log2(res)) - 1))
        return StyleGANConfig(resolution=res, channels=channels, widths=widths, num_classes=classes)

    run, dataset, classes, config = latent_setup(options, out, data, config, StyleGANConfig, sized)
    run_config = {
        "recipe": "gan", "model": config.to_dict(), "data": fingerprint(dataset), "steps": steps,
        "batch_size": batch_size, "lr": lr, "r1_gamma": r1_gamma, "r1_every": r1_every,
        "style_mixing_prob": style_mixing_prob, "class_loss_weight": class_loss_weight, "ema_kimg": ema_kimg,
        "ema_rampup": ema_rampup,
        "balance_classes": options.balance_classes, "seed": run.seed,
        "mixed_precision": options.image["mixed_precision"],
        **changed_settings(options.run, _RUN_DEFAULTS, ("schedule", "warmup_steps", "lr_floor", "max_grad_norm")),
    }

    # 2. The networks (initial weights from the run's seed), the generator's average and the optimizers.
    with run.seeded("init"):
        g_net, d_net = StyleGANGenerator(config), StyleGANDiscriminator(config)

    def ema_decay(step: int) -> float:  # half-life ema_kimg thousand images, ramped up over the first steps
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, (step + 1) * batch_size * ema_rampup)
        return float(0.5 ** (batch_size / max(ema_nimg, 1e-8)))

    g_ema = EMA(g_net, decay_at=ema_decay)
    dev = run.device
    g_net, d_net, g_ema.model = g_net.to(dev), d_net.to(dev), g_ema.model.to(dev)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
    r1_mb = r1_every / (r1_every + 1)  # lazy regularisation: adjust D's Adam (StyleGAN2, appendix B)
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr * r1_mb, betas=(0.0, 0.99 ** r1_mb), eps=1e-8)
    use_classes = class_loss_weight > 0 and dataset.labels is not None
    pixels = dataset.pixels.to(dev)
    labels_t = dataset.labels.to(dev) if dataset.labels is not None else None
    by_class = rows_by_class(dataset)
    autocast = options.autocast(dev)
    num_ws, clip = config.num_ws, options.run.max_grad_norm
    z_dim = config.z_dim

    def latents(gen: torch.Generator, c: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        z = torch.randn(batch_size, z_dim, generator=gen).to(dev)
        ws = g_net.map(z, c)
        if torch.rand((), generator=gen) < style_mixing_prob:
            cut = int(torch.randint(1, num_ws, (), generator=gen))
            z2 = torch.randn(batch_size, z_dim, generator=gen).to(dev)
            ws = torch.cat([ws[:, :cut], g_net.map(z2, c)[:, cut:]], dim=1)
        noise = [torch.randn(s, generator=gen).to(dev) for s in g_net.synthesis.noise_shapes(batch_size)]
        return ws, noise

    def with_class_loss(loss: torch.Tensor, logits: torch.Tensor | None, c: torch.Tensor | None,
                        ) -> tuple[torch.Tensor, float | None]:
        """``loss`` plus the weighted cross-entropy of the auxiliary classifier's ``logits`` (AC-GAN), and the
        cross-entropy's value; ``loss`` alone for an unconditional model or ``class_loss_weight=0``."""
        if not (use_classes and logits is not None and c is not None):
            return loss, None
        term = F.cross_entropy(logits.float(), c)
        return loss + class_loss_weight * term, float(term.detach())

    # 3. One step: a discriminator update, a generator update, the average.
    def step_fn(ctx: StepContext) -> dict[str, float | None]:
        for group in opt_g.param_groups:  # the schedule's rate (constant by default)
            group["lr"] = ctx.lr
        for group in opt_d.param_groups:
            group["lr"] = ctx.lr * r1_mb
        gen = ctx.generator()
        idx = draw_indices(gen, dataset, batch_size, options.balance_classes, by_class).to(dev)
        real = pixels[idx]
        c = labels_t[idx] if labels_t is not None else None
        r1 = None

        # 3.1 discriminator: real -> 1, fake -> 0 (softplus form of the logistic loss)
        g_net.requires_grad_(False), d_net.requires_grad_(True)
        with torch.no_grad(), autocast:
            ws, noise = latents(gen, c)
            fake = g_net.synthesis(ws, noise)
        with autocast:
            real_logit, real_classes = d_net.forward_with_classes(real, c)
            d_loss = F.softplus(d_net(fake.float(), c)).mean() + F.softplus(-real_logit).mean()
            d_loss, d_class = with_class_loss(d_loss, real_classes, c)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()  # type: ignore[no-untyped-call]
        if r1_gamma > 0 and ctx.step % r1_every == 0:  # R1 on reals, float32 (double backward)
            real_r1 = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(d_net(real_r1, c).sum(), real_r1, create_graph=True)
            penalty = grad.square().sum(dim=(1, 2, 3)).mean()
            (penalty * (r1_gamma / 2) * r1_every).backward()  # type: ignore[no-untyped-call]
            r1 = float(penalty.detach())
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(d_net.parameters(), clip)
        opt_d.step()

        # 3.2 generator: make D call fakes real (non-saturating loss)
        g_net.requires_grad_(True), d_net.requires_grad_(False)
        with autocast:
            ws, noise = latents(gen, c)
            fake_logit, fake_classes = d_net.forward_with_classes(g_net.synthesis(ws, noise).float(), c)
            g_loss = F.softplus(-fake_logit).mean()
            g_loss, g_class = with_class_loss(g_loss, fake_classes, c)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()  # type: ignore[no-untyped-call]
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(g_net.parameters(), clip)
        opt_g.step()

        # 3.3 the generator's average, then the running mean of w per class on it
        g_ema.update(ctx.step)
        with torch.no_grad():
            z_avg = torch.randn(batch_size, z_dim, generator=gen).to(dev)
            g_ema.model.update_w_avg(g_ema.model.mapping(z_avg, c), c)
        return {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()), "r1": r1, "d_class": d_class,
                "g_class": g_class}

    # 4. Train, then export the average and write training.json last.
    g_net.train(), d_net.train()
    state = TrainState(modules={"G": g_net, "D": d_net, "G_ema": g_ema.model},
                       optimizers={"opt_g": opt_g, "opt_d": opt_d})
    fix = f"lower lr (it is {lr}) or raise r1_gamma (it is {r1_gamma}), then start again with overwrite=True"
    outcome = train_loop(run, step_fn, state, config=run_config, desc="train gan", diverged_fix=fix,
                         series=("g_loss", "d_loss", "r1", "d_class", "g_class"), show=("d_loss", "g_loss"))
    from aigc.formats import latent

    latent.save(run.out, g_ema.model, classes=classes, defaults={"truncation": truncation},
                dtype=options.dtype)
    result = pretrain_result(run, "gan", outcome, main="g_loss", train_examples=dataset.pixels.shape[0])
    write_result(run.out, result, run_config)
    return result

