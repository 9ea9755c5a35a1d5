"""Device/dtype resolution and the process-wide model cache."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
import torch

import aigc
from aigc._runtime.cache import ModelCache
from aigc._runtime.device import resolve_device, resolve_dtype
from aigc.errors import DeviceUnavailable, InvalidRequest
from aigc.testing import FakeTextGenerator, registered


def test_auto_device_and_dtype_on_this_machine() -> None:
    dev = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.type in (expected, "mps")
    if dev.type == "cpu":
        assert resolve_dtype("auto", dev) == torch.float32
    assert resolve_dtype("bf16", dev) == torch.bfloat16
    assert resolve_dtype(torch.float16, dev) == torch.float16


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "CPU", "auto:0", 3])
def test_bad_device_spellings(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="device"):
        resolve_device(bad)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_missing_cuda_is_a_clear_error() -> None:
    with pytest.raises(DeviceUnavailable, match="Fix"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["int8", "fp8", torch.int64])
def test_bad_dtypes(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="dtype"):
        resolve_dtype(bad, torch.device("cpu"))  # type: ignore[arg-type]


def test_same_model_twice_is_the_cached_instance_without_touching_disk(gpt2_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, copy)
    a = aigc.load("text", copy, device="cpu")
    for f in copy.iterdir():  # the weights are gone: a second load must not read them
        f.unlink()
    b = aigc.load("text", str(copy), device="cpu", dtype="float32", backend="transformers")
    assert a is b
    assert [e.key.model for e in aigc.cache.entries()] == [str(copy)]
    assert aigc.cache.used_bytes == sum(p.numel() * 4 for p in a.lm.parameters()) + sum(  # type: ignore[attr-defined]
        t.numel() * t.element_size() for t in a.lm.buffers())  # type: ignore[attr-defined]


def test_different_options_are_different_entries(gpt2_dir: Path) -> None:
    a = aigc.load("text", gpt2_dir, device="cpu")
    b = aigc.load("text", gpt2_dir, device="cpu", dtype="bfloat16")
    c = aigc.load("text", gpt2_dir, device="cpu", cache=False)
    assert a is not b and a is not c
    assert b.dtype == torch.bfloat16
    assert len(aigc.cache) == 2


def test_lru_eviction_under_a_budget(gpt2_dir: Path, llama_dir: Path, t5_dir: Path) -> None:
    old = aigc.cache.budget_bytes
    try:
        g = aigc.load("text", gpt2_dir, device="cpu")
        size = aigc.cache.used_bytes
        aigc.cache.budget_bytes = int(size * 2.5)
        ll = aigc.load("text", llama_dir, device="cpu")
        aigc.load("text", gpt2_dir, device="cpu")  # touch gpt2: llama is now the least recently used
        aigc.load("text", t5_dir, device="cpu")
        models = [Path(e.key.model).name for e in aigc.cache.entries()]
        assert "llama" not in models and "gpt2" in models
        assert aigc.cache.used_bytes <= aigc.cache.budget_bytes or len(aigc.cache) == 1
        assert ll.generate("x", max_new_tokens=2, seed=0).texts  # an evicted generator still works
        assert aigc.load("text", gpt2_dir, device="cpu") is g
    finally:
        aigc.cache.budget_bytes = old


def test_budget_validation_and_clear(gpt2_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="budget_bytes"):
        aigc.cache.budget_bytes = -1
    aigc.load("text", gpt2_dir, device="cpu")
    assert len(aigc.cache) == 1 and "1 models" in repr(aigc.cache)
    aigc.cache.clear()
    assert len(aigc.cache) == 0


def test_concurrent_loads_load_once() -> None:
    calls = []

    class Slow(FakeTextGenerator):
        backend_name = "slow"

        @classmethod
        def load(cls, model: str, *, options: aigc.LoadOptions) -> Slow:
            calls.append(model)
            threading.Event().wait(0.2)
            return cls(model=model, device=options.device, dtype=options.dtype)

    results: list[object] = []
    with registered(Slow):
        threads = [threading.Thread(target=lambda: results.append(aigc.load("text", "m", backend="slow")))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert calls == ["m"]
    assert len({id(r) for r in results}) == 1


def test_failed_load_is_not_cached_and_can_be_retried() -> None:
    attempts = []

    class Flaky(FakeTextGenerator):
        backend_name = "flaky"

        @classmethod
        def load(cls, model: str, *, options: aigc.LoadOptions) -> Flaky:
            attempts.append(1)
            if len(attempts) == 1:
                raise aigc.errors.ModelNotFound("first try fails")
            return cls(model=model, device=options.device, dtype=options.dtype)

    with registered(Flaky):
        with pytest.raises(aigc.errors.ModelNotFound):
            aigc.load("text", "m", backend="flaky")
        assert aigc.load("text", "m", backend="flaky").info.backend == "flaky"


def test_to_and_close_leave_the_cache(gpt2_dir: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")
    assert gen.to("cpu") is gen and len(aigc.cache) == 1
    gen.close()
    assert len(aigc.cache) == 0
    assert aigc.load("text", gpt2_dir, device="cpu") is not gen


def test_private_cache_instance() -> None:
    cache = ModelCache(budget_bytes=0)
    with registered(FakeTextGenerator):
        opts = aigc.LoadOptions(device=torch.device("cpu"), dtype=torch.float32)
        from aigc._runtime.cache import CacheKey

        gen = cache.get_or_load(CacheKey("text", "fake", "m", None, "cpu", "float32"),
                                lambda: FakeTextGenerator.load("m", options=opts))
        assert len(cache) == 1 and cache.entries()[0].generator is gen  # 0 bytes fit a 0-byte budget


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   MemoryError("cannot allocate"), RuntimeError("DefaultCPUAllocator: not enough "
                                                                                "memory: you tried to allocate 9 GB"
                                                                                " -- out of memory")])
def test_out_of_memory_becomes_a_typed_error_with_a_fix(error: BaseException) -> None:
    class Hungry(FakeTextGenerator):
        backend_name = "hungry"

        def _generate(self, request, seeds, events):  # type: ignore[no-untyped-def]
            raise error

    with registered(Hungry):
        gen = aigc.load("text", "m", backend="hungry")
        with pytest.raises(aigc.errors.OutOfMemory, match="Fix: try fewer samples") as e:
            gen.generate("hi", num_outputs=4)
        assert e.value.__cause__ is error
        assert isinstance(e.value, MemoryError)


def test_other_runtime_errors_pass_through() -> None:
    class Broken(FakeTextGenerator):
        backend_name = "broken"

        def _generate(self, request, seeds, events):  # type: ignore[no-untyped-def]
            raise RuntimeError("shape mismatch")

    with registered(Broken), pytest.raises(RuntimeError, match="shape mismatch"):
        aigc.load("text", "m", backend="broken").generate("hi")
