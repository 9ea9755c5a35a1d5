"""aigc.limits: bounded requests, checked in O(1) before anything is allocated; linear prompt matching;
numeric floors; allocator failures as OutOfMemory; the exact device grammar."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import aigc
from aigc._media import video as media_video
from aigc._runtime.device import check_device_spec
from aigc._seeds import resolve_seeds
from aigc.errors import InvalidRequest, OutOfMemory
from aigc.testing import FakeTextGenerator, registered


@pytest.fixture(autouse=True)
def _default_limits() -> Any:
    aigc.limits.reset()
    yield
    aigc.limits.reset()


@pytest.mark.parametrize(("make", "field", "bound"), [
    (lambda: aigc.TextRequest(prompt="x", num_outputs=2**31), "num_outputs", "max_samples"),
    (lambda: aigc.TextRequest(prompt=["a", "b"], num_outputs=200), "num_outputs", "max_samples"),
    (lambda: aigc.ImageRequest(prompt=["a"] * 300), "prompt", "max_samples"),
    (lambda: aigc.ImageRequest(prompt="a", seed=list(range(10**6))), "seed", "max_samples"),
    (lambda: aigc.TextRequest(prompt="x" * 1_000_001), "prompt", "max_prompt_chars"),
    (lambda: aigc.TextRequest(prompt=[{"role": "user", "content": "x" * 1_000_000}]), "prompt",
     "max_prompt_chars"),
    (lambda: aigc.ImageRequest(prompt="a", width=8192, height=4096), "width", "max_pixels"),
    (lambda: aigc.ImageRequest(prompt="a", height=2**25), "height", "max_pixels"),
    (lambda: aigc.ImageRequest(prompt="a", steps=1001), "steps", "max_steps"),
    (lambda: aigc.AudioRequest(prompt="a", steps=10**6), "steps", "max_steps"),
    (lambda: aigc.AudioRequest(prompt="a", duration_s=601.0), "duration_s", "max_audio_s"),
    (lambda: aigc.VideoRequest(prompt="a", num_frames=1025), "num_frames", "max_frames"),
    (lambda: aigc.VideoRequest(prompt="a", keyframes=257), "keyframes", "max_keyframes"),
    (lambda: aigc.TextRequest(prompt="x", max_new_tokens=10**9), "max_new_tokens", "max_new_tokens"),
])
def test_each_bound_names_itself_and_how_to_raise_it(make: Any, field: str, bound: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as e:
        make()
    assert time.perf_counter() - started < 0.5  # O(1) in the asked size: no list of 2**31 seeds is built
    assert e.value.field == field
    assert f"aigc.limits {bound}=" in str(e.value) and f"aigc.limits.set({bound}=" in str(e.value)
    assert f"aigc.limits.override({bound}=" in str(e.value)


def test_seed_resolution_checks_the_count_first() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidRequest, match="max_samples"):
        resolve_seeds(0, 2**31)
    assert time.perf_counter() - started < 0.1


def test_set_and_override_raise_the_bounds() -> None:
    with aigc.limits.override(max_samples=1000) as lim:
        assert lim.max_samples == 1000
        assert aigc.ImageRequest(prompt="a", num_outputs=1000).total_samples == 1000
        seen: list[int] = []  # another thread keeps the process-wide bounds
        thread = threading.Thread(target=lambda: seen.append(aigc.limits.current().max_samples))
        thread.start()
        thread.join()
        assert seen == [256]
    with pytest.raises(InvalidRequest):
        aigc.ImageRequest(prompt="a", num_outputs=1000)
    assert aigc.limits.set(max_samples=2000).max_samples == 2000
    assert aigc.ImageRequest(prompt="a", num_outputs=2000).total_samples == 2000
    aigc.limits.set(max_steps=10)  # lowering works too
    with pytest.raises(InvalidRequest, match="max_steps=10"):
        aigc.ImageRequest(prompt="a", steps=11)


@pytest.mark.parametrize(("changes", "name"), [({"max_pixels": 0}, "max_pixels"), ({"max_samples": 2.5},
                                                                                    "max_samples"),
                                               ({"max_audio_s": float("inf")}, "max_audio_s"),
                                               ({"max_sample": 3}, "max_sample")])
def test_bad_limits_are_refused(changes: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        aigc.limits.set(**changes)
    assert e.value.field == name
    assert aigc.limits.current() == aigc.limits.Limits()


def test_backend_sizes_are_bounded_before_drawing() -> None:
    gen = aigc.load("image", device="cpu")
    with pytest.raises(InvalidRequest, match="max_pixels"):  # one side given, the square it implies is checked
        gen.generate("an ankle boot", width=32 * 200, seed=1)
    speaker = aigc.load("audio", device="cpu")
    with aigc.limits.override(max_audio_samples=16000), pytest.raises(InvalidRequest, match="max_audio_samples"):
        speaker.generate("say seven", duration_s=2.0, seed=1)
    res = speaker.generate("say seven", seed=1)
    with aigc.limits.override(max_audio_samples=res.waveform.shape[-1] * 2), pytest.raises(
            InvalidRequest, match="max_audio_samples"):
        res.resample(res.sample_rate * 3)


def test_class_prompt_matching_is_linear() -> None:
    gen = aigc.load("image", device="cpu")
    table = gen.table  # type: ignore[attr-defined]
    words = " ".join(f"w{i}" for i in range(3200))
    started = time.perf_counter()
    assert table.match(words + " ankle boot") == table.match("ankle boot") is not None
    assert table.match(words) is None
    assert time.perf_counter() - started < 0.5  # was 19.9 s (cubic) for 3,200 words
    assert table.match("a boot and a bag") is None  # a tie is still no match


def test_sampling_floors_are_enforced_and_the_floor_samples() -> None:
    for params in ({"temperature": 1e-38}, {"repetition_penalty": 1e-38}, {"repetition_penalty": 1e38},
                   {"temperature": 0.0099}):
        with pytest.raises(InvalidRequest):
            aigc.TextRequest(prompt="x", **params)
    gen = aigc.load("text", device="cpu")
    res = gen.generate("To be", max_new_tokens=8, seed=3, temperature=0.01, repetition_penalty=100.0)
    assert len(res.token_ids[0]) == 8
    low = gen.generate("To be", max_new_tokens=8, seed=3, temperature=0.01, repetition_penalty=0.01)
    assert len(low.token_ids[0]) == 8


@pytest.mark.parametrize("make_error", [
    lambda: torch.empty(2**62, dtype=torch.uint8),  # the real CPU allocator failing
    lambda: (_ for _ in ()).throw(RuntimeError("std::bad_alloc")),
    lambda: (_ for _ in ()).throw(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                                               "allocate memory: you tried to allocate 8 TB")),
    lambda: (_ for _ in ()).throw(OSError(12, "Cannot allocate memory")),
])
def test_every_allocator_failure_is_out_of_memory(make_error: Any) -> None:
    class Greedy(FakeTextGenerator):
        backend_name = "greedy"

        def _generate(self, request, seeds, events):  # type: ignore[no-untyped-def]
            make_error()

    with registered(Greedy):
        gen = aigc.load("text", "m", backend="greedy")
        with pytest.raises(OutOfMemory, match="Fix: try") as e:
            gen.generate("hi")
        assert isinstance(e.value.__cause__, (RuntimeError, OSError, MemoryError))


def test_allocator_failure_while_loading_is_out_of_memory() -> None:
    class Huge(FakeTextGenerator):
        backend_name = "huge"

        @classmethod
        def load(cls, model, *, options):  # type: ignore[no-untyped-def]
            torch.empty(2**62, dtype=torch.uint8)

    with registered(Huge), pytest.raises(OutOfMemory, match=r"while loading 'm'.*Fix: free memory"):
        aigc.load("text", "m", backend="huge", cache=False)


@pytest.mark.parametrize("device", ["cpu\n", "cuda:01", "cpu:99999999999999999999", "cuda:128", "cpu:1", " cpu",
                                    torch.device("meta"), "meta"])
def test_device_grammar_is_exact(device: Any) -> None:
    with pytest.raises(InvalidRequest, match="device"):
        check_device_spec(device)
    with pytest.raises(InvalidRequest, match="device"):
        aigc.load("text", device=device)


def test_fps_bounds(tmp_path: Path) -> None:
    clip = aigc.VideoResult(videos=[np.zeros((2, 8, 8, 3), np.uint8)], fps=1e-300, seeds=[1])
    with pytest.raises(InvalidRequest, match="fps"):
        clip.save(tmp_path / "a.gif")
    with pytest.raises(InvalidRequest, match="fps"):
        aigc.VideoRequest(prompt="a", fps=1e-300)
    assert media_video.save_video(clip.frames, 0.01, tmp_path / "slow.gif", None)
    assert media_video.load_video(tmp_path / "slow.gif")[1] == pytest.approx(0.01)


@pytest.mark.parametrize("path", ["", ".", "..", "out/.."])
def test_saving_to_no_file_name_is_an_invalid_request(path: str) -> None:
    two = aigc.ImageResult(images=[Image.new("RGB", (8, 8))] * 2, seeds=[1, 2])
    with pytest.raises(InvalidRequest, match="path"):
        two.save(path)
    with pytest.raises(InvalidRequest, match="path"):
        aigc.VideoResult(videos=[np.zeros((1, 8, 8, 3), np.uint8)] * 2, fps=8, seeds=[1, 2]).save(path)
