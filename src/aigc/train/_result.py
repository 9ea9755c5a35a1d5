"""What a training run returns, and ``OUT/training.json``, the marker that it finished."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc.train._checkpoints import RESULT_FILE

__all__ = ["FinetuneResult", "PretrainResult", "write_result"]

_FORMAT = 1


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


@dataclass(repr=False)
class PretrainResult(FinetuneResult):
    """What a pre-training run produced: a :class:`FinetuneResult` with every loss series by name.

    ``method`` is ``"gan"`` or ``"vae"``; ``train_losses`` is the generator's loss (GAN) or the negative
    ELBO per image in nats (VAE); ``losses`` holds all series (``d_loss``, ``g_loss``, ``r1`` every
    ``r1_every`` steps; ``loss``, ``reconstruction``, ``kl``).

    Example:
        >>> res = aigc.train.train_gan(images, out="runs/gan", labels=labels, steps=100)  # doctest: +SKIP
        >>> len(res.losses["d_loss"])  # doctest: +SKIP
        100
    """

    losses: dict[str, list[float]] = field(default_factory=dict)


def write_result(out: Path, result: FinetuneResult, config: Mapping[str, Any]) -> None:
    """Write ``OUT/training.json`` atomically: the marker that the run finished."""
    from aigc._media.atomic import atomic_write_text
    from aigc._version import __version__

    data = {"format": _FORMAT, "aigc_version": __version__, "config": dict(config), "result": result.to_dict()}
    atomic_write_text(out / RESULT_FILE, json.dumps(data, indent=2, ensure_ascii=False))
