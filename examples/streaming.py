"""Stream text as it is generated, and stop a run early from an event callback.

    python examples/streaming.py                       # a tiny random GPT-2, built here (gibberish text)
    python examples/streaming.py --model path/to/gpt2  # a real model directory
"""

from __future__ import annotations

import argparse
import tempfile

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="a model directory (default: a tiny random GPT-2 in a temporary folder)")
parser.add_argument("--stop-after", type=int, default=10, help="cancel after this many tokens")
args = parser.parse_args()

if args.model is None:
    from aigc.testing import tiny_gpt2

    args.model = tiny_gpt2(tempfile.mkdtemp(prefix="aigc-example-"))  # random weights: the text is gibberish
gen = aigc.load("text", args.model)

# 1. stream() yields text pieces as soon as they are final (never half a UTF-8 character); joined,
#    they are exactly the text generate() returns for the same request and seed.
pieces = []
for piece in gen.stream("Once upon a time", max_new_tokens=20, seed=1):
    pieces.append(piece)
    print(repr(piece), end=" ", flush=True)  # repr(): random weights produce control characters too
print()
same = "".join(pieces) == gen.generate("Once upon a time", max_new_tokens=20, seed=1).text
print("joined pieces == generate().text:", same)


# 2. Cancel: on_event receives an aigc.Event for every token ("token" events carry the new text);
#    event.cancel() stops the run at the next step.
def stop_early(event: aigc.Event) -> None:
    if event.kind == "token" and event.step >= args.stop_after:
        event.cancel()


streamed = "".join(gen.stream("Once upon a time", max_new_tokens=100, seed=1, on_event=stop_early))
print(f"stream() cancelled after {args.stop_after} tokens: {streamed!r}")

# generate() takes the same callback; the samples it stopped end with finish reason "cancelled".
result = gen.generate("Once upon a time", max_new_tokens=100, seed=1, num_outputs=2, on_event=stop_early)
print("generate() cancelled:", result.finish_reasons, result.num_tokens, "tokens")
