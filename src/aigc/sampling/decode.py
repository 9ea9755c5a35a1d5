"""The seeded token decode loop and incremental detokenization, independent of any model library.

A backend adapts its model to :class:`Stepper` (prefill the prompt, then one token at a time with a KV
cache); :class:`DecodeLoop` does the rest: token choice by a sampler (:class:`~aigc.sampling.TokenSampler`,
on the model's device), end of sequence, ``max_new_tokens`` and cancellation. :class:`TextAssembler` turns
a row's tokens into text pieces that are safe to show (never half a multi-byte character) and applies stop
sequences, so streamed pieces always join to exactly the final text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Literal, Protocol

import torch

__all__ = ["DecodeLoop", "Sampler", "Stepper", "TextAssembler"]

Reason = Literal["stop", "length", "cancelled"]


class Stepper(Protocol):
    """A model behind a KV cache, as the decode loop sees it."""

    def prefill(self) -> torch.Tensor:
        """Run the prompt; return the next-token logits ``(B, V)``."""
        ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` ``(B,)`` (one per row) and return the next-token logits ``(B, V)``."""
        ...


class Sampler(Protocol):
    """Chooses the next token of every row (:class:`~aigc.sampling.TokenSampler`)."""

    def prime(self, context_ids: torch.Tensor, vocab_size: int, horizon: int = 0) -> None: ...

    def __call__(self, logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor: ...


class DecodeLoop:
    """Iterate over decoding steps; each step yields the new token of every row still running.

    Args:
        stepper: the model.
        sampler: chooses tokens from each step's logits (:func:`aigc.sampling.make_sampler`).
        context_ids: ``(B, T)`` prompt ids with ``-1`` for left padding (the repetition penalty's history).
        eos_token_ids: tokens that end a row (reason ``"stop"``); they are part of the row's tokens.
        max_new_tokens: rows still running after this many tokens end with reason ``"length"``.
        pad_token_id: fed to the model for rows that have ended.
        sync_every: how many steps run on the device between two reads of their tokens by the host. 1 (the
            default) yields every step as soon as it is chosen (streaming, stop sequences, callbacks); more lets
            an accelerator run ahead of Python, at the price of up to ``sync_every - 1`` steps computed after
            the last row ended. The tokens are the same either way.

    The consumer may call :meth:`finish` (e.g. on a stop sequence) or :meth:`cancel` between steps. Token
    choice, the end-of-sequence check and the tokens fed back stay on the model's device; the host reads the
    chosen tokens once per ``sync_every`` steps.

    Example:
        >>> loop = DecodeLoop(stepper, sampler=sampler, context_ids=ids, eos_token_ids={0},
        ...                   max_new_tokens=10, pad_token_id=0)  # doctest: +SKIP
        >>> for step, tokens in loop: ...  # doctest: +SKIP
    """

    def __init__(
        self,
        stepper: Stepper,
        *,
        sampler: Sampler,
        context_ids: torch.Tensor,
        eos_token_ids: Collection[int],
        max_new_tokens: int,
        pad_token_id: int,
        sync_every: int = 1,
    ) -> None:
        self.stepper = stepper
        self.sampler = sampler
        self.batch = int(context_ids.shape[0])
        self.context = context_ids
        self.eos = set(eos_token_ids)
        self.max_new_tokens = max_new_tokens
        self.pad = pad_token_id
        self.sync_every = max(1, int(sync_every))
        self.tokens: list[list[int]] = [[] for _ in range(self.batch)]
        self.reasons: list[Reason | None] = [None] * self.batch
        self._ended_by_host: list[int] = []  # rows finished by the consumer, not yet told to the device
        self._cancelled = False

    def finish(self, row: int, reason: Reason) -> None:
        if self.reasons[row] is None:
            self.reasons[row] = reason
            self._ended_by_host.append(row)

    def cancel(self) -> None:
        self._cancelled = True
        for row in range(self.batch):
            self.finish(row, "cancelled")

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.reasons)

    def __iter__(self) -> Iterator[tuple[int, list[int | None]]]:
        logits = self.stepper.prefill()
        device = logits.device
        self.sampler.prime(self.context.to(device), int(logits.shape[-1]), self.max_new_tokens)
        eos = torch.tensor(sorted(self.eos), dtype=torch.long, device=device) if self.eos else None
        finished = torch.zeros(self.batch, dtype=torch.bool, device=device)  # on the device: no sync to feed pads
        positions = torch.zeros(self.batch, dtype=torch.long, device=device)  # tokens each row has generated
        pad = torch.full((self.batch,), self.pad, dtype=torch.long, device=device)
        fed: torch.Tensor | None = None
        step = 0
        while True:
            chunk: list[torch.Tensor] = []
            for _ in range(min(self.sync_every, self.max_new_tokens - step)):
                if fed is not None:
                    logits = self.stepper.step(fed)
                tokens = self.sampler(logits, positions)  # (B,)
                positions += 1
                fed = torch.where(finished, pad, tokens)
                if eos is not None:
                    finished |= torch.isin(tokens, eos)
                chunk.append(tokens)
            for row_tokens in torch.stack(chunk).tolist():  # the one read per chunk
                chosen: list[int | None] = [None if self.reasons[r] is not None else t
                                            for r, t in enumerate(row_tokens)]
                for r, t in enumerate(chosen):
                    if t is not None:
                        self.tokens[r].append(t)
                        if t in self.eos:
                            self.finish(r, "stop")
                yield step, chosen  # the consumer may finish rows or cancel here
                step += 1
                if self._cancelled:
                    return
            if step >= self.max_new_tokens:
                for row in range(self.batch):
                    self.finish(row, "length")
            if self.done:
                return
            if self._ended_by_host:  # stop sequences and finish(): feed those rows padding from now on
                finished[torch.tensor(self._ended_by_host, device=device)] = True
                self._ended_by_host.clear()
                assert fed is not None
                fed = torch.where(finished, pad, fed)


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
