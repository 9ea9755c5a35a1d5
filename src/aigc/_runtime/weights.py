"""Weight files: the safetensors-only rule and a cheap fingerprint for provenance."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from aigc.errors import BackendUnavailable, ModelNotFound, UnsafeModelFile

__all__ = ["PICKLE_SUFFIXES", "fingerprint_files", "pretrained_errors", "weight_files"]

#: Suffixes of pickle-based weight files, which can run arbitrary code when loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def weight_files(folder: Path, *, allow_pickle: bool, required: bool = True) -> list[Path]:
    """The weight files in ``folder``: safetensors, or pickle files only when ``allow_pickle``.

    Raises:
        UnsafeModelFile: the folder holds only pickle weights and ``allow_pickle`` is false.

    Example:
        >>> weight_files(Path("gpt2-dir"), allow_pickle=False)  # doctest: +SKIP
        [PosixPath('gpt2-dir/model.safetensors')]
    """
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise UnsafeModelFile(
            f"{folder} holds only pickle weights ({', '.join(p.name for p in pickles)}), which can run arbitrary "
            "code when loaded. Fix: convert them to safetensors, or pass allow_pickle=True if you trust the source"
        )
    if not pickles and required:
        from aigc.errors import ModelNotFound

        raise ModelNotFound(f"{folder} has no weight files (*.safetensors). Fix: save the model with save_pretrained")
    return pickles


def fingerprint_files(paths: Iterable[Path]) -> str:
    """A cheap, stable fingerprint of weight files: SHA-256 over name, size, first and last MiB of each.

    Not a full content hash (hashing many GB on every load would be slow), but it changes whenever a file
    is replaced, retrained or truncated in practice.

    Example:
        >>> fingerprint_files([])[:7]
        'sha256:'
    """
    h = hashlib.sha256()
    chunk = 2**20
    for p in sorted(paths, key=lambda q: q.name):
        size = p.stat().st_size
        h.update(f"{p.name}\0{size}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(chunk))
            if size > 2 * chunk:
                f.seek(-chunk, os.SEEK_END)
                h.update(f.read(chunk))
    return "sha256:" + h.hexdigest()[:32]


@contextlib.contextmanager
def pretrained_errors(model: str, *, allow_pickle: bool, what: str = "", value_error: str | None = None,
                      ) -> Iterator[None]:
    """Turn what a ``from_pretrained`` (transformers or diffusers) raises into aigc's errors.

    Args:
        model: the model id or folder, for the message.
        allow_pickle: whether pickle weights were allowed (a missing-safetensors error then says so).
        what: what the folder should have been (``"a loadable diffusers pipeline"``), for the message.
        value_error: when set, a ``ValueError`` also means the model is not of this kind (diffusers raises one
            for a pipeline of another kind).
    """
    try:
        yield
    except OSError as e:
        if "safetensors" in str(e).lower() and not allow_pickle:
            raise UnsafeModelFile(f"model={model!r} has no safetensors weights: {e}. Fix: pass allow_pickle=True "
                                  "if you trust the source") from None
        raise ModelNotFound(f"model={model!r}: {f'not {what}: ' if what else ''}{e}") from None
    except ValueError as e:
        if value_error is None:
            raise
        raise ModelNotFound(f"model={model!r}: cannot load it as {value_error}: {e}") from None
    except ImportError as e:  # e.g. a sentencepiece tokenizer, or Stable Audio's scheduler without torchsde
        raise BackendUnavailable(f"model={model!r} needs a package that is not installed: {e}. Fix: install the "
                                 "package it names") from None
