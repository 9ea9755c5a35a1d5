"""Decode your own model with aigc's sampling core: per-row settings in one batch, seeds that never depend on it.

A backend (or your own code) adapts its model to ``aigc.sampling.Stepper`` -- ``prefill()`` and
``step(tokens)`` returning next-token logits -- and gets aigc's decode loop: repetition penalty, min-new-tokens,
temperature / top-k / top-p / min-p chosen per row, end of sequence, and one counter-based draw per row and
token on the model's device. Here the model is a character bigram table estimated from a few lines of text, so
the example runs anywhere in a second:

    python examples/own_decode_loop.py
"""

from __future__ import annotations

import itertools

import torch

from aigc import sampling

TEXT = ("shall i compare thee to a summer's day? thou art more lovely and more temperate. rough winds do shake "
        "the darling buds of may, and summer's lease hath all too short a date.\n")
VOCAB = sorted(set(TEXT))
ID = {c: i for i, c in enumerate(VOCAB)}
EOS = ID["\n"]


class Bigram:
    """A Stepper: the next character's logits depend on the last character only (log bigram counts)."""

    def __init__(self, prompts: list[str]) -> None:
        counts = torch.full((len(VOCAB), len(VOCAB)), 0.01)  # a little smoothing
        for a, b in itertools.pairwise(TEXT):
            counts[ID[a], ID[b]] += 1
        self.table = counts.log()  # (V, V)
        self.last = torch.tensor([ID[p[-1]] for p in prompts])  # (B,)

    def prefill(self) -> torch.Tensor:
        return self.table[self.last]  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


def decode(prompts: list[str], settings: list[sampling.SamplingParams], seeds: list[int]) -> list[str]:
    context = torch.full((len(prompts), max(map(len, prompts))), -1)  # left-padded prompt ids, -1 = padding
    for row, p in enumerate(prompts):
        context[row, context.shape[1] - len(p):] = torch.tensor([ID[c] for c in p])
    sampler = sampling.TokenSampler(settings, seeds, eos_token_ids={EOS})
    loop = sampling.DecodeLoop(Bigram(prompts), sampler=sampler, context_ids=context, eos_token_ids={EOS},
                               max_new_tokens=60, pad_token_id=EOS)
    for _step, _tokens in loop:  # one step at a time; loop.finish(row, "stop") or loop.cancel() are allowed here
        pass
    return ["".join(VOCAB[t] for t in row if t != EOS) for row in loop.tokens]


prompts = ["shall i", "rough winds", "thou art", "summer"]
settings = [
    sampling.SamplingParams(do_sample=False),  # greedy
    sampling.SamplingParams(temperature=0.7, top_k=5),
    sampling.SamplingParams(top_p=0.8, repetition_penalty=1.3),
    sampling.SamplingParams(temperature=1.2, min_p=0.1, min_new_tokens=20),
]
seeds = [0, 1, 2, 3]
texts = decode(prompts, settings, seeds)
for prompt, params, text in zip(prompts, settings, texts, strict=True):
    print(f"{prompt!r:>14} + {text!r}\n{'':>14}   ({params})")

# Row 2 run on its own, with its own settings and seed, gives exactly the same text: a row's draws are a
# function of (its seed, its token position), not of the batch around it.
alone = decode(prompts[2:3], settings[2:3], seeds[2:3])[0]
print("row 2 alone gives the same text:", alone == texts[2])
assert alone == texts[2]
