"""The folder layout most of aigc's own formats share: ``config.json`` + ``model.safetensors``.

``config.json`` holds ``{"format": <id>, "version": 1, "config": {...}, ...}``; ``model.safetensors`` the
network's state dict. :func:`write` builds both in a staging folder and moves each into place with one rename,
so a reader sees the old model or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc._runtime.assets import read_json_object
from aigc._runtime.weights import fingerprint_files, weight_files
from aigc.errors import ModelNotFound

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "load_state",
    "open_model",
    "parsing",
    "publish",
    "read_config",
    "read_state",
    "require_config",
    "staging_folder",
    "write",
]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def read_config(path: Path, format_id: str) -> dict[str, Any] | None:
    """``path/config.json`` when it declares ``format_id``, else ``None`` (what ``detect`` needs; never raises)."""
    data = read_json_object(path / CONFIG_FILE)
    return data if data is not None and data.get("format") == format_id else None


def require_config(path: Path, format_id: str, what: str, fix: str) -> dict[str, Any]:
    """``path/config.json`` of a ``format_id`` model, or :class:`~aigc.errors.ModelNotFound` saying what is wrong."""
    data = read_config(path, format_id)
    if data is None:
        raise ModelNotFound(f"{path} is not an aigc {what} (no {CONFIG_FILE} with format {format_id!r}). Fix: {fix}")
    return data


def open_model(path: str | os.PathLike[str], format_id: str, what: str, fix: str,
               ) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor], str]:
    """A model folder of ``format_id``: (the folder, its config, its state dict, the weights' fingerprint), or
    ModelNotFound / UnsafeModelFile saying what is wrong (``fix`` is what to do when it is another kind of folder)."""
    folder = Path(path)
    data = require_config(folder, format_id, what, fix)
    state, weights = read_state(folder, "export the model again")
    return folder, data, state, weights


@contextlib.contextmanager
def parsing(path: Path, what: str) -> Iterator[None]:
    """Turn a malformed ``config.json`` (a missing key, a wrong type or value) into ModelNotFound naming the file."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError) as e:  # InvalidRequest is a ValueError
        raise ModelNotFound(f"{path / CONFIG_FILE} is not a valid {what} config: {e}. Fix: export it again") from None


def read_state(path: Path, fix: str) -> tuple[dict[str, torch.Tensor], str]:
    """``path/model.safetensors`` as a state dict, and its fingerprint (for provenance).

    Raises:
        UnsafeModelFile: the folder holds only pickle weights. ModelNotFound: no weights file.
    """
    from safetensors.torch import load_file

    if not (path / WEIGHTS_FILE).is_file():
        with contextlib.suppress(ModelNotFound):
            weight_files(path, allow_pickle=False)  # refuses pickle-only folders with UnsafeModelFile
        raise ModelNotFound(f"{path} has no {WEIGHTS_FILE}. Fix: {fix}")
    return load_file(path / WEIGHTS_FILE), fingerprint_files([path / WEIGHTS_FILE])


def load_state(net: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    """Load ``state`` into ``net`` (floating tensors cast to ``dtype``), or ModelNotFound when they do not fit."""
    try:
        net.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise ModelNotFound(f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: {str(e).splitlines()[0]}. "
                            "Fix: export the weights and config together") from None


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def publish(staging: Path, out: Path) -> None:
    """Move every entry of the finished ``staging`` folder into ``out``, each with one ``os.replace``, in name order.

    Files get the mode the user's umask gives (safetensors alone writes 0600). A folder that exists in ``out`` under
    the same name (``unet/`` of an earlier export) is replaced: moved aside, then the new one renamed in.
    """
    out.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    for item in sorted(staging.iterdir()):
        target = out / item.name
        for f in [item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]:
            os.chmod(f, 0o666 & ~umask)
            _fsync(f)
        if target.is_dir() and not target.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{item.name}.", suffix=".old", dir=out))
            os.replace(target, trash / item.name)
            os.replace(item, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(item, target)


@contextlib.contextmanager
def staging_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh folder inside ``out`` to build an export in; on success its entries are published into ``out``
    (:func:`publish`); the folder is removed either way."""
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=target))
    try:
        yield staging
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(dict(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write(out: str | os.PathLike[str], config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *,
          dtype: torch.dtype) -> Path:
    """Write ``config`` (with its ``"format"``) and ``state`` (floating tensors as ``dtype``) to the folder ``out``.

    Both files are made in a staging folder inside ``out``, then moved into place with one rename each, the
    weights first; other files in ``out`` are left alone.
    """
    from safetensors.torch import save_file

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=target))
    try:
        tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                   for k, v in state.items()}
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": str(config["format"])})
        write_json(staging / CONFIG_FILE, config)
        umask = os.umask(0)
        os.umask(umask)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            os.chmod(staging / name, 0o666 & ~umask)
            _fsync(staging / name)
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class NetShape:
    """For a loaded model whose ``net`` has a ``cfg`` with ``resolution`` and ``channels``: both as properties."""

    net: Any

    @property
    def resolution(self) -> int:
        return int(self.net.cfg.resolution)

    @property
    def channels(self) -> int:
        return int(self.net.cfg.channels)
