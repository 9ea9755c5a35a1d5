"""The sprite clip recipe (:func:`aigc.train.train_sprite_video`) and its data module (:mod:`aigc.train.sprites`):
the clips move where they say, a few steps lower the loss, resume equals an uninterrupted run, the export loads
through the ``sprites`` backend, and bad arguments raise typed errors before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import aigc
from aigc.errors import InvalidRequest
from aigc.models.sprite_video import SpriteVideoConfig
from aigc.train import train_sprite_video
from aigc.train.sprites import (
    FrameClassifier,
    digit_classes,
    direction_of,
    draw_motion,
    make_clips,
    make_sprites,
    train_frame_classifier,
)

CFG = SpriteVideoConfig(frames=4, resolution=16, widths=(8, 16), latent_dim=4, num_classes=2, embed_dim=4, hidden=16)


def _digits(n: int = 8, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of tiny sprites: a bar (class 0) and a filled square (class 1), with random noise."""
    gen = torch.Generator().manual_seed(0)
    sprites = torch.rand(n, size, size, generator=gen) * 0.2
    sprites[0::2, :, size // 2 - 1:size // 2 + 1] = 1.0
    sprites[1::2, 1:-1, 1:-1] = 1.0
    return sprites, torch.arange(n) % 2


def _train(out: Path, **kw: object) -> aigc.train.PretrainResult:
    settings: dict[str, object] = {"config": CFG, "steps": 6, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0,
                                   "progress": False, "checkpoint_every": None, "classifier_steps": 2}
    settings.update(kw)
    return train_sprite_video(_digits(), out, **settings)  # type: ignore[arg-type]


# -- data --------------------------------------------------------------------------------------------------
def test_clips_move_in_their_direction_and_stay_on_the_canvas() -> None:
    gen = torch.Generator().manual_seed(1)
    sprites, labels = _digits(size=16)
    clips, cls, direction, pos = make_clips(sprites, labels, 24, gen, num_classes=2)
    assert clips.shape == (24, 16, 1, 32, 32) and clips.min() >= -1 and clips.max() <= 1
    assert set(cls.tolist()) <= {0, 1} and bool((labels[cls] == cls).all())
    assert bool((direction_of((clips[:, :, 0] + 1) / 2) == direction).all())
    assert pos.min() >= 0 and pos.max() <= 16
    travel = (pos[:, -1] - pos[:, 0]).abs().amax(1)
    assert travel.min() >= 7.5 - 1e-4 and travel.max() <= 15 + 1e-4
    again = draw_motion(direction, torch.Generator().manual_seed(5))
    assert torch.equal(again, draw_motion(direction, torch.Generator().manual_seed(5)))


def test_sprites_classes_and_classifier() -> None:
    raw = torch.zeros(3, 28, 28, dtype=torch.uint8)
    raw[:, 10:18, 10:18] = 255
    sprites = make_sprites(raw.numpy())
    assert sprites.shape == (3, 16, 16) and float(sprites.min()) >= 0 and float(sprites.max()) == 1.0
    assert [c["name"] for c in digit_classes()][:2] == ["digit 0", "digit 1"]
    state = torch.get_rng_state()
    a = train_frame_classifier(*_digits(size=16), steps=2, seed=3)
    b = train_frame_classifier(*_digits(size=16), steps=2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is left alone
    assert isinstance(a, FrameClassifier) and not a.training
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(InvalidRequest, match="labels"):
        train_frame_classifier(torch.rand(3, 16, 16), torch.tensor([0, 1]), steps=1)


# -- the recipe --------------------------------------------------------------------------------------------
def test_a_few_steps_reduce_the_loss_with_guidance(tmp_path: Path) -> None:
    res = _train(tmp_path / "a", steps=30, guidance=1.0, eval_data=_digits(4))
    losses = res.train_losses
    assert len(losses) == 30 and len(res.losses["guidance"]) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert res.eval_losses[30] < res.eval_losses[0]
    record = json.loads((tmp_path / "a" / "training.json").read_text())
    assert record["config"]["recipe"] == "sprite_video" and record["config"]["guidance"] == 1.0


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    full = _train(tmp_path / "full", guidance=1.0, checkpoint_every=3)

    def stop(step: aigc.train.TrainStep) -> None:
        if step.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut", guidance=1.0, checkpoint_every=3, on_step=stop)
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = _train(tmp_path / "cut", guidance=1.0, checkpoint_every=3, resume=True)
    assert resumed.resumed_from == 3 and resumed.train_losses == full.train_losses
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("cut", "full")]
    assert weights[0] == weights[1]


def test_export_loads_through_the_sprites_backend(tmp_path: Path) -> None:
    _train(tmp_path / "m", truncation=0.7, fps=6.0, export_dtype="float32")
    gen = aigc.load("video", tmp_path / "m", backend="sprites", device="cpu")
    clip = gen.generate("digit 1 moving up", seed=0)
    assert clip.frames.shape == (4, 16, 16, 3)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["format"] == "aigc.sprite_video" and config["defaults"] == {"fps": 6.0, "truncation": 0.7}
    with pytest.raises(InvalidRequest, match="prompt"):
        gen.generate("digit 7 moving up", seed=0)  # only the two trained classes are in the table


@pytest.mark.parametrize(("kw", "field"), [
    ({"guidance": -1.0}, "guidance"),
    ({"frames_per_clip": 5}, "frames_per_clip"),
    ({"guidance_frames": 0}, "guidance_frames"),
    ({"export_dtype": "int8"}, "export_dtype"),
    ({"config": {"frames": 4}}, "config"),
    ({"stepz": 3}, "stepz"),
    ({"data": (torch.rand(4, 6, 6), torch.zeros(4, dtype=torch.long))}, "data"),
    ({"data": (torch.rand(4, 6, 6) * 3, torch.arange(4) % 2)}, "data"),
    ({"data": (torch.rand(4, 6), torch.arange(4) % 2)}, "data"),
    ({"eval_data": "digits"}, "eval_data"),
])
def test_bad_arguments_raise_before_anything_trains(tmp_path: Path, kw: dict[str, object], field: str) -> None:
    settings: dict[str, object] = {"config": CFG, "steps": 2, "progress": False}
    data = kw.pop("data", _digits())
    settings.update(kw)
    with pytest.raises(InvalidRequest) as info:
        train_sprite_video(data, tmp_path / "x", **settings)  # type: ignore[arg-type]
    assert info.value.field == field
    assert not (tmp_path / "x").exists()
