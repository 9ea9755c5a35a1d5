"""Training a CycleGAN (:mod:`aigc.models.cyclegan`) on two unpaired image sets, for the ``cyclegan`` image backend.

    >>> from aigc.train import train_cyclegan
    >>> res = train_cyclegan("data/sneakers", "data/boots", out="runs/cg", names=("sneaker", "ankle boot"),
    ...                      steps=2000)  # doctest: +SKIP
    >>> aigc.generate("image", "an ankle boot", model="runs/cg", backend="cyclegan",
    ...               init_image="sneaker.png")  # doctest: +SKIP

The output directory is what the ``cyclegan`` backend loads (:mod:`aigc.formats.cyclegan`): the exponential moving
average of the two generators, beside ``training.json`` (its presence marks a finished run) and ``checkpoints/``.
Every random draw of step ``s`` (the two batches, the image pools' choices) comes from the loop's generator seeded
with ``derive_seed(seed, "step", s)``; the pools are buffers saved in the checkpoints, so a resumed run gives the
same losses and the same exported bytes as an uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import InvalidRequest
from aigc.train._checks import check_export_dtype, check_float, check_int, export_torch_dtype
from aigc.train._loop import EMA, StepContext, TrainState, train_loop
from aigc.train._pretrain import pretrain_result
from aigc.train._result import PretrainResult, write_result
from aigc.train._run import changed_settings, run_options
from aigc.train.data import fingerprint, load_image_set

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from aigc.models.cyclegan import CycleGANConfig
    from aigc.train._run import RunKeywords

__all__ = ["train_cyclegan"]

_RUN_DEFAULTS: dict[str, Any] = {"steps": 5_000, "batch_size": 8, "lr": 2e-4, "schedule": "linear",
                                 "checkpoint_every": 500}
_UNSUPPORTED = {"weight_decay": "trains with Adam (0.5, 0.999) and no weight decay, as CycleGAN",
                "eval_every": "measures no held-out loss"}


def train_cyclegan(
    domain_a: Any,
    domain_b: Any,
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] = ("a", "b"),
    phrases: Mapping[str, Sequence[str]] | None = None,
    config: CycleGANConfig | None = None,
    lambda_cycle: float = 10.0,
    lambda_identity: float = 5.0,
    lambda_self: float = 0.0,
    self_reg_pool: int = 1,
    self_reg_pooling: Literal["average", "max"] = "average",
    pool_size: int = 50,
    ema_decay: float = 0.999,
    export_dtype: Literal["float32", "float16"] = "float32",
    **settings: Unpack[RunKeywords],
) -> PretrainResult:
    """Train a CycleGAN between two unpaired image sets and export its generators for the ``cyclegan`` backend.

    Each step draws a batch of each domain, updates both generators on the adversarial (least squares), cycle
    and identity losses (:func:`aigc.models.cyclegan.cyclegan_losses`), then each discriminator on real images
    against translated ones drawn from its :class:`~aigc.models.cyclegan.ImagePool`. Adam with betas (0.5,
    0.999) for all four networks; the learning rate decays linearly to 0 by default (the paper keeps it
    constant for half the run, then decays it). The exported generators are an exponential moving average of the
    trained ones (``ema_decay``, warmed up as ``min(ema_decay, (1 + s) / (10 + s))``).

    Args:
        domain_a, domain_b: the two image sets, each a folder of images or an array (N, H, W) / (N, H, W, C),
            uint8 or floats in [0, 1] (:func:`aigc.train.load_image_set`); square, the same size and channels.
            They need not be paired or of equal size.
        out: the output directory (checkpoints go to ``out/checkpoints``).
        names: the two domains' names, A's then B's; a prompt naming one picks the direction into it.
        phrases: extra prompt phrases per domain name (``{"ankle boot": ["an ankle boot", "a boot"]}``).
        config: the architecture; by default ``CycleGANConfig`` at the data's resolution and channels
            (``ngf=16``, 4 residual blocks, ``ndf=32``).
        lambda_cycle: weight of the cycle loss (the paper: 10).
        lambda_identity: weight of the identity loss (the paper: 0.5 * lambda_cycle; 0 turns it off).
        lambda_self: weight of the self-regularisation ``|G_ab(a) - a|_1 + |G_ba(b) - b|_1`` (Shrivastava et al.
            2017; not in the CycleGAN paper): keeps each translation close to its own input (default 0: off).
        self_reg_pool: compare a translation with its input after a ``k x k`` pooling in the
            self-regularisation (default 1: pixel by pixel). Must divide the image side.
        self_reg_pooling: that pooling: ``"average"`` (default; keeps the input's coarse layout and brightness,
            lets the texture inside each cell change) or ``"max"`` (keeps the input's outline, lets holes inside
            it be filled or cut).
        pool_size: images in each discriminator's pool (the paper: 50; 0 turns the pools off).
        ema_decay: the generators' average's decay (0 exports the last weights).
        export_dtype: ``"float32"`` or ``"float16"`` (halves the file).
        **settings: the run settings (:class:`~aigc.train.RunOptions`): ``steps`` (default 5,000), ``batch_size``
            (8 per domain), ``lr`` (2e-4), ``schedule`` (``"linear"``), ``warmup_steps``, ``lr_floor``,
            ``max_grad_norm`` (clips each network's gradient), ``seed`` (0), ``device`` (``"cpu"``),
            ``checkpoint_every`` (500), ``resume``, ``overwrite``, ``progress`` and ``on_step`` (its ``loss`` is
            the generators' total loss).

    Returns:
        A :class:`~aigc.train.PretrainResult` (``method="cyclegan"``); ``losses`` holds ``g_loss``, ``gan``,
        ``cycle``, ``identity``, ``self_reg``, ``d_a`` and ``d_b`` per step.

    Raises:
        InvalidRequest: bad data or hyper-parameters (before anything trains). TrainingDiverged: a loss became NaN
            or infinite.

    Example:
        >>> res = train_cyclegan(sneakers, boots, out="runs/cg", names=("sneaker", "ankle boot"),
        ...                      steps=3000, seed=0)  # doctest: +SKIP
        >>> res.losses["cycle"][-1] < res.losses["cycle"][0]  # doctest: +SKIP
        True
    """
    import torch

    from aigc.formats import cyclegan as cyclegan_format
    from aigc.models.cyclegan import (
        CycleGANConfig,
        CycleGANGenerators,
        ImagePool,
        PatchDiscriminator,
        cyclegan_losses,
        discriminator_loss,
    )

    # 1. Arguments, then the data, before anything trains.
    options = run_options("train_cyclegan", settings, _RUN_DEFAULTS, unsupported=_UNSUPPORTED)
    batch_size = options.batch_size
    check_float("lambda_cycle", lambda_cycle, low=0.0, low_open=True, fix="pass lambda_cycle=10")
    check_float("lambda_identity", lambda_identity, low=0.0, fix="pass lambda_identity=5 (0 turns it off)")
    check_float("lambda_self", lambda_self, low=0.0, fix="pass lambda_self=1 (0 turns it off)")
    check_int("self_reg_pool", self_reg_pool, minimum=1, fix="pass self_reg_pool=1 (pixels) or e.g. 4")
    if self_reg_pooling not in ("average", "max"):
        raise InvalidRequest("self_reg_pooling", self_reg_pooling, "unknown pooling", "pass 'average' or 'max'")
    check_int("pool_size", pool_size, minimum=0, fix="pass pool_size=50 (0 turns the pools off)")
    check_float("ema_decay", ema_decay, low=0.0, high=1.0, fix="pass ema_decay=0.999 (0 exports the last weights)")
    if ema_decay == 1.0:
        raise InvalidRequest("ema_decay", ema_decay, "would never move the average", "pass ema_decay=0.999")
    check_export_dtype(export_dtype)
    if config is not None and not isinstance(config, CycleGANConfig):
        raise InvalidRequest("config", type(config).__name__, "must be a CycleGANConfig",
                             "pass aigc.models.CycleGANConfig(...) or None")
    domains = cyclegan_format.domain_entries(names, phrases)
    run = options.start(out)
    res = config.resolution if config is not None else None
    set_a = load_image_set(domain_a, resolution=res)
    set_b = load_image_set(domain_b, resolution=res)
    if set_a.pixels.shape[1:] != set_b.pixels.shape[1:]:
        raise InvalidRequest("domain_b", f"images of shape {tuple(set_b.pixels.shape[1:])}",
                             f"domain_a's are {tuple(set_a.pixels.shape[1:])}",
                             "give both domains the same size and channels")
    channels, side = int(set_a.pixels.shape[1]), int(set_a.pixels.shape[-1])
    if config is None:
        config = CycleGANConfig(resolution=side, channels=channels)
    if side % self_reg_pool:
        raise InvalidRequest("self_reg_pool", self_reg_pool, f"does not divide the image side ({side})",
                             f"pass a divisor of {side}, e.g. self_reg_pool=4")
    if config.channels != channels:
        raise InvalidRequest("config", f"channels={config.channels}", f"the data has {channels} channel(s)",
                             f"pass config with channels={channels}")
    run_config = {
        "recipe": "cyclegan", "model": config.to_dict(), "data": [fingerprint(set_a), fingerprint(set_b)],
        "domains": domains, "steps": run.steps, "batch_size": batch_size, "lr": options.lr,
        "lambda_cycle": lambda_cycle, "lambda_identity": lambda_identity, "lambda_self": lambda_self,
        **({"self_reg_pool": self_reg_pool, "self_reg_pooling": self_reg_pooling} if self_reg_pool != 1 else {}),
        "pool_size": pool_size,
        "ema_decay": ema_decay, "seed": run.seed,
        **changed_settings(options, _RUN_DEFAULTS, ("schedule", "warmup_steps", "lr_floor", "max_grad_norm")),
    }

    # 2. The networks (initial weights from the run's seed, N(0, 0.02) as the paper), pools, average, optimizers.
    with run.seeded("init"):
        gens = CycleGANGenerators(config)
        d_a, d_b = PatchDiscriminator(config), PatchDiscriminator(config)
        for net in (gens, d_a, d_b):
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.normal_(m.weight, 0.0, 0.02)
                    if m.bias is not None:
                        torch.nn.init.zeros_(m.bias)
    dev = run.device
    pool_a = ImagePool(pool_size, (channels, side, side))  # translated A images, for D_a
    pool_b = ImagePool(pool_size, (channels, side, side))
    ema = EMA(gens, decay_at=lambda s: min(ema_decay, (1 + s) / (10 + s)))
    gens, d_a, d_b, ema.model = gens.to(dev), d_a.to(dev), d_b.to(dev), ema.model.to(dev)
    pool_a, pool_b = pool_a.to(dev), pool_b.to(dev)
    lr, clip = options.lr, options.max_grad_norm
    opt_g = torch.optim.Adam(gens.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=lr, betas=(0.5, 0.999))
    pixels_a, pixels_b = set_a.pixels.to(dev), set_b.pixels.to(dev)

    # 3. One step: the generators' update, then the discriminators'.
    def step_fn(ctx: StepContext) -> dict[str, float | None]:
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = ctx.lr
        gen = ctx.generator()
        real_a = pixels_a[torch.randint(pixels_a.shape[0], (batch_size,), generator=gen).to(dev)]
        real_b = pixels_b[torch.randint(pixels_b.shape[0], (batch_size,), generator=gen).to(dev)]

        # 3.1 generators: fool D_a and D_b, keep the cycles and the identities
        d_a.requires_grad_(False), d_b.requires_grad_(False)
        terms, fake_a, fake_b = cyclegan_losses(gens, real_a, real_b, d_a, d_b, lambda_cycle=lambda_cycle,
                                                lambda_identity=lambda_identity, lambda_self=lambda_self,
                                                self_reg_pool=self_reg_pool, self_reg_pooling=self_reg_pooling)
        opt_g.zero_grad(set_to_none=True)
        terms["g_loss"].backward()  # type: ignore[no-untyped-call]
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(gens.parameters(), clip)
        opt_g.step()

        # 3.2 discriminators: real -> 1, pooled translated -> 0
        d_a.requires_grad_(True), d_b.requires_grad_(True)
        loss_a = discriminator_loss(d_a, real_a, pool_a.query(fake_a, gen))
        loss_b = discriminator_loss(d_b, real_b, pool_b.query(fake_b, gen))
        opt_d.zero_grad(set_to_none=True)
        (loss_a + loss_b).backward()  # type: ignore[no-untyped-call]
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([*d_a.parameters(), *d_b.parameters()], clip)
        opt_d.step()
        return {**{k: float(v.detach()) for k, v in terms.items()}, "d_a": float(loss_a.detach()),
                "d_b": float(loss_b.detach())}

    # 4. Train (the loop updates the average after each step), then export it and write training.json last.
    gens.train(), d_a.train(), d_b.train()
    state = TrainState(modules={"G": gens, "D_a": d_a, "D_b": d_b, "G_ema": ema.model, "pool_a": pool_a,
                                "pool_b": pool_b},
                       optimizers={"opt_g": opt_g, "opt_d": opt_d}, ema=ema)
    fix = f"lower lr (it is {lr}) or set max_grad_norm=1.0, then start again with overwrite=True"
    outcome = train_loop(run, step_fn, state, config=run_config, desc="train cyclegan", diverged_fix=fix,
                         series=("g_loss", "gan", "cycle", "identity", "self_reg", "d_a", "d_b"),
                         show=("cycle", "gan", "d_b"))
    dtype = export_torch_dtype(export_dtype)
    cyclegan_format.save(run.out, ema.model, domains=domains, dtype=dtype)
    result = pretrain_result(run, "cyclegan", outcome, main="g_loss",
                             train_examples=int(pixels_a.shape[0] + pixels_b.shape[0]))
    write_result(run.out, result, run_config)
    return result
