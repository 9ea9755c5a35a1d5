"""aigc.formats: each own model format round-trips through its one save/load/detect, and only its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from aigc.errors import ModelNotFound, UnsafeModelFile
from aigc.formats import class_diffusion, classes, latent, mel_speaker, sprites
from aigc.formats.classes import ClassTable

DETECTORS = {
    "gan": lambda p: latent.detect(p) == "gan",
    "vae": lambda p: latent.detect(p) == "vae",
    "mel": mel_speaker.detect,
    "sprites": sprites.detect,
    "diffusion": class_diffusion.detect,
}


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def _only(path: Path, kind: str) -> None:
    assert [k for k, detect in DETECTORS.items() if detect(path)] == [kind]


def test_latent_round_trip_and_wrong_kind(tmp_path: Path) -> None:
    from aigc.models import ConvVAE, StyleGANConfig, StyleGANGenerator, VAEConfig

    gan = StyleGANGenerator(StyleGANConfig(resolution=8, widths=(16, 8), z_dim=8, w_dim=8, num_classes=2))
    latent.save(tmp_path / "gan", gan, classes=classes.entries(["cat", "dog"], {"dog": ["puppy"]}),
                defaults={"truncation": 0.5})
    _only(tmp_path / "gan", "gan")
    loaded = latent.load(tmp_path / "gan", "gan")
    assert _same_state(loaded.net, gan) and loaded.defaults == {"truncation": 0.5}
    assert loaded.table is not None and loaded.table.match("a puppy") == 1 and loaded.weights.startswith("sha256:")
    assert (loaded.resolution, loaded.channels, loaded.z_dim) == (8, 1, 8)
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in (tmp_path / "gan").iterdir())
    with pytest.raises(ModelNotFound, match="backend='gan'"):
        latent.load(tmp_path / "gan", "vae")
    vae = ConvVAE(VAEConfig(resolution=8, widths=(8,), latent_dim=4))
    latent.save(tmp_path / "vae", vae, dtype=torch.float16)
    _only(tmp_path / "vae", "vae")
    half = latent.load(tmp_path / "vae", "vae")
    assert half.table is None and half.net.to_stats.weight.dtype == torch.float32
    assert torch.equal(half.net.to_stats.weight, vae.to_stats.weight.half().float())


def test_latent_config_and_weights_must_fit(tmp_path: Path) -> None:
    from aigc.models import StyleGANConfig, StyleGANGenerator

    gan = StyleGANGenerator(StyleGANConfig(resolution=8, widths=(16, 8), z_dim=8, w_dim=8, num_classes=2))
    folder = latent.save(tmp_path / "gan", gan, classes=classes.entries(["cat", "dog"]))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "classes": config["classes"][:1]}))
    with pytest.raises(ModelNotFound, match="2 classes"):
        latent.load(folder, "gan")
    (folder / "config.json").write_text(json.dumps({**config, "config": {**config["config"], "z_dim": 4}}))
    with pytest.raises(ModelNotFound, match="does not fit"):
        latent.load(folder, "gan")
    (folder / "model.safetensors").unlink()
    (folder / "model.bin").write_bytes(b"pickle")
    with pytest.raises(UnsafeModelFile):
        latent.load(folder, "gan")


def test_mel_speaker_round_trip(tmp_path: Path) -> None:
    from aigc.models.speech import MelSpeechConfig, MelSpeechDecoder

    net = MelSpeechDecoder(MelSpeechConfig(num_words=2, num_voices=2, n_mels=8, frames=8, n_fft=64, hop_length=16,
                                           embed_dim=4, hidden_dim=8, channels=8, base_frames=2))
    mel_speaker.save(tmp_path / "m", net, words=["yes", "no"], voices=[{"name": "low", "pitch": 30}, {"name": "high"}],
                     default_voice="high", training={"steps": 1})
    _only(tmp_path / "m", "mel")
    loaded = mel_speaker.load(tmp_path / "m")
    assert (loaded.words, loaded.voices, loaded.default_voice) == (["yes", "no"], ["low", "high"], 1)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["voices"][0]["pitch"] == 30
    with pytest.raises(ValueError, match="2 words"):
        mel_speaker.save(tmp_path / "bad", net, words=["yes"], voices=[{"name": "a"}, {"name": "b"}])


def test_sprites_round_trip(tmp_path: Path) -> None:
    from aigc.models.sprite_video import SpriteVideoConfig, SpriteVideoVAE

    net = SpriteVideoVAE(SpriteVideoConfig(frames=4, resolution=16, widths=(8, 16), latent_dim=8, num_classes=2,
                                           embed_dim=4, hidden=32))
    sprites.save(tmp_path / "s", net, classes=classes.entries(["ball", "box"]), defaults={"fps": 6})
    _only(tmp_path / "s", "sprites")
    loaded = sprites.load(tmp_path / "s")
    assert loaded.defaults == {"fps": 6.0, "truncation": 1.0}
    assert loaded.directions.match("a ball falling") == 3 and loaded.classes.match("a ball falling") == 0


def test_class_diffusion_round_trip(tmp_path: Path) -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=3)
    class_diffusion.save(tmp_path / "d", unet, DDPMScheduler(num_train_timesteps=50),
                         classes=classes.entries(["zero", "one"]), image_size=8, channels=1, default_steps=10)
    _only(tmp_path / "d", "diffusion")
    loaded = class_diffusion.load(tmp_path / "d")
    assert loaded.table.null_class == 2 and loaded.settings["default_steps"] == 10
    assert loaded.scheduler_config["num_train_timesteps"] == 50
    assert _same_state(loaded.unet, unet.half())


def test_class_table_matching() -> None:
    table = ClassTable.from_entries(classes.entries(["ankle boot", "sneaker", "bag"], {"sneaker": ["trainer"]}))
    assert table.null_class == 3
    assert table.match("An ANKLE-boot, please") == 0
    assert table.match("a trainer next to a bag") is None  # two classes: refused, not guessed
    assert table.match("nothing at all") is None
    with pytest.raises(ValueError, match="names two classes"):
        ClassTable.from_entries([{"id": 0, "name": "boot"}, {"id": 1, "name": "shoe", "phrases": ["boot"]}])
