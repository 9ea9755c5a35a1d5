"""Loading different models from several threads at once (transformers and diffusers loading is not thread-safe:
without aigc's process-wide load lock, 22 of these 32 loads failed with "Cannot copy out of meta tensor")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aigc


@pytest.mark.slow
def test_eight_threads_load_four_models_text_and_image(gpt2_dir: Path, llama_dir: Path, t5_dir: Path,
                                                       sd_dir: Path) -> None:
    models = [("text", gpt2_dir), ("text", llama_dir), ("image", sd_dir), ("text", t5_dir)]

    def sample(gen: aigc.Generator[Any, Any]) -> Any:
        if gen.modality == "text":
            return gen.generate("Hi", max_new_tokens=3, seed=1).texts
        return np.asarray(gen.generate("a cat", steps=2, width=32, height=32, seed=1).images[0])

    expected = [sample(aigc.load(m, d, device="cpu", cache=False)) for m, d in models]  # one at a time

    def load_and_sample(i: int) -> Any:
        modality, folder = models[i % 4]
        return sample(aigc.load(modality, folder, device="cpu", cache=False))  # a real load every time

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(load_and_sample, range(32)))
    for i, out in enumerate(outputs):  # every load succeeded, and loaded the right weights
        want = expected[i % 4]
        assert np.array_equal(out, want) if isinstance(want, np.ndarray) else out == want


def test_cached_loads_from_threads_share_one_generator(gpt2_dir: Path, sd_dir: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        gens = list(pool.map(lambda i: aigc.load(*(("text", gpt2_dir) if i % 2 else ("image", sd_dir)),
                                                 device="cpu"), range(16)))
    assert len({id(g) for g in gens}) == 2
