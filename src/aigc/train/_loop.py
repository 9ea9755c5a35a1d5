"""The one training loop: every recipe of :mod:`aigc.train` runs through :func:`train_loop`.

A recipe supplies the maths -- a *step function* that computes one step's losses from a
:class:`StepContext` -- and the loop owns everything around it. Stages of one step ``s`` (0-based):

    1. the learning rate of ``s`` (:func:`lr_at`: linear warm-up, then constant, linear or cosine decay,
       optionally down to a floor such as 10% of the peak);
    2. the step function, run inside :func:`seeded_rng` (the global RNGs seeded from ``(seed, "step", s)``
       and restored afterwards, so dropout is reproducible and the caller's RNG is left as it was); it draws
       its batch, noise and timesteps from ``ctx.generator()``, a CPU generator seeded from the same key;
    3. the update: the loop's AdamW backpropagates the step's main loss, checks that every loss is finite
       (:class:`~aigc.errors.TrainingDiverged` otherwise, before the weights change), clips the gradient
       and steps; a step function that trains networks with optimizers of its own (a GAN's two players)
       steps them itself, and the loop checks its losses after;
    4. the EMA update, when the run keeps one (:class:`EMA`);
    5. the held-out loss (before the first step, every ``eval_every`` steps and after the last), a
       checkpoint every ``checkpoint_every`` steps (:mod:`aigc.train._checkpoints`: safetensors + JSON,
       atomic), the progress bar and the ``on_step`` hook.

Reproducibility without the global RNG: every random draw of a run is a pure function of ``(seed, purpose,
index)`` (:func:`derive_seed`), so a checkpoint needs no generator state, and a run resumed from one computes
the same losses and exports the same bytes as an uninterrupted run (bit for bit on one CPU with one thread
count: float sums split across threads round differently).

Example, a complete run (a regression fitted by a custom step function)::

    >>> import torch
    >>> from aigc.train import RunOptions, TrainState, train_loop
    >>> model = torch.nn.Linear(1, 1)
    >>> def step(ctx):
    ...     x = torch.randn(16, 1, generator=ctx.generator())
    ...     return torch.nn.functional.mse_loss(model(x), 3 * x)
    >>> run = RunOptions(steps=200, lr=0.1, schedule="cosine", progress=False).start("runs/line")
    >>> out = train_loop(run, step, TrainState(params=list(model.named_parameters())), config={})
    >>> out.losses["loss"][-1] < 1e-6, round(float(model.weight.detach()), 3)
    (True, 3.0)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar, Union

from aigc.errors import InvalidRequest, TrainingDiverged
from aigc.train._checkpoints import checkpoints, load_checkpoint, prepare_out, resolve_resume, save_checkpoint
from aigc.train._checks import MAX_SEED, check_bool, check_choice, check_float, check_int, check_out, check_seed

if TYPE_CHECKING:
    import torch

__all__ = ["EMA", "SCHEDULES", "LoopOutcome", "Run", "RunKeywords", "RunOptions", "Schedule", "StepContext", "StepFn",
           "TrainState", "TrainStep", "batch_indices", "changed_settings", "derive_seed", "lr_at", "run_options",
           "seeded_rng", "train_loop"]

logger = logging.getLogger(__name__)

Schedule = Literal["constant", "linear", "cosine"]
M = TypeVar("M", bound="torch.nn.Module")
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
    """The settings every training run shares, checked once; what :func:`train_loop` runs by.

    The recipes (:func:`aigc.train.finetune_text`, :func:`~aigc.train.train_gan`, ...) take these as keywords,
    with defaults of their own, and build a ``RunOptions``; a custom step function passed to
    :func:`train_loop` gets its run settings from one directly. The defaults below are the loop's.

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


@dataclass
class StepContext:
    """What a step function is given.

    Attributes:
        step: the 0-based step being computed.
        total: steps in the whole run.
        lr: this step's learning rate (the loop sets it on its own optimizer; a step function stepping its
            own optimizers may use it).
        seed: the run's seed.
        batch_size: the run's batch size.
    """

    step: int
    total: int
    lr: float
    seed: int
    batch_size: int
    _epochs: dict[int, list[int]] = field(default_factory=dict, repr=False)  # the loop's, shared by all steps
    _generators: dict[str, torch.Generator] = field(default_factory=dict, repr=False)

    def generator(self, purpose: str = "step") -> torch.Generator:
        """The step's CPU generator for ``purpose``, seeded with ``derive_seed(seed, purpose, step)``; one
        object per purpose and step, so successive draws continue one stream. Draw on the CPU, then move:
        the same numbers on every device."""
        gen = self._generators.get(purpose)
        if gen is None:
            import torch

            gen = self._generators[purpose] = torch.Generator("cpu").manual_seed(
                derive_seed(self.seed, purpose, self.step))
        return gen

    def epoch_batch(self, count: int) -> list[int]:
        """Indices (among ``count`` examples) of this step's batch when the examples are walked epoch by epoch,
        each epoch freshly shuffled from the seed (:func:`batch_indices`; an epoch's last batch may be smaller)."""
        return batch_indices(self.step, count=count, batch_size=self.batch_size, seed=self.seed, cache=self._epochs)


#: A step function: the losses of one step. A tensor is the main loss (for the loop's optimizer to
#: backpropagate); a mapping names several (tensors or floats; ``None`` for a series not measured this step).
StepFn = Callable[[StepContext], Union["torch.Tensor", Mapping[str, Union["torch.Tensor", float, None]]]]


class EMA(Generic[M]):
    """An exponential moving average of a network's parameters (Polyak averaging): after each step,
    ``ema = decay * ema + (1 - decay) * weights``, with ``decay = decay_at(step)``.

    Args:
        model: the trained network; the average starts as a copy of it (in eval mode, gradients off).
        decay_at: the decay of 0-based step ``s`` (e.g. ``lambda s: min(0.998, (1 + s) / (10 + s))``).

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> ema = EMA(net, decay_at=lambda s: 0.9)
        >>> ema.update(0)  # after an optimizer step of net
    """

    def __init__(self, model: M, *, decay_at: Callable[[int], float]) -> None:
        self.source: M = model
        self.model: M = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay_at = decay_at

    def update(self, step: int) -> None:
        """Move the average towards the network's current weights with the decay of step ``step``."""
        import torch

        decay = self.decay_at(step)
        with torch.no_grad():
            for avg, current in zip(self.model.parameters(), self.source.parameters(), strict=True):
                avg.lerp_(current, 1 - decay)


@dataclass(frozen=True)
class TrainState:
    """What a run trains and what its checkpoints hold.

    Attributes:
        params: the tensors the loop's AdamW trains (``(name, parameter)`` pairs); empty when the step function
            steps optimizers of its own. Saved in ``trainable.safetensors`` unless a module below holds them.
        modules: networks saved whole (state dicts, buffers included) by name: ``{"G": g, "D": d, "G_ema": ...}``.
        optimizers: the step function's own optimizers, by name (saved and restored with the checkpoints).
        ema: an average the loop updates after every step.
    """

    params: Sequence[tuple[str, torch.nn.Parameter]] = ()
    modules: Mapping[str, torch.nn.Module] = field(default_factory=dict)
    optimizers: Mapping[str, torch.optim.Optimizer] = field(default_factory=dict)
    ema: EMA[Any] | None = None


@dataclass
class LoopOutcome:
    """What :func:`train_loop` returns.

    Attributes:
        losses: every loss series by name, one value per step (a series measured only on some steps, such as
            a GAN's R1 penalty, has fewer), including the steps run before a resume.
        eval_losses: held-out loss by step (0 is before training).
        resumed_from: the step this call started at (0 for a fresh run).
        duration_s: seconds spent training, summed over resumed sessions.
        checkpoints: checkpoint directories present when the run ended.
    """

    losses: dict[str, list[float]]
    eval_losses: dict[int, float]
    resumed_from: int
    duration_s: float
    checkpoints: list[Path]


def _progress_bar(progress: bool | None, *, total: int, initial: int, desc: str) -> Any:
    """A tqdm bar over training steps, or ``None``: ``progress=None`` shows one in a terminal or notebook."""
    from aigc._runtime.events import progress_default

    if not (progress if progress is not None else progress_default()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step")


def _values(out: Any, main: str) -> tuple[Any, dict[str, float]]:
    """(the main loss as returned, every loss as a float) from a step function's result."""
    items: Mapping[str, Any] = out if isinstance(out, Mapping) else {main: out}
    if main not in items:
        raise KeyError(f"the step function returned {sorted(items)} without the main loss {main!r}")
    values = {k: float(v.detach()) if hasattr(v, "detach") else float(v) for k, v in items.items() if v is not None}
    return items[main], values


# -- the loop ------------------------------------------------------------------------------------------
def train_loop(run: Run, step_fn: StepFn, state: TrainState, *, config: Mapping[str, Any],
               eval_fn: Callable[[], float] | None = None, series: Sequence[str] = ("loss",),
               show: Sequence[str] | None = None, desc: str = "train", diverged_fix: str | None = None) -> LoopOutcome:
    """Train for ``run.steps`` steps with ``step_fn`` (see the module docstring for the stages of a step).

    Args:
        run: the run (:meth:`RunOptions.start`).
        step_fn: the maths of one step; it returns the step's losses (:data:`StepFn`). With ``state.params``
            the loop's AdamW backpropagates the main loss (``series[0]``), else the step function updates
            ``state.optimizers`` itself.
        state: what is trained and checkpointed.
        config: what must match for a checkpoint to be resumed (model, data fingerprint, hyper-parameters);
            stored in each checkpoint.
        eval_fn: the held-out loss, measured before the first step, every ``eval_every`` steps (default: at
            each checkpoint) and after the last.
        series: the loss series, the main one first (it is ``TrainStep.loss``); others the step function
            returns are recorded too.
        show: the series shown on the progress bar (default: the main one).
        desc: the progress bar's label.
        diverged_fix: the advice of :class:`~aigc.errors.TrainingDiverged` (default: lower lr, clip, warm up).

    Returns:
        A :class:`LoopOutcome`. Checkpoints go to ``run.out/checkpoints`` every ``checkpoint_every`` steps, never
        after the last step: the recipe writes its output then.

    Raises:
        TrainingDiverged: a loss became NaN or infinite. InvalidRequest: the checkpoint to resume from belongs to
            another run, or is at the end of this one.
    """
    import torch

    opts, total, main = run.options, run.steps, series[0]
    peak = float(opts.lr)
    optimizers: dict[str, torch.optim.Optimizer] = dict(state.optimizers)
    optimizer = None
    if state.params:
        optimizer = optimizers["optimizer"] = torch.optim.AdamW(
            [p for _, p in state.params], lr=peak, weight_decay=float(opts.weight_decay))
    prepare_out(run.out, overwrite=opts.overwrite)
    losses: dict[str, list[float]] = {name: [] for name in series}
    eval_losses: dict[int, float] = {}
    start, previous_s = 0, 0.0
    if run.resume_from is not None:
        saved = load_checkpoint(run.resume_from, config, modules=state.modules, params=state.params,
                                optimizers=optimizers)
        start, previous_s = int(saved["step"]), float(saved["duration_s"])
        losses.update({k: [float(x) for x in v] for k, v in saved["losses"].items()})
        eval_losses = {int(k): float(v) for k, v in saved["eval_losses"].items()}
        logger.info("resuming from %s at step %d of %d", run.resume_from, start, total)
    if start >= total:
        raise InvalidRequest("resume", str(run.resume_from), f"the checkpoint is at step {start}, the end of the run",
                             "pass more steps for a new run, or resume=False")
    eval_every = opts.eval_every or opts.checkpoint_every
    if eval_fn is not None and 0 not in eval_losses:
        eval_losses[0] = eval_fn()
        logger.info("step 0: eval loss %.4f", eval_losses[0])
    fix = diverged_fix or (f"lower lr (it is {opts.lr}), set max_grad_norm=1.0 or lengthen the warm-up, then start "
                           "again with overwrite=True")
    params = [p for _, p in state.params]
    epochs: dict[int, list[int]] = {}  # the current epoch's order, for StepContext.epoch_batch

    bar = _progress_bar(opts.progress, total=total, initial=start, desc=desc)
    began = time.perf_counter()  # training time starts here, not at set-up
    try:
        for step in range(start, total):
            # 1. the learning rate
            lr = lr_at(step, total=total, lr=peak, schedule=opts.schedule, warmup=opts.warmup_steps,
                       floor=opts.lr_floor)
            if optimizer is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            # 2. the maths, with the step's seeds
            with run.seeded("step", step):
                loss, values = _values(step_fn(StepContext(step, total, lr, run.seed, opts.batch_size, epochs)), main)
                if optimizer is not None:
                    loss.backward()  # of the main loss
            # 3. the finiteness check, then the update
            if not all(math.isfinite(v) for v in values.values()):
                raise TrainingDiverged(step + 1, values, fix=fix)
            if optimizer is not None:
                if opts.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, opts.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            # 4. the average
            if state.ema is not None:
                state.ema.update(step)
            # 5. bookkeeping: losses, held-out loss, checkpoint, progress, hook
            for name, value in values.items():
                losses.setdefault(name, []).append(value)
            done = step + 1
            measured = None
            if eval_fn is not None and (done == total or (eval_every and done % eval_every == 0)):
                measured = eval_losses[done] = eval_fn()
                logger.info("step %d: eval loss %.4f", done, measured)
            if opts.checkpoint_every and done % opts.checkpoint_every == 0 and done < total:
                record = {"step": done, "losses": losses, "eval_losses": {str(k): v for k, v in eval_losses.items()},
                          "duration_s": previous_s + time.perf_counter() - began, "config": dict(config)}
                path = save_checkpoint(run.out, done, record, modules=state.modules, params=state.params,
                                       optimizers=optimizers)
                logger.info("step %d: checkpoint %s", done, path)
            if bar is not None:
                bar.set_postfix({k: f"{values[k]:.4f}" for k in show or (main,) if k in values}, refresh=False)
                bar.update(1)
            if opts.on_step is not None:
                opts.on_step(TrainStep(done, total, values[main], lr, measured))
    finally:
        if bar is not None:
            bar.close()
    return LoopOutcome(losses, eval_losses, start, previous_s + time.perf_counter() - began, checkpoints(run.out))
