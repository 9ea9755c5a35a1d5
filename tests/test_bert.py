"""The BERT family in the transformers text backend: masked-LM filling and BERT2BERT encoder-decoder generation.

Tiny random models (hidden size 32, 2 layers, a WordPiece tokenizer over the characters of a few Chinese and
English sentences) built by ``aigc.testing`` and loaded through the real ``aigc.load`` path; the references are
transformers' own ``fill-mask`` pipeline and ``EncoderDecoderModel.generate``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

import aigc
from aigc.errors import GenerationCancelled, InvalidRequest, UnsafeModelFile
from aigc.sampling import draws
from aigc.testing import check_generator, tiny_bert, tiny_bert2bert, tiny_wordpiece_tokenizer

PROMPT = "今天天气真[MASK]。"
PROMPTS = [PROMPT, "the quick brown [MASK] jumps over the lazy dog.", "[MASK]前明月光，疑是地上霜。"]
TWO_MASKS = "今天[MASK]气真[MASK]。"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("models") / "bert")


@pytest.fixture(scope="module")
def b2b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert2bert(tmp_path_factory.mktemp("models") / "bert2bert")


@pytest.fixture
def bert(bert_dir: Path) -> aigc.Generator[aigc.TextRequest, aigc.TextResult]:
    return aigc.load("text", bert_dir, device="cpu")


@pytest.fixture(scope="module")
def pipe(bert_dir: Path) -> transformers.Pipeline:
    return transformers.pipeline("fill-mask", model=str(bert_dir), tokenizer=str(bert_dir), device="cpu")


def _piece(pipe: transformers.Pipeline, token: int) -> str:
    """A fill as written into the prompt: the pipeline's token_str without WordPiece's ##."""
    text = str(pipe.tokenizer.decode([token]))
    return text[2:] if text.startswith("##") and len(text) > 2 else text


# -- what loads as what ---------------------------------------------------------------------------
def test_models_load_as_their_kind(bert_dir: Path, b2b_dir: Path) -> None:
    from aigc._backends.text_transformers import model_kind

    assert model_kind({"model_type": "bert", "architectures": ["BertForMaskedLM"]}) == "masked"
    assert model_kind({"model_type": "bert"}) == "masked"
    assert model_kind({"model_type": "bert", "is_decoder": True}) == "causal"  # BertLMHeadModel
    assert model_kind({"model_type": "bert", "architectures": ["BertLMHeadModel"]}) == "causal"
    assert model_kind({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}) == "masked"
    assert model_kind({"model_type": "encoder-decoder", "architectures": ["EncoderDecoderModel"],
                       "is_encoder_decoder": True}) == "seq2seq"
    assert model_kind({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}) == "causal"
    assert model_kind({"model_type": "musicgen"}) is None

    masked = aigc.load("text", bert_dir, device="cpu")
    assert type(masked.model).__name__ == "BertForMaskedLM"
    assert masked.info.backend == "transformers"
    b2b = aigc.load("text", b2b_dir, device="cpu")
    assert type(b2b.model).__name__ == "EncoderDecoderModel"


# -- top-k fills: transformers' fill-mask pipeline ------------------------------------------------------
def test_fills_equal_the_fill_mask_pipeline(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                            pipe: transformers.Pipeline) -> None:
    res = bert.generate(PROMPTS, num_fills=7)  # one batch of three prompts, padded
    assert res.prompt_index == [0, 1, 2]
    for i, prompt in enumerate(PROMPTS):
        expected = pipe(prompt, top_k=7)
        fills = res.fills[i]
        assert [f.token_id for f in fills] == [e["token"] for e in expected]
        assert [f.token for f in fills] == [e["token_str"] for e in expected]
        assert [f.score for f in fills] == pytest.approx([e["score"] for e in expected], abs=1e-6)
        assert [f.text for f in fills] == [prompt.replace("[MASK]", _piece(pipe, e["token"])) for e in expected]
        assert res.texts[i] == fills[0].text
        assert res.token_ids[i] == [fills[0].token_id]
        assert res.scores[i] == fills[0].score


def test_a_keyword_call_lists_five_fills_without_sampling(bert_dir: Path, pipe: transformers.Pipeline) -> None:
    res = aigc.generate("text", PROMPT, model=bert_dir, device="cpu", seed=3, num_outputs=2)
    assert [[f.token_id for f in fills] for fills in res.fills] == [[e["token"] for e in pipe(PROMPT)]] * 2
    assert res.texts[0] == res.texts[1] and res.finish_reasons == ["stop", "stop"]
    assert res.record is not None and res.record.request["do_sample"] is False
    assert res.record.watermarks == []


def test_the_tokenizers_own_mask_token_works_too(bert_dir: Path, tmp_path: Path) -> None:
    """A tokenizer whose mask is RoBERTa's ``<mask>``: both spellings fill the same way."""
    own = tmp_path / "bert-own-mask"
    shutil.copytree(bert_dir, own)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (own / name).unlink()
    tiny_wordpiece_tokenizer(own, mask_token="<mask>")
    gen = aigc.load("text", own, device="cpu")
    a, b = gen.generate(PROMPT), gen.generate(PROMPT.replace("[MASK]", "<mask>"))
    assert [f.token_id for f in a.fills[0]] == [f.token_id for f in b.fills[0]]
    assert a.fills[0][0].text == b.fills[0][0].text.replace("<mask>", "[MASK]")  # each keeps its own prompt text
    reference = aigc.load("text", bert_dir, device="cpu").generate(PROMPT)  # same weights, same ids
    assert [f.token_id for f in a.fills[0]] == [f.token_id for f in reference.fills[0]]


# -- several masks: one at a time, left to right -------------------------------------------------------
def _left_to_right(bert_dir: Path, prompt: str, choose: list[int] | None = None) -> tuple[list[int], float]:
    """Fill the masks of ``prompt`` with transformers directly: the argmax (or the tokens in ``choose``) at the
    leftmost open mask, again and again; the tokens and the product of their probabilities."""
    model = transformers.AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    tokens, score = [], 1.0
    with torch.inference_mode():
        while (ids == tok.mask_token_id).any():
            pos = int((ids[0] == tok.mask_token_id).nonzero()[0, 0])
            probs = model(input_ids=ids).logits[0, pos].softmax(-1)
            token = int(probs.argmax()) if choose is None else choose[len(tokens)]
            ids[0, pos] = token
            tokens.append(token)
            score *= float(probs[token])
    return tokens, score


def test_several_masks_fill_greedily_left_to_right(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                  bert_dir: Path) -> None:
    tokens, score = _left_to_right(bert_dir, TWO_MASKS)
    res = bert.generate([TWO_MASKS, PROMPT])
    assert res.token_ids[0] == tokens and res.scores[0] == pytest.approx(score, rel=1e-5)
    assert res.fills == [[], res.fills[1]] and len(res.fills[1]) == 5  # fills only where there is one mask
    pieces = [bert.tokenizer.decode([t]).removeprefix("##") for t in tokens]  # type: ignore[attr-defined]
    assert res.texts[0] == f"今天{pieces[0]}气真{pieces[1]}。"


def test_seeded_sampling_is_reproducible_and_batch_invariant(
        bert: aigc.Generator[aigc.TextRequest, aigc.TextResult], bert_dir: Path) -> None:
    batch = bert.generate(TWO_MASKS, do_sample=True, seed=11, num_outputs=6)
    assert batch.seeds == list(range(11, 17))
    assert bert.generate(TWO_MASKS, do_sample=True, seed=11, num_outputs=6).texts == batch.texts
    assert len(set(batch.texts)) >= 3  # different seeds, different fills
    for i in (0, 4):
        alone = bert.generate(TWO_MASKS, do_sample=True, seed=11 + i)
        assert (alone.texts[0], alone.token_ids[0]) == (batch.texts[i], batch.token_ids[i])
    three = "[MASK] quick brown [MASK] jumps over the [MASK] dog."
    mixed = bert.generate([three, TWO_MASKS, PROMPT], do_sample=True, seed=[5, 13, 6])  # 3, 2 and 1 masks, padded
    assert mixed.token_ids[1] == batch.token_ids[2]
    assert [len(t) for t in mixed.token_ids] == [3, 2, 1]
    assert mixed.token_ids[0] == bert.generate(three, do_sample=True, seed=5).token_ids[0]
    assert mixed.token_ids[2] == bert.generate(PROMPT, do_sample=True, seed=6).token_ids[0]
    det = bert.generate(TWO_MASKS, do_sample=True, seed=11, num_outputs=6, deterministic=True)
    assert det.token_ids == batch.token_ids
    # each score is the model's probability of that fill, whatever drew it
    for i in (1, 3):
        assert batch.scores[i] == pytest.approx(_left_to_right(bert_dir, TWO_MASKS, batch.token_ids[i])[1], rel=1e-5)


def test_sampling_draws_come_from_the_sampling_core(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                    bert_dir: Path) -> None:
    """The first fill of seed s is the inverse CDF of the mask's distribution at u = draw(s, "tokens", 0)."""
    model = transformers.AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        probs = model(input_ids=ids).logits[0, int((ids[0] == tok.mask_token_id).nonzero()[0, 0])].double().softmax(-1)
    cdf = probs.cumsum(0)
    res = bert.generate(PROMPT, do_sample=True, seed=list(range(20, 28)))
    for seed, tokens in zip(res.seeds, res.token_ids, strict=True):
        u = draws.reference_uniform(seed, "tokens", 0)
        assert tokens == [int(torch.searchsorted(cdf, torch.tensor([u * float(cdf[-1])], dtype=torch.float64),
                                                 right=True)[0])]
    assert res.fills == []  # sampling lists no fills


def test_masked_sampling_passes_the_contract_suite(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    done = check_generator(bert, prompt=TWO_MASKS, do_sample=True, temperature=0.9, top_k=20)
    assert "batch == single" in done and "save/load" in done


# -- typed errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "field", "says"), [
    ({"prompt": "今天天气真好。"}, "prompt", "[MASK]"),
    ({"prompt": ["今天天气真[MASK]。", "no mask here"]}, "prompt[1]", "[MASK]"),
    ({"prompt": [{"role": "user", "content": "Hi [MASK]"}]}, "prompt", "plain text"),
    ({"stop": ["。"]}, "stop", "no continuation"),
    ({"max_new_tokens": 5}, "max_new_tokens", "adds no tokens"),
    ({"repetition_penalty": 1.2}, "repetition_penalty", "in place"),
    ({"watermark": True, "do_sample": True}, "watermark", "watermark"),
    ({"num_fills": 3, "do_sample": True}, "num_fills", "do_sample=False"),
    ({"prompt": TWO_MASKS, "num_fills": 3}, "num_fills", "prompts have 2"),
    ({"num_fills": 200}, "num_fills", "num_fills <= "),  # the vocabulary has 159 tokens
    ({"top_k": 3}, "top_k", "num_fills=3"),
])
def test_masked_lm_errors_name_the_field_and_the_fix(
        bert: aigc.Generator[aigc.TextRequest, aigc.TextResult], params: dict[str, object], field: str,
        says: str) -> None:
    params = {"prompt": PROMPT, **params}
    with pytest.raises(InvalidRequest) as e:
        bert.generate(params.pop("prompt"), **params)
    assert e.value.field == field
    assert says in str(e.value) and "Fix:" in str(e.value)


def test_no_mask_is_refused_before_the_weights_load(bert_dir: Path, tmp_path: Path) -> None:
    """``aigc.generate`` checks the prompt against the folder's config and tokenizer files: without the weights,
    the missing mask is still the error (the weights are never read)."""
    light = tmp_path / "no-weights"
    shutil.copytree(bert_dir, light)
    (light / "model.safetensors").unlink()
    with pytest.raises(InvalidRequest, match=r"has no mask token.*Fix: write \[MASK\]"):
        aigc.generate("text", "今天天气真好。", model=light, device="cpu")


def test_streaming_a_masked_lm_is_a_typed_error(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    with pytest.raises(InvalidRequest, match="no continuation to stream") as e:
        list(bert.stream(PROMPT))
    assert e.value.field == "stream"
    assert bert.continuous_batcher() is None  # type: ignore[attr-defined]  # served one request at a time


def test_progress_events_and_cancellation(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    seen: list[tuple[str, int, int | None]] = []
    bert.generate(TWO_MASKS, do_sample=True, seed=1, on_event=lambda e: seen.append((e.kind, e.step, e.total)))
    assert seen == [("start", 0, 2), ("step", 1, 2), ("step", 2, 2), ("end", 2, 2)]  # one step per mask

    def cancel(event: aigc.Event) -> None:
        if event.kind == "step":
            event.cancel()

    with pytest.raises(GenerationCancelled, match="after 1 of 2 fill steps"):
        bert.generate(TWO_MASKS, do_sample=True, seed=1, on_event=cancel)
    assert bert.generate(PROMPT).texts  # still usable


def test_causal_models_refuse_num_fills(gpt2_dir: Path) -> None:
    with pytest.raises(InvalidRequest) as e:
        aigc.load("text", gpt2_dir, device="cpu").generate("Hi", num_fills=3, max_new_tokens=2)
    assert e.value.field == "num_fills"


@pytest.mark.parametrize("which", ["bert", "bert2bert"])
def test_pickle_only_weights_are_refused(which: str, bert_dir: Path, b2b_dir: Path, tmp_path: Path) -> None:
    source = bert_dir if which == "bert" else b2b_dir
    folder = tmp_path / which
    shutil.copytree(source, folder)
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(UnsafeModelFile, match="allow_pickle=True"):
        aigc.load("text", folder, device="cpu")


# -- records, saving and replay -----------------------------------------------------------------------
def test_masked_results_save_and_replay(bert: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                        tmp_path: Path) -> None:
    listed = bert.generate(PROMPT, num_fills=3)
    sampled = bert.generate(TWO_MASKS, do_sample=True, seed=4, num_outputs=2)
    [path] = listed.save(tmp_path / "fills.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["score"] == listed.scores[0]
    assert [f["token_id"] for f in doc["fills"]] == [f.token_id for f in listed.fills[0]]
    again = aigc.replay(path)
    assert isinstance(again, aigc.TextResult)
    assert again.fills == listed.fills and again.texts == listed.texts
    paths = sampled.save(tmp_path / "sampled.txt")
    assert aigc.replay(paths[1]).texts == [sampled.texts[1]]  # type: ignore[attr-defined]


def test_wrapping_a_masked_lm_object(bert_dir: Path, pipe: transformers.Pipeline) -> None:
    model = transformers.AutoModelForMaskedLM.from_pretrained(bert_dir)
    gen = aigc.wrap(model, transformers.AutoTokenizer.from_pretrained(bert_dir))
    res = gen.generate(PROMPT)
    assert [f.token_id for f in res.fills[0]] == [e["token"] for e in pipe(PROMPT)]  # type: ignore[attr-defined]


# -- BERT2BERT -------------------------------------------------------------------------------------
def test_bert2bert_greedy_equals_encoder_decoder_generate(b2b_dir: Path) -> None:
    model = transformers.EncoderDecoderModel.from_pretrained(b2b_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(b2b_dir)
    prompts = ["今天天气真好，我想去公园散步。", "hello world, how are you today?"]
    gen = aigc.load("text", b2b_dir, device="cpu")
    res = gen.generate(prompts, do_sample=False, max_new_tokens=12)
    batch = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=12)
    for i in range(len(prompts)):
        expected = out[i, 1:].tolist()  # without the decoder start token ([CLS])
        if tok.sep_token_id in expected:  # transformers pads after the end-of-sequence token
            expected = expected[: expected.index(tok.sep_token_id) + 1]
        assert res.token_ids[i] == expected
        assert res.texts[i] == tok.decode(expected, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert len(set(res.token_ids[0])) > 3 and res.token_ids[0] != res.token_ids[1]  # a model worth comparing


def test_bert2bert_passes_the_contract_suite_and_replays(b2b_dir: Path, tmp_path: Path) -> None:
    gen = aigc.load("text", b2b_dir, device="cpu")
    check_generator(gen, prompt="今天天气真好", max_new_tokens=8)
    res = gen.generate("今天天气真好", seed=9, num_outputs=2, max_new_tokens=8)
    paths = res.save(tmp_path / "b2b.txt")
    assert aigc.replay(paths[1]).texts == [res.texts[1]]  # type: ignore[attr-defined]


def test_bert2bert_ids_follow_the_convention_where_the_config_names_none(b2b_dir: Path, tmp_path: Path) -> None:
    """An EncoderDecoderModel saved without its start/end ids starts at [CLS] and ends at [SEP]; the decoder's
    position table bounds max_new_tokens, with a typed error."""
    bare = tmp_path / "bare"
    shutil.copytree(b2b_dir, bare)
    (bare / "generation_config.json").unlink()
    config = json.loads((bare / "config.json").read_text(encoding="utf-8"))
    for key in ("decoder_start_token_id", "eos_token_id"):
        config.pop(key, None)
    (bare / "config.json").write_text(json.dumps(config), encoding="utf-8")
    gen = aigc.load("text", bare, device="cpu")
    tok = gen.tokenizer  # type: ignore[attr-defined]
    assert (gen.start_id, gen.eos_ids) == (tok.cls_token_id, {tok.sep_token_id})  # type: ignore[attr-defined]
    reference = aigc.load("text", b2b_dir, device="cpu").generate("今天天气真好", do_sample=False, max_new_tokens=6)
    assert gen.generate("今天天气真好", do_sample=False, max_new_tokens=6).token_ids == reference.token_ids
    with pytest.raises(InvalidRequest, match="max_new_tokens <= 64") as e:
        gen.generate("今天天气真好", max_new_tokens=65)
    assert e.value.field == "max_new_tokens"


def test_the_command_line_lists_the_fills(bert_dir: Path, pipe: transformers.Pipeline,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from aigc._cli import main

    assert main(["generate", "text", PROMPT, "--model", str(bert_dir), "--device", "cpu", "--num-fills", "3"]) == 0
    expected = pipe(PROMPT, top_k=3)
    assert capsys.readouterr().out.splitlines() == [
        f"{e['score']:.4f}\t{PROMPT.replace('[MASK]', _piece(pipe, e['token']))}" for e in expected]


@pytest.mark.slow
def test_the_example_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "examples" / "bert_fill_mask.py"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sample 2 alone gives the same fill: True" in done.stdout and "replayed: True" in done.stdout
    assert done.stdout.count("今天天气真") == 5 + 4
