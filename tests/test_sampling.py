"""The seeded sampling core: seeds, noise, logits processors (against transformers'), decode loop, detokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as hf

from aigc import sampling
from aigc.errors import InvalidRequest
from aigc.sampling import DecodeLoop, MinP, RepetitionPenalty, Temperature, TextAssembler, TopK, TopP


def test_resolve_seeds() -> None:
    assert sampling.resolve_seeds(42, 3) == [42, 43, 44]
    assert sampling.resolve_seeds([5, 1], 2) == [5, 1]
    fresh = sampling.resolve_seeds(None, 2)
    assert fresh[1] == fresh[0] + 1 and 0 <= fresh[0] < 2**63
    with pytest.raises(InvalidRequest):
        sampling.resolve_seeds([1], 2)
    with pytest.raises(InvalidRequest):
        sampling.resolve_seeds(2**63 - 1, 2)


def test_fresh_seeds_do_not_use_the_global_rng() -> None:
    torch.manual_seed(0)
    a = sampling.fresh_seed()
    torch.manual_seed(0)
    assert sampling.fresh_seed() != a


def test_noise_is_per_sample_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    batch = sampling.randn((3, 4), [10, 11, 12])
    assert batch.shape == (3, 3, 4)
    for i, s in enumerate([10, 11, 12]):
        assert torch.equal(batch[i], sampling.randn((3, 4), [s])[0])
    half = sampling.randn((3, 4), [11], dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half[0].float(), batch[1], atol=1e-2)
    u = sampling.uniform((5,), [1, 2])
    assert ((u >= 0) & (u < 1)).all()
    assert torch.equal(state, torch.random.get_rng_state())


# -- logits processors: same numbers as transformers' implementations ---------------------------------
SCORES = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
IDS = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("ours", "theirs"), [
    (Temperature(0.7), hf.TemperatureLogitsWarper(0.7)),
    (TopK(5), hf.TopKLogitsWarper(5)),
    (TopK(500), hf.TopKLogitsWarper(500)),
    (TopP(0.9), hf.TopPLogitsWarper(0.9)),
    (TopP(0.3), hf.TopPLogitsWarper(0.3)),
    (MinP(0.1), hf.MinPLogitsWarper(0.1)),
    (RepetitionPenalty(1.3), hf.RepetitionPenaltyLogitsProcessor(1.3)),
])
def test_processors_match_transformers(ours: sampling.LogitsProcessor, theirs: object) -> None:
    expected = theirs(IDS, SCORES.clone())  # type: ignore[operator]
    got = ours(IDS, SCORES.clone())
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    finite = ~torch.isinf(got)
    assert torch.allclose(got[finite], expected[finite])


def test_top_p_keeps_the_top_token_and_the_nucleus() -> None:
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = ~torch.isinf(TopP(0.8)(IDS[:1], scores))
    assert kept.tolist() == [[True, True, False, False]]
    assert (~torch.isinf(TopP(1e-6)(IDS[:1], scores))).sum() == 1


def test_repetition_penalty_ignores_padding() -> None:
    ids = torch.tensor([[-1, -1, 3], [0, 0, 3]])
    scores = torch.ones(2, 5)
    out = RepetitionPenalty(2.0)(ids, scores)
    assert out[0].tolist() == [1, 1, 1, 0.5, 1]  # -1 padding is not token 0
    assert out[1].tolist() == [0.5, 1, 1, 0.5, 1]


@pytest.mark.parametrize(("cls", "bad", "field"), [
    (Temperature, 0, "temperature"), (TopK, 0, "top_k"), (TopP, 1.5, "top_p"), (MinP, 0.0, "min_p"),
    (RepetitionPenalty, -1, "repetition_penalty"),
])
def test_processors_validate_with_a_fix(cls: type, bad: float, field: str) -> None:
    with pytest.raises(InvalidRequest, match="Fix") as e:
        cls(bad)
    assert e.value.field == field


def test_build_processors_order_and_greedy() -> None:
    from aigc import TextRequest

    req = TextRequest(prompt="x", temperature=0.5, top_k=3, top_p=0.9, min_p=0.1, repetition_penalty=1.2)
    assert [type(p).__name__ for p in sampling.build_processors(req)] == [
        "RepetitionPenalty", "Temperature", "TopK", "TopP", "MinP"]
    greedy = req.replace(do_sample=False)
    assert [type(p).__name__ for p in sampling.build_processors(greedy)] == ["RepetitionPenalty"]


# -- the decode loop on a scripted model ---------------------------------------------------------------
class Scripted:
    """A fake model whose next-token logits depend only on how many tokens it has seen."""

    def __init__(self, batch: int, vocab: int = 6) -> None:
        self.batch, self.vocab, self.t = batch, vocab, 0
        self.fed: list[list[int]] = []

    def _logits(self) -> torch.Tensor:
        base = torch.arange(self.vocab, dtype=torch.float32)
        return ((base * (self.t + 1)) % self.vocab).repeat(self.batch, 1)

    def prefill(self) -> torch.Tensor:
        return self._logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.fed.append(tokens.tolist())
        self.t += 1
        return self._logits()


def test_greedy_loop_eos_and_length() -> None:
    model = Scripted(batch=2)
    loop = DecodeLoop(model, context_ids=torch.zeros(2, 1, dtype=torch.long), seeds=None, processors=[],
                      eos_token_ids={3}, max_new_tokens=4, pad_token_id=0)
    steps = list(loop)
    assert len(steps) == 4
    assert loop.tokens[0] == loop.tokens[1]
    assert loop.reasons == ["length", "length"] or loop.reasons == ["stop", "stop"]


def test_finish_and_cancel_between_steps() -> None:
    model = Scripted(batch=3)
    loop = DecodeLoop(model, context_ids=torch.zeros(3, 1, dtype=torch.long), seeds=[1, 2, 3], processors=[],
                      eos_token_ids=set(), max_new_tokens=10, pad_token_id=0)
    for step, chosen in loop:
        if step == 1:
            loop.finish(0, "stop")
        if step == 3:
            assert chosen[0] is None  # finished rows get no new tokens
            loop.cancel()
    assert loop.reasons == ["stop", "cancelled", "cancelled"]
    assert [len(t) for t in loop.tokens] == [2, 4, 4]
    assert model.fed[-1][0] == 0  # a finished row is fed the pad token


def test_sampled_rows_depend_only_on_their_seed() -> None:
    def run(seeds: list[int]) -> list[list[int]]:
        context = torch.zeros(len(seeds), 1, dtype=torch.long)
        loop = DecodeLoop(Scripted(batch=len(seeds), vocab=20), context_ids=context,
                          seeds=seeds, processors=[Temperature(2.0)], eos_token_ids=set(), max_new_tokens=12,
                          pad_token_id=0)
        for _ in loop:
            pass
        return loop.tokens

    batch = run([7, 8, 9])
    assert batch[1] == run([8])[0]
    assert batch[0] != batch[1]


# -- incremental detokenization -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    from aigc.testing import tiny_tokenizer

    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def _decode(tok: object) -> object:
    return lambda ids: tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["床前明月光，疑是地上霜。", "Hello, world! 今天天气真好", "emoji 🙂 too"])
def test_assembler_never_emits_half_a_character(tokenizer: object, text: str) -> None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    asm = TextAssembler(_decode(tokenizer))  # type: ignore[arg-type]
    pieces = [asm.add(t)[0] for t in ids]
    assert any(p == "" for p in pieces)  # some tokens are partial characters and emit nothing yet
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + asm.flush() == text == asm.text


def test_assembler_stop_sequences_and_holdback() -> None:
    asm = TextAssembler(lambda ids: "".join(chr(i) for i in ids), stop=["END", "\n\n"])
    out = [asm.add(ord(c)) for c in "abcEN"]
    assert "".join(p for p, _ in out) == "abc"  # "EN" is held back: it may start "END"
    assert asm.add(ord("X")) == ("ENX", False)  # it did not
    assert asm.add(ord("E"))[0] == ""
    assert asm.add(ord("N"))[0] == ""
    assert asm.add(ord("D")) == ("", True)
    assert asm.text == "abcENX" and asm.stopped
    assert asm.add(ord("z")) == ("", True)


def test_assembler_uses_prompt_context_for_spacing(tokenizer: object) -> None:
    prompt = tokenizer("Hello", add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    cont = tokenizer("Hello world", add_special_tokens=False)["input_ids"][len(prompt):]  # type: ignore[operator]
    asm = TextAssembler(_decode(tokenizer), prefix_ids=prompt)  # type: ignore[arg-type]
    for t in cont:
        asm.add(t)
    assert asm.text == " world"



class _EosFirst:
    """A stepper whose next token is always EOS (id 0) by a wide margin, then token 3."""

    def prefill(self) -> torch.Tensor:
        return torch.tensor([[9.0, 0.0, 0.0, 5.0]])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.prefill().expand(tokens.shape[0], -1)


@pytest.mark.parametrize("seeds", [None, [3]])
def test_min_new_tokens_holds_back_eos(seeds: list[int] | None) -> None:
    from aigc.sampling.decode import DecodeLoop

    def run(min_new: int) -> tuple[list[int], str | None]:
        loop = DecodeLoop(_EosFirst(), context_ids=torch.tensor([[1, 2]]), seeds=seeds, processors=[],
                          eos_token_ids={0}, max_new_tokens=6, pad_token_id=0, min_new_tokens=min_new)
        for _ in loop:
            pass
        return loop.tokens[0], loop.reasons[0]

    assert run(0) == ([0], "stop")
    tokens, reason = run(3)
    assert tokens[:3] != [0, 0, 0] and 0 not in tokens[:3] and tokens[3] == 0 and reason == "stop"
