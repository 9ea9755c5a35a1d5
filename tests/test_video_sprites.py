"""The ``sprites`` video backend (aigc's embedded default video model): architecture, loading, the contract suite,
prompts and errors, saving, and the shipped model's motion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aigc
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE
from aigc.testing import check_generator
from aigc.testing.video_sprites import tiny_sprite_video


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sprite_video(tmp_path_factory.mktemp("sprites") / "m")


@pytest.fixture
def tiny(tiny_dir: Path) -> aigc.Generator[aigc.VideoRequest, aigc.VideoResult]:
    return aigc.load("video", tiny_dir, device="cpu")


@pytest.fixture(scope="module")
def default() -> aigc.Generator[aigc.VideoRequest, aigc.VideoResult]:
    return aigc.load("video", "default", backend="sprites", device="cpu")


def _centroid_x_y(video: np.ndarray) -> np.ndarray:
    """(T, 2) intensity centroids (x, y) of uint8 frames (T, H, W, 3)."""
    g = video[..., 0].astype(np.float64)
    mass = g.sum((1, 2)) + 1e-9
    xs = (g.sum(1) * np.arange(g.shape[2])).sum(1) / mass
    ys = (g.sum(2) * np.arange(g.shape[1])).sum(1) / mass
    return np.stack([xs, ys], 1)


# -- architecture ----------------------------------------------------------------------------------------
def test_architecture_shapes_and_loss() -> None:
    cfg = SpriteVideoConfig(frames=5, resolution=16, widths=(8, 16), latent_dim=4, num_classes=3, embed_dim=4,
                            hidden=16)
    net = SpriteVideoVAE(cfg)
    clip = torch.rand(2, 5, 1, 16, 16) * 2 - 1
    c, d = torch.tensor([0, 2]), torch.tensor([1, 3])
    mu, logvar = net.encode(clip, c, d)
    assert mu.shape == logvar.shape == (2, 4)
    out = net.decode(mu, c, d)
    assert out.shape == (2, 5, 1, 16, 16) and out.min() >= -1 and out.max() <= 1
    t = torch.tensor([[0, 4], [3, 1]])
    part = net.decode(mu, c, d, t)
    assert torch.allclose(part[0, 1], out[0, 4], atol=1e-5) and torch.allclose(part[1, 0], out[1, 3], atol=1e-5)
    total, rec, kl = net.loss(clip, c, d, torch.zeros(2, 4), t)
    assert torch.isclose(total, rec + kl) and kl >= 0
    total.backward()
    assert all(p.grad is not None for p in net.encoder.parameters())
    with pytest.raises(InvalidRequest, match="d"):
        net.decode(mu, c, torch.tensor([0, 4]))


def test_config_checks_and_round_trip() -> None:
    cfg = SpriteVideoConfig(frames=8, widths=(16, 32))
    assert SpriteVideoConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InvalidRequest, match=r"config\.frames"):
        SpriteVideoConfig(frames=0)
    with pytest.raises(InvalidRequest, match=r"config\.resolution"):
        SpriteVideoConfig(resolution=24)
    with pytest.raises(InvalidRequest, match="config"):
        SpriteVideoConfig.from_dict({"frames": 4, "fps": 3})


# -- loading and the contract ----------------------------------------------------------------------------
def test_loads_by_detection_and_passes_contract(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    assert tiny.info.backend == "sprites" and tiny.info.modality == "video"
    done = check_generator(tiny, prompt="a circle moving left")
    assert "batch == single" in done and "save/load" in done


def test_output_shape_fps_and_upscale(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    res = tiny.generate(["a square moving up", "cross falling"], seed=3, num_outputs=2, width=32, fps=5)
    assert len(res.videos) == 4 and res.fps == 5.0 and res.seeds == [3, 4, 5, 6]
    assert all(v.shape == (4, 32, 32, 3) and v.dtype == np.uint8 for v in res.videos)
    assert tiny.generate("a square moving up", seed=0).fps == 8.0  # the model's default
    # sample i of a batch == a single run with seed s + i, also across prompts (prompt-major order)
    single = tiny.generate("cross falling", seed=5, width=32)
    assert np.abs(res.videos[2].astype(int) - single.videos[0].astype(int)).max() <= 1


def test_conditions_change_the_clip(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    base = tiny.generate("a circle moving left", seed=0).frames
    assert not np.array_equal(base, tiny.generate("a circle moving right", seed=0).frames)
    assert not np.array_equal(base, tiny.generate("a square moving left", seed=0).frames)
    assert not np.array_equal(base, tiny.generate("a circle moving left", seed=1).frames)
    assert not np.array_equal(base[0], base[-1])  # frames differ within a clip
    same = tiny.generate("a circle going to the left", seed=0, truncation=1.0).frames
    assert np.array_equal(base, same)  # another phrase for the same conditions


def test_global_rng_untouched(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    state = torch.random.get_rng_state()
    tiny.generate("a circle moving left", seed=None, num_outputs=2)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize(("params", "field"), [
    ({"prompt": "a triangle moving left"}, "prompt"),
    ({"prompt": "a circle and a square moving left"}, "prompt"),
    ({"prompt": "a circle"}, "prompt"),
    ({"prompt": "a circle moving diagonally"}, "prompt"),
    ({"prompt": ["a circle moving up", "a blob moving up"]}, "prompt[1]"),
    ({"prompt": "a circle moving up", "num_frames": 16}, "num_frames"),
    ({"prompt": "a circle moving up", "width": 20}, "width"),
    ({"prompt": "a circle moving up", "width": 32, "height": 40}, "height"),
    ({"prompt": "a circle moving up", "keyframes": 3}, "keyframes"),
    ({"prompt": "a circle moving up", "fps": 0}, "fps"),
])
def test_bad_requests_raise_before_work(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult],
                                        params: dict[str, object], field: str) -> None:
    events: list[str] = []
    with pytest.raises(InvalidRequest) as info:
        tiny.generate(on_event=lambda e: events.append(e.kind), **params)
    assert info.value.field == field
    assert "start" not in events
    if field.startswith("prompt"):
        assert "circle" in str(info.value) or "left" in str(info.value)  # the options are listed


def test_load_errors(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(ModelNotFound):
        aigc.load("video", "no-such-model", backend="sprites")
    with pytest.raises(ModelNotFound):
        aigc.load("video", tmp_path, backend="sprites")  # no config.json
    bad = tiny_sprite_video(tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["config"]["latent_dim"] = 9
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelNotFound, match="does not fit"):
        aigc.load("video", bad, backend="sprites")
    with pytest.raises(InvalidRequest, match="upscale"):
        aigc.load("video", tiny_dir, backend="sprites", upscale="lanczos")


def test_cancel(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    def stop(event: aigc.Event) -> None:
        if event.kind == "step":
            event.cancel()

    with pytest.raises(aigc.errors.GenerationCancelled):
        tiny.generate("a circle moving up", seed=0, num_outputs=3, deterministic=True, on_event=stop)


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_save_round_trip(tiny: aigc.Generator[aigc.VideoRequest, aigc.VideoResult], tmp_path: Path,
                         suffix: str) -> None:
    if suffix == ".mp4":
        pytest.importorskip("av")
    from aigc._media.video import load_video

    res = tiny.generate("a square moving right", seed=2, width=64, fps=10)
    (path,) = [p for p in res.save(tmp_path / f"clip{suffix}") if p.suffix == suffix]
    frames, fps = load_video(path)
    assert frames.shape == (4, 64, 64, 3) and fps == pytest.approx(10.0)
    if suffix == ".gif":
        assert np.array_equal(frames, res.frames)  # lossless for grayscale frames


# -- the shipped default -------------------------------------------------------------------------------
def test_shipped_default_moves_as_asked(default: aigc.Generator[aigc.VideoRequest, aigc.VideoResult]) -> None:
    info = default.info
    assert info.backend == "sprites" and info.parameters > 0
    left = default.generate("a 3 moving left", seed=[0, 1, 2])
    assert left.fps == 8.0
    assert all(v.shape == (16, 32, 32, 3) and v.dtype == np.uint8 for v in left.videos)
    right = default.generate("digit three moving right", seed=[0, 1, 2])
    down = default.generate("a 3 falling", seed=[0, 1, 2])
    for v in left.videos:
        c = _centroid_x_y(v)
        assert v.max() > 128 and c[-1, 0] - c[0, 0] < -3  # bright, and moving left by pixels
    for v in right.videos:
        c = _centroid_x_y(v)
        assert c[-1, 0] - c[0, 0] > 3
    for v in down.videos:
        c = _centroid_x_y(v)
        assert c[-1, 1] - c[0, 1] > 3 and abs(c[-1, 0] - c[0, 0]) < abs(c[-1, 1] - c[0, 1])
    with pytest.raises(InvalidRequest, match="num_frames"):
        default.generate("a 3 moving left", num_frames=8)
    big = default.generate("a 7 moving up", seed=0, width=64, height=64)
    assert big.frames.shape == (16, 64, 64, 3)


def test_shipped_default_files_and_card() -> None:
    folder = Path(aigc.__file__).parent / "assets" / "video_default"
    size = (folder / "model.safetensors").stat().st_size
    assert size < 3 * 2**20
    card = (folder / "MODEL_CARD.md").read_text()
    for heading in ("## Data and licence", "## Training", "## Quality", "## Intended use and limits"):
        assert heading in card
    assert json.loads((folder / "config.json").read_text())["format"] == "aigc.sprite_video"
