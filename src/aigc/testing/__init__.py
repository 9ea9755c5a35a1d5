"""Test helpers for aigc and for plugin authors.

- Tiny random models saved to a directory, to test the real loading path offline: text (:func:`tiny_gpt2`,
  :func:`tiny_llama`, :func:`tiny_t5`, :func:`tiny_tokenizer`,
  :func:`tiny_bert`, :func:`tiny_bert2bert`, :func:`tiny_wordpiece_tokenizer`), image (:func:`tiny_stable_diffusion`,
  :func:`tiny_gan`, :func:`tiny_vae`), audio (:func:`tiny_mel_speech`, :func:`tiny_vits`, :func:`tiny_speecht5`,
  :func:`tiny_musicgen`, :func:`tiny_bark`, :func:`tiny_fastspeech2`, :func:`tiny_audioldm`, :func:`tiny_audioldm2`,
  :func:`tiny_stable_audio`) and video (:func:`tiny_sprite_video`, :func:`tiny_text_to_video`,
  :func:`tiny_animatediff`, :func:`tiny_motion_adapter`, :func:`tiny_image_to_video`).
- The backend contract suite (:func:`check_generator`), which any backend -- ours or a plugin's -- runs.
- Fake backends (:class:`FakeTextGenerator`, :class:`FakeImageGenerator`) and :func:`registered`, to test
  code that uses aigc without models.
- :mod:`aigc.testing.fuzz`: a seeded fuzzer of the public API (every failure must be an ``AigcError``), and
  :mod:`aigc.testing.crash`: ``kill -9`` during saves, checking every output is a whole save.

Example:
    >>> from aigc.testing import check_generator, tiny_gpt2
    >>> gen = aigc.load("text", tiny_gpt2(tmp_path / "m"))              # doctest: +SKIP
    >>> check_generator(gen, prompt="Hello", max_new_tokens=4)          # doctest: +SKIP
"""

from aigc.testing.audio_bark import tiny_bark
from aigc.testing.audio_mel import tiny_mel_speech
from aigc.testing.audio_models import (
    tiny_audioldm,
    tiny_audioldm2,
    tiny_fastspeech2,
    tiny_musicgen,
    tiny_speecht5,
    tiny_stable_audio,
    tiny_vits,
)
from aigc.testing.contract import check_generator, outputs_equal
from aigc.testing.factories import (
    CHAT_TEMPLATE,
    tiny_bert,
    tiny_bert2bert,
    tiny_gan,
    tiny_gpt2,
    tiny_llama,
    tiny_stable_diffusion,
    tiny_t5,
    tiny_tokenizer,
    tiny_vae,
    tiny_wordpiece_tokenizer,
)
from aigc.testing.fake import FakeImageGenerator, FakeTextGenerator, registered
from aigc.testing.video_models import tiny_animatediff, tiny_image_to_video, tiny_motion_adapter, tiny_text_to_video
from aigc.testing.video_sprites import tiny_sprite_video

__all__ = [
    "CHAT_TEMPLATE",
    "FakeImageGenerator",
    "FakeTextGenerator",
    "check_generator",
    "outputs_equal",
    "registered",
    "tiny_animatediff",
    "tiny_audioldm",
    "tiny_audioldm2",
    "tiny_bark",
    "tiny_bert",
    "tiny_bert2bert",
    "tiny_fastspeech2",
    "tiny_gan",
    "tiny_gpt2",
    "tiny_image_to_video",
    "tiny_llama",
    "tiny_mel_speech",
    "tiny_motion_adapter",
    "tiny_musicgen",
    "tiny_speecht5",
    "tiny_sprite_video",
    "tiny_stable_audio",
    "tiny_stable_diffusion",
    "tiny_t5",
    "tiny_text_to_video",
    "tiny_tokenizer",
    "tiny_vae",
    "tiny_vits",
    "tiny_wordpiece_tokenizer",
]
