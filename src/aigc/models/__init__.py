"""aigc's own network architectures: a StyleGAN2-style GAN, a CycleGAN for unpaired image translation, a
convolutional VAE, a mel-spectrogram word speaker with its Griffin-Lim vocoder, a clip VAE for moving sprites,
and (in :mod:`aigc.models.unet2d` and :mod:`aigc.models.schedules`) a class-conditional UNet and DDPM/DDIM
samplers that run diffusers' checkpoints of the class-diffusion models without importing diffusers.

Each lives in one file, readable top to bottom, with shapes in comments. ``import aigc.models`` imports torch.

Example:
    >>> from aigc.models import StyleGANConfig, StyleGANGenerator
    >>> g = StyleGANGenerator(StyleGANConfig(resolution=16, widths=(32, 32, 16)))  # doctest: +SKIP
"""

from aigc.models.cyclegan import CycleGANConfig, CycleGANGenerators, ImagePool, PatchDiscriminator, ResnetGenerator
from aigc.models.speech import GriffinLimVocoder, MelSpeechConfig, MelSpeechDecoder, log_mel_spectrogram
from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
from aigc.models.stylegan import StyleGANConfig, StyleGANDiscriminator, StyleGANGenerator
from aigc.models.unet2d import UNet2D, UNet2DConfig
from aigc.models.vae import ConvVAE, VAEConfig

__all__ = [
    "ConvVAE",
    "CycleGANConfig",
    "CycleGANGenerators",
    "GriffinLimVocoder",
    "ImagePool",
    "MelSpeechConfig",
    "MelSpeechDecoder",
    "PatchDiscriminator",
    "ResnetGenerator",
    "SpriteVideoConfig",
    "SpriteVideoVAE",
    "StyleGANConfig",
    "StyleGANDiscriminator",
    "StyleGANGenerator",
    "UNet2D",
    "UNet2DConfig",
    "VAEConfig",
    "log_mel_spectrogram",
]
