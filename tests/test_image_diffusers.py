"""The diffusers image backend on a tiny Stable Diffusion pipeline built in code and loaded for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import aigc
from aigc.errors import GenerationCancelled, InvalidRequest, ProvenanceError, UnsafeModelFile
from aigc.testing import check_generator

TOL = 2 / 255  # batch == single tolerance, per pixel


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


@pytest.fixture
def sd(sd_dir: Path) -> aigc.Generator[aigc.ImageRequest, aigc.ImageResult]:
    return aigc.load("image", sd_dir, device="cpu")


@pytest.fixture
def mask() -> Image.Image:
    m = Image.new("L", (32, 32), 0)
    m.paste(255, (8, 8, 24, 24))
    return m


def test_backend_is_inferred_and_described(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    info = sd.info
    assert (info.backend, info.modality, info.device, info.dtype) == ("diffusers", "image", "cpu", "float32")
    assert info.parameters > 0 and (info.weights or "").startswith("sha256:")


def test_text_to_image_seeds_batch_equals_single(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    batch = sd.generate("a cat", seed=10, num_outputs=3, steps=2)
    assert batch.seeds == [10, 11, 12] and [im.size for im in batch.images] == [(32, 32)] * 3
    assert not np.array_equal(px(batch.images[0]), px(batch.images[1]))
    single = sd.generate("a cat", seed=12, steps=2)
    assert np.abs(px(batch.images[2]) - px(single.images[0])).max() <= TOL
    det = sd.generate("a cat", seed=10, num_outputs=3, steps=2, deterministic=True)
    assert np.array_equal(px(det.images[2]), px(single.images[0]))  # bit-identical


def test_typed_request_with_several_prompts(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    req = aigc.ImageRequest(prompt=["a cat", "a dog"], seed=[4, 5], width=48, height=32, steps=2, guidance=3.0)
    res = sd.generate(req)
    assert [im.size for im in res.images] == [(48, 32), (48, 32)]
    assert np.abs(px(res.images[1]) - px(sd.generate("a dog", seed=5, width=48, height=32, steps=2,
                                                         guidance=3.0).images[0])).max() <= TOL


def test_negative_prompt_and_guidance_change_the_image(
        sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    base = px(sd.generate("a cat", seed=1, steps=2).images[0])
    assert not np.array_equal(base, px(sd.generate("a cat", seed=1, steps=2, negative_prompt="blurry").images[0]))
    assert not np.array_equal(base, px(sd.generate("a cat", seed=1, steps=2, guidance=1.0).images[0]))


def test_image_to_image_and_inpainting(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult], mask: Image.Image,
                                       tmp_path: Path) -> None:
    init = sd.generate("a cat", seed=3, steps=2).images[0]
    i2i = sd.generate("a dog", init_image=init, strength=0.5, seed=7, num_outputs=2, steps=4)
    one = sd.generate("a dog", init_image=init, strength=0.5, seed=8, steps=4)
    assert np.abs(px(i2i.images[1]) - px(one.images[0])).max() <= TOL
    inp = sd.generate("a dog", init_image=init, mask=mask, seed=7, num_outputs=2, steps=4)
    single = sd.generate("a dog", init_image=init, mask=mask, seed=8, steps=4)
    assert np.abs(px(inp.images[1]) - px(single.images[0])).max() <= TOL
    # an init image of another size is resized to the requested size
    big = init.resize((64, 64))
    assert sd.generate("a dog", init_image=big, width=32, height=32, seed=1, steps=2).images[0].size == (32, 32)


@pytest.mark.parametrize("name", ["euler", "euler_a", "dpm++", "ddpm", "unipc"])
def test_schedulers_by_short_name_keep_the_seed_contract(
        sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult], name: str) -> None:
    batch = sd.generate("a cat", seed=20, num_outputs=2, steps=3, scheduler=name)
    single = sd.generate("a cat", seed=21, steps=3, scheduler=name)
    assert np.abs(px(batch.images[1]) - px(single.images[0])).max() <= TOL
    assert type(sd.pipe.scheduler).__name__ == "DDIMScheduler"  # type: ignore[attr-defined]  # restored


def test_bad_requests_fail_before_denoising(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult],
                                            tmp_path: Path) -> None:
    steps: list[int] = []

    def count(event: aigc.Event) -> None:
        steps.append(event.step)

    with pytest.raises(InvalidRequest, match=r"scheduler.*ddim, ddpm"):
        sd.generate("a cat", scheduler="fastest", on_event=count)
    with pytest.raises(InvalidRequest, match=r"width=33.*multiples of 8.*width=32 or 40"):
        sd.generate("a cat", width=33, on_event=count)
    with pytest.raises(InvalidRequest, match="init_image"):
        sd.generate("a cat", init_image=str(tmp_path / "missing.png"))
    with pytest.raises(InvalidRequest, match="init_image"):
        sd.generate("a cat", mask=Image.new("L", (32, 32)))
    with pytest.raises(InvalidRequest, match="did you mean 'guidance'"):
        sd.generate("a cat", guidence=3)
    assert steps == []


def test_step_events_and_cancellation(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    events: list[aigc.Event] = []
    sd.generate("a cat", seed=1, steps=3, on_event=events.append)
    step_events = [e for e in events if e.kind == "step"]
    assert [(e.step, e.total) for e in step_events] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(e.preview, Image.Image) for e in step_events)
    assert (events[0].kind, events[-1].kind) == ("start", "end")

    def cancel_at_two(event: aigc.Event) -> None:
        if event.kind == "step" and event.step == 2:
            event.cancel()

    with pytest.raises(GenerationCancelled):
        sd.generate("a cat", seed=1, steps=5, on_event=cancel_at_two)
    assert len(sd.generate("a cat", seed=1, steps=2).images) == 1  # still usable


def test_save_png_with_provenance_and_replay(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult],
                                             tmp_path: Path, mask: Image.Image) -> None:
    res = sd.generate("a cat", seed=30, num_outputs=2, steps=2, scheduler="euler")
    paths = res.save(tmp_path / "cats.png")
    assert [p.name for p in paths] == ["cats-0.png", "cats-1.png"]
    again = aigc.replay(paths[1])
    assert np.array_equal(px(again.images[0]), px(res.images[1]))  # same device and dtype: same pixels
    # image-to-image from a file replays; from an in-memory image it cannot, and says why
    init_path = tmp_path / "init.png"
    res.images[0].save(init_path)
    i2i = sd.generate("a dog", init_image=init_path, seed=2, steps=2)
    assert np.array_equal(px(aigc.replay(i2i.save(tmp_path / "dog.png")[0]).images[0]), px(i2i.images[0]))
    mem = sd.generate("a dog", init_image=res.images[0], seed=2, steps=2)
    with pytest.raises(ProvenanceError, match="init_image"):
        aigc.replay(mem.save(tmp_path / "mem.png")[0])


def test_contract_suite(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult]) -> None:
    assert "batch == single" in check_generator(sd, prompt="a cat", steps=2, atol=TOL)


def test_pickle_only_pipeline_is_refused(sd_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sd"
    shutil.copytree(sd_dir, copy)
    unet = copy / "unet"
    from safetensors.torch import load_file

    state = load_file(str(unet / "diffusion_pytorch_model.safetensors"))
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, unet / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeModelFile, match="allow_pickle=True"):
        aigc.load("image", copy, device="cpu")
    gen = aigc.load("image", copy, device="cpu", allow_pickle=True)
    assert gen.generate("a cat", seed=0, steps=1).images[0].size == (32, 32)


def test_load_options(sd_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="offload"):
        aigc.load("image", sd_dir, device="cpu", offload="model")
    with pytest.raises(InvalidRequest, match="attention_slicing"):
        aigc.load("image", sd_dir, device="cpu", attention_slicing="yes")
    gen = aigc.load("image", sd_dir, device="cpu", attention_slicing=True, vae_tiling=True, max_batch_size=1)
    a = gen.generate("a cat", seed=5, num_outputs=2, steps=2)
    b = aigc.load("image", sd_dir, device="cpu").generate("a cat", seed=5, num_outputs=2, steps=2)
    assert np.abs(px(a.images[1]) - px(b.images[1])).max() <= TOL


def test_model_index_is_what_detection_uses(sd_dir: Path) -> None:
    assert json.loads((sd_dir / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"
    assert aigc.load("image", sd_dir, device="cpu", backend="diffusers").info.backend == "diffusers"


def test_progress_bar_on_request(sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    sd.generate("a cat", seed=1, steps=3, progress=True)
    err = capsys.readouterr().err
    assert "aigc image" in err and "/3" in err  # a tqdm bar over the 3 steps (cleared at the end: leave=False)
    sd.generate("a cat", seed=1, steps=3, progress=False)
    assert "aigc image" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def lora_dirs(sd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two random LoRAs for the tiny UNet, saved the way diffusers saves LoRA weights."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    out = []
    for seed in (1, 2):
        unet = UNet2DConditionModel.from_pretrained(sd_dir / "unet")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                        init_lora_weights=False))
        path = tmp_path_factory.mktemp(f"lora{seed}")
        StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=get_peft_model_state_dict(unet))
        out.append(path)
    return out


def test_loras_load_scale_combine_and_replay(sd_dir: Path, lora_dirs: list[Path], tmp_path: Path) -> None:
    base = px(aigc.load("image", sd_dir, device="cpu").generate("a cat", seed=1, steps=2).images[0])
    one = aigc.load("image", sd_dir, device="cpu", lora=lora_dirs[0])
    with_lora = px(one.generate("a cat", seed=1, steps=2).images[0])
    assert np.abs(with_lora - base).max() > TOL
    zero = aigc.load("image", sd_dir, device="cpu", lora=lora_dirs[0], lora_scale=0.0)
    assert np.abs(px(zero.generate("a cat", seed=1, steps=2).images[0]) - base).max() <= TOL
    both = aigc.load("image", sd_dir, device="cpu", lora=lora_dirs, lora_scale=[1.0, 0.5])
    res = both.generate("a cat", seed=1, steps=2)
    assert np.abs(px(res.images[0]) - with_lora).max() > TOL
    assert res.record is not None and res.record.options["lora_scale"] == [1.0, 0.5]
    path = res.save(tmp_path / "l.png")[0]
    aigc.cache.clear()
    assert np.array_equal(px(aigc.replay(path).images[0]), px(res.images[0]))


def test_lora_option_errors(sd_dir: Path, lora_dirs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="lora_scale"):
        aigc.load("image", sd_dir, device="cpu", lora=lora_dirs, lora_scale=[1.0])
    with pytest.raises(InvalidRequest, match="lora_scale"):
        aigc.load("image", sd_dir, device="cpu", lora_scale=0.5)
    with pytest.raises(aigc.errors.ModelNotFound, match="no such directory"):
        aigc.load("image", sd_dir, device="cpu", lora=tmp_path / "nope")


def test_step_noise_has_its_own_stream_and_version_1_records_replay(
        sd: aigc.Generator[aigc.ImageRequest, aigc.ImageResult], tmp_path: Path) -> None:
    """With an ancestral scheduler, x_T comes from `randn` and the step noise from `step_generators`: the result
    equals the pipeline called with exactly those, and not the version-1 call whose first step noise was x_T."""
    from aigc.sampling import generators, randn, step_generators, use_sampler_version

    res = sd.generate("a cat", seed=3, steps=3, scheduler="euler_a")
    pipe = sd.pipe  # type: ignore[attr-defined]
    original = pipe.scheduler
    import diffusers

    pipe.scheduler = diffusers.EulerAncestralDiscreteScheduler.from_config(original.config)
    try:
        side = 32 // pipe.vae_scale_factor
        latents = randn((pipe.unet.config.in_channels, side, side), [3], dtype=torch.float32)
        common = {"prompt": ["a cat"], "num_inference_steps": 3, "height": 32, "width": 32, "output_type": "pil",
                  "latents": latents}
        ours = pipe(**common, generator=step_generators([3])).images[0]
        old = pipe(**common, generator=generators([3])).images[0]
    finally:
        pipe.scheduler = original
    assert np.abs(px(res.images[0]) - px(ours)).max() <= TOL
    assert np.abs(px(ours) - px(old)).max() > 0.05
    with use_sampler_version(1):
        assert np.abs(px(sd.generate("a cat", seed=3, steps=3, scheduler="euler_a").images[0]) - px(old)).max() <= TOL
    path = res.save(tmp_path / "cat.png")[0]
    assert np.abs(px(aigc.replay(path).images[0]) - px(res.images[0])).max() <= TOL
