"""Text metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score), perplexity, distinct-n and self-BLEU.

BLEU, chrF and ROUGE are computed by the reference libraries themselves, so a score here equals, to the
last bit, what ``sacrebleu`` and ``rouge-score`` print for the same inputs; aigc only checks the inputs up
front, chooses a tokenizer that works for Chinese, and returns a typed :class:`~aigc.evaluate.Score`.

Conventions (those of sacrebleu): ``hypotheses`` is a list of segments; ``references`` is a list of
reference *sets*, each with one segment per hypothesis (``references[j][i]`` is reference ``j`` of
hypothesis ``i``). A flat list of strings is accepted as a single reference set.

sacrebleu and rouge-score are imported when a metric that needs them is called (``pip install 'aigc[eval]'``).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from aigc.errors import BackendUnavailable, InvalidRequest
from aigc.evaluate._score import Score, import_optional, version_of

if TYPE_CHECKING:
    from aigc._generator import Generator

__all__ = ["MixedScriptTokenizer", "bleu", "chrf", "distinct_n", "perplexity", "rouge", "self_bleu"]

logger = logging.getLogger(__name__)

References = Sequence[str] | Sequence[Sequence[str]]

# Scripts written without spaces between words: each character is one token (Chinese, Japanese kana).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f\U00030000-\U0003134f"
_CJK_RE = re.compile(f"[{_CJK}]")
# One CJK character, or a run of letters/digits of any other script (underscore excluded, as in \W).
_ROUGE_TOKEN_RE = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
# One CJK character, or a run of anything else that is not whitespace (for distinct-n).
_WORD_RE = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_ROUGE_TYPE_RE = re.compile(r"rouge[1-9]|rougeL|rougeLsum")


# -- input checks ----------------------------------------------------------------------------------
def _texts(field: str, value: Any, *, min_count: int = 1) -> list[str]:
    """A non-empty list of strings, or an InvalidRequest naming ``field``."""
    if isinstance(value, str):
        raise InvalidRequest(field, value, "a single string, not a list of segments",
                             f"wrap it in a list: {field}=[...]")
    try:
        items = list(value)
    except TypeError:
        raise InvalidRequest(field, value, "not a list of strings", f"pass {field} as a list of strings") from None
    if len(items) < min_count:
        what = "empty" if not items else f"has {len(items)} item(s); at least {min_count} are needed"
        raise InvalidRequest(field, items, what, f"pass at least {min_count} string(s)")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidRequest(f"{field}[{i}]", item, f"a {type(item).__name__}, not a string",
                                 "pass every segment as a str")
    return items


def _reference_sets(references: Any, count: int) -> list[list[str]]:
    """``references`` as a list of reference sets, each with ``count`` segments."""
    if isinstance(references, str):
        raise InvalidRequest("references", references, "a single string, not a list of segments",
                             "pass one reference set as a list of strings, or several as a list of lists")
    try:
        items = list(references)
    except TypeError:
        raise InvalidRequest("references", references, "not a list", "pass a list of reference sets") from None
    if not items:
        raise InvalidRequest("references", items, "empty", "pass at least one reference set")
    if all(isinstance(r, str) for r in items):
        sets = [items]  # a flat list: one reference set
    elif all(isinstance(r, Sequence) and not isinstance(r, str) for r in items):
        sets = [list(r) for r in items]
    else:
        raise InvalidRequest("references", items, "mixes strings and lists",
                             "pass one reference set (a list of strings) or several (a list of lists of strings)")
    for j, ref_set in enumerate(sets):
        if len(ref_set) != count:
            raise InvalidRequest(
                "references", f"reference set {j} with {len(ref_set)} segment(s)",
                f"there are {count} hypotheses; every reference set needs exactly one segment per hypothesis",
                "pass references[j][i] = reference j of hypothesis i (a flat list is one reference set)")
        for i, seg in enumerate(ref_set):
            if not isinstance(seg, str):
                raise InvalidRequest(f"references[{j}][{i}]", seg, f"a {type(seg).__name__}, not a string",
                                     "pass every reference segment as a str ('' for a missing reference)")
    return sets


def _positive_int(field: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidRequest(field, value, f"must be an int >= {minimum}", f"pass {field}={max(minimum, 1)} or more")
    return value


def _sacrebleu(metric: str) -> Any:
    return import_optional("sacrebleu", "sacrebleu", metric)


def _bleu_metric(sb: Any, tokenize: str, *, lowercase: bool, effective_order: bool, max_order: int = 4) -> Any:
    """A ``sacrebleu.metrics.BLEU`` with ``tokenize`` checked first."""
    choices = sorted(sb.metrics.BLEU.TOKENIZERS)
    if tokenize not in choices:
        raise InvalidRequest("tokenize", tokenize, "not a sacrebleu tokenizer",
                             f"pass one of {', '.join(choices)} ('zh' for Chinese, '13a' for most others)")
    try:
        return sb.metrics.BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=effective_order,
                               max_ngram_order=max_order)
    except ImportError as e:  # ja-mecab, ko-mecab, spm need optional packages
        raise BackendUnavailable(f"sacrebleu's {tokenize!r} tokenizer needs a package that is not installed "
                                 f"({e}). Fix: install it, e.g. pip install 'sacrebleu[ja]'") from None


# -- BLEU and chrF (sacrebleu) ------------------------------------------------------------------------
def bleu(
    hypotheses: Sequence[str],
    references: References,
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
    sentence: bool = False,
) -> Score:
    """BLEU (Papineni et al. 2002) computed by sacrebleu; equals ``sacrebleu.corpus_bleu`` / ``sentence_bleu``.

    Args:
        hypotheses: the system outputs, one segment per item.
        references: reference sets as in sacrebleu (``references[j][i]`` is reference ``j`` of hypothesis
            ``i``), or a flat list of strings for a single reference set. ``''`` marks a missing reference.
        tokenize: a sacrebleu tokenizer: ``"13a"`` (default), ``"zh"`` (Chinese: characters, latin words kept),
            ``"intl"``, ``"char"``, ``"none"``, ``"ja-mecab"``, ``"ko-mecab"``, ``"flores200"``, ...
        lowercase: compare case-insensitively.
        sentence: score each segment on its own (sacrebleu's ``sentence_bleu``: effective n-gram order, exp
            smoothing); ``score`` is then their mean and ``details["segments"]`` holds every segment's score.

    Returns:
        A :class:`Score` named ``"BLEU"`` on sacrebleu's 0-100 scale. ``details`` holds the n-gram
        ``precisions``, brevity penalty ``bp``, ``ratio``, ``sys_len``, ``ref_len``, ``counts``, ``totals``
        (corpus level), the reproducibility ``signature`` and sacrebleu's own ``summary`` line.

    Raises:
        InvalidRequest: empty or non-string inputs, a reference set whose length differs from the
            hypotheses', or an unknown tokenizer.
        BackendUnavailable: sacrebleu (or the tokenizer's package) is not installed.

    Example:
        >>> from aigc.evaluate import bleu
        >>> refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ...         ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
        >>> hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
        >>> round(bleu(hyps, refs).score, 2)
        48.53
    """
    hyps = _texts("hypotheses", hypotheses)
    sets = _reference_sets(references, len(hyps))
    sb = _sacrebleu("bleu()")
    metric = _bleu_metric(sb, tokenize, lowercase=lowercase, effective_order=sentence)
    version = version_of("sacrebleu")
    if sentence:
        return _sentence_score(metric, hyps, sets, version)
    res = metric.corpus_score(hyps, sets)
    details = {
        "summary": str(res), "signature": str(metric.get_signature()), "precisions": list(res.precisions),
        "bp": res.bp, "ratio": res.ratio, "sys_len": res.sys_len, "ref_len": res.ref_len,
        "counts": list(res.counts), "totals": list(res.totals), "tokenize": tokenize, "lowercase": lowercase,
    }
    return Score("BLEU", float(res.score), details, "sacrebleu", version)


def chrf(
    hypotheses: Sequence[str],
    references: References,
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: int = 2,
    lowercase: bool = False,
    whitespace: bool = False,
    sentence: bool = False,
) -> Score:
    """chrF (Popović 2015), or chrF++ with ``word_order=2``, computed by sacrebleu (``corpus_chrf``).

    chrF compares character n-grams, so it needs no tokenizer and works as is for Chinese.

    Args:
        hypotheses: the system outputs, one segment per item.
        references: reference sets as for :func:`bleu`.
        char_order: character n-gram order (6 in chrF).
        word_order: word n-gram order (0 for chrF, 2 for chrF++).
        beta: weight of recall relative to precision (2 in chrF2).
        lowercase: compare case-insensitively.
        whitespace: keep whitespace in character n-grams (sacrebleu removes it by default).
        sentence: score each segment on its own (``sentence_chrf``); ``score`` is their mean.

    Returns:
        A :class:`Score` named as sacrebleu names it (``"chrF2"``, ``"chrF2++"``) on its 0-100 scale.

    Raises:
        InvalidRequest: bad inputs, as for :func:`bleu`, or orders out of range.
        BackendUnavailable: sacrebleu is not installed.

    Example:
        >>> round(chrf(hyps, refs).score, 2)  # hyps, refs as in bleu()  # doctest: +SKIP
        59.73
    """
    hyps = _texts("hypotheses", hypotheses)
    sets = _reference_sets(references, len(hyps))
    _positive_int("char_order", char_order)
    _positive_int("word_order", word_order, minimum=0)
    _positive_int("beta", beta, minimum=0)
    sb = _sacrebleu("chrf()")
    metric = sb.metrics.CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                             whitespace=whitespace)
    version = version_of("sacrebleu")
    if sentence:
        return _sentence_score(metric, hyps, sets, version)
    res = metric.corpus_score(hyps, sets)
    details = {"summary": str(res), "signature": str(metric.get_signature()), "char_order": char_order,
               "word_order": word_order, "beta": beta, "lowercase": lowercase}
    return Score(str(res.name), float(res.score), details, "sacrebleu", version)


def _sentence_score(metric: Any, hyps: list[str], sets: list[list[str]], version: str) -> Score:
    """Each segment scored on its own (sacrebleu's sentence_bleu / sentence_chrf); the Score is their mean."""
    results = [metric.sentence_score(h, [s[i] for s in sets]) for i, h in enumerate(hyps)]
    scores = [float(r.score) for r in results]
    mean = math.fsum(scores) / len(scores)
    name = str(results[0].name)  # "BLEU", "chrF2", "chrF2++"
    details = {"summary": f"sentence {name} = {mean:.2f} (mean of {len(scores)} segments)",
               "signature": str(metric.get_signature()), "segments": scores}
    return Score(name, mean, details, "sacrebleu", version)


# -- ROUGE (rouge-score) ---------------------------------------------------------------------------
class MixedScriptTokenizer:
    """A rouge-score tokenizer for Chinese (and Japanese kana) as well as English.

    rouge-score's default tokenizer keeps only ``[a-z0-9]`` and so drops every Chinese character. This one
    lowercases, makes each CJK character one token, and keeps runs of letters and digits of other scripts
    as words; punctuation and whitespace separate tokens. On ASCII text its tokens are exactly the
    default tokenizer's. With ``use_stemmer=True`` words longer than 3 characters are Porter-stemmed, as
    rouge-score does.

    Example:
        >>> MixedScriptTokenizer().tokenize("GPT模型很好, it works!")
        ['gpt', '模', '型', '很', '好', 'it', 'works']
    """

    def __init__(self, use_stemmer: bool = False) -> None:
        self._stemmer: Any = None
        if use_stemmer:
            porter = import_optional("nltk.stem.porter", "nltk", "ROUGE with stemmer=True")
            self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = _ROUGE_TOKEN_RE.findall(text.lower())
        if self._stemmer is not None:
            tokens = [str(self._stemmer.stem(t)) if len(t) > 3 else t for t in tokens]
        return tokens


def _rouge_name(rouge_type: str) -> str:
    return "ROUGE-" + rouge_type.removeprefix("rouge")


def rouge(
    hypotheses: Sequence[str],
    references: References,
    *,
    types: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
    lang: Literal["auto", "en", "zh"] = "auto",
    stemmer: bool = False,
) -> dict[str, Score]:
    """ROUGE-N and ROUGE-L (Lin 2004) computed by rouge-score, with a tokenizer that also handles Chinese.

    Each hypothesis is scored against its reference(s) with ``RougeScorer.score`` (``score_multi`` when
    there are several reference sets: the reference with the best F1 counts); the corpus score is the mean
    F1 over segments, and the mean precision and recall are in ``details``.

    Args:
        hypotheses: the system outputs (rouge-score's "prediction").
        references: reference sets as for :func:`bleu` (rouge-score's "target").
        types: rouge-score types: ``"rouge1"`` ... ``"rouge9"``, ``"rougeL"``, ``"rougeLsum"`` (summary-level
            LCS over newline-separated sentences).
        lang: ``"en"``: rouge-score's default tokenizer (ASCII letters and digits only); ``"zh"``:
            :class:`MixedScriptTokenizer` (CJK characters one by one, other words kept); ``"auto"``: ``"zh"``
            when any input contains a CJK character, else ``"en"``.
        stemmer: Porter-stem words longer than 3 characters (rouge-score's ``use_stemmer``).

    Returns:
        ``{rouge_type: Score}``; each score (0-1) is the mean F1, with ``details["precision"]``,
        ``details["recall"]`` (means) and ``details["segments"]`` (per-segment F1).

    Raises:
        InvalidRequest: bad inputs as for :func:`bleu`, an unknown ROUGE type or ``lang``.
        BackendUnavailable: rouge-score is not installed.

    Example:
        >>> scores = rouge(["今天天气很好。"], ["今天天气不错！"], lang="zh")
        >>> round(scores["rouge2"].score, 4)
        0.6
    """
    hyps = _texts("hypotheses", hypotheses)
    sets = _reference_sets(references, len(hyps))
    type_list = [types] if isinstance(types, str) else list(types)
    if not type_list:
        raise InvalidRequest("types", types, "empty", "pass e.g. types=('rouge1', 'rouge2', 'rougeL')")
    for t in type_list:
        if not isinstance(t, str) or not _ROUGE_TYPE_RE.fullmatch(t):
            raise InvalidRequest("types", t, "not a ROUGE type", "use rouge1 ... rouge9, rougeL or rougeLsum")
    if lang not in ("auto", "en", "zh"):
        raise InvalidRequest("lang", lang, "unknown language mode",
                             "pass 'en' (rouge-score's tokenizer), 'zh' (CJK characters) or 'auto'")
    if lang == "auto":
        lang = "zh" if any(_CJK_RE.search(t) for t in (*hyps, *(s for ref in sets for s in ref))) else "en"
    rouge_scorer = import_optional("rouge_score.rouge_scorer", "rouge-score", "rouge()")
    tokenizer = MixedScriptTokenizer(stemmer) if lang == "zh" else None
    scorer = rouge_scorer.RougeScorer(type_list, use_stemmer=stemmer, tokenizer=tokenizer)
    per_segment: list[dict[str, Any]] = []
    for i, hyp in enumerate(hyps):
        targets = [s[i] for s in sets]
        # rouge-score's argument order is (target, prediction).
        per_segment.append(scorer.score(targets[0], hyp) if len(targets) == 1 else scorer.score_multi(targets, hyp))
    version = version_of("rouge-score")
    tokenizer_name = "aigc MixedScriptTokenizer" if lang == "zh" else "rouge-score default"
    out: dict[str, Score] = {}
    for t in type_list:
        f1 = [float(seg[t].fmeasure) for seg in per_segment]
        p = math.fsum(float(seg[t].precision) for seg in per_segment) / len(hyps)
        r = math.fsum(float(seg[t].recall) for seg in per_segment) / len(hyps)
        mean = math.fsum(f1) / len(f1)
        details = {"summary": f"{_rouge_name(t)} F1 = {mean:.4f} (P = {p:.4f}, R = {r:.4f}, {len(hyps)} segments)",
                   "precision": p, "recall": r, "segments": f1, "tokenizer": tokenizer_name, "lang": lang,
                   "stemmer": stemmer}
        out[t] = Score(_rouge_name(t), mean, details, "rouge-score", version)
    return out


# -- perplexity ------------------------------------------------------------------------------------
def perplexity(
    generator: Generator[Any, Any],
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    stride: int | None = None,
    max_length: int | None = None,
) -> Score:
    """Perplexity of a causal language model on ``texts``: ``exp`` of the mean negative log-likelihood per token.

    Token-weighted over all texts (a long text counts more than a short one). Each text is tokenized on its
    own (with the tokenizer's special tokens, e.g. a BOS token for Llama); its first token has no context
    and is not scored. Texts longer than ``max_length`` tokens are scored with the sliding window of the
    transformers perplexity guide: windows of ``max_length`` tokens start every ``stride`` tokens, and
    each window scores only the tokens the previous one did not, so every scored token has at least
    ``max_length - stride`` tokens of context. Windows of all texts are batched (right-padded); per-token
    losses are summed in float64.

    Args:
        generator: a text :class:`aigc.Generator` of the ``transformers`` backend holding a decoder-only model.
        texts: the texts to score.
        batch_size: windows per forward pass; the result does not depend on it (beyond float rounding).
        stride: tokens between the starts of consecutive windows (default ``max_length // 2``); with
            ``stride == max_length`` windows do not overlap and the first token of each is not scored.
        max_length: tokens per window (default: the model's context length, or 1024 when it has none).

    Returns:
        A :class:`Score` named ``"perplexity"``; ``details`` has ``nll`` (mean nats per token), ``tokens``
        (scored), ``texts``, ``skipped`` (texts with fewer than 2 tokens), ``windows``, ``max_length``,
        ``stride`` and the ``model``.

    Raises:
        InvalidRequest: empty ``texts``, a generator without a causal transformers model, bad window
            sizes, or no text with at least 2 tokens.

    Example:
        >>> gen = aigc.load("text", "path/to/gpt2-dir")  # doctest: +SKIP
        >>> perplexity(gen, ["The quick brown fox.", "Hello world!"]).score  # doctest: +SKIP
        27.31
    """
    items = _texts("texts", texts)
    _positive_int("batch_size", batch_size)
    lm = getattr(generator, "lm", None)
    tokenizer = getattr(generator, "tokenizer", None)
    if getattr(generator, "modality", None) != "text" or lm is None or tokenizer is None:
        raise InvalidRequest(
            "generator", repr(generator), "perplexity needs an open text Generator holding a transformers causal "
            "LM (.lm) and its tokenizer (.tokenizer)", "load one with aigc.load('text', DIR, backend='transformers')")
    config = getattr(lm, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise InvalidRequest("generator", repr(generator), "an encoder-decoder model has no perplexity of a text "
                             "on its own", "use a decoder-only (causal) language model")
    context = getattr(generator, "max_positions", None) or next(
        (getattr(config, k) for k in ("max_position_embeddings", "n_positions")
         if isinstance(getattr(config, k, None), int)), None)
    if max_length is None:
        max_length = int(context) if context else 1024
    _positive_int("max_length", max_length, minimum=2)
    if context and max_length > context:
        raise InvalidRequest("max_length", max_length, f"the model's context is {context} tokens",
                             f"pass max_length <= {context}")
    if stride is None:
        stride = max(1, max_length // 2)
    _positive_int("stride", stride)
    if stride > max_length:
        raise InvalidRequest("stride", stride, f"larger than max_length={max_length}, so tokens would be skipped",
                             f"pass stride <= {max_length}")

    import torch

    # 1. Tokenize, and cut every text into windows: (token ids, tokens at the start that are context only).
    windows: list[tuple[list[int], int]] = []
    skipped = 0
    for text in items:
        token_ids = [int(t) for t in tokenizer(text)["input_ids"]]
        if len(token_ids) < 2:
            skipped += 1
            continue
        prev_end = 0
        for begin in range(0, len(token_ids), stride):
            end = min(begin + max_length, len(token_ids))
            window = token_ids[begin:end]
            windows.append((window, len(window) - (end - prev_end)))  # the last end - prev_end tokens are new
            prev_end = end
            if end == len(token_ids):
                break
    if not windows:
        raise InvalidRequest("texts", items, "no text has 2 or more tokens, so nothing can be scored",
                             "pass longer texts")
    if skipped:
        logger.warning("perplexity: %d of %d texts have fewer than 2 tokens and are not scored", skipped, len(items))

    # 2. Batch windows (longest first, so that padding stays small) and sum per-token NLL in float64.
    windows.sort(key=lambda w: -len(w[0]))
    pad_id = getattr(generator, "pad_id", None)
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(lm.parameters()).device
    total_nll = 0.0
    total_tokens = 0
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            part = windows[start:start + batch_size]
            width = len(part[0][0])
            ids = torch.full((len(part), width), int(pad_id), dtype=torch.long)  # (B, T)
            mask = torch.zeros((len(part), width), dtype=torch.long)  # (B, T): 1 for real tokens
            scored = torch.zeros((len(part), width), dtype=torch.bool)  # (B, T): tokens whose NLL counts
            for i, (window, ctx) in enumerate(part):
                ids[i, :len(window)] = torch.tensor(window, dtype=torch.long)
                mask[i, :len(window)] = 1
                scored[i, max(ctx, 1):len(window)] = True  # token 0 of a window has nothing to condition on
            logits = lm(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            # Position t predicts token t + 1: logits (B, T-1, V) against targets (B, T-1).
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), ids[:, 1:].to(device), reduction="none")
            keep = scored[:, 1:].to(device)
            total_nll += float(nll.double().masked_select(keep).sum())
            total_tokens += int(keep.sum())
    mean_nll = total_nll / total_tokens
    ppl = math.exp(mean_nll)
    details = {
        "summary": f"perplexity = {ppl:.4f} (NLL {mean_nll:.4f} nats/token over {total_tokens} tokens)",
        "nll": mean_nll, "tokens": total_tokens, "texts": len(items), "skipped": skipped, "windows": len(windows),
        "max_length": max_length, "stride": stride, "model": getattr(generator, "model_id", repr(generator)),
        "transformers": version_of("transformers"),
    }
    return Score("perplexity", ppl, details)


# -- diversity -------------------------------------------------------------------------------------
def _words(text: str, tokenize: str) -> list[str]:
    if tokenize == "whitespace":
        return text.split()
    if tokenize == "char":
        return [c for c in text if not c.isspace()]
    return list(_WORD_RE.findall(text))


def distinct_n(
    texts: Sequence[str],
    n: int = 2,
    *,
    tokenize: Literal["auto", "whitespace", "char"] = "auto",
) -> Score:
    """Distinct-n (Li et al. 2016): unique n-grams over all n-grams in a set of generations.

    N-grams are counted within each text (never across two texts) and pooled over the set; 1.0 means no
    n-gram repeats anywhere, values near 0 mean the texts repeat each other (or themselves).

    Args:
        texts: the generations.
        n: the n-gram order (1 for distinct-1, 2 for distinct-2).
        tokenize: ``"auto"``: whitespace-separated words, with each CJK character a token of its own;
            ``"whitespace"``: ``str.split()``; ``"char"``: every non-space character.

    Returns:
        A :class:`Score` named ``"distinct-n"`` in [0, 1]; ``details`` has ``unique`` and ``total`` counts.

    Raises:
        InvalidRequest: empty ``texts``, ``n < 1``, an unknown ``tokenize``, or no text with ``n`` tokens.

    Example:
        >>> distinct_n(["a b a b", "a b c"], n=2).score  # a b, b a, a b | a b, b c: 3 unique of 5
        0.6
    """
    items = _texts("texts", texts)
    _positive_int("n", n)
    if tokenize not in ("auto", "whitespace", "char"):
        raise InvalidRequest("tokenize", tokenize, "unknown tokenizer", "pass 'auto', 'whitespace' or 'char'")
    counts: Counter[tuple[str, ...]] = Counter()
    for text in items:
        words = _words(text, tokenize)
        counts.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    total = sum(counts.values())
    if total == 0:
        raise InvalidRequest("texts", items, f"no text has {n} or more tokens", "pass longer texts or a smaller n")
    score = len(counts) / total
    details = {"summary": f"distinct-{n} = {score:.4f} ({len(counts)} unique of {total} {n}-grams)",
               "unique": len(counts), "total": total, "n": n, "tokenize": tokenize}
    return Score(f"distinct-{n}", score, details)


def self_bleu(texts: Sequence[str], *, tokenize: str = "13a", max_order: int = 4) -> Score:
    """Self-BLEU (Zhu et al. 2018, Texygen): the mean BLEU of each text against all the others.

    Each text is scored with sacrebleu's sentence BLEU (effective order, exp smoothing) with every other
    text of the set as a reference. Higher means less diverse (100: all texts identical). The cost grows
    with the square of the number of texts.

    Args:
        texts: the generations (at least 2).
        tokenize: a sacrebleu tokenizer, as for :func:`bleu` (``"zh"`` for Chinese).
        max_order: the largest n-gram order (4 as in BLEU-4; Texygen also reports 2, 3 and 5).

    Returns:
        A :class:`Score` named ``"self-BLEU"`` on sacrebleu's 0-100 scale; ``details["per_text"]`` holds each
        text's BLEU against the rest.

    Raises:
        InvalidRequest: fewer than 2 texts, or an unknown tokenizer.
        BackendUnavailable: sacrebleu is not installed.

    Example:
        >>> round(self_bleu(["the cat sat on the mat", "the cat sat on the mat"]).score, 2)
        100.0
    """
    items = _texts("texts", texts, min_count=2)
    _positive_int("max_order", max_order)
    sb = _sacrebleu("self_bleu()")
    metric = _bleu_metric(sb, tokenize, lowercase=False, effective_order=True, max_order=max_order)
    per_text = [float(metric.sentence_score(t, items[:i] + items[i + 1:]).score) for i, t in enumerate(items)]
    mean = math.fsum(per_text) / len(per_text)
    details = {"summary": f"self-BLEU = {mean:.2f} (mean over {len(items)} texts)", "per_text": per_text,
               "signature": str(metric.get_signature()), "tokenize": tokenize, "max_order": max_order}
    return Score("self-BLEU", mean, details, "sacrebleu", version_of("sacrebleu"))
