"""CLIP score: how well images match their prompts, by a local transformers CLIP model."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.evaluate._score import Score

if TYPE_CHECKING:
    import torch

    from aigc.evaluate._images import Images

__all__ = ["clip_score"]


def clip_score(
    images: Images,
    prompts: Sequence[str],
    *,
    model: str | os.PathLike[str],
    batch_size: int = 32,
    device: str = "cpu",
) -> Score:
    """CLIP score: how well each image matches its prompt, ``100 * max(cos(E_image, E_text), 0)``, averaged.

    The scale is torchmetrics' ``CLIPScore`` (0-100); Hessel et al. 2021's CLIP-S uses ``2.5 * max(cos, 0)``
    (multiply by 0.025 to convert). Prompts longer than the model's context are truncated.

    Args:
        images: one image per prompt: a directory (sorted by name), or a list of PIL images / paths.
        prompts: the prompts, in the same order.
        model: a local directory with a transformers CLIP model (``CLIPModel``; safetensors weights) and its
            processor (tokenizer and image processor files), as written by ``save_pretrained``.
        batch_size: pairs per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``.

    Returns:
        A :class:`Score` named ``"CLIP score"`` in [0, 100]; ``details["per_sample"]`` holds each pair's score.

    Raises:
        InvalidRequest: no images, a different number of prompts and images, unreadable images.
        ModelNotFound: ``model`` is not a directory holding a CLIP model.
        UnsafeModelFile: the model has only pickle weights.

    Example:
        >>> clip_score(["cat.png"], ["a photo of a cat"], model="path/to/clip-vit-base-patch32").score  # doctest: +SKIP
        31.2
    """
    from aigc.evaluate._images import check_batch_size, image_batches, image_items

    check_batch_size(batch_size)
    items = image_items("images", images, min_count=1)
    texts = list(prompts) if not isinstance(prompts, str) else [prompts]
    if not texts or any(not isinstance(p, str) for p in texts):
        raise InvalidRequest("prompts", prompts, "must be a non-empty list of strings", "pass one prompt per image")
    if len(texts) != len(items):
        raise InvalidRequest("prompts", f"{len(texts)} prompt(s)", f"there are {len(items)} image(s)",
                             "pass exactly one prompt per image, in the same order")
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"model={os.fspath(model)!r}: not a directory with a CLIP model's config.json. Fix: "
                            "pass a local directory written by CLIPModel/CLIPProcessor.save_pretrained")

    import torch
    from transformers import CLIPModel, CLIPProcessor

    from aigc._runtime.device import resolve_device

    dev = resolve_device(device)
    try:
        clip = CLIPModel.from_pretrained(os.fspath(path), use_safetensors=True)
        processor = CLIPProcessor.from_pretrained(os.fspath(path))
    except OSError as e:
        if "safetensors" in str(e).lower():
            raise UnsafeModelFile(f"model={os.fspath(model)!r} has no safetensors weights: {e}") from None
        raise ModelNotFound(f"model={os.fspath(model)!r}: {e}") from None
    clip.to(dev).eval()  # type: ignore[arg-type]
    max_tokens = min(int(getattr(clip.config.text_config, "max_position_embeddings", 77)),
                     int(getattr(processor.tokenizer, "model_max_length", 77) or 77))
    per_sample: list[float] = []
    with torch.inference_mode():
        batches = image_batches("images", items, batch_size)
        for start, batch in zip(range(0, len(items), batch_size), batches, strict=True):
            tokens = processor.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                         max_length=max_tokens, return_tensors="pt").to(dev)
            pixels = processor.image_processor([im.convert("RGB") for im in batch], return_tensors="pt")
            text_emb = _embedding(clip.get_text_features(**tokens)).double()  # (B, P)
            image_emb = _embedding(clip.get_image_features(pixel_values=pixels["pixel_values"].to(dev))).double()
            cos = torch.nn.functional.cosine_similarity(image_emb, text_emb, dim=-1)  # (B,)
            per_sample += (100.0 * cos.clamp(min=0.0)).cpu().tolist()
    mean = math.fsum(per_sample) / len(per_sample)
    details = {"summary": f"CLIP score = {mean:.4f} ({len(per_sample)} pairs)", "per_sample": per_sample,
               "model": os.fspath(model), "scale": 100.0}
    return Score("CLIP score", mean, details)


def _embedding(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output  # type: ignore[no-any-return]
