"""aigc.evaluate: text metrics equal the reference libraries' own numbers; image metrics against closed forms."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sacrebleu
import torch
from PIL import Image, ImageDraw
from rouge_score import rouge_scorer

import aigc
from aigc import evaluate
from aigc.errors import InvalidRequest, ModelNotFound
from aigc.evaluate.cli import add_eval_parser, run_eval

# sacrebleu's README example (https://github.com/mjpost/sacrebleu#using-sacrebleu-from-python).
SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
# The same hypotheses with the hypotheses themselves as the first reference set.
REFS_SELF = [SYS, REFS[1]]
ZH_HYP = ["今天天气很好，我们去公园散步吧。", "床前明月光，疑是地上霜。", "我喜欢用Python写代码。"]
ZH_REF = [["今天天气不错，我们去公园走走。", "床前明月光，疑似地上霜。", "我爱用 Python 编程。"]]


# -- BLEU / chrF ----------------------------------------------------------------------------------
@pytest.mark.parametrize("refs", [REFS, REFS_SELF], ids=["readme", "self-ref"])
def test_bleu_equals_sacrebleu_corpus_bleu(refs: list[list[str]]) -> None:
    ours = evaluate.bleu(SYS, refs)
    theirs = sacrebleu.corpus_bleu(SYS, refs)
    assert ours.score == theirs.score
    assert ours.details["summary"] == str(theirs)
    assert ours.details["precisions"] == theirs.precisions and ours.details["bp"] == theirs.bp
    assert ours.library == "sacrebleu" and ours.version == sacrebleu.__version__
    assert ours.details["signature"] == f"nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"


def test_bleu_readme_numbers() -> None:
    assert str(evaluate.bleu(SYS, REFS)).startswith(
        "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18) (sacrebleu")
    assert f"{evaluate.chrf(SYS, REFS).score:.2f}" == "59.73"
    assert evaluate.bleu(SYS, REFS_SELF).score == pytest.approx(100.0)


def test_sentence_bleu_and_chrf_equal_sacrebleu() -> None:
    ours = evaluate.bleu(SYS, REFS, sentence=True)
    theirs = [sacrebleu.sentence_bleu(h, [r[i] for r in REFS]).score for i, h in enumerate(SYS)]
    assert ours.details["segments"] == theirs
    assert ours.score == pytest.approx(sum(theirs) / len(theirs), rel=1e-15)
    chrf = evaluate.chrf(SYS, REFS, sentence=True)
    assert chrf.details["segments"] == [sacrebleu.sentence_chrf(h, [r[i] for r in REFS]).score
                                        for i, h in enumerate(SYS)]


def test_chrf_and_chrf_plus_plus_equal_sacrebleu() -> None:
    assert evaluate.chrf(SYS, REFS).score == sacrebleu.corpus_chrf(SYS, REFS).score
    plus = evaluate.chrf(SYS, REFS, word_order=2)
    assert plus.score == sacrebleu.corpus_chrf(SYS, REFS, word_order=2).score
    assert plus.name == "chrF2++"


def test_chinese_bleu_with_zh_tokenizer_and_chrf() -> None:
    ours = evaluate.bleu(ZH_HYP, ZH_REF, tokenize="zh")
    assert ours.score == sacrebleu.corpus_bleu(ZH_HYP, ZH_REF, tokenize="zh").score
    assert "tok:zh" in ours.details["signature"]
    # 13a keeps a Chinese clause as one "word": far fewer matches than character-level zh tokenization.
    assert evaluate.bleu(ZH_HYP, ZH_REF).score < ours.score
    assert evaluate.chrf(ZH_HYP, ZH_REF).score == sacrebleu.corpus_chrf(ZH_HYP, ZH_REF).score
    sentence = evaluate.bleu(ZH_HYP, ZH_REF, tokenize="zh", sentence=True)
    assert sentence.details["segments"] == [sacrebleu.sentence_bleu(h, [ZH_REF[0][i]], tokenize="zh").score
                                            for i, h in enumerate(ZH_HYP)]


def test_flat_reference_list_is_one_reference_set() -> None:
    assert evaluate.bleu(SYS, REFS[0]).score == evaluate.bleu(SYS, [REFS[0]]).score


@pytest.mark.parametrize(("call", "field"), [
    (lambda: evaluate.bleu([], REFS), "hypotheses"),
    (lambda: evaluate.bleu("a string", REFS), "hypotheses"),
    (lambda: evaluate.bleu(SYS, [REFS[0][:2]]), "references"),
    (lambda: evaluate.bleu(SYS, []), "references"),
    (lambda: evaluate.bleu(SYS, [["a", "b", 3]]), "references[0][2]"),
    (lambda: evaluate.bleu(SYS, REFS, tokenize="nope"), "tokenize"),
    (lambda: evaluate.chrf(SYS, REFS[0][:1]), "references"),
    (lambda: evaluate.rouge(SYS, REFS, types=["rouge0"]), "types"),
    (lambda: evaluate.rouge(SYS[:2], REFS), "references"),
    (lambda: evaluate.distinct_n([], 2), "texts"),
    (lambda: evaluate.distinct_n(["a"], 2), "texts"),
    (lambda: evaluate.self_bleu(["only one"]), "texts"),
])
def test_bad_text_inputs_name_the_argument(call: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        call()
    assert info.value.field == field


# -- ROUGE ----------------------------------------------------------------------------------------
def test_rouge_equals_rouge_score_on_its_readme_example() -> None:
    target, prediction = "The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    theirs = scorer.score(target, prediction)
    ours = evaluate.rouge([prediction], [target], types=["rouge1", "rougeL"], stemmer=True)
    for t in ("rouge1", "rougeL"):
        assert ours[t].score == theirs[t].fmeasure
        assert ours[t].details["precision"] == theirs[t].precision
        assert ours[t].details["recall"] == theirs[t].recall
    assert ours["rouge1"].name == "ROUGE-1" and ours["rougeL"].name == "ROUGE-L"
    assert ours["rouge1"].details["tokenizer"] == "rouge-score default"


def test_rouge_corpus_is_the_mean_and_multi_reference_takes_the_best() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge2", "rougeLsum"])
    ours = evaluate.rouge(SYS, REFS, types=["rouge2", "rougeLsum"])
    for t in ("rouge2", "rougeLsum"):
        per = [scorer.score_multi([r[i] for r in REFS], h)[t].fmeasure for i, h in enumerate(SYS)]
        assert ours[t].details["segments"] == per
        assert ours[t].score == pytest.approx(sum(per) / len(per), rel=1e-15)


def test_rouge_chinese_by_characters() -> None:
    hyp, ref = "今天天气很好。", "今天天气不错！"
    # rouge-score's own tokenizer drops every Chinese character: nothing to compare.
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref, hyp)["rouge1"].fmeasure == 0.0
    scores = evaluate.rouge([hyp], [ref])  # lang="auto" sees CJK
    # Tokens: 今 天 天 气 很 好 / 今 天 天 气 不 错. Unigrams: 4 of 6 match; bigrams 今天 天天 天气: 3 of 5;
    # longest common subsequence 今天天气: 4 of 6.
    assert scores["rouge1"].score == pytest.approx(4 / 6)
    assert scores["rouge2"].score == pytest.approx(3 / 5)
    assert scores["rougeL"].score == pytest.approx(4 / 6)
    assert scores["rouge1"].details["lang"] == "zh"
    # Unequal lengths: P = 4/7, R = 4/4, F = 8/11.
    partial = evaluate.rouge(["我爱北京天安门"], ["我爱北京"], types=["rouge1"], lang="zh")["rouge1"]
    assert partial.details["precision"] == pytest.approx(4 / 7) and partial.details["recall"] == pytest.approx(1.0)
    assert partial.score == pytest.approx(8 / 11)


def test_mixed_script_tokenizer_agrees_with_rouge_score_on_ascii() -> None:
    from rouge_score.tokenizers import DefaultTokenizer

    from aigc.evaluate.text import MixedScriptTokenizer

    for text in [*SYS, *REFS[1], "Numbers 3.14 and e-mail: a_b@c.d!"]:
        assert MixedScriptTokenizer().tokenize(text) == DefaultTokenizer().tokenize(text)
        assert MixedScriptTokenizer(True).tokenize(text) == DefaultTokenizer(True).tokenize(text)
    assert MixedScriptTokenizer().tokenize("我用GPT-4写诗。") == ["我", "用", "gpt", "4", "写", "诗"]


# -- perplexity -----------------------------------------------------------------------------------
TEXTS = ["The quick brown fox jumps over the lazy dog.", "今天天气真好，我想去公园散步。", "Hello world!",
         "To be, or not to be, that is the question."]


def _manual_ppl(gen: Any, texts: list[str]) -> float:
    """exp(mean NLL) from the model's own loss, one text at a time, token-weighted."""
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([gen.tokenizer(text)["input_ids"]])
            loss = gen.lm(input_ids=ids, labels=ids).loss  # mean over the len - 1 predicted tokens
            nll += float(loss) * (ids.shape[1] - 1)
            tokens += ids.shape[1] - 1
    return math.exp(nll / tokens)


def test_perplexity_equals_the_models_own_loss(gpt2: Any) -> None:
    res = evaluate.perplexity(gpt2, TEXTS)
    assert res.score == pytest.approx(_manual_ppl(gpt2, TEXTS), rel=1e-5)
    assert res.details["tokens"] == sum(len(gpt2.tokenizer(t)["input_ids"]) - 1 for t in TEXTS)
    assert res.score == pytest.approx(math.exp(res.details["nll"]))
    for bs in (1, 3):  # batch-size invariance (padding only changes float rounding)
        assert evaluate.perplexity(gpt2, TEXTS, batch_size=bs).score == pytest.approx(res.score, rel=1e-5)


def test_perplexity_sliding_window(gpt2: Any) -> None:
    text = " ".join(TEXTS[::-1])
    ids = torch.tensor([gpt2.tokenizer(text)["input_ids"]])
    n, max_length, stride = ids.shape[1], 16, 8
    assert n > 3 * max_length
    # The transformers perplexity guide's loop, counting exactly the tokens the loss covers.
    nll, count, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, n, stride):
            end = min(begin + max_length, n)
            window = ids[:, begin:end]
            labels = window.clone()
            labels[:, :-(end - prev_end)] = -100
            covered = int((labels[:, 1:] != -100).sum())
            nll += float(gpt2.lm(input_ids=window, labels=labels).loss) * covered
            count += covered
            prev_end = end
            if end == n:
                break
    res = evaluate.perplexity(gpt2, [text], max_length=max_length, stride=stride, batch_size=4)
    assert res.details["tokens"] == n - 1 == count
    assert res.score == pytest.approx(math.exp(nll / count), rel=1e-5)
    # One window covering the whole text is the plain model loss; overlap gives more context than disjoint chunks.
    assert evaluate.perplexity(gpt2, [text], max_length=n).score == pytest.approx(_manual_ppl(gpt2, [text]), rel=1e-5)
    disjoint = evaluate.perplexity(gpt2, [text], max_length=max_length, stride=max_length)
    assert disjoint.details["tokens"] == n - disjoint.details["windows"]


def test_perplexity_errors(gpt2: Any) -> None:
    cases = [
        (lambda: evaluate.perplexity(gpt2, []), "texts"),
        (lambda: evaluate.perplexity(object(), TEXTS), "generator"),  # type: ignore[arg-type]
        (lambda: evaluate.perplexity(gpt2, TEXTS, stride=20, max_length=10), "stride"),
        (lambda: evaluate.perplexity(gpt2, TEXTS, max_length=10_000), "max_length"),
        (lambda: evaluate.perplexity(gpt2, TEXTS, batch_size=0), "batch_size"),
        (lambda: evaluate.perplexity(gpt2, [""]), "texts"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidRequest) as info:
            call()
        assert info.value.field == field


# -- diversity ------------------------------------------------------------------------------------
def test_distinct_n_by_hand() -> None:
    texts = ["a b a b", "a b c"]
    one = evaluate.distinct_n(texts, 1)  # a b a b a b c: {a, b, c} of 7
    assert (one.details["unique"], one.details["total"]) == (3, 7)
    assert one.score == pytest.approx(3 / 7)
    two = evaluate.distinct_n(texts, 2)  # ab ba ab | ab bc: {ab, ba, bc} of 5 (no n-gram across texts)
    assert (two.score, two.name) == (0.6, "distinct-2")
    assert evaluate.distinct_n(["我爱我家"], 1).score == pytest.approx(3 / 4)  # 我 爱 我 家
    assert evaluate.distinct_n(["我爱我家"], 1, tokenize="whitespace").score == 1.0


def test_self_bleu_by_hand() -> None:
    same = evaluate.self_bleu(["the cat sat on the mat"] * 3)
    assert same.score == pytest.approx(100.0)
    assert evaluate.self_bleu(["aa bb cc dd", "ee ff gg hh"]).score == 0.0
    texts = ["the cat sat on the mat", "the dog sat on the log", "a bird flew over the house"]
    res = evaluate.self_bleu(texts)
    expected = [sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1:]).score for i, t in enumerate(texts)]
    assert res.details["per_text"] == expected
    assert 0 < res.score < 100


# -- Frechet distance, KID, precision/recall ----------------------------------------------------------
def test_frechet_closed_form_diagonal() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    a, b = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert evaluate.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert evaluate.frechet_distance_from_stats(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-12)


def test_frechet_closed_form_full_covariances() -> None:
    rng = np.random.default_rng(2)
    m1, m2 = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(5), m2 @ m2.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Independent route: the eigenvalues of S1 S2 (not symmetric, but real and >= 0) are those of S1^1/2 S2 S1^1/2.
    tr_root = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_root)
    assert evaluate.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(InvalidRequest) as info:
        evaluate.frechet_distance_from_stats(mu1, s1, mu2[:4], s2)
    assert info.value.field == "mu_b"


def test_frechet_of_samples_approaches_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 0.0])
    l1, l2 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = l1 @ l1.T + 0.2 * np.eye(3), l2 @ l2.T + 0.2 * np.eye(3)
    x = rng.multivariate_normal(mu1, s1, size=40_000)
    y = rng.multivariate_normal(mu2, s2, size=40_000)
    expected = evaluate.frechet_distance_from_stats(mu1, s1, mu2, s2)
    res = evaluate.frechet_distance(x, y)
    assert res.score == pytest.approx(expected, rel=0.03)
    assert evaluate.frechet_distance(torch.from_numpy(x).float(), y).score == pytest.approx(res.score, rel=1e-4)
    assert evaluate.frechet_distance(x, x).score == pytest.approx(0.0, abs=1e-9)


def test_kid_is_unbiased_and_seeded() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = evaluate.kid(a, b, subsets=20, subset_size=200)
    shifted = evaluate.kid(a, b + 0.5, subsets=20, subset_size=200)
    assert abs(same.score) < 3 * same.details["std"] + 1e-3
    assert shifted.score > 10 * abs(same.score) and shifted.score > 0.05
    assert evaluate.kid(a, b, subsets=20, subset_size=200).score == same.score  # same seed, same subsets
    assert evaluate.kid(a, b, subsets=20, subset_size=200, seed=1).score != same.score
    # One subset of every sample is the plain unbiased MMD^2 (a permutation does not change it).
    x, y = a[:30], b[:40] + 0.3
    k = lambda p, q: (p @ q / 8 + 1) ** 3  # noqa: E731
    m = 30  # subset_size is capped at the smaller set
    one = evaluate.kid(x, y, subsets=1, subset_size=1000)
    assert one.details["subset_size"] == m
    rng2 = np.random.default_rng(0)
    xi, yi = x[rng2.choice(30, m, replace=False)], y[rng2.choice(40, m, replace=False)]
    kxx = sum(k(xi[i], xi[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(yi[i], yi[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(xi[i], yi[j]) for i in range(m) for j in range(m)) / (m * m)
    assert one.score == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)


def test_precision_recall() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 4))
    same = evaluate.precision_recall(real, real)
    assert (same["precision"].score, same["recall"].score) == (1.0, 1.0)
    far = evaluate.precision_recall(real, real + 100.0)
    assert (far["precision"].score, far["recall"].score) == (0.0, 0.0)
    half = evaluate.precision_recall(real, real[real[:, 0] > 0.5])  # mode dropping: fidelity kept, coverage lost
    assert half["precision"].score == 1.0
    assert half["recall"].score < 0.75
    with pytest.raises(InvalidRequest) as info:
        evaluate.precision_recall(real[:3], real, k=3)
    assert info.value.field == "k"


@pytest.mark.parametrize(("a", "b", "field"), [
    (np.zeros(5), np.zeros((5, 2)), "features_a"),
    (np.zeros((5, 2)), np.zeros((5, 3)), "features_b"),
    (np.zeros((1, 2)), np.zeros((5, 2)), "features_a"),
    (np.zeros((5, 2)), np.full((5, 2), np.nan), "features_b"),
])
def test_bad_features_name_the_argument(a: Any, b: Any, field: str) -> None:
    for fn in (evaluate.frechet_distance, evaluate.kid, evaluate.precision_recall):
        with pytest.raises(InvalidRequest) as info:
            fn(a, b)
        assert info.value.field == field


# -- images ---------------------------------------------------------------------------------------
def _images(seed: int, n: int, size: int = 32, mode: str = "L") -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    channels = {"L": (size, size), "RGB": (size, size, 3)}[mode]
    return [Image.fromarray(rng.integers(0, 256, size=channels, dtype=np.uint8), mode=mode) for _ in range(n)]


def _small_cnn(seed: int = 0) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return evaluate.SmallCNN(evaluate.SmallCNNConfig()).eval()


def _pixel_stats(images: list[Image.Image]) -> np.ndarray:
    """A toy extractor: mean and std of the grayscale pixels in a 2x2 grid (8 features)."""
    out = []
    for im in images:
        arr = np.asarray(im.convert("L").resize((32, 32)), dtype=np.float64) / 255
        cells = [arr[i:i + 16, j:j + 16] for i in (0, 16) for j in (0, 16)]
        out.append([c.mean() for c in cells] + [c.std() for c in cells])
    return np.array(out)


def test_fid_from_images_with_callable_module_and_directory(tmp_path: Path) -> None:
    a, b = _images(0, 24), _images(1, 20, mode="RGB")
    res = evaluate.fid(a, b, extractor=_pixel_stats, batch_size=7)
    assert res.score == evaluate.frechet_distance(_pixel_stats(a), _pixel_stats(b)).score
    assert res.name == "FID" and res.details["n_a"] == 24
    model = _small_cnn()
    assert evaluate.fid(a, a, extractor=model).score == pytest.approx(0.0, abs=1e-6)
    with_module = evaluate.fid(a, b, extractor=model)
    with torch.no_grad():
        feats_a = model.features(model.preprocess(a))
        feats_b = model.features(model.preprocess(b))
    assert feats_a.shape == (24, 128)
    assert with_module.score == pytest.approx(evaluate.frechet_distance(feats_a, feats_b).score, rel=1e-9)
    # The same images from a directory, and the classifier from a saved directory.
    folder = tmp_path / "b"
    folder.mkdir()
    for i, im in enumerate(b):
        im.save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    saved = evaluate.save_classifier(model, tmp_path / "clf")
    assert evaluate.fid(a, folder, extractor=saved).score == pytest.approx(with_module.score, rel=1e-9)
    kid = evaluate.kid_images(a, folder, extractor=model, subsets=5, subset_size=10)
    assert kid.name == "KID" and kid.details["subset_size"] == 10


def test_classifier_round_trip_and_default_extractor() -> None:
    model = _small_cnn()
    config = evaluate.SmallCNNConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 20)
    big = evaluate.SmallCNN(evaluate.SmallCNNConfig(stages=((32,), (64,), (128, 128))))
    assert {k.split(".")[0] for k in big.state_dict()} == {"body", "neck", "head"}
    assert "neck.2.weight" in big.state_dict()  # the layout of scripts/eval_image_default.py's SmallCNN


def _strokes(kind: str, n: int, seed: int) -> list[Image.Image]:
    """White-on-black 32x32 drawings, jittered: vertical strokes ("1"-like) or rings ("0"-like)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = Image.new("L", (32, 32), 0)
        draw = ImageDraw.Draw(img)
        dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
        if kind == "stroke":
            draw.line([(16 + dx, 5 + dy), (16 + dx, 27 + dy)], fill=255, width=3)
        else:
            draw.ellipse([(9 + dx, 5 + dy), (23 + dx, 27 + dy)], outline=255, width=3)
        out.append(img)
    return out


def test_shipped_default_extractor_separates_shapes() -> None:
    from aigc.evaluate._classifier import DEFAULT_CLASSIFIER_DIR

    model = evaluate.load_classifier(DEFAULT_CLASSIFIER_DIR)
    assert (model.config.num_classes, model.config.feature_dim) == (20, 128)
    ones, more_ones, zeros = _strokes("stroke", 12, 0), _strokes("stroke", 12, 1), _strokes("ring", 12, 2)
    logits = model(model.preprocess(ones + zeros))
    assert (logits[:12].argmax(-1) == 11).float().mean() >= 0.75  # class 11 is the digit 1
    assert (logits[12:].argmax(-1) == 10).float().mean() >= 0.75  # class 10 is the digit 0
    same = evaluate.fid(ones, more_ones).score  # extractor=None: the shipped classifier's features
    different = evaluate.fid(ones, zeros).score
    assert 0 <= same < different


def test_image_input_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "0.png").write_bytes(b"not a png")
    good = _images(0, 4)
    good[0].save(broken / "1.png")
    cases = [
        (lambda: evaluate.fid(empty, good, extractor=_pixel_stats), "images_a"),
        (lambda: evaluate.fid(good, tmp_path / "missing", extractor=_pixel_stats), "images_b"),
        (lambda: evaluate.fid(good, broken, extractor=_pixel_stats), "images_b[0]"),
        (lambda: evaluate.fid(good, [good[0]], extractor=_pixel_stats), "images_b"),
        (lambda: evaluate.fid(good, [1, 2], extractor=_pixel_stats), "images_b[0]"),
        (lambda: evaluate.fid(good, good, extractor=42), "extractor"),
        (lambda: evaluate.fid(good, good, extractor=lambda ims: np.zeros(len(ims))), "extractor"),
        (lambda: evaluate.kid_images(good, good, extractor=_pixel_stats, subset_size=1), "subset_size"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidRequest) as info:
            call()
        assert info.value.field == field, (field, info.value)


# -- CLIP score -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (text and vision towers of width 32) with its tokenizer and image processor."""
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    path = tmp_path_factory.mktemp("clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
                     "num_hidden_layers": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 37,
                       "num_attention_heads": 4, "num_hidden_layers": 2},
        projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(config).eval()
    model.save_pretrained(path)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    processor.save_pretrained(path)
    return path


def test_clip_score_on_a_tiny_random_clip(clip_dir: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    images, prompts = _images(6, 3, mode="RGB"), ["a red cat", "a blue dog", "an ankle boot on a long long road"]
    res = evaluate.clip_score(images, prompts, model=clip_dir, batch_size=2)
    assert res.name == "CLIP score" and len(res.details["per_sample"]) == 3
    assert all(0.0 <= s <= 100.0 for s in res.details["per_sample"]) and math.isfinite(res.score)
    # The same number from CLIP's own forward: logits_per_image = exp(logit_scale) * cos.
    model, processor = CLIPModel.from_pretrained(clip_dir).eval(), CLIPProcessor.from_pretrained(clip_dir)
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        out = model(**inputs)
    cos = out.logits_per_image.diagonal().double() / model.logit_scale.exp().double()
    assert res.details["per_sample"] == pytest.approx((100 * cos.clamp(min=0)).tolist(), abs=1e-4)
    with pytest.raises(InvalidRequest) as info:
        evaluate.clip_score(images, prompts[:2], model=clip_dir)
    assert info.value.field == "prompts"
    with pytest.raises(ModelNotFound):
        evaluate.clip_score(images, prompts, model=clip_dir / "missing")


# -- CLI ------------------------------------------------------------------------------------------
def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aigc")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return run_eval(parser.parse_args(list(argv)))


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_cli_text_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hyp = _write(tmp_path / "hyp.txt", SYS)
    ref1, ref2 = _write(tmp_path / "r1.txt", REFS[0]), _write(tmp_path / "r2.txt", REFS[1])
    assert _cli("eval", "bleu", "--hyp", hyp, "--ref", ref1, "--ref", ref2) == 0
    assert capsys.readouterr().out.startswith("BLEU = 48.53 82.4/50.0/45.5/37.5")
    assert _cli("eval", "bleu", "--hyp", hyp, "--ref", ref1, "--ref", ref2, "--json") == 0
    assert json.loads(capsys.readouterr().out)["score"] == sacrebleu.corpus_bleu(SYS, REFS).score
    zh_hyp, zh_ref = _write(tmp_path / "zh.txt", ZH_HYP), _write(tmp_path / "zhr.txt", ZH_REF[0])
    assert _cli("eval", "bleu", "--hyp", zh_hyp, "--ref", zh_ref, "--tokenize", "zh", "--json") == 0
    assert json.loads(capsys.readouterr().out)["score"] == sacrebleu.corpus_bleu(ZH_HYP, ZH_REF, tokenize="zh").score
    assert _cli("eval", "chrf", "--hyp", hyp, "--ref", ref1, "--ref", ref2) == 0
    assert capsys.readouterr().out.startswith("chrF2 = 59.73")
    assert _cli("eval", "rouge", "--hyp", zh_hyp, "--ref", zh_ref, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["ROUGE-1", "ROUGE-2", "ROUGE-L"]
    assert rows[0]["score"] == evaluate.rouge(ZH_HYP, ZH_REF)["rouge1"].score


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hyp = _write(tmp_path / "hyp.txt", SYS)
    short = _write(tmp_path / "short.txt", SYS[:2])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    cases = [
        (["bleu", "--hyp", hyp, "--ref", short], "--ref="),
        (["rouge", "--hyp", str(tmp_path / "nope.txt"), "--ref", hyp], "--hyp="),
        (["chrf", "--hyp", str(empty), "--ref", hyp], "empty"),
        (["bleu", "--hyp", hyp, "--ref", hyp, "--tokenize", "bogus"], "tokenize="),
        (["fid", str(tmp_path / "x"), str(tmp_path)], "DIR_A="),
    ]
    for args, needle in cases:
        assert _cli("eval", *args) == 1
        err = capsys.readouterr().err
        assert err.startswith("aigc: error:") and needle in err, err
        assert len(err.strip().splitlines()) == 1


def test_cli_perplexity_and_fid(gpt2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = _write(tmp_path / "texts.txt", TEXTS)
    assert _cli("eval", "perplexity", "--model", str(gpt2_dir), texts, "--device", "cpu", "--json") == 0
    got = json.loads(capsys.readouterr().out)
    gen = aigc.load("text", gpt2_dir, device="cpu")
    assert got["score"] == pytest.approx(evaluate.perplexity(gen, TEXTS).score, rel=1e-9)
    dirs = []
    for seed, name in ((0, "a"), (1, "b")):
        (tmp_path / name).mkdir()
        for i, im in enumerate(_images(seed, 6)):
            im.save(tmp_path / name / f"{i}.png")
        dirs.append(str(tmp_path / name))
    clf = str(evaluate.save_classifier(_small_cnn(), tmp_path / "clf"))
    assert _cli("eval", "fid", *dirs, "--extractor", clf, "--json") == 0
    fid = json.loads(capsys.readouterr().out)
    assert fid["name"] == "FID" and fid["score"] == evaluate.fid(*dirs, extractor=clf).score
    assert _cli("eval", "kid", *dirs, "--extractor", clf, "--subsets", "3", "--subset-size", "4") == 0
    assert capsys.readouterr().out.startswith("KID = ")


# -- the result type and the import cost -------------------------------------------------------------
def test_score_is_typed_printable_and_json() -> None:
    s = evaluate.bleu(SYS, REFS)
    assert float(s) == s.score
    assert json.loads(json.dumps(s.to_dict()))["details"]["counts"] == s.details["counts"]
    plain = evaluate.Score("FID", 12.3456789)
    assert str(plain) == f"FID = 12.3457 (aigc {aigc.__version__})"


def test_import_is_light_and_namespace_is_all() -> None:
    code = ("import sys, aigc.evaluate as e; print([m for m in ('torch', 'numpy', 'sacrebleu', 'rouge_score', 'PIL') "
            "if m in sys.modules]); print(sorted(dir(e)) == sorted(e.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
    for name in evaluate.__all__:
        assert getattr(evaluate, name) is not None
