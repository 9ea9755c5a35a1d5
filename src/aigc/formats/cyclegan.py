"""The CycleGAN format (``aigc.cyclegan``): what :func:`aigc.train.train_cyclegan` exports and the ``cyclegan``
image backend loads::

    model-dir/
        config.json         {"format": "aigc.cyclegan", "version": 1,
                             "config": {...CycleGANConfig fields...},
                             "domains": [{"name": "sneaker", "phrases": ["a sneaker", ...]},
                                         {"name": "ankle boot", "phrases": ["an ankle boot", ...]}]}
        model.safetensors   the two generators' weights ("g_ab.*", "g_ba.*"), float32 or float16

Domain 0 is A, domain 1 is B: ``"a2b"`` translates an image of the first into the second. A prompt names the
target domain by one of its phrases (matched without case, spaces and punctuation at the ends).

Example:
    >>> from aigc.models import CycleGANConfig, CycleGANGenerators
    >>> save(tmp / "cg", CycleGANGenerators(CycleGANConfig(resolution=16, ngf=4)), domains=[...])  # doctest: +SKIP
    >>> detect(tmp / "cg"), load(tmp / "cg").domains[1].name  # doctest: +SKIP
    (True, 'ankle boot')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aigc.errors import InvalidRequest
from aigc.formats import _folder

if TYPE_CHECKING:
    from aigc.models.cyclegan import CycleGANGenerators, Direction

__all__ = ["FORMAT", "VERSION", "CycleGANFile", "Domain", "detect", "domain_entries", "load", "save"]

FORMAT = "aigc.cyclegan"
VERSION = 1


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".!?,;:").strip()).lower()


@dataclass(frozen=True)
class Domain:
    """One side of the translation: its name and the prompt phrases that name it (the name included)."""

    name: str
    phrases: tuple[str, ...]

    def matches(self, prompt: str) -> bool:
        """Whether ``prompt`` is one of this domain's phrases (case and surrounding punctuation ignored)."""
        return _key(prompt) in {_key(p) for p in (self.name, *self.phrases)}


def domain_entries(names: Sequence[str], phrases: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """The ``"domains"`` entries of ``config.json`` for two domain ``names``, with extra ``phrases`` per name.

    Raises:
        InvalidRequest: not two distinct non-empty names; phrases for a name that is not one of them; a phrase
            naming both domains.

    Example:
        >>> domain_entries(["sneaker", "boot"], {"boot": ["a boot"]})[1]
        {'name': 'boot', 'phrases': ['boot', 'a boot']}
    """
    if (not isinstance(names, Sequence) or isinstance(names, str) or len(names) != 2
            or not all(isinstance(n, str) and n.strip() for n in names) or _key(names[0]) == _key(names[1])):
        raise InvalidRequest("names", names, "must be two distinct non-empty names, domain A's then B's",
                             "pass names=('sneaker', 'ankle boot')")
    extra = dict(phrases or {})
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise InvalidRequest("phrases", unknown, "names no domain", f"use keys among {list(names)}")
    out = []
    for name in names:
        seen: list[str] = []
        for p in (name, *extra.get(name, ())):
            if not isinstance(p, str) or not p.strip():
                raise InvalidRequest("phrases", p, "must be non-empty strings", f"pass phrases={{{name!r}: ['...']}}")
            if p not in seen:
                seen.append(p)
        out.append({"name": name, "phrases": seen})
    a, b = ({_key(p) for p in e["phrases"]} for e in out)
    if a & b:
        raise InvalidRequest("phrases", sorted(a & b), "name both domains", "give each domain phrases of its own")
    return out


@dataclass
class CycleGANFile(_folder.NetShape):
    """A loaded CycleGAN.

    Attributes:
        net: the :class:`~aigc.models.CycleGANGenerators`, on its device, eval mode, gradients off.
        domains: domain A, then domain B.
        weights: the fingerprint of the weight file (for provenance).
    """

    net: CycleGANGenerators
    domains: tuple[Domain, Domain]
    weights: str = ""

    def direction_to(self, prompt: str) -> Direction | None:
        """The direction whose target domain ``prompt`` names (``"a2b"`` for domain B), or ``None``."""
        if self.domains[1].matches(prompt):
            return "a2b"
        if self.domains[0].matches(prompt):
            return "b2a"
        return None


def detect(path: Path) -> bool:
    """Whether ``path/config.json`` declares the CycleGAN format."""
    return _folder.read_config(path, FORMAT) is not None


def save(out: str | os.PathLike[str], net: CycleGANGenerators, *, domains: Sequence[Mapping[str, Any]],
         dtype: torch.dtype = torch.float32) -> Path:
    """Write the generator pair ``net`` and its two ``domains`` (:func:`domain_entries`) as a model folder.

    Args:
        out: the folder (created when missing; other files in it are left alone).
        domains: domain A's entry, then B's.
        dtype: the stored weights' dtype (``torch.float16`` halves the file).
    """
    if len(domains) != 2:
        raise InvalidRequest("domains", len(domains), "a CycleGAN has two domains", "pass domain A's then B's entry")
    config = {"format": FORMAT, "version": VERSION, "config": net.cfg.to_dict(),
              "domains": [{"name": d["name"], "phrases": list(d["phrases"])} for d in domains]}
    return _folder.write(out, config, net.state_dict(), dtype=dtype)


def load(path: str | os.PathLike[str], *, device: torch.device | str = "cpu",
         dtype: torch.dtype = torch.float32) -> CycleGANFile:
    """Load a CycleGAN model folder onto ``device`` in ``dtype``.

    Raises:
        ModelNotFound: not a CycleGAN folder, or its config and weights do not fit. UnsafeModelFile: only pickle
            weights.
    """
    from aigc.models.cyclegan import CycleGANConfig, CycleGANGenerators

    folder, data, state, weights = _folder.open_model(path, FORMAT, "CycleGAN model",
                                                      "pass a directory written by aigc.train.train_cyclegan")
    with _folder.parsing(folder, "CycleGAN"):
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r} is not {VERSION}")
        net = CycleGANGenerators(CycleGANConfig.from_dict(data["config"]))
        entries = data["domains"]
        if not isinstance(entries, list) or len(entries) != 2:
            raise ValueError("'domains' must list two domains")
        a, b = (Domain(str(e["name"]), tuple(str(p) for p in e["phrases"])) for e in entries)
    _folder.load_state(net, state, folder, dtype)
    net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return CycleGANFile(net, (a, b), weights)
