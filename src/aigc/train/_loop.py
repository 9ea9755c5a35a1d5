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

The run's settings (:class:`~aigc.train._run.RunOptions`) and the pure functions of its seed live in
:mod:`aigc.train._run`.

Reproducibility without the global RNG: every random draw of a run is a pure function of ``(seed, purpose,
index)`` (:func:`derive_seed`), so a checkpoint needs no generator state, and a run resumed from one computes
the same losses and exports the same bytes as an uninterrupted run (bit for bit on one CPU with one thread
count: float sums split across threads round differently).

Example, a complete run (a regression fitted by a custom step function)::

    >>> import torch
    >>> from aigc.train import RunOptions, TrainState, train_loop
    >>> model = torch.nn.Linear(1, 1)
    >>> _ = torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)  # no global RNG
    >>> def step(ctx):
    ...     x = torch.randn(16, 1, generator=ctx.generator())
    ...     return torch.nn.functional.mse_loss(model(x), 3 * x)
    >>> run = RunOptions(steps=200, lr=0.1, schedule="cosine", progress=False).start("runs/line")
    >>> out = train_loop(run, step, TrainState(params=list(model.named_parameters())), config={})
    >>> out.losses["loss"][-1] < 1e-4, abs(float(model.weight.detach()) - 3) < 0.01
    (True, True)
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

from aigc.errors import InvalidRequest, TrainingDiverged
from aigc.train._checkpoints import checkpoints, load_checkpoint, prepare_out, save_checkpoint
from aigc.train._run import Run, TrainStep, batch_indices, derive_seed, lr_at

if TYPE_CHECKING:
    import torch

__all__ = ["EMA", "LoopOutcome", "StepContext", "StepFn", "TrainState", "train_loop"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound="torch.nn.Module")


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
        >>> import torch
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
