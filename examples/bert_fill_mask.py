"""Fill [MASK] with a BERT masked language model: the most likely fills, seeded sampling of several masks, replay.

Runs offline in a few seconds on a CPU:

    python examples/bert_fill_mask.py                                  # a tiny random BERT built here
    python examples/bert_fill_mask.py --model path/to/bert-base-chinese  # any local masked-LM directory

Without ``--model`` the model is a tiny random BERT (``aigc.testing.tiny_bert``), so its fills are arbitrary
tokens -- the point is the API. With a real Chinese BERT, "今天天气真[MASK]。" gives 好 first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aigc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="a masked-LM directory (default: a tiny random BERT built under out/)")
parser.add_argument("--prompt", default="今天天气真[MASK]。", help="a text with one [MASK]")
args = parser.parse_args()

out = Path("out")
if args.model is None:
    from aigc.testing import tiny_bert

    args.model = str(tiny_bert(out / "tiny-bert"))

# 1. Load: a config naming ...ForMaskedLM loads with AutoModelForMaskedLM; safetensors only, no remote code.
gen = aigc.load("text", args.model)
print(gen)

# 2. The five most likely fills of one mask (transformers' fill-mask pipeline computes the same), with their
#    probabilities. Keyword calls do not sample unless asked (do_sample=True).
res = gen.generate(args.prompt, num_fills=5)
for fill in res.fills[0]:
    print(f"{fill.score:.3f}  {fill.token!r:8} {fill.text}")

# 3. Several masks, sampled one at a time, left to right, each from the sample's own seed: sample i of the batch
#    is what a single run with its seed gives.
two = args.prompt.replace("[MASK]", "[MASK][MASK]", 1)
batch = gen.generate(two, do_sample=True, seed=42, num_outputs=4, top_k=50)
for seed, text, score in zip(batch.seeds, batch.texts, batch.scores, strict=True):
    print(f"seed {seed}: {text}  (p = {score:.2e})")
alone = gen.generate(two, do_sample=True, seed=44, top_k=50)
print("sample 2 alone gives the same fill:", alone.texts[0] == batch.texts[2])

# 4. Save with the provenance record and regenerate a sample from the file alone.
paths = batch.save(out / "fills.json")
again = aigc.replay(paths[2])
assert isinstance(again, aigc.TextResult)
print("replayed:", again.texts[0] == batch.texts[2])
