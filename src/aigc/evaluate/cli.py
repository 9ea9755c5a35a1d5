"""The ``aigc eval`` command: metrics from the command line.

    aigc eval bleu --hyp hyp.txt --ref ref1.txt --ref ref2.txt [--tokenize zh] [--sentence] [--json]
    aigc eval chrf --hyp hyp.txt --ref ref.txt [--word-order 2]
    aigc eval rouge --hyp hyp.txt --ref ref.txt [--types rouge1 rougeL] [--lang zh]
    aigc eval perplexity --model DIR texts.txt [--batch-size 8] [--max-length 512] [--stride 256]
    aigc eval fid DIR_A DIR_B [--extractor CLASSIFIER_DIR]
    aigc eval kid DIR_A DIR_B [--subsets 100] [--subset-size 1000] [--seed 0]
    aigc eval human A_DIR B_DIR [C_DIR ...] [--port 8600] [--question TEXT] [--db human_eval.sqlite]
    aigc eval human --report DB [--json | --export csv [-o FILE]]

Text files hold one segment per line (UTF-8). Results print as one line per score, or as JSON with
``--json``. Errors print one line (``aigc: error: ...``) and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from aigc.errors import AigcError, InvalidRequest

__all__ = ["add_eval_parser", "run_eval"]

logger = logging.getLogger(__name__)


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command and its metric subcommands to an ``add_subparsers()`` object.

    Args:
        subparsers: what ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``eval`` parser.

    Example:
        >>> parser = argparse.ArgumentParser(prog="aigc")
        >>> add_eval_parser(parser.add_subparsers(dest="command"))  # doctest: +ELLIPSIS
        ArgumentParser(prog='aigc eval', ...)
        >>> run_eval(parser.parse_args(["eval", "bleu", "--hyp", "h.txt", "--ref", "r.txt"]))  # doctest: +SKIP
    """
    ev: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="score generated text or images (BLEU, ROUGE, perplexity, FID, ...)",
        description="Score generated text or images.")
    metrics = ev.add_subparsers(dest="metric", required=True, metavar="METRIC")

    def text_pair(name: str, help_text: str) -> argparse.ArgumentParser:
        p = metrics.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--hyp", required=True, metavar="FILE", help="system outputs, one segment per line")
        p.add_argument("--ref", required=True, action="append", metavar="FILE",
                       help="references, one segment per line (repeat for several reference sets)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    p = text_pair("bleu", "BLEU through sacrebleu")
    p.add_argument("--tokenize", default="13a", help="sacrebleu tokenizer: 13a (default), zh, intl, char, none, ...")
    p.add_argument("--lowercase", action="store_true", help="case-insensitive")
    p.add_argument("--sentence", action="store_true", help="sentence-level BLEU per line (mean reported)")

    p = text_pair("chrf", "chrF (chrF++ with --word-order 2) through sacrebleu")
    p.add_argument("--char-order", type=int, default=6, help="character n-gram order (default 6)")
    p.add_argument("--word-order", type=int, default=0, help="word n-gram order (0: chrF, 2: chrF++)")
    p.add_argument("--beta", type=int, default=2, help="recall weight (default 2)")
    p.add_argument("--lowercase", action="store_true", help="case-insensitive")
    p.add_argument("--sentence", action="store_true", help="sentence-level chrF per line (mean reported)")

    p = text_pair("rouge", "ROUGE-N / ROUGE-L F1 through rouge-score (Chinese by characters)")
    p.add_argument("--types", nargs="+", default=["rouge1", "rouge2", "rougeL"], metavar="TYPE",
                   help="rouge1 ... rouge9, rougeL, rougeLsum (default: rouge1 rouge2 rougeL)")
    p.add_argument("--lang", choices=["auto", "en", "zh"], default="auto",
                   help="en: rouge-score's tokenizer; zh: CJK characters as tokens; auto (default): zh if any CJK")
    p.add_argument("--stemmer", action="store_true", help="Porter-stem English words")

    p = metrics.add_parser("perplexity", help="perplexity of a causal language model on a text file",
                           description="Perplexity of a causal language model on the lines of FILE.")
    p.add_argument("file", metavar="FILE", help="texts, one per line (or the whole file with --whole-file)")
    p.add_argument("--model", "-m", required=True, help="model directory or hub id (transformers backend)")
    p.add_argument("--whole-file", action="store_true", help="score the whole file as one text")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--max-length", type=int, help="tokens per window (default: the model's context)")
    p.add_argument("--stride", type=int, help="tokens between window starts (default: max-length / 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default: auto)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    for name, help_text in (("fid", "Frechet distance between the features of two image directories"),
                            ("kid", "Kernel Inception Distance between the features of two image directories")):
        p = metrics.add_parser(name, help=help_text, description=help_text)
        p.add_argument("dir_a", metavar="DIR_A", help="reference images (a directory)")
        p.add_argument("dir_b", metavar="DIR_B", help="generated images (a directory)")
        p.add_argument("--extractor", metavar="DIR",
                       help="a classifier directory written by aigc.evaluate.save_classifier (default: aigc's own)")
        p.add_argument("--batch-size", type=int, default=64, help="images per extractor call (default 64)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "kid":
            p.add_argument("--subsets", type=int, default=100, help="subset pairs to average (default 100)")
            p.add_argument("--subset-size", type=int, default=1000, help="samples per subset (default 1000)")
            p.add_argument("--seed", type=int, default=0, help="seed of the subset sampling (default 0)")

    text = ("Blind pairwise comparison of systems' outputs in the browser (one folder of saved outputs per system, "
            "matched by prompt and seed); --report DB prints the results.")
    p = metrics.add_parser("human", help="blind pairwise human evaluation in the browser, and its report",
                           description=text)
    p.add_argument("dirs", nargs="*", metavar="DIR", help="one folder of outputs saved by aigc per system")
    p.add_argument("--port", type=int, default=8600, help="port to serve on (default 8600; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--question", default=_DEFAULT_QUESTION,
                   help=f'what the raters answer (default "{_DEFAULT_QUESTION}")')
    p.add_argument("--db", default="human_eval.sqlite", metavar="FILE",
                   help="SQLite file the votes go to; an existing one is resumed (default human_eval.sqlite)")
    p.add_argument("--seed", type=int, default=0, help="seed of each rater's order and left/right layout (default 0)")
    p.add_argument("--report", metavar="DB", help="print the results of the study in DB instead of serving")
    p.add_argument("--export", choices=["csv"], help="with --report: write every vote as CSV instead")
    p.add_argument("--output", "-o", metavar="FILE", help="with --export: write to FILE (default: standard output)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples of the Bradley-Terry intervals (default 1000)")
    p.add_argument("--json", action="store_true", help="with --report: print the report as JSON")
    return ev


_DEFAULT_QUESTION = "Which output is better?"  # = aigc.evaluate.human.DEFAULT_QUESTION (not imported here)


def _human(args: argparse.Namespace) -> int:
    from aigc.evaluate import human

    if args.report is not None:
        if args.dirs:
            raise InvalidRequest("DIR", args.dirs, "--report reads a database; folders are only for serving",
                                 "drop the folders, or drop --report to serve them")
        if args.export == "csv":
            text = human.export_csv(args.report)
            if args.output:
                from aigc._media.atomic import atomic_write_text

                atomic_write_text(args.output, text)
            else:
                sys.stdout.write(text)
            return 0
        reports = human.report(args.report, resamples=args.resamples, seed=args.seed)
        if not reports:
            print(f"{args.report}: no votes yet")
            return 0
        if args.json:
            print(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
        else:
            print("\n\n".join(str(r) for r in reports))
        return 0
    if args.export is not None or args.output is not None:
        raise InvalidRequest("--export", args.export, "exports the votes of a database", "add --report DB")
    if len(args.dirs) < 2:
        raise InvalidRequest("DIR", args.dirs, "a comparison needs two or more folders (one per system)",
                             "pass e.g. aigc eval human runs/gan runs/vae, or --report DB for the results")
    sock = human.bind(args.host, args.port)  # a port in use fails before any file is read
    try:
        study = human.open_study(args.dirs, db=args.db, question=args.question, seed=args.seed)
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    print(f"aigc eval human: {url} -- {len(study.tasks)} comparisons of {', '.join(study.systems)}; votes go to "
          f"{args.db} (Ctrl-C stops)", flush=True)
    human.serve_forever(study, sock, host=args.host)
    return 0


def _read_lines(flag: str, path: str) -> list[str]:
    """The lines of a UTF-8 text file; an unreadable or empty file is an InvalidRequest naming ``flag``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InvalidRequest(flag, path, f"cannot read this file ({reason})",
                             "pass an existing UTF-8 text file with one segment per line") from None
    lines = text.splitlines()
    if not lines:
        raise InvalidRequest(flag, path, "the file is empty", "put one segment per line in it")
    return lines


def _text_inputs(args: argparse.Namespace) -> tuple[list[str], list[list[str]]]:
    hyps = _read_lines("--hyp", args.hyp)
    refs = []
    for path in args.ref:
        lines = _read_lines("--ref", path)
        if len(lines) != len(hyps):
            raise InvalidRequest("--ref", path, f"has {len(lines)} lines but --hyp {args.hyp} has {len(hyps)}",
                                 "give every reference file one line per hypothesis line")
        refs.append(lines)
    return hyps, refs


def _emit(scores: list[Any], as_json: bool) -> None:
    if as_json:
        data = [s.to_dict() for s in scores]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False))
        return
    for s in scores:
        print(s)


def _run(args: argparse.Namespace) -> int:
    from aigc import evaluate

    metric = args.metric
    if metric == "human":
        return _human(args)
    if metric in ("bleu", "chrf", "rouge"):
        hyps, refs = _text_inputs(args)
        if metric == "bleu":
            scores = [evaluate.bleu(hyps, refs, tokenize=args.tokenize, lowercase=args.lowercase,
                                    sentence=args.sentence)]
        elif metric == "chrf":
            scores = [evaluate.chrf(hyps, refs, char_order=args.char_order, word_order=args.word_order,
                                    beta=args.beta, lowercase=args.lowercase, sentence=args.sentence)]
        else:
            scores = list(evaluate.rouge(hyps, refs, types=args.types, lang=args.lang,
                                         stemmer=args.stemmer).values())
    elif metric == "perplexity":
        import aigc

        texts = ["\n".join(_read_lines("FILE", args.file))] if args.whole_file else _read_lines("FILE", args.file)
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise InvalidRequest("FILE", args.file, "holds only blank lines", "put one text per line in it")
        gen = aigc.load("text", args.model, backend="transformers", device=args.device, dtype=args.dtype)
        scores = [evaluate.perplexity(gen, texts, batch_size=args.batch_size, stride=args.stride,
                                      max_length=args.max_length)]
    else:
        for flag, path in (("DIR_A", args.dir_a), ("DIR_B", args.dir_b)):
            if not os.path.isdir(path):
                raise InvalidRequest(flag, path, "not a directory", "pass a directory of image files")
        if metric == "fid":
            scores = [evaluate.fid(args.dir_a, args.dir_b, extractor=args.extractor, batch_size=args.batch_size)]
        else:
            scores = [evaluate.kid_images(args.dir_a, args.dir_b, extractor=args.extractor, subsets=args.subsets,
                                          subset_size=args.subset_size, seed=args.seed, batch_size=args.batch_size)]
    _emit(scores, args.json)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Run the ``eval`` subcommand parsed by :func:`add_eval_parser`; return the exit status.

    Args:
        args: the parsed arguments (``args.metric`` names the metric).

    Returns:
        0 on success; 1 after printing ``aigc: error: ...`` to stderr for an aigc error (bad input,
        unreadable file, missing model or package).

    Example:
        >>> run_eval(parser.parse_args(["eval", "rouge", "--hyp", "h.txt", "--ref", "r.txt"]))  # doctest: +SKIP
        0
    """
    try:
        return _run(args)
    except AigcError as e:
        print(f"aigc: error: {e}", file=sys.stderr)
        return 1
