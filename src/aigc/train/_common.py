"""What the fine-tuning recipes share: argument checks, seeds, the training loop, checkpoints, the result.

Reproducibility without the global RNG:
    * every random draw of a run is a pure function of ``(seed, purpose, index)`` (:func:`derive_seed`):
      the held-out split, the data order of each epoch, and the randomness of each step;
    * forward passes run inside :func:`seeded_rng`, a ``torch.random.fork_rng`` seeded for that step, so
      dropout is reproducible and the caller's global RNG state is left exactly as it was;
    * so a checkpoint needs no generator states: the step number and the seed restore the randomness, and
      a resumed run computes the same losses as an uninterrupted one (bit for bit on one CPU with one
      thread count: float sums split across threads differently round differently).

A checkpoint is a directory ``OUT/checkpoints/step-NNNNNN`` holding ``trainable.safetensors`` (the
trained tensors), ``optimizer.safetensors`` + ``optimizer.json`` (the optimizer's state, no pickle) and
``state.json`` (step, losses, run configuration). It is written to a temporary directory beside its final
name and moved there with one ``os.replace``, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import InvalidRequest

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINTS_DIR",
    "RESULT_FILE",
    "SCHEDULES",
    "FinetuneResult",
    "LoopOutcome",
    "LoopSpec",
    "Schedule",
    "TrainStep",
    "batch_indices",
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_out",
    "check_seed",
    "derive_seed",
    "latest_checkpoint",
    "lr_at",
    "prepare_out",
    "publish",
    "resolve_resume",
    "run_loop",
    "seeded_rng",
    "write_result",
]

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
RESULT_FILE = "training.json"
_STATE_FILE = "state.json"
_FORMAT = 1
_MAX_SEED = 2**63 - 1

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "linear", "cosine")


# -- argument checks ---------------------------------------------------------------------------------
def check_int(field: str, value: Any, *, minimum: int, fix: str, allow_none: bool = False) -> None:
    """``value`` is an int (not a bool) >= ``minimum`` (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(field, value, "must be an int", fix)
    if value < minimum:
        raise InvalidRequest(field, value, f"must be >= {minimum}", fix)


def check_float(field: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False,
                fix: str, allow_none: bool = False) -> None:
    """``value`` is a real number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidRequest(field, value, "must be a finite number", fix)
    if value < low or (low_open and value == low) or value > high:
        lo = f"> {low}" if low_open else f">= {low}"
        hi = "" if high == math.inf else f" and <= {high}"
        raise InvalidRequest(field, value, f"must be {lo}{hi}", fix)


def check_optimizer(schedule: object, warmup_steps: object, weight_decay: object, max_grad_norm: object) -> None:
    """The optimiser knobs both recipes share: learning-rate schedule, warm-up, weight decay, gradient clipping."""
    check_choice("schedule", schedule, SCHEDULES)
    check_int("warmup_steps", warmup_steps, minimum=0, fix="pass warmup_steps=0 or more")
    check_float("weight_decay", weight_decay, low=0.0, fix="pass weight_decay=0.0 or 0.01")
    check_float("max_grad_norm", max_grad_norm, low=0.0, low_open=True, fix="pass max_grad_norm=1.0 or None",
                allow_none=True)


def check_hooks(progress: object, on_step: object) -> None:
    """``progress`` is None or a bool; ``on_step`` is None or a callable taking a TrainStep."""
    if progress is not None:
        check_bool("progress", progress)
    if on_step is not None and not callable(on_step):
        raise InvalidRequest("on_step", on_step, "must be callable", "pass a function taking a TrainStep")


def check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequest(field, value, "must be True or False", f"pass {field}=True or {field}=False")


def check_choice(field: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise InvalidRequest(field, value, f"unknown {field}", f"pass one of {names}")


def check_seed(seed: Any) -> int:
    """A seed for the run: the int given, or a fresh one from the OS for ``None`` (never the global RNG)."""
    if seed is None:
        from aigc._seeds import fresh_seed

        return fresh_seed()
    check_int("seed", seed, minimum=0, fix="pass seed=0 (any int in [0, 2**63))")
    if seed > _MAX_SEED:
        raise InvalidRequest("seed", seed, "must be < 2**63", "pass a smaller seed")
    return int(seed)


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def check_out(out: Any, *, resume: Any, overwrite: Any) -> Path:
    """The output directory, checked against ``resume`` and ``overwrite`` (nothing is written yet)."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InvalidRequest("out", out, "must be a directory path", "pass out='runs/my-model'")
    check_bool("overwrite", overwrite)
    if not isinstance(resume, (bool, str, os.PathLike)):
        raise InvalidRequest("resume", resume, "must be False, True or a checkpoint directory",
                             "pass resume=True to continue the run in out")
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    if path.exists() and not path.is_dir():
        raise InvalidRequest("out", os.fspath(out), "exists and is a file", "pass a directory path")
    if resume is not False and overwrite:
        raise InvalidRequest("overwrite", overwrite, "resume continues the run in out; overwrite starts it again",
                             "pass resume or overwrite=True, not both")
    if resume is False and not overwrite and _is_nonempty_dir(path):
        raise InvalidRequest("out", os.fspath(out), "the directory exists and is not empty",
                             "pass a new directory, resume=True to continue the run written there, "
                             "or overwrite=True to start again")
    return path


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
        if found is None and _is_nonempty_dir(out) and not (out / CHECKPOINTS_DIR).is_dir():
            raise InvalidRequest("resume", True, f"{out} holds files but no {CHECKPOINTS_DIR}/ folder",
                                 "pass the out of an interrupted run, or resume=False with a new out")
        if found is None:
            logger.info("resume=True: no checkpoint in %s yet, starting from step 0", out)
        return found
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(resume))))
    if not (path / _STATE_FILE).is_file():
        raise InvalidRequest("resume", os.fspath(resume), f"not a checkpoint directory (no {_STATE_FILE})",
                             f"pass a folder such as OUT/{CHECKPOINTS_DIR}/step-000100, or resume=True")
    return path


# -- seeds ---------------------------------------------------------------------------------------------
def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``keys`` (e.g. ``("step", 12)``).

    Example:
        >>> derive_seed(0, "step", 1) == derive_seed(0, "step", 1) != derive_seed(0, "step", 2)
        True
    """
    digest = hashlib.sha256(repr((int(seed), *keys)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNGs (CPU, and ``device``'s) seeded to ``seed``, then restore them.

    For code that draws from the global RNG and cannot be given a generator: dropout, peft's LoRA
    initialisation. The caller's RNG state is the same after the block as before it.
    """
    import torch

    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    module = getattr(torch, device.type)
    index = device.index if device.index is not None else int(getattr(module, "current_device", lambda: 0)())
    with torch.random.fork_rng(devices=[index], device_type=device.type):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        else:
            module.manual_seed(seed)
        yield


def batch_indices(step: int, *, count: int, batch_size: int, seed: int,
                  cache: dict[int, list[int]] | None = None) -> list[int]:
    """Indices of the training examples in batch ``step`` (0-based): epoch by epoch, each freshly shuffled.

    Epoch ``e`` is a permutation drawn from a generator seeded with ``derive_seed(seed, "epoch", e)``; its
    last batch may be smaller. A pure function of its arguments, so a resumed run sees the same batches.

    Example:
        >>> sorted(batch_indices(0, count=4, batch_size=2, seed=0) + batch_indices(1, count=4, batch_size=2, seed=0))
        [0, 1, 2, 3]
    """
    import torch

    per_epoch = -(-count // batch_size)
    epoch, index = divmod(step, per_epoch)
    order = cache.get(epoch) if cache is not None else None
    if order is None:
        g = torch.Generator("cpu").manual_seed(derive_seed(seed, "epoch", epoch))
        order = torch.randperm(count, generator=g).tolist()
        if cache is not None:
            cache.clear()
            cache[epoch] = order
    return order[index * batch_size:(index + 1) * batch_size]


def lr_at(step: int, *, total: int, lr: float, schedule: Schedule, warmup: int) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up over ``warmup`` steps, then the schedule.

    ``"linear"`` decays to 0 at step ``total``; ``"cosine"`` follows half a cosine to 0 (Loshchilov &
    Hutter, SGDR, eq. 5, without restarts); ``"constant"`` keeps ``lr``.

    Example:
        >>> [lr_at(s, total=4, lr=1.0, schedule="linear", warmup=0) for s in range(4)]
        [1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = (step - warmup) / max(1, total - warmup)  # in [0, 1)
    if schedule == "linear":
        return lr * (1.0 - progress)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# -- the result ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainStep:
    """What ``on_step`` receives after each optimizer step.

    Attributes:
        step: 1-based number of the step just finished.
        total: steps in the whole run.
        loss: the training loss of this step's batch.
        lr: the learning rate used for this step.
        eval_loss: the held-out loss measured after this step, or ``None`` when none was measured.
    """

    step: int
    total: int
    loss: float
    lr: float
    eval_loss: float | None = None


@dataclass(repr=False)
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes:
        output: the output directory (a peft adapter, a LoRA folder or a full model; see the recipe).
        method: ``"lora"`` or ``"full"``.
        steps: optimizer steps of the whole run.
        train_losses: the training loss of every step, in order (``len == steps``), including steps run
            before a resume.
        eval_losses: held-out loss by step (step 0 is before training); empty without a held-out split.
        duration_s: seconds spent training, summed over resumed sessions.
        seed: the run's seed (drawn from the OS when ``seed=None`` was passed).
        train_examples, eval_examples: sizes of the training and held-out splits.
        resumed_from: the step this call started at (0 for a fresh run).
        merged: the standalone merged model directory, when one was asked for.
        checkpoints: checkpoint directories present when the run ended.

    Example:
        >>> res = finetune_text("gpt2-dir", ["Hello world."] * 8, out="runs/a", steps=20)  # doctest: +SKIP
        >>> res.train_losses[0] > res.train_losses[-1]  # doctest: +SKIP
        True
    """

    output: Path
    method: str
    steps: int
    train_losses: list[float]
    eval_losses: dict[int, float]
    duration_s: float
    seed: int
    train_examples: int
    eval_examples: int
    resumed_from: int = 0
    merged: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """The training loss of the last step."""
        return self.train_losses[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (paths as strings, step keys as strings)."""
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        data["merged"] = None if self.merged is None else str(self.merged)
        data["checkpoints"] = [str(p) for p in self.checkpoints]
        data["eval_losses"] = {str(k): v for k, v in self.eval_losses.items()}
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FinetuneResult:
        """Read the result a finished run wrote to ``OUT/training.json`` (pass ``OUT`` or the file).

        Example:
            >>> FinetuneResult.load("runs/a").steps  # doctest: +SKIP
            20
        """
        p = Path(path)
        data = json.loads((p / RESULT_FILE if p.is_dir() else p).read_text(encoding="utf-8"))["result"]
        data["output"] = Path(data["output"])
        data["merged"] = None if data["merged"] is None else Path(data["merged"])
        data["checkpoints"] = [Path(c) for c in data["checkpoints"]]
        data["eval_losses"] = {int(k): float(v) for k, v in data["eval_losses"].items()}
        return cls(**data)

    def __repr__(self) -> str:
        losses = f"loss {self.train_losses[0]:.4g} -> {self.train_losses[-1]:.4g}" if self.train_losses else "no steps"
        evals = ""
        if self.eval_losses:
            last = max(self.eval_losses)
            evals = f", eval loss {self.eval_losses[last]:.4g} at step {last}"
        return (f"{type(self).__name__}({str(self.output)!r}, method={self.method!r}, steps={self.steps}, "
                f"{losses}{evals}, "
                f"{self.duration_s:.1f}s)")


# -- checkpoints ---------------------------------------------------------------------------------------
def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON (the rest)."""
    import torch

    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for index, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                values.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "values": values}


def _optimizer_from_files(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor
    for index, items in meta["values"].items():
        state.setdefault(int(index), {}).update(items)
    return {"state": state, "param_groups": meta["param_groups"]}


def write_checkpoint_dir(root: Path, step: int, write: Callable[[Path], None]) -> Path:
    """Create checkpoint ``step`` in ``root/checkpoints`` atomically and return its directory.

    ``write(tmp)`` fills a temporary directory beside the final name (it must write ``state.json``); the files
    are synced and the directory is moved into place with one ``os.replace``, so a crash never leaves a
    half-written checkpoint. An earlier, abandoned checkpoint of the same step is replaced.
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


def _save_checkpoint(root: Path, step: int, params: Sequence[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> Path:
    """Write checkpoint ``step`` (the trained tensors, the optimizer, state.json) and return its directory."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file({name: p.detach().to("cpu").contiguous() for name, p in params}, tmp / "trainable.safetensors")
        save_optimizer(optimizer, tmp, "optimizer")
        _write_json(tmp / _STATE_FILE, dict(state))

    return write_checkpoint_dir(root, step, write)


def save_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """Write ``optimizer``'s state as ``folder/NAME.safetensors`` (tensors) + ``folder/NAME.json`` (the rest)."""
    from safetensors.torch import save_file

    tensors, meta = _optimizer_to_files(optimizer)
    save_file(tensors, folder / f"{name}.safetensors")
    _write_json(folder / f"{name}.json", meta)


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path, name: str) -> None:
    """Restore what :func:`save_optimizer` wrote."""
    from safetensors.torch import load_file

    meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    optimizer.load_state_dict(_optimizer_from_files(load_file(folder / f"{name}.safetensors"), meta))


def _checkpoints(out: Path) -> list[Path]:
    folder = out / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith("step-") and (p / _STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint in ``OUT/checkpoints``, or ``None``.

    Example:
        >>> latest_checkpoint("runs/a")  # doctest: +SKIP
        PosixPath('runs/a/checkpoints/step-000100')
    """
    found = _checkpoints(Path(out))
    return found[-1] if found else None


def _load_checkpoint(path: Path, params: Sequence[tuple[str, torch.nn.Parameter]],
                     optimizer: torch.optim.Optimizer, config: Mapping[str, Any]) -> dict[str, Any]:
    """Restore the trained tensors and the optimizer from ``path``; return its state.json."""
    import torch
    from safetensors.torch import load_file

    state: dict[str, Any] = json.loads((path / _STATE_FILE).read_text(encoding="utf-8"))
    check_run_config(path, state.get("config", {}), config)
    tensors = load_file(path / "trainable.safetensors")
    names = {name for name, _ in params}
    if set(tensors) != names:
        raise InvalidRequest("resume", str(path), "the checkpoint's tensors do not match the model being trained",
                             "resume with the same model and method, or resume=False")
    with torch.no_grad():
        for name, p in params:
            p.copy_(tensors[name].to(device=p.device, dtype=p.dtype))
    load_optimizer(optimizer, path, "optimizer")
    return state


def publish(staging: Path, out: Path) -> None:
    """Move every entry of the finished ``staging`` directory into ``out``, each with one ``os.replace``.

    A directory that exists in ``out`` under the same name (``merged/`` from an earlier run) is replaced.
    """
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        target = out / item.name
        if item.is_file():
            _fsync_file(item)
        if target.is_dir() and not target.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{item.name}.", suffix=".old", dir=out))
            os.replace(target, trash / item.name)
            os.replace(item, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(item, target)


def write_result(out: Path, result: FinetuneResult, config: Mapping[str, Any]) -> None:
    """Write ``OUT/training.json`` atomically: the marker that the run finished."""
    from aigc._media.atomic import atomic_write_text
    from aigc._version import __version__

    data = {"format": _FORMAT, "aigc_version": __version__, "config": dict(config), "result": result.to_dict()}
    atomic_write_text(out / RESULT_FILE, json.dumps(data, indent=2, ensure_ascii=False))


# -- the loop ------------------------------------------------------------------------------------------
def progress_bar(progress: bool | None, *, total: int, initial: int, desc: str) -> Any:
    """A tqdm bar over training steps, or ``None``: ``progress=None`` shows one in a terminal or notebook."""
    from aigc._runtime.events import progress_default

    if not (progress if progress is not None else progress_default()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step")


def check_run_config(path: Path, saved: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse to resume from checkpoint ``path`` when its run configuration ``saved`` differs from ``config``."""
    differ = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if differ:
        what = "; ".join(f"{k}: {saved.get(k)!r} then, {config.get(k)!r} now" for k in differ[:4])
        raise InvalidRequest("resume", str(path), f"the checkpoint belongs to a different run ({what})",
                             "pass the same model, data and hyper-parameters as the interrupted run, or resume=False")


@dataclass(frozen=True, kw_only=True)
class LoopSpec:
    """How one run trains; ``config`` holds what must match for a checkpoint to be resumed."""

    out: Path
    total_steps: int
    lr: float
    schedule: Schedule
    warmup_steps: int
    weight_decay: float
    max_grad_norm: float | None
    seed: int
    device: torch.device
    checkpoint_every: int | None
    eval_every: int | None
    config: Mapping[str, Any]
    progress: bool | None
    desc: str


@dataclass
class LoopOutcome:
    train_losses: list[float]
    eval_losses: dict[int, float]
    resumed_from: int
    duration_s: float
    checkpoints: list[Path]


def run_loop(
    spec: LoopSpec,
    params: Sequence[tuple[str, torch.nn.Parameter]],
    step_loss: Callable[[int], torch.Tensor],
    *,
    eval_loss: Callable[[], float] | None,
    resume_from: Path | None,
    on_step: Callable[[TrainStep], object] | None,
) -> LoopOutcome:
    """Train ``params`` with AdamW for ``spec.total_steps`` steps; ``step_loss(step)`` gives step ``step``'s loss.

    Each step's forward and backward run inside :func:`seeded_rng` with ``derive_seed(seed, "step", step)``.
    Checkpoints go to ``spec.out/checkpoints`` every ``checkpoint_every`` steps (not after the last step:
    the recipe writes the output then). The held-out loss is measured before the first step, every
    ``eval_every`` steps (default: at each checkpoint) and after the last step.
    """
    import torch

    optimizer = torch.optim.AdamW([p for _, p in params], lr=spec.lr, weight_decay=spec.weight_decay)
    train_losses: list[float] = []
    eval_losses: dict[int, float] = {}
    start, previous_s = 0, 0.0
    if resume_from is not None:
        state = _load_checkpoint(resume_from, params, optimizer, spec.config)
        start = int(state["step"])
        train_losses = [float(x) for x in state["train_losses"]]
        eval_losses = {int(k): float(v) for k, v in state["eval_losses"].items()}
        previous_s = float(state["duration_s"])
        logger.info("resuming from %s at step %d of %d", resume_from, start, spec.total_steps)
    if start >= spec.total_steps:
        raise InvalidRequest("resume", str(resume_from), f"the checkpoint is at step {start}, the end of the run",
                             "pass more steps for a new run, or resume=False")
    eval_every = spec.eval_every or spec.checkpoint_every
    if eval_loss is not None and 0 not in eval_losses:
        eval_losses[0] = eval_loss()
        logger.info("step 0: eval loss %.4f", eval_losses[0])

    bar = progress_bar(spec.progress, total=spec.total_steps, initial=start, desc=spec.desc)
    began = time.perf_counter()
    try:
        for step in range(start, spec.total_steps):
            lr = lr_at(step, total=spec.total_steps, lr=spec.lr, schedule=spec.schedule, warmup=spec.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with seeded_rng(derive_seed(spec.seed, "step", step), spec.device):
                loss = step_loss(step)
                loss.backward()  # type: ignore[no-untyped-call]
            value = float(loss.detach())
            if not math.isfinite(value):
                raise InvalidRequest("lr", spec.lr, f"the training loss became {value} at step {step + 1}",
                                     "lower lr, set max_grad_norm, or resume from an earlier checkpoint")
            if spec.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for _, p in params], spec.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_losses.append(value)
            done = step + 1
            measured = None
            if eval_loss is not None and (done == spec.total_steps or (eval_every and done % eval_every == 0)):
                measured = eval_losses[done] = eval_loss()
                logger.info("step %d: eval loss %.4f", done, measured)
            if spec.checkpoint_every and done % spec.checkpoint_every == 0 and done < spec.total_steps:
                state = {"format": _FORMAT, "step": done, "train_losses": train_losses,
                         "eval_losses": {str(k): v for k, v in eval_losses.items()},
                         "duration_s": previous_s + time.perf_counter() - began, "config": dict(spec.config)}
                path = _save_checkpoint(spec.out, done, params, optimizer, state)
                logger.info("step %d: checkpoint %s", done, path)
            if bar is not None:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                bar.update(1)
            if on_step is not None:
                on_step(TrainStep(done, spec.total_steps, value, lr, measured))
    finally:
        if bar is not None:
            bar.close()
    return LoopOutcome(train_losses, eval_losses, start, previous_s + time.perf_counter() - began,
                       _checkpoints(spec.out))


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
