"""Pre-training the sprite clip VAE (:mod:`aigc.models.sprite_video`) for the ``sprites`` video backend.

    >>> from aigc.train import train_sprite_video
    >>> from aigc.train.sprites import digit_split
    >>> split = digit_split(download=True)  # doctest: +SKIP
    >>> res = train_sprite_video(split["train"], "runs/clips", eval_data=split["held_out"])  # doctest: +SKIP
    >>> aigc.generate("video", "a 3 moving left", model="runs/clips", backend="sprites", seed=0)  # doctest: +SKIP

Clips are rendered on the fly from digit sprites (:mod:`aigc.train.sprites`); the output directory is what the
``sprites`` backend loads (:mod:`aigc.formats.sprites`), beside ``training.json`` and ``checkpoints/``; the run
is reproducible and resumes exactly (:mod:`aigc.train._loop`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.train._checks import check_export_dtype, check_float, check_int, export_torch_dtype
from aigc.train._loop import StepContext, TrainState, train_loop
from aigc.train._pretrain import pretrain_result
from aigc.train._result import PretrainResult, write_result
from aigc.train._run import changed_settings, derive_seed, run_options

if TYPE_CHECKING:
    import torch
    from typing_extensions import Unpack

    from aigc.models.sprite_video import SpriteVideoConfig
    from aigc.train._run import RunKeywords

__all__ = ["train_sprite_video"]

_RUN_DEFAULTS: dict[str, Any] = {"steps": 3_000, "batch_size": 32, "lr": 2e-3, "schedule": "cosine",
                                 "warmup_steps": 200, "lr_floor": 0.1, "max_grad_norm": 5.0, "checkpoint_every": 500}
_EVAL_CLIPS = 128


def _digits(name: str, data: Any, num_classes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sprites (N, S, S) in [0, 1], labels (N,))`` checked: every class 0..num_classes-1 present."""
    import torch

    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise InvalidRequest(name, type(data).__name__, "must be a pair (sprites, labels)",
                             "pass aigc.train.sprites.digit_split()['train']")
    sprites, labels = torch.as_tensor(data[0]).float(), torch.as_tensor(data[1]).long()
    if sprites.ndim != 3 or sprites.shape[1] != sprites.shape[2] or len(sprites) == 0:
        raise InvalidRequest(name, tuple(sprites.shape), "sprites must be a non-empty (N, S, S) array",
                             "pass square grayscale sprites in [0, 1]")
    if float(sprites.min()) < 0 or float(sprites.max()) > 1:
        raise InvalidRequest(name, (float(sprites.min()), float(sprites.max())), "sprites must lie in [0, 1]",
                             "divide uint8 pixels by 255")
    if labels.shape != (len(sprites),):
        raise InvalidRequest(name, tuple(labels.shape), f"labels must be one per sprite ({len(sprites)},)",
                             "pass one integer class per sprite")
    if num_classes is not None and (int(labels.min()) < 0 or sorted(set(labels.tolist())) != list(range(num_classes))):
        raise InvalidRequest(name, sorted(set(labels.tolist())), f"labels must cover the classes 0..{num_classes - 1}",
                             "pass sprites of every class")
    return sprites, labels


def train_sprite_video(
    data: Any,
    out: str | os.PathLike[str],
    *,
    eval_data: Any = None,
    config: SpriteVideoConfig | None = None,
    classes: list[dict[str, Any]] | None = None,
    beta: float = 1.0,
    frames_per_clip: int = 4,
    guidance: float = 0.0,
    guidance_truncation: float = 0.8,
    guidance_frames: int = 1,
    classifier_steps: int = 800,
    truncation: float = 0.5,
    fps: float = 8.0,
    export_dtype: str = "float16",
    **settings: Unpack[RunKeywords],
) -> PretrainResult:
    """Train a clip VAE on procedural clips of moving sprites and export it for the ``sprites`` video backend.

    Each step renders ``batch_size`` fresh clips (a class drawn uniformly, a sprite of it, a direction, a motion;
    :func:`aigc.train.sprites.make_clips`), encodes them and decodes ``frames_per_clip`` random frames of each;
    the loss is the negative ELBO per clip (binary cross-entropy of the pixels, rescaled to all frames, +
    ``beta`` x KL). With ``guidance > 0`` a frame classifier is first trained on real frames of ``data``'s own
    sprites (:func:`aigc.train.sprites.train_frame_classifier`, seeded from the run), then frozen; each step also
    decodes ``guidance_frames`` random frames of each clip from prior samples (``z ~ N(0, guidance_truncation^2 I)``)
    and adds ``guidance`` x frames x the classifier's cross-entropy of the prompted class -- classifier
    guidance that pushes sampled frames towards recognisable digits. The held-out negative ELBO (128 fixed clips
    of ``eval_data``, fixed noise) is measured at each checkpoint and at the end.

    Args:
        data: ``(sprites, labels)``: sprites (N, S, S) in [0, 1], labels (N,) covering 0..num_classes-1
            (:func:`aigc.train.sprites.digit_split`).
        out: the output directory (model folder, ``training.json``, ``checkpoints/``).
        eval_data: ``(sprites, labels)`` never trained on, for the held-out loss; ``None`` for none.
        config: the architecture (default: 16 frames of 32x32, widths 32/64/128, 10 classes, 4 directions).
        classes: the class table written to ``config.json`` (default: the ten digits,
            :func:`aigc.train.sprites.digit_classes`).
        beta: weight of the KL term.
        frames_per_clip: frames decoded per clip and step (1..frames).
        guidance: weight of the classifier term (0: off).
        guidance_truncation: scale of the prior samples the classifier term decodes.
        guidance_frames: frames of each clip the classifier term decodes (1..frames).
        classifier_steps: training steps of the guiding classifier.
        truncation, fps: request defaults written to ``config.json``.
        export_dtype: ``"float16"`` or ``"float32"`` weights.
        **settings: the run settings (:class:`~aigc.train.RunOptions`): ``steps`` (default 3,000),
            ``batch_size`` (32), ``lr`` (2e-3), ``schedule`` (``"cosine"``), ``warmup_steps`` (200),
            ``lr_floor`` (0.1), ``weight_decay`` (0), ``max_grad_norm`` (5.0), ``eval_every`` (at each
            checkpoint), ``seed`` (0), ``device`` (``"cpu"``), ``checkpoint_every`` (500), ``resume``,
            ``overwrite``, ``progress``, ``on_step``.

    Returns:
        A :class:`PretrainResult`: ``train_losses`` is the training loss (negative ELBO per clip in nats, plus
        the guidance term); ``losses`` also holds ``reconstruction``, ``kl`` and ``guidance`` (the
        classifier's cross-entropy, when on).

    Raises:
        InvalidRequest: a bad argument or data, before anything trains. TrainingDiverged: a loss became NaN.

    Example:
        >>> res = train_sprite_video(split["train"], "runs/clips", guidance=2.0, steps=3000)  # doctest: +SKIP
        >>> aigc.load("video", "runs/clips", backend="sprites").generate("a 1 moving up", seed=0)  # doctest: +SKIP
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    from aigc.formats import sprites as sprite_format
    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
    from aigc.train import sprites as clips_data

    # 1. Arguments and data, before anything trains.
    options = run_options("train_sprite_video", settings, _RUN_DEFAULTS)
    if config is not None and not isinstance(config, SpriteVideoConfig):
        raise InvalidRequest("config", type(config).__name__, "must be a SpriteVideoConfig",
                             "pass aigc.models.sprite_video.SpriteVideoConfig(...) or None")
    config = config or SpriteVideoConfig()
    if config.channels != 1:
        raise InvalidRequest("config.channels", config.channels, "sprite clips are grayscale", "pass channels=1")
    if config.num_directions != len(clips_data.DIRECTIONS):
        raise InvalidRequest("config.num_directions", config.num_directions, "clips move in 4 directions",
                             "pass num_directions=4")
    check_float("beta", beta, low=0.0, fix="pass beta=1.0")
    check_int("frames_per_clip", frames_per_clip, minimum=1, fix="pass frames_per_clip=4")
    if frames_per_clip > config.frames:
        raise InvalidRequest("frames_per_clip", frames_per_clip, f"must be <= frames ({config.frames})",
                             f"pass frames_per_clip={min(4, config.frames)}")
    check_float("guidance", guidance, low=0.0, fix="pass guidance=0 (off) or e.g. 2.0")
    check_float("guidance_truncation", guidance_truncation, low=0.0, low_open=True, high=2.0,
                fix="pass guidance_truncation=0.8")
    check_int("guidance_frames", guidance_frames, minimum=1, fix="pass guidance_frames=1")
    if guidance_frames > config.frames:
        raise InvalidRequest("guidance_frames", guidance_frames, f"must be <= frames ({config.frames})",
                             "pass guidance_frames=1")
    check_int("classifier_steps", classifier_steps, minimum=1, fix="pass classifier_steps=800")
    check_float("truncation", truncation, low=0.0, high=2.0, fix="pass truncation=0.5")
    check_float("fps", fps, low=0.0, low_open=True, high=240.0, fix="pass fps=8.0")
    check_export_dtype(export_dtype)
    sprites, labels = _digits("data", data, config.num_classes)
    if sprites.shape[-1] >= config.resolution:
        raise InvalidRequest("data", tuple(sprites.shape), f"sprites must be smaller than the canvas "
                             f"({config.resolution})", "pass smaller sprites or a larger config.resolution")
    held = _digits("eval_data", eval_data, config.num_classes) if eval_data is not None else None
    table = classes if classes is not None else clips_data.digit_classes()[:config.num_classes]
    if len(table) != config.num_classes:
        raise InvalidRequest("classes", len(table), f"must list the {config.num_classes} classes",
                             "pass one entry per class, or None")
    run = options.start(out)
    frames, canvas, k, kg, bs = config.frames, config.resolution, frames_per_clip, guidance_frames, options.batch_size
    run_config = {
        "recipe": "sprite_video", "model": config.to_dict(), "train_digits": len(sprites),
        "data": float(sprites.sum()), "steps": run.steps, "batch_size": bs, "lr": options.lr, "beta": beta,
        "frames_per_clip": k, "guidance": guidance, "seed": run.seed,
        **({"guidance_truncation": guidance_truncation, "guidance_frames": guidance_frames,
            "classifier_steps": classifier_steps} if guidance else {}),
        **changed_settings(options, _RUN_DEFAULTS, ("schedule", "warmup_steps", "lr_floor", "weight_decay",
                                                    "max_grad_norm", "eval_every")),
    }

    # 2. The network (initialised from the run's seed) and, with guidance, the frozen classifier.
    with run.seeded("init"):
        model = SpriteVideoVAE(config)
    dev = run.device
    model = model.to(dev).train()
    classifier = None
    if guidance:
        classifier = clips_data.train_frame_classifier(
            sprites, labels, steps=classifier_steps, seed=derive_seed(run.seed, "classifier") % 2**62,
            canvas=canvas).to(dev)

    def clips_of(gen: torch.Generator, pool: tuple[torch.Tensor, torch.Tensor], n: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        clip, c, d, _ = clips_data.make_clips(*pool, n, gen, num_classes=config.num_classes, frames=frames,
                                              canvas=canvas)
        return clip.to(dev), c.to(dev), d.to(dev)

    # 3. One step: the negative ELBO of fresh clips, and the classifier term on frames of prior samples.
    def step_fn(ctx: StepContext) -> dict[str, torch.Tensor | None]:
        gen = ctx.generator()
        clip, c, d = clips_of(gen, (sprites, labels), bs)
        t = torch.argsort(torch.rand(bs, frames, generator=gen), dim=1)[:, :k].to(dev)  # (B, K) distinct frames
        eps = torch.randn(bs, config.latent_dim, generator=gen).to(dev)
        loss, rec, kl = model.loss(clip, c, d, eps, t, beta=beta)
        ce = None
        if classifier is not None:
            z = (torch.randn(bs, config.latent_dim, generator=gen) * guidance_truncation).to(dev)
            tp = torch.argsort(torch.rand(bs, frames, generator=gen), dim=1)[:, :kg].to(dev)
            drawn = torch.sigmoid(model.decode_logits(z, c, d, tp))  # (B, Kg, 1, H, W) in [0, 1]
            ce = F.cross_entropy(classifier(drawn.reshape(bs * kg, 1, canvas, canvas)), c.repeat_interleave(kg))
            loss = loss + guidance * frames * ce
        return {"loss": loss, "reconstruction": rec, "kl": kl, "guidance": ce}

    eval_fn = None
    if held is not None:
        g = run.generator("eval")
        e_clip, e_c, e_d = clips_of(g, held, _EVAL_CLIPS)
        e_eps = torch.randn(_EVAL_CLIPS, config.latent_dim, generator=g).to(dev)

        def eval_fn() -> float:
            model.eval()
            with torch.no_grad():
                total, _, _ = model.loss(e_clip, e_c, e_d, e_eps, beta=1.0)
            model.train()
            return float(total)

    # 4. Train, then export and write training.json last.
    outcome = train_loop(run, step_fn, TrainState(params=list(model.named_parameters()), modules={"model": model}),
                         config=run_config, eval_fn=eval_fn, series=("loss", "reconstruction", "kl", "guidance"),
                         desc="train sprite video")
    model.eval()
    sprite_format.save(run.out, model, classes=table, directions=clips_data.direction_entries(),
                       defaults={"fps": float(fps), "truncation": float(truncation)},
                       dtype=export_torch_dtype(export_dtype))
    result = pretrain_result(run, "sprite_video", outcome, main="loss", train_examples=len(sprites),
                             eval_examples=len(held[0]) if held is not None else 0)
    write_result(run.out, result, run_config)
    return result
