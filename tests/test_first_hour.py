"""A new user's first hour: Hugging Face's vocabulary understood, the download keywords passed through, offline
failures at once, quiet libraries, every check before any work, objects the user already has wrapped."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import aigc
from aigc.errors import InvalidRequest, ModelNotFound, PromptWarning
from aigc.testing import tiny_gpt2

# -- Hugging Face's parameter names ---------------------------------------------------------------------


def test_hugging_face_names_are_aliases_recorded_under_aigcs_names() -> None:
    req = aigc.ImageRequest.from_params("a boot", num_inference_steps=12, guidance_scale=4.0, num_images_per_prompt=3)
    assert (req.steps, req.guidance, req.num_outputs) == (12, 4.0, 3)
    assert "num_inference_steps" not in req.to_dict() and req.to_dict()["steps"] == 12
    text = aigc.TextRequest(prompt="Hi", num_return_sequences=2)
    assert text.num_outputs == 2
    assert aigc.AudioRequest.from_params("say one", audio_length_in_s=1.5).duration_s == 1.5
    assert req.replace(num_inference_steps=3).steps == 3


@pytest.mark.parametrize(("name", "value", "hint"), [
    ("generator", object(), "seed="),
    ("max_length", 20, "max_new_tokens="),
    ("latents", None, "seed="),
    ("output_type", "pil", "typed"),
])
def test_hugging_face_names_with_another_meaning_say_what_to_pass(name: str, value: object, hint: str) -> None:
    with pytest.raises(InvalidRequest, match=hint) as info:
        aigc.TextRequest.from_params("Hi", **{name: value})
    assert info.value.field == name


def test_an_alias_and_its_target_together_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="given twice") as info:
        aigc.ImageRequest.from_params("a boot", steps=3, num_inference_steps=4)
    assert info.value.field == "num_inference_steps"


def test_the_embedded_image_model_takes_diffusers_names(tmp_path: Path) -> None:
    res = aigc.generate("image", "an ankle boot", seed=3, num_inference_steps=2, guidance_scale=2.0)
    assert res.record is not None and res.record.request["steps"] == 2 and res.record.request["guidance"] == 2.0
    again = aigc.replay(res.save(tmp_path / "boot.png")[0])
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(res.images[0]))


# -- the download keywords, and offline ------------------------------------------------------------------


def test_download_keywords_reach_from_pretrained_and_stay_out_of_records(tmp_path: Path) -> None:
    import transformers

    src = tiny_gpt2(tmp_path / "plain")
    variant_dir = tmp_path / "variant"
    transformers.AutoModelForCausalLM.from_pretrained(src).save_pretrained(variant_dir, variant="fp16")
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(variant_dir)
    assert (variant_dir / "model.fp16.safetensors").exists() and not (variant_dir / "model.safetensors").exists()
    with pytest.raises(aigc.errors.AigcError, match=r"model\.safetensors"):  # found only when variant= reaches it
        aigc.load("text", variant_dir, cache=False)
    gen = aigc.load("text", variant_dir, variant="fp16", local_files_only=True, token="hf_not_sent_anywhere")
    assert aigc.load("text", variant_dir, variant="fp16", local_files_only=True, token="another") is gen
    res = gen.generate("Hi", seed=1, max_new_tokens=4)
    assert res.record is not None and res.record.options == {"variant": "fp16"}  # no token, no cache settings
    assert "hf_not_sent_anywhere" not in res.record.to_json()
    plain = aigc.load("text", src).generate("Hi", seed=1, max_new_tokens=4)
    assert res.texts == plain.texts
    saved = res.save(tmp_path / "hi.txt")
    assert aigc.replay(saved[0]).texts == res.texts  # the recorded variant is taken back (it names the weights)
    crafted = json.loads(res.record.to_json()) | {"options": {"cache_dir": str(tmp_path / "elsewhere")}}
    (tmp_path / "crafted.json").write_text(json.dumps(crafted))
    with pytest.raises(aigc.errors.ProvenanceError, match="cache_dir"):  # where files come from: never a record's
        aigc.replay(tmp_path / "crafted.json")


def test_download_keywords_are_checked_and_refused_where_they_mean_nothing() -> None:
    with pytest.raises(InvalidRequest, match="True or False") as info:
        aigc.load("text", "gpt2", local_files_only="yes")
    assert info.value.field == "local_files_only"
    with pytest.raises(InvalidRequest, match="aigc's own model files") as info:
        aigc.load("image", None, token="hf_secret")
    assert info.value.field == "token" and "hf_secret" not in str(info.value)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_a_hub_id_neither_cached_nor_reachable_fails_at_once(modality: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ModelNotFound, match="not available offline and not in the local Hugging Face cache") as info:
        aigc.load(modality, "nobody/no-such-model")  # type: ignore[call-overload]
    assert "could not be reached" in str(info.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="downloads are off"):
        aigc.load(modality, "nobody/no-such-model")  # type: ignore[call-overload]


# -- quiet -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_text_load_and_generation_print_only_what_aigc_says(gpt2_dir: Path) -> None:
    code = ("import aigc\n"
            f"gen = aigc.load('text', {str(gpt2_dir)!r})\n"
            "print(gen.generate('Hi', seed=0, max_new_tokens=4).num_tokens)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONWARNINGS": "default"})
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no "Loading weights", no deprecation or attention-mask warnings
    assert out.stdout.strip() == "[4]"


def test_quiet_restores_the_libraries_settings_and_verbosity_lets_them_talk(gpt2_dir: Path) -> None:
    import transformers

    logger = logging.getLogger("transformers")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        aigc.load("text", gpt2_dir, cache=False)
        assert logger.level == logging.INFO  # put back as the user had it
        aigc.set_verbosity("info")
        try:
            from aigc._runtime.quiet import quiet

            with quiet():
                assert logger.level == logging.INFO  # -v: the libraries keep their own settings
        finally:
            aigc.set_verbosity("warning")
        from aigc._runtime.quiet import quiet

        with quiet():
            assert logger.level == logging.ERROR
            assert not transformers.utils.logging.is_progress_bar_enabled()
        assert transformers.utils.logging.is_progress_bar_enabled()
    finally:
        logger.setLevel(before)
    with pytest.raises(InvalidRequest, match="verbosity"):
        aigc.set_verbosity("loud")  # type: ignore[arg-type]


def test_progress_bar_total_comes_from_the_start_event_and_needs_no_widgets() -> None:
    from aigc._runtime.events import EventEmitter, progress_bar_class

    with EventEmitter(None, progress=True, total=None, desc="t") as events:
        events.emit("start", total=7)
        assert events._bar.total == 7
        events.emit("step", step=1, advance=1)
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm

        assert progress_bar_class() is tqdm  # a text bar, not tqdm.auto's TqdmWarning fallback


# -- checks before work ----------------------------------------------------------------------------------


def test_the_embedded_models_limits_are_checked_before_it_loads() -> None:
    aigc.cache.clear()
    with pytest.raises(InvalidRequest, match="names none of") as info:
        aigc.generate("image", "a car")
    assert info.value.field == "prompt"
    with pytest.raises(InvalidRequest, match="steps") as info:
        aigc.generate("image", "a boot", steps=2000)
    assert info.value.field == "steps"
    with pytest.raises(InvalidRequest) as info:
        aigc.generate("image", "a boot", height=33)
    assert info.value.field == "height"  # the side the user set
    assert aigc.cache.entries() == []  # nothing was loaded for any of them


def test_words_the_model_cannot_draw_are_named_in_a_warning() -> None:
    gen = aigc.load("image")
    with pytest.warns(PromptWarning, match="ignored: 'red'"):
        gen.generate("a red sneaker", seed=0, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptWarning)
        gen.generate("a photo of an ankle boot", seed=0, steps=1)


# -- wrapping objects the user already has ---------------------------------------------------------------


def test_wrap_a_transformers_model_gives_the_same_text_as_loading_it(gpt2_dir: Path) -> None:
    import transformers

    lm = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    gen = aigc.wrap(lm, tok)
    assert gen.info.backend == "transformers" and gen.model_id == str(gpt2_dir)
    mine = gen.generate("Hello", seed=4, max_new_tokens=6, num_outputs=2)
    loaded = aigc.load("text", gpt2_dir).generate("Hello", seed=4, max_new_tokens=6, num_outputs=2)
    assert mine.texts == loaded.texts
    with pytest.raises(InvalidRequest, match="tokenizer"):
        aigc.wrap(lm)
    with pytest.raises(InvalidRequest, match="no backend can wrap"):
        aigc.wrap(object())


def test_wrap_a_diffusers_pipeline_gives_the_same_images_as_loading_it(sd_dir: Path) -> None:
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(sd_dir)
    gen = aigc.wrap(pipe)
    assert gen.modality == "image" and gen.info.backend == "diffusers"
    mine = gen.generate("a cat", seed=2, steps=2, width=32, height=32)
    loaded = aigc.load("image", sd_dir).generate("a cat", seed=2, steps=2, width=32, height=32)
    assert np.array_equal(np.asarray(mine.images[0]), np.asarray(loaded.images[0]))
