"""The transformers text backend and the four text contracts of the sampling core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import aigc
from aigc.errors import InvalidRequest, ModelNotFound, UnsafeModelFile

PROMPT = "Once upon a time"
CHINESE = "今天天气真好，我想去公园散步。"


def _hf(path: Path) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase]:
    config = transformers.AutoConfig.from_pretrained(path)
    auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
    return auto.from_pretrained(path).eval(), transformers.AutoTokenizer.from_pretrained(path)


# -- contract (1): greedy decoding equals transformers' own generate(do_sample=False) ---------------
@pytest.mark.parametrize("prompt", [PROMPT, CHINESE])
def test_greedy_matches_transformers_generate(any_model_dir: Path, prompt: str) -> None:
    model, tok = _hf(any_model_dir)
    ids = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, do_sample=False, max_new_tokens=20, min_new_tokens=0)
    start = 0 if model.config.is_encoder_decoder else ids["input_ids"].shape[1]
    expected = out[0, start:].tolist()
    if model.config.is_encoder_decoder:
        expected = expected[1:]  # drop the decoder start token
    eos = model.generation_config.eos_token_id
    if eos in expected:  # transformers pads after EOS
        expected = expected[: expected.index(eos) + 1]

    res = aigc.load("text", any_model_dir, device="cpu").generate(prompt, do_sample=False, max_new_tokens=20)
    assert res.token_ids[0] == expected
    assert res.text == tok.decode(expected, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_greedy_with_left_padded_batch_matches_transformers(gpt2_dir: Path) -> None:
    model, tok = _hf(gpt2_dir)
    prompts = ["Hi", "The quick brown fox jumps"]
    gen = aigc.load("text", gpt2_dir, device="cpu")
    res = gen.generate(prompts, do_sample=False, max_new_tokens=10)
    for i, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        out = model.generate(**ids, do_sample=False, max_new_tokens=10)[0, ids["input_ids"].shape[1]:].tolist()
        assert res.token_ids[i] == out[: len(res.token_ids[i])]
    assert res.prompt_index == [0, 1]


# -- contract (2): the same seed gives the same text, across calls and processes --------------------
def test_same_seed_same_text_across_calls(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    a = gpt2.generate(PROMPT, seed=42, num_outputs=3, max_new_tokens=16)
    b = gpt2.generate(PROMPT, seed=42, num_outputs=3, max_new_tokens=16)
    c = gpt2.generate(PROMPT, seed=43, num_outputs=3, max_new_tokens=16)
    assert a.texts == b.texts
    assert a.texts != c.texts
    assert len(set(a.texts)) == 3  # different seeds, different samples


@pytest.mark.slow
def test_same_seed_same_text_across_processes(gpt2_dir: Path,
                                              gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    code = ("import aigc, json, sys; g = aigc.load('text', sys.argv[1], device='cpu');"
            "print(json.dumps(g.generate('Once upon a time', seed=7, num_outputs=2, max_new_tokens=12).texts))")
    out = subprocess.run([sys.executable, "-c", code, str(gpt2_dir)], capture_output=True, text=True, check=True)
    import json

    assert json.loads(out.stdout.strip().splitlines()[-1]) == gpt2.generate(
        PROMPT, seed=7, num_outputs=2, max_new_tokens=12).texts


# -- contract (3): sample i of seed=s, num_outputs=n equals a single run with seed s+i ---------------
@pytest.mark.parametrize("params", [
    {},
    {"temperature": 0.7, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.3},
    {"min_p": 0.05},
])
def test_batch_sample_equals_single_run(any_model_dir: Path, params: dict[str, float]) -> None:
    gen = aigc.load("text", any_model_dir, device="cpu")
    batch = gen.generate(PROMPT, seed=100, num_outputs=4, max_new_tokens=16, **params)
    assert batch.seeds == [100, 101, 102, 103]
    for i in range(4):
        single = gen.generate(PROMPT, seed=100 + i, max_new_tokens=16, **params)
        assert single.token_ids[0] == batch.token_ids[i]
        assert single.texts[0] == batch.texts[i]


def test_batch_of_prompts_of_different_lengths_equals_single_runs(llama_dir: Path) -> None:
    gen = aigc.load("text", llama_dir, device="cpu")
    prompts = ["Hi", CHINESE, "The quick brown fox jumps over the lazy dog"]
    batch = gen.generate(prompts, seed=5, num_outputs=2, max_new_tokens=12, repetition_penalty=1.2)
    assert batch.prompt_index == [0, 0, 1, 1, 2, 2]
    for k in range(6):
        single = gen.generate(prompts[k // 2], seed=5 + k, max_new_tokens=12, repetition_penalty=1.2)
        assert single.token_ids[0] == batch.token_ids[k]


def test_seed_list_gives_those_seeds(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    res = gpt2.generate(PROMPT, seed=[9, 3], max_new_tokens=8)
    assert res.seeds == [9, 3]
    assert res.texts[1] == gpt2.generate(PROMPT, seed=3, max_new_tokens=8).text


# -- contract (4): concatenated stream pieces equal the non-streamed text ----------------------------
@pytest.mark.parametrize("prompt", [PROMPT, CHINESE])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_pieces_join_to_generated_text(any_model_dir: Path, prompt: str, seed: int) -> None:
    gen = aigc.load("text", any_model_dir, device="cpu")
    pieces = list(gen.stream(prompt, seed=seed, max_new_tokens=24))
    assert "".join(pieces) == gen.generate(prompt, seed=seed, max_new_tokens=24).text
    # a piece never ends inside a character (a random model may still emit invalid bytes mid-text)
    assert all(p and not p.endswith("\ufffd") for p in pieces[:-1])


def test_stream_of_chinese_never_splits_a_character(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                                    gpt2_dir: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    # the tiny byte-level tokenizer splits some Chinese characters into several tokens
    assert any("\ufffd" in tok.decode([t]) for t in tok(CHINESE)["input_ids"])
    pieces = list(gpt2.stream(CHINESE, seed=0, max_new_tokens=40, temperature=0.5))
    assert "".join(pieces) == gpt2.generate(CHINESE, seed=0, max_new_tokens=40, temperature=0.5).text
    for piece in pieces[:-1]:
        assert not piece.endswith("\ufffd")


def test_stream_rejects_several_samples(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    with pytest.raises(InvalidRequest, match="num_outputs"):
        gpt2.stream(PROMPT, num_outputs=2)


# -- stop sequences, EOS, finish reasons, cancellation ------------------------------------------------
def test_stop_sequence_truncates_before_it(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    full = gpt2.generate(PROMPT, seed=3, max_new_tokens=30)
    text = full.text
    stop = text[5:7]  # a string the model is known to produce
    assert stop and stop not in text[:5]
    res = gpt2.generate(PROMPT, seed=3, max_new_tokens=30, stop=[stop])
    assert res.text == text[: text.index(stop)]
    assert res.finish_reasons == ["stop"]
    assert "".join(gpt2.stream(PROMPT, seed=3, max_new_tokens=30, stop=[stop])) == res.text


def test_length_and_eos_finish_reasons(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult],
                                       gpt2_dir: Path) -> None:
    res = gpt2.generate(PROMPT, seed=0, max_new_tokens=5)
    assert res.finish_reasons == ["length"] and res.num_tokens == [5]
    # find a seed whose sample ends on EOS, with a high temperature that makes EOS likely enough
    found = gpt2.generate(PROMPT, seed=0, num_outputs=60, max_new_tokens=40, temperature=3.0)
    stops = [i for i, r in enumerate(found.finish_reasons) if r == "stop"]
    assert stops, "no sample reached EOS"
    i = stops[0]
    assert found.token_ids[i][-1] == 1  # </s>
    assert len(found.token_ids[i]) <= 40  # EOS may be the last token allowed: still "stop"


def test_cancellation_through_event_callback(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    seen: list[aigc.Event] = []

    def cancel_after_three(event: aigc.Event) -> None:
        seen.append(event)
        if event.kind == "step" and event.step == 3:
            event.cancel()

    res = gpt2.generate(PROMPT, seed=1, num_outputs=2, max_new_tokens=20, on_event=cancel_after_three)
    assert res.finish_reasons == ["cancelled", "cancelled"]
    assert res.num_tokens == [3, 3]
    assert seen[0].kind == "start"
    assert {e.kind for e in seen} >= {"start", "token", "step"}
    # the generator is still usable afterwards
    assert gpt2.generate(PROMPT, seed=1, max_new_tokens=4).finish_reasons == ["length"]


def test_token_events_carry_the_text(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    pieces: dict[int, list[str]] = {0: [], 1: []}

    def collect(event: aigc.Event) -> None:
        if event.kind == "token" and event.sample is not None:
            pieces[event.sample].append(event.text or "")

    res = gpt2.generate(CHINESE, seed=4, num_outputs=2, max_new_tokens=12, on_event=collect)
    for i in (0, 1):
        assert res.texts[i].startswith("".join(pieces[i]))


# -- chat, seq2seq ------------------------------------------------------------------------------------
def test_chat_messages_use_the_chat_template(gpt2_dir: Path,
                                             gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    tok = transformers.AutoTokenizer.from_pretrained(gpt2_dir)
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|assistant|>")
    chat = gpt2.generate(messages, seed=2, max_new_tokens=10)
    plain = gpt2.generate(rendered, seed=2, max_new_tokens=10)
    assert chat.token_ids == plain.token_ids
    two = gpt2.generate([messages, messages[1:]], seed=2, max_new_tokens=10)
    assert two.token_ids[0] == chat.token_ids[0] and two.prompt_index == [0, 1]


def test_chat_without_template_is_a_clear_error(t5_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "t5"
    shutil.copytree(t5_dir, copy)
    (copy / "chat_template.jinja").unlink()
    gen = aigc.load("text", copy, device="cpu")
    with pytest.raises(InvalidRequest, match="chat template"):
        gen.generate([{"role": "user", "content": "Hi"}])


def test_seq2seq_batch_and_info(t5_dir: Path) -> None:
    gen = aigc.load("text", t5_dir, device="cpu")
    res = gen.generate(["translate: hello", "summarize: the quick brown fox"], seed=1, max_new_tokens=8)
    assert len(res.texts) == 2
    info = gen.info
    assert (info.backend, info.modality, info.device, info.dtype) == ("transformers", "text", "cpu", "float32")
    assert info.parameters == sum(p.numel() for p in gen.lm.parameters())  # type: ignore[attr-defined]
    assert info.weights is not None and info.weights.startswith("sha256:")


# -- loading: safety and errors -----------------------------------------------------------------------
def test_pickle_only_directory_is_refused(gpt2_dir: Path, tmp_path: Path) -> None:
    model, tok = _hf(gpt2_dir)
    model.save_pretrained(tmp_path, safe_serialization=False) if "safe_serialization" in \
        model.save_pretrained.__code__.co_varnames else None
    if not list(tmp_path.glob("*.bin")):  # transformers 5 always writes safetensors: make a pickle copy
        import shutil

        for f in gpt2_dir.iterdir():
            if f.suffix != ".safetensors":
                shutil.copy(f, tmp_path / f.name)
        torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    tok.save_pretrained(tmp_path)
    for f in tmp_path.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(UnsafeModelFile, match="allow_pickle=True"):
        aigc.load("text", tmp_path, device="cpu")


def test_missing_model_path_is_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match="no such directory"):
        aigc.load("text", str(tmp_path / "nope" / "model"))


def test_prompt_too_long_for_the_context(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    with pytest.raises(InvalidRequest, match="max_new_tokens") as e:
        gpt2.generate(PROMPT, max_new_tokens=500)
    assert "context is 128" in str(e.value)


def test_unsupported_offload_and_unknown_option(gpt2_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="offload"):
        aigc.load("text", gpt2_dir, device="cpu", offload="model")
    with pytest.raises(InvalidRequest, match="max_batch_size"):
        aigc.load("text", gpt2_dir, device="cpu", max_bacth_size=4)


def test_max_batch_size_chunks_give_the_same_samples(gpt2_dir: Path) -> None:
    small = aigc.load("text", gpt2_dir, device="cpu", max_batch_size=2)
    big = aigc.load("text", gpt2_dir, device="cpu")
    assert small is not big
    a = small.generate(PROMPT, seed=11, num_outputs=5, max_new_tokens=10)
    b = big.generate(PROMPT, seed=11, num_outputs=5, max_new_tokens=10)
    assert a.token_ids == b.token_ids


def test_global_rng_untouched(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    state = torch.random.get_rng_state()
    gpt2.generate(PROMPT, num_outputs=3, max_new_tokens=8)
    gpt2.generate(PROMPT, seed=1, max_new_tokens=8)
    list(gpt2.stream(PROMPT, seed=1, max_new_tokens=8))
    assert torch.equal(state, torch.random.get_rng_state())


def test_fresh_seed_is_recorded_and_reproduces(gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult]) -> None:
    a = gpt2.generate(PROMPT, max_new_tokens=10)
    b = gpt2.generate(PROMPT, max_new_tokens=10)
    assert a.seeds != b.seeds
    assert a.record is not None and a.record.seeds == a.seeds
    assert gpt2.generate(PROMPT, seed=a.seeds[0], max_new_tokens=10).text == a.text


def test_generation_config_settings_fill_in_keywords_left_out(tmp_path: Path) -> None:
    import json as _json

    from aigc.testing import tiny_gpt2

    path = tiny_gpt2(tmp_path / "m")
    cfg_file = path / "generation_config.json"
    cfg = _json.loads(cfg_file.read_text())
    cfg.update({"temperature": 0.5, "top_k": 7, "min_new_tokens": 2})
    cfg_file.write_text(_json.dumps(cfg))
    gen = aigc.load("text", path)
    assert gen.request_defaults == {"temperature": 0.5, "top_k": 7, "min_new_tokens": 2}
    rec = gen.generate("Hello", max_new_tokens=4, seed=0).record.request
    assert (rec["temperature"], rec["top_k"], rec["min_new_tokens"]) == (0.5, 7, 2)
    rec = gen.generate("Hello", max_new_tokens=4, seed=0, temperature=1.0).record.request
    assert (rec["temperature"], rec["top_k"]) == (1.0, 7)  # a keyword given wins
    typed = aigc.TextRequest(prompt="Hello", max_new_tokens=4, seed=0)
    assert gen.generate(typed).record.request["temperature"] == 1.0  # a typed request is taken as it is
    assert gen.generate("Hello", max_new_tokens=1).record.request["min_new_tokens"] == 2  # no error: EOS held back
    with pytest.raises(aigc.errors.InvalidRequest, match="min_new_tokens"):
        gen.generate("Hello", max_new_tokens=4, min_new_tokens=-1)


# -- the static-cache decode path (compile=...) ----------------------------------------------------------
class _CountingBackend:
    """A torch.compile backend that runs the traced graph eagerly and counts compilations."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        self.graphs += 1
        return gm.forward


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_compiled_static_cache_path_equals_transformers_and_the_eager_path(name: str,
                                                                         request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(f"{name}_dir")
    model, tok = _hf(model_dir)
    prompts = ["Hi", "The quick brown fox jumps", CHINESE]
    compiled = aigc.load("text", model_dir, device="cpu", compile="eager", cache=False)
    eager = aigc.load("text", model_dir, device="cpu", compile=False, cache=False)
    greedy = compiled.generate(prompts, do_sample=False, max_new_tokens=12)
    for i, p in enumerate(prompts):
        ids = tok(p, return_tensors="pt")
        out = model.generate(**ids, do_sample=False, max_new_tokens=12)[0, ids["input_ids"].shape[1]:].tolist()
        assert greedy.token_ids[i] == out[: len(greedy.token_ids[i])]
    kwargs = {"seed": 7, "num_outputs": 3, "max_new_tokens": 12, "top_k": 20, "repetition_penalty": 1.2}
    assert compiled.generate(prompts, **kwargs).texts == eager.generate(prompts, **kwargs).texts
    assert "compile" not in compiled.generate("x", max_new_tokens=1).record.options  # type: ignore[union-attr]


@pytest.mark.slow
def test_compiled_path_does_not_recompile_for_each_batch_size_and_prompt_length(gpt2_dir: Path) -> None:
    backend = _CountingBackend()
    gen = aigc.load("text", gpt2_dir, device="cpu", compile=backend, cache=False)
    gen.generate("Hi", max_new_tokens=4, seed=0)
    after_first = backend.graphs
    for prompts, n in [(["Hi there"], 6), (["a", "bb", "ccc"], 5), (["x"] * 5, 3), (["Once upon a time"] * 2, 8),
                       (["Hi"] * 7, 4)]:
        gen.generate(prompts, max_new_tokens=n, seed=1)
    assert after_first >= 1
    assert backend.graphs - after_first <= 2, f"{backend.graphs - after_first} recompilations for 5 new shapes"


def test_compile_option_is_checked_before_loading(gpt2_dir: Path) -> None:
    with pytest.raises(InvalidRequest, match="compile"):
        aigc.load("text", gpt2_dir, device="cpu", compile="fastest")


# -- sampler versions: records name theirs, and old records replay the old way -----------------------------
def test_records_name_the_sampler_and_version_1_records_replay_as_made(
        gpt2: aigc.Generator[aigc.TextRequest, aigc.TextResult], tmp_path: Path) -> None:
    from aigc.sampling import use_sampler_version

    res = gpt2.generate(PROMPT, seed=5, max_new_tokens=12, top_k=10)
    assert res.record is not None and res.record.sampler == 2
    with use_sampler_version(1):
        old = gpt2.generate(PROMPT, seed=5, max_new_tokens=12, top_k=10)
    assert old.texts != res.texts  # the two samplers draw differently...
    path = old.save(tmp_path / "old.json")[0]
    doc = __import__("json").loads(path.read_text())
    del doc["aigc"]["sampler"]  # ...and a record from before the field existed is a version-1 record
    path.write_text(__import__("json").dumps(doc))
    assert aigc.replay(path).texts == old.texts
    assert aigc.replay(res.save(tmp_path / "new.json")[0]).texts == res.texts
