"""aigc's own GAN and VAE: architectures, the gan/vae image backends, latent walks, the pre-training recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aigc
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.models import ConvVAE, StyleGANConfig, StyleGANDiscriminator, StyleGANGenerator, VAEConfig
from aigc.testing import check_generator, tiny_gan, tiny_vae


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gan(tmp_path_factory.mktemp("gan") / "m")


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vae(tmp_path_factory.mktemp("vae") / "m")


def _arrays(result: aigc.ImageResult) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in result.images]


# -- architectures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("resolution", [4, 8, 16, 32])
def test_generator_and_discriminator_shapes(resolution: int) -> None:
    levels = resolution.bit_length() - 2
    cfg = StyleGANConfig(resolution=resolution, channels=3, widths=(16,) * levels, z_dim=8, w_dim=8,
                         mapping_layers=1, num_classes=2)
    g, d = StyleGANGenerator(cfg), StyleGANDiscriminator(cfg)
    c = torch.tensor([0, 1, 1, 0])
    img = g(torch.randn(4, 8), c)
    assert img.shape == (4, 3, resolution, resolution)
    assert g.map(torch.randn(4, 8), c).shape == (4, cfg.num_ws, 8) and cfg.num_ws == 2 * levels
    assert d(img, c).shape == (4,)
    with torch.no_grad():
        for layer in g.synthesis.layers:
            layer.noise_strength.fill_(1.0)
    noise = [torch.randn(s) for s in g.synthesis.noise_shapes(4)]
    assert not torch.equal(g(torch.zeros(4, 8), c, noise=noise), g(torch.zeros(4, 8), c))  # noise inputs matter
    assert torch.equal(g(torch.zeros(4, 8), c), g(torch.zeros(4, 8), c))  # the fixed noise maps by default


@pytest.mark.parametrize("resolution", [8, 16, 32])
def test_vae_shapes_and_loss(resolution: int) -> None:
    cfg = VAEConfig(resolution=resolution, channels=3, widths=(8, 16), latent_dim=4, num_classes=3, class_dim=4)
    vae = ConvVAE(cfg)
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    mu, logvar = vae.encode(x, torch.tensor([0, 2]))
    assert mu.shape == logvar.shape == (2, 4)
    out = vae.decode(mu, torch.tensor([0, 2]))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    loss, rec, kl = vae.loss(x, torch.tensor([0, 2]), torch.randn(2, 4))
    assert torch.isclose(loss, rec + kl) and kl >= 0


def test_truncation_zero_gives_the_class_mean_image_for_every_seed() -> None:
    torch.manual_seed(0)  # the weights; the latents below come from their own generator
    cfg = StyleGANConfig(resolution=8, widths=(16, 8), z_dim=8, w_dim=8, num_classes=2)
    g = StyleGANGenerator(cfg)
    rng = torch.Generator().manual_seed(1)
    g.w_avg.copy_(torch.randn(g.w_avg.shape, generator=rng))
    c = torch.tensor([1, 1, 1])
    imgs = g(torch.randn(3, 8, generator=rng), c, truncation=0.0)
    assert torch.allclose(imgs[0], imgs[1]) and torch.allclose(imgs[0], imgs[2])
    mean_image = g.synthesis(g.w_avg[1].expand(1, cfg.num_ws, -1))
    # batch of 3 against batch of 1: the convolutions may take another kernel, so allow float rounding
    assert torch.allclose(imgs[:1], mean_image, rtol=1e-5, atol=1e-5)
    other = g(torch.randn(1, 8, generator=rng), torch.tensor([0]), truncation=0.0)
    assert not torch.allclose(other, imgs[:1])  # each class has its own mean
    assert not torch.allclose(g(torch.randn(2, 8, generator=rng), c[:2], truncation=1.0)[0], imgs[0])


def test_style_mixing_changes_only_the_layers_from_the_crossover_on() -> None:
    cfg = StyleGANConfig(resolution=16, widths=(16, 16, 8), z_dim=8, w_dim=8, num_classes=0)
    g = StyleGANGenerator(cfg)
    seen: list[torch.Tensor] = []
    convs = [m for m in g.synthesis.modules() if m.__class__.__name__ == "ModulatedConv"]
    hooks = [m.affine.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].clone())) for m in convs]
    # each ModulatedConv's affine sees the w of its layer; order of execution = w index order except toRGB
    a, b = torch.randn(1, 8), torch.randn(1, 8)

    def styles(**kw: object) -> list[torch.Tensor]:
        seen.clear()
        g(a, **kw)  # type: ignore[arg-type]
        return list(seen)

    plain, other = styles(), styles()
    assert all(torch.equal(x, y) for x, y in zip(plain, other, strict=True))
    w_a, w_b = g.mapping(a, None), g.mapping(b, None)
    # the w index used by each conv, in execution order: layer0 -> 0, rgb0 -> 1, then per block j, j+1, rgb j+2
    order = [0, 1]
    for block in range(1, len(cfg.widths)):
        order += [2 * block - 1, 2 * block, 2 * block + 1]
    for cut in range(1, cfg.num_ws):
        mixed = styles(mix_z=b, mix_layer=cut)
        for idx, got in zip(order, mixed, strict=True):
            want = w_a if idx < cut else w_b
            assert torch.equal(got, want), (cut, idx)
    for h in hooks:
        h.remove()
    with pytest.raises(InvalidRequest, match="mix_layer"):
        g(a, mix_z=b, mix_layer=cfg.num_ws + 1)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"resolution": 24}, "config.resolution"),
    ({"resolution": 16, "widths": (8, 8)}, "config.widths"),
    ({"z_dim": 0}, "config.z_dim"),
    ({"num_classes": -1}, "config.num_classes"),
    ({"mapping_lr_mul": 0}, "config.mapping_lr_mul"),
])
def test_bad_gan_configs_are_rejected(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        StyleGANConfig(**kwargs)  # type: ignore[arg-type]
    assert e.value.field == field and "Fix:" in str(e.value)


def test_bad_vae_configs_and_config_round_trips() -> None:
    with pytest.raises(InvalidRequest, match=r"config\.resolution"):
        VAEConfig(resolution=8, widths=(8, 16, 32))
    with pytest.raises(InvalidRequest, match=r"config\.widths"):
        VAEConfig(widths=())
    with pytest.raises(InvalidRequest, match="config"):
        StyleGANConfig.from_dict({"resolution": 8, "widths": [8, 8], "depth": 3})
    cfg = StyleGANConfig(resolution=8, widths=(8, 4), num_classes=3)
    assert StyleGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    vcfg = VAEConfig(resolution=16, widths=(4, 8), num_classes=2)
    assert VAEConfig.from_dict(json.loads(json.dumps(vcfg.to_dict()))) == vcfg


# -- backends ----------------------------------------------------------------------------------------------
def test_gan_backend_contract(gan_dir: Path) -> None:
    gen = aigc.load("image", gan_dir)
    assert gen.info.backend == "gan"  # detected from config.json
    done = check_generator(gen, prompt="a circle", atol=2 / 255)
    assert "batch_equals_single" in done or len(done) >= 5


def test_vae_backend_contract(vae_dir: Path) -> None:
    gen = aigc.load("image", vae_dir)
    assert gen.info.backend == "vae"
    check_generator(gen, prompt="a square", atol=2 / 255)


def test_gan_backend_matches_the_network_and_loads_what_was_saved(gan_dir: Path) -> None:
    from aigc.sampling import randn

    gen = aigc.load("image", gan_dir, backend="gan")
    res = gen.generate(["a square", "a cross"], seed=11, truncation=0.5, deterministic=True)
    cfg = StyleGANConfig.from_dict(json.loads((gan_dir / "config.json").read_text())["config"])
    net = StyleGANGenerator(cfg)
    from safetensors.torch import load_file

    net.load_state_dict(load_file(gan_dir / "model.safetensors"))
    with torch.no_grad():
        want = net(randn((cfg.z_dim,), [11, 12]), torch.tensor([1, 2]), truncation=0.5)
    pixels = ((want.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
    for got, exp in zip(res.images, pixels, strict=True):
        assert np.array_equal(np.asarray(got)[..., 0], exp)


@pytest.mark.parametrize("backend", ["gan", "vae"])
def test_truncation_zero_in_the_backend_gives_one_image_per_class(backend: str, gan_dir: Path, vae_dir: Path) -> None:
    gen = aigc.load("image", gan_dir if backend == "gan" else vae_dir, backend=backend)
    same = _arrays(gen.generate("a circle", seed=0, num_outputs=4, truncation=0.0))
    assert all(np.array_equal(same[0], x) for x in same[1:])
    differ = _arrays(gen.generate("a circle", seed=0, num_outputs=2, truncation=1.0))
    assert not np.array_equal(differ[0], differ[1])
    assert not np.array_equal(same[0], _arrays(gen.generate("a cross", seed=0, truncation=0.0))[0])


def test_style_mixing_in_the_backend(gan_dir: Path, tmp_path: Path) -> None:
    gen = aigc.load("image", gan_dir, backend="gan")
    base = _arrays(gen.generate("a circle", seed=1, truncation=1.0))[0]
    donor = _arrays(gen.generate("a circle", seed=9, truncation=1.0))[0]
    mixed = _arrays(gen.generate("a circle", seed=1, truncation=1.0, mix_seed=9, mix_layer=1))[0]
    assert not np.array_equal(mixed, base) and not np.array_equal(mixed, donor)
    # the whole batch mixes with the same donor: sample i == single run with seed 1 + i
    batch = _arrays(gen.generate("a circle", seed=1, num_outputs=2, mix_seed=9, mix_layer=3, deterministic=True))
    single = _arrays(gen.generate("a circle", seed=2, mix_seed=9, mix_layer=3, deterministic=True))
    assert np.array_equal(batch[1], single[0])
    res = gen.generate("a circle", seed=1, mix_seed=9, mix_layer=3)
    saved = res.save(tmp_path / "mixed.png")[0]
    assert np.array_equal(_arrays(aigc.replay(saved))[0], _arrays(res)[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(("params", "field"), [
    ({"prompt": "a triangle"}, "prompt"),
    ({"mix_seed": 3, "mix_layer": 99}, "mix_layer"),
    ({"width": 20}, "width"),
    ({"truncation": -0.1}, "truncation"),
    ({"steps": 10}, "steps"),
])
def test_gan_backend_rejects_bad_requests(gan_dir: Path, params: dict[str, object], field: str) -> None:
    gen = aigc.load("image", gan_dir, backend="gan")
    request = {"prompt": "a circle", **params}
    with pytest.raises(InvalidRequest) as e:
        gen.generate(**request)  # type: ignore[arg-type]
    assert e.value.field == field


def test_vae_backend_rejects_style_mixing_and_wrong_backend(vae_dir: Path, gan_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="mix_seed"):
        aigc.generate("image", "a circle", model=vae_dir, backend="vae", mix_seed=1)
    with pytest.raises(ModelNotFound, match="backend='gan'"):
        aigc.load("image", gan_dir, backend="vae")


def test_upscaling_and_saved_provenance(gan_dir: Path, tmp_path: Path) -> None:
    res = aigc.generate("image", "a cross", model=gan_dir, backend="gan", seed=4, width=64, height=64)
    assert res.images[0].size == (64, 64)
    path = res.save(tmp_path / "x.png")[0]
    again = aigc.replay(path)
    assert np.array_equal(_arrays(again)[0], _arrays(res)[0])


# -- latent walks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("backend", "interpolation"), [("gan", "z"), ("gan", "w"), ("vae", "z")])
def test_walk_passes_through_the_keyframe_seeds(backend: str, interpolation: str, gan_dir: Path,
                                                vae_dir: Path) -> None:
    model = gan_dir if backend == "gan" else vae_dir
    clip = aigc.generate("video", "a square", model=model, backend="walk", seed=5, num_frames=17, keyframes=3,
                         interpolation=interpolation, fps=6, deterministic=True)
    frames = clip.frames
    assert frames.shape == (17, 16, 16, 3) and frames.dtype == np.uint8 and clip.fps == 6
    images = _arrays(aigc.generate("image", "a square", model=model, backend=backend, seed=5, num_outputs=3,
                                   deterministic=True))
    for frame_index, key in ((0, 0), (8, 1), (16, 2)):  # 17 frames over 3 keyframes: 0, 8, 16 are the seeds
        assert np.abs(frames[frame_index].astype(np.int16) - images[key]).max() <= 1
    steps = [np.abs(frames[i + 1].astype(np.int16) - frames[i]).mean() for i in range(16)]
    jumps = [np.abs(images[0] - images[1]).mean(), np.abs(images[1] - images[2]).mean()]
    assert max(steps) < max(jumps)  # a walk moves in small steps between the keyframes
    assert sum(steps) >= sum(jumps) * 0.99  # and it goes the whole way (within rounding)


def test_walk_contract_and_file_round_trips(gan_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    gen = aigc.load("video", gan_dir, backend="walk")
    check_generator(gen, prompt="a circle", atol=2 / 255, num_frames=4, keyframes=2)
    clip = gen.generate("a circle", seed=0, num_frames=6, keyframes=2, fps=8, width=32, height=32)
    gif = clip.save(tmp_path / "walk.gif")[0]
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 6 and im.size == (32, 32)
    mp4 = clip.save(tmp_path / "walk.mp4")[0]
    import av

    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(decoded) == 6 and decoded[0].shape == (32, 32, 3) and float(stream.average_rate) == 8
    again = aigc.replay(mp4)
    assert isinstance(again, aigc.VideoResult) and np.array_equal(again.frames, clip.frames)


def test_walk_rejects_bad_requests(vae_dir: Path) -> None:
    gen = aigc.load("video", vae_dir, backend="walk")
    with pytest.raises(InvalidRequest, match="num_frames"):
        gen.generate("a circle", num_frames=3, keyframes=4)
    with pytest.raises(InvalidRequest, match="interpolation"):
        gen.generate("a circle", interpolation="w")
    with pytest.raises(InvalidRequest, match="interpolation"):
        gen.generate("a circle", interpolation="x")
    with pytest.raises(InvalidRequest, match="keyframes"):
        gen.generate("a circle", keyframes=1)


# -- recipes ------------------------------------------------------------------------------------------------
def _toy_set(n: int = 32, size: int = 8) -> tuple[np.ndarray, list[int]]:
    """Two classes: a bright square in the middle, or a bright bar across."""
    images = np.zeros((n, size, size), np.uint8)
    labels = [i % 2 for i in range(n)]
    for i, c in enumerate(labels):
        if c == 0:
            images[i, 2:6, 2:6] = 255
        else:
            images[i, 3:5, :] = 255
    return images, labels


class _Stop(Exception):
    """Raised from ``on_step`` to interrupt a run, as a crash or Ctrl-C would."""


def _interrupted(recipe: object, data: object, out: Path, *, at_step: int, **kw: object) -> None:
    """Run ``recipe`` and stop it right after step ``at_step`` (its checkpoints stay for a resume)."""

    def stop(step: aigc.train.TrainStep) -> None:
        if step.step == at_step:
            raise _Stop

    with pytest.raises(_Stop):
        recipe(data, out, on_step=stop, **kw)  # type: ignore[operator]


_TINY_GAN = StyleGANConfig(resolution=8, widths=(16, 16), z_dim=8, w_dim=16, mapping_layers=2, num_classes=2)


@pytest.mark.slow
def test_gan_training_moves_samples_towards_the_data(tmp_path: Path) -> None:
    from aigc.train import train_gan

    images, labels = _toy_set()
    target = torch.from_numpy(images[:2]).float() / 127.5 - 1  # one image of each class

    def error(model_dir: Path) -> float:
        gen = aigc.load("image", model_dir, backend="gan")
        res = gen.generate(["0", "1"], seed=0, num_outputs=8, truncation=1.0)
        arr = np.stack([np.asarray(im)[..., 0] for im in res.images]).astype(np.float32) / 127.5 - 1
        want = np.repeat(target.numpy(), 8, axis=0)
        return float(np.abs(arr - want).mean())

    before = train_gan(images, tmp_path / "g0", labels=labels, config=_TINY_GAN, steps=1, batch_size=8,
                       progress=False, ema_rampup=None, ema_kimg=1e-6)
    after = train_gan(images, tmp_path / "g1", labels=labels, config=_TINY_GAN, steps=150, batch_size=8, lr=0.005,
                      progress=False, checkpoint_every=None)
    assert error(before.output) - error(after.output) > 0.1, (error(before.output), error(after.output))
    assert len(after.losses["d_loss"]) == 150 and len(after.losses["r1"]) == 10
    cfg = json.loads((after.output / "config.json").read_text())
    assert cfg["format"] == "aigc.gan" and [c["name"] for c in cfg["classes"]] == ["0", "1"]


def test_gan_resume_continues_exactly(tmp_path: Path) -> None:
    from aigc.train import train_gan

    images, labels = _toy_set(16)
    kw = {"labels": labels, "config": _TINY_GAN, "steps": 8, "batch_size": 4, "checkpoint_every": 3,
          "progress": False, "r1_every": 2}
    full = train_gan(images, tmp_path / "full", **kw)  # type: ignore[arg-type]

    _interrupted(train_gan, images, tmp_path / "cut", at_step=5, **kw)
    resumed = train_gan(images, tmp_path / "cut", resume=True, **kw)  # type: ignore[arg-type]
    assert resumed.resumed_from == 3
    assert resumed.losses == full.losses
    a = (tmp_path / "full" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "cut" / "model.safetensors").read_bytes()


def test_vae_training_reduces_the_held_out_loss_and_resumes_exactly(tmp_path: Path) -> None:
    from aigc.train import train_vae

    images, labels = _toy_set(40)
    cfg = VAEConfig(resolution=8, widths=(8, 16), latent_dim=4, num_classes=2, class_dim=4)
    kw = {"labels": labels, "config": cfg, "steps": 60, "batch_size": 8, "checkpoint_every": 30,
          "progress": False, "eval_fraction": 0.1, "lr": 3e-3}
    res = train_vae(images, tmp_path / "v", **kw)  # type: ignore[arg-type]
    assert res.eval_losses[60] < 0.7 * res.eval_losses[0]
    assert res.eval_examples == 4 and res.train_examples == 36

    _interrupted(train_vae, images, tmp_path / "w", at_step=40, **kw)
    again = train_vae(images, tmp_path / "w", resume=True, **kw)  # type: ignore[arg-type]
    assert again.train_losses == res.train_losses and again.eval_losses == res.eval_losses
    gen = aigc.load("image", tmp_path / "w", backend="vae")
    assert gen.generate("1", seed=0).images[0].size == (8, 8)


def test_training_on_a_folder_of_class_subfolders(tmp_path: Path) -> None:
    from PIL import Image

    from aigc.train import load_image_set, train_vae

    images, labels = _toy_set(8)
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "data" / ("square" if c == 0 else "bar")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    data = load_image_set(tmp_path / "data")
    assert data.class_names == ("bar", "square") and data.pixels.shape == (8, 1, 8, 8)
    res = train_vae(tmp_path / "data", tmp_path / "out", steps=2, batch_size=4, progress=False,
                    class_phrases={"bar": ["a bar", "stripe"]})
    gen = aigc.load("image", res.output)
    assert gen.info.backend == "vae"
    gen.generate("a stripe", seed=0)


@pytest.mark.parametrize(("call", "field"), [
    ({"data": "missing-folder"}, "data"),
    ({"data": np.zeros((4, 6, 6), np.uint8)}, "data"),
    ({"data": np.zeros((4, 8, 8), np.float32) + 2}, "data"),
    ({"labels": [0, 1]}, "labels"),
    ({"labels": [0, 2] * 8}, "labels"),
    ({"class_names": ["a"]}, "class_names"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 1}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"r1_gamma": -1.0}, "r1_gamma"),
    ({"style_mixing_prob": 2.0}, "style_mixing_prob"),
    ({"truncation": 3.0}, "truncation"),
    ({"config": StyleGANConfig(resolution=16, widths=(8, 8, 8))}, "data"),
    ({"config": StyleGANConfig(resolution=8, widths=(8, 8), num_classes=5)}, "config"),
    ({"config": VAEConfig(resolution=8, widths=(4,))}, "config"),
    ({"class_phrases": {"nope": ["x"]}}, "class_phrases"),
    ({"export_dtype": "int8"}, "export_dtype"),
])
def test_train_gan_rejects_bad_input_before_training(tmp_path: Path, call: dict[str, object], field: str) -> None:
    from aigc.train import train_gan

    images, labels = _toy_set(16)
    kwargs: dict[str, object] = {"data": images, "labels": labels, "steps": 1, "progress": False}
    kwargs.update(call)
    data = kwargs.pop("data")
    with pytest.raises(InvalidRequest) as e:
        train_gan(data, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    assert e.value.field == field
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_recipes_leave_the_global_rng_alone(tmp_path: Path) -> None:
    from aigc.train import train_gan

    images, labels = _toy_set(8)
    state = torch.random.get_rng_state()
    train_gan(images, tmp_path / "g", labels=labels, config=_TINY_GAN, steps=2, batch_size=4, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())


def test_diffusion_recipe_trains_resumes_exactly_and_loads(tmp_path: Path) -> None:
    from aigc.train import train_diffusion

    images, labels = _toy_set(16)
    kw = {"labels": labels, "class_names": ["square", "bar"], "widths": (8, 16), "steps": 6, "batch_size": 4,
          "checkpoint_every": 2, "progress": False, "sample_steps": 4}
    full = train_diffusion(images, tmp_path / "full", **kw)  # type: ignore[arg-type]

    _interrupted(train_diffusion, images, tmp_path / "cut", at_step=3, **kw)
    resumed = train_diffusion(images, tmp_path / "cut", resume=True, **kw)  # type: ignore[arg-type]
    assert resumed.resumed_from == 2 and resumed.train_losses == full.train_losses
    gen = aigc.load("image", tmp_path / "cut")
    assert gen.info.backend == "diffusion"
    a = gen.generate("a bar", seed=0).images[0]
    b = aigc.generate("image", "a bar", model=tmp_path / "full", seed=0).images[0]
    assert a.size == (8, 8) and np.array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(InvalidRequest, match="labels"):
        train_diffusion(images, tmp_path / "x", steps=1)


def test_cli_trains_gan_vae_and_diffusion_from_an_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aigc._cli import main

    images, labels = _toy_set(16)
    npz = tmp_path / "toy.npz"
    np.savez(npz, images=images, labels=np.array(labels), class_names=np.array(["square", "bar"]))
    for recipe, extra in (("gan", []), ("vae", ["--beta", "0.5"]), ("diffusion", ["--widths", "8", "16"])):
        out = tmp_path / recipe
        assert main(["train", recipe, str(npz), "-o", str(out), "--steps", "2", "--batch-size", "4",
                     "--no-progress", *extra]) == 0
        assert str(out) in capsys.readouterr().out
        assert aigc.load("image", out).info.backend == recipe
    assert main(["train", "gan", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "m")]) == 1
    assert "cannot read" in capsys.readouterr().err


# -- the shipped models ---------------------------------------------------------------------------------------
def _class_accuracy(backend: str) -> float:
    """Share of 40 samples (2 per class) that the shipped feature classifier assigns to the class asked for."""
    from aigc import evaluate
    from aigc.evaluate._classifier import DEFAULT_CLASSIFIER_DIR

    clf = evaluate.load_classifier(DEFAULT_CLASSIFIER_DIR)
    gen = aigc.load("image", "default", backend=backend)
    names = [c["name"] for c in json.loads((Path(aigc.__file__).parent / "assets" / f"image_{backend}" /
                                             "config.json").read_text())["classes"]]
    images = [im for name in names for im in gen.generate(name, seed=100, num_outputs=2).images]
    with torch.no_grad():
        pred = clf(clf.preprocess(images)).argmax(-1)
    return float((pred == torch.arange(20).repeat_interleave(2)).float().mean())


@pytest.mark.parametrize(("backend", "floor"), [("gan", 0.8), ("vae", 0.6)])
def test_shipped_model_draws_the_class_asked_for(backend: str, floor: float) -> None:
    assert _class_accuracy(backend) >= floor


def test_a_walk_through_the_shipped_gan() -> None:
    clip = aigc.generate("video", "a handwritten 3", backend="walk", seed=0, num_frames=8, keyframes=2)
    assert clip.record.backend == "walk" and clip.frames.shape == (8, 32, 32, 3)


@pytest.mark.slow
def test_example_script_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "gan_vae_walks.py"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replay gives the same frames: True" in done.stdout
    assert (tmp_path / "out" / "gan_vae" / "walk.gif").is_file()
