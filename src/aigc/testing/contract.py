"""The backend contract suite: behaviour every Generator must show, runnable on any backend.

Use it from any test framework; it raises ``AssertionError`` naming the broken contract:

    >>> from aigc.testing import check_generator
    >>> gen = aigc.load("text", my_model_dir, backend="mybackend")  # doctest: +SKIP
    >>> check_generator(gen, prompt="Hello", max_new_tokens=8)      # doctest: +SKIP
    ['info', 'seeds', 'same seed', 'batch == single', ...]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aigc._generator import Generator
from aigc._results import AudioResult, ImageResult, Record, Result, TextResult, VideoResult
from aigc.errors import InvalidRequest

__all__ = ["check_generator", "outputs_equal"]

_SUFFIX = {"text": ".json", "image": ".png", "audio": ".wav", "video": ".gif"}


def _sample(result: Result, i: int) -> Any:
    if isinstance(result, TextResult):
        return result.texts[i]
    if isinstance(result, ImageResult):
        import numpy as np

        return np.asarray(result.images[i].convert("RGB"), dtype=np.float64) / 255.0
    if isinstance(result, AudioResult):
        return result.waveforms[i]
    if isinstance(result, VideoResult):
        return result.videos[i].astype("float64") / 255.0
    raise TypeError(f"unknown result type {type(result).__name__}")


def outputs_equal(a: Result, i: int, b: Result, j: int, *, atol: float = 0.0) -> bool:
    """Whether sample ``i`` of ``a`` equals sample ``j`` of ``b`` (texts exactly; arrays within ``atol``;
    images and videos are compared in [0, 1] units, so 2/255 is ``atol=2/255``)."""
    x, y = _sample(a, i), _sample(b, j)
    if isinstance(x, str):
        return bool(x == y)
    import numpy as np

    return bool(x.shape == y.shape and np.allclose(x, y, rtol=0.0, atol=atol))


def _check(condition: bool, contract: str, detail: str) -> None:
    if not condition:
        raise AssertionError(f"contract '{contract}' broken: {detail}")


def check_generator(
    generator: Generator[Any, Any],
    *,
    prompt: Any,
    atol: float = 0.0,
    **params: Any,
) -> list[str]:
    """Run the contract suite on ``generator``; return the names of the contracts checked.

    Args:
        generator: a loaded generator (any backend).
        prompt: a prompt the model can serve.
        atol: tolerance for batch == single on arrays (0 for text; e.g. ``2/255`` for images).
        **params: extra request parameters that keep the runs short (``max_new_tokens=8``, ``steps=2``).

    Contracts: ``info`` is filled in; per-sample ``seeds`` are ``s, s+1, ...`` and recorded; the same seed
    gives the same output; sample *i* of a batch equals a single run with seed ``s+i`` (within ``atol``,
    and exactly with ``deterministic=True``); ``seed=None`` records a seed that reproduces the output; the
    global torch RNG is untouched; bad input raises ``InvalidRequest`` before any work; results save
    with their record, and the record rebuilds a request giving the same output; ``to(device)`` works.
    """
    import torch

    done: list[str] = []

    # info
    info = generator.info
    _check(info.modality == generator.modality and bool(info.backend) and bool(info.model), "info",
           f"incomplete info {info}")
    done.append("info")

    # seeds, and the global RNG left alone
    rng_before = torch.random.get_rng_state()
    res = generator.generate(prompt, seed=1234, num_outputs=2, **params)
    _check(torch.equal(rng_before, torch.random.get_rng_state()), "global RNG untouched",
           "generate() changed torch's global RNG state; use torch.Generator objects from aigc.sampling")
    _check(res.seeds == [1234, 1235], "seeds", f"seed=1234, num_outputs=2 gave seeds {res.seeds}")
    _check(len(res) == 2, "seeds", f"num_outputs=2 gave {len(res)} samples")
    _check(res.record is not None and res.record.seeds == [1234, 1235], "seeds", "seeds missing from the record")
    done += ["seeds", "global RNG untouched"]

    # same seed, same output
    again = generator.generate(prompt, seed=1234, num_outputs=2, **params)
    _check(all(outputs_equal(res, i, again, i) for i in range(2)), "same seed", "two runs with seed=1234 differ")
    done.append("same seed")

    # batch == single
    single = generator.generate(prompt, seed=1235, **params)
    _check(outputs_equal(res, 1, single, 0, atol=atol), "batch == single",
           "sample 1 of seed=1234, num_outputs=2 differs from a single run with seed=1235")
    det = generator.generate(prompt, seed=1234, num_outputs=2, deterministic=True, **params)
    _check(outputs_equal(det, 1, single, 0), "batch == single",
           "with deterministic=True, sample 1 is not bit-identical to the single run")
    done.append("batch == single")

    # seed=None draws and records a seed that reproduces the output
    fresh = generator.generate(prompt, **params)
    _check(len(fresh.seeds) == 1 and isinstance(fresh.seeds[0], int), "fresh seed", f"seeds {fresh.seeds}")
    redo = generator.generate(prompt, seed=fresh.seeds[0], **params)
    _check(outputs_equal(fresh, 0, redo, 0), "fresh seed", "the recorded seed does not reproduce the output")
    done.append("fresh seed")

    # errors before any work
    for bad in ({"num_outputs": 0}, {"seed": [1, 2, 3], "num_outputs": 2}, {"no_such_parameter": 1},
                {"seed": -1}):
        try:
            generator.generate(prompt, **{**params, **bad})
        except InvalidRequest:
            continue
        raise AssertionError(f"contract 'errors' broken: {bad} did not raise aigc.errors.InvalidRequest")
    done.append("errors")

    # save with the record; the record rebuilds the request
    from aigc._media.records import read_record

    with tempfile.TemporaryDirectory() as tmp:
        paths = res.save(Path(tmp) / f"out{_SUFFIX[generator.modality]}")
        samples = [p for p in paths if not p.name.endswith(".json") or generator.modality == "text"]
        _check(len(samples) == 2, "save/load", f"save() of 2 samples wrote {[p.name for p in paths]}")
        record = Record.from_json(read_record(samples[1]))
        _check(record.sample_index == 1 and record.seeds == res.seeds, "save/load", "record read back differs")
        replayed = generator.generate(record.to_request())
        _check(outputs_equal(replayed, 0, res, 1, atol=atol), "save/load",
               "the request rebuilt from a saved record does not reproduce the sample")
    done.append("save/load")

    # device moves
    moved = generator.to(generator.device)
    _check(moved is generator, "device moves", "to() must return the generator itself")
    generator.to("cpu")
    on_cpu = generator.generate(prompt, seed=1235, **params)
    _check(str(generator.device) == "cpu" and outputs_equal(on_cpu, 0, single, 0, atol=max(atol, 1e-6)),
           "device moves", "output changed after to('cpu')")
    done.append("device moves")
    return done
