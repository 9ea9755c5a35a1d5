"""The one training loop (aigc.train.train_loop) with custom step functions, and the run settings every recipe
shares: schedule, exact resume, divergence, typed keywords, checkpoints read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aigc.errors import InvalidRequest, TrainingDiverged
from aigc.models import StyleGANConfig, StyleGANGenerator
from aigc.train import (
    EMA,
    RunOptions,
    StepContext,
    TrainState,
    TrainStep,
    checkpoint_state,
    latest_checkpoint,
    lr_at,
    train_diffusion,
    train_gan,
    train_loop,
    train_vae,
)


def _line(seed: int = 0) -> tuple[torch.nn.Linear, Any]:
    """y = 3x fitted by a 1x1 linear layer; the batch comes from the step's generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Linear(1, 1)

    def step(ctx: StepContext) -> torch.Tensor:
        x = torch.randn(16, 1, generator=ctx.generator())
        return torch.nn.functional.mse_loss(model(x), 3 * x)

    return model, step


def test_a_custom_step_function_trains_with_the_loops_schedule_and_leaves_the_global_rng(tmp_path: Path) -> None:
    model, step = _line()
    seen: list[TrainStep] = []
    state = torch.random.get_rng_state()
    run = RunOptions(steps=200, lr=0.1, schedule="cosine", warmup_steps=10, lr_floor=0.1, progress=False,
                     on_step=seen.append).start(tmp_path / "line")
    out = train_loop(run, step, TrainState(params=list(model.named_parameters())), config={})
    assert out.losses["loss"][-1] < 1e-3 < out.losses["loss"][0]
    assert abs(float(model.weight.detach()) - 3.0) < 0.05
    assert [s.lr for s in seen] == [lr_at(i, total=200, lr=0.1, schedule="cosine", warmup=10, floor=0.1)
                                    for i in range(200)]
    assert seen[0].lr == pytest.approx(0.01) and seen[9].lr == 0.1 and seen[-1].lr == pytest.approx(0.01, rel=1e-3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert out.checkpoints == [] and not (tmp_path / "line" / "checkpoints").exists()


@pytest.mark.parametrize(("schedule", "want"), [
    ("linear", [1.0, 0.775, 0.55, 0.325]),
    ("cosine", [1.0, 0.8682, 0.55, 0.2318]),
    ("constant", [1.0, 1.0, 1.0, 1.0]),
])
def test_lr_floor_ends_the_decay_at_a_share_of_the_peak(schedule: str, want: list[float]) -> None:
    got = [lr_at(s, total=4, lr=1.0, schedule=schedule, warmup=0, floor=0.1) for s in range(4)]  # type: ignore[arg-type]
    assert got == pytest.approx(want, abs=1e-4)
    assert lr_at(10**6 - 1, total=10**6, lr=2.0, schedule="linear", warmup=0, floor=0.1) == pytest.approx(0.2, 1e-5)


def test_a_custom_run_resumes_exactly_and_refuses_other_settings(tmp_path: Path) -> None:
    def run(out: Path, stop_at: int | None = None, **kw: Any) -> Any:
        model, step = _line()
        ema = EMA(model, decay_at=lambda s: 0.9)

        def hook(s: TrainStep) -> None:
            if s.step == stop_at:
                raise KeyboardInterrupt

        options = RunOptions(steps=12, lr=0.05, checkpoint_every=4, progress=False, on_step=hook, **kw)
        state = TrainState(params=list(model.named_parameters()), modules={"ema": ema.model}, ema=ema)
        return train_loop(options.start(out), step, state, config={"lr": 0.05}), ema

    whole, ema_whole = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", stop_at=10)
    assert latest_checkpoint(tmp_path / "b") == tmp_path / "b" / "checkpoints" / "step-000008"
    resumed, ema_resumed = run(tmp_path / "b", resume=True)
    assert resumed.resumed_from == 8 and resumed.losses == whole.losses
    assert torch.equal(ema_resumed.model.weight, ema_whole.model.weight)
    saved = checkpoint_state(tmp_path / "b" / "checkpoints" / "step-000008", "ema")
    assert set(saved) == {"weight", "bias"}
    state = json.loads((tmp_path / "b" / "checkpoints" / "step-000008" / "state.json").read_text())
    assert state["step"] == 8 and len(state["losses"]["loss"]) == 8

    model, step = _line()
    elsewhere = RunOptions(steps=12, lr=0.05, resume=tmp_path / "b" / "checkpoints" / "step-000008", progress=False)
    with pytest.raises(InvalidRequest, match=r"different run \(lr: 0.05 then, 0.1 now"):
        train_loop(elsewhere.start(tmp_path / "c"), step, TrainState(params=list(model.named_parameters())),
                   config={"lr": 0.1})
    with pytest.raises(InvalidRequest, match="no network of that name"):
        checkpoint_state(tmp_path / "b" / "checkpoints" / "step-000008", "G_ema")


def test_a_diverged_loss_raises_before_the_weights_change(tmp_path: Path) -> None:
    model, step = _line()

    def blows_up(ctx: StepContext) -> torch.Tensor:
        loss = step(ctx)
        return loss * float("nan") if ctx.step == 2 else loss

    before: dict[str, torch.Tensor] = {}

    def keep(s: TrainStep) -> None:
        before.update({k: v.clone() for k, v in model.state_dict().items()})

    run = RunOptions(steps=5, lr=0.05, checkpoint_every=1, progress=False, on_step=keep).start(tmp_path / "nan")
    with pytest.raises(TrainingDiverged) as info:
        train_loop(run, blows_up, TrainState(params=list(model.named_parameters())), config={})
    assert info.value.step == 3 and np.isnan(info.value.losses["loss"])
    assert "at step 3" in str(info.value) and "lower lr (it is 0.05)" in str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # step 3 changed nothing
    assert latest_checkpoint(tmp_path / "nan") == tmp_path / "nan" / "checkpoints" / "step-000002"


def _toy(n: int = 16) -> tuple[np.ndarray, list[int]]:
    """Two classes: a bright square in the middle, or a bright bar across."""
    images = np.zeros((n, 8, 8), np.uint8)
    labels = [i % 2 for i in range(n)]
    for i, c in enumerate(labels):
        if c == 0:
            images[i, 2:6, 2:6] = 255
        else:
            images[i, 3:5, :] = 255
    return images, labels


_GAN = StyleGANConfig(resolution=8, widths=(16, 16), z_dim=8, w_dim=16, mapping_layers=2, num_classes=2)


def test_recipes_take_the_run_settings_as_checked_keywords(tmp_path: Path) -> None:
    images, labels = _toy()
    cases: list[tuple[Any, dict[str, Any], str, str]] = [
        (train_gan, {"stpes": 5}, "stpes", "did you mean 'steps'"),
        (train_gan, {"weight_decay": 0.1}, "weight_decay", "no weight decay"),
        (train_gan, {"eval_every": 2}, "eval_every", "held-out"),
        (train_diffusion, {"eval_every": 2}, "eval_every", "held-out"),
        (train_vae, {"lr_floor": 1.5}, "lr_floor", "<= 1"),
        (train_vae, {"schedule": "step"}, "schedule", "unknown schedule"),
        (train_gan, {"batch_size": 1}, "batch_size", ">= 2"),
        (train_gan, {"steps": None}, "steps", "must be an int"),
    ]
    for recipe, kw, field, words in cases:
        with pytest.raises(InvalidRequest, match=words) as info:
            recipe(images, tmp_path / "out", labels=labels, progress=False, **kw)
        assert info.value.field == field, kw
        assert not (tmp_path / "out").exists(), kw


def test_the_gan_follows_the_loops_schedule_and_a_checkpoint_gives_its_generator(tmp_path: Path) -> None:
    images, labels = _toy()
    kw: dict[str, Any] = {"labels": labels, "config": _GAN, "steps": 4, "batch_size": 4, "progress": False,
                          "checkpoint_every": 2}
    seen: list[float] = []
    warm = train_gan(images, tmp_path / "warm", warmup_steps=4, max_grad_norm=1.0,
                     on_step=lambda s: seen.append(s.lr), **kw)
    flat = train_gan(images, tmp_path / "flat", **kw)
    assert seen == pytest.approx([0.0005, 0.001, 0.0015, 0.002])
    assert warm.losses["d_loss"][0] == flat.losses["d_loss"][0]  # the same first forward pass ...
    assert warm.losses["d_loss"][1:] != flat.losses["d_loss"][1:]  # ... then smaller, clipped steps
    config = json.loads((tmp_path / "warm" / "training.json").read_text())["config"]
    assert config["warmup_steps"] == 4 and config["max_grad_norm"] == 1.0
    assert "warmup_steps" not in json.loads((tmp_path / "flat" / "training.json").read_text())["config"]
    with pytest.raises(InvalidRequest, match="different run"):  # a checkpoint of the warm run, resumed flat
        train_gan(images, tmp_path / "x", resume=warm.checkpoints[0], **kw)

    net = StyleGANGenerator(_GAN)
    net.load_state_dict(checkpoint_state(warm.checkpoints[0], "G_ema"))  # strict: every tensor is there
    assert float(net.w_avg.abs().sum()) > 0
