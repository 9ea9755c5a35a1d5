"""Generate text with seeds, save it with its provenance, and replay a sample from the saved file.

Runs offline in a few seconds on a CPU:

    python examples/text_generation.py                       # a tiny random GPT-2, built here
    python examples/text_generation.py --model path/to/gpt2  # any local causal or seq2seq model directory

Without ``--model`` the script builds a tiny GPT-2 with *random* weights (``aigc.testing.tiny_gpt2``), so
the text is gibberish: the point is the API, not the prose. aigc's embedded default text model, trained
by its own recipes, will replace it once it ships; until then, point ``--model`` at a real model
directory (one saved with ``save_pretrained``, e.g. GPT-2) to read real text.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="a model directory (default: build a tiny random GPT-2 in out/tiny-gpt2)")
parser.add_argument("--prompt", default="今天天气真好，")
args = parser.parse_args()

out = Path("out")
if args.model is None:
    from aigc.testing import tiny_gpt2  # imports torch and transformers

    # Kept under out/ rather than in a temporary folder: the saved records name this directory, so
    # `aigc replay out/story-0.json` keeps working after the script ends.
    args.model = tiny_gpt2(out / "tiny-gpt2")

# 1. Load: the backend ("transformers") is inferred from the directory's files; device and dtype
#    default to "auto" (an accelerator when there is one, else the CPU in float32).
gen = aigc.load("text", args.model)
print(gen.info)

# 2. Generate 3 samples. seed=42 gives them the seeds 42, 43 and 44: sample i is the same text a
#    single run with seed 42 + i gives.
result = gen.generate(args.prompt, max_new_tokens=30, num_outputs=3, seed=42, temperature=0.8, top_k=50)
for seed, reason, text in zip(result.seeds, result.finish_reasons, result.texts, strict=True):
    # finish reason: "length" (max_new_tokens reached) or "stop" (end of sequence or a stop sequence).
    # repr() because random weights produce control characters too.
    print(f"seed {seed} [{reason}]: {text!r}")

# 3. Save: one file per sample (out/story-0.json, story-1.json, story-2.json), each holding the text,
#    its seed and the provenance record (model, weights hash, full request, versions, ...).
paths = result.save(out / "story.json")
print("saved", *[str(p) for p in paths])

# 4. Replay: rebuild the request from a saved file's record and run it again -- the same text.
again = aigc.replay(paths[1])
print(f"replayed {paths[1]} (seed {again.seeds[0]}): same text: {again.text == result.texts[1]}")
