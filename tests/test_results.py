"""Results: saving with provenance, records, replay, Jupyter display; the contract suite on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import aigc
from aigc.errors import InvalidRequest, ModelNotFound, ProvenanceError
from aigc.testing import FakeImageGenerator, check_generator, registered


def test_text_save_json_and_txt_with_record(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                            tmp_path: Path) -> None:
    res = gpt2.generate("Hello", seed=5, num_outputs=2, max_new_tokens=6)
    paths = res.save(tmp_path / "story.json")
    assert [p.name for p in paths] == ["story-0.json", "story-1.json"]
    doc = json.loads(paths[1].read_text())
    assert doc["text"] == res.texts[1] and doc["seed"] == 6
    assert doc["aigc"]["sample_index"] == 1 and doc["aigc"]["seeds"] == [5, 6]
    one = gpt2.generate("Hello", seed=5, max_new_tokens=6)
    txt = one.save(tmp_path / "one.txt")
    assert [p.name for p in txt] == ["one.txt"] and [p.name for p in txt.sidecars] == ["one.txt.json"]
    assert txt[0].read_text() == one.text
    with pytest.raises(InvalidRequest, match="path"):
        one.save(tmp_path / "x.docx")


def test_record_contents(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult], gpt2_dir: Path) -> None:
    res = gpt2.generate(["a", "b"], seed=1, num_outputs=2, max_new_tokens=3, temperature=0.5)
    rec = res.record
    assert rec is not None
    assert (rec.modality, rec.backend, rec.model) == ("text", "transformers", str(gpt2_dir))
    assert (rec.device, rec.dtype, rec.seeds) == ("cpu", "float32", [1, 2, 3, 4])
    assert rec.request["temperature"] == 0.5 and rec.request["prompt"] == ["a", "b"]
    assert rec.weights and rec.weights.startswith("sha256:")
    assert rec.versions["torch"] and rec.versions["transformers"] and rec.aigc_version == aigc.__version__
    assert rec.duration_s > 0 and rec.created.endswith("+00:00")
    assert aigc.Record.from_json(rec.to_json()) == rec
    # the record of sample 3 rebuilds the request for just that sample
    req = rec.for_sample(3).to_request()
    assert (req.prompt, req.seed, req.num_outputs) == ("b", 4, 1)
    assert gpt2.generate(req).text == res.texts[3]


def test_replay_text_from_saved_files(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                      tmp_path: Path) -> None:
    res = gpt2.generate("Once", seed=9, num_outputs=3, max_new_tokens=8)
    paths = res.save(tmp_path / "s.json")
    again = aigc.replay(paths[2])
    assert isinstance(again, aigc.TextResult)
    assert again.texts == [res.texts[2]] and again.seeds == [11]
    txt = res.save(tmp_path / "s.txt")
    assert aigc.replay(txt[0]).texts == [res.texts[0]]


def test_replay_errors(tmp_path: Path, gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("no record here")
    with pytest.raises(ProvenanceError):
        aigc.replay(plain)
    with pytest.raises(ProvenanceError):
        aigc.Record.from_json('{"format": "something else"}')
    res = gpt2.generate("x", seed=1, max_new_tokens=2)
    path = res.save(tmp_path / "r.json")[0]
    doc = json.loads(path.read_text())
    doc["aigc"]["model"] = str(tmp_path / "moved" / "away")
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelNotFound, match="model="):
        aigc.replay(path)


def test_image_results_save_replay_and_display(tmp_path: Path) -> None:
    with registered(FakeImageGenerator):
        res = aigc.generate("image", "a cat", model="fake-model", backend="fake", seed=3, num_outputs=2,
                            width=16, height=8)
        assert isinstance(res, aigc.ImageResult)
        assert res.image.size == (16, 8)
        paths = res.save(tmp_path / "cat.png")
        assert [p.name for p in paths] == ["cat-0.png", "cat-1.png"]
        with pytest.raises(ProvenanceError, match="model='fake-model'"):  # a name, not a folder: could download
            aigc.replay(paths[1])
        again = aigc.replay(paths[1], model="fake-model")
        assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[1]))
        assert res._repr_png_().startswith(b"\x89PNG")
        html = res._repr_html_()
        assert html.count("<img") == 2 and "seed 4" in html and "a cat" in html


def test_audio_and_video_result_types(tmp_path: Path) -> None:
    wav = np.sin(np.linspace(0, 200, 8000, dtype=np.float32))[None] * 0.5
    audio = aigc.AudioResult(waveforms=[wav], sample_rate=8000, seeds=[1])
    assert audio.durations_s == [1.0] and audio.waveform.shape == (1, 8000)
    path = audio.save(tmp_path / "a.flac")[0]
    assert path.exists() and "<audio" in audio._repr_html_()
    frames = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(4)[:, None, None] * 60
    video = aigc.VideoResult(videos=[frames, frames], fps=4.0, seeds=[1, 2])
    assert video.frames.shape == (4, 16, 16, 3)
    paths = video.save(tmp_path / "v.gif")
    assert [p.name for p in paths] == ["v-0.gif", "v-1.gif"]
    assert "seed 2" in video._repr_html_()


def test_text_result_display(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    res = gpt2.generate("<b>", seed=0, num_outputs=2, max_new_tokens=3)
    html = res._repr_html_()
    assert "seed 0" in html and "seed 1" in html and "<b>" not in html.replace("<b>", "", 0)
    assert str(res).count("\n---\n") == 1


@pytest.mark.parametrize("which", ["gpt2", "llama", "t5"])
def test_contract_suite_on_every_tiny_architecture(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(f"{which}_dir")
    gen = aigc.load("text", path, device="cpu")
    done = check_generator(gen, prompt="Hello", max_new_tokens=6, top_k=20)
    assert done == ["info", "seeds", "global RNG untouched", "same seed", "batch == single", "fresh seed",
                    "errors", "save/load", "device moves"]


def test_contract_suite_on_the_fake_backends() -> None:
    with registered(aigc.testing.FakeTextGenerator, FakeImageGenerator):
        check_generator(aigc.load("text", "m", backend="fake"), prompt="hi", max_new_tokens=5)
        check_generator(aigc.load("image", "m", backend="fake"), prompt="a cat", width=8, height=8)


def test_contract_suite_catches_a_broken_backend() -> None:
    class GlobalRng(aigc.testing.FakeTextGenerator):
        backend_name = "global_rng"

        def _generate(self, request, seeds, events):  # type: ignore[no-untyped-def]
            import torch

            torch.rand(1)  # touches the global RNG: forbidden
            return super()._generate(request, seeds, events)

    with registered(GlobalRng), pytest.raises(AssertionError, match="global RNG"):
        check_generator(aigc.load("text", "m", backend="global_rng"), prompt="hi", max_new_tokens=3)


def test_record_from_file_and_errors_name_the_file(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                   tmp_path: Path) -> None:
    res = gpt2.generate("Hi", seed=2, max_new_tokens=3)
    png = res.save(tmp_path / "t.json")[0]
    assert aigc.Record.from_file(png) == res.record.for_sample(0)  # type: ignore[union-attr]
    stray = tmp_path / "stray.json"
    stray.write_text("{}")
    with pytest.raises(ProvenanceError, match=r"stray\.json"):
        aigc.replay(stray)
    with pytest.raises(ProvenanceError, match=r"missing\.png"):
        aigc.Record.from_file(tmp_path / "missing.png")
