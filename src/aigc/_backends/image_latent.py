"""Image backends ``gan`` and ``vae``: aigc's own latent-variable models, and the ``walk`` video backend's model.

A model directory is what :func:`aigc.train.train_gan` / :func:`aigc.train.train_vae` export, in the format
:mod:`aigc.formats.latent` owns (``config.json`` + ``model.safetensors``).

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

from pathlib import Path
from typing import Any

import torch

from aigc._backends._latent import BUILTIN_MODELS, LatentGenerator, load_latent_model, read_format
from aigc._backends._pixels import to_images
from aigc._generator import LoadOptions
from aigc._results import ImageResult
from aigc._runtime.events import EventEmitter
from aigc._types import ImageRequest
from aigc.errors import InvalidRequest

__all__ = ["GANImageGenerator", "VAEImageGenerator"]


class _LatentImageGenerator(LatentGenerator[ImageRequest, ImageResult]):
    modality = "image"
    request_type = ImageRequest
    kind = ""

    @classmethod
    def detect(cls, path: Path) -> bool:
        return read_format(path) == cls.kind

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> Any:
        cls.check_load(options)
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
        outs = []
        with torch.inference_mode():
            for sl in self._chunks(len(seeds), events, size=self._chunk_size(request)):
                outs.append(latent.render_z(
                    z[sl].to(self.dtype), labels[sl] if labels is not None else None, truncation,
                    mix_z[sl].to(self.dtype) if mix_z is not None else None, mix_layer).float())
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
