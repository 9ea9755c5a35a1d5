"""The public namespace, import cost, and typed requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import aigc
from aigc.errors import AigcError, InvalidRequest


def test_all_is_exactly_the_public_namespace() -> None:
    import aigc.evaluate
    import aigc.formats
    import aigc.models
    import aigc.provenance
    import aigc.ray
    import aigc.sampling
    import aigc.serve
    import aigc.testing
    import aigc.train
    import aigc.watermark

    assert aigc.verify is aigc.provenance.verify  # loads lazily, then is an attribute
    public = {name for name in vars(aigc) if not name.startswith("_")}
    public -= {"annotations", "importlib", "TYPE_CHECKING", "Any"}  # module-level helpers of __init__
    assert public == set(aigc.__all__)
    assert sorted(dir(aigc)) == sorted(aigc.__all__)
    for name in aigc.__all__:
        assert getattr(aigc, name) is not None


def test_import_is_light() -> None:
    code = ("import sys, time; t = time.perf_counter(); import aigc; dt = time.perf_counter() - t;"
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'numpy', 'PIL') if m in sys.modules];"
            "print(dt, heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["[]"]
    assert float(out[0]) < 0.3


def test_error_tree() -> None:
    for name in aigc.errors.__all__:
        cls = getattr(aigc.errors, name)
        assert issubclass(cls, AigcError) or issubclass(cls, aigc.errors.AigcWarning)
    assert issubclass(InvalidRequest, ValueError)
    assert issubclass(aigc.errors.ModelNotFound, FileNotFoundError)
    assert issubclass(aigc.errors.BackendUnavailable, ImportError)
    e = aigc.errors.BackendUnavailable("saving MP4 needs PyAV", extra="video")
    assert "pip install 'aigc[video]'" in str(e)


@pytest.mark.parametrize(("params", "field"), [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": -5}, "max_new_tokens"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"min_p": 2.0}, "min_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"num_outputs": 0}, "num_outputs"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": "42"}, "seed"),
    ({"seed": [1, 2, 3], "num_outputs": 2}, "seed"),
    ({"seed": []}, "seed"),
    ({"stop": [""]}, "stop"),
    ({"do_sample": "yes"}, "do_sample"),
])
def test_bad_text_parameters_name_the_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        aigc.TextRequest(prompt="hi", **params)  # type: ignore[arg-type]
    assert e.value.field == field
    assert "Fix:" in str(e.value)


def test_temperature_zero_is_fine_when_greedy() -> None:
    assert aigc.TextRequest(prompt="hi", temperature=0.0, do_sample=False).do_sample is False


@pytest.mark.parametrize("prompt", [[], [""] * 0, None, 3, [1, 2], [[{"role": "user"}]]])
def test_bad_prompts(prompt: object) -> None:
    with pytest.raises(InvalidRequest):
        aigc.TextRequest.from_params(prompt)


def test_unknown_parameter_suggests_the_close_name() -> None:
    with pytest.raises(InvalidRequest, match="did you mean 'max_new_tokens'"):
        aigc.TextRequest.from_params("hi", max_new_token=5)
    with pytest.raises(InvalidRequest, match="did you mean 'guidance'"):
        aigc.ImageRequest.from_params("a cat", guidence=5)


def test_seeds_and_sample_counts() -> None:
    assert aigc.TextRequest(prompt=["a", "b"], num_outputs=3).total_samples == 6
    req = aigc.ImageRequest(prompt="a cat", seed=[1, 2])
    assert (req.samples_per_prompt, req.total_samples) == (2, 2)
    assert aigc.TextRequest(prompt=["a", "b"], seed=[1, 2, 3, 4]).samples_per_prompt == 2
    with pytest.raises(InvalidRequest, match="seed"):
        aigc.TextRequest(prompt=["a", "b"], seed=[1, 2, 3])


def test_chat_prompts() -> None:
    conv = [{"role": "user", "content": "Hi"}]
    assert aigc.TextRequest(prompt=conv).prompts() == [conv]
    assert len(aigc.TextRequest(prompt=[conv, conv]).prompts()) == 2
    with pytest.raises(InvalidRequest, match="content"):
        aigc.TextRequest(prompt=[{"role": "user", "content": 3}])


def test_other_modalities_validate_too() -> None:
    with pytest.raises(InvalidRequest, match="width"):
        aigc.ImageRequest(prompt="x", width=0)
    with pytest.raises(InvalidRequest, match="strength"):
        aigc.ImageRequest(prompt="x", strength=1.5)
    with pytest.raises(InvalidRequest, match="init_image"):
        aigc.ImageRequest(prompt="x", mask="m.png")
    with pytest.raises(InvalidRequest, match="duration_s"):
        aigc.AudioRequest(prompt="x", duration_s=-1)
    with pytest.raises(InvalidRequest, match="num_frames"):
        aigc.VideoRequest(prompt="x", num_frames=0)
    with pytest.raises(InvalidRequest, match="fps"):
        aigc.VideoRequest(prompt="x", fps=0)


def test_bad_load_arguments_fail_before_any_heavy_import() -> None:
    code = """
import sys, aigc
from aigc.errors import InvalidRequest
for kwargs in ({'device': 'gpu'}, {'dtype': 'int8'}, {'offload': 'disk'}, {'allow_pickle': 'yes'}):
    try:
        aigc.load('text', '.', **kwargs)
    except InvalidRequest as e:
        print(e.field)
try:
    aigc.load('sound', '.')
except InvalidRequest as e:
    print(e.field)
try:
    aigc.generate('text', 'hi', model='/no/such/dir', top_p=3)
except InvalidRequest as e:
    print(e.field)
print('torch' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["device", "dtype", "offload", "allow_pickle", "modality", "top_p", "False"]


def test_unsupported_request_fields_are_rejected_per_backend(gpt2_dir: object) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="steps"):
        gen.generate(aigc.TextRequest(prompt="x"), steps=3)
    with pytest.raises(InvalidRequest, match="TextRequest"):
        gen.generate(aigc.ImageRequest(prompt="x"))


def test_closed_generator_refuses_work(gpt2_dir: object) -> None:
    with aigc.load("text", gpt2_dir, device="cpu", cache=False) as gen:  # type: ignore[arg-type]
        gen.generate("x", max_new_tokens=2, seed=0)
    with pytest.raises(AigcError, match="closed"):
        gen.generate("x", max_new_tokens=2)


def test_constructor_typos_get_the_same_suggestion_as_keywords() -> None:
    with pytest.raises(InvalidRequest, match="did you mean 'temperature'"):
        aigc.TextRequest(prompt="hi", temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(InvalidRequest, match="did you mean 'num_frames'"):
        aigc.VideoRequest(prompt="x", num_frame=3)  # type: ignore[call-arg]


def test_bound_messages_read_well() -> None:
    with pytest.raises(InvalidRequest) as e:
        aigc.TextRequest(prompt="hi", temperature=0.0)
    assert "must be a finite number >= 0.01." in str(e.value)
    with pytest.raises(InvalidRequest) as e:
        aigc.TextRequest(prompt="hi", top_p=2.0)
    assert "must be a finite number in (0, 1]." in str(e.value)


def test_the_name_default_loads_each_embedded_model_without_a_hub_lookup(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = {"text": "transformers", "image": "diffusion", "audio": "mel", "video": "sprites"}
    for modality, backend in expected.items():
        gen = aigc.load(modality, "default")  # type: ignore[call-overload]
        assert gen.info.backend == backend and gen is aigc.load(modality)  # type: ignore[call-overload]
    (tmp_path / "default").mkdir()
    monkeypatch.chdir(tmp_path)  # a local folder of that name is still a folder
    with pytest.raises(aigc.errors.ModelNotFound, match="no audio backend recognises"):
        aigc.load("audio", "default")
