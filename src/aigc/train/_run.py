"""The settings of a training run and the pure functions of its seed: what :func:`aigc.train.train_loop` runs by.

* :class:`RunOptions` -- the settings every recipe shares (steps, batch size, learning rate and its schedule,
  clipping, seed, device, checkpoints, resume, progress, ``on_step``), checked once; the recipes take them as
  keywords (:class:`RunKeywords`, :func:`run_options`) with defaults of their own.
* :meth:`RunOptions.start` -- the :class:`Run` about to start: output directory checked, seed drawn, device
  resolved, the checkpoint to resume from found; nothing written yet.
* :func:`derive_seed`, :func:`seeded_rng`, :func:`batch_indices`, :func:`lr_at` -- every random draw and every
  learning rate of a run as a pure function of its seed and the step, so a checkpoint needs no generator state.

Example:
    >>> RunOptions(steps=100, lr=1e-3, schedule="cosine", warmup_steps=10, lr_floor=0.1).lr_floor
    0.1
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from aigc.errors import InvalidRequest
from aigc.train._checkpoints import resolve_resume
from aigc.train._checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_out, check_seed

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEDULES", "Run", "RunKeywords", "RunOptions", "Schedule", "TrainStep", "batch_indices",
           "changed_settings", "derive_seed", "forward_autocast", "lr_at", "run_options", "seeded_rng"]

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "linear", "cosine")


# -- seeds and schedules -------------------------------------------------------------------------------
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

    For code that draws from the global RNG and cannot be given a generator: dropout, the initialisation of
    torch layers, peft's LoRA layers. The caller's RNG state is the same after the block as before it.
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


def lr_at(step: int, *, total: int, lr: float, schedule: Schedule, warmup: int, floor: float = 0.0) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up over ``warmup`` steps, then the schedule.

    ``"linear"`` decays to ``floor * lr`` at step ``total``; ``"cosine"`` follows half a cosine down to
    ``floor * lr`` (Loshchilov & Hutter, SGDR, eq. 5, without restarts); ``"constant"`` keeps ``lr``.

    Example:
        >>> [lr_at(s, total=4, lr=1.0, schedule="linear", warmup=0) for s in range(4)]
        [1.0, 0.75, 0.5, 0.25]
        >>> [round(lr_at(s, total=3, lr=1.0, schedule="cosine", warmup=1, floor=0.1), 3) for s in range(3)]
        [1.0, 1.0, 0.55]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = (step - warmup) / max(1, total - warmup)  # in [0, 1)
    decay = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr * decay if not floor else lr * (floor + (1.0 - floor) * decay)


# -- what a run is told and what it reports ------------------------------------------------------------
@dataclass(frozen=True)
class TrainStep:
    """What ``on_step`` receives after each optimizer step.

    Attributes:
        step: 1-based number of the step just finished.
        total: steps in the whole run.
        loss: the training loss of this step's batch (a GAN's generator loss).
        lr: the learning rate used for this step.
        eval_loss: the held-out loss measured after this step, or ``None`` when none was measured.
    """

    step: int
    total: int
    loss: float
    lr: float
    eval_loss: float | None = None


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The settings every training run shares, checked once; what :func:`aigc.train.train_loop` runs by.

    The recipes (:func:`aigc.train.finetune_text`, :func:`~aigc.train.train_gan`, ...) take these as keywords,
    with defaults of their own, and build a ``RunOptions``; a custom step function passed to
    :func:`aigc.train.train_loop` gets its run settings from one directly. The defaults below are the loop's.

    Attributes:
        steps: optimizer steps of the whole run (``None``: not known yet; a recipe fills it in).
        batch_size: examples per step (the step function draws its batch of this size).
        lr: the peak learning rate.
        schedule: ``"constant"``, ``"linear"`` or ``"cosine"`` after the warm-up (:func:`lr_at`).
        warmup_steps: steps of linear warm-up from 0.
        lr_floor: where the decay ends, as a share of ``lr`` (0.1: decay to 10%).
        weight_decay: AdamW's decoupled weight decay.
        max_grad_norm: clip the gradient's norm to this (``None``: no clipping).
        seed: the run's seed; ``None`` draws one from the OS (never the global RNG) and records it.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.
        checkpoint_every: write a checkpoint every this many steps (``None``: none).
        eval_every: measure the held-out loss every this many steps (default: at each checkpoint).
        resume: ``True`` continues from the latest checkpoint in the output directory; a checkpoint
            directory continues from that one.
        overwrite: start again in a non-empty output directory.
        progress: show a progress bar (``None``: in a terminal or notebook).
        on_step: called with a :class:`TrainStep` after every step; an exception from it stops the run.

    Raises:
        InvalidRequest: a setting out of range, naming it as the recipes' keyword does.

    Example:
        >>> RunOptions(steps=100, lr=1e-3, schedule="cosine", warmup_steps=10, lr_floor=0.1).lr_floor
        0.1
    """

    steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    lr_floor: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    seed: int | None = 0
    device: str | torch.device = "cpu"
    checkpoint_every: int | None = None
    eval_every: int | None = None
    resume: bool | str | os.PathLike[str] = False
    overwrite: bool = False
    progress: bool | None = None
    on_step: Callable[[TrainStep], object] | None = None

    def __post_init__(self) -> None:
        from aigc._runtime.device import check_device_spec

        check_int("steps", self.steps, minimum=1, fix="pass steps=100 or more", allow_none=True)
        check_int("batch_size", self.batch_size, minimum=1, fix="pass batch_size=8")
        check_float("lr", self.lr, low=0.0, low_open=True, fix="pass a small positive learning rate, e.g. lr=1e-3")
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, minimum=0, fix="pass warmup_steps=0 or more")
        check_float("lr_floor", self.lr_floor, low=0.0, high=1.0, fix="pass lr_floor=0.1 to decay to 10% of lr, or 0")
        check_float("weight_decay", self.weight_decay, low=0.0, fix="pass weight_decay=0.0 or 0.01")
        check_float("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True, fix="pass max_grad_norm=1.0 or None",
                    allow_none=True)
        if self.seed is not None:
            check_int("seed", self.seed, minimum=0, fix="pass seed=0 (any int in [0, 2**63))")
            if self.seed > MAX_SEED:
                raise InvalidRequest("seed", self.seed, "must be < 2**63", "pass a smaller seed")
        check_device_spec(self.device)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1, fix="pass checkpoint_every=100, or None",
                  allow_none=True)
        check_int("eval_every", self.eval_every, minimum=1, fix="pass eval_every=100, or None", allow_none=True)
        if not isinstance(self.resume, (bool, str, os.PathLike)):
            raise InvalidRequest("resume", self.resume, "must be False, True or a checkpoint directory",
                                 "pass resume=True to continue the run in out")
        check_bool("overwrite", self.overwrite)
        if self.progress is not None:
            check_bool("progress", self.progress)
        if self.on_step is not None and not callable(self.on_step):
            raise InvalidRequest("on_step", self.on_step, "must be callable", "pass a function taking a TrainStep")

    def start(self, out: str | os.PathLike[str]) -> Run:
        """Check ``out`` against ``resume`` and ``overwrite``, draw the seed, resolve the device and find the
        checkpoint to resume from -- all before anything is loaded; nothing is written yet.

        Raises:
            InvalidRequest: ``out`` is a file, or not empty without ``resume``/``overwrite``; ``resume``
                names no checkpoint, or a finished run. DeviceUnavailable: the device is not present.
        """
        from aigc._runtime.device import resolve_device

        path = check_out(out, resume=self.resume, overwrite=self.overwrite)
        seed = check_seed(self.seed)
        device = resolve_device(self.device)
        return Run(options=self, out=path, seed=seed, device=device, resume_from=resolve_resume(path, self.resume))


_LOOP_DEFAULTS = RunOptions()


def forward_autocast(device: torch.device, enabled: bool) -> Any:
    """The autocast context of a recipe's training forward passes: bfloat16 with ``mixed_precision``, else a no-op
    (the weights, their gradients and the optimizer stay float32).

    Example:
        >>> import torch
        >>> with forward_autocast(torch.device("cpu"), True):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def changed_settings(options: RunOptions, defaults: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The settings among ``names`` that differ from a recipe's ``defaults`` (else the loop's): what a run's
    config adds so that a checkpoint is only resumed with the same schedule, while a run at the defaults keeps
    the config it always had."""
    base = {**{n: getattr(_LOOP_DEFAULTS, n) for n in names}, **defaults}
    return {n: getattr(options, n) for n in names if getattr(options, n) != base[n]}


class RunKeywords(TypedDict, total=False):
    """The run settings every recipe takes as keywords (``train_gan(data, out, steps=500, seed=1)``): the fields
    of :class:`RunOptions`, documented there. Each recipe has defaults of its own for some (its docstring lists
    them); ``lr=None`` means the recipe's default learning rate."""

    steps: int | None
    batch_size: int
    lr: float | None
    schedule: Schedule
    warmup_steps: int
    lr_floor: float
    weight_decay: float
    max_grad_norm: float | None
    seed: int | None
    device: str | torch.device
    checkpoint_every: int | None
    eval_every: int | None
    resume: bool | str | os.PathLike[str]
    overwrite: bool
    progress: bool | None
    on_step: Callable[[TrainStep], object] | None


def run_options(recipe: str, given: Mapping[str, Any], defaults: Mapping[str, Any], *,
                unsupported: Mapping[str, str] | None = None, steps_required: bool = True) -> RunOptions:
    """The :class:`RunOptions` of one call of ``recipe``: the keywords ``given``, over the recipe's ``defaults``.

    Raises:
        InvalidRequest: a keyword that is no run setting (with the closest name), a setting the recipe does not
            use set to anything but its default (``unsupported`` maps it to the reason), a bad value, or no
            ``steps`` when ``steps_required``.

    Example:
        >>> run_options("train_gan", {"steps": 50}, {"steps": 10_000, "lr": 0.002}).steps
        50
    """
    names = [f.name for f in dataclasses.fields(RunOptions)]
    for name, value in given.items():
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise InvalidRequest(name, value, f"unknown parameter for {recipe}",
                                 f"did you mean {close[0]!r}?" if close else f"pass one of {', '.join(names)}")
        if name in (unsupported or {}) and value != getattr(_LOOP_DEFAULTS, name):
            raise InvalidRequest(name, value, f"{recipe} {(unsupported or {})[name]}", f"leave {name} out")
    settings = {**defaults, **{k: v for k, v in given.items() if not (k == "lr" and v is None)}}
    if "lr" in defaults:  # the fix names the recipe's own default
        check_float("lr", settings["lr"], low=0.0, low_open=True,
                    fix=f"pass a small positive learning rate, e.g. lr={defaults['lr']}")
    options = RunOptions(**settings)
    if steps_required and options.steps is None:
        raise InvalidRequest("steps", None, "must be an int", f"pass steps={defaults.get('steps', 100)} or more")
    return options


@dataclass(frozen=True)
class Run:
    """A run about to start: its :class:`RunOptions` with the output directory, the seed and the device resolved.

    Made by :meth:`RunOptions.start`.
    """

    options: RunOptions
    out: Path
    seed: int
    device: torch.device
    resume_from: Path | None

    @property
    def steps(self) -> int:
        if self.options.steps is None:
            raise InvalidRequest("steps", None, "the run has no number of steps", "pass steps=100 or more")
        return self.options.steps

    def with_steps(self, steps: int) -> Run:
        """This run with ``steps`` optimizer steps (for a recipe that counts them from the data)."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, steps=steps))

    def seeded(self, *keys: object) -> contextlib.AbstractContextManager[None]:
        """:func:`seeded_rng` with ``derive_seed(seed, *keys)``: ``with run.seeded("init"): net = Net()``."""
        return seeded_rng(derive_seed(self.seed, *keys), self.device)

    def generator(self, *keys: object) -> torch.Generator:
        """A CPU generator seeded with ``derive_seed(seed, *keys)`` (the held-out split: ``("split",)``)."""
        import torch

        return torch.Generator("cpu").manual_seed(derive_seed(self.seed, *keys))
