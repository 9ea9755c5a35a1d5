"""The seeded token decode loop and incremental detokenization, independent of any model library.

A backend adapts its model to :class:`Stepper` (prefill the prompt, then one token at a time with a KV
cache); :class:`DecodeLoop` does the rest: logits processors, one ``torch.Generator`` per row, EOS,
``max_new_tokens`` and cancellation. :class:`TextAssembler` turns a row's tokens into text pieces that are
safe to show (never half a multi-byte character) and applies stop sequences, so streamed pieces always
join to exactly the final text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Literal, Protocol

import torch

from aigc.sampling.noise import generators as make_generators
from aigc.sampling.processors import PAD, LogitsProcessor

__all__ = ["DecodeLoop", "Stepper", "TextAssembler"]

Reason = Literal["stop", "length", "cancelled"]


class Stepper(Protocol):
    """A model behind a KV cache, as the decode loop sees it."""

    def prefill(self) -> torch.Tensor:
        """Run the prompt; return the next-token logits ``(B, V)``."""
        ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` ``(B,)`` (one per row) and return the next-token logits ``(B, V)``."""
        ...


class DecodeLoop:
    """Iterate over decoding steps; each step yields the new token of every row still running.

    Args:
        stepper: the model.
        context_ids: ``(B, T)`` prompt ids with ``-1`` for left padding, for the logits processors.
        seeds: one seed per row for sampling, or ``None`` for greedy decoding (argmax).
        processors: applied in order to each step's logits.
        eos_token_ids: tokens that end a row (reason ``"stop"``); they are part of the row's tokens.
        max_new_tokens: rows still running after this many tokens end with reason ``"length"``.
        pad_token_id: fed to the model for rows that have ended.
        min_new_tokens: steps during which the EOS tokens cannot be chosen.

    The consumer may call :meth:`finish` (e.g. on a stop sequence) or :meth:`cancel` between steps.
    Sampling draws from each row's own generator on the CPU, so a row's tokens do not depend on the
    other rows of the batch or on the device.

    Example:
        >>> loop = DecodeLoop(stepper, context_ids=ids, seeds=[42], processors=[], eos_token_ids={0},
        ...                   max_new_tokens=10, pad_token_id=0)  # doctest: +SKIP
        >>> for step, tokens in loop: ...  # doctest: +SKIP
    """

    def __init__(
        self,
        stepper: Stepper,
        *,
        context_ids: torch.Tensor,
        seeds: Sequence[int] | None,
        processors: Sequence[LogitsProcessor],
        eos_token_ids: Collection[int],
        max_new_tokens: int,
        pad_token_id: int,
        min_new_tokens: int = 0,
    ) -> None:
        self.stepper = stepper
        self.batch = int(context_ids.shape[0])
        self.context = context_ids
        self.generators = make_generators(seeds) if seeds is not None else None
        if self.generators is not None and len(self.generators) != self.batch:
            raise ValueError(f"{len(self.generators)} seeds for a batch of {self.batch}")
        self.processors = list(processors)
        self.eos = set(eos_token_ids)
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.pad = pad_token_id
        self.tokens: list[list[int]] = [[] for _ in range(self.batch)]
        self.reasons: list[Reason | None] = [None] * self.batch

    def finish(self, row: int, reason: Reason) -> None:
        if self.reasons[row] is None:
            self.reasons[row] = reason

    def cancel(self) -> None:
        for row in range(self.batch):
            self.finish(row, "cancelled")

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.reasons)

    def _choose(self, scores: torch.Tensor) -> list[int | None]:
        active = [r is None for r in self.reasons]
        if self.generators is None:
            best = scores.argmax(dim=-1).tolist()
            return [t if a else None for t, a in zip(best, active, strict=True)]
        probs = scores.float().softmax(dim=-1).cpu()  # (B, V); sampled on the CPU, like the noise
        return [
            int(torch.multinomial(probs[i], 1, generator=g).item()) if active[i] else None
            for i, g in enumerate(self.generators)
        ]

    def __iter__(self) -> Iterator[tuple[int, list[int | None]]]:
        logits = self.stepper.prefill()
        history = self.context.to(logits.device)
        for step in range(self.max_new_tokens):
            scores = logits.float()
            if step < self.min_new_tokens and self.eos:  # as transformers' MinNewTokensLengthLogitsProcessor
                scores = scores.clone()
                scores[:, sorted(self.eos)] = -math.inf
            for proc in self.processors:
                scores = proc(history, scores)
            chosen = self._choose(scores)
            for row, tok in enumerate(chosen):
                if tok is not None:
                    self.tokens[row].append(tok)
                    if tok in self.eos:
                        self.finish(row, "stop")
            yield step, chosen  # the consumer may finish rows or cancel here
            if step == self.max_new_tokens - 1:
                for row in range(self.batch):
                    self.finish(row, "length")
            if self.done:
                return
            fed = torch.tensor([self.pad if t is None else t for t in chosen], dtype=torch.long)
            fed_history = torch.tensor([PAD if t is None else t for t in chosen], dtype=torch.long)
            history = torch.cat([history, fed_history.to(history.device)[:, None]], dim=1)
            logits = self.stepper.step(fed.to(logits.device))


class TextAssembler:
    """Incremental detokenization of one row, with stop sequences.

    ``decode`` turns token ids into text. Decoding works on a sliding window (the tokens not yet turned
    into final text, plus the few before them for context), so a row of ``n`` tokens costs ``O(n)``
    decodes of a few tokens each, not ``n`` decodes of the whole row. The first window starts with the last
    prompt tokens (``prefix_ids``), so tokenizers that drop a word's leading space at the start of a
    sequence still give the right spacing. :meth:`add` returns only text that is final: never a trailing
    partial UTF-8 character (U+FFFD while incomplete) and never text that could still turn out to be the
    start of a stop sequence. The text stops *before* the first stop sequence, and the pieces returned by
    :meth:`add` and :meth:`flush` always join to exactly :attr:`text`.

    Example:
        >>> asm = TextAssembler(lambda ids: "".join(chr(i) for i in ids), stop=["\\n"])
        >>> asm.add(ord("a")), asm.add(ord("\\n")), asm.text
        (('a', False), ('', True), 'a')
    """

    def __init__(
        self, decode: Callable[[list[int]], str], *, stop: Sequence[str] = (), prefix_ids: Sequence[int] = ()
    ) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        prefix = list(prefix_ids)
        if prefix and decode(prefix).endswith("\ufffd"):  # the prompt ends inside a character: no context
            prefix = []
        self._all = prefix  # context tokens, then the row's tokens
        self._n_prefix = len(prefix)
        self._window = 0  # where the decoding window starts (context for the pending tokens)
        self._read = len(prefix)  # tokens before this are already in ``_stable``
        self._stable = ""  # the row's text from complete characters
        self._emitted = 0
        self._final: str | None = None  # set once a stop sequence ends the text
        self._searched = 0  # characters of the text already searched for stop sequences

    @property
    def ids(self) -> list[int]:
        """The row's token ids (without the prompt context)."""
        return self._all[self._n_prefix:]

    @property
    def stopped(self) -> bool:
        return self._final is not None

    def _pending(self) -> tuple[str, str]:
        """(text of the window's context, text of the window including the pending tokens)."""
        return self._decode(self._all[self._window:self._read]), self._decode(self._all[self._window:])

    def _advance(self) -> None:
        """Move the pending tokens into the stable text once they end on a complete character."""
        before, now = self._pending()
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._stable += now[len(before):]
            self._window, self._read = self._read, len(self._all)

    def _apply_stop(self, text: str) -> bool:
        if not self._stop:
            return False
        longest = max(len(s) for s in self._stop)
        start = max(0, self._searched - longest + 1)
        hits = [i for i in (text.find(s, start) for s in self._stop) if i >= 0]
        self._searched = len(text)
        if hits:
            self._final = text[: min(hits)]
            return True
        return False

    def _holdback(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop sequence."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best

    def add(self, token_id: int) -> tuple[str, bool]:
        """Append a token; return ``(new final text, whether a stop sequence ended the text)``."""
        if self._final is not None:
            return "", True
        self._all.append(token_id)
        self._advance()
        stable = self._stable
        if self._apply_stop(stable):
            return self._take(self._final or ""), True
        return self._take(stable[: len(stable) - self._holdback(stable)]), False

    def _take(self, upto: str) -> str:
        if len(upto) <= self._emitted:
            return ""
        piece = upto[self._emitted:]
        self._emitted = len(upto)
        return piece

    @property
    def text(self) -> str:
        """The row's whole text so far (including a trailing partial character, if the row ended in one)."""
        if self._final is not None:
            return self._final
        before, now = self._pending()
        text = self._stable + now[len(before):]
        if self._apply_stop(text):
            return self._final or ""
        return text

    def flush(self) -> str:
        """The text not returned by :meth:`add` yet (call once the row has ended)."""
        return self._take(self.text)
