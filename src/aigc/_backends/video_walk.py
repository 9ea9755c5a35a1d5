"""Video backend ``walk``: latent walks through aigc's own GAN and VAE image models.

A walk for seed ``s`` passes through the images that ``seed=s, s+1, ..., s+keyframes-1`` give in the image
backend, in order, moving between them smoothly:

    * ``interpolation="z"`` (the default): spherical interpolation between the keyframes' z, which keeps every
      frame's latent about as likely under N(0, I) as the keyframes';
    * ``interpolation="w"`` (GANs only): linear interpolation between the keyframes' intermediate latents w,
      after truncation -- the space StyleGAN found to be the more linear one.

Frame ``j`` of ``num_frames`` sits at position ``j * (keyframes - 1) / (num_frames - 1)`` along the path, so the
first frame is seed ``s``'s image and the last is seed ``s + keyframes - 1``'s. Sample *i* of a batch equals a
single run with ``seed = s + i``. Models load as in the ``gan`` and ``vae`` image backends: a directory with our
``config.json``, or the built-in names ``"default"``/``"gan"`` (the shipped GAN) and ``"vae"``.

Example:
    >>> clip = aigc.generate("video", "a sneaker", model="gan", backend="walk", seed=0, num_frames=24)  # doctest: +SKIP
    >>> clip.save("walk.mp4")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from aigc._backends._latent import LatentGenerator, load_latent_model, read_format
from aigc._backends._pixels import to_images
from aigc._generator import LoadOptions
from aigc._results import VideoResult
from aigc._runtime.events import EventEmitter
from aigc._types import VideoRequest
from aigc.errors import InvalidRequest

__all__ = ["LatentWalkGenerator", "slerp"]

DEFAULT_FRAMES, DEFAULT_FPS, DEFAULT_KEYFRAMES = 48, 12.0, 4
_BUILTIN = {"default": ("gan", "default"), "gan": ("gan", "default"), "vae": ("vae", "default")}


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985) between rows of ``a`` and ``b`` (B, D) at fractions ``t`` (B,).

    Falls back to linear interpolation where the two vectors are (nearly) parallel.

    Example:
        >>> slerp(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0.5]))
        tensor([[0.7071, 0.7071]])
    """
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    cos = (a64 * b64).sum(1, keepdim=True) / (a64.norm(dim=1, keepdim=True) * b64.norm(dim=1, keepdim=True) + 1e-12)
    omega = cos.clamp(-1, 1).acos()  # (B, 1)
    sin = omega.sin()
    linear = sin.abs() < 1e-6
    wa = torch.where(linear, 1 - t64, ((1 - t64) * omega).sin() / sin.where(~linear, torch.ones_like(sin)))
    wb = torch.where(linear, t64, (t64 * omega).sin() / sin.where(~linear, torch.ones_like(sin)))
    return (wa * a64 + wb * b64).to(a.dtype)


class LatentWalkGenerator(LatentGenerator[VideoRequest, VideoResult]):
    """Latent-walk videos from a GAN or VAE image model; ``aigc.load("video", model, backend="walk")``.

    Request fields: ``num_frames`` (default 48), ``fps`` (default 12), ``keyframes`` (seeds visited, default 4),
    ``interpolation`` (``"z"`` or ``"w"``), ``truncation``, ``width``/``height`` (whole multiples of the model's
    size). Load options: ``upscale``, ``max_batch_size`` (frames per network call).

    Example:
        >>> walk = aigc.load("video", "default", backend="walk")  # doctest: +SKIP
        >>> walk.generate("a handwritten 3", seed=5, keyframes=3, num_frames=30).save("three.gif")  # doctest: +SKIP
    """

    modality = "video"
    backend_name = "walk"
    builtin_models = frozenset(_BUILTIN)
    request_type = VideoRequest
    supported_params = frozenset({"num_frames", "fps", "width", "height", "keyframes", "interpolation", "truncation"})
    @classmethod
    def detect(cls, path: Path) -> bool:
        return read_format(path) is not None

    @classmethod
    def load(cls, model: str, *, options: LoadOptions) -> LatentWalkGenerator:
        cls.check_load(options)
        if model in _BUILTIN and not Path(model).is_dir():
            kind, name = _BUILTIN[model]
        else:
            kind, name = read_format(Path(model)) or "gan", model
        return cls(latent=load_latent_model(name, kind, options), model_id=model, options=options)

    def _plan(self, request: VideoRequest) -> tuple[int, int, float, str, float]:
        """Frames, keyframes, fps, interpolation and truncation, with defaults, checked against each other."""
        frames = request.num_frames or DEFAULT_FRAMES
        keyframes = request.keyframes or DEFAULT_KEYFRAMES
        if frames < keyframes:
            raise InvalidRequest("num_frames", frames, f"a walk through {keyframes} keyframes needs at least "
                                 f"{keyframes} frames", f"pass num_frames >= {keyframes} (e.g. {keyframes * 12})")
        interpolation = request.interpolation or "z"
        if interpolation == "w" and self.latent.kind != "gan":
            raise InvalidRequest("interpolation", "w", "a VAE has no intermediate latent w",
                                 'pass interpolation="z", or a GAN model')
        truncation = float(request.truncation if request.truncation is not None else self.latent.default_truncation)
        return frames, keyframes, float(request.fps or DEFAULT_FPS), interpolation, truncation

    def _walk(self, seed: int, label: torch.Tensor | None, frames: int, keyframes: int, interpolation: str,
              truncation: float, chunk: int) -> torch.Tensor:
        """One clip (T, C, R, R) in [-1, 1] for the walk starting at ``seed``."""
        latent = self.latent
        z_keys = latent.draw([seed + k for k in range(keyframes)], self.device)  # (K, z_dim)
        pos = torch.linspace(0, keyframes - 1, frames, dtype=torch.float64)
        seg = pos.floor().long().clamp(max=keyframes - 2)  # (T,) segment of each frame
        frac = (pos - seg).to(torch.float32).to(self.device)  # (T,) in [0, 1]
        lo, hi = seg.to(self.device), (seg + 1).to(self.device)
        labels = label.expand(frames) if label is not None else None
        if interpolation == "w":
            w_keys = latent.net.map(z_keys.to(self.dtype), label.expand(keyframes) if label is not None else None,
                                    truncation=truncation)  # (K, num_ws, w_dim)
            f = frac.to(self.dtype)[:, None, None]
            ws = w_keys[lo] * (1 - f) + w_keys[hi] * f
        else:
            z = slerp(z_keys[lo], z_keys[hi], frac)  # (T, z_dim)
        outs = []
        for start in range(0, frames, chunk):
            sl = slice(start, start + chunk)
            if interpolation == "w":
                outs.append(latent.render_ws(ws[sl]).float())
            else:
                outs.append(latent.render_z(z[sl].to(self.dtype), labels[sl] if labels is not None else None,
                                            truncation).float())
        return torch.cat(outs)

    def _generate(self, request: VideoRequest, seeds: list[int], events: EventEmitter) -> VideoResult:
        class_ids = self.latent.classes(request)
        size = self.latent.check_size(request)
        frames, keyframes, fps, interpolation, truncation = self._plan(request)
        n = request.samples_per_prompt
        per_sample = [c for c in class_ids for _ in range(n)]
        chunk = self._chunk_size(request)
        videos: list[np.ndarray[Any, Any]] = []
        with torch.inference_mode():
            for one in self._chunks(len(seeds), events, size=1, unit="clips"):  # a walk per clip, frames chunked
                cid = per_sample[one.start]
                label = torch.tensor([cid], device=self.device) if cid is not None else None
                clip = self._walk(seeds[one.start], label, frames, keyframes, interpolation, truncation, chunk)
                videos.append(np.stack([np.asarray(im) for im in to_images(clip, size, self.upscale)]))
        return VideoResult(videos=videos, seeds=seeds, fps=fps)

