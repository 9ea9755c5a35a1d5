"""The embedded defaults run on aigc's own modules: equal to diffusers, and without importing diffusers/transformers.

(a) ``aigc.models.unet2d.UNet2D`` gives diffusers ``UNet2DModel``'s noise prediction, on the shipped weights and on
tiny random configs covering every option it reads; (b) ``aigc.models.schedules`` steps equal diffusers' DDPM and DDIM
schedulers bit for bit; (c) each own-format default loads and generates in a fresh interpreter with neither
diffusers nor transformers (nor torch._dynamo) in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import aigc
from aigc.formats import class_diffusion
from aigc.models.schedules import DDIMSampler, DDPMSampler, make_sampler
from aigc.models.unet2d import UNet2D, UNet2DConfig

ASSETS = Path(aigc.__file__).parent / "assets"
SHIPPED_SCHEDULE = json.loads((ASSETS / "image_default" / "scheduler" / "scheduler_config.json").read_text())


def _inputs(model: Any, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    n = cfg.num_class_embeds
    y = torch.randint(0, n, (batch,), generator=g) if n else None
    return x, t, y


# (a) the UNet --------------------------------------------------------------------------------------------------
def test_shipped_unet_is_ours_and_equals_diffusers() -> None:
    from diffusers import UNet2DModel

    loaded = class_diffusion.load(ASSETS / "image_default")
    assert isinstance(loaded.unet, UNet2D)
    ref = UNet2DModel.from_pretrained(ASSETS / "image_default" / "unet", dtype=torch.float32).eval()
    x, t, y = _inputs(ref, 3)
    with torch.inference_mode():
        ours = loaded.unet(x, t, class_labels=y)
        theirs = ref(x, t, class_labels=y).sample
        one_t = loaded.unet(x, t[:1], class_labels=y)  # a single timestep broadcast over the batch
        one_t_ref = ref(x, t[:1], class_labels=y).sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_t, one_t_ref, atol=1e-5, rtol=0)
    assert not torch.allclose(ours, one_t)  # the timestep matters


TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # the test factory's UNet (tests/test_image_diffusion.py): attention at the coarse level
    "attn": {"block_out_channels": (8, 16), "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
             "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "num_class_embeds": 4, "norm_num_groups": 4,
             "attention_head_dim": 8},
    # tests/test_formats.py's: no attention blocks, 8x8
    "plain": {"sample_size": 8, "block_out_channels": (8, 8), "down_block_types": ("DownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "UpBlock2D"), "norm_num_groups": 4, "num_class_embeds": 3},
    # every other option UNet2D reads, away from its default
    "options": {"in_channels": 2, "out_channels": 3, "block_out_channels": (8, 16, 16), "layers_per_block": 2,
                "down_block_types": ("AttnDownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "AttnUpBlock2D"), "norm_num_groups": 4,
                "attention_head_dim": None, "attn_norm_num_groups": 2, "norm_eps": 1e-6,
                "mid_block_scale_factor": 1.4142, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
                "center_input_sample": True},
    "no_mid_attention_unconditional": {"block_out_channels": (8, 16), "norm_num_groups": 4, "add_attention": False,
                                       "down_block_types": ("DownBlock2D", "DownBlock2D"),
                                       "up_block_types": ("UpBlock2D", "UpBlock2D")},
}


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_tiny_random_unet_equals_diffusers(name: str) -> None:
    from diffusers import UNet2DModel

    torch.manual_seed(0)  # test-only: diffusers' random init goes through the global RNG
    ref = UNet2DModel(**{"sample_size": 16, "in_channels": 1, "out_channels": 1, **TINY_CONFIGS[name]}).eval()
    cfg = UNet2DConfig.from_diffusers(dict(ref.config))
    assert cfg is not None
    ours = UNet2D(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # diffusers' parameter names, nothing missing or extra
    x, t, y = _inputs(ref, 2)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x, t, class_labels=y), ref(x, t, class_labels=y).sample, atol=1e-5, rtol=0)


def test_unsupported_configs_fall_back_to_diffusers(tmp_path: Path) -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    assert UNet2DConfig.from_diffusers({"time_embedding_type": "fourier"}) is None
    assert UNet2DConfig.from_diffusers({"resnet_time_scale_shift": "scale_shift"}) is None
    assert UNet2DConfig.from_diffusers({"down_block_types": ["SkipDownBlock2D"], "up_block_types": ["UpBlock2D"],
                                        "block_out_channels": [8]}) is None
    assert UNet2DConfig.from_diffusers({"some_future_option": 1}) is None
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=3, resnet_time_scale_shift="scale_shift")
    from aigc.formats import classes

    class_diffusion.save(tmp_path / "d", unet, DDPMScheduler(num_train_timesteps=50),
                         classes=classes.entries(["zero", "one"]), image_size=8, channels=1, default_steps=2)
    loaded = class_diffusion.load(tmp_path / "d")
    assert type(loaded.unet).__name__ == "UNet2DModel"
    res = aigc.generate("image", "one", model=str(tmp_path / "d"), backend="diffusion", seed=0, device="cpu")
    assert res.images[0].size == (8, 8)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from aigc.errors import ModelNotFound

    shutil.copytree(ASSETS / "image_default", tmp_path / "m")
    weights = tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["conv_out.bias"]
    save_file(state, weights)
    with pytest.raises(ModelNotFound, match="do not fit the config"):
        class_diffusion.load(tmp_path / "m")


def test_loading_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    class_diffusion.load(ASSETS / "image_default")
    assert torch.equal(before, torch.random.get_rng_state())


# (b) the samplers ----------------------------------------------------------------------------------------------
SCHEDULES: dict[str, dict[str, Any]] = {
    "shipped": SHIPPED_SCHEDULE,
    "linear_trailing_v": {"num_train_timesteps": 1000, "beta_schedule": "linear", "timestep_spacing": "trailing",
                          "prediction_type": "v_prediction", "clip_sample": False},
    "scaled_linspace_sample": {"num_train_timesteps": 500, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                               "beta_end": 0.012, "timestep_spacing": "linspace", "prediction_type": "sample",
                               "variance_type": "fixed_large", "set_alpha_to_one": False},
    "leading_offset_clip": {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "steps_offset": 1,
                            "clip_sample_range": 0.5},
}


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 7, 50])
def test_samplers_equal_diffusers_bit_for_bit(kind: str, schedule: str, steps: int) -> None:
    import diffusers

    config = SCHEDULES[schedule]
    ours = make_sampler(kind, config, steps=steps)
    assert isinstance(ours, DDPMSampler if kind == "ddpm" else DDIMSampler)
    ref = getattr(diffusers, "DDPMScheduler" if kind == "ddpm" else "DDIMScheduler").from_config(config)
    ref.set_timesteps(steps)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert ours.init_noise_sigma == ref.init_noise_sigma and ours.stochastic == (kind == "ddpm")
    g = torch.Generator().manual_seed(1)
    x_ours = x_ref = torch.randn(3, 1, 4, 4, generator=g)
    gens_ours = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    gens_ref = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    for t in ours.timesteps:
        eps = torch.randn(3, 1, 4, 4, generator=g)  # stands in for the network
        assert torch.equal(ours.scale_model_input(x_ours, t), ref.scale_model_input(x_ref, t))
        x_ours = ours.step(eps, t, x_ours, generator=gens_ours)
        x_ref = ref.step(eps, t, x_ref, generator=gens_ref).prev_sample
        assert torch.equal(x_ours, x_ref), (kind, schedule, steps, int(t))


def test_sampler_refusals() -> None:
    assert make_sampler("euler", SHIPPED_SCHEDULE, steps=5) is None  # diffusers' (the backend imports it then)
    assert make_sampler("ddpm", {**SHIPPED_SCHEDULE, "thresholding": True}, steps=5) is None
    assert make_sampler("ddim", {**SHIPPED_SCHEDULE, "rescale_betas_zero_snr": True}, steps=5) is None
    assert make_sampler("ddpm", {**SHIPPED_SCHEDULE, "variance_type": "learned_range"}, steps=5) is None
    sampler = make_sampler("ddpm", SHIPPED_SCHEDULE, steps=2)
    assert sampler is not None
    with pytest.raises(ValueError, match="one generator per row"):
        sampler.step(torch.zeros(2, 1, 2, 2), sampler.timesteps[0], torch.zeros(2, 1, 2, 2),
                     generator=[torch.Generator()])


@pytest.mark.parametrize(("scheduler", "version"), [("ddpm", 2), ("ddpm", 1), ("ddim", 2)])
def test_default_images_equal_the_diffusers_path(scheduler: str, version: int) -> None:
    """The whole run, against the loop the backend ran on diffusers before (UNet2DModel + its scheduler, the same
    x_T and step generators): the same pixels, for today's draws and for replays of version-1 records."""
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

    from aigc.sampling import generators, randn, step_generators, use_sampler_version

    gen = aigc.load("image", "default", backend="diffusion", device="cpu")
    seeds, steps, guidance = [11, 12], 4, 2.5
    with use_sampler_version(version):
        res = gen.generate("an ankle boot", seed=11, num_outputs=2, steps=steps, scheduler=scheduler)
    assert res.seeds == seeds

    unet = UNet2DModel.from_pretrained(ASSETS / "image_default" / "unet", dtype=torch.float32).eval()
    ref = (DDPMScheduler if scheduler == "ddpm" else DDIMScheduler).from_config(SHIPPED_SCHEDULE)
    ref.set_timesteps(steps)
    x = randn((1, 32, 32), seeds) * ref.init_noise_sigma
    if version == 1:
        gens = generators(seeds)
        for g in gens:
            torch.randn((1, 32, 32), generator=g)
    else:
        gens = step_generators(seeds)
    boot = 9  # "ankle boot"
    labels = torch.tensor([boot, boot, 20, 20])  # conditional rows, then the null class
    with torch.inference_mode():
        for t in ref.timesteps:
            pred = unet(torch.cat([x, x]), t.reshape(1).expand(4), class_labels=labels).sample
            cond, uncond = pred.chunk(2)
            x = ref.step(uncond + guidance * (cond - uncond), t, x, generator=gens).prev_sample
    expected = gen._to_images(x, (32, 32))  # type: ignore[attr-defined]
    for ours, theirs in zip(res.images, expected, strict=True):
        assert ours.tobytes() == theirs.tobytes()


# (c) no diffusers, no transformers -----------------------------------------------------------------------------
# backend -> (prompt, extra request fields) for each own-format embedded default
DEFAULTS = {
    "image.diffusion": ("an ankle boot", {"steps": 3, "num_outputs": 2}),
    "image.gan": ("an ankle boot", {}),
    "image.vae": ("an ankle boot", {}),
    "audio.mel": ("say seven", {}),
    "video.sprites": ("a 3 moving left", {}),
    "video.walk": ("a sneaker", {}),
}
HEAVY = ("diffusers", "transformers", "accelerate", "huggingface_hub", "tokenizers", "torch._dynamo")


@pytest.fixture(scope="module")
def imported_after_each(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One fresh interpreter loads, generates and saves with each default in turn and reports, after each, the heavy
    modules in ``sys.modules`` (cumulative: a module a default imports shows from that default on)."""
    out_dir = tmp_path_factory.mktemp("fast_defaults")
    code = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads(1)
        import aigc
        report = {{}}
        for backend, (prompt, fields) in {DEFAULTS!r}.items():
            modality, name = backend.split(".")
            res = aigc.generate(modality, prompt, backend=name, model="default", seed=3, device="cpu", **fields)
            suffix = {{"image": "png", "audio": "wav", "video": "gif"}}[modality]
            paths = res.save({str(out_dir)!r} + "/" + name + "." + suffix)
            report[backend] = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m in {HEAVY!r})
        print(json.dumps(report))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list(out_dir.iterdir())) >= len(DEFAULTS)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow  # one fresh interpreter running six defaults: 6-12 s here
@pytest.mark.parametrize("backend", list(DEFAULTS))
def test_embedded_default_imports_no_hugging_face_library(backend: str,
                                                          imported_after_each: dict[str, list[str]]) -> None:
    assert imported_after_each[backend] == []
