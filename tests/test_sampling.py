"""The seeded sampling core: seeds, noise, logits processors (against transformers'), decode loop, detokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers.generation import logits_process as hf

import aigc
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


def _loop(stepper: object, context: torch.Tensor, seeds: list[int] | None, *, eos: set[int],
          max_new_tokens: int, sync_every: int = 1, **params: object) -> DecodeLoop:
    rows = len(context)
    sampler = sampling.TokenSampler([sampling.SamplingParams(do_sample=seeds is not None, **params)] * rows,  # type: ignore[arg-type]
                                    seeds, eos_token_ids=eos)
    return DecodeLoop(stepper, sampler=sampler, context_ids=context, eos_token_ids=eos,  # type: ignore[arg-type]
                      max_new_tokens=max_new_tokens, pad_token_id=0, sync_every=sync_every)


def test_greedy_loop_eos_and_length() -> None:
    model = Scripted(batch=2)
    loop = _loop(model, torch.zeros(2, 1, dtype=torch.long), None, eos={3}, max_new_tokens=4)
    steps = list(loop)
    assert len(steps) == 4
    assert loop.tokens[0] == loop.tokens[1]
    assert loop.reasons == ["length", "length"] or loop.reasons == ["stop", "stop"]


def test_finish_and_cancel_between_steps() -> None:
    model = Scripted(batch=3)
    loop = _loop(model, torch.zeros(3, 1, dtype=torch.long), [1, 2, 3], eos=set(), max_new_tokens=10)
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
        loop = _loop(Scripted(batch=len(seeds), vocab=20), context, seeds, eos=set(), max_new_tokens=12,
                     temperature=2.0)
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
    def run(min_new: int) -> tuple[list[int], str | None]:
        loop = _loop(_EosFirst(), torch.tensor([[1, 2]]), seeds, eos={0}, max_new_tokens=6, min_new_tokens=min_new)
        for _ in loop:
            pass
        return loop.tokens[0], loop.reasons[0]

    assert run(0) == ([0], "stop")
    tokens, reason = run(3)
    assert tokens[:3] != [0, 0, 0] and 0 not in tokens[:3] and tokens[3] == 0 and reason == "stop"


# -- counter-based draws --------------------------------------------------------------------------------
@pytest.mark.parametrize("purpose", ["tokens", "step-noise"])
def test_draws_equal_the_python_reference_bit_for_bit(purpose: str) -> None:
    from aigc.sampling import draws

    seeds = [0, 1, 42, 2**31 - 1, 2**62 + 12345, 2**63 - 1]
    positions = torch.tensor([0, 1, 7, 1000, 2**40, 123456789])
    keys = draws.stream_keys(seeds, purpose)
    bits = draws._bits(keys, positions, (2, 3))  # (B, 2, 3)
    for b, (seed, pos) in enumerate(zip(seeds, positions.tolist(), strict=True)):
        for i in range(6):
            assert int(bits[b].flatten()[i]) & (2**64 - 1) == draws.reference_bits(seed, purpose, pos, i)
    u = draws.uniform(keys, positions, (6,))
    assert u.dtype == torch.float64
    assert u[2, 4].item() == draws.reference_uniform(42, purpose, 7, 4)
    assert ((u >= 0) & (u < 1)).all()


def test_draws_are_independent_of_the_batch_and_of_other_purposes() -> None:
    from aigc.sampling import draws

    batch = draws.uniform(draws.stream_keys([5, 6, 7], "tokens"), torch.tensor([3, 3, 3]), (4,))
    alone = draws.uniform(draws.stream_keys([6], "tokens"), torch.tensor([3]), (4,))
    assert torch.equal(batch[1], alone[0])
    other = draws.uniform(draws.stream_keys([6], "step-noise"), torch.tensor([3]), (4,))
    assert not torch.equal(other, alone)
    assert draws.stream_seed(6, "tokens") != draws.stream_seed(6, "step-noise") != 6


def test_uniform_table_equals_a_call_a_position() -> None:
    from aigc.sampling import draws

    seeds, positions = [3, 2**62 + 5, 0], torch.arange(7).expand(3, 7)
    keys = draws.stream_keys(seeds, "tokens")
    table = draws.uniform_table(keys, positions, (4,))  # (3, 7, 4): the whole horizon of 4 draws a position
    assert table.shape == (3, 7, 4)
    for t in range(7):
        assert torch.equal(table[:, t], draws.uniform(keys, torch.full((3,), t), (4,)))
    assert table[1, 6, 3].item() == draws.reference_uniform(2**62 + 5, "tokens", 6, 3)
    assert torch.equal(draws.uniform_table(keys, positions), table[..., 0])  # shape () = index 0


def test_uniform_and_normal_statistics() -> None:
    from aigc.sampling import draws

    u = draws.uniform(draws.stream_keys([0, 1], "tokens"), torch.tensor([0, 0]), (50_000,))
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    hist = torch.histc(u.float(), bins=10, min=0, max=1) / u.numel()
    assert (hist - 0.1).abs().max() < 0.005
    z = draws.normal(draws.stream_keys([3], "step-noise"), torch.tensor([9]), (100_000,))
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs((z.abs() < 1.96).float().mean().item() - 0.95) < 0.005


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to compare with the CPU")
def test_draws_are_bit_identical_on_cuda() -> None:
    from aigc.sampling import draws

    positions = torch.arange(64)
    cpu = draws.uniform(draws.stream_keys(list(range(64)), "tokens"), positions, (100,))
    cuda = draws.uniform(draws.stream_keys(list(range(64)), "tokens", device="cuda"), positions.cuda(), (100,))
    assert torch.equal(cpu, cuda.cpu())


# -- the token sampler ------------------------------------------------------------------------------------
MIXED = [
    sampling.SamplingParams(temperature=0.8, top_k=5),
    sampling.SamplingParams(do_sample=False),
    sampling.SamplingParams(top_p=0.6),
    sampling.SamplingParams(temperature=1.3, min_p=0.2, repetition_penalty=1.5),
    sampling.SamplingParams(top_k=12, top_p=0.9, min_p=0.05),
    sampling.SamplingParams(),
]


def _hf_chain(params: sampling.SamplingParams) -> list[object]:
    chain: list[object] = []
    if params.repetition_penalty != 1.0:
        chain.append(hf.RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.temperature != 1.0:
        chain.append(hf.TemperatureLogitsWarper(params.temperature))
    if params.top_k:
        chain.append(hf.TopKLogitsWarper(params.top_k))
    if params.top_p < 1.0:
        chain.append(hf.TopPLogitsWarper(params.top_p))
    if params.min_p > 0.0:
        chain.append(hf.MinPLogitsWarper(params.min_p))
    return chain


def test_token_sampler_rows_with_different_settings_match_transformers_distributions() -> None:
    """Each row, sampled at 3,000 positions from fixed logits, follows the distribution transformers'
    processors give for its own settings (total variation < 0.04), and never leaves their support."""
    vocab, steps = 40, 3000
    logits = torch.randn(len(MIXED), vocab, generator=torch.Generator().manual_seed(3)) * 2
    context = torch.tensor([[1, 2, 3, -1]] * len(MIXED))
    # One call: each setting's row repeated at every position (a row's draw depends on seed and position only).
    rows = [r for r in range(len(MIXED)) for _ in range(steps)]
    sampler = sampling.TokenSampler([MIXED[r] for r in rows], seeds=[10 + r for r in rows])
    sampler.prime(context[rows], vocab)
    tokens = sampler(logits[rows], torch.arange(steps).repeat(len(MIXED))).reshape(len(MIXED), steps)
    counts = torch.zeros(len(MIXED), vocab).scatter_add_(1, tokens, torch.ones(len(MIXED), steps))
    for row, params in enumerate(MIXED):
        scores = logits[row:row + 1].clone()
        for proc in _hf_chain(params):
            scores = proc(context[row:row + 1].clamp(min=0), scores)  # type: ignore[operator]
        if not params.do_sample:
            assert counts[row, scores.argmax()].item() == steps
            continue
        expected = scores.softmax(-1)[0]
        observed = counts[row] / steps
        assert (observed[expected == 0] == 0).all(), f"row {row} drew a token its settings exclude"
        assert 0.5 * (observed - expected).abs().sum().item() < 0.04, f"row {row}: {params}"


def test_token_sampler_row_equals_that_row_alone_and_on_either_path() -> None:
    """Batch invariance: a row's tokens depend on its logits, settings, seed and position only -- also when its
    neighbours switch the sampler between the top-k candidate path and the full-vocabulary path."""
    gen = torch.Generator().manual_seed(5)
    logits = [torch.randn(len(MIXED), 300, generator=gen) * 3 for _ in range(30)]
    seeds = [100 + i for i in range(len(MIXED))]

    def run(rows: list[int]) -> torch.Tensor:
        sampler = sampling.TokenSampler([MIXED[r] for r in rows], seeds=[seeds[r] for r in rows])
        sampler.prime(torch.zeros(len(rows), 1, dtype=torch.long), 300)
        out = [sampler(x[rows], torch.full((len(rows),), t)) for t, x in enumerate(logits)]
        return torch.stack(out, dim=1)  # (B, steps)

    together = run(list(range(len(MIXED))))
    for r in range(len(MIXED)):
        assert torch.equal(together[r], run([r])[0]), f"row {r} differs alone"
    # rows 0 and 4 alone take the (B, k) candidate path; beside row 2 (no top-k) the full-vocabulary path
    assert sampling.TokenSampler([MIXED[0], MIXED[4]], seeds=[1, 2]).compress
    assert not sampling.TokenSampler([MIXED[0], MIXED[2]], seeds=[1, 2]).compress
    assert torch.equal(run([0, 4]), together[[0, 4]])


def test_token_sampler_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    sampler = sampling.TokenSampler(MIXED, seeds=list(range(len(MIXED))))
    sampler.prime(torch.zeros(len(MIXED), 1, dtype=torch.long), 50)
    sampler(torch.randn(len(MIXED), 50, generator=torch.Generator().manual_seed(0)), torch.zeros(len(MIXED)))
    assert torch.equal(state, torch.random.get_rng_state())


def test_inverse_cdf_across_blocks_and_zero_probability_entries() -> None:
    from aigc.sampling.sampler import inverse_cdf

    logits = torch.full((1, 1000), float("-inf"))
    logits[0, [3, 250, 999]] = torch.tensor([0.0, 0.0, 0.0])  # three equal tokens in different blocks
    edges = torch.tensor([0.0, 0.3333, 0.3334, 0.6666, 0.6667, 1 - 2**-53], dtype=torch.float64)
    picks = [int(inverse_cdf(logits, u[None])[0]) for u in edges]
    assert picks == [3, 3, 250, 250, 999, 999]


@pytest.mark.parametrize("sync_every", [2, 5])
def test_loop_reads_tokens_every_few_steps_with_the_same_result(sync_every: int) -> None:
    def run(k: int) -> tuple[list[list[int]], list[object]]:
        loop = _loop(Scripted(batch=3, vocab=20), torch.zeros(3, 1, dtype=torch.long), [4, 5, 6], eos={7},
                     max_new_tokens=13, sync_every=k, temperature=1.5)
        for step, _ in loop:
            if step == 6:
                loop.finish(2, "stop")  # as a stop sequence would
        return loop.tokens, list(loop.reasons)

    assert run(sync_every) == run(1)


def test_legacy_sampler_reproduces_version_1() -> None:
    """Records made before the counter-based sampler replay with it: multinomial draws from one CPU generator
    per row, over the processed probabilities."""
    request = aigc.TextRequest(prompt="x", temperature=0.7, top_k=8, max_new_tokens=5)
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(9))
    sampler = sampling.make_sampler(request, [11, 12], eos_token_ids=set(), version=1)
    assert isinstance(sampler, sampling.LegacySampler)
    sampler.prime(torch.zeros(2, 1, dtype=torch.long), 30)
    got = [sampler(logits, torch.full((2,), t)).tolist() for t in range(5)]
    gens = [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)]
    probs = TopK(8)(IDS, Temperature(0.7)(IDS, logits)).softmax(-1)
    expected = [[int(torch.multinomial(probs[r], 1, generator=gens[r])) for r in range(2)] for _ in range(5)]
    assert got == expected
    with sampling.use_sampler_version(1):
        assert sampling.sampler_version() == 1
    assert sampling.sampler_version() == sampling.SAMPLER_VERSION == 2
    with pytest.raises(aigc.errors.ProvenanceError, match="sampler version 3"), sampling.use_sampler_version(3):
        pass


def test_step_generators_never_repeat_the_initial_noise() -> None:
    seeds = [0, 1, 2]
    x_t = sampling.randn((4, 8, 8), seeds)
    first_step = torch.stack([torch.randn((4, 8, 8), generator=g) for g in sampling.step_generators(seeds)])
    assert not torch.isclose(x_t, first_step).any()
    with sampling.use_sampler_version(1):  # version 1 repeated it (the defect replays faithfully)
        old = torch.stack([torch.randn((4, 8, 8), generator=g) for g in sampling.step_generators(seeds)])
    assert torch.equal(old, x_t)


@pytest.mark.slow
def test_own_decode_loop_example_runs(tmp_path: object) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "own_decode_loop.py"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "row 2 alone gives the same text: True" in done.stdout
    assert done.stdout.count("SamplingParams(") == 4


def test_rows_leave_and_join_a_running_batch_and_draw_what_they_would_alone() -> None:
    """Continuous batching: a row's tokens depend on its seed and its own positions, not on when it joined."""
    vocab = 64

    def logits(row_id: int, position: int) -> torch.Tensor:  # a fake model: the same logits wherever the row sits
        return torch.randn(vocab, generator=torch.Generator().manual_seed(1000 * row_id + position)) * 2

    params = {0: MIXED[0], 1: MIXED[2], 2: MIXED[3], 3: MIXED[4]}
    seeds = {0: 10, 1: 11, 2: 12, 3: 13}

    def alone(row_id: int, steps: int) -> list[int]:
        s = sampling.TokenSampler([params[row_id]], [seeds[row_id]])
        s.prime(torch.tensor([[1, 2]]), vocab, horizon=steps)
        return [int(s(logits(row_id, t)[None], torch.tensor([t]))[0]) for t in range(steps)]

    def sampler_for(ids: list[int]) -> sampling.TokenSampler:
        s = sampling.TokenSampler([params[i] for i in ids], [seeds[i] for i in ids])
        s.prime(torch.tensor([[1, 2]] * len(ids)), vocab, horizon=12)
        return s

    running, pos = [0, 1, 2], {0: 0, 1: 0, 2: 0}
    sampler = sampler_for(running)
    got: dict[int, list[int]] = {i: [] for i in params}
    for step in range(12):
        if step == 5:  # row 1 leaves
            keep = [k for k, i in enumerate(running) if i != 1]
            sampler, running = sampler.select(keep), [running[k] for k in keep]
        if step == 7:  # row 3 joins, at its own position 0
            sampler, running = sampling.TokenSampler.join([sampler, sampler_for([3])]), [*running, 3]
            pos[3] = 0
        batch = torch.stack([logits(i, pos[i]) for i in running])
        tokens = sampler(batch, torch.tensor([pos[i] for i in running]))
        for i, t in zip(running, tokens.tolist(), strict=True):
            got[i].append(t)
            pos[i] += 1
    assert got[0] == alone(0, 12) and got[2] == alone(2, 12)
    assert got[1] == alone(1, 5) and got[3] == alone(3, 5)


def test_seen_tokens_ignore_padding_even_beside_token_zero() -> None:
    """Padding (-1) must never unmark a real token 0 in the same row, whatever order the writes land in."""
    from aigc.sampling.processors import seen_tokens

    ids = torch.tensor([[-1] * 50 + [0] + [-1] * 50, [3, -1, -1, 1] * 25 + [-1]])
    assert seen_tokens(ids, 5).tolist() == [[True, False, False, False, False], [False, True, False, True, False]]
