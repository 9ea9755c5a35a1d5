"""The diffusers video backend on tiny ModelScope (UNet3D) and AnimateDiff pipelines built in code, loaded for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import aigc
from aigc._backends._diffusers_common import is_video_pipeline
from aigc._backends.image_diffusers import DiffusersImageGenerator
from aigc._backends.video_diffusers import DiffusersVideoGenerator
from aigc._media.video import load_video
from aigc.errors import GenerationCancelled, InvalidRequest, ModelNotFound, UnsafeModelFile
from aigc.testing import check_generator
from aigc.testing.video_models import tiny_animatediff, tiny_image_to_video, tiny_motion_adapter, tiny_text_to_video

TOL = 2 / 255  # batch == single tolerance, per pixel in [0, 1]
FAST = {"num_frames": 3, "steps": 2}  # keeps every run well under a second on a CPU

VideoGen = aigc.Generator[aigc.VideoRequest, aigc.VideoResult]


@pytest.fixture(scope="module")
def t2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_text_to_video(tmp_path_factory.mktemp("t2v") / "model")


@pytest.fixture(scope="module")
def ad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_animatediff(tmp_path_factory.mktemp("animatediff") / "model", max_frames=24)


@pytest.fixture(scope="module")
def svd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_image_to_video(tmp_path_factory.mktemp("svd") / "model", num_frames=4)


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32x32 picture to animate, saved as PNG (a path replays; an in-memory image cannot)."""
    path = tmp_path_factory.mktemp("still") / "still.png"
    Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(params=["t2v", "animatediff"])
def gen(request: pytest.FixtureRequest, t2v_dir: Path, ad_dir: Path) -> VideoGen:
    """Each tiny pipeline in turn, found by auto-detection."""
    return aigc.load("video", t2v_dir if request.param == "t2v" else ad_dir, device="cpu")


def frames01(clip: np.ndarray) -> np.ndarray:
    return clip.astype(np.float64) / 255.0


def test_detected_and_described(t2v_dir: Path, ad_dir: Path, sd_dir: Path) -> None:
    for path, pipeline in ((t2v_dir, "TextToVideoSDPipeline"), (ad_dir, "AnimateDiffPipeline")):
        assert DiffusersVideoGenerator.detect(path) and is_video_pipeline(pipeline)
        assert not DiffusersImageGenerator.detect(path)  # so aigc.load("image", path) fails at detection
        gen = aigc.load("video", path, device="cpu", backend="diffusers")
        info = gen.info
        assert (info.backend, info.modality, info.device, info.dtype) == ("diffusers", "video", "cpu", "float32")
        assert info.parameters > 0 and (info.weights or "").startswith("sha256:")
        assert type(gen.pipe).__name__ == pipeline  # type: ignore[attr-defined]
    assert not DiffusersVideoGenerator.detect(sd_dir)  # an image pipeline is not a video model
    with pytest.raises(ModelNotFound, match="no video backend recognises"):
        aigc.load("video", sd_dir, device="cpu")
    with pytest.raises(ModelNotFound, match=r"StableDiffusionPipeline, not a video pipeline.*motion_adapter"):
        aigc.load("video", sd_dir, device="cpu", backend="diffusers")


def test_model_defaults(t2v_dir: Path) -> None:
    res = aigc.load("video", t2v_dir, device="cpu").generate("a cat", steps=1, seed=0)
    assert res.frames.shape == (16, 32, 32, 3) and res.frames.dtype == np.uint8  # ModelScope: 16 frames
    assert res.fps == 8.0 and res.seeds == [0]
    assert res.frames.std() > 0


def test_contract_suite(gen: VideoGen) -> None:
    assert "batch == single" in check_generator(gen, prompt="a cat", atol=TOL, **FAST)


def test_typed_request_prompts_sizes_and_batch_equals_single(gen: VideoGen) -> None:
    rng = torch.random.get_rng_state()
    req = aigc.VideoRequest(prompt=["a cat", "a dog"], seed=[4, 5], width=48, height=32, num_frames=3, fps=12,
                            steps=2, guidance=3.0, negative_prompt="blurry")
    res = gen.generate(req)
    assert torch.equal(rng, torch.random.get_rng_state())  # the caller's global RNG is left alone
    assert [v.shape for v in res.videos] == [(3, 32, 48, 3)] * 2 and res.fps == 12.0
    one = gen.generate("a dog", seed=5, width=48, height=32, num_frames=3, fps=12, steps=2, guidance=3.0,
                       negative_prompt="blurry")
    assert np.abs(frames01(res.videos[1]) - frames01(one.videos[0])).max() <= TOL
    assert not np.array_equal(res.videos[0], res.videos[1])
    det = gen.generate(req.replace(deterministic=True))
    assert np.array_equal(det.videos[1], one.videos[0])  # one sample per call: bit-identical
    # guidance and the negative prompt reach the model
    base = gen.generate("a cat", seed=1, **FAST).frames
    assert not np.array_equal(base, gen.generate("a cat", seed=1, guidance=1.0, **FAST).frames)
    assert not np.array_equal(base, gen.generate("a cat", seed=1, negative_prompt="dark", **FAST).frames)


def test_stochastic_scheduler_keeps_the_seed_contract(t2v_dir: Path, ad_dir: Path) -> None:
    for path in (t2v_dir, ad_dir):
        gen = aigc.load("video", path, device="cpu", scheduler="euler_a")
        batch = gen.generate("a cat", seed=20, num_outputs=2, **FAST)
        single = gen.generate("a cat", seed=21, **FAST)
        assert np.abs(frames01(batch.videos[1]) - frames01(single.videos[0])).max() <= TOL
        assert type(gen.pipe.scheduler).__name__ == "DDIMScheduler"  # type: ignore[attr-defined]  # restored
        assert batch.record is not None and batch.record.options["scheduler"] == "euler_a"
    with pytest.raises(InvalidRequest, match=r"scheduler.*ddim, ddpm"):
        aigc.load("video", t2v_dir, device="cpu", scheduler="fastest")


def test_bad_requests_fail_before_denoising(t2v_dir: Path, ad_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[aigc.Event] = []
    ad = aigc.load("video", ad_dir, device="cpu")
    t2v = aigc.load("video", t2v_dir, device="cpu")
    with pytest.raises(InvalidRequest, match=r"num_frames=25.*at most 24 frames.*num_frames <= 24"):
        ad.generate("a cat", num_frames=25, on_event=steps.append)
    for gen in (ad, t2v):
        with pytest.raises(InvalidRequest, match=r"width=36.*multiples of 8.*width=32 or 40"):
            gen.generate("a cat", width=36, on_event=steps.append)
        with pytest.raises(InvalidRequest, match=r"height=4\b.*pass height=8"):
            gen.generate("a cat", height=4, on_event=steps.append)
        for name, value in (("keyframes", 3), ("interpolation", "z"), ("truncation", 0.5)):
            with pytest.raises(InvalidRequest, match=f"{name}.*not supported by the diffusers video backend"):
                gen.generate("a cat", **{name: value}, on_event=steps.append)
        with pytest.raises(InvalidRequest, match="fps"):
            gen.generate("a cat", fps=0, on_event=steps.append)
        with pytest.raises(InvalidRequest, match="num_frames"):
            gen.generate("a cat", num_frames=0, on_event=steps.append)
        with pytest.raises(InvalidRequest, match=r"init_image.*text only.*image-to-video model"):
            gen.generate("a cat", init_image=Image.new("RGB", (32, 32)), on_event=steps.append)
    with pytest.raises(InvalidRequest, match=r"init_image.*no such image file"):
        t2v.generate("a cat", init_image=str(tmp_path / "missing.png"))
    # a model whose VAE packs 4 frames into one (CogVideoX, Wan) takes 4k + 1 frames
    monkeypatch.setattr(t2v.pipe, "vae_scale_factor_temporal", 4, raising=False)  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequest, match=r"num_frames=8.*4k \+ 1 frames.*num_frames=5 or 9"):
        t2v.generate("a cat", num_frames=8, on_event=steps.append)
    assert t2v.generate("a cat", num_frames=5, steps=1, seed=0).frames.shape[0] == 5
    assert steps == []


def test_step_events_previews_and_cancellation(gen: VideoGen) -> None:
    events: list[aigc.Event] = []
    gen.generate("a cat", seed=1, num_frames=4, steps=3, on_event=events.append)
    step_events = [e for e in events if e.kind == "step"]
    assert [(e.step, e.total) for e in step_events] == [(1, 3), (2, 3), (3, 3)]
    assert all(isinstance(e.preview, Image.Image) for e in step_events)
    assert (events[0].kind, events[-1].kind) == ("start", "end")

    def cancel_at_two(event: aigc.Event) -> None:
        if event.kind == "step" and event.step == 2:
            event.cancel()

    with pytest.raises(GenerationCancelled):
        gen.generate("a cat", seed=1, num_frames=4, steps=5, on_event=cancel_at_two)
    assert len(gen.generate("a cat", seed=1, **FAST).videos) == 1  # still usable


def test_mp4_and_gif_round_trip_with_provenance(t2v_dir: Path, tmp_path: Path) -> None:
    gen = aigc.load("video", t2v_dir, device="cpu")
    res = gen.generate("a cat", seed=30, num_outputs=2, num_frames=6, fps=10, steps=2)
    gifs = res.save(tmp_path / "cat.gif")
    assert [p.name for p in gifs] == ["cat-0.gif", "cat-1.gif"]
    frames, fps = load_video(gifs[1])
    assert frames.shape == (6, 32, 32, 3) and fps == 10.0
    record = aigc.Record.from_file(gifs[1])
    assert (record.backend, record.modality, record.sample_index, record.seeds) == ("diffusers", "video", 1, [30, 31])
    assert record.request["num_frames"] == 6 and record.request["fps"] == 10
    again = aigc.replay(gifs[1])
    assert isinstance(again, aigc.VideoResult)
    assert np.abs(frames01(again.videos[0]) - frames01(res.videos[1])).max() <= TOL  # a single run of sample 1
    pytest.importorskip("av")
    mp4 = res.save(tmp_path / "cat.mp4")[0]
    frames, fps = load_video(mp4)
    assert frames.shape == (6, 32, 32, 3) and fps == pytest.approx(10.0)
    assert np.abs(frames.astype(int) - res.videos[0].astype(int)).mean() < 20  # lossy, but the same clip
    assert aigc.Record.from_file(mp4).seeds == [30, 31]


def test_motion_adapter_on_a_stable_diffusion_model(sd_dir: Path, tmp_path: Path) -> None:
    adapter = tiny_motion_adapter(tmp_path / "adapter", max_frames=8)
    gen = aigc.load("video", sd_dir, device="cpu", backend="diffusers", motion_adapter=adapter)
    assert type(gen.pipe).__name__ == "AnimateDiffPipeline"  # type: ignore[attr-defined]
    res = gen.generate("a cat", seed=2, **FAST)
    assert res.frames.shape == (3, 32, 32, 3)
    assert res.record is not None and res.record.options["motion_adapter"] == str(adapter)
    with pytest.raises(InvalidRequest, match="at most 8 frames"):
        gen.generate("a cat", num_frames=9)
    with pytest.raises(ModelNotFound, match=r"motion_adapter.*no such folder"):
        aigc.load("video", sd_dir, device="cpu", backend="diffusers", motion_adapter=str(tmp_path / "nope"))


def test_pickle_only_pipeline_is_refused(ad_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ad"
    shutil.copytree(ad_dir, copy)
    folder = copy / "motion_adapter"
    from safetensors.torch import load_file

    state = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(state, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(UnsafeModelFile, match="allow_pickle=True"):
        aigc.load("video", copy, device="cpu")
    gen = aigc.load("video", copy, device="cpu", allow_pickle=True)
    assert gen.generate("a cat", seed=0, num_frames=2, steps=1).frames.shape == (2, 32, 32, 3)


def test_load_options(t2v_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="offload"):
        aigc.load("video", t2v_dir, device="cpu", offload="model")
    with pytest.raises(InvalidRequest, match="vae_tiling"):
        aigc.load("video", t2v_dir, device="cpu", vae_tiling="yes")
    with pytest.raises(InvalidRequest, match="max_batch_size"):
        aigc.load("video", t2v_dir, device="cpu", max_batch_size=0)
    one = aigc.load("video", t2v_dir, device="cpu", max_batch_size=1, attention_slicing=True)
    a = one.generate("a cat", seed=5, num_outputs=2, num_frames=2, steps=1)
    b = aigc.load("video", t2v_dir, device="cpu").generate("a cat", seed=5, num_outputs=2, num_frames=2, steps=1)
    assert np.abs(frames01(a.videos[1]) - frames01(b.videos[1])).max() <= TOL


@pytest.mark.slow
def test_image_to_video(svd_dir: Path, still: Path) -> None:
    gen = aigc.load("video", svd_dir, device="cpu")  # Stable Video Diffusion, detected
    assert type(gen.pipe).__name__ == "StableVideoDiffusionPipeline"  # type: ignore[attr-defined]
    size = {"width": 32, "height": 32, "steps": 1}
    assert "save/load" in check_generator(gen, prompt="", init_image=str(still), **size)
    res = gen.generate("", init_image=still, seed=3, **size)
    assert res.frames.shape == (4, 32, 32, 3) and res.fps == 7.0  # the model's defaults
    other = Image.new("RGB", (32, 32), (200, 30, 30))
    assert not np.array_equal(res.frames, gen.generate("", init_image=other, seed=3, **size).frames)
    faster = gen.generate("", init_image=still, seed=3, fps=12, **size)
    assert faster.fps == 12.0 and not np.array_equal(res.frames, faster.frames)  # SVD is conditioned on the fps
    assert gen.generate("", init_image=still, seed=3, num_frames=3, **size).frames.shape == (3, 32, 32, 3)
    events: list[aigc.Event] = []
    with pytest.raises(InvalidRequest, match=r"init_image.*makes video from an image.*pass init_image="):
        gen.generate("", on_event=events.append, **size)
    with pytest.raises(InvalidRequest, match=r"prompt.*takes no prompt.*prompt=\"\""):
        gen.generate("a cat", init_image=still, on_event=events.append, **size)
    with pytest.raises(InvalidRequest, match=r"guidance.*StableVideoDiffusionPipeline does not take it"):
        gen.generate("", init_image=still, guidance=2.0, on_event=events.append, **size)
    assert events == []
