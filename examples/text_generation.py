"""Generate text with seeds, save it with its provenance, and replay a sample from the saved file.

Runs offline in a few seconds on a CPU:

    python examples/text_generation.py                       # aigc's embedded default text model
    python examples/text_generation.py --model path/to/gpt2  # any local causal or seq2seq model directory
    python examples/text_generation.py --prompt "ROMEO:"

Without ``--model`` it uses the model that ships inside aigc (``"default"``): a small character-level GPT-2
trained by ``scripts/train_text_default.py`` on Shakespeare's plays and Tang poems. It is a toy -- the point is
the API -- but it writes recognisable verse, English or classical Chinese.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="default", help="a model directory (default: the embedded text model)")
parser.add_argument("--prompt", default="春夜\n", help="a poem title and a newline, or e.g. 'ROMEO:'")
args = parser.parse_args()

out = Path("out")

# 1. Load: the backend ("transformers") is inferred from the directory's files; device and dtype
#    default to "auto" (an accelerator when there is one, else the CPU in float32).
gen = aigc.load("text", args.model)
print(gen.info)

# 2. Generate 3 samples. seed=42 gives them the seeds 42, 43 and 44: sample i is the same text a
#    single run with seed 42 + i gives.
result = gen.generate(args.prompt, max_new_tokens=30, num_outputs=3, seed=42, temperature=0.8, top_k=50)
for seed, reason, text in zip(result.seeds, result.finish_reasons, result.texts, strict=True):
    # finish reason: "length" (max_new_tokens reached) or "stop" (end of sequence or a stop sequence).
    print(f"seed {seed} [{reason}]: {text!r}")

# 3. Save: one file per sample (out/story-0.json, story-1.json, story-2.json), each holding the text,
#    its seed and the provenance record (model, weights hash, full request, versions, ...).
paths = result.save(out / "story.json")
print("saved", *[str(p) for p in paths])

# 4. Replay: rebuild the request from a saved file's record and run it again -- the same text.
again = aigc.replay(paths[1])
print(f"replayed {paths[1]} (seed {again.seeds[0]}): same text: {again.text == result.texts[1]}")
