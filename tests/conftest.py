"""Shared fixtures: tiny random models built in code, saved with save_pretrained, loaded for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import aigc
from aigc.testing import tiny_gpt2, tiny_llama, tiny_t5


@pytest.fixture(scope="session", autouse=True)
def _record_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Saves add watermarked records to a store: a temporary one, never the user's (~/.local/share/aigc)."""
    import os

    path = tmp_path_factory.mktemp("record-store")
    old = os.environ.get("AIGC_RECORD_STORE")
    os.environ["AIGC_RECORD_STORE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AIGC_RECORD_STORE", None)
    else:
        os.environ["AIGC_RECORD_STORE"] = old


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def gpt2_dir(models_dir: Path) -> Path:
    return tiny_gpt2(models_dir / "gpt2")


@pytest.fixture(scope="session")
def llama_dir(models_dir: Path) -> Path:
    return tiny_llama(models_dir / "llama")


@pytest.fixture(scope="session")
def t5_dir(models_dir: Path) -> Path:
    return tiny_t5(models_dir / "t5")


@pytest.fixture(params=["gpt2", "llama", "t5"])
def any_model_dir(request: pytest.FixtureRequest) -> Path:
    """Each tiny architecture in turn: GPT-2, Llama (rotary, GQA) and T5 (encoder-decoder)."""
    return request.getfixturevalue(f"{request.param}_dir")  # type: ignore[no-any-return]


@pytest.fixture
def gpt2(gpt2_dir: Path) -> aigc.Generator[aigc.TextRequest, aigc.TextResult]:
    return aigc.load("text", gpt2_dir, device="cpu")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    yield
    aigc.cache.clear(collect=False)  # a full gc.collect() after every test costs minutes over the suite


@pytest.fixture(autouse=True)
def _seeded_test_weights() -> None:
    """Random weights built in a test come from the global RNG: seed it so every run tests the same numbers."""
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sd_dir(models_dir: Path) -> Path:
    from aigc.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(models_dir / "sd")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``heavy`` tests run only when ``-m`` names them (a ``-m`` of its own, such as the quick tier's
    ``-m "not slow"``, must not bring them back)."""
    if "heavy" in (config.getoption("markexpr") or ""):
        return
    heavy = [item for item in items if item.get_closest_marker("heavy")]
    if heavy:
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not item.get_closest_marker("heavy")]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray instance for the whole session (2 CPUs, no dashboard): a real Ray, shared by the Ray tests."""
    import logging

    import ray
    import ray.data

    if not ray.is_initialized():  # a docs page or an earlier test may have started it
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """This process on one torch thread, like a Ray actor that holds one CPU: on a CPU, a float reduction split over
    another number of threads may round differently in the last bit, so references for Ray outputs run like this."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
