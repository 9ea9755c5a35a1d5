"""Replay's trust model: a provenance record is data from a stranger (docs/concepts/provenance.md).

The crafted-record attack runs for real: a model folder whose config has an ``auto_map`` pointing at a Python
file that writes a marker file when imported, and a record asking for ``trust_remote_code`` in a JSON result, a
PNG, a WAV and through the CLI. The marker must never appear.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import aigc
from aigc._media import audio as media_audio
from aigc._media import image as media_image
from aigc.errors import InvalidRequest, ProvenanceError, ProvenanceWarning, UnsafeModelFile
from aigc.testing import tiny_gpt2

_PAYLOAD = """import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import {base}


class {name}({base}):
    pass
"""


@pytest.fixture
def evil_dir(gpt2_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A loadable GPT-2 folder whose config maps its classes to Python files that write ``marker`` on import."""
    folder, marker = tmp_path / "evil", tmp_path / "PWNED"
    shutil.copytree(gpt2_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_evil.py").write_text(_PAYLOAD.format(marker=str(marker), base="GPT2Config",
                                                                  name="EvilConfig"))
    (folder / "modeling_evil.py").write_text(_PAYLOAD.format(marker=str(marker), base="GPT2LMHeadModel",
                                                             name="EvilForCausalLM"))
    return folder, marker


def _record(folder: Path, tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """A genuine record of a text generation with the model in ``folder``, as a dict, with ``changes`` applied."""
    res = aigc.load("text", folder, device="cpu").generate("Hi", max_new_tokens=3, seed=5)
    assert res.record is not None
    data = json.loads(res.record.for_sample(0).to_json())
    data.update(changes)
    return data


def _as_json(data: dict[str, Any], path: Path) -> Path:
    path = path.with_suffix(".json")
    path.write_text(json.dumps({"text": "whatever", "aigc": data}))
    return path


def _as_png(data: dict[str, Any], path: Path) -> Path:
    return media_image.save_image(Image.new("RGB", (8, 8)), path.with_suffix(".png"), json.dumps(data))[0]


def _as_wav(data: dict[str, Any], path: Path) -> Path:
    wave = np.zeros((1, 800), np.float32)
    return media_audio.save_audio(wave, 8000, path.with_suffix(".wav"), json.dumps(data))[0]


FORMS: dict[str, Callable[[dict[str, Any], Path], Path]] = {"json": _as_json, "png": _as_png, "wav": _as_wav}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_crafted_record_cannot_run_remote_code(evil_dir: tuple[Path, Path], tmp_path: Path, form: str) -> None:
    folder, marker = evil_dir
    data = _record(folder, tmp_path, options={"trust_remote_code": True})
    assert not marker.exists()  # loading the folder the normal way runs none of its code
    path = FORMS[form](data, tmp_path / "crafted")
    with pytest.raises(ProvenanceError) as e:
        aigc.replay(path)
    message = str(e.value)
    assert "trust_remote_code=True" in message and "replay never takes trust_remote_code from a file" in message
    assert "--trust-remote-code" in message and str(path) in message
    assert not marker.exists()
    # model= does not launder the option either
    with pytest.raises(ProvenanceError, match="trust_remote_code"):
        aigc.replay(path, model=folder)
    assert not marker.exists()


def test_crafted_record_through_the_cli(evil_dir: tuple[Path, Path], tmp_path: Path) -> None:
    folder, marker = evil_dir
    path = _as_json(_record(folder, tmp_path, options={"trust_remote_code": True}), tmp_path / "crafted")
    done = subprocess.run([sys.executable, "-m", "aigc", "replay", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith("aigc: error: ") and "--trust-remote-code" in done.stderr
    assert not marker.exists()


def test_the_caller_decides_the_flag_and_the_output_replays(evil_dir: tuple[Path, Path], tmp_path: Path) -> None:
    folder, marker = evil_dir
    res = aigc.load("text", folder, device="cpu").generate("Hi", max_new_tokens=3, seed=5)
    data = _record(folder, tmp_path, options={"trust_remote_code": True})
    again = aigc.replay(_as_json(data, tmp_path / "crafted"), trust_remote_code=False)
    assert again.texts == res.texts  # type: ignore[attr-defined]
    assert not marker.exists()


def test_allow_pickle_is_not_taken_from_a_record(gpt2_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(gpt2_dir, pickled)
    data = _record(pickled, tmp_path, options={"allow_pickle": True})
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")  # a pickle-only folder now
    aigc.cache.clear()
    path = _as_json(data, tmp_path / "crafted")
    with pytest.raises(ProvenanceError, match=r"allow_pickle=True.*--allow-pickle"):
        aigc.replay(path)
    with pytest.raises(UnsafeModelFile):  # the caller's allow_pickle=False wins: the pickle is never opened
        aigc.replay(path, allow_pickle=False)


@pytest.mark.parametrize(("option", "value", "flag"), [
    ("cache", False, "--no-cache"),
    ("offload", "model", "--offload"),
    ("max_batch_size", 100000, "--option max_batch_size=JSON"),
])
def test_resource_options_need_the_caller(gpt2_dir: Path, tmp_path: Path, option: str, value: Any,
                                          flag: str) -> None:
    path = _as_json(_record(gpt2_dir, tmp_path, options={option: value}), tmp_path / "r")
    with pytest.raises(ProvenanceError) as e:
        aigc.replay(path)
    assert f"{option}={value!r}" in str(e.value) and flag in str(e.value)


@pytest.mark.slow
def test_a_backend_unsafe_option_replays_when_passed(gpt2_dir: Path, tmp_path: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu", max_batch_size=2)
    res = gen.generate("Hi", max_new_tokens=3, seed=5, num_outputs=3)
    path = res.save(tmp_path / "r.json")[1]
    with pytest.raises(ProvenanceError, match="max_batch_size=2"):
        aigc.replay(path)
    assert aigc.replay(path, max_batch_size=1).texts == [res.texts[1]]  # type: ignore[attr-defined]
    cli = subprocess.run([sys.executable, "-m", "aigc", "replay", str(path), "--option", "max_batch_size=4"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.rstrip("\n") == res.texts[1]


def test_a_hub_id_needs_the_caller(gpt2_dir: Path, tmp_path: Path) -> None:
    path = _as_json(_record(gpt2_dir, tmp_path, model="someone/some-model"), tmp_path / "r")
    with pytest.raises(ProvenanceError, match=r"could download it.*model='someone/some-model'"):
        aigc.replay(path)
    assert aigc.replay(path, model=gpt2_dir).texts  # type: ignore[attr-defined]  # the caller names a model


def test_a_device_other_than_the_cpu_needs_the_caller(gpt2_dir: Path, tmp_path: Path) -> None:
    data = _record(gpt2_dir, tmp_path)
    data["device"] = "cuda:3"
    path = _as_json(data, tmp_path / "r")
    with pytest.raises(ProvenanceError, match=r"made on device 'cuda:3'.*device='cuda:3'.*--device cuda:3"):
        aigc.replay(path)
    assert aigc.replay(path, device="cpu").texts  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["device", "dtype", "backend", "model"])
def test_load_parameters_inside_options_are_malformed(gpt2_dir: Path, tmp_path: Path, name: str) -> None:
    path = _as_json(_record(gpt2_dir, tmp_path, options={name: "cpu"}), tmp_path / "r")
    with pytest.raises(ProvenanceError, match=f"malformed record: its options set {name}="):
        aigc.replay(path)


def test_unknown_option_in_a_record(gpt2_dir: Path, tmp_path: Path) -> None:
    path = _as_json(_record(gpt2_dir, tmp_path, options={"evil_hook": "x"}), tmp_path / "r")
    with pytest.raises(ProvenanceError, match="'evil_hook', which the transformers text backend does not take"):
        aigc.replay(path)


def test_record_sizes_are_bounded_before_anything_loads(gpt2_dir: Path, tmp_path: Path) -> None:
    data = _record(gpt2_dir, tmp_path, model=str(tmp_path / "no-such-model"), sample_index=None)
    data["request"].update(num_outputs=20_000, seed=0)
    data["seeds"] = list(range(20_000))
    path = _as_json(data, tmp_path / "big")
    with pytest.raises(ProvenanceError, match="max_samples=256"):  # not ModelNotFound: nothing was loaded
        aigc.replay(path)
    data = _record(gpt2_dir, tmp_path, model=str(tmp_path / "no-such-model"))
    data["request"]["max_new_tokens"] = 10**9
    with pytest.raises(ProvenanceError, match="max_new_tokens"):
        aigc.replay(_as_json(data, tmp_path / "long"))


def test_postprocess_steps_are_checked_before_loading(gpt2_dir: Path, tmp_path: Path) -> None:
    for steps in ([{"op": "resample", "sample_rate": 16000}], [{"op": "shell", "cmd": "rm -rf /"}]):
        data = _record(gpt2_dir, tmp_path, model=str(tmp_path / "gone"), postprocess=steps)
        with pytest.raises(ProvenanceError, match="post-processing step"):
            aigc.replay(_as_json(data, tmp_path / "steps"))


@pytest.mark.slow
def test_other_weights_are_refused_or_warned(gpt2_dir: Path, tmp_path: Path) -> None:
    res = aigc.load("text", gpt2_dir, device="cpu").generate("Hi", max_new_tokens=4, seed=5)
    path = res.save(tmp_path / "r.json")[0]
    other = tiny_gpt2(tmp_path / "other", seed=1)  # same architecture, other random weights
    with pytest.raises(ProvenanceError, match=r"not those that made the file.*strict=False"):
        aigc.replay(path, model=other)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = aigc.replay(path, model=other, strict=False)
    assert [type(w.message) for w in caught if issubclass(w.category, ProvenanceWarning)] == [ProvenanceWarning]
    assert again.record is not None and again.record.weights != res.record.weights  # type: ignore[union-attr]
    copy = tmp_path / "copy"  # the same weights moved elsewhere replay exactly
    shutil.copytree(gpt2_dir, copy)
    assert aigc.replay(path, model=copy).texts == res.texts  # type: ignore[attr-defined]
    cli = subprocess.run([sys.executable, "-m", "aigc", "replay", str(path), "--model", str(other), "--no-strict"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "ProvenanceWarning" in cli.stderr


def test_caller_options_cannot_name_load_parameters(gpt2_dir: Path, tmp_path: Path) -> None:
    path = _as_json(_record(gpt2_dir, tmp_path), tmp_path / "r")
    with pytest.raises(InvalidRequest, match="backend"):
        aigc.replay(path, backend="fake")


@pytest.mark.parametrize(("change", "field"), [
    ({"request": []}, "request"), ({"seeds": None}, "seeds"), ({"seeds": []}, "seeds"), ({"seeds": [True]}, "seeds"),
    ({"options": []}, "options"), ({"postprocess": None}, "postprocess"), ({"postprocess": [3]}, "postprocess"),
    ({"modality": "smell"}, "modality"), ({"device": 3}, "device"), ({"sample_index": -1}, "sample_index"),
    ({"weights": {}}, "weights"),
])
def test_every_malformed_record_is_a_provenance_error(change: dict[str, Any], field: str) -> None:
    record = aigc.Record(modality="text", backend="transformers", model="default", request={"prompt": "x"},
                         seeds=[1], device="cpu", dtype="float32")
    data = {**json.loads(record.to_json()), **change}
    with pytest.raises(ProvenanceError, match=f"malformed aigc record: {field}="):
        aigc.Record.from_json(json.dumps(data))


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000,
                                  json.dumps({"format": "aigc.record/1", "options": {"x": _nested(40)}})])
def test_deep_json_is_a_provenance_error(text: str) -> None:
    with pytest.raises(ProvenanceError, match="nested deeper than 32"):
        aigc.Record.from_json(text)
