"""Fine-tuning recipes on tiny random models: memorise, reproduce, resume, load the outputs, refuse bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import aigc
from aigc.errors import InvalidRequest
from aigc.train import FinetuneResult, TrainStep, finetune_image, finetune_text, latest_checkpoint
from aigc.train.cli import add_train_parser, run_train
from aigc.train.text import read_text_data

SENTENCE = "The quick brown fox jumps over the lazy dog."
PROMPT, CONTINUATION = "The quick brown", " fox jumps over the lazy dog."
MIXED = [SENTENCE, "Hello world! Hello again, world.", "To be, or not to be.", "床前明月光，疑是地上霜。"] * 3
# Tiny-model settings that memorise SENTENCE (measured over seeds 0-2: LoRA from 40-50 steps, full from 15-20).
LORA: dict[str, Any] = {"steps": 80, "lr": 2e-2, "batch_size": 4, "lora_r": 16, "lora_alpha": 16,
                        "eval_fraction": 0.25, "progress": False}
FULL: dict[str, Any] = {"method": "full", "steps": 30, "lr": 1e-2, "batch_size": 4, "eval_fraction": 0.25,
                        "progress": False}
TOL = 2 / 255


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One thread: faster on a busy 2-core machine, and CPU float sums in one fixed order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def greedy(gen: aigc.Generator[Any, Any]) -> aigc.TextResult:
    return gen.generate(PROMPT, do_sample=False, max_new_tokens=24)  # type: ignore[no-any-return]


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


# -- text ------------------------------------------------------------------------------------------------
def test_lora_memorises_a_sentence_and_merges(gpt2_dir: Path, tmp_path: Path) -> None:
    before = greedy(aigc.load("text", gpt2_dir, device="cpu")).text
    assert not before.startswith(CONTINUATION)
    rng = torch.get_rng_state()
    res = finetune_text(gpt2_dir, [SENTENCE] * 8, out=tmp_path / "lora", merge=True, **LORA)
    assert torch.equal(rng, torch.get_rng_state())  # the caller's global RNG is untouched

    assert (res.steps, len(res.train_losses), res.train_examples, res.eval_examples) == (80, 80, 6, 2)
    assert sorted(res.eval_losses) == [0, 80] and res.eval_losses[80] < res.eval_losses[0] / 10
    tuned = greedy(aigc.load("text", gpt2_dir, device="cpu", adapter=res.output))
    assert tuned.text.startswith(CONTINUATION)
    assert res.merged == tmp_path / "lora" / "merged"
    merged = greedy(aigc.load("text", res.merged, device="cpu"))
    assert merged.token_ids == tuned.token_ids
    assert FinetuneResult.load(res.output).to_dict() == res.to_dict()
    assert not res.checkpoints


def test_full_finetuning_memorises_a_sentence(gpt2_dir: Path, tmp_path: Path) -> None:
    res = finetune_text(gpt2_dir, [SENTENCE] * 8, out=tmp_path / "full", **FULL)
    assert (tmp_path / "full" / "model.safetensors").is_file() and (tmp_path / "full" / "tokenizer.json").is_file()
    assert greedy(aigc.load("text", res.output, device="cpu")).text.startswith(CONTINUATION)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_gives_the_losses_of_an_uninterrupted_run(gpt2_dir: Path, tmp_path: Path, method: str) -> None:
    kw: dict[str, Any] = {"method": method, "steps": 12, "lr": 1e-2, "batch_size": 3, "eval_fraction": 0.25,
                          "checkpoint_every": 6, "progress": False}
    whole = finetune_text(gpt2_dir, MIXED, out=tmp_path / "a", **kw)
    assert [p.name for p in whole.checkpoints] == ["step-000006"]

    class Crash(Exception):
        pass

    def crash(s: TrainStep) -> None:
        if s.step == 8:
            raise Crash

    with pytest.raises(Crash):
        finetune_text(gpt2_dir, MIXED, out=tmp_path / "b", on_step=crash, **kw)
    assert latest_checkpoint(tmp_path / "b") == tmp_path / "b" / "checkpoints" / "step-000006"
    assert not (tmp_path / "b" / "training.json").exists()
    resumed = finetune_text(gpt2_dir, MIXED, out=tmp_path / "b", resume=True, **kw)
    # from a checkpoint of another run, into a new directory
    elsewhere = finetune_text(gpt2_dir, MIXED, out=tmp_path / "c", resume=whole.checkpoints[0], **kw)

    for other in (resumed, elsewhere):
        assert other.resumed_from == 6
        assert other.train_losses == whole.train_losses  # exact float equality
        assert other.eval_losses == whole.eval_losses
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    with pytest.raises(InvalidRequest, match=r"different run \(lr"):
        finetune_text(gpt2_dir, MIXED, out=tmp_path / "d", resume=whole.checkpoints[0], **{**kw, "lr": 2e-2})
    with pytest.raises(InvalidRequest, match="finished"):
        finetune_text(gpt2_dir, MIXED, out=tmp_path / "a", resume=True, **kw)


def test_another_seed_gives_another_run(gpt2_dir: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"steps": 3, "lr": 1e-2, "batch_size": 3, "eval_fraction": 0.0, "progress": False}
    a = finetune_text(gpt2_dir, MIXED, out=tmp_path / "a", seed=1, **kw)
    b = finetune_text(gpt2_dir, MIXED, out=tmp_path / "b", seed=1, **kw)
    c = finetune_text(gpt2_dir, MIXED, out=tmp_path / "c", seed=2, **kw)
    assert a.train_losses == b.train_losses != c.train_losses


def test_data_files_and_loss_masks(gpt2_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from aigc.train.text_data import tokenize_all

    lines = tmp_path / "lines.txt"
    lines.write_text("first line\nsecond line\n\n", encoding="utf-8")
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("a poem\nof two lines\n\n\nanother\n", encoding="utf-8")
    assert [e.text for e in read_text_data(lines)] == ["first line", "second line"]
    assert [e.text for e in read_text_data(blocks)] == ["a poem\nof two lines", "another"]

    jsonl = tmp_path / "d.jsonl"
    rows = [{"prompt": "Q: hi?", "completion": " A: hello."},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    tok = AutoTokenizer.from_pretrained(gpt2_dir)
    tokens = tokenize_all(tok, read_text_data(jsonl), 64)
    ids, labels = tokens.ids[0], tokens.labels[0]
    n_prompt = len(tok("Q: hi?")["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tok.eos_token_id
    scored = [t for t, lab in zip(tokens.ids[1], tokens.labels[1], strict=True) if lab != -100]
    assert tok.decode(scored) == "hello\n"  # the assistant turn as the chat template writes it

    res = finetune_text(gpt2_dir, jsonl, out=tmp_path / "out", steps=2, eval_fraction=0.0, progress=False)
    assert len(res.train_losses) == 2


def _bad_text_cases(tmp_path: Path) -> list[tuple[dict[str, Any], str, str]]:
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n', encoding="utf-8")
    return [
        ({"data": []}, "data", "no examples"),
        ({"data": ["fine", "  "]}, "data", "empty text"),
        ({"data": [{"question": "?"}]}, "data", "none of which"),
        ({"data": bad_jsonl}, "data", "line 2 is not valid JSON"),
        ({"data": tmp_path / "missing.txt"}, "data", "no such file"),
        ({"method": "qlora"}, "method", "unknown method"),
        ({"lr": 0.0}, "lr", "> 0"),
        ({"lr": -1e-3}, "lr", "> 0"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"steps": 5, "epochs": 1}, "epochs", "both"),
        ({"batch_size": 0}, "batch_size", ">= 1"),
        ({"eval_fraction": 0.6}, "eval_fraction", "<= 0.5"),
        ({"eval_fraction": -0.1}, "eval_fraction", ">= 0"),
        ({"lora_r": 0}, "lora_r", ">= 1"),
        ({"max_length": 10_000}, "max_length", "context is 128"),
        ({"method": "full", "merge": True}, "merge", "standalone"),
        ({"target_modules": []}, "target_modules", "non-empty"),
        ({"resume": True, "overwrite": True}, "overwrite", "not both"),
        ({"seed": -1}, "seed", ">= 0"),
    ]


def test_bad_text_input_fails_before_training(gpt2_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for change, field, words in _bad_text_cases(tmp_path):
        kw: dict[str, Any] = {"data": [SENTENCE], "steps": 1, "progress": False, **change}
        with pytest.raises(InvalidRequest, match=words) as info:
            finetune_text(gpt2_dir, kw.pop("data"), out=out, **kw)
        assert info.value.field == field, change
        assert "Fix:" in str(info.value)
        assert not out.exists(), change  # nothing written, nothing trained

    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="not empty") as info:
        finetune_text(gpt2_dir, [SENTENCE], out=out, steps=1)
    assert info.value.field == "out"
    res = finetune_text(gpt2_dir, [SENTENCE], out=out, steps=1, overwrite=True, progress=False)
    assert res.steps == 1 and (out / "notes.txt").is_file()


# -- image -----------------------------------------------------------------------------------------------
def _squares() -> list[tuple[Image.Image, str]]:
    return [(Image.new("RGB", (40, 32), (255, 0, 0)), "a red square"),
            (Image.new("RGB", (32, 40), (0, 0, 255)), "a blue square")]


@pytest.mark.slow
def test_sd_lora_trains_saves_loads_and_combines(sd_dir: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"steps": 4, "lr": 1e-2, "batch_size": 2, "progress": False}
    rng = torch.get_rng_state()
    one = finetune_image(sd_dir, _squares(), out=tmp_path / "one", **kw)
    assert torch.equal(rng, torch.get_rng_state())
    assert len(one.train_losses) == 4 and (tmp_path / "one" / "pytorch_lora_weights.safetensors").is_file()
    again = finetune_image(sd_dir, _squares(), out=tmp_path / "again", **kw)
    assert again.train_losses == one.train_losses
    w1, w2 = (load_file(tmp_path / d / "pytorch_lora_weights.safetensors") for d in ("one", "again"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)

    # a folder of images with captions, and the text encoder too
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (img, caption) in enumerate(_squares()):
        img.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(caption, encoding="utf-8")
    two = finetune_image(sd_dir, folder, out=tmp_path / "two", seed=1, train_text_encoder=True, random_flip=True, **kw)
    keys = load_file(two.output / "pytorch_lora_weights.safetensors").keys()
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)

    def image(**options: Any) -> np.ndarray:
        aigc.cache.clear()
        gen = aigc.load("image", sd_dir, device="cpu", **options)
        return px(gen.generate("a red square", seed=1, steps=2).images[0])

    base, tuned = image(), image(lora=one.output)
    assert np.abs(tuned - base).max() > TOL
    assert np.abs(image(lora=one.output, lora_scale=0.0) - base).max() <= TOL
    both = image(lora=[one.output, two.output], lora_scale=[1.0, 0.5])
    assert np.abs(both - tuned).max() > TOL


def test_sd_lora_resume(sd_dir: Path, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"steps": 4, "lr": 1e-2, "checkpoint_every": 2, "progress": False}
    whole = finetune_image(sd_dir, _squares(), out=tmp_path / "a", **kw)
    resumed = finetune_image(sd_dir, _squares(), out=tmp_path / "b", resume=whole.checkpoints[0], **kw)
    assert resumed.resumed_from == 2 and resumed.train_losses == whole.train_losses


def test_bad_image_input_fails_before_training(sd_dir: Path, tmp_path: Path) -> None:
    no_caption = tmp_path / "no_caption"
    no_caption.mkdir()
    Image.new("RGB", (8, 8)).save(no_caption / "a.png")
    bad_meta = tmp_path / "bad_meta"
    bad_meta.mkdir()
    Image.new("RGB", (8, 8)).save(bad_meta / "a.png")
    (bad_meta / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\nnot json\n', encoding="utf-8")
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"data": []}, "data", "no images"),
        ({"data": [("a.png",)]}, "data", "pair"),
        ({"data": [(tmp_path / "missing.png", "x")]}, "data", "cannot read"),
        ({"data": no_caption}, "data", "no caption file a.txt"),
        ({"data": bad_meta}, "data", "line 2 is not valid JSON"),
        ({"data": tmp_path / "nowhere"}, "data", "no such directory"),
        ({"method": "full"}, "method", "LoRA adapters only"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"lr": 0}, "lr", "> 0"),
        ({"lora_r": 0}, "lora_r", ">= 1"),
        ({"resolution": 30}, "resolution", "multiple of 4"),
    ]
    out = tmp_path / "out"
    for change, field, words in cases:
        kw: dict[str, Any] = {"data": _squares(), "steps": 1, "progress": False, **change}
        with pytest.raises(InvalidRequest, match=words) as info:
            finetune_image(sd_dir, kw.pop("data"), out=out, **kw)
        assert info.value.field == field, change
        assert not out.exists(), change


# -- CLI and namespace -----------------------------------------------------------------------------------
def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aigc")
    add_train_parser(parser.add_subparsers(dest="command"))
    return run_train(parser.parse_args(list(argv)))


def test_cli(gpt2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.txt"
    data.write_text("\n".join(MIXED), encoding="utf-8")
    out = tmp_path / "out"
    assert _cli("train", "finetune-text", str(gpt2_dir), str(data), "-o", str(out), "--steps", "2",
                "--lr", "1e-2", "--no-progress", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 2 and result["output"] == str(out)
    assert _cli("train", "finetune-text", str(gpt2_dir), str(data), "-o", str(out), "--steps", "2") == 1
    assert "aigc: error: out=" in capsys.readouterr().err
    assert _cli("train", "finetune-image", "nowhere", str(tmp_path), "-o", str(tmp_path / "i"), "--lr", "0") == 1
    assert "aigc: error: lr=0.0" in capsys.readouterr().err


def test_namespace_is_all_and_import_is_light() -> None:
    import aigc.train

    public = {n for n, v in vars(aigc.train).items() if not n.startswith("_") and not isinstance(v, ModuleType)}
    assert public - {"annotations", "TYPE_CHECKING", "Any"} <= set(aigc.train.__all__)
    assert sorted(dir(aigc.train)) == sorted(aigc.train.__all__)
    assert all(getattr(aigc.train, n) is not None for n in aigc.train.__all__)
    code = ("import sys, aigc.train; print([m for m in ('torch', 'transformers', 'diffusers', 'peft') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
