"""aigc.ray on a real local Ray (one instance per session, 2 CPUs): the seed contract across blocks, batches and
actors, resuming, error rows, an actor that dies."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import aigc
from aigc.ray import BatchGenerator

# Each test starts actor pools (seconds each on 2 CPUs): slow, i.e. in the default run and CI, not the quick tier.
pytestmark = [pytest.mark.usefixtures("ray_local", "one_torch_thread"), pytest.mark.slow]

ROWS = 200
SEED = 1000
# Phrases the embedded image model knows (Fashion-MNIST classes and more); the text model takes anything.
IMAGE_PROMPTS = ["an ankle boot", "a sneaker", "a bag", "a coat", "a dress", "a shirt", "a sandal", "a pullover"]
TEXT_PROMPTS = ["Once upon a time", "The king", "To be, or not", "My lord,", "Shall I compare thee", "Good night"]
PARAMS: dict[str, dict[str, Any]] = {"image": {"steps": 2}, "text": {"max_new_tokens": 6}}


def _prompts(modality: str) -> list[str]:
    pool = IMAGE_PROMPTS if modality == "image" else TEXT_PROMPTS
    return [pool[(7 * k) % len(pool)] for k in range(ROWS)]


def _output(path: Path) -> Any:
    """A saved output as comparable data: an image's pixels, a text."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    return json.loads(path.read_text(encoding="utf-8"))["text"]


def _reference(result: aigc.Result, k: int) -> Any:
    if isinstance(result, aigc.ImageResult):
        return np.asarray(result.images[k].convert("RGB"))
    assert isinstance(result, aigc.TextResult)
    return result.texts[k]


def _statuses(dataset: Any) -> dict[int, str]:
    return {row["id"]: row["status"] for row in dataset.select_columns(["id", "status"]).take_all()}


@pytest.mark.parametrize("modality", ["image", "text"])
def test_200_rows_on_two_actors_equal_in_process_runs_and_resume_identically(modality: str, tmp_path: Path) -> None:
    prompts, params = _prompts(modality), PARAMS[modality]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    out = tmp_path / "out"
    suffix = "png" if modality == "image" else "json"

    # 8 blocks, 7 rows per call: batches straddle blocks, and two actors take blocks in whatever order.
    first = aigc.ray.generate(data, modality, seed=SEED, output=out, concurrency=2, num_blocks=8, batch_size=7,
                              device="cpu", threads=1, **params)
    assert _statuses(first) == dict.fromkeys(range(ROWS), "generated")
    seeds = {row["id"]: row["seed"] for row in first.select_columns(["id", "seed"]).take_all()}
    assert seeds == {k: SEED + k for k in range(ROWS)}

    # In-process: sample k of one call with seed=SEED is the single run with seed SEED + k.
    reference = aigc.load(modality, device="cpu").generate(prompts, seed=SEED, deterministic=True, progress=False,
                                                           **params)
    files = {k: out / f"{k}.{suffix}" for k in range(ROWS)}
    assert sorted(out.iterdir()) == sorted(files.values())  # one file per row, no temporary left behind
    for k, path in files.items():
        assert np.array_equal(_output(path), _reference(reference, k)), f"row {k} differs from the in-process run"
    record = aigc.Record.from_file(files[123])
    assert record.seeds == [SEED + 123] and record.request["prompt"] == prompts[123]

    # Delete half; a rerun with other blocks and batch sizes makes only those, and makes them identically.
    gone = set(range(1, ROWS, 2))
    for k in gone:
        files[k].unlink()
    kept = {k: files[k].stat().st_mtime_ns for k in range(ROWS) if k not in gone}
    second = aigc.ray.generate(data, modality, seed=SEED, output=out, concurrency=2, num_blocks=3, batch_size=32,
                               device="cpu", threads=1, **params)
    assert _statuses(second) == {k: "generated" if k in gone else "skipped" for k in range(ROWS)}
    assert {k: files[k].stat().st_mtime_ns for k in kept} == kept  # the kept files were not rewritten
    for k in gone:
        assert np.array_equal(_output(files[k]), _reference(reference, k)), f"rerun row {k} differs"


def test_bad_rows_are_error_entries_and_a_dead_actor_is_retried_with_the_same_outputs(tmp_path: Path) -> None:
    marker = tmp_path / "died-once"

    class DiesOnce(BatchGenerator):
        """Kills its own process on its first batch, once per run (a marker file says it happened)."""

        def __call__(self, batch: Any) -> pa.Table:
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return super().__call__(batch)

    import ray.data

    rows = [{"id": k, "prompt": TEXT_PROMPTS[k % len(TEXT_PROMPTS)]} for k in range(12)]
    rows[3]["max_new_tokens"] = -2  # a bad parameter in one row
    rows[7]["seed"] = "seven"  # a seed that is no seed
    rows[9]["prompt"] = None  # no prompt
    table = pa.table({"id": [r["id"] for r in rows], "prompt": [r["prompt"] for r in rows],
                      "max_new_tokens": [r.get("max_new_tokens") for r in rows],
                      "seed": [r.get("seed") for r in rows]})
    out = tmp_path / "out"
    mapped = ray.data.from_arrow([table.slice(0, 6), table.slice(6)]).map_batches(
        DiesOnce, fn_constructor_args=("text",), batch_size=4, batch_format="pyarrow", concurrency=1,
        fn_constructor_kwargs={"seed": SEED, "device": "cpu", "params": {"max_new_tokens": 6}, "output": str(out),
                               "threads": 1})
    result = {row["id"]: row for row in mapped.take_all()}
    assert marker.exists()  # the actor died, Ray restarted it and ran the batch again

    failed = {k: row["error"] for k, row in result.items() if row["status"] == "failed"}
    assert sorted(failed) == [3, 7, 9]
    assert "max_new_tokens" in failed[3] and "-2" in failed[3]
    assert "seed" in failed[7] and "no prompt" in failed[9]
    gen = aigc.load("text", device="cpu")
    for k, row in result.items():
        if k in failed:
            assert not (out / f"{k}.json").exists()
            continue
        assert row["status"] == "generated"
        single = gen.generate(row["prompt"], seed=SEED + k, max_new_tokens=6, progress=False)
        assert row["text"] == single.text == _output(out / f"{k}.json")


def test_aigc_batch_on_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    import ray

    data = tmp_path / "lines.jsonl"
    rows = [{"id": "a", "prompt": "Once"}, {"id": "b", "prompt": "The king", "max_new_tokens": 0},
            {"id": "c", "prompt": "Good night", "seed": 7}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address  # join this session's Ray rather than start another
    run = subprocess.run([sys.executable, "-m", "aigc", "batch", "text", str(data), "-o", str(out), "--seed", "3",
                          "--max-new-tokens", "5", "--device", "cpu", "--address", address],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # a row failed
    assert "3 rows: 2 generated, 0 already there, 1 failed" in run.stdout
    assert "aigc: row b: InvalidRequest" in run.stderr and "max_new_tokens" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "c.json"]
    gen = aigc.load("text", device="cpu")
    for key, seed in (("a", aigc.ray.row_seed(3, "a")), ("c", 7)):
        doc = json.loads((out / f"{key}.json").read_text(encoding="utf-8"))
        assert doc["seed"] == seed
        prompt = next(r["prompt"] for r in rows if r["id"] == key)
        assert doc["text"] == gen.generate(prompt, seed=seed, max_new_tokens=5, progress=False).text


@pytest.mark.heavy  # two more actor pools and a replay (about 60 s on 2 busy cores); its paths run in the tests above
def test_the_ray_batch_example_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    import ray

    script = Path(__file__).resolve().parents[1] / "examples" / "ray_batch.py"
    done = subprocess.run([sys.executable, str(script), "--address", ray.get_runtime_context().gcs_address,
                           "--concurrency", "1", "--steps", "2"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(" generated ") == 15 and done.stdout.count(" failed ") == 1
    assert "guidance=-1.0" in done.stdout
    assert "rerun: {'generated': 6, 'skipped': 9, 'failed': 1}" in done.stdout  # rows 0, 3, ..., 15; row 5 failed
    assert "identical pixels = True" in done.stdout
    assert len(list((tmp_path / "out" / "ray_batch" / "images").iterdir())) == 15
