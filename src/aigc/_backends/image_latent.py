"""Image backends ``gan`` and ``vae``: aigc's own latent-variable models, and the ``walk`` video backend's model.

A model directory is what :func:`aigc.train.train_gan` / :func:`aigc.train.train_vae` export::

    model-dir/
        config.json         {"format": "aigc.gan" | "aigc.vae", "version": 1,
                             "config": {...StyleGANConfig or VAEConfig fields...},
                             "classes": [{"id": 0, "name": "t-shirt", "phrases": ["tee", ...]}, ...],
                             "defaults": {"truncation": 0.7}}
        model.safetensors   the generator's (or the VAE's) weights, float32 or float16

The built-in name ``"default"`` is the model shipped in the package (``aigc/assets/image_gan`` and
``aigc/assets/image_vae``): 20 classes, the ten Fashion-MNIST garments and the digits 0-9, 32x32 grayscale.

Stages of one ``generate``:
    1. map every prompt to a class and check the size, truncation and style mixing -- before any work;
    2. from each sample's own seed draw z with a CPU generator (a GAN uses its fixed noise maps, StyleGAN2-ADA's
       ``noise_mode="const"``, so an image depends on the seed and class alone);
    3. run the network (GAN: mapping, truncation towards the class's mean w, optional style mixing,
       synthesis; VAE: the decoder on ``truncation * z``);
    4. turn [-1, 1] samples into 8-bit RGB images, upscaled to the requested size.

Sample *i* of ``seed=s`` equals a single run with ``seed=s+i`` (bit-identical with ``deterministic=True``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc._backends.image_diffusion import UPSCALE_FILTERS, ClassTable, to_images, upscaled_size
from aigc._generator import Generator, LoadOptions, ReqT, ResT
from aigc._results import ImageResult
from aigc._runtime.assets import model_dir, read_json_object
from aigc._runtime.events import EventEmitter
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc._types import ImageRequest, Request
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound
from aigc.sampling import randn

__all__ = ["GANImageGenerator", "LatentGenerator", "LatentModel", "VAEImageGenerator", "load_latent_model"]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
FORMATS = {"gan": "aigc.gan", "vae": "aigc.vae"}
BUILTIN_MODELS = {"gan": {"default": "image_gan"}, "vae": {"default": "image_vae"}}


@dataclass
class LatentModel:
    """A loaded GAN generator or VAE with what a backend needs to sample it.

    Attributes:
        kind: ``"gan"`` or ``"vae"``.
        net: the ``StyleGANGenerator`` or ``ConvVAE``, on its device, in eval mode.
        table: the classes and their prompt phrases (``None`` for an unconditional model).
        default_truncation: from ``config.json``'s ``defaults``.
        resolution, channels, z_dim: the sample geometry.
        weights: the fingerprint of the weight file (for provenance).
    """

    kind: str
    net: Any
    table: ClassTable | None
    default_truncation: float
    resolution: int
    channels: int
    z_dim: int
    weights: str

    @property
    def num_ws(self) -> int:
        return int(self.net.cfg.num_ws) if self.kind == "gan" else 0

    def classes(self, request: Request) -> list[int | None]:
        """One class id per prompt (``None`` for an unconditional model), or InvalidRequest naming the classes."""
        ids: list[int | None] = []
        for i, prompt in enumerate(request.prompts()):
            if self.table is None:
                ids.append(None)
                continue
            cid = self.table.match(prompt)
            if cid is None:
                field = "prompt" if isinstance(request.prompt, str) else f"prompt[{i}]"
                raise InvalidRequest(field, prompt, f"names none of the {len(self.table.names)} classes this model "
                                     "draws (or more than one)", f"use one of: {self.table.listing()}")
            ids.append(cid)
        return ids

    def draw(self, seeds: list[int], device: torch.device) -> torch.Tensor:
        """z (B, z_dim): row i is the first ``z_dim`` normals of ``seeds[i]``'s own CPU generator."""
        return randn((self.z_dim,), seeds, device=device)

    def render_z(self, z: torch.Tensor, labels: torch.Tensor | None, truncation: float,
                 mix_z: torch.Tensor | None = None, mix_layer: int | None = None) -> torch.Tensor:
        """Images (B, C, R, R) in about [-1, 1] from latents z (GAN or VAE)."""
        if self.kind == "vae":
            return self.net.decode(z * truncation, labels)  # type: ignore[no-any-return]
        ws = self.net.map(z, labels, truncation=truncation)
        if mix_z is not None:
            ws = torch.cat([ws[:, :mix_layer], self.net.map(mix_z, labels, truncation=truncation)[:, mix_layer:]], 1)
        return self.render_ws(ws)

    def render_ws(self, ws: torch.Tensor) -> torch.Tensor:
        """A GAN's images from ws (B, num_ws, w_dim), with the model's fixed noise maps."""
        return self.net.synthesis(ws)  # type: ignore[no-any-return]

    def check_size(self, request: ImageRequest | Any) -> tuple[int, int]:
        """Output (width, height): whole multiples of the model's resolution (upscaled)."""
        return upscaled_size(request, self.resolution)


def _model_dir(model: str, kind: str) -> Path:
    return model_dir(model, BUILTIN_MODELS[kind], marker=CONFIG_FILE, what=f"{kind} model",
                     fix=f"pass a directory written by aigc.train.train_{kind}")


def read_format(path: Path) -> str | None:
    """``"gan"`` or ``"vae"`` when ``path/config.json`` is one of ours, else ``None``."""
    data = read_json_object(path / CONFIG_FILE)
    fmt = data.get("format") if data is not None else None
    return next((k for k, v in FORMATS.items() if v == fmt), None)


def load_latent_model(model: str, kind: str, options: LoadOptions) -> LatentModel:
    """Load a ``gan`` or ``vae`` model directory (or the built-in ``"default"``) onto ``options.device``."""
    from safetensors.torch import load_file

    from aigc.models import ConvVAE, StyleGANConfig, StyleGANGenerator, VAEConfig

    path = _model_dir(model, kind)
    found = read_format(path)
    if found is not None and found != kind:
        raise ModelNotFound(f"{path} is a {found} model. Fix: pass backend={found!r}")
    if found is None:
        raise ModelNotFound(f"{path} is not an aigc {kind} model (no {CONFIG_FILE} with format {FORMATS[kind]!r}). "
                            f"Fix: pass a directory written by aigc.train.train_{kind}")
    weight_files(path, allow_pickle=False)  # refuses pickle-only folders with UnsafeModelFile
    if not (path / WEIGHTS_FILE).is_file():
        raise ModelNotFound(f"{path} has no {WEIGHTS_FILE}. Fix: export the model again with aigc.train.train_{kind}")
    data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    try:
        if kind == "gan":
            cfg: Any = StyleGANConfig.from_dict(data["config"])
            net: Any = StyleGANGenerator(cfg)
        else:
            cfg = VAEConfig.from_dict(data["config"])
            net = ConvVAE(cfg)
        classes = data.get("classes") or []
        table = ClassTable.from_json({"classes": classes}) if classes else None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelNotFound(f"{path / CONFIG_FILE} is not a valid {kind} config: {e}. Fix: export it again") from None
    if (table is not None and len(table.names) != cfg.num_classes) or (table is None and cfg.num_classes):
        raise ModelNotFound(f"{path}: the network has {cfg.num_classes} classes, {CONFIG_FILE} names "
                            f"{len(table.names) if table else 0}. Fix: export the model and its classes together")
    state = load_file(path / WEIGHTS_FILE)
    try:
        net.load_state_dict({k: v.to(options.dtype) if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise ModelNotFound(f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: {str(e).splitlines()[0]}. "
                            "Fix: export the weights and config together") from None
    net.to(device=options.device, dtype=options.dtype).eval().requires_grad_(False)
    truncation = float(data.get("defaults", {}).get("truncation", 1.0))
    z_dim = cfg.z_dim if kind == "gan" else cfg.latent_dim
    return LatentModel(kind, net, table, truncation, cfg.resolution, cfg.channels, z_dim,
                       fingerprint_files([path / WEIGHTS_FILE]))


def check_load_options(options: LoadOptions, backend: str) -> None:
    if options.offload != "none":
        raise InvalidRequest("offload", options.offload, f"the {backend} backend keeps its small model on one device",
                             "pass offload='none'")
    upscale = options.extra.get("upscale", "bicubic")
    if upscale not in UPSCALE_FILTERS:
        raise InvalidRequest("upscale", upscale, "unknown upscaling filter",
                             f"use one of: {', '.join(UPSCALE_FILTERS)}")
    mbs = options.extra.get("max_batch_size", 64)
    if not isinstance(mbs, int) or isinstance(mbs, bool) or mbs < 1:
        raise InvalidRequest("max_batch_size", mbs, "must be an int >= 1", "pass max_batch_size=16")


class LatentGenerator(Generator[ReqT, ResT]):
    """What the ``gan``, ``vae`` and ``walk`` backends share: a loaded :class:`LatentModel` and the load options
    ``upscale`` and ``max_batch_size``."""

    load_options = frozenset({"upscale", "max_batch_size"})

    def __init__(self, *, latent: LatentModel, model_id: str, options: LoadOptions) -> None:
        super().__init__(model=model_id, device=options.device, dtype=options.dtype, weights=latent.weights,
                         options=options.extra)
        self.latent = latent
        self.upscale = str(options.extra.get("upscale", "bicubic"))
        self.max_batch_size = int(options.extra.get("max_batch_size", 64))

    def _modules(self) -> list[torch.nn.Module]:
        return [self.latent.net]

    def _to(self, device: torch.device) -> None:
        self.latent.net.to(device)

    def _close(self) -> None:
        self.latent.net = None


class _LatentImageGenerator(LatentGenerator[ImageRequest, ImageResult]):
    modality = "image"
    request_type = ImageRequest
    kind = ""

    @classmethod
    def detect(cls, path: Path) -> bool:
        return read_format(path) == cls.kind

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> Any:
        check_load_options(options, cls.kind)
        return cls(latent=load_latent_model(model, cls.kind, options), model_id=model, options=options)

    def _generate(self, request: ImageRequest, seeds: list[int], events: EventEmitter) -> ImageResult:
        # 1. Validate everything before any tensor work.
        latent = self.latent
        class_ids = latent.classes(request)
        size = latent.check_size(request)
        truncation = float(request.truncation if request.truncation is not None else latent.default_truncation)
        mix_layer = None
        if request.mix_seed is not None:
            if latent.kind != "gan":
                raise InvalidRequest("mix_seed", request.mix_seed, "style mixing needs a GAN",
                                     "drop mix_seed, or load a model with backend='gan'")
            mix_layer = request.mix_layer if request.mix_layer is not None else latent.num_ws // 2
            if not 1 <= mix_layer < latent.num_ws:
                raise InvalidRequest("mix_layer", mix_layer, f"this GAN has {latent.num_ws} style layers",
                                     f"pass mix_layer between 1 and {latent.num_ws - 1}")
        n = request.samples_per_prompt
        per_sample = [c for c in class_ids for _ in range(n)]
        labels = None if per_sample[0] is None else torch.tensor(per_sample, device=self.device)

        # 2. Latents from each sample's own seed; the mixing latent is the same for every sample.
        z = latent.draw(seeds, self.device)
        mix_z = latent.draw([request.mix_seed], self.device).expand(len(seeds), -1) if request.mix_seed is not None \
            else None

        # 3. The network, ``chunk`` samples at a time (1 with deterministic=True).
        chunk = 1 if request.deterministic else self.max_batch_size
        total = -(-len(seeds) // chunk)
        events.emit("start", total=total)
        outs = []
        with torch.inference_mode():
            for i, start in enumerate(range(0, len(seeds), chunk)):
                if events.cancelled:
                    raise GenerationCancelled(f"cancelled after {i} of {total} batches. Fix: run generate() again")
                sl = slice(start, start + chunk)
                outs.append(latent.render_z(
                    z[sl].to(self.dtype), labels[sl] if labels is not None else None, truncation,
                    mix_z[sl].to(self.dtype) if mix_z is not None else None, mix_layer).float())
                events.emit("step", step=i + 1, total=total, advance=1)
        events.emit("end", step=total, total=total)
        # 4. Pixels.
        return ImageResult(images=to_images(torch.cat(outs), size, self.upscale), seeds=seeds)


class GANImageGenerator(_LatentImageGenerator):
    """StyleGAN2-style GANs trained by :func:`aigc.train.train_gan`; ``backend="gan"``.

    Prompts pick a class by phrase, as with the diffusion default. Request fields: ``truncation`` (psi,
    towards the class's average w; default from the model, 0.7 for the shipped one), ``mix_seed`` and
    ``mix_layer`` (style mixing: layers ``mix_layer`` onwards take the style of ``mix_seed``'s latent; by
    default half of the layers), ``width``/``height`` (whole multiples of the model's size, upscaled).
    Load options: ``upscale`` (``"bicubic"`` or ``"nearest"``) and ``max_batch_size``.

    Example:
        >>> gen = aigc.load("image", "default", backend="gan")  # doctest: +SKIP
        >>> gen.generate("a sneaker", seed=3, truncation=0.7, mix_seed=9, mix_layer=4).images[0]  # doctest: +SKIP
    """

    backend_name = "gan"
    builtin_models = frozenset(BUILTIN_MODELS["gan"])
    kind = "gan"
    supported_params = frozenset({"width", "height", "truncation", "mix_seed", "mix_layer"})


class VAEImageGenerator(_LatentImageGenerator):
    """Convolutional VAEs trained by :func:`aigc.train.train_vae`; ``backend="vae"``.

    Samples decode z ~ N(0, I) scaled by ``truncation`` (a temperature: below 1 gives more typical, blurrier
    images). Request fields: ``truncation``, ``width``/``height``. Load options as the ``gan`` backend.

    Example:
        >>> aigc.generate("image", "a handwritten 7", backend="vae", seed=0).images[0]  # doctest: +SKIP
    """

    backend_name = "vae"
    builtin_models = frozenset(BUILTIN_MODELS["vae"])
    kind = "vae"
    supported_params = frozenset({"width", "height", "truncation"})
