"""aigc.ray without a cluster: row keys and seeds, reading the input, settings, and the map_batches class called
in-process on pyarrow tables (error rows, skipping, batched groups)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import aigc
from aigc.errors import AigcError, InvalidRequest
from aigc.ray import BatchGenerator, read_rows, row_seed
from aigc.ray._batch import check_settings
from aigc.ray._rows import check_key, file_name


def test_import_aigc_and_aigc_ray_import_no_ray() -> None:
    code = "import sys, aigc; aigc.ray.generate; print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_row_seeds_come_from_keys() -> None:
    assert [row_seed(7, k) for k in range(3)] == [7, 8, 9]  # what aigc.generate(prompts, seed=7) gives sample k
    a, b = row_seed(0, "sku-1"), row_seed(0, "sku-2")
    assert a != b and 0 <= a < 2**63 and row_seed(0, "sku-1") == a and row_seed(1, "sku-1") != a
    with pytest.raises(InvalidRequest, match="above 2"):
        row_seed(2**63 - 1, 1)
    with pytest.raises(InvalidRequest, match="integer >= 0"):
        check_key(-1, "id")
    with pytest.raises(InvalidRequest, match="integer >= 0"):
        check_key(1.5, "id")
    assert file_name("sku-1", "png", "id") == "sku-1.png"
    for bad in ("../up", "a/b", ".hidden", "with space", "x" * 201):
        with pytest.raises(InvalidRequest, match="names the row's output file"):
            file_name(bad, "png", "id")


def test_read_rows_numbers_rows_by_their_index_in_the_file(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a"}\n\n{"prompt": "b", "steps": 3}\n{"prompt": "c"}\n', encoding="utf-8")
    table, key = read_rows(f)
    assert key == "id" and table.column("id").to_pylist() == [0, 1, 2]
    assert table.column("steps").to_pylist() == [None, 3, None]  # a column only some rows have
    table, key = read_rows([{"prompt": "a", "sku": "x"}, {"prompt": "b", "sku": "y"}], id_column="sku")
    assert key == "sku" and "id" not in table.column_names
    pq = tmp_path / "p.parquet"
    import pyarrow.parquet

    pyarrow.parquet.write_table(pa.table({"prompt": ["a", "b"], "id": ["u", "v"]}), pq)
    assert read_rows(pq)[0].column("id").to_pylist() == ["u", "v"]


@pytest.mark.parametrize(("data", "match"), [
    ([{"prompt": "a", "id": 1}, {"prompt": "b", "id": 1}], "more than once"),
    ([{"prompt": "a", "id": 1}, {"prompt": "b"}], "has no key"),
    ([{"text": "a"}], "no 'prompt' column"),
    ([], "no rows"),
    ([{"prompt": "a", "steps": 3}, {"prompt": "b", "steps": "ten"}], "column 'steps' holds values of different"),
    ([3], r"data\[0\]"),
])
def test_read_rows_refuses_bad_input(data: list[object], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        read_rows(data)  # type: ignore[arg-type]


def test_read_rows_refuses_bad_files(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(InvalidRequest, match="unknown file type"):
        read_rows(tmp_path / "p.txt")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(InvalidRequest, match=r"p\.jsonl:2"):
        read_rows(tmp_path / "p.jsonl")
    with pytest.raises(InvalidRequest, match="no such column"):
        read_rows(["a"], id_column="sku")


def test_settings_are_checked_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="did you mean 'steps'"):
        check_settings("image", seed=0, params={"stpes": 3})
    with pytest.raises(InvalidRequest, match="steps"):
        check_settings("image", seed=0, params={"steps": -1})
    with pytest.raises(InvalidRequest, match="one row makes one sample"):
        check_settings("image", seed=0, params={"num_outputs": 2})
    with pytest.raises(InvalidRequest, match="seed"):
        check_settings("text", seed=-1)
    with pytest.raises(InvalidRequest, match="png"):
        check_settings("image", seed=0, format="bmp")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidRequest, match="is a file"):
        check_settings("image", seed=0, output=tmp_path / "f")
    with pytest.raises(InvalidRequest, match="concurrency"):
        aigc.ray.generate(["a"], "text", seed=0, concurrency=0)
    with pytest.raises(InvalidRequest, match="did you mean 'max_new_tokens'"):
        aigc.ray.generate(["a"], "text", seed=0, max_new_token=3)


@pytest.fixture(scope="module")
def image_gen() -> BatchGenerator:
    return BatchGenerator("image", seed=100, device="cpu", params={"steps": 2}, include_data=False)


def test_bad_rows_become_error_entries_and_the_others_complete(image_gen: BatchGenerator, tmp_path: Path) -> None:
    table = pa.table({"id": [0, 1, 2, 3, 4], "prompt": ["an ankle boot", "a sneaker", "a cat", None, "a bag"],
                      "steps": [None, -1, None, None, None], "seed": [None, None, None, None, -5],
                      "note": ["kept", "kept", "kept", "kept", "kept"]})
    out = image_gen(table)
    rows = out.to_pylist()
    assert [r["status"] for r in rows] == ["generated", "failed", "failed", "failed", "failed"]
    assert "steps=-1" in rows[1]["error"] and "names none of the 20 classes" in rows[2]["error"]
    assert "no prompt" in rows[3]["error"] and "seed" in rows[4]["error"]
    assert [r["note"] for r in rows] == ["kept"] * 5  # other columns are carried through
    record = aigc.Record.from_json(rows[0]["record"])
    assert record.seeds == [100] and record.request["prompt"] == "an ankle boot" and record.request["steps"] == 2
    with pytest.raises(InvalidRequest, match="ray-project/ray#50890"):
        image_gen(pa.table({"prompt": ["a bag"]}))  # no key: a seed never comes from a row's position


def test_an_existing_file_is_skipped_only_if_it_is_this_rows(tmp_path: Path) -> None:
    gen = BatchGenerator("image", seed=0, device="cpu", params={"steps": 2}, output=tmp_path)
    table = pa.table({"id": ["a", "b"], "prompt": ["a bag", "a coat"]})
    first = gen(table).to_pylist()
    assert [r["status"] for r in first] == ["generated", "generated"]
    assert Path(first[0]["path"]) == tmp_path / "a.png"
    again = gen(table).to_pylist()
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert again[0]["image"] == (tmp_path / "a.png").read_bytes()
    assert again[0]["record"] == aigc.Record.from_file(tmp_path / "a.png").to_json()
    other = BatchGenerator("image", seed=1, device="cpu", params={"steps": 2}, output=tmp_path)(table).to_pylist()
    assert [r["status"] for r in other] == ["failed", "failed"]  # another seed: not this run's file
    assert "was made from another row" in other[0]["error"]
    (tmp_path / "c.png").write_bytes(b"not an image")
    foreign = gen(pa.table({"id": ["c"], "prompt": ["a bag"]})).to_pylist()
    assert foreign[0]["status"] == "failed" and "holds no aigc record" in foreign[0]["error"]


def test_batched_groups_match_single_runs_within_tolerance(image_gen: BatchGenerator) -> None:
    batched = BatchGenerator("image", seed=100, device="cpu", params={"steps": 2}, deterministic=False)
    prompts = ["an ankle boot", "a sneaker", "a bag", "a coat", "a dress", "a shirt"]
    table = pa.table({"id": list(range(6)), "prompt": prompts, "guidance": [None, None, 1.0, None, 1.0, None]})
    rows = batched(table).to_pylist()
    gen = aigc.load("image", device="cpu")
    for i, row in enumerate(rows):
        params = {"guidance": 1.0} if i in (2, 4) else {}
        single = gen.generate(prompts[i], seed=100 + i, steps=2, **params)
        got = np.asarray(Image.open(__import__("io").BytesIO(row["image"])).convert("RGB"), dtype=int)
        assert np.abs(got - np.asarray(single.image, dtype=int)).max() <= 4  # the backend's stated tolerance
        record = aigc.Record.from_json(row["record"])  # the single run's record, not the group's
        assert record.seeds == [100 + i] and record.request["prompt"] == prompts[i]
        assert record.request == {**single.record.request, "guidance": record.request["guidance"]}  # type: ignore[union-attr]


def test_text_rows_and_a_per_row_parameter() -> None:
    gen = BatchGenerator("text", seed=5, device="cpu", params={"max_new_tokens": 6})
    rows = gen(pa.table({"id": ["x", "y"], "prompt": ["Once", "The"], "max_new_tokens": [None, 3]})).to_pylist()
    for row, tokens in zip(rows, (6, 3), strict=True):
        single = aigc.generate("text", row["prompt"], seed=row_seed(5, row["id"]), max_new_tokens=tokens)
        assert row["text"] == single.text and row["seed"] == row_seed(5, row["id"])
        assert json.loads(row["record"])["request"]["max_new_tokens"] == tokens


def test_a_bad_setting_fails_before_the_model_loads() -> None:
    with pytest.raises(AigcError, match="threads"):
        BatchGenerator("image", seed=0, threads=0)


def test_cli_refuses_bad_ray_settings_before_ray_starts(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aigc", *args], capture_output=True, text=True, timeout=120)

    out = cli("serve", "--replicas", "2")
    assert out.returncode == 1 and "--replicas=2: a Ray Serve setting. Fix: add --ray" in out.stderr
    out = cli("serve", "--ray", "--autoscaling", "[1]")
    assert out.returncode == 1 and "--autoscaling" in out.stderr and "not a JSON object" in out.stderr
    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "a bag"}\n', encoding="utf-8")
    out = cli("batch", "image", str(data), "-o", str(tmp_path / "out"), "--seed", "0", "--param", "stpes=3")
    assert out.returncode == 1 and "did you mean 'steps'" in out.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
