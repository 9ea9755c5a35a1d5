"""aigc-markov: a character n-gram text backend for aigc, as an example plugin.

A model directory holds ``markov.json``:
``{"format": "aigc-markov/1", "order": n, "counts": {context: {char: count}}}``.
Generation looks up the last ``n`` characters (backing off to shorter contexts), turns the counts into logits,
and samples through ``aigc.sampling``, one seeded ``torch.Generator`` per sample.

Example:
    >>> import aigc, aigc_markov
    >>> path = aigc_markov.train(["to be or not to be"], "model-dir", order=2)  # doctest: +SKIP
    >>> aigc.load("text", path).generate("to", max_new_tokens=10, seed=0).text  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aigc
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.sampling import TextAssembler

if TYPE_CHECKING:
    import torch

__all__ = ["MarkovTextGenerator", "train"]

FORMAT = "aigc-markov/1"


def train(texts: Iterable[str], path: str | os.PathLike[str], *, order: int = 3) -> Path:
    """Count character n-grams of ``texts`` (contexts of length 0..order) and save a model directory."""
    if order < 1:
        raise InvalidRequest("order", order, "must be >= 1", "pass order=3")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        for i, ch in enumerate(text):
            for n in range(order + 1):
                if i - n >= 0:
                    counts[text[i - n:i]][ch] += 1
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT, "order": order, "counts": {k: dict(v) for k, v in counts.items()}}
    tmp = out / "markov.json.part"
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out / "markov.json")  # atomic
    return out


class MarkovTextGenerator(aigc.Generator[aigc.TextRequest, aigc.TextResult]):
    """Text backend ``markov``: character n-grams, sampled with aigc's seeded sampling core."""

    modality = "text"
    backend_name = "markov"
    request_type = aigc.TextRequest
    supported_params = frozenset({"max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "stop"})

    def __init__(self, *, model: str, options: aigc.LoadOptions, order: int,
                 counts: dict[str, dict[str, int]]) -> None:
        super().__init__(model=model, device=options.device, dtype=options.dtype)
        self.order = order
        self.counts = counts
        self.vocab = sorted({ch for follow in counts.values() for ch in follow})
        self.index = {ch: i for i, ch in enumerate(self.vocab)}

    @classmethod
    def detect(cls, path: Path) -> bool:
        return (path / "markov.json").is_file()

    @classmethod
    def load(cls, model: str, *, options: aigc.LoadOptions) -> MarkovTextGenerator:
        file = Path(model) / "markov.json"
        if not file.is_file():
            raise ModelNotFound(f"{model!r} has no markov.json. Fix: create one with aigc_markov.train()")
        doc = json.loads(file.read_text(encoding="utf-8"))
        if doc.get("format") != FORMAT:
            raise ModelNotFound(f"{file} is not an {FORMAT} model")
        return cls(model=model, options=options, order=int(doc["order"]), counts=doc["counts"])

    def parameters_count(self) -> int:
        return sum(len(v) for v in self.counts.values())

    def _to(self, device: object) -> None:
        """Counts live in Python; sampling happens on the CPU whatever the device."""

    # -- generation ------------------------------------------------------------------------------
    def _logits(self, context: str) -> torch.Tensor:
        import torch

        for n in range(min(self.order, len(context)), -1, -1):  # back off to shorter contexts
            follow = self.counts.get(context[len(context) - n:])
            if follow:
                break
        logits = torch.full((1, len(self.vocab)), float("-inf"))
        for ch, c in (follow or {}).items():
            logits[0, self.index[ch]] = math.log(c)
        return logits

    def _run(self, request: aigc.TextRequest, prompt: str, seed: int, events: aigc.EventEmitter,
             asm: TextAssembler) -> Iterator[str]:
        """Sample one text into ``asm``; yield each piece of final text as it appears."""
        import torch

        from aigc.sampling import build_processors, generators

        gen = generators([seed])[0]  # this sample's own seeded generator
        procs = build_processors(request)
        for _ in range(request.max_new_tokens):
            if events.cancelled:
                return
            scores = self._logits(prompt + asm.text)
            for proc in procs:
                scores = proc(torch.zeros((1, 1), dtype=torch.long), scores)
            probs = scores.softmax(-1)[0]
            k = int(torch.multinomial(probs, 1, generator=gen)) if request.do_sample else int(probs.argmax())
            piece, stopped = asm.add(k)
            if piece:
                yield piece
            if stopped:
                return

    def _assembler(self, request: aigc.TextRequest) -> TextAssembler:
        return TextAssembler(lambda ids: "".join(self.vocab[i] for i in ids), stop=request.stop)

    def _generate(self, request: aigc.TextRequest, seeds: list[int], events: aigc.EventEmitter) -> aigc.TextResult:
        n = request.samples_per_prompt
        prompts = request.prompts()
        texts: list[str] = []
        reasons: list[aigc.FinishReason] = []
        ids: list[list[int]] = []
        for i, seed in enumerate(seeds):
            asm = self._assembler(request)
            for _ in self._run(request, str(prompts[i // n]), seed, events, asm):
                pass
            texts.append(asm.text)
            ids.append(asm.ids)
            reasons.append("stop" if asm.stopped else "cancelled" if events.cancelled else "length")
        return aigc.TextResult(texts=texts, seeds=seeds, finish_reasons=reasons, token_ids=ids,
                               prompt_index=[i // n for i in range(len(seeds))])

    def _stream(self, request: aigc.TextRequest, seeds: list[int], events: aigc.EventEmitter) -> Iterator[str]:
        asm = self._assembler(request)
        yield from self._run(request, str(request.prompts()[0]), seeds[0], events, asm)
        tail = asm.flush()
        if tail:
            yield tail
