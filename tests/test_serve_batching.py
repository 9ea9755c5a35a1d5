"""Continuous batching in the text backend: rows joining and leaving a running batch give what they give alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import aigc
from aigc._backends._text_batching import ContinuousBatcher, supports_continuous_batching


class Sink:
    """Collects one request's output, as the server's job does."""

    def __init__(self, samples: int) -> None:
        self.pieces: list[list[str]] = [[] for _ in range(samples)]
        self.ended: dict[int, tuple[str, list[int]]] = {}
        self.prompt_counts: list[int] = []
        self.error: Exception | None = None
        self.stop = False

    def cancelled(self) -> bool:
        return self.stop

    def prompt_tokens(self, counts: list[int]) -> None:
        self.prompt_counts = counts

    def piece(self, sample: int, text: str) -> None:
        assert sample not in self.ended, "text after the sample ended"
        self.pieces[sample].append(text)

    def finish(self, sample: int, reason: str, token_ids: list[int]) -> None:
        assert sample not in self.ended, "a sample ended twice"
        self.ended[sample] = (reason, token_ids)

    def fail(self, error: Exception) -> None:
        self.error = error

    @property
    def texts(self) -> list[str]:
        return ["".join(p) for p in self.pieces]


REQUESTS = [
    aigc.TextRequest(prompt="Once upon a time", max_new_tokens=30, seed=1),
    aigc.TextRequest(prompt="Hello", max_new_tokens=20, seed=5, num_outputs=3, temperature=0.7, top_k=20,
                     repetition_penalty=1.3),
    aigc.TextRequest(prompt="今天天气真好，", max_new_tokens=25, seed=9, num_outputs=2, temperature=1.3, stop=["o"],
                     min_p=0.05),
    aigc.TextRequest(prompt="To be, or not to be", max_new_tokens=15, do_sample=False),
    aigc.TextRequest(prompt=["The quick brown fox", "床前明月光"], max_new_tokens=12, seed=3, top_p=0.9,
                     min_new_tokens=5),
    # rows with and without the text watermark share the batch
    aigc.TextRequest(prompt="Once upon a time", max_new_tokens=20, seed=1, watermark=False),
]


def _seeds(request: aigc.TextRequest) -> list[int]:
    return aigc.sampling.resolve_seeds(request.seed if request.seed is not None else 0, request.total_samples)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_rows_joining_and_leaving_give_what_they_give_alone(arch: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(f"{arch}_dir")
    gen = aigc.load("text", path, device="cpu")
    batcher = gen.continuous_batcher(max_rows=16)  # type: ignore[attr-defined]
    assert isinstance(batcher, ContinuousBatcher)
    reqs = REQUESTS
    sinks = []
    widest = 0
    for i, req in enumerate(reqs):  # each joins a batch that is already running, at a different step
        sink = Sink(req.total_samples)
        sinks.append(sink)
        batcher.add(req, _seeds(req), sink)
        for _ in range(2 * i + 1):
            batcher.step()
            widest = max(widest, batcher.last_batch_rows)
    while batcher.active:
        batcher.step()
    assert widest >= 4, "the requests never shared a step"
    for req, sink in zip(reqs, sinks, strict=True):
        alone = gen.generate(req.replace(seed=_seeds(req)))
        assert sink.error is None
        assert sink.texts == alone.texts
        assert [sink.ended[i][0] for i in range(req.total_samples)] == alone.finish_reasons
        assert [sink.ended[i][1] for i in range(req.total_samples)] == alone.token_ids
        assert alone.record is not None
        assert batcher.record(req, _seeds(req), 0.0).watermarks == alone.record.watermarks
    assert all(m is not None for m in gen.generate(reqs[0]).record.watermarks)  # type: ignore[union-attr]
    assert sinks[0].ended[0][1][:20] != sinks[5].ended[0][1], "the watermark changed nothing"
    assert sinks[4].prompt_counts == [len(gen.tokenizer(p)["input_ids"]) for p in REQUESTS[4].prompts()]  # type: ignore
    assert batcher.rows == 0 and not batcher.active


def test_chat_prompts_batch_like_plain_ones(gpt2_dir: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")
    batcher = gen.continuous_batcher()  # type: ignore[attr-defined]
    chat = aigc.TextRequest(prompt=[{"role": "user", "content": "Hi there"}], max_new_tokens=10, seed=4)
    plain = aigc.TextRequest(prompt="Shall I compare thee", max_new_tokens=14, seed=8)
    a, b = Sink(1), Sink(1)
    batcher.add(plain, [8], b)
    batcher.step()
    batcher.add(chat, [4], a)
    while batcher.active:
        batcher.step()
    assert a.texts == gen.generate(chat).texts
    assert b.texts == gen.generate(plain).texts


def test_cancelled_rows_leave_at_the_next_step(gpt2_dir: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")
    batcher = gen.continuous_batcher()  # type: ignore[attr-defined]
    long = aigc.TextRequest(prompt="Once upon a time", max_new_tokens=100, seed=1, num_outputs=2, min_new_tokens=100)
    short = aigc.TextRequest(prompt="Hello", max_new_tokens=30, seed=2, min_new_tokens=30)
    gone, kept = Sink(2), Sink(1)
    batcher.add(long, [1, 2], gone)
    batcher.add(short, [2], kept)
    for _ in range(5):
        batcher.step()
    assert batcher.last_batch_rows == 3
    gone.stop = True
    steps = batcher.steps
    batcher.step()
    assert batcher.last_batch_rows == 1, "the cancelled rows still decode"
    while batcher.active:
        batcher.step()
    assert batcher.steps - steps == 30 - 6  # only the kept row's remaining tokens were decoded
    assert not gone.ended and len(gone.texts) == 2
    assert kept.texts == gen.generate(short).texts
    # the cache never held more columns than the rows use: padding columns were trimmed when rows left
    assert batcher._batch is None


def test_a_bad_prompt_fails_only_its_request(gpt2_dir: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")
    batcher = gen.continuous_batcher()  # type: ignore[attr-defined]
    too_long = aigc.TextRequest(prompt="word " * 200, max_new_tokens=10, seed=1)
    fine = aigc.TextRequest(prompt="Hello", max_new_tokens=6, seed=1)
    bad, good = Sink(1), Sink(1)
    batcher.add(too_long, [1], bad)
    batcher.add(fine, [1], good)
    while batcher.active:
        batcher.step()
    assert isinstance(bad.error, aigc.errors.InvalidRequest) and bad.error.field == "max_new_tokens"
    assert good.texts == gen.generate(fine).texts


def test_models_that_cannot_join_rows_are_said_so(t5_dir: Path, gpt2_dir: Path, llama_dir: Path) -> None:
    t5 = aigc.load("text", t5_dir, device="cpu")
    assert t5.continuous_batcher() is None  # type: ignore[attr-defined]
    assert not supports_continuous_batching(t5.lm)  # type: ignore[attr-defined]
    for path in (gpt2_dir, llama_dir):
        gen: Any = aigc.load("text", path, device="cpu")
        assert supports_continuous_batching(gen.lm)


def test_the_batcher_refuses_what_cannot_fit(gpt2_dir: Path) -> None:
    gen = aigc.load("text", gpt2_dir, device="cpu")
    batcher = gen.continuous_batcher(max_rows=2)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="do not fit"):
        batcher.add(aigc.TextRequest(prompt="x", num_outputs=3, seed=0), [0, 1, 2], Sink(3))
    with pytest.raises(ValueError, match="seeds"):
        batcher.add(aigc.TextRequest(prompt="x", num_outputs=2, seed=0), [0], Sink(2))
