"""aigc's own model formats: one module owns each, with its format id, ``save``, ``load`` and ``detect``.

Every writer (the training recipes, ``aigc.testing``'s tiny-model factories, the scripts that train the
embedded models) and every reader (the backends) goes through these modules, so a format is defined in one
place.

==========================  ===================  =====================================================
module                      format id            what
==========================  ===================  =====================================================
:mod:`.classes`             (inside the others)  class tables: ids, names and the prompt phrases naming them
:mod:`.latent`              ``aigc.gan``,        StyleGAN-style GANs and VAEs (``aigc.models``), backends ``gan``,
                            ``aigc.vae``         ``vae`` and ``walk``
:mod:`.cyclegan`            ``aigc.cyclegan``    the two generators of a CycleGAN (``aigc.models.CycleGANGenerators``)
                                                 and their domains, backend ``image.cyclegan``
:mod:`.class_diffusion`     ``aigc.classes/1``   class-conditional diffusion (a diffusers ``UNet2DModel`` and its
                                                 noise schedule), backend ``diffusion``
:mod:`.mel_speaker`         ``aigc.mel_speech``  the word speaker (``aigc.models.MelSpeechDecoder``), backend ``mel``
:mod:`.sprites`             ``aigc.sprite_video`` the clip VAE of sprites in motion, backend ``sprites``
==========================  ===================  =====================================================

The folder formats share one layout (:mod:`._folder`): ``config.json`` (``{"format": ..., "version": 1,
"config": {...}, ...}``) beside ``model.safetensors``, written through a staging folder so a reader never sees
half a model. :func:`staging_folder` and :func:`publish` are that mechanism, for other exports too (the training
recipes' outputs).

Example:
    >>> from aigc.formats import latent
    >>> latent.detect(Path("path/to/model"))  # doctest: +SKIP
    'gan'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aigc.formats._folder import publish, staging_folder
from aigc.formats.classes import ClassTable

if TYPE_CHECKING:
    from aigc.formats import class_diffusion, cyclegan, latent, mel_speaker, sprites

__all__ = ["ClassTable", "class_diffusion", "classes", "cyclegan", "latent", "mel_speaker", "publish", "sprites",
           "staging_folder"]

_LAZY = frozenset({"class_diffusion", "cyclegan", "latent", "mel_speaker", "sprites"})  # they import torch


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"aigc.formats.{name}")
    raise AttributeError(f"module 'aigc.formats' has no attribute {name!r}")
