"""Checkpoints of a training run: safetensors + JSON, no pickle, each written atomically.

A checkpoint is a directory ``OUT/checkpoints/step-NNNNNN``::

    state.json                 {"format": 1, "step": 300, "losses": {"loss": [...], ...},
                                "eval_losses": {"0": 3.1, ...}, "duration_s": 81.2, "config": {...the run...}}
    modules.safetensors        whole networks, keys prefixed by their name ("G.", "D.", "G_ema.", "ema.", ...)
    trainable.safetensors      the trained tensors that no saved network holds (a LoRA adapter's weights)
    NAME.safetensors + .json   each optimizer: its tensors, and the rest of its state dict (steps, param groups)

It is filled in a temporary directory beside its final name and moved there with one ``os.replace``, so a
crash never leaves half a checkpoint. No generator state is stored: every random draw of a run is a function
of its seed and the step (:func:`aigc.train.derive_seed`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import InvalidRequest
from aigc.train._checks import is_nonempty_dir

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKPOINTS_DIR", "RESULT_FILE", "checkpoint_state", "checkpoints", "latest_checkpoint",
           "load_checkpoint", "prepare_out", "resolve_resume", "save_checkpoint", "write_json"]

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
RESULT_FILE = "training.json"
STATE_FILE = "state.json"
MODULES_FILE = "modules.safetensors"
TRAINABLE_FILE = "trainable.safetensors"
FORMAT = 1


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# -- optimizers ----------------------------------------------------------------------------------------
def _save_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """``folder/NAME.safetensors`` (the state's tensors) + ``folder/NAME.json`` (the rest: steps, param groups)."""
    import torch
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                values.setdefault(str(index), {})[key] = value
    save_file(tensors, folder / f"{name}.safetensors")
    write_json(folder / f"{name}.json", {"param_groups": sd["param_groups"], "values": values})


def _load_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """Restore what :func:`_save_optimizer` wrote."""
    from safetensors.torch import load_file

    meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in load_file(folder / f"{name}.safetensors").items():
        index, _, field = key.partition(".")
        state.setdefault(int(index), {})[field] = tensor
    for index, items in meta["values"].items():
        state.setdefault(int(index), {}).update(items)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# -- writing -------------------------------------------------------------------------------------------
def _write_checkpoint_dir(root: Path, step: int, write: Callable[[Path], None]) -> Path:
    """Create checkpoint ``step`` in ``root/checkpoints`` atomically and return its directory.

    ``write(tmp)`` fills a temporary directory beside the final name; the files are synced and the directory
    is moved into place with one ``os.replace``. An earlier, abandoned checkpoint of the same step is replaced.
    """
    folder = root / CHECKPOINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder))
    old: Path | None = None
    try:
        os.chmod(tmp, folder.stat().st_mode & 0o777)  # mkdtemp makes it private; give it its parent's mode
        write(tmp)
        for f in tmp.iterdir():
            _fsync_file(f)
        if final.exists():  # written by an earlier, abandoned attempt at this run: move it aside first
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=folder))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _unsaved_params(params: Sequence[tuple[str, torch.nn.Parameter]],
                    modules: Mapping[str, torch.nn.Module]) -> list[tuple[str, torch.nn.Parameter]]:
    """The trained parameters that no module saved whole holds (those go to ``trainable.safetensors``)."""
    held = {id(p) for m in modules.values() for p in m.parameters()}
    return [(name, p) for name, p in params if id(p) not in held]


def save_checkpoint(out: Path, step: int, state: Mapping[str, Any], *, modules: Mapping[str, torch.nn.Module],
                    params: Sequence[tuple[str, torch.nn.Parameter]],
                    optimizers: Mapping[str, torch.optim.Optimizer]) -> Path:
    """Write checkpoint ``step`` of the run in ``out`` (see the module docstring); return its directory."""
    from safetensors.torch import save_file

    loose = _unsaved_params(params, modules)

    def write(tmp: Path) -> None:
        if modules:
            save_file({f"{name}.{k}": v.detach().to("cpu").contiguous()
                       for name, m in modules.items() for k, v in m.state_dict().items()}, tmp / MODULES_FILE)
        if loose:
            save_file({name: p.detach().to("cpu").contiguous() for name, p in loose}, tmp / TRAINABLE_FILE)
        for name, optimizer in optimizers.items():
            _save_optimizer(optimizer, tmp, name)
        write_json(tmp / STATE_FILE, {"format": FORMAT, **state})

    return _write_checkpoint_dir(out, step, write)


# -- reading -------------------------------------------------------------------------------------------
def _not_this_run(path: Path, what: str) -> InvalidRequest:
    return InvalidRequest("resume", str(path), f"the checkpoint's {what} do not match the model being trained",
                          "resume with the same recipe, model and method, or resume=False")


def check_run_config(path: Path, saved: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse to resume from checkpoint ``path`` when its run configuration ``saved`` differs from ``config``."""
    differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if differ:
        what = "; ".join(f"{k}: {saved.get(k)!r} then, {config.get(k)!r} now" for k in differ[:4])
        raise InvalidRequest("resume", str(path), f"the checkpoint belongs to a different run ({what})",
                             "pass the same model, data and hyper-parameters as the interrupted run, or resume=False")


def load_checkpoint(path: Path, config: Mapping[str, Any], *, modules: Mapping[str, torch.nn.Module],
                    params: Sequence[tuple[str, torch.nn.Parameter]],
                    optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore the networks, trained tensors and optimizers of checkpoint ``path``; return its state.json.

    Raises:
        InvalidRequest: the checkpoint belongs to another run (other settings) or another model.
    """
    import torch
    from safetensors.torch import load_file

    state: dict[str, Any] = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    check_run_config(path, state.get("config", {}), config)
    if "losses" not in state:
        raise InvalidRequest("resume", str(path), "was written by another version of aigc's training loop",
                             "resume=False, or finish the run with the aigc version that began it")
    if modules:
        if not (path / MODULES_FILE).is_file():
            raise _not_this_run(path, "networks")
        tensors = load_file(path / MODULES_FILE)
        for name, module in modules.items():
            prefix = f"{name}."
            try:
                module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            except RuntimeError:
                raise _not_this_run(path, "networks") from None
    loose = _unsaved_params(params, modules)
    if loose:
        saved = load_file(path / TRAINABLE_FILE) if (path / TRAINABLE_FILE).is_file() else {}
        if set(saved) != {name for name, _ in loose}:
            raise _not_this_run(path, "tensors")
        with torch.no_grad():
            for name, p in loose:
                p.copy_(saved[name].to(device=p.device, dtype=p.dtype))
    for name, optimizer in optimizers.items():
        if not (path / f"{name}.json").is_file():
            raise _not_this_run(path, "optimizers")
        _load_optimizer(optimizer, path, name)
    return state


def checkpoints(out: Path) -> list[Path]:
    """The complete checkpoints in ``out/checkpoints``, oldest first."""
    folder = out / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint in ``OUT/checkpoints``, or ``None``.

    Example:
        >>> latest_checkpoint("runs/a")  # doctest: +SKIP
        PosixPath('runs/a/checkpoints/step-000100')
    """
    found = checkpoints(Path(out))
    return found[-1] if found else None


def checkpoint_state(checkpoint: str | os.PathLike[str], module: str) -> dict[str, torch.Tensor]:
    """The state dict of one network saved in a checkpoint: ``"G_ema"`` of a GAN run, ``"ema"`` of a diffusion
    run, ``"model"`` of a VAE run -- to look at a run before it ends.

    Raises:
        InvalidRequest: no such checkpoint, or no network of that name in it.

    Example:
        >>> state = checkpoint_state("runs/gan/checkpoints/step-000500", "G_ema")  # doctest: +SKIP
        >>> StyleGANGenerator(cfg).load_state_dict(state)  # doctest: +SKIP
    """
    from safetensors import safe_open

    path = Path(os.fspath(checkpoint))
    if not (path / STATE_FILE).is_file():
        raise InvalidRequest("checkpoint", os.fspath(checkpoint), f"not a checkpoint directory (no {STATE_FILE})",
                             f"pass a folder such as OUT/{CHECKPOINTS_DIR}/step-000100")
    prefix = f"{module}."
    names: set[str] = set()
    state: dict[str, torch.Tensor] = {}
    if (path / MODULES_FILE).is_file():
        with safe_open(path / MODULES_FILE, framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                names.add(key.partition(".")[0])
                if key.startswith(prefix):
                    state[key[len(prefix):]] = f.get_tensor(key)
    if not state:
        raise InvalidRequest("module", module, f"no network of that name in {path}",
                             f"pass one of {sorted(names)}" if names else "this checkpoint saves no whole network")
    return state


# -- the output directory ----------------------------------------------------------------------------------
def resolve_resume(out: Path, resume: bool | str | os.PathLike[str]) -> Path | None:
    """The checkpoint directory to resume from, or ``None`` to start afresh.

    ``resume=True`` takes the latest checkpoint in ``out`` (none there: start afresh when ``out`` is empty
    or absent); a path must be a checkpoint directory.
    """
    if resume is False:
        return None
    if resume is True:
        if (out / RESULT_FILE).is_file():
            raise InvalidRequest("resume", True, f"the run in {out} has finished ({RESULT_FILE} is there)",
                                 "pass a new out, or overwrite=True to train again")
        found = latest_checkpoint(out)
        if found is None and is_nonempty_dir(out) and not (out / CHECKPOINTS_DIR).is_dir():
            raise InvalidRequest("resume", True, f"{out} holds files but no {CHECKPOINTS_DIR}/ folder",
                                 "pass the out of an interrupted run, or resume=False with a new out")
        if found is None:
            logger.info("resume=True: no checkpoint in %s yet, starting from step 0", out)
        return found
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(resume))))
    if not (path / STATE_FILE).is_file():
        raise InvalidRequest("resume", os.fspath(resume), f"not a checkpoint directory (no {STATE_FILE})",
                             f"pass a folder such as OUT/{CHECKPOINTS_DIR}/step-000100, or resume=True")
    return path


def prepare_out(out: Path, *, overwrite: bool) -> None:
    """Create ``out``; with ``overwrite``, first remove what an earlier run wrote that would confuse this one
    (its checkpoints, its merged model and its finished marker); other files are replaced as they are written.
    """
    if overwrite:
        for name in (CHECKPOINTS_DIR, "merged"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        (out / RESULT_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
