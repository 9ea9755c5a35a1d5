"""The ``image.diffusion`` backend: the shipped default model and tiny random models built in code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aigc
from aigc._backends.image_diffusion import ClassDiffusionGenerator
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.testing import check_generator, outputs_equal

ASSETS = Path(aigc.__file__).parent / "assets" / "image_default"
TINY_CLASSES = {
    "format": "aigc.classes/1",
    "image_size": 32,
    "channels": 1,
    "null_class": 3,
    "default_steps": 4,
    "default_guidance": 2.0,
    "default_scheduler": "ddim",
    "classes": [
        {"id": 0, "name": "ankle boot", "phrases": ["an ankle boot", "boot", "boots"]},
        {"id": 1, "name": "sneaker", "phrases": ["a sneaker", "sneakers"]},
        {"id": 2, "name": "digit 7", "phrases": ["a handwritten 7", "seven", "7", "the number 7"]},
    ],
}


def tiny_class_diffusion(path: Path, *, seed: int = 0) -> Path:
    """A random 2-level UNet (widths 8, 16) with 3 classes + null, saved like the shipped model."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)  # test-only: the random init goes through the global RNG
    unet = UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=4, norm_num_groups=4, attention_head_dim=8,
    )
    unet.half().save_pretrained(path / "unet", safe_serialization=True)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True).save_pretrained(
        path / "scheduler")
    (path / "aigc_classes.json").write_text(json.dumps(TINY_CLASSES))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_class_diffusion(tmp_path_factory.mktemp("class_diffusion"))


@pytest.fixture
def tiny(tiny_dir: Path) -> aigc.Generator[aigc.ImageRequest, aigc.ImageResult]:
    return aigc.load("image", tiny_dir, device="cpu")


# (a) the shipped default model ---------------------------------------------------------------------------
def test_default_model_loads_and_draws_32x32() -> None:
    gen = aigc.load("image", "default", backend="diffusion", device="cpu")
    assert isinstance(gen, ClassDiffusionGenerator)
    assert gen.info.parameters > 100_000 and gen.info.weights and gen.info.weights.startswith("sha256:")
    assert gen.dtype == torch.float32  # fp16 on disk, fp32 on the CPU
    res = aigc.generate("image", "an ankle boot", backend="diffusion", model="default", steps=3, seed=7,
                        num_outputs=2)
    assert res.seeds == [7, 8]
    assert [im.size for im in res.images] == [(32, 32), (32, 32)]
    assert all(im.mode == "RGB" for im in res.images)
    assert res.record is not None and res.record.model == "default" and res.record.backend == "diffusion"
    big = gen.generate("the number 7", steps=2, seed=1, width=64)
    assert big.images[0].size == (64, 64)
    shipped = {p.name for p in ASSETS.iterdir()}
    assert {"unet", "scheduler", "aigc_classes.json", "MODEL_CARD.md"} <= shipped
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 6_000_000


def test_default_model_prompts_map_to_classes() -> None:
    gen = aigc.load("image", "default", backend="diffusion", device="cpu")
    assert isinstance(gen, ClassDiffusionGenerator)
    names = gen.table.names
    expected = {"an ankle boot": "ankle boot", "ankle boot": "ankle boot", "boot": "ankle boot",
                "a sneaker": "sneaker", "sneakers": "sneaker", "t-shirt": "t-shirt", "a shirt": "shirt",
                "a dress shirt": "shirt", "a handwritten 7": "digit 7", "digit seven": "digit 7",
                "the number 7": "digit 7", "seven": "digit 7", "A photo of a Coat!": "coat", "0": "digit 0"}
    for prompt, name in expected.items():
        cid = gen.table.match(prompt)
        assert cid is not None and names[cid] == name, prompt
    assert len(names) == 20


# (b) seeds: batch == single, deterministic == bit-identical ---------------------------------------------------
def test_batch_equals_single_and_deterministic(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    batch = tiny.generate(["a sneaker", "boot"], seed=10, num_outputs=2, steps=3)
    assert batch.seeds == [10, 11, 12, 13]
    single = tiny.generate("boot", seed=13, steps=3)
    assert outputs_equal(batch, 3, single, 0, atol=2 / 255)
    det = tiny.generate(["a sneaker", "boot"], seed=10, num_outputs=2, steps=3, deterministic=True)
    assert outputs_equal(det, 3, single, 0)
    assert not outputs_equal(det, 2, single, 0)  # a different seed gives a different image


def test_ddpm_per_step_noise_is_per_sample(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    rng = torch.random.get_rng_state()
    batch = tiny.generate("seven", seed=3, num_outputs=3, steps=4, scheduler="ddpm", deterministic=True)
    single = tiny.generate("seven", seed=5, steps=4, scheduler="ddpm")
    assert outputs_equal(batch, 2, single, 0)
    assert torch.equal(rng, torch.random.get_rng_state())
    ddim = tiny.generate("seven", seed=5, steps=4, scheduler="ddim")
    assert not outputs_equal(ddim, 0, single, 0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' sigma tables vs numpy 2 (not ours)
@pytest.mark.parametrize("scheduler", ["euler", "dpm"])
def test_other_schedulers_run(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult], scheduler: str) -> None:
    res = tiny.generate("7", seed=1, num_outputs=2, steps=3, scheduler=scheduler, width=64, height=96)
    assert [im.size for im in res.images] == [(64, 96), (64, 96)]
    again = tiny.generate("7", seed=2, steps=3, scheduler=scheduler, width=64, height=96)
    assert outputs_equal(res, 1, again, 0, atol=2 / 255)


# (c) errors before any work --------------------------------------------------------------------------------
def test_unknown_prompt_lists_classes(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    steps: list[int] = []
    with pytest.raises(InvalidRequest, match="use one of: 'ankle boot', 'sneaker', 'digit 7'") as info:
        tiny.generate("a purple elephant", steps=3, on_event=lambda e: steps.append(e.step))
    assert info.value.field == "prompt"
    assert steps == []  # raised before sampling
    with pytest.raises(InvalidRequest) as info:
        tiny.generate(["boot", "a boot and a sneaker"], steps=3)  # ambiguous
    assert info.value.field == "prompt[1]"


def test_bad_parameters(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    with pytest.raises(InvalidRequest, match="ddim, ddpm, euler, dpm") as info:
        tiny.generate("boot", scheduler="karras-magic")
    assert info.value.field == "scheduler"
    with pytest.raises(InvalidRequest, match="negative_prompt"):
        tiny.generate("boot", negative_prompt="blurry")
    with pytest.raises(InvalidRequest) as info:
        tiny.generate("boot", width=50)
    assert info.value.field == "width"
    with pytest.raises(InvalidRequest) as info:
        tiny.generate("boot", steps=1001)
    assert info.value.field == "steps"


# (d) cancellation ------------------------------------------------------------------------------------------
def test_cancel_stops_between_steps(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    seen: list[int] = []

    def stop_at_two(event: aigc.Event) -> None:
        if event.kind == "step":
            seen.append(event.step)
            assert event.total == 5
            if event.step == 2:
                event.cancel()

    with pytest.raises(GenerationCancelled):
        tiny.generate("boot", steps=5, seed=0, on_event=stop_at_two)
    assert seen == [1, 2]
    res = tiny.generate("boot", steps=5, seed=0)  # still usable
    assert len(res.images) == 1


# (e) the shared contract suite -----------------------------------------------------------------------------
def test_contract(tiny: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    done = check_generator(tiny, prompt="a sneaker", steps=4, atol=2 / 255)
    assert "batch == single" in done and "save/load" in done


def test_contract_default_model() -> None:
    gen = aigc.load("image", "default", backend="diffusion", device="cpu")
    check_generator(gen, prompt="a sneaker", steps=4, atol=2 / 255)


# (f) a tiny random model from disk, through the same loading path ----------------------------------------------
def test_tiny_model_is_detected_and_loaded(tiny_dir: Path) -> None:
    assert ClassDiffusionGenerator.detect(tiny_dir)
    assert not ClassDiffusionGenerator.detect(tiny_dir / "unet")
    gen = aigc.load("image", tiny_dir, device="cpu")  # no backend=: found by detect()
    assert isinstance(gen, ClassDiffusionGenerator)
    assert gen.info.parameters == gen.parameters_count() > 0
    assert gen.memory_bytes() == 4 * gen.parameters_count()
    res = gen.generate("a handwritten 7", seed=0)  # defaults from aigc_classes.json: 4 steps
    px = np.asarray(res.images[0])
    assert px.shape == (32, 32, 3) and (px[..., 0] == px[..., 1]).all()  # grayscale as RGB
    # watermark=False: at 64 px the output would carry the watermark, which the 32 px one is too small for
    nearest = aigc.load("image", tiny_dir, device="cpu", upscale="nearest").generate("7", seed=0, width=64,
                                                                                      watermark=False)
    small = np.asarray(res.images[0])
    assert (np.asarray(nearest.images[0])[::2, ::2] == small).all()


def test_pickle_refused_and_missing_models(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_dir, pickled)
    weights = pickled / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), pickled / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    with pytest.raises(UnsafeModelFile, match="allow_pickle=True"):
        aigc.load("image", pickled, backend="diffusion", device="cpu")
    gen = aigc.load("image", pickled, backend="diffusion", device="cpu", allow_pickle=True)
    assert gen.parameters_count() > 0
    with pytest.raises(ModelNotFound):
        aigc.load("image", "no-such-built-in", backend="diffusion")
    with pytest.raises(InvalidRequest, match="nearest"):
        aigc.load("image", tiny_dir, device="cpu", upscale="lanczos")


def test_upscale_option_is_recorded_and_replayed(tmp_path: Path) -> None:
    gen = aigc.load("image", "default", backend="diffusion", device="cpu", upscale="nearest")
    res = gen.generate("a bag", seed=1, steps=4, width=64, height=64)
    assert res.record is not None and res.record.options == {"upscale": "nearest"}
    path = res.save(tmp_path / "bag.png")[0]
    aigc.cache.clear()
    again = aigc.replay(path)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))
