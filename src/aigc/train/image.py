"""LoRA fine-tuning of a Stable Diffusion (1.x / 2.x) pipeline on images with captions.

The UNet (and, optionally, the CLIP text encoder) gets LoRA layers through peft and learns the standard
noise-prediction objective of DDPM; the output is a LoRA folder written with diffusers'
``StableDiffusionPipeline.save_lora_weights``, which ``aigc.load("image", BASE, lora=OUT, lora_scale=...)``
loads, alone or combined with other LoRAs.

Stages of one run:
    1. check the arguments (before anything is read or loaded);
    2. read the images and captions (a missing caption or an unreadable image is named);
    3. load the pipeline; check the resolution against its UNet and VAE; add the LoRA layers;
    4. encode every image once with the VAE (its latent distribution) and, when the text encoder is
       frozen, every caption once;
    5. train with the one training loop (:mod:`aigc.train._loop`): per step, latents, noise and timesteps
       come from one CPU ``torch.Generator`` seeded for that step;
    6. write the LoRA weights, then ``training.json``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import BackendUnavailable, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.train._checks import check_bool, check_int, jsonl_rows
from aigc.train._loop import StepContext, TrainState, train_loop
from aigc.train._result import FinetuneResult, write_result
from aigc.train._run import RunKeywords, changed_settings, run_options

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from typing_extensions import Unpack

__all__ = ["ImageData", "finetune_image", "read_image_data"]

logger = logging.getLogger(__name__)

#: What ``finetune_image`` accepts as ``data``: (image, caption) pairs, or a folder.
ImageData = Sequence[tuple[Any, str]] | str | os.PathLike[str]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]  # the attention projections, as diffusers' LoRA scripts
_TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
_PIPELINES = ("StableDiffusionPipeline",)
_RUN_DEFAULTS: dict[str, Any] = {"steps": 500, "lr": 1e-4, "batch_size": 1, "max_grad_norm": 1.0, "device": "auto"}
_DATA_FIX = ("pass a list of (image, caption) pairs, or a folder of images with same-name .txt captions "
             "(or a metadata.jsonl with file_name and text)")


# -- 2. data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    image: Image.Image  # RGB
    caption: str
    where: str


def _open(value: Any, where: str) -> Image.Image:
    from PIL import Image

    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, (str, os.PathLike)):
        try:
            with Image.open(os.fspath(value)) as img:
                return img.convert("RGB")  # type: ignore[no-any-return]  # ImageFile.__enter__ is untyped
        except (OSError, ValueError) as e:
            raise InvalidRequest("data", where, f"cannot read the image {os.fspath(value)!r} ({e})",
                                 "pass PNG/JPEG/WebP files or PIL images") from None
    raise InvalidRequest("data", where, f"an image must be a PIL image or a path, not {type(value).__name__}",
                         _DATA_FIX)


def _read_folder(folder: Path) -> list[_Item]:
    meta = folder / "metadata.jsonl"
    items = []
    if meta.is_file():
        for lineno, where, row in jsonl_rows(meta, 'write one {"file_name": "a.png", "text": "a caption"} per line'):
            if not (isinstance(row, dict) and isinstance(row.get("file_name"), str)
                    and isinstance(row.get("text"), str)):
                raise InvalidRequest("data", where, f'line {lineno} needs a string "file_name" and "text"',
                                     'write {"file_name": "a.png", "text": "a caption"}')
            path = folder / row["file_name"]
            if not path.is_file():
                raise InvalidRequest("data", where, f"no image {row['file_name']!r} in {folder}",
                                     "fix the file_name, or add the image")
            items.append(_Item(_open(path, where), row["text"], where))
        return items
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    for path in images:
        caption = path.with_suffix(".txt")
        if not caption.is_file():
            raise InvalidRequest("data", str(path), f"the image has no caption file {caption.name}",
                                 f"add {caption.name} next to it, or a metadata.jsonl with file_name and text")
        try:
            text = caption.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidRequest("data", str(caption), f"cannot read the caption ({e})",
                                 "write the caption as UTF-8 text") from None
        items.append(_Item(_open(path, path.name), text, path.name))
    return items


def read_image_data(data: ImageData) -> list[tuple[Image.Image, str]]:
    """Read and check every (image, caption) pair of ``data`` (see :func:`finetune_image`).

    Returns:
        RGB PIL images with their captions, in order (a folder's images sorted by file name).

    Raises:
        InvalidRequest: no pairs, a pair that is not ``(image, caption)``, an unreadable image, an image
            without a caption file, or a malformed ``metadata.jsonl`` line (with its line number).

    Example:
        >>> from PIL import Image
        >>> read_image_data([(Image.new("RGB", (8, 8)), "a black square")])[0][1]
        'a black square'
    """
    if isinstance(data, (str, os.PathLike)):
        folder = Path(os.fspath(data))
        if not folder.is_dir():
            raise InvalidRequest("data", os.fspath(data), "no such directory", _DATA_FIX)
        items = _read_folder(folder)
        if not items:
            raise InvalidRequest("data", os.fspath(data), "the folder holds no images",
                                 f"put images ({', '.join(_IMAGE_SUFFIXES)}) with .txt captions in it")
        return [(it.image, it.caption) for it in items]
    if not isinstance(data, Sequence):
        raise InvalidRequest("data", type(data).__name__, "not a list of (image, caption) pairs or a folder",
                             _DATA_FIX)
    if not data:
        raise InvalidRequest("data", [], "no images", "pass at least one (image, caption) pair")
    out = []
    for i, pair in enumerate(data):
        where = f"data[{i}]"
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not isinstance(pair[1], str):
            raise InvalidRequest("data", where, "each item must be an (image, caption) pair with a string caption",
                                 "pass [(Image.open('a.png'), 'a caption'), ...]")
        out.append((_open(pair[0], where), pair[1]))
    return out


def _pixels(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """(N, 3, R, R) in [-1, 1]: shorter side resized to R (bilinear), then centre-cropped, as diffusers' scripts."""
    import numpy as np
    import torch
    from PIL import Image

    rows = []
    for img in images:
        scale = resolution / min(img.size)
        w, h = max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale))
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0  # (R, R, 3)
        rows.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(rows)


# -- 3. the pipeline -------------------------------------------------------------------------------------
def _check_model(model: Any) -> str:
    """The model id; for a local directory, check the pipeline class and the weight files before loading."""
    if not isinstance(model, (str, os.PathLike)) or not os.fspath(model):
        raise InvalidRequest("model", model, "must be a pipeline directory or a hub id",
                             "pass model='path/to/stable-diffusion'")
    name = os.fspath(model)
    if os.path.isdir(name):
        index = Path(name) / "model_index.json"
        if not index.is_file():
            raise ModelNotFound(f"model={name!r}: no model_index.json, so not a diffusers pipeline directory. "
                                "Fix: pass the folder StableDiffusionPipeline.save_pretrained wrote")
        cls = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
        if cls not in _PIPELINES:
            raise InvalidRequest("model", name, f"finetune_image trains Stable Diffusion 1.x/2.x, not {cls}",
                                 "pass a StableDiffusionPipeline directory")
        from aigc._runtime.weights import weight_files

        for sub in ("unet", "vae", "text_encoder"):
            weight_files(Path(name) / sub, allow_pickle=False)
    return name


def _geometry(unet_config: Any, vae_config: Any) -> tuple[int, int]:
    """(default resolution, the multiple every resolution must be) of a UNet + VAE pair."""
    vae_factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    unet_factor = 2 ** (len(unet_config["block_out_channels"]) - 1)
    size = unet_config["sample_size"]
    size = size if isinstance(size, int) else size[0]
    return int(size) * vae_factor, vae_factor * unet_factor


def _check_resolution(resolution: int | None, geometry: tuple[int, int]) -> int:
    default, multiple = geometry
    if resolution is None:
        return default
    if resolution % multiple:
        down, up = max(multiple, resolution // multiple * multiple), (resolution // multiple + 1) * multiple
        raise InvalidRequest("resolution", resolution, f"must be a multiple of {multiple} for this UNet and VAE",
                             f"pass resolution={down} or {up}")
    return resolution


def _local_geometry(name: str) -> tuple[int, int] | None:
    if not os.path.isdir(name):
        return None
    try:
        unet = json.loads((Path(name) / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((Path(name) / "vae" / "config.json").read_text(encoding="utf-8"))
        return _geometry(unet, vae)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # checked again on the loaded pipeline


def _load_pipeline(name: str) -> Any:
    import torch
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(name, dtype=torch.float32, use_safetensors=True,
                                                       safety_checker=None, requires_safety_checker=False)
    except OSError as e:
        if "safetensors" in str(e).lower():
            raise UnsafeModelFile(f"model={name!r} has no safetensors weights: {e}. Fix: convert them to "
                                  "safetensors") from None
        raise ModelNotFound(f"model={name!r}: not a loadable Stable Diffusion pipeline: {e}") from None
    except (ValueError, TypeError) as e:
        raise InvalidRequest("model", name, f"not a Stable Diffusion 1.x/2.x pipeline ({e})",
                             "pass a StableDiffusionPipeline directory") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- the recipe -----------------------------------------------------------------------------------------
def finetune_image(
    model: str | os.PathLike[str],
    data: ImageData,
    *,
    out: str | os.PathLike[str],
    method: str = "lora",
    resolution: int | None = None,
    lora_r: int = 4,
    lora_alpha: int | None = None,
    train_text_encoder: bool = False,
    random_flip: bool = False,
    **settings: Unpack[RunKeywords],
) -> FinetuneResult:
    """Train a LoRA for a Stable Diffusion pipeline's UNet (and text encoder) on captioned images.

    Each step follows DDPM training (Ho et al., 2020, algorithm 1): encode the images with the VAE, draw
    noise and a timestep per image, noise the latents (``x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps``, eq. 4),
    and regress the UNet's prediction on the noise (eq. 14), or on the velocity for ``v_prediction``
    models (SD 2.x). Everything runs in float32; the same seed gives the same LoRA.

    Args:
        model: a Stable Diffusion 1.x/2.x pipeline directory (safetensors) or hub id.
        data: a list of ``(image, caption)`` pairs (a PIL image or a path, and a string); or a folder of
            images (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``) each with a same-name ``.txt`` caption,
            or with a ``metadata.jsonl`` of ``{"file_name": ..., "text": ...}`` lines.
        out: the output directory; it must not exist or be empty, unless ``resume`` or ``overwrite``.
        method: ``"lora"`` (the only method for images).
        resolution: training size in pixels, images are resized (shorter side) and centre-cropped to it
            (default: the UNet's native size, e.g. 512 for SD 1.5).
        lora_r: LoRA rank.
        lora_alpha: LoRA scale numerator (default: ``lora_r``, a scale of 1).
        train_text_encoder: also put LoRA layers on the CLIP text encoder's attention.
        random_flip: flip each image horizontally with probability 1/2 (drawn per step from the seed).
        **settings: the run settings (:class:`~aigc.train.RunOptions`, as for :func:`aigc.train.finetune_text`):
            ``steps`` (default 500), ``lr`` (AdamW's, default 1e-4 as in diffusers' LoRA script; tiny models
            take 1e-2), ``batch_size`` (images per step, default 1), ``schedule`` (default ``"constant"``),
            ``warmup_steps`` (0), ``lr_floor`` (0), ``weight_decay`` (0), ``max_grad_norm`` (1), ``seed`` (0:
            data order, latents, noise, timesteps, LoRA initialisation), ``checkpoint_every`` (none),
            ``resume``, ``overwrite``, ``progress``, ``on_step`` and ``device`` (``"auto"``).

    Returns:
        A :class:`FinetuneResult` (also written to ``OUT/training.json``); ``OUT`` holds
        ``pytorch_lora_weights.safetensors``.

    Raises:
        InvalidRequest: a bad argument or bad data, before anything is trained.
        TrainingDiverged: the loss became NaN or infinite.
        ModelNotFound: no pipeline at ``model``.
        UnsafeModelFile: the pipeline has pickle weights only.
        BackendUnavailable: peft is not installed (``pip install 'aigc[train]'``).

    Example:
        >>> from aigc.train import finetune_image
        >>> finetune_image("path/to/sd-dir", "my-photos/", out="runs/style", steps=1000)  # doctest: +SKIP
        >>> gen = aigc.load("image", "path/to/sd-dir", lora="runs/style", lora_scale=0.8)  # doctest: +SKIP
    """
    # 1. Arguments, before anything is read or loaded.
    if method != "lora":
        raise InvalidRequest("method", method, "finetune_image trains LoRA adapters only", "pass method='lora'")
    options = run_options("finetune_image", settings, _RUN_DEFAULTS,
                          unsupported={"eval_every": "measures no held-out loss"})
    steps, batch_size = options.steps, options.batch_size
    check_int("resolution", resolution, minimum=8, fix="pass resolution=512, or None for the model's size",
              allow_none=True)
    check_int("lora_r", lora_r, minimum=1, fix="pass lora_r=4 (a rank of 1 or more)")
    check_int("lora_alpha", lora_alpha, minimum=1, fix="pass lora_alpha=4, or None for lora_r", allow_none=True)
    check_bool("train_text_encoder", train_text_encoder)
    check_bool("random_flip", random_flip)
    run = options.start(out)
    try:
        import peft
    except ImportError:
        raise BackendUnavailable("LoRA fine-tuning needs peft", extra="train") from None
    alpha = lora_r if lora_alpha is None else lora_alpha

    # 2. Data; the model's directory and resolution where they can be read without loading it.
    pairs = read_image_data(data)
    name = _check_model(model)
    local = _local_geometry(name)
    if local is not None:
        resolution = _check_resolution(resolution, local)

    # 3. The pipeline and its LoRA layers (initialised from the run's seed).
    import torch

    with run.seeded("init"):
        pipe = _load_pipeline(name)
        unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
        resolution = _check_resolution(resolution, _geometry(unet.config, vae.config))
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
        unet.add_adapter(peft.LoraConfig(r=lora_r, lora_alpha=alpha, init_lora_weights="gaussian",
                                         target_modules=_UNET_TARGETS))
        text_config = None
        if train_text_encoder:  # through peft itself: transformers' add_adapter needs a newer peft than unet's
            text_config = peft.LoraConfig(r=lora_r, lora_alpha=alpha, init_lora_weights="gaussian",
                                          target_modules=_TEXT_TARGETS)
            with warnings.catch_warnings():  # transformers models carry an (empty) peft_config attribute
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                peft.inject_adapter_in_model(text_config, text_encoder, adapter_name="default")
    from diffusers import DDPMScheduler

    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    prediction = noise_scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise InvalidRequest("model", name, f"its scheduler predicts {prediction!r}",
                             "use a model trained for epsilon or v_prediction")
    dev = run.device
    for module in (unet, vae, text_encoder):
        module.to(dev)
    vae.eval()
    unet.train()
    text_encoder.train(train_text_encoder)

    # 4. Encode every image once: its latent distribution (mean, std), (N, C, r, r) on the CPU; and the
    # captions' token ids (N, L) -- and their embeddings (N, L, D) when the text encoder is frozen.
    images = [img for img, _ in pairs]
    pixels = _pixels(images, resolution)
    variants = [pixels, pixels.flip(-1)] if random_flip else [pixels]
    dists = []
    with torch.no_grad():
        for px in variants:
            means, stds = [], []
            for start in range(0, len(px), max(batch_size, 8)):
                dist = vae.encode(px[start:start + max(batch_size, 8)].to(dev)).latent_dist
                means.append(dist.mean.cpu())
                stds.append(dist.std.cpu())
            dists.append((torch.cat(means), torch.cat(stds)))
        ids = tokenizer([c for _, c in pairs], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        frozen_text = None if train_text_encoder else text_encoder(ids.to(dev))[0]
    scaling = float(vae.config.scaling_factor)
    timesteps = int(noise_scheduler.config.num_train_timesteps)
    params = [(f"unet.{n}", p) for n, p in unet.named_parameters() if p.requires_grad]
    if train_text_encoder:
        params += [(f"text_encoder.{n}", p) for n, p in text_encoder.named_parameters() if p.requires_grad]

    def step_fn(ctx: StepContext) -> torch.Tensor:
        import torch.nn.functional as F  # noqa: N812

        rows = ctx.epoch_batch(len(pairs))
        g = ctx.generator("noise")
        flips = (torch.rand(len(rows), generator=g) < 0.5).tolist() if random_flip else [False] * len(rows)
        mean = torch.stack([dists[int(f)][0][r] for r, f in zip(rows, flips, strict=True)])  # (B, C, h, w)
        std = torch.stack([dists[int(f)][1][r] for r, f in zip(rows, flips, strict=True)])
        # 1. x_0 ~ q(x_0): a sample of each image's latent distribution, scaled as the UNet expects.
        latents = ((mean + std * torch.randn(mean.shape, generator=g)) * scaling).to(dev)
        # 2. eps ~ N(0, I) and t ~ U{0, ..., T-1}, from the step's generator (made on the CPU, then moved).
        noise = torch.randn(latents.shape, generator=g).to(dev)
        t = torch.randint(0, timesteps, (len(rows),), generator=g).to(dev)
        # 3. x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps (DDPM eq. 4).
        noisy = noise_scheduler.add_noise(latents, noise, t)
        index = torch.tensor(rows)
        text = text_encoder(ids[index].to(dev))[0] if frozen_text is None else frozen_text[index.to(dev)]
        # 4. || eps - eps_theta(x_t, t, c) ||^2 (eq. 14), or the velocity v = sqrt(a_t) eps - sqrt(1 - a_t) x_0.
        target = noise if prediction == "epsilon" else noise_scheduler.get_velocity(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text).sample
        return F.mse_loss(pred.float(), target.float())

    run_config = {
        "recipe": "finetune_image", "model": _identity(name), "method": method, "data": _fingerprint(pixels, ids),
        "steps": steps, "lr": options.lr, "batch_size": batch_size, "resolution": resolution, "lora_r": lora_r,
        "lora_alpha": alpha, "train_text_encoder": train_text_encoder, "random_flip": random_flip,
        "schedule": options.schedule, "warmup_steps": options.warmup_steps, "weight_decay": options.weight_decay,
        "max_grad_norm": options.max_grad_norm, "seed": run.seed,
        **changed_settings(options, _RUN_DEFAULTS, ("lr_floor",)),
    }

    # 5. Train.
    outcome = train_loop(run, step_fn, TrainState(params=params), config=run_config, desc="finetune image (lora)")

    # 6. The LoRA weights, as diffusers' LoRA scripts save them (with the peft config as metadata, so that
    # lora_alpha survives loading), then training.json.
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    from aigc.formats import staging_folder

    with staging_folder(run.out) as staging:
        layers: dict[str, Any] = {
            "unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
            "unet_lora_adapter_metadata": unet.peft_config["default"].to_dict(),
        }
        if text_config is not None:
            # What get_peft_model_state_dict returns for a LoRA without biases: the lora_ tensors, unnamed.
            text_layers = {k.replace(".default", ""): v for k, v in text_encoder.state_dict().items() if "lora_" in k}
            layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(text_layers)
            layers["text_encoder_lora_adapter_metadata"] = text_config.to_dict()  # type: ignore[no-untyped-call]
        StableDiffusionPipeline.save_lora_weights(os.fspath(staging), safe_serialization=True, **layers)
    result = FinetuneResult(
        output=run.out, method=method, steps=run.steps, train_losses=outcome.losses["loss"], eval_losses={},
        duration_s=round(outcome.duration_s, 3), seed=run.seed, train_examples=len(pairs), eval_examples=0,
        resumed_from=outcome.resumed_from, checkpoints=outcome.checkpoints)
    write_result(run.out, result, run_config)
    logger.info("finetune_image: %r", result)
    return result


def _identity(name: str) -> str:
    if not os.path.isdir(name):
        return name
    from aigc._runtime.weights import fingerprint_files, weight_files

    files: list[Path] = []
    for sub in ("unet", "vae", "text_encoder"):
        files += weight_files(Path(name) / sub, allow_pickle=False)
    return fingerprint_files(files)


def _fingerprint(pixels: torch.Tensor, ids: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha256(pixels.numpy().tobytes())
    h.update(ids.numpy().tobytes())
    return "sha256:" + h.hexdigest()[:32]
