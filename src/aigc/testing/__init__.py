"""Test helpers for aigc and for plugin authors.

- Tiny random models saved to a directory (:func:`tiny_gpt2`, :func:`tiny_llama`, :func:`tiny_t5`,
  :func:`tiny_tokenizer`, :func:`tiny_gan`, :func:`tiny_vae`), to test the real loading path offline.
- The backend contract suite (:func:`check_generator`), which any backend -- ours or a plugin's -- runs.
- Fake backends (:class:`FakeTextGenerator`, :class:`FakeImageGenerator`) and :func:`registered`, to test
  code that uses aigc without models.

Example:
    >>> from aigc.testing import check_generator, tiny_gpt2
    >>> gen = aigc.load("text", tiny_gpt2(tmp_path / "m"))              # doctest: +SKIP
    >>> check_generator(gen, prompt="Hello", max_new_tokens=4)          # doctest: +SKIP
"""

from aigc.testing.contract import check_generator, outputs_equal
from aigc.testing.factories import (
    CHAT_TEMPLATE,
    tiny_gan,
    tiny_gpt2,
    tiny_llama,
    tiny_stable_diffusion,
    tiny_t5,
    tiny_tokenizer,
    tiny_vae,
)
from aigc.testing.fake import FakeImageGenerator, FakeTextGenerator, registered

__all__ = [
    "CHAT_TEMPLATE",
    "FakeImageGenerator",
    "FakeTextGenerator",
    "check_generator",
    "outputs_equal",
    "registered",
    "tiny_gan",
    "tiny_gpt2",
    "tiny_llama",
    "tiny_stable_diffusion",
    "tiny_t5",
    "tiny_tokenizer",
    "tiny_vae",
]
