"""Tiny random text-to-video pipelines, saved with ``save_pretrained``, for tests that load them for real.

Both are deterministic (same ``seed``, same weights), offline (the CLIP tokenizer is built from a small
character vocabulary, not downloaded) and fast on a CPU: 32x32 frames from 16x16 latents (a VAE scale
factor of 2). Weights are drawn inside ``torch.random.fork_rng``, so the caller's global RNG is left alone.

Example:
    >>> from aigc.testing.video_models import tiny_text_to_video
    >>> path = tiny_text_to_video(tmp_path / "t2v")  # doctest: +SKIP
    >>> aigc.load("video", path).generate("a cat", num_frames=4, steps=2, seed=0).frames.shape  # doctest: +SKIP
    (4, 32, 32, 3)
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

__all__ = ["tiny_animatediff", "tiny_image_to_video", "tiny_motion_adapter", "tiny_text_to_video"]

_CROSS_DIM = 32  # text encoder width = UNet cross-attention width


def _clip_parts() -> tuple[Any, Any, Any]:
    """An offline CLIP tokenizer (characters as tokens), its text encoder, and a DDIM scheduler."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=_CROSS_DIM, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return tokenizer, text_encoder, scheduler


def _unet(cls: Any, dims: str, sample_size: int) -> Any:
    """A two-block conditional UNet of ``cls`` (``dims`` "2D" or "3D": the block names' suffix), 8 and 16
    channels, one layer each, cross-attending to the CLIP parts' width."""
    return cls(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=sample_size, in_channels=4, out_channels=4,
        down_block_types=(f"CrossAttnDownBlock{dims}", f"DownBlock{dims}"),
        up_block_types=(f"UpBlock{dims}", f"CrossAttnUpBlock{dims}"),
        cross_attention_dim=_CROSS_DIM, attention_head_dim=4, norm_num_groups=4,
    )


def _vae(sample_size: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(  # two blocks: scale factor 2
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        sample_size=2 * sample_size,
    )


def tiny_text_to_video(path: str | os.PathLike[str], *, seed: int = 0, sample_size: int = 16) -> Path:
    """A random ModelScope-style ``TextToVideoSDPipeline`` (UNet3D, VAE, CLIP, DDIM), saved to ``path``.

    Frames are ``2 * sample_size`` pixels square (32x32 by default). Returns ``path``.
    """
    import torch
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer, text_encoder, scheduler = _clip_parts()
        unet = _unet(UNet3DConditionModel, "3D", sample_size)
        vae = _vae(sample_size)
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
    pipe.save_pretrained(os.fspath(path))  # safetensors by default
    return Path(path)


def _motion_adapter(seed: int, max_frames: int) -> Any:
    import torch
    from diffusers import MotionAdapter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=4,
                             motion_num_attention_heads=2, motion_max_seq_length=max_frames)


def tiny_motion_adapter(path: str | os.PathLike[str], *, seed: int = 0, max_frames: int = 24) -> Path:
    """A random AnimateDiff ``MotionAdapter`` for tiny SD UNets with blocks of 8 and 16 channels, one layer each
    (:func:`aigc.testing.tiny_stable_diffusion`), saved to ``path``; returns ``path``.

    ``max_frames`` is its ``motion_max_seq_length``: the most frames it can make.
    """
    _motion_adapter(seed, max_frames).save_pretrained(os.fspath(path))
    return Path(path)


def tiny_animatediff(path: str | os.PathLike[str], *, seed: int = 0, sample_size: int = 16,
                     max_frames: int = 24) -> Path:
    """A random ``AnimateDiffPipeline`` (an SD-style UNet with a motion adapter), saved to ``path``.

    The motion adapter is saved inside the pipeline folder; it makes at most ``max_frames`` frames. Frames
    are ``2 * sample_size`` pixels square. Returns ``path``.
    """
    import torch
    from diffusers import AnimateDiffPipeline, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer, text_encoder, scheduler = _clip_parts()
        unet = _unet(UNet2DConditionModel, "2D", sample_size)
        vae = _vae(sample_size)
    adapter = _motion_adapter(seed + 1, max_frames)
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                               motion_adapter=adapter, scheduler=scheduler)
    pipe.save_pretrained(os.fspath(path))
    return Path(path)


def tiny_image_to_video(path: str | os.PathLike[str], *, seed: int = 0, num_frames: int = 4) -> Path:
    """A random ``StableVideoDiffusionPipeline`` (image-to-video: spatio-temporal UNet, temporal-decoder VAE,
    CLIP image encoder, Euler), saved to ``path``; returns ``path``.

    It animates an ``init_image`` (no prompt). Its blocks are 32 and 64 channels wide (the spatio-temporal
    blocks use 32 normalisation groups); the VAE scale factor is 2, so 32x32 frames come from 16x16 latents.
    ``num_frames`` is its default clip length.
    """
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            sample_size=16, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=_CROSS_DIM, num_attention_heads=(2, 4), addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=24, num_frames=num_frames,
        )
        vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                                           down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4,
                                           layers_per_block=1)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=_CROSS_DIM, projection_dim=_CROSS_DIM, num_hidden_layers=2, num_attention_heads=4,
            image_size=224, intermediate_size=37, patch_size=28,
        ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       interpolation_type="linear", num_train_timesteps=1000,
                                       prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                                       steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
                                       trained_betas=None, use_karras_sigmas=True)
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=feature_extractor)
    pipe.save_pretrained(os.fspath(path))
    return Path(path)
